//! The one TOML configuration file.
//!
//! - `sections`: the sections of one node's services (`[node]` … `[webmail]`);
//! - `outbound`: `[outbound]`, mail for other domains (routing, retries, DKIM);
//! - `monitor`: `[monitor]`, probes, repairs, alerts and who may read the status page;
//! - `auth`: `[auth]`, the authentication limiter's limits;
//! - `store`: `[store]`, the free-space floor, default quota and message-file sweeps;
//! - `cluster`: the sections of the pair (`[cluster]`, `[replication]`);
//! - `load`: reading a file and validating it, with errors that name the file, the
//!   line and the key;
//! - `example`: the commented example `clusterd config example` prints
//!   ([`example()`]), generated from the types' doc comments and their real defaults.
//!
//! Every configuration struct is declared through `documented!`, which keeps the
//! struct as written and records each field's doc comment ([`Documented::KEYS`]):
//! the text an administrator reads above a key in the example is the field's doc
//! comment, so it cannot drift from the types.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One key of a configuration table and its documentation.
#[derive(Debug)]
pub struct KeyDoc {
    /// The key as written in the file (the field's name).
    pub key: &'static str,
    /// The field's doc comment, one entry per line, as rustdoc keeps it (with the
    /// space after `///`).
    pub doc: &'static [&'static str],
}

/// A configuration table whose keys are documented: every field of the struct, in
/// declaration order.
pub trait Documented {
    const KEYS: &'static [KeyDoc];
}

/// Declares a configuration struct exactly as written and implements [`Documented`]
/// for it from its fields' doc comments. Field attributes must come in the order doc
/// comment, then `#[serde(...)]`.
macro_rules! documented {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[serde($($serde:tt)*)])*
                $fvis:vis $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])*
                $fvis $field: $ty,
            )*
        }

        impl $crate::config::Documented for $name {
            const KEYS: &'static [$crate::config::KeyDoc] = &[
                $($crate::config::KeyDoc { key: stringify!($field), doc: &[$($doc),*] },)*
            ];
        }
    };
}

mod auth;
mod cluster;
mod example;
mod load;
mod monitor;
mod outbound;
mod sections;
mod store;

pub use auth::AuthConfig;
pub use cluster::{
    ClusterConfig, HeartbeatConfig, ReplicationConfig, ReplicationMode, SerialHeartbeat,
    UdpHeartbeat, key_file_mode_problem,
};
pub use example::example;
pub use monitor::MonitorConfig;
pub use outbound::OutboundConfig;
pub use sections::{
    DnsConfig, DomainConfig, HttpConfig, ImapConfig, NodeConfig, SmtpConfig, TlsConfig,
    VhostConfig, WebmailConfig,
};
pub use store::StoreConfig;

/// A problem with the configuration, already phrased for the administrator:
/// `FILE: line N: key K: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

documented! {
    /// The whole file; each field is a section, and its doc comment introduces the
    /// section in the example.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        /// This node.
        pub node: NodeConfig,
        /// The mail domain, the domains delivered locally, and aliases.
        #[serde(default)]
        pub domain: DomainConfig,
        /// PEM files. Without this section a self-signed certificate for the domain
        /// names is generated at first start and kept in the store (both nodes present
        /// the same one).
        #[serde(default)]
        pub tls: Option<TlsConfig>,
        /// Mail in (MX) and mail from the users' clients (submission).
        #[serde(default)]
        pub smtp: SmtpConfig,
        /// Mailboxes for the users' clients.
        #[serde(default)]
        pub imap: ImapConfig,
        /// Authoritative for the zones in zones_dir, and the LAN's resolver.
        #[serde(default)]
        pub dns: DnsConfig,
        /// The site (files under www/ in the store's content area; the repository's
        /// www/ is loaded at first start) and the webmail at /webmail/.
        #[serde(default)]
        pub http: HttpConfig,
        /// The webmail at /webmail/.
        #[serde(default)]
        pub webmail: WebmailConfig,
        /// Mail for other domains: MX routing or a relay host, retries, bounces, DKIM.
        #[serde(default)]
        pub outbound: OutboundConfig,
        /// Probes of every service on both nodes, restarts, hand-over on a failed
        /// service, alerts (mail, a file, the journal), and /status and /metrics.
        #[serde(default)]
        pub monitor: MonitorConfig,
        /// The disk: the free-space floor, the default quota of an account, and the
        /// sweep of message files nothing refers to.
        #[serde(default)]
        pub store: StoreConfig,
        /// Wrong passwords over SMTP AUTH, IMAP and the webmail: per-address and
        /// per-account limits, delays, and when a session is closed.
        #[serde(default)]
        pub auth: AuthConfig,
        /// Without `[cluster]` the node is alone and always active. For the pair,
        /// uncomment it (peer, vip and at least one heartbeat medium are required; the
        /// key file must exist).
        #[serde(default)]
        pub cluster: Option<ClusterConfig>,
        /// The store copied to the peer over the private link. Needs `[cluster]`: the
        /// channel is TLS, and both ends prove they hold auth_key_file, bound to that
        /// TLS session. Absent: the store is not copied.
        #[serde(default)]
        pub replication: Option<ReplicationConfig>,
    }
}

impl Config {
    /// The name this node announces (SMTP greeting, Received headers).
    pub fn hostname(&self) -> String {
        self.smtp
            .hostname
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.node.name, self.domain.name))
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
