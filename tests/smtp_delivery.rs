//! Local delivery as clients see it: swaks and raw sessions deliver, Python's imaplib
//! reads the result (headers incl. Received, body) from INBOX.

mod common;
mod smtp_client;

use common::Node;
use smtp_client::{Client, inbox, queue, swaks};
use std::time::Duration;

#[test]
fn swaks_delivers_to_a_user_and_to_postmaster_via_alias_and_imap_reads_it() {
    let node = Node::start();
    node.add_user("sistemas", "pw1");
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--to",
            "sistemas@cluster.com.ec",
            "--from",
            "ana@example.org",
            "--ehlo",
            "client.example.org",
            "--header",
            "Subject: hola sistemas",
            "--body",
            "cuerpo del mensaje",
        ],
    );
    assert!(ok && log.contains("250 2.0.0 OK"), "{log}");
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--to",
            "Postmaster@CLUSTER.com.ec",
            "--from",
            "ana@example.org",
            "--header",
            "Subject: alias",
        ],
    );
    assert!(ok, "{log}");
    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let first = &msgs[0];
    // RFC 5321 4.4: the trace header comes first.
    assert!(
        first.starts_with("Received: from client.example.org ([127.0.0.1])\r\n"),
        "{first}"
    );
    assert!(
        first.contains("by clusternodo1.cluster.com.ec (clusterd) with ESMTP id "),
        "{first}"
    );
    assert!(first.contains("for <sistemas@cluster.com.ec>;"), "{first}");
    assert!(first.contains("Subject: hola sistemas"), "{first}");
    assert!(first.contains("From: ana@example.org"), "{first}");
    assert!(first.contains("\r\n\r\ncuerpo del mensaje"), "{first}");
    assert!(
        msgs[1].contains("To: Postmaster@CLUSTER.com.ec"),
        "{}",
        msgs[1]
    );
    assert!(msgs[1].contains("Subject: alias"), "{}", msgs[1]);
}

#[test]
fn rfc5321_unknown_local_user_is_550_5_1_1_and_oversize_is_552_5_3_4() {
    let node = Node::builder().smtp("max_message_bytes = 2000").start();
    node.add_user("sistemas", "pw1");
    let (ok, log) = swaks(
        node.smtp_port,
        &["--to", "nadie@cluster.com.ec", "--from", "a@example.org"],
    );
    assert!(!ok && log.contains("550 5.1.1"), "{log}");
    // Over-size found while receiving DATA (swaks does not announce SIZE).
    let big = "x".repeat(3000);
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--to",
            "sistemas@cluster.com.ec",
            "--from",
            "a@example.org",
            "--body",
            &big,
        ],
    );
    assert!(!ok && log.contains("552 5.3.4"), "{log}");
    // RFC 1870: an announced size over the limit is refused at MAIL.
    let mut c = Client::connect(node.smtp_port);
    let ehlo = c.cmd("EHLO t", "250 ");
    assert!(ehlo.contains("250-SIZE 2000\r\n"), "{ehlo}");
    c.cmd("MAIL FROM:<a@example.org> SIZE=999999", "552 5.3.4");
    // A DATA line longer than the whole limit: 552, and the session goes on.
    c.cmd("MAIL FROM:<a@example.org> SIZE=100", "250 2.1.0");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "250 2.1.5");
    c.cmd("DATA", "354");
    c.send(&vec![b'y'; 100_000]);
    c.send(b"\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("552 5.3.4"), "{r}");
    c.cmd("NOOP", "250 2.0.0");
    assert!(inbox(&node, "sistemas", "pw1").is_empty());
}

#[test]
fn null_sender_bounces_are_accepted() {
    let node = Node::start();
    node.add_user("sistemas", "pw1");
    let mut c = Client::connect(node.smtp_port);
    c.cmd("EHLO mx.example.org", "250 ");
    c.cmd("MAIL FROM:<>", "250 2.1.0");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "250 2.1.5");
    c.cmd("DATA", "354 ");
    c.send(b"Subject: Undelivered Mail Returned to Sender\r\n\r\nbounce\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r}");
    c.cmd("QUIT", "221 2.0.0");
    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("Subject: Undelivered Mail"), "{}", msgs[0]);
}

