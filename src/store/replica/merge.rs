//! The split-brain merge (ARCHITECTURE.md, "The op log and the split-brain merge"):
//! after both nodes were active, the node that stays active (the survivor) replays the
//! other node's divergent ops (those it does not hold) on its own state as new local
//! ops, so its history stands and the other node then copies it (a snapshot).
//!
//! Rules
//! - Appends are a union: a message the survivor does not hold is appended; one it
//!   holds (same id, or a delivery with the same content key in the same mailbox, e.g.
//!   a client that retried on the other node) is not appended twice. A message keeps
//!   its UID when that is still free (at or above the survivor's UIDNEXT, the
//!   survivor appended nothing there meanwhile). Otherwise both sides' messages
//!   appended since they parted get new UIDs above either side's last one (the
//!   survivor's first, then the peer's) and the mailbox a new UIDVALIDITY: a UID a
//!   client learnt from either side then names the same message or none, never
//!   another one, so clients that re-check UIDs by Message-ID (mbsync) recover.
//! - Flags: last writer wins per message by hybrid logical clock, against the
//!   survivor's own divergent flag changes.
//! - Expunges win: a message either side expunged is gone.
//! - Settings, content files, contacts, passwords and quotas: last writer wins by clock.
//! - The monitor's history is a union: events the survivor lacks (by id) are added.
//! - Mailboxes are matched by id, then by name (both sides created "Projects").
//! - Every replayed op runs in its own savepoint: one that cannot apply (its mailbox
//!   was deleted on the survivor, say) is skipped and counted, not fatal.

use crate::store::schema::Cached;
use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::store::messages::FlagUpdate;
use crate::store::op::{LoggedOp, NewMessage, Op};
use crate::store::{Result, accounts, content, events, mailboxes, messages, queue};

/// What a merge did, for the log and `clusterd status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeReport {
    /// The peer's divergent ops that were replayed.
    pub ops: usize,
    pub messages_added: usize,
    /// Messages the survivor already held.
    pub duplicates: usize,
    pub flag_changes: usize,
    /// Flag changes older than the survivor's own (last writer wins).
    pub flag_changes_lost: usize,
    pub expunged: usize,
    /// Ops that no longer applied (their target is gone here) or lost by clock.
    pub skipped: usize,
    /// `account/mailbox` names that got a new UIDVALIDITY.
    pub renumbered: Vec<String>,
}

/// The survivor's own changes since the peer last held its log, by what they touch,
/// with the latest clock of each.
#[derive(Default)]
struct Ours {
    /// Per mailbox, the messages the survivor appended since the split, in order.
    appended: HashMap<String, Vec<String>>,
    /// By message id (UIDs may change in the merge).
    flags: HashMap<String, u64>,
    settings: HashMap<String, u64>,
    content: HashMap<String, u64>,
    contacts: HashMap<String, u64>,
    passwords: HashMap<String, u64>,
    quotas: HashMap<String, u64>,
}

