//! Failover benchmark (issue 4): the client-visible outage when the active node dies,
//! the outage when the preferred node returns (failback), and whether a node whose
//! daemon was killed keeps the virtual IP. clusterd (two timing settings) and
//! keepalived (Debian package `keepalived`, VRRPv3) side by side, in the same
//! network-namespace lab as `tests/cluster_failover.rs` (`tests/cluster_lab`).
//!
//! `cargo bench --bench failover` (needs `[[bench]] name = "failover" harness = false`;
//! cargo builds clusterd with the bench profile and passes its path in
//! `CARGO_BIN_EXE_clusterd`). Runs as root (namespaces, raw sockets). Prints figures and
//! asserts nothing about targets. `BENCH_FAILOVER_RUNS` sets the runs per setup
//! (default 10); a run is one failover followed by one failback. ~4 minutes at 10 runs.
//!
//! What is measured, always from the client namespace (10.0.0.10 on the LAN bridge):
//! a TCP connect to 10.0.0.100:25 every 10 ms (100 ms connect timeout each, the lab's
//! probe); the figure is the longest time between two successful connects.
//!
//! 1. Failover: the active node 1 dies as a machine does: its daemon gets SIGKILL and
//!    at once both its links (eth0, eth1) go down. Then node 1 "reboots": a VIP left
//!    on it is removed by hand (a rebooted machine has none), its links come up.
//! 2. Failback: node 1 (the preferred node, the higher VRRP priority) starts again and
//!    takes the VIP back; the longest gap and whether any connect attempt failed.
//! 3. The daemon of the active node is killed with its links up: does the node still
//!    hold the VIP 3 s later?
//!
//! Beside the client's figures, `ip -ts monitor address` in both node namespaces
//! timestamps the kernel's address events: when the VIP appeared on node 2 after the
//! kill, and in a failback the time between node 2 deleting the VIP and node 1 adding
//! it (positive: nobody held it; negative: both held it for that long).
//!
//! clusterd runs with the lab's config ([cluster] with UDP over the private link and
//! the serial cable) in two settings: the reference one (keepalive 100 ms, deadtime
//! 1000 ms) and a fast one (keepalive 20 ms, warntime 100 ms, deadtime 150 ms). Role
//! changes are counted in the nodes' logs to spot false failovers or flapping.
//!
//! keepalived runs with its VRRP instance on eth0 (multicast 224.0.0.18 over the LAN
//! bridge), see [`keepalived_config`]; the nodes run clusterd without `[cluster]` as
//! the TCP service on port 25 (it listens on 0.0.0.0:25). keepalived's VRRP work
//! happens in a child process; a SIGKILL of the parent alone makes that child (via its
//! parent-death signal) shut down cleanly: it sends priority 0 and removes the VIP,
//! which is not a crash. So "kill -9" here means SIGKILL to the VRRP child (its PID
//! from the `-r` pid file, checked to be a child of the process we spawned) and then
//! to the spawned parent; `-R` keeps the parent from respawning the child. Section 3
//! also shows the parent-only kill for comparison.
//!
//! Every process started here is stopped by PID; the lab removes its namespaces.

#[path = "../tests/cluster_lab/mod.rs"]
mod cluster_lab;

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_lab::*;

/// Probe time before the kill / the restart, so the probe has a baseline.
const PRE: Duration = Duration::from_millis(500);
/// Probe time after the outage is expected to be over.
const POST: Duration = Duration::from_millis(1000);
/// Node 1's VRRP priority (node 2: 100).
const KA_PRIO_N1: u32 = 150;
const KA_PRIO_N2: u32 = 100;
/// How long after the kill section 3 looks at the VIP.
const CRASH_LOOK: Duration = Duration::from_secs(3);

