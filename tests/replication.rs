//! Store replication (issue 6, first part) in the namespace lab of `cluster_lab`: the
//! active node ships its op log to the standby over the private link; what a client
//! got `250` for is on the peer before the answer. Checked from the client's side
//! (SMTP to the VIP, IMAP on the VIP after a failover) and by comparing the digest of
//! both stores' logical content (`clusterd digest`).

mod cluster_lab;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster_lab::*;

const REPL_PORT: u16 = 7000;
const USER: &str = "sistemas";
const PASSWORD: &str = "clave-sistemas";

/// A lab whose nodes replicate over the private link, with one account created on
/// node 1's store before either node runs.
fn replicated_lab() -> Lab {
    replicated_lab_with("", "")
}

/// The same, with `extra` (TOML sections) and `repl_extra` (keys of
/// `[replication]`) in both nodes' configs.
fn replicated_lab_with(extra: &str, repl_extra: &str) -> Lab {
    let lab = Lab::new();
    for n in [N1, N2] {
        let text = format!(
            "{}\n{extra}\n[replication]\nlisten = \"{}:{REPL_PORT}\"\npeer = \"{}:{REPL_PORT}\"\nack_timeout_ms = 2000\n{repl_extra}\n",
            lab.config_text(n),
            n.private_ip(),
            n.peer().private_ip()
        );
        lab.set_config(n, &text);
    }
    let mut cmd = Command::new(common::bin());
    cmd.args(["user", "add", USER, "--password-stdin", "--config"])
        .arg(lab.config_path(N1));
    let out = common::run_with_stdin(cmd, Some(&format!("{PASSWORD}\n")));
    common::assert_ok(&out, "clusterd user add on node 1's store");
    lab
}

/// Starts both nodes; returns once node 2 holds node 1's log, TLS identity included
/// (node 1 stores it when it becomes active).
fn start_replicated(lab: &mut Lab) {
    lab.start_cluster();
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(5),
        "node 2 presents the certificate node 1 stored",
        |l| {
            l.log(N2)
                .contains("now presenting the certificate kept in the store")
        },
    );
}

/// Node 1 dies as a machine does: its process is killed and both its links go down.
fn node_1_dies(lab: &mut Lab) {
    lab.kill_node(N1);
    lab.link_down(N1, "eth0");
    lab.link_down(N1, "eth1");
}

fn digest(lab: &Lab, node: NodeId) -> String {
    let out = lab.cli(node, &["digest"]);
    common::assert_ok(&out, &format!("clusterd digest on {}", node.name()))
        .trim()
        .to_string()
}

fn status_text(lab: &Lab, node: NodeId) -> String {
    lab.status(node).text
}

/// Sends `n` messages from the client to the VIP over SMTP; returns the Message-IDs
/// that got 250 (the script fails on any other answer).
fn send_from_client(lab: &Lab, tag: &str, n: usize) -> Vec<String> {
    send_to(lab, VIP, tag, n)
}

/// Sends `n` messages from the client to `host`. Tags starting with `same` give the
/// same bytes on every run (a client retrying one message elsewhere).
fn send_to(lab: &Lab, host: &str, tag: &str, n: usize) -> Vec<String> {
    send_sized(lab, host, tag, n, 0)
}

/// The same, each message padded to about `size` bytes.
fn send_sized(lab: &Lab, host: &str, tag: &str, n: usize, size: usize) -> Vec<String> {
    let out = python_in(
        &lab.client_ns(),
        SEND_PY,
        &[
            host,
            &n.to_string(),
            tag,
            &format!("{USER}@cluster.com.ec"),
            &size.to_string(),
        ],
    );
    let text = common::assert_ok(&out, "sending mail from the client");
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("250 ").map(str::to_string))
        .collect();
    assert_eq!(ids.len(), n, "not every message got 250:\n{text}");
    ids
}

