//! Commands of the selected state (RFC 3501 6.4) and their UID forms: CHECK, CLOSE,
//! UNSELECT (RFC 3691), EXPUNGE, UID EXPUNGE (RFC 4315), SEARCH, FETCH, STORE, COPY
//! and MOVE (RFC 6851). They work on the session's sequence-number map; messages
//! expunged by others but not yet reported are skipped (RFC 2180 4.1). With CONDSTORE
//! (RFC 7162): FETCH MODSEQ and (CHANGEDSINCE n [VANISHED]), STORE (UNCHANGEDSINCE n)
//! answering [MODIFIED set], SEARCH MODSEQ.

use imap_codec::imap_types::command::{FetchModifier, StoreModifier};
use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;

use super::{CmdResult, Done, Fail, mailbox_name, ok};
use crate::imap::session::{Session, announce_keywords, flags_with_recent, modseq_item};
use crate::imap::structure::Kind;
use crate::imap::{fetch, wire};
use crate::mail::text::Text;
use crate::store::FlagMode;

/// Messages whose files a FETCH reads in one trip to the blocking pool.
const FETCH_CHUNK: usize = 32;

impl Session {
    pub(in crate::imap) fn check(&mut self) -> CmdResult {
        ok("CHECK completed")
    }

    pub(in crate::imap) async fn close(&mut self) -> CmdResult {
        let sel = self.selected.take().expect("selected");
        if !sel.read_only {
            // RFC 3501 6.4.2: expunge silently.
            self.srv.ctx.store.expunge(&sel.id, None).await?;
        }
        ok("CLOSE completed")
    }

    pub(in crate::imap) fn unselect(&mut self) -> CmdResult {
        self.selected = None;
        ok("UNSELECT completed")
    }