fn main() {
    let runs: usize = std::env::var("BENCH_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10);
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the failover bench needs root (network namespaces, raw sockets)"
    );
    require_tool("keepalived");
    let t0 = Instant::now();
    println!(
        "failover bench: {runs} runs per setup; client TCP connect to {VIP}:{SMTP_PORT} every 10 ms \
         (100 ms timeout); {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let reference = ClusterSettings::default();
    let fast = ClusterSettings {
        keepalive_ms: 20,
        warntime_ms: 100,
        deadtime_ms: 150,
        ..ClusterSettings::default()
    };
    let mut series = vec![
        clusterd_series(
            "clusterd keepalive 100 / deadtime 1000 ms",
            &reference,
            runs,
        ),
        clusterd_series(
            "clusterd keepalive 20 / deadtime 150 ms",
            &fast,
            runs,
        ),
    ];
    series.push(keepalived_series(runs));

    print_tables(&series, runs);
    println!("\ntotal bench time {:.0} s", t0.elapsed().as_secs_f64());
}

// ---- results -----------------------------------------------------------------------

#[derive(Default)]
struct Series {
    label: String,
    failover: Vec<ProbeReport>,
    /// Kernel: VIP on node 2, ms after the kill.
    vip_on_n2_ms: Vec<f64>,
    failback: Vec<ProbeReport>,
    /// Kernel: node 1 added the VIP minus node 2 deleted it, ms.
    unheld_ms: Vec<f64>,
    /// Restart of node 1 to the VIP on node 1 alone, ms.
    failback_after_ms: Vec<f64>,
    /// Things that went against the expected sequence, one line each.
    anomalies: Vec<String>,
    /// Role-change counts from the logs (clusterd only): text for the flapping table.
    roles: Option<String>,
    crash: Vec<CrashLook>,
}

struct CrashLook {
    what: String,
    n1_holds: bool,
    n2_holds: bool,
    /// When the VIP left node 1, ms after the kill (kernel event), if it did.
    n1_dropped_ms: Option<f64>,
    arp_macs: Vec<String>,
}

fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v[0], med, v[n - 1]))
}

fn mmm(v: &[f64]) -> String {
    match stats(v) {
        Some((a, b, c)) => format!("{a:>6.0} {b:>6.0} {c:>6.0}"),
        None => format!("{:>6} {:>6} {:>6}", "-", "-", "-"),
    }
}

fn median(v: &[f64]) -> String {
    stats(v).map_or("-".into(), |(_, m, _)| format!("{m:.0}"))
}

fn print_tables(series: &[Series], runs: usize) {
    println!("\n=== 1. Failover: SIGKILL of the active node 1 + its links down ({runs} runs)");
    println!(
        "{:<44} {:>20} {:>16} {:>13}",
        "", "client outage ms", "VIP on node 2", "not recovered"
    );
    println!(
        "{:<44} {:>6} {:>6} {:>6} {:>16} {:>13}",
        "setup", "min", "median", "max", "median ms", "in probe"
    );
    for s in series {
        let gaps: Vec<f64> = s.failover.iter().map(|r| r.max_gap_ms).collect();
        println!(
            "{:<44} {} {:>16} {:>13}",
            s.label,
            mmm(&gaps),
            median(&s.vip_on_n2_ms),
            s.failover.iter().filter(|r| !r.recovered).count()
        );
    }

    println!("\n=== 2. Failback: node 1 (preferred / higher priority) starts again ({runs} runs)");
    println!(
        "{:<44} {:>20} {:>11} {:>8} {:>12} {:>12}",
        "", "longest gap ms", "runs with", "failed", "VIP unheld", "restart to"
    );
    println!(
        "{:<44} {:>6} {:>6} {:>6} {:>11} {:>8} {:>12} {:>12}",
        "setup", "min", "median", "max", "a failure", "attempts", "median ms", "VIP, med ms"
    );
    for s in series {
        let gaps: Vec<f64> = s.failback.iter().map(|r| r.max_gap_ms).collect();
        println!(
            "{:<44} {} {:>11} {:>8} {:>12} {:>12}",
            s.label,
            mmm(&gaps),
            format!(
                "{}/{}",
                s.failback.iter().filter(|r| r.failed > 0).count(),
                s.failback.len()
            ),
            s.failback.iter().map(|r| r.failed).sum::<u64>(),
            median(&s.unheld_ms),
            median(&s.failback_after_ms),
        );
    }
    println!(
        "  (VIP unheld: node 1 adds the VIP minus node 2 deletes it, kernel timestamps; \
         negative = both held it)"
    );

    println!("\n=== 3. Daemon on the active node 1 SIGKILLed, links up: VIP {} s later", CRASH_LOOK.as_secs());
    println!(
        "{:<70} {:>9} {:>9} {:>14}  client ARP answers",
        "setup", "node 1", "node 2", "left node 1"
    );
    for s in series {
        for c in &s.crash {
            println!(
                "{:<70} {:>9} {:>9} {:>14}  {}",
                format!("{} ({})", s.label, c.what),
                if c.n1_holds { "HOLDS" } else { "-" },
                if c.n2_holds { "HOLDS" } else { "-" },
                c.n1_dropped_ms
                    .map_or("never".into(), |ms| format!("after {ms:.0} ms")),
                c.arp_macs.iter().map(|m| mac_name(m)).collect::<Vec<_>>().join(", ")
            );
        }
    }

    println!("\n=== Role changes seen in clusterd's logs (false failovers / flapping)");
    for s in series {
        if let Some(r) = &s.roles {
            println!("{:<44} {r}", s.label);
        }
    }

    println!("\n=== Per run (ms): failover outage | failback gap (failed attempts) | VIP unheld");
    for s in series {
        let mut line = String::new();
        for i in 0..s.failover.len().max(s.failback.len()) {
            let fo = s.failover.get(i).map_or(f64::NAN, |r| r.max_gap_ms);
            let (fb, failed) = s
                .failback
                .get(i)
                .map_or((f64::NAN, 0), |r| (r.max_gap_ms, r.failed));
            let un = s.unheld_ms.get(i).copied().unwrap_or(f64::NAN);
            let _ = write!(line, " [{fo:.0} | {fb:.0} ({failed}) | {un:.0}]");
        }
        println!("{}:{line}", s.label);
    }
    for s in series {
        for a in &s.anomalies {
            println!("NOTE {}: {a}", s.label);
        }
    }
}