#[test]
fn long_text_lines_and_dot_stuffing_arrive_intact() {
    let node = Node::start();
    node.add_user("sistemas", "pw1");
    let long = "z".repeat(5000);
    let mut c = Client::connect(node.smtp_port);
    c.cmd("EHLO t", "250 ");
    c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME", "250");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "250");
    c.cmd("DATA", "354");
    // RFC 5321 4.5.2 transparency; a bare-LF line; an 8-bit line; a 5000-octet line.
    let body = format!(
        "Subject: long\r\n\r\n..starts with a dot\r\nbare lf\n{long}\r\n\u{e1}rbol\r\n.\r\n"
    );
    c.send(body.as_bytes());
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert!(m.contains("\r\n.starts with a dot\r\nbare lf\r\n"), "{m}");
    assert!(m.contains(&format!("\r\n{long}\r\n")), "long line lost");
    assert!(m.contains("\u{e1}rbol"), "{m}");
}

#[test]
fn rfc2920_pipelined_transaction_gets_all_replies_in_order() {
    let node = Node::builder()
        .smtp(r#"relay_from = ["127.0.0.1/32"]"#)
        .start();
    node.add_user("sistemas", "pw1");
    let mut c = Client::connect(node.smtp_port);
    let ehlo = c.cmd("EHLO client.example.org", "250 ");
    for ext in [
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(!ehlo.contains("AUTH"), "no AUTH on port 25: {ehlo}");
    // One write: envelope with a local, an unknown and a remote recipient, then DATA.
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<sistemas@cluster.com.ec>\r\nRCPT TO:<nadie@cluster.com.ec>\r\nRCPT TO:<friend@example.net>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("550 5.1.1"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("354"));
    c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<b@example.org>\r\nQUIT\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    assert!(c.reply().starts_with("250 2.0.0"));
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("221 2.0.0"));
    assert!(c.closed());
    // The local copy is delivered and the remote one queued, from the same message.
    let msgs = inbox(&node, "sistemas", "pw1");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("Subject: piped"), "{}", msgs[0]);
    let q = queue(&node);
    assert!(
        q.contains("friend@example.net") && q.contains("1 message(s) queued"),
        "{q}"
    );

    // swaks with PIPELINING.
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--pipeline",
            "--to",
            "sistemas@cluster.com.ec",
            "--from",
            "p@example.org",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    assert_eq!(inbox(&node, "sistemas", "pw1").len(), 2);
}

/// With `require_resolvable_sender`, local and null senders need no DNS (the tests have
/// no outside DNS, so only the exemptions are checked here).
#[test]
fn resolvable_sender_check_exempts_local_domains_and_bounces() {
    let node = Node::builder()
        .smtp("require_resolvable_sender = true")
        .start();
    node.add_user("sistemas", "pw1");
    let mut c = Client::connect(node.smtp_port);
    c.cmd("EHLO t", "250 ");
    c.cmd("MAIL FROM:<root@clusternodo2.cluster.com.ec>", "250 2.1.0");
    c.cmd("RSET", "250");
    c.cmd("MAIL FROM:<>", "250 2.1.0");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "250 2.1.5");
    c.cmd("QUIT", "221");
}

/// How many body files the node holds (`blobs/<2 hex>/<64 hex>`).
fn blob_count(node: &Node) -> usize {
    let mut n = 0;
    for fan in std::fs::read_dir(node.data_dir.join("blobs")).expect("blobs") {
        let fan = fan.expect("dir entry").path();
        if fan.file_name().is_some_and(|f| f != "tmp") && fan.is_dir() {
            n += std::fs::read_dir(&fan).expect("fan dir").count();
        }
    }
    n
}

/// `n` bytes of message text: a header, then 78-octet lines, some starting with a dot
/// (sent dot-stuffed).
fn body_lines(n: usize) -> Vec<u8> {
    let mut out = b"Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n".to_vec();
    let mut i = 0u64;
    while out.len() < n {
        let lead = if i.is_multiple_of(7) { ".." } else { "" };
        out.extend_from_slice(format!("{lead}{i:010} {}\r\n", "b".repeat(64)).as_bytes());
        i += 1;
    }
    out
}

