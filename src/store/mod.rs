//! The store: the only owner of durable state (accounts, mailboxes, messages, the
//! outbound queue, settings such as the TLS key). Front-ends call this typed API and
//! never touch SQL or files.
//!
//! Implementation notes
//! - Every change is an [`Op`](op::Op) committed by one writer thread: the op is
//!   resolved (UIDs, MODSEQs, ids assigned), applied and appended to the op log in the
//!   same SQLite transaction (WAL, `synchronous=FULL`). Concurrent callers are group
//!   committed: one transaction and one fsync for all ops waiting at that moment; each
//!   op runs in its own savepoint, so one failing op does not undo the others.
//! - Message bodies are immutable content-addressed files under `blobs/`, written and
//!   fsynced (file and directory) by the caller's blocking task before the op that
//!   references them is submitted.
//! - After commit a [`Change`] is broadcast; readers re-read state, they do not
//!   trust the payload.
//! - Reads go through a small pool of read-only connections (WAL readers never block
//!   the writer).
//! - Replication's side: ops another node committed apply verbatim
//!   ([`Store::apply_replicated`]); the `marks` table remembers, per origin, what is
//!   held although no longer in the log (compacted, installed, merged), and log
//!   positions never go back (`seq_floor`). A split-brain merge replays the peer's
//!   divergent ops as local ones ([`merge`]); a snapshot replaces the content
//!   ([`snapshot`]).

pub mod op;
pub mod types;

pub use accounts::{Account, DEFAULT_MAILBOXES, normalize_account};
pub use contacts::Contact;
pub use content::{ContentEntry, normalize_content_path};
pub use mailboxes::{MailboxInfo, SpecialUse, normalize_mailbox_name};
pub use messages::{
    Appended, Copied, DUPLICATE_WINDOW_S, FlagMode, FlagUpdate, MessageMeta, canonical_flag,
    content_key, normalize_flags,
};
pub use queue::QueueEntry;
pub use types::*;
mod accounts;
mod apply;
mod blobs;
mod contacts;
mod content;
mod mailboxes;
pub mod merge;
mod messages;
mod queue;
mod schema;
mod settings;
pub mod snapshot;
mod writer;

pub use writer::CommitBarrier;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::broadcast;

use op::{LoggedOp, Op};