fn mac_name(mac: &str) -> String {
    if mac == N1.mac() {
        "node 1".into()
    } else if mac == N2.mac() {
        "node 2".into()
    } else {
        mac.into()
    }
}

// ---- clusterd ----------------------------------------------------------------------

fn clusterd_series(label: &str, settings: &ClusterSettings, runs: usize) -> Series {
    eprintln!("-- {label}");
    let mut s = Series {
        label: label.into(),
        ..Default::default()
    };
    let mut lab = Lab::builder().cluster(settings.clone()).build();
    let deadtime = Duration::from_millis(settings.deadtime_ms);
    let logs_at = [lab.log_len(N1), lab.log_len(N2)];
    lab.start_both();
    if lab
        .wait_until(Duration::from_secs(10), Duration::from_millis(20), |l| {
            l.vip_holders() == [N1]
        })
        .is_none()
    {
        panic!("{label}: node 1 did not get the VIP\n{}", lab.diagnostics());
    }
    let mut starts_n1 = 1;
    let mut kills_n1 = 0;

    for run in 0..runs {
        settle(&lab, &mut s, run, [N1]);

        // -- failover
        let mon = Monitor::start(&lab, N2);
        let probe = lab.probe_tcp(VIP, SMTP_PORT, PRE + deadtime + POST);
        std::thread::sleep(PRE);
        let kill_at = chrono::Local::now().naive_local();
        lab.kill_node(N1);
        lab.link_down(N1, "eth0");
        lab.link_down(N1, "eth1");
        kills_n1 += 1;
        let report = probe.finish();
        let events = mon.stop();
        s.vip_on_n2_ms
            .push(first_event(&events, false, kill_at).unwrap_or(f64::NAN));
        check_failover(&lab, &mut s, run, &report);
        s.failover.push(report);

        // -- node 1 reboots, then fails back
        reboot_links(&lab);
        let (mon1, mon2) = (Monitor::start(&lab, N1), Monitor::start(&lab, N2));
        // clusterd starts in ~0.1-0.5 s; the handover follows within milliseconds.
        let probe = lab.probe_tcp(VIP, SMTP_PORT, PRE + Duration::from_secs(2) + POST);
        std::thread::sleep(PRE);
        let started = Instant::now();
        lab.start_node(N1);
        starts_n1 += 1;
        let back = lab
            .wait_until(Duration::from_secs(2), Duration::from_millis(10), |l| {
                l.vip_holders() == [N1]
            })
            .map(|_| started.elapsed());
        let report = probe.finish();
        record_failback(&mut s, run, report, back, mon1.stop(), mon2.stop());
    }

    // -- false failovers / flapping: a quiet soak, then the logs
    let soak = Duration::from_secs(5);
    settle(&lab, &mut s, runs, [N1]);
    let probe = lab.probe_tcp(VIP, SMTP_PORT, soak);
    let report = probe.finish();
    if report.failed > 0 || lab.vip_holders() != [N1] {
        s.anomalies.push(format!(
            "quiet {} s soak: {} failed connects, longest gap {:.0} ms, holders {:?}",
            soak.as_secs(),
            report.failed,
            report.max_gap_ms,
            lab.vip_holders()
        ));
    }
    s.roles = Some(role_counts(&lab, logs_at, starts_n1, kills_n1, soak));

    // -- 3. the daemon dies, the links stay up
    settle(&lab, &mut s, runs + 1, [N1]);
    let mon = Monitor::start(&lab, N1);
    let kill_at = chrono::Local::now().naive_local();
    lab.kill_node(N1);
    std::thread::sleep(CRASH_LOOK);
    let events = mon.stop();
    s.crash.push(CrashLook {
        what: "SIGKILL".into(),
        n1_holds: lab.holds_vip(N1),
        n2_holds: lab.holds_vip(N2),
        n1_dropped_ms: first_event(&events, true, kill_at),
        arp_macs: lab.arping_from_client(VIP, Duration::from_millis(300)),
    });
    s
}

