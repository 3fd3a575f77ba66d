//! Messages: the `messages` table (one row per message instance in a mailbox: UID,
//! MODSEQ, body blob, flags, the delivery's content key), the `Append`, `Flags` and
//! `Expunge` ops, delivery with its duplicate suppression, STORE, EXPUNGE, COPY/MOVE.
//! Also the `expunged` table: each expunged UID with the MODSEQ of its expunge, written
//! by the `Expunge` op's apply (so the standby holds the same rows), which QRESYNC's
//! VANISHED answers read ([`Store::vanished`]); rows are kept until their mailbox goes
//! or is renumbered. `expunge_floor` holds, for mailboxes that existed before the
//! table did, the MODSEQ below which that record is incomplete.
//!
//! Invariants: UIDs in a mailbox are assigned from its UIDNEXT and never reused; every
//! change gets the mailbox's next MODSEQ ([`mailboxes::next_modseq`]); flags are
//! canonical ([`normalize_flags`]); bodies are immutable blobs written before the op
//! that refers to them. A message delivered again within [`DUPLICATE_WINDOW_S`] (same
//! [`content_key`]) is acknowledged without a second copy.

use crate::store::schema::Cached;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::op::{NewMessage, Op};
use super::types::{BlobId, MessageId};
use super::{Result, Store, StoreError, mailboxes, new_id, now};

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

/// How long a delivery is remembered for duplicate suppression (see [`Store::deliver`]).
pub const DUPLICATE_WINDOW_S: i64 = 600;

/// The hash of a message as its sender sent it: without the first header field when
/// that is our own trace header (`Received: ... (clusterd) ...`), which differs
/// between two deliveries of the same message, and without a `Date:` field right
/// after it (the one SMTP submission adds to a message that lacks it, dated at each
/// attempt; a client's own Date there is left out alike, its Message-ID still names
/// the message). None for a message without a Message-ID: identical bulk messages
/// without one (load generators, some scripts) are distinct deliveries, not retries.
pub fn content_key(raw: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    content_key_start(raw).map(|start| hex::encode(Sha256::digest(&raw[start..])))
}

/// Where [`content_key`]'s hash of `raw` starts, or None when the message has no
/// Message-ID. Looks only at the header section, so a body written in pieces can pass
/// its first piece when that holds the whole header (the part after a header that
/// does not fit is taken as body).
pub fn content_key_start(raw: &[u8]) -> Option<usize> {
    let mut start = 0;
    if raw.starts_with(b"Received:")
        && let Some(end) = first_field_end(raw)
        && raw[..end].windows(10).any(|w| w == b"(clusterd)")
    {
        start = end;
        let rest = &raw[end..];
        if rest.len() >= 5
            && rest[..5].eq_ignore_ascii_case(b"date:")
            && let Some(end) = first_field_end(rest)
        {
            start += end;
        }
    }
    let rest = &raw[start..];
    let head_end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(rest.len());
    let has_id = rest[..head_end]
        .split(|b| *b == b'\n')
        .any(|l| l.len() >= 11 && l[..11].eq_ignore_ascii_case(b"message-id:"));
    has_id.then_some(start)
}

/// The end of the first header field of `raw` (after its CRLF): the first CRLF not
/// followed by a folding space or tab.
fn first_field_end(raw: &[u8]) -> Option<usize> {
    (0..raw.len().saturating_sub(1)).find_map(|i| {
        (raw[i] == b'\r' && raw[i + 1] == b'\n' && !matches!(raw.get(i + 2), Some(b' ' | b'\t')))
            .then_some(i + 2)
    })
}

// ------------------------------------------------------------------ SQL

