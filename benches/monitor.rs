//! Probe cost: the CPU time the monitor uses per minute at the default interval
//! (`[monitor] interval_s = 10`) on an idle node (target: under 0.5 % of one core).
//!
//! Two idle nodes run side by side for the same window: one with the default
//! monitor, one whose monitor probes once at start and then not for a day
//! (`interval_s = 86400`). The difference of their CPU time (utime + stime from
//! /proc/PID/stat) over the window is the monitor's cost: its probes and the work
//! they cause in the node's own SMTP, IMAP, HTTP and DNS front-ends. Both nodes have
//! an account and a few messages, as an appliance would.
//!
//! `cargo bench --bench monitor`; `BENCH_MONITOR_S` sets the window (default 120 s).
//! Every process started here is stopped by PID when its guard drops.
//!
//! Measured on 2026-12-07 (2 cores shared with other builds, a debug build —
//! `cargo bench --bench monitor --profile dev` — over 120 s): with the monitor
//! 0.410 s CPU/min, without 0.395 s CPU/min: the monitor costs 0.015 s per minute,
//! 0.025 % of one core (target < 0.5 %). Release build, quiet machine, 60 s window
//! (`BENCH_MONITOR_S=60`): 0.250 against 0.220 s CPU/min, 0.030 s per minute, 0.050 %
//! of one core (the difference of two small figures: expect this much noise).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Node;
use std::time::{Duration, Instant};

/// utime + stime of a process, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let rest = stat.rsplit_once(") ").expect("stat format").1;
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn main() {
    let window = Duration::from_secs(common::env_num("BENCH_MONITOR_S", 120));
    let start = |interval: &str| {
        let node = Node::builder()
            .log("warn")
            .extra(&format!("[monitor]\ninterval_s = {interval}\n"))
            .start();
        node.add_user("bench", "benchpw");
        node
    };
    let with = start("10");
    let without = start("86400");
    // Let start-up work (and the second node's first round) settle.
    std::thread::sleep(Duration::from_secs(5));
    let (pw, po) = (with.pid().unwrap(), without.pid().unwrap());
    let (w0, o0) = (cpu_s(pw), cpu_s(po));
    let t0 = Instant::now();
    std::thread::sleep(window);
    let elapsed = t0.elapsed().as_secs_f64();
    let (w1, o1) = (cpu_s(pw), cpu_s(po));
    let per_min = |a: f64, b: f64| (b - a) * 60.0 / elapsed;
    let (w, o) = (per_min(w0, w1), per_min(o0, o1));
    let cost = w - o;
    let share = cost / 60.0 * 100.0;
    println!(
        "monitor probe cost over {:.0} s: idle node with the monitor every 10 s {:.3} s CPU/min, without {:.3} s CPU/min",
        elapsed, w, o
    );
    println!(
        "monitor: {:.3} s CPU per minute = {:.3} % of one core (target < 0.5 %): {}",
        cost,
        share,
        if share < 0.5 { "met" } else { "NOT met" }
    );
}
