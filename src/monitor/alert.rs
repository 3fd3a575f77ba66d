//! Alerts: every event goes to the journal (a structured `tracing` event), one line
//! to the alert file (`[monitor] alert_file`), and, on a node whose store is open for
//! writes, a mail to `alert_recipient` delivered through the node's own delivery path
//! (`smtp::submit`, so it replicates and the webmail shows it). The same alert (node,
//! service, kind) is sent again at most every `alert_every_s`; a check that stays
//! failing is reminded that often; the recovery of every failure announced is sent
//! ([`Throttle`]).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::store::Event;

use super::Check;

pub struct Alerter {
    ctx: Arc<Ctx>,
    throttle: Throttle,
}

/// Which alerts go out: the same (node, service, kind) at most every `every`; a
/// recovery only when its failure was announced (so a flapping service sends one
/// failure and one recovery per period, not one of each per flap).
pub struct Throttle {
    every: Duration,
    /// When each (node, service, kind) was last sent.
    sent: HashMap<(String, String, String), Instant>,
    /// Failures announced and not yet recovered.
    announced: HashSet<(String, String, String)>,
}

/// The failure kind a recovery ends (None: not a recovery).
fn failure_of(service: &str, kind: &str) -> Option<&'static str> {
    if kind == "healthy" {
        return Some("unhealthy");
    }
    let (bad, good) = super::kinds(service);
    (kind == good).then_some(bad)
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            sent: HashMap::new(),
            announced: HashSet::new(),
        }
    }

    /// Whether event `e` is sent at `now`.
    pub fn admit(&mut self, e: &Event, now: Instant) -> bool {
        if let Some(bad) = failure_of(&e.service, &e.kind) {
            return self
                .announced
                .remove(&(e.node.clone(), e.service.clone(), bad.to_string()));
        }
        let key = (e.node.clone(), e.service.clone(), e.kind.clone());
        if self
            .sent
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < self.every)
        {
            return false;
        }
        self.sent.insert(key.clone(), now);
        self.announced.insert(key);
        true
    }

    /// Whether check `c`, failing, is reminded at `now`: its failure was last sent at
    /// least `every` ago (a failure never sent is not reminded of).
    pub fn remind(&mut self, c: &Check, now: Instant) -> Option<&'static str> {
        let (bad, _) = super::kinds(&c.service);
        let key = (c.node.clone(), c.service.clone(), bad.to_string());
        let due = self
            .sent
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) >= self.every);
        if !due {
            return None;
        }
        self.sent.insert(key.clone(), now);
        self.announced.insert(key);
        Some(bad)
    }
}

/// The alert file's line for an event: time, node, service, kind, detail.
pub fn line(e: &Event) -> String {
    let at = chrono::DateTime::from_timestamp_millis(e.at)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let detail: String = e
        .detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{at} {} {} {} {detail}", e.node, e.service, e.kind)
}

impl Alerter {
    pub fn new(ctx: Arc<Ctx>) -> Alerter {
        let every = Duration::from_secs(ctx.cfg.monitor.alert_every_s);
        Alerter {
            ctx,
            throttle: Throttle::new(every),
        }
    }

