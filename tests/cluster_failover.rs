//! Failover of the two-node cluster (issue 4: heartbeat over UDP and serial, roles,
//! the virtual IP 10.0.0.100), in the namespace lab of `cluster_lab`: the real
//! binary on both nodes, a client on the LAN bridge, the private link as a veth
//! pair and the serial cable as a pty pair. Every timing is measured from the
//! client's or the kernel's point of view (`ip addr`, the client's ARP cache, TCP
//! connects from the client), never from the nodes' own claims.
//!
//! The first two tests check the lab itself and need no cluster.

mod cluster_lab;
mod common;

use std::time::{Duration, Instant};

use cluster_lab::*;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---- the lab itself (pass without the cluster) ----------------------------------

#[test]
fn lab_topology_connects_client_nodes_and_private_link() {
    let host_links_before = host_links();
    let mut lab = Lab::builder().ping_node(true).no_cluster().build();

    // Nothing but the namespaces appeared in the host namespace.
    assert_eq!(host_links(), host_links_before, "the lab added host links");
    let netns = String::from_utf8(
        std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for ns in [
        lab.lan_ns(),
        lab.ns(N1),
        lab.ns(N2),
        lab.client_ns(),
        lab.ping_ns(),
    ] {
        assert!(netns.contains(&ns), "namespace {ns} missing: {netns}");
    }

    // The LAN.
    assert!(lab.ping_from_client("10.0.0.1"), "client -> 10.0.0.1");
    assert!(lab.ping_from_client("10.0.0.2"), "client -> 10.0.0.2");
    assert!(lab.ping_from_client(PING_NODE_IP), "client -> ping node");
    assert_eq!(lab.client_neigh("10.0.0.1").as_deref(), Some(N1.mac()));
    assert_eq!(lab.mac(N1), N1.mac());
    assert_eq!(lab.mac(N2), N2.mac());
    assert_eq!(
        lab.arping_from_client("10.0.0.2", Duration::from_millis(300)),
        vec![N2.mac().to_string()],
        "arping 10.0.0.2 from the client"
    );
    assert!(
        lab.arping_from_client(VIP, Duration::from_millis(300))
            .is_empty(),
        "nobody answers for the VIP yet"
    );

    // The private link, and taking it down and up.
    assert!(lab.ping_from_node(N1, "192.168.1.2"), "n1 -> 192.168.1.2");
    assert!(lab.ping_from_node(N2, "192.168.1.1"), "n2 -> 192.168.1.1");
    lab.link_down(N1, "eth1");
    assert!(!lab.link_is_up(N1, "eth1"));
    assert!(
        !lab.ping_from_node(N2, "192.168.1.1"),
        "eth1 down still passes"
    );
    lab.link_up(N1, "eth1");
    assert!(lab.ping_from_node(N2, "192.168.1.1"), "eth1 back up");
    // The LAN link likewise.
    lab.link_down(N2, "eth0");
    assert!(!lab.ping_from_client("10.0.0.2"), "eth0 down still passes");
    lab.link_up(N2, "eth0");
    assert!(lab.ping_from_client("10.0.0.2"), "eth0 back up");

    // The ping node, reachable from both, then only from node 2.
    assert!(lab.ping_from_node(N1, PING_NODE_IP), "n1 -> ping node");
    assert!(lab.ping_from_node(N2, PING_NODE_IP), "n2 -> ping node");
    lab.block_ping_from(N1);
    assert!(
        !lab.ping_from_node(N1, PING_NODE_IP),
        "blocked n1 reaches ping"
    );
    assert!(
        lab.ping_from_node(N2, PING_NODE_IP),
        "n2 lost the ping node"
    );
    assert!(
        lab.ping_from_client(PING_NODE_IP),
        "client lost the ping node"
    );
    assert!(lab.ping_from_client("10.0.0.1"), "client lost n1");
    assert!(lab.ping_from_node(N1, "10.0.0.2"), "n1 lost n2 on the LAN");
    lab.unblock_ping_from(N1);
    assert!(lab.ping_from_node(N1, PING_NODE_IP), "unblocked n1 -> ping");

    // The serial cable carries bytes both ways, and can be cut and restored.
    assert_serial_carries(&lab, N1, b"\x00hello n2\xff");
    assert_serial_carries(&lab, N2, b"\x7ehello n1\x7e");
    lab.cut_serial();
    assert!(!lab.serial_path(N1).exists(), "cut cable left the pty link");
    lab.restore_serial();
    assert_serial_carries(&lab, N1, b"again");
    let chunks = lab.serial_chunks_n1_to_n2();
    assert!(
        chunks.iter().any(|c| c == b"\x00hello n2\xff") && chunks.iter().any(|c| c == b"again"),
        "socat's dump of n1 -> n2 traffic: {chunks:?}"
    );
}

/// Writes `bytes` into `from`'s end of the cable and reads them at the other end.
fn assert_serial_carries(lab: &Lab, from: NodeId, bytes: &[u8]) {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let open = |node: NodeId| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(lab.serial_path(node))
            .unwrap_or_else(|e| panic!("open {}: {e}", lab.serial_path(node).display()))
    };
    let mut rx = open(from.peer());
    let mut tx = open(from);
    tx.write_all(bytes).expect("write to the pty");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < bytes.len() && Instant::now() < deadline {
        let mut buf = [0u8; 256];
        match rx.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read from the pty: {e}"),
        }
    }
    assert_eq!(
        got,
        bytes,
        "serial cable {} -> {}",
        from.tag(),
        from.peer().tag()
    );
}

