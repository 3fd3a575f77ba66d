//! The sweep of message files no row refers to (`clusterd gc`, and every
//! `store.gc_interval_s` on each node: both nodes hold their own files).
//!
//! Mark and sweep, in an order that cannot lose a body another task is about to
//! commit: (1) list the files under `blobs/` with their mtimes; (2) then, in one read
//! transaction, take every address a row names — messages, the outbound queue,
//! content files, and the ops still in the op log (a standby catching up is shipped
//! their bodies); (3) delete a listed file only if it is not named and still older
//! than the grace, re-checked under [`super::blobs::SWEEP`]. A body is written before
//! the op naming it commits: a new file is either not listed or younger than the
//! grace; a delivery that reuses an existing file refreshes its mtime under the same
//! lock first, so the sweep either sees it young or has already deleted it (and the
//! delivery writes it again). Temporary files in `blobs/tmp` untouched for the grace
//! (a write in progress touches its file with every chunk) are dropped too.
//!
//! A logged op's files are kept while the op is in the log: replication ships an
//! op with its files to a standby that is behind. A node that does not replicate
//! ships nothing, and its log would otherwise keep every file ever written: the
//! sweep first compacts it to its newest op (`compact_keep`), raising the marks, so a
//! peer added later takes a snapshot instead of replaying ops whose files are gone.
//! With replication, replication's own compaction bounds the log
//! (`replication.log_keep_ops` plus what the peer has not acknowledged).
//!
//! The sweep runs on a blocking thread with its own read-only connection: it costs
//! the writer nothing (the optional compaction is one small maintenance job).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::blobs::{SWEEP, is_address};
use super::op::Op;
use super::{Result, Store, StoreError, schema};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Message files looked at.
    pub scanned: u64,
    /// Distinct addresses the store names.
    pub referenced: u64,
    /// Files deleted, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Unreferenced files kept because they are younger than the grace.
    pub young: u64,
    /// Stale temporary files deleted from `blobs/tmp`.
    pub tmp_files: u64,
    /// Log entries compacted first (a node without replication).
    pub compacted: u64,
    pub elapsed_ms: u64,
}

/// One sweep at a time (the timer and `clusterd gc` may meet).
static RUNNING: Mutex<()> = Mutex::new(());

/// Every address a row or a logged op names, read in one transaction.
fn referenced(conn: &rusqlite::Connection) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    conn.execute_batch("BEGIN")?;
    let r = (|| -> Result<()> {
        for table in ["messages", "queue", "content"] {
            let mut st = conn.prepare(&format!("SELECT DISTINCT blob FROM {table}"))?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            for b in rows {
                out.insert(b?);
            }
        }
        let mut st = conn.prepare("SELECT op FROM oplog")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        for text in rows {
            let op: Op = serde_json::from_str(&text?).map_err(StoreError::CorruptLog)?;
            out.extend(op.blobs().into_iter().cloned());
        }
        Ok(())
    })();
    let _ = conn.execute_batch("COMMIT");
    r.map(|()| out)
}

fn older_than(meta: &std::fs::Metadata, cutoff: SystemTime) -> bool {
    meta.modified().is_ok_and(|m| m <= cutoff)
}

/// The sweep itself (blocking); see the module doc.
fn sweep(dir: &Path, grace: Duration) -> Result<GcReport> {
    let _running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();
    let blobs = dir.join("blobs");
    // 1. The files, before the references.
    let mut candidates = Vec::new();
    for fan in std::fs::read_dir(&blobs)? {
        let fan = fan?;
        let name = fan.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2 || !fan.file_type()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(fan.path())? {
            let f = f?;
            let id = f.file_name().to_string_lossy().into_owned();
            if !is_address(&id) {
                continue;
            }
            report.scanned += 1;
            let Ok(meta) = f.metadata() else { continue };
            if older_than(&meta, cutoff) {
                candidates.push((f.path(), id));
            } else {
                report.young += 1;
            }
        }
    }
    // 2. What the store names, read after the listing.
    let conn = schema::open_ro(&dir.join("store.db"))?;
    let named = referenced(&conn)?;
    report.referenced = named.len() as u64;
    drop(conn);
    // 3. Unnamed and still old: gone.
    for (path, id) in candidates {
        if named.contains(&id) {
            continue;
        }
        let _g = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !older_than(&meta, cutoff) {
            report.young += 1;
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            report.files += 1;
            report.bytes += meta.len();
        }
    }
    // Temporary files nobody wrote to for the grace: interrupted writes.
    for f in std::fs::read_dir(blobs.join("tmp"))? {
        let f = f?;
        if let Ok(meta) = f.metadata()
            && meta.is_file()
            && older_than(&meta, cutoff)
            && std::fs::remove_file(f.path()).is_ok()
        {
            report.tmp_files += 1;
        }
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

impl Store {
    /// Sweeps message files nothing names and older than `grace` (see the module
    /// doc); on a blocking thread. `compact_keep`: on a node without replication, the
    /// log is first compacted to its newest that many ops.
    pub async fn gc(&self, grace: Duration, compact_keep: Option<u64>) -> Result<GcReport> {
        let compacted = match compact_keep {
            Some(keep) => self.compact(u64::MAX, keep).await?,
            None => 0,
        };
        let dir = self.inner.dir.clone();
        let mut report = tokio::task::spawn_blocking(move || sweep(&dir, grace))
            .await
            .map_err(StoreError::BlobTask)??;
        report.compacted = compacted;
        tracing::info!(
            files = report.files,
            bytes = report.bytes,
            tmp_files = report.tmp_files,
            scanned = report.scanned,
            young = report.young,
            compacted,
            ms = report.elapsed_ms,
            "store: swept unreferenced message files"
        );
        Ok(report)
    }
}
