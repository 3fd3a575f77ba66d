//! The two-node lab: the reference deployment of ARCHITECTURE.md built from network
//! namespaces, so the cluster tests run the real binary on real links.
//!
//! ```text
//!            netns LAN: bridge br0 (the LAN switch)
//!        ┌───────────┬───────────┬───────────┬───────────┐
//!     port n1     port n2     port cli    port ping (optional)
//!        │           │           │           │
//!   N1 eth0      N2 eth0     CLIENT eth0  PING eth0
//!   10.0.0.1/8   10.0.0.2/8  10.0.0.10/8  10.0.0.254/8
//!   N1 eth1 ──── N2 eth1      (veth pair: the private crossover link)
//!   192.168.1.1  192.168.1.2
//!   DIR/ttyS0-n1 ═ socat ═ DIR/ttyS0-n2   (pty pair: the null-modem cable)
//! ```
//!
//! Every network object lives inside namespaces the lab creates (names
//! `cdl<pid>-<n>-lan|n1|n2|cli|ping`); the host namespace only gains the
//! namespaces themselves. Interface names inside them are the deployment's
//! (`eth0`, `eth1`), and each has a fixed MAC (see [`NodeId::mac`]) so failure
//! messages are readable.
//!
//! The ping node is on the LAN bridge like a router would be. "Reachable only from
//! node 2" is made with bridge port isolation ([`Lab::block_ping_from`]): the ports
//! of node 1 and of the ping node are both marked `isolated`, and the bridge never
//! forwards between two isolated ports (no frame, ARP included, passes), while both
//! still reach every other port. This kernel has no tc classifiers, so filtering is
//! done by the bridge itself (nft is installed for tests/firewall.rs, which tests the
//! image's own ruleset; the lab keeps its filtering independent of it).
//!
//! Processes (clusterd, socat, helper scripts) are kept as `Child` and stopped by
//! PID; they also get `PR_SET_PDEATHSIG` so a dying test leaves none behind.
//! Everything is removed on drop, also when the test panics. Labs in one test
//! process run one at a time (a process-wide lock), because the tests measure
//! sub-second timings on a small machine.
//!
//! ICMP ping, ARP and the TCP probe are small Python scripts (raw sockets; the
//! tests run as root), so the lab needs only `ip`, `socat` and `python3`.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The virtual IP (held by the active node only) and its prefix.
pub const VIP: &str = "10.0.0.100";
pub const VIP_CIDR: &str = "10.0.0.100/8";
pub const CLIENT_IP: &str = "10.0.0.10";
pub const PING_NODE_IP: &str = "10.0.0.254";
pub const HEARTBEAT_PORT: u16 = 694;
/// The SMTP port both nodes listen on (0.0.0.0:25): the TCP probe's target.
pub const SMTP_PORT: u16 = 25;

/// Heartbeat timings written into the node configs by default.
pub const KEEPALIVE: Duration = Duration::from_millis(100);
pub const WARNTIME: Duration = Duration::from_millis(500);
pub const DEADTIME: Duration = Duration::from_millis(1000);
pub const INITDEAD: Duration = Duration::from_millis(3000);

/// A MAC no lab interface has (used to poison the client's ARP entry).
pub const BOGUS_MAC: &str = "02:00:de:ad:be:ef";

// The binary under test and the loud tool check are the test harness's (the crate
// that includes this lab also declares `mod common`).
pub use crate::common::{bin, require_tool};

/// One of the two cluster nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeId {
    N1,
    N2,
}
pub use NodeId::{N1, N2};

impl NodeId {
    pub fn name(self) -> &'static str {
        match self {
            N1 => "clusternodo1",
            N2 => "clusternodo2",
        }
    }
    pub fn peer(self) -> NodeId {
        match self {
            N1 => N2,
            N2 => N1,
        }
    }
    fn index(self) -> usize {
        match self {
            N1 => 0,
            N2 => 1,
        }
    }
    /// Short tag used in paths and namespace names: `n1`, `n2`.
    pub fn tag(self) -> &'static str {
        match self {
            N1 => "n1",
            N2 => "n2",
        }
    }
    /// LAN (eth0) address.
    pub fn lan_ip(self) -> &'static str {
        match self {
            N1 => "10.0.0.1",
            N2 => "10.0.0.2",
        }
    }
    /// Private link (eth1) address.
    pub fn private_ip(self) -> &'static str {
        match self {
            N1 => "192.168.1.1",
            N2 => "192.168.1.2",
        }
    }
    /// The MAC the lab gives the node's eth0.
    pub fn mac(self) -> &'static str {
        match self {
            N1 => "02:00:0a:00:00:01",
            N2 => "02:00:0a:00:00:02",
        }
    }
    fn eth1_mac(self) -> &'static str {
        match self {
            N1 => "02:00:c0:a8:01:01",
            N2 => "02:00:c0:a8:01:02",
        }
    }
}

const CLIENT_MAC: &str = "02:00:0a:00:00:0a";
const PING_MAC: &str = "02:00:0a:00:00:fe";

/// The `[cluster]` section the lab writes (both nodes get mirrored copies).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub preferred: NodeId,
    pub keepalive_ms: u64,
    pub deadtime_ms: u64,
    pub warntime_ms: u64,
    pub initdead_ms: u64,
    pub garp_count: u32,
    pub garp_interval_ms: u64,
    pub garp_refresh_s: u64,
    pub ping_nodes: Vec<String>,
    /// Extra `key = value` lines appended to `[cluster]` (before the media).
    pub extra: String,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            preferred: N1,
            keepalive_ms: KEEPALIVE.as_millis() as u64,
            deadtime_ms: DEADTIME.as_millis() as u64,
            warntime_ms: WARNTIME.as_millis() as u64,
            initdead_ms: INITDEAD.as_millis() as u64,
            garp_count: 5,
            garp_interval_ms: 200,
            garp_refresh_s: 60,
            ping_nodes: Vec::new(),
            extra: String::new(),
        }
    }
}

/// Builds a [`Lab`].
#[derive(Clone, Debug)]
pub struct LabBuilder {
    ping_node: bool,
    cluster: Option<ClusterSettings>,
}

