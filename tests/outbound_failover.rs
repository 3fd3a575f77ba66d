//! Outbound delivery across a failover (issue 13, acceptance "Two-node lab"), in the
//! namespace lab of `cluster_lab`: 100 messages are queued on the active node towards
//! a mail exchanger that stalls; the active node dies (kill -9, both links down); the
//! survivor takes over and, once the exchanger answers, delivers all 100. The
//! exchanger counts what it received: none may be missing, and a message may arrive
//! twice only if it was in flight on the dead node. Before the stall the exchanger
//! answers 20 messages at once: node 1 delivers them, and no node may send them again.
//!
//! The fake Internet lives on the lab's LAN, in the CLIENT namespace (10.0.0.10):
//! - DNS: the nodes' own clusterd DNS serves a lab zone `example.net` (MX 10
//!   `mx.example.net` → 10.0.0.10) from a copy of the zones directory, and
//!   `[outbound] resolvers` points at it (127.0.0.1:53 inside each node's
//!   namespace). Nothing real is resolved.
//! - The mail exchanger ([`MX_PY`]) on 10.0.0.10:25. It stalls in the worst place
//!   for at-least-once delivery: it takes the whole message and records it at the
//!   final dot, but holds back its `250` until the test releases it. A message whose
//!   session stalled on the dead node was therefore received once already, and the
//!   survivor (which never learnt of a `250`) sends it again: those are the only
//!   duplicates allowed. `max_per_domain` bounds how many can be in flight.

mod cluster_lab;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use cluster_lab::*;

const REPL_PORT: u16 = 7000;
/// Messages queued towards the stalled MX before the failover.
const MESSAGES: usize = 100;
/// Messages the MX answers at once, before it starts stalling: node 1 delivers them,
/// and no node may ever send them again.
const EARLY: usize = 20;
/// `[outbound] max_per_domain`: the most sessions (so messages in flight) towards
/// example.net at once, so the most duplicates a crash can cause.
const MAX_PER_DOMAIN: usize = 10;
const RCPT: &str = "ana@example.net";

/// The lab zone for the fake Internet's domain.
const EXAMPLE_NET_ZONE: &str = "; example.net: the test's fake Internet domain.
$ORIGIN example.net.
$TTL 60
@   IN SOA ns.example.net. hostmaster.example.net. 1 3600 600 86400 60
    IN NS  ns.example.net.
    IN MX  10 mx.example.net.
ns  IN A   10.0.0.10
mx  IN A   10.0.0.10
";

