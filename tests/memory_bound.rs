//! Memory stays bounded under logins (issue 14): every LOGIN costs an argon2
//! verification of 19 MiB; 300 logins from 10 concurrent IMAP clients (Python
//! imaplib), a third of them with a wrong password, must leave the node's peak RSS
//! (VmHWM) under 200 MB. Before password hashing had its own small pool this peaked
//! near 2 GB, and the memory was never given back.

mod common;

use common::{Node, assert_ok, rss_mb};

#[test]
fn three_hundred_logins_from_ten_clients_keep_rss_under_200_mb() {
    let node = Node::start();
    node.add_user("ana", "pw-ana-1");
    let pid = node.pid().expect("node pid");
    let (peak_before, _) = rss_mb(pid);
    let script = r#"
import imaplib, sys, threading
port = int(sys.argv[1])
ok = bad = 0
errors = []
lock = threading.Lock()
def client(n):
    global ok, bad
    for i in range(30):
        wrong = (i % 3 == 2)
        try:
            m = imaplib.IMAP4("127.0.0.1", port)
            try:
                m.login("ana", "wrong" if wrong else "pw-ana-1")
                with lock: ok += 1
            except imaplib.IMAP4.error:
                with lock: bad += 1
            m.logout()
        except Exception as e:
            with lock: errors.append(repr(e))
threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
for t in threads: t.start()
for t in threads: t.join()
print(ok, bad, len(errors))
if errors: print(errors[:3])
"#;
    let out = common::python(script, &[&node.imap_port.to_string()]);
    let text = assert_ok(&out, "imap logins");
    let counts: Vec<u64> = text
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(
        counts,
        vec![200, 100, 0],
        "logins ok/refused/errors: {text}"
    );
    let (peak, now) = rss_mb(pid);
    println!("RSS: peak before {peak_before} MB, peak {peak} MB, after {now} MB");
    assert!(
        peak < 200,
        "300 logins from 10 clients took the node to {peak} MB (after: {now} MB)"
    );
}
