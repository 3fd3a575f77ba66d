//! SMTP server: inbound mail on `smtp.listen` (port 25: STARTTLS offered, no AUTH),
//! submission on `smtp.submission_listen` (587: STARTTLS, then AUTH required, RFC 6409)
//! and `smtp.submissions_listen` (465: implicit TLS, then AUTH, RFC 8314).
//! ESMTP extensions: SIZE (RFC 1870), 8BITMIME (RFC 6152), PIPELINING (RFC 2920),
//! ENHANCEDSTATUSCODES (RFC 2034/3463), STARTTLS (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954).
//! Local delivery goes to the store; relayed mail to the store's outbound queue.
//!
//! Files: `engine.rs` is the protocol engine (mailin's `Session` and our `Handler`,
//! reply rendering, path parsing; no I/O, unit-tested line by line); `data.rs` decodes
//! DATA (end line, dot-unstuffing, bare LF) over chunks; `session.rs` is the async
//! driver of one connection; `submit.rs` is the delivery path (recipient resolution
//! and durable commit) shared with the webmail.
//!
//! Why mailin driven from tokio, not mailin-embedded: mailin-embedded runs a thread per
//! session with blocking I/O, one listener per server, no implicit TLS and no shutdown;
//! every store call (RCPT look-ups, the durable commit) would block that thread, and
//! `max_sessions` threads would be parked on slow clients. Here each session is one
//! tokio task and the engine, `mailin::Session`, is fed command lines (the DATA body
//! goes from the driver straight to the body file; mailin sees only the final `.`). mailin's handler
//! callbacks are synchronous, so nothing in them waits: the driver does the I/O first
//! (DNS for the sender, the account look-up for RCPT, password checks) and leaves a
//! [`engine::Prepared`] verdict that the callback returns; after the final `.` the
//! driver commits and only then writes the reply that replaces mailin's `250`. The
//! driver also supplies what mailin lacks: the EHLO keyword list (SIZE, PIPELINING,
//! ENHANCEDSTATUSCODES), enhanced status codes, MAIL parameters and the null
//! reverse-path, size and line limits, timeouts, TLS, and AUTH (mailin makes AUTH
//! mandatory once enabled and stops `MAIL` after `RSET` in an authenticated session,
//! so the driver authenticates and mailin sees a session without AUTH).
//!
//! Implementation notes
//! - `250` after DATA is sent only after the store has committed the message durably
//!   (body file fsynced, op committed): local recipients through one
//!   `Store::deliver_blob`, relayed ones through one `Store::enqueue_blob`, both naming
//!   the one file. If any part fails the reply is
//!   `451 4.3.0` and nothing is acknowledged (the client retries; a duplicate is
//!   possible, a loss is not).
//! - Relay policy (no open relay): recipients in local domains are accepted from anyone
//!   when the local part, after aliases, is an existing account (else `550 5.1.1`);
//!   other domains only from `relay_from` networks or an authenticated submission
//!   session (else `550 5.7.1`). Submission ports refuse MAIL before AUTH, and AUTH
//!   before TLS.
//! - Sender binding: after AUTH, MAIL FROM must be one of the user's own addresses
//!   (`DomainConfig::owns_address`: its name or an alias of it at any local domain),
//!   else `553 5.7.1` and no transaction starts; `<>` is refused too (only bounces
//!   use it). The header From's addresses likewise (`553 5.7.1` after the data).
//!   Unauthenticated clients may use an address of a local domain only from
//!   `relay_from` (else `550 5.7.1`); other senders are not checked.
//! - Only `CRLF . CRLF` ends DATA (`data.rs`): a message with a `.` line next to a
//!   bare LF (SMTP smuggling) is refused whole with `550 5.5.2`.
//! - Submissions (authenticated sessions) lacking `Message-ID:` or `Date:` get them
//!   after our `Received:` field (RFC 6409 8.3/8.4, `mail::submission`); mail arriving
//!   on port 25 is stored as it came.
//! - Memory per session is bounded: command lines are capped at [`MAX_COMMAND_LINE`]
//!   (longer ones are drained and answered `500 5.5.2`); DATA is written to its body
//!   file as it is read (`store::BlobSink`: one buffer of about 64 KiB per session,
//!   the client's header held whole up to 64 KiB first), counted against
//!   `max_message_bytes`; past it nothing more is kept (the file is dropped) and the
//!   reply after the end is `552 5.3.4`. Text lines over RFC 5321 4.5.3.1.6's 1000 octets are otherwise accepted as
//!   they are (RFC 5321 4.5.3.1 asks for no limits where possible; Postfix does the same).
//! - Timeouts (`timeout_s`, then `421 4.4.2` and close): each command line must be
//!   complete within it, each read during DATA (RFC 5321 4.5.3.2.6) and each write too;
//!   the whole DATA, from `354` to the final `.`, within `data_timeout_s` (a trickling
//!   sender is closed and what it sent dropped).
//! - Pools: port 25 has `max_sessions`, the submission ports `max_submission_sessions`
//!   of their own (strangers on 25 cannot crowd out the staff), and each counts at most
//!   `max_sessions_per_ip` from one address; past a limit the greeting is `421 4.7.0`.
//!   A standby node (store not writable) answers `421 4.3.2` and closes.
//! - Message data received and not yet acknowledged is bounded over all sessions by
//!   `max_inflight_mb` ([`Inflight`]): with less than a header's room (64 KiB) left
//!   DATA gets `452 4.3.1`, and a message
//!   that crosses it while arriving is dropped and answered `452 4.3.1` after its end
//!   (a temporary failure: the client retries, nothing acknowledged is lost).
//! - Replies are buffered and flushed when no pipelined input is waiting (RFC 2920);
//!   the `354` and AUTH challenges are flushed at once. Input pipelined after STARTTLS
//!   is discarded (RFC 3207 4.2).