/// The Message-IDs in the INBOX, read over IMAP on the VIP from the client.
fn imap_ids_from_client(lab: &Lab) -> Vec<String> {
    let out = python_in(
        &lab.client_ns(),
        &imap_script(IMAP_BODIES_PY),
        &[VIP, USER, PASSWORD],
    );
    let text = common::assert_ok(&out, "reading the INBOX over IMAP from the client");
    text.lines()
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

fn wait_digests_equal(lab: &Lab, within: Duration, what: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        let (a, b) = (digest(lab, N1), digest(lab, N2));
        if a == b {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{what}: the stores still differ after {within:?} ({a} vs {b})\n--- node 1 status\n{}\n--- node 2 status\n{}\n--- node 2 log\n{}",
            status_text(lab, N1),
            status_text(lab, N2),
            lab.log(N2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_acknowledged_message_is_on_the_peer_and_survives_a_failover() {
    let mut lab = replicated_lab();
    start_replicated(&mut lab);
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(5),
        "node 1 ships to node 2",
        |l| status_text(l, N1).contains("shipping yes"),
    );
    let ids = send_from_client(&lab, "before-failover", 30);
    // Sync mode: the peer held each message before the 250; the digests agree as soon
    // as the last acknowledgement has been counted.
    let took = wait_digests_equal(&lab, Duration::from_secs(2), "after 30 messages");
    println!("stores equal {} ms after the last 250", took.as_millis());
    let st = status_text(&lab, N1);
    assert!(
        st.contains("replication: sync,") && !st.contains("DEGRADED"),
        "node 1 should replicate in sync mode, not degraded:\n{st}"
    );

    // Node 1 dies as a machine does.
    node_1_dies(&mut lab);
    lab.expect_within(
        Instant::now(),
        DEADTIME + Duration::from_secs(3),
        "node 2 holds the VIP after node 1 died",
        |l| l.vip_holders() == [N2],
    );
    let mut got = imap_ids_from_client(&lab);
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        got, want,
        "node 2's INBOX must hold every acknowledged message exactly once"
    );
}

#[test]
fn no_acknowledged_message_is_lost_when_the_active_node_dies_mid_run() {
    let mut lab = replicated_lab();
    start_replicated(&mut lab);
    let total = 2000;
    let results = lab.dir.join("load-results.txt");
    // 8 connections to the VIP; every message not acknowledged with 250 is retried
    // (on a new connection, as a real client would) until it is.
    let mut sender = python_spawn_in(
        &lab.client_ns(),
        LOAD_PY,
        &[
            VIP,
            &total.to_string(),
            "8",
            &format!("{USER}@cluster.com.ec"),
            results.to_str().unwrap(),
        ],
    );
    // Kill node 1 (process and links) once a good part has been accepted.
    let t0 = Instant::now();
    loop {
        let n = lab.status(N1).get("op log").map(str::to_string);
        let seq: u64 = n
            .as_deref()
            .and_then(|v| v.trim_start_matches("seq ").parse().ok())
            .unwrap_or(0);
        if seq > 600 {
            break;
        }
        if let Some(status) = sender.try_wait().unwrap() {
            let out = sender.wait_with_output().unwrap();
            panic!(
                "the sender ended early ({status}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the load did not start; node 1 status:\n{}",
            status_text(&lab, N1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    node_1_dies(&mut lab);
    let out = sender.wait_with_output().expect("wait for the sender");
    let text = std::fs::read_to_string(&results).unwrap_or_default();
    assert!(
        out.status.success(),
        "the sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: Vec<(String, String, bool)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("250 ")?.split(' ');
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()? == "retried",
            ))
        })
        .collect();
    assert_eq!(
        acked.len(),
        total,
        "every message must end acknowledged:\n{text}"
    );
    let retried = acked.iter().filter(|a| a.2).count();
    println!("{total} acknowledged, {retried} after a retry");

    let out = python_in(
        &lab.client_ns(),
        &imap_script(IMAP_BODIES_PY),
        &[VIP, USER, PASSWORD],
    );
    let listing = common::assert_ok(&out, "reading the INBOX on node 2");
    let mut held: std::collections::HashMap<String, Vec<String>> = Default::default();
    for l in listing.lines() {
        let mut f = l.split(' ');
        if let (Some(mid), Some(hash)) = (f.next(), f.next()) {
            held.entry(mid.to_string())
                .or_default()
                .push(hash.to_string());
        }
    }
    for (mid, hash, _) in &acked {
        let copies = held.get(mid).map(Vec::as_slice).unwrap_or(&[]);
        // A retry of a message node 1 had committed (and node 2 held) before its 250
        // was lost is recognised as the same delivery: still one copy.
        assert!(
            copies.len() == 1 && copies[0] == *hash,
            "{mid} got 250; node 2 must hold it exactly once with its body (copies: {copies:?})"
        );
    }
    assert_eq!(
        held.len(),
        total,
        "node 2 holds messages nobody was told about"
    );
}

#[test]
fn a_returning_standby_catches_up_from_the_log() {
    let mut lab = replicated_lab();
    start_replicated(&mut lab);
    send_from_client(&lab, "both-up", 5);
    wait_digests_equal(&lab, Duration::from_secs(2), "after 5 messages");

    lab.stop_node(N2);
    let t0 = Instant::now();
    send_from_client(&lab, "standby-down", 500);
    println!(
        "500 messages accepted with the standby down in {} ms",
        t0.elapsed().as_millis()
    );
    let st = status_text(&lab, N1);
    assert!(
        st.contains("DEGRADED"),
        "with the peer gone node 1 commits alone and says so:\n{st}"
    );

    lab.start_node(N2);
    let took = wait_digests_equal(&lab, Duration::from_secs(10), "after node 2 returned");
    println!("node 2 caught up {} ms after it answered", took.as_millis());
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(3),
        "node 1 leaves degraded mode once the peer caught up",
        |l| !status_text(l, N1).contains("DEGRADED"),
    );
}

#[test]
fn the_preferred_node_fails_back_only_with_what_the_peer_accepted_meanwhile() {
    let mut lab = replicated_lab();
    start_replicated(&mut lab);
    let mut want = send_from_client(&lab, "before", 10);
    node_1_dies(&mut lab);
    lab.expect_within(
        Instant::now(),
        DEADTIME + Duration::from_secs(3),
        "node 2 holds the VIP after node 1 died",
        |l| l.vip_holders() == [N2],
    );
    // A powered-off machine's serial port keeps nothing of what node 2 sends.
    lab.cut_serial();
    want.extend(send_from_client(&lab, "during-outage", 40));

    // Node 1 reboots (no VIP left on it) and returns; it may take the service back
    // only once it holds node 2's 40 messages.
    lab.restore_serial();
    lab.link_up(N1, "eth0");
    lab.link_up(N1, "eth1");
    lab.start_node(N1);
    lab.expect_within(
        Instant::now(),
        INITDEAD + Duration::from_secs(10),
        "node 1 fails back",
        |l| l.vip_holders() == [N1] && status_text(l, N1).contains("role:        active"),
    );
    let mut got = imap_ids_from_client(&lab);
    got.sort();
    want.sort();
    assert_eq!(
        got,
        want,
        "after failback node 1 must serve every message, also those node 2 accepted\n--- node 1 log\n{}\n--- node 2 log\n{}",
        lab.log(N1),
        lab.log(N2)
    );
    wait_digests_equal(&lab, Duration::from_secs(5), "after failback");
}

#[test]
fn a_wiped_standby_rebuilds_from_the_active_node() {
    // A short log: by the time node 2 is wiped, node 1 has compacted the ops both
    // held, so only a snapshot can rebuild node 2.
    let mut lab = replicated_lab_with("", "log_keep_ops = 20");
    start_replicated(&mut lab);
    let want = send_from_client(&lab, "before-wipe", 60);
    wait_digests_equal(&lab, Duration::from_secs(2), "before the wipe");
    lab.stop_node(N2);
    std::fs::remove_dir_all(lab.node_dir(N2).join("data")).expect("wipe node 2's data");
    // The ship loop compacts every 2 s up to what the peer acknowledged.
    std::thread::sleep(Duration::from_millis(2500));
    lab.start_node(N2);
    let took = wait_digests_equal(&lab, Duration::from_secs(15), "after the wipe");
    println!("wiped node 2 rebuilt in {} ms", took.as_millis());
    let status = status_text(&lab, N1);
    assert!(
        status.contains("1 snapshot(s) sent"),
        "node 1 rebuilt node 2 from a snapshot:\n{status}"
    );
    // And it serves the same mail once it is the active node.
    node_2_serves_after_standby(&mut lab, want, "the rebuilt node serves the same INBOX");
}

/// `clusterd standby` on node 1; node 2 takes the VIP and serves exactly `want`.
fn node_2_serves_after_standby(lab: &mut Lab, mut want: Vec<String>, what: &str) {
    lab.standby(N1);
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(3),
        "node 2 holds the VIP after `clusterd standby` on node 1",
        |l| l.vip_holders() == [N2],
    );
    let mut got = imap_ids_from_client(lab);
    got.sort();
    want.sort();
    assert_eq!(got, want, "{what}");
}

fn imap_do(lab: &Lab, host: &str, cmd: &[&str]) -> String {
    let mut args = vec![host, USER, PASSWORD];
    args.extend_from_slice(cmd);
    let out = python_in(&lab.client_ns(), &imap_script(IMAP_DO_PY), &args);
    common::assert_ok(&out, &format!("IMAP {cmd:?} on {host}"))
}

fn uidvalidity(lab: &Lab, host: &str) -> u32 {
    let out = imap_do(lab, host, &["uidvalidity"]);
    out.trim()
        .strip_prefix("UIDVALIDITY ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no UIDVALIDITY in {out:?}"))
}