    /// Sends the alerts of this round's `events` (the throttled ones are still in the
    /// history) and the reminders of checks still `failing`.
    pub async fn send(&mut self, events: &[Event], failing: &[Check]) {
        let now = Instant::now();
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            if self.throttle.admit(e, now) {
                out.push(e.clone());
            } else {
                tracing::debug!(node = %e.node, service = %e.service, kind = %e.kind, "monitor: alert throttled");
            }
        }
        for c in failing {
            // This round's own failures were just admitted (or throttled) above.
            let fresh = events
                .iter()
                .any(|e| e.node == c.node && e.service == c.service);
            if fresh {
                continue;
            }
            if let Some(bad) = self.throttle.remind(c, now) {
                out.push(Event {
                    id: crate::store::new_id(),
                    at: super::now_ms(),
                    node: c.node.clone(),
                    service: c.service.clone(),
                    kind: bad.to_string(),
                    detail: format!("still failing: {}", c.detail),
                });
            }
        }
        for e in &out {
            self.one(e).await;
        }
    }

    async fn one(&self, e: &Event) {
        tracing::warn!(
            target: "clusterd::alert",
            node = %e.node,
            service = %e.service,
            kind = %e.kind,
            detail = %e.detail,
            "alert"
        );
        let path = self.ctx.cfg.monitor.alert_path(&self.ctx.cfg.node.data_dir);
        let text = line(e);
        let written = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(format!("{text}\n").as_bytes())
        })();
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), error = %err, "monitor: cannot write the alert file");
        }
        if self.ctx.store.is_writable()
            && let Err(err) = self.mail(e).await
        {
            tracing::warn!(error = %err, "monitor: the alert mail was not delivered");
        }
    }

    /// Builds the alert mail and delivers it as SMTP would.
    async fn mail(&self, e: &Event) -> anyhow::Result<()> {
        use mail_builder::MessageBuilder;
        use mail_builder::headers::raw::Raw;
        let cfg = &self.ctx.cfg;
        let to = cfg.monitor.alert_recipient(&cfg.domain.name);
        let from = format!("clusterd@{}", cfg.domain.name);
        let recovered = super::is_recovery(&e.kind);
        let subject = format!(
            "[clusterd] {}: {} {} {}",
            if recovered { "RECOVERED" } else { "ALERT" },
            e.node,
            e.service,
            e.kind
        );
        let body = format!(
            "{}\r\n\r\nnode:    {}\r\nservice: {}\r\nevent:   {}\r\ntime:    {}\r\n\r\nThe status page: /status on the node's web listener.\r\n",
            e.detail,
            e.node,
            e.service,
            e.kind,
            line(e).split(' ').next().unwrap_or_default()
        );
        let msg = MessageBuilder::new()
            .from(("clusterd monitor", from.as_str()))
            .to(to.as_str())
            .subject(subject)
            .date(e.at / 1000)
            .message_id(format!("{}@{}", e.id, cfg.hostname()))
            .header("Auto-Submitted", Raw::new("auto-generated"))
            .text_body(body)
            .write_to_vec()?;
        let (local, domain) = to
            .rsplit_once('@')
            .ok_or_else(|| anyhow::anyhow!("monitor.alert_to {to:?} has no domain"))?;
        let rcpt = match crate::smtp::submit::resolve_recipient(
            &self.ctx,
            to.clone(),
            local,
            domain,
            true,
        )
        .await
        {
            crate::smtp::submit::Verdict::Accepted(r) => r,
            v => anyhow::bail!("alert recipient {to}: {v:?}"),
        };
        let (accounts, remotes) = crate::smtp::submit::split(&[rcpt]);
        crate::smtp::submit::submit(&self.ctx.store, msg, &from, &accounts, &remotes).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(service: &str, kind: &str) -> Event {
        Event {
            id: crate::store::new_id(),
            at: 0,
            node: "n1".into(),
            service: service.into(),
            kind: kind.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn a_flapping_service_sends_one_failure_and_one_recovery_per_period() {
        let mut t = Throttle::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert!(t.admit(&ev("imap", "down"), at(0)));
        assert!(t.admit(&ev("imap", "recovered"), at(5)));
        // Down again within the period: throttled, and so is its recovery.
        assert!(!t.admit(&ev("imap", "down"), at(10)));
        assert!(!t.admit(&ev("imap", "recovered"), at(15)));
        // Another service is not held back by imap's.
        assert!(t.admit(&ev("dns", "down"), at(16)));
        // After the period a new failure goes out, and its recovery.
        assert!(t.admit(&ev("imap", "down"), at(301)));
        assert!(t.admit(&ev("imap", "recovered"), at(302)));
        // The pairs of the special checks and of the node's health.
        assert!(t.admit(&ev("disk", "disk_low"), at(303)));
        assert!(!t.admit(&ev("cert", "cert_ok"), at(304)), "never announced");
        assert!(t.admit(&ev("disk", "disk_ok"), at(305)));
        assert!(t.admit(&ev("imap", "unhealthy"), at(306)));
        assert!(t.admit(&ev("imap", "healthy"), at(307)));
    }

    #[test]
    fn a_check_still_failing_is_reminded_every_period_and_then_recovers() {
        let mut t = Throttle::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let c = Check {
            node: "n1".into(),
            service: "queue".into(),
            result: super::super::Outcome::Failing,
            last_check: None,
            next_check: None,
            latency_ms: None,
            failures: 3,
            restarts: 0,
            detail: String::new(),
            reported: true,
        };
        assert_eq!(t.remind(&c, t0), None, "never announced");
        assert!(t.admit(&ev("queue", "queue_old"), t0));
        assert_eq!(t.remind(&c, t0 + Duration::from_secs(299)), None);
        assert_eq!(
            t.remind(&c, t0 + Duration::from_secs(300)),
            Some("queue_old")
        );
        assert_eq!(t.remind(&c, t0 + Duration::from_secs(400)), None);
        assert!(t.admit(&ev("queue", "queue_ok"), t0 + Duration::from_secs(401)));
    }
    #[test]
    fn an_alert_line_names_time_node_service_kind_and_detail() {
        let e = crate::store::Event {
            id: "x".into(),
            at: 1_700_000_000_000,
            node: "clusternodo1".into(),
            service: "imap".into(),
            kind: "down".into(),
            detail: "no answer\nwithin 5s".into(),
        };
        assert_eq!(
            super::line(&e),
            "2023-11-14T22:13:20Z clusternodo1 imap down no answer within 5s"
        );
    }
}
