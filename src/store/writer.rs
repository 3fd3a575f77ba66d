//! The single writer thread: resolves ops, applies them, logs them, group commits.

use std::sync::{Arc, OnceLock, mpsc};

use rusqlite::{Connection, params};
use tokio::sync::{broadcast, oneshot};

use super::op::{LoggedOp, Op};
use super::{Change, Result, StoreError, apply};

pub type Resolve = Box<dyn FnOnce(&Connection) -> Result<Op> + Send>;

/// What holds back the replies of a committed batch of local ops: replication, in
/// sync mode, releases them once the peer holds `last_seq` durably. Without one the
/// replies go out as soon as the batch is committed.
pub trait CommitBarrier: Send + Sync {
    /// The batch ending at log position `last_seq` is committed; call `release` when
    /// its replies may go out.
    fn after_commit(&self, last_seq: u64, release: Box<dyn FnOnce() + Send>);
}

pub type Barrier = Arc<OnceLock<Arc<dyn CommitBarrier>>>;

enum Job {
    /// A local change: resolved, applied and logged under this node's origin.
    Local {
        resolve: Resolve,
        reply: oneshot::Sender<Result<Op>>,
    },
    /// Ops another node committed, applied verbatim with their origin and clock;
    /// the reply counts the ops that were new here.
    Replicated {
        ops: Vec<LoggedOp>,
        reply: oneshot::Sender<Result<usize>>,
    },
}

/// A replicated job's reply, its result and the ops that were new (for the change feed).
type ReplicatedDone = (oneshot::Sender<Result<usize>>, Result<usize>, Vec<Op>);

pub struct WriterHandle {
    tx: std::sync::Mutex<mpsc::Sender<Job>>,
}

impl WriterHandle {
    pub async fn submit(&self, resolve: Resolve) -> Result<Op> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Local { resolve, reply })?;
        rx.await
            .map_err(|_| StoreError::Other("store writer stopped".into()))?
    }

    pub async fn submit_replicated(&self, ops: Vec<LoggedOp>) -> Result<usize> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Replicated { ops, reply })?;
        rx.await
            .map_err(|_| StoreError::Other("store writer stopped".into()))?
    }

    fn send(&self, job: Job) -> Result<()> {
        self.tx
            .lock()
            .unwrap()
            .send(job)
            .map_err(|_| StoreError::Other("store writer stopped".into()))
    }
}

/// Most ops a single transaction takes.
const MAX_BATCH: usize = 512;

pub fn spawn(
    conn: Connection,
    node: String,
    changes: broadcast::Sender<Change>,
    barrier: Barrier,
) -> Result<WriterHandle> {
    let (tx, rx) = mpsc::channel::<Job>();
    let mut state = WriterState::load(&conn, node)?;
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut conn = conn;
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                state.run_batch(&mut conn, batch, &changes, &barrier);
            }
        })?;
    Ok(WriterHandle {
        tx: std::sync::Mutex::new(tx),
    })
}

struct WriterState {
    node: String,
    next_origin_seq: u64,
    last_hlc: u64,
}

impl WriterState {
    fn load(conn: &Connection, node: String) -> Result<Self> {
        let last: i64 = conn.query_row(
            "SELECT coalesce(max(origin_seq), 0) FROM oplog WHERE origin = ?1",
            [&node],
            |r| r.get(0),
        )?;
        let hlc: i64 =
            conn.query_row("SELECT coalesce(max(hlc), 0) FROM oplog", [], |r| r.get(0))?;
        Ok(WriterState {
            node,
            next_origin_seq: last as u64 + 1,
            last_hlc: hlc as u64,
        })
    }

    fn tick(&mut self) -> u64 {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let physical = ms << 16;
        self.last_hlc = if physical > self.last_hlc {
            physical
        } else {
            self.last_hlc + 1
        };
        self.last_hlc
    }

