//! Applying ops to the tables, and the read queries shared by the API. `apply` is the
//! only code that mutates tables; it is deterministic given the op.

use rusqlite::{Connection, OptionalExtension, params};

use super::op::{LoggedOp, Op};
use super::{Change, ContentEntry, QueueEntry, Result, StoreError};

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
        Op::QueueAdd { entry } => {
            conn.execute(
                "INSERT INTO queue (id, sender, recipients, blob, size, created, attempts, next_attempt, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    entry.id,
                    entry.sender,
                    serde_json::to_string(&entry.recipients).unwrap_or_default(),
                    entry.blob,
                    entry.size as i64,
                    entry.created,
                    entry.attempts,
                    entry.next_attempt,
                    entry.last_error
                ],
            )?;
        }
        Op::QueueUpdate {
            id,
            attempts,
            next_attempt,
            last_error,
        } => {
            conn.execute(
                "UPDATE queue SET attempts = ?2, next_attempt = ?3, last_error = ?4 WHERE id = ?1",
                params![id, attempts, next_attempt, last_error],
            )?;
        }
        Op::QueueRemove { id } => {
            conn.execute("DELETE FROM queue WHERE id = ?1", [id])?;
        }
        Op::SettingSet { key, value } => {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
        Op::ContentPut {
            path,
            blob,
            size,
            mtime,
            ..
        } => {
            conn.execute(
                "INSERT INTO content (path, blob, size, mtime) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET blob = excluded.blob, size = excluded.size,
                 mtime = excluded.mtime",
                params![path, blob, *size as i64, mtime],
            )?;
        }
        Op::ContentDelete { path } => {
            conn.execute("DELETE FROM content WHERE path = ?1", [path])?;
        }
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

pub fn queue(conn: &Connection) -> Result<Vec<QueueEntry>> {
    let mut st = conn.prepare(
        "SELECT id, sender, recipients, blob, size, created, attempts, next_attempt, last_error
         FROM queue ORDER BY created, id",
    )?;
    let rows = st.query_map([], |r| {
        let rcpts: String = r.get(2)?;
        Ok(QueueEntry {
            id: r.get(0)?,
            sender: r.get(1)?,
            recipients: serde_json::from_str(&rcpts).unwrap_or_default(),
            blob: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            created: r.get(5)?,
            attempts: r.get(6)?,
            next_attempt: r.get(7)?,
            last_error: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The blob a content path holds now.
pub fn content_blob(conn: &Connection, path: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT blob FROM content WHERE path = ?1", [path], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn content(conn: &Connection, prefix: &str) -> Result<Vec<ContentEntry>> {
    let mut st = conn.prepare(
        "SELECT path, blob, size, mtime FROM content WHERE substr(path, 1, ?1) = ?2 ORDER BY path",
    )?;
    let rows = st.query_map(params![prefix.len() as i64, prefix], |r| {
        Ok(ContentEntry {
            path: r.get(0)?,
            blob: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            mtime: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

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
