//! The monitor (the old stack's mon and Minotaur): probes every service of this node
//! and of the peer each `[monitor] interval_s`, keeps their state, repairs, alerts,
//! writes the history and shows it all.
//!
//! Files: `probe` (the protocol probes — SMTP banner/EHLO/QUIT, IMAP
//! CAPABILITY/LOGOUT, HTTP GET, DNS SOA per zone — and free space, certificate expiry,
//! ICMP echo), `policy` (failures → restart → hand over, against the [`Repair`] seam
//! and the [`NodeHealth`] hook), `alert` (mail through the node's own delivery path,
//! the alert file, the journal; throttling), `render` (the `/status` page, the JSON,
//! Prometheus text, the terminal table), `web` (`/status`, `/status.json`, `/metrics`
//! and who may read them). This file owns the [`Monitor`]: the board of checks, the
//! loop, and turning state changes into events.
//!
//! Implementation notes
//! - Only the active node writes the history (an op, `store::events`): it probes its
//!   own services and the peer's (over the private link: the peer's address from
//!   `[replication] peer` or the UDP heartbeat, the same ports when a service listens
//!   on 0.0.0.0), so the history holds both nodes. A standby probes too, shows its
//!   view and logs and files its alerts, but sends no mail and writes no history.
//! - Repairs concern this node's `smtp`, `imap`, `dns` and `http` (the site and the
//!   webmail's login page); the supervisor restarts them through [`Repair`]
//!   (`node` implements it with `Supervisor::restart`; a failed restart is recorded
//!   as `restart_failed`).
//! - Behind `http.redirect_to_https` the site and webmail probes use the first
//!   `https_listen` address (TLS, any certificate: the node's own).
//! - A peer that is not heard is not probed (its services show untested); the
//!   `peer` check says so.
//! - `x509-parser` (=0.18.1, already in the tree through rcgen, builds on Rust 1.95)
//!   reads the certificate's end of validity.

mod alert;
mod policy;
pub mod probe;
pub mod render;
pub mod web;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::ctx::Ctx;
use crate::replication::Replication;
use crate::store::{Event, EventFilter, KEEP_EVENTS};

pub use policy::{NodeHealth, Policy, Step, Tracker};

/// The supervisor's seam: restart one front-end ("smtp", "imap", "dns", "http").
pub trait Repair: Send + Sync {
    fn restart<'a>(&'a self, service: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// A check's result as the page colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failing,
    Untested,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failing => "failing",
            Outcome::Untested => "untested",
        }
    }
}

/// One service of one node as last probed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub node: String,
    pub service: String,
    pub result: Outcome,
    /// Unix milliseconds of the last probe.
    pub last_check: Option<i64>,
    /// Unix milliseconds of the next one.
    pub next_check: Option<i64>,
    pub latency_ms: Option<f64>,
    /// Failed probes in a row.
    pub failures: u32,
    /// Restarts asked since the service last passed (this node's services only).
    pub restarts: u32,
    /// What the probe saw, or why it failed.
    pub detail: String,
    /// Its failure was recorded as an event (its recovery will be).
    #[serde(default, skip_serializing)]
    pub reported: bool,
}

/// Everything `/status`, `/status.json` and `clusterd status` show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub node: String,
    pub peer: Option<String>,
    /// Unix milliseconds.
    pub generated: i64,
    pub interval_s: u64,
    pub role: String,
    /// Whether this node reports itself healthy (repairs did not fail).
    pub healthy: bool,
    /// This node and the peer, in that order.
    pub nodes: Vec<String>,
    pub checks: Vec<Check>,
    /// Newest first (filtered for `/status?...`).
    pub history: Vec<Event>,
}

/// Figures `/metrics` needs beyond the checks.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub role: String,
    pub vip_holder: Option<String>,
    pub vip_held: bool,
    pub peer_alive: Option<bool>,
    pub replication: Option<crate::replication::ReplicationStatus>,
    pub queue: usize,
    pub queue_oldest_age_s: Option<i64>,
    pub counts: crate::store::Counts,
    pub free_percent: Option<f64>,
    pub cert_days_left: Option<f64>,
}