impl Ours {
    fn note(&mut self, tx: &Connection, op: &Op, hlc: u64) -> Result<()> {
        fn up<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u64>, k: K, hlc: u64) {
            let e = m.entry(k).or_insert(0);
            *e = (*e).max(hlc);
        }
        match op {
            Op::Append { messages } => {
                for m in messages {
                    self.appended
                        .entry(m.mailbox.clone())
                        .or_default()
                        .push(m.id.clone());
                }
            }
            Op::Flags { mailbox, updates } => {
                for u in updates {
                    if let Some(id) = messages::id_at(tx, mailbox, u.uid)? {
                        up(&mut self.flags, id, hlc);
                    }
                }
            }
            Op::SettingSet { key, .. } => up(&mut self.settings, key.clone(), hlc),
            Op::ContentPut { path, .. } | Op::ContentDelete { path } => {
                up(&mut self.content, path.clone(), hlc)
            }
            Op::ContactPut { contact } => up(&mut self.contacts, contact.id.clone(), hlc),
            Op::ContactDelete { id, .. } => up(&mut self.contacts, id.clone(), hlc),
            Op::AccountPassword { name, .. } => up(&mut self.passwords, name.clone(), hlc),
            Op::AccountQuota { name, .. } => up(&mut self.quotas, name.clone(), hlc),
            Op::Batch { ops } => {
                for o in ops {
                    self.note(tx, o, hlc)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the survivor changed `key` in `map` later than `hlc`.
    fn newer<K: std::hash::Hash + Eq>(map: &HashMap<K, u64>, key: &K, hlc: u64) -> bool {
        map.get(key).is_some_and(|h| *h > hlc)
    }
}

struct Merge<'a> {
    tx: &'a Connection,
    ours: Ours,
    /// The peer's mailbox id → ours (same id unless matched by name).
    mailboxes: HashMap<String, String>,
    /// The peer's (mailbox, UID) of a message it appended → the message's id here.
    messages: HashMap<(String, u32), String>,
    /// Per mailbox of the peer, the highest UID its divergent ops appended.
    their_max_uid: HashMap<String, u32>,
    renumber: BTreeSet<String>,
    report: MergeReport,
}

/// Replays `theirs` (the peer's divergent ops, in its log order) on `tx` through
/// `commit`, which applies and logs one local op (false: it did not apply). `peer_marks`
/// are the peer's per-origin high-water marks: the survivor's ops above them are its
/// own divergent ones, whose clocks decide last-writer-wins.
pub fn merge(
    tx: &Connection,
    theirs: &[LoggedOp],
    peer_marks: &HashMap<String, u64>,
    commit: &mut dyn FnMut(&Connection, Op) -> Result<bool>,
) -> Result<MergeReport> {
    let mut m = Merge {
        tx,
        ours: Ours::default(),
        mailboxes: HashMap::new(),
        messages: HashMap::new(),
        their_max_uid: HashMap::new(),
        renumber: BTreeSet::new(),
        report: MergeReport::default(),
    };
    for l in theirs {
        note_uids(&l.op, &mut m.their_max_uid);
    }
    for l in divergent_ours(tx, peer_marks)? {
        m.ours.note(tx, &l.op, l.hlc)?;
    }
    for l in theirs {
        m.report.ops += 1;
        m.replay(&l.op, l.hlc, commit)?;
    }
    let now = crate::store::now().max(0) as u32;
    for id in std::mem::take(&mut m.renumber) {
        let Some(info) = mailboxes::by_id(tx, &id)? else {
            continue;
        };
        let uidvalidity = (info.uidvalidity.saturating_add(1)).max(now);
        if commit(
            tx,
            Op::UidValidity {
                mailbox: id,
                uidvalidity,
            },
        )? {
            m.report
                .renumbered
                .push(format!("{}/{}", info.account, info.name));
        }
    }
    // The peer's ops are held now (replayed as ours): a later channel must not offer
    // them again.
    for l in theirs {
        tx.exec(
            "INSERT INTO marks (origin, origin_seq) VALUES (?1, ?2)
             ON CONFLICT (origin) DO UPDATE SET origin_seq = max(origin_seq, excluded.origin_seq)",
            params![l.origin, l.origin_seq as i64],
        )?;
    }
    Ok(m.report)
}

/// The survivor's logged ops the peer does not hold.
fn divergent_ours(tx: &Connection, peer_marks: &HashMap<String, u64>) -> Result<Vec<LoggedOp>> {
    let origins: Vec<String> = tx
        .prepare("SELECT DISTINCT origin FROM oplog")?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let mut start: Option<u64> = None;
    for o in origins {
        let mark = peer_marks.get(&o).copied().unwrap_or(0);
        if let Some(f) = super::first_seq_after(tx, &o, mark)? {
            start = Some(start.map_or(f, |s| s.min(f)));
        }
    }
    let Some(start) = start else {
        return Ok(Vec::new());
    };
    Ok(super::ops_since(tx, start - 1, usize::MAX)?
        .into_iter()
        .filter(|l| peer_marks.get(&l.origin).is_none_or(|m| l.origin_seq > *m))
        .collect())
}

impl Merge<'_> {
    fn mailbox(&self, theirs: &str) -> String {
        self.mailboxes
            .get(theirs)
            .cloned()
            .unwrap_or_else(|| theirs.to_string())
    }

    fn mailbox_exists(&self, id: &str) -> Result<bool> {
        Ok(mailboxes::by_id(self.tx, id)?.is_some())
    }

    /// Where the peer's (mailbox, UID) is here, if the message still exists.
    fn locate(&self, their_mailbox: &str, uid: u32) -> Result<Option<(String, u32)>> {
        if let Some(id) = self.messages.get(&(their_mailbox.to_string(), uid)) {
            return Ok(self
                .tx
                .row(
                    "SELECT mailbox, uid FROM messages WHERE id = ?1",
                    [id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)),
                )
                .optional()?);
        }
        // A message both sides held before they parted has the same UID on both.
        let mb = self.mailbox(their_mailbox);
        let held: bool = self.tx.row(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE mailbox = ?1 AND uid = ?2)",
            params![mb, uid],
            |r| r.get(0),
        )?;
        Ok(held.then_some((mb, uid)))
    }

    fn replay(
        &mut self,
        op: &Op,
        hlc: u64,
        commit: &mut dyn FnMut(&Connection, Op) -> Result<bool>,
    ) -> Result<()> {
        let tx = self.tx;
        match op {
            Op::Batch { ops } => {
                for o in ops {
                    self.replay(o, hlc, commit)?;
                }
            }
            Op::AccountCreate {
                name, mailboxes, ..
            } => {
                if accounts::exists(tx, name)? {
                    for mb in mailboxes {
                        if let Some(id) = mailboxes::id_of(tx, name, &mb.name)? {
                            self.mailboxes.insert(mb.id.clone(), id);
                        }
                    }
                } else {
                    self.put(commit, op.clone())?;
                }
            }
            Op::AccountPassword { name, .. } => {
                if accounts::exists(tx, name)? && !Ours::newer(&self.ours.passwords, name, hlc) {
                    self.put(commit, op.clone())?;
                } else {
                    self.report.skipped += 1;
                }
            }
            Op::AccountQuota { name, .. } => {
                if accounts::exists(tx, name)? && !Ours::newer(&self.ours.quotas, name, hlc) {
                    self.put(commit, op.clone())?;
                } else {
                    self.report.skipped += 1;
                }
            }
            Op::AccountDelete { name } | Op::Subscribe { account: name, .. } => {
                if accounts::exists(tx, name)? {
                    self.put(commit, op.clone())?;
                }
            }
            Op::MailboxCreate { mailbox } => {
                if self.mailbox_exists(&mailbox.id)? || !accounts::exists(tx, &mailbox.account)? {
                    return Ok(());
                }
                match mailboxes::id_of(tx, &mailbox.account, &mailbox.name)? {
                    Some(id) => {
                        self.mailboxes.insert(mailbox.id.clone(), id);
                    }
                    None => {
                        self.put(commit, op.clone())?;
                    }
                }
            }
            Op::MailboxRename { account, renames } => {
                let mut keep = Vec::new();
                for (id, name) in renames {
                    let id = self.mailbox(id);
                    if self.mailbox_exists(&id)? && mailboxes::id_of(tx, account, name)?.is_none() {
                        keep.push((id, name.clone()));
                    }
                }
                if keep.is_empty() {
                    self.report.skipped += 1;
                } else {
                    self.put(
                        commit,
                        Op::MailboxRename {
                            account: account.clone(),
                            renames: keep,
                        },
                    )?;
                }
            }
            Op::MailboxDelete { id } => {
                let id = self.mailbox(id);
                if self.mailbox_exists(&id)? {
                    self.put(commit, Op::MailboxDelete { id })?;
                }
            }
            Op::Append { messages } => {
                for msg in messages {
                    self.append(msg, commit)?;
                }
            }
            Op::Flags { mailbox, updates } => {
                for u in updates {
                    let Some((mb, uid)) = self.locate(mailbox, u.uid)? else {
                        self.report.skipped += 1;
                        continue;
                    };
                    let id = messages::id_at(tx, &mb, uid)?.unwrap_or_default();
                    if Ours::newer(&self.ours.flags, &id, hlc) {
                        self.report.flag_changes_lost += 1;
                        continue;
                    }
                    let modseq = mailboxes::next_modseq(tx, &mb)?;
                    if self.put(
                        commit,
                        Op::Flags {
                            mailbox: mb,
                            updates: vec![FlagUpdate {
                                uid,
                                flags: u.flags.clone(),
                                modseq,
                            }],
                        },
                    )? {
                        self.report.flag_changes += 1;
                    }
                }
            }
            Op::Expunge { mailbox, uids, .. } => {
                let mut by_mailbox: HashMap<String, Vec<u32>> = HashMap::new();
                for uid in uids {
                    if let Some((mb, uid)) = self.locate(mailbox, *uid)? {
                        by_mailbox.entry(mb).or_default().push(uid);
                    }
                }
                for (mb, uids) in by_mailbox {
                    let modseq = mailboxes::next_modseq(tx, &mb)?;
                    let n = uids.len();
                    if self.put(
                        commit,
                        Op::Expunge {
                            mailbox: mb,
                            uids,
                            modseq,
                        },
                    )? {
                        self.report.expunged += n;
                    }
                }
            }
            Op::QueueAdd { entry } => {
                if !queue::has(tx, &entry.id)? {
                    self.put(commit, op.clone())?;
                }
            }
            Op::QueueUpdate { id, .. } | Op::QueueRemove { id } => {
                if queue::has(tx, id)? {
                    self.put(commit, op.clone())?;
                }
            }
            Op::SettingSet { key, .. } => {
                if Ours::newer(&self.ours.settings, key, hlc) {
                    self.report.skipped += 1;
                } else {
                    self.put(commit, op.clone())?;
                }
            }
            Op::ContentPut { path, blob, .. } => {
                if Ours::newer(&self.ours.content, path, hlc) {
                    self.report.skipped += 1;
                } else {
                    // The delta base is what this node holds for the path now.
                    let mut op = op.clone();
                    if let Op::ContentPut { base, .. } = &mut op {
                        *base = content::blob_of(tx, path)?.filter(|b| b != blob);
                    }
                    self.put(commit, op)?;
                }
            }
            Op::ContentDelete { path } => {
                if Ours::newer(&self.ours.content, path, hlc) {
                    self.report.skipped += 1;
                } else {
                    self.put(commit, op.clone())?;
                }
            }
            Op::ContactPut { contact } => {
                if Ours::newer(&self.ours.contacts, &contact.id, hlc)
                    || !accounts::exists(tx, &contact.account)?
                {
                    self.report.skipped += 1;
                } else {
                    self.put(commit, op.clone())?;
                }
            }
            Op::ContactDelete { id, .. } => {
                if Ours::newer(&self.ours.contacts, id, hlc) {
                    self.report.skipped += 1;
                } else {
                    self.put(commit, op.clone())?;
                }
            }
            // Renumbering is the survivor's to decide (below), not replayed.
            Op::UidValidity { .. } => {}
            // The history is a union: events the survivor lacks are added.
            Op::Events { events } => {
                let mut missing = Vec::new();
                for e in events {
                    if !events::has(tx, &e.id)? {
                        missing.push(e.clone());
                    }
                }
                if !missing.is_empty() {
                    self.put(commit, Op::Events { events: missing })?;
                }
            }
        }
        Ok(())
    }

    /// Commits one replayed op; one that does not apply is counted as skipped.
    fn put(
        &mut self,
        commit: &mut dyn FnMut(&Connection, Op) -> Result<bool>,
        op: Op,
    ) -> Result<bool> {
        let done = commit(self.tx, op)?;
        if !done {
            self.report.skipped += 1;
        }
        Ok(done)
    }

    fn append(
        &mut self,
        msg: &NewMessage,
        commit: &mut dyn FnMut(&Connection, Op) -> Result<bool>,
    ) -> Result<()> {
        let tx = self.tx;
        let key = (msg.mailbox.clone(), msg.uid);
        let exists: bool = tx.row(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1)",
            [&msg.id],
            |r| r.get(0),
        )?;
        if exists {
            self.messages.insert(key, msg.id.clone());
            self.report.duplicates += 1;
            return Ok(());
        }
        let mb = self.mailbox(&msg.mailbox);
        let Some(info) = mailboxes::by_id(tx, &mb)? else {
            self.report.skipped += 1;
            return Ok(());
        };
        if let Some(ck) = &msg.content_key {
            let same: Option<String> = tx
                .row(
                    "SELECT id FROM messages WHERE mailbox = ?1 AND content_key = ?2",
                    params![mb, ck],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = same {
                self.messages.insert(key, id);
                self.report.duplicates += 1;
                return Ok(());
            }
        }
        let uid = if self.renumber.contains(&mb) {
            info.uidnext
        } else if msg.uid >= info.uidnext {
            msg.uid
        } else {
            self.renumber.insert(mb.clone());
            let floor = self
                .their_max_uid
                .get(&msg.mailbox)
                .map_or(0, |u| u.saturating_add(1));
            self.move_ours(&mb, floor.max(info.uidnext), commit)?
        };
        let modseq = mailboxes::next_modseq(tx, &mb)?;
        let new = NewMessage {
            mailbox: mb,
            uid,
            modseq,
            ..msg.clone()
        };
        if self.put(
            commit,
            Op::Append {
                messages: vec![new],
            },
        )? {
            self.messages.insert(key, msg.id.clone());
            self.report.messages_added += 1;
        }
        Ok(())
    }
}

