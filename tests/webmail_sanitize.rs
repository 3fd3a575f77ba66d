//! The webmail's HTML sanitiser as a browser sees it: every hostile message in
//! tests/corpus-hostile/ (script tags, event attributes, javascript:/vbscript:/data:
//! links, SVG and CSS payloads, forms, meta refresh, base href, frames and objects,
//! charset tricks, remote images, tracking pixels, prefetch hints, pings) is
//! delivered over SMTP and opened in the reader in headless Chromium (Playwright,
//! tests/webmail_sanitize.py). Each payload that would run calls a loopback hook
//! server; the test fails if the hook hears anything, a dialog or popup opens, or the
//! body document lacks its sandbox and CSP. Then "show remote images" on one message
//! must make the `/img/` requests arrive, proving the hook does see requests.

mod common;

use common::{Node, assert_ok, require_tool, run_with_stdin};
use std::path::Path;
use std::process::Command;

#[test]
fn hostile_corpus_renders_in_chromium_without_running_or_fetching_anything() {
    require_tool("python3");
    require_tool("chromium");
    let node = Node::start();
    node.add_user("lector", "pw-lector-1");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-hostile");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webmail_sanitize.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(format!("http://127.0.0.1:{}", node.http_port))
        .arg(node.smtp_port.to_string())
        .arg("lector")
        .arg("pw-lector-1")
        .arg(&corpus);
    let out = run_with_stdin(cmd, None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}");
    if !out.status.success() {
        panic!(
            "hostile corpus check failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n--- node log (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&node.log_text(), 40)
        );
    }
    let out = assert_ok(&out, "webmail_sanitize.py");
    // One line per corpus file, each one ok.
    let files = std::fs::read_dir(&corpus)
        .expect("corpus dir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .unwrap_or(false)
        })
        .count();
    assert!((15..=30).contains(&files), "corpus holds {files} files");
    let ok_lines = out.lines().filter(|l| l.starts_with("ok  ")).count();
    assert!(
        ok_lines > files,
        "expected an ok line per corpus file plus the image check, got {ok_lines}:\n{out}"
    );
    assert!(
        out.contains("after 'show remote images' the hook saw"),
        "{out}"
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
