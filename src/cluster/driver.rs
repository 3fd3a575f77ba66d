//! The cluster loop: the one task that owns the role [`Machine`] and carries out what
//! it decides. It schedules the keepalive, takes in heartbeats and the
//! administrator's commands, and applies the machine's [`Action`]s to the resources:
//! the virtual IP (with its lifetime renewal and gratuitous ARP), the store's
//! writability, the heartbeats it sends, the watchdog and the published status.
//!
//! Every pass of [`Driver::run`] is one event ([`Driver::on_tick`],
//! [`Driver::on_heartbeat`] or [`Driver::on_command`]) followed by [`Driver::step`]:
//! poll health and ping nodes, tick the machine, [`Driver::apply`] its actions, move a
//! handover on ([`Held`]), renew the VIP, send a heartbeat if anything changed, and
//! publish the status. The order inside a pass is what makes failover fast and
//! handovers make-before-break; see the module docs of `cluster`.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::media::Media;
use super::ping::Pinger;
use super::replay::{ReplayGuard, Verdict};
use super::role::{Action, Machine, PeerReport, Request, Role, Settings};
use super::vip::Vip;
use super::watchdog::Watchdog;
use super::wire::{self, Heartbeat};
use super::{ClusterStatus, Command, Hooks};
use crate::config::ClusterConfig;
use crate::store::Store;

/// What [`super::start`] opened for the loop.
pub(super) struct Links {
    /// The shared heartbeat key.
    pub key: Vec<u8>,
    pub media: Media,
    /// Authentic heartbeats from the media, as `(medium index, heartbeat)`.
    pub heartbeats: mpsc::Receiver<(usize, Heartbeat)>,
    /// The media's labels, by index.
    pub names: Vec<String>,
    pub vip: Arc<Vip>,
    pub watchdog: Option<Watchdog>,
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

/// The cluster loop's state.
pub(super) struct Driver {
    me: String,
    cfg: ClusterConfig,
    store: Store,
    hooks: Hooks,
    key: Vec<u8>,
    media: Media,
    heartbeats: mpsc::Receiver<(usize, Heartbeat)>,
    commands: mpsc::Receiver<Command>,
    names: Vec<String>,
    vip: Arc<Vip>,
    watchdog: Option<Watchdog>,
    status: Arc<Mutex<ClusterStatus>>,
    machine: Machine,
    guard: ReplayGuard,
    /// Warnings of heartbeats from an earlier boot of the peer, one per WARN_INTERVAL.
    replay_warn: super::media::WarnLimit,
    boot_id: u64,
    /// The sequence number of the last heartbeat sent.
    seq: u64,
    /// The keepalive.
    timer: tokio::time::Interval,
    pinger: Pinger,
    /// The VIP's kernel lifetime.
    lifetime: Duration,
    /// How long a yielding node keeps the VIP for a taker that has not said it is
    /// active yet; after that it lets go anyway (a gap, not a conflict).
    linger: Duration,
    garp_refresh: Duration,
    last_garp: Instant,
    /// This node's op-log position as last read from the store.
    store_seq: u64,
    held: Held,
}

impl Driver {
    /// The loop's state for node `me` with configuration `cfg`; the role machine's
    /// clock and the keepalive start now.
    pub(super) fn new(
        me: String,
        cfg: ClusterConfig,
        store: Store,
        hooks: Hooks,
        links: Links,
        commands: mpsc::Receiver<Command>,
        status: Arc<Mutex<ClusterStatus>>,
    ) -> Driver {
        let keepalive = Duration::from_millis(cfg.keepalive_ms);
        let deadtime = Duration::from_millis(cfg.deadtime_ms);
        // The kernel counts address lifetimes in whole seconds and removes an expired
        // one up to ~0.5 s late: deadtime rounded down keeps a crashed node's VIP gone
        // within deadtime plus a second.
        let lifetime = Duration::from_secs((cfg.deadtime_ms / 1000).max(1));
        let settings = Settings {
            me: me.clone(),
            peer: cfg.peer.clone(),
            preferred: cfg.preferred.clone(),
            deadtime,
            warntime: Duration::from_millis(cfg.warntime_ms),
            initdead: Duration::from_millis(cfg.initdead_ms),
            ping_nodes: !cfg.ping_nodes.is_empty(),
            media: links.names.len(),
        };
        let mut timer = tokio::time::interval(keepalive);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Driver {
            store,
            hooks,
            key: links.key,
            media: links.media,
            heartbeats: links.heartbeats,
            commands,
            names: links.names,
            vip: links.vip,
            watchdog: links.watchdog,
            status,
            machine: Machine::new(settings, Instant::now()),
            guard: ReplayGuard::new(deadtime),
            replay_warn: Default::default(),
            boot_id: super::replay::boot_id(),
            seq: 0,
            timer,
            pinger: Pinger::new(&cfg.ping_nodes, deadtime),
            lifetime,
            linger: (keepalive * 2 + Duration::from_millis(100)).min(deadtime),
            garp_refresh: Duration::from_secs(cfg.garp_refresh_s),
            last_garp: Instant::now(),
            store_seq: 0,
            held: Held::No,
            me,
            cfg,
        }
    }

