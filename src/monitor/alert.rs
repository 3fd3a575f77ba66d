//! Alerts: every event goes to the journal (a structured `tracing` event), one line
//! to the alert file (`[monitor] alert_file`), and, on a node whose store is open for
//! writes, a mail to `alert_recipient` delivered through the node's own delivery path
//! (`smtp::submit`, so it replicates and the webmail shows it). The same alert (node,
//! service, kind) is sent again at most every `alert_every_s`; a check that stays
//! failing is reminded of that often; its recovery is always sent.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::store::Event;

use super::Check;

pub struct Alerter {
    ctx: Arc<Ctx>,
    /// When each (node, service, kind) was last sent.
    sent: HashMap<(String, String, String), Instant>,
    every: Duration,
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
            sent: HashMap::new(),
            every,
        }
    }

    /// Sends the alerts of this round's `events` (the throttled ones are still in the
    /// history) and the reminders of checks still `failing`.
    pub async fn send(&mut self, events: &[Event], failing: &[Check]) {
        let mut out: Vec<Event> = Vec::new();
        for e in events.iter() {
            let key = (e.node.clone(), e.service.clone(), e.kind.clone());
            if self
                .sent
                .get(&key)
                .is_some_and(|t| t.elapsed() < self.every)
            {
                tracing::debug!(node = %e.node, service = %e.service, kind = %e.kind, "monitor: alert throttled");
                continue;
            }
            // A recovery clears the throttle of its failure.
            let (bad, good) = super::kinds(&e.service);
            if e.kind == good {
                self.sent
                    .remove(&(e.node.clone(), e.service.clone(), bad.to_string()));
            }
            self.sent.insert(key, Instant::now());
            out.push(e.clone());
        }
        for c in failing {
            let (bad, _) = super::kinds(&c.service);
            let key = (c.node.clone(), c.service.clone(), bad.to_string());
            if self
                .sent
                .get(&key)
                .is_some_and(|t| t.elapsed() >= self.every)
            {
                self.sent.insert(key, Instant::now());
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
