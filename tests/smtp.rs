//! SMTP as clients see it: swaks for delivery, relay, TLS and AUTH; raw sockets for
//! pipelining and bad input; Python imaplib to check what was delivered.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, assert_ok, require_tool};

fn swaks(port: u16, args: &[&str]) -> (bool, String) {
    require_tool("swaks");
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "20"])
        .args(args)
        .output()
        .expect("run swaks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Fetches INBOX message headers and bodies of an account over IMAP.
fn inbox(node: &Node, user: &str, pw: &str) -> Vec<String> {
    let script = r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login(sys.argv[2], sys.argv[3])
typ, data = m.select("INBOX")
n = int(data[0])
for i in range(1, n + 1):
    typ, d = m.fetch(str(i), "(BODY.PEEK[])")
    sys.stdout.write(d[0][1].decode("utf-8", "replace") + "\n=====\n")
m.logout()
"#;
    let out = common::python(script, &[&node.imap_port.to_string(), user, pw]);
    let text = assert_ok(&out, "imap fetch");
    text.split("\n=====\n")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn queue(node: &Node) -> String {
    assert_ok(&node.cli(&["queue"], None), "clusterd queue")
}

#[test]
fn swaks_delivers_to_a_user_and_an_alias_and_imap_reads_it() {
    let node = Node::start();
    node.add_user("sistemas", "pw1");
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--to", "sistemas@cluster.com.ec", "--from", "ana@example.org",
            "--header", "Subject: hola sistemas", "--body", "cuerpo del mensaje",
        ],
    );
    assert!(ok && log.contains("250 2.0.0 OK"), "{log}");
    let (ok, log) = swaks(node.smtp_port, &["--to", "Postmaster@CLUSTER.com.ec", "--from", "ana@example.org"]);
    assert!(ok, "{log}");
    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let first = &msgs[0];
    assert!(first.starts_with("Received: from "), "{first}");
    assert!(first.contains("for <sistemas@cluster.com.ec>"), "{first}");
    assert!(first.contains("Subject: hola sistemas"), "{first}");
    assert!(first.contains("From: ana@example.org"), "{first}");
    assert!(first.contains("\r\n\r\ncuerpo del mensaje"), "{first}");
    assert!(msgs[1].contains("To: Postmaster@CLUSTER.com.ec"));
}

#[test]
fn relay_is_refused_outside_relay_from_and_queued_inside_across_a_restart() {
    let mut node = Node::builder().smtp(r#"relay_from = ["127.0.0.1/32"]"#).start();
    node.add_user("sistemas", "pw1");
    let (ok, log) = swaks(
        node.smtp_port,
        &["--local-interface", "127.0.0.2", "--to", "user@example.org", "--from", "x@example.net"],
    );
    assert!(!ok, "relay from 127.0.0.2 must fail: {log}");
    assert!(log.contains("550 5.7.1"), "{log}");
    // Local mail is still accepted from anywhere.
    let (ok, log) = swaks(
        node.smtp_port,
        &["--local-interface", "127.0.0.2", "--to", "sistemas@cluster.com.ec", "--from", "x@example.net"],
    );
    assert!(ok, "{log}");

    let (ok, log) = swaks(
        node.smtp_port,
        &["--local-interface", "127.0.0.1", "--to", "user@example.org", "--from", "sistemas@cluster.com.ec",
          "--header", "Subject: to the world"],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let q = queue(&node);
    assert!(q.contains("to user@example.org") && q.contains("1 message(s) queued"), "{q}");
    node.restart();
    let q = queue(&node);
    assert!(q.contains("to user@example.org") && q.contains("1 message(s) queued"), "after restart: {q}");
}

#[test]
fn unknown_user_and_oversize_are_refused() {
    let node = Node::builder().smtp("max_message_bytes = 2000").start();
    node.add_user("sistemas", "pw1");
    let (ok, log) = swaks(node.smtp_port, &["--to", "nadie@cluster.com.ec", "--from", "a@example.org"]);
    assert!(!ok && log.contains("550 5.1.1"), "{log}");
    let big = "x".repeat(3000);
    let (ok, log) = swaks(node.smtp_port, &["--to", "sistemas@cluster.com.ec", "--from", "a@example.org", "--body", &big]);
    assert!(!ok && log.contains("552 5.3.4"), "{log}");
    // Announced size too.
    let mut c = Client::connect(node.smtp_port);
    c.cmd("EHLO t", "250 ");
    c.cmd("MAIL FROM:<a@example.org> SIZE=999999", "552 5.3.4");
    assert!(inbox(&node, "sistemas", "pw1").is_empty());
}

#[test]
fn starttls_and_submission_with_auth() {
    let node = Node::start();
    node.add_user("sistemas", "pw1");
    node.add_user("ana", "pw2");
    // Port 25 with STARTTLS.
    let (ok, log) = swaks(node.smtp_port, &["-tls", "--to", "ana@cluster.com.ec", "--from", "a@example.org"]);
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    // 587: mail without AUTH is refused; AUTH needs TLS first.
    let mut c = Client::connect(node.submission_port);
    c.cmd("EHLO t", "250 ");
    c.cmd("MAIL FROM:<ana@cluster.com.ec>", "530 5.7.0");
    c.cmd("AUTH PLAIN AGFuYQBwdzI=", "538 5.7.11");
    // 587 with STARTTLS + AUTH PLAIN: authenticated relay is queued.
    let (ok, log) = swaks(
        node.submission_port,
        &["-tls", "-a", "PLAIN", "-au", "ana", "-ap", "pw2", "--to", "friend@example.org", "--from", "ana@cluster.com.ec"],
    );
    assert!(ok && log.contains("235 2.7.0") && log.contains("250 2.0.0"), "{log}");
    assert!(queue(&node).contains("friend@example.org"));
    // Wrong password.
    let (ok, log) = swaks(
        node.submission_port,
        &["-tls", "-a", "PLAIN", "-au", "ana", "-ap", "nope", "--to", "friend@example.org"],
    );
    assert!(!ok && log.contains("535 5.7.8"), "{log}");
    // 465: implicit TLS, AUTH LOGIN with the full address.
    let (ok, log) = swaks(
        node.submissions_port,
        &["--tlsc", "-a", "LOGIN", "-au", "ana@cluster.com.ec", "-ap", "pw2", "--to", "sistemas@cluster.com.ec"],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    assert_eq!(inbox(&node, "ana", "pw2").len(), 1);
    assert_eq!(inbox(&node, "sistemas", "pw1").len(), 1);
}

/// A line-oriented raw client.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greet = c.reply();
        assert!(greet.starts_with("220 "), "{greet}");
        c
    }
    /// Reads one (possibly multi-line) reply.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }
    fn send(&mut self, data: &[u8]) {
        self.w.write_all(data).unwrap();
    }
    fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let r = self.reply();
        assert!(r.contains(expect), "{line} -> {r:?}, expected {expect}");
        r
    }
}

