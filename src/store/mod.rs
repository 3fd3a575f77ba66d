//! The store: the only owner of durable state (accounts, mailboxes, messages, the
//! outbound queue, settings such as the TLS key, web content, address books).
//! Front-ends call this typed API ([`Store`]) and never touch SQL or files.
//!
//! Layout: this file opens the store (holding `data_dir/lock`: one process at a time)
//! and holds the two ways in, `Store::read` (a
//! pooled read-only connection) and `Store::commit` (resolve an op in the writer's
//! transaction). Each concern is a vertical slice, one file holding its types, name
//! validation, SQL, the code applying its ops and its own `impl Store` block:
//! - `accounts`: accounts, password hashing and checking, the default mailboxes.
//! - `mailboxes`: mailboxes (ids, names, UIDVALIDITY, counters) and subscriptions.
//! - `messages`: messages in mailboxes: append, delivery (with duplicate
//!   suppression), flags, expunge, copy/move; the record of expunged UIDs (QRESYNC).
//! - `queue`: the outbound SMTP queue.
//! - `content`: the content area (site and zone files).
//! - `settings`: key/value settings, last writer wins by clock.
//! - `contacts`: the address book of each account.
//! - `events`: the monitor's history of events (the newest 1,000) and the counts
//!   `/metrics` shows.
//! - `blobs`: the body files all of them refer to.
//! - `gc`: the sweep of body files nothing refers to any more.
//! - `replica`: replication's side: the op log as a peer reads it, applying a
//!   peer's ops, marks, the split-brain [`merge`], [`snapshot`]s, compaction, digest.
//!
//! The machinery they share: [`op`] (the op vocabulary), `apply` (dispatches an op to
//! its slice, and names the [`Change`]s it causes), `writer` (the writer thread),
//! `schema` (tables and connections), [`types`] (ids, [`Change`], [`StoreError`]).
//!
//! Implementation notes
//! - Every change is an [`Op`] committed by one writer thread: the op is
//!   resolved (UIDs, MODSEQs, ids assigned), applied and appended to the op log in the
//!   same SQLite transaction (WAL, `synchronous=FULL`). Concurrent callers are group
//!   committed: one transaction and one fsync for all ops waiting at that moment; each
//!   op runs in its own savepoint, so one failing op does not undo the others.
//! - Message bodies are immutable content-addressed files under `blobs/`, written and
//!   fsynced (file and directory) by the caller's blocking task before the op that
//!   references them is submitted; a body that arrives in pieces is written as it
//!   comes through a [`BlobSink`] (SMTP DATA, large IMAP APPEND literals).
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
pub mod verify;

pub use accounts::{Account, DEFAULT_MAILBOXES, Quota, normalize_account};
pub use blobs::{BlobSink, Staged, StoredBlob};
pub use contacts::Contact;
pub use content::{ContentEntry, normalize_content_path};
pub use events::{Counts, Event, EventFilter, KEEP_EVENTS};
pub use gc::GcReport;
pub use hasher::running as hashes_running;
pub use mailboxes::{MailboxInfo, SpecialUse, normalize_mailbox_name};
pub use messages::{
    Appended, Copied, DUPLICATE_WINDOW_S, FlagMode, FlagUpdate, MessageMeta, Vanished,
    canonical_flag, content_key, content_key_start, normalize_flags,
};
pub use queue::{QueueEntry, QueueRcpt, RcptState};
pub use replica::{merge, snapshot};
pub use types::*;
mod accounts;
mod apply;
mod authcache;
mod blobs;
mod contacts;
mod content;
mod events;
mod gc;
mod hasher;
mod mailboxes;
mod messages;
mod queue;
mod replica;
mod schema;
mod settings;
mod space;
mod writer;

pub use space::{StoreHealth, free_bytes};

pub use writer::{CommitBarrier, Committed};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::broadcast;

use op::Op;

/// Handle to the store; cheap to clone, shared by every front-end.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// `data_dir/lock`, held (flock) while the store is open.
    _lock: std::fs::File,
    dir: PathBuf,
    node: String,
    writer: writer::WriterHandle,
    readers: Mutex<Vec<Connection>>,
    changes: broadcast::Sender<Change>,
    writable: AtomicBool,
    barrier: writer::Barrier,
    space: space::Space,
    /// `store.default_quota_mb` (0: none).
    default_quota_mb: std::sync::atomic::AtomicU64,
}

/// Takes `data_dir/lock` exclusively (flock, released when the process ends however
/// it ends) and writes this process's id into it; [`StoreError::InUse`] naming the
/// holder if another process has it. Two processes on one store would each take the
/// next op sequence and drop the other's temporary files.
fn lock(data_dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(data_dir.join("lock"))?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.rewind()?;
            write!(f, "{}", std::process::id())?;
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            Err(StoreError::InUse {
                dir: data_dir.display().to_string(),
                pid: pid.trim().parse().ok(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` for node `node`; fails with
    /// [`StoreError::InUse`] while another process has it open.
    pub fn open(data_dir: &Path, node: &str) -> Result<Store> {
        std::fs::create_dir_all(data_dir)?;
        // First: nothing below (the clean-up of `blobs/tmp` included) may touch a
        // store another process has open.
        let lock = lock(data_dir)?;
        blobs::prepare(data_dir)?;
        let db_path = data_dir.join("store.db");
        let conn = schema::open_rw(&db_path).map_err(|e| match e {
            StoreError::Db(e) => schema::corrupt_or(e, &db_path),
            e => e,
        })?;
        schema::quick_check(&conn, &db_path)?;
        let (changes, _) = broadcast::channel(4096);
        let barrier = writer::Barrier::default();
        let space = space::Space::new(data_dir);
        let writer = writer::spawn(
            conn,
            node.to_string(),
            changes.clone(),
            barrier.clone(),
            space.writer_alive.clone(),
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                _lock: lock,
                dir: data_dir.to_path_buf(),
                node: node.to_string(),
                writer,
                readers: Mutex::new(Vec::new()),
                changes,
                writable: AtomicBool::new(true),
                barrier,
                space,
                default_quota_mb: Default::default(),
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
        .map_err(StoreError::ReadTask)?
    }

    /// Resolves an op inside the writer's transaction and commits it durably.
    async fn commit<F>(&self, resolve: F) -> Result<Op>
    where
        F: FnOnce(&Connection) -> Result<Op> + Send + 'static,
    {
        if !self.is_writable() {
            return Err(StoreError::ReadOnly);
        }
        self.inner
            .writer
            .submit(Box::new(resolve))
            .await
            .map_err(|e| self.note_failure(e))
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