/// Counts the role changes in both logs since `at` and compares them with what the
/// kills and restarts explain.
fn role_counts(lab: &Lab, at: [usize; 2], starts_n1: usize, kills_n1: usize, soak: Duration) -> String {
    let count = |node: NodeId, what: &str| {
        lab.log_since(node, at[node as usize])
            .lines()
            .filter(|l| l.contains(what))
            .count()
    };
    let act1 = count(N1, "cluster: becoming active");
    let stb1 = count(N1, "cluster: standing by");
    let dead1 = count(N1, "cluster: peer is dead");
    let act2 = count(N2, "cluster: becoming active");
    let stb2 = count(N2, "cluster: standing by");
    let dead2 = count(N2, "cluster: peer is dead");
    let silent = count(N1, "heartbeat medium silent") + count(N2, "heartbeat medium silent");
    // Expected: node 1 becomes active once per start and never declares node 2 dead;
    // node 2 stands by at start-up and after each failback, declares node 1 dead and
    // becomes active once per kill.
    let unexpected = act1.abs_diff(starts_n1)
        + stb1
        + dead1
        + act2.abs_diff(kills_n1)
        + stb2.abs_diff(kills_n1 + 1)
        + dead2.abs_diff(kills_n1);
    let _ = soak;
    format!(
        "unexpected role changes {unexpected} (node 1: active x{act1} / standby x{stb1} / \
         peer dead x{dead1}, expected {starts_n1}/0/0; node 2: active x{act2} / standby x{stb2} / \
         peer dead x{dead2}, expected {kills_n1}/{}/{kills_n1}); 'medium silent' warnings {silent}",
        kills_n1 + 1
    )
}

// ---- keepalived --------------------------------------------------------------------

/// The keepalived configuration of one node: VRRPv3, advert_int 0.1 s, one instance
/// for the VIP on eth0 (multicast on the LAN), priority 150 on node 1 and 100 on
/// node 2, both starting as BACKUP (node 1 preempts).
fn keepalived_config(node: NodeId) -> String {
    let prio = match node {
        N1 => KA_PRIO_N1,
        N2 => KA_PRIO_N2,
    };
    format!(
        r#"global_defs {{
    router_id {name}
    vrrp_version 3
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {prio}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP_CIDR} dev eth0
    }}
}}
"#,
        name = node.name()
    )
}

