//! The `[outbound]` section: how mail for other domains leaves the node (MX routing or
//! a relay host, retries, bounces, concurrency) and the DKIM signature it carries.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct OutboundConfig {
        /// DNS servers for MX and address look-ups ("IP:PORT"); empty: the ones in
        /// /etc/resolv.conf.
        #[serde(default)]
        pub resolvers: Vec<SocketAddr>,
        /// TCP port of the remote mail exchangers (RFC 5321: 25). Change it only for a
        /// test lab.
        #[serde(default = "default_mx_port")]
        pub mx_port: u16,
        /// Send all mail for other domains through this host ("HOST:PORT", e.g. the
        /// ISP's "smtp.isp.example:587") instead of looking up MX records. Port 465
        /// means TLS from the first byte; otherwise STARTTLS when offered.
        #[serde(default)]
        pub relay_host: Option<String>,
        /// User name for AUTH at the relay host (then STARTTLS or TLS is required).
        #[serde(default)]
        pub relay_user: Option<String>,
        /// File holding the relay host's password (first line); keep it mode 0600.
        #[serde(default)]
        pub relay_password_file: Option<PathBuf>,
        /// Most concurrent outgoing SMTP connections.
        #[serde(default = "default_max_connections")]
        pub max_connections: usize,
        /// Most concurrent connections to one destination domain (or the relay host).
        #[serde(default = "default_max_per_domain")]
        pub max_per_domain: usize,
        /// Seconds to wait for a TCP connection to a mail exchanger.
        #[serde(default = "default_connect_timeout")]
        pub connect_timeout_s: u64,
        /// Seconds to wait for each reply of the remote server (the greeting, each
        /// command, the end of DATA).
        #[serde(default = "default_command_timeout")]
        pub command_timeout_s: u64,
        /// Seconds between delivery attempts of a deferred message: the n-th retry
        /// waits the n-th value, later ones the last.
        #[serde(default = "default_retry_schedule")]
        pub retry_schedule_s: Vec<u64>,
        /// Hours a message may stay queued; then it bounces to its sender.
        #[serde(default = "default_queue_lifetime")]
        pub queue_lifetime_h: f64,
        /// Hours after which the sender of a message still queued gets a warning that
        /// delivery is delayed (once); 0 sends none.
        #[serde(default = "default_delay_warning")]
        pub delay_warning_h: f64,
        /// Sign mail leaving for other domains with DKIM (the key is generated at first
        /// start and kept in the store; its DNS record is served in the zone of
        /// `domain.name`, and `clusterd dkim show` prints it).
        #[serde(default = "default_true")]
        pub dkim: bool,
        /// The DKIM selector: the record is `<selector>._domainkey.<domain.name>`.
        #[serde(default = "default_dkim_selector")]
        pub dkim_selector: String,
    }
}

fn default_mx_port() -> u16 {
    25
}
fn default_max_connections() -> usize {
    50
}
fn default_max_per_domain() -> usize {
    10
}
fn default_connect_timeout() -> u64 {
    30
}
fn default_command_timeout() -> u64 {
    300
}
fn default_retry_schedule() -> Vec<u64> {
    vec![60, 300, 900, 1800, 3600]
}
fn default_queue_lifetime() -> f64 {
    120.0
}
fn default_delay_warning() -> f64 {
    4.0
}
fn default_true() -> bool {
    true
}
fn default_dkim_selector() -> String {
    "clusterd".into()
}

impl Default for OutboundConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl OutboundConfig {
    /// Seconds to wait before attempt number `attempts + 1`, after `attempts` failed.
    pub fn retry_delay(&self, attempts: u32) -> u64 {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule_s.len().saturating_sub(1));
        self.retry_schedule_s.get(i).copied().unwrap_or(3600)
    }
}