fn host_links() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let mut links: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    links.sort();
    links
}

#[test]
fn lab_nodes_serve_smtp_to_the_client_and_a_manual_vip_move_is_measured() {
    let mut lab = Lab::builder().no_cluster().build();
    lab.start_both();
    for node in [N1, N2] {
        assert!(
            lab.tcp_connects(&lab.client_ns(), node.lan_ip(), SMTP_PORT),
            "client cannot reach {}:25\n{}",
            node.lan_ip(),
            lab.diagnostics()
        );
        let st = lab.status(node);
        assert!(st.role.is_some(), "status has no role line:\n{}", st.text);
    }

    // Move 10.0.0.100 by hand from node 1 to node 2 under the probe: the harness
    // must see the VIP, the ARP entry and the outage the way the tests need.
    ip(&lab.ns(N1), &format!("addr add {VIP_CIDR} dev eth0"));
    lab.send_garp(N1, VIP, 1);
    assert_eq!(lab.vip_holders(), [N1]);
    let probe = lab.probe_tcp(VIP, SMTP_PORT, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(1));
    ip(&lab.ns(N1), &format!("addr del {VIP_CIDR} dev eth0"));
    std::thread::sleep(Duration::from_millis(300));
    ip(&lab.ns(N2), &format!("addr add {VIP_CIDR} dev eth0"));
    lab.send_garp(N2, VIP, 2);
    assert_eq!(lab.vip_holders(), [N2]);
    let report = probe.finish();
    println!(
        "manual VIP move: client-visible outage {:.0} ms ({report:?})",
        report.max_gap_ms
    );
    assert!(report.recovered, "probe did not recover: {report:?}");
    assert!(
        (250.0..1500.0).contains(&report.max_gap_ms),
        "outage of a 300 ms move measured as {report:?}"
    );
    assert_eq!(lab.client_vip_mac().as_deref(), Some(N2.mac()));
    assert_eq!(
        lab.arping_from_client(VIP, Duration::from_millis(300)),
        vec![N2.mac().to_string()]
    );
    // A poisoned entry is corrected by a gratuitous ARP alone.
    lab.set_client_neigh(VIP, BOGUS_MAC);
    assert_eq!(lab.client_vip_mac().as_deref(), Some(BOGUS_MAC));
    lab.send_garp(N2, VIP, 1);
    assert_eq!(lab.client_vip_mac().as_deref(), Some(N2.mac()));
}

