//! One SMTP client session with one remote host: greeting, EHLO, opportunistic
//! STARTTLS (any certificate accepted, Postfix's `may`; required when AUTH is used),
//! AUTH at a relay host, one transaction for a set of recipients of one domain with
//! PIPELINING when offered, SIZE checked before sending, BODY=8BITMIME, and a timeout
//! on the connection and on every reply.
//!
//! The protocol pieces are the `mail-send` crate's (`SmtpClient`: command and reply
//! I/O, EHLO parsing, AUTH mechanisms, DATA transparency): the product's design names
//! it, it is kept by the Stalwart mail server's authors and builds on our rustls with
//! aws-lc-rs. Its `send()` stops at the first refused recipient and it connects to
//! names through the system resolver, so this module drives the commands itself and
//! connects to the addresses `route` found. Replies come back per recipient, as the
//! queue needs them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mail_send::Credentials;
use mail_send::SmtpClient;
use smtp_proto::{EXT_8BIT_MIME, EXT_PIPELINING, EXT_SIZE, EXT_START_TLS, EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A byte stream, plain or TLS, buffered.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Client = SmtpClient<Box<dyn Io>>;

/// How to talk to remote hosts (the same for every session of the runner).
pub struct Settings {
    /// Our name in EHLO.
    pub ehlo: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub tls: TlsConnector,
    /// User and password for AUTH (the relay host's).
    pub credentials: Option<(String, String)>,
    /// TLS from the first byte (a relay host on port 465).
    pub implicit_tls: bool,
}

impl Settings {
    /// A TLS connector that accepts any certificate: opportunistic TLS protects
    /// against passive listeners, and a server's certificate is not checked by MTAs
    /// without DANE or MTA-STS (RFC 7435; Postfix's `smtp_tls_security_level = may`).
    pub fn tls_connector() -> TlsConnector {
        let cfg = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        TlsConnector::from(Arc::new(cfg))
    }
}

/// One message for some recipients of one destination.
pub struct Job<'a> {
    pub sender: &'a str,
    pub rcpts: &'a [String],
    pub msg: &'a [u8],
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered(String),
    /// Try again later, with the reason.
    Deferred(String),
    /// Given up (a 5xx reply), with the reason.
    Failed(String),
}

/// The result of one session.
#[derive(Debug)]
pub enum Session {
    /// The transaction took place: one outcome per recipient, in order.
    Done(Vec<Outcome>),
    /// This host could not take the message now (no connection, a refusing greeting,
    /// a broken session before the transaction): the next host may.
    NextHost(String),
}

/// Runs one session with `addr` (`host` names it for TLS and in replies).
pub async fn send(addr: SocketAddr, host: &str, s: &Settings, job: &Job<'_>) -> Session {
    match session(addr, host, s, job, true).await {
        // A host whose STARTTLS fails: once more in plain text, as Postfix's `may`
        // level does, unless the password would travel in the clear.
        Session::NextHost(why) if why.starts_with(TLS_FAILED) && s.credentials.is_none() => {
            session(addr, host, s, job, false).await
        }
        other => other,
    }
}

const TLS_FAILED: &str = "TLS handshake failed";

