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
//! NSD runs with `server-count: 2` (as in ../shared/BENCH-NOTES.md) and with response
//! rate limiting off (`rrl-ratelimit: 0`; Debian's NSD otherwise answers only ~200/s per
//! client network). A run whose response codes differ between the servers (e.g. clusterd
//! answering REFUSED fast) fails instead of printing a meaningless ratio.
//!
//! Every process started here is stopped by PID (and the temp dir removed) when the
//! guards drop, also when a step fails. Nothing is installed; a missing tool is a loud
//! error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "`{tool}` not found: install Debian's {tool} package");
    }
    let tmp = tempfile::Builder::new()
        .prefix("clusterd-bench-dns-")
        .tempdir()
        .expect("temp dir");
    let zones = tmp.path().join("zones");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"), &zones);
    let data = tmp.path().join("queries.txt");
    std::fs::write(&data, QUERY_MIX).unwrap();

    // Guards drop in reverse order: both servers stop before the temp dir goes.
    let clusterd = Clusterd::start(&tmp.path().join("clusterd"), &zones);
    let nsd = Nsd::start(&tmp.path().join("nsd"), &zones);

    println!(
        "dnsperf -c {CLIENTS} -T {THREADS} -l {secs} over UDP on loopback, {} query names \
         (A/MX/SOA/NS/TXT/SRV/PTR, CNAMEs, 20% NXDOMAIN)",
        QUERY_MIX.lines().count()
    );
    dnsperf(nsd.port, &data, WARMUP_S);
    let n = dnsperf(nsd.port, &data, secs);
    n.print("nsd     ");
    dnsperf(clusterd.port, &data, WARMUP_S);
    let c = dnsperf(clusterd.port, &data, secs);
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read zones dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy zone file");
    }
}

/// A port free for both TCP and UDP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1");
}

/// A SOA query for cluster.com.ec.
fn soa_query() -> Vec<u8> {
    let mut q = vec![0x5a, 0x5a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["cluster", "com", "ec"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend([0, 0, 6, 0, 1]);
    q
}

/// Waits (bounded) until the server answers `cluster.com.ec SOA` over UDP with NOERROR
/// and AA; fails if the process exits or the time is up.
fn wait_dns(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what} exited during start-up; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        if sock.send(&soa_query()).is_ok()
            && let Ok(n) = sock.recv(&mut buf)
            && n >= 12
            && buf[..2] == [0x5a, 0x5a]
            && buf[2] & 0x84 == 0x84
            && buf[3] & 0x0f == 0
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer `cluster.com.ec SOA` on 127.0.0.1:{port} within 30 s; \
             log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a process we spawned: SIGTERM, then SIGKILL after 10 s.
fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Clusterd {
    child: Child,
    port: u16,
}

impl Clusterd {
    fn start(dir: &Path, zones: &Path) -> Clusterd {
        std::fs::create_dir_all(dir).unwrap();
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_clusterd"));
        let port = free_port();
        let config = dir.join("clusterd.toml");
        let text = format!(
            r#"[node]
name = "bench"
data_dir = "{d}/data"
control_socket = "{d}/control.sock"
[domain]
name = "cluster.com.ec"
local_domains = ["cluster.com.ec"]
[smtp]
listen = ["127.0.0.1:{smtp}"]
submission_listen = ["127.0.0.1:{sub}"]
submissions_listen = ["127.0.0.1:{subs}"]
require_resolvable_sender = false
[imap]
listen = ["127.0.0.1:{imap}"]
tls_listen = ["127.0.0.1:{imaps}"]
[dns]
listen = ["127.0.0.1:{port}"]
zones_dir = "{zones}"
"#,
            d = dir.display(),
            zones = zones.display(),
            smtp = free_port(),
            sub = free_port(),
            subs = free_port(),
            imap = free_port(),
            imaps = free_port(),
        );
        std::fs::write(&config, text).unwrap();
        let log_path = dir.join("clusterd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut c = Clusterd { child, port };
        wait_dns(port, &mut c.child, "clusterd", &log_path);
        c
    }
}

impl Drop for Clusterd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A private NSD in the foreground (`-d`), 2 server processes, no rate limiting.
struct Nsd {
    child: Child,
    port: u16,
}

impl Nsd {
    fn start(dir: &Path, zones: &Path) -> Nsd {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let d = dir.display();
        let mut conf = format!(
            r#"server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    server-count: 2
    username: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    verbosity: 1
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
"#
        );
        for entry in std::fs::read_dir(zones).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".zone"))
            else {
                continue;
            };
            let _ = write!(
                conf,
                "zone:\n    name: \"{name}\"\n    zonefile: \"{}\"\n",
                path.display()
            );
        }
        let conf_path = dir.join("nsd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log_path = dir.join("nsd.log");
        let out = std::fs::File::create(dir.join("nsd.out")).unwrap();
        let child = Command::new("nsd")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start nsd");
        let mut n = Nsd { child, port };
        wait_dns(port, &mut n.child, "nsd", &log_path);
        n
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        // NSD's main process stops its server and xfrd children on SIGTERM.
        stop(&mut self.child);
    }
}