// ---- issue 4 acceptance -----------------------------------------------------------

#[test]
fn both_nodes_up_the_preferred_node_alone_holds_the_vip() {
    let mut lab = Lab::new();
    let t0 = Instant::now();
    lab.start_both();
    let took = lab.expect_within(
        t0,
        INITDEAD + Duration::from_secs(2),
        "exactly clusternodo1 holds 10.0.0.100",
        |l| l.vip_holders() == [N1],
    );
    println!("VIP on clusternodo1 {} ms after both started", ms(took));
    lab.expect_for(
        Duration::from_secs(1),
        "clusternodo1 alone keeps the VIP",
        |l| l.vip_holders() == [N1],
    );
    let (s1, s2) = (lab.status(N1), lab.status(N2));
    println!(
        "clusternodo1 status:\n{}\nclusternodo2 status:\n{}",
        s1.text, s2.text
    );
    assert_eq!(s1.role.as_deref(), Some("active"), "{}", s1.text);
    assert_eq!(s2.role.as_deref(), Some("standby"), "{}", s2.text);
    assert!(lab.tcp_connects(&lab.client_ns(), VIP, SMTP_PORT));
    assert_eq!(
        lab.arping_from_client(VIP, Duration::from_millis(300)),
        vec![N1.mac().to_string()],
        "only clusternodo1 answers ARP for the VIP"
    );
}

#[test]
fn node_death_moves_the_vip_and_the_clients_arp_entry_to_node_2() {
    let mut lab = Lab::new();
    lab.start_cluster();
    let probe = lab.probe_tcp(VIP, SMTP_PORT, Duration::from_secs(6));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.client_vip_mac().as_deref(), Some(N1.mac()));

    let t0 = Instant::now();
    lab.kill_node(N1);
    lab.link_down(N1, "eth0");
    lab.link_down(N1, "eth1");
    let took = lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(1),
        "clusternodo2 holds the VIP after clusternodo1 died",
        |l| l.holds_vip(N2),
    );
    let arp = lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(2),
        "the client's ARP entry for the VIP shows clusternodo2's MAC",
        |l| l.client_vip_mac().as_deref() == Some(N2.mac()),
    );
    let report = probe.finish();
    println!(
        "node death: VIP on clusternodo2 after {} ms, client ARP after {} ms, \
         client-visible outage {:.0} ms ({report:?})",
        ms(took),
        ms(arp),
        report.max_gap_ms
    );
    assert!(
        report.recovered,
        "SMTP on the VIP did not come back: {report:?}"
    );
}

#[test]
fn process_crash_alone_fails_over_and_the_dead_node_stops_answering_for_the_vip() {
    let mut lab = Lab::new();
    lab.start_cluster();
    let t0 = Instant::now();
    lab.kill_node(N1); // links stay up
    let took = lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(1),
        "clusternodo2 holds the VIP after clusternodo1's process crashed",
        |l| l.holds_vip(N2),
    );
    let dropped = lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(1),
        "the crashed clusternodo1 no longer holds the VIP",
        |l| !l.holds_vip(N1),
    );
    println!(
        "process crash: VIP on clusternodo2 after {} ms, gone from clusternodo1 after {} ms",
        ms(took),
        ms(dropped)
    );
    let macs = lab.arping_from_client(VIP, Duration::from_millis(500));
    assert_eq!(
        macs,
        vec![N2.mac().to_string()],
        "ARP for the VIP must be answered by clusternodo2 alone\n{}",
        lab.diagnostics()
    );
    assert!(lab.tcp_connects(&lab.client_ns(), VIP, SMTP_PORT));
}