async fn session(
    addr: SocketAddr,
    host: &str,
    s: &Settings,
    job: &Job<'_>,
    try_tls: bool,
) -> Session {
    let at = |what: String| format!("{what} (host {host}[{}])", addr.ip());
    let tcp = match tokio::time::timeout(s.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Session::NextHost(at(format!("connect failed: {e}"))),
        Err(_) => return Session::NextHost(at("connect timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    let mut tls_on = false;
    let stream: Box<dyn Io> = if s.implicit_tls {
        match handshake(s, host, tcp).await {
            Ok(t) => {
                tls_on = true;
                t
            }
            Err(e) => return Session::NextHost(at(e)),
        }
    } else {
        Box::new(BufStream::new(tcp))
    };
    let mut c: Client = SmtpClient {
        stream,
        timeout: s.command_timeout,
    };
    match timed(s, c.read()).await {
        Ok(r) if r.code / 100 == 2 => {}
        Ok(r) => return Session::NextHost(at(format!("greeting: {}", text(&r)))),
        Err(e) => return Session::NextHost(at(format!("greeting: {e}"))),
    }
    let mut caps = match ehlo(&mut c, s).await {
        Ok(caps) => caps,
        Err(e) => return Session::NextHost(at(e)),
    };
    if !tls_on && try_tls && caps.has_capability(EXT_START_TLS) {
        match c.cmd(b"STARTTLS\r\n").await {
            Ok(r) if r.code == 220 => {}
            Ok(r) => return Session::NextHost(at(format!("STARTTLS: {}", text(&r)))),
            Err(e) => return Session::NextHost(at(format!("STARTTLS: {e}"))),
        }
        let SmtpClient { stream, timeout } = c;
        let stream = match handshake(s, host, stream).await {
            Ok(t) => t,
            Err(e) => return Session::NextHost(at(e)),
        };
        c = SmtpClient { stream, timeout };
        tls_on = true;
        caps = match ehlo(&mut c, s).await {
            Ok(caps) => caps,
            Err(e) => return Session::NextHost(at(e)),
        };
    }
    let all = |o: fn(String) -> Outcome, why: String| {
        Session::Done(job.rcpts.iter().map(|_| o(why.clone())).collect())
    };
    if let Some((user, pass)) = &s.credentials {
        if !tls_on {
            return all(
                Outcome::Deferred,
                at("the relay host offers no TLS; AUTH needs it".into()),
            );
        }
        let creds = Credentials::new(user.clone(), pass.clone());
        if let Err(e) = c.authenticate(&creds, &caps).await {
            let why = match e {
                mail_send::Error::AuthenticationFailed(r)
                | mail_send::Error::UnexpectedReply(r) => {
                    format!("AUTH: {}", text(&r))
                }
                e => format!("AUTH: {e}"),
            };
            quit(c).await;
            return all(Outcome::Deferred, at(why));
        }
    }
    if caps.has_capability(EXT_SIZE) && caps.size > 0 && job.msg.len() > caps.size {
        quit(c).await;
        return all(
            Outcome::Failed,
            at(format!(
                "552 5.3.4 message of {} bytes exceeds the server's limit of {} bytes",
                job.msg.len(),
                caps.size
            )),
        );
    }
    let mut mail = format!("MAIL FROM:<{}>", job.sender);
    if caps.has_capability(EXT_SIZE) {
        mail.push_str(&format!(" SIZE={}", job.msg.len()));
    }
    if caps.has_capability(EXT_8BIT_MIME) && job.msg.iter().any(|b| *b >= 0x80) {
        mail.push_str(" BODY=8BITMIME");
    }
    mail.push_str("\r\n");
    let mut cmds = vec![mail];
    cmds.extend(job.rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")));
    let replies = if caps.has_capability(EXT_PIPELINING) {
        c.cmds(&cmds).await
    } else {
        let mut out = Vec::new();
        let mut res = Ok(());
        for cmd in &cmds {
            match c.cmd(cmd).await {
                Ok(r) => {
                    let stop = out.is_empty() && r.code / 100 != 2;
                    out.push(r);
                    if stop {
                        break;
                    }
                }
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        res.map(|_| out)
    };
    let replies = match replies {
        Ok(r) => r,
        Err(e) => return Session::NextHost(at(format!("MAIL/RCPT: {e}"))),
    };
    let mail_reply = &replies[0];
    if mail_reply.code / 100 != 2 {
        let why = at(format!("MAIL FROM: {}", text(mail_reply)));
        quit(c).await;
        return if mail_reply.code / 100 == 5 {
            all(Outcome::Failed, why)
        } else {
            all(Outcome::Deferred, why)
        };
    }
    let mut outcomes: Vec<Option<Outcome>> = job
        .rcpts
        .iter()
        .enumerate()
        .map(|(i, _)| match replies.get(i + 1) {
            Some(r) if r.code / 100 == 2 => None,
            Some(r) if r.code / 100 == 5 => {
                Some(Outcome::Failed(at(format!("RCPT TO: {}", text(r)))))
            }
            Some(r) => Some(Outcome::Deferred(at(format!("RCPT TO: {}", text(r))))),
            None => Some(Outcome::Deferred(at("RCPT TO: no reply".into()))),
        })
        .collect();
    if outcomes.iter().all(|o| o.is_some()) {
        quit(c).await;
        return Session::Done(outcomes.into_iter().flatten().collect());
    }
    let end = data(&mut c, job.msg).await;
    let mut accepted = |o: Outcome| -> Vec<Outcome> {
        outcomes
            .iter_mut()
            .map(|x| x.take().unwrap_or_else(|| o.clone()))
            .collect()
    };
    match end {
        Ok(r) if r.code / 100 == 2 => {
            let out = accepted(Outcome::Delivered(at(text(&r))));
            quit(c).await;
            Session::Done(out)
        }
        Ok(r) if r.code / 100 == 5 => {
            let out = accepted(Outcome::Failed(at(format!("DATA: {}", text(&r)))));
            quit(c).await;
            Session::Done(out)
        }
        Ok(r) => {
            let out = accepted(Outcome::Deferred(at(format!("DATA: {}", text(&r)))));
            quit(c).await;
            Session::Done(out)
        }
        // The message may or may not have arrived: it is tried again (at least once).
        Err(e) => Session::Done(accepted(Outcome::Deferred(at(format!("DATA: {e}"))))),
    }
}

/// DATA, the message (dot-stuffed), and the final reply.
async fn data(c: &mut Client, msg: &[u8]) -> Result<Response<String>, String> {
    let r = c.cmd(b"DATA\r\n").await.map_err(|e| e.to_string())?;
    if r.code != 354 {
        return Ok(r);
    }
    let timeout = c.timeout;
    match tokio::time::timeout(timeout, c.write_message(msg)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("timed out sending the message".into()),
    }
    match tokio::time::timeout(timeout, c.read()).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out waiting for the reply to the message".into()),
    }
}

async fn ehlo(c: &mut Client, s: &Settings) -> Result<EhloResponse<String>, String> {
    match c.ehlo(&s.ehlo).await {
        Ok(caps) => Ok(caps),
        Err(mail_send::Error::UnexpectedReply(r)) => Err(format!("EHLO: {}", text(&r))),
        Err(e) => Err(format!("EHLO: {e}")),
    }
}

async fn handshake<S: Io + 'static>(
    s: &Settings,
    host: &str,
    io: S,
) -> Result<Box<dyn Io>, String> {
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| format!("{TLS_FAILED}: {host} is not a TLS name"))?;
    match tokio::time::timeout(s.command_timeout, s.tls.connect(name, io)).await {
        Ok(Ok(t)) => Ok(Box::new(BufStream::new(t))),
        Ok(Err(e)) => Err(format!("{TLS_FAILED}: {e}")),
        Err(_) => Err(format!("{TLS_FAILED}: timed out")),
    }
}

async fn timed<T>(
    s: &Settings,
    f: impl std::future::Future<Output = mail_send::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(s.command_timeout, f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// QUIT, without waiting long for the goodbye.
async fn quit(mut c: Client) {
    c.timeout = Duration::from_secs(5);
    let _ = c.cmd(b"QUIT\r\n").await;
}

/// A reply as one line: "550 5.1.1 no such user".
pub fn text(r: &Response<String>) -> String {
    let msg = r
        .message
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if r.esc[0] != 0 {
        format!("{} {}.{}.{} {}", r.code, r.esc[0], r.esc[1], r.esc[2], msg)
    } else {
        format!("{} {}", r.code, msg)
    }
}

/// Accepts every server certificate (see [`Settings::tls_connector`]).
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
