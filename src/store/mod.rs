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
pub use mailboxes::{MailboxInfo, SpecialUse, normalize_mailbox_name};
pub use types::*;
mod accounts;
mod apply;
mod blobs;
mod contacts;
mod mailboxes;
pub mod merge;
mod schema;
pub mod snapshot;
mod writer;

pub use writer::CommitBarrier;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::broadcast;

use op::{LoggedOp, NewMessage, Op};

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

    /// Writes a body file durably and returns its address and size.
    pub async fn put_blob(&self, raw: Vec<u8>) -> Result<(BlobId, u64)> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || blobs::write(&dir, &raw))
            .await
            .map_err(|e| StoreError::Other(format!("blob task failed: {e}")))?
    }

    /// The bytes of a stored message body.
    pub async fn read_blob(&self, blob: &str) -> Result<Vec<u8>> {
        Ok(tokio::fs::read(blobs::path(&self.inner.dir, blob)).await?)
    }

    /// Synchronous variant for code already on a blocking thread.
    pub fn read_blob_blocking(&self, blob: &str) -> Result<Vec<u8>> {
        Ok(std::fs::read(blobs::path(&self.inner.dir, blob))?)
    }

    /// The first `max` bytes of a stored message body (enough for its header and
    /// MIME structure; the webmail's message list reads this). Blocking.
    pub fn read_blob_prefix_blocking(&self, blob: &str, max: usize) -> Result<Vec<u8>> {
        use std::io::Read;
        let f = std::fs::File::open(blobs::path(&self.inner.dir, blob))?;
        let mut out = Vec::new();
        f.take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    // ---------------------------------------------------------------- messages

    /// All messages of a mailbox in UID order (the IMAP session's view is built from this).
    pub async fn messages(&self, mailbox: &str) -> Result<Vec<MessageMeta>> {
        let mailbox = mailbox.to_string();
        self.read(move |conn| apply::messages(conn, &mailbox)).await
    }

    /// Messages with UID >= `from_uid`, or whose MODSEQ > `changed_since`.
    pub async fn messages_changed(
        &self,
        mailbox: &str,
        from_uid: u32,
        changed_since: u64,
    ) -> Result<Vec<MessageMeta>> {
        let mailbox = mailbox.to_string();
        self.read(move |conn| apply::messages_changed(conn, &mailbox, from_uid, changed_since))
            .await
    }

    /// Appends a message to a mailbox (IMAP APPEND, a webmail Sent copy, a draft).
    pub async fn append(
        &self,
        mailbox: &str,
        raw: Vec<u8>,
        flags: &[String],
        internal_date: Option<i64>,
    ) -> Result<Appended> {
        let (blob, size) = self.put_blob(raw).await?;
        let mailbox = mailbox.to_string();
        let flags = normalize_flags(flags);
        let date = internal_date.unwrap_or_else(now);
        let op = self
            .commit(move |conn| {
                let info = mailboxes::by_id(conn, &mailbox)?
                    .ok_or_else(|| StoreError::NoSuchMailbox(mailbox.clone()))?;
                Ok(Op::Append {
                    messages: vec![NewMessage {
                        id: new_id(),
                        mailbox: info.id,
                        uid: info.uidnext,
                        modseq: info.highest_modseq + 1,
                        blob,
                        size,
                        internal_date: date,
                        flags,
                        content_key: None,
                    }],
                })
            })
            .await?;
        let Op::Append { messages } = op else {
            unreachable!()
        };
        let m = &messages[0];
        let uidvalidity = self
            .mailbox_by_id(&m.mailbox)
            .await?
            .map(|i| i.uidvalidity)
            .unwrap_or(0);
        Ok(Appended {
            uidvalidity,
            uid: m.uid,
        })
    }

    /// Local delivery: one message into the INBOX of each account, atomically.
    /// Returns only after the message is durable (so SMTP may answer 250).
    ///
    /// A delivery with a Message-ID identical to one the same INBOX took in the last
    /// [`DUPLICATE_WINDOW_S`] seconds (same bytes but for our own trace header: a
    /// client retrying a message whose 250 was lost, typically with a node that died
    /// after the peer already held the message) is acknowledged without a second copy.
    pub async fn deliver(&self, raw: Vec<u8>, accounts: &[String]) -> Result<()> {
        let key = content_key(&raw);
        let (blob, size) = self.put_blob(raw).await?;
        let accounts: Vec<String> = accounts.iter().map(|a| a.to_ascii_lowercase()).collect();
        let date = now();
        self.commit(move |conn| {
            let mut messages = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for acc in accounts {
                if !seen.insert(acc.clone()) {
                    continue;
                }
                let id = mailboxes::id_of(conn, &acc, "INBOX")?
                    .ok_or_else(|| StoreError::NoSuchAccount(acc.clone()))?;
                let info = mailboxes::by_id(conn, &id)?
                    .ok_or_else(|| StoreError::NoSuchMailbox(id.clone()))?;
                let duplicate: bool = match &key {
                    Some(key) => conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM messages WHERE mailbox = ?1 AND content_key = ?2 AND internal_date >= ?3)",
                        params![id, key, date - DUPLICATE_WINDOW_S],
                        |r| r.get(0),
                    )?,
                    None => false,
                };
                if duplicate {
                    tracing::info!(account = %acc, "store: a delivery identical to a recent one; no second copy");
                    continue;
                }
                messages.push(NewMessage {
                    id: new_id(),
                    mailbox: id,
                    uid: info.uidnext,
                    modseq: info.highest_modseq + 1,
                    blob: blob.clone(),
                    size,
                    internal_date: date,
                    flags: Vec::new(),
                    content_key: key.clone(),
                });
            }
            Ok(Op::Append { messages })
        })
        .await
        .map(|_| ())
    }

    /// STORE: changes flags of the given UIDs (absent UIDs are skipped) and returns the
    /// messages whose flags actually changed, with their new flags and MODSEQ.
    pub async fn store_flags(
        &self,
        mailbox: &str,
        uids: &[u32],
        mode: FlagMode,
        flags: &[String],
    ) -> Result<Vec<FlagUpdate>> {
        let mailbox = mailbox.to_string();
        let uids = uids.to_vec();
        let flags = normalize_flags(flags);
        let op = self
            .commit(move |conn| {
                let mut modseq = mailboxes::next_modseq(conn, &mailbox)?;
                let mut updates = Vec::new();
                for m in apply::messages_by_uids(conn, &mailbox, &uids)? {
                    let new = match mode {
                        FlagMode::Replace => flags.clone(),
                        FlagMode::Add => {
                            let mut f = m.flags.clone();
                            f.extend(flags.iter().cloned());
                            normalize_flags(&f)
                        }
                        FlagMode::Remove => m
                            .flags
                            .iter()
                            .filter(|f| !flags.iter().any(|g| g.eq_ignore_ascii_case(f)))
                            .cloned()
                            .collect(),
                    };
                    if new != m.flags {
                        updates.push(FlagUpdate {
                            uid: m.uid,
                            flags: new,
                            modseq,
                        });
                        modseq += 1;
                    }
                }
                Ok(Op::Flags { mailbox, updates })
            })
            .await?;
        let Op::Flags { updates, .. } = op else {
            unreachable!()
        };
        Ok(updates)
    }

    /// EXPUNGE: removes messages flagged `\Deleted` (only among `uids` when given).
    /// Returns the removed UIDs in ascending order.
    pub async fn expunge(&self, mailbox: &str, uids: Option<&[u32]>) -> Result<Vec<u32>> {
        let mailbox = mailbox.to_string();
        let only = uids.map(|u| u.to_vec());
        let op = self
            .commit(move |conn| {
                let modseq = mailboxes::next_modseq(conn, &mailbox)?;
                let all = apply::messages(conn, &mailbox)?;
                let uids: Vec<u32> = all
                    .iter()
                    .filter(|m| m.has_flag("\\Deleted"))
                    .filter(|m| only.as_ref().is_none_or(|o| o.contains(&m.uid)))
                    .map(|m| m.uid)
                    .collect();
                Ok(Op::Expunge {
                    mailbox,
                    uids,
                    modseq,
                })
            })
            .await?;
        let Op::Expunge { uids, .. } = op else {
            unreachable!()
        };
        Ok(uids)
    }

    /// COPY (or MOVE when `remove_source`): copies the given UIDs to `dest`, in UID order.
    pub async fn copy(
        &self,
        src: &str,
        uids: &[u32],
        dest: &str,
        remove_source: bool,
    ) -> Result<Copied> {
        let src = src.to_string();
        let dest = dest.to_string();
        let uids = uids.to_vec();
        let picked = Arc::new(Mutex::new(Vec::new()));
        let picked_in = picked.clone();
        let op = self
            .commit(move |conn| {
                let dinfo = mailboxes::by_id(conn, &dest)?
                    .ok_or_else(|| StoreError::NoSuchMailbox(dest.clone()))?;
                let msgs = apply::messages_by_uids(conn, &src, &uids)?;
                let modseq = dinfo.highest_modseq + 1;
                let src_uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
                let copies: Vec<NewMessage> = msgs
                    .into_iter()
                    .zip(dinfo.uidnext..)
                    .map(|(m, uid)| NewMessage {
                        id: new_id(),
                        mailbox: dest.clone(),
                        uid,
                        modseq,
                        blob: m.blob,
                        size: m.size,
                        internal_date: m.internal_date,
                        flags: m.flags,
                        content_key: None,
                    })
                    .collect();
                let mut ops = vec![Op::Append { messages: copies }];
                if remove_source && !src_uids.is_empty() {
                    ops.push(Op::Expunge {
                        mailbox: src.clone(),
                        uids: src_uids.clone(),
                        modseq: mailboxes::next_modseq(conn, &src)?,
                    });
                }
                *picked_in.lock().unwrap() = src_uids;
                Ok(Op::Batch { ops })
            })
            .await?;
        let Op::Batch { ops } = op else {
            unreachable!()
        };
        let Some(Op::Append { messages }) = ops.first() else {
            unreachable!()
        };
        let dst_uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
        let uidvalidity = match messages.first() {
            Some(m) => self
                .mailbox_by_id(&m.mailbox)
                .await?
                .map(|i| i.uidvalidity)
                .unwrap_or(0),
            None => 0,
        };
        let src_uids = std::mem::take(&mut *picked.lock().unwrap());
        Ok(Copied {
            uidvalidity,
            src_uids,
            dst_uids,
        })
    }

    // ---------------------------------------------------------------- queue

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
        self.read(apply::queue).await
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

    // ---------------------------------------------------------------- settings

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let key = key.to_string();
        let value = value.to_string();
        self.commit(move |_| Ok(Op::SettingSet { key, value }))
            .await
            .map(|_| ())
    }

    // ---------------------------------------------------------------- content

    /// Sets a file of the content area (site files, zone files). Unchanged content is
    /// not re-committed.
    pub async fn put_content(&self, path: &str, data: Vec<u8>) -> Result<ContentEntry> {
        let path = normalize_content_path(path)?;
        let (blob, size) = self.put_blob(data).await?;
        if let Some(old) = self.content_entry(&path).await?
            && old.blob == blob
        {
            return Ok(old);
        }
        let mtime = now();
        self.commit(move |conn| {
            let base = apply::content_blob(conn, &path)?.filter(|b| *b != blob);
            Ok(Op::ContentPut {
                path,
                blob,
                size,
                mtime,
                base,
            })
        })
        .await
        .map(|op| match op {
            Op::ContentPut {
                path,
                blob,
                size,
                mtime,
                ..
            } => ContentEntry {
                path,
                blob,
                size,
                mtime,
            },
            _ => unreachable!(),
        })
    }

    pub async fn delete_content(&self, path: &str) -> Result<()> {
        let path = normalize_content_path(path)?;
        self.commit(move |_| Ok(Op::ContentDelete { path }))
            .await
            .map(|_| ())
    }

    /// The entry for one content path.
    pub async fn content_entry(&self, path: &str) -> Result<Option<ContentEntry>> {
        let path = normalize_content_path(path)?;
        self.read(move |conn| {
            Ok(apply::content(conn, &path)?
                .into_iter()
                .find(|e| e.path == path))
        })
        .await
    }

    /// The bytes of one content file.
    pub async fn content(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.content_entry(path).await? {
            Some(e) => Ok(Some(self.read_blob(&e.blob).await?)),
            None => Ok(None),
        }
    }

    /// Content entries whose path starts with `prefix` (e.g. `zones/`), by path.
    pub async fn content_list(&self, prefix: &str) -> Result<Vec<ContentEntry>> {
        let prefix = prefix.to_string();
        self.read(move |conn| apply::content(conn, &prefix)).await
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

    /// Which of `blobs` this node does not hold.
    pub fn missing_blobs<'a>(&self, blobs: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        blobs
            .into_iter()
            .filter(|b| !blobs::path(&self.inner.dir, b).exists())
            .cloned()
            .collect()
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

/// How long a delivery is remembered for duplicate suppression (see [`Store::deliver`]).
pub const DUPLICATE_WINDOW_S: i64 = 600;

/// The hash of a message as its sender sent it: without the first header field when
/// that is our own trace header (`Received: ... (clusterd) ...`), which differs
/// between two deliveries of the same message. None for a message without a
/// Message-ID: identical bulk messages without one (load generators, some scripts)
/// are distinct deliveries, not retries.
pub fn content_key(raw: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut rest = raw;
    if raw.starts_with(b"Received:") {
        // The field ends at the first CRLF not followed by a folding space or tab.
        let mut end = None;
        let mut i = 0;
        while i + 1 < raw.len() {
            if raw[i] == b'\r'
                && raw[i + 1] == b'\n'
                && !matches!(raw.get(i + 2), Some(b' ' | b'\t'))
            {
                end = Some(i + 2);
                break;
            }
            i += 1;
        }
        if let Some(end) = end
            && raw[..end].windows(10).any(|w| w == b"(clusterd)")
        {
            rest = &raw[end..];
        }
    }
    let head_end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(rest.len());
    let has_id = rest[..head_end]
        .split(|b| *b == b'\n')
        .any(|l| l.len() >= 11 && l[..11].eq_ignore_ascii_case(b"message-id:"));
    has_id.then(|| hex::encode(Sha256::digest(rest)))
}

/// Content paths are relative, `/`-separated, without empty, `.` or `..` segments.
pub fn normalize_content_path(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/');
    let ok = !p.is_empty()
        && p.len() <= 1024
        && !p.chars().any(|c| c.is_control() || c == '\\')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(p.to_string())
    } else {
        Err(StoreError::InvalidName(format!("content path {path:?}")))
    }
}

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
