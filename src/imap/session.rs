//! One IMAP session: its state (RFC 3501 3: not authenticated, authenticated,
//! selected, logout) with the selected mailbox's sequence-number map, the command
//! loop, and the dispatcher that checks the state a command needs and routes it to
//! its handler in `cmd` (one file per command family). Also here: bringing the
//! client's view up to date after each command (`Session::refresh`). See the module
//! documentation of `imap` for the invariants.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use tokio::sync::broadcast;

use super::cmd::{CmdResult, Done, Fail};
use super::conn::{Conn, Frame, ReadError, tag_of};
use super::{Server, wire};
use crate::store::{Change, MessageMeta};

/// Consecutive unparseable commands after which the session is closed.
const MAX_BAD_STREAK: u32 = 10;

/// Commands whose bare mailbox names may hold `%`, `*` or `\` (see [`quote_bare_names`]).
const MAILBOX_COMMANDS: &str =
    "SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE STATUS LIST LSUB";

/// What the command loop does after a command.
pub(super) enum Flow {
    Continue,
    Close,
}

/// One message in the session's view of the selected mailbox.
pub(super) struct Entry {
    pub meta: MessageMeta,
    /// The flags the client was last told about.
    pub reported: Vec<String>,
    /// Gone from the store; the EXPUNGE response is still owed.
    pub expunged: bool,
}

/// The selected mailbox as this session sees it: the sequence-number map.
pub(super) struct Selected {
    pub id: String,
    pub name: String,
    pub read_only: bool,
    /// In sequence order (= UID order); index + 1 is the sequence number.
    pub msgs: Vec<Entry>,
    /// Highest UID ever in `msgs`.
    pub max_uid: u32,
    /// UIDs that are \Recent in this session (taken from `Server::recent`).
    pub recent: HashSet<u32>,
    /// The keywords the client was told of by FLAGS (RFC 3501 7.2.6); only grows.
    pub keywords: BTreeSet<String>,
    /// The store changed the mailbox since the last refresh.
    pub dirty: bool,
    /// The mailbox's UIDVALIDITY when it was selected; a split-brain merge that
    /// renumbers the mailbox changes it, and the session then ends (RFC 3501 2.3.1.1).
    pub uidvalidity: u32,
}