/// Runs mbsync against `host` into the lab directory `name`; asserts it succeeded
/// without an error line and returns the local copy's Message-IDs (sorted) and its
/// output.
fn mbsync(lab: &Lab, host: &str, name: &str) -> (Vec<String>, String) {
    let dir = lab.dir.join(name);
    let out = python_in(
        &lab.client_ns(),
        MBSYNC_PY,
        &[host, dir.to_str().unwrap(), USER, PASSWORD],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "mbsync against {host} ({name}) failed:\n{text}"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error:"))
        .collect();
    assert!(
        errors.is_empty(),
        "mbsync against {host} ({name}) reported errors: {errors:?}\n{text}"
    );
    let mut ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("MID "))
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect();
    ids.sort();
    (ids, text)
}

#[test]
fn a_split_brain_heals_to_the_union_once_and_mbsync_resyncs_cleanly() {
    let mut lab = replicated_lab();
    start_replicated(&mut lab);
    // mbsync re-approves a changed UIDVALIDITY by Message-ID; it wants 20 witnesses.
    let mut want = send_from_client(&lab, "before", 30);
    wait_digests_equal(&lab, Duration::from_secs(3), "before the split");
    let uidvalidity_before = uidvalidity(&lab, VIP);
    for client in ["mbsync-a", "mbsync-b"] {
        let (ids, text) = mbsync(&lab, VIP, client);
        assert_eq!(ids.len(), 30, "{client} before the split:\n{text}");
    }

    // Both links cut, no ping nodes: both nodes become active.
    lab.link_down(N1, "eth1");
    lab.cut_serial();
    lab.expect_within(
        Instant::now(),
        DEADTIME + Duration::from_secs(3),
        "both nodes active (split brain)",
        |l| l.vip_holders() == [N1, N2],
    );
    // Mail reaches each side on its own address; one message reaches both (a client
    // retried it on the other node).
    want.extend(send_to(&lab, N1.lan_ip(), "side1", 5));
    want.extend(send_to(&lab, N2.lan_ip(), "side2", 5));
    let same = send_to(&lab, N1.lan_ip(), "same", 1);
    assert_eq!(send_to(&lab, N2.lan_ip(), "same", 1), same);
    want.extend(same);
    // Flags: node 1 marks message 3 seen, later node 2 answers it (last writer
    // wins); node 2 flags message 1; node 1 deletes message 2 (expunges win).
    imap_do(&lab, N1.lan_ip(), &["flag", "3", "\\Seen"]);
    std::thread::sleep(Duration::from_millis(20));
    imap_do(&lab, N2.lan_ip(), &["flag", "3", "\\Answered"]);
    imap_do(&lab, N2.lan_ip(), &["flag", "1", "\\Flagged"]);
    imap_do(&lab, N1.lan_ip(), &["delete", "2"]);
    let deleted = want.remove(1);
    // Each mbsync client follows one side meanwhile.
    mbsync(&lab, N1.lan_ip(), "mbsync-a");
    mbsync(&lab, N2.lan_ip(), "mbsync-b");

    // Healed: node 1 (preferred) stays active, node 2 hands over its ops.
    let t0 = Instant::now();
    lab.link_up(N1, "eth1");
    lab.restore_serial();
    lab.expect_within(
        t0,
        Duration::from_secs(5),
        "node 1 alone holds the VIP after the heal",
        |l| l.vip_holders() == [N1],
    );
    let took = wait_digests_equal(&lab, Duration::from_secs(15), "after the heal");
    println!(
        "split brain healed: stores equal {} ms after the links came back",
        t0.elapsed().as_millis()
    );
    let _ = took;
    let status = status_text(&lab, N1);
    assert!(
        status.contains("merged") && status.contains("INBOX"),
        "node 1's status shows the merge:\n{status}"
    );
    let mut got = imap_ids_from_client(&lab);
    got.sort();
    want.sort();
    assert_eq!(
        got,
        want,
        "the union of both sides, each message once, without the one deleted ({deleted})\n--- node 1 log\n{}",
        lab.log(N1)
    );
    assert_ne!(
        uidvalidity(&lab, VIP),
        uidvalidity_before,
        "INBOX got new UIDs, so a new UIDVALIDITY"
    );
    let flags = |mid: &str| imap_do(&lab, VIP, &["flags", mid]);
    assert!(flags(&want_id(&got, "before-0-")).contains("\\Flagged"));
    let third = flags(&want_id(&got, "before-2-"));
    assert!(
        third.contains("\\Answered") && !third.contains("\\Seen"),
        "node 2's later flag change wins: {third}"
    );
    // Both mbsync clients resync from the VIP without an error and hold the union.
    for client in ["mbsync-a", "mbsync-b"] {
        let (ids, text) = mbsync(&lab, VIP, client);
        assert_eq!(ids, want, "{client} after the heal:\n{text}");
        // It saw the new UIDVALIDITY and re-approved the UIDs it knew by Message-ID.
        assert!(
            text.contains("Recovered from change of UIDVALIDITY"),
            "{client}:\n{text}"
        );
        println!(
            "{client} after the heal: {} messages, resynced without errors",
            ids.len()
        );
    }
}

