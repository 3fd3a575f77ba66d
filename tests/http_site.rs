//! The web site over HTTP and HTTPS, driven with curl (and raw sockets for the
//! malformed-request cases): the default site from www/, HTTP/2 over TLS, conditional
//! requests (RFC 9110 13), byte ranges (RFC 9110 14), gzip and brotli, path escapes,
//! virtual hosts by Host header, the 404 page, 405, the access log in Combined Log
//! Format, limits on bad and slow requests, and the redirect to HTTPS.

mod common;

use common::Node;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A response as curl saw it.
struct Resp {
    status: u16,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// Runs curl with `args` (plus -s -i, a time limit and -k) and parses its output.
fn curl(args: &[&str]) -> Resp {
    common::require_tool("curl");
    let out = Command::new("curl")
        .args(["-s", "-i", "-k", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&out.stdout).unwrap_or_else(|| {
        panic!(
            "curl {args:?}: unparsable output:\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next()?.to_string();
    let status = parts.next()?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Resp {
        status,
        version,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

fn http(node: &Node, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", node.http_port)
}

fn https(node: &Node, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", node.https_port)
}

fn repo_file(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("www").join(rel)).expect("www file")
}

/// Stores `data` as content `path` through the running node's control socket.
fn put_content(node: &Node, path: &str, data: &[u8]) {
    let file = node.dir.path().join("upload.tmp");
    std::fs::write(&file, data).unwrap();
    let out = node.cli(&["content", "put", path, common::s(&file)], None);
    common::assert_ok(&out, "clusterd content put");
}

/// Polls `f` until it holds (the site reloads from the store's change feed).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn index_is_served_over_http_and_https_and_http2() {
    let node = Node::start();
    let index = repo_file("index.html");

    let r = curl(&[&http(&node, "/")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.body, index);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("content-length"),
        Some(index.len().to_string().as_str())
    );
    assert!(r.header("etag").is_some_and(|e| e.starts_with('"')));
    assert!(
        r.header("last-modified")
            .is_some_and(|d| d.ends_with("GMT"))
    );

    let h2 = curl(&["--http2", &https(&node, "/")]);
    assert_eq!(h2.status, 200);
    assert_eq!(h2.version, "HTTP/2", "ALPN h2 over TLS");
    assert_eq!(h2.body, index);

    let h1 = curl(&["--http1.1", &https(&node, "/index.html")]);
    assert_eq!((h1.status, h1.version.as_str()), (200, "HTTP/1.1"));
    assert_eq!(h1.body, index);

    // The other files of www/, with their types.
    let css = curl(&[&http(&node, "/estilo.css")]);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.body, repo_file("estilo.css"));
    let svg = curl(&["--http2", &https(&node, "/logo.svg")]);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert_eq!(svg.body, repo_file("logo.svg"));

    // HEAD: the same head, no body (HTTP/1.1 and HTTP/2).
    for url in [http(&node, "/"), https(&node, "/")] {
        let head = curl(&["-I", "--http2", &url]);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("etag"), r.header("etag"));
        assert_eq!(head.header("content-length"), r.header("content-length"));
        assert!(head.body.is_empty());
    }
}

#[test]
fn conditional_get_answers_304() {
    let node = Node::start();
    let url = http(&node, "/");
    let r = curl(&[&url]);
    let etag = r.header("etag").expect("etag").to_string();
    let modified = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();

    // RFC 9110 13.1.2 If-None-Match.
    let r304 = curl(&["-H", &format!("If-None-Match: {etag}"), &url]);
    assert_eq!(r304.status, 304);
    assert!(r304.body.is_empty());
    assert_eq!(r304.header("etag"), Some(etag.as_str()));
    let list = curl(&["-H", &format!("If-None-Match: \"x\", W/{etag}"), &url]);
    assert_eq!(list.status, 304, "a weak match in a list");
    let other = curl(&["-H", "If-None-Match: \"something-else\"", &url]);
    assert_eq!(other.status, 200);
    assert!(!other.body.is_empty());

    // RFC 9110 13.1.3 If-Modified-Since.
    let ims = curl(&["-H", &format!("If-Modified-Since: {modified}"), &url]);
    assert_eq!(ims.status, 304);
    assert!(ims.body.is_empty());
    let old = curl(&[
        "-H",
        "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT",
        &url,
    ]);
    assert_eq!(old.status, 200);
    // If-None-Match takes precedence over If-Modified-Since.
    let both = curl(&[
        "-H",
        "If-None-Match: \"stale\"",
        "-H",
        &format!("If-Modified-Since: {modified}"),
        &url,
    ]);
    assert_eq!(both.status, 200);

    // Over HTTP/2 as well.
    let h2 = curl(&[
        "--http2",
        "-H",
        &format!("If-None-Match: {etag}"),
        &https(&node, "/"),
    ]);
    assert_eq!((h2.status, h2.version.as_str()), (304, "HTTP/2"));
}

#[test]
fn byte_ranges_answer_206_and_416() {
    let node = Node::start();
    let index = repo_file("index.html");
    let url = http(&node, "/index.html");
    let len = index.len();

    let r = curl(&["-H", "Range: bytes=0-9", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &index[..10]);
    let want = format!("bytes 0-9/{len}");
    assert_eq!(r.header("content-range"), Some(want.as_str()));
    assert_eq!(r.header("content-length"), Some("10"));

    let mid = curl(&["-r", "100-199", &url]);
    assert_eq!(mid.status, 206);
    assert_eq!(mid.body, &index[100..200]);

    let suffix = curl(&["-H", "Range: bytes=-16", &url]);
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.body, &index[len - 16..]);

    let open = curl(&["-H", &format!("Range: bytes={}-", len - 5), &url]);
    assert_eq!(open.status, 206);
    assert_eq!(open.body, &index[len - 5..]);

    // Ranges apply to the identity bytes even when compression is accepted.
    let gz = curl(&[
        "-H",
        "Range: bytes=0-9",
        "-H",
        "Accept-Encoding: gzip",
        &url,
    ]);
    assert_eq!(gz.status, 206);
    assert_eq!(gz.header("content-encoding"), None);
    assert_eq!(gz.body, &index[..10]);

    let bad = curl(&["-H", &format!("Range: bytes={}-", len + 10), &url]);
    assert_eq!(bad.status, 416);
    let want = format!("bytes */{len}");
    assert_eq!(bad.header("content-range"), Some(want.as_str()));

    // Several ranges: the whole file (RFC 9110 allows ignoring Range).
    let multi = curl(&["-H", "Range: bytes=0-1,5-6", &url]);
    assert_eq!(multi.status, 200);
    assert_eq!(multi.body, index);

    // If-Range with a stale validator: the whole file.
    let stale = curl(&["-H", "Range: bytes=0-9", "-H", "If-Range: \"old\"", &url]);
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, index);
    let etag = curl(&[&url]).header("etag").unwrap().to_string();
    let fresh = curl(&[
        "-H",
        "Range: bytes=0-9",
        "-H",
        &format!("If-Range: {etag}"),
        &url,
    ]);
    assert_eq!(fresh.status, 206);

    // HTTP/2.
    let h2 = curl(&["--http2", "-r", "0-99", &https(&node, "/index.html")]);
    assert_eq!((h2.status, h2.version.as_str()), (206, "HTTP/2"));
    assert_eq!(h2.body, &index[..100]);
}

/// Decompresses `data` with the named command-line tool.
fn decompress(tool: &str, data: &[u8]) -> Vec<u8> {
    common::require_tool(tool);
    let mut child = Command::new(tool)
        .args(["-d", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn decompressor");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{tool} -d failed");
    out.stdout
}

#[test]
fn gzip_and_brotli_when_asked() {
    let node = Node::start();
    let index = repo_file("index.html");
    let url = http(&node, "/");

    // curl --compressed decodes what it asked for.
    let r = curl(&["--compressed", &url]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index);
    assert!(matches!(r.header("content-encoding"), Some("gzip" | "br")));

    let gz = curl(&["-H", "Accept-Encoding: gzip", &url]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert!(gz.body.len() < index.len());
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(decompress("gzip", &gz.body), index);
    assert_ne!(gz.header("etag"), curl(&[&url]).header("etag"));

    let br = curl(&["-H", "Accept-Encoding: gzip, deflate, br", &url]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(decompress("brotli", &br.body), index);

    let h2 = curl(&[
        "--http2",
        "-H",
        "Accept-Encoding: br",
        &https(&node, "/estilo.css"),
    ]);
    assert_eq!(h2.header("content-encoding"), Some("br"));
    assert_eq!(decompress("brotli", &h2.body), repo_file("estilo.css"));

    // Not asked, or refused with q=0: identity.
    let plain = curl(&[&url]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, index);
    let refused = curl(&["-H", "Accept-Encoding: gzip;q=0, identity", &url]);
    assert_eq!(refused.header("content-encoding"), None);

    // A conditional request for the compressed representation.
    let etag = gz.header("etag").unwrap();
    let r304 = curl(&[
        "-H",
        "Accept-Encoding: gzip",
        "-H",
        &format!("If-None-Match: {etag}"),
        &url,
    ]);
    assert_eq!(r304.status, 304);

    // An image type is not compressed.
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0u8, 4000))
        .collect();
    put_content(&node, "www/img/pixel.png", &png);
    let img_url = http(&node, "/img/pixel.png");
    eventually("the new image is served", || {
        curl(&[&img_url]).status == 200
    });
    let img = curl(&["-H", "Accept-Encoding: gzip, br", &img_url]);
    assert_eq!(img.header("content-type"), Some("image/png"));
    assert_eq!(img.header("content-encoding"), None);
    assert_eq!(img.body, png);
}

#[test]
fn path_escapes_are_refused_and_other_content_is_unreachable() {
    let node = Node::start();
    // The zone files are in the store's content area (loaded by the DNS service).
    let mut zones = String::new();
    eventually("the zones are in the store", || {
        zones = common::assert_ok(
            &node.cli(&["content", "list", "zones/"], None),
            "content list",
        );
        zones.contains("zones/cluster.com.ec.zone")
    });

    for path in [
        "/../zones/cluster.com.ec.zone",
        "/../../etc/passwd",
        "/a/../../zones/cluster.com.ec.zone",
        "/%2e%2e/zones/cluster.com.ec.zone",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/.%2e/zones/cluster.com.ec.zone",
        "/..%2fzones%2fcluster.com.ec.zone",
        "/%2e%2e%2fzones%2fcluster.com.ec.zone",
        "/x%2f..%2f..%2fzones%2fcluster.com.ec.zone",
        "/..%5czones%5ccluster.com.ec.zone",
        "/index.html%00.txt",
        "//zones/cluster.com.ec.zone",
    ] {
        for url in [http(&node, path), https(&node, path)] {
            let r = curl(&["--path-as-is", &url]);
            assert!(
                r.status == 400 || r.status == 404,
                "{path}: status {}",
                r.status
            );
            assert!(!r.text().contains("SOA"), "{path} leaked a zone file");
        }
    }
    // Escapes are 400, not a file.
    assert_eq!(
        curl(&["--path-as-is", &http(&node, "/../index.html")]).status,
        400
    );
    assert_eq!(
        curl(&["--path-as-is", &http(&node, "/%2e%2e/index.html")]).status,
        400
    );
    assert_eq!(
        curl(&["--path-as-is", &http(&node, "/a%2findex.html")]).status,
        400
    );
    // Paths that name other content directly are just not part of the site.
    for path in [
        "/zones/cluster.com.ec.zone",
        "/www/index.html",
        "/../www/zones/cluster.com.ec.zone",
    ] {
        let r = curl(&["--path-as-is", &http(&node, path)]);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(!r.text().contains("SOA"));
    }
}

#[test]
fn vhosts_by_host_header_and_content_updates() {
    let node = Node::builder()
        .http(
            "[[http.vhost]]\nname = \"intranet.cluster.com.ec\"\naliases = [\"intranet\"]\nroot = \"www-intranet\"",
        )
        .start();
    put_content(
        &node,
        "www-intranet/index.html",
        b"<!doctype html><title>Intranet</title><p>intranet de cluster.com.ec</p>\n",
    );
    put_content(&node, "www-intranet/doc/manual.txt", b"manual interno\n");
    let url = http(&node, "/");
    eventually("the intranet is served", || {
        curl(&["-H", "Host: intranet.cluster.com.ec", &url])
            .text()
            .contains("intranet de cluster.com.ec")
    });
    for host in [
        "intranet.cluster.com.ec",
        "INTRANET.Cluster.com.ec:8080",
        "intranet",
        "intranet.cluster.com.ec.",
    ] {
        let r = curl(&["-H", &format!("Host: {host}"), &url]);
        assert_eq!(r.status, 200, "{host}");
        assert!(r.text().contains("intranet de cluster.com.ec"), "{host}");
    }
    let doc = curl(&["-H", "Host: intranet", &http(&node, "/doc/manual.txt")]);
    assert_eq!(doc.text(), "manual interno\n");
    assert_eq!(
        doc.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // HTTP/2 carries the host in :authority.
    let h2 = curl(&[
        "--http2",
        "--resolve",
        &format!("intranet.cluster.com.ec:{}:127.0.0.1", node.https_port),
        &format!("https://intranet.cluster.com.ec:{}/", node.https_port),
    ]);
    assert_eq!(h2.version, "HTTP/2");
    assert!(h2.text().contains("intranet de cluster.com.ec"));

    // Unknown or absent hosts get the default site; the default site does not see
    // the intranet's files.
    let index = repo_file("index.html");
    for host in ["www.cluster.com.ec", "other.example", "127.0.0.1"] {
        let r = curl(&["-H", &format!("Host: {host}"), &url]);
        assert_eq!(r.body, index, "{host}");
    }
    assert_eq!(curl(&[&http(&node, "/doc/manual.txt")]).status, 404);

    // A changed file is served at once (the cache follows the store).
    put_content(&node, "www/index.html", b"<p>nueva portada</p>\n");
    eventually("the new index is served", || {
        curl(&[&url]).text() == "<p>nueva portada</p>\n"
    });
    let out = node.cli(&["content", "del", "www-intranet/doc/manual.txt"], None);
    common::assert_ok(&out, "content del");
    eventually("the removed file is gone", || {
        curl(&["-H", "Host: intranet", &http(&node, "/doc/manual.txt")]).status == 404
    });
}

#[test]
fn not_found_page_405_and_directory_redirects() {
    let node = Node::start();
    let r = curl(&[&http(&node, "/no-existe.html")]);
    assert_eq!(r.status, 404);
    assert_eq!(r.body, repo_file("404.html"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let h2 = curl(&["--http2", &https(&node, "/falta/")]);
    assert_eq!((h2.status, h2.version.as_str()), (404, "HTTP/2"));
    assert!(h2.text().contains("Página no encontrada"));

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = curl(&["-X", method, &http(&node, "/")]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }

    put_content(&node, "www/docs/index.html", b"<p>documentos</p>\n");
    eventually("the docs are served", || {
        curl(&[&http(&node, "/docs/")]).status == 200
    });
    let r = curl(&[&http(&node, "/docs?x=1")]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    assert_eq!(
        curl(&[&http(&node, "/docs/")]).text(),
        "<p>documentos</p>\n"
    );
    assert_eq!(
        curl(&[&http(&node, "/docs/index.html")]).text(),
        "<p>documentos</p>\n"
    );
    // A directory without index.html is not listed.
    put_content(&node, "www/files/a.txt", b"a\n");
    eventually("a.txt is served", || {
        curl(&[&http(&node, "/files/a.txt")]).status == 200
    });
    assert_eq!(curl(&[&http(&node, "/files/")]).status, 404);
}

#[test]
fn access_log_has_one_combined_format_line_per_request() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("logs/access.log");
    let node = Node::builder()
        .http(&format!("access_log = \"{}\"", log.display()))
        .start();
    curl(&[
        "-A",
        "Prueba/1.0 \"comillas\"",
        "-e",
        "http://referente.example/",
        &http(&node, "/?q=1"),
    ]);
    curl(&[&http(&node, "/no-existe")]);
    curl(&["-I", &http(&node, "/estilo.css")]);
    curl(&["--http2", "-r", "0-9", &https(&node, "/index.html")]);
    curl(&["-X", "POST", &http(&node, "/")]);
    let mut text = String::new();
    eventually("five access-log lines", || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().count() >= 5
    });
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 5, "one line per request:\n{text}");
    // Combined Log Format, checked line by line with Python's re.
    let script = r#"
import re, sys
pat = re.compile(r'^(\S+) (\S+) (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$')
for line in open(sys.argv[1]).read().splitlines():
    m = pat.match(line)
    if not m:
        print("NO MATCH: " + line)
        sys.exit(1)
    print("\t".join([m.group(1), m.group(5), m.group(6), m.group(7), m.group(8), m.group(9)]))
"#;
    let out = common::python(script, &[common::s(&log)]);
    let fields = common::assert_ok(&out, "access log format check");
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('\t').collect()).collect();
    let index_len = repo_file("index.html").len().to_string();
    assert_eq!(
        rows[0],
        [
            "127.0.0.1",
            "GET /?q=1 HTTP/1.1",
            "200",
            index_len.as_str(),
            "http://referente.example/",
            "Prueba/1.0 \\\"comillas\\\""
        ]
    );
    assert_eq!(rows[1][1..3], ["GET /no-existe HTTP/1.1", "404"]);
    assert_eq!(rows[2][1..4], ["HEAD /estilo.css HTTP/1.1", "200", "-"]);
    assert_eq!(rows[3][1..4], ["GET /index.html HTTP/2.0", "206", "10"]);
    assert_eq!(rows[4][1..3], ["POST / HTTP/1.1", "405"]);
}

/// Sends raw bytes and returns what the server answers before closing (or 5 s).
fn raw_exchange(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn malformed_and_slow_requests_are_refused_and_service_goes_on() {
    let node = Node::builder()
        .http("header_timeout_s = 1\nidle_timeout_s = 2\nmax_header_bytes = 8192")
        .start();
    let bad = raw_exchange(node.http_port, b"THIS IS NOT HTTP\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let bad = raw_exchange(node.http_port, b"GET / HTTP/1.1\r\nHost\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let r = raw_exchange(node.http_port, big.as_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");

    // Slowloris: a head trickled byte by byte is cut off header_timeout_s after it
    // began, however steadily it trickles.
    // The server's clock starts when it accepts, so the bound is taken from before
    // the connect (a test thread may be descheduled between two lines on a busy CI).
    let started = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut buf = [0u8; 256];
    let closed_after = loop {
        let wrote = slow.write_all(b"X-A: b\r\n").is_ok();
        let read = slow.read(&mut buf);
        let gone = !wrote
            || matches!(read, Ok(0))
            || matches!(&read, Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        if gone {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a trickled request head was not cut off"
        );
    };
    assert!(
        closed_after >= Duration::from_millis(900),
        "{closed_after:?}"
    );

    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = idle.read_to_end(&mut got);
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "idle keep-alive connection not closed"
    );

    // Meanwhile everyone else is served.
    let r = curl(&[&http(&node, "/")]);
    assert_eq!(r.status, 200);
    let r = curl(&["--http2", &https(&node, "/")]);
    assert_eq!(r.status, 200);
}

#[test]
fn plain_http_redirects_to_https_when_configured() {
    let node = Node::builder().http("redirect_to_https = true").start();
    let r = curl(&[&http(&node, "/estilo.css?v=2")]);
    assert_eq!(r.status, 301);
    let want = format!("https://127.0.0.1:{}/estilo.css?v=2", node.https_port);
    assert_eq!(r.header("location"), Some(want.as_str()));
    let r = curl(&[
        "-H",
        "Host: www.cluster.com.ec:80",
        &http(&node, "/webmail/"),
    ]);
    let want = format!("https://www.cluster.com.ec:{}/webmail/", node.https_port);
    assert_eq!(r.header("location"), Some(want.as_str()));
    // Following it lands on the site over TLS.
    let r = curl(&["-L", &http(&node, "/")]);
    assert_eq!(r.status, 301);
    assert!(r.text().contains("cluster.com.ec"), "{}", r.text());
    let r = curl(&[&https(&node, "/")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, repo_file("index.html"));
}

#[test]
fn webmail_is_mounted_under_its_prefix() {
    let node = Node::start();
    let r = curl(&[&http(&node, "/webmail")]);
    assert!(r.status == 301 || r.status == 308, "{}", r.status);
    assert_eq!(r.header("location"), Some("/webmail/"));
    let r = curl(&[&https(&node, "/webmail/")]);
    assert_ne!(r.status, 404, "/webmail/ reaches the webmail");
    assert_ne!(r.status, 405);
    assert!(!r.text().contains("Página no encontrada"));
    // /webmailx is not the webmail.
    assert_eq!(curl(&[&http(&node, "/webmailx")]).status, 404);
}

#[test]
fn content_publish_makes_the_site_what_a_directory_holds() {
    let node = Node::start();
    let site = node.dir.path().join("site");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>published</h1>").unwrap();
    std::fs::write(site.join("docs/a.txt"), "first").unwrap();
    std::fs::write(site.join(".secret"), "not for the web").unwrap();
    let publish = || {
        let out = node.cli(&["content", "publish", common::s(&site)], None);
        common::assert_ok(&out, "clusterd content publish")
    };
    // The default content's other files go: the site is the directory.
    let first = publish();
    assert!(first.contains("2 stored"), "{first}");
    assert!(first.contains("removed www/"), "{first}");
    eventually("the published index", || {
        curl(&[&http(&node, "/")]).text() == "<h1>published</h1>"
    });
    assert_eq!(curl(&[&http(&node, "/docs/a.txt")]).text(), "first");
    assert_eq!(curl(&[&http(&node, "/.secret")]).status, 404);
    // Again unchanged: nothing is written.
    let again = publish();
    assert!(
        again.contains("0 stored, 0 removed, 2 unchanged"),
        "{again}"
    );
    // A changed file and a removed one.
    std::fs::write(site.join("docs/a.txt"), "second").unwrap();
    std::fs::remove_file(site.join("index.html")).unwrap();
    let third = publish();
    assert!(
        third.contains("1 stored, 1 removed, 0 unchanged"),
        "{third}"
    );
    eventually("the changed file", || {
        curl(&[&http(&node, "/docs/a.txt")]).text() == "second"
    });
    assert_eq!(curl(&[&http(&node, "/index.html")]).status, 404);
    // A directory that does not exist is an error that names it.
    let out = node.cli(&["content", "publish", "/nonexistent/site"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/site"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