/// Applies a message op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::Append { messages } => {
            for m in messages {
                let seen = m.flags.iter().any(|f| f == "\\Seen");
                conn.exec(
                    "INSERT INTO messages (id, mailbox, uid, modseq, blob, size, internal_date, flags, seen, content_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        m.id,
                        m.mailbox,
                        m.uid,
                        m.modseq as i64,
                        m.blob,
                        m.size as i64,
                        m.internal_date,
                        m.flags.join(" "),
                        seen,
                        m.content_key
                    ],
                )?;
                conn.exec(
                    "UPDATE mailboxes SET uidnext = max(uidnext, ?2 + 1),
                     highest_modseq = max(highest_modseq, ?3) WHERE id = ?1",
                    params![m.mailbox, m.uid, m.modseq as i64],
                )?;
            }
        }
        Op::Flags { mailbox, updates } => {
            for u in updates {
                let seen = u.flags.iter().any(|f| f == "\\Seen");
                conn.exec(
                    "UPDATE messages SET flags = ?3, modseq = ?4, seen = ?5 WHERE mailbox = ?1 AND uid = ?2",
                    params![mailbox, u.uid, u.flags.join(" "), u.modseq as i64, seen],
                )?;
                conn.exec(
                    "UPDATE mailboxes SET highest_modseq = max(highest_modseq, ?2) WHERE id = ?1",
                    params![mailbox, u.modseq as i64],
                )?;
            }
        }
        Op::Expunge {
            mailbox,
            uids,
            modseq,
        } => {
            for uid in uids {
                let gone = conn.exec(
                    "DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2",
                    params![mailbox, uid],
                )?;
                if gone > 0 {
                    conn.exec(
                        "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
                        params![mailbox, uid, *modseq as i64],
                    )?;
                }
            }
            if !uids.is_empty() {
                conn.exec(
                    "UPDATE mailboxes SET highest_modseq = max(highest_modseq, ?2) WHERE id = ?1",
                    params![mailbox, *modseq as i64],
                )?;
            }
        }
        _ => {}
    }
    Ok(())
}

const COLS: &str = "id, uid, modseq, blob, size, internal_date, flags";

fn message_row(r: &Row) -> rusqlite::Result<MessageMeta> {
    let flags: String = r.get(6)?;
    Ok(MessageMeta {
        id: r.get(0)?,
        uid: r.get(1)?,
        modseq: r.get::<_, i64>(2)? as u64,
        blob: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        internal_date: r.get(5)?,
        flags: flags.split_whitespace().map(str::to_string).collect(),
    })
}

/// All messages of a mailbox, in UID order.
pub(super) fn of_mailbox(conn: &Connection, mailbox: &str) -> Result<Vec<MessageMeta>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM messages WHERE mailbox = ?1 ORDER BY uid"
    ))?;
    let rows = st.query_map([mailbox], message_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// See [`Store::messages_changed`].
pub(super) fn changed(
    conn: &Connection,
    mailbox: &str,
    from_uid: u32,
    changed_since: u64,
) -> Result<Vec<MessageMeta>> {
    // Two index searches (new UIDs; older messages changed since): `uid >= ?2 OR
    // modseq > ?3` in one WHERE made SQLite walk the whole mailbox (3.8 ms at 20,000
    // messages, run by every IMAP refresh and every delivery's webmail warm-up).
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM messages WHERE mailbox = ?1 AND uid >= ?2 \
         UNION ALL \
         SELECT {COLS} FROM messages INDEXED BY messages_modseq \
         WHERE mailbox = ?1 AND modseq > ?3 AND uid < ?2 ORDER BY uid"
    ))?;
    // MODSEQs are SQLite integers: a bound above i64::MAX (callers pass u64::MAX for
    // "none changed") must stay the largest, not wrap to -1 and match every row.
    let changed_since = i64::try_from(changed_since).unwrap_or(i64::MAX);
    let rows = st.query_map(params![mailbox, from_uid, changed_since], message_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The messages among `uids` that exist, in UID order.
pub(super) fn by_uids(conn: &Connection, mailbox: &str, uids: &[u32]) -> Result<Vec<MessageMeta>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM messages WHERE mailbox = ?1 AND uid = ?2"
    ))?;
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len());
    for uid in sorted {
        if let Some(m) = st
            .query_row(params![mailbox, uid], message_row)
            .optional()?
        {
            out.push(m);
        }
    }
    Ok(out)
}

/// Forgets the expunge record of a mailbox (deleted, or renumbered by a merge so its
/// old UIDs name nothing).
pub(super) fn forget_expunged(conn: &Connection, mailbox: &str) -> Result<()> {
    conn.exec("DELETE FROM expunged WHERE mailbox = ?1", [mailbox])?;
    conn.exec("DELETE FROM expunge_floor WHERE mailbox = ?1", [mailbox])?;
    Ok(())
}

