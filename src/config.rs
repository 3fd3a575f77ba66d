//! The one TOML configuration file: types (serde), defaults, and validation whose
//! errors name the file, the line and the key. `clusterd config example` prints
//! [`EXAMPLE`], which a test keeps parsing.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// A problem with the configuration, already phrased for the administrator:
/// `FILE: line N: key K: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    #[serde(default)]
    pub domain: DomainConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub smtp: SmtpConfig,
    #[serde(default)]
    pub imap: ImapConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub webmail: WebmailConfig,
    /// Absent: a single node that is always active.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Absent: the store is not copied to the peer. Needs `[cluster]` (its key).
    #[serde(default)]
    pub replication: Option<ReplicationConfig>,
}

/// `[replication]`: shipping the store's op log to the peer over the private link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Where the peer connects to us (the private link). Required.
    pub listen: SocketAddr,
    /// The peer's `listen` address. Required.
    pub peer: SocketAddr,
    /// `sync`: a commit returns once the peer holds it durably; `async`: at once.
    #[serde(default)]
    pub mode: ReplicationMode,
    /// How long a sync commit waits for the peer before going on alone (degraded).
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Ops the log keeps after both nodes hold them (compaction drops older ones); a
    /// peer that lacks older ops gets a snapshot instead.
    #[serde(default = "default_log_keep_ops")]
    pub log_keep_ops: u64,
}

fn default_log_keep_ops() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    #[default]
    Sync,
    Async,
}

fn default_ack_timeout_ms() -> u64 {
    2000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's name, e.g. `clusternodo1`. Required.
    pub name: String,
    /// Where the store keeps its database and message files. Required.
    pub data_dir: PathBuf,
    /// Unix socket the CLI uses to talk to the running node.
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/clusterd/control.sock")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// The organisation's mail domain.
    #[serde(default = "default_domain")]
    pub name: String,
    /// Domains whose mail is delivered to local accounts (defaults to `[name]`).
    #[serde(default)]
    pub local_domains: Vec<String>,
    /// Local part → account, e.g. `postmaster = "sistemas"`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

fn default_domain() -> String {
    "cluster.com.ec".into()
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            name: default_domain(),
            local_domains: Vec::new(),
            aliases: BTreeMap::new(),
        }
    }
}

impl DomainConfig {
    /// Whether `domain` (any case) is delivered locally.
    pub fn is_local(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.name)
            || self
                .local_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The account a local part delivers to, after aliases (one level).
    pub fn resolve_local_part(&self, local: &str) -> String {
        let local = local.to_ascii_lowercase();
        self.aliases
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&local))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or(local)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Inbound MTA listeners (no AUTH; STARTTLS offered).
    #[serde(default = "default_smtp_listen")]
    pub listen: Vec<SocketAddr>,
    /// Submission with STARTTLS + AUTH (RFC 6409).
    #[serde(default = "default_submission_listen")]
    pub submission_listen: Vec<SocketAddr>,
    /// Submission over implicit TLS (RFC 8314).
    #[serde(default = "default_submissions_listen")]
    pub submissions_listen: Vec<SocketAddr>,
    /// Clients allowed to relay to non-local domains without authenticating.
    #[serde(default = "default_relay_from")]
    pub relay_from: Vec<IpNet>,
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Refuse MAIL FROM whose domain has no MX/A/AAAA record (local domains always pass).
    #[serde(default = "default_true")]
    pub require_resolvable_sender: bool,
    /// Name announced in the greeting and Received headers (defaults to the node's name
    /// within the domain).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Seconds a client may stay silent before the session is closed (RFC 5321 4.5.3.2).
    #[serde(default = "default_smtp_timeout")]
    pub timeout_s: u64,
    /// Most concurrent SMTP sessions.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
}

