//! DNS query-throughput benchmark: clusterd against a private NSD (Debian's `nsd` 4.6),
//! side by side in one run, driven by `dnsperf` (Debian package `dnsperf`).
//!
//! `cargo bench --bench dns` (needs `[[bench]] name = "dns" harness = false`; cargo
//! builds the clusterd binary with the bench profile and passes its path in
//! `CARGO_BIN_EXE_clusterd`). Both servers serve a copy of the repository's `zones/`
//! on 127.0.0.1 high ports. The same query file goes to each, one after the other:
//! a mix of A, MX, SOA, PTR, CNAME and NXDOMAIN queries from our zones (80% NOERROR,
//! 20% NXDOMAIN). Each server first gets a 2 s warm-up, then a timed run of
//! `dnsperf -c 8 -T 2 -l SECONDS` (UDP); it prints queries/s, loss, latency and the
//! ratio clusterd/NSD. `BENCH_DNS_SECONDS` sets the run time (default 10).
//!
//! NSD runs with `server-count: 2` (one server process per core) and with response rate
//! limiting off (`rrl-ratelimit: 0`; Debian's NSD otherwise answers only ~200/s per
//! client network). A run whose response codes differ between the servers (e.g. clusterd
//! answering REFUSED fast) fails instead of printing a meaningless ratio.
//!
//! Every process started here is stopped by PID (and the temp dir removed) when the
//! guards drop, also when a step fails. Nothing is installed; a missing tool is a loud
//! error.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Node;
use common::dns::{Nsd, NsdConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

const CLIENTS: u32 = 8;
const THREADS: u32 = 2;
const WARMUP_S: u32 = 2;

/// The query mix (dnsperf data file): 16 NOERROR, 4 NXDOMAIN.
const QUERY_MIX: &str = "\
www.cluster.com.ec A
mail.cluster.com.ec A
ns.cluster.com.ec A
cluster.com.ec A
cluster.com.ec MX
cluster.com.ec SOA
cluster.com.ec NS
cluster.com.ec TXT
webmail.cluster.com.ec A
smtp.cluster.com.ec A
clusternodo1.cluster.com.ec A
cliente.cluster.com.ec A
_imaps._tcp.cluster.com.ec SRV
100.0.0.10.in-addr.arpa PTR
1.0.0.10.in-addr.arpa PTR
0.0.10.in-addr.arpa SOA
nx1.cluster.com.ec A
nonexistent.cluster.com.ec MX
foo.www.cluster.com.ec A
77.0.0.10.in-addr.arpa PTR
";

fn main() {
    let secs: u32 = std::env::var("BENCH_DNS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for tool in ["dnsperf", "nsd"] {
        common::require_tool(tool);
    }
    let tmp = tempfile::Builder::new()
        .prefix("clusterd-bench-dns-")
        .tempdir()
        .expect("temp dir");
    let data = tmp.path().join("queries.txt");
    std::fs::write(&data, QUERY_MIX).unwrap();

    // Both serve the repository's zones (the node's copy of them).
    let clusterd = Node::builder().log("warn").start();
    let nsd = Nsd::start(
        &clusterd.zones_dir,
        &NsdConfig {
            server_count: 2,
            ..NsdConfig::default()
        },
    );

    println!(
        "dnsperf -c {CLIENTS} -T {THREADS} -l {secs} over UDP on loopback, {} query names \
         (A/MX/SOA/NS/TXT/SRV/PTR, CNAMEs, 20% NXDOMAIN)",
        QUERY_MIX.lines().count()
    );
    dnsperf(nsd.port, &data, WARMUP_S);
    let n = dnsperf(nsd.port, &data, secs);
    n.print("nsd     ");
    dnsperf(clusterd.dns_port, &data, WARMUP_S);
    let c = dnsperf(clusterd.dns_port, &data, secs);
    c.print("clusterd");
    assert!(
        c.codes.keys().eq(n.codes.keys()),
        "the servers answered with different response codes (clusterd {:?}, nsd {:?}): \
         the figures are not comparable",
        c.codes,
        n.codes
    );
    for (code, pn) in n.code_shares() {
        let pc = c.code_shares()[&code];
        assert!(
            (pc - pn).abs() < 2.0,
            "{code}: {pc:.1}% of clusterd's answers, {pn:.1}% of NSD's: not comparable"
        );
    }
    if c.lost_pct > 1.0 {
        println!(
            "warning: clusterd lost {:.2}% of the queries (dnsperf counts no reply within \
             5 s as lost)",
            c.lost_pct
        );
    }
    println!("ratio clusterd/nsd: {:.2}x", c.qps / n.qps);
    drop(nsd);
    drop(clusterd);
    drop(tmp);
}

struct Stats {
    qps: f64,
    completed: u64,
    lost_pct: f64,
    latency: String,
    codes: BTreeMap<String, u64>,
}

impl Stats {
    fn print(&self, name: &str) {
        let codes: Vec<String> = self.codes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "{name} {:>10.0} q/s  completed {}  lost {:.2}%  latency avg {}  codes: {}",
            self.qps,
            self.completed,
            self.lost_pct,
            self.latency,
            codes.join(", ")
        );
    }

    /// Response code → percentage of the answers.
    fn code_shares(&self) -> BTreeMap<String, f64> {
        let total: u64 = self.codes.values().sum::<u64>().max(1);
        self.codes
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 * 100.0 / total as f64))
            .collect()
    }
}

/// Runs dnsperf for `secs` seconds against 127.0.0.1:`port` and parses its summary.
fn dnsperf(port: u16, data: &Path, secs: u32) -> Stats {
    let out = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &port.to_string()])
        .arg("-d")
        .arg(data)
        .args(["-l", &secs.to_string()])
        .args(["-c", &CLIENTS.to_string(), "-T", &THREADS.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run dnsperf");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dnsperf against port {port} failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> &str {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no `{name}` in dnsperf output:\n{text}"))
    };
    let first_num = |s: &str| -> f64 {
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse `{s}` in dnsperf output:\n{text}"))
    };
    let pct = |s: &str| -> f64 {
        s.split_once('(')
            .and_then(|(_, p)| p.split_once('%'))
            .and_then(|(p, _)| p.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let lost = field("Queries lost:");
    // "NOERROR 742934 (80.00%), NXDOMAIN 185733 (20.00%)"
    let codes = field("Response codes:")
        .split(',')
        .filter_map(|part| {
            let mut it = part.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect();
    Stats {
        qps: first_num(field("Queries per second:")),
        completed: first_num(field("Queries completed:")) as u64,
        lost_pct: pct(lost),
        latency: field("Average Latency (s):")
            .split_whitespace()
            .next()
            .map(|s| format!("{s} s"))
            .unwrap_or_default(),
        codes,
    }
}
