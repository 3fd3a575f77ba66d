//! Who may send as whom, and where a message ends (issue 16's sender rules):
//! - only `CRLF . CRLF` ends DATA: a `.` line next to a bare LF is the SMTP
//!   smuggling primitive, and the message carrying one is refused whole (what follows
//!   it is never run as commands);
//! - on port 25 a sender address in one of our own domains is accepted only from
//!   `smtp.relay_from` (else `550 5.7.1`): nobody outside mails the staff "from" the
//!   director;
//! - on submission the header From must be addresses of the authenticated account
//!   (its name or its aliases, as the envelope already is), else `553 5.7.1`; the
//!   `Received` field names the account ("authenticated as", as the webmail's).

mod common;
mod smtp_client;

use common::Node;
use smtp_client::{Client, inbox, swaks, swaks_submit};

const TO: &str = "sistemas@cluster.com.ec";

/// A session on `port` up to DATA's 354.
fn open_data(port: u16, from: &str) -> Client {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.example.org", "250");
    c.cmd(&format!("MAIL FROM:<{from}>"), "250");
    c.cmd(&format!("RCPT TO:<{TO}>"), "250");
    c.cmd("DATA", "354");
    c
}

#[test]
fn only_crlf_dot_crlf_ends_data_and_smuggled_commands_never_run() {
    let node = Node::start();
    node.add_user("sistemas", "pw");
    for (n, end) in ["\n.\n", "\r\n.\n", "\n.\r\n"].into_iter().enumerate() {
        let mut c = open_data(node.smtp_port, "a@example.org");
        let smuggled = format!(
            "Subject: carrier {n}\r\n\r\nbody{end}MAIL FROM:<director@cluster.com.ec>\r\n\
             RCPT TO:<{TO}>\r\nDATA\r\nSubject: smuggled {n}\r\n\r\nfake\r\n.\r\n"
        );
        c.send(smuggled.as_bytes());
        // One reply for the whole DATA: refused.
        let r = c.reply();
        assert!(r.starts_with("550 5.5.2"), "{end:?}: {r}");
        // The session goes on: the next command gets its own reply.
        c.cmd("NOOP", "250");
        c.cmd("QUIT", "221");
    }
    // A message with bare LFs inside lines and a proper end is still accepted.
    let mut c = open_data(node.smtp_port, "a@example.org");
    c.send(b"Subject: bare lf inside\r\n\r\nline one\nline two\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}");
    let mail = inbox(&node, "sistemas", "pw");
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].contains("line one\r\nline two\r\n"), "{}", mail[0]);
    assert!(!mail.iter().any(|m| m.contains("smuggled")), "{mail:?}");
}

#[test]
fn our_domain_as_sender_on_port_25_only_from_relay_from() {
    // 127.0.0.1 is outside relay_from: a stranger on the Internet.
    let node = Node::builder()
        .smtp("relay_from = [\"192.0.2.1/32\"]")
        .start();
    node.add_user("sistemas", "pw");
    for from in [
        "director@cluster.com.ec",
        "Director@CLUSTER.COM.EC",
        "nobody@cluster.com.ec",
    ] {
        let mut c = Client::connect(node.smtp_port);
        c.cmd("EHLO client.example.org", "250");
        c.cmd(&format!("MAIL FROM:<{from}>"), "550 5.7.1");
        c.cmd("QUIT", "221");
    }
    // Other domains, and bounces, still come in.
    let (ok, log) = swaks(node.smtp_port, &["--to", TO, "--from", "a@example.org"]);
    assert!(ok, "{log}");
    let (ok, log) = swaks(node.smtp_port, &["--to", TO, "--from", ""]);
    assert!(ok, "{log}");
    assert_eq!(inbox(&node, "sistemas", "pw").len(), 2);

    // From relay_from (the default: loopback) our own domain is fine.
    let node = Node::start();
    node.add_user("sistemas", "pw");
    let (ok, log) = swaks(
        node.smtp_port,
        &["--to", TO, "--from", "director@cluster.com.ec"],
    );
    assert!(ok, "{log}");
}

#[test]
fn submission_header_from_must_be_the_users_and_received_names_the_account() {
    let node = Node::builder()
        .domain("aliases = { ventas = \"ana\" }")
        .start();
    node.add_user("ana", "pw-ana");
    node.add_user("sistemas", "pw");
    let submit = |header_from: &str| {
        swaks_submit(
            &node,
            "ana",
            "pw-ana",
            &[
                "--from",
                "ana@cluster.com.ec",
                "--to",
                TO,
                "--header",
                &format!("From: {header_from}"),
                "--header",
                &format!("Subject: as {header_from}"),
            ],
        )
    };
    for theirs in [
        "sistemas@cluster.com.ec",
        "\"Ana\" <ana@cluster.com.ec>, sistemas@cluster.com.ec",
        "director@example.org",
    ] {
        let (ok, log) = submit(theirs);
        assert!(!ok, "{theirs}: {log}");
        assert!(log.contains("553 5.7.1"), "{theirs}: {log}");
    }
    for own in [
        "ana@cluster.com.ec",
        "\"Ana B.\" <ANA@cluster.com.ec>",
        "Ventas <ventas@cluster.com.ec>",
    ] {
        let (ok, log) = submit(own);
        assert!(ok, "{own}: {log}");
    }
    let mail = inbox(&node, "sistemas", "pw");
    assert_eq!(mail.len(), 3, "{mail:?}");
    for m in &mail {
        let received = m.split("\r\n\r\n").next().unwrap().to_string();
        assert!(received.contains("(authenticated as ana)"), "{received}");
    }
}
