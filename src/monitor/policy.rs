//! The repair policy: per service of this node, failed probes in a row lead to a
//! restart (through [`Repair`], the supervisor's seam), restarts that do not help lead
//! to handing the node over (through [`NodeHealth`], which the cluster's health
//! callback reads) while the peer has the same service healthy. Never flapping: a
//! node that handed over reports itself healthy again only after the service passed
//! `failures_before_restart` probes in a row (at least two).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Repair;

/// The thresholds (`[monitor]`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub failures_before_restart: u32,
    pub restarts_before_failover: u32,
}

/// What the policy decided after one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Restart the service (number `n` since it last passed).
    Restart(u32),
    /// Declare this node unhealthy: the peer should take the service.
    HandOver,
    /// The service that made the node hand over passes again.
    Healthy,
}

/// One service's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracker {
    /// Failed probes since the last pass or restart.
    pub failures: u32,
    /// Restarts since the service last passed.
    pub restarts: u32,
    /// Passes in a row.
    passes: u32,
    /// This service made the node declare itself unhealthy.
    pub handed_over: bool,
}

impl Tracker {
    /// Takes one probe's result; `peer_ok`: the peer's same service passed its last
    /// probe (None: no peer, or not probed).
    pub fn observe(&mut self, p: &Policy, ok: bool, peer_ok: Option<bool>) -> Step {
        let needed = p.failures_before_restart.max(1);
        if ok {
            self.failures = 0;
            self.passes += 1;
            if self.handed_over {
                if self.passes >= needed.max(2) {
                    self.handed_over = false;
                    self.restarts = 0;
                    return Step::Healthy;
                }
            } else {
                self.restarts = 0;
            }
            return Step::Nothing;
        }
        self.passes = 0;
        self.failures += 1;
        if self.failures < needed {
            return Step::Nothing;
        }
        self.failures = 0;
        if self.restarts >= p.restarts_before_failover && !self.handed_over && peer_ok == Some(true)
        {
            self.handed_over = true;
            return Step::HandOver;
        }
        // Below the limit, or nobody to hand over to, or handed over already: restart
        // again (the supervisor backs off).
        self.restarts += 1;
        Step::Restart(self.restarts)
    }
}

/// "This node is unhealthy, hand over": false while any service's repairs failed and
/// the peer had it healthy. The cluster's health callback reads it (`node.rs`).
#[derive(Clone, Default)]
pub struct NodeHealth(Arc<AtomicBool>);

impl NodeHealth {
    pub fn healthy(&self) -> bool {
        !self.0.load(Ordering::SeqCst)
    }
    fn set_unhealthy(&self, unhealthy: bool) {
        self.0.store(unhealthy, Ordering::SeqCst);
    }
}

/// The policy applied to this node's services: trackers, the repair seam, the health.
pub struct Repairs {
    pub policy: Policy,
    pub trackers: HashMap<String, Tracker>,
    repair: Arc<dyn Repair>,
    health: NodeHealth,
}

impl Repairs {
    pub fn new(policy: Policy, repair: Arc<dyn Repair>, health: NodeHealth) -> Repairs {
        Repairs {
            policy,
            trackers: HashMap::new(),
            repair,
            health,
        }
    }

    /// Takes one probe of `service` and carries out the decision. The restart's
    /// result is returned with the step (Err: the supervisor could not restart it).
    pub async fn observe(
        &mut self,
        service: &str,
        ok: bool,
        peer_ok: Option<bool>,
    ) -> (Step, Option<anyhow::Result<()>>) {
        let step = self
            .trackers
            .entry(service.to_string())
            .or_default()
            .observe(&self.policy, ok, peer_ok);
        let outcome = match step {
            Step::Restart(_) => Some(self.repair.restart(service).await),
            Step::HandOver | Step::Healthy => {
                let unhealthy = self.trackers.values().any(|t| t.handed_over);
                self.health.set_unhealthy(unhealthy);
                None
            }
            Step::Nothing => None,
        };
        (step, outcome)
    }

    pub fn tracker(&self, service: &str) -> Tracker {
        self.trackers.get(service).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::sync::Mutex;

    /// Records every restart asked of it (the supervisor's place in these tests).
    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);