impl Merge<'_> {
    /// Gives the survivor's messages appended to `mb` since the split new UIDs from
    /// `from` on (expunge + append of the same message, flags kept); returns the
    /// next free UID.
    fn move_ours(
        &mut self,
        mb: &str,
        from: u32,
        commit: &mut dyn FnMut(&Connection, Op) -> Result<bool>,
    ) -> Result<u32> {
        let tx = self.tx;
        let mut uid = from;
        let ids = self.ours.appended.get(mb).cloned().unwrap_or_default();
        for id in ids {
            let row = tx
                .row(
                    "SELECT uid, blob, size, internal_date, flags, content_key FROM messages
                     WHERE id = ?1 AND mailbox = ?2",
                    params![id, mb],
                    |r| {
                        Ok((
                            r.get::<_, u32>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, Option<String>>(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((old_uid, blob, size, internal_date, flags, content_key)) = row else {
                continue; // expunged or moved away since
            };
            let modseq = mailboxes::next_modseq(tx, mb)?;
            let moved = Op::Batch {
                ops: vec![
                    Op::Expunge {
                        mailbox: mb.to_string(),
                        uids: vec![old_uid],
                        modseq,
                    },
                    Op::Append {
                        messages: vec![NewMessage {
                            id: id.clone(),
                            mailbox: mb.to_string(),
                            uid,
                            modseq: modseq + 1,
                            blob,
                            size: size as u64,
                            internal_date,
                            flags: flags.split_whitespace().map(str::to_string).collect(),
                            content_key,
                        }],
                    },
                ],
            };
            if self.put(commit, moved)? {
                uid += 1;
            }
        }
        Ok(uid)
    }
}

/// Records, per mailbox, the highest UID the ops append.
fn note_uids(op: &Op, max: &mut HashMap<String, u32>) {
    match op {
        Op::Append { messages } => {
            for m in messages {
                let e = max.entry(m.mailbox.clone()).or_insert(0);
                *e = (*e).max(m.uid);
            }
        }
        Op::Batch { ops } => ops.iter().for_each(|o| note_uids(o, max)),
        _ => {}
    }
}
