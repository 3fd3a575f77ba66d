//! The async driver of one SMTP session: reads lines (bounded, with the inactivity
//! timeout), prepares verdicts that need I/O, feeds the lines to the mailin engine,
//! and writes its replies; owns TLS, AUTH (and the sender binding that follows it),
//! the message size limit, the completion of a submission's header and the durable
//! commit after DATA.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use base64::Engine as _;
use mailin::{Action, Response};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::data;
use super::engine::{self, Engine, Prepared, Rcpt};
use super::submit::Verdict;
use super::{Inflight, MAX_COMMAND_LINE, MAX_RECIPIENTS, Mode, Resolver};
use crate::authlimit::{self, Protocol, log_name};
use crate::ctx::Ctx;
use crate::mail::build::{self, Trace};
use crate::mail::submission;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = BufReader<Box<dyn Io>>;

/// The most of a message's header kept whole in memory before it is written (see
/// `Session::data`); a longer header is taken as it is (only what came by then is
/// looked at for Message-ID and Date), as Postfix's `header_size_limit` does.
pub(super) const HEADER_MAX: usize = 64 * 1024;

enum Line {
    /// The line is in the caller's buffer.
    Ok,
    TooLong,
    Eof,
}

/// Reads one line (with its terminator) of at most `max` bytes. Longer lines are
/// consumed to their end without being kept and reported as `TooLong`, so memory stays
/// bounded whatever the client sends. A final line without terminator counts as EOF.
async fn read_line(conn: &mut Conn, max: usize, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = conn.fill_buf().await?;
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        let (n, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + n > max {
                too_long = true;
                buf.clear();
                buf.shrink_to(8192);
            } else {
                buf.extend_from_slice(&avail[..n]);
            }
        }
        conn.consume(n);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Ok });
        }
    }
}

