//! The `[monitor]` section: how often the node probes its services and its peer's,
//! when it restarts a service and when it hands the node over, where alerts go, who
//! may read `/status`, and whether the test-only fault injection is allowed.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct MonitorConfig {
        /// Probe every service (and the peer's, over the private link) this often, in
        /// seconds.
        #[serde(default = "default_interval")]
        pub interval_s: u64,
        /// Seconds one probe may take before it counts as failed.
        #[serde(default = "default_probe_timeout")]
        pub probe_timeout_s: u64,
        /// Failed probes in a row after which the service is restarted.
        #[serde(default = "default_failures_before_restart")]
        pub failures_before_restart: u32,
        /// Restarts that did not bring a service back after which this node, while
        /// the peer reports the same service healthy, declares itself unhealthy and
        /// hands the service over (planned switchover). It takes it back only once its
        /// services pass again and `cluster.preferred` names it.
        #[serde(default = "default_restarts_before_failover")]
        pub restarts_before_failover: u32,
        /// Who receives alert mail (delivered here, so it replicates and the webmail
        /// shows it); none: sistemas@ the mail domain.
        #[serde(default)]
        pub alert_to: Option<String>,
        /// One line per event is appended here; a relative path is taken inside
        /// node.data_dir.
        #[serde(default = "default_alert_file")]
        pub alert_file: PathBuf,
        /// Seconds before the same alert is sent again while its cause lasts.
        #[serde(default = "default_alert_every")]
        pub alert_every_s: u64,
        /// Alert when the file system of node.data_dir has less free space than this
        /// (percent).
        #[serde(default = "default_min_free_percent")]
        pub min_free_percent: f64,
        /// Alert when the TLS certificate expires within this many days.
        #[serde(default = "default_cert_warn_days")]
        pub cert_warn_days: u64,
        /// Alert when the oldest message in the outbound queue is older than this
        /// (seconds).
        #[serde(default = "default_queue_max_age")]
        pub queue_max_age_s: u64,
        /// Networks that may read /status, /status.json and /metrics (everyone else
        /// gets 403).
        #[serde(default = "default_status_from")]
        pub status_from: Vec<IpNet>,
        /// Hosts of the LAN pinged (ICMP echo) at every interval and shown on the
        /// status page.
        #[serde(default)]
        pub ping_hosts: Vec<IpAddr>,
        /// Accept `clusterd debug stop|wedge|panic SERVICE` (fault injection for
        /// tests). Never enable it in production.
        #[serde(default)]
        pub allow_fault_injection: bool,
    }
}

fn default_interval() -> u64 {
    10
}
fn default_probe_timeout() -> u64 {
    5
}
fn default_failures_before_restart() -> u32 {
    2
}
fn default_restarts_before_failover() -> u32 {
    3
}
fn default_alert_file() -> PathBuf {
    "alerts.log".into()
}
fn default_alert_every() -> u64 {
    300
}
fn default_min_free_percent() -> f64 {
    10.0
}
fn default_cert_warn_days() -> u64 {
    14
}
fn default_queue_max_age() -> u64 {
    3600
}
fn default_status_from() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    .iter()
    .map(|n| n.parse().expect("a network"))
    .collect()
}

impl Default for MonitorConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl MonitorConfig {
    /// The alert file's path (`alert_file`, relative ones inside `data_dir`).
    pub fn alert_path(&self, data_dir: &std::path::Path) -> PathBuf {
        data_dir.join(&self.alert_file)
    }

    /// The alert mail's recipient: `alert_to`, or sistemas@`domain`.
    pub fn alert_recipient(&self, domain: &str) -> String {
        self.alert_to
            .clone()
            .unwrap_or_else(|| format!("sistemas@{domain}"))
    }
}
