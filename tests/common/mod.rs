//! Shared harness for integration tests: starts the real `clusterd` binary on free
//! loopback ports with a temporary data directory, and runs real clients.
//! Every process it starts is stopped by PID when the `Node` is dropped.

#![allow(dead_code)]

pub mod dns;
pub mod dovecot;
pub mod fake_smtp;
pub mod postfix;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clusterd"))
}

/// A process's peak and current resident set (VmHWM, VmRSS) in MB, from /proc.
pub fn rss_mb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{key} missing in /proc/{pid}/status"))
    };
    (kb("VmHWM:") / 1024, kb("VmRSS:") / 1024)
}

/// A number from the environment (a benchmark's size or duration), or `default`.
pub fn env_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs one mode of `benches/load.py` (the benchmarks' imaplib and urllib clients)
/// against a loopback port; returns its JSON line, panics with its error if it fails.
pub fn load_py(mode: &str, port: u16, user: &str, password: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([mode, &port.to_string(), user, password])
        .args(args)
        .output()
        .expect("run python3 benches/load.py");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "load.py {mode} against port {port} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A free TCP port on 127.0.0.1 (bind to 0 and release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// Fails the test loudly when a client program the test needs is missing.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "required tool `{name}` is not installed (.ci/run installs it)"
    );
}

/// The repository's zones/ directory.
pub fn repo_zones_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zones")
}

/// Copies the files of `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

#[derive(Default, Clone)]
pub struct Builder {
    node: String,
    domain: String,
    smtp: String,
    imap: String,
    dns: String,
    http: String,
    webmail: String,
    outbound: String,
    extra: String,
    /// `[domain] local_domains`, replacing the default list.
    local_domains: Option<Vec<String>>,
    /// RUST_LOG for the node (default "info").
    log_filter: Option<String>,
    /// Where the node's temp dir goes (default: the system temp dir).
    parent_dir: Option<PathBuf>,
    name: Option<String>,
    /// Extra environment variables for the node's process.
    envs: Vec<(String, String)>,
}

impl Builder {
    /// Extra `key = value` lines for `[node]`.
    pub fn node(mut self, lines: &str) -> Self {
        self.node.push_str(lines);
        self.node.push('\n');
        self
    }
    /// Extra lines for `[domain]` (replacing the default aliases needs `aliases = {...}`).
    pub fn domain(mut self, lines: &str) -> Self {
        self.domain.push_str(lines);
        self.domain.push('\n');
        self
    }
    /// Extra lines for `[smtp]`.
    pub fn smtp(mut self, lines: &str) -> Self {
        self.smtp.push_str(lines);
        self.smtp.push('\n');
        self
    }
    /// Extra lines for `[imap]`.
    pub fn imap(mut self, lines: &str) -> Self {
        self.imap.push_str(lines);
        self.imap.push('\n');
        self
    }
    /// Extra lines for `[dns]` (the listener is always on a free loopback port).
    pub fn dns(mut self, lines: &str) -> Self {
        self.dns.push_str(lines);
        self.dns.push('\n');
        self
    }
    /// Extra lines for `[http]` (HTTP and HTTPS always listen on free loopback ports).
    pub fn http(mut self, lines: &str) -> Self {
        self.http.push_str(lines);
        self.http.push('\n');
        self
    }

    /// Extra lines for `[webmail]`.
    pub fn webmail(mut self, lines: &str) -> Self {
        self.webmail.push_str(lines);
        self.webmail.push('\n');
        self
    }

    /// Extra lines for `[outbound]`. Unless they name `resolvers`, the node's DNS
    /// look-ups for outbound mail go to a closed loopback port (127.0.0.1:9), so a
    /// test never resolves a real name: mail for other domains stays queued,
    /// deferred.
    pub fn outbound(mut self, lines: &str) -> Self {
        self.outbound.push_str(lines);
        self.outbound.push('\n');
        self
    }

    /// Replaces `[domain] local_domains` (default: cluster.com.ec and the node names).
    pub fn local_domains(mut self, domains: &[&str]) -> Self {
        self.local_domains = Some(domains.iter().map(|d| d.to_string()).collect());
        self
    }

