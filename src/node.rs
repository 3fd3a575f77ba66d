//! A running node: loads the config, opens the store, builds the TLS identity and the
//! DKIM signer, makes the monitor, prepares the protocol front-ends and hands them to
//! the supervisor (`supervise`), starts the control socket, the cluster loop and the
//! monitor (its repairs are the supervisor's restarts), tells systemd it is ready,
//! and stops on SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::ctx::Ctx;
use crate::store::Store;

/// Runs the node until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<()> {
    let store = Store::open(&cfg.node.data_dir, &cfg.node.name)
        .with_context(|| format!("opening the store in {}", cfg.node.data_dir.display()))?;
    store.set_min_free_mb(cfg.store.min_free_mb);
    store.set_default_quota_mb(cfg.store.default_quota_mb);
    if cfg.cluster.is_some() {
        // A cluster node serves nothing writable until its role says so.
        store.set_writable(false);
    }
    let ctx = Ctx::build(cfg, store).await?;
    // The store's liveness (writer, write probe) feeds the health below.
    ctx.store.start_probe();

    // Made before the front-ends (HTTP shows it), started once the cluster runs.
    let monitor = crate::monitor::Monitor::new(ctx.clone());
    // Each front-end is prepared once (its shared state) and run by the supervisor,
    // which can stop, start and restart it on its own (see `supervise`). `add`
    // returns once the service's listeners are bound, or the error that stopped it.
    let sup = crate::supervise::Supervisor::new();
    let smtp = crate::smtp::prepare(ctx.clone());
    sup.add("smtp", move |run| smtp.clone().serve(run)).await?;
    let imap = crate::imap::prepare(ctx.clone());
    sup.add("imap", move |run| crate::imap::serve(imap.clone(), run))
        .await?;
    let dns = crate::dns::prepare(ctx.clone()).await?;
    sup.add("dns", move |run| dns.clone().serve(run)).await?;
    let http = crate::http::prepare(ctx.clone(), monitor.clone()).await?;
    sup.add("http", move |run| http.clone().serve(run)).await?;
    crate::publish::watch(ctx.clone());
    let outbound = crate::outbound::prepare(ctx.clone())?;
    let queue = outbound.clone();
    sup.add("queue", move |run| queue.clone().serve(run))
        .await?;
    // Bound now (a second node on the same socket is refused before anything else
    // starts), answered once the cluster and replication handles exist.
    let control = crate::control::bind(&ctx.cfg.node.control_socket).await?;
    // Before the cluster: the commit barrier must be in place before the store opens.
    let replication = crate::replication::prepare(ctx.clone()).await?;
    if let Some(r) = &replication {
        let (r, c) = (r.clone(), ctx.clone());
        sup.add("replication", move |run| r.clone().serve(c.clone(), run))
            .await?;
    }
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
            // And the store can write: its writer runs, the write probe passes and free
            // space is above the floor (else the peer takes the service).
            let services = monitor.node_health();
            let store = ctx.store.clone();
            let holds_log = replication.clone().map(|r| (r, ctx.store.clone()));
            hooks.health = Some(Arc::new(move || {
                services.healthy()
                    && store.health().healthy()
                    && holds_log.as_ref().is_none_or(|(r, s)| r.ready(s))
            }));
            if let Some(r) = &replication {
                let r2 = r.clone();
                hooks.before_open = Some(Arc::new(move || {
                    let r = r2.clone();
                    Box::pin(async move { r.drain().await })
                }));
                // Replication releases sync commits without the peer once it is dead.
                let r3 = r.clone();
                hooks.peer_alive = Some(Arc::new(move |alive| r3.set_peer_alive(alive)));
            }
            let (cluster, task) =
                crate::cluster::start(&ctx.cfg.node.name, c, ctx.store.clone(), hooks).await?;
            sup.watch("cluster", task);
            Some(cluster)
        }
    };
    // The monitor's repairs are the supervisor's restarts, and what only the
    // supervisor sees (a panic, an exit, a stop or wedge by fault injection) goes into
    // the monitor's history and alerts. Its own restarts it records itself.
    monitor.start(
        cluster.clone(),
        replication.clone(),
        Arc::new(SupervisorRepair(sup.clone())),
    );
    {
        let (mut events, monitor) = (sup.subscribe(), monitor.clone());
        tokio::spawn(async move {
            use crate::supervise::EventKind;
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let kind = match ev.kind {
                    EventKind::Panicked => "panicked",
                    EventKind::Exited => "exited",
                    EventKind::Stopped => "stopped",
                    EventKind::Wedged => "wedged",
                    EventKind::Started | EventKind::Restarted => continue,
                };
                monitor.note(&ev.service, kind, ev.detail);
            }
        });
    }
    sweep_blobs(&ctx);
    control.serve(Arc::new(crate::control::Node {
        ctx: ctx.clone(),
        cluster: cluster.clone(),
        replication,
        outbound,
        supervisor: sup.clone(),
        monitor,
    }));
    let role = {
        let cluster = cluster.clone();
        move || match &cluster {
            Some(c) => c.status().role,
            None => "active (single node)".to_string(),
        }
    };
    tracing::info!(node = %ctx.cfg.node.name, "clusterd is serving");
    let status = crate::supervise::systemd::status_line(&role(), &sup.services());
    crate::supervise::systemd::notify(&format!("READY=1\nSTATUS={status}"));
    sup.watchdog(role);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    sup.shutting_down();
    crate::supervise::systemd::notify("STOPPING=1");
    if let Some(c) = &cluster {
        c.shutdown().await;
    }
    let _ = std::fs::remove_file(&ctx.cfg.node.control_socket);
    Ok(())
}

/// The monitor's [`crate::monitor::Repair`]: a restart by the supervisor.
struct SupervisorRepair(Arc<crate::supervise::Supervisor>);

impl crate::monitor::Repair for SupervisorRepair {
    fn restart<'a>(
        &'a self,
        service: &'a str,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.0.restart(service))
    }
}

/// Every `store.gc_interval_s`, the sweep of message files nothing refers to (on
/// either role: each node holds its own files); the first one interval after start.
fn sweep_blobs(ctx: &Ctx) {
    let (every, grace) = (ctx.cfg.store.gc_interval_s, ctx.cfg.store.gc_grace_s);
    if every == 0 {
        return;
    }
    let store = ctx.store.clone();
    let keep = crate::control::gc_compact_keep(ctx.cfg.replication.is_some());
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(every);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = store.gc(std::time::Duration::from_secs(grace), keep).await {
                tracing::warn!(error = %e, "store: the sweep of message files failed");
            }
        }
    });
}