/// Both nodes replicate in sync mode over the private link, accept relaying from
/// the client, serve `example.net` from a lab copy of the zones directory, and send
/// outbound mail with the look-ups going to their own DNS.
fn outbound_lab() -> Lab {
    let lab = Lab::new();
    let zones = lab.dir.join("zones");
    common::copy_dir(&common::repo_zones_dir(), &zones);
    std::fs::write(zones.join("example.net.zone"), EXAMPLE_NET_ZONE).expect("write zone");
    for n in [N1, N2] {
        let base = lab.config_text(n);
        let repo_zones = format!("zones_dir = \"{}\"", common::repo_zones_dir().display());
        assert!(base.contains(&repo_zones), "lab config without zones_dir");
        // The lab's relay_from holds the client: it relays through the VIP.
        let base = base.replace(&repo_zones, &format!("zones_dir = \"{}\"", zones.display()));
        let text = format!(
            "{base}
[replication]
listen = \"{me}:{REPL_PORT}\"
peer = \"{them}:{REPL_PORT}\"
ack_timeout_ms = 2000

[outbound]
resolvers = [\"127.0.0.1:53\"]
mx_port = 25
max_connections = 50
max_per_domain = {MAX_PER_DOMAIN}
connect_timeout_s = 5
command_timeout_s = 120
retry_schedule_s = [1]
",
            me = n.private_ip(),
            them = n.peer().private_ip(),
        );
        lab.set_config(n, &text);
    }
    lab
}

/// The fake mail exchanger, run inside CLIENT; killed by PID on drop.
struct Mx {
    child: Option<Child>,
    /// One JSON object per line (see [`MX_PY`]).
    log: PathBuf,
    /// Created by [`Mx::release`]: from then on every `250` goes out.
    release: PathBuf,
}

/// A message the exchanger took (its final dot arrived).
#[derive(Clone, Debug)]
struct Received {
    mid: String,
    peer: String,
    /// Whether its `250` was held back when it arrived.
    stalled: bool,
}

impl Mx {
    fn start(lab: &Lab) -> Mx {
        let log = lab.dir.join("mx-log.jsonl");
        let release = lab.dir.join("mx-release");
        let ready = lab.dir.join("mx-ready");
        let child = python_spawn_in(
            &lab.client_ns(),
            MX_PY,
            &[
                "0.0.0.0",
                "25",
                log.to_str().unwrap(),
                release.to_str().unwrap(),
                ready.to_str().unwrap(),
                "600",
                &EARLY.to_string(),
            ],
        );
        let mut mx = Mx {
            child: Some(child),
            log,
            release,
        };
        let t0 = Instant::now();
        while !ready.exists() {
            if let Some(status) = mx.child.as_mut().unwrap().try_wait().unwrap() {
                let out = mx.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "the lab MX exited at start ({status}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the lab MX did not start in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mx
    }

    fn release(&self) {
        std::fs::write(&self.release, b"go").expect("write the MX release file");
    }

    /// Every message received so far, in order of arrival.
    fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            // A line being written may be incomplete: only whole ones count.
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["ev"] == "data")
            .map(|v| Received {
                mid: v["mid"].as_str().unwrap_or_default().to_string(),
                peer: v["peer"].as_str().unwrap_or_default().to_string(),
                stalled: v["stalled"].as_bool().unwrap_or(false),
            })
            .collect()
    }

    /// The raw log (for failure messages).
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The node's queue (`clusterd queue list --json`).
fn queue(lab: &Lab, node: NodeId) -> Vec<serde_json::Value> {
    let out = lab.cli(node, &["queue", "list", "--json"]);
    let text = common::assert_ok(&out, &format!("clusterd queue list on {}", node.name()));
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("queue list --json is not JSON ({e}): {text}"));
    v.as_array().cloned().unwrap_or_default()
}

/// The ids of the node's queue entries.
fn queue_ids(lab: &Lab, node: NodeId) -> BTreeSet<String> {
    queue(lab, node)
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Copies per Message-ID.
fn copies(received: &[Received]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in received {
        *m.entry(r.mid.clone()).or_default() += 1;
    }
    m
}

fn state(lab: &Lab, mx: &Mx) -> String {
    let out = lab.cli(N2, &["queue", "list"]);
    let q = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = mx.log_text();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "---- MX log (last 60 of {} lines)\n{}\n---- node 2 queue\n{}\n{}",
        lines.len(),
        lines[lines.len().saturating_sub(60)..].join("\n"),
        q.chars().take(6000).collect::<String>(),
        lab.diagnostics()
    )
}

/// Submits `n` messages for [`RCPT`] to the VIP from the client (one SMTP session on
/// port 25, the client being in `smtp.relay_from`); returns their Message-IDs.
fn submit(lab: &Lab, tag: &str, n: usize) -> BTreeSet<String> {
    let out = python_in(
        &lab.client_ns(),
        SUBMIT_PY,
        &[VIP, &n.to_string(), tag, "cliente@cluster.com.ec", RCPT],
    );
    let text = common::assert_ok(&out, "submitting from the client");
    let ids: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("250 ").map(str::to_string))
        .collect();
    assert_eq!(ids.len(), n, "not every message got 250:\n{text}");
    ids
}