impl LabBuilder {
    /// Adds the PING namespace (10.0.0.254 on the LAN bridge).
    pub fn ping_node(mut self, yes: bool) -> Self {
        self.ping_node = yes;
        self
    }
    /// The `[cluster]` settings written into both configs.
    pub fn cluster(mut self, settings: ClusterSettings) -> Self {
        self.cluster = Some(settings);
        self
    }
    /// Writes configs without a `[cluster]` section (plain single nodes).
    pub fn no_cluster(mut self) -> Self {
        self.cluster = None;
        self
    }
    /// Creates the namespaces, links, serial cable and configs; starts no node.
    pub fn build(self) -> Lab {
        for tool in ["ip", "socat", "python3"] {
            require_tool(tool);
        }
        let guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        reap_stale_labs();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("clusterd-lab-{}-", std::process::id()))
            .tempdir()
            .expect("lab temp dir");
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("cdl{}-{}-", std::process::id(), n);
        let mut lab = Lab {
            dir: tmp.path().to_path_buf(),
            prefix,
            namespaces: Vec::new(),
            ping_node: self.ping_node,
            cluster: self.cluster,
            nodes: [None, None],
            socat: None,
            _tmp: tmp,
            _guard: guard,
        };
        // A panic from here on drops `lab`, which removes what was created.
        lab.create_topology();
        lab.write_configs();
        lab.restore_serial();
        lab
    }
}

static LAB_LOCK: Mutex<()> = Mutex::new(());
static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The lab. Dropping it kills its processes and deletes its namespaces.
pub struct Lab {
    /// The lab directory (configs, data, logs, pty links, captures).
    pub dir: PathBuf,
    prefix: String,
    namespaces: Vec<String>,
    ping_node: bool,
    cluster: Option<ClusterSettings>,
    nodes: [Option<Child>; 2],
    socat: Option<Child>,
    // Dropped after `Drop::drop` has cleaned up, in this order.
    _tmp: tempfile::TempDir,
    _guard: MutexGuard<'static, ()>,
}

impl Lab {
    pub fn builder() -> LabBuilder {
        LabBuilder {
            ping_node: false,
            cluster: Some(ClusterSettings::default()),
        }
    }

    /// The default lab: both nodes configured as a cluster, no ping node.
    pub fn new() -> Lab {
        Lab::builder().build()
    }

    // ---- names and paths ----------------------------------------------------