impl Selected {
    /// Indexes into `msgs` named by a sequence set (RFC 3501 9 sequence-set), in
    /// ascending order without duplicates.
    pub(super) fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Fail> {
        let mut out: Vec<usize> = Vec::new();
        let n = self.msgs.len();
        if uid {
            let last = self.msgs.last().map(|e| e.meta.uid).unwrap_or(0);
            let val = |s: &SeqOrUid| match s {
                SeqOrUid::Value(v) => v.get(),
                SeqOrUid::Asterisk => last,
            };
            for seq in set.0.as_ref() {
                let (a, b) = match seq {
                    Sequence::Single(s) => (val(s), val(s)),
                    Sequence::Range(a, b) => (val(a), val(b)),
                };
                let (lo, hi) = (a.min(b), a.max(b));
                let start = self.msgs.partition_point(|e| e.meta.uid < lo);
                let end = self.msgs.partition_point(|e| e.meta.uid <= hi);
                out.extend(start..end);
            }
        } else {
            let bad = || Fail::Bad("Invalid message sequence number".into());
            let val = |s: &SeqOrUid| match s {
                SeqOrUid::Asterisk => n,
                SeqOrUid::Value(v) => v.get() as usize,
            };
            for seq in set.0.as_ref() {
                match seq {
                    Sequence::Single(s) => {
                        let v = val(s);
                        if v > n {
                            return Err(bad());
                        }
                        if v > 0 {
                            out.push(v - 1);
                        }
                    }
                    Sequence::Range(a, b) => {
                        // With `*` in a range, the other end is clamped to the last
                        // message (an empty mailbox gives nothing).
                        let star =
                            matches!(a, SeqOrUid::Asterisk) || matches!(b, SeqOrUid::Asterisk);
                        let (mut a, mut b) = (val(a), val(b));
                        if star {
                            a = a.min(n);
                            b = b.min(n);
                        } else if a > n || b > n {
                            return Err(bad());
                        }
                        if n > 0 {
                            out.extend(a.min(b) - 1..a.max(b));
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// [`Selected::resolve`] for SEARCH keys (an invalid set matches nothing).
    pub fn resolve_indexes(&self, set: &SequenceSet, uid: bool) -> Option<Vec<usize>> {
        self.resolve(set, uid).ok()
    }

    pub(super) fn live(&self, idx: &[usize]) -> Vec<u32> {
        idx.iter()
            .filter(|&&i| !self.msgs[i].expunged)
            .map(|&i| self.msgs[i].meta.uid)
            .collect()
    }

    pub(super) fn position(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |e| e.meta.uid).ok()
    }
}

pub(super) struct Session {
    pub(super) srv: Arc<Server>,
    pub(super) conn: Conn,
    pub(super) peer: IpAddr,
    pub(super) user: Option<String>,
    pub(super) selected: Option<Selected>,
    pub(super) changes: broadcast::Receiver<Change>,
    pub(super) bad_streak: u32,
    pub(super) auth_failures: u32,
    /// CONDSTORE enabled (RFC 7162 3.1): FETCH responses carry UID and MODSEQ.
    pub(super) condstore: bool,
    /// QRESYNC enabled (RFC 7162 3.2): VANISHED instead of EXPUNGE.
    pub(super) qresync: bool,
}

impl Session {
    pub fn new(srv: Arc<Server>, conn: Conn, peer: IpAddr) -> Session {
        let changes = srv.ctx.store.subscribe();
        Session {
            srv,
            conn,
            peer,
            user: None,
            selected: None,
            changes,
            bad_streak: 0,
            auth_failures: 0,
            condstore: false,
            qresync: false,
        }
    }

    pub async fn run(mut self) {
        let greeting = format!(
            "* OK [CAPABILITY {}] {} clusterd IMAP4rev1 ready",
            self.capabilities(),
            self.srv.ctx.cfg.hostname()
        );
        self.conn.line(&greeting);
        loop {
            let frame = match self.conn.read_command().await {
                Ok(f) => f,
                Err(ReadError::Timeout) => {
                    self.conn.line("* BYE Autologout; idle for too long");
                    break;
                }
                Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Only COMPRESS input is checked this way: the stream cannot go on.
                    tracing::debug!(peer = %self.peer, "imap: bad compressed input: {e}");
                    self.conn.line("* BYE Invalid compressed data");
                    break;
                }
                Err(ReadError::Io(e)) => {
                    tracing::debug!(peer = %self.peer, "imap: read failed: {e}");
                    break;
                }
                Err(ReadError::Eof) => break,
            };
            let flow = match frame {
                Frame::Command(bytes) => self.command(&bytes).await,
                Frame::LineTooLong { tag } => {
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.conn.line(&format!("{tag} BAD Line too long"));
                    self.conn.line("* BYE Line too long");
                    Flow::Close
                }
                Frame::LiteralTooBig { tag, nonsync } => {
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.conn
                        .line(&format!("{tag} NO [TOOBIG] Literal too large"));
                    if nonsync {
                        self.conn.line("* BYE Literal too large");
                        Flow::Close
                    } else {
                        Flow::Continue
                    }
                }
            };
            // A spooled literal the command did not take goes now (its file too).
            drop(self.conn.take_spooled());
            if matches!(flow, Flow::Close) {
                break;
            }
        }
        self.conn.shutdown().await;
    }

    async fn command(&mut self, bytes: &[u8]) -> Flow {
        if let Some(flow) = self.extension_command(bytes).await {
            return flow;
        }
        let repaired;
        let cmd = match CommandCodec::default().decode(bytes) {
            Ok((b"", cmd)) => cmd,
            _ => {
                repaired = quote_bare_names(bytes);
                match repaired
                    .as_deref()
                    .map(|b| CommandCodec::default().decode(b))
                {
                    Some(Ok((b"", cmd))) => cmd,
                    _ => return self.syntax_error(bytes),
                }
            }
        };
        self.bad_streak = 0;
        let tag = cmd.tag.inner().to_string();
        let name = cmd.body.name();
        // RFC 3501 7.4.1: no EXPUNGE responses during FETCH, STORE and SEARCH (their
        // UID variants are fine).
        let expunge_ok = !matches!(
            cmd.body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        tracing::debug!(peer = %self.peer, command = name, "imap command");
        let res = self.dispatch(&tag, cmd.body).await;
        let (kind, text) = match res {
            Ok(Done::Close) => return Flow::Close,
            Ok(Done::Handled) => return Flow::Continue,
            Ok(Done::Ok(text)) => ("OK", text),
            Err(Fail::No(text)) => ("NO", text),
            Err(Fail::Bad(text)) => ("BAD", text),
            Err(Fail::Io) => return Flow::Close,
        };
        if let Err(e) = self.refresh(expunge_ok).await {
            match e {
                Fail::Io => return Flow::Close,
                Fail::No(t) | Fail::Bad(t) => tracing::warn!("imap: refresh failed: {t}"),
            }
        }
        self.conn.line(&format!("{tag} {kind} {text}"));
        Flow::Continue
    }

    /// A tagged BAD for something that does not parse (imap-codec gives no answer of
    /// its own). Repeated garbage ends the session.
    fn syntax_error(&mut self, bytes: &[u8]) -> Flow {
        self.bad_streak += 1;
        let tag = tag_of(bytes).unwrap_or_else(|| "*".into());
        self.conn
            .line(&format!("{tag} BAD Syntax error or unknown command"));
        if self.bad_streak >= MAX_BAD_STREAK {
            self.conn.line("* BYE Too many invalid commands");
            return Flow::Close;
        }
        Flow::Continue
    }

    /// Commands this build of imap-codec does not parse: ID (RFC 2971) and NAMESPACE
    /// (RFC 2342); their handlers are in `cmd::any` and `cmd::mailbox`.
    async fn extension_command(&mut self, bytes: &[u8]) -> Option<Flow> {
        let tag = tag_of(bytes)?;
        let rest = bytes[tag.len()..].strip_prefix(b" ")?;
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let args = String::from_utf8_lossy(&rest[end..]);
        let args = args.trim();
        let handled = if word.eq_ignore_ascii_case(b"ID") {
            self.id(&tag, args)
        } else if word.eq_ignore_ascii_case(b"NAMESPACE") {
            self.namespace(&tag, args)
        } else {
            false
        };
        if !handled {
            return None;
        }
        self.bad_streak = 0;
        Some(Flow::Continue)
    }

    /// Routes a parsed command to its handler in `cmd`, after checking the state it
    /// needs: the commands of RFC 3501 6.1 and 6.2 work in any state, those of 6.3
    /// need a login, those of 6.4 a selected mailbox.
    async fn dispatch(&mut self, tag: &str, body: CommandBody<'_>) -> CmdResult {
        use CommandBody as C;
        match body {
            // ------------------------------------------------ any state (6.1): cmd/any.rs
            C::Capability => self.capability(),
            C::Noop => self.noop(),
            C::Logout => self.logout(tag),
            // ------------------------------------------------ not authenticated (6.2): cmd/auth.rs
            C::StartTLS => self.starttls(tag).await,
            C::Login { username, password } => self.login(tag, &username, &password).await,
            C::Authenticate {
                mechanism,
                initial_response,
            } => self.authenticate(tag, &mechanism, initial_response).await,
            _ if self.user.is_none() => Err(Fail::Bad("Log in first".into())),
            // ------------------------------------------------ authenticated (6.3)
            // cmd/mailbox.rs
            C::Select {
                mailbox,
                parameters,
            } => self.select_with(&mailbox, false, &parameters).await,
            C::Examine {
                mailbox,
                parameters,
            } => self.select_with(&mailbox, true, &parameters).await,
            C::Create { mailbox } => self.create(&mailbox).await,
            C::Delete { mailbox } => self.delete(&mailbox).await,
            C::Rename { from, to } => self.rename(&from, &to).await,
            C::Subscribe { mailbox } => self.subscribe(&mailbox, true).await,
            C::Unsubscribe { mailbox } => self.subscribe(&mailbox, false).await,
            C::List {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, false).await,
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, true).await,
            C::Status {
                mailbox,
                item_names,
            } => self.status(&mailbox, &item_names).await,
            // cmd/append.rs, cmd/idle.rs, cmd/any.rs
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(&mailbox, &flags, date, message).await,
            C::Idle => self.idle().await,
            // cmd/quota.rs
            C::GetQuotaRoot { mailbox } => self.getquotaroot(&mailbox).await,
            C::GetQuota { root } => self.getquota(&root).await,
            C::SetQuota { .. } => Err(Fail::No(
                "[NOPERM] Quotas are set by the administrator".into(),
            )),
            C::Enable { capabilities } => self.enable(capabilities.as_ref()).await,
            C::Compress { .. } => self.compress(tag).await,
            _ if self.selected.is_none() => Err(Fail::Bad("No mailbox selected".into())),
            // ------------------------------------------------ selected (6.4): cmd/message.rs
            C::Check => self.check(),
            C::Close => self.close().await,
            C::Unselect => self.unselect(),
            C::Expunge => self.expunge().await,
            C::ExpungeUid { sequence_set } => self.uid_expunge(&sequence_set).await,
            C::Search {
                charset,
                criteria,
                uid,
            } => self.search(charset.as_ref(), criteria, uid).await,
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                self.fetch(&sequence_set, macro_or_item_names, uid, &modifiers)
                    .await
            }
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                self.store(&sequence_set, kind, response, &flags, uid, &modifiers)
                    .await
            }
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid, false).await,
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid, true).await,
            other => Err(Fail::Bad(format!("{} is not supported", other.name()))),
        }
    }

