//! A hostile Internet against one node (issue 16's acceptance): 200 pre-login IMAP
//! sessions sending chained 8 KiB literals, 200 SMTP sessions trickling DATA of
//! (nominally) 20 MB, and 200 HTTP requests whose bodies never end, all at once from
//! 600 loopback addresses (127.1.x.y, so the per-IP caps do not simply refuse them).
//! Asserted: the node's RSS stays under 300 MB; every attacker is cut off by its
//! deadline (`imap.login_timeout_s`, `smtp.data_timeout_s`, `http.request_timeout_s`,
//! all 5 s here); the trickled bodies' temporary files are gone afterwards; and a
//! legitimate client on each protocol (SMTP delivery, IMAP login and FETCH, HTTP GET,
//! a DNS query) is served throughout (latencies printed). First, from one address,
//! the per-IP caps: the connection past the cap gets the protocol's refusal.
//!
//! Before the fix, a trickled DATA and an endless HTTP body were never cut (only
//! per-read timeouts), and one address could open every session.
//!
//! The attackers are tokio tasks in this process, each bounded in what it sends and
//! in time (60 s); the node is started once.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Node, rss_mb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The deadlines of the test's config, seconds.
const DEADLINE: u64 = 5;
/// How late after its deadline an attacker may still be connected (scheduling, the
/// node's timer granularity, a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(6);
const ATTACKERS: usize = 200;
const RSS_LIMIT_MB: u64 = 300;

fn start_node() -> Node {
    let node = Node::builder()
        .smtp(&format!("data_timeout_s = {DEADLINE}\ntimeout_s = 30"))
        .imap(&format!("login_timeout_s = {DEADLINE}"))
        .http(&format!(
            "request_timeout_s = {DEADLINE}\nheader_timeout_s = 10"
        ))
        .log("warn")
        .start();
    node.add_user("ana", "pw-ana-1");
    node
}

// ------------------------------------------------------------------ blocking clients

