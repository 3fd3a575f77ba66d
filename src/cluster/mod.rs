//! The cluster: heartbeats with the peer over every configured medium, the role
//! state machine, and the resources the active node holds (the virtual IP with its
//! gratuitous ARP, and the store open for writes). Without `[cluster]` in the
//! config none of this runs and the node is always active.
//!
//! Files: `wire` (heartbeat frames: HMAC, serial framing, the key file), `replay`
//! (the replay guard), `media` (UDP and serial transports), `role` (the state
//! machine), `vip` (netlink address with a kernel lifetime), `garp` (gratuitous ARP),
//! `ping` (the ping nodes), `watchdog` (kicked on every keepalive).
//!
//! Implementation notes
//! - The node's health in its heartbeats comes from a callback polled every keepalive
//!   ([`Health`]; the node wires replication's "holds the peer's whole log" into it),
//!   so a returning preferred node fails back only once it is caught up.
//! - One task owns the state machine; heartbeats, the keepalive timer and the
//!   administrator's commands reach it through channels, so there is no lock order
//!   to get wrong. [`Cluster::status`] is a snapshot it publishes.
//! - A heartbeat goes out every `keepalive_ms` and at once after any role change or
//!   command, so the peer reacts in milliseconds (failback, `standby`).
//! - Becoming active: the VIP is added (with a kernel lifetime of `deadtime_ms`
//!   rounded down to whole seconds, at least 1 s, renewed every keepalive),
//!   gratuitous ARP is sent, then the store opens for writes.
//!   Standing down: the store closes for writes, then the VIP goes. Between two nodes
//!   that hear each other (failback, `standby`, `takeover`, a clean stop) the move is
//!   make-before-break with a single ARP answerer at any time: see [`Held`]. If the process
//!   dies, the kernel drops the VIP when its lifetime ends, so a crashed node stops
//!   answering ARP for it within about `deadtime_ms`; a stale VIP is removed at
//!   start-up.

mod garp;
pub mod media;
mod ping;
pub mod replay;
pub mod role;
pub mod vip;
pub mod watchdog;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::store::Store;
use role::{Action, Machine, PeerReport, Request, Role, Settings};

/// Whether this node is fit to be active (see [`start`]).
pub type Health = Arc<dyn Fn() -> bool + Send + Sync>;

/// Runs when this node becomes active, before its store opens for writes (with
/// replication: apply what was received from the peer first). It should be quick.
pub type BeforeOpen =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// Told every keepalive whether the peer is alive (heard within `deadtime_ms`).
pub type PeerAlive = Arc<dyn Fn(bool) + Send + Sync>;

/// What the rest of the node plugs into the cluster loop.
#[derive(Default)]
pub struct Hooks {
    /// Polled every keepalive; none: always healthy.
    pub health: Option<Health>,
    pub before_open: Option<BeforeOpen>,
    pub peer_alive: Option<PeerAlive>,
}

/// An administrator's command for the running cluster loop.
#[derive(Debug)]
pub enum Command {
    Standby,
    Takeover,
    /// The node is stopping: release the service, tell the peer to take over at
    /// once, disarm the watchdog; `done` fires when that is finished.
    Shutdown {
        done: tokio::sync::oneshot::Sender<()>,
    },
}

/// What `clusterd status` shows of the cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub role: String,
    pub epoch: u64,
    pub peer: String,
    pub peer_alive: bool,
    pub peer_role: Option<String>,
    /// Per medium: its description and milliseconds since it last carried a
    /// heartbeat (None: never).
    pub media: Vec<(String, Option<u64>)>,
    pub vip: String,
    pub vip_held: bool,
    /// Who holds the VIP as far as this node knows: itself, the peer, or nobody.
    pub vip_holder: Option<String>,
    /// The op-log positions: this node's and the peer's last reported one.
    pub store_seq: u64,
    pub peer_store_seq: Option<u64>,
}

pub struct Cluster {
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<ClusterStatus>>,
}

impl Cluster {
    pub async fn command(&self, c: Command) -> Result<()> {
        self.commands
            .send(c)
            .await
            .map_err(|_| anyhow::anyhow!("the cluster loop has stopped"))
    }

    /// Hands over and stops the loop (see [`Command::Shutdown`]).
    pub async fn shutdown(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.command(Command::Shutdown { done }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        }
    }

