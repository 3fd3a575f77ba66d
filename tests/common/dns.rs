//! A private NSD (Debian's nsd 4.6) for differential tests and the DNS benchmark,
//! and raw DNS message helpers (readiness checks, malformed-packet tests). Every
//! process started here is stopped by PID when its guard drops.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{child_pids, pid_alive, signal, terminate};

/// Zone names and files in `dir` (`NAME.zone`).
pub fn zone_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut zones: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .expect("read zones dir")
        .filter_map(|e| {
            let path = e.expect("dir entry").path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".zone")?
                .to_string();
            Some((name, path))
        })
        .collect();
    zones.sort();
    assert!(!zones.is_empty(), "no *.zone files in {}", dir.display());
    zones
}

// ---------------------------------------------------------------------------------
// NSD harness
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct NsdConfig {
    pub server_count: u32,
    pub minimal_responses: bool,
}

impl Default for NsdConfig {
    fn default() -> Self {
        NsdConfig {
            server_count: 1,
            minimal_responses: false,
        }
    }
}

/// A private NSD on 127.0.0.1:`port`, run in the foreground (`-d`) from a temp dir.
/// Dropping it stops the process it spawned, by PID, and removes the temp dir.
pub struct Nsd {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    out: PathBuf,
    // Declared last: removed after the process has stopped.
    dir: tempfile::TempDir,
}

impl Nsd {
    /// Starts NSD serving every `*.zone` file of `zones`; fails loudly (with NSD's log)
    /// if it does not answer within 10 s. Retries with another port when the port was
    /// taken between choosing and binding it.
    pub fn start(zones: &Path, cfg: &NsdConfig) -> Nsd {
        let mut last = String::new();
        for _ in 0..3 {
            match Nsd::try_start(zones, cfg) {
                Ok(nsd) => return nsd,
                Err(e) => last = e,
            }
        }
        panic!("NSD did not start:\n{last}");
    }

