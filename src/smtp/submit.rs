//! The delivery path shared by every way mail enters the system (SMTP sessions on 25,
//! 587 and 465, and the webmail's compose page): recipient resolution and the durable
//! commit.
//!
//! Invariants
//! - A recipient in a local domain resolves, after aliases, to an existing account or
//!   is refused ("no such user"); other domains are accepted only when the caller may
//!   relay (a trusted network or an authenticated sender), and then go to the outbound
//!   queue.
//! - [`submit`] returns `Ok` only after every part is durable: the body file once, one
//!   `Store::deliver_blob` for all local accounts and one `Store::enqueue_blob` for all
//!   remote recipients, naming the same file. On `Err` nothing may be acknowledged to
//!   the sender (a retry can duplicate, never lose). SMTP DATA writes the body file as
//!   it arrives and calls [`submit_stored`].

use super::engine::Rcpt as EngineRcpt;
use crate::ctx::Ctx;
use crate::store::{Store, StoreError, StoredBlob};

/// An accepted recipient: a local account or a remote address for the queue.
pub type Rcpt = EngineRcpt;

/// What the relay policy says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted(Rcpt),
    /// Local domain, but no such account after aliases.
    UnknownUser,
    /// Remote domain and the caller may not relay.
    RelayDenied,
    /// The store could not answer now.
    TempFail,
}

/// Resolves one recipient address `addr` (split into `local` and `domain`) under the
/// relay policy. `may_relay`: whether a remote domain is allowed for this caller.
pub async fn resolve_recipient(
    ctx: &Ctx,
    addr: String,
    local: &str,
    domain: &str,
    may_relay: bool,
) -> Verdict {
    let cfg = &ctx.cfg;
    if cfg.domain.is_local(domain) {
        let account = cfg.domain.resolve_local_part(local);
        return match ctx.store.account(&account).await {
            Ok(Some(a)) => Verdict::Accepted(Rcpt::Local {
                addr,
                account: a.name,
            }),
            Ok(None) => Verdict::UnknownUser,
            Err(e) => {
                tracing::warn!(error = %e, "recipient look-up: store failure");
                Verdict::TempFail
            }
        };
    }
    if may_relay {
        Verdict::Accepted(Rcpt::Remote(addr))
    } else {
        Verdict::RelayDenied
    }
}

/// Splits accepted recipients into local accounts and remote addresses.
pub fn split(rcpts: &[Rcpt]) -> (Vec<String>, Vec<String>) {
    let mut accounts = Vec::new();
    let mut remotes = Vec::new();
    for r in rcpts {
        match r {
            Rcpt::Local { account, .. } => accounts.push(account.clone()),
            Rcpt::Remote(a) => remotes.push(a.clone()),
        }
    }
    (accounts, remotes)
}

/// Makes the message durable for all recipients: its body file once, then
/// [`submit_stored`]. `Ok` only when every part committed.
pub async fn submit(
    store: &Store,
    msg: Vec<u8>,
    sender: &str,
    accounts: &[String],
    remotes: &[String],
) -> crate::store::Result<()> {
    if accounts.is_empty() && remotes.is_empty() {
        return Err(StoreError::NoRecipients);
    }
    let body = store.put_body(msg).await?;
    submit_stored(store, &body, sender, accounts, remotes).await
}

/// Commits a message whose body file is already durable (`body`): one `deliver` for
/// the local accounts and one `enqueue` (with envelope `sender`) for the remote ones,
/// concurrently, both naming the same file. `Ok` only when every part committed.
pub async fn submit_stored(
    store: &Store,
    body: &StoredBlob,
    sender: &str,
    accounts: &[String],
    remotes: &[String],
) -> crate::store::Result<()> {
    let enqueue = || store.enqueue_blob(sender, remotes, body.blob.clone(), body.size, false);
    match (accounts.is_empty(), remotes.is_empty()) {
        (false, true) => store.deliver_blob(body, accounts).await,
        (true, false) => enqueue().await.map(|_| ()),
        (false, false) => {
            let (a, b) = tokio::join!(store.deliver_blob(body, accounts), enqueue());
            a.and(b.map(|_| ()))
        }
        (true, true) => Err(StoreError::NoRecipients),
    }
}