    pub fn status(&self) -> ClusterStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Starts the cluster loop for `cfg` (this node is `me`). The store starts closed for
/// writes; the loop opens it when this node becomes active.
/// `hooks.health` is what the node reports as its health; `hooks.before_open` runs
/// before the store opens on becoming active.
pub async fn start(
    me: &str,
    cfg: &ClusterConfig,
    store: Store,
    hooks: Hooks,
) -> Result<Arc<Cluster>> {
    let Hooks {
        health,
        before_open,
        peer_alive,
    } = hooks;
    store.set_writable(false);
    let key = wire::read_key_file(&cfg.auth_key_file)?;
    let (rx_tx, mut rx) = mpsc::channel(1024);
    let media_cfg: Vec<media::MediumConfig> = cfg
        .heartbeat
        .iter()
        .filter_map(|h| match (&h.udp, &h.serial) {
            (Some(u), _) => Some(media::MediumConfig::Udp {
                bind: u.bind,
                peer: u.peer,
            }),
            (_, Some(s)) => Some(media::MediumConfig::Serial {
                device: s.device.clone(),
                baud: s.baud,
            }),
            _ => None,
        })
        .collect();
    let names: Vec<String> = media_cfg.iter().map(media::MediumConfig::label).collect();
    let media = media::Media::start(media_cfg, key.clone(), rx_tx)
        .await
        .context("cluster: starting the heartbeat media")?;
    let vip = Arc::new(
        vip::Vip::open(cfg.vip, &cfg.vip_interface)
            .await
            .with_context(|| format!("cluster.vip_interface: {}", cfg.vip_interface))?,
    );
    if vip.held().await.unwrap_or(false) {
        tracing::warn!(vip = %cfg.vip, "cluster: removing a stale virtual IP left by an earlier run");
    }
    vip.release()
        .await
        .context("cluster: removing a stale virtual IP")?;

    let mut watchdog = cfg
        .watchdog
        .as_deref()
        .map(watchdog::Watchdog::open)
        .transpose()?;
    let keepalive = Duration::from_millis(cfg.keepalive_ms);
    let deadtime = Duration::from_millis(cfg.deadtime_ms);
    // The kernel counts address lifetimes in whole seconds and removes an expired
    // one up to ~0.5 s late: deadtime rounded down keeps a crashed node's VIP gone
    // within deadtime plus a second.
    let lifetime = Duration::from_secs((cfg.deadtime_ms / 1000).max(1));
    let settings = Settings {
        me: me.to_string(),
        peer: cfg.peer.clone(),
        preferred: cfg.preferred.clone(),
        deadtime,
        warntime: Duration::from_millis(cfg.warntime_ms),
        initdead: Duration::from_millis(cfg.initdead_ms),
        ping_nodes: !cfg.ping_nodes.is_empty(),
        media: names.len(),
    };
    let (commands, mut cmd_rx) = mpsc::channel(16);
    let status = Arc::new(Mutex::new(ClusterStatus {
        role: Role::Init.name().into(),
        peer: cfg.peer.clone(),
        vip: cfg.vip.to_string(),
        media: names.iter().map(|n| (n.clone(), None)).collect(),
        ..ClusterStatus::default()
    }));
    let cluster = Arc::new(Cluster {
        commands,
        status: status.clone(),
    });

    let cfg = cfg.clone();
    let me = me.to_string();
    tokio::spawn(async move {
        let mut machine = Machine::new(settings, Instant::now());
        let mut guard = replay::ReplayGuard::new();
        let boot_id: u64 = rand::random();
        let mut seq: u64 = 0;
        let mut timer = tokio::time::interval(keepalive);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let garp_refresh = Duration::from_secs(cfg.garp_refresh_s);
        let mut last_garp = Instant::now();
        let mut pinger = ping::Pinger::new(&cfg.ping_nodes, deadtime);
        let mut store_seq: u64 = 0;
        let mut held = Held::No;
        // How long a yielding node keeps the VIP for a taker that has not said it is
        // active yet; after that it lets go anyway (a gap, not a conflict).
        let linger = (keepalive * 2 + Duration::from_millis(100)).min(deadtime);
        loop {
            let mut send_now = false;
            tokio::select! {
                _ = timer.tick() => {
                    send_now = true;
                    if let Some(w) = &mut watchdog {
                        w.kick();
                    }
                }
                Some((medium, hb)) = rx.recv() => {
                    if hb.node != cfg.peer {
                        tracing::debug!(node = %hb.node, "cluster: heartbeat from an unknown node ignored");
                        continue;
                    }
                    match guard.check(&hb) {
                        replay::Verdict::Replay => {
                            tracing::debug!(medium, "cluster: replayed heartbeat ignored");
                            continue;
                        }
                        replay::Verdict::Duplicate => machine.heard_copy(Instant::now(), medium),
                        replay::Verdict::New => {
                            machine.heard(Instant::now(), medium, PeerReport {
                                role: Role::from_code(hb.role),
                                epoch: hb.epoch,
                                store_seq: hb.store_seq,
                                healthy: hb.healthy,
                                ping_ok: hb.ping_ok,
                                request: Request::from_code(hb.request),
                                vip_held: hb.vip_held,
                            });
                        }
                    }
                }
                Some(cmd) = cmd_rx.recv() => {
                    tracing::info!(?cmd, "cluster: command");
                    match cmd {
                        Command::Standby => machine.standby(),
                        Command::Takeover => machine.takeover(),
                        Command::Shutdown { done } => {
                            store.set_writable(false);
                            machine.standby();
                            let peer_up = machine.peer_alive();
                            let keep = held == Held::Yes && peer_up && vip.can_hold_silently();
                            let mut hb = wire::Heartbeat {
                                node: me.clone(),
                                boot_id,
                                seq: 0,
                                role: Role::Standby.code(),
                                epoch: machine.epoch(),
                                store_seq: 0,
                                healthy: false,
                                ping_ok: machine.ping_ok,
                                request: Request::TakeOver.code(),
                                vip_held: keep,
                            };
                            if keep {
                                // Keep the VIP until the peer says it is active (it has
                                // turned the clients' ARP caches), as in any handover.
                                seq += 1;
                                hb.seq = seq;
                                media.send(&wire::encode(&hb, &key));
                                let until = tokio::time::Instant::now() + linger;
                                while let Ok(Some((_, peer_hb))) =
                                    tokio::time::timeout_at(until, rx.recv()).await
                                {
                                    if peer_hb.node == cfg.peer
                                        && guard.check(&peer_hb) == replay::Verdict::New
                                        && Role::from_code(peer_hb.role) == Role::Active
                                    {
                                        break;
                                    }
                                }
                            }
                            if let Err(e) = vip.release().await {
                                tracing::error!("cluster: removing the virtual IP: {e:#}");
                            }
                            seq += 1;
                            hb.seq = seq;
                            hb.vip_held = false;
                            media.send(&wire::encode(&hb, &key));
                            // Let the media tasks write the last heartbeat.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            if let Some(w) = watchdog.take() {
                                w.disarm();
                            }
                            let _ = done.send(());
                            return;
                        }
                    }
                    send_now = true;
                }
            }
            machine.ping_ok = pinger.ok();
            let healthy = health.as_ref().is_none_or(|h| h());
            if healthy != machine.healthy {
                tracing::info!(healthy, "cluster: this node's health changed");
                machine.healthy = healthy;
                send_now = true;
            }
            let now = Instant::now();
            let actions = machine.tick(now);
            for action in &actions {
                match action {
                    Action::Activate => {
                        let peer_holds = machine.peer_alive()
                            && machine.peer().is_some_and(|p| p.vip_held)
                            && vip.can_hold_silently();
                        tracing::info!(epoch = machine.epoch(), vip = %cfg.vip, handover = peer_holds, healthy = machine.healthy, peer = ?machine.peer().map(|p| (p.role, p.healthy, p.request)), "cluster: becoming active");
                        let result = if peer_holds {
                            vip.hold_silent(lifetime).await
                        } else {
                            vip.hold(lifetime).await
                        };
                        match result {
                            Ok(()) if peer_holds => held = Held::Silently,
                            Ok(()) => held = Held::Yes,
                            Err(e) => tracing::error!("cluster: adding the virtual IP: {e:#}"),
                        }
                        announce(&vip, &cfg);
                        last_garp = now;
                        if let Some(before) = &before_open {
                            before().await;
                        }
                        store.set_writable(true);
                    }
                    Action::Deactivate => {
                        store.set_writable(false);
                        if held == Held::Yes && machine.peer_alive() && vip.can_hold_silently() {
                            // The peer takes over: keep answering for the VIP until it
                            // says it is active, so no packet meets a node without it.
                            held = Held::Yielding(now + linger);
                        } else {
                            if let Err(e) = vip.release().await {
                                tracing::error!("cluster: removing the virtual IP: {e:#}");
                            }
                            held = Held::No;
                        }
                        tracing::info!("cluster: standing by");
                    }
                    Action::Announce => {
                        tracing::info!(
                            "cluster: the peer stood down; announcing the virtual IP again"
                        );
                        announce(&vip, &cfg);
                        last_garp = now;
                    }
                    Action::MediumSilent(i) => tracing::warn!(
                        medium = %names[*i],
                        "cluster: heartbeat medium silent for {} ms",
                        cfg.warntime_ms
                    ),
                    Action::MediumBack(i) => {
                        tracing::info!(medium = %names[*i], "cluster: heartbeat medium carries heartbeats again")
                    }
                    Action::PeerLost => {
                        tracing::warn!(peer = %cfg.peer, "cluster: peer is dead (silent on every medium)")
                    }
                    Action::PeerFound => tracing::info!(peer = %cfg.peer, "cluster: peer heard"),
                }
            }
            send_now |= actions
                .iter()
                .any(|a| matches!(a, Action::Activate | Action::Deactivate));
            let peer_active =
                machine.peer_alive() && machine.peer().is_some_and(|p| p.role == Role::Active);
            let peer_holds = machine.peer_alive() && machine.peer().is_some_and(|p| p.vip_held);
            match held {
                Held::Yielding(until) if peer_active || !machine.peer_alive() || now >= until => {
                    if let Err(e) = vip.release().await {
                        tracing::error!("cluster: removing the virtual IP: {e:#}");
                    }
                    held = Held::No;
                    send_now = true;
                    tracing::info!(taken = peer_active, "cluster: virtual IP handed over");
                }
                Held::Silently if !peer_holds => {
                    // The peer let go: the VIP moves onto the LAN interface (ARP
                    // answered from now on) and is announced once more.
                    match vip.hold(lifetime).await {
                        Ok(()) => {
                            held = Held::Yes;
                            if let Err(e) = vip.release_silent().await {
                                tracing::error!(
                                    "cluster: removing the silent copy of the virtual IP: {e:#}"
                                );
                            }
                            let v = vip.clone();
                            tokio::spawn(async move {
                                if let Err(e) = v.announce(1, Duration::ZERO).await {
                                    tracing::error!("cluster: gratuitous ARP: {e:#}");
                                }
                            });
                        }
                        Err(e) => tracing::error!("cluster: adding the virtual IP: {e:#}"),
                    }
                    send_now = true;
                }
                _ => {}
            }
            if machine.role() == Role::Active {
                if send_now {
                    let renewed = match held {
                        Held::Silently => vip.hold_silent(lifetime).await,
                        _ => vip.hold(lifetime).await,
                    };
                    if let Err(e) = renewed {
                        tracing::error!("cluster: renewing the virtual IP: {e:#}");
                    }
                }
                if !garp_refresh.is_zero() && now.duration_since(last_garp) >= garp_refresh {
                    announce(&vip, &cfg);
                    last_garp = now;
                }
            }
            if send_now {
                store_seq = store.last_seq().await.unwrap_or(store_seq);
                seq += 1;
                let hb = wire::Heartbeat {
                    node: me.clone(),
                    boot_id,
                    seq,
                    role: machine.role().code(),
                    epoch: machine.epoch(),
                    store_seq,
                    healthy: machine.healthy,
                    ping_ok: machine.ping_ok,
                    request: machine.request().code(),
                    vip_held: matches!(held, Held::Yes | Held::Yielding(_)),
                };
                media.send(&wire::encode(&hb, &key));
            }
            let mut st = status.lock().unwrap_or_else(|e| e.into_inner());
            st.role = machine.role().name().into();
            st.epoch = machine.epoch();
            st.peer_alive = machine.peer_alive();
            if let Some(tell) = &peer_alive {
                tell(st.peer_alive);
            }
            st.peer_role = machine.peer().map(|p| p.role.name().to_string());
            st.vip_held = machine.role() == Role::Active;
            st.vip_holder = if st.vip_held {
                Some(me.clone())
            } else if machine.peer_alive() && machine.peer().is_some_and(|p| p.role == Role::Active)
            {
                Some(cfg.peer.clone())
            } else {
                None
            };
            st.store_seq = store_seq;
            st.peer_store_seq = machine.peer().map(|p| p.store_seq);
            for (i, heard) in machine.media_heard().iter().enumerate() {
                st.media[i].1 = heard.map(|t| now.saturating_duration_since(t).as_millis() as u64);
            }
        }
    });
    Ok(cluster)
}

/// Where this node has the VIP. A handover between two nodes that hear each other is
/// make-before-break without ever two ARP answerers: the yielding node stays on the
/// LAN interface (`Yielding`, already standby and closed for writes) while the taker
/// holds it on `lo` (`Silently`), opens its store and sends gratuitous ARP; when the
/// taker reports active the yielder deletes its copy, and when the yielder reports it
/// gone the taker moves the VIP onto its LAN interface. Clients' packets always meet a
/// node that accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    No,
    Yes,
    Silently,
    Yielding(Instant),
}

/// Sends the configured gratuitous ARPs in the background.
fn announce(vip: &Arc<vip::Vip>, cfg: &ClusterConfig) {
    let vip = vip.clone();
    let (count, interval) = (cfg.garp_count, Duration::from_millis(cfg.garp_interval_ms));
    tokio::spawn(async move {
        if let Err(e) = vip.announce(count, interval).await {
            tracing::error!("cluster: gratuitous ARP: {e:#}");
        }
    });
}
