//! Focused tests of issue 16's resource limits, each against a real node with small
//! limits (the crowd of `tests/hostile_load.rs` covers the deadlines and per-IP caps):
//! - `smtp.max_inflight_mb`: a message that would pass the budget of message data
//!   being received gets `452 4.3.1` after its end, a DATA with no room left gets it
//!   at once, and the message holding the budget is still accepted;
//! - separate MX and submission pools: port 25 full, the submission port still greets;
//! - HTTP/2 announces at most 32 concurrent streams (curl's view of the SETTINGS);
//! - the sign-in form's body is at most 4 KiB (413 past it);
//! - `dns.max_forwards`: with the forwards all waiting on a silent upstream, one more
//!   question gets SERVFAIL at once instead of queueing.
//!
//! Each failed before its limit was built: the budget and pools did not exist (a
//! shared pool of `max_sessions` refused submission too), h2 allowed 250 streams, the
//! login form took 2 MiB, and the third question waited out the upstream's timeout.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Node;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Reads one (possibly multi-line) SMTP reply.
fn reply(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while let Ok(1) = s.read(&mut b) {
        got.push(b[0]);
        let t = String::from_utf8_lossy(&got);
        if t.ends_with("\r\n")
            && t.lines()
                .last()
                .is_some_and(|l| l.as_bytes().get(3) == Some(&b' '))
        {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn cmd(s: &mut TcpStream, line: &str) -> String {
    s.write_all(line.as_bytes()).unwrap();
    reply(s)
}

/// A session on port 25 that has had its 354.
fn in_data(port: u16) -> TcpStream {
    let mut s = connect(port);
    assert!(reply(&mut s).starts_with("220"));
    assert!(cmd(&mut s, "EHLO t.example\r\n").starts_with("250"));
    assert!(cmd(&mut s, "MAIL FROM:<x@example.org>\r\n").starts_with("250"));
    assert!(cmd(&mut s, "RCPT TO:<ana@cluster.com.ec>\r\n").starts_with("250"));
    let r = cmd(&mut s, "DATA\r\n");
    assert!(r.starts_with("354"), "{r:?}");
    s
}

/// `n` bytes of body in 1000-byte lines.
fn body(n: usize) -> Vec<u8> {
    let mut v = b"Subject: big\r\n\r\n".to_vec();
    while v.len() < n {
        v.extend_from_slice(&[b'z'; 998]);
        v.extend_from_slice(b"\r\n");
    }
    v
}

#[test]
fn smtp_in_flight_budget_defers_what_does_not_fit_and_keeps_what_was_taken() {
    let node = Node::builder()
        .smtp("max_inflight_mb = 1")
        .log("warn")
        .start();
    node.add_user("ana", "pw-ana-1");
    // A holds about 1,000,000 of the 1,048,576 bytes, mid-DATA.
    let mut a = in_data(node.smtp_port);
    a.write_all(&body(1_000_000)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Less than a header's room is left: DATA is deferred at once.
    let mut b = connect(node.smtp_port);
    assert!(reply(&mut b).starts_with("220"));
    cmd(&mut b, "EHLO t.example\r\n");
    cmd(&mut b, "MAIL FROM:<x@example.org>\r\n");
    cmd(&mut b, "RCPT TO:<ana@cluster.com.ec>\r\n");
    let r = cmd(&mut b, "DATA\r\n");
    assert!(
        r.starts_with("452 4.3.1"),
        "DATA with the budget spent: {r:?}"
    );
    // A's message was taken as it came: it is accepted.
    let r = cmd(&mut a, ".\r\n");
    assert!(
        r.starts_with("250"),
        "the message holding the budget: {r:?}"
    );
    // Budget given back: B retries and is taken; a message that would pass the
    // budget on its own is deferred after its end.
    let r = cmd(&mut b, "DATA\r\n");
    assert!(r.starts_with("354"), "{r:?}");
    b.write_all(&body(100_000)).unwrap();
    let r = cmd(&mut b, ".\r\n");
    assert!(r.starts_with("250"), "{r:?}");
    let mut c = in_data(node.smtp_port);
    c.write_all(&body(2_000_000)).unwrap();
    let r = cmd(&mut c, ".\r\n");
    assert!(
        r.starts_with("452 4.3.1"),
        "a message over the budget: {r:?}"
    );
    // The session goes on, and its budget was given back.
    assert!(cmd(&mut c, "MAIL FROM:<x@example.org>\r\n").starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<ana@cluster.com.ec>\r\n").starts_with("250"));
    assert!(cmd(&mut c, "DATA\r\n").starts_with("354"));
    c.write_all(&body(500_000)).unwrap();
    assert!(cmd(&mut c, ".\r\n").starts_with("250"));
    assert_eq!(
        common::imap_count(node.imap_port, "ana", "pw-ana-1", "INBOX"),
        3
    );
    assert!(
        common::within(Duration::from_secs(5), || node.spool_files().is_empty()),
        "{:?}",
        node.spool_files()
    );
}

#[test]
fn port_25_full_does_not_keep_staff_from_the_submission_port() {
    let node = Node::builder()
        .smtp("max_sessions = 2\nmax_submission_sessions = 2")
        .log("warn")
        .start();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(node.smtp_port);
        assert!(reply(&mut s).starts_with("220"));
        held.push(s);
    }
    let mut s = connect(node.smtp_port);
    let r = reply(&mut s);
    assert!(r.starts_with("421 4.7.0"), "port 25 over its pool: {r:?}");
    let mut sub = connect(node.submission_port);
    let r = reply(&mut sub);
    assert!(r.starts_with("220"), "submission with port 25 full: {r:?}");
    let mut sub2 = connect(node.submission_port);
    assert!(reply(&mut sub2).starts_with("220"));
    let mut sub3 = connect(node.submission_port);
    let r = reply(&mut sub3);
    assert!(
        r.starts_with("421 4.7.0"),
        "submission over its own pool: {r:?}"
    );
}

/// The server's SETTINGS_MAX_CONCURRENT_STREAMS, read from its first SETTINGS frame
/// (RFC 9113 6.5) over TLS with ALPN h2 (openssl s_client carries the bytes).
fn h2_max_concurrent_streams(port: u16) -> Option<u32> {
    common::require_tool("openssl");
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-alpn", "h2", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    child.stdin.as_mut().unwrap().write_all(&hello).unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut head = [0u8; 9];
        let frame = out.read_exact(&mut head).ok().and_then(|()| {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len.min(1 << 14)];
            out.read_exact(&mut payload).ok()?;
            Some((head[3], payload))
        });
        let _ = tx.send(frame);
    });
    let frame = rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
    let _ = child.kill();
    let _ = child.wait();
    let (kind, payload) = frame?;
    assert_eq!(kind, 4, "the server's first frame is SETTINGS");
    payload.chunks_exact(6).find_map(|e| {
        (u16::from_be_bytes([e[0], e[1]]) == 3)
            .then(|| u32::from_be_bytes([e[2], e[3], e[4], e[5]]))
    })
}

/// A UDP socket that reads questions and never answers (an upstream that hangs).
fn silent_upstream() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

#[test]
fn http_h2_streams_login_body_and_dns_forwards_are_bounded() {
    common::require_tool("curl");
    let (_upstream, up_port) = silent_upstream();
    let node = Node::builder()
        .dns(&format!(
            "forwarders = [\"127.0.0.1:{up_port}\"]\nmax_forwards = 2"
        ))
        .log("warn")
        .start();

    // HTTP/2 SETTINGS: 32 concurrent streams.
    let streams = h2_max_concurrent_streams(node.https_port);
    assert_eq!(streams, Some(32), "SETTINGS_MAX_CONCURRENT_STREAMS");

    // The sign-in form: 4 KiB at most.
    let post = |len: usize| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--data-binary",
                "@-",
            ])
            .arg(format!("http://127.0.0.1:{}/webmail/login", node.http_port))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                let mut body = b"user=ana&password=".to_vec();
                body.resize(len, b'x');
                c.stdin.take().unwrap().write_all(&body)?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(post(10 * 1024), "413", "a 10 KiB sign-in form");
    let small = post(1024);
    assert!(
        small != "413" && !small.is_empty(),
        "a 1 KiB sign-in form: {small}"
    );

    // DNS: two forwards waiting on the silent upstream; a third gets SERVFAIL at once.
    let asks: Vec<UdpSocket> = (0..2)
        .map(|i| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(
                &common::dns::query(100 + i, &format!("n{i}.example.org"), 1),
                ("127.0.0.1", node.dns_port),
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let r = common::dns::udp_exchange(
        node.dns_port,
        &common::dns::query(7, "n9.example.org", 1),
        Duration::from_secs(5),
    )
    .expect("an answer to the third question");
    let took = t.elapsed();
    assert_eq!(common::dns::rcode(&r), 2, "SERVFAIL past dns.max_forwards");
    assert!(took < Duration::from_millis(500), "answered after {took:?}");
    // The two waiting ones end too (SERVFAIL after the upstream's timeout).
    for s in asks {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let n = s
            .recv(&mut buf)
            .expect("the forwarded question is answered");
        assert_eq!(common::dns::rcode(&buf[..n]), 2);
    }
}

/// A GET on a fresh connection; returns the stream after the response head.
fn get(port: u16, path: &str, extra: &str) -> (TcpStream, String, Vec<u8>) {
    let mut s = connect(port);
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: cluster.com.ec\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while memchr_head(&got).is_none() {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "closed before the response head");
        got.extend_from_slice(&b[..n]);
    }
    let end = memchr_head(&got).unwrap();
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let rest = got[end..].to_vec();
    (s, head, rest)
}

