//! Hostile and broken clients get protocol errors or timeouts, never a crash, and the
//! node keeps serving everybody else.

mod common;
mod smtp_client;

use std::time::{Duration, Instant};

use common::Node;
use smtp_client::{Client, inbox, swaks};

#[test]
fn bad_input_gets_errors_and_other_clients_are_served() {
    let node = Node::builder().smtp("timeout_s = 2").start();
    node.add_user("sistemas", "pw1");

    // A client that stalls mid-command is closed after timeout_s with 421.
    let mut stalled = Client::connect(node.smtp_port);
    stalled.send(b"EHLO half-a-comm");
    let started = Instant::now();

    // DATA before RCPT, unknown command, bad syntax (RFC 5321 4.2.4, 4.3.2).
    let mut c = Client::connect(node.smtp_port);
    c.cmd("DATA", "503 5.5.1");
    c.cmd("EHLO t", "250 ");
    c.cmd("DATA", "503 5.5.1");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "503 5.5.1");
    c.cmd("MAIL FROM:<a@example.org>", "250");
    c.cmd("DATA", "503 5.5.1");
    c.cmd("FROB", "500 5.5.2");
    c.cmd("MAIL FROM:<b@example.org>", "503 5.5.1");
    c.cmd("RSET", "250");
    c.cmd("MAIL FROM:a@example.org", "501 5.5.4");
    c.cmd("MAIL FROM:<a@example.org> FOO=BAR", "555 5.5.4");
    c.cmd("MAIL FROM:<a@example.org>", "250");
    c.cmd("RCPT TO:<not an address>", "501");
    c.cmd("QUIT", "221");

    // A 1 MB line, then the session goes on.
    let mut long = Client::connect(node.smtp_port);
    long.send(&vec![b'A'; 1 << 20]);
    long.send(b"\r\n");
    let r = long.reply();
    assert!(r.starts_with("500 5.5.2"), "{r}");
    long.cmd("NOOP", "250");

    // Binary garbage, with NULs and high bytes.
    let mut garbage = Client::connect(node.smtp_port);
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .filter(|&b| b != b'\n')
        .collect();
    garbage.send(&bytes);
    garbage.send(b"\r\n\x00\xff\xfe\r\n");
    for _ in 0..2 {
        let r = garbage.reply();
        assert!(r.starts_with("500 5.5."), "{r}");
    }
    garbage.cmd("NOOP", "250");

    // Meanwhile a normal client delivers.
    let (ok, log) = swaks(
        node.smtp_port,
        &["--to", "sistemas@cluster.com.ec", "--from", "a@example.org"],
    );
    assert!(ok, "{log}");

    let r = stalled.reply();
    assert!(r.starts_with("421 4.4.2"), "{r:?}");
    assert!(stalled.closed());
    assert!(started.elapsed() < Duration::from_secs(10));

    // A client that stalls in the middle of DATA: 421, and nothing is delivered.
    let mut c = Client::connect(node.smtp_port);
    c.cmd("EHLO t", "250");
    c.cmd("MAIL FROM:<a@example.org>", "250");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "250");
    c.cmd("DATA", "354");
    c.send(b"Subject: never finished\r\n\r\nhalf");
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r:?}");
    assert!(c.closed());

    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(!msgs[0].contains("never finished"));
}

#[test]
fn max_sessions_gets_421_at_the_greeting() {
    let node = Node::builder().smtp("max_sessions = 2").start();
    node.add_user("sistemas", "pw1");
    let a = Client::connect(node.smtp_port);
    let mut b = Client::connect(node.smtp_port);
    let (mut third, greet) = Client::open(node.smtp_port);
    assert!(greet.starts_with("421 4.7.0"), "{greet:?}");
    assert!(third.closed());
    drop(a);
    b.cmd("QUIT", "221");
    // Slots are given back when sessions end.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (mut c, greet) = Client::open(node.smtp_port);
        if greet.starts_with("220 ") {
            c.cmd("QUIT", "221");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no session slot came back: {greet:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, log) = swaks(
        node.smtp_port,
        &["--to", "sistemas@cluster.com.ec", "--from", "a@example.org"],
    );
    assert!(ok, "{log}");
}
