//! Mailboxes and subscriptions: the `mailboxes` table (id, account, hierarchical name,
//! UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, special use), the `subscriptions` table, and
//! the `MailboxCreate`, `MailboxRename`, `MailboxDelete`, `Subscribe` and `UidValidity`
//! ops.
//!
//! Invariants: a mailbox is addressed by a stable random id (renames and merges refer
//! to it), its name is unique within its account and normalised
//! ([`normalize_mailbox_name`]: `/` separates levels, `INBOX` in any case is `INBOX`);
//! UIDVALIDITY values are unique and increasing on this node ([`new_uidvalidity`]);
//! a mailbox's counters only grow (UIDNEXT, HIGHESTMODSEQ). INBOX cannot be deleted,
//! nor a mailbox with children; renaming INBOX moves its messages to the new mailbox.
//! Subscriptions are names, which need not exist (RFC 3501 6.3.6); a rename carries a
//! subscription along.

use crate::store::schema::Cached;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::op::{NewMailbox, NewMessage, Op};
use super::types::MailboxId;
use super::{Result, Store, StoreError, messages, new_id, now};

/// The IMAP special-use attribute of a mailbox (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    /// The attribute as IMAP writes it, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

/// A mailbox and its counters as of the moment it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub id: MailboxId,
    pub account: String,
    /// Full hierarchical name, `/` as the separator, `INBOX` always upper case.
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub messages: u32,
    pub unseen: u32,
}

/// Mailbox names: UTF-8, `/` separates levels, no empty levels, `INBOX` in any case is
/// `INBOX` (also as the first level).
pub fn normalize_mailbox_name(name: &str) -> Result<String> {
    let bad = |why: &str| Err(StoreError::InvalidName(format!("mailbox {name:?}: {why}")));
    if name.is_empty() || name.len() > 512 {
        return bad("empty or too long");
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return bad("contains a control or wildcard character");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return bad("empty hierarchy level");
    }
    if parts[0].eq_ignore_ascii_case("INBOX") {
        parts[0] = "INBOX";
    }
    Ok(parts.join("/"))
}

