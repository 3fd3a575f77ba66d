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
