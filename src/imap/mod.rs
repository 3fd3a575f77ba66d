//! IMAP4rev1 server (RFC 3501) with LITERAL+ (RFC 7888), SASL-IR (RFC 4959), IDLE
//! (RFC 2177), UIDPLUS (RFC 4315), MOVE (RFC 6851), NAMESPACE (RFC 2342), ID
//! (RFC 2971), UNSELECT (RFC 3691), ENABLE (RFC 5161), SPECIAL-USE (RFC 6154),
//! CHILDREN (RFC 3348), CONDSTORE and QRESYNC (RFC 7162) and COMPRESS=DEFLATE
//! (RFC 4978). Plain listeners offer STARTTLS; `tls_listen` is implicit TLS
//! (RFC 8314). Mailboxes, messages and flags live in the store; this module is the
//! protocol front-end only.
//!
//! Files: `conn` (stream, framing of lines and literals, limits, timeouts), `session`
//! (session state, command loop and dispatcher), `cmd` (the command handlers, one
//! file per family), `fetch` (FETCH items and SEARCH keys; text keys through `crate::mail::text`),
//! `mime` (ENVELOPE, BODYSTRUCTURE, body sections), `structure` (the node's byte-bounded
//! cache of those values by content address),
//! `list` (LIST patterns), `utf7` (modified UTF-7 names), `wire` (response syntax),
//! `recent` (which session owns a message's `\Recent`).
//!
//! Implementation notes
//! - We drive imap-codec's `CommandCodec` from our own I/O loop rather than
//!   imap-next's `Server`: we need STARTTLS on the same connection, a tagged BAD for
//!   malformed commands (imap-next drops them silently), per-read timeouts that also
//!   catch clients stalled mid-literal, and limits on line and literal sizes before
//!   anything is buffered. The framing (a line, then for each `{N}`/`{N+}` at its end
//!   a continuation request for synchronizing literals and N bytes) is small; parsing
//!   of the complete command is left to imap-codec. Responses are written by hand
//!   (`wire`), so literals and quoting are under our control.
//! - ID and NAMESPACE are recognised before imap-codec (its `ext_id`/`ext_namespace`
//!   features are off in this build).
//! - A mailbox command that does not parse because a bare name holds `%`, `*` or `\`
//!   (not atom characters; Python's imaplib sends names unquoted) is parsed again with
//!   those names quoted, as Dovecot accepts them: such a client gets NO for a mailbox
//!   that does not exist, not BAD, and is not closed after ten BADs in a row.
//! - Each session keeps the selected mailbox's sequence-number map: the UIDs in order
//!   plus, per message, the flags last reported to the client. The map grows (new
//!   messages, EXISTS) whenever the session refreshes, but it only shrinks in
//!   `Session::refresh(allow_expunge = true)`, i.e. where EXPUNGE responses may be
//!   sent: after commands other than FETCH, STORE and SEARCH (RFC 3501 7.4.1; their
//!   UID forms are fine), on NOOP and during IDLE. Until then, messages expunged by
//!   others stay in the map as "expunged" entries and are skipped by FETCH/STORE/COPY
//!   (RFC 2180 4.1). EXPUNGE responses are sent in descending order so every number
//!   is valid when the client applies it.
//! - The view is refreshed from the store (`Store::messages`) only when a `Change`
//!   for the selected mailbox was broadcast (or the receiver lagged) or this session
//!   changed it; receivers never trust the payload. A session's own STORE/FETCH
//!   updates its reported flags directly, so the client is not told twice.
//! - IDLE waits on the socket and the change broadcast at once, so another session's
//!   APPEND reaches an idling client as soon as it is committed.
//! - `\Recent` belongs to one session: the first read-write session that selects the
//!   mailbox, or hears of the message while holding it selected, takes it
//!   (`recent::Claims`, shared by the node's sessions, in memory and not replicated).
//!   EXAMINE and STATUS count without taking.
//! - FLAGS lists the keywords on the mailbox's messages; when a keyword new to the
//!   session appears (a STORE, another session, an APPEND), a new untagged FLAGS and
//!   PERMANENTFLAGS (with `\*`) go out before the response that shows it (RFC 3501
//!   7.2.6). The announced list only grows during a session.
//! - CONDSTORE/QRESYNC: imap-codec's `ext_condstore_qresync` feature parses the
//!   syntax; MODSEQs are the store's (every message and every expunge has one, and
//!   they replicate), so every mailbox has them and NOMODSEQ never occurs. Once
//!   enabled, untagged FETCH carries UID and MODSEQ, and (QRESYNC) expunges are
//!   reported as one `VANISHED` under the same rules as EXPUNGE. The HIGHESTMODSEQ of
//!   a SELECT is read before the view, so it never claims more than the client saw.
//!   VANISHED (EARLIER) comes from the store's record of expunged UIDs.
//! - COMPRESS=DEFLATE: `conn` switches both directions to raw deflate after the OK.
//! - Security: LOGIN and AUTHENTICATE PLAIN need TLS or a client address in
//!   `imap.allow_plaintext_auth_from` (else LOGINDISABLED is advertised and they get
//!   `NO [PRIVACYREQUIRED]`). Passwords go through the node's authentication limiter
//!   (`crate::authlimit`, shared with SMTP and the webmail): a wrong one is answered
//!   after a delay that grows with the failures seen, an address over its limit gets
//!   `NO [UNAVAILABLE]` and `BYE` without a check, and a session is closed after
//!   `auth.session_max_failures` (3) failures. Sessions are capped at
//!   `imap.max_sessions`, and at `imap.max_sessions_per_ip` from one address (the rest
//!   get `BYE`), lines at 64 KiB, literals at 64 MiB; `imap.timeout_s` of silence
//!   logs the client out, also mid-command. Before login a command (lines and
//!   literals) is at most 16 KiB and the client has `imap.login_timeout_s` from
//!   connecting to log in: what a stranger can make the node hold is small and short. A standby node (store not writable)
//!   greets with `BYE [UNAVAILABLE]`.

