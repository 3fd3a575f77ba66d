//! Applying ops to the tables, and the read queries shared by the API. `apply` is the
//! only code that mutates tables; it is deterministic given the op.

use rusqlite::{Connection, params};

use super::op::{LoggedOp, Op};
use super::{Change, Result, StoreError};

pub fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::AccountCreate { .. } | Op::AccountPassword { .. } | Op::AccountDelete { .. } => {
            super::accounts::apply(conn, op)?
        }
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
        Op::AccountCreate { .. } | Op::AccountPassword { .. } | Op::AccountDelete { .. } => {
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

pub fn ops_since(conn: &Connection, after: u64, limit: usize) -> Result<Vec<LoggedOp>> {
    let mut st = conn.prepare(
        "SELECT seq, origin, origin_seq, hlc, op FROM oplog WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![after as i64, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, origin, origin_seq, hlc, op) = row?;
        out.push(LoggedOp {
            seq: seq as u64,
            origin,
            origin_seq: origin_seq as u64,
            hlc: hlc as u64,
            op: serde_json::from_str(&op).map_err(|e| StoreError::Other(e.to_string()))?,
        });
    }
    Ok(out)
}

/// See [`super::Store::digest`].
pub fn digest(conn: &Connection) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT IN ('oplog', 'meta', 'marks') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    tables.sort();
    let mut h = Sha256::new();
    for t in tables {
        let mut st = conn.prepare(&format!("SELECT * FROM \"{t}\""))?;
        let n = st.column_count();
        let mut rows: Vec<String> = st
            .query_map([], |r| {
                let mut row = String::new();
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    row.push_str(&format!("{v:?}\u{1f}"));
                }
                Ok(row)
            })?
            .collect::<std::result::Result<_, _>>()?;
        rows.sort();
        h.update(format!("table {t} {}\n", rows.len()));
        for row in rows {
            h.update(row.as_bytes());
            h.update(b"\n");
        }
    }
    Ok(hex::encode(h.finalize()))
}