fn connect(ip: Ipv4Addr, port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((ip, 0)).into())
        .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    sock.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap_or_else(|e| panic!("connect from {ip} to {port}: {e}"));
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until `done` holds for what came (or EOF / timeout); returns it.
fn read_until(s: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if done(&String::from_utf8_lossy(&got)) {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn line(s: &mut TcpStream) -> String {
    read_until(s, |t| t.ends_with('\n'))
}

/// Whether the last reply line (of a possibly multi-line reply) is complete.
fn smtp_reply_done(t: &str) -> bool {
    t.ends_with("\r\n")
        && t.lines()
            .last()
            .is_some_and(|l| l.as_bytes().get(3) == Some(&b' '))
}

fn smtp_cmd(s: &mut TcpStream, cmd: &str, want: &str) -> Result<(), String> {
    s.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
    let r = read_until(s, smtp_reply_done);
    if r.lines().last().is_some_and(|l| l.starts_with(want)) {
        Ok(())
    } else {
        Err(format!("{} -> {r:?}", cmd.trim()))
    }
}

/// One delivery to ana on port 25.
fn legit_smtp(port: u16, n: u64) -> Result<(), String> {
    let mut s = connect(Ipv4Addr::LOCALHOST, port);
    let greet = line(&mut s);
    if !greet.starts_with("220") {
        return Err(format!("greeting {greet:?}"));
    }
    smtp_cmd(&mut s, "EHLO legit.example\r\n", "250")?;
    smtp_cmd(&mut s, "MAIL FROM:<friend@example.org>\r\n", "250")?;
    smtp_cmd(&mut s, "RCPT TO:<ana@cluster.com.ec>\r\n", "250")?;
    smtp_cmd(&mut s, "DATA\r\n", "354")?;
    let msg = format!(
        "From: friend@example.org\r\nTo: ana@cluster.com.ec\r\nSubject: legit {n}\r\n\r\nhello {n}\r\n.\r\n"
    );
    smtp_cmd(&mut s, &msg, "250")?;
    smtp_cmd(&mut s, "QUIT\r\n", "221")
}

fn imap_cmd(s: &mut TcpStream, tag: &str, cmd: &str) -> Result<String, String> {
    s.write_all(format!("{tag} {cmd}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let want = format!("{tag} OK");
    let r = read_until(s, |t| {
        t.ends_with("\r\n") && t.lines().any(|l| l.starts_with(&format!("{tag} ")))
    });
    if r.lines().any(|l| l.starts_with(&want)) {
        Ok(r)
    } else {
        Err(format!("{cmd} -> {r:?}"))
    }
}

/// LOGIN, SELECT and FETCH of the first message.
fn legit_imap(port: u16) -> Result<(), String> {
    let mut s = connect(Ipv4Addr::LOCALHOST, port);
    let greet = line(&mut s);
    if !greet.starts_with("* OK") {
        return Err(format!("greeting {greet:?}"));
    }
    imap_cmd(&mut s, "a", "LOGIN ana pw-ana-1")?;
    imap_cmd(&mut s, "b", "SELECT INBOX")?;
    let body = imap_cmd(&mut s, "c", "FETCH 1 BODY.PEEK[]")?;
    if !body.contains("hello") {
        return Err(format!("FETCH gave {body:?}"));
    }
    imap_cmd(&mut s, "d", "LOGOUT").map(|_| ())
}

fn legit_http(port: u16) -> Result<(), String> {
    let mut s = connect(Ipv4Addr::LOCALHOST, port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: cluster.com.ec\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let r = read_until(&mut s, |_| false);
    if r.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("GET / -> {:?}", r.lines().next()))
    }
}

fn legit_dns(port: u16) -> Result<(), String> {
    let q = common::dns::query(0x4242, "cluster.com.ec", 6);
    match common::dns::udp_exchange(port, &q, Duration::from_secs(5)) {
        Some(r) if common::dns::rcode(&r) == 0 && r[..2] == [0x42, 0x42] => Ok(()),
        other => Err(format!("SOA query -> {other:?}")),
    }
}

// ------------------------------------------------------------------ per-IP caps

/// From one address: the connections up to the default caps are served, the next
/// one gets the protocol's refusal.
fn per_ip_caps_refuse_one_address_past_its_cap(node: &Node) {
    let ip = Ipv4Addr::new(127, 0, 9, 9);
    // SMTP (port 25): 20, then 421 4.7.0; the submission pool counts apart.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = connect(ip, node.smtp_port);
        let g = line(&mut s);
        assert!(g.starts_with("220"), "smtp session within the cap: {g:?}");
        held.push(s);
    }
    let mut s = connect(ip, node.smtp_port);
    let g = line(&mut s);
    assert!(
        g.starts_with("421 4.7.0"),
        "smtp past the per-IP cap: {g:?}"
    );
    let mut sub = connect(ip, node.submission_port);
    let g = line(&mut sub);
    assert!(g.starts_with("220"), "submission is another pool: {g:?}");
    // Another address is not affected.
    let mut other = connect(Ipv4Addr::new(127, 0, 9, 10), node.smtp_port);
    assert!(line(&mut other).starts_with("220"));
    drop((held, s, sub, other));

    // IMAP: 20, then BYE.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = connect(ip, node.imap_port);
        let g = line(&mut s);
        assert!(g.starts_with("* OK"), "imap session within the cap: {g:?}");
        held.push(s);
    }
    let mut s = connect(ip, node.imap_port);
    let g = line(&mut s);
    assert!(g.starts_with("* BYE"), "imap past the per-IP cap: {g:?}");
    drop((held, s));

    // HTTP: 64, then 503.
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(connect(ip, node.http_port));
    }
    let mut s = connect(ip, node.http_port);
    let r = read_until(&mut s, |_| false);
    assert!(
        r.starts_with("HTTP/1.1 503"),
        "http past the per-IP cap: {r:?}"
    );
    // The held ones are real connections.
    held[0]
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_until(&mut held[0], |_| false);
    assert!(r.starts_with("HTTP/1.1 200"), "{:?}", r.lines().next());
    drop((held, s));

    // DNS over TCP: 8, then closed at once.
    let q = common::dns::query(7, "cluster.com.ec", 6);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = connect(ip, node.dns_port);
        s.write_all(&framed).unwrap();
        match common::dns::read_framed(&mut s, &mut Vec::new(), Duration::from_secs(5)) {
            common::dns::TcpOutcome::Reply(_) => {}
            other => panic!("dns tcp within the cap: {other:?}"),
        }
        held.push(s);
    }
    let mut s = connect(ip, node.dns_port);
    let _ = s.write_all(&framed);
    let t = Instant::now();
    match common::dns::read_framed(&mut s, &mut Vec::new(), Duration::from_secs(5)) {
        common::dns::TcpOutcome::Closed => {}
        other => panic!("dns tcp past the per-IP cap: {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    drop((held, s));
}

// ------------------------------------------------------------------ attackers

async fn connect_from(ip: Ipv4Addr, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind((ip, 0).into())?;
    sock.connect(([127, 0, 0, 1], port).into()).await
}

/// What happened to one attacker: seconds from its start to being cut off (`None`:
/// still connected at the test's bound), and the last thing the node said.
#[derive(Debug)]
struct Cut {
    kind: &'static str,
    after: Option<f64>,
    said: String,
}

/// Writes `chunk()` every `every` until the node closes the connection (or 60 s);
/// returns when the node was last heard from and what it said.
async fn trickle(
    mut s: tokio::net::TcpStream,
    kind: &'static str,
    start: Instant,
    every: Duration,
    mut chunk: impl FnMut(usize) -> Option<Vec<u8>>,
) -> Cut {
    let (mut r, mut w) = s.split();
    let mut said = Vec::new();
    let bound = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(bound);
    let mut i = 0usize;
    let mut writing = true;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    said.extend_from_slice(&buf[..n]);
                    if said.len() > 4096 {
                        said.drain(..said.len() - 4096);
                    }
                }
            },
            _ = tokio::time::sleep(every), if writing => {
                match chunk(i) {
                    Some(c) => {
                        // A full socket buffer is fine: the node may have stopped
                        // reading; the read side tells when it closes.
                        let _ = tokio::time::timeout(every * 4, w.write_all(&c)).await;
                    }
                    None => writing = false,
                }
                i += 1;
            }
            _ = &mut bound => {
                return Cut { kind, after: None, said: String::from_utf8_lossy(&said).into_owned() };
            }
        }
    }
    Cut {
        kind,
        after: Some(start.elapsed().as_secs_f64()),
        said: String::from_utf8_lossy(&said).into_owned(),
    }
}

