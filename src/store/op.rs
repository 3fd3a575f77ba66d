//! The op log's vocabulary. An `Op` carries everything needed to apply it (ids, UIDs,
//! MODSEQs, hashes already assigned), so applying it is deterministic: the active node
//! resolves and applies it, and a replica will apply the same op verbatim.

use serde::{Deserialize, Serialize};

use super::mailboxes::SpecialUse;
use super::messages::FlagUpdate;
use super::queue::{QueueEntry, QueueRcpt};
use super::types::{BlobId, MailboxId, MessageId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMailbox {
    pub id: MailboxId,
    pub account: String,
    pub name: String,
    pub uidvalidity: u32,
    pub special_use: Option<SpecialUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub id: MessageId,
    pub mailbox: MailboxId,
    pub uid: u32,
    pub modseq: u64,
    pub blob: BlobId,
    pub size: u64,
    pub internal_date: i64,
    pub flags: Vec<String>,
    /// For a delivery: a hash of the message as the client sent it (our trace header
    /// left out), so that a retried delivery is recognised ([`crate::store::Store::deliver`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    AccountCreate {
        name: String,
        full_name: String,
        password_hash: String,
        mailboxes: Vec<NewMailbox>,
    },
    AccountPassword {
        name: String,
        password_hash: String,
    },
    AccountDelete {
        name: String,
    },
    /// An account's own storage quota in MiB (0: none); `None`: the node's default.
    AccountQuota {
        name: String,
        quota_mb: Option<u64>,
    },
    MailboxCreate {
        mailbox: NewMailbox,
    },
    /// Renames a mailbox and its children: (id, new full name) pairs.
    MailboxRename {
        account: String,
        renames: Vec<(MailboxId, String)>,
    },
    MailboxDelete {
        id: MailboxId,
    },
    Subscribe {
        account: String,
        name: String,
        subscribed: bool,
    },
    Append {
        messages: Vec<NewMessage>,
    },
    Flags {
        mailbox: MailboxId,
        updates: Vec<FlagUpdate>,
    },
    Expunge {
        mailbox: MailboxId,
        uids: Vec<u32>,
        modseq: u64,
    },
    QueueAdd {
        entry: QueueEntry,
    },
    QueueUpdate {
        id: String,
        attempts: u32,
        next_attempt: i64,
        last_error: Option<String>,
        /// The recipients' states after the attempt (absent in ops from before
        /// per-recipient state).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipients: Option<Vec<QueueRcpt>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warned: Option<bool>,
    },
    QueueRemove {
        id: String,
    },
    SettingSet {
        key: String,
        value: String,
    },
    /// A file of the content area (web site, zones) set to the given blob.
    ContentPut {
        path: String,
        blob: BlobId,
        size: u64,
        mtime: i64,
        /// The blob the path held before, if any: replication sends the new one as a
        /// block delta against it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<BlobId>,
    },
    ContentDelete {
        path: String,
    },
    /// An address-book entry added or replaced (by its id).
    ContactPut {
        contact: super::contacts::Contact,
    },
    /// An address-book entry removed.
    ContactDelete {
        account: String,
        id: String,
    },
    /// A mailbox gets a new UIDVALIDITY (a split-brain merge had to renumber it), so
    /// clients drop what they cached of it (RFC 3501 2.3.1.1).
    UidValidity {
        mailbox: MailboxId,
        uidvalidity: u32,
    },
    /// Events added to the monitor's history (`store::events`).
    Events {
        events: Vec<super::events::Event>,
    },
    /// Several ops that commit or fail together (e.g. MOVE = append + expunge).
    Batch {
        ops: Vec<Op>,
    },
}

impl Op {
    /// The body files this op refers to (they must exist before it is applied).
    pub fn blobs(&self) -> Vec<&BlobId> {
        match self {
            Op::Append { messages } => messages.iter().map(|m| &m.blob).collect(),
            Op::QueueAdd { entry } => vec![&entry.blob],
            Op::ContentPut { blob, .. } => vec![blob],
            Op::Batch { ops } => ops.iter().flat_map(|o| o.blobs()).collect(),
            _ => Vec::new(),
        }
    }
}

/// One entry of the op log as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOp {
    /// Position in this node's log (monotonic, gap-free for local commits).
    pub seq: u64,
    /// Node that first committed the op, and its sequence number there.
    pub origin: String,
    pub origin_seq: u64,
    /// Hybrid logical clock: physical milliseconds << 16 | logical counter.
    pub hlc: u64,
    pub op: Op,
}
