//! Webmail inbox-render benchmark: how long the server takes to render the first page
//! of a 10,000-message folder, per sort order.
//!
//! `cargo bench --bench webmail` (cargo builds the clusterd binary with the bench
//! profile and passes its path in `CARGO_BIN_EXE_clusterd`). It starts a node, fills
//! INBOX over SMTP with `BENCH_WEBMAIL_MESSAGES` (default 10000) real messages of
//! varied senders, subjects, dates and sizes (0.3-60 KB, some with a base64
//! attachment) through 16 parallel sessions, logs into the webmail over HTTP (GET the
//! form for its CSRF token, POST it), then GETs `/webmail/mailbox/INBOX` (first page)
//! for each sort key (date, from, subject, size) and a deep page, `BENCH_WEBMAIL_ROUNDS`
//! (default 50) times each on one keep-alive connection, and prints min/median/p95/max
//! as seen by the client on loopback (which includes the HTTP round trip). When the
//! webmail sends a `Server-Timing` header its figures are printed too. The first,
//! cold, request per sort is reported on its own. Target: median under 50 ms.
//! `BENCH_WEBMAIL_DIR` puts the node's state elsewhere (default: the temp dir).
//!
//! Every process started here is stopped by PID (and the temp dir removed) when the
//! guards drop, also when a step fails.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Node;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SESSIONS: usize = 16;

