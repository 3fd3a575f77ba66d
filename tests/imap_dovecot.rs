//! Differential test against Dovecot (Debian's dovecot-imapd 2.3). The test starts a
//! private Dovecot in a temporary directory on a loopback port, and clusterd. Every
//! message in tests/corpus/ (multipart/mixed with attachments, nested message/rfc822,
//! alternative, RFC 2047 headers, malformed MIME, ...) is appended to both. Then, for
//! every message, ENVELOPE, BODYSTRUCTURE, BODY and a set of BODY[...] sections
//! (among them BODY[1.2.MIME] and BODY[TEXT]<0.100>) are fetched from both, and more
//! than 60 SEARCH commands are run on both; every answer must match Dovecot's.
//!
//! The client is tests/imap_dovecot.py (Python's imaplib, with its own IMAP response
//! parser); it compares the parsed responses and prints every difference. The only
//! normalisation is case folding where RFC 3501 makes case irrelevant (MIME type and
//! subtype, parameter names, transfer encoding, disposition type, FETCH item names);
//! see the comments in the script.
//!
//! `dovecot_agrees_with_itself` checks the harness: two mailboxes on the same Dovecot
//! must give identical answers, so a failure of the clusterd comparison is never the
//! harness's own noise.
//!
//! `session_state_matches_dovecot` runs tests/imap_dovecot_state.py: three sessions
//! on one INBOX, step by step on both servers (first Dovecot against itself, then
//! clusterd against Dovecot), comparing RECENT in SELECT/EXAMINE and new-mail updates,
//! STATUS (MESSAGES RECENT UIDNEXT UNSEEN), SEARCH NEW/OLD/RECENT, FETCH FLAGS with
//! `\Recent`, the untagged FLAGS/PERMANENTFLAGS after a new keyword, CREATE with a
//! trailing separator, LSUB `\Noselect` and the answers to odd mailbox names, quoted
//! and not (its normalisation is described in the script). The private Dovecot uses
//! `/` as its hierarchy separator, as clusterd does.
//!
//! `condstore_and_qresync_match_dovecot` compares CONDSTORE/QRESYNC answers after the
//! same changes (tests/imap_dovecot_condstore.py; MODSEQ numbers are normalised away).
//!
//! Set CLUSTERD_DIFF_REPORT=/some/file to also keep the difference report in a file.

mod common;

use common::dovecot::Dovecot;
use common::{Node, python, require_tool};
use std::path::{Path, PathBuf};

/// The comparison client (Python 3 standard library only).
const SCRIPT: &str = include_str!("imap_dovecot.py");

/// The script's exit status when the servers differ (the report is on stdout).
const MISMATCH_EXIT: i32 = 10;

/// Every account gets this password, on both servers.
const PASSWORD: &str = "secret";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// One side of the comparison: a label for the report, a port and an account.
struct Side<'a> {
    label: &'a str,
    port: u16,
    user: &'a str,
}