/// Cuts one heartbeat medium; the other carries on: no failover, and node 1 warns
/// about the medium (a WARN line naming it, e.g. `udp` / `serial`).
fn one_medium_lost_no_failover(cut: impl FnOnce(&mut Lab), medium_word: &str) {
    let mut lab = Lab::new();
    lab.start_cluster();
    let log_at = lab.log_len(N1);
    cut(&mut lab);
    lab.expect_for(
        Duration::from_secs(3),
        "clusternodo1 alone keeps the VIP while one medium is still up",
        |l| l.vip_holders() == [N1],
    );
    let warnings = lab.warnings_since(N1, log_at, &[medium_word]);
    assert!(
        !warnings.is_empty(),
        "clusternodo1 logged no WARN line naming the `{medium_word}` medium within 3 s; \
         its log since the cut:\n{}",
        lab.log_since(N1, log_at)
    );
    println!("clusternodo1 warned: {}", warnings[0]);
}

#[test]
fn private_link_down_alone_does_not_fail_over_and_warns() {
    one_medium_lost_no_failover(|lab| lab.link_down(N1, "eth1"), "udp");
}

#[test]
fn serial_cable_cut_alone_does_not_fail_over_and_warns() {
    one_medium_lost_no_failover(|lab| lab.cut_serial(), "serial");
}

#[test]
fn both_media_down_the_node_that_reaches_the_ping_node_takes_over() {
    let settings = ClusterSettings {
        ping_nodes: vec![PING_NODE_IP.to_string()],
        ..Default::default()
    };
    let mut lab = Lab::builder().ping_node(true).cluster(settings).build();
    lab.start_cluster();
    let t0 = Instant::now();
    lab.block_ping_from(N1);
    lab.link_down(N1, "eth1");
    lab.cut_serial();
    let took = lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(3),
        "clusternodo2 (reaches the ping node) alone holds the VIP",
        |l| l.vip_holders() == [N2],
    );
    println!(
        "both media down, ping node only from clusternodo2: VIP moved in {} ms",
        ms(took)
    );
    lab.expect_for(
        Duration::from_secs(2),
        "clusternodo2 alone keeps the VIP",
        |l| l.vip_holders() == [N2],
    );
}

#[test]
fn preferred_node_returns_fails_back_and_standby_hands_over_in_under_a_second() {
    let mut lab = Lab::new();
    lab.start_cluster();
    let t0 = Instant::now();
    lab.kill_node(N1);
    lab.link_down(N1, "eth0");
    lab.link_down(N1, "eth1");
    lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(1),
        "clusternodo2 took over",
        |l| l.holds_vip(N2),
    );

    // clusternodo1 comes back (its links first, as after a reboot).
    lab.link_up(N1, "eth0");
    lab.link_up(N1, "eth1");
    let t1 = Instant::now();
    lab.start_node(N1);
    let back = lab.expect_within(
        t1,
        INITDEAD + Duration::from_secs(2),
        "the VIP failed back to clusternodo1 alone",
        |l| l.vip_holders() == [N1],
    );
    println!("failback to clusternodo1: {} ms after its start", ms(back));
    lab.expect_for(
        Duration::from_millis(500),
        "clusternodo1 keeps the VIP",
        |l| l.vip_holders() == [N1],
    );

    // Manual switchover: `clusterd standby` on clusternodo1.
    let t2 = Instant::now();
    let cli = lab.spawn_cli(N1, &["standby"]);
    let mut moved = None;
    while t2.elapsed() < Duration::from_secs(3) {
        if lab.holds_vip(N2) {
            moved = Some(t2.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = cli.wait_with_output().expect("clusterd standby");
    assert!(
        out.status.success(),
        "clusterd standby failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = moved.unwrap_or_else(|| {
        panic!(
            "after `clusterd standby` the VIP did not reach clusternodo2 in 3 s\n{}",
            lab.diagnostics()
        )
    });
    println!(
        "standby: VIP on clusternodo2 {} ms after the command",
        ms(moved)
    );
    assert!(
        moved < Duration::from_secs(1),
        "standby took {} ms (limit 1000)",
        ms(moved)
    );
    lab.expect_within(
        t2,
        Duration::from_secs(2),
        "clusternodo1 gave the VIP up",
        |l| l.vip_holders() == [N2],
    );
    // A standby by hand is not undone by auto-failback.
    lab.expect_for(Duration::from_secs(2), "clusternodo2 keeps the VIP", |l| {
        l.vip_holders() == [N2]
    });
}

#[test]
fn partition_heal_leaves_one_holder_and_points_the_client_at_it() {
    let mut lab = Lab::new();
    lab.start_cluster();
    // Warm the client's ARP entry as a real client would have it.
    assert!(lab.tcp_connects(&lab.client_ns(), VIP, SMTP_PORT));

    let t0 = Instant::now();
    lab.link_down(N1, "eth1");
    lab.cut_serial();
    let split = lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(2),
        "both nodes hold the VIP (split brain without ping nodes)",
        |l| l.vip_holders() == [N1, N2],
    );
    println!("partition: both active after {} ms", ms(split));
    std::thread::sleep(Duration::from_millis(500));

    // Only a gratuitous ARP from the survivor can correct this entry in time.
    lab.set_client_neigh(VIP, BOGUS_MAC);
    let t1 = Instant::now();
    lab.link_up(N1, "eth1");
    lab.restore_serial();
    let healed = lab.expect_within(
        t1,
        Duration::from_secs(1),
        "exactly one node holds the VIP and the client's ARP entry points at it",
        |l| match l.vip_holders().as_slice() {
            [one] => l.client_vip_mac().as_deref() == Some(one.mac()),
            _ => false,
        },
    );
    let survivor = lab.vip_holders()[0];
    println!(
        "partition heal: {} alone holds the VIP and the client points at it after {} ms",
        survivor.name(),
        ms(healed)
    );
    lab.expect_for(
        Duration::from_secs(1),
        "the survivor alone keeps the VIP",
        |l| l.vip_holders() == [survivor],
    );
}

