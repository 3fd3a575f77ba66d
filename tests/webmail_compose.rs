//! The webmail's sending side end to end: real HTTP requests (Python's urllib, see
//! webmail_compose.py) against the running binary, results read back over IMAP
//! (imaplib) and from the outbound queue (`clusterd queue`); the autocomplete script
//! in headless Chromium (Playwright). Screenshots land in
//! `target/tmp/webmail-artifacts/`.

mod common;

use common::{Node, assert_ok, python};

const SCRIPT: &str = include_str!("webmail_compose.py");

fn node_with_users(smtp: &str) -> Node {
    let node = Node::builder().smtp(smtp).start();
    for (u, pw) in [("ana", "pw-ana"), ("luis", "pw-luis"), ("pepe", "pw-pepe")] {
        node.add_user(u, pw);
    }
    node
}

/// Screenshots of the Chromium scenario are kept here as test artifacts.
fn artifacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("webmail-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

fn run(node: &Node, scenario: &str) -> String {
    let out = python(
        SCRIPT,
        &[
            scenario,
            &node.http_port.to_string(),
            &node.imap_port.to_string(),
            common::s(&artifacts()),
        ],
    );
    let text = format!(
        "{}\n--- node log (tail)\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log_text()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "scenario {scenario} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn queue(node: &Node) -> String {
    assert_ok(&node.cli(&["queue"], None), "clusterd queue")
}

#[test]
fn send_reply_forward_attachments_and_drafts_through_the_smtp_delivery_path() {
    let node = node_with_users("");
    let out = run(&node, "mail");
    assert!(out.contains("mail scenario ok"), "{out}");
    // The remote Cc went to the outbound queue, with the account as envelope sender
    // (and only there: local recipients are never queued). The test node's outbound
    // DNS is a closed port, so it stays there, deferred (a `.invalid` domain would be
    // refused at once by the resolver, RFC 6761, and bounce).
    let q = queue(&node);
    assert!(q.contains("1 message(s) queued"), "{q}");
    assert!(
        q.contains("from <ana@cluster.com.ec> to amigo@example.org"),
        "{q}"
    );
}

#[test]
fn unknown_recipients_bad_tokens_and_oversize_messages_send_nothing() {
    let node = node_with_users("max_message_bytes = 200000");
    let out = run(&node, "errors");
    assert!(out.contains("errors scenario ok"), "{out}");
    let q = queue(&node);
    assert!(q.contains("0 message(s) queued"), "{q}");
}

#[test]
fn address_book_add_edit_delete_and_suggestions() {
    let node = node_with_users("");
    let out = run(&node, "contacts");
    assert!(out.contains("contacts scenario ok"), "{out}");
}

#[test]
fn autocomplete_script_completes_addresses_in_chromium() {
    common::require_tool("chromium");
    let node = node_with_users("");
    let out = run(&node, "autocomplete");
    assert!(out.contains("autocomplete scenario ok"), "{out}");
}
