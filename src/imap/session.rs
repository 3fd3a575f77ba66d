//! One IMAP session: the state machine of RFC 3501 3 (not authenticated,
//! authenticated, selected, logout) and the commands of each state. See the module
//! documentation of `imap` for the invariants.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{AString, Charset};
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::StatusDataItemName;
use tokio::sync::broadcast;

use super::conn::{Conn, Frame, MAX_LINE, ReadError, tag_of};
use super::{Server, fetch, list, search, utf7, wire};
use crate::store::{Change, FlagMode, MessageMeta, StoreError};

/// Flags every mailbox supports (RFC 3501 2.3.2).
const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];
/// Consecutive unparseable commands after which the session is closed.
const MAX_BAD_STREAK: u32 = 10;
/// Failed authentications after which the session is closed.
const MAX_AUTH_FAILURES: u32 = 5;

/// What the command loop does after a command.
pub(super) enum Flow {
    Continue,
    Close,
}

/// How a command handler finished.
enum Done {
    /// Tagged OK with this text (the caller sends pending updates first).
    Ok(String),
    /// The handler wrote its own tagged response.
    Handled,
    /// Tagged response written; close the connection.
    Close,
}

/// A failed command: tagged NO or BAD with this text (which may start with a code).
enum Fail {
    No(String),
    Bad(String),
    /// The connection is unusable.
    Io,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            StoreError::NoSuchMailbox(m) => Fail::No(format!("[NONEXISTENT] No such mailbox: {m}")),
            StoreError::MailboxExists(m) => {
                Fail::No(format!("[ALREADYEXISTS] Mailbox already exists: {m}"))
            }
            StoreError::InvalidName(m) => Fail::No(format!("[CANNOT] Invalid name: {m}")),
            StoreError::NotAllowed(m) => Fail::No(format!("[CANNOT] {m}")),
            StoreError::ReadOnly => {
                Fail::No("[UNAVAILABLE] This node is not active; try again later".into())
            }
            StoreError::NoSuchAccount(_) => {
                Fail::No("[AUTHORIZATIONFAILED] No such account".into())
            }
            other => {
                tracing::error!(error = %other, "imap: store failure");
                Fail::No("[SERVERBUG] Internal error; try again later".into())
            }
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(_: std::io::Error) -> Fail {
        Fail::Io
    }
}

type CmdResult = Result<Done, Fail>;

fn ok(text: &str) -> CmdResult {
    Ok(Done::Ok(text.to_string()))
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
    /// UIDs that are \Recent in this session.
    pub recent: HashSet<u32>,
    /// The store changed the mailbox since the last refresh.
    pub dirty: bool,
    /// The mailbox's UIDVALIDITY when it was selected; a split-brain merge that
    /// renumbers the mailbox changes it, and the session then ends (RFC 3501 2.3.1.1).
    pub uidvalidity: u32,
}

impl Selected {
    /// Indexes into `msgs` named by a sequence set (RFC 3501 9 sequence-set), in
    /// ascending order without duplicates.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Fail> {
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

    fn live(&self, idx: &[usize]) -> Vec<u32> {
        idx.iter()
            .filter(|&&i| !self.msgs[i].expunged)
            .map(|&i| self.msgs[i].meta.uid)
            .collect()
    }

    fn position(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |e| e.meta.uid).ok()
    }
}

