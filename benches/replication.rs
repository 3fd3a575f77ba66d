//! Replication benchmark (issue 6), in the network-namespace lab of
//! `tests/cluster_lab` (two nodes, the private link a veth pair, the client on the LAN
//! bridge). Prints figures; asserts only that the runs worked.
//!
//! 1. SMTP durable accepts per second at the VIP, `smtp-source -s 16 -m N -l 1024`
//!    from the client (Debian package `postfix`): the active node without
//!    replication (the single-node figure), then with `mode = "sync"` (every 250
//!    waits for the peer's acknowledgement) and `mode = "async"`. During the
//!    replicated runs `clusterd status` on node 1 is sampled every 50 ms: the lag is
//!    how many log positions the peer's acknowledgement trails the last commit.
//! 2. Bytes on the private link for a one-byte change in a 10 MB site file:
//!    clusterd (`clusterd content publish`, the change travels as a block delta)
//!    against rsync 3 (Debian package `rsync`, its daemon on node 2, the client on
//!    node 1: the same update over the same link), both counted by the kernel's
//!    interface counters of node 1's eth1 (both directions; heartbeats included for
//!    clusterd).
//!
//! After the sync run it prints where a sync commit's time went, stage by stage
//! (`clusterd status --json` on node 1, `replication/timing.rs`): mean, p50 and p99 of
//! the writer's queue and commit, committed → sent, sent → acknowledged and, from the
//! standby's acknowledgements, the way there, its files, its wait to be applied, its
//! commit and the way back.
//!
//! The three runs alternate in rounds (`BENCH_REPL_ROUNDS`, default 3): each round's
//! ratios are taken within it, and the median round is the figure, since this
//! machine's speed moves by a third between minutes.
//!
//! `cargo bench --bench replication` (root: namespaces). `BENCH_REPL_MESSAGES` sets N
//! (default 3000); `BENCH_REPL_ONLY=sync` (or `async`) runs that replicated run alone
//! (to profile it). Every process is stopped by PID and the namespaces removed when
//! the lab drops, also on failure.
//!
//! Figures (issue 14; release build, this 2-core machine shared with four other
//! builds, load average 7-12, so one node's rate varies 570-1700 msg/s between runs;
//! compare the ratios of one run):
//! - before (serial standby: read a batch, write its files, commit, ack, read
//!   again; commits released by the release loop), N = 1000: sync 0.20x, async
//!   0.36x; a sync commit waited 58 ms mean for the peer: 22 ms for the standby's
//!   files and their fsyncs, 9 ms for frames unread while the standby was busy,
//!   7 ms for its commit, 8 ms committed → sent. (Issue 14 measured 0.31x / 0.40x.)
//! - after (the standby stores files as frames arrive and commits every frame whose
//!   files are durable; the acknowledgement releases at once; frames buffered),
//!   N = 3000, three runs: sync 0.61x, 0.69x and 0.51x, async 0.47x, 0.84x and
//!   1.04x (async above one node shows how much the machine's load moves a run);
//!   the wait for the peer 15, 18 and 30 ms mean, of which the standby's files
//!   (file fsync, rename, directory fsync) 7-11 ms, its commit 3.3-5.3 ms, the
//!   wire both ways 1-2.5 ms, waiting behind the previous batch 1-1.5 ms (p50
//!   0.02 ms), release 0.02-0.05 ms. What remains is the fsyncs of two nodes on one
//!   disk and one CPU pair: the standby's chain of three (file, directory, store)
//!   before each acknowledgement.
//! - then (the standby writes a batch's files without fsyncs and flushes them with
//!   one syncfs, one group flushed while the previous one commits; messages changed
//!   since no longer walks the whole mailbox, which every delivery's webmail warm-up
//!   did on both nodes), load average 3-5 from two other builds: N = 3000, sync 0.60x
//!   and 0.70x; N = 20000, 0.66x. The peer's share of the wait: syncfs 2.5-3.3 ms,
//!   its commit 1.9-2.6 ms, files written 0.6-1.3 ms, waiting for the applier
//!   0.9-2.8 ms; committed -> sent 1.6-2.1 ms on the active node. On a quiet
//!   machine (load average 0.4): one node 1977 msg/s, sync 920 (0.47x; before this
//!   change 766, 0.39x), async 883 (0.45x): async no faster than sync, so what is
//!   left is both nodes' work sharing two cores and one disk, not the wait.
//! - then (profiled with `perf record -a --call-graph dwarf`, BENCH_REPL_ONLY=sync:
//!   the quota check walked the account's messages twice per delivery, every
//!   `execute`/`query_row` compiled its SQL, STAT4 recompiled cached statements when
//!   a bound value changed, the standby parsed deliveries for a webmail it does not
//!   serve, the active node read each shipped file in its own blocking task), N =
//!   5000, three rounds on a quiet machine: one node 1544, 982 and 982 msg/s (the
//!   first run of a bench is the only one not right after a lab's files were deleted;
//!   this VM's root ext4 has no journal, so its inode allocator then reads every
//!   recently freed inode: 5-15% of a run's CPU), sync 0.46x, 0.69x, 0.65x (median
//!   0.65x; 636-716 msg/s), async 0.49x, 0.79x, 0.76x. A sync commit still waits
//!   ~11 ms for the peer: its syncfs 2.0 ms and commit 2.8 ms, the rest queueing on
//!   two busy cores (25-29% idle during the sync run, none during async). On a fresh
//!   journaled ext4 (a loop device, as the image's root), one node ran 958-1071
//!   msg/s and sync 0.52x (median; rounds 0.52, 0.60, 0.52), async 0.67x: the
//!   journal lengthens the standby's two flushes.