    pub fn ns(&self, node: NodeId) -> String {
        format!("{}{}", self.prefix, node.tag())
    }
    pub fn lan_ns(&self) -> String {
        format!("{}lan", self.prefix)
    }
    pub fn client_ns(&self) -> String {
        format!("{}cli", self.prefix)
    }
    pub fn ping_ns(&self) -> String {
        assert!(self.ping_node, "this lab was built without a ping node");
        format!("{}ping", self.prefix)
    }
    pub fn node_dir(&self, node: NodeId) -> PathBuf {
        self.dir.join(node.tag())
    }
    pub fn config_path(&self, node: NodeId) -> PathBuf {
        self.node_dir(node).join("clusterd.toml")
    }
    pub fn log_path(&self, node: NodeId) -> PathBuf {
        self.node_dir(node).join("clusterd.log")
    }
    pub fn control_socket(&self, node: NodeId) -> PathBuf {
        self.node_dir(node).join("control.sock")
    }
    /// The node's end of the serial cable (a symlink to a pty while socat runs).
    pub fn serial_path(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("ttyS0-{}", node.tag()))
    }
    /// socat's log, with a hex dump (`-x`) of everything that crossed the cable.
    pub fn serial_log_path(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    // ---- building -----------------------------------------------------------

    fn add_ns(&mut self, name: &str) {
        must(
            Command::new("ip").args(["netns", "add", name]),
            "ip netns add",
        );
        self.namespaces.push(name.to_string());
        must(
            Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]),
            "lo up",
        );
    }

    fn create_topology(&mut self) {
        let lan = self.lan_ns();
        let (n1, n2, cli) = (self.ns(N1), self.ns(N2), self.client_ns());
        self.add_ns(&lan);
        self.add_ns(&n1);
        self.add_ns(&n2);
        self.add_ns(&cli);
        let mut hosts = vec![
            ("n1", n1.clone(), N1.mac(), "10.0.0.1/8"),
            ("n2", n2.clone(), N2.mac(), "10.0.0.2/8"),
            ("cli", cli, CLIENT_MAC, "10.0.0.10/8"),
        ];
        if self.ping_node {
            let ping = self.ping_ns();
            self.add_ns(&ping);
            hosts.push(("ping", ping, PING_MAC, "10.0.0.254/8"));
        }
        ip(&lan, "link add br0 type bridge");
        ip(&lan, "link set br0 up");
        for (port, ns, mac, addr) in &hosts {
            // The veth is created inside LAN with its peer moved straight into the
            // host's namespace: it never exists in the host namespace.
            ip(
                &lan,
                &format!("link add {port} type veth peer name eth0 netns {ns}"),
            );
            ip(&lan, &format!("link set {port} master br0"));
            ip(&lan, &format!("link set {port} up"));
            ip(ns, &format!("link set eth0 address {mac}"));
            ip(ns, &format!("addr add {addr} dev eth0"));
            ip(ns, "link set eth0 up");
        }
        // The private crossover link.
        ip(
            &n1,
            &format!("link add eth1 type veth peer name eth1 netns {n2}"),
        );
        for node in [N1, N2] {
            let ns = self.ns(node);
            ip(&ns, &format!("link set eth1 address {}", node.eth1_mac()));
            ip(&ns, &format!("addr add {}/24 dev eth1", node.private_ip()));
            ip(&ns, "link set eth1 up");
        }
    }

    fn write_configs(&self) {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .expect("read /dev/urandom");
        let key_path = self.dir.join("authkey");
        std::fs::write(&key_path, key).expect("write authkey");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 600 authkey");
        for node in [N1, N2] {
            std::fs::create_dir_all(self.node_dir(node).join("data")).expect("node dir");
            std::fs::write(self.config_path(node), self.config_text(node)).expect("config");
        }
    }

    /// The config the lab writes for `node` (tests may rewrite it with
    /// [`Lab::set_config`] before starting the node).
    pub fn config_text(&self, node: NodeId) -> String {
        let dir = self.node_dir(node);
        let mut text = format!(
            r#"[node]
name = "{name}"
data_dir = "{data}"
control_socket = "{sock}"

[domain]
name = "cluster.com.ec"
local_domains = ["cluster.com.ec", "clusternodo1.cluster.com.ec", "clusternodo2.cluster.com.ec"]
aliases = {{ postmaster = "sistemas", root = "sistemas", abuse = "sistemas" }}

[smtp]
# The LAN's client relays through the cluster, as in the image's config.
relay_from = ["127.0.0.0/8", "::1/128", "{client}/32"]
listen = ["0.0.0.0:25"]
submission_listen = ["0.0.0.0:587"]
submissions_listen = ["0.0.0.0:465"]
require_resolvable_sender = false

[imap]
listen = ["0.0.0.0:143"]
tls_listen = ["0.0.0.0:993"]

[dns]
listen = ["0.0.0.0:53"]
zones_dir = "{zones}"
forwarders = []
"#,
            name = node.name(),
            data = dir.join("data").display(),
            sock = self.control_socket(node).display(),
            zones = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("zones")
                .display(),
            client = CLIENT_IP,
        );
        if let Some(c) = &self.cluster {
            let peer = node.peer();
            let ping_nodes = c
                .ping_nodes
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ");
            text.push_str(&format!(
                r#"
[cluster]
peer = "{peer}"
preferred = "{preferred}"
auth_key_file = "{key}"
keepalive_ms = {keepalive}
deadtime_ms = {deadtime}
warntime_ms = {warntime}
initdead_ms = {initdead}
vip = "{vip}"
vip_interface = "eth0"
garp_count = {garp_count}
garp_interval_ms = {garp_interval}
garp_refresh_s = {garp_refresh}
ping_nodes = [{ping_nodes}]
{extra}
[[cluster.heartbeat]]
udp = {{ bind = "{me}:{port}", peer = "{them}:{port}" }}

[[cluster.heartbeat]]
serial = {{ device = "{tty}", baud = 115200 }}
"#,
                peer = peer.name(),
                preferred = c.preferred.name(),
                key = self.dir.join("authkey").display(),
                keepalive = c.keepalive_ms,
                deadtime = c.deadtime_ms,
                warntime = c.warntime_ms,
                initdead = c.initdead_ms,
                vip = VIP_CIDR,
                garp_count = c.garp_count,
                garp_interval = c.garp_interval_ms,
                garp_refresh = c.garp_refresh_s,
                extra = c.extra,
                me = node.private_ip(),
                them = peer.private_ip(),
                port = HEARTBEAT_PORT,
                tty = self.serial_path(node).display(),
            ));
        }
        text
    }

    /// Replaces a node's config file (takes effect at the next start).
    pub fn set_config(&self, node: NodeId, text: &str) {
        std::fs::write(self.config_path(node), text).expect("write config");
    }

    /// Both nodes' configs get `[replication]` over the private link on `port`
    /// (sync mode, the default), after what their config files hold now.
    pub fn replicate(&self, port: u16) {
        for n in [N1, N2] {
            let text = format!(
                "{}\n[replication]\nlisten = \"{}:{port}\"\npeer = \"{}:{port}\"\nack_timeout_ms = 2000\n",
                std::fs::read_to_string(self.config_path(n)).expect("read config"),
                n.private_ip(),
                n.peer().private_ip()
            );
            self.set_config(n, &text);
        }
    }

    /// Waits (bounded) until `node` ships its op log to its peer.
    pub fn wait_shipping(&self, node: NodeId, within: Duration) {
        self.expect_within(
            Instant::now(),
            within,
            &format!("{} ships its log to its peer", node.name()),
            |l| l.status(node).text.contains("shipping yes"),
        );
    }

    /// Creates an account in a node's store before the node runs (`clusterd user add`).
    pub fn add_user_offline(&self, node: NodeId, name: &str, password: &str) {
        let mut cmd = Command::new(bin());
        cmd.args(["user", "add", name, "--password-stdin", "--config"])
            .arg(self.config_path(node));
        let out = crate::common::run_with_stdin(cmd, Some(&format!("{password}\n")));
        crate::common::assert_ok(&out, &format!("clusterd user add {name}"));
    }

    // ---- links and the serial cable -------------------------------------------

    /// `ip link set IFACE down` inside the node's namespace (`eth0` or `eth1`).
    pub fn link_down(&self, node: NodeId, iface: &str) {
        ip(&self.ns(node), &format!("link set {iface} down"));
    }
    pub fn link_up(&self, node: NodeId, iface: &str) {
        ip(&self.ns(node), &format!("link set {iface} up"));
    }
    /// Whether the node's interface is administratively up.
    pub fn link_is_up(&self, node: NodeId, iface: &str) -> bool {
        let out = ip(&self.ns(node), &format!("-o link show dev {iface}"));
        out.split(['<', '>'])
            .nth(1)
            .is_some_and(|flags| flags.split(',').any(|f| f == "UP"))
    }

    /// Cuts the serial cable: socat is stopped (by PID) and both pty ends vanish;
    /// a node reading its end sees EOF/EIO and its device path disappears.
    pub fn cut_serial(&mut self) {
        if let Some(mut child) = self.socat.take() {
            crate::common::terminate(&mut child, Duration::from_secs(3));
        }
        for node in [N1, N2] {
            let _ = std::fs::remove_file(self.serial_path(node));
        }
    }

    /// (Re)connects the serial cable: a new socat pty pair behind the same link
    /// names. Waits until both links exist.
    pub fn restore_serial(&mut self) {
        if self.socat.is_some() {
            return;
        }
        for node in [N1, N2] {
            let _ = std::fs::remove_file(self.serial_path(node));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.serial_log_path())
            .expect("serial log");
        let mut cmd = Command::new("socat");
        cmd.args(["-d", "-d", "-x"])
            .arg(format!(
                "pty,raw,echo=0,link={}",
                self.serial_path(N1).display()
            ))
            .arg(format!(
                "pty,raw,echo=0,link={}",
                self.serial_path(N2).display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        self.socat = Some(cmd.spawn().expect("start socat"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(self.serial_path(N1).exists() && self.serial_path(N2).exists()) {
            if let Some(status) = self.socat.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "socat exited ({status}):\n{}",
                    std::fs::read_to_string(self.serial_log_path()).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "socat made no pty links in 5 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn serial_connected(&self) -> bool {
        self.socat.is_some()
    }

    /// The chunks socat carried from node 1's end to node 2's end so far (its
    /// `-x` hex dump; one chunk per read, roughly one per write by node 1).
    pub fn serial_chunks_n1_to_n2(&self) -> Vec<Vec<u8>> {
        parse_socat_dump(&std::fs::read_to_string(self.serial_log_path()).unwrap_or_default())
    }

    /// Makes the ping node unreachable from `node` (and `node` from it) at layer 2:
    /// both bridge ports become `isolated`, and the bridge forwards nothing between
    /// two isolated ports. Everything else on the LAN still reaches both.
    pub fn block_ping_from(&self, node: NodeId) {
        let lan = self.lan_ns();
        assert!(self.ping_node, "this lab was built without a ping node");
        for port in [node.tag(), "ping"] {
            ip(
                &lan,
                &format!("link set dev {port} type bridge_slave isolated on"),
            );
        }
    }
    pub fn unblock_ping_from(&self, node: NodeId) {
        let port = node.tag();
        ip(
            &self.lan_ns(),
            &format!("link set dev {port} type bridge_slave isolated off"),
        );
    }

    // ---- nodes ----------------------------------------------------------------

    /// Starts `clusterd run` inside the node's namespace without waiting.
    pub fn spawn_node(&mut self, node: NodeId) {
        assert!(
            self.nodes[node.index()].is_none(),
            "{} is already running",
            node.name()
        );
        let _ = std::fs::remove_file(self.control_socket(node));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))
            .expect("node log");
        let mut cmd = in_ns(&self.ns(node), &bin());
        cmd.args(["run", "--config"])
            .arg(self.config_path(node))
            .env(
                "RUST_LOG",
                std::env::var("CLUSTER_LAB_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        die_with_parent(&mut cmd);
        self.nodes[node.index()] = Some(cmd.spawn().expect("start clusterd"));
    }

    /// Waits (bounded) until the node's control socket answers.
    pub fn wait_node_ready(&mut self, node: NodeId) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = self.nodes[node.index()]
                .as_mut()
                .unwrap_or_else(|| panic!("{} was not started", node.name()));
            if let Some(status) = child.try_wait().unwrap() {
                self.nodes[node.index()] = None;
                panic!(
                    "{} exited during start-up ({status}); log:\n{}",
                    node.name(),
                    self.log(node)
                );
            }
            if std::os::unix::net::UnixStream::connect(self.control_socket(node)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready in 30 s; log:\n{}",
                node.name(),
                self.log(node)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a node and waits until its control socket answers.
    pub fn start_node(&mut self, node: NodeId) {
        self.spawn_node(node);
        self.wait_node_ready(node);
    }

    /// Starts both nodes at once and waits until both answer.
    pub fn start_both(&mut self) {
        self.spawn_node(N1);
        self.spawn_node(N2);
        self.wait_node_ready(N1);
        self.wait_node_ready(N2);
    }

    /// Starts both nodes and waits until node 1 (the preferred) alone holds the VIP.
    pub fn start_cluster(&mut self) {
        let t0 = Instant::now();
        self.start_both();
        self.expect_within(
            t0,
            INITDEAD + Duration::from_secs(2),
            "the preferred node clusternodo1 alone holds the VIP after start-up",
            |l| l.vip_holders() == [N1],
        );
    }

    /// SIGKILL (a crash): nothing of the node's shutdown path runs.
    pub fn kill_node(&mut self, node: NodeId) {
        if let Some(mut child) = self.nodes[node.index()].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node dies as a machine does: its process is killed and both its links go
    /// down.
    pub fn machine_dies(&mut self, node: NodeId) {
        self.kill_node(node);
        self.link_down(node, "eth0");
        self.link_down(node, "eth1");
    }

    /// SIGTERM (an orderly stop), SIGKILL after 10 s.
    pub fn stop_node(&mut self, node: NodeId) {
        if let Some(mut child) = self.nodes[node.index()].take() {
            crate::common::terminate(&mut child, Duration::from_secs(10));
        }
    }

    pub fn node_pid(&self, node: NodeId) -> Option<u32> {
        self.nodes[node.index()].as_ref().map(|c| c.id())
    }

    /// Whether the node's process is still running.
    pub fn node_running(&mut self, node: NodeId) -> bool {
        match self.nodes[node.index()].as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Runs `clusterd ARGS --config F` inside the node's namespace.
    pub fn cli(&self, node: NodeId, args: &[&str]) -> Output {
        let mut cmd = in_ns(&self.ns(node), &bin());
        cmd.args(args)
            .arg("--config")
            .arg(self.config_path(node))
            .stdin(Stdio::null());
        cmd.output().expect("run clusterd cli")
    }

    /// Starts `clusterd ARGS --config F` inside the node's namespace (for timing).
    pub fn spawn_cli(&self, node: NodeId, args: &[&str]) -> Child {
        let mut cmd = in_ns(&self.ns(node), &bin());
        cmd.args(args)
            .arg("--config")
            .arg(self.config_path(node))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        cmd.spawn().expect("spawn clusterd cli")
    }

    /// `clusterd status`, parsed leniently (`key: value` lines).
    pub fn status(&self, node: NodeId) -> NodeStatus {
        let out = self.cli(node, &["status"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "clusterd status on {} failed ({}):\n{text}",
            node.name(),
            out.status
        );
        NodeStatus::parse(&text)
    }

    /// `clusterd standby` on the node; asserts success.
    pub fn standby(&self, node: NodeId) -> String {
        cli_ok(self.cli(node, &["standby"]), "clusterd standby")
    }
    /// `clusterd takeover` on the node; asserts success.
    pub fn takeover(&self, node: NodeId) -> String {
        cli_ok(self.cli(node, &["takeover"]), "clusterd takeover")
    }

    // ---- logs -------------------------------------------------------------------

    /// The node's log (stdout and stderr of all its runs), ANSI colours removed.
    pub fn log(&self, node: NodeId) -> String {
        strip_ansi(&std::fs::read_to_string(self.log_path(node)).unwrap_or_default())
    }
    /// Current length of the raw log, to read only what follows with `log_since`.
    pub fn log_len(&self, node: NodeId) -> usize {
        std::fs::metadata(self.log_path(node))
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }
    pub fn log_since(&self, node: NodeId, offset: usize) -> String {
        let raw = std::fs::read(self.log_path(node)).unwrap_or_default();
        strip_ansi(&String::from_utf8_lossy(&raw[offset.min(raw.len())..]))
    }
    /// Log lines at WARN (or ERROR) level after `offset` containing every word
    /// of `words` (case-insensitive).
    pub fn warnings_since(&self, node: NodeId, offset: usize, words: &[&str]) -> Vec<String> {
        self.log_since(node, offset)
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| {
                let low = l.to_lowercase();
                words.iter().all(|w| low.contains(&w.to_lowercase()))
            })
            .map(str::to_string)
            .collect()
    }

    // ---- addresses, ARP, reachability ---------------------------------------------

    /// Whether `ip -4 addr show dev eth0` in the node's namespace lists the VIP.
    pub fn holds_vip(&self, node: NodeId) -> bool {
        ipv4_addrs(&self.ns(node), "eth0")
            .iter()
            .any(|a| a.split('/').next() == Some(VIP))
    }
    /// The nodes whose eth0 carries the VIP.
    pub fn vip_holders(&self) -> Vec<NodeId> {
        [N1, N2]
            .into_iter()
            .filter(|n| self.holds_vip(*n))
            .collect()
    }
    /// The MAC of the node's eth0 as the kernel reports it.
    pub fn mac(&self, node: NodeId) -> String {
        let out = ip(&self.ns(node), "-o link show dev eth0");
        word_after(&out, "link/ether").expect("eth0 has a MAC")
    }
    /// The client's neighbour entry for the VIP: its MAC, if it has one.
    pub fn client_vip_mac(&self) -> Option<String> {
        self.client_neigh(VIP)
    }
    pub fn client_neigh(&self, addr: &str) -> Option<String> {
        let out = ip(&self.client_ns(), &format!("neigh show {addr}"));
        word_after(&out, "lladdr")
    }
    /// Overwrites the client's neighbour entry (state STALE), e.g. with
    /// [`BOGUS_MAC`] so only a gratuitous ARP can correct it.
    pub fn set_client_neigh(&self, addr: &str, mac: &str) {
        ip(
            &self.client_ns(),
            &format!("neigh replace {addr} lladdr {mac} dev eth0 nud stale"),
        );
    }
    pub fn flush_client_neigh(&self) {
        ip(&self.client_ns(), "neigh flush dev eth0");
    }

    /// ARP requests for `target` from the client (3 requests over `window`); the
    /// distinct MACs that answered, in order of first answer.
    pub fn arping_from_client(&self, target: &str, window: Duration) -> Vec<String> {
        self.arping(&self.client_ns(), CLIENT_IP, target, window)
    }
    pub fn arping(&self, ns: &str, sender_ip: &str, target: &str, window: Duration) -> Vec<String> {
        let out = python_in(
            ns,
            ARPING_PY,
            &[
                "eth0",
                sender_ip,
                target,
                &window.as_millis().to_string(),
                "3",
            ],
        );
        crate::common::assert_ok(&out, "arping")
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Sends `count` gratuitous ARPs for `addr` from the node's eth0 (lab
    /// self-tests move an address by hand with it).
    pub fn send_garp(&self, node: NodeId, addr: &str, count: u32) {
        let out = python_in(&self.ns(node), GARP_PY, &["eth0", addr, &count.to_string()]);
        crate::common::assert_ok(&out, "garp");
    }

    /// ICMP echo from namespace `ns` to `addr` (3 tries, 300 ms each): any reply.
    pub fn ping(&self, ns: &str, addr: &str) -> bool {
        let out = python_in(ns, PING_PY, &[addr, "3", "300"]);
        out.status.success()
    }
    pub fn ping_from_client(&self, addr: &str) -> bool {
        self.ping(&self.client_ns(), addr)
    }
    pub fn ping_from_node(&self, node: NodeId, addr: &str) -> bool {
        self.ping(&self.ns(node), addr)
    }

    /// One TCP connect from namespace `ns` (1 s timeout).
    pub fn tcp_connects(&self, ns: &str, addr: &str, port: u16) -> bool {
        let out = python_in(ns, TCP_CONNECT_PY, &[addr, &port.to_string(), "1000"]);
        out.status.success()
    }

    /// Starts the client-side TCP probe: a connect to `addr:port` every 10 ms
    /// (100 ms connect timeout) for `duration`, run inside CLIENT.
    pub fn probe_tcp(&self, addr: &str, port: u16, duration: Duration) -> Probe {
        let mut cmd = in_ns(&self.client_ns(), python());
        cmd.arg("-c")
            .arg(TCP_PROBE_PY)
            .args([
                addr,
                &port.to_string(),
                &format!("{:.3}", duration.as_secs_f64()),
                "10",
                "100",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        Probe {
            child: Some(cmd.spawn().expect("start tcp probe")),
            started: Instant::now(),
            duration,
        }
    }

    /// Captures, for `duration`, the UDP payloads arriving on `iface` in `ns`
    /// from `src_ip` to `dst_port` (AF_PACKET socket, so nothing is consumed).
    pub fn capture_udp(
        &self,
        ns: &str,
        iface: &str,
        src_ip: &str,
        dst_port: u16,
        duration: Duration,
    ) -> Vec<Vec<u8>> {
        let out = python_in(
            ns,
            UDP_SNIFF_PY,
            &[
                iface,
                src_ip,
                &dst_port.to_string(),
                &format!("{:.3}", duration.as_secs_f64()),
            ],
        );
        crate::common::assert_ok(&out, "udp capture")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| hex::decode(l.trim()).expect("hex from the sniffer"))
            .collect()
    }

    /// Starts the heartbeat forger in node `from`'s namespace (see
    /// [`FORGE_PY`]): for `duration` it sends to the peer's heartbeat port, from
    /// `from`'s own heartbeat address, the captured `udp` frames replayed verbatim
    /// and forged variants of them; and writes the captured `serial` chunks,
    /// replayed and forged, into `from`'s end of the serial cable.
    pub fn spawn_forger(
        &self,
        from: NodeId,
        udp: &[Vec<u8>],
        serial: &[Vec<u8>],
        duration: Duration,
    ) -> Forger {
        let job = serde_json::json!({
            "bind": [from.private_ip(), HEARTBEAT_PORT],
            "dst": [from.peer().private_ip(), HEARTBEAT_PORT],
            "udp": udp.iter().map(hex::encode).collect::<Vec<_>>(),
            "serial_path": self.serial_path(from),
            "serial": serial.iter().map(hex::encode).collect::<Vec<_>>(),
            "seconds": duration.as_secs_f64(),
        });
        let job_path = self.dir.join(format!("forge-{}.json", from.tag()));
        std::fs::write(&job_path, job.to_string()).expect("write forge job");
        let mut cmd = in_ns(&self.ns(from), python());
        cmd.arg("-c")
            .arg(FORGE_PY)
            .arg(&job_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        Forger {
            child: Some(cmd.spawn().expect("start forger")),
        }
    }

    // ---- waiting ----------------------------------------------------------------

    /// Polls `cond` every `poll` until it holds (returns the time it took) or
    /// `timeout` passes (None).
    pub fn wait_until(
        &self,
        timeout: Duration,
        poll: Duration,
        mut cond: impl FnMut(&Lab) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if cond(self) {
                return Some(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(poll);
        }
    }

    /// Like `wait_until`, measured from `since`, panicking with the lab's state.
    pub fn expect_within(
        &self,
        since: Instant,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&Lab) -> bool,
    ) -> Duration {
        loop {
            if cond(self) {
                return since.elapsed();
            }
            if since.elapsed() >= timeout {
                panic!(
                    "not within {} ms: {what}\n{}",
                    timeout.as_millis(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that `cond` holds at every poll (50 ms) for `duration`.
    pub fn expect_for(&self, duration: Duration, what: &str, mut cond: impl FnMut(&Lab) -> bool) {
        let start = Instant::now();
        while start.elapsed() < duration {
            assert!(
                cond(self),
                "after {} ms no longer true: {what}\n{}",
                start.elapsed().as_millis(),
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lab's state for failure messages: addresses, links, processes, the
    /// client's ARP entry and the tail of both logs.
    pub fn diagnostics(&self) -> String {
        let mut s = String::from("---- lab state\n");
        for node in [N1, N2] {
            let ns = self.ns(node);
            let running = self.nodes[node.index()].is_some();
            s.push_str(&format!(
                "{} (process {}): eth0 {} {:?}, eth1 {} {:?}\n",
                node.name(),
                if running { "started" } else { "not running" },
                if self.link_is_up(node, "eth0") {
                    "up"
                } else {
                    "DOWN"
                },
                ipv4_addrs(&ns, "eth0"),
                if self.link_is_up(node, "eth1") {
                    "up"
                } else {
                    "DOWN"
                },
                ipv4_addrs(&ns, "eth1"),
            ));
        }
        s.push_str(&format!(
            "serial cable: {}\nclient neigh {VIP}: {:?} (n1 {}, n2 {})\n",
            if self.socat.is_some() {
                "connected"
            } else {
                "CUT"
            },
            self.client_vip_mac(),
            N1.mac(),
            N2.mac()
        ));
        for node in [N1, N2] {
            let log = self.log(node);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            s.push_str(&format!(
                "---- {} log (last {} lines)\n{}\n",
                node.name(),
                tail.len(),
                tail.join("\n")
            ));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in [N1, N2] {
            self.kill_node(node);
        }
        self.cut_serial();
        for ns in self.namespaces.drain(..).rev() {
            delete_ns(&ns);
        }
    }
}

/// What `clusterd status` printed, parsed as `key: value` lines.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
    /// `role:` (active / standby / init …), lower-cased.
    pub role: Option<String>,
    /// `vip:` as printed.
    pub vip: Option<String>,
    pub fields: Vec<(String, String)>,
    pub text: String,
}

impl NodeStatus {
    pub fn parse(text: &str) -> NodeStatus {
        let mut st = NodeStatus {
            text: text.to_string(),
            ..Default::default()
        };
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_lowercase(), v.trim().to_string());
                match k.as_str() {
                    "role" if st.role.is_none() => {
                        st.role = v.split_whitespace().next().map(|r| r.to_lowercase())
                    }
                    "vip" if st.vip.is_none() => st.vip = Some(v.clone()),
                    _ => {}
                }
                st.fields.push((k, v));
            }
        }
        st
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A running client-side TCP probe.
pub struct Probe {
    child: Option<Child>,
    started: Instant,
    duration: Duration,
}

/// What the TCP probe measured.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// Longest time without a successful connect (between two successes, or from
    /// the last success to the end if the service never came back).
    pub max_gap_ms: f64,
    /// When that gap began, ms after the probe started.
    pub gap_start_ms: f64,
    pub ok: u64,
    pub failed: u64,
    /// Whether the last attempt succeeded.
    pub recovered: bool,
}

impl Probe {
    /// When the probe started (to time actions against it).
    pub fn started(&self) -> Instant {
        self.started
    }
    /// Waits for the probe's end (bounded) and returns its figures.
    pub fn finish(mut self) -> ProbeReport {
        let child = self.child.take().unwrap();
        let out = wait_output(child, self.duration + Duration::from_secs(10), "tcp probe");
        let text = crate::common::assert_ok(&out, "tcp probe");
        let v: serde_json::Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("tcp probe printed no JSON ({e}): {text}"));
        ProbeReport {
            max_gap_ms: v["max_gap_ms"].as_f64().unwrap_or(f64::NAN),
            gap_start_ms: v["gap_start_ms"].as_f64().unwrap_or(f64::NAN),
            ok: v["ok"].as_u64().unwrap_or(0),
            failed: v["failed"].as_u64().unwrap_or(0),
            recovered: v["recovered"].as_bool().unwrap_or(false),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running heartbeat forger (see [`Lab::spawn_forger`]).
pub struct Forger {
    child: Option<Child>,
}

impl Forger {
    /// Waits for the forger's end and returns what it sent (its JSON summary).
    pub fn finish(mut self) -> serde_json::Value {
        let child = self.child.take().unwrap();
        let out = wait_output(child, Duration::from_secs(60), "forger");
        let text = crate::common::assert_ok(&out, "forger");
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("forger printed no JSON ({e}): {text}"))
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- process and command helpers ---------------------------------------------

/// The real python3 executable (not a shim), so a helper's PID is the script's.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("run python3");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && !path.is_empty(),
            "python3 cannot report its executable"
        );
        PathBuf::from(path)
    })
}

/// `ip netns exec NS PROGRAM` (ip execs the program: the child's PID is its PID).
fn in_ns(ns: &str, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Runs a Python script inside a namespace and returns its output.
pub fn python_in(ns: &str, script: &str, args: &[&str]) -> Output {
    let mut cmd = in_ns(ns, python());
    cmd.arg("-c").arg(script).args(args).stdin(Stdio::null());
    cmd.output().expect("run python3")
}

/// Starts a Python script inside a namespace with piped output; the caller waits.
pub fn python_spawn_in(ns: &str, script: &str, args: &[&str]) -> Child {
    let mut cmd = in_ns(ns, python());
    cmd.arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    cmd.spawn().expect("start python3")
}

fn cli_ok(out: Output, what: &str) -> String {
    crate::common::assert_ok(&out, what)
}

/// Runs `ip -n NS ARGS` (ARGS split at whitespace); panics with its stderr when
/// it fails.
pub fn ip(ns: &str, args: &str) -> String {
    let mut cmd = Command::new("ip");
    cmd.args(["-n", ns]).args(args.split_whitespace());
    must(&mut cmd, &format!("ip -n {ns} {args}"))
}

fn must(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn ipv4_addrs(ns: &str, iface: &str) -> Vec<String> {
    let out = ip(ns, &format!("-4 -o addr show dev {iface}"));
    out.lines().filter_map(|l| word_after(l, "inet")).collect()
}

fn word_after(text: &str, key: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next().map(str::to_string);
        }
    }
    None
}

/// The child gets SIGKILL if the test thread that started it goes away.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Waits for a child's output, killing it after `limit`.
fn wait_output(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{what} did not finish in {} s; stderr:\n{}",
                limit.as_secs(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn delete_ns(ns: &str) {
    // Anything still inside (only ever our own children) is killed by PID first,
    // or the namespace would outlive its name.
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<libc::pid_t>() {
                // SAFETY: plain kill(2) by PID.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    let out = Command::new("ip").args(["netns", "del", ns]).output();
    if let Ok(out) = out
        && !out.status.success()
    {
        eprintln!(
            "cluster lab: ip netns del {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Removes the namespaces and directories of labs whose test process died without
/// cleaning up (names `cdl<pid>-<n>-<role>` and `clusterd-lab-<pid>-*` whose pid
/// no longer runs).
fn reap_stale_labs() {
    let dead = |pid: &str| {
        pid.parse::<u32>().is_ok()
            && pid != std::process::id().to_string()
            && !Path::new(&format!("/proc/{pid}")).exists()
    };
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(pid) = name
                .strip_prefix("clusterd-lab-")
                .and_then(|rest| rest.split('-').next())
                && dead(pid)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("cdl") else {
            continue;
        };
        let mut parts = rest.splitn(3, '-');
        let (Some(pid), Some(n), Some(role)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let ours = n.parse::<u32>().is_ok() && ["lan", "n1", "n2", "cli", "ping"].contains(&role);
        if ours && dead(pid) {
            delete_ns(name);
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// socat `-x` dumps: a `> DATE length=N from=A to=B` header for data going from
/// the first address (node 1's end) to the second, followed by hex lines.
fn parse_socat_dump(log: &str) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in log.lines() {
        if line.starts_with("> ") || line.starts_with("< ") {
            if let Some(c) = current.take()
                && !c.is_empty()
            {
                chunks.push(c);
            }
            if line.starts_with("> ") {
                current = Some(Vec::new());
            }
        } else if let Some(c) = current.as_mut() {
            let hex_line = line.starts_with(' ')
                && line
                    .split_whitespace()
                    .all(|w| w.len() == 2 && w.chars().all(|ch| ch.is_ascii_hexdigit()));
            if hex_line {
                for w in line.split_whitespace() {
                    c.push(u8::from_str_radix(w, 16).unwrap());
                }
            } else if let Some(c) = current.take()
                && !c.is_empty()
            {
                chunks.push(c);
            }
        }
    }
    if let Some(c) = current
        && !c.is_empty()
    {
        chunks.push(c);
    }
    chunks
}

// ---- the helper scripts ------------------------------------------------------------

/// `PING_PY DST COUNT TIMEOUT_MS`: ICMP echo; prints the replies; exit 1 if none.
pub const PING_PY: &str = r#"
import os, socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1000
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
ok = 0
for seq in range(count):
    body = b'clusterd-lab'
    hdr = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
    hdr = struct.pack('!BBHHH', 8, 0, csum(hdr + body), ident, seq)
    try:
        s.sendto(hdr + body, (dst, 0))
    except OSError:
        time.sleep(timeout); continue
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0: break
        s.settimeout(left)
        try: data, addr = s.recvfrom(2048)
        except socket.timeout: break
        ihl = (data[0] & 15) * 4
        t, _, _, i, q = struct.unpack('!BBHHH', data[ihl:ihl + 8])
        if t == 0 and i == ident and q == seq and addr[0] == dst:
            ok += 1; break
    if ok: break
print(ok)
sys.exit(0 if ok else 1)
"#;

/// `TCP_CONNECT_PY ADDR PORT TIMEOUT_MS`: exit 0 if one TCP connect succeeds.
pub const TCP_CONNECT_PY: &str = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), int(sys.argv[3]) / 1000).close()
except OSError as e:
    print(e); sys.exit(1)
"#;

/// `TCP_PROBE_PY ADDR PORT SECONDS INTERVAL_MS TIMEOUT_MS`: a non-blocking connect
/// every INTERVAL_MS (each given TIMEOUT_MS, closed with RST); prints JSON with the
/// longest gap between successful connects.
pub const TCP_PROBE_PY: &str = r#"
import errno, json, select, socket, struct, sys, time
host, port, dur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
interval, timeout = float(sys.argv[4]) / 1000, float(sys.argv[5]) / 1000
start = time.monotonic(); end = start + dur
ok = failed = 0; last_ok = None; max_gap = 0.0; gap_at = 0.0; last = False
while True:
    t = time.monotonic()
    if t >= end: break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.setblocking(False)
    good = False
    e = s.connect_ex((host, port))
    if e == 0:
        good = True
    elif e == errno.EINPROGRESS:
        _, w, _ = select.select([], [s], [], timeout)
        good = bool(w) and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    s.close()
    now = time.monotonic()
    if good:
        ok += 1
        if last_ok is not None and now - last_ok > max_gap:
            max_gap = now - last_ok; gap_at = last_ok - start
        last_ok = now
    else:
        failed += 1
    last = good
    d = t + interval - time.monotonic()
    if d > 0: time.sleep(d)
tail_from = last_ok if last_ok is not None else start
if not last and end - tail_from > max_gap:
    max_gap = end - tail_from; gap_at = tail_from - start
print(json.dumps({"max_gap_ms": max_gap * 1000, "gap_start_ms": gap_at * 1000,
                  "ok": ok, "failed": failed, "recovered": last}))
"#;

/// `ARPING_PY IFACE SENDER_IP TARGET WINDOW_MS COUNT`: broadcasts COUNT ARP
/// requests for TARGET over WINDOW_MS; prints each distinct MAC that answered.
pub const ARPING_PY: &str = r#"
import socket, struct, sys, time
iface, sip, tip, window, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) / 1000, int(sys.argv[5])
mac = bytes.fromhex(open('/sys/class/net/%s/address' % iface).read().strip().replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0))
req = (b'\xff' * 6 + mac + struct.pack('!H', 0x0806) +
       struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(sip) +
       b'\0' * 6 + socket.inet_aton(tip))
seen = []
start = time.monotonic(); end = start + window; sent = 0
while True:
    now = time.monotonic()
    if sent < count and now >= start + sent * window / count:
        s.send(req); sent += 1
    if now >= end: break
    s.settimeout(min(0.02, end - now))
    try: f = s.recv(2048)
    except socket.timeout: continue
    if len(f) < 42 or f[12:14] != b'\x08\x06': continue
    op = struct.unpack('!H', f[20:22])[0]
    if op == 2 and f[28:32] == socket.inet_aton(tip):
        m = ':'.join('%02x' % b for b in f[22:28])
        if m not in seen: seen.append(m)
for m in seen: print(m)
"#;

/// `GARP_PY IFACE ADDR COUNT`: gratuitous ARP requests (sender = target = ADDR).
pub const GARP_PY: &str = r#"
import socket, struct, sys, time
iface, addr, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
mac = bytes.fromhex(open('/sys/class/net/%s/address' % iface).read().strip().replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0))
ip = socket.inet_aton(addr)
f = (b'\xff' * 6 + mac + struct.pack('!H', 0x0806) +
     struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + ip + b'\0' * 6 + ip)
for i in range(count):
    s.send(f)
    if i + 1 < count: time.sleep(0.05)
"#;

/// `UDP_SNIFF_PY IFACE SRC_IP DST_PORT SECONDS`: prints, one hex line each, the
/// payloads of IPv4/UDP datagrams from SRC_IP to DST_PORT seen on IFACE.
pub const UDP_SNIFF_PY: &str = r#"
import socket, struct, sys, time
iface, src, dport, dur = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((iface, 0))
end = time.monotonic() + dur
while True:
    left = end - time.monotonic()
    if left <= 0: break
    s.settimeout(left)
    try: f, addr = s.recvfrom(65535)
    except socket.timeout: break
    if addr[2] == socket.PACKET_OUTGOING: continue
    if len(f) < 34 or f[12:14] != b'\x08\x00': continue
    ip = f[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 17 or ip[12:16] != src: continue
    sp, dp, ln = struct.unpack('!HHH', ip[ihl:ihl + 6])
    if dp != dport: continue
    print(ip[ihl + 8:ihl + ln].hex(), flush=True)
"#;

/// The heartbeat forger. Its job file (JSON) names the UDP source to bind (the
/// dead node's own heartbeat address), the destination (the peer's heartbeat
/// port), captured genuine UDP frames and serial chunks, and how long to run.
/// Every 20 ms it sends one UDP datagram, cycling through:
///   * a genuine captured frame, replayed verbatim (in capture order);
///   * the frame with its last 32 bytes replaced by HMAC-SHA256 of the rest under
///     a wrong key (a well-formed frame signed with the wrong key: clusterd's frames
///     end in HMAC-SHA256 over every byte before it, see src/cluster/wire.rs);
///   * for clusterd's frames (magic `CLHB`), fresh-looking ones signed with the
///     wrong key: the next sequence numbers, and a new boot id with seq 1;
///   * the frame with one byte flipped (the position walks through the frame);
///   * random bytes of the frame's length; the frame truncated by one byte.
///
/// Every 100 ms it writes one serial chunk into the dead node's pty end, cycling
/// through a genuine captured chunk replayed verbatim, and one with a flipped byte.
/// Prints a JSON summary of what it sent.
pub const FORGE_PY: &str = r#"
import hashlib, hmac, json, os, random, socket, sys, time
job = json.load(open(sys.argv[1]))
udp = [bytes.fromhex(h) for h in job['udp']]
ser = [bytes.fromhex(h) for h in job['serial']]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
bound = True
try: s.bind(tuple(job['bind']))
except OSError: bound = False
dst = tuple(job['dst'])
tty = None
try: tty = os.open(job['serial_path'], os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
except OSError: pass
wrong_key = os.urandom(32)
def sign(body):
    return body + hmac.new(wrong_key, body, hashlib.sha256).digest()
def variants(f, i):
    out = [f]
    if len(f) > 32:
        out.append(sign(f[:-32]))
    if f[:4] == b'CLHB' and len(f) >= 7 + 36 + 32:
        # clusterd's frame (src/cluster/wire.rs): a fresh-looking heartbeat (next
        # seq; or a new boot_id, seq 1) from the dead node, signed with a wrong key.
        body = bytearray(f[:-32])
        seq = int.from_bytes(body[15:23], 'big')
        body[15:23] = (seq + 1 + i).to_bytes(8, 'big')
        out.append(sign(bytes(body)))
        body[7:15] = os.urandom(8); body[15:23] = (1 + i).to_bytes(8, 'big')
        out.append(sign(bytes(body)))
    if f:
        p = i % len(f)
        out.append(f[:p] + bytes([f[p] ^ 0x01]) + f[p + 1:])
        out.append(os.urandom(len(f)))
        out.append(f[:-1])
    return out
sent = {'udp_replayed': 0, 'udp_forged': 0, 'udp_errors': 0, 'serial_replayed': 0,
        'serial_forged': 0, 'serial_errors': 0, 'udp_bound_to_node_address': bound}
end = time.monotonic() + job['seconds']
i = 0
while time.monotonic() < end:
    if udp:
        f = udp[(i // 5) % len(udp)]
        vs = variants(f, i // 5)
        v = vs[i % len(vs)]
        try:
            s.sendto(v, dst)
            sent['udp_replayed' if v == f else 'udp_forged'] += 1
        except OSError:
            sent['udp_errors'] += 1
    if ser and tty is not None and i % 5 == 0:
        c = ser[(i // 5) % len(ser)]
        if (i // 5) % 2:
            p = (i // 10) % len(c)
            c2 = c[:p] + bytes([c[p] ^ 0x01]) + c[p + 1:]
            key = 'serial_forged'
        else:
            c2 = c; key = 'serial_replayed'
        try:
            os.write(tty, c2); sent[key] += 1
        except OSError:
            sent['serial_errors'] += 1
    i += 1
    time.sleep(0.02)
print(json.dumps(sent))
"#;