/// The line with its terminator normalised to CRLF (mailin requires CRLF; clients that
/// end lines with a bare LF are tolerated).
fn crlf(mut line: Vec<u8>) -> Vec<u8> {
    if line.ends_with(b"\r\n") {
        return line;
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    line.extend_from_slice(b"\r\n");
    line
}

fn reply(code: u16, text: &str) -> Response {
    Response::custom(code, text.to_string())
}

/// The reply while free space is below `store.min_free_mb` (RFC 5321 4.5.3.1.6 /
/// RFC 3463 4.3.1: a temporary condition of this system).
fn no_space() -> Response {
    reply(452, "4.3.1 Insufficient system storage")
}

/// What came of a DATA that reached its final `.`.
struct Received {
    /// The body file, unless it was dropped (over a limit, or a write failed).
    sink: Option<crate::store::BlobSink>,
    failed: Option<crate::store::StoreError>,
    size: u64,
    over_budget: bool,
    /// Whether the header From is the user's (submission).
    from_ok: bool,
    smuggled: bool,
}

enum Next {
    Continue,
    Close,
    StartTls,
}

struct Session {
    ctx: Arc<Ctx>,
    resolver: Resolver,
    inflight: Arc<Inflight>,
    peer: IpAddr,
    mode: Mode,
    tls: bool,
    esmtp: bool,
    /// The authenticated account (submission ports).
    user: Option<String>,
    /// Wrong passwords in this session: at `auth.session_max_failures` it is closed.
    auth_failures: u32,
    engine: mailin::Session<Engine>,
    env: Engine,
    /// Replies not yet written: flushed when no pipelined input is waiting (RFC 2920).
    out: Vec<u8>,
    timeout: Duration,
    /// The SIZE the client announced at the last MAIL (RFC 1870): checked against each
    /// local recipient's quota at RCPT.
    announced: Option<u64>,
}

/// The reply for a recipient whose quota is reached (RFC 3463 X.2.2, mailbox full).
const QUOTA_FULL: &str = "5.2.2 Mailbox full: the recipient's storage quota is exceeded";

pub async fn serve(
    ctx: Arc<Ctx>,
    resolver: Resolver,
    inflight: Arc<Inflight>,
    sock: tokio::net::TcpStream,
    peer: IpAddr,
    mode: Mode,
) -> Result<()> {
    let timeout = Duration::from_secs(ctx.cfg.smtp.timeout_s);
    let host = ctx.cfg.hostname();
    let mut stream: Box<dyn Io> = if mode == Mode::Submissions {
        // RFC 8314 3.3: TLS from the first byte.
        Box::new(tokio::time::timeout(timeout, ctx.tls.accept(sock)).await??)
    } else {
        Box::new(sock)
    };
    if !ctx.store.is_writable() {
        // Only the active node accepts mail; clients retry (against the VIP).
        let msg = format!("421 4.3.2 {host} is the standby node, try again later\r\n");
        let _ = tokio::time::timeout(timeout, async {
            stream.write_all(msg.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
        return Ok(());
    }
    let (mut engine, env) = engine::session(&host, peer, mode != Mode::Submissions);
    if mode == Mode::Submissions {
        engine.tls_active();
    }
    let mut conn: Conn = BufReader::new(stream);
    let mut s = Session {
        ctx,
        resolver,
        inflight,
        peer,
        mode,
        tls: mode == Mode::Submissions,
        esmtp: false,
        user: None,
        auth_failures: 0,
        engine,
        env,
        out: Vec::new(),
        timeout,
        announced: None,
    };
    s.out
        .extend_from_slice(format!("220 {host} ESMTP clusterd\r\n").as_bytes());
    let mut buf = Vec::new();
    loop {
        if conn.buffer().is_empty() {
            s.flush(&mut conn).await?;
        }
        let line =
            match tokio::time::timeout(timeout, read_line(&mut conn, MAX_COMMAND_LINE, &mut buf))
                .await
            {
                // RFC 5321 4.5.3.2.7: the server may close an idle session; say so first.
                Err(_) => {
                    s.push(&reply(421, "4.4.2 Timeout waiting for a command, closing"));
                    break;
                }
                Ok(r) => r?,
            };
        let line = match line {
            Line::Eof => return Ok(()),
            // RFC 5321 4.5.3.1.4 / 4.2.2.
            Line::TooLong => {
                s.push(&reply(500, "5.5.2 Line too long"));
                continue;
            }
            Line::Ok => crlf(std::mem::take(&mut buf)),
        };
        match s.command(line, &mut conn).await? {
            Next::Continue => {}
            Next::Close => break,
            Next::StartTls => {
                s.flush(&mut conn).await?;
                // RFC 3207 4.2: whatever the client pipelined after STARTTLS is
                // discarded (dropping the BufReader drops it).
                let stream = conn.into_inner();
                let tls = tokio::time::timeout(timeout, s.ctx.tls.accept(stream)).await??;
                conn = BufReader::new(Box::new(tls));
                s.tls = true;
                s.esmtp = false;
                s.env.env().reset();
                s.env.env().helo = None;
                s.engine.tls_active();
            }
        }
    }
    let _ = tokio::time::timeout(timeout, s.flush(&mut conn)).await;
    Ok(())
}

impl Session {
    fn push(&mut self, r: &Response) {
        self.out.extend_from_slice(&engine::render(r));
    }

    async fn flush(&mut self, conn: &mut Conn) -> Result<()> {
        if !self.out.is_empty() {
            let w = conn.get_mut();
            tokio::time::timeout(self.timeout, async {
                w.write_all(&self.out).await?;
                w.flush().await
            })
            .await
            .map_err(|_| anyhow!("timeout writing to the client"))??;
            self.out.clear();
        }
        Ok(())
    }

    /// Hands a line to mailin and queues its reply.
    fn feed(&mut self, line: &[u8]) -> Next {
        let r = self.engine.process(line);
        if r.action == Action::NoReply {
            return Next::Continue;
        }
        self.push(&r);
        match r.action {
            Action::Close => Next::Close,
            Action::UpgradeTls => Next::StartTls,
            _ => Next::Continue,
        }
    }

    fn needs_auth(&self) -> bool {
        self.mode != Mode::Mx && self.user.is_none()
    }

    async fn command(&mut self, line: Vec<u8>, conn: &mut Conn) -> Result<Next> {
        // Commands are ASCII (RFC 5321 2.4); anything else is left to mailin's parser,
        // which answers 500.
        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => {
                self.push(&reply(501, "5.5.4 Syntax: EHLO hostname"));
            }
            "EHLO" | "HELO" => {
                let r = self.engine.process(&line);
                if r.code != 250 {
                    self.push(&r);
                    return Ok(Next::Continue);
                }
                self.esmtp = verb == "EHLO";
                let host = self.ctx.cfg.hostname();
                if !self.esmtp {
                    self.out
                        .extend_from_slice(format!("250 {host}\r\n").as_bytes());
                    return Ok(Next::Continue);
                }
                self.out.extend_from_slice(&self.ehlo_reply(&host));
            }
            "AUTH" => return self.auth(arg, conn).await,
            "MAIL" => self.mail(arg).await,
            "RCPT" => self.rcpt(arg).await,
            "DATA" if self.env.env().sender.is_some() && !self.inflight.open() => {
                // Too much mail is arriving at once: later (RFC 3463 4.3.1).
                self.push(&reply(
                    452,
                    "4.3.1 Insufficient system storage, try again later",
                ));
            }
            "DATA" => {
                let r = self.engine.process(&line);
                self.push(&r);
                if r.code == 354 {
                    return self.data(conn).await;
                }
                if r.action == Action::Close {
                    return Ok(Next::Close);
                }
            }
            "RSET" => {
                self.env.env().reset();
                return Ok(self.feed(&line));
            }
            "STARTTLS" if self.tls => self.push(&reply(503, "5.5.1 TLS already active")),
            "HELP" => self.push(&reply(214, "2.0.0 See RFC 5321; this is clusterd")),
            "BDAT" => self.push(&reply(502, "5.5.1 CHUNKING is not offered")),
            "VRFY" => self.push(&reply(
                252,
                "2.5.0 Cannot VRFY, but will accept the message",
            )),
            _ => return Ok(self.feed(&line)),
        }
        Ok(Next::Continue)
    }

    /// RFC 5321 4.1.1.1 EHLO reply with our extensions (mailin's lists only 8BITMIME,
    /// STARTTLS and AUTH).
    fn ehlo_reply(&self, host: &str) -> Vec<u8> {
        let mut ext = vec![
            host.to_string(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.ctx.cfg.smtp.max_message_bytes),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if !self.tls {
            ext.push("STARTTLS".into());
        }
        if self.mode != Mode::Mx && self.tls {
            ext.push("AUTH PLAIN LOGIN".into());
        }
        ext.push("HELP".into());
        let n = ext.len();
        let mut out = Vec::new();
        for (i, e) in ext.into_iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("250{sep}{e}\r\n").as_bytes());
        }
        out
    }

    /// RFC 4954 AUTH with PLAIN (RFC 4616) and LOGIN, on the submission ports after TLS.
    /// A 421 (too many failures) closes the session.
    async fn auth(&mut self, arg: &str, conn: &mut Conn) -> Result<Next> {
        if let Some(r) = self.auth_outcome(arg, conn).await? {
            self.push(&r);
            if r.code == 421 {
                return Ok(Next::Close);
            }
        }
        Ok(Next::Continue)
    }

    /// The reply to AUTH; `None` when an exchange already queued it.
    async fn auth_outcome(&mut self, arg: &str, conn: &mut Conn) -> Result<Option<Response>> {
        if self.mode == Mode::Mx {
            return Ok(Some(reply(
                502,
                "5.5.1 AUTH is offered on the submission ports only",
            )));
        }
        if !self.tls {
            return Ok(Some(reply(
                538,
                "5.7.11 Encryption required: use STARTTLS first",
            )));
        }
        if self.env.env().helo.is_none() || !self.esmtp {
            return Ok(Some(reply(503, "5.5.1 Send EHLO first")));
        }
        if self.user.is_some() {
            return Ok(Some(reply(503, "5.5.1 Already authenticated")));
        }
        if self.env.env().sender.is_some() {
            return Ok(Some(reply(
                503,
                "5.5.1 AUTH not allowed during a mail transaction",
            )));
        }
        let mut parts = arg.split_whitespace();
        let mech = parts.next().unwrap_or("").to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        let b64 = base64::engine::general_purpose::STANDARD;
        let decode = |s: &str| -> Option<String> {
            // "=" is the empty initial response (RFC 4954 4).
            if s == "=" {
                return Some(String::new());
            }
            b64.decode(s.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        };
        let (user, pass) = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.challenge("", conn).await? {
                        Some(r) => r,
                        None => return Ok(None),
                    },
                };
                let Some(dec) = decode(&resp) else {
                    return Ok(Some(reply(501, "5.5.2 Invalid base64")));
                };
                let fields: Vec<&str> = dec.split('\0').collect();
                let [_authz, user, pass] = fields[..] else {
                    return Ok(Some(reply(501, "5.5.2 Malformed PLAIN response")));
                };
                (user.to_string(), pass.to_string())
            }
            "LOGIN" => {
                let user = match initial {
                    Some(u) => u,
                    None => match self.challenge("VXNlcm5hbWU6", conn).await? {
                        Some(u) => u,
                        None => return Ok(None),
                    },
                };
                let Some(pass) = self.challenge("UGFzc3dvcmQ6", conn).await? else {
                    return Ok(None);
                };
                match (decode(&user), decode(&pass)) {
                    (Some(u), Some(p)) => (u, p),
                    _ => return Ok(Some(reply(501, "5.5.2 Invalid base64"))),
                }
            }
            "" => return Ok(Some(reply(501, "5.5.4 Syntax: AUTH mechanism"))),
            _ => {
                return Ok(Some(reply(
                    504,
                    "5.5.4 Unrecognised authentication mechanism",
                )));
            }
        };
        // The account may be given as a bare name or as its address.
        let name = match user.rsplit_once('@') {
            Some((l, d)) if self.ctx.cfg.domain.is_local(d) => l.to_string(),
            _ => user.clone(),
        };
        let ctx = &self.ctx;
        let verdict = ctx
            .auth
            .verify(&ctx.store, Protocol::Smtp, self.peer, &name, &pass)
            .await;
        match verdict {
            authlimit::Verdict::Ok(account) => {
                tracing::info!(peer = %self.peer, account, "smtp: authenticated");
                self.user = Some(account);
                Ok(Some(reply(235, "2.7.0 Authentication successful")))
            }
            authlimit::Verdict::Wrong => {
                tracing::info!(peer = %self.peer, user = %log_name(&name), "smtp: authentication failed");
                self.auth_failures += 1;
                if self.auth_failures >= ctx.cfg.auth.session_max_failures {
                    // RFC 5321 3.8: 421 and close, as Postfix's smtpd_hard_error_limit.
                    return Ok(Some(reply(
                        421,
                        "4.7.0 Too many failed authentications, closing connection",
                    )));
                }
                Ok(Some(reply(535, "5.7.8 Authentication credentials invalid")))
            }
            authlimit::Verdict::Refused(wait) => {
                tracing::debug!(peer = %self.peer, "smtp: authentication refused (limit)");
                Ok(Some(reply(
                    421,
                    &format!(
                        "4.7.0 Too many failed authentications from your address, try again in {} s",
                        wait.as_secs().max(1)
                    ),
                )))
            }
            authlimit::Verdict::Error(e) => {
                tracing::warn!(error = %e, "smtp auth: store failure");
                Ok(Some(reply(454, "4.7.0 Temporary authentication failure")))
            }
        }
    }

    /// Sends a 334 challenge and reads the answer; `None` when cancelled with `*`
    /// (RFC 4954 4) or unusable, the reply already queued.
    async fn challenge(&mut self, prompt: &str, conn: &mut Conn) -> Result<Option<String>> {
        self.out
            .extend_from_slice(format!("334 {prompt}\r\n").as_bytes());
        self.flush(conn).await?;
        let mut buf = Vec::new();
        let line = tokio::time::timeout(self.timeout, read_line(conn, MAX_COMMAND_LINE, &mut buf))
            .await
            .map_err(|_| anyhow!("timeout in AUTH"))??;
        match line {
            Line::Ok => {
                let s = String::from_utf8_lossy(&buf).trim().to_string();
                if s == "*" {
                    self.push(&reply(501, "5.0.0 Authentication cancelled"));
                    Ok(None)
                } else {
                    Ok(Some(s))
                }
            }
            Line::TooLong => {
                self.push(&reply(500, "5.5.2 Line too long"));
                Ok(None)
            }
            Line::Eof => Err(anyhow!("connection closed in AUTH")),
        }
    }

    async fn mail(&mut self, arg: &str) {
        if self.needs_auth() {
            // RFC 6409 4.3 / RFC 4954 6.
            return self.push(&reply(530, "5.7.0 Authentication required"));
        }
        if self.env.env().sender.is_some() {
            // RFC 5321 4.1.4, whatever the syntax of the nested command.
            return self.push(&reply(503, "5.5.1 Nested MAIL command"));
        }
        let Some(path) = engine::parse_path(arg, "FROM:") else {
            return self.push(&reply(501, "5.5.4 Syntax: MAIL FROM:<address>"));
        };
        let params = match engine::mail_params(path.params) {
            Ok(p) => p,
            Err((code, text)) => return self.push(&reply(code, text)),
        };
        let addr = path.addr.to_string();
        let mailbox = if addr.is_empty() {
            None
        } else {
            match engine::valid_mailbox(&addr) {
                Some((l, d)) => Some((l.to_string(), d.to_string())),
                None => return self.push(&reply(553, "5.1.7 Bad sender address syntax")),
            }
        };
        let in_sequence = self.env.env().helo.is_some();
        let line = engine::mail_line(&addr, params.eight_bit);
        if !in_sequence {
            // mailin answers the sequence error (503).
            self.feed(line.as_bytes());
            return;
        }
        let verdict = self.sender_verdict(mailbox.as_ref(), params.size).await;
        self.announced = params.size;
        self.env.env().prepared = Some(Prepared::Mail {
            reply: verdict,
            sender: addr,
        });
        self.feed(line.as_bytes());
        self.env.env().prepared = None;
    }

    /// The reply to MAIL for the reverse-path `mailbox` (local part, domain; `None`
    /// for `<>`).
    async fn sender_verdict(
        &self,
        mailbox: Option<&(String, String)>,
        size: Option<u64>,
    ) -> Response {
        let cfg = &self.ctx.cfg;
        // Below the free-space floor: a temporary refusal (RFC 3463 4.3.1), so the
        // client retries later or elsewhere; nothing is taken that might not be stored.
        if self.ctx.store.space_low() {
            return no_space();
        }
        // RFC 1870 6.1: refuse an announced size over the limit at MAIL.
        if size.is_some_and(|n| n > cfg.smtp.max_message_bytes) {
            return reply(552, "5.3.4 Message size exceeds fixed maximum message size");
        }
        // An authenticated user sends only as one of its own addresses (RFC 6409 8.1
        // lets the MSA check; Postfix's reject_sender_login_mismatch); not as `<>`,
        // which only bounces use.
        if let Some(user) = &self.user
            && !mailbox.is_some_and(|(l, d)| cfg.domain.owns_address(user, l, d))
        {
            return reply(
                553,
                &format!("5.7.1 Sender address not owned by user {user}"),
            );
        }
        // Without AUTH, an address of ours as the sender comes only from the hosts we
        // relay for: anyone else would be mailing the staff "from" the director.
        if self.user.is_none()
            && let Some((_, domain)) = mailbox
            && cfg.domain.is_local(domain)
            && !cfg.smtp.may_relay(self.peer)
        {
            return reply(
                550,
                "5.7.1 Sender address in a local domain: authenticate (submission port) to use it",
            );
        }
        if let Some((_, domain)) = mailbox
            && cfg.smtp.require_resolvable_sender
            && !cfg.domain.is_local(domain)
        {
            match super::domain_resolves(&self.resolver, domain).await {
                Ok(true) => {}
                Ok(false) => return reply(550, "5.1.8 Sender address domain does not exist"),
                Err(()) => {
                    return reply(
                        450,
                        "4.1.8 Cannot resolve the sender domain now, try again later",
                    );
                }
            }
        }
        reply(250, "2.1.0 OK")
    }

    async fn rcpt(&mut self, arg: &str) {
        let Some(path) = engine::parse_path(arg, "TO:") else {
            return self.push(&reply(501, "5.5.4 Syntax: RCPT TO:<address>"));
        };
        // RFC 5321 4.5.1: <postmaster> without a domain must be accepted.
        let (addr, local, domain) = if path.addr.eq_ignore_ascii_case("postmaster") {
            (
                path.addr.to_string(),
                "postmaster".to_string(),
                self.ctx.cfg.domain.name.clone(),
            )
        } else {
            match engine::valid_mailbox(path.addr) {
                Some((l, d)) => (path.addr.to_string(), l.to_string(), d.to_string()),
                None => return self.push(&reply(501, "5.1.3 Bad recipient address syntax")),
            }
        };
        let line = engine::rcpt_line(&addr);
        let (in_sequence, count) = {
            let env = self.env.env();
            (env.sender.is_some(), env.rcpts.len())
        };
        if !in_sequence {
            self.feed(line.as_bytes());
            return;
        }
        let (verdict, rcpt) = if count >= MAX_RECIPIENTS {
            // RFC 5321 4.5.3.1.10.
            (reply(452, "4.5.3 Too many recipients"), None)
        } else {
            self.recipient_verdict(addr, &local, &domain).await
        };
        self.env.env().prepared = Some(Prepared::Rcpt {
            reply: verdict,
            rcpt,
        });
        self.feed(line.as_bytes());
        self.env.env().prepared = None;
    }

    /// The relay policy (shared with the webmail, see [`super::submit`]): local
    /// domains for existing accounts (after aliases) from anyone; other domains only
    /// from `relay_from` or an authenticated session.
    async fn recipient_verdict(
        &self,
        addr: String,
        local: &str,
        domain: &str,
    ) -> (Response, Option<Rcpt>) {
        if self.ctx.store.space_low() {
            return (no_space(), None);
        }
        let may_relay = self.user.is_some() || self.ctx.cfg.smtp.may_relay(self.peer);
        match super::submit::resolve_recipient(&self.ctx, addr, local, domain, may_relay).await {
            // RFC 9208 and RFC 3463 5.2.2: a full mailbox is refused before the data
            // (also when the announced size would not fit), so the sender's own MTA
            // keeps the message for the other recipients and reports this one.
            Verdict::Accepted(r @ Rcpt::Local { .. }) => {
                let Rcpt::Local { account, .. } = &r else {
                    unreachable!()
                };
                match self.ctx.store.quota(account).await {
                    Ok(Some(q)) if q.exceeded_by(self.announced.unwrap_or(1).max(1)) => {
                        tracing::info!(%account, usage = q.usage, limit = ?q.limit, "smtp: recipient over quota");
                        (reply(552, QUOTA_FULL), None)
                    }
                    Ok(_) => (reply(250, "2.1.5 OK"), Some(r)),
                    Err(e) => {
                        tracing::warn!(error = %e, "smtp: quota look-up failed");
                        (
                            reply(451, "4.3.0 Temporary local problem, try again later"),
                            None,
                        )
                    }
                }
            }
            Verdict::Accepted(r) => (reply(250, "2.1.5 OK"), Some(r)),
            Verdict::UnknownUser => (reply(550, "5.1.1 No such user here"), None),
            Verdict::RelayDenied => (reply(550, "5.7.1 Relay access denied"), None),
            Verdict::TempFail => (
                reply(451, "4.3.0 Temporary local problem, try again later"),
                None,
            ),
        }
    }

    /// Receives the message after `354`, writing it to its body file as it arrives
    /// (our trace header first; see [`crate::store::BlobSink`]): one buffer of about
    /// a chunk per session whatever the message size. Bytes are counted against
    /// `max_message_bytes` as they come; past it nothing more is kept (the file is
    /// dropped) and the reply after the end of data is `552`. Answers only after the
    /// durable commit.
    async fn data(&mut self, conn: &mut Conn) -> Result<Next> {
        self.flush(conn).await?;
        let max = self.ctx.cfg.smtp.max_message_bytes;
        let id = crate::store::new_id()[..16].to_uppercase();
        let trace = self.received_header(&id);
        let mut sink = Some(self.ctx.store.blob_sink(trace.as_bytes()));
        let mut spill = Vec::new();
        let mut decoder = data::Decoder::default();
        // The client's header is kept whole in the sink's buffer (up to HEADER_MAX) so
        // a submission's missing fields and the content key can be worked out before
        // any of it is written.
        let mut header_done = false;
        let mut from_ok = true;
        let mut failed = None;
        let mut size = 0u64;
        // What this message holds of the in-flight budget, given back at the end.
        let mut held = self.inflight.share();
        let mut over_budget = false;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.ctx.cfg.smtp.data_timeout_s);
        let r = loop {
            if conn.buffer().is_empty() {
                let wait = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(self.timeout);
                match tokio::time::timeout(wait, conn.fill_buf()).await {
                    Err(_) => {
                        // Dropping the sink removes what came of the message.
                        let late = tokio::time::Instant::now() >= deadline;
                        if late {
                            tracing::info!(id, peer = %self.peer, size, "smtp: DATA deadline passed, closing");
                        }
                        self.push(&reply(
                            421,
                            if late {
                                "4.4.2 Message took too long to arrive, closing"
                            } else {
                                "4.4.2 Timeout during DATA, closing"
                            },
                        ));
                        self.env.env().reset();
                        break None;
                    }
                    Ok(r) => r?,
                };
            }
            let avail = conn.fill_buf().await?;
            if avail.is_empty() {
                // The transaction is abandoned; nothing was acknowledged, and the
                // sink's temporary file goes with it.
                break None;
            }
            let out = match &mut sink {
                Some(s) => s.buf(),
                None => &mut spill,
            };
            let before = out.len();
            let (used, end) = decoder.feed(avail, out);
            let got = (out.len() - before) as u64;
            size += got;
            conn.consume(used);
            spill.clear();
            if size > max {
                // Nothing of an over-size message is kept.
                sink = None;
                held.release();
            } else if sink.is_some() && !held.take(got) {
                // Nor of one that would pass the in-flight budget.
                over_budget = true;
                sink = None;
                held.release();
            }
            let Some(s) = &mut sink else {
                if end {
                    break Some(());
                }
                continue;
            };
            if !header_done {
                let head = &s.buf()[trace.len() - 2..];
                let found = memchr::memmem::find(head, b"\r\n\r\n");
                if end || found.is_some() || head.len() > HEADER_MAX {
                    header_done = true;
                    from_ok = self.complete_header(s, trace.len());
                }
            }
            if end {
                break Some(());
            }
            if header_done
                && s.wants_flush()
                && let Err(e) = s.flush().await
            {
                failed = Some(e);
                sink = None;
            }
        };
        let Some(()) = r else {
            return Ok(Next::Close);
        };
        let next = self
            .finish_data(
                Received {
                    sink,
                    failed,
                    size,
                    over_budget,
                    from_ok,
                    smuggled: decoder.smuggled(),
                },
                &id,
            )
            .await;
        drop(held);
        next
    }

    /// After the final `.`: the reply, after the durable commit when the message is
    /// taken.
    async fn finish_data(&mut self, got: Received, id: &str) -> Result<Next> {
        let Received {
            sink,
            failed,
            size,
            over_budget,
            from_ok,
            smuggled,
        } = got;
        let max = self.ctx.cfg.smtp.max_message_bytes;
        // Leaves mailin's DATA state; its reply is replaced below.
        self.engine.process(b".\r\n");
        let (sender, locals, remotes) = {
            let mut env = self.env.env();
            let locals: Vec<(String, String)> = env
                .locals()
                .map(|(r, a)| (r.to_string(), a.to_string()))
                .collect();
            let remotes: Vec<String> = env.remotes().map(str::to_string).collect();
            let sender = env.sender.clone().unwrap_or_default();
            env.reset();
            (sender, locals, remotes)
        };
        let mut accounts: Vec<String> = locals.iter().map(|(_, a)| a.clone()).collect();
        if smuggled {
            // The SMTP smuggling primitive (see `data`): nothing of it is kept.
            tracing::warn!(id, peer = %self.peer, "smtp: refused a message with a '.' line next to a bare LF");
            self.push(&reply(
                550,
                "5.5.2 Message refused: a line of only '.' next to a bare LF (only CRLF.CRLF ends the data)",
            ));
            return Ok(Next::Continue);
        }
        if !from_ok {
            let user = self.user.as_deref().unwrap_or_default();
            self.push(&reply(
                553,
                &format!("5.7.1 From header address not owned by user {user}"),
            ));
            return Ok(Next::Continue);
        }
        if size > max {
            self.push(&reply(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            ));
            return Ok(Next::Continue);
        }
        if over_budget {
            tracing::warn!(id, peer = %self.peer, "smtp: in-flight DATA budget (smtp.max_inflight_mb) reached; message refused for now");
            self.push(&reply(
                452,
                "4.3.1 Insufficient system storage, try again later",
            ));
            return Ok(Next::Continue);
        }
        let r = match (sink, failed) {
            (Some(sink), None) => match sink.finish().await {
                Ok(body) => {
                    let full = self.over_quota(&locals, body.size).await;
                    accounts.retain(|a| !full.iter().any(|(_, f)| f == a));
                    if accounts.is_empty() && remotes.is_empty() {
                        // Every recipient is full: refused, nothing kept (the file
                        // goes with the next sweep).
                        self.push(&reply(552, QUOTA_FULL));
                        return Ok(Next::Continue);
                    }
                    let r = super::submit::submit_stored(
                        &self.ctx.store,
                        &body,
                        &sender,
                        &accounts,
                        &remotes,
                    )
                    .await;
                    if r.is_ok() && !full.is_empty() {
                        self.quota_dsn(id, &sender, &full, &body.blob).await;
                    }
                    r
                }
                Err(e) => Err(e),
            },
            (_, Some(e)) => Err(e),
            (None, None) => unreachable!("the sink goes only with an error or over-size"),
        };
        match r {
            Ok(()) => {
                tracing::info!(id, from = %sender, local = accounts.len(), remote = remotes.len(), size, "smtp: accepted");
                self.push(&reply(250, &format!("2.0.0 OK: queued as {id}")));
            }
            Err(e) if e.is_no_space() => {
                // The floor was crossed while the message came in (or the disk filled):
                // nothing was committed, nothing is acknowledged.
                tracing::warn!(id, error = %e, "smtp: refused a message: insufficient storage");
                self.push(&no_space());
            }
            Err(e) => {
                tracing::error!(id, error = %e, "smtp: could not store a message");
                self.push(&reply(
                    451,
                    "4.3.0 Local error in processing, try again later",
                ));
            }
        }
        Ok(Next::Continue)
    }

    /// The local recipients (address, account) whose quota `size` more bytes would
    /// exceed; a quota that cannot be read now does not refuse anyone.
    async fn over_quota(&self, locals: &[(String, String)], size: u64) -> Vec<(String, String)> {
        let mut full = Vec::new();
        for (addr, account) in locals {
            if let Ok(Some(q)) = self.ctx.store.quota(account).await
                && q.exceeded_by(size)
            {
                tracing::info!(%account, usage = q.usage, limit = ?q.limit, size, "smtp: message over the recipient's quota");
                full.push((addr.clone(), account.clone()));
            }
        }
        full
    }

    /// After DATA was accepted for some recipients, tells `sender` (RFC 3464) that
    /// the message did not fit the quota of `full` (address, account): SMTP has one
    /// reply for the data, so those recipients are reported as a mail client reports
    /// a bounce. Nothing for the null sender.
    async fn quota_dsn(&self, id: &str, sender: &str, full: &[(String, String)], blob: &str) {
        use crate::mail::dsn;
        if sender.is_empty() {
            return;
        }
        let store = &self.ctx.store;
        let original = {
            let (store, blob) = (store.clone(), blob.to_string());
            tokio::task::spawn_blocking(move || store.read_blob_prefix_blocking(&blob, 64 * 1024))
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default()
        };
        let cfg = &self.ctx.cfg;
        let diagnostic = format!("552 {QUOTA_FULL}");
        let host = cfg.hostname();
        let from = format!("MAILER-DAEMON@{}", cfg.domain.name);
        let now = crate::store::now();
        let report = dsn::Report {
            reporting_mta: &host,
            from: &from,
            to: sender,
            queue_id: id,
            arrival: now,
            now,
            recipients: full
                .iter()
                .map(|(addr, _)| dsn::Recipient {
                    addr,
                    action: dsn::Action::Failed,
                    status: "5.2.2".into(),
                    diagnostic: Some(&diagnostic),
                    remote_mta: None,
                })
                .collect(),
            original: &original,
            will_retry_until: None,
        };
        let msg = dsn::build(&report);
        let (local, domain) = sender.rsplit_once('@').unwrap_or((sender, ""));
        let r = if cfg.domain.is_local(domain) {
            store
                .deliver(msg, &[cfg.domain.resolve_local_part(local)])
                .await
        } else {
            let r = store
                .enqueue_as("", &[sender.to_string()], msg, true)
                .await
                .map(|_| ());
            self.ctx.queue_kick.notify_one();
            r
        };
        if let Err(e) = r {
            tracing::warn!(id, error = %e, "smtp: the over-quota notice could not be stored");
        }
    }

    /// The client's header is in `sink`'s buffer after our trace header (`at` bytes):
    /// on submission, whether every header From address is the user's own (the
    /// answer); a submission lacking `Message-ID:` or `Date:` gets them right after the trace
    /// header (RFC 6409 8.3/8.4; mail relayed in on port 25 is left as it is), and the
    /// content key starts where [`crate::store::content_key`] says.
    fn complete_header(&self, sink: &mut crate::store::BlobSink, at: usize) -> bool {
        let buf = sink.buf();
        let mut from_ok = true;
        if let Some(user) = &self.user {
            // The header From, like the envelope, names only the user's own addresses.
            from_ok = submission::from_addresses(&buf[at..]).iter().all(|a| {
                a.as_ref()
                    .is_some_and(|(l, d)| self.ctx.cfg.domain.owns_address(user, l, d))
            });
            let add = submission::origin_fields(&buf[at..], &self.ctx.cfg.hostname());
            buf.splice(at..at, add.into_bytes());
        }
        if let Some(start) = crate::store::content_key_start(buf) {
            sink.key_from(start as u64);
        }
        from_ok
    }

    /// RFC 5321 4.4 trace header; `with` per RFC 3848.
    fn received_header(&self, id: &str) -> String {
        let env = self.env.env();
        let with = match (self.esmtp, self.tls, self.user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, false, true) => "ESMTPA",
            (true, true, false) => "ESMTPS",
            (true, true, true) => "ESMTPSA",
        };
        let rcpt = match env.rcpts.as_slice() {
            [Rcpt::Local { addr, .. }] | [Rcpt::Remote(addr)] => Some(addr.as_str()),
            _ => None,
        };
        build::received(&Trace {
            helo: env.helo.as_deref(),
            ip: self.peer,
            by: &self.ctx.cfg.hostname(),
            with,
            id,
            rcpt,
            account: self.user.as_deref(),
        })
    }
}
