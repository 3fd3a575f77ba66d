//! Static-site throughput benchmark: clusterd's HTTP server against a private nginx
//! (Debian's `nginx-light`) serving the same file, side by side in one run, driven by
//! `wrk` (Debian package `wrk`).
//!
//! `cargo bench --bench http` (cargo builds the clusterd binary with the bench profile
//! and passes its path in `CARGO_BIN_EXE_clusterd`). clusterd serves the site's
//! default content (the repository's `www/`, loaded into the content store at first
//! start); nginx (2 worker processes, access log off, `etag on`, sendfile and an open
//! file cache) serves a copy of the
//! same `www/` directory. Before measuring, both must answer `/` with 200 and the
//! same bytes as `www/index.html`. Two cases, each server in turn:
//! `wrk -t2 -c64 -d SECONDS` on `/` plain, and with `Accept-Encoding: gzip` (nginx
//! with `gzip on` for text/html). Each run is preceded by a 2 s warm-up. It prints
//! requests/s, latency and the ratio clusterd/nginx; target: at least 1.0x.
//! `BENCH_HTTP_SECONDS` sets the run time (default 10). A run with non-2xx answers or
//! socket errors fails instead of printing a meaningless ratio.
//!
//! Every process started here is stopped by PID (and the temp dir removed) when the
//! guards drop, also when a step fails. Nothing is installed; a missing tool is a loud
//! error.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Node, require_tool, terminate};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WARMUP_S: u32 = 2;

fn main() {
    require_tool("wrk");
    require_tool("nginx");
    require_tool("curl");
    let secs: u32 = std::env::var("BENCH_HTTP_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
    let index = std::fs::read(www.join("index.html")).expect("www/index.html");

    let node = Node::builder().log("warn").start();
    let tmp = tempfile::Builder::new()
        .prefix("clusterd-bench-http-")
        .tempdir()
        .expect("temp dir");
    let root = tmp.path().join("www");
    common::copy_dir(&www, &root);
    let nginx = Nginx::start(tmp.path(), &root);

    let clusterd_url = format!("http://127.0.0.1:{}/", node.http_port);
    let nginx_url = format!("http://127.0.0.1:{}/", nginx.port);
    for (who, url) in [("clusterd", &clusterd_url), ("nginx", &nginx_url)] {
        let body = curl_body(url);
        assert!(
            body == index,
            "{who} at {url} does not serve www/index.html ({} bytes, expected {})",
            body.len(),
            index.len()
        );
    }
    println!(
        "both serve www/index.html ({} bytes); wrk -t2 -c64 -d{secs}s, {WARMUP_S} s warm-up each",
        index.len()
    );

    let cases: [(&str, &[&str]); 2] = [
        ("index.html", &[]),
        ("index.html, gzip", &["-H", "Accept-Encoding: gzip"]),
    ];
    let mut summary = Vec::new();
    for (case, extra) in cases {
        let n = wrk(&nginx_url, extra, secs);
        let c = wrk(&clusterd_url, extra, secs);
        println!("{case}:");
        println!("  nginx    {n}");
        println!("  clusterd {c}");
        let ratio = c.rps / n.rps;
        println!("  ratio clusterd/nginx = {ratio:.2}x");
        summary.push((case, c.rps, n.rps, ratio));
    }
    println!("summary (requests/s):");
    for (case, c, n, ratio) in summary {
        println!("  {case:<18} clusterd {c:>10.0}  nginx {n:>10.0}  {ratio:.2}x");
    }
    drop(nginx);
    drop(node);
}

/// One wrk run's figures.
struct Figures {
    rps: f64,
    latency: String,
    requests: u64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>10.0} req/s  ({} requests, mean latency {})",
            self.rps, self.requests, self.latency
        )
    }
}

/// Warm-up, then a timed `wrk` run against `url`.
fn wrk(url: &str, extra: &[&str], secs: u32) -> Figures {
    run_wrk(url, extra, WARMUP_S);
    let out = run_wrk(url, extra, secs);
    for bad in ["Non-2xx or 3xx responses", "Socket errors"] {
        assert!(
            !out.contains(bad),
            "wrk against {url} reported {bad}:\n{out}"
        );
    }
    let field = |label: &str| -> Option<String> {
        out.lines()
            .find(|l| l.trim_start().starts_with(label))
            .map(|l| l.trim_start()[label.len()..].trim().to_string())
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{out}"));
    let latency = field("Latency")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Figures {
        rps,
        latency,
        requests,
    }
}

fn run_wrk(url: &str, extra: &[&str], secs: u32) -> String {
    let out = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s")])
        .args(extra)
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn curl_body(url: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A private nginx on a free loopback port, stopped by PID on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, root: &Path) -> Nginx {
        let port = common::free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "user root;\n\
                 worker_processes 2;\n\
                 daemon off;\n\
                 master_process on;\n\
                 pid {dir}/nginx.pid;\n\
                 error_log {dir}/nginx-error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 \x20 include /etc/nginx/mime.types;\n\
                 \x20 access_log off;\n\
                 \x20 sendfile on;\n\
                 \x20 tcp_nopush on;\n\
                 \x20 keepalive_requests 100000;\n\
                 \x20 etag on;\n\
                 \x20 open_file_cache max=1000 inactive=60s;\n\
                 \x20 gzip on;\n\
                 \x20 gzip_types text/css image/svg+xml;\n\
                 \x20 client_body_temp_path {dir}/body;\n\
                 \x20 proxy_temp_path {dir}/proxy;\n\
                 \x20 fastcgi_temp_path {dir}/fastcgi;\n\
                 \x20 uwsgi_temp_path {dir}/uwsgi;\n\
                 \x20 scgi_temp_path {dir}/scgi;\n\
                 \x20 server {{\n\
                 \x20   listen 127.0.0.1:{port};\n\
                 \x20   root {root};\n\
                 \x20   index index.html;\n\
                 \x20 }}\n\
                 }}\n",
                dir = dir.display(),
                root = root.display(),
            ),
        )
        .expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{port}; error log:\n{}",
                std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { child, port }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master (by its PID) stops its workers too.
        terminate(&mut self.child, Duration::from_secs(5));
    }
}