fn default_smtp_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:25".parse().unwrap()]
}
fn default_submission_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:587".parse().unwrap()]
}
fn default_submissions_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:465".parse().unwrap()]
}
fn default_relay_from() -> Vec<IpNet> {
    vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
}
fn default_max_message_bytes() -> u64 {
    25 * 1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_smtp_timeout() -> u64 {
    300
}
fn default_max_sessions() -> usize {
    500
}

impl Default for SmtpConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl SmtpConfig {
    pub fn may_relay(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.relay_from.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    #[serde(default = "default_imap_listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(default = "default_imaps_listen")]
    pub tls_listen: Vec<SocketAddr>,
    /// Clients allowed LOGIN / AUTHENTICATE PLAIN without TLS.
    #[serde(default = "default_plaintext_from")]
    pub allow_plaintext_auth_from: Vec<IpNet>,
    /// Seconds of client silence before autologout (RFC 3501 5.4: at least 30 minutes).
    #[serde(default = "default_imap_timeout")]
    pub timeout_s: u64,
    /// Most concurrent IMAP sessions.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
}

fn default_imap_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:143".parse().unwrap()]
}
fn default_imaps_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:993".parse().unwrap()]
}
fn default_plaintext_from() -> Vec<IpNet> {
    vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
}
fn default_imap_timeout() -> u64 {
    1800
}

impl Default for ImapConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl ImapConfig {
    pub fn plaintext_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.allow_plaintext_auth_from
            .iter()
            .any(|n| n.contains(&ip))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses answering DNS over UDP and TCP.
    #[serde(default = "default_dns_listen")]
    pub listen: Vec<SocketAddr>,
    /// Directory of RFC 1035 zone files (`NAME.zone`), watched for changes.
    #[serde(default = "default_zones_dir")]
    pub zones_dir: PathBuf,
    /// Clients that may ask for names outside our zones (answered via `forwarders`).
    #[serde(default = "default_recursion_from")]
    pub recursion_from: Vec<IpNet>,
    /// Upstream resolvers for names outside our zones; none means SERVFAIL.
    #[serde(default)]
    pub forwarders: Vec<SocketAddr>,
    /// Clients allowed zone transfers (AXFR).
    #[serde(default = "default_axfr_from")]
    pub axfr_from: Vec<IpNet>,
}

fn default_dns_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:53".parse().unwrap()]
}
fn default_zones_dir() -> PathBuf {
    PathBuf::from("/etc/clusterd/zones")
}
fn default_recursion_from() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect()
}
fn default_axfr_from() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "192.168.1.0/24"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The web site (static content from the store) and the mount point of the webmail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Plain HTTP addresses.
    #[serde(default = "default_http_listen")]
    pub listen: Vec<SocketAddr>,
    /// HTTPS addresses (HTTP/1.1 and HTTP/2, the same certificate as mail).
    #[serde(default = "default_https_listen")]
    pub https_listen: Vec<SocketAddr>,
    /// Plain HTTP answers every request with a 301 to the same URL over HTTPS.
    #[serde(default)]
    pub redirect_to_https: bool,
    /// Access log file (Combined Log Format, one line per request); none when absent.
    #[serde(default)]
    pub access_log: Option<PathBuf>,
    /// Seconds a client has to send a request's headers (also the keep-alive idle
    /// time between HTTP/1.1 requests).
    #[serde(default = "default_http_header_timeout")]
    pub header_timeout_s: u64,
    /// Seconds without any traffic after which a connection is closed (HTTP/2 too).
    #[serde(default = "default_http_idle_timeout")]
    pub idle_timeout_s: u64,
    /// Largest request head (request line and headers), bytes; larger gets 431.
    #[serde(default = "default_http_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most concurrent connections over all listeners; more wait in the backlog.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
    /// Virtual hosts: other sites served by Host header from other content roots.
    #[serde(default)]
    pub vhost: Vec<VhostConfig>,
    /// A directory the active node watches and publishes into `publish_root` of the
    /// content area (changed files only; files gone from it are removed).
    #[serde(default)]
    pub publish_dir: Option<PathBuf>,
    /// The content root `publish_dir` is published into.
    #[serde(default = "default_publish_root")]
    pub publish_root: String,
}

fn default_publish_root() -> String {
    "www".into()
}

/// A virtual host: requests whose Host is `name` or one of `aliases` are served from
/// the content root `root` (a prefix in the store's content area, like `www`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VhostConfig {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub root: String,
}

fn default_http_header_timeout() -> u64 {
    10
}
fn default_http_idle_timeout() -> u64 {
    60
}
fn default_http_max_header_bytes() -> usize {
    16 * 1024
}
fn default_http_max_connections() -> usize {
    10_000
}