#[test]
fn pipelined_transaction_gets_all_replies_in_order() {
    let node = Node::start();
    node.add_user("sistemas", "pw1");
    let mut c = Client::connect(node.smtp_port);
    let ehlo = c.cmd("EHLO client.example.org", "250 ");
    for ext in ["PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<sistemas@cluster.com.ec>\r\nRCPT TO:<nadie@cluster.com.ec>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("550 5.1.1"));
    assert!(c.reply().starts_with("354"));
    c.send(b"Subject: piped\r\n\r\n..dot stuffed\r\n.\r\nQUIT\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    assert!(c.reply().starts_with("221"));
    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("\r\n.dot stuffed"), "{}", msgs[0]);
}

#[test]
fn bad_input_gets_errors_and_other_clients_are_served() {
    let node = Node::builder().smtp("timeout_s = 2").start();
    node.add_user("sistemas", "pw1");

    // A client that stalls mid-command is closed after timeout_s with 421.
    let mut stalled = Client::connect(node.smtp_port);
    stalled.send(b"EHLO half-a-comm");

    // DATA before RCPT, unknown command, bad syntax.
    let mut c = Client::connect(node.smtp_port);
    c.cmd("DATA", "503 5.5.1");
    c.cmd("EHLO t", "250 ");
    c.cmd("DATA", "503 5.5.1");
    c.cmd("MAIL FROM:<a@example.org>", "250");
    c.cmd("DATA", "503 5.5.1");
    c.cmd("FROB", "500 5.5.2");
    c.cmd("MAIL FROM:a@example.org", "503");
    c.cmd("RSET", "250");
    c.cmd("MAIL FROM:a@example.org", "501 5.5.4");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "503 5.5.1");

    // A 1 MB line without a newline, then one with it.
    let mut long = Client::connect(node.smtp_port);
    let mb = vec![b'A'; 1 << 20];
    long.send(&mb);
    long.send(b"\r\n");
    let r = long.reply();
    assert!(r.starts_with("500 5.5.2"), "{r}");
    long.cmd("NOOP", "250");

    // Binary garbage.
    let mut garbage = Client::connect(node.smtp_port);
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    garbage.send(&bytes);
    garbage.send(b"\r\n");
    let r = garbage.reply();
    assert!(r.starts_with("500"), "{r}");

    // Meanwhile a normal client delivers.
    let (ok, log) = swaks(node.smtp_port, &["--to", "sistemas@cluster.com.ec", "--from", "a@example.org"]);
    assert!(ok, "{log}");

    let start = Instant::now();
    let r = stalled.reply();
    assert!(r.starts_with("421 4.4.2"), "{r:?}");
    let mut rest = Vec::new();
    let _ = stalled.r.read_to_end(&mut rest);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(inbox(&node, "sistemas", "pw1").len(), 1);
}
