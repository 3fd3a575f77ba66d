//! The role state machine: init → standby / active, from what the peer reports, the
//! media's liveness, health, ping nodes and the administrator's commands. Pure: the
//! caller passes the time, feeds heartbeats in and carries out the [`Action`]s.
//!
//! Rules, in order (the first that decides wins), while the peer is heard:
//! 1. a node told to stay down (`clusterd standby` on it, or `takeover` on the peer)
//!    is standby; a node asked to take over (the peer's `standby`) or whose
//!    administrator ran `takeover` is active;
//! 2. the healthy node beats an unhealthy one; with ping nodes, the node that reaches
//!    them beats one that does not;
//! 3. the `preferred` node is active (auto failback);
//! 4. without a preference the active node stays; if both or neither are active,
//!    the node whose name sorts first is active (a deterministic tie-break).
//!
//! When the peer is not heard for `deadtime` on every medium it is dead: the node is
//! active unless ping nodes are configured and it reaches none of them.
//!
//! A node that has just started (Init) and hears the peer decides only after half a
//! warntime of hearing it, on the latest report: frames queued in the network while
//! it was down arrive first and look fresh to a new replay guard.
//!
//! "Healthy" is what the caller says (with replication: the node holds everything the
//! active peer has; see `crate::replication::Replication::ready`).
//!
//! Invariants
//! - Never two actives while they hear each other: a node that should be active
//!   while the peer reports active waits for the peer to stand down; a node that
//!   should stand down does so at once. Every role change should be announced to
//!   the peer immediately (the caller sends a heartbeat on any action).
//! - A survivor of a split brain re-announces the VIP when the peer stops being
//!   active ([`Action::Announce`]), as stale ARP caches are the usual failure there.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Init,
    Standby,
    Active,
}

impl Role {
    pub fn code(self) -> u8 {
        match self {
            Role::Init => 0,
            Role::Standby => 1,
            Role::Active => 2,
        }
    }
    pub fn from_code(c: u8) -> Role {
        match c {
            2 => Role::Active,
            1 => Role::Standby,
            _ => Role::Init,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::Init => "init",
            Role::Standby => "standby",
            Role::Active => "active",
        }
    }
}

/// What a node asks of its peer in its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    None,
    /// "Take over": sent while the sender is held down (`clusterd standby`).
    TakeOver,
    /// "Stand down": sent by a node whose administrator ran `clusterd takeover`.
    StandDown,
}

impl Request {
    pub fn code(self) -> u8 {
        match self {
            Request::None => 0,
            Request::TakeOver => 1,
            Request::StandDown => 2,
        }
    }
    pub fn from_code(c: u8) -> Request {
        match c {
            1 => Request::TakeOver,
            2 => Request::StandDown,
            _ => Request::None,
        }
    }
}

/// What the peer last said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    pub role: Role,
    pub epoch: u64,
    pub store_seq: u64,
    pub healthy: bool,
    pub ping_ok: bool,
    pub request: Request,
    /// The peer's LAN interface has the VIP (see [`crate::cluster::wire::Heartbeat`]).
    pub vip_held: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub me: String,
    pub peer: String,
    pub preferred: Option<String>,
    pub deadtime: Duration,
    pub warntime: Duration,
    pub initdead: Duration,
    /// Whether ping nodes are configured.
    pub ping_nodes: bool,
    /// Number of heartbeat media.
    pub media: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take the service: VIP, gratuitous ARP, store open for writes.
    Activate,
    /// Give it up, in the reverse order.
    Deactivate,
    /// Re-send gratuitous ARP for the VIP we hold.
    Announce,
    /// Medium `i` has been silent for `warntime`.
    MediumSilent(usize),
    /// Medium `i` carries heartbeats again.
    MediumBack(usize),
    PeerLost,
    PeerFound,
}

pub struct Machine {
    s: Settings,
    role: Role,
    epoch: u64,
    started: Instant,
    peer: Option<PeerReport>,
    peer_heard: Option<Instant>,
    /// When this run first heard the peer (see [`Machine::tick`] on Init).
    first_heard: Option<Instant>,
    peer_alive: bool,
    medium_heard: Vec<Option<Instant>>,
    medium_warned: Vec<bool>,
    /// Told to stay standby; cleared by `takeover` here or the peer's death.
    held_down: bool,
    /// `takeover` ran here; cleared once active.
    want_takeover: bool,
    /// The peer was active at the previous tick (for [`Action::Announce`]).
    peer_was_active: bool,
    /// This node's services are healthy.
    pub healthy: bool,
    /// This node reaches at least one ping node (true when none are configured).
    pub ping_ok: bool,
}

