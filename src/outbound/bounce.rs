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
    let diagnostics: Vec<Option<String>> = rcpts
        .iter()
        .map(|r| r.reply.as_deref().map(diagnostic))
        .collect();
    let recipients = rcpts
        .iter()
        .zip(&diagnostics)
        .map(|(r, diag)| dsn::Recipient {
            addr: &r.addr,
            action: if failed {
                dsn::Action::Failed
            } else {
                dsn::Action::Delayed
            },
            status: dsn::status_of(
                diag.as_deref().unwrap_or_default(),
                if failed { "5.0.0" } else { "4.0.0" },
            ),
            diagnostic: diag.as_deref(),
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

/// What a DSN's Diagnostic-Code shows for a recipient's last reply: the remote
/// server's own reply when there is one ("RCPT TO: 550 5.1.1 no such user (host
/// mx.example.net[192.0.2.1])" → "550 5.1.1 no such user"; the host is the DSN's
/// Remote-MTA), else our text as it is.
fn diagnostic(text: &str) -> String {
    let mut start = None;
    let mut pos = 0;
    for w in text.split(' ') {
        if w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()) && matches!(&w[..1], "4" | "5") {
            start = Some(pos);
            break;
        }
        pos += w.len() + 1;
    }
    let Some(start) = start else {
        return text.to_string();
    };
    let reply = &text[start..];
    let reply = match reply.rfind(" (host ") {
        Some(i) if reply.ends_with(')') => &reply[..i],
        _ => reply,
    };
    reply.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn diagnostic_is_the_remote_reply() {
        assert_eq!(
            super::diagnostic("RCPT TO: 550 5.1.1 no such user (host mx.example.net[192.0.2.1])"),
            "550 5.1.1 no such user"
        );
        assert_eq!(
            super::diagnostic("5.1.2 domain x does not exist"),
            "5.1.2 domain x does not exist"
        );
        assert_eq!(
            super::diagnostic("connect failed: refused (host a[1.2.3.4])"),
            "connect failed: refused (host a[1.2.3.4])"
        );
        // The status comes from the reply once the prefix is gone.
        let d = super::diagnostic("RCPT TO: 550 5.1.1 no such user (host m[192.0.2.1])");
        assert_eq!(crate::mail::dsn::status_of(&d, "5.0.0"), "5.1.1");
        let d = super::diagnostic("5.4.7 gave up after 2 hours in the queue; last error: x");
        assert_eq!(crate::mail::dsn::status_of(&d, "5.0.0"), "5.4.7");
    }
}