fn memchr_head(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[test]
fn a_large_site_file_is_streamed_not_held_per_download() {
    let node = Node::builder().log("warn").start();
    let pid = node.pid().unwrap();
    // 40 MB that does not compress, over the 16 MiB kept in memory.
    let size = 40 << 20;
    let mut data = Vec::with_capacity(size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let file = node.dir.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let out = node.cli(&["content", "put", "www/big.bin", common::s(&file)], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).unwrap();
    assert!(common::within(Duration::from_secs(10), || {
        get(node.http_port, "/big.bin", "")
            .1
            .starts_with("HTTP/1.1 200")
    }));
    let (_, before) = common::rss_mb(pid);
    // Ten downloads that stop reading after the head: the node must not hold the
    // file for each of them.
    let slow: Vec<_> = (0..10)
        .map(|_| get(node.http_port, "/big.bin", ""))
        .collect();
    for (_, head, _) in &slow {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {size}")),
            "{head}"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let (_, during) = common::rss_mb(pid);
    println!("node RSS {before} MB before, {during} MB with ten stalled 40 MB downloads");
    assert!(
        during < before + 60,
        "ten stalled downloads of a 40 MB file took {} MB",
        during.saturating_sub(before)
    );
    drop(slow);
    // Whole and ranged downloads carry the right bytes.
    let (mut s, head, mut body) = get(node.http_port, "/big.bin", "");
    assert!(head.starts_with("HTTP/1.1 200"));
    s.read_to_end(&mut body).unwrap();
    assert!(
        body == data,
        "the streamed body differs ({} bytes)",
        body.len()
    );
    let (mut s, head, mut body) = get(
        node.http_port,
        "/big.bin",
        "Range: bytes=30000000-30000999\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    s.read_to_end(&mut body).unwrap();
    assert_eq!(body, &data[30_000_000..30_001_000]);
}