    pub(super) fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    pub(super) fn sel(&self) -> Result<&Selected, Fail> {
        self.selected
            .as_ref()
            .ok_or_else(|| Fail::Bad("No mailbox selected".into()))
    }

    pub(super) fn mark_dirty(&mut self, mailbox: &str) {
        if let Some(sel) = &mut self.selected
            && sel.id == mailbox
        {
            sel.dirty = true;
        }
    }

    // ------------------------------------------------------------ updates

    /// Notes which store changes concern the selected mailbox.
    pub(super) fn drain_changes(&mut self) {
        loop {
            match self.changes.try_recv() {
                Ok(c) => {
                    if let Some(sel) = &mut self.selected
                        && c.mailbox() == Some(sel.id.as_str())
                    {
                        sel.dirty = true;
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    if let Some(sel) = &mut self.selected {
                        sel.dirty = true;
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// Brings the client's view of the selected mailbox up to date: EXPUNGE (only when
    /// `allow_expunge`; otherwise the gone messages stay in the sequence map), EXISTS,
    /// RECENT and FETCH FLAGS responses. This is the only place the sequence map
    /// shrinks.
    pub(super) async fn refresh(&mut self, allow_expunge: bool) -> Result<(), Fail> {
        self.drain_changes();
        let store = self.srv.ctx.store.clone();
        let Some(sel) = &mut self.selected else {
            return Ok(());
        };
        let recent_before = sel.recent.len();
        let mut added = 0usize;
        if sel.dirty {
            sel.dirty = false;
            if store
                .mailbox_by_id(&sel.id)
                .await?
                .is_some_and(|m| m.uidvalidity != sel.uidvalidity)
            {
                // The UIDs this client holds no longer name the same messages.
                self.conn.line(
                    "* BYE [UNAVAILABLE] Mailbox renumbered after a merge; UIDVALIDITY changed",
                );
                return Err(Fail::Io);
            }
            let current = store.messages(&sel.id).await?;
            let by_uid: HashMap<u32, &MessageMeta> = current.iter().map(|m| (m.uid, m)).collect();
            for e in sel.msgs.iter_mut() {
                match by_uid.get(&e.meta.uid) {
                    Some(m) => e.meta = (*m).clone(),
                    None => e.expunged = true,
                }
            }
            let known = sel.max_uid;
            let newest = current.last().map_or(0, |m| m.uid);
            // UIDs above `floor` are this session's \Recent; a read-write session
            // takes them, so no other session gets them (RFC 3501 2.3.2).
            let floor = if newest <= known {
                newest
            } else if sel.read_only {
                self.srv.recent.peek(&sel.id, sel.uidvalidity)
            } else {
                self.srv.recent.take(&sel.id, sel.uidvalidity, newest)
            };
            for m in current.iter().filter(|m| m.uid > known) {
                sel.max_uid = m.uid;
                if m.uid > floor {
                    sel.recent.insert(m.uid);
                }
                sel.msgs.push(Entry {
                    reported: m.flags.clone(),
                    meta: m.clone(),
                    expunged: false,
                });
                added += 1;
            }
            announce_keywords(&mut self.conn, sel);
        }
        if allow_expunge && self.qresync && sel.msgs.iter().any(|e| e.expunged) {
            // RFC 7162 3.2.10: one VANISHED with the UIDs instead of EXPUNGEs.
            let gone: Vec<u32> = sel
                .msgs
                .iter()
                .filter(|e| e.expunged)
                .map(|e| e.meta.uid)
                .collect();
            self.conn
                .line(&format!("* VANISHED {}", wire::uid_set(&gone)));
            for uid in &gone {
                sel.recent.remove(uid);
            }
            sel.msgs.retain(|e| !e.expunged);
        }
        if allow_expunge && sel.msgs.iter().any(|e| e.expunged) {
            // Descending, so each number is valid when the client applies it.
            for i in (0..sel.msgs.len()).rev() {
                if sel.msgs[i].expunged {
                    self.conn.line(&format!("* {} EXPUNGE", i + 1));
                    sel.recent.remove(&sel.msgs[i].meta.uid);
                }
            }
            sel.msgs.retain(|e| !e.expunged);
        }
        if added > 0 {
            self.conn.line(&format!("* {} EXISTS", sel.msgs.len()));
        }
        // RFC 3501 7.3.2: RECENT when the number changed (Dovecot sends it only then).
        if sel.recent.len() != recent_before {
            self.conn.line(&format!("* {} RECENT", sel.recent.len()));
        }
        for (i, e) in sel.msgs.iter_mut().enumerate() {
            if !e.expunged && e.meta.flags != e.reported {
                let recent = sel.recent.contains(&e.meta.uid);
                self.conn
                    .line(&flags_fetch_line(i + 1, e, recent, self.condstore));
                e.reported = e.meta.flags.clone();
            }
        }
        let _ = &sel.name;
        Ok(())
    }
}

/// Decodes one command as [`Session::command`] does (imap-codec, then with bare names
/// quoted); for the fuzz target.
pub(super) fn fuzz_decode(bytes: &[u8]) {
    if CommandCodec::default().decode(bytes).is_err()
        && let Some(repaired) = quote_bare_names(bytes)
    {
        let _ = CommandCodec::default().decode(&repaired);
    }
}

/// A mailbox command whose bare (unquoted) arguments hold `%`, `*` or `\`, which an
/// atom may not (RFC 3501 9), with those arguments quoted; `None` for anything else.
/// Clients that send names as they are (Python's imaplib) then get what Dovecot
/// answers (NO for a mailbox that does not exist, LIST matches) instead of BAD, and
/// are not closed as garbage after [`MAX_BAD_STREAK`] of them.
fn quote_bare_names(bytes: &[u8]) -> Option<Vec<u8>> {
    let line = bytes.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\n') {
        return None; // a literal follows: leave it to the parser
    }
    let mut words = line.split(|&b| b == b' ');
    let (tag, name) = (words.next()?, words.next()?);
    let known = MAILBOX_COMMANDS
        .split_ascii_whitespace()
        .any(|c| c.as_bytes().eq_ignore_ascii_case(name));
    if !known {
        return None;
    }
    let mut out = [tag, b" ", name].concat();
    let mut changed = false;
    for w in words {
        out.push(b' ');
        // Only words that would be atoms but for these characters (as Dovecot).
        let atomish = w
            .iter()
            .all(|&b| b > b' ' && b != 0x7f && !matches!(b, b'(' | b')' | b'{' | b'"'));
        if atomish && w.iter().any(|b| matches!(b, b'%' | b'*' | b'\\')) {
            out.push(b'"');
            for &b in w {
                if matches!(b, b'"' | b'\\') {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
            changed = true;
        } else {
            out.extend_from_slice(w);
        }
    }
    out.extend_from_slice(b"\r\n");
    changed.then_some(out)
}

/// FLAGS and PERMANENTFLAGS for a mailbox whose messages carry `keywords` (RFC 3501
/// 7.1, 7.2.6): `\*` says a STORE may create new keywords; read-only allows none.
pub(super) fn send_flags(conn: &mut Conn, keywords: &BTreeSet<String>, read_only: bool) {
    let flags: Vec<&str> = SYSTEM_FLAGS
        .iter()
        .copied()
        .chain(keywords.iter().map(String::as_str))
        .collect();
    conn.line(&format!("* FLAGS {}", wire::flag_list(&flags)));
    if read_only {
        conn.line("* OK [PERMANENTFLAGS ()] Read-only mailbox");
    } else {
        let mut perm = flags;
        perm.push("\\*");
        conn.line(&format!(
            "* OK [PERMANENTFLAGS {}] Flags permitted",
            wire::flag_list(&perm)
        ));
    }
}

/// Sends FLAGS again when a message in the view carries a keyword the client was not
/// told of, so it comes before the FETCH or EXISTS that shows it (RFC 3501 7.2.6).
pub(super) fn announce_keywords(conn: &mut Conn, sel: &mut Selected) {
    let mut grew = false;
    for e in &sel.msgs {
        for f in &e.meta.flags {
            if !f.starts_with('\\') && !sel.keywords.contains(f) {
                sel.keywords.insert(f.clone());
                grew = true;
            }
        }
    }
    if grew {
        send_flags(conn, &sel.keywords, sel.read_only);
    }
}

/// Flags every mailbox supports (RFC 3501 2.3.2).
const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// ` MODSEQ (n)` once CONDSTORE is enabled (RFC 7162 3.1.4), else nothing.
/// The untagged FETCH that tells a client a message's flags:
/// `* SEQ FETCH (UID u FLAGS (...))`, with ` MODSEQ (m)` once CONDSTORE is on.
pub(super) fn flags_fetch_line(seq: usize, e: &Entry, recent: bool, condstore: bool) -> String {
    format!(
        "* {seq} FETCH (UID {} FLAGS {}{})",
        e.meta.uid,
        flags_with_recent(&e.meta.flags, recent),
        modseq_item(condstore, e.meta.modseq)
    )
}

pub(super) fn modseq_item(condstore: bool, modseq: u64) -> String {
    if condstore {
        format!(" MODSEQ ({modseq})")
    } else {
        String::new()
    }
}

pub(super) fn flags_with_recent(flags: &[String], recent: bool) -> String {
    if recent {
        let mut f = flags.to_vec();
        f.push("\\Recent".into());
        wire::flag_list(&f)
    } else {
        wire::flag_list(flags)
    }
}

/// Timeout helper for the listener (TLS handshakes).
pub(super) fn handshake_timeout(cfg_timeout: u64) -> Duration {
    Duration::from_secs(cfg_timeout.clamp(1, 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(uids: &[u32]) -> Selected {
        Selected {
            id: "m".into(),
            name: "INBOX".into(),
            read_only: false,
            msgs: uids
                .iter()
                .map(|&uid| Entry {
                    meta: MessageMeta {
                        id: uid.to_string(),
                        uid,
                        modseq: 1,
                        blob: String::new(),
                        size: 0,
                        internal_date: 0,
                        flags: vec![],
                    },
                    reported: vec![],
                    expunged: false,
                })
                .collect(),
            max_uid: uids.last().copied().unwrap_or(0),
            recent: HashSet::new(),
            keywords: BTreeSet::new(),
            dirty: false,
            uidvalidity: 1,
        }
    }

    fn resolve(sel: &Selected, set: &str, uid: bool) -> Option<Vec<usize>> {
        sel.resolve(&set.parse::<SequenceSet>().unwrap(), uid).ok()
    }

    #[test]
    fn sequence_numbers() {
        let sel = selected(&[3, 5, 9, 10]);
        assert_eq!(resolve(&sel, "1:*", false), Some(vec![0, 1, 2, 3]));
        assert_eq!(resolve(&sel, "*:2", false), Some(vec![1, 2, 3]));
        assert_eq!(resolve(&sel, "2,4,2", false), Some(vec![1, 3]));
        assert_eq!(resolve(&sel, "5", false), None);
        let empty = selected(&[]);
        assert_eq!(resolve(&empty, "1:*", false), Some(vec![]));
    }

    #[test]
    fn bare_names_quoted() {
        let q = |s: &str| quote_bare_names(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(q("a SELECT %\r\n").as_deref(), Some("a SELECT \"%\"\r\n"));
        assert_eq!(
            q("b LIST \"\" \\%*\r\n").as_deref(),
            Some("b LIST \"\" \"\\\\%*\"\r\n")
        );
        assert_eq!(
            q("c STATUS * (MESSAGES UNSEEN)\r\n").as_deref(),
            Some("c STATUS \"*\" (MESSAGES UNSEEN)\r\n")
        );
        assert_eq!(q("d SELECT (\r\n"), None); // nothing to quote
        assert_eq!(q("d LIST \"\" )%*\r\n"), None); // not atom-like: BAD
        assert_eq!(q("e FETCH 1:* FLAGS\r\n"), None); // not a mailbox command
    }

    #[test]
    fn uids() {
        let sel = selected(&[3, 5, 9, 10]);
        assert_eq!(resolve(&sel, "1:*", true), Some(vec![0, 1, 2, 3]));
        assert_eq!(resolve(&sel, "4:9", true), Some(vec![1, 2]));
        assert_eq!(resolve(&sel, "6", true), Some(vec![]));
        // RFC 3501 6.4.8: "n:*" includes the highest UID even when n is larger.
        assert_eq!(resolve(&sel, "100:*", true), Some(vec![3]));
        assert_eq!(resolve(&sel, "10,3", true), Some(vec![0, 3]));
    }
}
