//! Mailbox commands of the authenticated state (RFC 3501 6.3): SELECT and EXAMINE
//! (which build the session's sequence-number map), CREATE, DELETE, RENAME,
//! SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB (with CHILDREN, RFC 3348, and SPECIAL-USE,
//! RFC 6154, attributes), STATUS, and NAMESPACE (RFC 2342). CREATE reads a trailing
//! separator as intent only (RFC 3501 6.3.3) and leaves the superior names it makes
//! on the way unsubscribed; a LIST/LSUB pattern that is not modified UTF-7 is matched
//! against the names as they are sent.

use std::collections::{BTreeSet, HashSet};

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;

use super::{CmdResult, Done, Fail, mailbox_name, ok, wire_name};
use crate::imap::session::{Entry, Selected, Session, send_flags};
use crate::imap::{list, utf7, wire};
use crate::store::StoreError;

impl Session {
    pub(in crate::imap) async fn select(
        &mut self,
        mailbox: &Mailbox<'_>,
        read_only: bool,
    ) -> CmdResult {
        // RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected.
        self.selected = None;
        let name = mailbox_name(mailbox)?;
        let store = self.srv.ctx.store.clone();
        let Some(info) = store.mailbox(self.user(), &name).await? else {
            return Err(Fail::No(format!("[NONEXISTENT] No such mailbox: {name}")));
        };
        // Changes committed from here on mark the view dirty.
        self.drain_changes();
        let metas = store.messages(&info.id).await?;
        let max_uid = metas.last().map(|m| m.uid).unwrap_or(0);
        let uidnext = info.uidnext.max(max_uid + 1);
        let keywords: BTreeSet<String> = metas
            .iter()
            .flat_map(|m| m.flags.iter())
            .filter(|f| !f.starts_with('\\'))
            .cloned()
            .collect();
        // RFC 3501 2.3.2: the messages no session took yet are this one's \Recent;
        // SELECT takes them, EXAMINE only looks (6.3.2).
        let floor = if read_only {
            self.srv.recent.peek(&info.id, info.uidvalidity)
        } else {
            self.srv.recent.take(&info.id, info.uidvalidity, max_uid)
        };
        let recent: HashSet<u32> = metas.iter().map(|m| m.uid).filter(|&u| u > floor).collect();
        let first_unseen = metas.iter().position(|m| !m.has_flag("\\Seen"));
        let exists = metas.len();
        let msgs = metas
            .into_iter()
            .map(|m| Entry {
                reported: m.flags.clone(),
                meta: m,
                expunged: false,
            })
            .collect();
        send_flags(&mut self.conn, &keywords, read_only);
        self.conn.line(&format!("* {exists} EXISTS"));
        self.conn.line(&format!("* {} RECENT", recent.len()));
        if let Some(i) = first_unseen {
            self.conn
                .line(&format!("* OK [UNSEEN {}] First unseen message", i + 1));
        }
        self.conn.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            info.uidvalidity
        ));
        self.conn
            .line(&format!("* OK [UIDNEXT {uidnext}] Predicted next UID"));
        self.selected = Some(Selected {
            id: info.id,
            name: info.name,
            read_only,
            msgs,
            max_uid,
            recent,
            keywords,
            dirty: false,
            uidvalidity: info.uidvalidity,
        });
        Ok(Done::Ok(if read_only {
            "[READ-ONLY] EXAMINE completed".into()
        } else {
            "[READ-WRITE] SELECT completed".into()
        }))
    }

    pub(in crate::imap) async fn create(&mut self, mailbox: &Mailbox<'_>) -> CmdResult {
        // RFC 3501 6.3.3: a trailing separator only declares that names will be
        // created under this one; the name is created without it.
        let name = wire_name(mailbox)?;
        let name = crate::store::normalize_mailbox_name(name.trim_end_matches('/'))?;
        if name == "INBOX" {
            return Err(Fail::No("[ALREADYEXISTS] INBOX always exists".into()));
        }
        let store = &self.srv.ctx.store;
        let user = self.user.clone().unwrap_or_default();
        // RFC 3501 6.3.3: create missing superior names too.
        let mut idx = 0;
        while let Some(p) = name[idx..].find('/') {
            let parent = &name[..idx + p];
            match store.create_mailbox(&user, parent).await {
                // Made on the way, not named by the client: not subscribed, so LSUB
                // shows it `\Noselect` above a subscribed child (RFC 3501 6.3.9).
                Ok(_) => store.set_subscribed(&user, parent, false).await?,
                Err(StoreError::MailboxExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            idx += p + 1;
        }
        store.create_mailbox(&user, &name).await?;
        ok("CREATE completed")
    }

    pub(in crate::imap) async fn delete(&mut self, mailbox: &Mailbox<'_>) -> CmdResult {
        let name = mailbox_name(mailbox)?;
        if name == "INBOX" {
            return Err(Fail::No("[CANNOT] INBOX cannot be deleted".into()));
        }
        self.srv
            .ctx
            .store
            .delete_mailbox(self.user(), &name)
            .await?;
        ok("DELETE completed")
    }

    pub(in crate::imap) async fn rename(
        &mut self,
        mailbox: &Mailbox<'_>,
        new_mailbox: &Mailbox<'_>,
    ) -> CmdResult {
        let from = mailbox_name(mailbox)?;
        let to = mailbox_name(new_mailbox)?;
        self.srv
            .ctx
            .store
            .rename_mailbox(self.user(), &from, &to)
            .await?;
        ok("RENAME completed")
    }

    /// SUBSCRIBE (`subscribed`) and UNSUBSCRIBE.
    pub(in crate::imap) async fn subscribe(
        &mut self,
        mailbox: &Mailbox<'_>,
        subscribed: bool,
    ) -> CmdResult {
        let name = mailbox_name(mailbox)?;
        self.srv
            .ctx
            .store
            .set_subscribed(self.user(), &name, subscribed)
            .await?;
        ok(if subscribed {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        })
    }

    pub(in crate::imap) async fn list(
        &mut self,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> CmdResult {
        let what = if lsub { "LSUB" } else { "LIST" };
        let reference_bytes: &[u8] = match reference {
            Mailbox::Inbox => b"INBOX",
            Mailbox::Other(o) => o.inner().as_ref(),
        };
        let pattern_bytes: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        // A reference or pattern that is not modified UTF-7 is matched against the
        // names as they are sent (their modified UTF-7): it finds what its characters
        // spell, and the command never fails for it.
        let (reference, pattern, on_wire) = match (
            utf7::from_wire(reference_bytes),
            utf7::from_wire(pattern_bytes),
        ) {
            (Some(r), Some(p)) => (r, p, false),
            _ => (
                String::from_utf8_lossy(reference_bytes).into_owned(),
                String::from_utf8_lossy(pattern_bytes).into_owned(),
                true,
            ),
        };
        if pattern.is_empty() {
            // RFC 3501 6.3.8: the hierarchy delimiter and root.
            self.conn.line(&format!("* {what} (\\Noselect) \"/\" \"\""));
            return Ok(Done::Ok(format!("{what} completed")));
        }
        let full = list::full_pattern(&reference, &pattern);
        let matches = |name: &str| {
            if on_wire {
                list::matches(&full, &utf7::encode(name))
            } else {
                list::matches(&full, name)
            }
        };
        let store = &self.srv.ctx.store;
        let user = self.user.clone().unwrap_or_default();
        let boxes = store.list_mailboxes(&user).await?;
        let mut lines = Vec::new();
        if lsub {
            let subs = store.subscriptions(&user).await?;
            for (name, subscribed) in list::with_ancestors(subs.iter().map(String::as_str)) {
                if !matches(&name) {
                    continue;
                }
                // Unsubscribed ancestors show only where `%` stops at them.
                if !subscribed && full.contains('*') {
                    continue;
                }
                let exists = boxes.iter().any(|b| b.name == name);
                let attrs = if !subscribed || !exists {
                    "\\Noselect"
                } else {
                    ""
                };
                lines.push(format!(
                    "* LSUB ({attrs}) \"/\" {}",
                    wire::quoted(&utf7::encode(&name))
                ));
            }
        } else {
            let names: Vec<&str> = boxes.iter().map(|b| b.name.as_str()).collect();
            for (name, exists) in list::with_ancestors(names.iter().copied()) {
                if !matches(&name) {
                    continue;
                }
                let mut attrs: Vec<&str> = Vec::new();
                if !exists {
                    attrs.push("\\Noselect");
                }
                if list::has_children(&name, names.iter().copied()) {
                    attrs.push("\\HasChildren");
                } else {
                    attrs.push("\\HasNoChildren");
                }
                if let Some(su) = boxes
                    .iter()
                    .find(|b| b.name == name)
                    .and_then(|b| b.special_use)
                {
                    attrs.push(su.attribute());
                }
                lines.push(format!(
                    "* LIST ({}) \"/\" {}",
                    attrs.join(" "),
                    wire::quoted(&utf7::encode(&name))
                ));
            }
        }
        for l in lines {
            self.conn.line(&l);
        }
        Ok(Done::Ok(format!("{what} completed")))
    }

    pub(in crate::imap) async fn status(
        &mut self,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
    ) -> CmdResult {
        let name = mailbox_name(mailbox)?;
        let store = &self.srv.ctx.store;
        let Some(info) = store.mailbox(self.user(), &name).await? else {
            return Err(Fail::No(format!("[NONEXISTENT] No such mailbox: {name}")));
        };
        let mut parts = Vec::new();
        // RECENT: the messages no session took yet (counted, not taken). The
        // messages are read only when some but not all of them were taken.
        let floor = self.srv.recent.peek(&info.id, info.uidvalidity);
        let recent_unknown = floor > 0 && floor.saturating_add(1) < info.uidnext;
        let needs_scan = items.iter().any(|i| match i {
            StatusDataItemName::Deleted | StatusDataItemName::DeletedStorage => true,
            StatusDataItemName::Recent => recent_unknown,
            _ => false,
        });
        let metas = if needs_scan {
            store.messages(&info.id).await?
        } else {
            Vec::new()
        };
        for item in items {
            match item {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", info.messages)),
                StatusDataItemName::Recent => parts.push(format!(
                    "RECENT {}",
                    match floor {
                        0 => info.messages as usize,
                        _ => metas.iter().filter(|m| m.uid > floor).count(),
                    }
                )),
                StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", info.uidnext)),
                StatusDataItemName::UidValidity => {
                    parts.push(format!("UIDVALIDITY {}", info.uidvalidity))
                }
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", info.unseen)),
                StatusDataItemName::HighestModSeq => {
                    parts.push(format!("HIGHESTMODSEQ {}", info.highest_modseq.max(1)));
                    // RFC 7162 3.1: a CONDSTORE enabling command.
                    self.condstore = true;
                }
                StatusDataItemName::Deleted => parts.push(format!(
                    "DELETED {}",
                    metas.iter().filter(|m| m.has_flag("\\Deleted")).count()
                )),
                StatusDataItemName::DeletedStorage => parts.push(format!(
                    "DELETED-STORAGE {}",
                    metas
                        .iter()
                        .filter(|m| m.has_flag("\\Deleted"))
                        .map(|m| m.size)
                        .sum::<u64>()
                )),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        self.conn.line(&format!(
            "* STATUS {} ({})",
            wire::quoted(&utf7::encode(&info.name)),
            parts.join(" ")
        ));
        ok("STATUS completed")
    }

    /// NAMESPACE (recognised before imap-codec, which does not parse it in this
    /// build): answers and returns true, or returns false when it has arguments (the
    /// command is then a syntax error).
    pub(in crate::imap) fn namespace(&mut self, tag: &str, args: &str) -> bool {
        if !args.is_empty() {
            return false;
        }
        if self.user.is_none() {
            self.conn.line(&format!("{tag} BAD Log in first"));
        } else {
            self.conn.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
            self.conn.line(&format!("{tag} OK NAMESPACE completed"));
        }
        true
    }
}
