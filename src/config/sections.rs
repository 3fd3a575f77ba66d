//! The sections of one node's services: `[node]`, `[domain]`, `[tls]`, `[smtp]`,
//! `[imap]`, `[dns]`, `[http]` (with `[[http.vhost]]`) and `[webmail]`, each with its
//! defaults and the small questions the services ask of it (may this client relay?).
//!
//! The field doc comments are written for the administrator: `clusterd config
//! example` prints them above each key (see `super::example`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::canonical_ip;

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct NodeConfig {
        /// This node's name; the peer knows it by this name (letters, digits, '-', '_').
        pub name: String,
        /// Where the store keeps its database and message files.
        pub data_dir: PathBuf,
        /// Unix socket for `clusterd status`, `clusterd user ...` against the running
        /// node.
        #[serde(default = "default_control_socket")]
        pub control_socket: PathBuf,
        /// NTP servers the clock synchronises with (systemd-timesyncd's `NTP=`, written
        /// by the image at boot), e.g. `["ntp.cluster.com.ec", "10.0.0.1"]`; empty: the
        /// distribution's default servers. The op log's clocks, TLS and DKIM need a
        /// right clock; `clusterd status` shows whether it is synchronised.
        #[serde(default)]
        pub ntp_servers: Vec<String>,
    }
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/clusterd/control.sock")
}

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct DomainConfig {
        /// The organisation's mail domain.
        #[serde(default = "default_domain")]
        pub name: String,
        /// More domains whose mail is delivered to local accounts (`name` always is).
        #[serde(default)]
        pub local_domains: Vec<String>,
        /// Local part -> account, e.g. `postmaster = "sistemas"` (one level, any case).
        #[serde(default)]
        pub aliases: BTreeMap<String, String>,
    }
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

    /// Whether `account` may use the address `local@domain` as its envelope sender:
    /// the domain is local (any case) and the local part delivers to that account
    /// (the account's own name, or an alias of it), the rule of Postfix's
    /// `reject_sender_login_mismatch`. A local part an alias hands to another account
    /// is not the account's even when it is its name.
    pub fn owns_address(&self, account: &str, local: &str, domain: &str) -> bool {
        self.is_local(domain) && self.resolve_local_part(local).eq_ignore_ascii_case(account)
    }
}

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct TlsConfig {
        /// PEM certificate chain.
        pub cert: PathBuf,
        /// PEM private key.
        pub key: PathBuf,
    }
}

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct SmtpConfig {
        /// Inbound mail (MX): STARTTLS offered, no AUTH.
        #[serde(default = "default_smtp_listen")]
        pub listen: Vec<SocketAddr>,
        /// Submission for mail clients: STARTTLS, then AUTH (RFC 6409).
        #[serde(default = "default_submission_listen")]
        pub submission_listen: Vec<SocketAddr>,
        /// Submission over implicit TLS (RFC 8314).
        #[serde(default = "default_submissions_listen")]
        pub submissions_listen: Vec<SocketAddr>,
        /// Clients that may send to other domains without authenticating.
        #[serde(default = "default_relay_from")]
        pub relay_from: Vec<IpNet>,
        /// Largest message accepted (SIZE), bytes; at least 1024.
        #[serde(default = "default_max_message_bytes")]
        pub max_message_bytes: u64,
        /// Refuse MAIL FROM whose domain has no MX/A/AAAA record (local domains always
        /// pass).
        #[serde(default = "default_true")]
        pub require_resolvable_sender: bool,
        /// Name in the greeting and Received headers (default:
        /// `<node.name>.<domain.name>`).
        #[serde(default)]
        pub hostname: Option<String>,
        /// Seconds a client may stay silent before the session is closed
        /// (RFC 5321 4.5.3.2).
        #[serde(default = "default_smtp_timeout")]
        pub timeout_s: u64,
        /// Most concurrent SMTP sessions on `listen` (port 25, the MX); more get
        /// `421 4.7.0` at the greeting.
        #[serde(default = "default_max_sessions")]
        pub max_sessions: usize,
        /// Most concurrent sessions on the submission ports (587 and 465), a pool of
        /// their own so that strangers on port 25 cannot crowd out the staff.
        #[serde(default = "default_max_submission_sessions")]
        pub max_submission_sessions: usize,
        /// Most concurrent sessions from one client address, counted apart on port 25
        /// and on the submission ports; more get `421 4.7.0`.
        #[serde(default = "default_max_sessions_per_ip")]
        pub max_sessions_per_ip: usize,
        /// Seconds from the `354` to the final `.`: a client still sending then gets
        /// `421 4.4.2` and is closed, and what it sent is dropped (each read also
        /// has `timeout_s`).
        #[serde(default = "default_data_timeout")]
        pub data_timeout_s: u64,
        /// Megabytes of message data being received at once, over all sessions (not
        /// yet acknowledged, in their temporary files); when it is (nearly) used up
        /// DATA gets `452 4.3.1`, as does a message that would pass it, after its end;
        /// the client retries later.
        #[serde(default = "default_max_inflight_mb")]
        pub max_inflight_mb: u64,
    }
}

