//! Telling senders: RFC 3464 delivery status notifications for recipients given up
//! (`Failed`) and for mail still queued after `delay_warning_h` (`Delayed`), built by
//! `mail::dsn` and delivered to the envelope sender — into the account's INBOX when
//! the sender is local, else through the queue with the null sender `<>`.
//!
//! Loops cannot start: mail from `<>` never gets a DSN; when a DSN of ours cannot be
//! delivered, the postmaster is told once, locally (never through the queue).

use crate::ctx::Ctx;
use crate::mail::dsn;
use crate::store::{QueueEntry, QueueRcpt};

/// What the DSN reports.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Failed,
    /// Still trying, until this time.
    Delayed(i64),
}

/// Sends the DSN about `rcpts` of `e` (whose message is `original`) to its sender.
pub async fn notify(ctx: &Ctx, e: &QueueEntry, rcpts: &[QueueRcpt], original: &[u8], kind: Kind) {
    let domain = &ctx.cfg.domain.name;
    let (to, account) = if e.sender.is_empty() {
        // A message from <> is a notification itself: only our own DSNs that failed
        // are worth a word, to the postmaster.
        if !e.dsn || !matches!(kind, Kind::Failed) {
            return;
        }
        let pm = format!("postmaster@{domain}");
        let account = ctx.cfg.domain.resolve_local_part("postmaster");
        (pm, Some(account))
    } else {
        let (local, sdomain) = e.sender.rsplit_once('@').unwrap_or((&e.sender, ""));
        let account = ctx
            .cfg
            .domain
            .is_local(sdomain)
            .then(|| ctx.cfg.domain.resolve_local_part(local));
        (e.sender.clone(), account)
    };
    let failed = matches!(kind, Kind::Failed);
    let recipients = rcpts
        .iter()
        .map(|r| dsn::Recipient {
            addr: &r.addr,
            action: if failed {
                dsn::Action::Failed
            } else {
                dsn::Action::Delayed
            },
            status: status_in(r.reply.as_deref().unwrap_or_default(), failed),
            diagnostic: r.reply.as_deref(),
            remote_mta: r.remote.as_deref(),
        })
        .collect();
    let host = ctx.cfg.hostname();
    let from = format!("MAILER-DAEMON@{domain}");
    let report = dsn::Report {
        reporting_mta: &host,
        from: &from,
        to: &to,
        queue_id: &e.id,
        arrival: e.created,
        now: crate::store::now(),
        recipients,
        original,
        will_retry_until: match kind {
            Kind::Delayed(until) => Some(until),
            Kind::Failed => None,
        },
    };
    let msg = dsn::build(&report);
    let store = &ctx.store;
    let res = match account {
        Some(account) => match store.account(&account).await {
            Ok(Some(a)) => store.deliver(msg, &[a.name]).await,
            Ok(None) => {
                tracing::warn!(id = %e.id, %to, "outbound: the DSN's local recipient does not exist; dropped");
                return;
            }
            Err(err) => Err(err),
        },
        None => {
            let r = store
                .enqueue_as("", std::slice::from_ref(&to), msg, true)
                .await
                .map(|_| ());
            ctx.queue_kick.notify_one();
            r
        }
    };
    match res {
        Ok(()) => tracing::info!(id = %e.id, %to, ?kind, "outbound: DSN sent"),
        Err(err) => {
            tracing::warn!(id = %e.id, %to, error = %err, "outbound: the DSN could not be stored")
        }
    }
}

/// The RFC 3463 status a recipient's last reply gives: the enhanced code after a
/// reply code ("550 5.1.1 ..."), an enhanced code alone ("5.1.2 domain ..."), the
/// class of a bare reply code ("550 ..." → 5.0.0), else 5.0.0 or 4.0.0.
pub fn status_in(text: &str, permanent: bool) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let enhanced = |w: &str| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let code = |w: &str| {
        w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()) && matches!(&w[..1], "2" | "4" | "5")
    };
    for (i, w) in words.iter().enumerate() {
        if code(w) {
            if let Some(n) = words.get(i + 1).filter(|n| enhanced(n)) {
                return n.to_string();
            }
            return format!("{}.0.0", &w[..1]);
        }
        if enhanced(w) {
            return w.to_string();
        }
    }
    if permanent { "5.0.0" } else { "4.0.0" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::status_in;

    #[test]
    fn status_from_replies() {
        assert_eq!(
            status_in("RCPT TO: 550 5.1.1 no such user (host mx[1.2.3.4])", true),
            "5.1.1"
        );
        assert_eq!(status_in("RCPT TO: 451 try later", false), "4.0.0");
        assert_eq!(status_in("5.1.2 domain x does not exist", true), "5.1.2");
        assert_eq!(status_in("connect failed: refused", false), "4.0.0");
        assert_eq!(status_in("gave up", true), "5.0.0");
        assert_eq!(
            status_in(
                "4.4.7 gave up after 5 hours; last error: 451 4.7.1 later",
                true
            ),
            "4.4.7"
        );
    }
}