#[test]
fn forged_and_replayed_heartbeats_do_not_keep_a_dead_node_alive() {
    let mut lab = Lab::new();
    lab.start_cluster();
    // Genuine traffic from clusternodo1, as clusternodo2 receives it.
    let udp = lab.capture_udp(
        &lab.ns(N2),
        "eth1",
        N1.private_ip(),
        HEARTBEAT_PORT,
        Duration::from_millis(1500),
    );
    let t0 = Instant::now();
    lab.kill_node(N1);
    let serial = lab.serial_chunks_n1_to_n2();
    assert!(
        udp.len() >= 5,
        "captured only {} UDP heartbeats from clusternodo1 in 1.5 s",
        udp.len()
    );
    assert!(
        !serial.is_empty(),
        "no serial traffic from clusternodo1 was seen"
    );
    // Replay the most recent frames first: they are the likeliest to pass a check.
    let udp: Vec<Vec<u8>> = udp.into_iter().rev().take(20).collect();
    let serial: Vec<Vec<u8>> = serial.into_iter().rev().take(20).collect();
    let forger = lab.spawn_forger(N1, &udp, &serial, DEADTIME + Duration::from_secs(3));

    let took = lab.expect_within(
        t0,
        DEADTIME + Duration::from_secs(1),
        "clusternodo2 takes over despite forged and replayed heartbeats",
        |l| l.holds_vip(N2),
    );
    let sent = forger.finish();
    println!(
        "forged/replayed heartbeats: clusternodo2 took over after {} ms; forger sent {sent}",
        ms(took)
    );
    assert!(
        sent["udp_replayed"].as_u64().unwrap_or(0) > 0
            && sent["udp_forged"].as_u64().unwrap_or(0) > 0,
        "the forger sent nothing: {sent}"
    );
    assert_eq!(
        sent["udp_bound_to_node_address"],
        serde_json::Value::Bool(true),
        "forger could not send from clusternodo1's heartbeat address: {sent}"
    );
    assert!(
        lab.holds_vip(N2),
        "clusternodo2 gave the VIP up under forged heartbeats\n{}",
        lab.diagnostics()
    );
}

