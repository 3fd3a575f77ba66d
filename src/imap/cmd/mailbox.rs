//! Mailbox commands of the authenticated state (RFC 3501 6.3): SELECT and EXAMINE
//! (which build the session's sequence-number map), CREATE, DELETE, RENAME,
//! SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB (with CHILDREN, RFC 3348, and SPECIAL-USE,
//! RFC 6154, attributes), STATUS, and NAMESPACE (RFC 2342).

use std::collections::HashSet;

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;

use super::{CmdResult, Done, Fail, mailbox_name, ok};
use crate::imap::session::{Entry, Selected, Session};
use crate::imap::{list, utf7, wire};
use crate::store::StoreError;

/// Flags every mailbox supports (RFC 3501 2.3.2).
const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

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
        let mut keywords: Vec<String> = metas
            .iter()
            .flat_map(|m| m.flags.iter())
            .filter(|f| !f.starts_with('\\'))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        keywords.sort();
        let mut flags: Vec<String> = SYSTEM_FLAGS.iter().map(|s| s.to_string()).collect();
        flags.extend(keywords);
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
        self.conn
            .line(&format!("* FLAGS {}", wire::flag_list(&flags)));
        if read_only {
            self.conn.line("* OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            let mut perm = flags.clone();
            perm.push("\\*".into());
            self.conn.line(&format!(
                "* OK [PERMANENTFLAGS {}] Flags permitted",
                wire::flag_list(&perm)
            ));
        }
        self.conn.line(&format!("* {exists} EXISTS"));
        self.conn.line("* 0 RECENT");
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
            recent: HashSet::new(),
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
        let name = mailbox_name(mailbox)?;
        let name = name.trim_end_matches('/').to_string();
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
                Ok(_) | Err(StoreError::MailboxExists(_)) => {}
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
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => utf7::from_wire(o.inner().as_ref())
                .ok_or_else(|| Fail::Bad("Invalid mailbox name encoding".into()))?,
        };
        let pattern_bytes: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let pattern = utf7::from_wire(pattern_bytes)
            .ok_or_else(|| Fail::Bad("Invalid mailbox name encoding".into()))?;
        if pattern.is_empty() {
            // RFC 3501 6.3.8: the hierarchy delimiter and root.
            self.conn.line(&format!("* {what} (\\Noselect) \"/\" \"\""));
            return Ok(Done::Ok(format!("{what} completed")));
        }
        let full = list::full_pattern(&reference, &pattern);
        let store = &self.srv.ctx.store;
        let user = self.user.clone().unwrap_or_default();
        let boxes = store.list_mailboxes(&user).await?;
        let mut lines = Vec::new();
        if lsub {
            let subs = store.subscriptions(&user).await?;
            for (name, subscribed) in list::with_ancestors(subs.iter().map(String::as_str)) {
                if !list::matches(&full, &name) {
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
                if !list::matches(&full, &name) {
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
        let needs_scan = items.iter().any(|i| {
            matches!(
                i,
                StatusDataItemName::Deleted | StatusDataItemName::DeletedStorage
            )
        });
        let metas = if needs_scan {
            store.messages(&info.id).await?
        } else {
            Vec::new()
        };
        for item in items {
            match item {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", info.messages)),
                StatusDataItemName::Recent => parts.push("RECENT 0".into()),
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