impl Machine {
    pub fn new(s: Settings, now: Instant) -> Machine {
        let media = s.media;
        Machine {
            s,
            role: Role::Init,
            epoch: 0,
            started: now,
            peer: None,
            peer_heard: None,
            first_heard: None,
            peer_alive: false,
            medium_heard: vec![None; media],
            medium_warned: vec![false; media],
            held_down: false,
            want_takeover: false,
            peer_was_active: false,
            healthy: true,
            ping_ok: true,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn peer(&self) -> Option<&PeerReport> {
        self.peer.as_ref()
    }
    pub fn peer_alive(&self) -> bool {
        self.peer_alive
    }
    /// When each medium last carried an authentic heartbeat.
    pub fn media_heard(&self) -> &[Option<Instant>] {
        &self.medium_heard
    }

    /// A new authentic heartbeat from the peer arrived on `medium`.
    pub fn heard(&mut self, now: Instant, medium: usize, report: PeerReport) {
        if let Some(t) = self.medium_heard.get_mut(medium) {
            *t = Some(now);
        }
        self.peer_heard = Some(now);
        self.first_heard.get_or_insert(now);
        if report.request == Request::StandDown {
            // The peer's administrator ran `takeover`.
            self.held_down = true;
            self.want_takeover = false;
        }
        self.epoch = self.epoch.max(report.epoch);
        self.peer = Some(report);
    }

    /// A copy of a heartbeat already applied arrived on `medium` (the same frame goes
    /// out on every medium). It proves that medium only if the original arrived just
    /// before, and never the peer: a recorded frame replayed by someone else is also
    /// a "copy", and must not keep a dead peer alive.
    pub fn heard_copy(&mut self, now: Instant, medium: usize) {
        let fresh = self
            .peer_heard
            .is_some_and(|t| now.saturating_duration_since(t) < self.s.warntime / 2);
        if fresh && let Some(t) = self.medium_heard.get_mut(medium) {
            *t = Some(now);
        }
    }

    /// `clusterd standby` here: give the service to the peer and stay standby.
    pub fn standby(&mut self) {
        self.held_down = true;
        self.want_takeover = false;
    }

    /// `clusterd takeover` here: take the service and keep it.
    pub fn takeover(&mut self) {
        self.held_down = false;
        self.want_takeover = true;
    }

    /// What to ask of the peer in the next heartbeat.
    pub fn request(&self) -> Request {
        if self.want_takeover {
            Request::StandDown
        } else if self.held_down {
            Request::TakeOver
        } else {
            Request::None
        }
    }

    /// Advances to `now`: liveness, warnings, the role. Returns what to carry out.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let since_start = now.saturating_duration_since(self.started);
        for i in 0..self.medium_heard.len() {
            let silent = match self.medium_heard[i] {
                Some(t) => now.saturating_duration_since(t) >= self.s.warntime,
                // Never heard: only a concern once the start-up wait is over.
                None => since_start >= self.s.initdead,
            };
            if silent && !self.medium_warned[i] {
                self.medium_warned[i] = true;
                actions.push(Action::MediumSilent(i));
            } else if !silent && self.medium_warned[i] {
                self.medium_warned[i] = false;
                actions.push(Action::MediumBack(i));
            }
        }
        let alive = self
            .peer_heard
            .is_some_and(|t| now.saturating_duration_since(t) < self.s.deadtime);
        if alive != self.peer_alive {
            self.peer_alive = alive;
            actions.push(if alive {
                Action::PeerFound
            } else {
                Action::PeerLost
            });
            if !alive {
                self.held_down = false;
            }
        }
        if self.role == Role::Init && !alive && since_start < self.s.initdead {
            return actions;
        }
        // A node that has just started decides on the peer's latest report, not its
        // first: frames queued in the network while this node was down (a neighbour
        // queue, a serial buffer) arrive first, and this run's replay guard cannot tell
        // them from fresh ones. Half a warntime of hearing brings frames sent now.
        if self.role == Role::Init
            && alive
            && self
                .first_heard
                .is_some_and(|t| now.saturating_duration_since(t) < self.s.warntime / 2)
        {
            return actions;
        }
        let peer_active = alive && self.peer.as_ref().is_some_and(|p| p.role == Role::Active);
        match (self.role, self.desired(alive)) {
            (Role::Active, Role::Active) => {
                if self.peer_was_active && !peer_active {
                    actions.push(Action::Announce);
                }
            }
            (_, Role::Active) => {
                // Wait for an active peer to stand down first.
                if !peer_active {
                    self.role = Role::Active;
                    self.epoch += 1;
                    self.want_takeover = false;
                    actions.push(Action::Activate);
                }
            }
            (Role::Active, _) => {
                self.role = Role::Standby;
                actions.push(Action::Deactivate);
            }
            (Role::Init, _) => {
                // Also clears whatever a previous run may have left (a stale VIP).
                self.role = Role::Standby;
                actions.push(Action::Deactivate);
            }
            (Role::Standby, _) => {}
        }
        self.peer_was_active = peer_active;
        actions
    }

    fn desired(&self, alive: bool) -> Role {
        let pick = |me_first: bool| {
            if me_first {
                Role::Active
            } else {
                Role::Standby
            }
        };
        let p = match (&self.peer, alive) {
            (Some(p), true) => p,
            _ => return pick(!self.s.ping_nodes || self.ping_ok),
        };
        if self.held_down {
            return Role::Standby;
        }
        if self.want_takeover || p.request == Request::TakeOver {
            return Role::Active;
        }
        if self.healthy != p.healthy {
            return pick(self.healthy);
        }
        if self.s.ping_nodes && self.ping_ok != p.ping_ok {
            return pick(self.ping_ok);
        }
        match &self.s.preferred {
            Some(pref) if *pref == self.s.me => Role::Active,
            Some(pref) if *pref == self.s.peer => Role::Standby,
            _ => match (self.role == Role::Active, p.role == Role::Active) {
                (true, false) => Role::Active,
                (false, true) => Role::Standby,
                _ => pick(self.s.me < self.s.peer),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn settings(me: &str, preferred: Option<&str>, ping: bool) -> Settings {
        let peer = if me == "clusternodo1" {
            "clusternodo2"
        } else {
            "clusternodo1"
        };
        Settings {
            me: me.into(),
            peer: peer.into(),
            preferred: preferred.map(str::to_string),
            deadtime: 1000 * MS,
            warntime: 500 * MS,
            initdead: 3000 * MS,
            ping_nodes: ping,
            media: 2,
        }
    }

    fn report(role: Role) -> PeerReport {
        PeerReport {
            role,
            epoch: 0,
            store_seq: 0,
            healthy: true,
            ping_ok: true,
            request: Request::None,
            vip_held: role == Role::Active,
        }
    }

    /// Two machines that hear each other on every medium each 100 ms step.
    struct Pair {
        a: Machine,
        b: Machine,
        now: Instant,
        link: bool,
    }

    impl Pair {
        fn new(preferred: Option<&str>) -> Pair {
            let now = Instant::now();
            Pair {
                a: Machine::new(settings("clusternodo1", preferred, false), now),
                b: Machine::new(settings("clusternodo2", preferred, false), now),
                now,
                link: true,
            }
        }
        fn to_report(m: &Machine) -> PeerReport {
            PeerReport {
                role: m.role(),
                epoch: m.epoch(),
                store_seq: 0,
                healthy: m.healthy,
                ping_ok: m.ping_ok,
                request: m.request(),
                vip_held: m.role() == Role::Active,
            }
        }
        /// Runs `steps` of 100 ms; asserts the two never are active together while
        /// they hear each other.
        fn run(&mut self, steps: usize) {
            for _ in 0..steps {
                self.now += 100 * MS;
                if self.link {
                    let (ra, rb) = (Self::to_report(&self.a), Self::to_report(&self.b));
                    for m in 0..2 {
                        self.a.heard(self.now, m, rb.clone());
                        self.b.heard(self.now, m, ra.clone());
                    }
                }
                self.a.tick(self.now);
                self.b.tick(self.now);
                if self.link && self.a.peer_alive() && self.b.peer_alive() {
                    assert!(
                        !(self.a.role() == Role::Active && self.b.role() == Role::Active),
                        "two actives while they hear each other"
                    );
                }
            }
        }
        fn roles(&self) -> (Role, Role) {
            (self.a.role(), self.b.role())
        }
    }

    #[test]
    fn both_up_the_preferred_node_is_active_and_the_other_standby() {
        let mut p = Pair::new(Some("clusternodo1"));
        p.run(5);
        assert_eq!(p.roles(), (Role::Active, Role::Standby));
        let mut p = Pair::new(Some("clusternodo2"));
        p.run(5);
        assert_eq!(p.roles(), (Role::Standby, Role::Active));
    }

    #[test]
    fn without_preference_the_name_that_sorts_first_wins_and_then_keeps_it() {
        let mut p = Pair::new(None);
        p.run(5);
        assert_eq!(p.roles(), (Role::Active, Role::Standby));
        // Node 1 dies, node 2 takes over; node 1 returns: no failback.
        p.link = false;
        p.run(15);
        assert_eq!(p.b.role(), Role::Active);
        p.a = Machine::new(settings("clusternodo1", None, false), p.now);
        p.link = true;
        p.run(10);
        assert_eq!(p.roles(), (Role::Standby, Role::Active));
    }

    #[test]
    fn alone_a_node_waits_initdead_then_becomes_active() {
        let now = Instant::now();
        let mut m = Machine::new(settings("clusternodo2", Some("clusternodo1"), false), now);
        assert!(m.tick(now + 2900 * MS).is_empty());
        assert_eq!(m.role(), Role::Init);
        let actions = m.tick(now + 3000 * MS);
        assert!(actions.contains(&Action::Activate), "{actions:?}");
        assert_eq!(m.role(), Role::Active);
        assert_eq!(m.epoch(), 1);
    }

    #[test]
    fn peer_silent_on_every_medium_for_deadtime_is_dead_and_the_standby_takes_over() {
        let mut p = Pair::new(Some("clusternodo1"));
        p.run(5);
        p.link = false;
        // 900 ms of silence: still alive.
        p.run(9);
        assert_eq!(p.b.role(), Role::Standby);
        p.run(2);
        assert_eq!(p.b.role(), Role::Active);
        assert!(!p.b.peer_alive());
    }

    #[test]
    fn one_silent_medium_is_a_warning_not_a_failover() {
        let now = Instant::now();
        let mut m = Machine::new(settings("clusternodo2", Some("clusternodo1"), false), now);
        let mut t = now;
        let mut warned = Vec::new();
        for _ in 0..30 {
            t += 100 * MS;
            m.heard(t, 1, report(Role::Active));
            warned.extend(m.tick(t));
        }
        assert_eq!(m.role(), Role::Standby);
        assert!(m.peer_alive());
        assert!(warned.contains(&Action::MediumSilent(0)), "{warned:?}");
        assert!(!warned.contains(&Action::MediumSilent(1)));
        t += 100 * MS;
        m.heard(t, 0, report(Role::Active));
        assert!(m.tick(t).contains(&Action::MediumBack(0)));
    }

    #[test]
    fn replayed_copies_do_not_keep_a_dead_peer_alive() {
        let now = Instant::now();
        let mut m = Machine::new(settings("clusternodo2", Some("clusternodo1"), false), now);
        m.heard(now, 0, report(Role::Active));
        m.tick(now);
        assert!(m.peer_alive());
        // The peer dies; copies of its last frame keep arriving on both media.
        let mut t = now;
        for _ in 0..20 {
            t += 100 * MS;
            m.heard_copy(t, 0);
            m.heard_copy(t, 1);
            m.tick(t);
        }
        assert!(!m.peer_alive());
        assert_eq!(m.role(), Role::Active, "the standby took over");
    }

    #[test]
    fn preferred_node_fails_back_without_two_actives() {
        let mut p = Pair::new(Some("clusternodo1"));
        p.run(5);
        p.link = false;
        p.run(15);
        assert_eq!(p.b.role(), Role::Active);
        // Node 1 restarts and hears node 2 active: node 2 stands down first.
        p.a = Machine::new(settings("clusternodo1", Some("clusternodo1"), false), p.now);
        p.link = true;
        p.run(4);
        assert_eq!(p.roles(), (Role::Active, Role::Standby));
    }

    #[test]
    fn standby_command_moves_the_service_and_it_stays_moved() {
        let mut p = Pair::new(Some("clusternodo1"));
        p.run(5);
        p.a.standby();
        p.run(3);
        assert_eq!(p.roles(), (Role::Standby, Role::Active));
        p.run(20);
        assert_eq!(
            p.roles(),
            (Role::Standby, Role::Active),
            "no failback while held down"
        );
        // `takeover` on node 1 brings it back.
        p.a.takeover();
        p.run(3);
        assert_eq!(p.roles(), (Role::Active, Role::Standby));
    }

    #[test]
    fn takeover_command_on_the_standby_takes_the_service_and_keeps_it() {
        let mut p = Pair::new(Some("clusternodo1"));
        p.run(5);
        p.b.takeover();
        p.run(3);
        assert_eq!(p.roles(), (Role::Standby, Role::Active));
        p.run(20);
        assert_eq!(p.roles(), (Role::Standby, Role::Active));
    }

    #[test]
    fn split_brain_heals_to_the_preferred_node_and_the_survivor_announces() {
        let mut p = Pair::new(Some("clusternodo1"));
        p.run(5);
        p.link = false;
        p.run(15);
        assert_eq!(p.roles(), (Role::Active, Role::Active));
        p.link = true;
        // Both active: hearing each other, node 2 yields at once.
        p.now += 100 * MS;
        let (ra, rb) = (Pair::to_report(&p.a), Pair::to_report(&p.b));
        p.a.heard(p.now, 0, rb);
        p.b.heard(p.now, 0, ra);
        p.a.tick(p.now);
        let b_actions = p.b.tick(p.now);
        assert!(b_actions.contains(&Action::Deactivate), "{b_actions:?}");
        p.now += 100 * MS;
        let rb = Pair::to_report(&p.b);
        p.a.heard(p.now, 0, rb);
        let a_actions = p.a.tick(p.now);
        assert!(a_actions.contains(&Action::Announce), "{a_actions:?}");
        assert_eq!(p.roles(), (Role::Active, Role::Standby));
    }

    #[test]
    fn with_ping_nodes_an_isolated_node_does_not_take_over() {
        let now = Instant::now();
        let mut m = Machine::new(settings("clusternodo2", Some("clusternodo1"), true), now);
        m.ping_ok = false;
        m.tick(now + 5000 * MS);
        assert_eq!(m.role(), Role::Standby);
        m.ping_ok = true;
        assert!(m.tick(now + 5100 * MS).contains(&Action::Activate));
    }

    #[test]
    fn active_node_that_loses_the_ping_nodes_hands_over_to_a_peer_that_has_them() {
        let now = Instant::now();
        let mut s = settings("clusternodo1", Some("clusternodo1"), true);
        s.ping_nodes = true;
        let mut a = Machine::new(s, now);
        let mut t = now;
        for _ in 0..5 {
            t += 100 * MS;
            a.heard(t, 0, report(Role::Standby));
            a.tick(t);
        }
        assert_eq!(a.role(), Role::Active);
        a.ping_ok = false;
        t += 100 * MS;
        a.heard(t, 0, report(Role::Standby));
        assert!(a.tick(t).contains(&Action::Deactivate));
    }

    #[test]
    fn unhealthy_active_node_hands_over_to_a_healthy_peer() {
        let mut p = Pair::new(Some("clusternodo1"));
        p.run(5);
        p.a.healthy = false;
        p.run(3);
        assert_eq!(p.roles(), (Role::Standby, Role::Active));
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn a_returning_unhealthy_preferred_node_leaves_a_healthy_active_peer_alone() {
        let ms = Duration::from_millis(1);
        let now = Instant::now();
        let mut m = Machine::new(
            Settings {
                me: "clusternodo1".into(),
                peer: "clusternodo2".into(),
                preferred: Some("clusternodo1".into()),
                deadtime: 1000 * ms,
                warntime: 500 * ms,
                initdead: 3000 * ms,
                ping_nodes: false,
                media: 2,
            },
            now,
        );
        m.healthy = false;
        let peer = PeerReport {
            role: Role::Active,
            epoch: 2,
            store_seq: 0,
            healthy: true,
            ping_ok: true,
            request: Request::None,
            vip_held: true,
        };
        for step in 1..20 {
            let t = now + step * 10 * ms;
            m.heard(t, 0, peer.clone());
            m.tick(t);
            assert_ne!(m.role(), Role::Active, "step {step}");
        }
        m.healthy = true;
        let t = now + 300 * ms;
        m.heard(t, 0, peer.clone());
        m.tick(t);
        // Healthy again: the preferred node wants the service (it waits for the peer
        // to stand down first).
        assert_eq!(m.request(), Request::None);
    }
}
