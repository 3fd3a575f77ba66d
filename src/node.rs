//! A running node: loads the config, opens the store, builds the TLS identity, starts
//! the protocol front-ends and the control socket, and stops them on SIGTERM/SIGINT.

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
    pub dns_reload: tokio::sync::Notify,
    /// The cluster loop, set once the listeners are up; unset for a single node
    /// (always active).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// Replication to the peer, when `[replication]` is configured.
    pub replication: std::sync::OnceLock<Arc<crate::replication::Replication>>,
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

/// Runs the node until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<()> {
    let store = Store::open(&cfg.node.data_dir, &cfg.node.name)
        .with_context(|| format!("opening the store in {}", cfg.node.data_dir.display()))?;
    if cfg.cluster.is_some() {
        // A cluster node serves nothing writable until its role says so.
        store.set_writable(false);
    }
    let identity = crate::tls::Identity::load(&cfg, &store).await?;
    let tls = crate::tls::acceptor(&identity);
    let ctx = Arc::new(Ctx {
        cfg,
        store,
        tls,
        identity,
        dns_reload: tokio::sync::Notify::new(),
        cluster: std::sync::OnceLock::new(),
        replication: std::sync::OnceLock::new(),
    });

    crate::smtp::start(ctx.clone()).await?;
    crate::imap::start(ctx.clone()).await?;
    crate::dns::start(ctx.clone()).await?;
    crate::http::start(ctx.clone()).await?;
    crate::publish::watch(ctx.clone());
    crate::control::start(ctx.clone()).await?;
    // Before the cluster: the commit barrier must be in place before the store opens.
    if let Some(r) = crate::replication::start(ctx.clone()).await? {
        let _ = ctx.replication.set(r);
    }
    // Last: the VIP may only arrive once every service listens.
    if let Some(c) = &ctx.cfg.cluster {
        // With replication, a node is fit to take the service from a live peer only
        // once it holds everything the peer has.
        // And it opens its store only after applying what it received.
        let mut hooks = crate::cluster::Hooks::default();
        if let Some(r) = ctx.replication.get() {
            let (r1, store) = (r.clone(), ctx.store.clone());
            hooks.health = Some(Arc::new(move || r1.ready(&store)));
            let r2 = r.clone();
            hooks.before_open = Some(Arc::new(move || {
                let r = r2.clone();
                Box::pin(async move { r.drain().await })
            }));
        }
        let cluster =
            crate::cluster::start(&ctx.cfg.node.name, c, ctx.store.clone(), hooks).await?;
        let _ = ctx.cluster.set(cluster);
    }
    tracing::info!(node = %ctx.cfg.node.name, "clusterd is serving");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    if let Some(c) = ctx.cluster.get() {
        c.shutdown().await;
    }
    let _ = std::fs::remove_file(&ctx.cfg.node.control_socket);
    Ok(())
}
