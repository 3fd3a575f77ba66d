//! A private Postfix instance (Debian's postfix 3.7) for tests and benchmarks: its own
//! config, queue and data directories under a given dir, listening on one loopback
//! address:port, no DNS. Either it delivers mail for given domains to one virtual
//! Maildir (every recipient into the same box), or it relays everything to a given
//! host:port. Needs root (its daemons drop to the `postfix` user). Dropping it stops
//! the instance and waits for its master process, by PID. `smtp_source` drives a
//! server with Postfix's load generator.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the instance does with mail it accepts.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Delivers mail for these domains to the Maildir (fsync per delivery); relays
    /// nothing else.
    Deliver(Vec<String>),
    /// Relays everything from 127.0.0.0/8 to this "IP:PORT" (no MX lookup).
    Relay(SocketAddr),
}

pub struct Postfix {
    pub etc: PathBuf,
    pub queue: PathBuf,
    /// The Maildir every delivered message lands in (`new/`).
    pub maildir: PathBuf,
    pub log: PathBuf,
    pub addr: SocketAddr,
    pub port: u16,
    master_pid: Option<u32>,
}

impl Postfix {
    /// The benchmark's instance: 127.0.0.1 on a free port, delivering `bench.example`.
    pub fn start(dir: &Path) -> Postfix {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, super::free_port()));
        Postfix::start_with(dir, addr, Mode::Deliver(vec!["bench.example".into()]))
    }

    /// An instance listening on `addr` with state under `dir` (created).
    pub fn start_with(dir: &Path, addr: SocketAddr, mode: Mode) -> Postfix {
        super::require_tool("postfix");
        let etc = dir.join("etc");
        let queue = dir.join("queue");
        let data = dir.join("data");
        let vmail = dir.join("vmail");
        for d in [&etc, &queue, &data, &vmail] {
            std::fs::create_dir_all(d).unwrap();
        }
        let id = |flag: &str, name: &str| -> String {
            let out = Command::new("id").args([flag, name]).output().unwrap();
            assert!(out.status.success(), "no `{name}` user/group for Postfix");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (uid, gid) = (id("-u", "postfix"), id("-g", "postfix"));
        for d in [&vmail, &data] {
            let chown = Command::new("chown")
                .args([format!("{uid}:{gid}"), d.display().to_string()])
                .status()
                .unwrap();
            assert!(chown.success(), "chown {} (needs root)", d.display());
        }
        let routing = match &mode {
            Mode::Deliver(domains) => format!(
                "smtpd_recipient_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {vmail}
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
",
                domains = domains.join(", "),
                vmail = vmail.display(),
            ),
            Mode::Relay(to) => format!(
                "smtpd_recipient_restrictions = permit_mynetworks, reject
relayhost = [{ip}]:{port}
",
                ip = to.ip(),
                port = to.port()
            ),
        };
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = lab.localdomain
mydestination =
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
smtp_host_lookup = native
alias_maps =
alias_database =
{routing}default_process_limit = 100
in_flow_delay = 0
maillog_file = {log}
maillog_file_prefixes = {dir}
",
            dir = dir.display(),
            queue = queue.display(),
            data = data.display(),
            log = dir.join("maillog").display(),
        );
        let master_cf = format!(
            "{addr} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
pickup    unix  n - n 60 1 pickup
"
        );
        std::fs::write(etc.join("main.cf"), main_cf).unwrap();
        std::fs::write(etc.join("master.cf"), master_cf).unwrap();
        let mut pf = Postfix {
            etc,
            queue,
            maildir: vmail.join("box"),
            log: dir.join("maillog"),
            addr,
            port: addr.port(),
            master_pid: None,
        };
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&pf.etc)
            .arg("start")
            .output()
            .expect("run postfix");
        // Read the PID before checking, so a half-started instance is still stopped.
        pf.master_pid = pf.read_pid();
        assert!(
            out.status.success(),
            "postfix start failed: {}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&pf.log).unwrap_or_default()
        );
        pf.wait_listening();
        pf.master_pid = pf.read_pid();
        assert!(pf.master_pid.is_some(), "no Postfix master.pid");
        pf
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix did not listen on {} within 30 s; log:\n{}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.queue.join("pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The number of messages in the Maildir.
    pub fn delivered(&self) -> usize {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits until the Maildir holds `n` messages or the time is up; returns the count.
    pub fn wait_delivered(&self, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let count = self.delivered();
            if count >= n || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The delivered messages, oldest first (by Maildir file name: time-based).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let Ok(dir) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.etc)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = self.master_pid.or_else(|| self.read_pid()) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while super::pid_alive(pid) {
                if Instant::now() > deadline {
                    super::signal(pid, "-KILL");
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Runs Postfix's `smtp-source` against 127.0.0.1:`port`: `sessions` parallel
/// sessions, `n` messages of `size` bytes from `from` to `to`. Returns the wall time in
/// seconds (the last `250` to DATA); fails on any error reply.
pub fn smtp_source(port: u16, sessions: u32, n: u32, size: u32, from: &str, to: &str) -> f64 {
    super::require_tool("smtp-source");
    let start = Instant::now();
    let out = Command::new("smtp-source")
        .args(["-s", &sessions.to_string(), "-m", &n.to_string()])
        .args(["-l", &size.to_string(), "-f", from, "-t", to])
        .args(["-M", "client.bench.example"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .expect("run smtp-source");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "smtp-source against port {port} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}