fn keepalived_series(runs: usize) -> Series {
    let label = "keepalived VRRPv3 advert_int 0.1 s";
    eprintln!("-- {label}");
    let mut s = Series {
        label: label.into(),
        ..Default::default()
    };
    let mut lab = Lab::builder().no_cluster().build();
    for node in [N1, N2] {
        std::fs::write(keepalived_conf_path(&lab, node), keepalived_config(node))
            .expect("write keepalived.conf");
    }
    lab.start_both();
    let mut ka: [Option<Keepalived>; 2] = [None, None];
    ka[1] = Some(Keepalived::spawn(&lab, N2));
    ka[0] = Some(Keepalived::spawn(&lab, N1));
    if lab
        .wait_until(Duration::from_secs(10), Duration::from_millis(20), |l| {
            l.vip_holders() == [N1]
        })
        .is_none()
    {
        panic!(
            "keepalived: node 1 did not get the VIP\n{}\n{}",
            lab.diagnostics(),
            keepalived_logs(&lab)
        );
    }
    // VRRP master-down interval: 3 x advert_int + skew (node 2: (256-100)/256 x 0.1 s).
    let master_down = Duration::from_millis(300 + 61);

    for run in 0..runs {
        settle(&lab, &mut s, run, [N1]);

        // -- failover
        let mon = Monitor::start(&lab, N2);
        let probe = lab.probe_tcp(VIP, SMTP_PORT, PRE + master_down + POST);
        std::thread::sleep(PRE);
        let kill_at = chrono::Local::now().naive_local();
        ka[0].take().unwrap().crash();
        lab.kill_node(N1);
        lab.link_down(N1, "eth0");
        lab.link_down(N1, "eth1");
        let report = probe.finish();
        let events = mon.stop();
        s.vip_on_n2_ms
            .push(first_event(&events, false, kill_at).unwrap_or(f64::NAN));
        check_failover(&lab, &mut s, run, &report);
        s.failover.push(report);

        // -- node 1 reboots (its service first), then keepalived preempts
        reboot_links(&lab);
        lab.start_node(N1);
        let (mon1, mon2) = (Monitor::start(&lab, N1), Monitor::start(&lab, N2));
        let probe = lab.probe_tcp(VIP, SMTP_PORT, PRE + Duration::from_secs(1) + POST);
        std::thread::sleep(PRE);
        let started = Instant::now();
        ka[0] = Some(Keepalived::spawn(&lab, N1));
        let back = lab
            .wait_until(Duration::from_secs(2), Duration::from_millis(10), |l| {
                l.vip_holders() == [N1]
            })
            .map(|_| started.elapsed());
        let report = probe.finish();
        record_failback(&mut s, run, report, back, mon1.stop(), mon2.stop());
    }

    // -- 3. the daemon dies, the links stay up: a crash (VRRP child and parent
    // SIGKILLed), then for comparison SIGKILL of the spawned parent only.
    for parent_only in [false, true] {
        settle(&lab, &mut s, runs, [N1]);
        let mon = Monitor::start(&lab, N1);
        let kill_at = chrono::Local::now().naive_local();
        let k = ka[0].take().unwrap();
        if parent_only {
            k.kill_parent_only();
        } else {
            k.crash();
        }
        std::thread::sleep(CRASH_LOOK);
        let events = mon.stop();
        s.crash.push(CrashLook {
            what: if parent_only {
                "SIGKILL of the parent only: its VRRP child shuts down cleanly".into()
            } else {
                "SIGKILL of VRRP child and parent".into()
            },
            n1_holds: lab.holds_vip(N1),
            n2_holds: lab.holds_vip(N2),
            n1_dropped_ms: first_event(&events, true, kill_at),
            arp_macs: lab.arping_from_client(VIP, Duration::from_millis(300)),
        });
        if !parent_only {
            // Back to the normal state for the next case.
            if lab.holds_vip(N1) {
                ip(&lab.ns(N1), &format!("addr del {VIP_CIDR} dev eth0"));
            }
            ka[0] = Some(Keepalived::spawn(&lab, N1));
            let _ = lab.wait_until(Duration::from_secs(3), Duration::from_millis(20), |l| {
                l.vip_holders() == [N1]
            });
        }
    }
    drop(ka);
    s
}

