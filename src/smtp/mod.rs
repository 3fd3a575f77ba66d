//! SMTP server: inbound mail on `smtp.listen` (port 25: STARTTLS offered, no AUTH),
//! submission on `smtp.submission_listen` (587: STARTTLS, then AUTH required, RFC 6409)
//! and `smtp.submissions_listen` (465: implicit TLS, then AUTH, RFC 8314).
//! ESMTP extensions: SIZE (RFC 1870), 8BITMIME (RFC 6152), PIPELINING (RFC 2920),
//! ENHANCEDSTATUSCODES (RFC 2034/3463), STARTTLS (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954).
//!
//! Why not mailin: the brief points at the mailin family, and its engine
//! `mailin::Session` was tried first. Its handler callbacks are synchronous, so the
//! session cannot await the store's durable commit before answering the final `250`
//! after DATA, and its EHLO reply and fixed responses lack SIZE, PIPELINING and
//! enhanced status codes. The SMTP command grammar we need is small, so the state
//! machine below is our own, async end to end, one tokio task per session.
//!
//! Implementation notes
//! - `250` after DATA is sent only after the store has committed the message durably:
//!   local recipients through one `Store::deliver`, others through `Store::enqueue`.
//!   On a store failure the reply is `451 4.3.0` and nothing was acknowledged.
//! - Relay policy (no open relay): local domains accept mail from anyone, for existing
//!   accounts (after aliases) only; other domains only from `relay_from` networks or
//!   authenticated submission sessions.
//! - Every read has the `timeout_s` deadline; command lines are capped at
//!   [`MAX_COMMAND_LINE`]; DATA is counted against `max_message_bytes` while it is
//!   read, so memory per session is bounded by the message size limit.
//! - Replies are buffered and flushed when the client has no more pipelined input.
//! - A standby node (store not writable) answers `421 4.3.2` at the greeting.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use crate::config::canonical_ip;
use crate::node::Ctx;

/// Longest command line accepted (RFC 5321 4.5.3.1.4 asks for at least 512).
pub const MAX_COMMAND_LINE: usize = 4096;
/// Most recipients per transaction (RFC 5321 4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Port 25.
    Mx,
    /// Port 587: STARTTLS then AUTH.
    Submission,
    /// Port 465: TLS from the first byte, then AUTH.
    Submissions,
}

/// Binds the SMTP listeners and spawns their accept loops.
pub async fn start(ctx: Arc<Ctx>) -> Result<()> {
    let limit = Arc::new(Semaphore::new(ctx.cfg.smtp.max_sessions));
    let resolver = Arc::new(
        hickory_resolver::TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .ok(),
    );
    let lists = [
        (Mode::Mx, ctx.cfg.smtp.listen.clone(), "smtp.listen"),
        (
            Mode::Submission,
            ctx.cfg.smtp.submission_listen.clone(),
            "smtp.submission_listen",
        ),
        (
            Mode::Submissions,
            ctx.cfg.smtp.submissions_listen.clone(),
            "smtp.submissions_listen",
        ),
    ];
    for (mode, addrs, key) in lists {
        for addr in addrs {
            let listener = crate::node::bind(addr, key).await?;
            let ctx = ctx.clone();
            let limit = limit.clone();
            let resolver = resolver.clone();
            tokio::spawn(async move {
                loop {
                    let (sock, peer) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "smtp accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = sock.set_nodelay(true);
                    let ctx = ctx.clone();
                    let resolver = resolver.clone();
                    let permit = limit.clone().try_acquire_owned();
                    tokio::spawn(async move {
                        let Ok(_permit) = permit else {
                            let mut sock = sock;
                            let _ = sock
                                .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
                                .await;
                            return;
                        };
                        if let Err(e) = serve(ctx, resolver, sock, peer, mode).await {
                            tracing::debug!(%peer, error = %e, "smtp session ended with an error");
                        }
                    });
                }
            });
        }
    }
    Ok(())
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = BufReader<Box<dyn Io>>;

enum Line {
    Ok(Vec<u8>),
    TooLong,
    Eof,
}

/// Reads one line (with its terminator) of at most `max` bytes; longer lines are
/// consumed and reported as `TooLong`.
async fn read_line(conn: &mut Conn, max: usize, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = conn.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Ok(std::mem::take(buf))
            });
        }
        let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..=i], true),
            None => (avail, false),
        };
        let n = chunk.len();
        if !too_long {
            if buf.len() + n > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        conn.consume(n);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Ok(std::mem::take(buf))
            });
        }
    }
}