    /// Extra whole sections appended at the end.
    pub fn extra(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }
    /// The node's log filter (RUST_LOG), e.g. "warn" for benchmarks.
    pub fn log(mut self, filter: &str) -> Self {
        self.log_filter = Some(filter.into());
        self
    }
    /// Puts the node's data under `parent` instead of the system temp dir.
    pub fn temp_in(mut self, parent: &Path) -> Self {
        self.parent_dir = Some(parent.to_path_buf());
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }
    /// An environment variable for the node's process (e.g. systemd's NOTIFY_SOCKET).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts the node. Ports are picked free but not held, so another test may take
    /// one before the node binds it: then the start is retried with fresh ports.
    pub fn start(self) -> Node {
        let mut last = String::new();
        for _ in 0..3 {
            match self.try_start() {
                Ok(node) => return node,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("clusterd exited during start-up; log:\n{log}"),
            }
        }
        panic!("clusterd could not bind its ports in 3 attempts; last log:\n{last}");
    }

    fn try_start(&self) -> Result<Node, String> {
        let dir = tempfile::Builder::new()
            .prefix("clusterd-test-")
            .tempdir_in(self.parent_dir.clone().unwrap_or_else(std::env::temp_dir))
            .expect("temp dir");
        let mut node = Node {
            smtp_port: free_port(),
            submission_port: free_port(),
            submissions_port: free_port(),
            imap_port: free_port(),
            imaps_port: free_port(),
            dns_port: free_port(),
            http_port: free_port(),
            https_port: free_port(),
            log_filter: self.log_filter.clone().unwrap_or_else(|| "info".into()),
            envs: self.envs.clone(),
            config: dir.path().join("clusterd.toml"),
            control_socket: dir.path().join("control.sock"),
            data_dir: dir.path().join("data"),
            zones_dir: dir.path().join("zones"),
            log: dir.path().join("clusterd.log"),
            dir,
            child: None,
        };
        let has_aliases = self.domain.contains("aliases");
        let text = format!(
            r#"[node]
name = "{name}"
data_dir = "{data}"
control_socket = "{sock}"
{node_extra}
[domain]
name = "cluster.com.ec"
local_domains = {local_domains}
{aliases}
{domain_extra}
[smtp]
listen = ["127.0.0.1:{smtp}"]
submission_listen = ["127.0.0.1:{sub}"]
submissions_listen = ["127.0.0.1:{subs}"]
{smtp_extra}
[imap]
listen = ["127.0.0.1:{imap}"]
tls_listen = ["127.0.0.1:{imaps}"]
{imap_extra}
[dns]
{dns_listen}
{dns_extra}
[http]
listen = ["127.0.0.1:{http}"]
https_listen = ["127.0.0.1:{https}"]
{http_extra}
[webmail]
{webmail_extra}
[outbound]
{outbound_extra}
{extra}"#,
            name = self.name.as_deref().unwrap_or("clusternodo1"),
            data = node.data_dir.display(),
            sock = node.control_socket.display(),
            node_extra = self.node,
            aliases = if has_aliases {
                ""
            } else {
                r#"aliases = { postmaster = "sistemas", root = "sistemas", abuse = "sistemas" }"#
            },
            local_domains = match &self.local_domains {
                Some(list) => format!("{list:?}"),
                None => r#"["cluster.com.ec", "clusternodo1.cluster.com.ec", "clusternodo2.cluster.com.ec"]"#
                    .to_string(),
            },
            domain_extra = self.domain,
            smtp = node.smtp_port,
            sub = node.submission_port,
            subs = node.submissions_port,
            smtp_extra = if self.smtp.contains("require_resolvable_sender") {
                self.smtp.clone()
            } else {
                format!("require_resolvable_sender = false\n{}", self.smtp)
            },
            imap = node.imap_port,
            imaps = node.imaps_port,
            imap_extra = self.imap,
            // A test that sets its own listen address or zones keeps them.
            dns_listen = [
                (!self.dns.contains("listen"))
                    .then(|| format!("listen = [\"127.0.0.1:{}\"]", node.dns_port)),
                (!self.dns.contains("zones_dir"))
                    .then(|| format!("zones_dir = \"{}\"", node.zones_dir.display())),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n"),
            dns_extra = self.dns,
            http = node.http_port,
            https = node.https_port,
            http_extra = self.http,
            webmail_extra = self.webmail,
            outbound_extra = if self.outbound.contains("resolvers") {
                self.outbound.clone()
            } else {
                format!("resolvers = [\"127.0.0.1:9\"]\n{}", self.outbound)
            },
            extra = self.extra,
        );
        std::fs::write(&node.config, text).expect("write config");
        copy_dir(&repo_zones_dir(), &node.zones_dir);
        node.spawn();
        node.wait_ready()?;
        Ok(node)
    }
}

/// A running node.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub control_socket: PathBuf,
    pub log: PathBuf,
    pub smtp_port: u16,
    pub submission_port: u16,
    pub submissions_port: u16,
    pub imap_port: u16,
    pub imaps_port: u16,
    /// UDP and TCP.
    pub dns_port: u16,
    pub http_port: u16,
    pub https_port: u16,
    /// A copy of the repository's zones/ the node serves (tests may edit it).
    pub zones_dir: PathBuf,
    log_filter: String,
    envs: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A node with the test defaults.
    pub fn start() -> Node {
        Builder::default().start()
    }

