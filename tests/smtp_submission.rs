//! Submission as a mail client sees it (RFC 6409): swaks authenticates on 587 and 465;
//! a message lacking `Message-ID:` or `Date:` arrives with exactly one of each, one
//! carrying them keeps its own; the envelope sender must be one of the user's own
//! addresses (its name or an alias of it in any local domain), else `553 5.7.1` and
//! nothing is delivered. Mail on port 25 is not completed, and its sender is checked only
//! against our own domains (tests/smtp_sender_rules.rs).

mod common;
mod smtp_client;

use common::Node;
use smtp_client::{inbox, queue, swaks, swaks_submit as submit};

/// The values of every field `name` (any case) in the header section of `msg`.
fn fields(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim_end().eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_string());
        }
    }
    out.extend(current);
    out
}

#[test]
fn rfc6409_submission_gets_message_id_and_date_only_when_missing() {
    let node = Node::start();
    node.add_user("ana", "pw-ana");
    node.add_user("sistemas", "pw-sis");
    // Ana to Sistemas on 587 with `data` as the whole message.
    let send = |data: &str| {
        let (ok, log) = submit(
            &node,
            "ana",
            "pw-ana",
            &[
                "--from",
                "ana@cluster.com.ec",
                "--to",
                "sistemas@cluster.com.ec",
                "--data",
                data,
            ],
        );
        assert!(ok && log.contains("250 2.0.0"), "{log}");
    };
    // Neither field; the body has lines that look like them.
    send(
        "From: ana@cluster.com.ec\nTo: sistemas@cluster.com.ec\nSubject: sin fecha\n\nDate: in the body\nMessage-ID: <body@x>\n",
    );
    // Both present, names in other cases: kept as they are.
    send(
        "message-id: <orig-1@client.example>\nDATE: Mon, 4 Mar 2024 10:00:00 +0100\nFrom: ana@cluster.com.ec\nSubject: con fecha\n\ntexto\n",
    );
    // 465, only the Message-ID given.
    let (ok, log) = swaks(
        node.submissions_port,
        &[
            "--tlsc",
            "-a",
            "LOGIN",
            "-au",
            "ana@cluster.com.ec",
            "-ap",
            "pw-ana",
            "--from",
            "ana@cluster.com.ec",
            "--to",
            "sistemas@cluster.com.ec",
            "--data",
            "Message-Id: <orig-2@client.example>\nSubject: solo id\n\ntexto\n",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");

    let msgs = inbox(&node, "sistemas", "pw-sis");
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    let first = &msgs[0];
    let ids = fields(first, "Message-ID");
    let dates = fields(first, "Date");
    assert_eq!(ids.len(), 1, "{first}");
    assert_eq!(dates.len(), 1, "{first}");
    // `<random@hostname>`, right after our trace field.
    let id = &ids[0];
    assert!(
        id.starts_with('<') && id.ends_with("@clusternodo1.cluster.com.ec>") && id.len() > 40,
        "{first}"
    );
    assert!(!id.contains("body@x"), "{first}");
    assert!(first.starts_with("Received: "), "{first}");
    let at = first.find("\r\nMessage-ID: <").expect("added Message-ID");
    assert!(
        first[..at]
            .split("\r\n")
            .skip(1)
            .all(|l| l.starts_with('\t')),
        "not right after the trace field: {first}"
    );
    assert!(
        first[at..].starts_with(&format!("\r\nMessage-ID: {id}\r\nDate: ")),
        "{first}"
    );
    // An RFC 5322 date with a numeric zone.
    assert!(
        chrono::DateTime::parse_from_rfc2822(&dates[0]).is_ok(),
        "{}",
        dates[0]
    );
    assert!(
        first.contains("\r\n\r\nDate: in the body\r\nMessage-ID: <body@x>\r\n"),
        "{first}"
    );

    let second = &msgs[1];
    assert_eq!(
        fields(second, "Message-ID"),
        vec!["<orig-1@client.example>"],
        "{second}"
    );
    assert_eq!(
        fields(second, "Date"),
        vec!["Mon, 4 Mar 2024 10:00:00 +0100"],
        "{second}"
    );
    assert!(
        second.contains(
            "\r\nmessage-id: <orig-1@client.example>\r\nDATE: Mon, 4 Mar 2024 10:00:00 +0100\r\n"
        ),
        "{second}"
    );

    let third = &msgs[2];
    assert_eq!(
        fields(third, "Message-ID"),
        vec!["<orig-2@client.example>"],
        "{third}"
    );
    assert_eq!(fields(third, "Date").len(), 1, "{third}");
}

#[test]
fn mail_on_port_25_is_not_completed() {
    let node = Node::start();
    node.add_user("sistemas", "pw-sis");
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--from",
            "someone@example.org",
            "--to",
            "sistemas@cluster.com.ec",
            "--data",
            "From: someone@example.org\nSubject: sin cabeceras\n\ntexto\n",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let msgs = inbox(&node, "sistemas", "pw-sis");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(fields(&msgs[0], "Date").is_empty(), "{}", msgs[0]);
    assert!(fields(&msgs[0], "Message-ID").is_empty(), "{}", msgs[0]);
}

#[test]
fn authenticated_sender_must_be_one_of_the_users_addresses() {
    // No relay_from: remote recipients only after AUTH.
    let node = Node::builder().smtp("relay_from = []").start();
    node.add_user("ana", "pw-ana");
    node.add_user("sistemas", "pw-sis");
    let refused = "553 5.7.1 Sender address not owned by user ana";
    // Another user's address, a foreign domain, the null sender: refused at MAIL,
    // and the transaction never starts (RCPT is out of sequence).
    for from in ["sistemas@cluster.com.ec", "ana@example.org", "<>"] {
        let (ok, log) = submit(
            &node,
            "ana",
            "pw-ana",
            &[
                "--from",
                from,
                "--to",
                "sistemas@cluster.com.ec",
                "--to",
                "friend@example.org",
            ],
        );
        assert!(!ok && log.contains(refused), "{from}: {log}");
        assert!(!log.contains("250 2.1.5"), "{from}: {log}");
    }
    // 465 the same.
    let (ok, log) = swaks(
        node.submissions_port,
        &[
            "--tlsc",
            "-a",
            "PLAIN",
            "-au",
            "ana",
            "-ap",
            "pw-ana",
            "--from",
            "postmaster@cluster.com.ec",
            "--to",
            "sistemas@cluster.com.ec",
        ],
    );
    assert!(!ok && log.contains(refused), "{log}");
    assert_eq!(inbox(&node, "sistemas", "pw-sis").len(), 0);
    let q = queue(&node);
    assert!(!q.contains("friend@example.org"), "{q}");

    // Own addresses: the name in any case and in each local domain, and an alias.
    for (user, pw, from) in [
        ("ana", "pw-ana", "ANA@Cluster.com.ec"),
        ("ana", "pw-ana", "ana@clusternodo1.cluster.com.ec"),
        ("sistemas", "pw-sis", "Postmaster@CLUSTER.COM.EC"),
    ] {
        let (ok, log) = submit(
            &node,
            user,
            pw,
            &[
                "--from",
                from,
                "--to",
                "ana@cluster.com.ec",
                "--header",
                &format!("Subject: from {from}"),
            ],
        );
        assert!(ok && log.contains("250 2.0.0"), "{from}: {log}");
    }
    let msgs = inbox(&node, "ana", "pw-ana");
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(
        msgs[2].contains("Subject: from Postmaster@CLUSTER.COM.EC"),
        "{}",
        msgs[2]
    );

    // Port 25 from outside relay_from (empty here): an address of ours as the sender
    // is refused (tests/smtp_sender_rules.rs); the null sender and other domains are
    // not checked against any account.
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--from",
            "sistemas@cluster.com.ec",
            "--to",
            "ana@cluster.com.ec",
        ],
    );
    assert!(!ok && log.contains("550 5.7.1"), "{log}");
    for from in ["someone@example.org", "<>"] {
        let (ok, log) = swaks(
            node.smtp_port,
            &["--from", from, "--to", "ana@cluster.com.ec"],
        );
        assert!(ok && log.contains("250 2.0.0"), "{from}: {log}");
    }
    assert_eq!(inbox(&node, "ana", "pw-ana").len(), 5);
}

#[test]
fn relay_from_clients_on_port_25_are_not_sender_checked() {
    // The default relay_from is loopback: relaying by IP, no AUTH, any sender.
    let node = Node::start();
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--from",
            "sistemas@cluster.com.ec",
            "--to",
            "friend@example.org",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let q = queue(&node);
    assert!(q.contains("friend@example.org"), "{q}");
}
