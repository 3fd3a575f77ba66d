//! Outbound delivery benchmark (issue 13): N submitted 1 KB messages delivered end to
//! end to a lab `smtp-sink` (Debian package `postfix`), through clusterd and through a
//! private Postfix relaying the same load to the same sink, side by side in one run.
//!
//! `cargo bench --bench outbound`. For each server, `smtp-source -s 16 -m N -l 1024`
//! submits from 127.0.0.1 (inside `relay_from` / `mynetworks`) to a remote address;
//! clusterd sends everything to the sink as its `[outbound] relay_host`, Postfix as its
//! `relayhost`, each with at most 20 connections to it (Postfix's default destination
//! concurrency; clusterd's `max_per_domain = 20`). The time runs from the start of
//! the submission to the sink counting the last message (its `-c` counter moves when
//! "." arrives). It prints messages/s for both and the ratio clusterd/Postfix.
//! `BENCH_OUTBOUND_MESSAGES` sets N (default 5000); `BENCH_OUTBOUND_DIR` the directory
//! for both servers' state (default: the temp dir).
//!
//! Every process started here is stopped by PID (and the temp dir removed) when the
//! guards drop, also when a step fails. Needs root (Postfix, smtp-sink's `-u`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Node;
use common::postfix::{Mode, Postfix};

const SESSIONS: u32 = 16;
const SIZE: u32 = 1024;
const WARMUP: u32 = 200;
const CONCURRENCY: u32 = 20;

fn main() {
    let n: u32 = std::env::var("BENCH_OUTBOUND_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    for tool in ["smtp-source", "smtp-sink", "postfix", "postconf"] {
        common::require_tool(tool);
    }
    let parent = std::env::var_os("BENCH_OUTBOUND_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("clusterd-bench-outbound-")
        .tempdir_in(&parent)
        .expect("temp dir");
    // Guards drop in reverse order: the servers stop before the temp dir goes.
    let sink = Sink::start();
    let clusterd = Node::builder()
        .log("warn")
        .temp_in(tmp.path())
        .outbound(&format!(
            "relay_host = \"{}\"\nmax_per_domain = {CONCURRENCY}\nretry_schedule_s = [1]",
            sink.addr
        ))
        .start();
    let postfix = Postfix::start_with(
        &tmp.path().join("postfix"),
        SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port())),
        Mode::Relay(sink.addr),
    );

    println!(
        "smtp-source -s {SESSIONS} -m {n} -l {SIZE} → server → smtp-sink, loopback; \
         submission start to the sink's last message"
    );
    let mut sunk = 0u64;
    let mut run = |port: u16, count: u32, what: &str| -> (f64, f64) {
        let start = Instant::now();
        let accept = smtp_source(port, count);
        sunk += count as u64;
        let done = sink
            .wait_count(sunk, Duration::from_secs(600))
            .unwrap_or_else(|| {
                panic!(
                    "{what}: the sink counted {} of {sunk} messages within 600 s",
                    sink.count()
                )
            });
        (accept, (done - start).as_secs_f64())
    };
    run(clusterd.smtp_port, WARMUP, "clusterd warm-up");
    run(postfix.port, WARMUP, "postfix warm-up");
    let (ca, c) = run(clusterd.smtp_port, n, "clusterd");
    let (pa, p) = run(postfix.port, n, "postfix");
    let (cr, pr) = (n as f64 / c, n as f64 / p);
    println!(
        "clusterd {cr:>7.0} msg/s end to end ({c:.2} s; all accepted after {ca:.2} s)\n\
         postfix  {pr:>7.0} msg/s end to end ({p:.2} s; all accepted after {pa:.2} s)"
    );
    println!("ratio clusterd/postfix: {:.2}x", cr / pr);
    // Nothing left behind in clusterd's queue.
    let out = clusterd.cli(&["queue", "list", "--json"], None);
    let text = common::assert_ok(&out, "queue list --json");
    let left: Vec<serde_json::Value> = serde_json::from_str(&text).expect("queue JSON");
    assert!(
        left.is_empty(),
        "clusterd's queue still holds {}",
        left.len()
    );
    drop(postfix);
    drop(clusterd);
    drop(sink);
    drop(tmp);
}

/// Runs smtp-source to a remote address; its wall time in seconds (all accepted).
fn smtp_source(port: u16, n: u32) -> f64 {
    let (from, to) = ("sender@cluster.com.ec", "ana@example.net");
    common::postfix::smtp_source(port, SESSIONS, n, SIZE, from, to)
}

/// Postfix's smtp-sink on 127.0.0.1, its running counters (`-c`) read by a thread.
struct Sink {
    addr: SocketAddr,
    child: Child,
    /// Messages received so far, and when the count last moved.
    state: Arc<Mutex<(u64, Instant)>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start() -> Sink {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
        let mut child = Command::new("smtp-sink")
            .args(["-u", "postfix", "-c", "-m", "1000"])
            .arg(addr.to_string())
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let mut out = child.stdout.take().unwrap();
        let state = Arc::new(Mutex::new((0u64, Instant::now())));
        let st = state.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut pending = String::new();
            while let Ok(k) = out.read(&mut buf) {
                if k == 0 {
                    return;
                }
                pending.push_str(&String::from_utf8_lossy(&buf[..k]));
                // Each update is "sess=A quit=B mesg=C\r".
                while let Some(i) = pending.find('\r') {
                    let line: String = pending.drain(..=i).collect();
                    if let Some(m) = line
                        .split_whitespace()
                        .find_map(|f| f.strip_prefix("mesg="))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                    {
                        let mut s = st.lock().unwrap();
                        if m > s.0 {
                            *s = (m, Instant::now());
                        }
                    }
                }
            }
        });
        let sink = Sink {
            addr,
            child,
            state,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }

    fn count(&self) -> u64 {
        self.state.lock().unwrap().0
    }

    /// Waits until the sink has counted `n` messages; when the n-th arrived.
    fn wait_count(&self, n: u64, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let (c, at) = *self.state.lock().unwrap();
            if c >= n {
                return Some(at);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        common::terminate(&mut self.child, Duration::from_secs(5));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