    /// Runs until a [`Command::Shutdown`] has been carried out.
    pub(super) async fn run(mut self) {
        loop {
            let send_now = tokio::select! {
                _ = self.timer.tick() => {
                    self.on_tick();
                    true
                }
                Some((medium, hb)) = self.heartbeats.recv() => {
                    if !self.on_heartbeat(medium, hb) {
                        continue;
                    }
                    false
                }
                Some(cmd) = self.commands.recv() => {
                    if self.on_command(cmd).await.is_break() {
                        return;
                    }
                    true
                }
            };
            self.step(send_now).await;
        }
    }

    /// The keepalive: kicks the watchdog (a heartbeat goes out in this pass).
    fn on_tick(&mut self) {
        if let Some(w) = &mut self.watchdog {
            w.kick();
        }
    }

    /// Feeds a heartbeat heard on `medium` to the machine. False: ignored (not from
    /// the peer, or a replay), and the pass ends here.
    fn on_heartbeat(&mut self, medium: usize, hb: Heartbeat) -> bool {
        if hb.node != self.cfg.peer {
            tracing::debug!(node = %hb.node, "cluster: heartbeat from an unknown node ignored");
            return false;
        }
        match self.guard.check(&hb, Instant::now()) {
            Verdict::Replay => {
                tracing::debug!(medium, "cluster: replayed heartbeat ignored");
                return false;
            }
            Verdict::EarlierBoot => {
                if let Some(suppressed) = self.replay_warn.allow() {
                    tracing::warn!(
                        medium,
                        boot_id = hb.boot_id,
                        suppressed,
                        "cluster: heartbeat of an earlier boot of the peer ignored (a recorded frame replayed?)"
                    );
                }
                return false;
            }
            Verdict::Duplicate => self.machine.heard_copy(Instant::now(), medium),
            Verdict::New => {
                self.machine.heard(
                    Instant::now(),
                    medium,
                    PeerReport {
                        role: Role::from_code(hb.role),
                        epoch: hb.epoch,
                        store_seq: hb.store_seq,
                        healthy: hb.healthy,
                        ping_ok: hb.ping_ok,
                        request: Request::from_code(hb.request),
                        vip_held: hb.vip_held,
                    },
                );
            }
        }
        true
    }

