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
