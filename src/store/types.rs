//! Types every slice of the store shares: ids, the change notification, the error
//! type. (Each slice's own types live in its file.) No I/O here.

/// Stable id of a mailbox (never its name, never reused): renames and merges refer to it.
pub type MailboxId = String;
/// Stable id of one message instance in one mailbox.
pub type MessageId = String;
/// Hex SHA-256 of a message body file (content address).
pub type BlobId = String;

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
/// replies (e.g. `NoSuchMailbox` → IMAP `NO [NONEXISTENT]`); the messages (`Display`)
/// reach clients and logs as they are.
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
    /// The account's storage quota would be exceeded (RFC 9208 OVERQUOTA).
    #[error("quota exceeded for {0}")]
    OverQuota(String),
    /// Another process holds the store (`data_dir/lock`).
    #[error(
        "the store in {dir} is in use by another clusterd process{} (a running node, or a command that opened it); only one may open it",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { dir: String, pid: Option<u32> },
    /// Free space on data_dir's file system is below `store.min_free_mb`, or a
    /// write failed for lack of space (see `space`): new mail is refused, reads go on.
    #[error("insufficient system storage")]
    NoSpace,
    /// `PRAGMA quick_check` (or opening) found store.db damaged; the message names
    /// the file and the recovery.
    #[error("{0}")]
    Corrupt(String),
    #[error("storage failure: {0}")]
    Io(#[from] std::io::Error),
    #[error("database failure: {0}")]
    Db(#[from] rusqlite::Error),
    /// A submission with neither local nor remote recipients.
    #[error("no recipients")]
    NoRecipients,
    /// A snapshot this node cannot install.
    #[error(transparent)]
    BadSnapshot(#[from] super::snapshot::BadSnapshot),
    /// A logged op that does not decode (damaged, or written by an incompatible
    /// version).
    #[error("{0}")]
    CorruptLog(serde_json::Error),
    /// A value that could not be encoded as JSON for the log.
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("password hashing failed: {0}")]
    PasswordHashing(argon2::password_hash::Error),
    /// The writer thread is gone: nothing can be committed.
    #[error("store writer stopped")]
    WriterStopped,
    /// The transaction of a batch failed (its error is the message: local and
    /// replicated ops of the batch each get a copy).
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// A merge ran but the transaction holding it failed.
    #[error("merge not committed")]
    MergeNotCommitted,
    /// A snapshot was installed but the transaction holding it failed.
    #[error("snapshot not committed")]
    SnapshotNotCommitted,
    /// Bookkeeping (compaction, the resync flag) ran but its transaction failed.
    #[error("not committed")]
    MaintenanceNotCommitted,
    /// The blocking task of a read panicked or was cancelled.
    #[error("read task failed: {0}")]
    ReadTask(tokio::task::JoinError),
    /// The blocking task writing a blob panicked or was cancelled.
    #[error("blob task failed: {0}")]
    BlobTask(tokio::task::JoinError),
    /// Hashing or checking a password failed on the password pool (a panic there).
    #[error("the password hashing pool failed")]
    PasswordTask,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