#[path = "../tests/cluster_lab/mod.rs"]
mod cluster_lab;
#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_lab::*;

const REPL_PORT: u16 = 7000;
const USER: &str = "sistemas";
const SESSIONS: u32 = 16;

fn main() {
    let n: u32 = std::env::var("BENCH_REPL_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for tool in ["smtp-source", "rsync", "ip"] {
        common::require_tool(tool);
    }
    println!(
        "smtp-source -s {SESSIONS} -m {n} -l 1024 from the client to the VIP; durable accepts per second"
    );
    // BENCH_REPL_ONLY=sync (or async): that run alone, e.g. under `perf record -a`.
    if let Ok(mode) = std::env::var("BENCH_REPL_ONLY") {
        let run = smtp_run(Some(&mode), n);
        println!("  two nodes, {mode}: {:>7.0} msg/s", run.rate);
        print_stages(&run.stages);
        return;
    }
    // The machine's speed moves by a third between minutes (this VM's disk and CPU
    // are shared), so the runs alternate in rounds and each ratio is taken within its
    // round; the figure is the median round.
    let rounds: usize = std::env::var("BENCH_REPL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut sync_ratios = Vec::new();
    let mut async_ratios = Vec::new();
    let mut last_sync = None;
    for round in 1..=rounds {
        println!("  round {round} of {rounds}:");
        let single = smtp_run(None, n);
        println!("    one node (no replication):  {:>7.0} msg/s", single.rate);
        let sync = smtp_run(Some("sync"), n);
        print_run("sync", &sync, single.rate);
        let asynch = smtp_run(Some("async"), n);
        print_run("async", &asynch, single.rate);
        sync_ratios.push(sync.rate / single.rate);
        async_ratios.push(asynch.rate / single.rate);
        last_sync = Some(sync);
    }
    let sync = last_sync.expect("at least one round");
    println!("    (last sync run: {}, warm-up included)", sync.ack_wait);
    print_stages(&sync.stages);
    println!(
        "  median of {rounds} rounds: sync {:.2}x one node (rounds {}), async {:.2}x (rounds {})",
        median(&sync_ratios),
        list(&sync_ratios),
        median(&async_ratios),
        list(&async_ratios)
    );
    content_bytes();
}

struct SmtpRun {
    rate: f64,
    lag_mean: f64,
    lag_max: u64,
    /// `clusterd status`'s line on how long sync commits waited for the peer.
    ack_wait: String,
    /// `clusterd status --json`: replication's stage timings on node 1.
    stages: Vec<serde_json::Value>,
}

/// Where a sync commit's time went, per stage (node 1's figures, warm-up included).
fn print_stages(stages: &[serde_json::Value]) {
    println!(
        "    where a sync commit's time goes (node 1, microseconds; per commit = a writer batch, per ack = a batch the standby applied):"
    );
    println!(
        "      {:<30} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "stage", "per", "count", "mean", "p50", "p99"
    );
    for st in stages {
        let n = |k: &str| st[k].as_u64().unwrap_or(0);
        println!(
            "      {:<30} {:>6} {:>8} {:>8} {:>8} {:>8}",
            st["stage"].as_str().unwrap_or("?"),
            st["per"].as_str().unwrap_or("?"),
            n("count"),
            n("mean_us"),
            n("p50_us"),
            n("p99_us")
        );
    }
}

/// A lab with one account on node 1; `mode`: replication's mode, none without it.
fn lab_with(mode: Option<&str>, extra: &str) -> Lab {
    let lab = Lab::new();
    for node in [N1, N2] {
        let mut text = format!("{}\n{extra}\n", lab.config_text(node));
        if let Some(mode) = mode {
            text.push_str(&format!(
                "[replication]\nlisten = \"{}:{REPL_PORT}\"\npeer = \"{}:{REPL_PORT}\"\nmode = \"{mode}\"\n",
                node.private_ip(),
                node.peer().private_ip()
            ));
        }
        lab.set_config(node, &text);
    }
    let mut cmd = Command::new(common::bin());
    cmd.args(["user", "add", USER, "--password-stdin", "--config"])
        .arg(lab.config_path(N1));
    common::assert_ok(
        &common::run_with_stdin(cmd, Some("benchpw\n")),
        "clusterd user add",
    );
    lab
}

fn smtp_run(mode: Option<&str>, n: u32) -> SmtpRun {
    let mut lab = lab_with(mode, "");
    lab.start_cluster();
    if mode.is_some() {
        // Node 2 holds node 1's log (its TLS identity included) before the run.
        lab.expect_within(
            Instant::now(),
            Duration::from_secs(10),
            "node 2 caught up",
            |l| l.log(N2).contains("caught up with the active node"),
        );
    }
    smtp_source(&lab, 200); // warm-up
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, config) = (stop.clone(), lab.config_path(N1));
        let ns = lab.ns(N1);
        std::thread::spawn(move || {
            let mut lags = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = Command::new("ip")
                    .args(["netns", "exec", &ns])
                    .arg(common::bin())
                    .args(["status", "--config"])
                    .arg(&config)
                    .stdin(Stdio::null())
                    .output();
                if let Ok(out) = out
                    && let Some(lag) = lag_of(&String::from_utf8_lossy(&out.stdout))
                {
                    lags.push(lag);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            lags
        })
    };
    let secs = smtp_source(&lab, n);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let lags = sampler.join().expect("sampler");
    let status = lab.status(N1).text;
    let json = lab.cli(N1, &["status", "--json"]);
    let stages = serde_json::from_slice::<serde_json::Value>(&json.stdout)
        .ok()
        .and_then(|v| v["replication"]["stages"].as_array().cloned())
        .unwrap_or_default();
    assert!(
        mode.is_none() || !stages.is_empty(),
        "clusterd status --json gives replication's stages: {}",
        String::from_utf8_lossy(&json.stdout)
    );
    let ack_wait = status
        .lines()
        .find(|l| l.contains("waited for the peer"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    if mode.is_some() {
        // Everything acknowledged reached the peer: the stores end equal.
        lab.expect_within(
            Instant::now(),
            Duration::from_secs(30),
            "both stores equal after the run",
            |l| {
                let d = |n| String::from_utf8_lossy(&l.cli(n, &["digest"]).stdout).into_owned();
                d(N1) == d(N2)
            },
        );
    }
    SmtpRun {
        rate: n as f64 / secs,
        lag_mean: if lags.is_empty() {
            0.0
        } else {
            lags.iter().sum::<u64>() as f64 / lags.len() as f64
        },
        lag_max: lags.iter().copied().max().unwrap_or(0),
        ack_wait,
        stages,
    }
}

/// One replicated run's line: its rate, the ratio to one node's, the lag.
fn print_run(mode: &str, run: &SmtpRun, single: f64) {
    println!(
        "    two nodes, {mode:<6} {:>18.0} msg/s = {:.2}x one node; lag behind the last commit: mean {:.1}, max {} positions",
        run.rate,
        run.rate / single,
        run.lag_mean,
        run.lag_max
    );
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "committed seq X, peer acknowledged Y" → X - Y.
fn lag_of(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("replication:"))?;
    let num = |key: &str| -> Option<u64> {
        let at = line.find(key)? + key.len();
        line[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some(num("committed seq")?.saturating_sub(num("peer acknowledged")?))
}

/// smtp-source from the client to the VIP; the wall time in seconds.
fn smtp_source(lab: &Lab, n: u32) -> f64 {
    let t0 = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.client_ns(), "smtp-source"])
        .args([
            "-s",
            &SESSIONS.to_string(),
            "-m",
            &n.to_string(),
            "-l",
            "1024",
        ])
        .args([
            "-f",
            "cliente@lan.example",
            "-t",
            &format!("{USER}@cluster.com.ec"),
        ])
        .args(["-M", "cliente.cluster.com.ec", &format!("{VIP}:25")])
        .stdin(Stdio::null())
        .output()
        .expect("run smtp-source");
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "smtp-source failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn link_bytes(lab: &Lab) -> u64 {
    let out = ip(&lab.ns(N1), "-s -j link show eth1");
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let s = &v[0]["stats64"];
    s["tx"]["bytes"].as_u64().unwrap() + s["rx"]["bytes"].as_u64().unwrap()
}

/// A file that does not compress.
fn noise(size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    let mut x: u64 = 0x2545f4914f6cdd1d;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    data
}

fn content_bytes() {
    const SIZE: usize = 10 << 20;
    let mut lab = lab_with(Some("sync"), "");
    lab.start_cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let mut data = noise(SIZE);
    std::fs::write(site.join("big.bin"), &data).unwrap();
    let publish = |lab: &Lab| {
        let out = lab.cli(N1, &["content", "publish", site.to_str().unwrap()]);
        common::assert_ok(&out, "clusterd content publish");
    };
    let equal = |lab: &Lab| {
        lab.expect_within(
            Instant::now(),
            Duration::from_secs(30),
            "both stores equal",
            |l| {
                let d = |n| String::from_utf8_lossy(&l.cli(n, &["digest"]).stdout).into_owned();
                d(N1) == d(N2)
            },
        );
    };
    publish(&lab);
    equal(&lab);
    data[SIZE / 2] ^= 0x5a;
    std::fs::write(site.join("big.bin"), &data).unwrap();
    let before = link_bytes(&lab);
    publish(&lab);
    equal(&lab);
    let clusterd = link_bytes(&lab) - before;

    // rsync 3: a daemon on node 2 with a module, the client on node 1, the same update.
    let dest = dir.path().join("rsync-dest");
    std::fs::create_dir_all(&dest).unwrap();
    let conf = dir.path().join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "pid file = {}\nuse chroot = no\n[site]\npath = {}\nread only = no\nuid = root\ngid = root\n",
            dir.path().join("rsyncd.pid").display(),
            dest.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(N2),
            "rsync",
            "--daemon",
            "--no-detach",
        ])
        .arg(format!("--config={}", conf.display()))
        .args(["--address", N2.private_ip(), "--port", "8730"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rsync --daemon");
    let _guard = KillOnDrop(&mut daemon);
    std::thread::sleep(Duration::from_millis(500));
    let src = dir.path().join("rsync-src");
    std::fs::create_dir_all(&src).unwrap();
    let mut old = data.clone();
    old[SIZE / 2] ^= 0x5a;
    std::fs::write(src.join("big.bin"), &old).unwrap();
    let push = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns(N1), "rsync", "-a", "--stats"])
            .arg(src.join("big.bin"))
            .arg(format!("rsync://{}:8730/site/", N2.private_ip()))
            .stdin(Stdio::null())
            .output()
            .expect("run rsync");
        common::assert_ok(&out, "rsync to node 2")
    };
    push();
    std::fs::write(src.join("big.bin"), &data).unwrap();
    let before = link_bytes(&lab);
    let stats = push();
    let rsync = link_bytes(&lab) - before;
    assert_eq!(
        std::fs::read(dest.join("big.bin")).unwrap(),
        data,
        "rsync copied the new file"
    );
    let line = |key: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or("")
            .to_string()
    };
    println!(
        "one byte changed in a 10 MiB file, bytes on node 1's private link (both directions):"
    );
    println!(
        "  clusterd (block delta over TLS, heartbeats included): {clusterd:>8} ({:.3}% of the file)",
        clusterd as f64 * 100.0 / SIZE as f64
    );
    println!(
        "  rsync 3 (daemon protocol, plain TCP):                 {rsync:>8} ({:.3}% of the file; {}, {})",
        rsync as f64 * 100.0 / SIZE as f64,
        line("Total bytes sent"),
        line("Total bytes received")
    );
    println!(
        "  ratio clusterd / rsync: {:.2}",
        clusterd as f64 / rsync as f64
    );
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