    pub fn try_start(zones: &Path, cfg: &NsdConfig) -> Result<Nsd, String> {
        let dir = tempfile::Builder::new()
            .prefix("clusterd-nsd-")
            .tempdir()
            .expect("temp dir");
        let port = free_udp_tcp_port();
        let d = dir.path();
        let zone_dir = d.join("zones");
        super::copy_dir(zones, &zone_dir);
        let mut conf = format!(
            r#"server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip4: yes
    do-ip6: no
    server-count: {count}
    username: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    verbosity: 1
    hide-version: yes
    hide-identity: yes
    minimal-responses: {minimal}
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
"#,
            d = d.display(),
            count = cfg.server_count,
            minimal = if cfg.minimal_responses { "yes" } else { "no" },
        );
        for (name, file) in zone_files(&zone_dir) {
            let check = Command::new("nsd-checkzone")
                .arg(&name)
                .arg(&file)
                .output()
                .expect("run nsd-checkzone");
            assert!(
                check.status.success(),
                "nsd-checkzone {name} {} failed: {}{}",
                file.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            let _ = write!(
                conf,
                "zone:\n    name: \"{name}\"\n    zonefile: \"{}\"\n    \
                 provide-xfr: 127.0.0.1/32 NOKEY\n",
                file.display()
            );
        }
        let conf_path = d.join("nsd.conf");
        std::fs::write(&conf_path, &conf).expect("write nsd.conf");
        let out = d.join("nsd.out");
        let out_file = std::fs::File::create(&out).expect("nsd.out");
        let child = Command::new("nsd")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().unwrap())
            .stderr(out_file)
            .spawn()
            .map_err(|e| format!("spawn nsd: {e}"))?;
        let mut nsd = Nsd {
            port,
            child: Some(child),
            log: d.join("nsd.log"),
            out,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ready once it answers for cluster.com.ec, or the first zone when that is absent.
        let zones = zone_files(&zone_dir);
        let apex = zones
            .iter()
            .find(|(n, _)| n == "cluster.com.ec")
            .unwrap_or(&zones[0])
            .0
            .clone();
        let apex = apex.as_str();
        loop {
            if !nsd.alive() {
                return Err(format!(
                    "nsd exited during start-up (port {port}); config:\n{conf}\n{}",
                    nsd.log_text()
                ));
            }
            if soa_answered(port, apex, Duration::from_millis(200)) {
                return Ok(nsd);
            }
            if Instant::now() > deadline {
                let text = nsd.log_text();
                drop(nsd);
                panic!(
                    "nsd did not answer `{apex} SOA` on 127.0.0.1:{port} within 10 s; \
                     config:\n{conf}\n{text}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        format!(
            "--- nsd log ({})\n{}\n--- nsd stdout/stderr\n{}",
            self.dir.path().display(),
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(&self.out).unwrap_or_default()
        )
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // NSD's main process stops its server and xfrd children on SIGTERM.
        let children = child_pids(pid);
        terminate(&mut child, Duration::from_secs(10));
        // Children it spawned that outlived it (only after a SIGKILL): by PID too.
        for c in children {
            if pid_alive(c) {
                signal(c, "-KILL");
            }
        }
    }
}

/// Writes `dir/NAME.zone`: SOA and NS at the apex (the name server `ns.NAME` on
/// 127.0.0.1), then `records`, zone-file lines relative to the origin (each line is
/// trimmed, so every record names its owner).
pub fn write_zone(dir: &Path, name: &str, records: &str) {
    std::fs::create_dir_all(dir).expect("create zones dir");
    let records: Vec<&str> = records
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let records = records.join("\n");
    let text = format!(
        "$ORIGIN {name}.\n$TTL 60\n\
         @ IN SOA ns.{name}. hostmaster.{name}. ( 1 3600 900 1209600 60 )\n\
         @ IN NS ns.{name}.\n\
         ns IN A 127.0.0.1\n\
         {records}\n"
    );
    std::fs::write(dir.join(format!("{name}.zone")), text).expect("write zone");
}

/// A port free for both TCP and UDP on 127.0.0.1 (both bound, then released).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1");
}

// ---------------------------------------------------------------------------------
// Raw DNS messages (readiness checks and the malformed-packet tests)
// ---------------------------------------------------------------------------------

pub const FLAG_QR: u16 = 0x8000;
pub const FLAG_RD: u16 = 0x0100;
pub const RCODE_FORMERR: u16 = 1;
pub const TYPE_A: u16 = 1;
pub const TYPE_SOA: u16 = 6;

pub fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

pub fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut p = header(id, FLAG_RD, 1, 0, 0, 0);
    p.extend(encode_name(name));
    p.extend(qtype.to_be_bytes());
    p.extend(1u16.to_be_bytes());
    p
}

/// An OPT pseudo-record (root owner, 1232-byte buffer, no options).
pub fn opt_record() -> Vec<u8> {
    let mut o = vec![0u8];
    o.extend(41u16.to_be_bytes());
    o.extend(1232u16.to_be_bytes());
    o.extend(0u32.to_be_bytes());
    o.extend(0u16.to_be_bytes());
    o
}

pub fn udp_exchange(port: u16, packet: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.connect(("127.0.0.1", port)).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    sock.send(packet).ok()?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// What came back on a TCP connection after sending one message.
#[derive(Debug)]
pub enum TcpOutcome {
    Reply(Vec<u8>),
    /// The server closed (or reset) the connection without a reply.
    Closed,
    /// Nothing within the timeout.
    Silent,
    /// Part of a reply, then EOF or the timeout.
    Partial(usize),
    /// Could not connect.
    NoConnect(String),
}

/// Sends raw bytes (already framed or not: `frame` adds the 2-byte length) and reads
/// one framed reply.
pub fn tcp_exchange(port: u16, bytes: &[u8], frame: bool, timeout: Duration) -> TcpOutcome {
    let mut s = match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout) {
        Ok(s) => s,
        Err(e) => return TcpOutcome::NoConnect(e.to_string()),
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let mut msg = Vec::with_capacity(bytes.len() + 2);
    if frame {
        msg.extend((bytes.len() as u16).to_be_bytes());
    }
    msg.extend_from_slice(bytes);
    if s.write_all(&msg).is_err() {
        return TcpOutcome::Closed;
    }
    read_framed(&mut s, &mut Vec::new(), timeout)
}

/// Reads one length-prefixed message; `buf` carries bytes already read past the
/// previous message (pipelined replies can arrive in one segment).
pub fn read_framed(s: &mut TcpStream, buf: &mut Vec<u8>, timeout: Duration) -> TcpOutcome {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    let incomplete = |buf: &Vec<u8>, nothing: TcpOutcome| {
        if buf.is_empty() {
            nothing
        } else {
            TcpOutcome::Partial(buf.len())
        }
    };
    loop {
        if buf.len() >= 2 {
            let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            if buf.len() >= 2 + len {
                let msg = buf[2..2 + len].to_vec();
                buf.drain(..2 + len);
                return TcpOutcome::Reply(msg);
            }
        }
        if Instant::now() > deadline {
            return incomplete(buf, TcpOutcome::Silent);
        }
        match s.read(&mut chunk) {
            Ok(0) => return incomplete(buf, TcpOutcome::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return incomplete(buf, TcpOutcome::Silent);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return incomplete(buf, TcpOutcome::Closed),
        }
    }
}

pub fn rcode(msg: &[u8]) -> u16 {
    u16::from_be_bytes([msg[2], msg[3]]) & 0x000f
}

/// Whether a SOA query for `zone` gets NOERROR with AA over UDP.
pub fn soa_answered(port: u16, zone: &str, timeout: Duration) -> bool {
    let id = 0x5a5a;
    udp_exchange(port, &query(id, zone, TYPE_SOA), timeout).is_some_and(|r| {
        r.len() >= 12
            && r[..2] == id.to_be_bytes()
            && r[2] & 0x80 != 0
            && r[2] & 0x04 != 0
            && rcode(&r) == 0
    })
}

/// Waits (bounded) until the server answers `zone SOA` authoritatively.
pub fn wait_dns(port: u16, zone: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if soa_answered(port, zone, Duration::from_millis(200)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
