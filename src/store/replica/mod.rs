//! Replication's side of the store: the op log as a peer reads it, the `marks` table,
//! applying a peer's ops, the split-brain merge ([`merge`]), snapshots ([`snapshot`]),
//! compaction, the resync flag and the content digest.
//!
//! Invariants
//! - Ops another node committed apply verbatim (origin, clock, ids, UIDs) and once: an
//!   op whose `(origin, origin_seq)` is held ([`held`]) is skipped.
//! - `marks` remembers, per origin, the highest origin_seq whose effect this store
//!   holds although the op is no longer (or never was) in its log: compacted away,
//!   installed by a snapshot, replayed under a new origin by a merge. The log and the
//!   marks together are what this node holds ([`Store::origin_marks`]).
//! - Log positions never go back, not even after a snapshot emptied the log (the
//!   writer's `seq_floor`), so an acknowledgement never names a reused position.

pub mod merge;
pub mod snapshot;

use crate::store::schema::Cached;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::op::LoggedOp;
use super::{CommitBarrier, Result, Store, StoreError};
use snapshot::BadSnapshot;

// ------------------------------------------------------------------ SQL

/// Position of the last op in the log (0 when the log is empty).
fn last_seq(conn: &Connection) -> Result<u64> {
    Ok(
        conn.row("SELECT coalesce(max(seq), 0) FROM oplog", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// Up to `limit` logged ops with `seq > after`, in order.
fn ops_since(conn: &Connection, after: u64, limit: usize) -> Result<Vec<LoggedOp>> {
    let mut st = conn.prepare_cached(
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
            op: serde_json::from_str(&op).map_err(StoreError::CorruptLog)?,
        });
    }
    Ok(out)
}

/// The first log position holding an op of `origin` above `origin_seq`.
fn first_seq_after(conn: &Connection, origin: &str, origin_seq: u64) -> Result<Option<u64>> {
    let s: Option<i64> = conn.row(
        "SELECT min(seq) FROM oplog WHERE origin = ?1 AND origin_seq > ?2",
        params![origin, origin_seq as i64],
        |r| r.get(0),
    )?;
    Ok(s.map(|s| s as u64))
}

/// Whether this store holds the op `(origin, origin_seq)`: in its log, or below the
/// origin's mark.
pub(super) fn held(conn: &Connection, origin: &str, origin_seq: u64) -> Result<bool> {
    Ok(conn.row(
        "SELECT EXISTS (SELECT 1 FROM oplog WHERE origin = ?1 AND origin_seq = ?2)
             OR EXISTS (SELECT 1 FROM marks WHERE origin = ?1 AND origin_seq >= ?2)",
        params![origin, origin_seq as i64],
        |r| r.get(0),
    )?)
}

/// Per origin, the highest origin_seq held (log and marks).
fn marks(conn: &Connection) -> Result<Vec<(String, u64)>> {
    origin_seqs(
        conn,
        "SELECT origin, max(s) FROM (
             SELECT origin, max(origin_seq) AS s FROM oplog GROUP BY origin
             UNION ALL SELECT origin, origin_seq FROM marks)
         GROUP BY origin ORDER BY origin",
    )
}

/// Per origin, what is held but no longer in the log (the `marks` table alone).
fn baseline(conn: &Connection) -> Result<Vec<(String, u64)>> {
    origin_seqs(conn, "SELECT origin, origin_seq FROM marks ORDER BY origin")
}