/// Bytes node `n` sent and received on its private link (eth1), from the kernel's
/// interface counters.
fn private_link_bytes(lab: &Lab, n: NodeId) -> u64 {
    let out = ip(&lab.ns(n), "-s -j link show eth1");
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let stats = &v[0]["stats64"];
    stats["tx"]["bytes"].as_u64().unwrap() + stats["rx"]["bytes"].as_u64().unwrap()
}

/// The SHA-256 of what `url` serves, fetched from the client (None on any failure).
fn served_sha(lab: &Lab, url: &str) -> Option<String> {
    let out = python_in(&lab.client_ns(), HTTP_SHA_PY, &[url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_one_byte_change_to_a_large_site_file_travels_as_a_block_delta() {
    const SIZE: usize = 10 << 20;
    // Both nodes watch the same directory; only the active one publishes it.
    let site = tempfile::tempdir().expect("a directory for the site");
    let mut lab = replicated_lab_with(
        &format!("[http]\npublish_dir = \"{}\"\n", site.path().display()),
        "",
    );
    let site = site.path();
    start_replicated(&mut lab);
    // A 10 MB file that does not compress (the link would hide a copy otherwise).
    let mut data = Vec::with_capacity(SIZE);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let sha = |d: &[u8]| {
        use std::fmt::Write;
        let mut h = String::new();
        for b in <sha2::Sha256 as sha2::Digest>::digest(d) {
            write!(h, "{b:02x}").unwrap();
        }
        h
    };
    // First version: published once with the command.
    let first_dir = tempfile::tempdir().unwrap();
    let other = first_dir.path();
    std::fs::write(other.join("big.bin"), &data).unwrap();
    let out = lab.cli(N1, &["content", "publish", other.to_str().unwrap()]);
    let text = common::assert_ok(&out, "clusterd content publish");
    assert!(text.contains("1 stored, 0 removed"), "{text}");
    let urls = [
        format!("http://{}/big.bin", N1.lan_ip()),
        format!("http://{}/big.bin", N2.lan_ip()),
    ];
    let first = sha(&data);
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(10),
        "both nodes serve big.bin",
        |l| {
            urls.iter()
                .all(|u| served_sha(l, u).as_deref() == Some(first.as_str()))
        },
    );
    // The watched directory takes over the site (same file, so nothing to send).
    std::fs::write(site.join("big.bin"), &data).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    wait_digests_equal(&lab, Duration::from_secs(3), "after the watched directory");

    // One byte changes in the watched directory.
    data[SIZE / 2] ^= 0x5a;
    let second = sha(&data);
    let before = private_link_bytes(&lab, N1);
    let t0 = Instant::now();
    std::fs::write(site.join("big.bin"), &data).unwrap();
    let took = lab.expect_within(
        t0,
        Duration::from_secs(2),
        "both nodes serve the new big.bin",
        |l| {
            urls.iter()
                .all(|u| served_sha(l, u).as_deref() == Some(second.as_str()))
        },
    );
    wait_digests_equal(&lab, Duration::from_secs(2), "after the change");
    let crossed = private_link_bytes(&lab, N1) - before;
    println!(
        "one byte changed in a {SIZE}-byte file: {crossed} bytes crossed the private link ({:.3}% of the file, heartbeats included); both nodes served it after {} ms",
        crossed as f64 * 100.0 / SIZE as f64,
        took.as_millis()
    );
    assert!(
        (crossed as usize) < SIZE / 50,
        "{crossed} bytes crossed the link for a one-byte change (limit 2% = {})",
        SIZE / 50
    );
}

/// The Message-ID in `ids` that starts with `<prefix`.
fn want_id(ids: &[String], prefix: &str) -> String {
    ids.iter()
        .find(|i| i.starts_with(&format!("<{prefix}")))
        .unwrap_or_else(|| panic!("no message {prefix} in {ids:?}"))
        .clone()
}

/// Message files in node `n`'s store.
fn blob_count(lab: &Lab, n: NodeId) -> usize {
    let dir = lab.node_dir(n).join("data/blobs");
    std::fs::read_dir(&dir)
        .map(|fans| {
            fans.flatten()
                .filter(|f| f.file_name() != "tmp")
                .map(|f| std::fs::read_dir(f.path()).map_or(0, |d| d.count()))
                .sum()
        })
        .unwrap_or(0)
}

/// The `missing=N` figures of node `n`'s "receiving a snapshot" log lines.
fn snapshot_missing(lab: &Lab, n: NodeId) -> Vec<usize> {
    lab.log(n)
        .lines()
        .filter(|l| l.contains("receiving a snapshot"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("missing="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

#[test]
fn an_interrupted_snapshot_resumes_without_sending_again_what_arrived() {
    const MESSAGES: usize = 80;
    let mut lab = replicated_lab_with("", "log_keep_ops = 20");
    start_replicated(&mut lab);
    let want = send_sized(&lab, VIP, "big", MESSAGES, 128 * 1024);
    wait_digests_equal(&lab, Duration::from_secs(5), "before the wipe");
    lab.stop_node(N2);
    std::fs::remove_dir_all(lab.node_dir(N2).join("data")).expect("wipe node 2's data");
    std::thread::sleep(Duration::from_millis(2500)); // node 1 compacts its log
    // 10 MB at 40 Mbit/s: about two seconds, long enough to cut it in the middle.
    let ns = lab.ns(N1);
    ip_tc(
        &ns,
        "qdisc add dev eth1 root tbf rate 40mbit burst 32kb latency 400ms",
    );
    lab.spawn_node(N2);
    let t0 = Instant::now();
    let mut at_kill = 0;
    while t0.elapsed() < Duration::from_secs(20) {
        at_kill = blob_count(&lab, N2);
        if at_kill >= MESSAGES / 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.kill_node(N2);
    ip_tc(&ns, "qdisc del dev eth1 root");
    let first = snapshot_missing(&lab, N2);
    assert!(
        (MESSAGES / 4..MESSAGES).contains(&at_kill),
        "node 2 killed in the middle of the snapshot's blobs ({at_kill} of {MESSAGES} stored; missing {first:?})\n{}",
        lab.log(N2)
    );
    lab.start_node(N2);
    wait_digests_equal(&lab, Duration::from_secs(20), "after the resumed snapshot");
    let all = snapshot_missing(&lab, N2);
    assert_eq!(all.len(), 2, "two snapshots received: {all:?}");
    println!(
        "snapshot interrupted with {at_kill} message files stored: the first asked for {}, the resumed one for {}",
        all[0], all[1]
    );
    assert!(
        all[1] + at_kill.saturating_sub(5) <= all[0],
        "the resumed snapshot asks only for what is still missing: {all:?}, {at_kill} stored"
    );
    node_2_serves_after_standby(
        &mut lab,
        want,
        "node 2 serves every message after the resumed snapshot",
    );
}

/// `tc -n NS ARGS`.
fn ip_tc(ns: &str, args: &str) {
    let out = Command::new("tc")
        .args(["-n", ns])
        .args(args.split_whitespace())
        .output()
        .expect("run tc");
    assert!(
        out.status.success(),
        "tc -n {ns} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stranger_without_the_cluster_key_is_refused() {
    let mut lab = replicated_lab();
    start_replicated(&mut lab);
    send_from_client(&lab, "before-stranger", 3);
    wait_digests_equal(&lab, Duration::from_secs(2), "after 3 messages");

    // From node 1's namespace (on the private link): TLS completes, the forged
    // proof is refused, and nothing of the store is sent.
    let out = python_in(
        &lab.ns(N1),
        STRANGER_PY,
        &[N2.private_ip(), &REPL_PORT.to_string()],
    );
    let text = common::assert_ok(&out, "the stranger's attempt");
    assert!(
        text.contains("REFUSED"),
        "the stranger got something:\n{text}"
    );
    assert!(
        lab.log(N2).contains("failed authentication"),
        "node 2 should log the refused peer"
    );
    // Plain garbage on the port is dropped too, and replication goes on.
    let out = python_in(
        &lab.ns(N1),
        GARBAGE_PY,
        &[N2.private_ip(), &REPL_PORT.to_string()],
    );
    common::assert_ok(&out, "garbage on the replication port");
    // Node 2 holds exactly what node 1 holds: nothing of the stranger's.
    wait_digests_equal(&lab, Duration::from_secs(3), "after the stranger");
    send_from_client(&lab, "after-stranger", 3);
    wait_digests_equal(&lab, Duration::from_secs(2), "after the stranger");
}

/// argv: url. Prints the SHA-256 of the body; fails on anything but 200.
const HTTP_SHA_PY: &str = r#"
import hashlib, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    assert r.status == 200, r.status
    print(hashlib.sha256(r.read()).hexdigest())
"#;

/// argv: host user password command...; commands: `uidvalidity` (prints it),
/// `flag UID FLAG` (adds FLAG), `delete UID` (\\Deleted + EXPUNGE), `flags MESSAGE-ID`
/// (prints the flags of that message).
const IMAP_DO_PY: &str = r#"
import imaplib, re, ssl, sys, time
host, user, pw, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
m = login(host, user, pw)
if cmd[0] == "uidvalidity":
    typ, data = m.status("INBOX", "(UIDVALIDITY)")
    assert typ == "OK", data
    print("UIDVALIDITY", re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1).decode())
else:
    typ, _ = m.select("INBOX")
    assert typ == "OK", typ
    if cmd[0] == "flag":
        typ, data = m.uid("STORE", cmd[1], "+FLAGS", "(%s)" % cmd[2])
        assert typ == "OK", data
    elif cmd[0] == "delete":
        typ, data = m.uid("STORE", cmd[1], "+FLAGS", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = m.expunge()
        assert typ == "OK", data
    elif cmd[0] == "flags":
        typ, data = m.uid("SEARCH", "HEADER", "Message-ID", cmd[1])
        assert typ == "OK" and data[0].split(), (cmd[1], data)
        typ, data = m.uid("FETCH", data[0].split()[0].decode(), "(FLAGS)")
        print("FLAGS", re.search(rb"FLAGS \(([^)]*)\)", data[0]).group(1).decode())
m.logout()
"#;

/// argv: host dir user password. Synchronises INBOX into DIR/mail with mbsync over
/// STARTTLS (trusting the node's certificate), prints mbsync's output, then one
/// "MID <message-id> <maildir flags>" line per local message; exits with mbsync's
/// status.
const MBSYNC_PY: &str = r#"
import email, os, ssl, subprocess, sys
host, d, user, pw = sys.argv[1:5]
os.makedirs(os.path.join(d, "mail"), exist_ok=True)
cert = os.path.join(d, "server.pem")
with open(cert, "w") as fh:
    fh.write(ssl.get_server_certificate((host, 993)))
rc = os.path.join(d, "mbsyncrc")
with open(rc, "w") as fh:
    fh.write("""IMAPAccount test
Host %s
Port 143
User %s
Pass %s
SSLType STARTTLS
CertificateFile %s
AuthMechs LOGIN

IMAPStore remote
Account test

MaildirStore local
Path %s/mail/
Inbox %s/mail/INBOX

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Sync All
Expunge Both
Create Both
SyncState *
""" % (host, user, pw, cert, d, d))
p = subprocess.run(["mbsync", "-c", rc, "sync"], capture_output=True, text=True, timeout=120)
print(p.stdout)
print(p.stderr)
for sub in ("cur", "new"):
    base = os.path.join(d, "mail", "INBOX", sub)
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        with open(os.path.join(base, name), "rb") as fh:
            msg = email.message_from_binary_file(fh)
        print("MID", msg["Message-ID"], name.split(":2,")[-1] if ":2," in name else "")
sys.exit(p.returncode)
"#;

/// argv: host total connections rcpt outfile. Sends `total` messages over `connections`
/// parallel sessions, retrying each until it gets 250 (reconnecting after any error,
/// for at most 60 s a message). Writes "250 <message-id> <sha256 of body> first|retried".
const LOAD_PY: &str = r#"
import hashlib, smtplib, sys, threading, time, uuid
host, total, conns, rcpt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = open(sys.argv[5], "w")
lock = threading.Lock()
failed = []
def worker(k):
    s = None
    for i in range(k, total, conns):
        mid = "<load-%d-%s@cliente.cluster.com.ec>" % (i, uuid.uuid4().hex)
        body = "message %d of the load run %s\r\n" % (i, uuid.uuid4().hex)
        msg = ("From: cliente@cluster.com.ec\r\nTo: %s\r\nSubject: load %d\r\nMessage-ID: %s\r\n\r\n%s"
               % (rcpt, i, mid, body))
        attempts, deadline = 0, time.time() + 60
        while True:
            attempts += 1
            try:
                if s is None:
                    s = smtplib.SMTP(host, 25, timeout=5)
                    s.ehlo("cliente.cluster.com.ec")
                s.mail("cliente@cluster.com.ec")
                code, _ = s.rcpt(rcpt)
                if code != 250:
                    raise smtplib.SMTPException("RCPT %d" % code)
                code, _ = s.data(msg.encode())
                if code != 250:
                    raise smtplib.SMTPException("DATA %d" % code)
                break
            except Exception as e:
                try:
                    s.close()
                except Exception:
                    pass
                s = None
                if time.time() > deadline:
                    with lock:
                        failed.append((mid, repr(e)))
                    return
                time.sleep(0.05)
        h = hashlib.sha256(body.encode()).hexdigest()
        with lock:
            out.write("250 %s %s %s\n" % (mid, h, "first" if attempts == 1 else "retried"))
            out.flush()
    if s is not None:
        try:
            s.quit()
        except Exception:
            pass
ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
for t in ts: t.start()
for t in ts: t.join()
if failed:
    print("FAILED", failed[:5], file=sys.stderr)
    sys.exit(1)
"#;

/// Python: `login(host, user, pw)` over STARTTLS on 143, retried for ~10 s (the VIP
/// may be moving); prepended to the IMAP scripts below ([`imap_script`]).
const IMAP_LOGIN_PY: &str = r#"
import imaplib, ssl, time
def login(host, user, pw):
    last = None
    for attempt in range(100):
        try:
            m = imaplib.IMAP4(host, 143, timeout=10)
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            m.starttls(ssl_context=ctx)
            m.login(user, pw)
            return m
        except Exception as e:
            last = e
            time.sleep(0.1)
    raise AssertionError("no IMAP login on %s: %r" % (host, last))
"#;

fn imap_script(body: &str) -> String {
    format!("{IMAP_LOGIN_PY}{body}")
}

/// argv: host user password. Prints "<message-id> <sha256 of body>" per message.
const IMAP_BODIES_PY: &str = r#"
import email, hashlib, imaplib, ssl, sys, time
host, user, pw = sys.argv[1:4]
m = login(host, user, pw)
typ, _ = m.select("INBOX", readonly=True)
assert typ == "OK", typ
typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
for item in data:
    if not isinstance(item, tuple):
        continue
    raw = item[1]
    head, _, body = raw.partition(b"\r\n\r\n")
    msg = email.message_from_bytes(raw)
    print("%s %s" % (msg["Message-ID"], hashlib.sha256(body).hexdigest()))
m.logout()
"#;

/// argv: host count tag rcpt. Prints "250 <message-id>" per accepted message.
const SEND_PY: &str = r#"
import smtplib, sys, uuid
host, n, tag, rcpt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
pad = "x" * 76 + "\r\n"
lines = int(sys.argv[5]) // len(pad) if len(sys.argv) > 5 else 0
s = None
for attempt in range(50):
    try:
        s = smtplib.SMTP(host, 25, timeout=10)
        break
    except OSError:
        import time; time.sleep(0.1)
assert s is not None, "no SMTP on the VIP"
s.ehlo("cliente.cluster.com.ec")
for i in range(n):
    mid = "<%s-%d-%s@cliente.cluster.com.ec>" % (tag, i, uuid.uuid4().hex)
    if tag.startswith("same"):
        mid = "<%s-%d@cliente.cluster.com.ec>" % (tag, i)
    msg = ("From: cliente@cluster.com.ec\r\nTo: %s\r\nSubject: %s %d\r\nMessage-ID: %s\r\n\r\n"
           "body %s %d\r\n" % (rcpt, tag, i, mid, tag, i)) + pad * lines
    s.mail("cliente@cluster.com.ec")
    code, _ = s.rcpt(rcpt)
    assert code == 250, ("RCPT", code)
    code, resp = s.data(msg.encode())
    assert code == 250, ("DATA", code, resp)
    print("250 " + mid, flush=True)
s.quit()
"#;

/// argv: host port. Completes TLS, sends a forged proof; prints REFUSED when the
/// server closes without sending anything but its own proof.
const STRANGER_PY: &str = r#"
import json, socket, ssl, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.set_alpn_protocols(["clusterd-repl/1"])
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=5))
def read_frame():
    head = b""
    while len(head) < 8:
        c = s.recv(8 - len(head))
        if not c:
            return None
        head += c
    hl, bl = struct.unpack(">II", head)
    data = b""
    while len(data) < hl + bl:
        c = s.recv(hl + bl - len(data))
        if not c:
            return None
        data += c
    return json.loads(data[:hl])
first = read_frame()
assert first is not None and first.get("t") == "auth", first
hdr = json.dumps({"t": "auth", "node": "clusternodo1", "mac": "00" * 32}).encode()
s.sendall(struct.pack(">II", len(hdr), 0) + hdr)
try:
    nxt = read_frame()
except (ConnectionError, ssl.SSLError, OSError):
    nxt = None
print("REFUSED" if nxt is None else "GOT %r" % (nxt,))
"#;

/// argv: host port. Sends bytes that are not TLS; expects the server to hang up.
const GARBAGE_PY: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=10)
s.sendall(b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n" * 4)
try:
    data = s.recv(100)
except OSError:
    data = b""
print("closed" if not data or not data.startswith(b"\x00\x00") else "answered")
"#;

/// argv: data_dir. Every body the store names (messages, queue, content) is a file
/// whose SHA-256 is its name; prints "blobs N" or exits 1 naming what is wrong. Reads
/// store.db read-only beside the running node (WAL readers do not disturb it).
const VERIFY_BLOBS_PY: &str = r#"
import hashlib, os, sqlite3, sys
d = sys.argv[1]
db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "store.db"), uri=True)
names = set()
for t in ("messages", "queue", "content"):
    names.update(r[0] for r in db.execute("SELECT blob FROM %s" % t))
bad = []
for b in sorted(names):
    p = os.path.join(d, "blobs", b[:2], b)
    try:
        with open(p, "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != b:
                bad.append("corrupt " + b)
    except OSError as e:
        bad.append("missing %s (%s)" % (b, e))
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("blobs", len(names))
"#;

/// `clusterd gc` on node `n`: the files it freed.
fn gc_on(lab: &Lab, n: NodeId) -> u64 {
    let out = common::assert_ok(
        &lab.cli(n, &["gc"]),
        &format!("clusterd gc on {}", n.name()),
    );
    out.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected gc output: {out}"))
}

#[test]
fn sweeps_on_both_nodes_during_replicated_deliveries_lose_nothing() {
    let mut lab = replicated_lab_with(
        "[store]\ngc_interval_s = 0\ngc_grace_s = 1\n",
        "log_keep_ops = 1",
    );
    start_replicated(&mut lab);
    send_from_client(&lab, "gc-old", 200);
    imap_do(&lab, VIP, &["delete", "1:*"]);
    wait_digests_equal(&lab, Duration::from_secs(5), "after the expunge");
    // Both nodes compact their logs (every 2 s) and the files pass the grace.
    std::thread::sleep(Duration::from_millis(2500));
    let before = (blob_count(&lab, N1), blob_count(&lab, N2));

    // Deliveries on the active node, replicated to the standby, while both sweep.
    let mut sender = python_spawn_in(
        &lab.client_ns(),
        SEND_PY,
        &[VIP, "200", "gc-new", &format!("{USER}@cluster.com.ec"), "0"],
    );
    let (mut freed, mut sweeps) = ([0u64; 2], 0);
    let t0 = Instant::now();
    while sender.try_wait().expect("wait for the sender").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the sender did not finish in 120 s"
        );
        freed[1] += gc_on(&lab, N2);
        freed[0] += gc_on(&lab, N1);
        sweeps += 1;
    }
    let out = sender.wait_with_output().expect("sender output");
    let text = common::assert_ok(&out, "sending mail during the sweeps");
    let sent: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("250 "))
        .collect();
    assert_eq!(sent.len(), 200, "not every message got 250:\n{text}");
    assert!(
        sweeps >= 2,
        "only {sweeps} sweeps ran during the deliveries"
    );
    for (i, n) in [N1, N2].into_iter().enumerate() {
        assert!(
            freed[i] >= 200,
            "{}: {} files freed (before: {before:?})",
            n.name(),
            freed[i]
        );
    }

    // The same content on both, every body present and whole on both, and all 200
    // new messages readable over IMAP.
    wait_digests_equal(&lab, Duration::from_secs(10), "after the sweeps");
    std::thread::sleep(Duration::from_millis(1500));
    gc_on(&lab, N2);
    gc_on(&lab, N1);
    for n in [N1, N2] {
        let out = common::python(VERIFY_BLOBS_PY, &[common::s(&lab.node_dir(n).join("data"))]);
        let v = common::assert_ok(&out, &format!("the bodies on {}", n.name()));
        assert!(v.contains("blobs "), "{v}");
    }
    // (The node's own mail to the postmaster, e.g. an alert, may be there too.)
    let mut ids: Vec<String> = imap_ids_from_client(&lab)
        .into_iter()
        .filter(|i| i.starts_with("<gc-"))
        .collect();
    ids.sort();
    let mut want: Vec<String> = sent.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert!(ids == want, "the INBOX after the sweeps: {ids:?}");
}