/// What the monitor learns once the node's cluster and replication exist.
#[derive(Clone)]
struct Handles {
    cluster: Option<Arc<Cluster>>,
    replication: Option<Arc<Replication>>,
}

/// The monitor of a running node. Made before the front-ends (HTTP shows it), started
/// once the cluster runs ([`Monitor::start`]).
pub struct Monitor {
    ctx: Arc<Ctx>,
    board: Mutex<HashMap<(String, String), Check>>,
    health: NodeHealth,
    handles: Mutex<Option<Handles>>,
    /// Events a standby observed (shown on its page; the active node writes history).
    local: Mutex<Vec<Event>>,
    /// Events from outside the probes ([`Monitor::note`]), for the next round.
    pending: Mutex<Vec<Event>>,
}

/// The services whose failures this node repairs, by probe name (`webmail` is the
/// HTTP front-end's too).
fn repair_service(service: &str) -> Option<&'static str> {
    match service {
        "smtp" => Some("smtp"),
        "imap" => Some("imap"),
        "dns" => Some("dns"),
        "http" | "webmail" => Some("http"),
        _ => None,
    }
}

/// The event kinds a check's failing and passing again are recorded as.
fn kinds(service: &str) -> (&'static str, &'static str) {
    match service {
        "disk" => ("disk_low", "disk_ok"),
        "store" => ("store_unwritable", "store_writable"),
        "cert" => ("cert_expiring", "cert_ok"),
        "queue" => ("queue_old", "queue_ok"),
        "replication" => ("replication_degraded", "replication_ok"),
        "peer" => ("peer_lost", "peer_back"),
        _ => ("down", "recovered"),
    }
}