    pub fn bin(&self) -> PathBuf {
        bin()
    }

    /// Starts the process and waits until it serves; panics if it does not.
    fn launch(&mut self) {
        self.spawn();
        if let Err(log) = self.wait_ready() {
            panic!("clusterd exited during start-up; log:\n{log}");
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", &self.log_filter)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start clusterd");
        self.child = Some(child);
    }

    /// Waits (bounded) until the SMTP and IMAP ports and the control socket answer.
    /// Waits until the node serves; Err(its log) if the process exited first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status})\n{}", self.log_text()));
            }
            let up = [self.smtp_port, self.imap_port]
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
                && std::os::unix::net::UnixStream::connect(&self.control_socket).is_ok();
            if up {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "clusterd did not become ready in 30 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops the node with SIGTERM (SIGKILL after 10 s) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Kills the node with SIGKILL (a crash) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs `clusterd ARGS --config F` and returns its output.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--config").arg(&self.config);
        run_with_stdin(cmd, stdin)
    }

    /// Adds an account through the running node's control socket.
    pub fn add_user(&self, name: &str, password: &str) {
        let out = self.cli(
            &["user", "add", name, "--full-name", name, "--password-stdin"],
            Some(&format!("{password}\n")),
        );
        assert!(
            out.status.success(),
            "user add {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The files in the node's `blobs/tmp` (bodies being written) with their sizes.
    pub fn spool_files(&self) -> Vec<(PathBuf, u64)> {
        std::fs::read_dir(self.data_dir.join("blobs/tmp"))
            .expect("blobs/tmp")
            .map(|e| {
                let e = e.expect("dir entry");
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                (e.path(), len)
            })
            .collect()
    }
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; whether it held.
pub fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a child we started: SIGTERM, then SIGKILL if it is still there after
/// `grace`; always reaped.
pub fn terminate(child: &mut Child, grace: Duration) {
    signal(child.id(), "-TERM");
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
}

/// Sends `sig` (e.g. "-TERM") to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether the process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(!s.rsplit_once(") ")?.1.starts_with('Z')))
        .unwrap_or(false)
}

/// PIDs whose parent is `parent` (from /proc).
pub fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: u32 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// Runs a command with optional stdin text, capturing output.
pub fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn command");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("wait for command")
}

/// Runs a Python 3 script (given as text) with arguments; returns its output.
pub fn python(script: &str, args: &[&str]) -> Output {
    require_tool("python3");
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    run_with_stdin(cmd, None)
}

/// Asserts that a command succeeded, printing its output otherwise.
pub fn assert_ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A directory path as &str (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The number of messages in `mailbox` of `user`, by IMAP STATUS on 127.0.0.1:`port`.
pub fn imap_count(port: u16, user: &str, password: &str, mailbox: &str) -> usize {
    use std::io::{BufRead, BufReader, Read};
    let s = TcpStream::connect(("127.0.0.1", port)).expect("imap connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    w.write_all(
        format!("a LOGIN {user} {password}\r\nb STATUS {mailbox} (MESSAGES)\r\nc LOGOUT\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut all = String::new();
    let _ = r.read_to_string(&mut all);
    all.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("* STATUS ")?;
            let n = rest.split("MESSAGES ").nth(1)?;
            n.trim_end_matches(')').trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no STATUS in IMAP reply: {all}"))
}
