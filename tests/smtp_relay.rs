//! Relay policy, STARTTLS and authenticated submission: no open relay, relayed mail is
//! queued durably (it survives a restart), submission needs TLS then AUTH.

mod common;
mod smtp_client;

use common::{Node, assert_ok};
use smtp_client::{Client, inbox, queue, swaks};

#[test]
fn relay_is_refused_outside_relay_from_and_queued_inside_across_a_restart() {
    let mut node = Node::builder()
        .smtp(r#"relay_from = ["127.0.0.1/32"]"#)
        .start();
    node.add_user("sistemas", "pw1");
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--local-interface",
            "127.0.0.2",
            "--to",
            "user@example.org",
            "--from",
            "x@example.net",
        ],
    );
    assert!(!ok, "relay from 127.0.0.2 must fail: {log}");
    assert!(log.contains("550 5.7.1"), "{log}");
    assert!(queue(&node).contains("0 message(s) queued"));
    // Local mail is still accepted from anywhere.
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--local-interface",
            "127.0.0.2",
            "--to",
            "sistemas@cluster.com.ec",
            "--from",
            "x@example.net",
        ],
    );
    assert!(ok, "{log}");

    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--local-interface",
            "127.0.0.1",
            "--to",
            "user@example.org",
            "--from",
            "sistemas@cluster.com.ec",
            "--header",
            "Subject: to the world",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let q = queue(&node);
    assert!(
        q.contains("to user@example.org") && q.contains("1 message(s) queued"),
        "{q}"
    );
    node.restart();
    let q = queue(&node);
    assert!(
        q.contains("to user@example.org") && q.contains("1 message(s) queued"),
        "after restart: {q}"
    );
    assert_eq!(inbox(&node, "sistemas", "pw1").len(), 1);
}

#[test]
fn rfc3207_starttls_on_port_25() {
    let node = Node::start();
    node.add_user("ana", "pw2");
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "-tls",
            "--to",
            "ana@cluster.com.ec",
            "--from",
            "a@example.org",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let msgs = inbox(&node, "ana", "pw2");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains(" with ESMTPS id "), "{}", msgs[0]);
    // No AUTH on the MX port, also after TLS.
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "-tls",
            "-a",
            "PLAIN",
            "-au",
            "ana",
            "-ap",
            "pw2",
            "--to",
            "ana@cluster.com.ec",
        ],
    );
    assert!(!ok, "{log}");
}

#[test]
fn rfc6409_submission_requires_tls_then_auth_and_relays_authenticated_mail() {
    // No relay_from at all: only authentication allows relaying here.
    let node = Node::builder().smtp("relay_from = []").start();
    node.add_user("sistemas", "pw1");
    node.add_user("ana", "pw2");
    let mut c = Client::connect(node.submission_port);
    let ehlo = c.cmd("EHLO t", "250 ");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    c.cmd("MAIL FROM:<ana@cluster.com.ec>", "530 5.7.0");
    c.cmd("AUTH PLAIN AGFuYQBwdzI=", "538 5.7.11");
    // 587 with STARTTLS + AUTH PLAIN: authenticated relay is queued.
    let (ok, log) = swaks(
        node.submission_port,
        &[
            "-tls",
            "-a",
            "PLAIN",
            "-au",
            "ana",
            "-ap",
            "pw2",
            "--to",
            "friend@example.org",
            "--from",
            "ana@cluster.com.ec",
        ],
    );
    assert!(
        ok && log.contains("235 2.7.0") && log.contains("250 2.0.0"),
        "{log}"
    );
    assert!(log.contains("AUTH PLAIN LOGIN"), "{log}");
    let q = queue(&node);
    assert!(
        q.contains("friend@example.org") && q.contains("1 message(s) queued"),
        "{q}"
    );
    // Wrong password.
    let (ok, log) = swaks(
        node.submission_port,
        &[
            "-tls",
            "-a",
            "PLAIN",
            "-au",
            "ana",
            "-ap",
            "nope",
            "--to",
            "friend@example.org",
        ],
    );
    assert!(!ok && log.contains("535 5.7.8"), "{log}");
    // 465: implicit TLS, AUTH LOGIN with the full address.
    let (ok, log) = swaks(
        node.submissions_port,
        &[
            "--tlsc",
            "-a",
            "LOGIN",
            "-au",
            "ana@cluster.com.ec",
            "-ap",
            "pw2",
            "--to",
            "sistemas@cluster.com.ec",
            "--from",
            "ana@cluster.com.ec",
            "--header",
            "Subject: via 465",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains(" with ESMTPSA id "), "{}", msgs[0]);
    // 465 without AUTH: MAIL refused.
    let (ok, log) = swaks(
        node.submissions_port,
        &["--tlsc", "--to", "sistemas@cluster.com.ec"],
    );
    assert!(!ok && log.contains("530 5.7.0"), "{log}");
}

/// Python's smtplib: STARTTLS, AUTH, then two transactions with RSET in between on
/// one connection (RFC 5321 4.1.1.5: RSET keeps the authenticated session).
#[test]
fn smtplib_sends_two_messages_after_auth_and_rset() {
    let node = Node::builder().smtp("relay_from = []").start();
    node.add_user("ana", "pw2");
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo("laptop.example.org")
s.starttls(context=ctx)
s.ehlo("laptop.example.org")
s.login("ana", "pw2")
s.sendmail("ana@cluster.com.ec", ["out@example.com"], "Subject: one\r\n\r\nfirst\r\n")
print(s.rset())
s.sendmail("ana@cluster.com.ec", ["ana@cluster.com.ec", "out2@example.com"], "Subject: two\r\n\r\nsecond\r\n")
s.quit()
print("sent")
"#;
    let out = common::python(script, &[&node.submission_port.to_string()]);
    let text = assert_ok(&out, "smtplib submission");
    assert!(
        text.contains("(250, b'2.0.0 OK')") && text.contains("sent"),
        "{text}"
    );
    let q = queue(&node);
    assert!(
        q.contains("out@example.com") && q.contains("out2@example.com"),
        "{q}"
    );
    assert!(q.contains("2 message(s) queued"), "{q}");
    let msgs = inbox(&node, "ana", "pw2");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("Subject: two"), "{}", msgs[0]);
}

/// RFC 3207 4.2: commands pipelined after STARTTLS in the clear are discarded, not
/// executed inside the TLS session (the CVE-2011-0411 class of injection).
#[test]
fn rfc3207_plaintext_pipelined_after_starttls_is_discarded() {
    let node = Node::start();
    let script = r#"
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
f = s.makefile("rb")
def reply(f):
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l)
        if len(l) < 4 or l[3] != "-":
            return "".join(lines)
reply(f)
s.sendall(b"EHLO t\r\n"); reply(f)
s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
print("starttls:", reply(f).strip())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
g = t.makefile("rb")
t.sendall(b"EHLO t\r\n")
print("ehlo:", reply(g).strip().replace("\r\n", "|"))
t.sendall(b"MAIL FROM:<a@example.org>\r\n")
print("mail:", reply(g).strip())
"#;
    let out = common::python(script, &[&node.smtp_port.to_string()]);
    let text = assert_ok(&out, "python starttls");
    assert!(text.contains("starttls: 220 2.0.0"), "{text}");
    // Had the injected MAIL run, EHLO would not be the first reply and MAIL would nest.
    assert!(text.contains("ehlo: 250-"), "{text}");
    assert!(text.contains("mail: 250 2.1.0"), "{text}");
}