/// Whether an event kind is a return to normal (the passing kinds of [`kinds`], and
/// the node healthy again).
pub fn is_recovery(kind: &str) -> bool {
    kind == "healthy"
        || [
            "disk",
            "store",
            "cert",
            "queue",
            "replication",
            "peer",
            "imap",
        ]
        .iter()
        .any(|s| kinds(s).1 == kind)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where the peer's listener of a service is: its private address and our port, when
/// ours listens on every address; else unknown.
fn peer_addr(ours: Option<&SocketAddr>, peer_ip: Option<IpAddr>) -> Option<SocketAddr> {
    let ours = ours?;
    let ip = peer_ip?;
    ours.ip()
        .is_unspecified()
        .then(|| SocketAddr::new(ip, ours.port()))
}

/// A listener's address as this node reaches it (0.0.0.0 → 127.0.0.1).
fn local_addr(a: &SocketAddr) -> SocketAddr {
    let mut a = *a;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

impl Monitor {
    pub fn new(ctx: Arc<Ctx>) -> Arc<Monitor> {
        Arc::new(Monitor {
            ctx,
            board: Mutex::new(HashMap::new()),
            health: NodeHealth::default(),
            handles: Mutex::new(None),
            local: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// An event about this node from outside the probes — the supervisor's
    /// `SupervisorEvent`s (a task that panicked or exited, a stop or wedge) —
    /// recorded in the history and alerted with the next round's events.
    pub fn note(&self, service: &str, kind: &str, detail: String) {
        let e = self.event(&self.ctx.cfg.node.name, service, kind, detail);
        self.pending.lock().unwrap().push(e);
    }

    /// The "hand over" hook: false once repairs failed while the peer was healthy.
    pub fn node_health(&self) -> NodeHealth {
        self.health.clone()
    }

    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    fn peer_name(&self) -> Option<String> {
        self.ctx.cfg.cluster.as_ref().map(|c| c.peer.clone())
    }

    /// The peer's private address (replication's peer, else the UDP heartbeat's).
    fn peer_ip(&self) -> Option<IpAddr> {
        let cfg = &self.ctx.cfg;
        cfg.cluster.as_ref()?;
        cfg.replication.as_ref().map(|r| r.peer.ip()).or_else(|| {
            cfg.cluster
                .as_ref()?
                .heartbeat
                .iter()
                .find_map(|h| h.udp.as_ref().map(|u| u.peer.ip()))
        })
    }

    /// Starts the probe loop with the node's handles and the supervisor's seam.
    pub fn start(
        self: &Arc<Self>,
        cluster: Option<Arc<Cluster>>,
        replication: Option<Arc<Replication>>,
        repair: Arc<dyn Repair>,
    ) {
        *self.handles.lock().unwrap() = Some(Handles {
            cluster,
            replication,
        });
        let m = self.clone();
        tokio::spawn(async move { m.run(repair).await });
    }

    async fn run(self: Arc<Self>, repair: Arc<dyn Repair>) {
        let cfg = self.ctx.cfg.monitor.clone();
        let mut repairs = policy::Repairs::new(
            Policy {
                failures_before_restart: cfg.failures_before_restart,
                restarts_before_failover: cfg.restarts_before_failover,
            },
            repair,
            self.health.clone(),
        );
        let mut alerts = alert::Alerter::new(self.ctx.clone());
        let mut last_role: Option<String> = None;
        // The first round after one interval: the front-ends and the zones are up.
        let every = Duration::from_secs(cfg.interval_s.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let events = self.cycle(&mut repairs, &mut last_role).await;
            // The history first: it should not wait for the alert mail.
            self.record(events.clone()).await;
            alerts.send(&events, &self.failing()).await;
        }
    }

    /// Checks failing now whose failure was recorded (for reminders).
    fn failing(&self) -> Vec<Check> {
        self.board
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.result == Outcome::Failing && c.reported)
            .cloned()
            .collect()
    }

    /// The history when writable; a standby keeps its events to show them.
    async fn record(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if self.ctx.store.is_writable() {
            if let Err(e) = self.ctx.store.record_events(events.clone()).await {
                tracing::warn!(error = %e, "monitor: the history could not be written");
            } else {
                return;
            }
        }
        let mut local = self.local.lock().unwrap();
        local.extend(events);
        let excess = local.len().saturating_sub(KEEP_EVENTS);
        local.drain(..excess);
    }

    fn event(&self, node: &str, service: &str, kind: &str, detail: String) -> Event {
        Event {
            id: crate::store::new_id(),
            at: now_ms(),
            node: node.to_string(),
            service: service.to_string(),
            kind: kind.to_string(),
            detail,
        }
    }

    /// One round: every probe, the repairs, the node-level checks; the events.
    async fn cycle(
        &self,
        repairs: &mut policy::Repairs,
        last_role: &mut Option<String>,
    ) -> Vec<Event> {
        let cfg = &self.ctx.cfg;
        let me = cfg.node.name.clone();
        let timeout = Duration::from_secs(cfg.monitor.probe_timeout_s.max(1));
        let handles = self.handles.lock().unwrap().clone();
        let mut events = std::mem::take(&mut *self.pending.lock().unwrap());
        let cluster = handles
            .as_ref()
            .and_then(|h| h.cluster.as_ref().map(|c| c.status()));
        let replication = handles
            .as_ref()
            .and_then(|h| h.replication.as_ref().map(|r| r.status()));
        let peer = self.peer_name();
        let peer_alive = cluster.as_ref().map(|c| c.peer_alive);
        let peer_ip = self.peer_ip();

        let zones: Vec<String> = match self.ctx.store.content_list("zones/").await {
            Ok(list) => list
                .into_iter()
                .filter_map(|e| {
                    e.path
                        .strip_prefix("zones/")?
                        .strip_suffix(".zone")
                        .map(str::to_string)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let zones = Arc::new(zones);

        // The protocol probes of both nodes.
        // (node, service, address; None: not probed this round).
        let mut plan: Vec<(String, &'static str, Option<SocketAddr>)> = Vec::new();
        // Behind `redirect_to_https` the site and the webmail answer on HTTPS only.
        let https = cfg.http.redirect_to_https && !cfg.http.https_listen.is_empty();
        let web = if https {
            cfg.http.https_listen.first()
        } else {
            cfg.http.listen.first()
        };
        let tls = https.then(crate::outbound::any_cert_connector);
        let services = [
            ("smtp", cfg.smtp.listen.first()),
            ("imap", cfg.imap.listen.first()),
            ("dns", cfg.dns.listen.first()),
            ("http", web),
            ("webmail", web),
        ];
        for (name, addr) in services {
            let Some(addr) = addr else { continue };
            plan.push((me.clone(), name, Some(local_addr(addr))));
            if let Some(peer) = &peer {
                let target = peer_addr(Some(addr), peer_ip).filter(|_| peer_alive == Some(true));
                plan.push((peer.clone(), name, target));
            }
        }
        let mut probes = Vec::new();
        for (node, service, target) in plan {
            let zones = zones.clone();
            let host = cfg.domain.name.clone();
            let tls = tls.clone();
            probes.push(async move {
                let Some(target) = target else {
                    return (node, service, None);
                };
                let start = Instant::now();
                let res = tokio::time::timeout(timeout, async {
                    match service {
                        "smtp" => probe::smtp(target).await,
                        "imap" => probe::imap(target).await,
                        "dns" => probe::dns_soa(target, &zones, &host).await,
                        "http" => probe::http_get(target, tls.as_ref(), &host, "/", false).await,
                        _ => {
                            let path = "/webmail/login";
                            probe::http_get(target, tls.as_ref(), &host, path, true).await
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("no answer within {}s", timeout.as_secs()))
                });
                (node, service, Some((res, start.elapsed())))
            });
        }
        let pings: Vec<_> = cfg
            .monitor
            .ping_hosts
            .iter()
            .map(|ip| {
                let ip = *ip;
                async move {
                    let start = Instant::now();
                    let res = tokio::task::spawn_blocking(move || probe::ping(ip, timeout))
                        .await
                        .map_err(anyhow::Error::from)
                        .and_then(|r| r.map(|_| format!("echo reply from {ip}")));
                    (format!("ping {ip}"), res, start.elapsed())
                }
            })
            .collect();
        let (results, ping_results) = tokio::join!(
            futures::future::join_all(probes),
            futures::future::join_all(pings)
        );

        let now = now_ms();
        let next = now + cfg.monitor.interval_s.max(1) as i64 * 1000;

        // Peer health of each service, for the hand-over rule.
        let mut peer_ok: HashMap<&'static str, bool> = HashMap::new();
        for (node, service, r) in &results {
            if Some(node) == peer.as_ref()
                && let Some((res, _)) = r
            {
                let rs = repair_service(service).unwrap_or(service);
                let e = peer_ok.entry(rs).or_insert(true);
                *e &= res.is_ok();
            }
        }
        // This node's HTTP is two probes: it passes when both do.
        let mut own: HashMap<&'static str, bool> = HashMap::new();
        for (node, service, r) in &results {
            if *node == me
                && let Some((res, _)) = r
                && let Some(rs) = repair_service(service)
            {
                *own.entry(rs).or_insert(true) &= res.is_ok();
            }
        }

        for (node, service, r) in results {
            match r {
                None => self.update(&mut events, &node, service, None, None, now, next),
                Some((res, latency)) => self.update(
                    &mut events,
                    &node,
                    service,
                    Some(res.map_err(|e| format!("{e:#}"))),
                    Some(latency),
                    now,
                    next,
                ),
            }
        }
        for (service, res, latency) in ping_results {
            self.update(
                &mut events,
                &me,
                &service,
                Some(res.map_err(|e| format!("{e:#}"))),
                Some(latency),
                now,
                next,
            );
        }

        // Repairs of this node's services.
        let mut own: Vec<_> = own.into_iter().collect();
        own.sort();
        for (service, ok) in own {
            let (step, outcome) = repairs
                .observe(service, ok, peer_ok.get(service).copied())
                .await;
            match step {
                Step::Restart(n) => {
                    let (kind, detail) = match outcome {
                        Some(Err(e)) => ("restart_failed", format!("restart {n} of {service} failed: {e:#}")),
                        _ => ("restarted", format!("{service} restarted (restart {n} since it last passed)")),
                    };
                    events.push(self.event(&me, service, kind, detail));
                }
                Step::HandOver => events.push(self.event(
                    &me,
                    service,
                    "unhealthy",
                    format!(
                        "{service} still failing after {} restarts while the peer has it healthy: this node reports itself unhealthy and hands over",
                        repairs.policy.restarts_before_failover
                    ),
                )),
                Step::Healthy => events.push(self.event(
                    &me,
                    service,
                    "healthy",
                    format!("{service} passes again: this node reports itself healthy"),
                )),
                Step::Nothing => {}
            }
            let t = repairs.tracker(service);
            let mut board = self.board.lock().unwrap();
            for (_, c) in board
                .iter_mut()
                .filter(|((n, s), _)| *n == me && repair_service(s) == Some(service))
            {
                c.restarts = t.restarts;
            }
        }

        // Node-level checks.
        let started = Instant::now();
        let free = probe::free_percent(&cfg.node.data_dir);
        let min = cfg.monitor.min_free_percent;
        let disk = match free {
            Ok(p) if p < min => Err(format!(
                "{:.1}% free in {} (below {min}%)",
                p,
                cfg.node.data_dir.display()
            )),
            Ok(p) => Ok(format!("{p:.1}% free")),
            Err(e) => Err(format!("{e:#}")),
        };
        self.update(
            &mut events,
            &me,
            "disk",
            Some(disk),
            Some(started.elapsed()),
            now,
            next,
        );

        // The store can write (writer thread, write probe, free space above
        // `store.min_free_mb`): the same verdict the node's health carries.
        let started = Instant::now();
        let health = self.ctx.store.health();
        let store = if health.healthy() {
            Ok(health.summary())
        } else {
            Err(health.summary())
        };
        self.update(
            &mut events,
            &me,
            "store",
            Some(store),
            Some(started.elapsed()),
            now,
            next,
        );

        let started = Instant::now();
        let warn_s = cfg.monitor.cert_warn_days as i64 * 86_400;
        let cert = match probe::cert_not_after(&self.ctx.identity.cert_pem()) {
            Ok(end) => {
                let left = end - crate::store::now();
                let days = left as f64 / 86_400.0;
                if left < warn_s {
                    Err(format!("the TLS certificate expires in {days:.1} days"))
                } else {
                    Ok(format!("valid for {days:.0} more days"))
                }
            }
            Err(e) => Err(format!("{e:#}")),
        };
        self.update(
            &mut events,
            &me,
            "cert",
            Some(cert),
            Some(started.elapsed()),
            now,
            next,
        );

        let started = Instant::now();
        let queue = match self.ctx.store.queue().await {
            Ok(q) => {
                let oldest = q.iter().map(|e| e.created).min();
                let age = oldest.map(|t| crate::store::now() - t);
                match age {
                    Some(a) if a > cfg.monitor.queue_max_age_s as i64 => Err(format!(
                        "{} queued, the oldest for {a}s (limit {}s)",
                        q.len(),
                        cfg.monitor.queue_max_age_s
                    )),
                    Some(a) => Ok(format!("{} queued, the oldest for {a}s", q.len())),
                    None => Ok("empty".into()),
                }
            }
            Err(e) => Err(format!("{e}")),
        };
        self.update(
            &mut events,
            &me,
            "queue",
            Some(queue),
            Some(started.elapsed()),
            now,
            next,
        );

        if let Some(r) = &replication {
            let writable = self.ctx.store.is_writable();
            let res = if writable && r.degraded {
                Err("degraded: committing without the peer".to_string())
            } else if writable {
                Ok(format!(
                    "{} shipping, {} op(s) behind",
                    r.mode,
                    r.committed_seq.saturating_sub(r.acked_seq)
                ))
            } else if !r.connected_in || !r.caught_up {
                Err(format!(
                    "standby {}: not holding the active node's log",
                    if r.connected_in {
                        "receiving"
                    } else {
                        "not connected"
                    }
                ))
            } else {
                Ok(format!("receiving, {} op(s) applied", r.applied))
            };
            let ok_role = cluster.as_ref().is_some_and(|c| c.role != "init");
            let res = ok_role.then_some(res);
            self.update(&mut events, &me, "replication", res, None, now, next);
        }

        if let Some(c) = &cluster {
            let started = c.role != "init";
            let peer_res = started.then(|| {
                if c.peer_alive {
                    Ok(format!(
                        "heard, {}",
                        c.peer_role.as_deref().unwrap_or("unknown role")
                    ))
                } else {
                    Err(format!("{} is not heard on any medium", c.peer))
                }
            });
            self.update(&mut events, &me, "peer", peer_res, None, now, next);
            let dead_ms = cfg.cluster.as_ref().map_or(1000, |c| c.deadtime_ms);
            let silent: Vec<&String> = c
                .media
                .iter()
                .filter(|(_, heard)| heard.is_none_or(|ms| ms > dead_ms))
                .map(|(m, _)| m)
                .collect();
            let media = (started && c.peer_alive).then(|| {
                if silent.is_empty() {
                    Ok(format!("{} medium(s) carry heartbeats", c.media.len()))
                } else {
                    Err(format!("silent: {silent:?}"))
                }
            });
            self.update(&mut events, &me, "heartbeat", media, None, now, next);
            // Exactly one holder: this node's own address, or the peer reporting itself
            // active in its heartbeats.
            let peer_holds = c.peer_alive && c.peer_role.as_deref() == Some("active");
            let vip = started.then(|| match (c.vip_held, peer_holds) {
                (true, true) => Err(format!("{} claimed by both nodes", c.vip)),
                (true, false) => Ok(format!("{} held by {me}", c.vip)),
                (false, true) => Ok(format!("{} held by {}", c.vip, c.peer)),
                (false, false) => Err(format!("{} held by nobody", c.vip)),
            });
            self.update(&mut events, &me, "vip", vip, None, now, next);

            // Role changes.
            if last_role.as_deref() != Some(c.role.as_str()) {
                if let Some(before) = last_role.as_deref() {
                    let preferred = cfg.cluster.as_ref().and_then(|c| c.preferred.as_deref())
                        == Some(me.as_str());
                    let (kind, detail) = match (before, c.role.as_str()) {
                        ("init", role) => ("started", format!("{me} started as {role}")),
                        (_, "active") if !c.peer_alive => (
                            "failover",
                            format!("{me} took the service: {} is not heard", c.peer),
                        ),
                        (_, "active") => (
                            if preferred { "failback" } else { "takeover" },
                            format!("{me} took the service from {}", c.peer),
                        ),
                        ("active", _) => (
                            "handed_over",
                            format!("{me} handed the service to {}", c.peer),
                        ),
                        _ => ("role", format!("{me} is now {}", c.role)),
                    };
                    events.push(self.event(&me, "cluster", kind, detail));
                }
                *last_role = Some(c.role.clone());
            }
        }
        events
    }

    /// Stores one probe's result (None: not probed) and adds the events its change
    /// causes.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        events: &mut Vec<Event>,
        node: &str,
        service: &str,
        res: Option<Result<String, String>>,
        latency: Option<Duration>,
        now: i64,
        next: i64,
    ) {
        let mut board = self.board.lock().unwrap();
        let c = board
            .entry((node.to_string(), service.to_string()))
            .or_insert_with(|| Check {
                node: node.to_string(),
                service: service.to_string(),
                result: Outcome::Untested,
                last_check: None,
                next_check: None,
                latency_ms: None,
                failures: 0,
                restarts: 0,
                detail: String::new(),
                reported: false,
            });
        c.next_check = Some(next);
        let Some(res) = res else {
            c.result = Outcome::Untested;
            c.latency_ms = None;
            c.failures = 0;
            c.detail = "not probed".into();
            return;
        };
        // The peer's services are reported down only after two failed rounds: a peer
        // that just died fails its probes before the heartbeat's dead time says so.
        let threshold = if node == self.ctx.cfg.node.name { 1 } else { 2 };
        c.last_check = Some(now);
        c.latency_ms = latency.map(|d| d.as_secs_f64() * 1000.0);
        let (bad, good) = kinds(service);
        match res {
            Ok(detail) => {
                c.result = Outcome::Ok;
                c.failures = 0;
                c.detail = detail;
                if std::mem::take(&mut c.reported) {
                    let text = format!("{service} on {node} passes again: {}", c.detail);
                    events.push(self.event(node, service, good, text));
                }
            }
            Err(why) => {
                c.result = Outcome::Failing;
                c.failures += 1;
                c.detail = why;
                if !c.reported && c.failures >= threshold {
                    c.reported = true;
                    let text = format!("{service} on {node} is failing: {}", c.detail);
                    events.push(self.event(node, service, bad, text));
                }
            }
        }
    }

    /// The board and the history (filtered) as shown everywhere.
    pub async fn view(&self, filter: EventFilter) -> StatusView {
        let me = self.ctx.cfg.node.name.clone();
        let peer = self.peer_name();
        let mut checks: Vec<Check> = self.board.lock().unwrap().values().cloned().collect();
        let order = |n: &str| if n == me { 0 } else { 1 };
        checks.sort_by(|a, b| (order(&a.node), &a.service).cmp(&(order(&b.node), &b.service)));
        let mut history = self
            .ctx
            .store
            .events(filter.clone())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "monitor: reading the history");
                Vec::new()
            });
        // A standby's own events are not in the replicated history yet.
        let local: Vec<Event> = self
            .local
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                filter.node.as_ref().is_none_or(|n| *n == e.node)
                    && filter.service.as_ref().is_none_or(|s| *s == e.service)
                    && filter.from.is_none_or(|f| e.at >= f)
                    && filter.to.is_none_or(|t| e.at < t)
            })
            .cloned()
            .collect();
        if !local.is_empty() {
            history.extend(local);
            history.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
            history.truncate(filter.limit.max(1));
        }
        let role = self.figures_role();
        let mut nodes = vec![me.clone()];
        nodes.extend(peer.clone());
        StatusView {
            node: me,
            peer,
            generated: now_ms(),
            interval_s: self.ctx.cfg.monitor.interval_s,
            role,
            healthy: self.health.healthy(),
            nodes,
            checks,
            history,
        }
    }

    fn figures_role(&self) -> String {
        let handles = self.handles.lock().unwrap().clone();
        match handles.and_then(|h| h.cluster) {
            Some(c) => c.status().role,
            None if self.ctx.cfg.cluster.is_none() => "active".into(),
            None => "init".into(),
        }
    }

    /// What `/metrics` shows beyond the checks.
    pub async fn figures(&self) -> Figures {
        let handles = self.handles.lock().unwrap().clone();
        let cluster = handles
            .as_ref()
            .and_then(|h| h.cluster.as_ref().map(|c| c.status()));
        let queue = self.ctx.store.queue().await.unwrap_or_default();
        let cert_days_left = probe::cert_not_after(&self.ctx.identity.cert_pem())
            .ok()
            .map(|end| (end - crate::store::now()) as f64 / 86_400.0);
        Figures {
            role: self.figures_role(),
            vip_holder: cluster.as_ref().and_then(|c| c.vip_holder.clone()),
            vip_held: cluster.as_ref().is_some_and(|c| c.vip_held),
            peer_alive: cluster.as_ref().map(|c| c.peer_alive),
            replication: handles
                .as_ref()
                .and_then(|h| h.replication.as_ref().map(|r| r.status())),
            queue: queue.len(),
            queue_oldest_age_s: queue
                .iter()
                .map(|e| e.created)
                .min()
                .map(|t| crate::store::now() - t),
            counts: self.ctx.store.counts().await.unwrap_or_default(),
            free_percent: probe::free_percent(&self.ctx.cfg.node.data_dir).ok(),
            cert_days_left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A monitor on a real store and config (nothing probed: the loop is not started).
    async fn monitor(dir: &std::path::Path) -> Arc<Monitor> {
        crate::tls::install_provider();
        let key = dir.join("authkey");
        std::fs::write(&key, [7u8; 32]).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let text = format!(
            "[node]\nname = \"clusternodo1\"\ndata_dir = \"{}\"\n[cluster]\npeer = \"clusternodo2\"\nvip = \"10.0.0.100/8\"\nauth_key_file = \"{}\"\n[[cluster.heartbeat]]\nudp = {{ bind = \"127.0.0.1:40694\", peer = \"127.0.0.2:40694\" }}\n",
            dir.join("data").display(),
            key.display()
        );
        let cfg = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let store = crate::store::Store::open(&cfg.node.data_dir, &cfg.node.name).unwrap();
        Monitor::new(Ctx::build(cfg, store).await.unwrap())
    }

    fn kinds_of(events: &[Event]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| (e.node.clone(), e.kind.clone()))
            .collect()
    }

    #[tokio::test]
    async fn own_failures_count_at_once_and_the_peers_after_two_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let m = monitor(dir.path()).await;
        let mut ev = Vec::new();
        let fail = || Some(Err("refused".to_string()));
        let pass = || Some(Ok("fine".to_string()));
        m.update(&mut ev, "clusternodo1", "imap", fail(), None, 1, 2);
        m.update(&mut ev, "clusternodo2", "imap", fail(), None, 1, 2);
        assert_eq!(kinds_of(&ev), [("clusternodo1".into(), "down".into())]);
        m.update(&mut ev, "clusternodo1", "imap", fail(), None, 2, 3);
        m.update(&mut ev, "clusternodo2", "imap", fail(), None, 2, 3);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[1].node, "clusternodo2");
        // Recoveries: one each, and only for failures that were reported.
        m.update(&mut ev, "clusternodo1", "imap", pass(), None, 3, 4);
        m.update(&mut ev, "clusternodo2", "imap", pass(), None, 3, 4);
        m.update(&mut ev, "clusternodo2", "dns", fail(), None, 3, 4);
        m.update(&mut ev, "clusternodo2", "dns", pass(), None, 4, 5);
        let kinds: Vec<String> = ev.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, ["down", "down", "recovered", "recovered"]);
        // Not probed (the peer is not heard): untested, and no event.
        m.update(&mut ev, "clusternodo2", "smtp", None, None, 5, 6);
        assert_eq!(ev.len(), 4);
        let v = m
            .view(EventFilter {
                limit: 10,
                ..Default::default()
            })
            .await;
        let smtp = v.checks.iter().find(|c| c.service == "smtp").unwrap();
        assert_eq!(smtp.result, Outcome::Untested);
        assert_eq!(v.nodes, ["clusternodo1", "clusternodo2"]);
    }

    #[tokio::test]
    async fn a_standby_shows_its_events_beside_the_history_and_the_active_node_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let m = monitor(dir.path()).await;
        let all = EventFilter {
            limit: 100,
            ..Default::default()
        };
        m.ctx.store.set_writable(false);
        m.record(vec![m.event(
            "clusternodo1",
            "peer",
            "peer_lost",
            "gone".into(),
        )])
        .await;
        assert!(m.ctx.store.events(all.clone()).await.unwrap().is_empty());
        let v = m.view(all.clone()).await;
        assert_eq!(
            kinds_of(&v.history),
            [("clusternodo1".into(), "peer_lost".into())]
        );
        // Filters apply to them too.
        let other = EventFilter {
            service: Some("imap".into()),
            ..all.clone()
        };
        assert!(m.view(other).await.history.is_empty());
        m.ctx.store.set_writable(true);
        m.record(vec![m.event(
            "clusternodo2",
            "imap",
            "down",
            "refused".into(),
        )])
        .await;
        let stored = m.ctx.store.events(all.clone()).await.unwrap();
        assert_eq!(kinds_of(&stored), [("clusternodo2".into(), "down".into())]);
        assert_eq!(m.view(all).await.history.len(), 2);
    }

    #[tokio::test]
    async fn a_noted_event_waits_for_the_next_round() {
        let dir = tempfile::tempdir().unwrap();
        let m = monitor(dir.path()).await;
        m.note(
            "imap",
            "panicked",
            "the IMAP task panicked and was restarted".into(),
        );
        let pending = m.pending.lock().unwrap().clone();
        assert_eq!(
            kinds_of(&pending),
            [("clusternodo1".into(), "panicked".into())]
        );
        assert_eq!(pending[0].service, "imap");
    }
}