/// Runs a query of (origin, origin_seq) rows.
fn origin_seqs(conn: &Connection, sql: &str) -> Result<Vec<(String, u64)>> {
    let mut st = conn.prepare(sql)?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Drops log entries at positions up to `upto` but the newest `keep`, raising the
/// marks to what they covered; returns how many.
fn compact(conn: &Connection, upto: u64, keep: u64) -> Result<u64> {
    let bound = upto.min(last_seq(conn)?.saturating_sub(keep));
    if bound == 0 {
        return Ok(0);
    }
    conn.exec(
        "INSERT INTO marks (origin, origin_seq)
         SELECT origin, max(origin_seq) FROM oplog WHERE seq <= ?1 GROUP BY origin
         ON CONFLICT (origin) DO UPDATE SET origin_seq = max(origin_seq, excluded.origin_seq)",
        [bound as i64],
    )?;
    let n = conn.exec("DELETE FROM oplog WHERE seq <= ?1", [bound as i64])?;
    Ok(n as u64)
}

/// See [`Store::digest`].
fn digest(conn: &Connection) -> Result<String> {
    use sha2::{Digest, Sha256};
    let tables = snapshot::data_tables(conn)?;
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

impl Store {
    /// Sequence number of the last committed op (0 when the log is empty).
    pub async fn last_seq(&self) -> Result<u64> {
        self.read(last_seq).await
    }

    /// Up to `limit` logged ops with `seq > after`, in order.
    pub async fn ops_since(&self, after: u64, limit: usize) -> Result<Vec<LoggedOp>> {
        self.read(move |conn| ops_since(conn, after, limit)).await
    }

    /// Installs what holds back the replies of local commits (replication in sync
    /// mode); once only.
    pub fn set_commit_barrier(&self, barrier: Arc<dyn CommitBarrier>) {
        let _ = self.inner.barrier.set(barrier);
    }

    /// Applies ops another node committed, verbatim (origin, clock, ids, UIDs), in one
    /// transaction; ops already in the log are skipped. Works on a closed store (the
    /// standby): that is where it is used. Their blobs must be stored first
    /// ([`Store::put_blob`]). Returns how many ops were new.
    pub async fn apply_replicated(&self, ops: Vec<LoggedOp>) -> Result<usize> {
        self.inner.writer.submit_replicated(ops).await
    }

    /// For each origin, the highest origin sequence number held (in the log, or
    /// compacted, installed or merged: the `marks` table).
    pub async fn origin_marks(&self) -> Result<Vec<(String, u64)>> {
        self.read(marks).await
    }

    /// For each origin, the highest origin_seq held whose op is no longer in the log
    /// (compacted, installed by a snapshot, replayed by a merge): a peer below it
    /// cannot catch up from the log.
    pub async fn baseline(&self) -> Result<Vec<(String, u64)>> {
        self.read(baseline).await
    }

    /// The first log position holding an op of `origin` above `origin_seq`.
    pub async fn first_seq_after(&self, origin: &str, origin_seq: u64) -> Result<Option<u64>> {
        let origin = origin.to_string();
        self.read(move |conn| first_seq_after(conn, &origin, origin_seq))
            .await
    }

    /// A split-brain merge: replays the peer's divergent ops (`ops`, in its log order)
    /// here as new local ops ([`merge`]); `peer_marks` are the peer's marks. One
    /// transaction; works on a closed store too.
    pub async fn merge(
        &self,
        ops: Vec<LoggedOp>,
        peer_marks: std::collections::HashMap<String, u64>,
    ) -> Result<merge::MergeReport> {
        self.inner.writer.submit_merge(ops, peer_marks).await
    }

    /// A consistent snapshot of the logical content ([`snapshot`]).
    pub async fn snapshot(&self) -> Result<snapshot::Snapshot> {
        self.read(snapshot::read).await
    }

    /// Replaces the content with a peer's snapshot (its blobs stored first).
    pub async fn install_snapshot(&self, snap: snapshot::Snapshot) -> Result<()> {
        let missing = self.missing_blobs(&snap.blobs());
        if let Some(b) = missing.first() {
            return Err(BadSnapshot::MissingBlobs {
                count: missing.len(),
                example: b.clone(),
            }
            .into());
        }
        self.inner.writer.submit_install(snap).await
    }

    /// Drops log entries at positions up to `upto` but the newest `keep` (at least
    /// one), remembering per origin what they covered (`marks`). Returns how many.
    pub async fn compact(&self, upto: u64, keep: u64) -> Result<u64> {
        let keep = keep.max(1);
        self.inner
            .writer
            .submit_maintenance(Box::new(move |conn| compact(conn, upto, keep)))
            .await
    }

    /// Records (durably) that this node's content diverged from the active peer's
    /// and must be replaced by a snapshot before it may apply the peer's log.
    pub async fn set_resync_needed(&self) -> Result<()> {
        self.inner
            .writer
            .submit_maintenance(Box::new(|conn| {
                conn.exec(
                    "INSERT INTO meta (key, value) VALUES ('resync_needed', '1')
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [],
                )?;
                Ok(0)
            }))
            .await
            .map(|_| ())
    }

    pub async fn resync_needed(&self) -> Result<bool> {
        self.read(|conn| {
            Ok(conn
                .row("SELECT 1 FROM meta WHERE key = 'resync_needed'", [], |_| {
                    Ok(())
                })
                .optional()?
                .is_some())
        })
        .await
    }

    /// This log's position of the op `(origin, origin_seq)`, if held.
    pub async fn seq_of(&self, origin: &str, origin_seq: u64) -> Result<Option<u64>> {
        let origin = origin.to_string();
        self.read(move |conn| {
            Ok(conn
                .row(
                    "SELECT seq FROM oplog WHERE origin = ?1 AND origin_seq = ?2",
                    params![origin, origin_seq as i64],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .map(|s| s as u64))
        })
        .await
    }

    /// A digest of the store's logical content: every table but the op log itself,
    /// rows in a canonical order, so two nodes holding the same data agree whatever
    /// order their logs applied it in.
    pub async fn digest(&self) -> Result<String> {
        self.read(digest).await
    }
}