/// UIDVALIDITY for a new mailbox: seconds since the epoch, made unique and increasing.
pub(super) fn new_uidvalidity() -> u32 {
    static LAST: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let t = now().clamp(1, u32::MAX as i64) as u32;
    let mut prev = LAST.load(Ordering::SeqCst);
    loop {
        let next = t.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

// ------------------------------------------------------------------ SQL

fn special_to_str(s: Option<SpecialUse>) -> Option<String> {
    s.map(|s| serde_json::to_string(&s).unwrap_or_default())
}

fn special_from_str(s: Option<String>) -> Option<SpecialUse> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// Inserts a new mailbox, subscribed.
pub(super) fn insert(conn: &Connection, m: &NewMailbox) -> Result<()> {
    conn.exec(
        "INSERT INTO mailboxes (id, account, name, uidvalidity, uidnext, highest_modseq, special_use)
         VALUES (?1, ?2, ?3, ?4, 1, 1, ?5)",
        params![m.id, m.account, m.name, m.uidvalidity, special_to_str(m.special_use)],
    )?;
    conn.exec(
        "INSERT OR IGNORE INTO subscriptions (account, name) VALUES (?1, ?2)",
        params![m.account, m.name],
    )?;
    Ok(())
}

/// Removes a mailbox and its messages.
fn delete_rows(conn: &Connection, id: &str) -> Result<()> {
    conn.exec("DELETE FROM messages WHERE mailbox = ?1", [id])?;
    super::messages::forget_expunged(conn, id)?;
    conn.exec("DELETE FROM mailboxes WHERE id = ?1", [id])?;
    Ok(())
}

/// Removes every mailbox of an account with its messages, and its subscriptions.
pub(super) fn delete_of_account(conn: &Connection, account: &str) -> Result<()> {
    let ids: Vec<String> = {
        let mut st = conn.prepare("SELECT id FROM mailboxes WHERE account = ?1")?;
        st.query_map([account], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for id in ids {
        delete_rows(conn, &id)?;
    }
    conn.exec("DELETE FROM subscriptions WHERE account = ?1", [account])?;
    Ok(())
}

/// Applies a mailbox op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::MailboxCreate { mailbox } => insert(conn, mailbox)?,
        Op::MailboxRename { account, renames } => {
            for (id, new_name) in renames {
                let old: Option<String> = conn
                    .row("SELECT name FROM mailboxes WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                conn.exec(
                    "UPDATE mailboxes SET name = ?2 WHERE id = ?1",
                    params![id, new_name],
                )?;
                if let Some(old) = old {
                    let n = conn.exec(
                        "DELETE FROM subscriptions WHERE account = ?1 AND name = ?2",
                        params![account, old],
                    )?;
                    if n > 0 {
                        conn.exec(
                            "INSERT OR IGNORE INTO subscriptions (account, name) VALUES (?1, ?2)",
                            params![account, new_name],
                        )?;
                    }
                }
            }
        }
        Op::MailboxDelete { id } => delete_rows(conn, id)?,
        Op::Subscribe {
            account,
            name,
            subscribed,
        } => {
            if *subscribed {
                conn.exec(
                    "INSERT OR IGNORE INTO subscriptions (account, name) VALUES (?1, ?2)",
                    params![account, name],
                )?;
            } else {
                conn.exec(
                    "DELETE FROM subscriptions WHERE account = ?1 AND name = ?2",
                    params![account, name],
                )?;
            }
        }
        Op::UidValidity {
            mailbox,
            uidvalidity,
        } => {
            conn.exec(
                "UPDATE mailboxes SET uidvalidity = ?2 WHERE id = ?1",
                params![mailbox, uidvalidity],
            )?;
            super::messages::forget_expunged(conn, mailbox)?;
        }
        _ => {}
    }
    Ok(())
}

const COLS: &str =
    "m.id, m.account, m.name, m.uidvalidity, m.uidnext, m.highest_modseq, m.special_use,
    EXISTS (SELECT 1 FROM subscriptions s WHERE s.account = m.account AND s.name = m.name),
    (SELECT count(*) FROM messages x WHERE x.mailbox = m.id),
    (SELECT count(*) FROM messages x WHERE x.mailbox = m.id AND x.seen = 0)";

fn mailbox_row(r: &Row) -> rusqlite::Result<MailboxInfo> {
    Ok(MailboxInfo {
        id: r.get(0)?,
        account: r.get(1)?,
        name: r.get(2)?,
        uidvalidity: r.get(3)?,
        uidnext: r.get(4)?,
        highest_modseq: r.get::<_, i64>(5)? as u64,
        special_use: special_from_str(r.get(6)?),
        subscribed: r.get(7)?,
        messages: r.get(8)?,
        unseen: r.get(9)?,
    })
}

/// The mailboxes of an account (only the one named `name` when given), INBOX first.
pub(super) fn of_account(
    conn: &Connection,
    account: &str,
    name: Option<&str>,
) -> Result<Vec<MailboxInfo>> {
    let sql = format!(
        "SELECT {COLS} FROM mailboxes m WHERE m.account = ?1 AND (?2 IS NULL OR m.name = ?2)
         ORDER BY m.name <> 'INBOX', m.name"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params![account, name], mailbox_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn by_id(conn: &Connection, id: &str) -> Result<Option<MailboxInfo>> {
    let sql = format!("SELECT {COLS} FROM mailboxes m WHERE m.id = ?1");
    Ok(conn.row(&sql, [id], mailbox_row).optional()?)
}

/// What a new message in a mailbox needs: its UIDVALIDITY, UIDNEXT and highest
/// MODSEQ. Unlike [`by_id`] it counts nothing (two scans of the mailbox's messages,
/// which made every delivery into a large INBOX slower on the writer thread).
pub(super) struct Counters {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
}

pub(super) fn counters(conn: &Connection, id: &str) -> Result<Option<Counters>> {
    Ok(conn
        .row(
            "SELECT uidvalidity, uidnext, highest_modseq FROM mailboxes WHERE id = ?1",
            [id],
            |r| {
                Ok(Counters {
                    uidvalidity: r.get(0)?,
                    uidnext: r.get(1)?,
                    highest_modseq: r.get::<_, i64>(2)? as u64,
                })
            },
        )
        .optional()?)
}

pub(super) fn id_of(conn: &Connection, account: &str, name: &str) -> Result<Option<String>> {
    Ok(conn
        .row(
            "SELECT id FROM mailboxes WHERE account = ?1 AND name = ?2",
            params![account, name],
            |r| r.get(0),
        )
        .optional()?)
}

/// The MODSEQ the next change in this mailbox gets.
pub(super) fn next_modseq(conn: &Connection, mailbox: &str) -> Result<u64> {
    let m: Option<i64> = conn
        .row(
            "SELECT highest_modseq FROM mailboxes WHERE id = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()?;
    m.map(|m| m as u64 + 1)
        .ok_or_else(|| StoreError::NoSuchMailbox(mailbox.to_string()))
}

impl Store {
    pub async fn list_mailboxes(&self, account: &str) -> Result<Vec<MailboxInfo>> {
        let account = account.to_ascii_lowercase();
        self.read(move |conn| of_account(conn, &account, None))
            .await
    }

    /// Looks a mailbox up by name (`INBOX` matched case-insensitively).
    pub async fn mailbox(&self, account: &str, name: &str) -> Result<Option<MailboxInfo>> {
        let account = account.to_ascii_lowercase();
        let name = normalize_mailbox_name(name)?;
        self.read(move |conn| Ok(of_account(conn, &account, Some(&name))?.pop()))
            .await
    }

    pub async fn mailbox_by_id(&self, id: &str) -> Result<Option<MailboxInfo>> {
        let id = id.to_string();
        self.read(move |conn| by_id(conn, &id)).await
    }

    pub async fn create_mailbox(&self, account: &str, name: &str) -> Result<MailboxInfo> {
        let account = account.to_ascii_lowercase();
        let name = normalize_mailbox_name(name)?;
        let acc = account.clone();
        let op = self
            .commit(move |conn| {
                if !super::accounts::exists(conn, &acc)? {
                    return Err(StoreError::NoSuchAccount(acc));
                }
                if id_of(conn, &acc, &name)?.is_some() {
                    return Err(StoreError::MailboxExists(name));
                }
                Ok(Op::MailboxCreate {
                    mailbox: NewMailbox {
                        id: new_id(),
                        account: acc,
                        name,
                        uidvalidity: new_uidvalidity(),
                        special_use: None,
                    },
                })
            })
            .await?;
        let Op::MailboxCreate { mailbox } = op else {
            unreachable!()
        };
        self.mailbox_by_id(&mailbox.id)
            .await?
            .ok_or(StoreError::NoSuchMailbox(mailbox.name))
    }

    /// Deletes a mailbox and its messages. INBOX and mailboxes with children are refused.
    pub async fn delete_mailbox(&self, account: &str, name: &str) -> Result<()> {
        let account = account.to_ascii_lowercase();
        let name = normalize_mailbox_name(name)?;
        self.commit(move |conn| {
            if name == "INBOX" {
                return Err(StoreError::NotAllowed("INBOX cannot be deleted".into()));
            }
            let id = id_of(conn, &account, &name)?
                .ok_or_else(|| StoreError::NoSuchMailbox(name.clone()))?;
            let prefix = format!("{name}/");
            let children: i64 = conn.row(
                "SELECT count(*) FROM mailboxes WHERE account = ?1 AND substr(name, 1, ?2) = ?3",
                params![account, prefix.len() as i64, prefix],
                |r| r.get(0),
            )?;
            if children > 0 {
                return Err(StoreError::NotAllowed(format!(
                    "{name} has child mailboxes; delete them first"
                )));
            }
            Ok(Op::MailboxDelete { id })
        })
        .await
        .map(|_| ())
    }

    /// Renames a mailbox with its children. Renaming INBOX moves its messages to the
    /// new mailbox and leaves INBOX empty (RFC 3501 6.3.5).
    pub async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<()> {
        let account = account.to_ascii_lowercase();
        let from = normalize_mailbox_name(from)?;
        let to = normalize_mailbox_name(to)?;
        self.commit(move |conn| {
            let id = id_of(conn, &account, &from)?
                .ok_or_else(|| StoreError::NoSuchMailbox(from.clone()))?;
            if id_of(conn, &account, &to)?.is_some() {
                return Err(StoreError::MailboxExists(to));
            }
            if to.starts_with(&format!("{from}/")) {
                return Err(StoreError::InvalidName(
                    "cannot rename a mailbox into itself".into(),
                ));
            }
            if from == "INBOX" {
                let new = NewMailbox {
                    id: new_id(),
                    account: account.clone(),
                    name: to,
                    uidvalidity: new_uidvalidity(),
                    special_use: None,
                };
                let msgs = messages::of_mailbox(conn, &id)?;
                let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
                let copies = msgs
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| NewMessage {
                        id: new_id(),
                        mailbox: new.id.clone(),
                        uid: i as u32 + 1,
                        modseq: 1,
                        blob: m.blob,
                        size: m.size,
                        internal_date: m.internal_date,
                        flags: m.flags,
                        content_key: None,
                    })
                    .collect::<Vec<_>>();
                let modseq = next_modseq(conn, &id)?;
                let mut ops = vec![Op::MailboxCreate { mailbox: new }];
                if !copies.is_empty() {
                    ops.push(Op::Append { messages: copies });
                    ops.push(Op::Expunge {
                        mailbox: id,
                        uids,
                        modseq,
                    });
                }
                return Ok(Op::Batch { ops });
            }
            let prefix = format!("{from}/");
            let mut renames = vec![(id, to.clone())];
            let mut st = conn.prepare(
                "SELECT id, name FROM mailboxes WHERE account = ?1 AND substr(name, 1, ?2) = ?3",
            )?;
            let kids = st.query_map(params![account, prefix.len() as i64, prefix], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for kid in kids {
                let (kid_id, kid_name) = kid?;
                renames.push((kid_id, format!("{to}/{}", &kid_name[prefix.len()..])));
            }
            Ok(Op::MailboxRename { account, renames })
        })
        .await
        .map(|_| ())
    }

    /// IMAP SUBSCRIBE/UNSUBSCRIBE; a name need not exist (RFC 3501 6.3.6).
    pub async fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> Result<()> {
        let account = account.to_ascii_lowercase();
        let name = normalize_mailbox_name(name)?;
        self.commit(move |_| {
            Ok(Op::Subscribe {
                account,
                name,
                subscribed,
            })
        })
        .await
        .map(|_| ())
    }

    /// Subscribed names of an account (existing or not).
    pub async fn subscriptions(&self, account: &str) -> Result<Vec<String>> {
        let account = account.to_ascii_lowercase();
        self.read(move |conn| {
            let mut st =
                conn.prepare("SELECT name FROM subscriptions WHERE account = ?1 ORDER BY name")?;
            let rows = st.query_map([account], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }
}
