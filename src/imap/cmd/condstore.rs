//! CONDSTORE and QRESYNC (RFC 7162) where they go beyond one command's items: SELECT
//! and EXAMINE with their parameters (`* OK [CLOSED]`, `* OK [HIGHESTMODSEQ n]` and
//! the QRESYNC answer: VANISHED (EARLIER) and FETCH of what changed since the client's
//! MODSEQ), enabling CONDSTORE, and the VANISHED (EARLIER) of UID FETCH (CHANGEDSINCE
//! n VANISHED). The MODSEQs and the record of expunged UIDs are the store's
//! (`store::messages`); FETCH MODSEQ/CHANGEDSINCE, STORE UNCHANGEDSINCE and SEARCH
//! MODSEQ are in `message`.

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::{CmdResult, Fail, mailbox_name};
use crate::imap::session::{Session, flags_fetch_line};

impl Session {
    /// Turns CONDSTORE on for the rest of the connection (RFC 7162 3.1: ENABLE, or a
    /// command that uses a MODSEQ). With a mailbox selected the client learns its
    /// HIGHESTMODSEQ at once, before the command's own responses (as Dovecot does).
    pub(in crate::imap) async fn enable_condstore(&mut self) -> Result<(), Fail> {
        if self.condstore {
            return Ok(());
        }
        self.condstore = true;
        if let Some(sel) = &self.selected
            && let Some(info) = self.srv.ctx.store.mailbox_by_id(&sel.id).await?
        {
            self.conn.line(&format!(
                "* OK [HIGHESTMODSEQ {}] Highest",
                info.highest_modseq.max(1)
            ));
        }
        Ok(())
    }

    /// SELECT/EXAMINE with RFC 7162 parameters around the plain `select`.
    pub(in crate::imap) async fn select_with(
        &mut self,
        mailbox: &Mailbox<'_>,
        read_only: bool,
        params: &[SelectParameter],
    ) -> CmdResult {
        let mut qresync = None;
        for p in params {
            match p {
                // The mailbox's HIGHESTMODSEQ follows in the SELECT's own answer.
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.qresync {
                        return Err(Fail::Bad("QRESYNC is not enabled (ENABLE QRESYNC)".into()));
                    }
                    qresync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids));
                }
            }
        }
        // RFC 7162 3.2.11: the boundary between the old mailbox's responses and the new.
        if self.selected.is_some() {
            self.conn.line("* OK [CLOSED] Previous mailbox closed");
        }
        // HIGHESTMODSEQ as it was before the view was read: never above what the
        // client is shown, so a change racing the SELECT is reported again, not lost.
        let store = self.srv.ctx.store.clone();
        let before = match mailbox_name(mailbox) {
            Ok(name) => store.mailbox(self.user(), &name).await.ok().flatten(),
            Err(_) => None,
        };
        let done = self.select(mailbox, read_only).await?;
        let Some(sel) = &self.selected else {
            return Ok(done);
        };
        let highest = match before {
            Some(info) if info.id == sel.id => info.highest_modseq,
            _ => sel.msgs.iter().map(|e| e.meta.modseq).max().unwrap_or(0),
        };
        self.conn
            .line(&format!("* OK [HIGHESTMODSEQ {}] Highest", highest.max(1)));
        if let Some((uidvalidity, since, known)) = qresync
            && uidvalidity == sel.uidvalidity
        {
            self.vanished_earlier(since, known.as_ref()).await?;
            let sel = self.selected.as_mut().expect("selected");
            for (i, e) in sel.msgs.iter_mut().enumerate() {
                if e.meta.modseq <= since
                    || known.as_ref().is_some_and(|k| !contains(k, e.meta.uid))
                {
                    continue;
                }
                let recent = sel.recent.contains(&e.meta.uid);
                self.conn.line(&flags_fetch_line(i + 1, e, recent, true));
                e.reported = e.meta.flags.clone();
            }
        }
        Ok(done)
    }

    /// Writes `* VANISHED (EARLIER) uids`: the UIDs (within `within`, if given)
    /// expunged from the selected mailbox with a MODSEQ above `since`. Where the
    /// store's record does not reach back that far, every UID below UIDNEXT that is
    /// not in the mailbox counts (RFC 7162 3.2.5.1).
    pub(in crate::imap) async fn vanished_earlier(
        &mut self,
        since: u64,
        within: Option<&SequenceSet>,
    ) -> Result<(), Fail> {
        let store = self.srv.ctx.store.clone();
        let sel = self.sel()?;
        let last = sel.msgs.last().map(|e| e.meta.uid).unwrap_or(0);
        let inside = |uid: u32| within.is_none_or(|set| contains_with_star(set, uid, last));
        let record = store.vanished(&sel.id, since).await?;
        let gone: Vec<(u32, u32)> = if record.complete {
            record
                .uids
                .into_iter()
                .filter(|&u| inside(u))
                .map(|u| (u, u))
                .collect()
        } else {
            let uidnext = store
                .mailbox_by_id(&sel.id)
                .await?
                .map(|i| i.uidnext)
                .unwrap_or(sel.max_uid + 1);
            let present: Vec<u32> = sel.msgs.iter().map(|e| e.meta.uid).collect();
            let gaps = gaps(&present, uidnext);
            match within {
                None => gaps,
                Some(set) => intersect(&gaps, &ranges(set, last)),
            }
        };
        if !gone.is_empty() {
            self.conn
                .line(&format!("* VANISHED (EARLIER) {}", range_set(&gone)));
        }
        Ok(())
    }
}