    fn run_batch(
        &mut self,
        conn: &mut Connection,
        batch: Vec<Job>,
        changes: &broadcast::Sender<Change>,
        barrier: &Barrier,
    ) {
        let saved = (self.next_origin_seq, self.last_hlc);
        let mut local: Vec<(oneshot::Sender<Result<Op>>, Result<Op>)> = Vec::new();
        let mut replicated: Vec<ReplicatedDone> = Vec::new();
        let mut last_local_seq = 0u64;
        let outcome = (|| -> Result<()> {
            let tx = conn.transaction()?;
            for job in batch {
                tx.execute_batch("SAVEPOINT op")?;
                let ok = match job {
                    Job::Local { resolve, reply } => {
                        let r = resolve(&tx).and_then(|op| {
                            apply::apply(&tx, &op)?;
                            let hlc = self.tick();
                            log_op(&tx, &self.node, self.next_origin_seq, hlc, &op)?;
                            last_local_seq = tx.last_insert_rowid() as u64;
                            self.next_origin_seq += 1;
                            Ok(op)
                        });
                        let ok = r.is_ok();
                        local.push((reply, r));
                        ok
                    }
                    Job::Replicated { ops, reply } => {
                        let mut new_ops = Vec::new();
                        let r = (|| -> Result<usize> {
                            for l in ops {
                                let known: bool = tx.query_row(
                                    "SELECT EXISTS (SELECT 1 FROM oplog WHERE origin = ?1 AND origin_seq = ?2)",
                                    params![l.origin, l.origin_seq as i64],
                                    |r| r.get(0),
                                )?;
                                if known {
                                    continue;
                                }
                                // Settings are last writer wins by clock, so both
                                // nodes keep the same value whatever order they
                                // applied them in (e.g. each generated a TLS identity
                                // at its first start).
                                let stale = match &l.op {
                                    Op::SettingSet { key, .. } => newer_setting(&tx, key, l.hlc)?,
                                    _ => false,
                                };
                                if !stale {
                                    apply::apply(&tx, &l.op)?;
                                }
                                log_op(&tx, &l.origin, l.origin_seq, l.hlc, &l.op)?;
                                self.last_hlc = self.last_hlc.max(l.hlc);
                                new_ops.push(l.op);
                            }
                            Ok(new_ops.len())
                        })();
                        let ok = r.is_ok();
                        if !ok {
                            new_ops.clear();
                        }
                        replicated.push((reply, r, new_ops));
                        ok
                    }
                };
                if ok {
                    tx.execute_batch("RELEASE op")?;
                } else {
                    tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                for (reply, r, ops) in replicated {
                    for op in &ops {
                        for c in apply::changes_of(op) {
                            let _ = changes.send(c);
                        }
                    }
                    let _ = reply.send(r);
                }
                let changes = changes.clone();
                let release = move || {
                    for (reply, r) in local {
                        if let Ok(op) = &r {
                            for c in apply::changes_of(op) {
                                let _ = changes.send(c);
                            }
                        }
                        let _ = reply.send(r);
                    }
                };
                match barrier.get() {
                    Some(b) if last_local_seq > 0 => {
                        b.after_commit(last_local_seq, Box::new(release))
                    }
                    _ => release(),
                }
            }
            Err(e) => {
                (self.next_origin_seq, self.last_hlc) = saved;
                tracing::error!(error = %e, "store commit failed");
                let msg = e.to_string();
                for (reply, _) in local {
                    let _ = reply.send(Err(StoreError::Other(format!("commit failed: {msg}"))));
                }
                for (reply, _, _) in replicated {
                    let _ = reply.send(Err(StoreError::Other(format!("commit failed: {msg}"))));
                }
            }
        }
    }
}

/// Appends one op to the log.
fn log_op(tx: &Connection, origin: &str, origin_seq: u64, hlc: u64, op: &Op) -> Result<()> {
    tx.execute(
        "INSERT INTO oplog (origin, origin_seq, hlc, op) VALUES (?1, ?2, ?3, ?4)",
        params![
            origin,
            origin_seq as i64,
            hlc as i64,
            serde_json::to_string(op).map_err(|e| StoreError::Other(e.to_string()))?
        ],
    )?;
    Ok(())
}

/// Whether the log holds a change of setting `key` with a clock after `hlc`.
fn newer_setting(tx: &Connection, key: &str, hlc: u64) -> Result<bool> {
    // Ops are stored as JSON with the tag first (`{"type":"setting_set","key":...`).
    let key_json = serde_json::to_string(key).map_err(|e| StoreError::Other(e.to_string()))?;
    let pattern = format!(
        "{{\"type\":\"setting_set\",\"key\":{}%",
        key_json
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let newer: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM oplog WHERE hlc > ?1 AND op LIKE ?2 ESCAPE '\\')",
        params![hlc as i64, pattern],
        |r| r.get(0),
    )?;
    Ok(newer)
}