/// Runs the comparison script; returns its stdout when everything matched, panics
/// with the full report otherwise. `context` is appended to harness failures.
fn compare(a: Side, b: Side, context: &dyn Fn() -> String) -> String {
    require_tool("python3");
    let corpus = corpus_dir();
    let out = python(
        SCRIPT,
        &[
            corpus.to_str().unwrap(),
            a.label,
            &a.port.to_string(),
            a.user,
            PASSWORD,
            b.label,
            &b.port.to_string(),
            b.user,
            PASSWORD,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    match out.status.code() {
        Some(0) => stdout,
        Some(MISMATCH_EXIT) => {
            if let Ok(path) = std::env::var("CLUSTERD_DIFF_REPORT") {
                std::fs::write(&path, &stdout).expect("write CLUSTERD_DIFF_REPORT");
            }
            panic!(
                "{} differs from {} (reference) on the corpus in {}:\n\n{stdout}{stderr}",
                b.label,
                a.label,
                corpus.display()
            )
        }
        _ => panic!(
            "the comparison script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n{}",
            out.status,
            context()
        ),
    }
}

#[test]
fn dovecot_agrees_with_itself() {
    let dovecot = Dovecot::start(&["ana", "bob"], PASSWORD);
    let out = compare(
        Side {
            label: "dovecot",
            port: dovecot.port,
            user: "ana",
        },
        Side {
            label: "dovecot-again",
            port: dovecot.port,
            user: "bob",
        },
        &|| dovecot.logs(),
    );
    println!("{out}");
    assert!(out.contains("ALL EQUAL"), "{out}");
}

/// The session-state comparison (see the module documentation).
const STATE_SCRIPT: &str = include_str!("imap_dovecot_state.py");

/// Runs the session-state script with `reference` and `other` (label, port, user);
/// returns its report, and whether everything matched.
fn compare_state(reference: (&str, u16, &str), other: (&str, u16, &str)) -> (String, bool) {
    require_tool("python3");
    let out = python(
        STATE_SCRIPT,
        &[
            reference.0,
            &reference.1.to_string(),
            reference.2,
            other.0,
            &other.1.to_string(),
            other.2,
            PASSWORD,
        ],
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => (report, true),
        Some(MISMATCH_EXIT) => (report, false),
        _ => panic!(
            "the session-state script failed ({}):\n{report}",
            out.status
        ),
    }
}

#[test]
fn session_state_matches_dovecot() {
    let dovecot = Dovecot::start(&["ana", "bob", "eva"], PASSWORD);
    let (report, same) = compare_state(
        ("dovecot", dovecot.port, "ana"),
        ("dovecot-again", dovecot.port, "bob"),
    );
    assert!(same, "Dovecot disagrees with itself:\n{report}");
    let node = Node::start();
    node.add_user("eva", PASSWORD);
    let (report, same) = compare_state(
        ("dovecot", dovecot.port, "eva"),
        ("clusterd", node.imap_port, "eva"),
    );
    println!("{report}");
    assert!(same, "clusterd differs from Dovecot:\n{report}");
}

#[test]
fn fetch_and_search_match_dovecot() {
    let dovecot = Dovecot::start(&["ana"], PASSWORD);
    let node = Node::start();
    node.add_user("ana", PASSWORD);
    let out = compare(
        Side {
            label: "dovecot",
            port: dovecot.port,
            user: "ana",
        },
        Side {
            label: "clusterd",
            port: node.imap_port,
            user: "ana",
        },
        &|| {
            let log = node.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            format!(
                "{}\n--- clusterd log (last 60 lines)\n{}",
                dovecot.logs(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        },
    );
    assert!(out.contains("ALL EQUAL"), "{out}");
}

/// CONDSTORE and QRESYNC (RFC 7162) after the same changes on both servers (flag
/// STOREs, expunges, an append): the script tests/imap_dovecot_condstore.py compares
/// which UIDs every answer names (VANISHED (EARLIER), FETCH after CHANGEDSINCE and
/// QRESYNC, MODIFIED, SEARCH MODSEQ, live VANISHED), the order of messages by MODSEQ
/// and HIGHESTMODSEQ relations; absolute MODSEQ numbers differ between the servers and
/// are never compared (see the script's header).
#[test]
fn condstore_and_qresync_match_dovecot() {
    let dovecot = Dovecot::start(&["ana"], PASSWORD);
    let node = Node::start();
    node.add_user("ana", PASSWORD);
    let script = format!(
        "{}\n{}",
        include_str!("imap_raw_client.py"),
        include_str!("imap_dovecot_condstore.py")
    );
    let (dport, cport) = (dovecot.port.to_string(), node.imap_port.to_string());
    let out = python(
        &script,
        &[
            "dovecot", &dport, "ana", PASSWORD, "clusterd", &cport, "ana", PASSWORD,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL EQUAL"),
        "clusterd's CONDSTORE/QRESYNC answers differ from Dovecot's ({}):\n{stdout}\n--- stderr\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        dovecot.logs()
    );
}