pub(super) struct Session {
    srv: Arc<Server>,
    conn: Conn,
    peer: IpAddr,
    user: Option<String>,
    selected: Option<Selected>,
    changes: broadcast::Receiver<Change>,
    bad_streak: u32,
    auth_failures: u32,
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
        }
    }

    fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE \
             SPECIAL-USE CHILDREN",
        );
        if self.user.is_none() {
            if !self.conn.is_tls() {
                caps.push_str(" STARTTLS");
            }
            if self.auth_allowed() {
                caps.push_str(" AUTH=PLAIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps
    }

    /// RFC 3501 6.2.3: plaintext passwords only over TLS or from trusted networks.
    fn auth_allowed(&self) -> bool {
        self.conn.is_tls() || self.srv.ctx.cfg.imap.plaintext_allowed(self.peer)
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
        let cmd = match CommandCodec::default().decode(bytes) {
            Ok((b"", cmd)) => cmd,
            _ => return self.syntax_error(bytes),
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
    /// (RFC 2342).
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
        if word.eq_ignore_ascii_case(b"ID") {
            if !(args.eq_ignore_ascii_case("NIL") || (args.starts_with('(') && args.ends_with(')')))
            {
                return None;
            }
            self.conn.line(&format!(
                "* ID (\"name\" \"clusterd\" \"version\" \"{}\")",
                env!("CARGO_PKG_VERSION")
            ));
            self.conn.line(&format!("{tag} OK ID completed"));
        } else if word.eq_ignore_ascii_case(b"NAMESPACE") {
            if !args.is_empty() {
                return None;
            }
            if self.user.is_none() {
                self.conn.line(&format!("{tag} BAD Log in first"));
            } else {
                self.conn.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.conn.line(&format!("{tag} OK NAMESPACE completed"));
            }
        } else {
            return None;
        }
        self.bad_streak = 0;
        Some(Flow::Continue)
    }

    async fn dispatch(&mut self, tag: &str, body: CommandBody<'_>) -> CmdResult {
        use CommandBody as C;
        match body {
            // ------------------------------------------------ any state (RFC 3501 6.1)
            C::Capability => {
                let caps = self.capabilities();
                self.conn.line(&format!("* CAPABILITY {caps}"));
                ok("CAPABILITY completed")
            }
            C::Noop => ok("NOOP completed"),
            C::Logout => {
                self.conn.line("* BYE clusterd logging out");
                self.conn.line(&format!("{tag} OK LOGOUT completed"));
                Ok(Done::Close)
            }
            // ------------------------------------------------ not authenticated (6.2)
            C::StartTLS => {
                if self.conn.is_tls() {
                    return Err(Fail::Bad("TLS is already active".into()));
                }
                if self.user.is_some() {
                    return Err(Fail::Bad("STARTTLS is only valid before login".into()));
                }
                self.conn
                    .line(&format!("{tag} OK Begin TLS negotiation now"));
                let acceptor = self.srv.ctx.tls.clone();
                match self.conn.start_tls(&acceptor).await {
                    Ok(()) => Ok(Done::Handled),
                    Err(e) => {
                        tracing::info!(peer = %self.peer, "imap: STARTTLS failed: {e}");
                        Ok(Done::Close)
                    }
                }
            }
            C::Login { username, password } => {
                if self.user.is_some() {
                    return Err(Fail::Bad("Already logged in".into()));
                }
                if !self.auth_allowed() {
                    return Err(Fail::No(
                        "[PRIVACYREQUIRED] Use STARTTLS or the TLS port before LOGIN".into(),
                    ));
                }
                let user = astring(&username);
                let pass = astring(password.declassify());
                self.authenticate(tag, &user, &pass).await
            }
            C::Authenticate {
                mechanism,
                initial_response,
            } => {
                if self.user.is_some() {
                    return Err(Fail::Bad("Already logged in".into()));
                }
                if !matches!(mechanism, AuthMechanism::Plain) {
                    return Err(Fail::No("Unsupported authentication mechanism".into()));
                }
                if !self.auth_allowed() {
                    return Err(Fail::No(
                        "[PRIVACYREQUIRED] Use STARTTLS or the TLS port before AUTHENTICATE".into(),
                    ));
                }
                let data = match initial_response {
                    Some(ir) => ir.declassify().to_vec(),
                    None => {
                        self.conn.line("+ ");
                        let line = match self.conn.read_line().await {
                            Ok(Some(l)) => l,
                            Ok(None) => return Err(Fail::Bad("Line too long".into())),
                            Err(_) => return Err(Fail::Io),
                        };
                        let line = trim_crlf(&line);
                        if line == b"*" {
                            return Err(Fail::Bad("Authentication cancelled".into()));
                        }
                        match base64::engine::general_purpose::STANDARD.decode(line) {
                            Ok(d) => d,
                            Err(_) => return Err(Fail::Bad("Invalid base64".into())),
                        }
                    }
                };
                // RFC 4616: [authzid] NUL authcid NUL passwd
                let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
                if parts.len() != 3 {
                    return Err(Fail::Bad("Malformed PLAIN response".into()));
                }
                let authz = String::from_utf8_lossy(parts[0]).into_owned();
                let user = String::from_utf8_lossy(parts[1]).into_owned();
                let pass = String::from_utf8_lossy(parts[2]).into_owned();
                if !authz.is_empty() && !authz.eq_ignore_ascii_case(&user) {
                    return Err(Fail::No(
                        "[AUTHORIZATIONFAILED] Proxy authorization is not supported".into(),
                    ));
                }
                self.authenticate(tag, &user, &pass).await
            }
            _ if self.user.is_none() => Err(Fail::Bad("Log in first".into())),
            // ------------------------------------------------ authenticated (6.3)
            C::Select { mailbox, .. } => self.select(&mailbox, false).await,
            C::Examine { mailbox, .. } => self.select(&mailbox, true).await,
            C::Create { mailbox } => self.create(&mailbox).await,
            C::Delete { mailbox } => {
                let name = mailbox_name(&mailbox)?;
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
            C::Rename {
                from: mailbox,
                to: new_mailbox,
            } => {
                let from = mailbox_name(&mailbox)?;
                let to = mailbox_name(&new_mailbox)?;
                self.srv
                    .ctx
                    .store
                    .rename_mailbox(self.user(), &from, &to)
                    .await?;
                ok("RENAME completed")
            }
            C::Subscribe { mailbox } => {
                let name = mailbox_name(&mailbox)?;
                self.srv
                    .ctx
                    .store
                    .set_subscribed(self.user(), &name, true)
                    .await?;
                ok("SUBSCRIBE completed")
            }
            C::Unsubscribe { mailbox } => {
                let name = mailbox_name(&mailbox)?;
                self.srv
                    .ctx
                    .store
                    .set_subscribed(self.user(), &name, false)
                    .await?;
                ok("UNSUBSCRIBE completed")
            }
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
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let name = mailbox_name(&mailbox)?;
                let Some(info) = self.srv.ctx.store.mailbox(self.user(), &name).await? else {
                    return Err(Fail::No(format!("[TRYCREATE] No such mailbox: {name}")));
                };
                let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
                let date = date.map(|d| d.as_ref().timestamp());
                let data = match message {
                    LiteralOrLiteral8::Literal(l) => l.as_ref().to_vec(),
                    LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
                };
                let done = self
                    .srv
                    .ctx
                    .store
                    .append(&info.id, data, &flags, date)
                    .await?;
                self.mark_dirty(&info.id);
                Ok(Done::Ok(format!(
                    "[APPENDUID {} {}] APPEND completed",
                    done.uidvalidity, done.uid
                )))
            }
            C::Idle => self.idle().await,
            C::Enable { .. } => {
                // Nothing this server implements needs enabling (RFC 5161).
                self.conn.line("* ENABLED");
                ok("ENABLE completed")
            }
            _ if self.selected.is_none() => Err(Fail::Bad("No mailbox selected".into())),
            // ------------------------------------------------ selected (6.4)
            C::Check => ok("CHECK completed"),
            C::Close => {
                let sel = self.selected.take().expect("selected");
                if !sel.read_only {
                    // RFC 3501 6.4.2: expunge silently.
                    self.srv.ctx.store.expunge(&sel.id, None).await?;
                }
                ok("CLOSE completed")
            }
            C::Unselect => {
                self.selected = None;
                ok("UNSELECT completed")
            }
            C::Expunge => {
                let sel = self.sel()?;
                if sel.read_only {
                    return Err(Fail::No("[READ-ONLY] Mailbox is read-only".into()));
                }
                let id = sel.id.clone();
                self.srv.ctx.store.expunge(&id, None).await?;
                self.mark_dirty(&id);
                ok("EXPUNGE completed")
            }
            C::ExpungeUid { sequence_set } => {
                let sel = self.sel()?;
                if sel.read_only {
                    return Err(Fail::No("[READ-ONLY] Mailbox is read-only".into()));
                }
                let idx = sel.resolve(&sequence_set, true)?;
                let uids = sel.live(&idx);
                let id = sel.id.clone();
                if !uids.is_empty() {
                    self.srv.ctx.store.expunge(&id, Some(&uids)).await?;
                    self.mark_dirty(&id);
                }
                ok("UID EXPUNGE completed")
            }
            C::Search {
                charset,
                criteria,
                uid,
            } => {
                check_charset(charset.as_ref())?;
                let key = if criteria.as_ref().len() == 1 {
                    criteria.as_ref()[0].clone()
                } else {
                    SearchKey::And(criteria)
                };
                self.search(&key, uid).await
            }
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => self.fetch(&sequence_set, macro_or_item_names, uid).await,
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => self.store(&sequence_set, kind, response, &flags, uid).await,
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

    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    fn sel(&self) -> Result<&Selected, Fail> {
        self.selected
            .as_ref()
            .ok_or_else(|| Fail::Bad("No mailbox selected".into()))
    }

    fn mark_dirty(&mut self, mailbox: &str) {
        if let Some(sel) = &mut self.selected
            && sel.id == mailbox
        {
            sel.dirty = true;
        }
    }

    // ------------------------------------------------------------ authentication

    async fn authenticate(&mut self, tag: &str, user: &str, pass: &str) -> CmdResult {
        let ctx = &self.srv.ctx;
        // Accept the full address of a local domain as the account name.
        let account = match user.rsplit_once('@') {
            Some((local, domain)) if ctx.cfg.domain.is_local(domain) => local.to_string(),
            _ => user.to_string(),
        };
        match ctx.store.verify_password(&account, pass).await {
            Ok(Some(name)) => {
                self.srv.login_succeeded(self.peer);
                tracing::info!(peer = %self.peer, user = %name, "imap: login");
                self.user = Some(name);
                self.conn.max_literal = super::conn::MAX_LITERAL;
                let caps = self.capabilities();
                self.conn
                    .line(&format!("{tag} OK [CAPABILITY {caps}] Logged in"));
                Ok(Done::Handled)
            }
            Ok(None) | Err(_) => {
                let delay = self.srv.login_failed(self.peer);
                tracing::info!(peer = %self.peer, user = %account, "imap: authentication failed");
                tokio::time::sleep(delay).await;
                self.auth_failures += 1;
                self.conn.line(&format!(
                    "{tag} NO [AUTHENTICATIONFAILED] Authentication failed"
                ));
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.conn.line("* BYE Too many failed authentications");
                    return Ok(Done::Close);
                }
                Ok(Done::Handled)
            }
        }
    }

    // ------------------------------------------------------------ mailboxes

    async fn select(&mut self, mailbox: &Mailbox<'_>, read_only: bool) -> CmdResult {
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

    async fn create(&mut self, mailbox: &Mailbox<'_>) -> CmdResult {
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

    async fn list(
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

    async fn status(&mut self, mailbox: &Mailbox<'_>, items: &[StatusDataItemName]) -> CmdResult {
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

    // ------------------------------------------------------------ selected state

    async fn search(&mut self, key: &SearchKey<'_>, uid: bool) -> CmdResult {
        let store = self.srv.ctx.store.clone();
        let sel = self.selected.as_ref().expect("selected");
        let mut hits = Vec::new();
        let needs_text = fetch::search_needs_text(key);
        for (i, e) in sel.msgs.iter().enumerate() {
            if e.expunged {
                continue;
            }
            let raw = if needs_text {
                match store.read_blob(&e.meta.blob).await {
                    Ok(r) => Some(r),
                    Err(err) => {
                        tracing::warn!(uid = e.meta.uid, "imap: unreadable message: {err}");
                        continue;
                    }
                }
            } else {
                None
            };
            let text = raw.as_deref().map(search::Text::new);
            if fetch::search_matches(key, sel, i, text.as_ref()) {
                hits.push(if uid { e.meta.uid } else { i as u32 + 1 });
            }
        }
        let mut line = String::from("* SEARCH");
        for h in hits {
            line.push(' ');
            line.push_str(&h.to_string());
        }
        self.conn.line(&line);
        ok("SEARCH completed")
    }

    async fn fetch(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
    ) -> CmdResult {
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
        let store = self.srv.ctx.store.clone();
        let sel = self.selected.as_mut().expect("selected");
        let idx = sel.resolve(set, uid)?;
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
        let needs_body = names.iter().any(fetch::needs_body);
        let wants_flags = names.contains(&MessageDataItemName::Flags);
        for i in idx {
            let sel = self.selected.as_mut().expect("selected");
            let e = &sel.msgs[i];
            if e.expunged {
                // RFC 2180 4.1.2: the message is gone; skip it.
                continue;
            }
            let raw = if needs_body {
                match store.read_blob(&e.meta.blob).await {
                    Ok(r) => Some(r),
                    Err(err) => {
                        tracing::error!(uid = e.meta.uid, "imap: unreadable message: {err}");
                        return Err(Fail::No("[SERVERBUG] Message data unavailable".into()));
                    }
                }
            } else {
                None
            };
            let recent = sel.recent.contains(&e.meta.uid);
            let flags_changed = e.meta.flags != e.reported;
            let with_flags = wants_flags || (sets_seen && flags_changed);
            let mut out = format!("* {} FETCH (", i + 1).into_bytes();
            let mut first = true;
            // UID and FLAGS first (FLAGS also when \Seen was set implicitly).
            if names.contains(&MessageDataItemName::Uid) {
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
                fetch::item(&mut out, name, &e.meta, raw.as_deref());
            }
            out.extend_from_slice(b")\r\n");
            if with_flags {
                let e = &mut sel.msgs[i];
                e.reported = e.meta.flags.clone();
            }
            self.conn.write(&out);
            self.conn.maybe_flush().await?;
        }
        ok(if uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        })
    }

    async fn store(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
    ) -> CmdResult {
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
        if !uids.is_empty() {
            let updates = store.store_flags(&sel.id, &uids, mode, &flags).await?;
            for u in updates {
                if let Some(p) = sel.position(u.uid) {
                    sel.msgs[p].meta.flags = u.flags;
                    sel.msgs[p].meta.modseq = u.modseq;
                }
            }
        }
        let silent = matches!(response, StoreResponse::Silent);
        for i in idx {
            let e = &mut sel.msgs[i];
            if e.expunged {
                continue;
            }
            if !silent {
                let recent = sel.recent.contains(&e.meta.uid);
                let mut line = format!("* {} FETCH (", i + 1);
                if uid {
                    line.push_str(&format!("UID {} ", e.meta.uid));
                }
                line.push_str(&format!(
                    "FLAGS {})",
                    flags_with_recent(&e.meta.flags, recent)
                ));
                self.conn.line(&line);
            }
            e.reported = e.meta.flags.clone();
        }
        ok(if uid {
            "UID STORE completed"
        } else {
            "STORE completed"
        })
    }

    async fn copy(
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

    // ------------------------------------------------------------ IDLE (RFC 2177)

    async fn idle(&mut self) -> CmdResult {
        self.refresh(true).await?;
        self.conn.line("+ idling");
        self.conn.flush().await?;
        let deadline = tokio::time::Instant::now() + self.conn.timeout;
        enum Ev {
            Input(Result<(), ReadError>),
            Change(Result<Change, broadcast::error::RecvError>),
            Timeout,
        }
        loop {
            if let Some(line) = self.conn.take_line() {
                return if trim_crlf(&line).eq_ignore_ascii_case(b"DONE") {
                    ok("IDLE terminated")
                } else {
                    Err(Fail::Bad("Expected DONE".into()))
                };
            }
            if self.conn.buffered() > MAX_LINE {
                self.conn.line("* BYE Line too long");
                return Ok(Done::Close);
            }
            let ev = tokio::select! {
                r = self.conn.fill() => Ev::Input(r),
                c = self.changes.recv() => Ev::Change(c),
                _ = tokio::time::sleep_until(deadline) => Ev::Timeout,
            };
            match ev {
                Ev::Input(Ok(())) => {}
                Ev::Input(Err(_)) => return Err(Fail::Io),
                Ev::Timeout => {
                    self.conn.line("* BYE Autologout; idle for too long");
                    return Ok(Done::Close);
                }
                Ev::Change(c) => {
                    let relevant = match &c {
                        Ok(change) => self
                            .selected
                            .as_ref()
                            .is_some_and(|s| change.mailbox() == Some(s.id.as_str())),
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(Fail::No("[UNAVAILABLE] Shutting down".into()));
                        }
                    };
                    if relevant {
                        if let Some(s) = &mut self.selected {
                            s.dirty = true;
                        }
                        self.refresh(true).await?;
                        self.conn.flush().await?;
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ updates

    /// Notes which store changes concern the selected mailbox.
    fn drain_changes(&mut self) {
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
    async fn refresh(&mut self, allow_expunge: bool) -> Result<(), Fail> {
        self.drain_changes();
        let store = self.srv.ctx.store.clone();
        let Some(sel) = &mut self.selected else {
            return Ok(());
        };
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
            for m in current.iter().filter(|m| m.uid > known) {
                sel.max_uid = m.uid;
                sel.recent.insert(m.uid);
                sel.msgs.push(Entry {
                    reported: m.flags.clone(),
                    meta: m.clone(),
                    expunged: false,
                });
                added += 1;
            }
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
            self.conn.line(&format!("* {} RECENT", sel.recent.len()));
        }
        for (i, e) in sel.msgs.iter_mut().enumerate() {
            if !e.expunged && e.meta.flags != e.reported {
                let recent = sel.recent.contains(&e.meta.uid);
                self.conn.line(&format!(
                    "* {} FETCH (UID {} FLAGS {})",
                    i + 1,
                    e.meta.uid,
                    flags_with_recent(&e.meta.flags, recent)
                ));
                e.reported = e.meta.flags.clone();
            }
        }
        let _ = &sel.name;
        Ok(())
    }
}

fn flags_with_recent(flags: &[String], recent: bool) -> String {
    if recent {
        let mut f = flags.to_vec();
        f.push("\\Recent".into());
        wire::flag_list(&f)
    } else {
        wire::flag_list(flags)
    }
}

fn astring(s: &AString<'_>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// The store's (UTF-8) name for a mailbox named on the wire in modified UTF-7.
fn mailbox_name(mailbox: &Mailbox<'_>) -> Result<String, Fail> {
    let raw = match mailbox {
        Mailbox::Inbox => return Ok("INBOX".into()),
        Mailbox::Other(o) => o.inner().as_ref(),
    };
    let name = utf7::from_wire(raw)
        .ok_or_else(|| Fail::Bad("Invalid mailbox name encoding (RFC 3501 5.1.3)".into()))?;
    crate::store::normalize_mailbox_name(&name).map_err(Fail::from)
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