/// Issue 14: DATA goes to its body file while it arrives (a file in `blobs/tmp` grows
/// before the end of data: this failed before, when the body was kept in memory to
/// the end); a session closed mid-DATA, and a message over the limit (552), leave no
/// file behind and nothing stored.
#[test]
fn data_is_written_while_it_arrives_and_abandoned_or_oversize_data_leaves_nothing() {
    let node = Node::builder().smtp("max_message_bytes = 300000").start();
    node.add_user("sistemas", "pw1");
    let blobs_before = blob_count(&node);
    let start = |node: &Node| {
        let mut c = Client::connect(node.smtp_port);
        c.cmd("EHLO t", "250 ");
        c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0");
        c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "250 2.1.5");
        c.cmd("DATA", "354");
        c
    };
    let mut c = start(&node);
    c.send(&body_lines(250_000));
    assert!(
        common::within(Duration::from_secs(20), || node
            .spool_files()
            .iter()
            .any(|(_, n)| *n >= 64 * 1024)),
        "no body file grew in blobs/tmp while DATA arrived: {:?}",
        node.spool_files()
    );
    drop(c);
    assert!(
        common::within(Duration::from_secs(20), || node.spool_files().is_empty()),
        "a session closed mid-DATA left {:?}",
        node.spool_files()
    );

    let mut c = start(&node);
    c.send(&body_lines(600_000));
    c.send(b".\r\n");
    let r = c.reply();
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(node.spool_files().is_empty(), "{:?}", node.spool_files());
    c.cmd("NOOP", "250 2.0.0");
    // The session goes on: a message within the limit is taken.
    c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0");
    c.cmd("RCPT TO:<sistemas@cluster.com.ec>", "250 2.1.5");
    c.cmd("DATA", "354");
    c.send(&body_lines(200_000));
    c.send(b".\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(blob_count(&node), blobs_before + 1);
    assert!(node.spool_files().is_empty(), "{:?}", node.spool_files());
    assert_eq!(inbox(&node, "sistemas", "pw1").len(), 1);
}

/// A 3 MB message from Python's smtplib (dot-stuffed lines, a long line, 8-bit text)
/// to a local and a remote recipient is stored byte for byte as sent after our
/// `Received:` field, in one body file named by its SHA-256 that the INBOX copy and
/// the queue entry share.
#[test]
fn a_large_message_is_stored_byte_identical_in_one_shared_file() {
    let node = Node::builder().smtp("max_message_bytes = 10000000").start();
    node.add_user("sistemas", "pw1");
    let blobs_before = blob_count(&node);
    let script = r#"
import hashlib, imaplib, os, smtplib, sys
port, imap_port, data = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lines = [b'Subject: large', b'Message-ID: <large@example.org>', b'']
i = 0
while sum(len(l) + 2 for l in lines) < 3_000_000:
    lines.append((b'.' if i % 5 == 0 else b'') + (b'%08d ' % i) + ('\u00e1rbol '.encode() * 9))
    if i == 1000:
        lines.append(b'z' * 20000)
    i += 1
msg = b'\r\n'.join(lines) + b'\r\n'
s = smtplib.SMTP('127.0.0.1', port)
s.sendmail('a@example.org', ['sistemas@cluster.com.ec', 'friend@example.net'], msg)
s.quit()
m = imaplib.IMAP4('127.0.0.1', imap_port)
m.login('sistemas', 'pw1')
m.select('INBOX')
typ, d = m.fetch('1', '(RFC822)')
got = d[0][1]
assert got.startswith(b'Received: from '), got[:200]
assert got.endswith(msg) and len(got) - len(msg) < 400, (len(got), len(msg))
found = []
for fan in os.listdir(os.path.join(data, 'blobs')):
    if fan == 'tmp':
        continue
    for name in os.listdir(os.path.join(data, 'blobs', fan)):
        body = open(os.path.join(data, 'blobs', fan, name), 'rb').read()
        assert hashlib.sha256(body).hexdigest() == name, name
        if body == got:
            found.append(name)
assert len(found) == 1, found
print(found[0], len(got))
"#;
    let out = common::python(
        script,
        &[
            &node.smtp_port.to_string(),
            &node.imap_port.to_string(),
            common::s(&node.data_dir),
        ],
    );
    let text = common::assert_ok(&out, "smtplib and imaplib");
    let stored_len = text.split_whitespace().nth(1).unwrap_or("?").to_string();
    // One new file for both: the queue entry names the INBOX copy's body.
    assert_eq!(blob_count(&node), blobs_before + 1, "{text}");
    let q = queue(&node);
    assert!(
        q.contains("friend@example.net") && q.contains(&format!(" {stored_len} bytes ")),
        "{q}"
    );
}
