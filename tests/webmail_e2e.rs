//! The webmail end to end in headless Chromium (Python Playwright driving
//! /usr/bin/chromium): log in, read a message delivered by SMTP (swaks, with an
//! attachment), open the attachment, send to another local user (seen over IMAP),
//! reply, forward with an attachment, save and resume a draft, search, move to a new
//! folder, delete, log out. The steps are in tests/webmail_e2e.py; screenshots of
//! the inbox, the reader and the compose page go to target/test-artifacts/webmail/.

mod common;

use std::process::Command;

use common::{Node, require_tool};

#[test]
fn webmail_end_to_end_in_headless_chromium() {
    require_tool("python3");
    require_tool("swaks");
    require_tool("chromium");
    let probe = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .expect("python3");
    assert!(
        probe.status.success(),
        "Python Playwright is not installed (.ci/run installs it): {}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let node = Node::start();
    node.add_user("ana", "clave-ana");
    node.add_user("beto", "clave-beto");

    let att = node.dir.path().join("informe.txt");
    std::fs::write(&att, "cifras del trimestre: 42\n").unwrap();
    let out = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &node.smtp_port.to_string(),
        ])
        .args([
            "--from",
            "beto@cluster.com.ec",
            "--to",
            "ana@cluster.com.ec",
        ])
        .args(["--header", "Subject: Informe trimestral"])
        .args([
            "--body",
            "Hola Ana,\n\nAdjunto el informe del trimestre.\n\nBeto",
        ])
        .args([
            "--attach-type",
            "text/plain",
            "--attach-name",
            "informe.txt",
        ])
        .arg("--attach")
        .arg(format!("@{}", att.display()))
        .output()
        .expect("swaks");
    assert!(
        out.status.success(),
        "swaks failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/webmail");
    std::fs::create_dir_all(&artifacts).unwrap();
    println!("webmail screenshots: {}", artifacts.display());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webmail_e2e.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(node.http_port.to_string())
        .arg(node.imap_port.to_string())
        .arg(&artifacts)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = node.log_text();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(
        out.status.success() && stdout.contains("OK webmail_e2e"),
        "e2e failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n--- node log (tail, newest first)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail.join("\n")
    );
    for shot in ["inbox.png", "reader.png", "compose.png"] {
        let p = artifacts.join(shot);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} missing or empty", p.display());
    }
    println!("{stdout}");
}
