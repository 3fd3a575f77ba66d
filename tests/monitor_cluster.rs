//! The monitor on two nodes in the namespace lab (`cluster_lab`), replicating over
//! the private link, with `interval_s = 1`: each node probes the other's SMTP, IMAP,
//! DNS, HTTP and webmail over the private link (services on 0.0.0.0) and sees them
//! answer (the standby's SMTP and IMAP refer clients elsewhere, which counts as
//! answering); the peer killed → "peer lost" on the survivor (history and alert
//! file), back → "peer back"; the history replicates, so the returned node shows the
//! same events.

mod cluster_lab;
mod common;

use std::time::{Duration, Instant};

use cluster_lab::*;

const REPL_PORT: u16 = 7000;
const MONITOR: &str = "[monitor]\ninterval_s = 1\nprobe_timeout_s = 1\n";

fn lab() -> Lab {
    let lab = Lab::new();
    for n in [N1, N2] {
        let text = format!(
            "{}\n{MONITOR}\n[replication]\nlisten = \"{}:{REPL_PORT}\"\npeer = \"{}:{REPL_PORT}\"\nack_timeout_ms = 2000\n",
            lab.config_text(n),
            n.private_ip(),
            n.peer().private_ip()
        );
        lab.set_config(n, &text);
    }
    lab.add_user_offline(N1, "sistemas", "clave-sistemas");
    lab
}

/// The monitor's part of `clusterd status --json` on `node`.
fn monitor(lab: &Lab, node: NodeId) -> serde_json::Value {
    let out = lab.cli(node, &["status", "--json"]);
    let text = common::assert_ok(&out, "clusterd status --json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
    v["monitor"].clone()
}

fn result(m: &serde_json::Value, node: NodeId, service: &str) -> String {
    m["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["node"] == node.name() && c["service"] == service)
        .and_then(|c| c["result"].as_str())
        .unwrap_or("absent")
        .to_string()
}

fn has_event(m: &serde_json::Value, node: NodeId, kind: &str) -> bool {
    m["history"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["node"] == node.name() && e["kind"] == kind)
}

const SERVICES: [&str; 5] = ["smtp", "imap", "dns", "http", "webmail"];

#[test]
fn each_node_probes_the_other_and_the_survivor_records_peer_lost_and_back() {
    let mut lab = lab();
    lab.start_cluster();
    lab.wait_shipping(N1, Duration::from_secs(15));
    // Both views: every service of both nodes answers, the peer is heard.
    for viewer in [N1, N2] {
        let t0 = Instant::now();
        lab.expect_within(
            t0,
            Duration::from_secs(15),
            &format!("{} sees every service of both nodes ok", viewer.name()),
            |l| {
                let m = monitor(l, viewer);
                SERVICES
                    .iter()
                    .all(|s| result(&m, N1, s) == "ok" && result(&m, N2, s) == "ok")
                    && result(&m, viewer, "peer") == "ok"
                    && result(&m, viewer, "vip") == "ok"
                    && result(&m, viewer, "replication") == "ok"
            },
        );
    }
    let m = monitor(&lab, N1);
    println!("{}", serde_json::to_string_pretty(&m["checks"]).unwrap());

    // The standby dies: the active node records and alerts "peer lost".
    lab.kill_node(N2);
    let t0 = Instant::now();
    lab.expect_within(
        t0,
        Duration::from_secs(10),
        "peer_lost on clusternodo1",
        |l| has_event(&monitor(l, N1), N1, "peer_lost"),
    );
    let m = monitor(&lab, N1);
    assert_eq!(result(&m, N1, "peer"), "failing", "{m:#}");
    // Its services are no longer probed (untested), not reported down.
    for s in SERVICES {
        assert_eq!(result(&m, N2, s), "untested", "{s}: {m:#}");
    }
    assert!(!has_event(&m, N2, "down"), "{m:#}");

    // Back: "peer back", and the returned node holds the same history.
    lab.start_node(N2);
    let t0 = Instant::now();
    lab.expect_within(
        t0,
        Duration::from_secs(15),
        "peer_back on clusternodo1",
        |l| has_event(&monitor(l, N1), N1, "peer_back"),
    );
    lab.expect_within(
        t0,
        Duration::from_secs(15),
        "clusternodo2 shows the replicated peer_lost and peer_back",
        |l| {
            let m = monitor(l, N2);
            has_event(&m, N1, "peer_lost") && has_event(&m, N1, "peer_back")
        },
    );
    let alerts = std::fs::read_to_string(lab.node_dir(N1).join("data/alerts.log"))
        .expect("clusternodo1's alert file");
    assert!(alerts.contains(" clusternodo1 peer peer_lost "), "{alerts}");
    assert!(alerts.contains(" clusternodo1 peer peer_back "), "{alerts}");
}