    /// An administrator's command (a heartbeat goes out in this pass). Break: the
    /// node has shut down and the loop ends.
    async fn on_command(&mut self, cmd: Command) -> ControlFlow<()> {
        tracing::info!(?cmd, "cluster: command");
        match cmd {
            Command::Standby => self.machine.standby(),
            Command::Takeover => self.machine.takeover(),
            Command::Shutdown { done } => {
                self.shut_down(done).await;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Closes the store, hands the VIP to a live peer (make-before-break when it can)
    /// or drops it, tells the peer to take over, disarms the watchdog and fires `done`.
    async fn shut_down(&mut self, done: oneshot::Sender<()>) {
        self.store.set_writable(false);
        self.machine.standby();
        let peer_up = self.machine.peer_alive();
        let keep = self.held == Held::Yes && peer_up && self.vip.can_hold_silently();
        let mut hb = Heartbeat {
            node: self.me.clone(),
            boot_id: self.boot_id,
            seq: 0,
            role: Role::Standby.code(),
            epoch: self.machine.epoch(),
            store_seq: 0,
            healthy: false,
            ping_ok: self.machine.ping_ok,
            request: Request::TakeOver.code(),
            vip_held: keep,
        };
        if keep {
            // Keep the VIP until the peer says it is active (it has turned the
            // clients' ARP caches), as in any handover.
            self.send(&mut hb);
            let until = tokio::time::Instant::now() + self.linger;
            while let Ok(Some((_, peer_hb))) =
                tokio::time::timeout_at(until, self.heartbeats.recv()).await
            {
                if peer_hb.node == self.cfg.peer
                    && self.guard.check(&peer_hb, Instant::now()) == Verdict::New
                    && Role::from_code(peer_hb.role) == Role::Active
                {
                    break;
                }
            }
        }
        self.release_vip().await;
        hb.vip_held = false;
        self.send(&mut hb);
        // Let the media tasks write the last heartbeat.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(w) = self.watchdog.take() {
            w.disarm();
        }
        let _ = done.send(());
    }

    /// The rest of every pass that was not ignored; `send_now`: the event calls for a
    /// heartbeat.
    async fn step(&mut self, mut send_now: bool) {
        send_now |= self.poll_health();
        let now = Instant::now();
        let actions = self.machine.tick(now);
        for action in &actions {
            self.apply(action, now).await;
        }
        send_now |= actions
            .iter()
            .any(|a| matches!(a, Action::Activate | Action::Deactivate));
        send_now |= self.hand_over(now).await;
        if self.machine.role() == Role::Active {
            self.renew_vip(send_now, now).await;
        }
        if send_now {
            self.send_heartbeat().await;
        }
        self.publish(now);
    }

    /// Gives the machine the ping nodes' and the health hook's verdicts. True: the
    /// health changed (the peer should hear it at once).
    fn poll_health(&mut self) -> bool {
        self.machine.ping_ok = self.pinger.ok();
        let healthy = self.hooks.health.as_ref().is_none_or(|h| h());
        if healthy != self.machine.healthy {
            tracing::info!(healthy, "cluster: this node's health changed");
            self.machine.healthy = healthy;
            return true;
        }
        false
    }

    /// Carries out one of the machine's actions (`now`: this pass's time).
    async fn apply(&mut self, action: &Action, now: Instant) {
        match action {
            Action::Activate => {
                let peer_holds = self.machine.peer_alive()
                    && self.machine.peer().is_some_and(|p| p.vip_held)
                    && self.vip.can_hold_silently();
                tracing::info!(epoch = self.machine.epoch(), vip = %self.cfg.vip, handover = peer_holds, healthy = self.machine.healthy, peer = ?self.machine.peer().map(|p| (p.role, p.healthy, p.request)), "cluster: becoming active");
                let result = if peer_holds {
                    self.vip.hold_silent(self.lifetime).await
                } else {
                    self.vip.hold(self.lifetime).await
                };
                match result {
                    Ok(()) if peer_holds => self.held = Held::Silently,
                    Ok(()) => self.held = Held::Yes,
                    Err(e) => tracing::error!("cluster: adding the virtual IP: {e:#}"),
                }
                self.announce(now);
                if let Some(before) = &self.hooks.before_open {
                    before().await;
                }
                self.store.set_writable(true);
            }
            Action::Deactivate => {
                self.store.set_writable(false);
                if self.held == Held::Yes
                    && self.machine.peer_alive()
                    && self.vip.can_hold_silently()
                {
                    // The peer takes over: keep answering for the VIP until it says it
                    // is active, so no packet meets a node without it.
                    self.held = Held::Yielding(now + self.linger);
                } else {
                    self.release_vip().await;
                    self.held = Held::No;
                }
                tracing::info!("cluster: standing by");
            }
            Action::Announce => {
                tracing::info!("cluster: the peer stood down; announcing the virtual IP again");
                self.announce(now);
            }
            Action::MediumSilent(i) => tracing::warn!(
                medium = %self.names[*i],
                "cluster: heartbeat medium silent for {} ms",
                self.cfg.warntime_ms
            ),
            Action::MediumBack(i) => {
                tracing::info!(medium = %self.names[*i], "cluster: heartbeat medium carries heartbeats again")
            }
            Action::PeerLost => {
                tracing::warn!(peer = %self.cfg.peer, "cluster: peer is dead (silent on every medium)")
            }
            Action::PeerFound => tracing::info!(peer = %self.cfg.peer, "cluster: peer heard"),
        }
    }

    /// Moves a make-before-break handover on (see [`Held`]). True: where the VIP is
    /// changed (the peer should hear it at once).
    async fn hand_over(&mut self, now: Instant) -> bool {
        let peer_active = self.machine.peer_alive()
            && self.machine.peer().is_some_and(|p| p.role == Role::Active);
        let peer_holds =
            self.machine.peer_alive() && self.machine.peer().is_some_and(|p| p.vip_held);
        match self.held {
            Held::Yielding(until) if peer_active || !self.machine.peer_alive() || now >= until => {
                self.release_vip().await;
                self.held = Held::No;
                tracing::info!(taken = peer_active, "cluster: virtual IP handed over");
                true
            }
            Held::Silently if !peer_holds => {
                // The peer let go: the VIP moves onto the LAN interface (ARP
                // answered from now on) and is announced once more.
                match self.vip.hold(self.lifetime).await {
                    Ok(()) => {
                        self.held = Held::Yes;
                        if let Err(e) = self.vip.release_silent().await {
                            tracing::error!(
                                "cluster: removing the silent copy of the virtual IP: {e:#}"
                            );
                        }
                        self.spawn_announce(1, Duration::ZERO);
                    }
                    Err(e) => tracing::error!("cluster: adding the virtual IP: {e:#}"),
                }
                true
            }
            _ => false,
        }
    }

    /// On the active node: renews the VIP's lifetime whenever a heartbeat goes out
    /// (`send_now`, at least every keepalive) and refreshes the gratuitous ARP every
    /// `garp_refresh_s`.
    async fn renew_vip(&mut self, send_now: bool, now: Instant) {
        if send_now {
            let renewed = match self.held {
                Held::Silently => self.vip.hold_silent(self.lifetime).await,
                _ => self.vip.hold(self.lifetime).await,
            };
            if let Err(e) = renewed {
                tracing::error!("cluster: renewing the virtual IP: {e:#}");
            }
        }
        if !self.garp_refresh.is_zero() && now.duration_since(self.last_garp) >= self.garp_refresh {
            self.announce(now);
        }
    }

    /// Sends this node's heartbeat on every medium.
    async fn send_heartbeat(&mut self) {
        self.store_seq = self.store.last_seq().await.unwrap_or(self.store_seq);
        let mut hb = Heartbeat {
            node: self.me.clone(),
            boot_id: self.boot_id,
            seq: 0,
            role: self.machine.role().code(),
            epoch: self.machine.epoch(),
            store_seq: self.store_seq,
            healthy: self.machine.healthy,
            ping_ok: self.machine.ping_ok,
            request: self.machine.request().code(),
            vip_held: matches!(self.held, Held::Yes | Held::Yielding(_)),
        };
        self.send(&mut hb);
    }

    /// Gives `hb` the next sequence number and queues it on every medium.
    fn send(&mut self, hb: &mut Heartbeat) {
        self.seq += 1;
        hb.seq = self.seq;
        self.media.send(&wire::encode(hb, &self.key));
    }

    /// Updates the status [`super::Cluster::status`] shows and tells the
    /// `peer_alive` hook whether the peer is alive.
    fn publish(&self, now: Instant) {
        let machine = &self.machine;
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.role = machine.role().name().into();
        st.epoch = machine.epoch();
        st.peer_alive = machine.peer_alive();
        if let Some(tell) = &self.hooks.peer_alive {
            tell(st.peer_alive);
        }
        st.peer_role = machine.peer().map(|p| p.role.name().to_string());
        st.vip_held = machine.role() == Role::Active;
        st.vip_holder = if st.vip_held {
            Some(self.me.clone())
        } else if machine.peer_alive() && machine.peer().is_some_and(|p| p.role == Role::Active) {
            Some(self.cfg.peer.clone())
        } else {
            None
        };
        st.store_seq = self.store_seq;
        st.peer_store_seq = machine.peer().map(|p| p.store_seq);
        for (i, heard) in machine.media_heard().iter().enumerate() {
            st.media[i].1 = heard.map(|t| now.saturating_duration_since(t).as_millis() as u64);
        }
    }

    /// Removes the VIP (every copy), logging a failure.
    async fn release_vip(&self) {
        if let Err(e) = self.vip.release().await {
            tracing::error!("cluster: removing the virtual IP: {e:#}");
        }
    }

    /// Sends the configured gratuitous ARPs in the background.
    fn announce(&mut self, now: Instant) {
        self.spawn_announce(
            self.cfg.garp_count,
            Duration::from_millis(self.cfg.garp_interval_ms),
        );
        self.last_garp = now;
    }

    /// Sends `count` gratuitous ARPs `interval` apart in the background.
    fn spawn_announce(&self, count: u32, interval: Duration) {
        let vip = self.vip.clone();
        tokio::spawn(async move {
            if let Err(e) = vip.announce(count, interval).await {
                tracing::error!("cluster: gratuitous ARP: {e:#}");
            }
        });
    }
}
