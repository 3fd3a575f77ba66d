//! Outbound delivery benchmark (being written; see issue 13).
fn main() {
    eprintln!("benches/outbound.rs: not written yet");
    std::process::exit(1);
}
