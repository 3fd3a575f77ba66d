//! The supervisor seen from outside, on a real node on loopback: fault injection over
//! the control socket (`clusterd debug panic|stop|start|wedge SERVICE`) and the
//! supervisor's answers to it, checked with real clients (an IMAP greeting read
//! over TCP, dig, curl); the events in `clusterd status --json`; fault injection
//! refused without `[monitor] allow_fault_injection`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{Node, assert_ok, require_tool, within};

fn node_with_faults() -> Node {
    Node::builder()
        .extra("[monitor]\nallow_fault_injection = true")
        .start()
}

/// The IMAP greeting on 127.0.0.1:`port`, if one comes within 3 s.
fn imap_greeting(port: u16) -> Option<String> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.starts_with("* OK").then_some(line)
}

/// `clusterd status --json` of the node.
fn status(node: &Node) -> serde_json::Value {
    let out = assert_ok(&node.cli(&["status", "--json"], None), "status --json");
    serde_json::from_str(&out).expect("status JSON")
}

/// The supervised service `name` in a status.
fn service<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["supervised"]
        .as_array()
        .expect("supervised")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {st:#}"))
}

/// dig's status line for the zone's SOA over UDP (or TCP), "NO ANSWER" if none.
fn dig_soa(port: u16, tcp: bool) -> String {
    require_tool("dig");
    let mut cmd = Command::new("dig");
    cmd.args([
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        "+tries=1",
        "+time=2",
        "cluster.com.ec",
        "SOA",
    ]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd.output().expect("run dig");
    String::from_utf8_lossy(&out.stdout)
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_string()
}

/// curl's HTTP status for / with a 2 s limit, None when it got no answer.
fn curl(port: u16) -> Option<u16> {
    require_tool("curl");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("run curl");
    let code: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    (out.status.success() && code != 0).then_some(code)
}

#[test]
fn a_panicking_imap_task_is_restarted_and_the_event_shows_in_status() {
    let node = node_with_faults();
    assert!(
        imap_greeting(node.imap_port).is_some(),
        "IMAP answers at first"
    );
    let before = service(&status(&node), "imap")["restarts"]
        .as_u64()
        .unwrap();

    assert_ok(
        &node.cli(&["debug", "panic", "imap"], None),
        "debug panic imap",
    );
    // Restarted after the first back-off (100 ms): a client works again.
    assert!(
        within(Duration::from_secs(10), || {
            service(&status(&node), "imap")["restarts"]
                .as_u64()
                .unwrap()
                > before
        }),
        "the supervisor restarts imap; log:\n{}",
        node.log_text()
    );
    let greeting = imap_greeting(node.imap_port).expect("an IMAP greeting after the restart");
    assert!(greeting.contains("IMAP4rev1") || greeting.starts_with("* OK"));

    let st = status(&node);
    let imap = service(&st, "imap");
    assert_eq!(imap["running"], true, "{imap:#}");
    assert!(
        imap["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("injected panic"),
        "{imap:#}"
    );
    let kinds: Vec<&str> = st["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["service"] == "imap")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.ends_with(&["panicked", "restarted"]),
        "imap's events: {kinds:?}"
    );
    // The text form shows it too.
    let text = assert_ok(&node.cli(&["status"], None), "status");
    assert!(
        text.contains("[imap]") && text.contains("Panicked"),
        "{text}"
    );
}

#[test]
fn a_stopped_dns_refuses_and_answers_again_once_started() {
    let node = node_with_faults();
    assert_eq!(dig_soa(node.dns_port, false), "NOERROR");

    assert_ok(&node.cli(&["debug", "stop", "dns"], None), "debug stop dns");
    // The listeners are closed when the command returns.
    let refused = TcpStream::connect(("127.0.0.1", node.dns_port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(dig_soa(node.dns_port, false), "NO ANSWER");
    let dns = service(&status(&node), "dns").clone();
    assert_eq!(
        (dns["running"].as_bool(), dns["wanted"].as_bool()),
        (Some(false), Some(false))
    );
    // Stopped on request: the other services keep running.
    assert!(imap_greeting(node.imap_port).is_some());

    assert_ok(
        &node.cli(&["debug", "start", "dns"], None),
        "debug start dns",
    );
    assert_eq!(dig_soa(node.dns_port, false), "NOERROR", "UDP");
    assert_eq!(dig_soa(node.dns_port, true), "NOERROR", "TCP");
    assert_eq!(service(&status(&node), "dns")["running"], true);
}

#[test]
fn a_wedged_http_times_out_until_restarted() {
    let node = node_with_faults();
    assert_eq!(curl(node.http_port), Some(200));

    assert_ok(
        &node.cli(&["debug", "wedge", "http"], None),
        "debug wedge http",
    );
    // The port still accepts connections (the listener stays), but nothing answers.
    assert!(TcpStream::connect(("127.0.0.1", node.http_port)).is_ok());
    assert_eq!(curl(node.http_port), None, "a wedged http answers nothing");
    assert_eq!(service(&status(&node), "http")["wedged"], true);

    assert_ok(&node.cli(&["restart", "http"], None), "restart http");
    assert_eq!(curl(node.http_port), Some(200), "restarted, it answers");
    let http = service(&status(&node), "http").clone();
    assert_eq!(http["wedged"], false, "{http:#}");
    assert!(http["restarts"].as_u64().unwrap() >= 1, "{http:#}");
}

#[test]
fn fault_injection_is_refused_without_the_config_key() {
    let node = Node::start();
    for args in [
        ["debug", "stop", "dns"],
        ["debug", "wedge", "http"],
        ["debug", "panic", "imap"],
        ["debug", "wedge", "supervisor"],
    ] {
        let out = node.cli(&args, None);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("allow_fault_injection"),
            "{args:?}: the error names the key: {err}"
        );
    }
    // Nothing was touched.
    assert_eq!(dig_soa(node.dns_port, false), "NOERROR");
    assert_eq!(curl(node.http_port), Some(200));
    // A plain restart is an administrator's command, not fault injection.
    assert_ok(&node.cli(&["restart", "imap"], None), "restart imap");
    assert!(imap_greeting(node.imap_port).is_some());
    // The cluster loop is not restartable on its own, and a single node has none.
    let out = node.cli(&["restart", "cluster"], None);
    assert!(!out.status.success());
}

/// The datagrams clusterd sends to `NOTIFY_SOCKET` within `limit`.
fn notifications(sock: &std::os::unix::net::UnixDatagram, limit: Duration) -> Vec<String> {
    let end = std::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

/// The TCP ports listening on this machine now (/proc/net/tcp, state 0A).
fn listening_tcp_ports() -> std::collections::HashSet<u16> {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit(':').next()?;
            (f.get(3) == Some(&"0A")).then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

#[test]
fn systemd_hears_ready_once_serving_then_status_and_watchdog_pings_until_the_supervisor_is_wedged()
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    // READY=1 is read on a thread, which notes at once which ports listen.
    let reader = sock.try_clone().unwrap();
    let ready = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        reader
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        loop {
            let n = reader.recv(&mut buf).expect("READY=1 within 60 s");
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains("READY=1") {
                return (msg, listening_tcp_ports());
            }
        }
    });
    let node = Node::builder()
        .extra("[monitor]\nallow_fault_injection = true")
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .env("WATCHDOG_USEC", "600000")
        .start();
    let (first, listening) = ready.join().unwrap();
    // Every listener was bound when READY=1 arrived.
    for p in [
        node.smtp_port,
        node.submission_port,
        node.submissions_port,
        node.imap_port,
        node.imaps_port,
        node.dns_port,
        node.http_port,
        node.https_port,
    ] {
        assert!(listening.contains(&p), "port {p} listened before READY=1");
    }
    assert!(
        first.contains("STATUS=role active (single node); services ok"),
        "READY=1 comes with the status: {first:?}"
    );

    // Pings at a third of the 600 ms interval (at most a second apart).
    let got = notifications(&sock, Duration::from_secs(2));
    let pings = got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!(pings >= 5, "watchdog pings in 2 s: {got:?}");

    // A service stopped on request shows in STATUS=, and pings go on.
    assert_ok(&node.cli(&["debug", "stop", "dns"], None), "debug stop dns");
    let got = notifications(&sock, Duration::from_secs(2));
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("stopped: dns")),
        "{got:?}"
    );
    assert!(got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");
    assert_ok(
        &node.cli(&["debug", "start", "dns"], None),
        "debug start dns",
    );

    // A wedged supervisor pings no more.
    assert_ok(
        &node.cli(&["debug", "wedge", "supervisor"], None),
        "debug wedge supervisor",
    );
    notifications(&sock, Duration::from_millis(500));
    let got = notifications(&sock, Duration::from_secs(2));
    assert!(
        !got.iter().any(|m| m == "WATCHDOG=1"),
        "no pings once wedged: {got:?}"
    );
    // The services themselves still answer: only the supervisor's loop is wedged.
    assert!(imap_greeting(node.imap_port).is_some());
}