#[test]
fn the_survivor_delivers_every_queued_message_after_the_active_node_dies() {
    let t_test = Instant::now();
    let mut lab = outbound_lab();
    let mx = Mx::start(&lab);
    lab.start_cluster();
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(10),
        "node 1 ships its log to node 2",
        |l| l.status(N1).text.contains("shipping yes"),
    );

    // The MX answers at first: node 1 delivers, and both queues empty (each
    // recipient's outcome is an op replicated before the next one starts).
    let early = submit(&lab, "early", EARLY);
    let t0 = Instant::now();
    loop {
        let got: BTreeSet<String> = mx.received().into_iter().map(|r| r.mid).collect();
        if early.is_subset(&got) && queue(&lab, N1).is_empty() && queue(&lab, N2).is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "node 1 did not deliver the {EARLY} early messages in 20 s (or a queue kept them)\n{}",
            state(&lab, &mx)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let early_received = mx.received();
    assert!(
        early_received
            .iter()
            .all(|r| !r.stalled && (r.peer == N1.lan_ip() || r.peer == VIP)),
        "node 1 alone sent the early messages, answered at once: {early_received:?}"
    );

    // Now the MX stalls: 100 messages for example.net, submitted to the VIP.
    let submitted = submit(&lab, "queued", MESSAGES);

    // Both nodes hold the same 100 entries (sync replication: before each 250).
    let (q1, q2) = (queue_ids(&lab, N1), queue_ids(&lab, N2));
    assert!(
        q1.len() == MESSAGES && q1 == q2,
        "both nodes should hold the same {MESSAGES} queue entries (node 1 {}, node 2 {}):\n{}",
        q1.len(),
        q2.len(),
        state(&lab, &mx)
    );

    // Node 1 sends against the stalled exchanger: exactly max_per_domain sessions
    // reach the final dot and wait for their 250; no more start.
    let t0 = Instant::now();
    while mx.received().len() < EARLY + MAX_PER_DOMAIN {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "node 1 did not fill {MAX_PER_DOMAIN} sessions with the stalled MX in 20 s (got {})\n{}",
            mx.received().len() - EARLY,
            state(&lab, &mx)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let in_flight = mx.received().split_off(EARLY);
    assert_eq!(
        in_flight.len(),
        MAX_PER_DOMAIN,
        "node 1 must keep at most max_per_domain = {MAX_PER_DOMAIN} sessions towards example.net:\n{}",
        state(&lab, &mx)
    );
    assert!(
        in_flight
            .iter()
            .all(|r| r.stalled && submitted.contains(&r.mid)),
        "the in-flight messages are ours and stalled: {in_flight:?}"
    );
    // Only the active node sends: the standby holds the same queue and stays quiet.
    assert!(
        in_flight
            .iter()
            .all(|r| r.peer == N1.lan_ip() || r.peer == VIP),
        "only node 1 (the active node) may send: {in_flight:?}"
    );
    let in_flight: BTreeSet<String> = in_flight.into_iter().map(|r| r.mid).collect();
    assert_eq!(
        in_flight.len(),
        MAX_PER_DOMAIN,
        "distinct in-flight messages"
    );

    // Node 1 dies as a machine does: the process is killed, both links go down.
    // Whatever the MX receives from now on comes from the survivor.
    let at_kill = mx.received().len();
    let t_kill = Instant::now();
    lab.kill_node(N1);
    lab.link_down(N1, "eth0");
    lab.link_down(N1, "eth1");
    let took_over = lab.expect_within(
        t_kill,
        DEADTIME + Duration::from_secs(4),
        "node 2 takes over after node 1 died",
        |l| l.vip_holders() == [N2] && l.status(N2).role.as_deref() == Some("active"),
    );
    println!("node 2 active {} ms after the kill", took_over.as_millis());
    assert_eq!(
        queue_ids(&lab, N2),
        q1,
        "the survivor starts with the same {MESSAGES} entries queued"
    );

    // The survivor picks the queue up (its sessions stall too; it may have started
    // while the takeover was being checked), then the MX answers.
    let t0 = Instant::now();
    while mx.received().len() <= at_kill {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "node 2 sent nothing in 10 s after taking over\n{}",
            state(&lab, &mx)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t_release = Instant::now();
    mx.release();

    // Bounded: every submitted message arrives.
    let deadline = Duration::from_secs(60);
    loop {
        let got: BTreeSet<String> = mx.received().into_iter().map(|r| r.mid).collect();
        if submitted.is_subset(&got) {
            break;
        }
        assert!(
            t_release.elapsed() < deadline,
            "after {} s the MX still lacks {} of {MESSAGES} messages\n{}",
            deadline.as_secs(),
            submitted.difference(&got).count(),
            state(&lab, &mx)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered_in = t_release.elapsed();

    // The survivor's queue empties (every recipient recorded as delivered).
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(10),
        "node 2's queue is empty once everything arrived",
        |l| queue(l, N2).is_empty(),
    );
    // Nothing more arrives afterwards (no entry is sent again).
    let settled = mx.received().len();
    std::thread::sleep(Duration::from_secs(2));
    let received = mx.received();
    assert_eq!(
        received.len(),
        settled,
        "messages kept arriving after the queue emptied:\n{}",
        state(&lab, &mx)
    );

    // None lost, nothing foreign, duplicates only among the in-flight ones.
    let per_mid = copies(&received);
    let got: BTreeSet<String> = per_mid.keys().cloned().collect();
    let all: BTreeSet<String> = early.union(&submitted).cloned().collect();
    assert_eq!(got, all, "the MX received exactly the submitted messages");
    assert!(
        early.iter().all(|m| per_mid[m] == 1),
        "a message delivered before the failover was sent again"
    );
    let duplicated: BTreeSet<String> = per_mid
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(m, _)| m.clone())
        .collect();
    let extra_copies: usize = per_mid.values().map(|n| n - 1).sum();
    assert!(
        duplicated.is_subset(&in_flight),
        "only messages in flight on the dead node may arrive twice; also duplicated: {:?}",
        duplicated.difference(&in_flight).collect::<Vec<_>>()
    );
    assert!(
        per_mid.values().all(|n| *n <= 2),
        "no message may arrive more than twice: {per_mid:?}"
    );
    assert!(extra_copies <= MAX_PER_DOMAIN);
    // The survivor recorded every delivery and warned of nothing outbound.
    let recorded = lab.log(N2).matches("outbound: delivered").count();
    let warnings = lab.warnings_since(N2, 0, &["outbound"]);
    assert!(
        warnings.is_empty(),
        "node 2 warned about outbound delivery:\n{}",
        warnings.join("\n")
    );
    let from_n2 = received.len() - at_kill;
    println!(
        "outbound failover: {EARLY} delivered before the stall; {MESSAGES} queued, {} in \
         flight on node 1 at the kill; {} received by the MX ({} distinct, {} from node 2), \
         {} duplicates ({} messages); node 2 logged {} deliveries; all delivered {} ms after \
         the MX answered; test took {} s",
        in_flight.len(),
        received.len(),
        per_mid.len(),
        from_n2,
        extra_copies,
        duplicated.len(),
        recorded,
        delivered_in.as_millis(),
        t_test.elapsed().as_secs()
    );
}

/// argv: host count tag sender rcpt. Submits `count` messages over one SMTP session
/// on port 25, each with a unique Message-ID; prints "250 <message-id>" per accepted
/// message.
const SUBMIT_PY: &str = r#"
import smtplib, sys, time, uuid
host, n, tag, sender, rcpt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = None
for attempt in range(50):
    try:
        s = smtplib.SMTP(host, 25, timeout=20)
        break
    except OSError:
        time.sleep(0.1)
assert s is not None, "no SMTP on the VIP"
s.ehlo("cliente.cluster.com.ec")
for i in range(n):
    mid = "<%s-%d-%s@cliente.cluster.com.ec>" % (tag, i, uuid.uuid4().hex)
    msg = ("From: %s\r\nTo: %s\r\nSubject: %s %d\r\nMessage-ID: %s\r\n\r\n"
           "%s message %d of the outbound failover test\r\n" % (sender, rcpt, tag, i, mid, tag, i))
    s.mail(sender)
    code, resp = s.rcpt(rcpt)
    assert code == 250, ("RCPT", code, resp)
    code, resp = s.data(msg.encode())
    assert code == 250, ("DATA", code, resp)
    print("250 " + mid, flush=True)
s.quit()
"#;

/// argv: addr port log release ready lifetime_s answer_first. A scripted SMTP server
/// (EHLO with PIPELINING and 8BITMIME, no STARTTLS). At a message's final dot it
/// appends `{"ev":"data","peer":..,"mid":..,"stalled":bool}` to LOG; the first
/// ANSWER_FIRST messages get their `250` at once, every later one only once the file
/// RELEASE exists (stalled until then). Connects and ends of sessions are logged too.
/// Creates READY once listening; exits by itself after LIFETIME_S seconds.
const MX_PY: &str = r#"
import json, os, re, socket, sys, threading, time
addr, port, log_path, release, ready, life = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])
answer_first = int(sys.argv[7])
taken = [0]
lock = threading.Lock()
log = open(log_path, "a")
end = time.monotonic() + life
def record(**ev):
    ev["t"] = time.time()
    with lock:
        log.write(json.dumps(ev) + "\n")
        log.flush()
