//! The outbound queue: the `queue` table (messages for remote recipients, with their
//! delivery attempts) and the `QueueAdd`, `QueueUpdate` and `QueueRemove` ops. The
//! SMTP relay reads it and records each attempt; the body is a blob like a message's.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::op::Op;
use super::types::BlobId;
use super::{Result, Store, new_id, now};

/// An entry of the persistent outbound queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub blob: BlobId,
    pub size: u64,
    pub created: i64,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

/// Applies a queue op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
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
        _ => {}
    }
    Ok(())
}

/// The queue, oldest first.
pub(super) fn all(conn: &Connection) -> Result<Vec<QueueEntry>> {
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

/// Whether the queue holds entry `id`.
pub(super) fn has(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.query_row(
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
        let (blob, size) = self.put_blob(raw).await?;
        let entry = QueueEntry {
            id: new_id(),
            sender: sender.to_string(),
            recipients: recipients.to_vec(),
            blob,
            size,
            created: now(),
            attempts: 0,
            next_attempt: now(),
            last_error: None,
        };
        let op = self.commit(move |_| Ok(Op::QueueAdd { entry })).await?;
        let Op::QueueAdd { entry } = op else {
            unreachable!()
        };
        Ok(entry)
    }

    pub async fn queue(&self) -> Result<Vec<QueueEntry>> {
        self.read(all).await
    }

    pub async fn queue_update(
        &self,
        id: &str,
        attempts: u32,
        next_attempt: i64,
        last_error: Option<String>,
    ) -> Result<()> {
        let id = id.to_string();
        self.commit(move |_| {
            Ok(Op::QueueUpdate {
                id,
                attempts,
                next_attempt,
                last_error,
            })
        })
        .await
        .map(|_| ())
    }

    pub async fn queue_remove(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.commit(move |_| Ok(Op::QueueRemove { id }))
            .await
            .map(|_| ())
    }
}