    pub(in crate::imap) async fn expunge(&mut self) -> CmdResult {
        let sel = self.sel()?;
        if sel.read_only {
            return Err(Fail::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let id = sel.id.clone();
        self.srv.ctx.store.expunge(&id, None).await?;
        self.mark_dirty(&id);
        ok("EXPUNGE completed")
    }

    pub(in crate::imap) async fn uid_expunge(&mut self, sequence_set: &SequenceSet) -> CmdResult {
        let sel = self.sel()?;
        if sel.read_only {
            return Err(Fail::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let idx = sel.resolve(sequence_set, true)?;
        let uids = sel.live(&idx);
        let id = sel.id.clone();
        if !uids.is_empty() {
            self.srv.ctx.store.expunge(&id, Some(&uids)).await?;
            self.mark_dirty(&id);
        }
        ok("UID EXPUNGE completed")
    }

    pub(in crate::imap) async fn search(
        &mut self,
        charset: Option<&Charset<'_>>,
        criteria: Vec1<SearchKey<'_>>,
        uid: bool,
    ) -> CmdResult {
        check_charset(charset)?;
        let key = if criteria.as_ref().len() == 1 {
            criteria.as_ref()[0].clone()
        } else {
            SearchKey::And(criteria)
        };
        let uses_modseq = fetch::search_uses_modseq(&key);
        if uses_modseq {
            self.enable_condstore().await?;
        }
        let store = self.srv.ctx.store.clone();
        let sel = self.selected.as_ref().expect("selected");
        let mut hits = Vec::new();
        let mut highest = 0;
        let needs_text = fetch::search_needs_text(&key);
        let live: Vec<usize> = (0..sel.msgs.len())
            .filter(|&i| !sel.msgs[i].expunged)
            .collect();
        for chunk in live.chunks(FETCH_CHUNK) {
            let texts = if needs_text {
                let blobs = chunk.iter().map(|&i| sel.msgs[i].meta.blob.clone());
                store.read_blobs(blobs.collect()).await?
            } else {
                Vec::new()
            };
            let mut texts = texts.into_iter();
            for &i in chunk {
                let e = &sel.msgs[i];
                let raw = match texts.next() {
                    Some(Ok(r)) => Some(r),
                    Some(Err(err)) => {
                        tracing::warn!(uid = e.meta.uid, "imap: unreadable message: {err}");
                        continue;
                    }
                    None => None,
                };
                let text = raw.as_deref().map(Text::new);
                if fetch::search_matches(&key, sel, i, text.as_ref()) {
                    hits.push(if uid { e.meta.uid } else { i as u32 + 1 });
                    highest = highest.max(e.meta.modseq);
                }
            }
        }
        let mut line = String::from("* SEARCH");
        let found = !hits.is_empty();
        for h in hits {
            line.push(' ');
            line.push_str(&h.to_string());
        }
        if uses_modseq && found {
            // RFC 7162 3.1.5: the highest MODSEQ of the messages found.
            line.push_str(&format!(" (MODSEQ {highest})"));
        }
        self.conn.line(&line);
        ok("SEARCH completed")
    }

    pub(in crate::imap) async fn fetch(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
    ) -> CmdResult {
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
                FetchModifier::Vanished => vanished = true,
            }
        }
        // RFC 7162 3.2.6: VANISHED only in UID FETCH with CHANGEDSINCE, once enabled.
        if vanished && !(uid && changed_since.is_some() && self.qresync) {
            return Err(Fail::Bad(
                "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC".into(),
            ));
        }
        let mut names: Vec<MessageDataItemName<'_>> = match &items {
            MacroOrMessageDataItemNames::Macro(m) => m.expand(),
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
        };
        if names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. }
            )
        }) {
            return Err(Fail::Bad("BINARY is not supported".into()));
        }
        if uid && !names.contains(&MessageDataItemName::Uid) {
            names.insert(0, MessageDataItemName::Uid);
        }
        if changed_since.is_some() && !names.contains(&MessageDataItemName::ModSeq) {
            names.push(MessageDataItemName::ModSeq);
        }
        if names.contains(&MessageDataItemName::ModSeq) {
            self.enable_condstore().await?;
        }
        if let Some(since) = changed_since
            && vanished
        {
            self.vanished_earlier(since, Some(set)).await?;
        }
        let condstore = self.condstore;
        let store = self.srv.ctx.store.clone();
        let sel = self.selected.as_mut().expect("selected");
        let mut idx = sel.resolve(set, uid)?;
        if let Some(since) = changed_since {
            idx.retain(|&i| sel.msgs[i].meta.modseq > since);
        }
        let sets_seen = !sel.read_only && names.iter().any(fetch::sets_seen);
        if sets_seen {
            let unseen: Vec<u32> = idx
                .iter()
                .map(|&i| &sel.msgs[i])
                .filter(|e| !e.expunged && !e.meta.has_flag("\\Seen"))
                .map(|e| e.meta.uid)
                .collect();
            if !unseen.is_empty() {
                let updates = store
                    .store_flags(&sel.id, &unseen, FlagMode::Add, &["\\Seen".to_string()])
                    .await?;
                for u in updates {
                    if let Some(p) = sel.position(u.uid) {
                        sel.msgs[p].meta.flags = u.flags;
                        sel.msgs[p].meta.modseq = u.modseq;
                    }
                }
            }
        }
        // ENVELOPE, BODY and BODYSTRUCTURE come from the node's structure cache when
        // they can; the message file is read only for what is not cached.
        let kinds: Vec<Kind> = names.iter().filter_map(fetch::structure_kind).collect();
        let text_items = names
            .iter()
            .any(|n| fetch::needs_body(n) && fetch::structure_kind(n).is_none());
        let cache = self.srv.structure.clone();
        let wants_flags = names.contains(&MessageDataItemName::Flags);
        for chunk in idx.chunks(FETCH_CHUNK) {
            // Per message of the chunk: cached values, and whether its text is needed.
            let sel = self.selected.as_ref().expect("selected");
            let mut cached: Vec<[Option<Vec<u8>>; 3]> = Vec::with_capacity(chunk.len());
            let mut to_read = Vec::new();
            for &i in chunk {
                let e = &sel.msgs[i];
                let mut values: [Option<Vec<u8>>; 3] = Default::default();
                let mut need = text_items;
                for &k in &kinds {
                    values[k as usize] = cache.get(&e.meta.blob, k);
                    need |= values[k as usize].is_none();
                }
                if need && !e.expunged {
                    to_read.push(e.meta.blob.clone());
                }
                cached.push(values);
            }
            let mut texts = store.read_blobs(to_read).await?.into_iter();
            for (&i, mut values) in chunk.iter().zip(cached) {
                let sel = self.selected.as_mut().expect("selected");
                let e = &sel.msgs[i];
                if e.expunged {
                    // RFC 2180 4.1.2: the message is gone; skip it.
                    continue;
                }
                let needs_text = text_items || kinds.iter().any(|&k| values[k as usize].is_none());
                let raw = if needs_text {
                    match texts.next() {
                        Some(Ok(r)) => Some(r),
                        Some(Err(err)) => {
                            tracing::error!(uid = e.meta.uid, "imap: unreadable message: {err}");
                            return Err(Fail::No("[SERVERBUG] Message data unavailable".into()));
                        }
                        None => unreachable!("one text read per message that needs it"),
                    }
                } else {
                    None
                };
                for &k in &kinds {
                    if values[k as usize].is_none() {
                        let raw = raw.as_deref().expect("read above");
                        values[k as usize] = Some(cache.compute(&e.meta.blob, k, raw));
                    }
                }
                let recent = sel.recent.contains(&e.meta.uid);
                let flags_changed = e.meta.flags != e.reported;
                let with_flags = wants_flags || (sets_seen && flags_changed);
                // RFC 7162 3.1: a \Seen set implicitly is reported with UID and MODSEQ.
                let implicit = condstore && sets_seen && flags_changed;
                let mut out = format!("* {} FETCH (", i + 1).into_bytes();
                let mut first = true;
                // UID and FLAGS first (FLAGS also when \Seen was set implicitly).
                if names.contains(&MessageDataItemName::Uid) || implicit {
                    out.extend_from_slice(format!("UID {}", e.meta.uid).as_bytes());
                    first = false;
                }
                if with_flags {
                    if !first {
                        out.push(b' ');
                    }
                    out.extend_from_slice(b"FLAGS ");
                    out.extend_from_slice(flags_with_recent(&e.meta.flags, recent).as_bytes());
                    first = false;
                }
                for name in &names {
                    if matches!(name, MessageDataItemName::Flags | MessageDataItemName::Uid) {
                        continue;
                    }
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    fetch::item(&mut out, name, &e.meta, raw.as_deref(), &values);
                }
                if implicit && !names.contains(&MessageDataItemName::ModSeq) {
                    out.extend_from_slice(modseq_item(true, e.meta.modseq).as_bytes());
                }
                out.extend_from_slice(b")\r\n");
                if with_flags {
                    let e = &mut sel.msgs[i];
                    e.reported = e.meta.flags.clone();
                }
                self.conn.write(&out);
                self.conn.maybe_flush().await?;
            }
        }
        ok(if uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        })
    }

    pub(in crate::imap) async fn store(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
    ) -> CmdResult {
        let unchanged_since = modifiers
            .iter()
            .map(|StoreModifier::UnchangedSince(n)| *n)
            .next();
        if unchanged_since.is_some() {
            self.enable_condstore().await?;
        }
        let condstore = self.condstore;
        let store = self.srv.ctx.store.clone();
        let sel = self.selected.as_mut().expect("selected");
        if sel.read_only {
            return Err(Fail::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let idx = sel.resolve(set, uid)?;
        let uids = sel.live(&idx);
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let mode = match kind {
            StoreType::Replace => FlagMode::Replace,
            StoreType::Add => FlagMode::Add,
            StoreType::Remove => FlagMode::Remove,
        };
        let mut modified = Vec::new();
        let mut updated = std::collections::HashSet::new();
        if !uids.is_empty() {
            let (updates, refused) = store
                .store_flags_unchanged_since(&sel.id, &uids, mode, &flags, unchanged_since)
                .await?;
            for u in updates {
                if let Some(p) = sel.position(u.uid) {
                    sel.msgs[p].meta.flags = u.flags;
                    sel.msgs[p].meta.modseq = u.modseq;
                    updated.insert(u.uid);
                }
            }
            modified = refused;
        }
        // A keyword new to the client: FLAGS first (RFC 3501 7.2.6), also for .SILENT.
        if mode != FlagMode::Remove
            && flags
                .iter()
                .any(|f| !f.starts_with('\\') && !sel.keywords.contains(f))
        {
            announce_keywords(&mut self.conn, sel);
        }
        let silent = matches!(response, StoreResponse::Silent);
        for i in idx {
            let e = &mut sel.msgs[i];
            if e.expunged || modified.contains(&e.meta.uid) {
                continue;
            }
            let modseq = modseq_item(condstore, e.meta.modseq);
            if !silent {
                let recent = sel.recent.contains(&e.meta.uid);
                let mut line = format!("* {} FETCH (", i + 1);
                if uid || condstore {
                    line.push_str(&format!("UID {} ", e.meta.uid));
                }
                line.push_str(&format!(
                    "FLAGS {}{modseq})",
                    flags_with_recent(&e.meta.flags, recent)
                ));
                self.conn.line(&line);
            } else if unchanged_since.is_some() && updated.contains(&e.meta.uid) {
                // RFC 7162 3.1.3: a conditional STORE reports the new MODSEQ even
                // when .SILENT (a plain STORE.SILENT stays silent, as in Dovecot).
                self.conn
                    .line(&format!("* {} FETCH (UID {}{modseq})", i + 1, e.meta.uid));
            }
            e.reported = e.meta.flags.clone();
        }
        if !modified.is_empty() {
            // RFC 7162 3.1.3: UIDs for UID STORE, else sequence numbers.
            let mut set: Vec<u32> = modified
                .iter()
                .filter_map(|&u| {
                    if uid {
                        Some(u)
                    } else {
                        sel.position(u).map(|p| p as u32 + 1)
                    }
                })
                .collect();
            set.sort_unstable();
            return Ok(Done::Ok(format!(
                "[MODIFIED {}] Conditional STORE failed",
                wire::uid_set(&set)
            )));
        }
        ok(if uid {
            "UID STORE completed"
        } else {
            "STORE completed"
        })
    }

    pub(in crate::imap) async fn copy(
        &mut self,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        remove: bool,
    ) -> CmdResult {
        let name = mailbox_name(mailbox)?;
        let store = self.srv.ctx.store.clone();
        let Some(dest) = store.mailbox(self.user(), &name).await? else {
            return Err(Fail::No(format!("[TRYCREATE] No such mailbox: {name}")));
        };
        let sel = self.sel()?;
        if remove && sel.read_only {
            return Err(Fail::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let idx = sel.resolve(set, uid)?;
        let uids = sel.live(&idx);
        let src = sel.id.clone();
        let verb = if remove { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok(Done::Ok(format!("{verb} completed (no messages)")));
        }
        // A COPY adds to the account's usage; a MOVE within it does not (RFC 9208
        // 5.1: a command that would exceed the quota fails, and MOVE leaves usage as
        // it was, so over-quota users can still file and clean up their mail).
        if !remove {
            let adding: u64 = idx
                .iter()
                .filter(|&&i| !sel.msgs[i].expunged)
                .map(|&i| sel.msgs[i].meta.size)
                .sum();
            store.check_quota(self.user(), adding).await?;
        }
        let copied = store.copy(&src, &uids, &dest.id, remove).await?;
        self.mark_dirty(&src);
        self.mark_dirty(&dest.id);
        let code = if copied.dst_uids.is_empty() {
            String::new()
        } else {
            format!(
                "[COPYUID {} {} {}] ",
                copied.uidvalidity,
                wire::uid_set(&copied.src_uids),
                wire::uid_set(&copied.dst_uids)
            )
        };
        if remove {
            // RFC 6851 3.3: COPYUID in an untagged OK before the EXPUNGEs.
            if !code.is_empty() {
                self.conn.line(&format!("* OK {code}Moved"));
            }
            Ok(Done::Ok("MOVE completed".into()))
        } else {
            Ok(Done::Ok(format!("{code}COPY completed")))
        }
    }
}

fn check_charset(charset: Option<&Charset<'_>>) -> Result<(), Fail> {
    let Some(cs) = charset else { return Ok(()) };
    let name: &str = cs.as_ref();
    if name.eq_ignore_ascii_case("UTF-8") || name.eq_ignore_ascii_case("US-ASCII") {
        Ok(())
    } else {
        Err(Fail::No(
            "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset".into(),
        ))
    }
}