fn keepalived_conf_path(lab: &Lab, node: NodeId) -> PathBuf {
    lab.node_dir(node).join("keepalived.conf")
}

fn keepalived_logs(lab: &Lab) -> String {
    let mut s = String::new();
    for node in [N1, N2] {
        let log = std::fs::read_to_string(lab.node_dir(node).join("keepalived.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let _ = writeln!(
            s,
            "---- keepalived {} (last 30 lines)\n{}",
            node.name(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    s
}

/// A private keepalived instance in one node's namespace: `keepalived -n -l -D -G -P
/// -R -f CONF -p PID -r VRRP_PID -c CHECKERS_PID -b BFD_PID` (no fork, log to the
/// console (the node's keepalived.log), detailed, no syslog, VRRP only, no respawn of
/// the VRRP child; every pid file in the node's lab directory).
struct Keepalived {
    parent: Option<Child>,
    vrrp_pid_file: PathBuf,
}

impl Keepalived {
    fn spawn(lab: &Lab, node: NodeId) -> Keepalived {
        let dir = lab.node_dir(node);
        let pid = |n: &str| dir.join(format!("keepalived{n}.pid"));
        for n in ["", "-vrrp", "-checkers", "-bfd"] {
            let _ = std::fs::remove_file(pid(n));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("keepalived.log"))
            .expect("keepalived log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &lab.ns(node), "keepalived"])
            .args(["-n", "-l", "-D", "-G", "-P", "-R", "-f"])
            .arg(keepalived_conf_path(lab, node))
            .arg("-p")
            .arg(pid(""))
            .arg("-r")
            .arg(pid("-vrrp"))
            .arg("-c")
            .arg(pid("-checkers"))
            .arg("-b")
            .arg(pid("-bfd"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        die_with_parent(&mut cmd);
        let mut k = Keepalived {
            parent: Some(cmd.spawn().expect("start keepalived")),
            vrrp_pid_file: pid("-vrrp"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while k.vrrp_pid().is_none() {
            if let Some(status) = k.parent.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "keepalived on {} exited ({status})\n{}",
                    node.name(),
                    keepalived_logs(lab)
                );
            }
            assert!(
                Instant::now() < deadline,
                "keepalived on {} started no VRRP child in 10 s",
                node.name()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        k
    }

    /// The VRRP child's PID, if its pid file names a live child of our process.
    fn vrrp_pid(&self) -> Option<libc::pid_t> {
        let parent = self.parent.as_ref()?.id();
        let pid: libc::pid_t = std::fs::read_to_string(&self.vrrp_pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut f = rest.split_whitespace();
        let state = f.next()?;
        let ppid: u32 = f.next()?.parse().ok()?;
        (ppid == parent && state != "Z").then_some(pid)
    }

    /// A crash: SIGKILL to the VRRP child first (nothing of its shutdown runs), then
    /// to the parent.
    fn crash(mut self) {
        if let Some(pid) = self.vrrp_pid() {
            // SAFETY: kill(2) on a PID just checked to be our keepalived's child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if let Some(mut p) = self.parent.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// SIGKILL to the spawned parent only; waits (bounded) for its VRRP child, which
    /// gets its parent-death signal and shuts down on its own.
    fn kill_parent_only(mut self) {
        let child = self.vrrp_pid();
        if let Some(mut p) = self.parent.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(pid) = child {
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if alive(pid) {
                // SAFETY: kill(2) on the orphaned VRRP child of our keepalived.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        if self.parent.is_some() {
            let k = Keepalived {
                parent: self.parent.take(),
                vrrp_pid_file: self.vrrp_pid_file.clone(),
            };
            k.crash();
        }
    }
}

fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 2..].split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

// ---- shared steps ------------------------------------------------------------------

/// Waits (bounded) until exactly `holders` hold the VIP and the client reaches it.
fn settle<const K: usize>(lab: &Lab, s: &mut Series, run: usize, holders: [NodeId; K]) {
    let ok = lab.wait_until(Duration::from_secs(5), Duration::from_millis(20), |l| {
        l.vip_holders() == holders
    });
    if ok.is_none() {
        s.anomalies.push(format!(
            "run {}: VIP holders {:?} before the step (expected {holders:?})",
            run + 1,
            lab.vip_holders()
        ));
    }
    // Let the failback's gratuitous ARPs and any renewals pass before the next step.
    std::thread::sleep(Duration::from_millis(300));
}

fn check_failover(lab: &Lab, s: &mut Series, run: usize, report: &ProbeReport) {
    if report.gap_start_ms + 100.0 < PRE.as_millis() as f64 {
        s.anomalies.push(format!(
            "run {}: failover probe's longest gap began {:.0} ms into the probe, before the kill ({report:?})",
            run + 1,
            report.gap_start_ms
        ));
    }
    if lab.vip_holders() != [N2] {
        s.anomalies.push(format!(
            "run {}: after the failover the VIP holders are {:?}",
            run + 1,
            lab.vip_holders()
        ));
    }
}

/// Node 1 "reboots": a VIP left on its eth0 goes (a rebooted machine has none), then
/// its links come up.
fn reboot_links(lab: &Lab) {
    if lab.holds_vip(N1) {
        ip(&lab.ns(N1), &format!("addr del {VIP_CIDR} dev eth0"));
    }
    lab.link_up(N1, "eth0");
    lab.link_up(N1, "eth1");
    // The LAN port's carrier and the bridge need a moment (no STP: forwarding at once).
    std::thread::sleep(Duration::from_millis(200));
}

fn record_failback(
    s: &mut Series,
    run: usize,
    report: ProbeReport,
    back: Option<Duration>,
    ev1: Vec<AddrEvent>,
    ev2: Vec<AddrEvent>,
) {
    let del2 = ev2.iter().find(|e| e.deleted).map(|e| e.at);
    let add1 = ev1.iter().find(|e| !e.deleted).map(|e| e.at);
    match (del2, add1) {
        (Some(d), Some(a)) => s
            .unheld_ms
            .push((a - d).num_microseconds().unwrap_or(0) as f64 / 1000.0),
        _ => s.anomalies.push(format!(
            "run {}: failback address events incomplete (node 2 deleted: {del2:?}, node 1 added: {add1:?})",
            run + 1
        )),
    }
    match back {
        Some(d) => s.failback_after_ms.push(d.as_secs_f64() * 1000.0),
        None => s.anomalies.push(format!(
            "run {}: node 1 did not get the VIP back alone in time",
            run + 1
        )),
    }
    if !report.recovered {
        s.anomalies
            .push(format!("run {}: failback probe ended failing ({report:?})", run + 1));
    }
    s.failback.push(report);
}

// ---- kernel address events ---------------------------------------------------------

struct AddrEvent {
    at: chrono::NaiveDateTime,
    deleted: bool,
}

/// `ip -ts -o monitor address` in a node's namespace, collecting the VIP's events.
struct Monitor {
    child: Option<Child>,
    out: PathBuf,
}

impl Monitor {
    fn start(lab: &Lab, node: NodeId) -> Monitor {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out = lab.dir.join(format!("addr-monitor-{}-{n}.txt", node.tag()));
        let file = std::fs::File::create(&out).expect("monitor file");
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &lab.ns(node), "-ts", "-o", "monitor", "address"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("ip monitor");
        // Let it subscribe before anything happens.
        std::thread::sleep(Duration::from_millis(30));
        Monitor {
            child: Some(child),
            out,
        }
    }

    fn stop(mut self) -> Vec<AddrEvent> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        parse_monitor(&self.out)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn parse_monitor(path: &Path) -> Vec<AddrEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let needle = format!("inet {VIP}/");
    text.lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let ts = l.strip_prefix('[')?.split(']').next()?;
            let at = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
            Some(AddrEvent {
                at,
                deleted: l.contains("Deleted"),
            })
        })
        .collect()
}

/// ms from `since` to the first event of the kind (added / deleted) at or after it.
fn first_event(events: &[AddrEvent], deleted: bool, since: chrono::NaiveDateTime) -> Option<f64> {
    events
        .iter()
        .filter(|e| e.deleted == deleted && e.at >= since)
        .map(|e| (e.at - since).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .next()
}

/// The child gets SIGKILL if the bench dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
