//! The sections of the pair: `[cluster]` (roles, heartbeats, the virtual IP) and
//! `[replication]` (the store copied to the peer). Both are optional: without them
//! the node is alone and always active.
//!
//! The field doc comments are written for the administrator: `clusterd config
//! example` prints them above each key (see `super::example`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct ClusterConfig {
        /// The other node's name (its `node.name`).
        pub peer: String,
        /// The node that takes the service back when it returns (auto failback); none:
        /// the active node keeps it.
        #[serde(default)]
        pub preferred: Option<String>,
        /// The shared secret that authenticates every heartbeat (the same file on both
        /// nodes).
        #[serde(default = "default_auth_key_file")]
        pub auth_key_file: PathBuf,
        /// A heartbeat goes out on every medium this often.
        #[serde(default = "default_keepalive_ms")]
        pub keepalive_ms: u64,
        /// The peer is dead after this long with no heartbeat on any medium (at least
        /// twice keepalive_ms).
        #[serde(default = "default_deadtime_ms")]
        pub deadtime_ms: u64,
        /// One medium silent this long is logged as a warning (less than deadtime_ms).
        #[serde(default = "default_warntime_ms")]
        pub warntime_ms: u64,
        /// At start-up, wait this long for the peer before acting alone.
        #[serde(default = "default_initdead_ms")]
        pub initdead_ms: u64,
        /// The virtual IP with its prefix, held by the active node.
        pub vip: ipnet::Ipv4Net,
        /// The interface the active node adds the virtual IP to.
        #[serde(default = "default_vip_interface")]
        pub vip_interface: String,
        /// Gratuitous ARPs sent when the node takes the virtual IP.
        #[serde(default = "default_garp_count")]
        pub garp_count: u32,
        /// The time between those gratuitous ARPs.
        #[serde(default = "default_garp_interval_ms")]
        pub garp_interval_ms: u64,
        /// Re-announce the virtual IP this often while active; 0 = never.
        #[serde(default = "default_garp_refresh_s")]
        pub garp_refresh_s: u64,
        /// Quorum tie-breakers: a node that reaches none of them does not take over.
        #[serde(default)]
        pub ping_nodes: Vec<IpAddr>,
        /// A watchdog device kicked while the cluster loop is healthy.
        #[serde(default)]
        pub watchdog: Option<PathBuf>,
        /// The heartbeat media; at least one, each either `udp` or `serial`.
        #[serde(default)]
        pub heartbeat: Vec<HeartbeatConfig>,
    }
}

documented! {
    /// One heartbeat medium: exactly one of `udp` and `serial`.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct HeartbeatConfig {
        /// Heartbeats over UDP.
        #[serde(default)]
        pub udp: Option<UdpHeartbeat>,
        /// Heartbeats over a serial line (null-modem cable).
        #[serde(default)]
        pub serial: Option<SerialHeartbeat>,
    }
}

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct UdpHeartbeat {
        /// This node's address and port.
        pub bind: SocketAddr,
        /// The peer's address and port.
        pub peer: SocketAddr,
    }
}

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct SerialHeartbeat {
        /// The serial device.
        pub device: PathBuf,
        /// The line speed.
        #[serde(default = "default_baud")]
        pub baud: u32,
    }
}

/// Why the key file at `path` must not be used because of who may read it: the
/// cluster key authenticates heartbeats and replication, so a key readable by the
/// file's group or by others is refused (as sshd refuses a private key). `None`: the
/// mode is right, or the file cannot be examined (reading it reports that).
pub fn key_file_mode_problem(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "key file {} is readable by its group or by others (mode {mode:o}); the cluster key must be the owner's alone: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

fn default_auth_key_file() -> PathBuf {
    PathBuf::from("/etc/clusterd/authkey")
}
fn default_keepalive_ms() -> u64 {
    100
}
fn default_deadtime_ms() -> u64 {
    1000
}
fn default_warntime_ms() -> u64 {
    500
}
fn default_initdead_ms() -> u64 {
    5000
}
fn default_vip_interface() -> String {
    "eth0".into()
}
fn default_garp_count() -> u32 {
    5
}
fn default_garp_interval_ms() -> u64 {
    200
}
fn default_garp_refresh_s() -> u64 {
    60
}
fn default_baud() -> u32 {
    115_200
}

documented! {
    /// `[replication]`: shipping the store's op log to the peer over the private link.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct ReplicationConfig {
        /// Where the peer connects to us (the private link).
        pub listen: SocketAddr,
        /// The peer's `listen` address.
        pub peer: SocketAddr,
        /// sync: an SMTP 250 / IMAP OK only once the peer holds the change durably;
        /// async: at once.
        #[serde(default)]
        pub mode: ReplicationMode,
        /// A sync commit waits this long for the peer, then goes on alone (degraded).
        #[serde(default = "default_ack_timeout_ms")]
        pub ack_timeout_ms: u64,
        /// Ops kept in the log once both nodes hold them (compaction drops older ones);
        /// a peer further behind gets a snapshot (streamed; the message files it
        /// already has are not sent again).
        #[serde(default = "default_log_keep_ops")]
        pub log_keep_ops: u64,
    }
}

fn default_log_keep_ops() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    #[default]
    Sync,
    Async,
}

fn default_ack_timeout_ms() -> u64 {
    2000
}