/// UIDs expunged from a mailbox after a MODSEQ (QRESYNC's VANISHED (EARLIER)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vanished {
    /// In ascending order.
    pub uids: Vec<u32>,
    /// False when `since` is below what the record covers (a mailbox older than the
    /// record): some expunges after `since` may be missing, and the caller must treat
    /// every UID it asks about that no longer exists as expunged (RFC 7162 3.2.5.1).
    pub complete: bool,
}

/// See [`Store::vanished`].
pub(super) fn vanished(conn: &Connection, mailbox: &str, since: u64) -> Result<Vanished> {
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(
        "SELECT uid FROM expunged WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid",
    )?;
    let uids = st
        .query_map(params![mailbox, since], |r| r.get(0))?
        .collect::<Result<Vec<u32>, _>>()?;
    let floor: i64 = conn
        .row(
            "SELECT modseq FROM expunge_floor WHERE mailbox = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    Ok(Vanished {
        uids,
        complete: since >= floor,
    })
}

/// The id of the message at (`mailbox`, `uid`).
pub(super) fn id_at(conn: &Connection, mailbox: &str, uid: u32) -> Result<Option<String>> {
    Ok(conn
        .row(
            "SELECT id FROM messages WHERE mailbox = ?1 AND uid = ?2",
            params![mailbox, uid],
            |r| r.get(0),
        )
        .optional()?)
}

impl Store {
    /// All messages of a mailbox in UID order (the IMAP session's view is built from this).
    pub async fn messages(&self, mailbox: &str) -> Result<Vec<MessageMeta>> {
        let mailbox = mailbox.to_string();
        self.read(move |conn| of_mailbox(conn, &mailbox)).await
    }

    /// The message `uid` of `mailbox`, if it exists.
    pub async fn message(&self, mailbox: &str, uid: u32) -> Result<Option<MessageMeta>> {
        let mailbox = mailbox.to_string();
        self.read(move |conn| Ok(by_uids(conn, &mailbox, &[uid])?.pop()))
            .await
    }

    /// The messages among `uids` that exist, in UID order.
    pub async fn messages_by_uids(&self, mailbox: &str, uids: &[u32]) -> Result<Vec<MessageMeta>> {
        let (mailbox, uids) = (mailbox.to_string(), uids.to_vec());
        self.read(move |conn| by_uids(conn, &mailbox, &uids)).await
    }

    /// Messages with UID >= `from_uid`, or whose MODSEQ > `changed_since`.
    pub async fn messages_changed(
        &self,
        mailbox: &str,
        from_uid: u32,
        changed_since: u64,
    ) -> Result<Vec<MessageMeta>> {
        let mailbox = mailbox.to_string();
        self.read(move |conn| changed(conn, &mailbox, from_uid, changed_since))
            .await
    }

    /// The UIDs expunged from `mailbox` with a MODSEQ above `since`.
    pub async fn vanished(&self, mailbox: &str, since: u64) -> Result<Vanished> {
        let mailbox = mailbox.to_string();
        self.read(move |conn| vanished(conn, &mailbox, since)).await
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
        self.append_blob(mailbox, blob, size, flags, internal_date)
            .await
    }