mod cmd;
mod conn;
mod fetch;
mod list;
pub mod mime;
mod recent;
mod session;
mod structure;
mod utf7;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::ctx::Ctx;
use crate::supervise::{Run, until_first_ends};
use conn::{Conn, Stream};
use session::Session;

/// State shared by all IMAP sessions of this node.
pub(crate) struct Server {
    ctx: Arc<Ctx>,
    sessions: Arc<Semaphore>,
    /// Sessions per client address (`imap.max_sessions_per_ip`).
    per_ip: Arc<crate::perip::PerIp>,
    /// Which UIDs sessions have taken as `\Recent`, per mailbox.
    recent: recent::Claims,
    /// Parsed ENVELOPE/BODYSTRUCTURE values by content address, for every session.
    structure: Arc<structure::StructureCache>,
}

/// Prepares the IMAP service: the state its sessions share (kept across restarts);
/// [`serve`] runs it.
pub(crate) fn prepare(ctx: Arc<Ctx>) -> Arc<Server> {
    Arc::new(Server {
        sessions: Arc::new(Semaphore::new(ctx.cfg.imap.max_sessions)),
        per_ip: crate::perip::PerIp::new(ctx.cfg.imap.max_sessions_per_ip),
        recent: recent::Claims::default(),
        structure: Arc::new(structure::StructureCache::new(structure::CAP)),
        ctx,
    })
}

/// One instance of the IMAP service (see `supervise`): binds `imap.listen` (STARTTLS)
/// and `imap.tls_listen` (implicit TLS), then runs their accept loops until stopped.
/// Sessions outlive it.
pub(crate) async fn serve(server: Arc<Server>, run: Run) -> anyhow::Result<()> {
    let mut loops = JoinSet::new();
    for addr in &server.ctx.cfg.imap.listen {
        let l = crate::ctx::bind(*addr, "imap.listen").await?;
        tracing::info!(%addr, "imap: listening");
        loops.spawn(accept_loop(server.clone(), l, false, run.clone()));
    }
    for addr in &server.ctx.cfg.imap.tls_listen {
        let l = crate::ctx::bind(*addr, "imap.tls_listen").await?;
        tracing::info!(%addr, "imap: listening (TLS)");
        loops.spawn(accept_loop(server.clone(), l, true, run.clone()));
    }
    run.ready();
    until_first_ends(loops).await
}

async fn accept_loop(server: Arc<Server>, listener: TcpListener, implicit_tls: bool, run: Run) {
    loop {
        match run.gate(listener.accept()).await {
            Ok((tcp, peer)) => {
                tokio::spawn(serve_conn(server.clone(), tcp, peer, implicit_tls));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("imap: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_conn(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, implicit_tls: bool) {
    let _ = tcp.set_nodelay(true);
    let timeout = Duration::from_secs(server.ctx.cfg.imap.timeout_s);
    let login_timeout = Duration::from_secs(server.ctx.cfg.imap.login_timeout_s);
    let slot = server.per_ip.try_acquire(peer.ip());
    let permit = server.sessions.clone().try_acquire_owned().ok();
    let stream = if implicit_tls {
        let hs = session::handshake_timeout(server.ctx.cfg.imap.timeout_s);
        match tokio::time::timeout(hs, server.ctx.tls.accept(tcp)).await {
            Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(%peer, "imap: TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "imap: TLS handshake timed out");
                return;
            }
        }
    } else {
        Stream::Plain(tcp)
    };
    crate::ctx::count(&crate::ctx::REQUESTS.imap);
    let mut conn = Conn::new(stream, timeout, login_timeout);
    conn.spool_to(server.ctx.store.clone());
    let Some(_slot) = slot else {
        tracing::debug!(%peer, "imap: too many sessions from one address");
        conn.line("* BYE [UNAVAILABLE] Too many sessions from your address; try again later");
        conn.shutdown().await;
        return;
    };
    let Some(_permit) = permit else {
        tracing::warn!(%peer, "imap: too many sessions");
        conn.line("* BYE [UNAVAILABLE] Too many sessions; try again later");
        conn.shutdown().await;
        return;
    };
    if !server.ctx.store.is_writable() {
        conn.line("* BYE [UNAVAILABLE] This node is on standby; try again later");
        conn.shutdown().await;
        return;
    }
    tracing::debug!(%peer, "imap: session start");
    Session::new(server, conn, crate::config::canonical_ip(peer.ip()))
        .run()
        .await;
    tracing::debug!(%peer, "imap: session end");
}

/// The fuzz target's entry (`crate::fuzz`): one client command as the connection
/// frames it and the session decodes it — the literal announcement at a line's end,
/// imap-codec's parse with our repair of bare mailbox names, and a name's modified
/// UTF-7.
#[doc(hidden)]
pub fn fuzz_command(input: &[u8]) {
    if let Some(line_end) = input.iter().position(|&b| b == b'\n') {
        let _ = conn::literal_announcement(&input[..=line_end]);
    }
    let _ = conn::literal_announcement(input);
    session::fuzz_decode(input);
    if let Some(name) = utf7::decode(input) {
        // What decodes must encode back to a name that decodes to the same.
        let wire = utf7::encode(&name);
        assert_eq!(
            utf7::decode(wire.as_bytes()).as_deref(),
            Some(name.as_str())
        );
    }
}
