//! Where mail for a domain goes: the MX look-up of RFC 5321 section 5.1 through
//! hickory-resolver (preference order, equal preferences shuffled, the domain's own
//! A/AAAA when it has no MX, RFC 7505's null MX), or the configured relay host.
//!
//! hickory-resolver, not the system resolver: it answers MX queries (libc does not),
//! is asynchronous, tells NXDOMAIN from SERVFAIL, and takes the `[outbound] resolvers`
//! of a test lab.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::RData;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use rand::seq::SliceRandom;

use crate::config::OutboundConfig;

/// A routing answer that is not a list of hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The domain cannot receive mail, ever (NXDOMAIN, null MX): bounce now. The
    /// RFC 3463 status and a text for the DSN.
    Permanent(&'static str, String),
    /// Try again later (SERVFAIL, timeout, no resolver).
    Temporary(String),
}

/// One host to try, in order: its name (for TLS and logs) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub port: u16,
}

/// The resolver for outbound mail.
pub struct Router {
    resolver: Option<TokioResolver>,
    /// Why there is none (reported in every deferral).
    broken: String,
    mx_port: u16,
    relay: Option<Hop>,
}

impl Router {
    pub fn new(cfg: &OutboundConfig) -> Router {
        let built = if cfg.resolvers.is_empty() {
            TokioResolver::builder_tokio().and_then(|b| b.build())
        } else {
            let servers = cfg
                .resolvers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            let rc = ResolverConfig::from_parts(None, vec![], servers);
            TokioResolver::builder_with_config(rc, Default::default()).build()
        };
        let (resolver, broken) = match built {
            Ok(r) => (Some(r), String::new()),
            Err(e) => {
                tracing::warn!(error = %e, "outbound: no DNS resolver; mail for other domains waits");
                (None, format!("no DNS resolver: {e}"))
            }
        };
        let relay = cfg.relay_host.as_deref().and_then(|h| {
            let (host, port) = h.rsplit_once(':')?;
            Some(Hop {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: port.parse().ok()?,
            })
        });
        Router {
            resolver,
            broken,
            mx_port: cfg.mx_port,
            relay,
        }
    }

    /// The relay host, when all mail goes through one.
    pub fn relay(&self) -> Option<&Hop> {
        self.relay.as_ref()
    }

    /// The hosts to try for `domain`, best first.
    pub async fn hops(&self, domain: &str) -> Result<Vec<Hop>, RouteError> {
        if let Some(r) = &self.relay {
            return Ok(vec![r.clone()]);
        }
        // An address literal, [192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 4.1.3).
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = lit.strip_prefix("IPv6:").unwrap_or(lit);
            return match ip.parse::<IpAddr>() {
                Ok(_) => Ok(vec![Hop {
                    host: ip.to_string(),
                    port: self.mx_port,
                }]),
                Err(_) => Err(RouteError::Permanent(
                    "5.1.2",
                    format!("{domain} is not a valid address literal"),
                )),
            };
        }
        let r = self.resolver()?;
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let mut mx: Vec<(u16, String)> = match r.mx_lookup(fqdn.as_str()).await {
            Ok(l) => l
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::MX(m) => Some((m.preference, m.exchange.to_ascii())),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_nx_domain() => {
                return Err(RouteError::Permanent(
                    "5.1.2",
                    format!("domain {domain} does not exist (NXDOMAIN)"),
                ));
            }
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => {
                return Err(RouteError::Temporary(format!(
                    "MX look-up for {domain} failed: {e}"
                )));
            }
        };
        if mx.is_empty() {
            // RFC 5321 5.1: no MX, the domain itself is the host (its A/AAAA).
            return Ok(vec![Hop {
                host: domain.trim_end_matches('.').to_string(),
                port: self.mx_port,
            }]);
        }
        // RFC 7505: a single MX with preference 0 and the root as exchange.
        if mx.len() == 1 && mx[0].1.trim_end_matches('.').is_empty() {
            return Err(RouteError::Permanent(
                "5.1.10",
                format!("domain {domain} accepts no mail (null MX, RFC 7505)"),
            ));
        }
        mx.retain(|(_, h)| !h.trim_end_matches('.').is_empty());
        // Preference order; equal preferences in random order (RFC 5321 5.1).
        mx.shuffle(&mut rand::thread_rng());
        mx.sort_by_key(|(p, _)| *p);
        Ok(mx
            .into_iter()
            .map(|(_, h)| Hop {
                host: h.trim_end_matches('.').to_string(),
                port: self.mx_port,
            })
            .collect())
    }

    /// The addresses of one hop.
    pub async fn addresses(&self, hop: &Hop) -> Result<Vec<SocketAddr>, RouteError> {
        if let Ok(ip) = hop.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, hop.port)]);
        }
        let r = self.resolver()?;
        let fqdn = format!("{}.", hop.host);
        match r.lookup_ip(fqdn.as_str()).await {
            Ok(l) => Ok(l.iter().map(|ip| SocketAddr::new(ip, hop.port)).collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(RouteError::Temporary(format!(
                "address look-up for {} failed: {e}",
                hop.host
            ))),
        }
    }

    fn resolver(&self) -> Result<&TokioResolver, RouteError> {
        self.resolver
            .as_ref()
            .ok_or_else(|| RouteError::Temporary(self.broken.clone()))
    }
}
