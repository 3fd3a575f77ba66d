//! A full disk and a damaged store, on one real node: data_dir on a small tmpfs
//! mounted by the test, filled with a filler file below `store.min_free_mb` → SMTP
//! `452 4.3.1` (at MAIL, and at the end of a DATA that was under way), IMAP APPEND
//! and COPY `NO [LIMIT]`, while IMAP reads and the webmail go on and `clusterd
//! status` shows the store unhealthy; the filler deleted → mail accepted again
//! without a restart, nothing acknowledged lost, `clusterd verify` clean. And
//! `clusterd verify` finding a missing and a damaged message file and a gap in the
//! op log; a damaged store.db stopping the start with the recovery in the message.
//!
//! Needs root (mount); every mount is undone by a guard, also when a test fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, bin, within};

/// A tmpfs mounted on a fresh directory; unmounted (lazily, so a process still
/// holding a file does not keep it) and removed when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mb: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("clusterd-tmpfs-")
            .tempdir()
            .unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t tmpfs failed (the test needs root)");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A line-oriented client of the node's SMTP port that returns each reply's code and
/// text.
struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn connect(port: u16) -> Smtp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Smtp {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        };
        assert_eq!(c.reply().0, 220);
        assert_eq!(c.cmd("EHLO tester.example").0, 250);
        c
    }

    fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            assert!(line.len() >= 4, "short SMTP reply {line:?} after {all:?}");
            all.push_str(&line);
            if line.as_bytes()[3] == b' ' {
                return (line[..3].parse().unwrap(), all);
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }
}

fn message(subject: &str) -> String {
    format!(
        "From: sender@example.org\r\nTo: ana@cluster.com.ec\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\r\nbody of {subject}\r\n"
    )
}

/// One delivery to ana; the final reply (code, text). A refusal at MAIL or RCPT
/// returns that refusal.
fn deliver(port: u16, subject: &str) -> (u16, String) {
    let mut c = Smtp::connect(port);
    let r = c.cmd("MAIL FROM:<sender@example.org>");
    if r.0 != 250 {
        return r;
    }
    let r = c.cmd("RCPT TO:<ana@cluster.com.ec>");
    if r.0 != 250 {
        return r;
    }
    assert_eq!(c.cmd("DATA").0, 354);
    c.send_raw(message(subject).as_bytes());
    let r = c.cmd(".");
    let _ = c.cmd("QUIT");
    r
}

/// An IMAP session; `run` sends one tagged command and returns everything up to its
/// tagged reply.
struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    n: u32,
}

impl Imap {
    fn login(port: u16, user: &str, password: &str) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Imap {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
            n: 0,
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).unwrap();
        let out = c.run(&format!("LOGIN {user} {password}"));
        assert!(out.contains("OK"), "{out}");
        c
    }

    fn run(&mut self, cmd: &str) -> String {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.w
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        self.until(&tag)
    }

    fn until(&mut self, tag: &str) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).unwrap();
            assert!(n > 0, "IMAP connection closed; so far: {all}");
            all.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                return all;
            }
        }
    }

    /// APPEND with a synchronizing literal; the tagged reply (or the refusal of the
    /// literal).
    fn append(&mut self, mailbox: &str, msg: &str) -> String {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.w
            .write_all(format!("{tag} APPEND {mailbox} {{{}}}\r\n", msg.len()).as_bytes())
            .unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        if !line.starts_with('+') {
            return line;
        }
        self.w.write_all(msg.as_bytes()).unwrap();
        self.w.write_all(b"\r\n").unwrap();
        self.until(&tag)
    }
}

/// Fills the file system of `dir` with `dir/filler` until `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let free = {
        let _ = dir;
        40u64 << 20
    };
    assert!(free > leave, "{free} free, cannot leave {leave}");
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = free - leave;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    path
}

/// The webmail's INBOX page after a login through the form (curl, a cookie jar).
fn webmail_inbox(port: u16, user: &str, password: &str, jar: &Path) -> (u16, String) {
    let base = format!("http://127.0.0.1:{port}");
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "20", "-b"])
            .arg(jar)
            .arg("-c")
            .arg(jar)
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let form = curl(&[&format!("{base}/webmail/login")]);
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no csrf in the login form: {form}"))
        .replace("&#x2F;", "/")
        .replace("&#x3D;", "=")
        .replace("&#43;", "+")
        .replace("&amp;", "&");
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-urlencode",
        &format!("user={user}"),
        "--data-urlencode",
        &format!("password={password}"),
        "--data-urlencode",
        &format!("csrf={csrf}"),
        &format!("{base}/webmail/login"),
    ]);
    assert_eq!(code, "303", "webmail login");
    let page = curl(&[
        "-w",
        "\n%{http_code}",
        &format!("{base}/webmail/mailbox/INBOX"),
    ]);
    let (body, code) = page.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