/// A sequence set as sorted, merged UID ranges (`*` is `star`).
fn ranges(set: &SequenceSet, star: u32) -> Vec<(u32, u32)> {
    let val = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => star,
    };
    let mut out: Vec<(u32, u32)> = set
        .0
        .as_ref()
        .iter()
        .map(|seq| match seq {
            Sequence::Single(s) => (val(s), val(s)),
            Sequence::Range(a, b) => (val(a).min(val(b)), val(a).max(val(b))),
        })
        .collect();
    out.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(out.len());
    for (lo, hi) in out {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// Whether `uid` is in a UID set the client sent where `*` is not allowed (QRESYNC's
/// known-uids; a `*` there is read as the largest UID).
fn contains(set: &SequenceSet, uid: u32) -> bool {
    contains_with_star(set, uid, u32::MAX)
}

fn contains_with_star(set: &SequenceSet, uid: u32, star: u32) -> bool {
    ranges(set, star)
        .iter()
        .any(|&(lo, hi)| lo <= uid && uid <= hi)
}

/// The UIDs in 1..uidnext that are not in `present` (sorted), as ranges.
fn gaps(present: &[u32], uidnext: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 1u32;
    for &uid in present.iter().chain(std::iter::once(&uidnext.max(1))) {
        if uid > next {
            out.push((next, uid - 1));
        }
        next = next.max(uid.saturating_add(1));
    }
    out
}

/// The intersection of two sorted, disjoint range lists.
fn intersect(a: &[(u32, u32)], b: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for &(alo, ahi) in a {
        for &(blo, bhi) in b {
            let (lo, hi) = (alo.max(blo), ahi.min(bhi));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    out.sort_unstable();
    out
}

/// `1:3,7` from sorted ranges (adjacent ones joined).
fn range_set(r: &[(u32, u32)]) -> String {
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(r.len());
    for &(lo, hi) in r {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}:{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_sets() {
        assert_eq!(gaps(&[2, 3, 6], 9), vec![(1, 1), (4, 5), (7, 8)]);
        assert_eq!(gaps(&[], 1), vec![]);
        assert_eq!(gaps(&[1, 2], 3), vec![]);
        let set: SequenceSet = "1:4,8".parse().unwrap();
        assert_eq!(
            intersect(&gaps(&[2, 3, 6], 9), &ranges(&set, 10)),
            vec![(1, 1), (4, 4), (8, 8)]
        );
        assert_eq!(range_set(&[(1, 1), (2, 2), (5, 5)]), "1:2,5");
        assert_eq!(range_set(&[(1, 3), (5, 5)]), "1:3,5");
        assert!(contains(&"3:*".parse().unwrap(), 700));
        assert!(!contains_with_star(&"3:*".parse().unwrap(), 700, 10));
    }
}
