//! The sweep of message files (`clusterd gc`) on one node: after 1,000 messages are
//! expunged their files are gone (files under `blobs/` counted before and after), the
//! messages still present read back byte-identical, a stale temporary file goes, and
//! deliveries running while sweeps run lose nothing — IMAP APPENDs of bodies whose old
//! files are being swept (a body identical to an expunged one reuses its file) and
//! SMTP deliveries alike. The two-node case is in `tests/replication.rs`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Node, assert_ok, python};

/// Modes: `append FROM TO` (bodies FROM..TO into INBOX), `expunge FROM TO` (the
/// messages whose X-Idx is in FROM..TO), `load FROM TO SMTP_PORT` (appends FROM..TO
/// again while 100 messages arrive by SMTP), `verify` (every message in INBOX is read
/// whole: generated ones must be byte-identical, SMTP ones carry their token; prints
/// the X-Idx values and tokens seen).
const SCRIPT: &str = r#"
import imaplib, smtplib, sys, threading, re
port, mode = int(sys.argv[1]), sys.argv[2]

def body(i):
    n = 60 + (i % 7) * 40 if i < 2000 else 2000 + (i % 5) * 9000
    lines = "".join("line %d of message %d\r\n" % (k, i) for k in range(n))
    return ("From: a@example.org\r\nSubject: m%d\r\nX-Idx: %d\r\n\r\n%s" % (i, i, lines)).encode()

def login():
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("ana", "pw")
    return m

def append(a, b):
    m = login()
    for i in range(a, b):
        typ, data = m.append("INBOX", None, None, body(i))
        assert typ == "OK", (i, typ, data)
    m.logout()

if mode == "append":
    append(int(sys.argv[3]), int(sys.argv[4]))
elif mode == "expunge":
    a, b = int(sys.argv[3]), int(sys.argv[4])
    m = login()
    m.select("INBOX")
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (X-IDX)])")
    uids = []
    for d in data:
        if isinstance(d, tuple):
            uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
            idx = int(re.search(rb"X-Idx: (\d+)", d[1]).group(1))
            if a <= idx < b:
                uids.append(uid)
    assert len(uids) == b - a, len(uids)
    for k in range(0, len(uids), 200):
        s = ",".join(str(u) for u in uids[k:k + 200])
        assert m.uid("STORE", s, "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
    assert m.expunge()[0] == "OK"
    m.logout()
elif mode == "load":
    a, b, smtp_port = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    def smtp():
        s = smtplib.SMTP("127.0.0.1", smtp_port, timeout=30)
        for k in range(100):
            msg = "From: b@example.org\r\nSubject: smtp %d\r\n\r\ntoken-%d\r\n" % (k, k)
            s.sendmail("b@example.org", ["ana@cluster.com.ec"], msg)
        s.quit()
    t = threading.Thread(target=smtp)
    t.start()
    append(a, b)
    t.join()
elif mode == "verify":
    m = login()
    typ, data = m.select("INBOX")
    n = int(data[0])
    for k in range(1, n + 1, 100):
        typ, data = m.fetch("%d:%d" % (k, min(n, k + 99)), "(RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK", data
        for d in data:
            if not isinstance(d, tuple):
                continue
            size = int(re.search(rb"RFC822.SIZE (\d+)", d[0]).group(1))
            raw = d[1]
            assert len(raw) == size, (size, len(raw))
            x = re.search(rb"X-Idx: (\d+)", raw)
            if x:
                i = int(x.group(1))
                assert raw == body(i), "message %d differs" % i
                print("idx", i)
            else:
                t = re.search(rb"token-(\d+)", raw)
                assert t, raw[:200]
                print("token", int(t.group(1)))
    m.logout()
"#;

fn run(node: &Node, args: &[&str]) -> String {
    let mut all = vec![node.imap_port.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_ok(&python(SCRIPT, &all), &format!("imaplib {args:?}"))
}

/// Files under `blobs/<2 hex>/`.
fn blob_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("blobs"))
        .expect("blobs/")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().len() == 2)
        .map(|e| std::fs::read_dir(e.path()).expect("fan-out dir").count())
        .sum()
}

/// `clusterd gc`; the number of files it says it freed.
fn gc(node: &Node) -> u64 {
    let out = assert_ok(&node.cli(&["gc"], None), "clusterd gc");
    out.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected gc output: {out}"))
}

#[test]
fn expunged_files_are_swept_and_nothing_in_use_is_lost() {
    let node = Node::builder()
        .extra("[store]\ngc_interval_s = 0\ngc_grace_s = 1\n")
        .start();
    node.add_user("ana", "pw");

    // 1,000 messages to expunge and 20 to keep (some over 64 KiB, written as they
    // arrive), then 300 more for the concurrent phase.
    run(&node, &["append", "0", "1000"]);
    run(&node, &["append", "2000", "2020"]);
    run(&node, &["append", "1000", "1300"]);
    let before = blob_files(&node.data_dir);
    assert!(before >= 1320, "{before} files");
    run(&node, &["expunge", "0", "1000"]);
    // A temporary file of an interrupted write, older than the grace.
    let stale = node.data_dir.join("blobs/tmp/stale-write");
    std::fs::write(&stale, b"half a message").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let freed = gc(&node);
    let after = blob_files(&node.data_dir);
    assert_eq!(freed, 1000, "files freed");
    assert_eq!(before - after, 1000, "files before {before}, after {after}");
    assert!(!stale.exists(), "the stale temporary file is still there");
    assert!(
        node.log_text()
            .contains("store: swept unreferenced message files"),
        "the sweep is not logged"
    );
    // A second sweep finds nothing more.
    assert_eq!(gc(&node), 0);

    // 300 more expunged, old enough to go; while sweeps run, the same 300 bodies are
    // appended again (each may find its old file, being swept) and 100 messages
    // arrive by SMTP.
    run(&node, &["expunge", "1000", "1300"]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut load = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args([
            &node.imap_port.to_string(),
            "load",
            "1000",
            "1300",
            &node.smtp_port.to_string(),
        ])
        .spawn()
        .expect("start the load");
    let started = Instant::now();
    let mut sweeps = 0;
    let status = loop {
        if let Some(status) = load.try_wait().expect("wait for the load") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = load.kill();
            let _ = load.wait();
            panic!("the load did not finish in 120 s");
        }
        gc(&node);
        sweeps += 1;
    };
    assert!(status.success(), "the load failed");
    assert!(sweeps >= 2, "only {sweeps} sweeps ran during the load");
    // Every body is still readable after one more sweep past the grace.
    std::thread::sleep(Duration::from_millis(1500));
    gc(&node);

    let seen = run(&node, &["verify"]);
    let mut idx: Vec<u32> = Vec::new();
    let mut tokens: Vec<u32> = Vec::new();
    for l in seen.lines() {
        match l.split_once(' ') {
            Some(("idx", n)) => idx.push(n.parse().unwrap()),
            Some(("token", n)) => tokens.push(n.parse().unwrap()),
            _ => panic!("unexpected line {l}"),
        }
    }
    idx.sort_unstable();
    tokens.sort_unstable();
    let want: Vec<u32> = (1000..1300).chain(2000..2020).collect();
    assert_eq!(idx, want, "generated messages present");
    assert_eq!(
        tokens,
        (0..100).collect::<Vec<u32>>(),
        "SMTP messages present"
    );
}
