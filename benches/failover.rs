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
//! (default 10); a run is one failover followed by one failback. ~3 minutes at 10 runs
//! on 2 CPUs, plus the build.
//!
//! What is measured, always from the client namespace (10.0.0.10 on the LAN bridge):
//! a new TCP connect to 10.0.0.100:25 every 10 ms, each given 100 ms ([`PROBE_PY`]);
//! the figure is the longest time between two successful connects (by completion
//! time), so 10 ms when nothing is lost. Unlike the lab's `probe_tcp`, which waits for
//! each attempt before the next one (so an outage is measured in steps of ~110 ms),
//! attempts overlap: the figure has a 10 ms resolution. A "failed attempt" is a
//! connect that was refused or got no answer within 100 ms (a lost SYN: a real client
//! would retransmit it only after 1 s).
//!
//! 1. Failover: the active node 1 dies as a machine does: its daemon gets SIGKILL and
//!    at once both its links (eth0, eth1) go down; what node 2 writes into the serial
//!    cable is read and discarded until node 1 restarts ([`SerialDrain`]: a
//!    powered-off machine keeps nothing). Then node 1 "reboots": a VIP left on it is
//!    removed by hand (a rebooted machine has none), its links come up.
//! 2. Failback: node 1 (the preferred node, the higher VRRP priority) starts again and
//!    takes the VIP back; the longest gap and whether any connect attempt failed.
//! 3. The daemon of the active node is killed with its links up: does the node still
//!    hold the VIP 3 s later?
//!
//! After the runs, a soak (5 s idle, 5 s with one busy loop per CPU;
//! `BENCH_FAILOVER_SOAK_S` sets each half) checks for false failovers and flapping:
//! probe failures, and role changes in the logs (clusterd: `becoming active`,
//! `standing by`, `peer is dead`, `medium silent`; keepalived: `Entering MASTER
//! STATE`), which are also compared with what the runs' kills and restarts explain.
//! `BENCH_FAILOVER_DEBUG=1` prints each clusterd failback's events and log lines.
//!
//! Beside the client's figures, `ip -ts monitor` timestamps the kernel's events: the
//! VIP's address events in both node namespaces and the client's neighbour entry for
//! the VIP: when the VIP appeared on node 2 after the kill and when the client's ARP
//! entry pointed at node 2; in a failback the time from node 2 deleting the VIP to node
//! 1 adding it (positive: nobody held it; negative: both held it), and to the client's
//! ARP entry pointing at node 1 (positive: the client's packets went to a node without
//! the VIP for that long, a black hole). These are user-space timestamps of `ip`
//! processes (sub-millisecond noise on a busy machine).
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
//! to the spawned parent; `-R` keeps the parent from respawning the child. In section 1
//! node 1's clusterd (the service) is killed too, as the whole machine dies; in
//! section 3 only keepalived is. Section 3 also shows the parent-only kill.
//!
//! Every process started here is stopped by PID; the lab removes its namespaces.

#[path = "../tests/cluster_lab/mod.rs"]
mod cluster_lab;
#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use cluster_lab::*;

/// Probe time before the kill / the restart: the baseline.
const PRE: Duration = Duration::from_millis(500);
/// Probe time after the VIP has settled on its new node.
const POST: Duration = Duration::from_millis(700);
/// How long after the kill section 3 looks at the VIP.
const CRASH_LOOK: Duration = Duration::from_secs(3);
/// keepalived priorities.
const KA_PRIO_N1: u32 = 150;
const KA_PRIO_N2: u32 = 100;