mod data;
mod engine;
mod session;
pub mod submit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::canonical_ip;
use crate::ctx::Ctx;
use crate::perip::PerIp;
use crate::supervise::{Run, until_first_ends};

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

/// The DNS resolver for sender checks; `None` when the system has no usable resolver
/// configuration (then checks answer with a temporary failure).
type Resolver = Arc<Option<hickory_resolver::TokioResolver>>;

/// What the SMTP service keeps across restarts: the session pools, the in-flight
/// DATA budget and the resolver for sender checks.
pub struct Smtp {
    ctx: Arc<Ctx>,
    /// Port 25.
    mx: Pool,
    /// Ports 587 and 465.
    submission: Pool,
    inflight: Arc<Inflight>,
    resolver: Resolver,
}

/// A pool of sessions: at most so many at once, and so many from one address.
#[derive(Clone)]
struct Pool {
    sessions: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
}

impl Pool {
    fn new(sessions: usize, per_ip: usize) -> Pool {
        Pool {
            sessions: Arc::new(Semaphore::new(sessions)),
            per_ip: PerIp::new(per_ip),
        }
    }
}

/// The bytes of message data received and not yet acknowledged or dropped, over all
/// sessions (`smtp.max_inflight_mb`): they sit in temporary files, so without a
/// bound a crowd of senders could fill the disk with mail nobody has accepted.
pub(crate) struct Inflight {
    used: AtomicU64,
    max: u64,
}

impl Inflight {
    fn new(max: u64) -> Inflight {
        Inflight {
            used: AtomicU64::new(0),
            max,
        }
    }

    /// Whether a new DATA may start: there is room left for at least a header.
    fn open(&self) -> bool {
        self.used.load(Ordering::Relaxed) + session::HEADER_MAX as u64 <= self.max
    }

    /// A share of the budget, empty at first; given back when dropped (also when the
    /// session fails mid-DATA).
    fn share(self: &Arc<Self>) -> Held {
        Held {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// What one message holds of the [`Inflight`] budget.
pub(crate) struct Held {
    budget: Arc<Inflight>,
    bytes: u64,
}

impl Held {
    /// Adds `n` bytes unless that would pass the budget.
    fn take(&mut self, n: u64) -> bool {
        let max = self.budget.max;
        let ok = self
            .budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|&t| t <= max)
            })
            .is_ok();
        if ok {
            self.bytes += n;
        }
        ok
    }

    fn release(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

/// Prepares the SMTP service; [`Smtp::serve`] runs it.
pub fn prepare(ctx: Arc<Ctx>) -> Arc<Smtp> {
    let c = &ctx.cfg.smtp;
    let mx = Pool::new(c.max_sessions, c.max_sessions_per_ip);
    let submission = Pool::new(c.max_submission_sessions, c.max_sessions_per_ip);
    let inflight = Arc::new(Inflight::new(c.max_inflight_mb.saturating_mul(1 << 20)));
    let resolver: Resolver = Arc::new(if ctx.cfg.smtp.require_resolvable_sender {
        match hickory_resolver::TokioResolver::builder_tokio().and_then(|b| b.build()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "smtp: no DNS resolver; sender checks will fail temporarily");
                None
            }
        }
    } else {
        None
    });
    Arc::new(Smtp {
        ctx,
        mx,
        submission,
        inflight,
        resolver,
    })
}

