//! What every front-end shares: the [`Ctx`] (config, store, TLS acceptor and identity,
//! the DKIM signer, the zone-reload signal, the authentication limiter), [`bind`] for
//! TCP listeners, and the [`ConnInfo`] an HTTP request carries. A leaf: it imports no
//! front-end, so front-ends import it and `node` (which starts them) without an import
//! cycle.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::store::Store;

/// What every front-end gets: the config, the store and the TLS acceptor, and the
/// signal `clusterd reload` raises (the DNS zones re-read their files).
pub struct Ctx {
    pub cfg: Config,
    pub store: Store,
    pub tls: TlsAcceptor,
    /// The certificate every TLS listener presents.
    pub identity: Arc<crate::tls::Identity>,
    /// The DKIM signer of outbound mail (its record is served by the DNS).
    pub dkim: Arc<crate::dkim::Dkim>,
    pub dns_reload: tokio::sync::Notify,
    /// Raised when the outbound queue gained an entry or was changed by hand, so the
    /// queue runner looks at it now rather than at its next tick.
    pub queue_kick: tokio::sync::Notify,
    /// Every password check of SMTP, IMAP and the webmail goes through it.
    pub auth: crate::authlimit::Limiter,
}

impl Ctx {
    /// The context of a node whose store is open: loads (or makes) the TLS identity and
    /// the DKIM signer.
    pub async fn build(cfg: Config, store: Store) -> Result<Arc<Ctx>> {
        let identity = crate::tls::Identity::load(&cfg, &store).await?;
        let tls = crate::tls::acceptor(&identity);
        let dkim = crate::dkim::Dkim::load(&cfg, &store).await?;
        let auth = crate::authlimit::Limiter::new(&cfg.auth);
        Ok(Arc::new(Ctx {
            cfg,
            store,
            tls,
            identity,
            dkim,
            dns_reload: tokio::sync::Notify::new(),
            queue_kick: tokio::sync::Notify::new(),
            auth,
        }))
    }
}

/// The connection an HTTP request arrived on, which the HTTP server puts into
/// every request's extensions (the webmail reads it for Secure cookies, rate limits
/// and logs).
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    pub https: bool,
}

/// Binds a TCP listener, naming the address and the config key on failure.
pub async fn bind(addr: std::net::SocketAddr, key: &str) -> Result<tokio::net::TcpListener> {
    let sock = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .with_context(|| format!("{key}: socket for {addr}"))?;
    sock.set_reuseaddr(true)?;
    sock.bind(addr)
        .with_context(|| format!("{key}: cannot listen on {addr}"))?;
    sock.listen(1024)
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

/// What each protocol served since the process started, for `/metrics`: SMTP and
/// IMAP connections accepted, HTTP requests answered, DNS queries answered.
#[derive(Debug, Default)]
pub struct Requests {
    pub smtp: std::sync::atomic::AtomicU64,
    pub imap: std::sync::atomic::AtomicU64,
    pub http: std::sync::atomic::AtomicU64,
    pub dns: std::sync::atomic::AtomicU64,
}

/// The process's counters (one node per process).
pub static REQUESTS: Requests = Requests {
    smtp: std::sync::atomic::AtomicU64::new(0),
    imap: std::sync::atomic::AtomicU64::new(0),
    http: std::sync::atomic::AtomicU64::new(0),
    dns: std::sync::atomic::AtomicU64::new(0),
};

/// Counts one unit served (`REQUESTS.smtp` etc.).
pub fn count(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