/// Handle to the store; cheap to clone, shared by every front-end.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    node: String,
    writer: writer::WriterHandle,
    readers: Mutex<Vec<Connection>>,
    changes: broadcast::Sender<Change>,
    writable: AtomicBool,
    barrier: writer::Barrier,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` for node `node`.
    pub fn open(data_dir: &Path, node: &str) -> Result<Store> {
        std::fs::create_dir_all(data_dir)?;
        blobs::prepare(data_dir)?;
        let db_path = data_dir.join("store.db");
        let conn = schema::open_rw(&db_path)?;
        let (changes, _) = broadcast::channel(4096);
        let barrier = writer::Barrier::default();
        let writer = writer::spawn(conn, node.to_string(), changes.clone(), barrier.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir: data_dir.to_path_buf(),
                node: node.to_string(),
                writer,
                readers: Mutex::new(Vec::new()),
                changes,
                writable: AtomicBool::new(true),
                barrier,
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether this node accepts writes (only the active node does).
    pub fn set_writable(&self, writable: bool) {
        self.inner.writable.store(writable, Ordering::SeqCst);
    }

    pub fn is_writable(&self) -> bool {
        self.inner.writable.load(Ordering::SeqCst)
    }

    /// Notifications of committed changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    // ---------------------------------------------------------------- plumbing

    /// Runs `f` on a read connection in a blocking task.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.lock().unwrap().pop() {
                Some(c) => c,
                None => schema::open_ro(&inner.dir.join("store.db"))?,
            };
            let out = f(&conn);
            let mut pool = inner.readers.lock().unwrap();
            if pool.len() < 8 {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Other(format!("read task failed: {e}")))?
    }

    /// Resolves an op inside the writer's transaction and commits it durably.
    async fn commit<F>(&self, resolve: F) -> Result<Op>
    where
        F: FnOnce(&Connection) -> Result<Op> + Send + 'static,
    {
        if !self.is_writable() {
            return Err(StoreError::ReadOnly);
        }
        self.inner.writer.submit(Box::new(resolve)).await
    }

    // ---------------------------------------------------------------- op log

    /// Sequence number of the last committed op (0 when the log is empty).
    pub async fn last_seq(&self) -> Result<u64> {
        self.read(|conn| {
            Ok(
                conn.query_row("SELECT coalesce(max(seq), 0) FROM oplog", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
        .await
    }

    /// Up to `limit` logged ops with `seq > after`, in order.
    pub async fn ops_since(&self, after: u64, limit: usize) -> Result<Vec<LoggedOp>> {
        self.read(move |conn| apply::ops_since(conn, after, limit))
            .await
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
        self.read(snapshot::marks).await
    }

    /// For each origin, the highest origin_seq held whose op is no longer in the log
    /// (compacted, installed by a snapshot, replayed by a merge): a peer below it
    /// cannot catch up from the log.
    pub async fn baseline(&self) -> Result<Vec<(String, u64)>> {
        self.read(snapshot::baseline).await
    }

    /// The first log position holding an op of `origin` above `origin_seq`.
    pub async fn first_seq_after(&self, origin: &str, origin_seq: u64) -> Result<Option<u64>> {
        let origin = origin.to_string();
        self.read(move |conn| {
            let s: Option<i64> = conn.query_row(
                "SELECT min(seq) FROM oplog WHERE origin = ?1 AND origin_seq > ?2",
                params![origin, origin_seq as i64],
                |r| r.get(0),
            )?;
            Ok(s.map(|s| s as u64))
        })
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
        let dir = self.inner.dir.clone();
        let missing: Vec<String> = snap
            .blobs()
            .into_iter()
            .filter(|b| !blobs::path(&dir, b).exists())
            .collect();
        if let Some(b) = missing.first() {
            return Err(StoreError::Other(format!(
                "snapshot refers to {} blobs this node lacks (e.g. {b})",
                missing.len()
            )));
        }
        self.inner.writer.submit_install(snap).await
    }

    /// Drops log entries at positions up to `upto` but the newest `keep` (at least
    /// one), remembering per origin what they covered (`marks`). Returns how many.
    pub async fn compact(&self, upto: u64, keep: u64) -> Result<u64> {
        let keep = keep.max(1);
        self.inner
            .writer
            .submit_maintenance(Box::new(move |conn| {
                let max: i64 =
                    conn.query_row("SELECT coalesce(max(seq), 0) FROM oplog", [], |r| r.get(0))?;
                let bound = upto.min((max as u64).saturating_sub(keep));
                if bound == 0 {
                    return Ok(0);
                }
                conn.execute(
                    "INSERT INTO marks (origin, origin_seq)
                     SELECT origin, max(origin_seq) FROM oplog WHERE seq <= ?1 GROUP BY origin
                     ON CONFLICT (origin) DO UPDATE SET origin_seq = max(origin_seq, excluded.origin_seq)",
                    [bound as i64],
                )?;
                let n = conn.execute("DELETE FROM oplog WHERE seq <= ?1", [bound as i64])?;
                Ok(n as u64)
            }))
            .await
    }

    /// Records (durably) that this node's content diverged from the active peer's
    /// and must be replaced by a snapshot before it may apply the peer's log.
    pub async fn set_resync_needed(&self) -> Result<()> {
        self.inner
            .writer
            .submit_maintenance(Box::new(|conn| {
                conn.execute(
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
                .query_row("SELECT 1 FROM meta WHERE key = 'resync_needed'", [], |_| {
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
                .query_row(
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
        self.read(apply::digest).await
    }
}

// -------------------------------------------------------------------- helpers

/// A fresh globally unique id (random 128 bits, hex).
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