    impl Repair for Recording {
        fn restart<'a>(&'a self, service: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
            self.0.lock().unwrap().push(service.to_string());
            Box::pin(async { Ok(()) })
        }
    }

    fn setup(fbr: u32, rbf: u32) -> (Repairs, Arc<Recording>, NodeHealth) {
        let rec = Arc::new(Recording::default());
        let health = NodeHealth::default();
        let r = Repairs::new(
            Policy {
                failures_before_restart: fbr,
                restarts_before_failover: rbf,
            },
            rec.clone(),
            health.clone(),
        );
        (r, rec, health)
    }

    async fn run(
        r: &mut Repairs,
        service: &str,
        results: &[bool],
        peer: Option<bool>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        for ok in results {
            steps.push(r.observe(service, *ok, peer).await.0);
        }
        steps
    }

    #[tokio::test]
    async fn a_service_is_restarted_after_failures_before_restart_failures_in_a_row() {
        let (mut r, rec, health) = setup(2, 3);
        // One failure then a pass: nothing.
        run(&mut r, "imap", &[false, true, false, true], Some(true)).await;
        assert!(rec.0.lock().unwrap().is_empty());
        let steps = run(&mut r, "imap", &[false, false], Some(true)).await;
        assert_eq!(steps, [Step::Nothing, Step::Restart(1)]);
        assert_eq!(*rec.0.lock().unwrap(), ["imap"]);
        // The restart helped: counters start again.
        run(&mut r, "imap", &[true], Some(true)).await;
        assert_eq!(r.tracker("imap").restarts, 0);
        assert!(health.healthy());
    }

    #[tokio::test]
    async fn restarts_that_do_not_help_hand_over_when_the_peer_is_healthy() {
        let (mut r, rec, health) = setup(2, 3);
        let steps = run(&mut r, "dns", &[false; 6], Some(true)).await;
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Restart(_)))
                .count(),
            3,
            "{steps:?}"
        );
        assert_eq!(rec.0.lock().unwrap().len(), 3);
        assert!(health.healthy(), "not yet: the fourth round decides");
        let steps = run(&mut r, "dns", &[false, false], Some(true)).await;
        assert_eq!(steps, [Step::Nothing, Step::HandOver]);
        assert!(!health.healthy());
        // Handed over once: later failures restart again but never hand over twice.
        let steps = run(&mut r, "dns", &[false, false], Some(true)).await;
        assert_eq!(steps, [Step::Nothing, Step::Restart(4)]);
        assert!(!health.healthy());
    }

    #[tokio::test]
    async fn without_a_healthy_peer_the_node_keeps_the_service_and_restarts() {
        for peer in [None, Some(false)] {
            let (mut r, rec, health) = setup(1, 2);
            let steps = run(&mut r, "smtp", &[false; 5], peer).await;
            assert_eq!(
                steps,
                (1..=5).map(Step::Restart).collect::<Vec<_>>(),
                "peer {peer:?}"
            );
            assert_eq!(rec.0.lock().unwrap().len(), 5);
            assert!(health.healthy());
        }
    }

    #[tokio::test]
    async fn a_handed_over_node_is_healthy_again_only_after_passes_in_a_row() {
        let (mut r, _rec, health) = setup(2, 1);
        run(&mut r, "http", &[false; 4], Some(true)).await;
        assert!(!health.healthy());
        // Pass, fail, pass: not enough (no flapping back).
        let steps = run(&mut r, "http", &[true, false, true], Some(true)).await;
        assert!(!steps.contains(&Step::Healthy), "{steps:?}");
        assert!(!health.healthy());
        let steps = run(&mut r, "http", &[true], Some(true)).await;
        assert_eq!(steps, [Step::Healthy]);
        assert!(health.healthy());
    }

    #[tokio::test]
    async fn one_unhealthy_service_keeps_the_node_unhealthy() {
        let (mut r, _rec, health) = setup(1, 0);
        run(&mut r, "imap", &[false], Some(true)).await;
        run(&mut r, "dns", &[false], Some(true)).await;
        assert!(!health.healthy());
        run(&mut r, "imap", &[true, true], Some(true)).await;
        assert!(!health.healthy(), "dns still failing");
        run(&mut r, "dns", &[true, true], Some(true)).await;
        assert!(health.healthy());
    }

    #[tokio::test]
    async fn a_restart_the_supervisor_refuses_is_reported() {
        struct Refusing;
        impl Repair for Refusing {
            fn restart<'a>(&'a self, s: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
                Box::pin(async move { Err(anyhow::anyhow!("{s}: no such service")) })
            }
        }
        let mut r = Repairs::new(
            Policy {
                failures_before_restart: 1,
                restarts_before_failover: 3,
            },
            Arc::new(Refusing),
            NodeHealth::default(),
        );
        let (step, outcome) = r.observe("imap", false, None).await;
        assert_eq!(step, Step::Restart(1));
        assert!(outcome.unwrap().is_err());
    }
}
