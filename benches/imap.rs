//! IMAP benchmark: clusterd against a private Dovecot 2.3 (Debian's dovecot-imapd,
//! Maildir, `tests/common/dovecot.rs`), side by side in one run, with the same Python
//! imaplib clients (`benches/load.py`) against each:
//!
//! 1. sequential APPEND of N generated messages (1-12 KB, every fifth multipart) from
//!    one imaplib client: each APPEND is durable before its OK on both servers;
//! 2. the read loop: 8 client processes looping SELECT INBOX, FETCH 1:* (FLAGS
//!    RFC822.SIZE ENVELOPE) and 20 random BODY.PEEK[] on those messages: commands/s
//!    and the cycle's p50/p99;
//! 3. the mixed load: 10 client processes looping LOGIN, SELECT, FETCH, 3 BODY.PEEK[],
//!    STORE, APPEND, UID STORE \Deleted, EXPUNGE, LOGOUT: commands/s.
//!
//! It prints each figure and the ratio clusterd/Dovecot. `cargo bench --bench imap`
//! (root or not: the private Dovecot runs its mail processes as `nobody` under root).
//! `BENCH_IMAP_MESSAGES` sets N (default 1000), `BENCH_IMAP_SECONDS` the duration of
//! loops 2 and 3 (default 20). The clients share the machine's cores with the server
//! under test, the same for both servers. Every process started here is stopped by
//! PID and the temp dir removed when the guards drop, also when a step fails.
//!
//! Measured on 2026-12-07 (2 cores, 10 s loops, the machine busy with compilers, so
//! absolute rates vary by 2-3x between runs; the ratios held): before the structure
//! cache and the login cache, APPEND 1.09x, read loop 0.53x, mixed 0.56x Dovecot;
//! after, APPEND 1.83x (151 vs 83/s), read loop 1.26x (3,222 vs 2,564 commands/s,
//! cycle p50 53 vs 65 ms), mixed 1.91x (1,066 vs 557 commands/s).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Node;
use common::dovecot::Dovecot;

const USER: &str = "bench";
const PASSWORD: &str = "benchpw";

/// One number from the load script's JSON line (it prints flat objects only).
fn field(json: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = json[at + key.len() + 3..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// Runs one mode of load.py against a port; its JSON line.
fn load(port: u16, mode: &str, args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::load_py(mode, port, USER, PASSWORD, &args)
}

struct Figures {
    append_per_s: f64,
    read_per_s: f64,
    read_p50: f64,
    read_p99: f64,
    mixed_per_s: f64,
}

fn run(label: &str, port: u16, n: u32, seconds: u32) -> Figures {
    let a = load(port, "append", &[n.to_string()]);
    let append_per_s = field(&a, "messages") / field(&a, "seconds");
    println!("{label:>9}: APPEND x{n}, one imaplib client: {append_per_s:>7.0}/s");
    let r = load(port, "read", &["8".into(), seconds.to_string()]);
    let read_per_s = field(&r, "commands") / field(&r, "seconds");
    let (read_p50, read_p99) = (field(&r, "p50_ms"), field(&r, "p99_ms"));
    println!(
        "{label:>9}: read loop, 8 clients: {read_per_s:>7.0} commands/s, cycle p50 {read_p50:.0} ms p99 {read_p99:.0} ms"
    );
    let m = load(port, "mixed", &["10".into(), seconds.to_string()]);
    let mixed_per_s = field(&m, "commands") / field(&m, "seconds");
    println!(
        "{label:>9}: mixed load, 10 clients: {mixed_per_s:>7.0} commands/s ({} sessions)",
        field(&m, "sessions")
    );
    Figures {
        append_per_s,
        read_per_s,
        read_p50,
        read_p99,
        mixed_per_s,
    }
}

fn main() {
    let n = common::env_num("BENCH_IMAP_MESSAGES", 1000);
    let seconds = common::env_num("BENCH_IMAP_SECONDS", 20);
    common::require_tool("python3");
    let tmp = tempfile::Builder::new()
        .prefix("clusterd-bench-imap-")
        .tempdir()
        .expect("temp dir");
    // Guards drop in reverse order: both servers stop before the temp dir goes.
    let clusterd = Node::builder().log("warn").temp_in(tmp.path()).start();
    clusterd.add_user(USER, PASSWORD);
    let dovecot = Dovecot::start(&[USER], PASSWORD);

    println!("Python imaplib clients on loopback; {n} messages; loops of {seconds} s");
    let c = run("clusterd", clusterd.imap_port, n, seconds);
    let d = run("dovecot", dovecot.port, n, seconds);
    println!("ratio clusterd/dovecot:");
    println!(
        "  sequential APPEND  {:.2}x",
        c.append_per_s / d.append_per_s
    );
    println!(
        "  read loop          {:.2}x (cycle p50 {:.0} vs {:.0} ms, p99 {:.0} vs {:.0} ms)",
        c.read_per_s / d.read_per_s,
        c.read_p50,
        d.read_p50,
        c.read_p99,
        d.read_p99
    );
    println!("  mixed load         {:.2}x", c.mixed_per_s / d.mixed_per_s);
    drop(dovecot);
    drop(clusterd);
    drop(tmp);
}