#[test]
fn clean_stop_of_the_active_node_hands_over_before_the_deadtime() {
    let mut lab = Lab::new();
    lab.start_cluster();
    let t0 = Instant::now();
    // SIGTERM: the node releases the VIP and asks the peer to take over at once.
    lab.stop_node(N1);
    let took = lab.expect_within(
        t0,
        DEADTIME / 2,
        "clusternodo2 alone holds the VIP after a clean stop of clusternodo1",
        |l| l.vip_holders() == [N2],
    );
    println!(
        "VIP on clusternodo2 {} ms after SIGTERM to clusternodo1",
        ms(took)
    );
}

#[test]
fn lan_clients_resolve_through_the_vip_over_udp_and_tcp() {
    common_require_dig();
    let mut lab = Lab::new();
    lab.start_cluster();
    for transport in ["+notcp", "+tcp"] {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.client_ns(), "dig", "@10.0.0.100"])
            .args([
                transport,
                "+tries=1",
                "+time=2",
                "+short",
                "www.cluster.com.ec",
                "A",
            ])
            .output()
            .expect("run dig in the client namespace");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            answer.trim(),
            "10.0.0.100",
            "dig {transport} @VIP from the client ({:?}): {answer}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn common_require_dig() {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v dig"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "required tool `dig` is not installed (.ci/run installs it)"
    );
}

/// Issue 16: frames recorded from an earlier boot of the active node, replayed to a
/// standby that never heard that boot (it restarted since), must not displace the
/// boot the active node runs now: before, the replayed boot became "current", every
/// genuine heartbeat after it was dropped as a replay, and the standby took the VIP
/// while the active node still held it (split brain).
#[test]
fn replayed_heartbeats_of_an_earlier_boot_cause_no_failover() {
    let mut lab = Lab::new();
    lab.start_cluster();
    // clusternodo1's first boot, as clusternodo2 receives it.
    let recorded = lab.capture_udp(
        &lab.ns(N2),
        "eth1",
        N1.private_ip(),
        HEARTBEAT_PORT,
        Duration::from_millis(1500),
    );
    assert!(
        recorded.len() >= 5,
        "captured {} heartbeats",
        recorded.len()
    );
    // clusternodo1 restarts (a later boot): its peer covers, then hands back.
    let t0 = Instant::now();
    lab.stop_node(N1);
    lab.expect_within(t0, DEADTIME * 3, "clusternodo2 covers", |l| l.holds_vip(N2));
    let t0 = Instant::now();
    lab.start_node(N1);
    lab.expect_within(
        t0,
        INITDEAD + Duration::from_secs(10),
        "clusternodo1 takes the service back",
        |l| l.vip_holders() == [N1],
    );
    // clusternodo2 restarts: it has never heard the recorded boot.
    lab.stop_node(N2);
    lab.start_node(N2);
    std::thread::sleep(INITDEAD);
    assert_eq!(lab.vip_holders(), [N1], "{}", lab.diagnostics());
    let offset = lab.log_len(N2);
    let replay_for = DEADTIME * 3;
    let latest: Vec<Vec<u8>> = recorded.into_iter().rev().take(20).collect();
    let forger = lab.spawn_forger(N1, &latest, &[], replay_for);
    let until = Instant::now() + replay_for + DEADTIME;
    while Instant::now() < until {
        assert_eq!(
            lab.vip_holders(),
            [N1],
            "the replayed boot moved the VIP\n{}",
            lab.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = forger.finish();
    assert!(
        sent["udp_replayed"].as_u64().unwrap_or(0) > 0,
        "the replayer sent nothing: {sent}"
    );
    let warned = lab.warnings_since(N2, offset, &["earlier boot"]);
    assert!(
        !warned.is_empty(),
        "no warning about the replayed boot:\n{}",
        lab.log_since(N2, offset)
    );
    assert!(
        lab.warnings_since(N2, offset, &["peer"])
            .iter()
            .all(|l| !l.to_lowercase().contains("dead")),
        "clusternodo2 declared its peer dead:\n{}",
        lab.log_since(N2, offset)
    );
}
