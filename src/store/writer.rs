//! The single writer thread: resolves ops, applies them, logs them, group commits.

use std::sync::mpsc;

use rusqlite::{Connection, params};
use tokio::sync::{broadcast, oneshot};

use super::op::Op;
use super::{Change, Result, StoreError, apply};

pub type Resolve = Box<dyn FnOnce(&Connection) -> Result<Op> + Send>;

struct Job {
    resolve: Resolve,
    reply: oneshot::Sender<Result<Op>>,
}

pub struct WriterHandle {
    tx: std::sync::Mutex<mpsc::Sender<Job>>,
}

impl WriterHandle {
    pub async fn submit(&self, resolve: Resolve) -> Result<Op> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .lock()
            .unwrap()
            .send(Job { resolve, reply })
            .map_err(|_| StoreError::Other("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Other("store writer stopped".into()))?
    }
}

/// Most ops a single transaction takes.
const MAX_BATCH: usize = 512;

pub fn spawn(
    conn: Connection,
    node: String,
    changes: broadcast::Sender<Change>,
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
                state.run_batch(&mut conn, batch, &changes);
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
    ) {
        let saved = (self.next_origin_seq, self.last_hlc);
        let mut results: Vec<(oneshot::Sender<Result<Op>>, Result<Op>)> = Vec::new();
        let outcome = (|| -> Result<()> {
            let tx = conn.transaction()?;
            for job in batch {
                tx.execute_batch("SAVEPOINT op")?;
                let r = (job.resolve)(&tx).and_then(|op| {
                    apply::apply(&tx, &op)?;
                    let hlc = self.tick();
                    tx.execute(
                        "INSERT INTO oplog (origin, origin_seq, hlc, op) VALUES (?1, ?2, ?3, ?4)",
                        params![
                            self.node,
                            self.next_origin_seq as i64,
                            hlc as i64,
                            serde_json::to_string(&op)
                                .map_err(|e| StoreError::Other(e.to_string()))?
                        ],
                    )?;
                    self.next_origin_seq += 1;
                    Ok(op)
                });
                if r.is_ok() {
                    tx.execute_batch("RELEASE op")?;
                } else {
                    tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
                }
                results.push((job.reply, r));
            }
            tx.commit()?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                for (reply, r) in results {
                    if let Ok(op) = &r {
                        for c in apply::changes_of(op) {
                            let _ = changes.send(c);
                        }
                    }
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                (self.next_origin_seq, self.last_hlc) = saved;
                tracing::error!(error = %e, "store commit failed");
                let msg = e.to_string();
                for (reply, _) in results {
                    let _ = reply.send(Err(StoreError::Other(format!("commit failed: {msg}"))));
                }
            }
        }
    }
}