struct Session {
    ctx: Arc<Ctx>,
    resolver: Arc<Option<hickory_resolver::TokioResolver>>,
    peer: IpAddr,
    mode: Mode,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    user: Option<String>,
    sender: Option<String>,
    local: Vec<(String, String)>,
    remote: Vec<String>,
    out: Vec<u8>,
}

async fn serve(
    ctx: Arc<Ctx>,
    resolver: Arc<Option<hickory_resolver::TokioResolver>>,
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    mode: Mode,
) -> Result<()> {
    let timeout = Duration::from_secs(ctx.cfg.smtp.timeout_s);
    let stream: Box<dyn Io> = if mode == Mode::Submissions {
        Box::new(tokio::time::timeout(timeout, ctx.tls.accept(sock)).await??)
    } else {
        Box::new(sock)
    };
    let mut conn: Conn = BufReader::new(stream);
    let mut s = Session {
        resolver,
        peer: canonical_ip(peer.ip()),
        mode,
        tls: mode == Mode::Submissions,
        helo: None,
        esmtp: false,
        user: None,
        sender: None,
        local: Vec::new(),
        remote: Vec::new(),
        out: Vec::new(),
        ctx,
    };
    let host = s.ctx.cfg.hostname();
    if !s.ctx.store.is_writable() {
        conn.get_mut()
            .write_all(
                format!("421 4.3.2 {host} is the standby node, try again later\r\n").as_bytes(),
            )
            .await?;
        return Ok(());
    }
    s.reply(220, &format!("{host} ESMTP clusterd"));
    let mut line = Vec::new();
    loop {
        if conn.buffer().is_empty() && !s.out.is_empty() {
            conn.get_mut().write_all(&s.out).await?;
            conn.get_mut().flush().await?;
            s.out.clear();
        }
        let read = tokio::time::timeout(timeout, read_line(&mut conn, MAX_COMMAND_LINE, &mut line)).await;
        let l = match read {
            Err(_) => {
                s.reply(421, "4.4.2 Timeout waiting for a command, closing");
                break;
            }
            Ok(r) => r?,
        };
        let l = match l {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                s.reply(500, "5.5.2 Line too long");
                continue;
            }
            Line::Ok(l) => l,
        };
        match s.command(&l, &mut conn).await? {
            Next::Continue => {}
            Next::Close => break,
            Next::StartTls => {
                conn.get_mut().write_all(&s.out).await?;
                conn.get_mut().flush().await?;
                s.out.clear();
                // RFC 3207 4.2: anything pipelined after STARTTLS is discarded.
                let stream = conn.into_inner();
                let tls = tokio::time::timeout(timeout, s.ctx.tls.accept(stream)).await??;
                conn = BufReader::new(Box::new(tls));
                s.tls = true;
                s.helo = None;
                s.reset();
            }
        }
    }
    if !s.out.is_empty() {
        let _ = conn.get_mut().write_all(&s.out).await;
        let _ = conn.get_mut().flush().await;
    }
    Ok(())
}

enum Next {
    Continue,
    Close,
    StartTls,
}

/// The address inside `<...>` after a `FROM:`/`TO:` prefix, and the parameters after it.
fn parse_path<'a>(arg: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = &rest[..end];
    // Source routes (RFC 5321 4.1.2, obsolete) are ignored: "@a,@b:user@d".
    let addr = match addr.rfind(':') {
        Some(i) if addr.starts_with('@') => &addr[i + 1..],
        _ => addr,
    };
    Some((addr, rest[end + 1..].trim()))
}

