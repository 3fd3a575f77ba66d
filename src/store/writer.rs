//! The single writer thread: resolves ops, applies them, logs them, group commits.

use crate::store::schema::Cached;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, oneshot};

use super::merge::MergeReport;
use super::op::{LoggedOp, Op};
use super::snapshot::Snapshot;
use super::{Change, Result, StoreError, apply};

pub type Resolve = Box<dyn FnOnce(&Connection) -> Result<Op> + Send>;

/// What holds back the replies of a committed batch of local ops: replication, in
/// sync mode, releases them once the peer holds `last_seq` durably. Without one the
/// replies go out as soon as the batch is committed.
pub trait CommitBarrier: Send + Sync {
    /// The batch ending at log position `commit.last_seq` is committed; call
    /// `release` when its replies may go out.
    fn after_commit(&self, commit: Committed, release: Box<dyn FnOnce() + Send>);
}

/// A committed batch of local ops, as the barrier is told of it.
pub struct Committed {
    /// The log position of the batch's last local op.
    pub last_seq: u64,
    /// How long the batch's oldest local op waited in the writer's queue.
    pub queued: Duration,
    /// The batch's transaction, from its start to the end of COMMIT (the fsync).
    pub took: Duration,
}

pub type Barrier = Arc<OnceLock<Arc<dyn CommitBarrier>>>;

enum Job {
    /// A local change: resolved, applied and logged under this node's origin.
    Local {
        resolve: Resolve,
        reply: oneshot::Sender<Result<Op>>,
        /// When it was submitted.
        at: Instant,
    },
    /// Ops another node committed, applied verbatim with their origin and clock;
    /// the reply counts the ops that were new here.
    Replicated {
        ops: Vec<LoggedOp>,
        reply: oneshot::Sender<Result<usize>>,
    },
    /// A split-brain merge: the peer's divergent ops replayed as local ones
    /// ([`super::merge`]). Its reply does not wait for the commit barrier.
    Merge {
        ops: Vec<LoggedOp>,
        peer_marks: HashMap<String, u64>,
        reply: oneshot::Sender<Result<MergeReport>>,
    },
    /// Replaces the content with a snapshot from the peer ([`super::snapshot`]).
    Install {
        snapshot: Box<Snapshot>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Bookkeeping on the writer's connection that logs no op (compaction, meta).
    Maintenance {
        run: Maintenance,
        reply: oneshot::Sender<Result<u64>>,
    },
}

pub type Maintenance = Box<dyn FnOnce(&Connection) -> Result<u64> + Send>;

/// A replicated job's reply, its result and the ops that were new (for the change feed).
type ReplicatedDone = (oneshot::Sender<Result<usize>>, Result<usize>, Vec<Op>);

pub struct WriterHandle {
    tx: std::sync::Mutex<mpsc::Sender<Job>>,
}

impl WriterHandle {
    pub async fn submit(&self, resolve: Resolve) -> Result<Op> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Local {
            resolve,
            reply,
            at: Instant::now(),
        })?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }

    pub async fn submit_replicated(&self, ops: Vec<LoggedOp>) -> Result<usize> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Replicated { ops, reply })?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }

    pub async fn submit_merge(
        &self,
        ops: Vec<LoggedOp>,
        peer_marks: HashMap<String, u64>,
    ) -> Result<MergeReport> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Merge {
            ops,
            peer_marks,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }

    pub async fn submit_install(&self, snapshot: Snapshot) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Install {
            snapshot: Box::new(snapshot),
            reply,
        })?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }

    pub async fn submit_maintenance(&self, run: Maintenance) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Maintenance { run, reply })?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }

    fn send(&self, job: Job) -> Result<()> {
        self.tx
            .lock()
            .unwrap()
            .send(job)
            .map_err(|_| StoreError::WriterStopped)
    }
}

/// Most ops a single transaction takes.
const MAX_BATCH: usize = 512;