fn main() {
    let runs: usize = std::env::var("BENCH_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "the failover bench needs root (network namespaces, raw sockets)"
    );
    for tool in ["keepalived", "ip", "socat", "python3"] {
        require_tool(tool);
    }
    let t0 = Instant::now();
    println!(
        "failover bench: {runs} runs per setup; from the client a TCP connect to {VIP}:{SMTP_PORT} \
         every 10 ms (100 ms each); {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let reference = ClusterSettings::default();
    let fast = ClusterSettings {
        keepalive_ms: 20,
        warntime_ms: 100,
        deadtime_ms: 150,
        ..ClusterSettings::default()
    };
    let series = vec![
        clusterd_series(
            "clusterd keepalive 100 / deadtime 1000 ms",
            &reference,
            runs,
        ),
        clusterd_series("clusterd keepalive 20 / deadtime 150 ms", &fast, runs),
        keepalived_series("keepalived VRRPv3 advert_int 0.1 s", runs),
    ];
    print_tables(&series, runs);
    println!("\ntotal bench time {:.0} s", t0.elapsed().as_secs_f64());
}

// ---- results -----------------------------------------------------------------------

#[derive(Default)]
struct Series {
    label: String,
    failover: Vec<ProbeResult>,
    /// Kernel: VIP on node 2, ms after the kill.
    fo_vip_ms: Vec<f64>,
    /// The client's ARP entry for the VIP shows node 2, ms after the kill.
    fo_arp_ms: Vec<f64>,
    failback: Vec<ProbeResult>,
    /// Node 1 added the VIP minus node 2 deleted it, ms.
    fb_unheld_ms: Vec<f64>,
    /// The client's ARP entry shows node 1 minus node 2 deleted the VIP, ms.
    fb_blackhole_ms: Vec<f64>,
    /// Node 1's (re)start to the VIP on node 1 alone, ms.
    fb_after_ms: Vec<f64>,
    /// Role changes in the logs: (what, text).
    roles: Vec<String>,
    crash: Vec<CrashLook>,
    /// Things that went against the expected sequence, one line each.
    anomalies: Vec<String>,
}

struct CrashLook {
    what: String,
    n1_holds: bool,
    n2_holds: bool,
    /// When the VIP left node 1, ms after the kill.
    n1_dropped_ms: Option<f64>,
    /// When the VIP appeared on node 2, ms after the kill.
    n2_added_ms: Option<f64>,
    arp_macs: Vec<String>,
}

fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
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

fn range1(v: &[f64]) -> String {
    match stats(v) {
        Some((a, b, c)) => format!("{a:.1} / {b:.1} / {c:.1}"),
        None => "-".into(),
    }
}

fn print_tables(series: &[Series], runs: usize) {
    let w = series.iter().map(|s| s.label.len()).max().unwrap_or(10);
    println!("\n=== 1. Failover: SIGKILL of the active node 1 and its links down ({runs} runs)");
    println!(
        "{:<w$}  {:>20}  {:>9}  {:>9}  {:>6}",
        "", "client outage ms", "VIP on", "client", "failed"
    );
    println!(
        "{:<w$}  {:>6} {:>6} {:>6}  {:>9}  {:>9}  {:>6}",
        "setup", "min", "median", "max", "node 2 ms", "ARP ms", "at end"
    );
    for s in series {
        let gaps: Vec<f64> = s.failover.iter().map(|r| r.max_gap_ms).collect();
        println!(
            "{:<w$}  {}  {:>9}  {:>9}  {:>6}",
            s.label,
            mmm(&gaps),
            stats(&s.fo_vip_ms).map_or("-".into(), |m| format!("{:.0}", m.1)),
            stats(&s.fo_arp_ms).map_or("-".into(), |m| format!("{:.0}", m.1)),
            s.failover.iter().filter(|r| !r.recovered).count()
        );
    }
    println!(
        "  (outage: longest time between two successful connects; VIP on node 2 / client ARP: \
         medians of the kernel events, ms after the kill)"
    );

    println!("\n=== 2. Failback: node 1 (preferred / higher priority) starts again ({runs} runs)");
    println!(
        "{:<w$}  {:>20}  {:>9}  {:>8}  {:>8}",
        "", "longest gap ms", "runs with", "failed", "restart"
    );
    println!(
        "{:<w$}  {:>6} {:>6} {:>6}  {:>9}  {:>8}  {:>8}",
        "setup", "min", "median", "max", "a failure", "attempts", "to VIP"
    );
    for s in series {
        let gaps: Vec<f64> = s.failback.iter().map(|r| r.max_gap_ms).collect();
        println!(
            "{:<w$}  {}  {:>9}  {:>8}  {:>8}",
            s.label,
            mmm(&gaps),
            format!(
                "{}/{}",
                s.failback.iter().filter(|r| r.failed > 0).count(),
                s.failback.len()
            ),
            format!(
                "{}{}",
                s.failback.iter().map(|r| r.failed).sum::<u64>(),
                match s.failback.iter().map(|r| r.refused).sum::<u64>() {
                    0 => String::new(),
                    n => format!(" ({n} refused)"),
                }
            ),
            stats(&s.fb_after_ms).map_or("-".into(), |m| format!("{:.0} ms", m.1)),
        );
    }
    println!("  handover, kernel events (ms, min / median / max):");
    for s in series {
        println!(
            "  {:<w$}  node 1 adds VIP - node 2 deletes it: {}; client ARP -> node 1 - node 2 deletes: {}",
            s.label,
            range1(&s.fb_unheld_ms),
            range1(&s.fb_blackhole_ms)
        );
    }
    println!(
        "  (positive: first break, then make: nobody holds the VIP / the client's packets go to \
         node 2, which no longer has it; negative: both hold it)"
    );

    println!(
        "\n=== 3. HA daemon on the active node 1 SIGKILLed, links up: the VIP {} s later",
        CRASH_LOOK.as_secs()
    );
    for s in series {
        for c in &s.crash {
            println!(
                "{} ({}): node 1 {}, node 2 {}; VIP left node 1 {}, reached node 2 {}{}; \
                 ARP for the VIP answered by: {}",
                s.label,
                c.what,
                if c.n1_holds {
                    "HOLDS the VIP"
                } else {
                    "does not hold the VIP"
                },
                if c.n2_holds { "holds it" } else { "does not" },
                c.n1_dropped_ms
                    .map_or("never".into(), |ms| format!("after {ms:.0} ms")),
                c.n2_added_ms
                    .map_or("never".into(), |ms| format!("after {ms:.0} ms")),
                match (c.n2_added_ms, c.n1_dropped_ms) {
                    (Some(a), Some(d)) if d > a => format!(" (both held it for {:.0} ms)", d - a),
                    (Some(a), None) if c.n1_holds => format!(" (both hold it since {a:.0} ms)"),
                    _ => String::new(),
                },
                if c.arp_macs.is_empty() {
                    "nobody".into()
                } else {
                    c.arp_macs
                        .iter()
                        .map(|m| mac_name(m))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
    }

    println!("\n=== Role changes (false failovers, flapping)");
    for s in series {
        for r in &s.roles {
            println!("{}: {r}", s.label);
        }
    }

    println!(
        "\n=== Per run, ms: failover outage | failback gap (failed attempts) | node 1 adds - node 2 deletes"
    );
    for s in series {
        let mut line = String::new();
        for i in 0..s.failover.len().max(s.failback.len()) {
            let fo = s.failover.get(i).map_or(f64::NAN, |r| r.max_gap_ms);
            let (fb, failed) = s
                .failback
                .get(i)
                .map_or((f64::NAN, 0), |r| (r.max_gap_ms, r.failed));
            let un = s.fb_unheld_ms.get(i).copied().unwrap_or(f64::NAN);
            let _ = write!(line, " [{fo:.0} | {fb:.0} ({failed}) | {un:.1}]");
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
    lab.start_both();
    settle(&lab, &mut s, "start-up", &[N1]);
    let logs_at = [lab.log_len(N1), lab.log_len(N2)];

    for run in 1..=runs {
        settle(&lab, &mut s, &format!("run {run}"), &[N1]);

        // -- failover
        let mons = Monitors::start(&lab);
        let probe = Probe::start(&lab, PRE + deadtime + POST + POST);
        std::thread::sleep(PRE);
        let (kill_at, kill_epoch) = (now(), epoch_secs());
        lab.kill_node(N1);
        lab.link_down(N1, "eth0");
        lab.link_down(N1, "eth1");
        let drain = SerialDrain::start(&lab, N1);
        let _ = lab.wait_until(deadtime + POST, Duration::from_millis(20), |l| {
            l.holds_vip(N2)
        });
        std::thread::sleep(POST);
        let report = probe.finish();
        let ev = mons.stop();
        record_failover(&lab, &mut s, run, report, &ev, kill_at, kill_epoch);

        // -- node 1 reboots, then fails back
        reboot_links(&lab);
        let at = [lab.log_len(N1), lab.log_len(N2)];
        let mons = Monitors::start(&lab);
        let probe = Probe::start(&lab, PRE + Duration::from_secs(10));
        std::thread::sleep(PRE);
        drop(drain);
        let started = Instant::now();
        lab.start_node(N1);
        let back = lab
            .wait_until(Duration::from_secs(5), Duration::from_millis(10), |l| {
                l.vip_holders() == [N1]
            })
            .map(|_| started.elapsed());
        std::thread::sleep(POST);
        let report = probe.finish();
        let ev = mons.stop();
        if debug() {
            eprintln!("run {run} failback: {report:?}\n{}", ev.dump());
            for node in [N1, N2] {
                for l in lab.log_since(node, at[node as usize]).lines() {
                    if l.contains("cluster") {
                        eprintln!("  {} log: {l}", node.tag());
                    }
                }
            }
        }
        record_failback(&mut s, run, report, back, &ev);
    }

    let counts = clusterd_roles(&lab, logs_at);
    let kills = runs;
    // Expected: node 1 becomes active once per restart and never declares node 2
    // dead; node 2 declares node 1 dead and becomes active once per kill, stands by
    // once per failback, and warns about both media (udp, serial) once per kill.
    let expected = [kills, 0, 0, kills, kills, kills, 2 * kills];
    s.roles.push(format!(
        "{runs} kills and restarts: {} (expected {})",
        counts.describe(),
        RoleCounts::from(expected).describe()
    ));
    soak(&lab, &mut s, |lab, at| clusterd_roles(lab, at).describe());

    // -- 3. the daemon dies, the links stay up
    settle(&lab, &mut s, "crash with links up", &[N1]);
    let mons = Monitors::start(&lab);
    let kill_at = now();
    lab.kill_node(N1);
    std::thread::sleep(CRASH_LOOK);
    let ev = mons.stop();
    s.crash.push(crash_look(&lab, "SIGKILL", &ev, kill_at));
    s
}

/// Role-change lines in both nodes' logs: node 1 active / standby / peer dead, node 2
/// active / standby / peer dead, and "medium silent" warnings on either.
struct RoleCounts([usize; 7]);

impl From<[usize; 7]> for RoleCounts {
    fn from(v: [usize; 7]) -> Self {
        RoleCounts(v)
    }
}

impl RoleCounts {
    fn describe(&self) -> String {
        let c = &self.0;
        format!(
            "node 1 active x{} standby x{} peer-dead x{}; node 2 active x{} standby x{} \
             peer-dead x{}; medium-silent warnings x{}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        )
    }
}

fn clusterd_roles(lab: &Lab, at: [usize; 2]) -> RoleCounts {
    let logs = [lab.log_since(N1, at[0]), lab.log_since(N2, at[1])];
    let count = |i: usize, what: &str| logs[i].lines().filter(|l| l.contains(what)).count();
    RoleCounts([
        count(0, "cluster: becoming active"),
        count(0, "cluster: standing by"),
        count(0, "cluster: peer is dead"),
        count(1, "cluster: becoming active"),
        count(1, "cluster: standing by"),
        count(1, "cluster: peer is dead"),
        count(0, "heartbeat medium silent") + count(1, "heartbeat medium silent"),
    ])
}

/// A quiet soak, then one with every CPU busy: the probe must see no failure and the
/// logs no role change.
fn soak<F>(lab: &Lab, s: &mut Series, roles: F)
where
    F: Fn(&Lab, [usize; 2]) -> String,
{
    // Each half of the soak (idle, then every CPU busy): BENCH_FAILOVER_SOAK_S.
    let soak = Duration::from_secs(
        std::env::var("BENCH_FAILOVER_SOAK_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    );
    for busy in [false, true] {
        settle(lab, s, "soak", &[N1]);
        let at = [lab.log_len(N1), lab.log_len(N2)];
        let burners = if busy {
            Burners::start()
        } else {
            Burners(Vec::new())
        };
        let probe = Probe::start(lab, soak + Duration::from_secs(1));
        std::thread::sleep(soak);
        let report = probe.finish();
        drop(burners);
        s.roles.push(format!(
            "{} s soak{}: {}; probe: {} failed attempts, longest gap {:.0} ms; VIP on {:?}",
            soak.as_secs(),
            if busy {
                " with every CPU busy (one shell busy loop per CPU)"
            } else {
                ", idle"
            },
            roles(lab, at),
            report.failed,
            report.max_gap_ms,
            lab.vip_holders()
        ));
    }
}

/// One busy loop (`sh -c 'while :; do :; done'`) per CPU, stopped by PID on drop.
struct Burners(Vec<Child>);

impl Burners {
    fn start() -> Burners {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Burners(
            (0..n)
                .map(|_| {
                    let mut cmd = Command::new("sh");
                    cmd.args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null());
                    die_with_parent(&mut cmd);
                    cmd.spawn().expect("busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- keepalived --------------------------------------------------------------------

/// The keepalived configuration of one node: VRRPv3, advert_int 0.1 s, one instance
/// for the VIP on eth0 (adverts multicast to 224.0.0.18 over the LAN bridge),
/// priority 150 on node 1 and 100 on node 2, both starting as BACKUP (node 1 preempts,
/// keepalived's default).
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

fn keepalived_series(label: &str, runs: usize) -> Series {
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
    let _ka2 = Keepalived::spawn(&lab, N2);
    let mut ka1 = Some(Keepalived::spawn(&lab, N1));
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
    settle(&lab, &mut s, "start-up", &[N1]);
    let logs_at = [ka_log_len(&lab, N1), ka_log_len(&lab, N2)];
    // VRRP master-down interval of node 2: 3 x advert_int + (256 - 100) / 256 x advert_int.
    let master_down = Duration::from_millis(361);

    for run in 1..=runs {
        settle(&lab, &mut s, &format!("run {run}"), &[N1]);

        // -- failover: the VRRP child and keepalived die, node 1's service too, links down
        let mons = Monitors::start(&lab);
        let probe = Probe::start(&lab, PRE + master_down + POST + POST);
        std::thread::sleep(PRE);
        let (kill_at, kill_epoch) = (now(), epoch_secs());
        ka1.take().unwrap().crash();
        lab.kill_node(N1);
        lab.link_down(N1, "eth0");
        lab.link_down(N1, "eth1");
        let _ = lab.wait_until(master_down + POST, Duration::from_millis(20), |l| {
            l.holds_vip(N2)
        });
        std::thread::sleep(POST);
        let report = probe.finish();
        let ev = mons.stop();
        record_failover(&lab, &mut s, run, report, &ev, kill_at, kill_epoch);

        // -- node 1 reboots: its service first, then keepalived, which preempts
        reboot_links(&lab);
        lab.start_node(N1);
        let mons = Monitors::start(&lab);
        let probe = Probe::start(&lab, PRE + Duration::from_secs(10));
        std::thread::sleep(PRE);
        let started = Instant::now();
        ka1 = Some(Keepalived::spawn(&lab, N1));
        let back = lab
            .wait_until(Duration::from_secs(5), Duration::from_millis(10), |l| {
                l.vip_holders() == [N1]
            })
            .map(|_| started.elapsed());
        std::thread::sleep(POST);
        let report = probe.finish();
        record_failback(&mut s, run, report, back, &mons.stop());
    }

    let (m1, m2) = ka_masters(&lab, logs_at);
    s.roles.push(format!(
        "{runs} kills and restarts: node 1 MASTER x{m1}, node 2 MASTER x{m2} (expected {runs} / {runs})"
    ));
    soak(&lab, &mut s, |lab, _| {
        let (m1, m2) = ka_masters(lab, [ka_log_len(lab, N1), ka_log_len(lab, N2)]);
        format!("new MASTER states: node 1 x{m1}, node 2 x{m2}")
    });

    // -- 3. keepalived dies, the links (and node 1's service) stay up: a crash (VRRP
    // child and parent SIGKILLed), then for comparison SIGKILL of the parent only.
    for parent_only in [false, true] {
        settle(&lab, &mut s, "crash with links up", &[N1]);
        let mons = Monitors::start(&lab);
        let kill_at = now();
        let k = ka1.take().unwrap();
        if parent_only {
            k.kill_parent_only();
        } else {
            k.crash();
        }
        std::thread::sleep(CRASH_LOOK);
        let ev = mons.stop();
        let what = if parent_only {
            "SIGKILL of the spawned parent only: its VRRP child shuts down cleanly"
        } else {
            "SIGKILL of the VRRP child and the parent"
        };
        s.crash.push(crash_look(&lab, what, &ev, kill_at));
        if !parent_only {
            // Back to the normal state: node 1 "reboots" and preempts again.
            if lab.holds_vip(N1) {
                ip(&lab.ns(N1), &format!("addr del {VIP_CIDR} dev eth0"));
            }
            ka1 = Some(Keepalived::spawn(&lab, N1));
        }
    }
    s
}

/// Lines where a node's keepalived entered MASTER state since `at` (byte offsets).
fn ka_masters(lab: &Lab, at: [usize; 2]) -> (usize, usize) {
    let count = |node: NodeId, at: usize| {
        let raw = std::fs::read(lab.node_dir(node).join("keepalived.log")).unwrap_or_default();
        String::from_utf8_lossy(&raw[at.min(raw.len())..])
            .lines()
            .filter(|l| l.contains("Entering MASTER STATE"))
            .count()
    };
    (count(N1, at[0]), count(N2, at[1]))
}

fn ka_log_len(lab: &Lab, node: NodeId) -> usize {
    std::fs::metadata(lab.node_dir(node).join("keepalived.log"))
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

fn keepalived_conf_path(lab: &Lab, node: NodeId) -> PathBuf {
    lab.node_dir(node).join("keepalived.conf")
}

fn keepalived_logs(lab: &Lab) -> String {
    let mut s = String::new();
    for node in [N1, N2] {
        let log =
            std::fs::read_to_string(lab.node_dir(node).join("keepalived.log")).unwrap_or_default();
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

/// A private keepalived instance in one node's namespace:
/// `keepalived -n -l -D -G -P -R -f CONF -p PID -r VRRP_PID -c CHECKERS_PID -b BFD_PID`
/// (no fork, log to the console, i.e. the node's keepalived.log, detailed, no syslog,
/// VRRP only, no respawn of the VRRP child; every pid file in the node's lab dir).
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
            .stdout(log.try_clone().expect("keepalived log"))
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

    /// The VRRP child's PID, if the pid file names a live child of our process.
    fn vrrp_pid(&self) -> Option<libc::pid_t> {
        let parent = self.parent.as_ref()?.id();
        let pid: libc::pid_t = std::fs::read_to_string(&self.vrrp_pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let (state, ppid) = proc_state(pid)?;
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
    /// gets its parent-death signal and shuts down by itself.
    fn kill_parent_only(mut self) {
        let child = self.vrrp_pid();
        if let Some(mut p) = self.parent.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(pid) = child {
            let live = || proc_state(pid).is_some_and(|(st, _)| st != "Z");
            let deadline = Instant::now() + Duration::from_secs(5);
            while live() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if live() {
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
            Keepalived {
                parent: self.parent.take(),
                vrrp_pid_file: self.vrrp_pid_file.clone(),
            }
            .crash();
        }
    }
}

/// (state, ppid) of a process from /proc/PID/stat.
fn proc_state(pid: libc::pid_t) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.to_string();
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

// ---- shared steps ------------------------------------------------------------------

/// Waits (bounded) until exactly `holders` hold the VIP, then lets the gratuitous
/// ARPs of the last move pass.
fn settle(lab: &Lab, s: &mut Series, when: &str, holders: &[NodeId]) {
    let ok = lab.wait_until(Duration::from_secs(5), Duration::from_millis(20), |l| {
        l.vip_holders() == holders
    });
    if ok.is_none() {
        s.anomalies.push(format!(
            "{when}: VIP on {:?} (expected {holders:?})",
            lab.vip_holders()
        ));
    }
    std::thread::sleep(Duration::from_millis(300));
}

fn record_failover(
    lab: &Lab,
    s: &mut Series,
    run: usize,
    report: ProbeResult,
    ev: &Events,
    kill_at: NaiveDateTime,
    kill_epoch: f64,
) {
    let vip = ev.vip(N2, false, kill_at);
    let arp = ev.client_arp(N2, kill_at);
    s.fo_vip_ms.push(vip.map_or(f64::NAN, |t| ms(t, kill_at)));
    s.fo_arp_ms.push(arp.map_or(f64::NAN, |t| ms(t, kill_at)));
    if !lab.holds_vip(N2) || !report.recovered || report.ok == 0 {
        s.anomalies.push(format!(
            "run {run}: failover did not complete: VIP on {:?}, probe {report:?}",
            lab.vip_holders()
        ));
    }
    // The last success before the outage lies within one probe interval (plus the
    // kill's own few ms) of the kill.
    let began = (report.gap_start_wall - kill_epoch) * 1000.0;
    if !(-40.0..=10.0).contains(&began) {
        s.anomalies.push(format!(
            "run {run}: the failover probe's longest gap began {began:.0} ms from the kill: {report:?}"
        ));
    }
    s.failover.push(report);
}

/// Node 1 "reboots": a VIP left on its eth0 goes (a rebooted machine has none; only
/// keepalived leaves one, clusterd's expires), then its links come up.
fn reboot_links(lab: &Lab) {
    if lab.holds_vip(N1) {
        ip(&lab.ns(N1), &format!("addr del {VIP_CIDR} dev eth0"));
    }
    lab.link_up(N1, "eth0");
    lab.link_up(N1, "eth1");
    std::thread::sleep(Duration::from_millis(200));
}

fn record_failback(
    s: &mut Series,
    run: usize,
    report: ProbeResult,
    back: Option<Duration>,
    ev: &Events,
) {
    let epoch = NaiveDateTime::MIN;
    let del2 = ev.vip(N2, true, epoch);
    let add1 = ev.vip(N1, false, epoch);
    let arp1 = ev.client_arp(N1, epoch);
    match (del2, add1, arp1) {
        (Some(d), Some(a), Some(c)) => {
            s.fb_unheld_ms.push(ms(a, d));
            s.fb_blackhole_ms.push(ms(c, d));
        }
        _ => s.anomalies.push(format!(
            "run {run}: failback events incomplete (node 2 deleted the VIP: {del2:?}, node 1 \
             added it: {add1:?}, client ARP to node 1: {arp1:?})"
        )),
    }
    match back {
        Some(d) => s.fb_after_ms.push(d.as_secs_f64() * 1000.0),
        None => s.anomalies.push(format!(
            "run {run}: node 1 did not get the VIP back alone within 5 s"
        )),
    }
    if !report.recovered {
        s.anomalies.push(format!(
            "run {run}: the failback probe ended failing: {report:?}"
        ));
    }
    s.failback.push(report);
}

fn crash_look(lab: &Lab, what: &str, ev: &Events, kill_at: NaiveDateTime) -> CrashLook {
    CrashLook {
        what: what.into(),
        n1_holds: lab.holds_vip(N1),
        n2_holds: lab.holds_vip(N2),
        n1_dropped_ms: ev.vip(N1, true, kill_at).map(|t| ms(t, kill_at)),
        n2_added_ms: ev.vip(N2, false, kill_at).map(|t| ms(t, kill_at)),
        arp_macs: lab.arping_from_client(VIP, Duration::from_millis(300)),
    }
}

/// Reads and discards what arrives at `node`'s end of the serial cable while the node
/// is down, as a powered-off machine's serial port does: otherwise the pty pair keeps
/// the peer's heartbeats from the moment of the kill, and the restarted node reads
/// them first (see [`serial_backlog`]). Stops when dropped.
struct SerialDrain(
    Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<u64>,
    )>,
);

impl SerialDrain {
    fn start(lab: &Lab, node: NodeId) -> SerialDrain {
        if serial_backlog() {
            return SerialDrain(None);
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(lab.serial_path(node))
            .expect("open the serial cable's end");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut file = file;
            let mut buf = [0u8; 4096];
            let mut total = 0u64;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                match file.read(&mut buf) {
                    Ok(n) if n > 0 => total += n as u64,
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            total
        });
        SerialDrain(Some((stop, handle)))
    }
}

impl Drop for SerialDrain {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.0.take() {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = handle.join();
        }
    }
}

/// `BENCH_FAILOVER_SERIAL_BACKLOG=1`: do not drain the dead node's end of the serial
/// cable. The restarted clusterd then first reads the peer's heartbeats queued in the
/// pty since the kill (from before the peer took over: role standby) and becomes
/// active at once, before the peer has stood down.
fn serial_backlog() -> bool {
    std::env::var_os("BENCH_FAILOVER_SERIAL_BACKLOG").is_some_and(|v| v != "0")
}

// ---- the client probe --------------------------------------------------------------

/// `PROBE_PY ADDR PORT MAX_SECONDS INTERVAL_MS TIMEOUT_MS`: starts a non-blocking
/// TCP connect every INTERVAL_MS without waiting for earlier ones (each closed with RST
/// once it connects); an attempt fails when refused or not connected in TIMEOUT_MS.
/// Runs until MAX_SECONDS or EOF on stdin, then prints JSON: the longest time between
/// two successful connects (completion times), when it began, the counts.
const PROBE_PY: &str = r#"
import errno, json, os, select, socket, struct, sys, time
host, port, maxdur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
interval, timeout = float(sys.argv[4]) / 1000, float(sys.argv[5]) / 1000
linger = struct.pack('ii', 1, 0)
ep = select.epoll()
stdin = sys.stdin.fileno()
ep.register(stdin, select.EPOLLIN)
start = time.monotonic(); wall0 = time.time(); end = start + maxdur; nxt = start
pending = {}
done = []  # (sent, finished, ok, refused)
while True:
    now = time.monotonic()
    if now < end and now >= nxt:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.setblocking(False)
        e = s.connect_ex((host, port))
        if e == errno.EINPROGRESS:
            pending[s.fileno()] = (s, now)
            ep.register(s.fileno(), select.EPOLLOUT)
        else:
            done.append((now, time.monotonic(), e == 0, e == errno.ECONNREFUSED))
            s.close()
        nxt += interval
        if nxt < now:
            nxt = now + interval
    for fd, (s, sent) in list(pending.items()):
        if now - sent >= timeout:
            ep.unregister(fd); s.close(); del pending[fd]
            done.append((sent, now, False, False))
    if now >= end and not pending:
        break
    waits = [sent + timeout - now for (_, sent) in pending.values()]
    if now < end:
        waits.append(nxt - now)
    for fd, ev in ep.poll(max(0.0, min(waits)) if waits else 0.001):
        if fd == stdin:
            if not os.read(stdin, 4096):
                ep.unregister(stdin)
                end = min(end, time.monotonic())
            continue
        s, sent = pending.pop(fd)
        ep.unregister(fd)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        s.close()
        done.append((sent, time.monotonic(), err == 0, err == errno.ECONNREFUSED))
oks = sorted(f for (_, f, ok, _) in done if ok)
max_gap = 0.0; gap_at = 0.0
for a, b in zip(oks, oks[1:]):
    if b - a > max_gap:
        max_gap = b - a; gap_at = a - start
done.sort()
recovered = bool(done) and done[-1][2]
if not recovered:
    tail_from = oks[-1] if oks else start
    if end - tail_from > max_gap:
        max_gap = end - tail_from; gap_at = tail_from - start
fails = [d for d in done if not d[2]]
print(json.dumps({"max_gap_ms": max_gap * 1000, "gap_start_ms": gap_at * 1000,
                  "gap_start_wall": wall0 + gap_at,
                  "ok": len(oks), "failed": len(fails),
                  "refused": sum(1 for d in fails if d[3]), "recovered": recovered}))
"#;

#[derive(Clone, Debug)]
struct ProbeResult {
    max_gap_ms: f64,
    /// When the longest gap began, seconds since the Unix epoch.
    gap_start_wall: f64,
    ok: u64,
    failed: u64,
    refused: u64,
    recovered: bool,
}

/// [`PROBE_PY`] running in the client namespace.
struct Probe {
    child: Option<Child>,
}

impl Probe {
    fn start(lab: &Lab, max: Duration) -> Probe {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &lab.client_ns(), "python3", "-c", PROBE_PY])
            .args([VIP, &SMTP_PORT.to_string()])
            .arg(format!("{:.3}", max.as_secs_f64()))
            .args(["10", "100"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        Probe {
            child: Some(cmd.spawn().expect("start the probe")),
        }
    }

    /// Stops the probe (EOF on its stdin) and returns its figures.
    fn finish(mut self) -> ProbeResult {
        let mut child = self.child.take().unwrap();
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().expect("probe").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the probe did not stop");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (mut out, mut err) = (String::new(), String::new());
        let _ = child.stdout.take().unwrap().read_to_string(&mut out);
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let status = child.wait().expect("probe");
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("the probe ({status}) printed no JSON ({e}): {out}\n{err}"));
        ProbeResult {
            max_gap_ms: v["max_gap_ms"].as_f64().unwrap_or(f64::NAN),
            gap_start_wall: v["gap_start_wall"].as_f64().unwrap_or(f64::NAN),
            ok: v["ok"].as_u64().unwrap_or(0),
            failed: v["failed"].as_u64().unwrap_or(0),
            refused: v["refused"].as_u64().unwrap_or(0),
            recovered: v["recovered"].as_bool().unwrap_or(false),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- kernel events -----------------------------------------------------------------

fn now() -> NaiveDateTime {
    chrono::Local::now().naive_local()
}

fn epoch_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn ms(a: NaiveDateTime, b: NaiveDateTime) -> f64 {
    (a - b).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// `ip -ts -o monitor` processes: addresses in both node namespaces, neighbours in
/// the client's.
struct Monitors(Vec<(Option<Child>, PathBuf)>);

/// Timestamped monitor lines: node 1 addresses, node 2 addresses, client neighbours.
struct Events([Vec<(NaiveDateTime, String)>; 3]);

impl Monitors {
    fn start(lab: &Lab) -> Monitors {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut v = Vec::new();
        for (ns, what, tag) in [
            (lab.ns(N1), "address", "n1"),
            (lab.ns(N2), "address", "n2"),
            (lab.client_ns(), "neigh", "cli"),
        ] {
            let out = lab.dir.join(format!("monitor-{n}-{tag}.txt"));
            let file = std::fs::File::create(&out).expect("monitor file");
            let mut cmd = Command::new("ip");
            cmd.args(["-n", &ns, "-ts", "-o", "monitor", what])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(Stdio::null());
            die_with_parent(&mut cmd);
            v.push((Some(cmd.spawn().expect("ip monitor")), out));
        }
        // Let them subscribe before anything happens.
        std::thread::sleep(Duration::from_millis(50));
        Monitors(v)
    }

    fn stop(mut self) -> Events {
        self.kill();
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let (ts, rest) = l.strip_prefix('[')?.split_once(']')?;
                    let at = NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
                    Some((at, rest.trim().to_string()))
                })
                .collect::<Vec<_>>()
        };
        Events([read(&self.0[0].1), read(&self.0[1].1), read(&self.0[2].1)])
    }

    fn kill(&mut self) {
        for (c, _) in &mut self.0 {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `BENCH_FAILOVER_DEBUG=1`: print each failback's events and log lines to stderr.
fn debug() -> bool {
    std::env::var_os("BENCH_FAILOVER_DEBUG").is_some_and(|v| v != "0")
}

impl Events {
    /// Every VIP / client-neighbour line, in time order, for debugging.
    fn dump(&self) -> String {
        let mut all: Vec<(NaiveDateTime, &str, &str)> = Vec::new();
        for (i, tag) in ["n1", "n2", "cli"].iter().enumerate() {
            for (at, l) in &self.0[i] {
                if l.contains(VIP) {
                    all.push((*at, tag, l));
                }
            }
        }
        all.sort_by_key(|e| e.0);
        all.iter()
            .map(|(at, tag, l)| format!("  {} {tag:>3}: {l}\n", at.format("%H:%M:%S%.6f")))
            .collect()
    }

    /// The first VIP address event on `node` at or after `since`: a deletion or an
    /// addition (a renewal also counts as one; only the first matters here).
    fn vip(&self, node: NodeId, deleted: bool, since: NaiveDateTime) -> Option<NaiveDateTime> {
        let needle = format!("inet {VIP}/");
        let lines = &self.0[if node == N1 { 0 } else { 1 }];
        lines
            .iter()
            .filter(|(at, l)| *at >= since && l.contains(&needle))
            .find(|(_, l)| l.starts_with("Deleted") == deleted)
            .map(|(at, _)| *at)
    }

    /// The first time at or after `since` the client's neighbour entry for the VIP
    /// carries `node`'s MAC.
    fn client_arp(&self, node: NodeId, since: NaiveDateTime) -> Option<NaiveDateTime> {
        let prefix = format!("{VIP} ");
        let mac = format!("lladdr {}", node.mac());
        self.0[2]
            .iter()
            .find(|(at, l)| *at >= since && l.starts_with(&prefix) && l.contains(&mac))
            .map(|(at, _)| *at)
    }
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
