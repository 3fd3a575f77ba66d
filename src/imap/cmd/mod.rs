//! The IMAP command handlers, one file per family, each an `impl Session` block that
//! `Session::dispatch` (in `session`) routes to once the command's state is checked:
//!
//! - `any`: CAPABILITY, NOOP, LOGOUT, ID, ENABLE
//! - `compress`: COMPRESS (RFC 4978)
//! - `condstore`: SELECT/EXAMINE parameters and VANISHED (EARLIER) of CONDSTORE and
//!   QRESYNC (RFC 7162)
//! - `auth`: STARTTLS, LOGIN, AUTHENTICATE (and the credential check with its delays)
//! - `mailbox`: SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
//!   LIST, LSUB, STATUS, NAMESPACE
//! - `message`: CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, SEARCH, FETCH, STORE,
//!   COPY, MOVE (each also in its UID form)
//! - `append`: APPEND
//! - `idle`: IDLE
//! - `quota`: GETQUOTAROOT, GETQUOTA, SETQUOTA (RFC 9208)
//!
//! This file holds what they share: how a handler finishes (`Done`, `Fail`) and the
//! decoding of mailbox-name arguments.

mod any;
mod append;
mod auth;
mod compress;
mod condstore;
mod idle;
mod mailbox;
mod message;
mod quota;

use imap_codec::imap_types::mailbox::Mailbox;

use super::utf7;
use crate::store::StoreError;

/// How a command handler finished.
pub(super) enum Done {
    /// Tagged OK with this text (the caller sends pending updates first).
    Ok(String),
    /// The handler wrote its own tagged response.
    Handled,
    /// Tagged response written; close the connection.
    Close,
}

/// A failed command: tagged NO or BAD with this text (which may start with a code).
pub(super) enum Fail {
    No(String),
    Bad(String),
    /// The connection is unusable.
    Io,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            StoreError::NoSuchMailbox(m) => Fail::No(format!("[NONEXISTENT] No such mailbox: {m}")),
            StoreError::MailboxExists(m) => {
                Fail::No(format!("[ALREADYEXISTS] Mailbox already exists: {m}"))
            }
            StoreError::InvalidName(m) => Fail::No(format!("[CANNOT] Invalid name: {m}")),
            StoreError::NotAllowed(m) => Fail::No(format!("[CANNOT] {m}")),
            StoreError::OverQuota(_) => {
                Fail::No("[OVERQUOTA] The mailbox storage quota would be exceeded".into())
            }
            StoreError::ReadOnly => {
                Fail::No("[UNAVAILABLE] This node is not active; try again later".into())
            }
            StoreError::NoSuchAccount(_) => {
                Fail::No("[AUTHORIZATIONFAILED] No such account".into())
            }
            // Free space below `store.min_free_mb` (or a write that found the disk
            // full): RFC 5530's LIMIT, a limit of the server, not OVERQUOTA, which
            // says the user's own quota is used up (deleting mail would not help).
            e if e.is_no_space() => {
                Fail::No("[LIMIT] Insufficient system storage; try again later".into())
            }
            other => {
                tracing::error!(error = %other, "imap: store failure");
                Fail::No("[SERVERBUG] Internal error; try again later".into())
            }
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(_: std::io::Error) -> Fail {
        Fail::Io
    }
}

pub(super) type CmdResult = Result<Done, Fail>;

fn ok(text: &str) -> CmdResult {
    Ok(Done::Ok(text.to_string()))
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// The store's (UTF-8) name for a mailbox named on the wire in modified UTF-7.
fn mailbox_name(mailbox: &Mailbox<'_>) -> Result<String, Fail> {
    crate::store::normalize_mailbox_name(&wire_name(mailbox)?).map_err(Fail::from)
}

/// A mailbox argument decoded from modified UTF-7, not yet checked as a name. One
/// that does not decode names no mailbox: NO, as for any name that cannot exist (the
/// command itself parsed, so it is not BAD).
fn wire_name(mailbox: &Mailbox<'_>) -> Result<String, Fail> {
    let raw = match mailbox {
        Mailbox::Inbox => return Ok("INBOX".into()),
        Mailbox::Other(o) => o.inner().as_ref(),
    };
    utf7::from_wire(raw).ok_or_else(|| {
        Fail::No("[CANNOT] Invalid mailbox name: not modified UTF-7 (RFC 3501 5.1.3)".into())
    })
}
