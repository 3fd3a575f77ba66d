//! A running node: loads the config, opens the store, builds the TLS identity and the
//! DKIM signer, starts the protocol front-ends, the control socket and the monitor,
//! and stops them on SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::ctx::Ctx;
use crate::store::Store;

/// Runs the node until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<()> {
    let store = Store::open(&cfg.node.data_dir, &cfg.node.name)
        .with_context(|| format!("opening the store in {}", cfg.node.data_dir.display()))?;
    if cfg.cluster.is_some() {
        // A cluster node serves nothing writable until its role says so.
        store.set_writable(false);
    }
    let ctx = Ctx::build(cfg, store).await?;

    // Made before the front-ends (HTTP shows it), started once the cluster runs.
    let monitor = crate::monitor::Monitor::new(ctx.clone());
    crate::smtp::start(ctx.clone()).await?;
    crate::imap::start(ctx.clone()).await?;
    crate::dns::start(ctx.clone()).await?;
    crate::http::start(ctx.clone(), monitor.clone()).await?;
    crate::publish::watch(ctx.clone());
    let outbound = crate::outbound::start(ctx.clone())?;
    // Bound now (a second node on the same socket is refused before anything else
    // starts), answered once the cluster and replication handles exist.
    let control = crate::control::bind(&ctx.cfg.node.control_socket).await?;
    // Before the cluster: the commit barrier must be in place before the store opens.
    let replication = crate::replication::start(ctx.clone()).await?;
    // Last: the VIP may only arrive once every service listens.
    let cluster = match &ctx.cfg.cluster {
        None => None,
        Some(c) => {
            // With replication, a node is fit to take the service from a live peer only
            // once it holds everything the peer has.
            // And it opens its store only after applying what it received.
            // Healthy: the monitor's repairs did not fail (else hand over), and with
            // replication, holding the peer's whole log.
            let mut hooks = crate::cluster::Hooks::default();
            let services = monitor.node_health();
            hooks.health = Some(Arc::new(move || services.healthy()));
            if let Some(r) = &replication {
                let (r1, store) = (r.clone(), ctx.store.clone());
                let services = monitor.node_health();
                hooks.health = Some(Arc::new(move || services.healthy() && r1.ready(&store)));
                let r2 = r.clone();
                hooks.before_open = Some(Arc::new(move || {
                    let r = r2.clone();
                    Box::pin(async move { r.drain().await })
                }));
                // Replication releases sync commits without the peer once it is dead.
                let r3 = r.clone();
                hooks.peer_alive = Some(Arc::new(move |alive| r3.set_peer_alive(alive)));
            }
            Some(crate::cluster::start(&ctx.cfg.node.name, c, ctx.store.clone(), hooks).await?)
        }
    };
    // The repair seam is not wired to a supervisor yet: restarts are recorded as
    // impossible (`monitor::NoRepair`).
    monitor.start(
        cluster.clone(),
        replication.clone(),
        Arc::new(crate::monitor::NoRepair),
    );
    control.serve(Arc::new(crate::control::Node {
        ctx: ctx.clone(),
        cluster: cluster.clone(),
        replication,
        outbound,
        monitor,
    }));
    tracing::info!(node = %ctx.cfg.node.name, "clusterd is serving");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    if let Some(c) = &cluster {
        c.shutdown().await;
    }
    let _ = std::fs::remove_file(&ctx.cfg.node.control_socket);
    Ok(())
}