fn main() {
    let n: usize = env_num("BENCH_WEBMAIL_MESSAGES", 10_000);
    let rounds: usize = env_num("BENCH_WEBMAIL_ROUNDS", 50);
    let parent = std::env::var_os("BENCH_WEBMAIL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("clusterd-bench-webmail-")
        .tempdir_in(&parent)
        .expect("temp dir");
    let node = Node::builder().log("warn").temp_in(tmp.path()).start();
    node.add_user("bench", "benchpw");

    let start = Instant::now();
    fill(node.smtp_port, n);
    let secs = start.elapsed().as_secs_f64();
    let got = common::imap_count(node.imap_port, "bench", "benchpw", "INBOX");
    assert_eq!(got, n, "INBOX holds {got} messages, expected {n}");
    println!(
        "filled INBOX with {n} messages over SMTP in {secs:.1} s ({:.0} msg/s, {SESSIONS} sessions)",
        n as f64 / secs
    );

    let mut http = Http::connect(node.http_port);
    let cookies = http.login("bench", "benchpw");
    println!("logged in over HTTP; {rounds} renders per case, client-side time on loopback");

    let cases = [
        ("date (default)", "/webmail/mailbox/INBOX".to_string()),
        ("from", "/webmail/mailbox/INBOX?sort=from".to_string()),
        ("subject", "/webmail/mailbox/INBOX?sort=subject".to_string()),
        ("size", "/webmail/mailbox/INBOX?sort=size".to_string()),
        (
            "date asc",
            "/webmail/mailbox/INBOX?sort=date&order=asc".to_string(),
        ),
        (
            "date page 100",
            "/webmail/mailbox/INBOX?page=100".to_string(),
        ),
    ];
    let mut medians = Vec::new();
    for (name, path) in &cases {
        // The first render (summary cache possibly cold for this order).
        let t = Instant::now();
        let first = http.get(path, &cookies);
        let cold = t.elapsed();
        assert_eq!(first.status, 200, "GET {path}: {}", first.status);
        let rows = first.body.matches("class=\"msg").count();
        assert!(rows > 0, "GET {path}: no message rows in the page");
        let mut times = Vec::with_capacity(rounds);
        let mut server = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let r = http.get(path, &cookies);
            times.push(t.elapsed());
            assert_eq!(r.status, 200, "GET {path}: {}", r.status);
            if let Some(st) = r.server_timing_ms() {
                server.push(st);
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let med = ms(times[times.len() / 2]);
        medians.push((name, med));
        println!(
            "{name:<15} {rows:>3} rows  first {:>7.1} ms | min {:>6.1}  median {:>6.1}  p95 {:>6.1}  max {:>6.1} ms  ({} KB)",
            ms(cold),
            ms(times[0]),
            med,
            ms(times[(times.len() * 95).div_ceil(100).saturating_sub(1)]),
            ms(times[times.len() - 1]),
            first.body.len() / 1024,
        );
        if !server.is_empty() {
            server.sort_by(f64::total_cmp);
            println!(
                "{:<15} Server-Timing: min {:.1}  median {:.1}  p95 {:.1} ms",
                "",
                server[0],
                server[server.len() / 2],
                server[(server.len() * 95).div_ceil(100).saturating_sub(1)]
            );
        }
    }
    if !first_has_server_timing(&mut http, &cookies) {
        println!(
            "(no Server-Timing header from the webmail: times above include the loopback round trip)"
        );
    }
    for (name, med) in medians {
        println!(
            "target median < 50 ms: {name}: {med:.1} ms {}",
            if med < 50.0 { "OK" } else { "OVER" }
        );
    }
    drop(http);
    drop(node);
    drop(tmp);
}

fn first_has_server_timing(http: &mut Http, cookies: &str) -> bool {
    http.get("/webmail/mailbox/INBOX", cookies)
        .header("server-timing")
        .is_some()
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ the messages

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ana", "Bruno", "Carla", "Diego", "Elena", "Fernando", "Gabriela", "Héctor", "Inés", "Jorge",
    "Karina", "Luis", "María", "Nicolás", "Olga", "Pablo", "Quique", "Rosa", "Sofía", "Tomás",
    "Úrsula", "Víctor", "Walter", "Ximena", "Yolanda", "Zoe",
];
const LAST: &[&str] = &[
    "Aguirre",
    "Benítez",
    "Castro",
    "Delgado",
    "Espinoza",
    "Flores",
    "García",
    "Herrera",
    "Ibarra",
    "Jaramillo",
    "López",
    "Mora",
    "Núñez",
    "Ortiz",
    "Paredes",
    "Quintero",
    "Ramírez",
    "Salazar",
    "Torres",
    "Vera",
    "Zambrano",
];
const DOMAINS: &[&str] = &[
    "example.org",
    "correo.example.net",
    "universidad.example.edu",
    "proveedor.example.com",
    "cluster.com.ec",
];
const WORDS: &[&str] = &[
    "informe",
    "reunión",
    "factura",
    "proyecto",
    "presupuesto",
    "servidor",
    "respaldo",
    "calendario",
    "vacaciones",
    "pedido",
    "contrato",
    "revisión",
    "urgente",
    "mensual",
    "propuesta",
    "actualización",
    "incidente",
    "red",
    "correo",
    "acta",
];

/// One message: varied sender, subject, date (two years back) and size.
fn message(rng: &mut Rng, i: usize) -> String {
    let first = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let domain = rng.pick(DOMAINS);
    let local = format!("{}.{}", first, last)
        .to_lowercase()
        .replace(['á', 'é', 'í', 'ó', 'ú', 'Ú'], "x")
        .replace('ñ', "n");
    let prefix = match rng.next() % 6 {
        0 => "Re: ",
        1 => "RV: ",
        _ => "",
    };
    let subject = format!(
        "{prefix}{} {} {} #{i}",
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.pick(WORDS)
    );
    let ts = 1_730_000_000 + (rng.next() % (2 * 365 * 86_400)) as i64;
    let date = chrono::DateTime::from_timestamp(ts, 0)
        .expect("timestamp")
        .format("%a, %d %b %Y %H:%M:%S +0000");
    // Sizes: mostly small, some medium, a few large with an attachment.
    let body_len = match rng.next() % 10 {
        0..=5 => 300 + (rng.next() % 2_000) as usize,
        6..=8 => 4_000 + (rng.next() % 12_000) as usize,
        _ => 20_000 + (rng.next() % 40_000) as usize,
    };
    let mut text = String::with_capacity(body_len + 100);
    while text.len() < body_len {
        text.push_str(rng.pick(WORDS));
        text.push(if rng.next().is_multiple_of(12) {
            '\n'
        } else {
            ' '
        });
    }
    let from = if domain == "cluster.com.ec" {
        format!("{first} {last} <{local}@{domain}>")
    } else {
        format!("\"{first} {last}\" <{local}@{domain}>")
    };
    let headers = format!(
        "From: {from}\r\nTo: bench@cluster.com.ec\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <bench-{i}@{domain}>\r\nMIME-Version: 1.0\r\n"
    );
    let text = text.replace('\n', "\r\n");
    if body_len > 20_000 {
        let mut att = String::new();
        let raw: Vec<u8> = (0..body_len / 2).map(|_| rng.next() as u8).collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        for chunk in b64.as_bytes().chunks(76) {
            att.push_str(std::str::from_utf8(chunk).unwrap());
            att.push_str("\r\n");
        }
        format!(
            "{headers}Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
             {text}\r\n--b{i}\r\nContent-Type: application/octet-stream; name=\"datos-{i}.bin\"\r\n\
             Content-Disposition: attachment; filename=\"datos-{i}.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{att}--b{i}--\r\n"
        )
    } else {
        format!(
            "{headers}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
        )
    }
}

/// Delivers `n` messages through `SESSIONS` parallel SMTP sessions (several
/// transactions per session), failing on any non-2xx/3xx reply.
fn fill(port: u16, n: usize) {
    let threads: Vec<_> = (0..SESSIONS)
        .map(|s| {
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((s as u64 + 1) * 0x1000_0001));
                let stream = TcpStream::connect(("127.0.0.1", port)).expect("smtp connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                reply(&mut r, "greeting");
                w.write_all(b"EHLO bench.example\r\n").unwrap();
                reply(&mut r, "EHLO");
                for i in (s..n).step_by(SESSIONS) {
                    let msg = message(&mut rng, i);
                    let from = format!("MAIL FROM:<sender{i}@bench.example>\r\n");
                    w.write_all(from.as_bytes()).unwrap();
                    reply(&mut r, "MAIL");
                    w.write_all(b"RCPT TO:<bench@cluster.com.ec>\r\n").unwrap();
                    reply(&mut r, "RCPT");
                    w.write_all(b"DATA\r\n").unwrap();
                    reply(&mut r, "DATA");
                    // Dot-stuffing: no generated line starts with '.', but be safe.
                    let stuffed = msg.replace("\r\n.", "\r\n..");
                    w.write_all(stuffed.as_bytes()).unwrap();
                    w.write_all(b".\r\n").unwrap();
                    reply(&mut r, "end of DATA");
                }
                w.write_all(b"QUIT\r\n").unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("SMTP session thread");
    }
}

/// Reads one (possibly multi-line) SMTP reply; panics unless it is 2xx or 3xx.
fn reply(r: &mut impl BufRead, what: &str) {
    loop {
        let mut line = String::new();
        let got = r.read_line(&mut line).expect("smtp read");
        assert!(got > 0, "SMTP connection closed waiting for {what}");
        assert!(
            line.starts_with('2') || line.starts_with('3'),
            "SMTP {what}: {line}"
        );
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

// ------------------------------------------------------------- a tiny HTTP client

struct Http {
    port: u16,
    r: BufReader<TcpStream>,
    w: TcpStream,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The sum of the `dur=` values of a Server-Timing header, in ms.
    fn server_timing_ms(&self) -> Option<f64> {
        let v = self.header("server-timing")?;
        let total: f64 = v
            .split([',', ';'])
            .filter_map(|p| p.trim().strip_prefix("dur=")?.parse::<f64>().ok())
            .sum();
        Some(total)
    }

    fn cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next().map(|c| c.trim().to_string()))
            .collect()
    }
}

impl Http {
    fn connect(port: u16) -> Http {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("http connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_nodelay(true).unwrap();
        Http {
            port,
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn request(&mut self, method: &str, path: &str, cookies: &str, body: Option<&str>) -> Resp {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: clusterd-bench\r\n",
            self.port
        );
        if !cookies.is_empty() {
            req.push_str(&format!("Cookie: {cookies}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        self.w.write_all(req.as_bytes()).expect("http write");
        self.read_response()
    }

    fn get(&mut self, path: &str, cookies: &str) -> Resp {
        self.request("GET", path, cookies, None)
    }

    fn read_response(&mut self) -> Resp {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("http status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad HTTP status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).expect("http header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(len, 0);
            self.r.read_exact(&mut body).expect("http body");
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).expect("chunk size");
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .expect("chunk size");
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).expect("chunk");
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Logs in through the form; returns the Cookie header value to send.
    fn login(&mut self, user: &str, password: &str) -> String {
        let form = self.get("/webmail/login", "");
        assert_eq!(form.status, 200, "GET /webmail/login: {}", form.status);
        let csrf = form
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("csrf field in the login form")
            .to_string();
        let mut jar = form.cookies();
        let body = format!("csrf={}&user={user}&password={password}", urlencode(&csrf));
        let resp = self.request("POST", "/webmail/login", &jar.join("; "), Some(&body));
        assert_eq!(
            resp.status, 303,
            "login failed ({}): {}",
            resp.status, resp.body
        );
        for c in resp.cookies() {
            let name = c.split('=').next().unwrap_or("").to_string();
            jar.retain(|j| !j.starts_with(&format!("{name}=")));
            jar.push(c);
        }
        assert!(
            jar.iter().any(|c| c.starts_with("clusterd_session=")),
            "no session cookie after login: {jar:?}"
        );
        jar.join("; ")
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