impl Smtp {
    /// One instance of the service (see `supervise`): binds every SMTP listener, then
    /// runs their accept loops until stopped. Sessions outlive it.
    pub async fn serve(self: Arc<Self>, run: Run) -> Result<()> {
        let ctx = &self.ctx;
        let lists = [
            (Mode::Mx, &ctx.cfg.smtp.listen, "smtp.listen"),
            (
                Mode::Submission,
                &ctx.cfg.smtp.submission_listen,
                "smtp.submission_listen",
            ),
            (
                Mode::Submissions,
                &ctx.cfg.smtp.submissions_listen,
                "smtp.submissions_listen",
            ),
        ];
        let mut loops = JoinSet::new();
        for (mode, addrs, key) in lists {
            for addr in addrs {
                let listener = crate::ctx::bind(*addr, key).await?;
                tracing::info!(%addr, ?mode, "smtp: listening");
                let pool = match mode {
                    Mode::Mx => self.mx.clone(),
                    Mode::Submission | Mode::Submissions => self.submission.clone(),
                };
                loops.spawn(accept_loop(listener, self.clone(), pool, mode, run.clone()));
            }
        }
        run.ready();
        until_first_ends(loops).await
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    smtp: Arc<Smtp>,
    pool: Pool,
    mode: Mode,
    run: Run,
) {
    loop {
        let (sock, peer) = match run.gate(listener.accept()).await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "smtp: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        crate::ctx::count(&crate::ctx::REQUESTS.smtp);
        let ip = canonical_ip(peer.ip());
        let slot = pool.per_ip.try_acquire(ip);
        let permit = pool.sessions.clone().try_acquire_owned();
        let ctx = smtp.ctx.clone();
        let resolver = smtp.resolver.clone();
        let inflight = smtp.inflight.clone();
        tokio::spawn(async move {
            let refusal: &[u8] = match (&slot, &permit) {
                (None, _) => {
                    b"421 4.7.0 Too many connections from your address, try again later\r\n"
                }
                (_, Err(_)) => b"421 4.7.0 Too many connections, try again later\r\n",
                _ => b"",
            };
            if !refusal.is_empty() {
                tracing::debug!(%peer, ?mode, "smtp: refused a session over a limit");
                let mut sock = sock;
                let _ = tokio::time::timeout(Duration::from_secs(5), sock.write_all(refusal)).await;
                return;
            }
            let _held = (slot, permit);
            if let Err(e) = session::serve(ctx, resolver, inflight, sock, ip, mode).await {
                tracing::debug!(%peer, error = %e, "smtp: session ended with an error");
            }
        });
    }
}

/// Whether the domain has an MX, A or AAAA record (RFC 5321 5.1 fallback); `Err` on a
/// temporary failure (timeout, SERVFAIL, no resolver).
async fn domain_resolves(resolver: &Resolver, domain: &str) -> Result<bool, ()> {
    let Some(r) = resolver.as_ref() else {
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

/// The fuzz target's entry (`crate::fuzz`): a client's bytes through the session's
/// parsers as a connection would take them — each line through mailin with our
/// engine (and the MAIL/RCPT path and parameter parsers), and after a `354` the
/// DATA decoder, whose output must not depend on how the bytes were split into
/// reads (checked: fed whole and fed in two pieces, the results are equal). Returns
/// how many messages' DATA it decoded.
#[doc(hidden)]
pub fn fuzz_session(input: &[u8]) -> usize {
    let mut messages = 0;
    let (mut mailin, env) = engine::session(
        "mx.example",
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        true,
    );
    let mut rest = input;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        // As the driver does for MAIL and RCPT: parse the path itself, prepare the
        // verdict (there from the store and DNS; here acceptance of every address
        // that parses) and hand mailin a normalised line.
        let mut fed = None;
        if let Ok(text) = std::str::from_utf8(line) {
            let arg = text.get(5..).unwrap_or("").trim_end();
            if let Some(path) = engine::parse_path(arg, "FROM:") {
                let _ = engine::valid_mailbox(path.addr);
                let eight_bit = engine::mail_params(path.params).is_ok_and(|p| p.eight_bit);
                fed = Some(engine::mail_line(path.addr, eight_bit));
                env.env().prepared = Some(engine::Prepared::Mail {
                    reply: mailin::response::OK,
                    sender: path.addr.to_string(),
                });
            } else if let Some(path) = engine::parse_path(arg, "TO:") {
                fed = Some(engine::rcpt_line(path.addr));
                env.env().prepared = Some(engine::Prepared::Rcpt {
                    reply: mailin::response::OK,
                    rcpt: Some(engine::Rcpt::Remote(path.addr.to_string())),
                });
            }
        }
        let reply = mailin.process(fed.as_ref().map_or(line, |f| f.as_bytes()));
        env.env().prepared = None;
        let _ = engine::render(&reply);
        if reply.code != 354 {
            continue;
        }
        let mut whole = Vec::new();
        let (used, done) = data::Decoder::default().feed(rest, &mut whole);
        let split = rest.len() / 2;
        let mut pieces = Vec::new();
        let mut decoder = data::Decoder::default();
        let (first, first_done) = decoder.feed(&rest[..split], &mut pieces);
        let (used2, done2) = if first_done {
            (first, true)
        } else {
            let (n, d) = decoder.feed(&rest[split..], &mut pieces);
            (split + n, d)
        };
        assert_eq!(
            (used, done, &whole),
            (used2, done2, &pieces),
            "the DATA decoder depends on how the input was split"
        );
        rest = &rest[used..];
        messages += 1;
        mailin.process(b".\r\n");
    }
    messages
}
