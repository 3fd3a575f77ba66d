//! The cluster: heartbeats with the peer over every configured medium, the role
//! state machine, and the resources the active node holds (the virtual IP with its
//! gratuitous ARP, and the store open for writes). Without `[cluster]` in the
//! config none of this runs and the node is always active.
//!
//! Files: `wire` (heartbeat frames: HMAC, serial framing, the key file), `replay`
//! (the replay guard), `media` (UDP and serial transports), `role` (the pure state
//! machine), `driver` (the loop that runs it and carries out its actions: scheduling,
//! handover, VIP renewal, status), `vip` (netlink address with a kernel lifetime),
//! `garp` (gratuitous ARP), `ping` (the ping nodes), `watchdog` (kicked on every
//! keepalive). This file holds the handle ([`Cluster`]), [`Hooks`] and [`start`].
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
//!   make-before-break with a single ARP answerer at any time: see `driver::Held`. If
//!   the process dies, the kernel drops the VIP when its lifetime ends, so a crashed
//!   node stops answering ARP for it within about `deadtime_ms`; a stale VIP is
//!   removed at start-up.

mod driver;
mod garp;
pub mod media;
pub mod ping;
pub mod replay;
pub mod role;
pub mod vip;
pub mod watchdog;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::store::Store;
use driver::{Driver, Links};
use role::Role;

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
/// before the store opens on becoming active. Also returns the loop's task, which the
/// supervisor watches (the loop cannot be restarted on its own: see `supervise`).
pub async fn start(
    me: &str,
    cfg: &ClusterConfig,
    store: Store,
    hooks: Hooks,
) -> Result<(Arc<Cluster>, tokio::task::JoinHandle<()>)> {
    store.set_writable(false);
    let key = wire::read_key_file(&cfg.auth_key_file)?;
    let (rx_tx, heartbeats) = mpsc::channel(1024);
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

    let watchdog = cfg
        .watchdog
        .as_deref()
        .map(watchdog::Watchdog::open)
        .transpose()?;
    let (commands, cmd_rx) = mpsc::channel(16);
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

    let links = Links {
        key,
        media,
        heartbeats,
        names,
        vip,
        watchdog,
    };
    let (me, cfg) = (me.to_string(), cfg.clone());
    let task = tokio::spawn(async move {
        Driver::new(me, cfg, store, hooks, links, cmd_rx, status)
            .run()
            .await
    });
    Ok((cluster, task))
}
