//! Storage quotas (RFC 9208) as clients see them: swaks is refused at RCPT with
//! `552 5.2.2` for a full account and at DATA for a message that would not fit, while
//! the other recipients still get the message; Python's imaplib reads usage and limit
//! with GETQUOTAROOT/GETQUOTA and gets `NO [OVERQUOTA]` for APPEND and COPY beyond the
//! quota; the administrator sets and clears an account's own quota with
//! `clusterd user quota`.

mod common;
mod smtp_client;

use common::{Node, assert_ok, imap_count, python};
use smtp_client::swaks;

/// Appends one message of `size` bytes, then runs the quota commands; prints one
/// line per response.
const IMAP: &str = r#"
import imaplib, sys
port, user, pw, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
m = imaplib.IMAP4("127.0.0.1", port)
m.login(user, pw)
typ, caps = m.capability()
print("CAPS", caps[0].decode())
if size > 0:
    body = b"From: a@example.org\r\nSubject: big\r\n\r\n" + b"x" * size + b"\r\n"
    typ, data = m.append("INBOX", None, None, body)
    print("APPEND", typ, data[0].decode())
typ, data = m._simple_command("GETQUOTAROOT", "INBOX")
print("GETQUOTAROOT", typ)
for name in ("QUOTAROOT", "QUOTA"):
    for d in m.untagged_responses.pop(name, []):
        print(name, d.decode() if isinstance(d, bytes) else d)
typ, data = m._simple_command("GETQUOTA", '""')
print("GETQUOTA", typ, data[0].decode() if data and data[0] else "")
for d in m.untagged_responses.pop("QUOTA", []):
    print("QUOTA", d.decode() if isinstance(d, bytes) else d)
typ, data = m._simple_command("SETQUOTA", '""', "(STORAGE 99999)")
print("SETQUOTA", typ, data[0].decode())
m.select("INBOX")
typ, data = m.copy("1:*", "Trash")
print("COPY", typ, data[0].decode())
m.logout()
"#;

fn imap(node: &Node, user: &str, size: usize) -> String {
    let out = python(
        IMAP,
        &[&node.imap_port.to_string(), user, "pw", &size.to_string()],
    );
    assert_ok(&out, "imaplib quota script")
}

fn quota_cli(node: &Node, args: &[&str]) -> String {
    let mut all = vec!["user", "quota"];
    all.extend_from_slice(args);
    assert_ok(&node.cli(&all, None), "clusterd user quota")
}

fn send(node: &Node, to: &str, body: &str) -> (bool, String) {
    swaks(
        node.smtp_port,
        &[
            "--to",
            to,
            "--from",
            "sender@example.org",
            "--ehlo",
            "client.example.org",
            "--body",
            body,
        ],
    )
}

#[test]
fn an_account_over_its_quota_is_refused_and_the_others_still_receive() {
    let node = Node::builder()
        .extra("[store]\ndefault_quota_mb = 1\ngc_interval_s = 0\n")
        .start();
    for u in ["ana", "bob", "carl"] {
        node.add_user(u, "pw");
    }

    // ana fills her mailbox beyond the default 1 MiB while she has no quota (the
    // message and its copy in Trash), then gets the default back.
    assert!(quota_cli(&node, &["ana", "0"]).contains("no quota"));
    let out = imap(&node, "ana", 1_200_000);
    assert!(
        out.contains("APPEND OK") && out.contains("COPY OK"),
        "{out}"
    );
    assert!(quota_cli(&node, &["ana", "default"]).contains("default quota"));
    let shown = quota_cli(&node, &["ana"]);
    assert!(shown.contains("quota 1024 KiB"), "{shown}");

    // IMAP: the capability, her usage and limit, APPEND and COPY refused.
    let out = imap(&node, "ana", 10);
    assert!(
        out.contains("QUOTA") && out.contains("QUOTA=RES-STORAGE"),
        "{out}"
    );
    assert!(out.contains("APPEND NO [OVERQUOTA]"), "{out}");
    assert!(out.contains("QUOTAROOT \"INBOX\" \"\""), "{out}");
    let storage = out
        .lines()
        .find_map(|l| l.strip_prefix("QUOTA \"\" (STORAGE "))
        .unwrap_or_else(|| panic!("no QUOTA response: {out}"));
    let nums: Vec<u64> = storage
        .trim_end_matches(')')
        .split(' ')
        .map(|n| n.parse().expect("number"))
        .collect();
    assert!(
        nums[0] >= 2_400_000 / 1024 && nums[0] < 2_500_000 / 1024,
        "{out}"
    );
    assert_eq!(nums[1], 1024, "{out}");
    assert!(out.contains("GETQUOTA OK"), "{out}");
    assert!(out.contains("SETQUOTA NO"), "{out}");
    assert!(out.contains("COPY NO [OVERQUOTA]"), "{out}");

    // SMTP: refused at RCPT for ana; bob, under his quota, still receives, also in
    // the same transaction.
    let (ok, log) = send(&node, "ana@cluster.com.ec", "to a full mailbox");
    assert!(!ok && log.contains("552 5.2.2"), "{log}");
    let (ok, log) = send(&node, "bob@cluster.com.ec", "to bob");
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let (ok, log) = send(
        &node,
        "ana@cluster.com.ec,bob@cluster.com.ec",
        "to both, one full",
    );
    assert!(
        log.contains("552 5.2.2") && log.contains("250 2.0.0"),
        "{ok} {log}"
    );
    assert_eq!(imap_count(node.imap_port, "ana", "pw", "INBOX"), 1);
    assert_eq!(imap_count(node.imap_port, "bob", "pw", "INBOX"), 2);

    // carl is near his quota: a message that fits is taken, one that does not is
    // refused at DATA (his RCPT passed: no SIZE was announced), and with bob as a
    // second recipient it goes to bob only, the sender told by a DSN.
    let out = imap(&node, "carl", 900_000);
    assert!(out.contains("APPEND OK"), "{out}");
    let big_file = node.dir.path().join("big.txt");
    std::fs::write(&big_file, format!("{}\n", "y".repeat(76)).repeat(2700)).unwrap();
    let big = format!("@{}", big_file.display());
    let (ok, log) = send(&node, "carl@cluster.com.ec", &big);
    assert!(!ok && log.contains("552 5.2.2"), "{log}");
    let (ok, log) = send(&node, "carl@cluster.com.ec", "small enough");
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    let (ok, log) = send(&node, "carl@cluster.com.ec,bob@cluster.com.ec", &big);
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    assert_eq!(imap_count(node.imap_port, "carl", "pw", "INBOX"), 2);
    assert_eq!(imap_count(node.imap_port, "bob", "pw", "INBOX"), 3);
    let queue = assert_ok(&node.cli(&["queue", "list", "--json"], None), "queue list");
    assert!(
        queue.contains("sender@example.org"),
        "no DSN queued for the sender: {queue}"
    );

    // An account with no limit has no quota root.
    assert!(quota_cli(&node, &["bob", "0"]).contains("no quota"));
    let out = imap(&node, "bob", 0);
    assert!(out.contains("QUOTAROOT \"INBOX\"\n"), "{out}");
    assert!(out.contains("GETQUOTA NO"), "{out}");
}