fn default_max_submission_sessions() -> usize {
    100
}
fn default_max_sessions_per_ip() -> usize {
    20
}
fn default_data_timeout() -> u64 {
    600
}
fn default_max_inflight_mb() -> u64 {
    1024
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

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct ImapConfig {
        /// IMAP, with STARTTLS offered.
        #[serde(default = "default_imap_listen")]
        pub listen: Vec<SocketAddr>,
        /// IMAP over implicit TLS (IMAPS).
        #[serde(default = "default_imaps_listen")]
        pub tls_listen: Vec<SocketAddr>,
        /// Clients that may log in (LOGIN, AUTHENTICATE PLAIN) without TLS; everyone
        /// else must use STARTTLS or `tls_listen`.
        #[serde(default = "default_plaintext_from")]
        pub allow_plaintext_auth_from: Vec<IpNet>,
        /// Seconds of client silence before autologout (RFC 3501 5.4: at least 30
        /// minutes).
        #[serde(default = "default_imap_timeout")]
        pub timeout_s: u64,
        /// Seconds a client has, from connecting, to log in (and to send each
        /// command before it); then BYE. Before login a command is at most 16 KiB.
        #[serde(default = "default_imap_login_timeout")]
        pub login_timeout_s: u64,
        /// Most concurrent IMAP sessions.
        #[serde(default = "default_max_sessions")]
        pub max_sessions: usize,
        /// Most concurrent sessions from one client address (more get `BYE`). A mail
        /// client opens a few per account; raise it when many users share one address
        /// (an office behind NAT).
        #[serde(default = "default_max_sessions_per_ip")]
        pub max_sessions_per_ip: usize,
    }
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
fn default_imap_login_timeout() -> u64 {
    60
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

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct DnsConfig {
        /// Addresses answering DNS, over UDP and TCP each.
        #[serde(default = "default_dns_listen")]
        pub listen: Vec<SocketAddr>,
        /// Directory of RFC 1035 zone files named ZONE.zone. A changed file is
        /// reloaded; a broken one is reported and the previous version keeps serving.
        /// Zones are loaded into the store, so the peer serves the same data.
        #[serde(default = "default_zones_dir")]
        pub zones_dir: PathBuf,
        /// Clients that may ask for names outside our zones (others get REFUSED).
        #[serde(default = "default_recursion_from")]
        pub recursion_from: Vec<IpNet>,
        /// Upstream resolvers for those names (none: SERVFAIL).
        #[serde(default)]
        pub forwarders: Vec<SocketAddr>,
        /// Most forwarded questions waiting for an upstream at once; past it a
        /// question that needs forwarding gets SERVFAIL at once.
        #[serde(default = "default_dns_max_forwards")]
        pub max_forwards: usize,
        /// Most concurrent TCP connections from one client address.
        #[serde(default = "default_dns_tcp_per_ip")]
        pub max_tcp_per_ip: usize,
        /// Clients allowed zone transfers (AXFR).
        #[serde(default = "default_axfr_from")]
        pub axfr_from: Vec<IpNet>,
    }
}

fn default_dns_max_forwards() -> usize {
    256
}
fn default_dns_tcp_per_ip() -> usize {
    8
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

documented! {
    /// The web site (static content from the store) and the mount point of the webmail.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct HttpConfig {
        /// Plain HTTP addresses.
        #[serde(default = "default_http_listen")]
        pub listen: Vec<SocketAddr>,
        /// HTTPS addresses: HTTP/1.1 and HTTP/2, with the same certificate as mail.
        #[serde(default = "default_https_listen")]
        pub https_listen: Vec<SocketAddr>,
        /// Answer plain HTTP with a 301 to the same URL over HTTPS.
        #[serde(default)]
        pub redirect_to_https: bool,
        /// Access log file, Combined Log Format, one line per request (none when
        /// absent).
        #[serde(default)]
        pub access_log: Option<PathBuf>,
        /// Rotate the access log once it holds this much (MiB): `access.log` becomes
        /// `access.log.1`, and so on; 0: never.
        #[serde(default = "default_access_log_max_mb")]
        pub access_log_max_mb: u64,
        /// Rotated access logs kept (`access.log.1` … `access.log.N`); 0: none (the
        /// full log is dropped).
        #[serde(default = "default_access_log_keep")]
        pub access_log_keep: u32,
        /// Seconds a client has to send a request's headers (also the HTTP/1.1
        /// keep-alive idle time between requests).
        #[serde(default = "default_http_header_timeout")]
        pub header_timeout_s: u64,
        /// Seconds without any traffic before a connection is closed (HTTP/2 too).
        #[serde(default = "default_http_idle_timeout")]
        pub idle_timeout_s: u64,
        /// Largest request line plus headers, bytes (larger: 431); 8192 to 1048576.
        #[serde(default = "default_http_max_header_bytes")]
        pub max_header_bytes: usize,
        /// Most concurrent connections over all listeners; more wait in the listen
        /// backlog.
        #[serde(default = "default_http_max_connections")]
        pub max_connections: usize,
        /// Most concurrent connections from one client address; more are closed at
        /// once.
        #[serde(default = "default_http_max_connections_per_ip")]
        pub max_connections_per_ip: usize,
        /// Seconds from a request's head to its response, the request body included:
        /// a request not answered by then gets 408 (an upload too slow to finish is
        /// cut).
        #[serde(default = "default_http_request_timeout")]
        pub request_timeout_s: u64,
        /// Virtual hosts: other sites, chosen by the Host header, served from other
        /// content roots. Other names get the default site (content root "www").
        #[serde(default)]
        pub vhost: Vec<VhostConfig>,
        /// A directory the active node watches: its files become the content under
        /// `publish_root` (changed files only, and they travel to the peer as block
        /// deltas; files removed from it are removed). `clusterd content publish DIR`
        /// does the same once.
        #[serde(default)]
        pub publish_dir: Option<PathBuf>,
        /// The content root `publish_dir` is published into.
        #[serde(default = "default_publish_root")]
        pub publish_root: String,
    }
}

fn default_publish_root() -> String {
    "www".into()
}

documented! {
    /// A virtual host: requests whose Host is `name` or one of `aliases` are served from
    /// the content root `root` (a prefix in the store's content area, like `www`).
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct VhostConfig {
        /// The site's host name (any case).
        pub name: String,
        /// More host names of the same site.
        #[serde(default)]
        pub aliases: Vec<String>,
        /// A directory of the store's content area (not zones).
        pub root: String,
    }
}

fn default_access_log_max_mb() -> u64 {
    64
}
fn default_access_log_keep() -> u32 {
    5
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
fn default_http_max_connections_per_ip() -> usize {
    64
}
fn default_http_request_timeout() -> u64 {
    300
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

documented! {
    /// The webmail at `/webmail/`.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct WebmailConfig {
        /// Minutes: a session unused for this long is logged out.
        #[serde(default = "default_webmail_idle")]
        pub session_idle_minutes: u64,
        /// Messages per page of the message list.
        #[serde(default = "default_webmail_page_size")]
        pub page_size: usize,
        /// Parsed list headers (From, Subject, Date) kept in memory, one per message
        /// body.
        #[serde(default = "default_webmail_summary_cache")]
        pub summary_cache_entries: usize,
    }
}

fn default_webmail_idle() -> u64 {
    30
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = Config::parse(
            "[node]\nname = \"n1\"\ndata_dir = \"/tmp/x\"\n",
            Path::new("/etc/clusterd/clusterd.toml"),
        )
        .unwrap();
        assert_eq!(cfg.smtp.listen, default_smtp_listen());
        assert_eq!(cfg.imap.tls_listen, default_imaps_listen());
        assert_eq!(cfg.smtp.max_message_bytes, 26214400);
        assert!(cfg.imap.plaintext_allowed("127.0.0.1".parse().unwrap()));
        assert!(!cfg.imap.plaintext_allowed("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_account_owns_its_name_and_its_aliases_in_every_local_domain() {
        let d = DomainConfig {
            name: "cluster.com.ec".into(),
            local_domains: vec!["Otro.Example".into()],
            aliases: [("Postmaster", "sistemas"), ("ana", "luis")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(d.owns_address("sistemas", "sistemas", "cluster.com.ec"));
        assert!(d.owns_address("sistemas", "SISTEMAS", "otro.example"));
        assert!(d.owns_address("sistemas", "postmaster", "CLUSTER.COM.EC"));
        assert!(!d.owns_address("sistemas", "luis", "cluster.com.ec"));
        assert!(!d.owns_address("sistemas", "sistemas", "example.org"));
        // An alias that hands the name to another account wins, as in delivery.
        assert!(!d.owns_address("ana", "ana", "cluster.com.ec"));
        assert!(d.owns_address("luis", "ana", "cluster.com.ec"));
    }
}