async fn imap_attacker(ip: Ipv4Addr, port: u16) -> Cut {
    let start = Instant::now();
    let s = connect_from(ip, port)
        .await
        .expect("imap attacker connects");
    // A LOGIN whose arguments are literals chained without end, 8 KiB each.
    let lit = {
        let mut v = vec![b'x'; 8192];
        v.extend_from_slice(b" {8192}\r\n");
        v
    };
    trickle(s, "imap", start, Duration::from_millis(100), move |i| {
        Some(if i == 0 {
            b"a1 LOGIN {8192}\r\n".to_vec()
        } else {
            lit.clone()
        })
    })
    .await
}

async fn smtp_attacker(ip: Ipv4Addr, port: u16) -> Cut {
    let mut s = connect_from(ip, port)
        .await
        .expect("smtp attacker connects");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.write_all(
        b"EHLO attacker.example\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<ana@cluster.com.ec>\r\nDATA\r\n",
    )
    .await
    .unwrap();
    while !String::from_utf8_lossy(&got).contains("\r\n354") {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!(
                "smtp attacker: no 354 ({other:?}): {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    // The DATA deadline counts from the 354.
    let start = Instant::now();
    // 4 KiB every 100 ms of a nominal 20 MB: the body would take over 8 minutes.
    let line = {
        let mut v = vec![b'y'; 4094];
        v.extend_from_slice(b"\r\n");
        v
    };
    let mut sent = 0usize;
    trickle(s, "smtp", start, Duration::from_millis(100), move |i| {
        if sent >= 20 << 20 {
            return None;
        }
        sent += line.len();
        Some(if i == 0 {
            let mut h = b"Subject: trickle\r\n\r\n".to_vec();
            h.extend_from_slice(&line);
            h
        } else {
            line.clone()
        })
    })
    .await
}

async fn http_attacker(ip: Ipv4Addr, port: u16, n: usize) -> Cut {
    let start = Instant::now();
    let s = connect_from(ip, port)
        .await
        .expect("http attacker connects");
    // Half post an endless sign-in form (kept under its 4 KiB limit by the pace),
    // half an endless chunked body to the site.
    let login = n.is_multiple_of(2);
    trickle(s, "http", start, Duration::from_millis(200), move |i| {
        Some(match (i, login) {
            (0, true) => b"POST /webmail/login HTTP/1.1\r\nHost: cluster.com.ec\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\nuser=".to_vec(),
            (0, false) => b"POST / HTTP/1.1\r\nHost: cluster.com.ec\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            (_, true) => vec![b'a'; 64],
            (_, false) => {
                let mut c = b"40\r\n".to_vec();
                c.extend_from_slice(&[b'b'; 64]);
                c.extend_from_slice(b"\r\n");
                c
            }
        })
    })
    .await
}

fn attacker_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (k / 200) as u8, (k % 200 + 1) as u8)
}