fn status_json(node: &Node) -> serde_json::Value {
    let out = node.cli(&["status", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_full_disk_refuses_new_mail_keeps_reads_and_recovers_by_itself() {
    common::require_tool("curl");
    // The node's whole directory (config, data, log) on a 48 MiB tmpfs; the floor at
    // 16 MiB.
    let fs = Tmpfs::mount(48);
    let node = Node::builder()
        .temp_in(fs.path())
        .extra("[store]\nmin_free_mb = 16\n[monitor]\ninterval_s = 1\nprobe_timeout_s = 1\n")
        .start();
    node.add_user("ana", "secreto-ana-1");
    let (smtp, imap) = (node.smtp_port, node.imap_port);

    assert_eq!(deliver(smtp, "before-1").0, 250);
    let mut session = Imap::login(imap, "ana", "secreto-ana-1");
    let out = session.append("INBOX", &message("appended-before"));
    assert!(out.contains("OK [APPENDUID"), "{out}");
    assert!(status_json(&node)["store"]["writer_alive"] == true);

    // A DATA under way when the disk fills: its end must not be acknowledged.
    let mut pending = Smtp::connect(smtp);
    assert_eq!(pending.cmd("MAIL FROM:<sender@example.org>").0, 250);
    assert_eq!(pending.cmd("RCPT TO:<ana@cluster.com.ec>").0, 250);
    assert_eq!(pending.cmd("DATA").0, 354);
    pending.send_raw(b"Subject: during\r\n\r\nhalf of it\r\n");

    // What was acknowledged, by subject: all of it must be there at the end.
    let mut acked = vec!["before-1".to_string(), "appended-before".to_string()];
    let filler = fill(fs.path(), 8 << 20);
    // The floor is read at most once a second: a delivery in that second may still
    // be taken (and must then be kept).
    let mut refused = (0, String::new());
    let mut tries = 0;
    assert!(
        within(Duration::from_secs(10), || {
            tries += 1;
            let subject = format!("racing-{tries}");
            refused = deliver(smtp, &subject);
            if refused.0 == 250 {
                acked.push(subject);
            }
            refused.0 != 250
        }),
        "deliveries below the floor still accepted after 10 s"
    );
    assert_eq!(refused.0, 452, "{refused:?}");
    assert!(
        refused.1.contains("4.3.1 Insufficient system storage"),
        "{refused:?}"
    );
    pending.send_raw(b"the other half\r\n");
    let end = pending.cmd(".");
    assert_eq!(end.0, 452, "the DATA under way: {end:?}");

    // RCPT too (MAIL accepted before the disk filled).
    std::fs::remove_file(&filler).unwrap();
    let mut early = Smtp::connect(smtp);
    assert!(within(Duration::from_secs(10), || {
        early.cmd("RSET");
        early.cmd("MAIL FROM:<sender@example.org>").0 == 250
    }));
    let filler = fill(fs.path(), 8 << 20);
    let mut rcpt = (0, String::new());
    assert!(within(Duration::from_secs(10), || {
        rcpt = early.cmd("RCPT TO:<ana@cluster.com.ec>");
        rcpt.0 != 250
    }));
    assert_eq!(rcpt.0, 452, "{rcpt:?}");

    // IMAP: APPEND and COPY refused with [LIMIT]; reading goes on.
    let out = session.append("INBOX", &message("appended-while-full"));
    assert!(out.contains("NO [LIMIT]"), "APPEND below the floor: {out}");
    let out = session.run("SELECT INBOX");
    assert!(out.contains(&format!("* {} EXISTS", acked.len())), "{out}");
    let out = session.run("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    for s in &acked {
        assert!(out.contains(&format!("Subject: {s}")), "{s} missing: {out}");
    }
    let out = session.run("COPY 1 Trash");
    assert!(out.contains("NO [LIMIT]"), "COPY below the floor: {out}");
    let out = session.run("FETCH 1 (FLAGS)");
    assert!(out.contains(" OK "), "{out}");

    // The webmail reads.
    let jar = node.dir.path().join("cookies");
    let (code, page) = webmail_inbox(node.http_port, "ana", "secreto-ana-1", &jar);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("before-1"), "{page}");

    // The store is shown unhealthy (the node's health carries the same verdict).
    let st = status_json(&node);
    assert!(
        st["store"]["free_bytes"].as_u64().unwrap() < 16 << 20,
        "{}",
        st["store"]
    );
    let text = String::from_utf8_lossy(&node.cli(&["status"], None).stdout).to_string();
    assert!(
        text.contains("UNHEALTHY") && text.contains("new mail refused"),
        "{text}"
    );
    // And in the monitor's checks (its table in `clusterd status`, /status).
    let store_check = |node: &Node| {
        status_json(node)["monitor"]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["service"] == "store")
            .map(|c| c["result"].as_str().unwrap_or("").to_string())
    };
    assert!(
        within(Duration::from_secs(10), || store_check(&node).as_deref()
            == Some("failing")),
        "{:?}",
        store_check(&node)
    );

    // Space back: accepted again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let mut again = (0, String::new());
    assert!(
        within(Duration::from_secs(10), || {
            again = deliver(smtp, "after-1");
            again.0 == 250
        }),
        "still refused after the space came back: {again:?}"
    );
    let out = session.append("INBOX", &message("appended-after"));
    assert!(out.contains("OK [APPENDUID"), "{out}");
    let out = session.run("COPY 1 Trash");
    assert!(out.contains(" OK "), "{out}");
    // Exactly what was acknowledged, nothing refused.
    acked.extend(["after-1".to_string(), "appended-after".to_string()]);
    let out = session.run("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    for s in &acked {
        assert!(out.contains(&format!("Subject: {s}")), "{s} missing: {out}");
    }
    assert_eq!(
        out.matches("Subject: ").count(),
        acked.len(),
        "something refused was kept: {out}"
    );
    let st = status_json(&node);
    assert!(
        within(
            Duration::from_secs(10),
            || status_json(&node)["store"]["probe_ok"] == true
        ),
        "{}",
        st["store"]
    );

    // verify beside the running node (read-only, no lock).
    let out = node.cli(&["verify"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verify:  ok"), "{text}");
    drop(session);
    drop(node);
}

/// A store made offline by the CLI (an account, two content files) in `dir`.
fn offline_store(dir: &Path) -> PathBuf {
    let config = dir.join("clusterd.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"clusternodo1\"\ndata_dir = \"{}\"\ncontrol_socket = \"{}\"\n\n[domain]\nname = \"cluster.com.ec\"\n",
            dir.join("data").display(),
            dir.join("control.sock").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--config").arg(&config);
        let out = common::run_with_stdin(cmd, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        &[
            "user",
            "add",
            "ana",
            "--full-name",
            "Ana",
            "--password-stdin",
        ],
        Some("secreto-ana-1\n"),
    );
    for (name, text) in [("a.html", "<p>one</p>"), ("b.html", "<p>two</p>")] {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        run(
            &[
                "content",
                "put",
                &format!("www/{name}"),
                f.to_str().unwrap(),
            ],
            None,
        );
    }
    config
}

fn verify(data: &Path) -> (bool, String) {
    let out = Command::new(bin())
        .args(["verify", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn blob_file(data: &Path, text: &str) -> PathBuf {
    use sha2::Digest;
    let id = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    data.join("blobs").join(&id[..2]).join(id)
}

#[test]
fn verify_reports_missing_and_damaged_files_and_log_gaps() {
    let dir = tempfile::tempdir().unwrap();
    offline_store(dir.path());
    let data = dir.path().join("data");
    let (ok, out) = verify(&data);
    assert!(ok, "a clean store: {out}");
    assert!(
        out.contains("verify:  ok") && out.contains("2 referenced file(s)"),
        "{out}"
    );

    // One file gone, one with other bytes, one op taken out of the log's middle.
    std::fs::remove_file(blob_file(&data, "<p>one</p>")).unwrap();
    std::fs::write(blob_file(&data, "<p>two</p>"), "<p>TWO</p>").unwrap();
    let conn = rusqlite::Connection::open(data.join("store.db")).unwrap();
    let (first, last): (i64, i64) = conn
        .query_row("SELECT min(seq), max(seq) FROM oplog", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(last - first >= 2, "too few ops to make a gap");
    conn.execute("DELETE FROM oplog WHERE seq = ?1", [first + 1])
        .unwrap();
    drop(conn);

    let (ok, out) = verify(&data);
    assert!(!ok, "verify passed a damaged store: {out}");
    let missing = blob_file(&data, "<p>one</p>");
    let bad = blob_file(&data, "<p>two</p>");
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        out.contains(&format!("MISSING {}", name(&missing))),
        "{out}"
    );
    assert!(out.contains(&format!("BAD HASH {}", name(&bad))), "{out}");
    assert!(
        out.contains(&format!("GAP: seq {}..{} missing", first + 1, first + 1)),
        "{out}"
    );
    assert!(out.contains("3 problem(s)"), "{out}");
}

#[test]
fn a_damaged_store_db_stops_the_start_with_the_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_store(dir.path());
    let db = dir.path().join("data/store.db");
    // Everything in the main file (no WAL left), then every page but the first
    // (the header and the schema) overwritten.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let page = page as u64;
    drop(conn);
    let mut raw = std::fs::read(&db).unwrap();
    assert!(raw.len() as u64 > 4 * page);
    for (i, b) in raw[page as usize..].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&db, raw).unwrap();

    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            common::terminate(&mut child, Duration::from_secs(5));
            panic!("the node started on a damaged store.db");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains(db.to_str().unwrap()), "names the file: {err}");
    assert!(err.contains("is damaged"), "{err}");
    assert!(
        err.contains("move the data directory aside") && err.contains("takes the peer's log"),
        "the recovery: {err}"
    );
}

/// Fills the file system of `dir` to the last byte (writes until ENOSPC).
fn fill_up(dir: &Path) -> PathBuf {
    let path = dir.join("filler-all");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    for _ in 0..100_000 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    for _ in 0..100_000 {
        if f.write_all(&chunk[..512]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

#[test]
fn the_writer_survives_a_full_disk_and_keeps_what_it_acknowledged() {
    // No floor: the writes themselves meet ENOSPC (body files, and SQLite's WAL).
    let fs = Tmpfs::mount(24);
    let node = Node::builder()
        .temp_in(fs.path())
        .extra("[store]\nmin_free_mb = 0\n")
        .start();
    node.add_user("ana", "secreto-ana-1");
    let (smtp, imap) = (node.smtp_port, node.imap_port);
    let mut acked = Vec::new();
    for i in 0..3 {
        let s = format!("kept-{i}");
        assert_eq!(deliver(smtp, &s).0, 250);
        acked.push(s);
    }
    let mut session = Imap::login(imap, "ana", "secreto-ana-1");
    assert!(session.run("SELECT INBOX").contains(" OK "));

    let filler = fill_up(fs.path());
    // A body file that cannot be written: 452, not a local error.
    let r = deliver(smtp, "no-room");
    assert_eq!(r.0, 452, "{r:?}");
    // Rows only (COPY writes no file): SQLite runs out of room at some commit.
    let mut refused = String::new();
    for _ in 0..5000 {
        let out = session.run("COPY 1:3 Trash");
        if !out.contains(" OK ") {
            refused = out;
            break;
        }
    }
    assert!(
        refused.contains("NO [LIMIT]"),
        "COPY on a full disk: {refused:?}"
    );
    // The writer is alive and reads go on.
    assert_eq!(status_json(&node)["store"]["writer_alive"], true);
    let out = session.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    for s in &acked {
        assert!(out.contains(&format!("Subject: {s}")), "{s}: {out}");
    }

    std::fs::remove_file(&filler).unwrap();
    let mut again = (0, String::new());
    assert!(
        within(Duration::from_secs(10), || {
            again = deliver(smtp, "room-again");
            again.0 == 250
        }),
        "{again:?}"
    );
    acked.push("room-again".into());
    let out = session.run("SELECT INBOX");
    assert!(out.contains(&format!("* {} EXISTS", acked.len())), "{out}");
    let out = session.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    for s in &acked {
        assert!(out.contains(&format!("Subject: {s}")), "{s}: {out}");
    }
    assert!(session.run("COPY 1 Trash").contains(" OK "));
    let out = node.cli(&["verify"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    drop(session);
    drop(node);
}