pub fn spawn(
    conn: Connection,
    node: String,
    changes: broadcast::Sender<Change>,
    barrier: Barrier,
    alive: Arc<std::sync::atomic::AtomicBool>,
) -> Result<WriterHandle> {
    let (tx, rx) = mpsc::channel::<Job>();
    let mut state = WriterState::load(&conn, node)?;
    /// Clears `alive` when the thread ends however it ends (a panic included): the
    /// node's health then says the store cannot write.
    struct Alive(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let _alive = Alive(alive);
            let mut conn = conn;
            while let Ok(first) = rx.recv() {
                let began = Instant::now();
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                state.run_batch(&mut conn, batch, began, &changes, &barrier);
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
    /// Log positions at or below it were used before (a snapshot emptied the log):
    /// positions only grow, so an acknowledgement never names a reused one.
    seq_floor: u64,
}

impl WriterState {
    fn load(conn: &Connection, node: String) -> Result<Self> {
        let last: i64 = conn.row(
            "SELECT max(coalesce((SELECT max(origin_seq) FROM oplog WHERE origin = ?1), 0),
                        coalesce((SELECT origin_seq FROM marks WHERE origin = ?1), 0))",
            [&node],
            |r| r.get(0),
        )?;
        let hlc: i64 = conn.row("SELECT coalesce(max(hlc), 0) FROM oplog", [], |r| r.get(0))?;
        let floor: Option<String> = conn
            .row("SELECT value FROM meta WHERE key = 'seq_floor'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(WriterState {
            node,
            next_origin_seq: last as u64 + 1,
            last_hlc: hlc as u64,
            seq_floor: floor.and_then(|f| f.parse().ok()).unwrap_or(0),
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
        began: Instant,
        changes: &broadcast::Sender<Change>,
        barrier: &Barrier,
    ) {
        let saved = (self.next_origin_seq, self.last_hlc, self.seq_floor);
        let mut local: Vec<(oneshot::Sender<Result<Op>>, Result<Op>)> = Vec::new();
        let mut replicated: Vec<ReplicatedDone> = Vec::new();
        let mut others: Vec<Box<dyn FnOnce(bool) + Send>> = Vec::new();
        let mut announce: Vec<Change> = Vec::new();
        let mut last_local_seq = 0u64;
        let mut oldest_local = began;
        let outcome = (|| -> Result<()> {
            let tx = conn.transaction()?;
            for job in batch {
                tx.exec("SAVEPOINT op", [])?;
                let ok = match job {
                    Job::Local { resolve, reply, at } => {
                        oldest_local = oldest_local.min(at);
                        let r = resolve(&tx).and_then(|op| {
                            last_local_seq = self.apply_local(&tx, &op)?;
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
                                if super::replica::held(&tx, &l.origin, l.origin_seq)? {
                                    continue;
                                }
                                // Settings are last writer wins by clock, so both
                                // nodes keep the same value whatever order they
                                // applied them in (e.g. each generated a TLS identity
                                // at its first start).
                                let stale = match &l.op {
                                    Op::SettingSet { key, .. } => {
                                        super::settings::newer(&tx, key, l.hlc)?
                                    }
                                    _ => false,
                                };
                                if !stale {
                                    apply::apply(&tx, &l.op)?;
                                }
                                log_op(&tx, self.seq_floor, &l.origin, l.origin_seq, l.hlc, &l.op)?;
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
                    Job::Merge {
                        ops,
                        peer_marks,
                        reply,
                    } => {
                        let mut done = Vec::new();
                        let r = super::merge::merge(&tx, &ops, &peer_marks, &mut |tx, op| {
                            tx.exec("SAVEPOINT merged", [])?;
                            match self.apply_local(tx, &op) {
                                Ok(_) => {
                                    tx.exec("RELEASE merged", [])?;
                                    done.push(op);
                                    Ok(true)
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "merge: an op of the peer does not apply here; skipped");
                                    tx.execute_batch("ROLLBACK TO merged; RELEASE merged")?;
                                    Ok(false)
                                }
                            }
                        });
                        let ok = r.is_ok();
                        if ok {
                            announce.extend(done.iter().flat_map(apply::changes_of));
                        }
                        others.push(Box::new(move |committed| {
                            let _ = reply.send(if committed {
                                r
                            } else {
                                Err(StoreError::MergeNotCommitted)
                            });
                        }));
                        ok
                    }
                    Job::Install { snapshot, reply } => {
                        let r = super::snapshot::install(&tx, &snapshot, self.seq_floor);
                        let ok = r.is_ok();
                        let r = r.map(|(floor, changes)| {
                            self.seq_floor = floor;
                            let own = snapshot
                                .marks
                                .iter()
                                .find(|(o, _)| *o == self.node)
                                .map(|(_, s)| *s)
                                .unwrap_or(0);
                            self.next_origin_seq = self.next_origin_seq.max(own + 1);
                            self.last_hlc = self.last_hlc.max(snapshot.hlc);
                            announce.extend(changes);
                        });
                        others.push(Box::new(move |committed| {
                            let _ = reply.send(if committed {
                                r
                            } else {
                                Err(StoreError::SnapshotNotCommitted)
                            });
                        }));
                        ok
                    }
                    Job::Maintenance { run, reply } => {
                        let r = run(&tx);
                        let ok = r.is_ok();
                        others.push(Box::new(move |committed| {
                            let _ = reply.send(if committed {
                                r
                            } else {
                                Err(StoreError::MaintenanceNotCommitted)
                            });
                        }));
                        ok
                    }
                };
                if ok {
                    tx.exec("RELEASE op", [])?;
                } else {
                    tx.exec("ROLLBACK TO op", [])?;
                    tx.exec("RELEASE op", [])?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                for c in announce {
                    let _ = changes.send(c);
                }
                for done in others {
                    done(true);
                }
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
                    Some(b) if last_local_seq > 0 => b.after_commit(
                        Committed {
                            last_seq: last_local_seq,
                            queued: began - oldest_local,
                            took: began.elapsed(),
                        },
                        Box::new(release),
                    ),
                    _ => release(),
                }
            }
            Err(e) => {
                (self.next_origin_seq, self.last_hlc, self.seq_floor) = saved;
                for done in others {
                    done(false);
                }
                tracing::error!(error = %e, "store commit failed");
                // Nothing of the batch is acknowledged; the thread goes on with the
                // next one (a full disk is expected to pass). A full disk keeps its
                // kind so the caller answers "insufficient storage".
                let full = e.is_no_space();
                let msg = e.to_string();
                let failed = || {
                    if full {
                        StoreError::NoSpace
                    } else {
                        StoreError::CommitFailed(msg.clone())
                    }
                };
                for (reply, _) in local {
                    let _ = reply.send(Err(failed()));
                }
                for (reply, _, _) in replicated {
                    let _ = reply.send(Err(failed()));
                }
            }
        }
    }
}

impl WriterState {
    /// Applies and logs one op under this node's origin; returns its log position.
    fn apply_local(&mut self, tx: &Connection, op: &Op) -> Result<u64> {
        apply::apply(tx, op)?;
        let hlc = self.tick();
        let seq = log_op(
            tx,
            self.seq_floor,
            &self.node,
            self.next_origin_seq,
            hlc,
            op,
        )?;
        self.next_origin_seq += 1;
        Ok(seq)
    }
}

/// Appends one op to the log, after the last position used (`floor` counts too);
/// returns its position.
fn log_op(
    tx: &Connection,
    floor: u64,
    origin: &str,
    origin_seq: u64,
    hlc: u64,
    op: &Op,
) -> Result<u64> {
    tx.exec(
        "INSERT INTO oplog (seq, origin, origin_seq, hlc, op)
         VALUES ((SELECT max(coalesce(max(seq), 0), ?1) + 1 FROM oplog), ?2, ?3, ?4, ?5)",
        params![
            floor as i64,
            origin,
            origin_seq as i64,
            hlc as i64,
            serde_json::to_string(op).map_err(StoreError::Encode)?
        ],
    )?;
    Ok(tx.last_insert_rowid() as u64)
}
