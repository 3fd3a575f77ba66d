//! DKIM on two replicating nodes, in the namespace lab of `cluster_lab`: the active
//! node makes the key, the standby receives it by replication and its own DNS serves
//! the same record (asked with `dig` inside the standby's namespace), and after the
//! active node dies the survivor keeps that same key instead of making one.

mod cluster_lab;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster_lab::*;

const REPL_PORT: u16 = 7000;
const OWNER: &str = "clusterd._domainkey.cluster.com.ec";

/// The lab with `[replication]` over the private link in both configs.
fn replicated_lab() -> Lab {
    let lab = Lab::new();
    for n in [N1, N2] {
        let text = format!(
            "{}\n[replication]\nlisten = \"{}:{REPL_PORT}\"\npeer = \"{}:{REPL_PORT}\"\nack_timeout_ms = 2000\n",
            lab.config_text(n),
            n.private_ip(),
            n.peer().private_ip()
        );
        lab.set_config(n, &text);
    }
    lab
}

/// The record's value as `clusterd dkim show` prints it on `node`; None while the
/// node has no key.
fn shown(lab: &Lab, node: NodeId) -> Option<String> {
    let out = lab.cli(node, &["dkim", "show"]);
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("value:"))
        .map(|v| v.trim().to_string())
}

/// The TXT answer for the selector, joined, from `node`'s own DNS (in its namespace).
fn served(lab: &Lab, node: NodeId) -> String {
    common::require_tool("dig");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(node), "dig", "@127.0.0.1"])
        .args(["+tries=1", "+time=2", "+short", "TXT", OWNER])
        .output()
        .expect("run dig in the node's namespace");
    String::from_utf8_lossy(&out.stdout)
        .split('"')
        .skip(1)
        .step_by(2)
        .collect()
}

#[test]
fn the_standby_receives_the_key_serves_its_record_and_keeps_it_after_a_failover() {
    let mut lab = replicated_lab();
    lab.start_cluster();
    let t0 = Instant::now();
    lab.expect_within(
        t0,
        Duration::from_secs(10),
        "node 2 holds node 1's DKIM key",
        |l| {
            let one = shown(l, N1);
            one.is_some() && one == shown(l, N2)
        },
    );
    let value = shown(&lab, N1).unwrap();
    assert!(value.starts_with("v=DKIM1; k=rsa; p="), "{value}");
    lab.expect_within(
        t0,
        Duration::from_secs(10),
        "both nodes' DNS serve the record",
        |l| served(l, N1) == value && served(l, N2) == value,
    );
    assert!(lab.log(N1).contains("DKIM: generated a signing key"));
    assert!(
        lab.log(N2)
            .contains("DKIM: now signing with the key kept in the store")
    );

    // Node 1 dies; node 2 takes over and keeps the key (it does not make another).
    lab.kill_node(N1);
    lab.link_down(N1, "eth0");
    lab.link_down(N1, "eth1");
    lab.expect_within(
        Instant::now(),
        DEADTIME + Duration::from_secs(3),
        "node 2 holds the VIP after node 1 died",
        |l| l.vip_holders() == [N2],
    );
    // Longer than the signer's follow period, in which a keyless node would make one.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(shown(&lab, N2).as_deref(), Some(value.as_str()));
    assert_eq!(served(&lab, N2), value);
    assert!(
        !lab.log(N2).contains("DKIM: generated a signing key"),
        "node 2 made its own key:\n{}",
        lab.log(N2)
    );
}