def handle(conn, peer):
    conn.settimeout(150)
    f = conn.makefile("rb")
    send = lambda s: conn.sendall(s.encode())
    record(ev="connect", peer=peer)
    try:
        send("220 mx.example.net ESMTP lab\r\n")
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                send("250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif cmd.startswith(b"HELO") or cmd.startswith(b"RSET") or cmd.startswith(b"NOOP"):
                send("250 2.0.0 ok\r\n")
            elif cmd.startswith(b"MAIL FROM:"):
                send("250 2.1.0 ok\r\n")
            elif cmd.startswith(b"RCPT TO:"):
                send("250 2.1.5 ok\r\n")
            elif cmd == b"DATA":
                send("354 go ahead\r\n")
                body = []
                while True:
                    l = f.readline()
                    if not l:
                        raise ConnectionError("EOF in DATA")
                    if l == b".\r\n":
                        break
                    body.append(l)
                head = b"".join(body).split(b"\r\n\r\n", 1)[0]
                m = re.search(rb"(?im)^message-id:\s*(\S+)", head)
                mid = m.group(1).decode() if m else ""
                with lock:
                    taken[0] += 1
                    stalled = taken[0] > answer_first and not os.path.exists(release)
                record(ev="data", peer=peer, mid=mid, stalled=stalled)
                while stalled and not os.path.exists(release) and time.monotonic() < end:
                    time.sleep(0.05)
                send("250 2.0.0 queued\r\n")
            elif cmd == b"QUIT":
                send("221 2.0.0 bye\r\n")
                break
            else:
                send("502 5.5.2 not here\r\n")
    except (OSError, ConnectionError) as e:
        record(ev="error", peer=peer, error=repr(e))
    finally:
        record(ev="close", peer=peer)
        try:
            conn.close()
        except OSError:
            pass
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(128)
srv.settimeout(0.2)
open(ready, "w").close()
while time.monotonic() < end:
    try:
        conn, peer = srv.accept()
    except socket.timeout:
        continue
    threading.Thread(target=handle, args=(conn, peer[0]), daemon=True).start()
"#;
