//! Applying an op: [`apply`] hands each op kind to the slice that owns its tables (the
//! slices' `apply` functions are the only code that mutates tables; applying is
//! deterministic given the op), and [`changes_of`] names the notifications it causes.

use rusqlite::Connection;

use super::op::Op;
use super::{Change, Result};

/// Applies one op (a batch op by op) to the tables.
pub fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::AccountCreate { .. }
        | Op::AccountPassword { .. }
        | Op::AccountDelete { .. }
        | Op::AccountQuota { .. } => super::accounts::apply(conn, op)?,
        Op::MailboxCreate { .. }
        | Op::MailboxRename { .. }
        | Op::MailboxDelete { .. }
        | Op::Subscribe { .. }
        | Op::UidValidity { .. } => super::mailboxes::apply(conn, op)?,
        Op::Append { .. } | Op::Flags { .. } | Op::Expunge { .. } => {
            super::messages::apply(conn, op)?
        }
        Op::QueueAdd { .. } | Op::QueueUpdate { .. } | Op::QueueRemove { .. } => {
            super::queue::apply(conn, op)?
        }
        Op::SettingSet { .. } => super::settings::apply(conn, op)?,
        Op::ContentPut { .. } | Op::ContentDelete { .. } => super::content::apply(conn, op)?,
        Op::ContactPut { .. } | Op::ContactDelete { .. } => super::contacts::apply(conn, op)?,
        Op::Events { .. } => super::events::apply(conn, op)?,
        Op::Batch { ops } => {
            for op in ops {
                apply(conn, op)?;
            }
        }
    }
    Ok(())
}

/// The notifications a committed op produces.
pub fn changes_of(op: &Op) -> Vec<Change> {
    match op {
        Op::AccountCreate { .. }
        | Op::AccountPassword { .. }
        | Op::AccountDelete { .. }
        | Op::AccountQuota { .. } => {
            vec![Change::Accounts]
        }
        Op::MailboxCreate { mailbox } => vec![Change::Mailboxes {
            account: mailbox.account.clone(),
        }],
        Op::MailboxRename { account, .. } | Op::Subscribe { account, .. } => {
            vec![Change::Mailboxes {
                account: account.clone(),
            }]
        }
        Op::MailboxDelete { id } => vec![Change::Expunged {
            mailbox: id.clone(),
            uids: Vec::new(),
        }],
        Op::Append { messages } => {
            let mut out: Vec<Change> = Vec::new();
            for m in messages {
                match out
                    .iter_mut()
                    .find(|c| c.mailbox() == Some(m.mailbox.as_str()))
                {
                    Some(Change::Appended { uids, .. }) => uids.push(m.uid),
                    _ => out.push(Change::Appended {
                        mailbox: m.mailbox.clone(),
                        uids: vec![m.uid],
                    }),
                }
            }
            out
        }
        Op::Flags { mailbox, updates } if !updates.is_empty() => vec![Change::Flags {
            mailbox: mailbox.clone(),
            uids: updates.iter().map(|u| u.uid).collect(),
        }],
        Op::Expunge { mailbox, uids, .. } if !uids.is_empty() => vec![Change::Expunged {
            mailbox: mailbox.clone(),
            uids: uids.clone(),
        }],
        Op::QueueAdd { .. } | Op::QueueUpdate { .. } | Op::QueueRemove { .. } => {
            vec![Change::Queue]
        }
        Op::ContentPut { path, .. } | Op::ContentDelete { path } => {
            vec![Change::Content { path: path.clone() }]
        }
        // Sessions that have it selected re-read it and see the new UIDVALIDITY.
        Op::UidValidity { mailbox, .. } => vec![Change::Expunged {
            mailbox: mailbox.clone(),
            uids: Vec::new(),
        }],
        Op::Batch { ops } => ops.iter().flat_map(changes_of).collect(),
        _ => Vec::new(),
    }
}

// ------------------------------------------------------------------ queries