fn default_http_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:80".parse().unwrap()]
}
fn default_https_listen() -> Vec<SocketAddr> {
    vec!["0.0.0.0:443".parse().unwrap()]
}

impl Default for HttpConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// The webmail at `/webmail/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebmailConfig {
    /// A session unused for this long is logged out.
    #[serde(default = "default_webmail_idle")]
    pub session_idle_minutes: u64,
    /// Failed logins for one user within `login_window_seconds` before further
    /// attempts get 429 (Retry-After).
    #[serde(default = "default_webmail_max_failures")]
    pub login_max_failures: u32,
    /// Failed logins from one client IP within the window before 429.
    #[serde(default = "default_webmail_max_failures_ip")]
    pub login_max_failures_per_ip: u32,
    /// The sliding window of the login rate limits.
    #[serde(default = "default_webmail_window")]
    pub login_window_seconds: u64,
    /// Messages per page of the message list.
    #[serde(default = "default_webmail_page_size")]
    pub page_size: usize,
    /// Parsed list headers (From, Subject, Date) kept in memory, one per message body.
    #[serde(default = "default_webmail_summary_cache")]
    pub summary_cache_entries: usize,
}

fn default_webmail_idle() -> u64 {
    30
}
fn default_webmail_max_failures() -> u32 {
    5
}
fn default_webmail_max_failures_ip() -> u32 {
    20
}
fn default_webmail_window() -> u64 {
    300
}
fn default_webmail_page_size() -> usize {
    50
}
fn default_webmail_summary_cache() -> usize {
    200_000
}

