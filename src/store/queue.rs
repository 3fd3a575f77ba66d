//! The outbound queue: the `queue` table (messages for remote recipients, with their
//! delivery attempts) and the `QueueAdd`, `QueueUpdate` and `QueueRemove` ops. The
//! SMTP relay reads it and records each attempt; the body is a blob like a message's.

use crate::store::schema::Cached;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::op::Op;
use super::types::BlobId;
use super::{Result, Store, new_id, now};

/// Where one recipient of a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcptState {
    /// Not delivered yet (never tried, or deferred).
    Pending,
    /// The remote server accepted it.
    Delivered,
    /// Given up: a permanent reply, an unroutable domain, the lifetime ran out, or
    /// the administrator bounced it. A DSN is (or was) due to the sender.
    Failed,
}

impl RcptState {
    /// Whether nothing more will be tried for the recipient.
    pub fn is_final(self) -> bool {
        self != RcptState::Pending
    }
}

/// One recipient of a queued message and the last word about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueRcpt {
    pub addr: String,
    pub state: RcptState,
    /// The last reply or error for this recipient ("451 4.7.1 try later",
    /// "connection refused by 192.0.2.1"), when an attempt was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The host that gave `reply`, when it came from a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

impl QueueRcpt {
    pub fn pending(addr: &str) -> QueueRcpt {
        QueueRcpt {
            addr: addr.to_string(),
            state: RcptState::Pending,
            reply: None,
            remote: None,
        }
    }
}

/// Ops written before per-recipient state held bare addresses: both forms load.
impl<'de> Deserialize<'de> for QueueRcpt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            addr: String,
            state: RcptState,
            #[serde(default)]
            reply: Option<String>,
            #[serde(default)]
            remote: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bare(String),
            Full(Full),
        }
        Ok(match Either::deserialize(d)? {
            Either::Bare(addr) => QueueRcpt::pending(&addr),
            Either::Full(f) => QueueRcpt {
                addr: f.addr,
                state: f.state,
                reply: f.reply,
                remote: f.remote,
            },
        })
    }
}

/// An entry of the persistent outbound queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    /// The envelope sender; empty for the null reverse-path `<>` (a DSN).
    pub sender: String,
    pub recipients: Vec<QueueRcpt>,
    pub blob: BlobId,
    pub size: u64,
    pub created: i64,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_error: Option<String>,
    /// The delay warning went to the sender.
    #[serde(default)]
    pub warned: bool,
    /// This message is a delivery status notification of ours: when it cannot be
    /// delivered, the postmaster is told once instead.
    #[serde(default)]
    pub dsn: bool,
}

impl QueueEntry {
    /// The recipients not delivered and not given up.
    pub fn pending(&self) -> impl Iterator<Item = &QueueRcpt> {
        self.recipients.iter().filter(|r| !r.state.is_final())
    }
}

/// Applies a queue op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::QueueAdd { entry } => {
            conn.exec(
                "INSERT INTO queue (id, sender, recipients, blob, size, created, attempts, next_attempt, last_error, warned, dsn)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    entry.id,
                    entry.sender,
                    serde_json::to_string(&entry.recipients).unwrap_or_default(),
                    entry.blob,
                    entry.size as i64,
                    entry.created,
                    entry.attempts,
                    entry.next_attempt,
                    entry.last_error,
                    entry.warned,
                    entry.dsn,
                ],
            )?;
        }
        Op::QueueUpdate {
            id,
            attempts,
            next_attempt,
            last_error,
            recipients,
            warned,
        } => {
            let Some(mut current) = get(conn, id)? else {
                return Ok(());
            };
            // A recipient once delivered or failed stays so: an older update (a merge
            // after a split brain) never makes it pending and sendable again.
            if let Some(new) = recipients {
                for r in &mut current.recipients {
                    if r.state.is_final() {
                        continue;
                    }
                    if let Some(n) = new.iter().find(|n| n.addr == r.addr) {
                        *r = n.clone();
                    }
                }
            }
            conn.exec(
                "UPDATE queue SET attempts = ?2, next_attempt = ?3, last_error = ?4, recipients = ?5,
                 warned = ?6 WHERE id = ?1",
                params![
                    id,
                    attempts,
                    next_attempt,
                    last_error,
                    serde_json::to_string(&current.recipients).unwrap_or_default(),
                    current.warned || warned.unwrap_or(false),
                ],
            )?;
        }
        Op::QueueRemove { id } => {
            conn.exec("DELETE FROM queue WHERE id = ?1", [id])?;
        }
        _ => {}
    }
    Ok(())
}

