//! Plain data types the store hands out and takes in. No I/O here.

use serde::{Deserialize, Serialize};

/// Stable id of a mailbox (never its name, never reused): renames and merges refer to it.
pub type MailboxId = String;
/// Stable id of one message instance in one mailbox.
pub type MessageId = String;
/// Hex SHA-256 of a message body file (content address).
pub type BlobId = String;

/// One message's metadata; the body is fetched separately by `blob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub id: MessageId,
    pub uid: u32,
    pub modseq: u64,
    pub blob: BlobId,
    pub size: u64,
    /// Unix seconds.
    pub internal_date: i64,
    /// Canonical flags: system flags as `\Seen`, `\Answered`, `\Flagged`, `\Deleted`,
    /// `\Draft`; keywords as given. Sorted, no duplicates.
    pub flags: Vec<String>,
}

impl MessageMeta {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// How `store_flags` combines the given flags with the present ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlagMode {
    Replace,
    Add,
    Remove,
}

/// Result of an APPEND: what UIDPLUS reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: u32,
}

/// Result of COPY/MOVE: what UIDPLUS reports (COPYUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub uidvalidity: u32,
    pub src_uids: Vec<u32>,
    pub dst_uids: Vec<u32>,
}

/// A flag change on one message, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagUpdate {
    pub uid: u32,
    pub flags: Vec<String>,
    pub modseq: u64,
}

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

/// A file in the content area (site files under `www/`, zone files under `zones/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentEntry {
    /// Relative path, `/`-separated, no `..`, e.g. `zones/cluster.com.ec.zone`.
    pub path: String,
    pub blob: BlobId,
    pub size: u64,
    /// Unix seconds of the last change.
    pub mtime: i64,
}

/// Broadcast after every commit so sessions (IMAP IDLE, webmail) can refresh.
/// A receiver should re-read the mailbox rather than trust the payload for state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Messages were added to a mailbox.
    Appended { mailbox: MailboxId, uids: Vec<u32> },
    /// Flags changed.
    Flags { mailbox: MailboxId, uids: Vec<u32> },
    /// Messages were removed.
    Expunged { mailbox: MailboxId, uids: Vec<u32> },
    /// The mailbox list of an account changed (create, delete, rename, subscribe).
    Mailboxes { account: String },
    /// Accounts were added, changed or removed.
    Accounts,
    /// The outbound queue changed.
    Queue,
    /// A file of the content area changed or was removed.
    Content { path: String },
}

impl Change {
    pub fn mailbox(&self) -> Option<&str> {
        match self {
            Change::Appended { mailbox, .. }
            | Change::Flags { mailbox, .. }
            | Change::Expunged { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }
}

/// Errors the store reports to protocol front-ends. Front-ends map these to protocol
/// replies (e.g. `NotFound` → IMAP `NO [NONEXISTENT]`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such account: {0}")]
    NoSuchAccount(String),
    #[error("account already exists: {0}")]
    AccountExists(String),
    #[error("no such mailbox: {0}")]
    NoSuchMailbox(String),
    #[error("mailbox already exists: {0}")]
    MailboxExists(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("the store is read-only on this node")]
    ReadOnly,
    #[error("storage failure: {0}")]
    Io(#[from] std::io::Error),
    #[error("database failure: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Canonical spelling of a flag: system flags get their RFC 3501 case, keywords keep theirs.
pub fn canonical_flag(flag: &str) -> String {
    const SYSTEM: [&str; 6] = [
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "\\Recent",
    ];
    for s in SYSTEM {
        if s.eq_ignore_ascii_case(flag) {
            return s.to_string();
        }
    }
    flag.to_string()
}

/// Sorted, de-duplicated canonical flags (`\Recent` is session state and is dropped).
pub fn normalize_flags<S: AsRef<str>>(flags: &[S]) -> Vec<String> {
    let mut out: Vec<String> = flags
        .iter()
        .map(|f| canonical_flag(f.as_ref()))
        .filter(|f| f != "\\Recent" && !f.is_empty())
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    out
}