impl Default for WebmailConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl DnsConfig {
    pub fn may_recurse(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.recursion_from.iter().any(|n| n.contains(&ip))
    }
    pub fn may_transfer(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.axfr_from.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The other node's name. Required.
    pub peer: String,
    /// The node that takes the service back when it returns (auto failback); none:
    /// the active node keeps it.
    #[serde(default)]
    pub preferred: Option<String>,
    /// The shared secret that authenticates heartbeats (same file on both nodes).
    #[serde(default = "default_auth_key_file")]
    pub auth_key_file: PathBuf,
    #[serde(default = "default_keepalive_ms")]
    pub keepalive_ms: u64,
    /// Silence on every medium for this long and the peer is dead.
    #[serde(default = "default_deadtime_ms")]
    pub deadtime_ms: u64,
    /// Silence on one medium for this long is logged as a warning.
    #[serde(default = "default_warntime_ms")]
    pub warntime_ms: u64,
    /// At start-up, how long to wait for the peer before acting alone.
    #[serde(default = "default_initdead_ms")]
    pub initdead_ms: u64,
    /// The virtual IP with its prefix, held by the active node. Required.
    pub vip: ipnet::Ipv4Net,
    #[serde(default = "default_vip_interface")]
    pub vip_interface: String,
    #[serde(default = "default_garp_count")]
    pub garp_count: u32,
    #[serde(default = "default_garp_interval_ms")]
    pub garp_interval_ms: u64,
    /// Gratuitous ARP re-sent this often while active; 0 = never.
    #[serde(default = "default_garp_refresh_s")]
    pub garp_refresh_s: u64,
    /// Tie-breakers: a node that reaches none of these does not take over.
    #[serde(default)]
    pub ping_nodes: Vec<IpAddr>,
    /// A watchdog device kicked while the cluster loop is healthy.
    #[serde(default)]
    pub watchdog: Option<PathBuf>,
    /// The heartbeat media; at least one.
    #[serde(default)]
    pub heartbeat: Vec<HeartbeatConfig>,
}

/// One heartbeat medium: exactly one of `udp` and `serial`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    #[serde(default)]
    pub udp: Option<UdpHeartbeat>,
    #[serde(default)]
    pub serial: Option<SerialHeartbeat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpHeartbeat {
    pub bind: SocketAddr,
    pub peer: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialHeartbeat {
    pub device: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
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

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "{}: cannot read the configuration: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => locate_span(text, span.start),
                None => (0, String::new()),
            };
            let msg = e.message().trim().to_string();
            ConfigError(match (line, key.is_empty()) {
                (0, _) => format!("{}: {msg}", path.display()),
                (l, true) => format!("{}: line {l}: {msg}", path.display()),
                (l, false) => format!("{}: line {l}: key `{key}`: {msg}", path.display()),
            })
        })?;
        cfg.validate(text, path)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err = |section: &str, key: &str, problem: String| {
            let line = find_key_line(text, section, key);
            let full = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            ConfigError(match line {
                Some(l) => format!("{}: line {l}: key `{full}`: {problem}", path.display()),
                None => format!("{}: key `{full}`: {problem}", path.display()),
            })
        };
        if crate::store::normalize_account(&self.node.name).is_err() || self.node.name.contains('.')
        {
            return Err(err(
                "node",
                "name",
                format!(
                    "{:?} is not a valid node name (letters, digits, '-', '_')",
                    self.node.name
                ),
            ));
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(err("node", "data_dir", "must not be empty".into()));
        }
        if !valid_domain(&self.domain.name) {
            return Err(err(
                "domain",
                "name",
                format!("{:?} is not a domain name", self.domain.name),
            ));
        }
        if let Some(bad) = self.domain.local_domains.iter().find(|d| !valid_domain(d)) {
            return Err(err(
                "domain",
                "local_domains",
                format!("{bad:?} is not a domain name"),
            ));
        }
        for (alias, target) in &self.domain.aliases {
            if crate::store::normalize_account(alias).is_err()
                || crate::store::normalize_account(target).is_err()
            {
                return Err(err(
                    "domain",
                    "aliases",
                    format!("alias {alias:?} = {target:?}: names must be valid account names"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            for (key, file) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !file.is_file() {
                    return Err(err(
                        "tls",
                        key,
                        format!("file {} does not exist or is not a file", file.display()),
                    ));
                }
            }
        }
        if self.smtp.max_message_bytes < 1024 {
            return Err(err(
                "smtp",
                "max_message_bytes",
                "must be at least 1024".into(),
            ));
        }
        if let Some(c) = &self.cluster {
            self.validate_cluster(c, &err)?;
        }
        if let Some(r) = &self.replication {
            if self.cluster.is_none() {
                return Err(err(
                    "replication",
                    "peer",
                    "[replication] needs [cluster] (its roles and auth_key_file)".into(),
                ));
            }
            if r.peer == r.listen {
                return Err(err(
                    "replication",
                    "peer",
                    format!("{} is this node's own listen address", r.peer),
                ));
            }
            if r.ack_timeout_ms == 0 {
                return Err(err(
                    "replication",
                    "ack_timeout_ms",
                    "must be greater than 0".into(),
                ));
            }
            if r.log_keep_ops == 0 {
                return Err(err(
                    "replication",
                    "log_keep_ops",
                    "must be at least 1".into(),
                ));
            }
        }
        self.validate_http(text, path)?;
        for (section, key, v) in [
            ("smtp", "timeout_s", self.smtp.timeout_s),
            ("imap", "timeout_s", self.imap.timeout_s),
            ("smtp", "max_sessions", self.smtp.max_sessions as u64),
            ("imap", "max_sessions", self.imap.max_sessions as u64),
        ] {
            if v == 0 {
                return Err(err(section, key, "must be greater than 0".into()));
            }
        }
        Ok(())
    }

    fn validate_http(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let h = &self.http;
        let err = |key: &str, line: Option<usize>, problem: String| {
            ConfigError(match line {
                Some(l) => format!("{}: line {l}: key `http.{key}`: {problem}", path.display()),
                None => format!("{}: key `http.{key}`: {problem}", path.display()),
            })
        };
        let line = |key: &str| find_key_line(text, "http", key);
        for (key, v) in [
            ("header_timeout_s", h.header_timeout_s),
            ("idle_timeout_s", h.idle_timeout_s),
            ("max_connections", h.max_connections as u64),
        ] {
            if v == 0 {
                return Err(err(key, line(key), "must be greater than 0".into()));
            }
        }
        if !(8192..=1 << 20).contains(&h.max_header_bytes) {
            return Err(err(
                "max_header_bytes",
                line("max_header_bytes"),
                "must be between 8192 and 1048576".into(),
            ));
        }
        if let Some(log) = &h.access_log
            && (log.as_os_str().is_empty() || log.is_dir())
        {
            return Err(err(
                "access_log",
                line("access_log"),
                format!("{} is not a file path", log.display()),
            ));
        }
        if crate::store::normalize_content_path(&h.publish_root).is_err()
            || h.publish_root.trim_matches('/').is_empty()
        {
            return Err(err(
                "publish_root",
                line("publish_root"),
                format!(
                    "{:?} is not a directory of the content area",
                    h.publish_root
                ),
            ));
        }
        if let Some(dir) = &h.publish_dir
            && dir.as_os_str().is_empty()
        {
            return Err(err(
                "publish_dir",
                line("publish_dir"),
                "must be a directory path".into(),
            ));
        }
        if h.redirect_to_https && h.https_listen.is_empty() {
            return Err(err(
                "redirect_to_https",
                line("redirect_to_https"),
                "needs at least one https_listen address".into(),
            ));
        }
        // The n-th `[[http.vhost]]` table and the line of `key` inside it.
        let vhost_line = |n: usize, key: &str| -> Option<usize> {
            let mut seen = 0;
            let mut inside = false;
            for (i, l) in text.lines().enumerate() {
                let t = l.trim();
                if t.starts_with('[') {
                    inside = t.replace(' ', "") == "[[http.vhost]]" && {
                        seen += 1;
                        seen == n + 1
                    };
                    if inside && key.is_empty() {
                        return Some(i + 1);
                    }
                } else if inside
                    && let Some((k, _)) = t.split_once('=')
                    && k.trim().trim_matches('"') == key
                {
                    return Some(i + 1);
                }
            }
            None
        };
        let mut names: Vec<String> = Vec::new();
        for (n, v) in h.vhost.iter().enumerate() {
            for (key, host) in
                std::iter::once(("name", &v.name)).chain(v.aliases.iter().map(|a| ("aliases", a)))
            {
                let host = host.to_ascii_lowercase();
                if !valid_domain(&host) && host.parse::<IpAddr>().is_err() {
                    return Err(err(
                        &format!("vhost.{key}"),
                        vhost_line(n, key),
                        format!("{host:?} is not a host name"),
                    ));
                }
                if names.contains(&host) {
                    return Err(err(
                        &format!("vhost.{key}"),
                        vhost_line(n, key),
                        format!("host {host:?} is named by two virtual hosts"),
                    ));
                }
                names.push(host);
            }
            let root = crate::store::normalize_content_path(&v.root)
                .ok()
                .filter(|r| r != "zones" && !r.starts_with("zones/"));
            if root.is_none() {
                return Err(err(
                    "vhost.root",
                    vhost_line(n, "root"),
                    format!(
                        "{:?} must be a directory of the content area (like \"www-intranet\") outside \"zones\"",
                        v.root
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_cluster(
        &self,
        c: &ClusterConfig,
        err: &dyn Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if crate::store::normalize_account(&c.peer).is_err() || c.peer == self.node.name {
            return Err(err(
                "cluster",
                "peer",
                format!(
                    "{:?} must be the other node's name (not {:?})",
                    c.peer, self.node.name
                ),
            ));
        }
        if let Some(p) = &c.preferred
            && *p != c.peer
            && *p != self.node.name
        {
            return Err(err(
                "cluster",
                "preferred",
                format!(
                    "{p:?} is neither this node ({:?}) nor the peer ({:?})",
                    self.node.name, c.peer
                ),
            ));
        }
        if !c.auth_key_file.is_file() {
            return Err(err(
                "cluster",
                "auth_key_file",
                format!(
                    "file {} does not exist or is not a file",
                    c.auth_key_file.display()
                ),
            ));
        }
        if c.keepalive_ms == 0 || c.deadtime_ms < 2 * c.keepalive_ms {
            return Err(err(
                "cluster",
                "deadtime_ms",
                format!(
                    "must be at least twice keepalive_ms ({} ms)",
                    c.keepalive_ms
                ),
            ));
        }
        if c.warntime_ms >= c.deadtime_ms {
            return Err(err(
                "cluster",
                "warntime_ms",
                "must be shorter than deadtime_ms".into(),
            ));
        }
        if c.heartbeat.is_empty() {
            return Err(err(
                "cluster",
                "heartbeat",
                "at least one [[cluster.heartbeat]] medium is needed".into(),
            ));
        }
        if let Some(i) = c
            .heartbeat
            .iter()
            .position(|h| h.udp.is_some() == h.serial.is_some())
        {
            return Err(err(
                "cluster",
                "heartbeat",
                format!(
                    "medium {}: give exactly one of `udp = {{ bind, peer }}` or `serial = {{ device, baud }}`",
                    i + 1
                ),
            ));
        }
        Ok(())
    }

    /// The name this node announces (SMTP greeting, Received headers).
    pub fn hostname(&self) -> String {
        self.smtp
            .hostname
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.node.name, self.domain.name))
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// 1-based line of byte offset `pos`, and the dotted key written on that line (with
/// its table), if the line is a `key = value` line.
fn locate_span(text: &str, pos: usize) -> (usize, String) {
    let pos = pos.min(text.len());
    let line_no = text[..pos].matches('\n').count() + 1;
    let mut section = String::new();
    let mut key = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if i + 1 > line_no {
            break;
        }
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if i + 1 == line_no {
                key.clear();
            }
        } else if i + 1 == line_no
            && let Some((k, _)) = t.split_once('=')
        {
            key = k.trim().trim_matches('"').to_string();
        }
    }
    let full = if key.is_empty() || section.is_empty() {
        section + &key
    } else {
        format!("{section}.{key}")
    };
    (line_no, full)
}

/// The 1-based line where `key` is set inside `[section]`.
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if current == section
            && let Some((k, _)) = t.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some(i + 1);
        }
    }
    None
}

/// A fully commented configuration for the reference deployment; every key with its
/// default. Printed by `clusterd config example`.
pub const EXAMPLE: &str = r#"# clusterd configuration (TOML). Every key except node.name and node.data_dir
# has the default shown.

[node]
# This node's name; the peer knows it by this name.
name = "clusternodo1"
# Database and message files.
data_dir = "/var/lib/clusterd"
# Unix socket for `clusterd status`, `clusterd user ...` against the running node.
control_socket = "/run/clusterd/control.sock"

[domain]
# The organisation's mail domain.
name = "cluster.com.ec"
# Mail for these domains is delivered to local accounts (default: [name]).
local_domains = ["cluster.com.ec", "clusternodo1.cluster.com.ec", "clusternodo2.cluster.com.ec"]
# Local part -> account.
aliases = { postmaster = "sistemas", root = "sistemas", abuse = "sistemas" }

# [tls]
# PEM files. Without this section a self-signed certificate for the domain names is
# generated at first start and kept in the store (both nodes present the same one).
# cert = "/etc/clusterd/tls/cert.pem"
# key = "/etc/clusterd/tls/key.pem"

[smtp]
# Inbound mail (MX). STARTTLS offered, no AUTH.
listen = ["0.0.0.0:25"]
# Submission for mail clients: STARTTLS then AUTH (RFC 6409).
submission_listen = ["0.0.0.0:587"]
# Submission over implicit TLS (RFC 8314).
submissions_listen = ["0.0.0.0:465"]
# Clients that may send to other domains without authenticating.
relay_from = ["127.0.0.1/32", "10.0.0.2/32", "10.0.0.10/32", "192.168.1.0/24"]
# Largest message accepted (SIZE), bytes.
max_message_bytes = 26214400
# Refuse senders whose domain does not resolve (local domains always pass).
require_resolvable_sender = true
# Name in the greeting and Received headers (default: "<node.name>.<domain.name>").
# hostname = "mail.cluster.com.ec"
# Seconds of client silence before the session is closed.
timeout_s = 300
# Most concurrent sessions.
max_sessions = 500

[imap]
listen = ["0.0.0.0:143"]
# Implicit TLS (IMAPS).
tls_listen = ["0.0.0.0:993"]
# Clients that may log in without TLS (everyone else must use STARTTLS or 993).
allow_plaintext_auth_from = ["127.0.0.0/8"]
# Seconds of client silence before autologout.
timeout_s = 1800
# Most concurrent sessions.
max_sessions = 500

[dns]
# Authoritative for the zones below, and the LAN's resolver. UDP and TCP on each.
listen = ["0.0.0.0:53"]
# RFC 1035 zone files named ZONE.zone; a changed file is reloaded, a broken one is
# reported and the previous version keeps serving. Loaded into the store, so the
# peer serves the same data.
zones_dir = "/etc/clusterd/zones"
# Clients that may ask for names outside our zones (others get REFUSED).
recursion_from = ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
# Upstream resolvers for those names (none: SERVFAIL).
forwarders = []
# Clients allowed zone transfers (AXFR).
axfr_from = ["127.0.0.0/8", "::1/128", "192.168.1.0/24"]

[http]
# The site (files under www/ in the store's content area; the repository's www/ is
# loaded at first start) and the webmail at /webmail/.
listen = ["0.0.0.0:80"]
# HTTP/1.1 and HTTP/2, with the same certificate as mail.
https_listen = ["0.0.0.0:443"]
# Answer plain HTTP with a 301 to the same URL over HTTPS.
redirect_to_https = false
# Combined Log Format, one line per request (none when absent).
# access_log = "/var/log/clusterd/access.log"
# Seconds to send a request's headers (also the HTTP/1.1 keep-alive idle time).
header_timeout_s = 10
# Seconds without traffic before a connection is closed.
idle_timeout_s = 60
# Largest request line plus headers, bytes (larger: 431).
max_header_bytes = 16384
# Most concurrent connections; more wait in the listen backlog.
max_connections = 10000
# A directory the active node watches: its files become the content under
# publish_root (changed files only, and they travel to the peer as block deltas;
# files removed from it are removed). `clusterd content publish DIR` does the same once.
# publish_dir = "/srv/site"
publish_root = "www"
# Virtual hosts by Host header; other names get the default site (content root www).
# [[http.vhost]]
# name = "intranet.cluster.com.ec"
# aliases = ["intranet"]
# # A directory of the store's content area (not zones).
# root = "www-intranet"

# Without [cluster] the node is alone and always active. For the pair, uncomment
# (peer, vip and at least one heartbeat medium are required; the key file must exist).
# [cluster]
# peer = "clusternodo2"
# # Takes the service back when it returns; omit for no failback.
# preferred = "clusternodo1"
# # Same secret on both nodes; authenticates every heartbeat.
# auth_key_file = "/etc/clusterd/authkey"
# keepalive_ms = 100
# # The peer is dead after this long with no heartbeat on any medium.
# deadtime_ms = 1000
# # One medium silent this long is logged as a warning.
# warntime_ms = 500
# # At start-up, wait this long for the peer before acting alone.
# initdead_ms = 5000
# vip = "10.0.0.100/8"
# vip_interface = "eth0"
# garp_count = 5
# garp_interval_ms = 200
# # Re-announce the VIP this often while active; 0 = off.
# garp_refresh_s = 60
# # Quorum tie-breakers: a node reaching none of them does not take over.
# ping_nodes = []
# # watchdog = "/dev/watchdog"
# [[cluster.heartbeat]]
# udp = { bind = "192.168.1.1:694", peer = "192.168.1.2:694" }
# [[cluster.heartbeat]]
# serial = { device = "/dev/ttyS0", baud = 115200 }

# The store copied to the peer over the private link (needs [cluster]: the channel is
# TLS, and both ends prove they hold auth_key_file, bound to that TLS session).
# [replication]
# listen = "192.168.1.1:7000"
# peer = "192.168.1.2:7000"
# # sync: an SMTP 250 / IMAP OK only once the peer holds the change durably.
# mode = "sync"
# # A sync commit waits this long for the peer, then goes on alone (degraded).
# ack_timeout_ms = 2000
# # Ops kept in the log once both nodes hold them; a peer further behind gets a
# # snapshot (streamed; the message files it already has are not sent again).
# log_keep_ops = 10000
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/clusterd/clusterd.toml"))
    }

    #[test]
    fn example_parses() {
        let cfg = parse(EXAMPLE).expect("example parses");
        assert_eq!(cfg.node.name, "clusternodo1");
        assert_eq!(cfg.domain.resolve_local_part("Postmaster"), "sistemas");
        assert!(cfg.domain.is_local("CLUSTER.com.ec"));
        assert!(cfg.smtp.may_relay("10.0.0.10".parse().unwrap()));
        assert!(!cfg.smtp.may_relay("10.0.0.11".parse().unwrap()));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = parse("[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(cfg.smtp.listen, default_smtp_listen());
        assert_eq!(cfg.imap.tls_listen, default_imaps_listen());
        assert_eq!(cfg.smtp.max_message_bytes, 26214400);
        assert!(cfg.imap.plaintext_allowed("127.0.0.1".parse().unwrap()));
        assert!(!cfg.imap.plaintext_allowed("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn misspelled_key_names_line_and_key() {
        let e = parse(
            "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n[smtp]\nlisen = [\"127.0.0.1:25\"]\n",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("clusterd.toml"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_address_names_line_and_key() {
        let e = parse("[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n\n[imap]\nlisten = [\"127.0.0.1:99999\"]\n")
            .unwrap_err()
            .0;
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("imap.listen"), "{e}");
    }

    #[test]
    fn missing_tls_file_names_key() {
        let e = parse("[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("tls.cert"), "{e}");
    }

    const BASE: &str = "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n";

    #[test]
    fn http_defaults_and_vhosts() {
        let cfg = parse(&format!(
            "{BASE}[http]\nredirect_to_https = true\naccess_log = \"/tmp/a.log\"\n\
             [[http.vhost]]\nname = \"Intranet.cluster.com.ec\"\naliases = [\"intranet\"]\nroot = \"www-intranet\"\n"
        ))
        .unwrap();
        assert!(cfg.http.redirect_to_https);
        assert_eq!(cfg.http.header_timeout_s, 10);
        assert_eq!(cfg.http.vhost.len(), 1);
        assert_eq!(cfg.http.vhost[0].root, "www-intranet");
        let cfg = parse(BASE).unwrap();
        assert!(!cfg.http.redirect_to_https);
        assert!(cfg.http.access_log.is_none());
    }

    #[test]
    fn http_vhost_errors_name_line_and_key() {
        // line 4 [http], 5 [[http.vhost]], 6 name, 7 root
        let e = parse(&format!(
            "{BASE}[http]\n[[http.vhost]]\nname = \"a.example\"\nroot = \"../etc\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("http.vhost.root"), "{e}");
        let e = parse(&format!(
            "{BASE}[[http.vhost]]\nname = \"a.example\"\nroot = \"zones\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(e.contains("line 6") && e.contains("http.vhost.root"), "{e}");
        let e = parse(&format!(
            "{BASE}[[http.vhost]]\nname = \"a.example\"\nroot = \"w1\"\n\
             [[http.vhost]]\nname = \"bad host!\"\nroot = \"w2\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(e.contains("line 8") && e.contains("http.vhost.name"), "{e}");
        let e = parse(&format!(
            "{BASE}[[http.vhost]]\nname = \"a.example\"\naliases = [\"A.example\"]\nroot = \"w1\"\n"
        ))
        .unwrap_err()
        .0;
        assert!(
            e.contains("line 6") && e.contains("two virtual hosts"),
            "{e}"
        );
        let e = parse(&format!("{BASE}[[http.vhost]]\nname = \"a.example\"\n"))
            .unwrap_err()
            .0;
        assert!(e.contains("root"), "{e}");
    }

    #[test]
    fn http_limits_name_line_and_key() {
        let e = parse(&format!("{BASE}\n[http]\nmax_header_bytes = 100\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("line 6") && e.contains("http.max_header_bytes"),
            "{e}"
        );
        let e = parse(&format!("{BASE}[http]\nidle_timeout_s = 0\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("line 5") && e.contains("http.idle_timeout_s"),
            "{e}"
        );
        let e = parse(&format!(
            "{BASE}[http]\nhttps_listen = []\nredirect_to_https = true\n"
        ))
        .unwrap_err()
        .0;
        assert!(
            e.contains("line 6") && e.contains("http.redirect_to_https"),
            "{e}"
        );
        let e = parse(&format!("{BASE}[http]\nredirect_to_https = \"yes\"\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("line 5") && e.contains("http.redirect_to_https"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = parse("[node]\nname = \"n1\"\n").unwrap_err().0;
        assert!(e.contains("data_dir"), "{e}");
    }
}