fn valid_mailbox(addr: &str) -> Option<(&str, &str)> {
    let (local, domain) = addr.rsplit_once('@')?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 255
        && !addr.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
    ok.then_some((local, domain))
}

impl Session {
    fn reply(&mut self, code: u16, text: &str) {
        self.out
            .extend_from_slice(format!("{code} {text}\r\n").as_bytes());
    }

    fn reset(&mut self) {
        self.sender = None;
        self.local.clear();
        self.remote.clear();
    }

    fn needs_auth(&self) -> bool {
        self.mode != Mode::Mx && self.user.is_none()
    }

    async fn command(&mut self, raw: &[u8], conn: &mut Conn) -> Result<Next> {
        let Ok(text) = std::str::from_utf8(raw) else {
            self.reply(500, "5.5.2 Command not recognised");
            return Ok(Next::Continue);
        };
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v, a.trim()),
            None => (text, ""),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if arg.is_empty() {
                    self.reply(501, "5.5.4 Syntax: EHLO hostname");
                    return Ok(Next::Continue);
                }
                self.helo = Some(arg.split_whitespace().next().unwrap_or(arg).to_string());
                self.esmtp = verb == "EHLO";
                self.reset();
                let host = self.ctx.cfg.hostname();
                if verb == "HELO" {
                    self.reply(250, &host);
                    return Ok(Next::Continue);
                }
                let mut ext = vec![
                    host,
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
                for (i, e) in ext.into_iter().enumerate() {
                    let sep = if i + 1 == n { ' ' } else { '-' };
                    self.out
                        .extend_from_slice(format!("250{sep}{e}\r\n").as_bytes());
                }
            }
            "STARTTLS" => {
                if self.tls {
                    self.reply(503, "5.5.1 TLS already active");
                } else if !arg.is_empty() {
                    self.reply(501, "5.5.4 STARTTLS takes no parameters");
                } else {
                    self.reply(220, "2.0.0 Ready to start TLS");
                    return Ok(Next::StartTls);
                }
            }
            "AUTH" => self.auth(arg, conn).await?,
            "MAIL" => self.mail(arg).await,
            "RCPT" => self.rcpt(arg).await,
            "DATA" => return self.data(arg, conn).await,
            "BDAT" => self.reply(502, "5.5.1 CHUNKING is not offered"),
            "RSET" => {
                self.reset();
                self.reply(250, "2.0.0 OK");
            }
            "NOOP" => self.reply(250, "2.0.0 OK"),
            "VRFY" => self.reply(252, "2.5.0 Cannot VRFY, but will accept the message"),
            "HELP" => self.reply(214, "2.0.0 See RFC 5321"),
            "QUIT" => {
                self.reply(221, "2.0.0 Bye");
                return Ok(Next::Close);
            }
            _ => self.reply(500, "5.5.2 Command not recognised"),
        }
        Ok(Next::Continue)
    }

    async fn auth(&mut self, arg: &str, conn: &mut Conn) -> Result<()> {
        if self.mode == Mode::Mx {
            self.reply(502, "5.5.1 AUTH is offered on the submission ports only");
            return Ok(());
        }
        if !self.tls {
            self.reply(538, "5.7.11 Encryption required: use STARTTLS first");
            return Ok(());
        }
        if self.user.is_some() {
            self.reply(503, "5.5.1 Already authenticated");
            return Ok(());
        }
        if self.sender.is_some() {
            self.reply(503, "5.5.1 AUTH not allowed during a mail transaction");
            return Ok(());
        }
        let mut parts = arg.split_whitespace();
        let mech = parts.next().unwrap_or("").to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        let b64 = base64::engine::general_purpose::STANDARD;
        let (user, pass) = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.challenge("", conn).await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                let Ok(dec) = b64.decode(resp.trim()) else {
                    self.reply(501, "5.5.2 Invalid base64");
                    return Ok(());
                };
                let fields: Vec<&[u8]> = dec.split(|&b| b == 0).collect();
                if fields.len() != 3 {
                    self.reply(501, "5.5.2 Malformed PLAIN response");
                    return Ok(());
                }
                (
                    String::from_utf8_lossy(fields[1]).to_string(),
                    String::from_utf8_lossy(fields[2]).to_string(),
                )
            }
            "LOGIN" => {
                let user = match initial {
                    Some(u) => u,
                    None => match self.challenge("VXNlcm5hbWU6", conn).await? {
                        Some(u) => u,
                        None => return Ok(()),
                    },
                };
                let Some(pass) = self.challenge("UGFzc3dvcmQ6", conn).await? else {
                    return Ok(());
                };
                match (b64.decode(user.trim()), b64.decode(pass.trim())) {
                    (Ok(u), Ok(p)) => (
                        String::from_utf8_lossy(&u).to_string(),
                        String::from_utf8_lossy(&p).to_string(),
                    ),
                    _ => {
                        self.reply(501, "5.5.2 Invalid base64");
                        return Ok(());
                    }
                }
            }
            _ => {
                self.reply(504, "5.5.4 Unrecognised authentication mechanism");
                return Ok(());
            }
        };
        // The account may be given as a bare name or as its address.
        let name = match user.rsplit_once('@') {
            Some((l, d)) if self.ctx.cfg.domain.is_local(d) => l.to_string(),
            _ => user.clone(),
        };
        match self.ctx.store.verify_password(&name, &pass).await {
            Ok(Some(account)) => {
                self.user = Some(account);
                self.reply(235, "2.7.0 Authentication successful");
            }
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.reply(535, "5.7.8 Authentication credentials invalid");
            }
            Err(e) => {
                tracing::warn!(error = %e, "smtp auth: store failure");
                self.reply(454, "4.7.0 Temporary authentication failure");
            }
        }
        Ok(())
    }

    /// Sends a 334 challenge and reads the answer; `None` when cancelled with `*`.
    async fn challenge(&mut self, prompt: &str, conn: &mut Conn) -> Result<Option<String>> {
        self.reply(334, prompt);
        conn.get_mut().write_all(&self.out).await?;
        conn.get_mut().flush().await?;
        self.out.clear();
        let timeout = Duration::from_secs(self.ctx.cfg.smtp.timeout_s);
        let mut buf = Vec::new();
        let line = tokio::time::timeout(timeout, read_line(conn, MAX_COMMAND_LINE, &mut buf))
            .await
            .map_err(|_| anyhow::anyhow!("timeout in AUTH"))??;
        match line {
            Line::Ok(l) => {
                let s = String::from_utf8_lossy(&l).trim().to_string();
                if s == "*" {
                    self.reply(501, "5.0.0 Authentication cancelled");
                    Ok(None)
                } else {
                    Ok(Some(s))
                }
            }
            Line::TooLong => {
                self.reply(500, "5.5.2 Line too long");
                Ok(None)
            }
            Line::Eof => Err(anyhow::anyhow!("connection closed in AUTH")),
        }
    }

    async fn mail(&mut self, arg: &str) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1 Send EHLO first");
        }
        if self.needs_auth() {
            return self.reply(530, "5.7.0 Authentication required");
        }
        if self.sender.is_some() {
            return self.reply(503, "5.5.1 Nested MAIL command");
        }
        let Some((addr, params)) = parse_path(arg, "FROM:") else {
            return self.reply(501, "5.5.4 Syntax: MAIL FROM:<address>");
        };
        for p in params.split_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Ok(n) if n > self.ctx.cfg.smtp.max_message_bytes => {
                        return self.reply(552, "5.3.4 Message size exceeds fixed maximum");
                    }
                    Ok(_) => {}
                    Err(_) => return self.reply(501, "5.5.4 Bad SIZE parameter"),
                },
                "BODY" if v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT") => {}
                "AUTH" => {}
                _ => return self.reply(555, "5.5.4 Unsupported MAIL parameter"),
            }
        }
        if !addr.is_empty() {
            let Some((_, domain)) = valid_mailbox(addr) else {
                return self.reply(553, "5.1.7 Bad sender address syntax");
            };
            if self.ctx.cfg.smtp.require_resolvable_sender
                && !self.ctx.cfg.domain.is_local(domain)
            {
                match self.domain_resolves(domain).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return self.reply(550, "5.1.8 Sender address domain does not exist");
                    }
                    Err(()) => {
                        return self.reply(450, "4.1.8 Cannot resolve the sender domain now");
                    }
                }
            }
        }
        self.sender = Some(addr.to_string());
        self.reply(250, "2.1.0 OK");
    }

    /// Whether the domain has an MX, A or AAAA record; `Err` on temporary failure.
    async fn domain_resolves(&self, domain: &str) -> Result<bool, ()> {
        let Some(r) = self.resolver.as_ref() else {
            return Err(());
        };
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match r.mx_lookup(fqdn.as_str()).await {
            Ok(l) if l.answers().iter().next().is_some() => return Ok(true),
            Ok(_) => {}
            Err(e) if e.is_nx_domain() => return Ok(false),
            Err(e) if e.is_no_records_found() => {}
            Err(_) => return Err(()),
        }
        match r.lookup_ip(fqdn.as_str()).await {
            Ok(l) => Ok(l.iter().next().is_some()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(false),
            Err(_) => Err(()),
        }
    }

    async fn rcpt(&mut self, arg: &str) {
        if self.sender.is_none() {
            return self.reply(503, "5.5.1 Need MAIL before RCPT");
        }
        let Some((addr, _params)) = parse_path(arg, "TO:") else {
            return self.reply(501, "5.5.4 Syntax: RCPT TO:<address>");
        };
        if self.local.len() + self.remote.len() >= MAX_RECIPIENTS {
            return self.reply(452, "4.5.3 Too many recipients");
        }
        // RFC 5321 4.5.1: <postmaster> without a domain must be accepted.
        let (local, domain) = if addr.eq_ignore_ascii_case("postmaster") {
            ("postmaster", self.ctx.cfg.domain.name.clone())
        } else {
            match valid_mailbox(addr) {
                Some((l, d)) => (l, d.to_string()),
                None => return self.reply(501, "5.1.3 Bad recipient address syntax"),
            }
        };
        if self.ctx.cfg.domain.is_local(&domain) {
            let account = self.ctx.cfg.domain.resolve_local_part(local);
            match self.ctx.store.account(&account).await {
                Ok(Some(a)) => {
                    self.local.push((addr.to_string(), a.name));
                    self.reply(250, "2.1.5 OK");
                }
                Ok(None) => self.reply(550, "5.1.1 No such user here"),
                Err(e) => {
                    tracing::warn!(error = %e, "smtp rcpt: store failure");
                    self.reply(451, "4.3.0 Temporary local problem, try again later");
                }
            }
        } else if self.user.is_some() || self.ctx.cfg.smtp.may_relay(self.peer) {
            self.remote.push(addr.to_string());
            self.reply(250, "2.1.5 OK");
        } else {
            self.reply(550, "5.7.1 Relay access denied");
        }
    }

    async fn data(&mut self, arg: &str, conn: &mut Conn) -> Result<Next> {
        if !arg.is_empty() {
            self.reply(501, "5.5.4 DATA takes no parameters");
            return Ok(Next::Continue);
        }
        if self.sender.is_none() {
            self.reply(503, "5.5.1 Need MAIL command");
            return Ok(Next::Continue);
        }
        if self.local.is_empty() && self.remote.is_empty() {
            self.reply(503, "5.5.1 Need RCPT command");
            return Ok(Next::Continue);
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>");
        conn.get_mut().write_all(&self.out).await?;
        conn.get_mut().flush().await?;
        self.out.clear();

        let max = self.ctx.cfg.smtp.max_message_bytes as usize;
        let timeout = Duration::from_secs(self.ctx.cfg.smtp.timeout_s);
        let mut body: Vec<u8> = Vec::with_capacity(8192);
        let mut oversize = false;
        let mut line = Vec::new();
        loop {
            // Lines are read with a cap one byte over the limit: a longer line already
            // makes the message too big.
            let l = match tokio::time::timeout(timeout, read_line(conn, max + 3, &mut line)).await {
                Err(_) => {
                    self.reply(421, "4.4.2 Timeout during DATA, closing");
                    return Ok(Next::Close);
                }
                Ok(r) => r?,
            };
            let l = match l {
                Line::Eof => return Ok(Next::Close),
                Line::TooLong => {
                    oversize = true;
                    continue;
                }
                Line::Ok(l) => l,
            };
            if l == b".\r\n" || l == b".\n" {
                break;
            }
            // RFC 5321 4.5.2: remove one leading dot.
            let content = if l.first() == Some(&b'.') { &l[1..] } else { &l[..] };
            if oversize || body.len() + content.len() > max {
                oversize = true;
                continue;
            }
            // Store lines with CRLF endings.
            if content.ends_with(b"\r\n") {
                body.extend_from_slice(content);
            } else if let Some(c) = content.strip_suffix(b"\n") {
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
            } else {
                body.extend_from_slice(content);
            }
        }
        if oversize {
            self.reset();
            self.reply(552, "5.3.4 Message size exceeds fixed maximum");
            return Ok(Next::Continue);
        }
        let id = crate::store::new_id()[..16].to_uppercase();
        let mut msg = self.received_header(&id).into_bytes();
        msg.extend_from_slice(&body);
        let accounts: Vec<String> = self.local.iter().map(|(_, a)| a.clone()).collect();
        let sender = self.sender.clone().unwrap_or_default();
        let remote = self.remote.clone();
        let store = &self.ctx.store;
        let result = async {
            if !remote.is_empty() {
                store.enqueue(&sender, &remote, msg.clone()).await?;
            }
            if !accounts.is_empty() {
                store.deliver(msg, &accounts).await?;
            }
            Ok::<_, crate::store::StoreError>(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(id, from = %sender, local = accounts.len(), remote = remote.len(), size = body.len(), "accepted");
                self.reply(250, &format!("2.0.0 OK: queued as {id}"));
            }
            Err(e) => {
                tracing::error!(error = %e, "smtp: could not store a message");
                self.reply(451, "4.3.0 Local error in processing, try again later");
            }
        }
        self.reset();
        Ok(Next::Continue)
    }

    /// RFC 5321 4.4 trace header.
    fn received_header(&self, id: &str) -> String {
        let with = match (self.esmtp, self.tls, self.user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, _) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, true, true) => "ESMTPSA",
        };
        let rcpt = if self.local.len() + self.remote.len() == 1 {
            let a = self
                .local
                .first()
                .map(|(a, _)| a.as_str())
                .or(self.remote.first().map(String::as_str))
                .unwrap_or("");
            format!("\r\n\tfor <{a}>")
        } else {
            String::new()
        };
        let helo: String = self
            .helo
            .as_deref()
            .unwrap_or("unknown")
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        format!(
            "Received: from {helo} ([{ip}])\r\n\tby {host} (clusterd) with {with} id {id}{rcpt};\r\n\t{date}\r\n",
            ip = self.peer,
            host = self.ctx.cfg.hostname(),
            date = chrono::Utc::now().to_rfc2822(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_parsed() {
        assert_eq!(
            parse_path("FROM:<a@b.c> SIZE=10", "FROM:"),
            Some(("a@b.c", "SIZE=10"))
        );
        assert_eq!(parse_path("from: <>", "FROM:"), Some(("", "")));
        assert_eq!(parse_path("TO:<@x,@y:u@d>", "TO:"), Some(("u@d", "")));
        assert_eq!(parse_path("TO:u@d", "TO:"), None);
        assert_eq!(parse_path("T", "TO:"), None);
    }

    #[test]
    fn mailboxes_are_checked() {
        assert_eq!(valid_mailbox("a@b"), Some(("a", "b")));
        assert_eq!(valid_mailbox("a b@c"), None);
        assert_eq!(valid_mailbox("@c"), None);
        assert_eq!(valid_mailbox("abc"), None);
    }
}