const COLUMNS: &str =
    "id, sender, recipients, blob, size, created, attempts, next_attempt, last_error, warned, dsn";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueEntry> {
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
        warned: r.get(9)?,
        dsn: r.get(10)?,
    })
}

/// One entry.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<QueueEntry>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .row(
            &format!("SELECT {COLUMNS} FROM queue WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// The queue, oldest first.
pub(super) fn all(conn: &Connection) -> Result<Vec<QueueEntry>> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM queue ORDER BY created, id"))?;
    let rows = st.query_map([], row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The ids of the entries due at `now`: next attempt reached, created before
/// `expire_before` (their lifetime is over), or not yet warned and created before
/// `warn_before`. Oldest attempt first. Reads no recipient lists, so a scan of a
/// long queue stays cheap.
pub(super) fn due(
    conn: &Connection,
    now: i64,
    expire_before: i64,
    warn_before: Option<i64>,
) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT id FROM queue
         WHERE next_attempt <= ?1 OR created <= ?2 OR (warned = 0 AND created <= ?3)
         ORDER BY next_attempt, created, id",
    )?;
    let rows = st.query_map(
        params![now, expire_before, warn_before.unwrap_or(i64::MIN)],
        |r| r.get(0),
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Whether the queue holds entry `id`.
pub(super) fn has(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.row(
        "SELECT EXISTS (SELECT 1 FROM queue WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )?)
}

impl Store {
    /// Puts a message into the persistent outbound queue; durable on return.
    pub async fn enqueue(
        &self,
        sender: &str,
        recipients: &[String],
        raw: Vec<u8>,
    ) -> Result<QueueEntry> {
        self.enqueue_as(sender, recipients, raw, false).await
    }

    /// [`Store::enqueue`], saying whether the message is a DSN of ours.
    pub async fn enqueue_as(
        &self,
        sender: &str,
        recipients: &[String],
        raw: Vec<u8>,
        dsn: bool,
    ) -> Result<QueueEntry> {
        let (blob, size) = self.put_blob(raw).await?;
        self.enqueue_blob(sender, recipients, blob, size, dsn).await
    }

    /// [`Store::enqueue_as`] of a body already stored (the file local recipients of the
    /// same message got too).
    pub async fn enqueue_blob(
        &self,
        sender: &str,
        recipients: &[String],
        blob: BlobId,
        size: u64,
        dsn: bool,
    ) -> Result<QueueEntry> {
        // Our own bounces (DSNs) are still queued: refusing them loses the notice.
        if !dsn {
            self.check_space()?;
        }
        let entry = QueueEntry {
            id: new_id(),
            sender: sender.to_string(),
            recipients: recipients.iter().map(|r| QueueRcpt::pending(r)).collect(),
            blob,
            size,
            created: now(),
            attempts: 0,
            next_attempt: now(),
            last_error: None,
            warned: false,
            dsn,
        };
        let op = self.commit(move |_| Ok(Op::QueueAdd { entry })).await?;
        let Op::QueueAdd { entry } = op else {
            unreachable!()
        };
        Ok(entry)
    }

    /// The queue, oldest first.
    pub async fn queue(&self) -> Result<Vec<QueueEntry>> {
        self.read(all).await
    }

    /// The ids of the entries due now (see [`due`]).
    pub async fn queue_due(
        &self,
        now: i64,
        expire_before: i64,
        warn_before: Option<i64>,
    ) -> Result<Vec<String>> {
        self.read(move |c| due(c, now, expire_before, warn_before))
            .await
    }

    /// One queue entry.
    pub async fn queue_entry(&self, id: &str) -> Result<Option<QueueEntry>> {
        let id = id.to_string();
        self.read(move |c| get(c, &id)).await
    }

    /// Records an attempt's outcome: the entry's counters, next attempt, last error,
    /// its recipients' states (a recipient already delivered or failed in the store
    /// stays so) and whether the delay warning went out. Durable on return.
    pub async fn queue_update(&self, entry: &QueueEntry) -> Result<()> {
        let e = entry.clone();
        self.commit(move |_| {
            Ok(Op::QueueUpdate {
                id: e.id,
                attempts: e.attempts,
                next_attempt: e.next_attempt,
                last_error: e.last_error,
                recipients: Some(e.recipients),
                warned: Some(e.warned),
            })
        })
        .await
        .map(|_| ())
    }

    /// Removes an entry (delivered, bounced, or deleted by the administrator).
    pub async fn queue_remove(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.commit(move |_| Ok(Op::QueueRemove { id }))
            .await
            .map(|_| ())
    }
}