// ------------------------------------------------------------------ the test

#[derive(Default)]
struct Latencies {
    smtp: Vec<f64>,
    imap: Vec<f64>,
    http: Vec<f64>,
    dns: Vec<f64>,
    errors: Vec<String>,
}

fn timed(
    out: &mut Vec<f64>,
    errors: &mut Vec<String>,
    what: &str,
    f: impl FnOnce() -> Result<(), String>,
) {
    let t = Instant::now();
    match f() {
        Ok(()) => out.push(t.elapsed().as_secs_f64() * 1000.0),
        Err(e) => errors.push(format!("{what}: {e}")),
    }
}

fn summary(name: &str, v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let max = v.last().copied().unwrap_or(f64::NAN);
    format!(
        "{name}: {} served, median {med:.1} ms, max {max:.1} ms",
        v.len()
    )
}

#[test]
fn a_hostile_crowd_is_cut_off_by_its_deadlines_in_bounded_memory_while_clients_are_served() {
    let node = start_node();
    let pid = node.pid().expect("node pid");
    legit_smtp(node.smtp_port, 0).expect("first delivery");

    per_ip_caps_refuse_one_address_past_its_cap(&node);

    // RSS sampler and legitimate clients, in threads, until the attack is over.
    let over = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (over, peak) = (over.clone(), peak_rss.clone());
        std::thread::spawn(move || {
            while !over.load(Ordering::Relaxed) {
                let (_, rss) = rss_mb(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let legit = {
        let (over, lat) = (over.clone(), lat.clone());
        let (smtp, imap, http, dns) = (
            node.smtp_port,
            node.imap_port,
            node.http_port,
            node.dns_port,
        );
        std::thread::spawn(move || {
            let mut n = 1;
            while !over.load(Ordering::Relaxed) {
                let mut l = Latencies::default();
                let Latencies {
                    smtp: a,
                    imap: b,
                    http: c,
                    dns: d,
                    errors,
                } = &mut l;
                timed(a, errors, "smtp", || legit_smtp(smtp, n));
                timed(b, errors, "imap", || legit_imap(imap));
                timed(c, errors, "http", || legit_http(http));
                timed(d, errors, "dns", || legit_dns(dns));
                let mut all = lat.lock().unwrap();
                all.smtp.append(a);
                all.imap.append(b);
                all.http.append(c);
                all.dns.append(d);
                all.errors.append(errors);
                drop(all);
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let cuts: Vec<Cut> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..ATTACKERS {
            set.spawn(imap_attacker(attacker_ip(i), node.imap_port));
            set.spawn(smtp_attacker(attacker_ip(ATTACKERS + i), node.smtp_port));
            set.spawn(http_attacker(
                attacker_ip(2 * ATTACKERS + i),
                node.http_port,
                i,
            ));
        }
        let mut cuts = Vec::new();
        while let Some(c) = set.join_next().await {
            cuts.push(c.expect("attacker task"));
        }
        cuts
    });
    let attack = started.elapsed();
    // Clients keep being served for a moment after the crowd is gone.
    std::thread::sleep(Duration::from_millis(500));
    over.store(true, Ordering::Relaxed);
    legit.join().unwrap();
    sampler.join().unwrap();
    let (hwm, rss) = rss_mb(pid);

    let lat = lat.lock().unwrap();
    println!(
        "attack of {} connections over in {:.1} s",
        cuts.len(),
        attack.as_secs_f64()
    );
    for (name, v) in [
        ("smtp", &lat.smtp),
        ("imap", &lat.imap),
        ("http", &lat.http),
        ("dns", &lat.dns),
    ] {
        println!("legitimate {}", summary(name, v));
    }
    for kind in ["imap", "smtp", "http"] {
        let times: Vec<f64> = cuts
            .iter()
            .filter(|c| c.kind == kind)
            .filter_map(|c| c.after)
            .collect();
        let max = times.iter().copied().fold(0.0, f64::max);
        println!(
            "{kind} attackers: {} cut, the last after {max:.1} s",
            times.len()
        );
    }
    println!(
        "node RSS: peak {hwm} MB (sampled {} MB), now {rss} MB",
        peak_rss.load(Ordering::Relaxed)
    );

    assert!(
        lat.errors.is_empty(),
        "legitimate clients failed: {:?}",
        lat.errors
    );
    for (name, v) in [
        ("smtp", &lat.smtp),
        ("imap", &lat.imap),
        ("http", &lat.http),
        ("dns", &lat.dns),
    ] {
        assert!(
            v.len() >= 3,
            "{name}: only {} legitimate exchanges during the attack",
            v.len()
        );
    }
    let late: Vec<&Cut> = cuts
        .iter()
        .filter(|c| {
            c.after
                .is_none_or(|t| t > (Duration::from_secs(DEADLINE) + SLACK).as_secs_f64())
        })
        .collect();
    assert!(
        late.is_empty(),
        "{} attackers not cut off by their deadline, e.g. {:?}",
        late.len(),
        &late[..late.len().min(3)]
    );
    // The SMTP ones were told why; the login-form ones got 408.
    for c in cuts.iter().filter(|c| c.kind == "smtp") {
        assert!(
            c.said.contains("421 4.4.2"),
            "smtp attacker was told {:?}",
            c.said
        );
    }
    assert!(
        cuts.iter()
            .filter(|c| c.kind == "http")
            .filter(|c| c.said.starts_with("HTTP/1.1 408"))
            .count()
            >= ATTACKERS / 2,
        "the endless sign-in forms get 408"
    );
    assert!(
        hwm < RSS_LIMIT_MB,
        "node peak RSS {hwm} MB (limit {RSS_LIMIT_MB} MB)"
    );
    // What the trickled messages left in temporary files is removed.
    assert!(
        common::within(Duration::from_secs(5), || node.spool_files().is_empty()),
        "partial bodies left in blobs/tmp: {:?}",
        node.spool_files()
    );
    // Nothing of them was delivered: only the legitimate messages are in the INBOX.
    let delivered = common::imap_count(node.imap_port, "ana", "pw-ana-1", "INBOX");
    assert_eq!(
        delivered,
        lat.smtp.len() + 1,
        "only the legitimate messages were delivered"
    );
    let log = node.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
