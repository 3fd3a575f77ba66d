//! The monitor's history: events such as "imap down on clusternodo1" or "peer lost",
//! kept in the `events` table and written by the `Events` op, so the history replicates
//! and both nodes show the same past. Only the newest [`KEEP_EVENTS`] are kept: each
//! apply trims the rest (deterministic: by time, then id). The store gives no meaning
//! to `kind` and `service`; `crate::monitor` names them.
//!
//! Also the counts the monitor's `/metrics` reads ([`Store::counts`]).

use crate::store::schema::Cached;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::op::Op;
use super::{Result, Store};

/// The history keeps this many events.
pub const KEEP_EVENTS: usize = 1000;

/// One event of the monitor's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Random, unique: a merge or a replayed op never adds the same event twice.
    pub id: String,
    /// Unix milliseconds.
    pub at: i64,
    /// The node the event is about.
    pub node: String,
    /// The service (`imap`, `dns`, `disk`, `peer`...).
    pub service: String,
    /// What happened (`down`, `restarted`, `recovered`, `peer_lost`...).
    pub kind: String,
    /// In words.
    pub detail: String,
}

/// Which events to read: all filters optional, newest first, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub node: Option<String>,
    pub service: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to: Option<i64>,
    pub limit: usize,
}

/// Applies an `Events` op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    if let Op::Events { events } = op {
        for e in events {
            conn.exec(
                "INSERT OR IGNORE INTO events (id, at, node, service, kind, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.id, e.at, e.node, e.service, e.kind, e.detail],
            )?;
        }
        conn.exec(
            "DELETE FROM events WHERE id NOT IN
                 (SELECT id FROM events ORDER BY at DESC, id DESC LIMIT ?1)",
            [KEEP_EVENTS as i64],
        )?;
    }
    Ok(())
}

/// Whether the table holds the event `id` (the merge replays only missing ones).
pub(super) fn has(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.row(
        "SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )?)
}

fn query(conn: &Connection, f: &EventFilter) -> Result<Vec<Event>> {
    let mut st = conn.prepare(
        "SELECT id, at, node, service, kind, detail FROM events
         WHERE (?1 IS NULL OR node = ?1) AND (?2 IS NULL OR service = ?2)
           AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
         ORDER BY at DESC, id DESC LIMIT ?5",
    )?;
    let rows = st.query_map(
        params![f.node, f.service, f.from, f.to, f.limit.max(1) as i64],
        |r| {
            Ok(Event {
                id: r.get(0)?,
                at: r.get(1)?,
                node: r.get(2)?,
                service: r.get(3)?,
                kind: r.get(4)?,
                detail: r.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// What `/metrics` counts in the store.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    pub accounts: u64,
    pub messages: u64,
    /// Bytes of all messages.
    pub message_bytes: u64,
    /// This node's last op-log position.
    pub last_seq: u64,
    /// Ops in the log now (after compaction).
    pub logged_ops: u64,
}

impl Store {
    /// Adds events to the history (one op; the oldest beyond [`KEEP_EVENTS`] go).
    pub async fn record_events(&self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.commit(move |_| Ok(Op::Events { events }))
            .await
            .map(|_| ())
    }

    /// The history, newest first.
    pub async fn events(&self, filter: EventFilter) -> Result<Vec<Event>> {
        self.read(move |c| query(c, &filter)).await
    }

    /// Accounts, messages and op-log figures for `/metrics`.
    pub async fn counts(&self) -> Result<Counts> {
        self.read(|c| {
            let one = |sql: &str| -> Result<u64> {
                Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
            };
            Ok(Counts {
                accounts: one("SELECT count(*) FROM accounts")?,
                messages: one("SELECT count(*) FROM messages")?,
                message_bytes: one("SELECT coalesce(sum(size), 0) FROM messages")?,
                last_seq: one("SELECT coalesce(max(seq), 0) FROM oplog")?,
                logged_ops: one("SELECT count(*) FROM oplog")?,
            })
        })
        .await
    }
}
