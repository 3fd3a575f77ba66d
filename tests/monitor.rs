//! The monitor on a real node (loopback, high ports, `interval_s = 1`): the probes
//! see every service answer, and IMAP fail while its sessions are used up (a real
//! refusal: `* BYE [UNAVAILABLE] Too many sessions`) and pass again once they are
//! free; `/status.json` and the history show failed then ok; the alert mail reaches
//! sistemas' INBOX (read with imaplib, tests/monitor.py) and the alert file has the
//! lines; a data_dir on a small tmpfs filled past `min_free_percent` raises the disk
//! alert; `/metrics` passes `promtool check metrics`; `/status` renders in headless
//! Chromium at desktop and phone widths (screenshots in
//! target/test-artifacts/monitor/); all three are refused outside `status_from`; a
//! certificate expiring within `cert_warn_days` and a queue entry older than
//! `queue_max_age_s` are alerted, a `ping_hosts` address that answers is ok.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Node, assert_ok, require_tool, within};

const MONITOR: &str =
    "[monitor]\ninterval_s = 1\nprobe_timeout_s = 1\nfailures_before_restart = 2\n";

/// GET `path` on 127.0.0.1:`port`: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("http connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body, &text))
}

/// The body of a chunked response, else as is.
fn dechunk(body: &str, whole: &str) -> String {
    if !whole
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn status_json(node: &Node, query: &str) -> serde_json::Value {
    let (code, body) = get(node.http_port, &format!("/status.json{query}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn result_of(v: &serde_json::Value, node: &str, service: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == node && c["service"] == service)
        .map(|c| c["result"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

/// The history's (service, kind) pairs, oldest first.
fn history(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["service"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    h.reverse();
    h
}

/// Opens `n` IMAP sessions (all of `imap.max_sessions`); holding them makes the
/// node's own IMAP probe fail. A session refused because a probe held a slot at that
/// moment is tried again (for at most 10 s).
fn use_up_imap(port: u16, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    let mut refused = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "IMAP sessions kept being refused: {refused:?}"
        );
        let s = TcpStream::connect(("127.0.0.1", port)).expect("imap connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.starts_with("* OK") {
            held.push(s);
        } else {
            refused.push(line);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    held
}

fn py(args: &[&str]) -> String {
    require_tool("python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/monitor.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert_ok(&out, &format!("tests/monitor.py {}", args[0]))
}

/// Polls `/status.json{query}` (at most 15 s) until `cond` holds; the last answer.
fn wait_for(
    node: &Node,
    query: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let held = within(Duration::from_secs(15), || {
        last = status_json(node, query);
        cond(&last)
    });
    assert!(held, "{what}: {last:#}\n{}", node.log_text());
    last
}

/// Each (mail subject prefix, "service kind", text of the detail) has its line in the
/// alert file and its mail in sistemas' INBOX (password clave-sis).
fn alerted(node: &Node, alerts: &[(&str, &str, &str)]) {
    let file = std::fs::read_to_string(node.data_dir.join("alerts.log")).expect("alert file");
    let mut subjects = Vec::new();
    for (prefix, what, detail) in alerts {
        assert!(
            file.lines()
                .any(|l| l.contains(&format!(" clusternodo1 {what} ")) && l.contains(detail)),
            "{what} ({detail}) not in the alert file:\n{file}"
        );
        subjects.push(format!("[clusterd] {prefix}: clusternodo1 {what}"));
    }
    // The mail, delivered to sistemas (aliases and all) through the local path.
    let port = node.imap_port.to_string();
    let mut args = vec!["alert_mail", &port, "sistemas", "clave-sis"];
    args.extend(subjects.iter().map(String::as_str));
    py(&args);
}

fn all_ok(v: &serde_json::Value) -> bool {
    [
        "smtp", "imap", "dns", "http", "webmail", "disk", "cert", "queue",
    ]
    .iter()
    .all(|s| result_of(v, "clusternodo1", s) == "ok")
}

#[test]
fn imap_fails_while_its_sessions_are_used_up_then_recovers_with_history_alerts_and_mail() {
    let node = Node::builder()
        .imap("max_sessions = 2")
        .extra(&format!("{MONITOR}alert_every_s = 300\n"))
        .start();
    node.add_user("sistemas", "clave-sis");
    wait_for(&node, "", "every service ok", all_ok);
    let held = use_up_imap(node.imap_port, 2);
    let last = wait_for(&node, "", "imap failing", |v| {
        result_of(v, "clusternodo1", "imap") == "failing"
    });
    let check = last["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "imap")
        .unwrap()
        .clone();
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("Too many sessions"),
        "{check}"
    );
    // After failures_before_restart failures the policy has the supervisor restart
    // IMAP; the held sessions outlive a restart, so it keeps failing.
    wait_for(&node, "?service=imap", "restart done", |v| {
        history(v).iter().any(|(_, k)| k == "restarted")
    });
    drop(held);
    // The history: down, then recovered (filtered to IMAP: nothing else in it).
    let v = wait_for(
        &node,
        "?service=imap&node=clusternodo1",
        "imap recovered",
        |v| history(v).iter().any(|(_, k)| k == "recovered"),
    );
    assert_eq!(result_of(&v, "clusternodo1", "imap"), "ok");
    let kinds: Vec<String> = history(&v).into_iter().map(|(_, k)| k).collect();
    let down = kinds.iter().position(|k| k == "down").expect("down event");
    let up = kinds
        .iter()
        .rposition(|k| k == "recovered")
        .expect("recovered event");
    assert!(down < up, "{kinds:?}");
    assert!(history(&v).iter().all(|(s, _)| s == "imap"), "{v:#}");
    // A date range in the past holds none of it.
    let old = status_json(&node, "?from=2000-01-01&to=2000-01-02");
    assert!(history(&old).is_empty(), "{old:#}");

    alerted(
        &node,
        &[
            ("ALERT", "imap down", "is failing"),
            ("RECOVERED", "imap recovered", "passes again"),
        ],
    );
    // The journal has the structured event.
    assert!(node.log_text().contains("kind=down"), "{}", node.log_text());

    // `clusterd status` prints the table, without colours off a terminal.
    let out = assert_ok(&node.cli(&["status"], None), "clusterd status");
    let line = out
        .lines()
        .find(|l| l.starts_with("clusternodo1") && l.contains(" imap "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" ok "), "{line}");
    assert!(!out.contains('\x1b'), "{out}");
    assert!(out.contains("recent events:"), "{out}");
}

/// `clusterd status --json`'s monitor part (the control socket: it answers while
/// HTTP is down).
fn cli_status(node: &Node) -> serde_json::Value {
    let out = assert_ok(&node.cli(&["status", "--json"], None), "clusterd status");
    let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    v["monitor"].clone()
}

/// Whether `service` answers on `node` by its protocol, within a second.
fn answers(node: &Node, service: &str) -> bool {
    match service {
        "imap" => TcpStream::connect(("127.0.0.1", node.imap_port))
            .and_then(|s| {
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line)?;
                Ok(line.starts_with("* OK"))
            })
            .unwrap_or(false),
        "dns" => {
            let out = Command::new("dig")
                .args(["+time=1", "+tries=1", "+short", "@127.0.0.1", "-p"])
                .arg(node.dns_port.to_string())
                .args(["cluster.com.ec", "SOA"])
                .output()
                .expect("dig");
            out.status.success() && !out.stdout.is_empty()
        }
        "http" => {
            let ok = TcpStream::connect(("127.0.0.1", node.http_port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
                let mut head = [0u8; 12];
                s.read_exact(&mut head)?;
                Ok(head.starts_with(b"HTTP/1.1 200"))
            });
            ok.unwrap_or(false)
        }
        other => panic!("no probe for {other}"),
    }
}

/// The old stack's acceptance test (mon restarting httpd, named and the IMAP
/// daemon), automated: each service stopped or wedged by fault injection answers
/// again within interval_s x failures_before_restart + 5 s, restarted by the monitor
/// through the supervisor; the history shows it failing, restarted and recovered;
/// the alert file has the lines, and sistemas gets an alert and a recovery mail for
/// each.
#[test]
fn stopped_or_wedged_imap_dns_and_http_are_restarted_with_alerts_and_recovery_mail() {
    require_tool("dig");
    let node = Node::builder()
        .extra(&format!(
            "{MONITOR}alert_every_s = 300\nallow_fault_injection = true\n"
        ))
        .start();
    node.add_user("sistemas", "clave-sis");
    wait_for(&node, "", "every service ok", all_ok);
    // interval_s x failures_before_restart + 5 s (MONITOR).
    let (interval_s, failures) = (1, 2);
    let bound = Duration::from_secs(interval_s * failures + 5);
    for (service, fault) in [("imap", "stop"), ("dns", "wedge"), ("http", "stop")] {
        assert!(answers(&node, service), "{service} answers before");
        let t0 = std::time::Instant::now();
        assert_ok(
            &node.cli(&["debug", fault, service], None),
            "clusterd debug",
        );
        assert!(
            !answers(&node, service),
            "{service} still answers after {fault}"
        );
        let back = within(bound, || answers(&node, service));
        assert!(
            back,
            "{service} ({fault}) did not answer again within {bound:?}\n{:#}\n{}",
            cli_status(&node),
            node.log_text()
        );
        println!(
            "{service} after {fault}: answering again in {:?}",
            t0.elapsed()
        );
        // Failing, restarted, recovered: in that order in the history.
        let held = within(Duration::from_secs(10), || {
            let kinds: Vec<String> = history(&cli_status(&node))
                .into_iter()
                .filter(|(s, _)| s == service)
                .map(|(_, k)| k)
                .collect();
            let at = |k: &str| kinds.iter().position(|x| x == k);
            matches!((at("down"), at("restarted"), at("recovered")), (Some(d), Some(r), Some(u)) if d < r && r < u)
        });
        assert!(held, "{service}: {:#}", cli_status(&node));
    }
    alerted(
        &node,
        &[
            ("ALERT", "imap down", "is failing"),
            ("RECOVERED", "imap recovered", "passes again"),
            ("ALERT", "dns down", "is failing"),
            ("RECOVERED", "dns recovered", "passes again"),
            ("ALERT", "http down", "is failing"),
            ("RECOVERED", "http recovered", "passes again"),
        ],
    );
    let v = status_json(&node, "");
    assert!(all_ok(&v), "{v:#}");
}

#[test]
fn status_pages_are_refused_outside_status_from() {
    let node = Node::builder()
        .extra(&format!("{MONITOR}status_from = [\"10.0.0.0/8\"]\n"))
        .start();
    for path in ["/status", "/status.json", "/metrics", "/status?node=x"] {
        let (code, body) = get(node.http_port, path);
        assert_eq!(code, 403, "{path}: {body}");
    }
    // The site itself is not affected.
    assert_eq!(get(node.http_port, "/").0, 200);
}

#[test]
fn metrics_pass_promtool_and_carry_the_probes() {
    require_tool("promtool");
    let node = Node::builder().extra(MONITOR).start();
    let mut body = String::new();
    assert!(
        within(Duration::from_secs(15), || {
            body = get(node.http_port, "/metrics").1;
            body.contains("clusterd_probe_up{node=\"clusternodo1\",service=\"imap\"} 1")
        }),
        "{body}"
    );
    for want in [
        "clusterd_probe_latency_seconds{node=\"clusternodo1\",service=\"dns\"}",
        "clusterd_role{role=\"active\"} 1",
        "clusterd_queue_messages 0",
        "clusterd_messages 0",
        "clusterd_node_healthy 1",
    ] {
        assert!(body.contains(want), "{want} missing:\n{body}");
    }
    // The counters count: the probes' own SMTP sessions and HTTP requests at least.
    let http: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("clusterd_requests_total{protocol=\"http\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(http >= 2, "{body}");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_status_page_renders_in_chromium_at_desktop_and_phone_widths() {
    require_tool("chromium");
    let node = Node::builder()
        .imap("max_sessions = 1")
        .extra(MONITOR)
        .start();
    let held = use_up_imap(node.imap_port, 1);
    wait_for(&node, "", "smtp ok, imap failing", |v| {
        result_of(v, "clusternodo1", "smtp") == "ok"
            && result_of(v, "clusternodo1", "imap") == "failing"
    });
    let art = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/monitor");
    py(&["browser", &node.http_port.to_string(), common::s(&art)]);
    for name in ["status-desktop.png", "status-phone.png"] {
        let len = std::fs::metadata(art.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{name}: {len} bytes");
    }
    drop(held);
}

/// A tmpfs mounted for one test, unmounted (lazily if busy) when dropped, also when
/// the test fails; the mount point is removed.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("clusterd-tmpfs-")
            .tempdir()
            .unwrap()
            .keep();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount");
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            panic!(
                "mount -t tmpfs failed (the test runs as root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_data_dir_filled_past_min_free_percent_raises_the_disk_alert_and_its_recovery() {
    // Declared first, dropped last: the node stops before the unmount.
    let fs = Tmpfs::mount("32m");
    let node = Node::builder()
        .temp_in(&fs.0)
        // The store's own floor below what the test fills to: the alert mails are
        // new mail, refused below it.
        .extra(&format!(
            "{MONITOR}min_free_percent = 40\n\n[store]\nmin_free_mb = 1\n"
        ))
        .start();
    node.add_user("sistemas", "clave-sis");
    wait_for(&node, "", "disk ok", |v| {
        result_of(v, "clusternodo1", "disk") == "ok"
    });
    // Fill the file system to ~75 %.
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![0u8; 24 << 20]).expect("fill the tmpfs");
    let last = wait_for(&node, "?service=disk", "disk_low", |v| {
        history(v).iter().any(|(_, k)| k == "disk_low")
    });
    assert_eq!(result_of(&last, "clusternodo1", "disk"), "failing");
    std::fs::remove_file(&filler).unwrap();
    wait_for(&node, "?service=disk", "disk_ok", |v| {
        history(v).iter().any(|(_, k)| k == "disk_ok")
    });
    alerted(
        &node,
        &[
            ("ALERT", "disk disk_low", "(below 40%)"),
            ("RECOVERED", "disk disk_ok", "% free"),
        ],
    );
    drop(node);
    drop(fs);
}

#[test]
fn an_expiring_certificate_an_old_queue_entry_and_ping_hosts_are_checked() {
    require_tool("openssl");
    require_tool("swaks");
    // A certificate valid for 3 days (cert_warn_days is 14 by default).
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3",
        ])
        .args(["-subj", "/CN=cluster.com.ec", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert_ok(&out, "openssl req -x509");
    let node = Node::builder()
        .extra(&format!(
            "{MONITOR}queue_max_age_s = 1\nping_hosts = [\"127.0.0.1\"]\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ))
        .start();
    // A message for another domain stays queued (the test's resolver is a closed port).
    let port = node.smtp_port.to_string();
    let out = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "ana@cluster.com.ec",
        ])
        .args([
            "--to",
            "alguien@example.org",
            "--header",
            "Subject: a la cola",
        ])
        .output()
        .expect("swaks");
    let log = assert_ok(&out, "swaks");
    assert!(log.contains("250 2.0.0"), "{log}");
    let v = wait_for(&node, "", "certificate and queue alerts, ping ok", |v| {
        let kinds: Vec<String> = history(v).into_iter().map(|(_, k)| k).collect();
        kinds.contains(&"cert_expiring".to_string())
            && kinds.contains(&"queue_old".to_string())
            && result_of(v, "clusternodo1", "ping 127.0.0.1") == "ok"
    });
    assert_eq!(result_of(&v, "clusternodo1", "cert"), "failing");
    assert_eq!(result_of(&v, "clusternodo1", "queue"), "failing");
    let file = std::fs::read_to_string(node.data_dir.join("alerts.log")).expect("alert file");
    assert!(
        file.contains(" clusternodo1 cert cert_expiring ")
            && file.contains("the TLS certificate expires in 3.0 days"),
        "{file}"
    );
    assert!(
        file.contains(" clusternodo1 queue queue_old ")
            && file.contains("1 queued, the oldest for"),
        "{file}"
    );
}

#[test]
fn behind_redirect_to_https_the_site_and_the_webmail_are_probed_over_https() {
    let node = Node::builder()
        .http("redirect_to_https = true")
        .extra(MONITOR)
        .start();
    // Plain HTTP (the status pages too) answers only the redirect: read the monitor
    // through the control socket.
    assert_eq!(get(node.http_port, "/webmail/login").0, 301);
    let mut v = serde_json::Value::Null;
    let ok = within(Duration::from_secs(15), || {
        let out = assert_ok(&node.cli(&["status", "--json"], None), "status --json");
        v = serde_json::from_str::<serde_json::Value>(&out).unwrap()["monitor"].clone();
        result_of(&v, "clusternodo1", "http") == "ok"
            && result_of(&v, "clusternodo1", "webmail") == "ok"
    });
    assert!(ok, "http and webmail ok over https: {v:#}");
    let detail = |s: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["service"] == s)
            .map(|c| c["detail"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(detail("webmail"), "GET https /webmail/login: 200");
    assert_eq!(detail("http"), "GET https /: 200");
}