    /// [`Store::append`] of a body already stored (a large APPEND literal written as
    /// it arrived, see [`super::BlobSink`]).
    pub async fn append_blob(
        &self,
        mailbox: &str,
        blob: BlobId,
        size: u64,
        flags: &[String],
        internal_date: Option<i64>,
    ) -> Result<Appended> {
        self.check_space()?;
        let mailbox = mailbox.to_string();
        let flags = normalize_flags(flags);
        let date = internal_date.unwrap_or_else(now);
        let uidvalidity = Arc::new(Mutex::new(0));
        let uidvalidity_in = uidvalidity.clone();
        let op = self
            .commit(move |conn| {
                let info = mailboxes::counters(conn, &mailbox)?
                    .ok_or_else(|| StoreError::NoSuchMailbox(mailbox.clone()))?;
                *uidvalidity_in.lock().unwrap() = info.uidvalidity;
                Ok(Op::Append {
                    messages: vec![NewMessage {
                        id: new_id(),
                        mailbox,
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
        let uidvalidity = *uidvalidity.lock().unwrap();
        Ok(Appended {
            uidvalidity,
            uid: messages[0].uid,
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
        let body = self.put_body(raw).await?;
        self.deliver_blob(&body, accounts).await
    }

    /// Writes a message's body file and computes its content key: what
    /// [`Store::deliver_blob`] and [`Store::enqueue_blob`] take.
    pub async fn put_body(&self, raw: Vec<u8>) -> Result<super::StoredBlob> {
        let key = content_key(&raw);
        let (blob, size) = self.put_blob(raw).await?;
        Ok(super::StoredBlob { blob, size, key })
    }

    /// [`Store::deliver`] of a body already stored (SMTP DATA written as it arrived;
    /// its key computed on the way, see [`super::BlobSink::key_from`]). Every account
    /// gets the same file.
    pub async fn deliver_blob(&self, body: &super::StoredBlob, accounts: &[String]) -> Result<()> {
        self.check_space()?;
        let (blob, size, key) = (body.blob.clone(), body.size, body.key.clone());
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
                let info = mailboxes::counters(conn, &id)?
                    .ok_or_else(|| StoreError::NoSuchMailbox(id.clone()))?;
                let duplicate: bool = match &key {
                    Some(key) => conn.row(
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
        Ok(self
            .store_flags_unchanged_since(mailbox, uids, mode, flags, None)
            .await?
            .0)
    }

    /// [`Store::store_flags`] with CONDSTORE's UNCHANGEDSINCE (RFC 7162 3.1.3): a
    /// message whose MODSEQ is above `unchanged_since` is left alone and its UID
    /// returned second (checked in the same transaction as the change).
    pub async fn store_flags_unchanged_since(
        &self,
        mailbox: &str,
        uids: &[u32],
        mode: FlagMode,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<FlagUpdate>, Vec<u32>)> {
        let modified = Arc::new(Mutex::new(Vec::new()));
        let modified_in = modified.clone();
        let mailbox = mailbox.to_string();
        let uids = uids.to_vec();
        let flags = normalize_flags(flags);
        let op = self
            .commit(move |conn| {
                let mut modseq = mailboxes::next_modseq(conn, &mailbox)?;
                let mut updates = Vec::new();
                let mut modified = Vec::new();
                for m in by_uids(conn, &mailbox, &uids)? {
                    if unchanged_since.is_some_and(|u| m.modseq > u) {
                        modified.push(m.uid);
                        continue;
                    }
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
                *modified_in.lock().unwrap() = modified;
                Ok(Op::Flags { mailbox, updates })
            })
            .await?;
        let Op::Flags { updates, .. } = op else {
            unreachable!()
        };
        let modified = std::mem::take(&mut *modified.lock().unwrap());
        Ok((updates, modified))
    }

    /// EXPUNGE: removes messages flagged `\Deleted` (only among `uids` when given).
    /// Returns the removed UIDs in ascending order.
    pub async fn expunge(&self, mailbox: &str, uids: Option<&[u32]>) -> Result<Vec<u32>> {
        let mailbox = mailbox.to_string();
        let only = uids.map(|u| u.to_vec());
        let op = self
            .commit(move |conn| {
                let modseq = mailboxes::next_modseq(conn, &mailbox)?;
                let all = of_mailbox(conn, &mailbox)?;
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
        // A copy adds rows, not files; still new mail a full disk refuses.
        self.check_space()?;
        let src = src.to_string();
        let dest = dest.to_string();
        let uids = uids.to_vec();
        let picked = Arc::new(Mutex::new(Vec::new()));
        let picked_in = picked.clone();
        let op = self
            .commit(move |conn| {
                let dinfo = mailboxes::counters(conn, &dest)?
                    .ok_or_else(|| StoreError::NoSuchMailbox(dest.clone()))?;
                let msgs = by_uids(conn, &src, &uids)?;
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
}
