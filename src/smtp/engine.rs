//! The protocol engine: a [`mailin::Session`] with a [`mailin::Handler`] whose callbacks
//! only *apply* verdicts the async driver (`session.rs`) prepared beforehand, plus the
//! wire-level helpers mailin lacks: reverse/forward-path parsing with ESMTP parameters
//! (RFC 5321 4.1.2, RFC 1870 SIZE, RFC 6152 BODY), the null reverse-path `<>`, and
//! enhanced status codes on every reply (RFC 2034, RFC 3463). No I/O happens here.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use mailin::{Handler, Response};

/// What mailin is given as the reverse-path for the null sender `<>`, which its parser
/// does not accept. The real envelope is kept in [`Envelope`], never taken from mailin.
pub const NULL_PATH_TOKEN: &str = "null-reverse-path@invalid";

/// A verdict computed asynchronously (DNS, store look-ups) before the line is handed to
/// mailin; the matching callback takes it and returns its reply.
pub enum Prepared {
    Mail { reply: Response, sender: String },
    Rcpt { reply: Response, rcpt: Option<Rcpt> },
}

/// An accepted recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rcpt {
    /// Address as given, and the account it resolved to.
    Local { addr: String, account: String },
    /// Relayed: goes to the outbound queue.
    Remote(String),
}

/// The transaction as this server sees it; shared by the driver and the handler.
#[derive(Default)]
pub struct Envelope {
    pub helo: Option<String>,
    pub sender: Option<String>,
    pub rcpts: Vec<Rcpt>,
    pub prepared: Option<Prepared>,
}

impl Envelope {
    pub fn reset(&mut self) {
        self.sender = None;
        self.rcpts.clear();
        self.prepared = None;
    }
    pub fn locals(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rcpts.iter().filter_map(|r| match r {
            Rcpt::Local { addr, account } => Some((addr.as_str(), account.as_str())),
            Rcpt::Remote(_) => None,
        })
    }
    pub fn remotes(&self) -> impl Iterator<Item = &str> {
        self.rcpts.iter().filter_map(|r| match r {
            Rcpt::Remote(a) => Some(a.as_str()),
            Rcpt::Local { .. } => None,
        })
    }
}

/// The mailin handler: a shared envelope. Callbacks never block and never decide
/// policy themselves.
#[derive(Clone, Default)]
pub struct Engine(pub Arc<Mutex<Envelope>>);

impl Engine {
    pub fn env(&self) -> MutexGuard<'_, Envelope> {
        // A panic while holding the lock cannot leave the envelope half-updated in a
        // way that matters more than the panicking session itself.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sequence error reply used when a callback runs without a prepared verdict.
fn unprepared() -> Response {
    Response::custom(503, "5.5.1 Bad sequence of commands".into())
}

impl Handler for Engine {
    fn helo(&mut self, _ip: IpAddr, domain: &str) -> Response {
        // RFC 5321 4.1.4: EHLO/HELO reset any transaction in progress.
        let mut env = self.env();
        env.reset();
        env.helo = Some(domain.to_string());
        mailin::response::OK
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        let mut env = self.env();
        match env.prepared.take() {
            Some(Prepared::Mail { reply, sender }) => {
                if !reply.is_error {
                    env.sender = Some(sender);
                }
                reply
            }
            _ => unprepared(),
        }
    }

    fn rcpt(&mut self, _to: &str) -> Response {
        let mut env = self.env();
        match env.prepared.take() {
            Some(Prepared::Rcpt { reply, rcpt }) => {
                if let (false, Some(r)) = (reply.is_error, rcpt) {
                    env.rcpts.push(r);
                }
                reply
            }
            _ => unprepared(),
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        if self.env().rcpts.is_empty() {
            return Response::custom(503, "5.5.1 Need RCPT command".into());
        }
        mailin::response::OK
    }

    fn data(&mut self, _buf: &[u8]) -> std::io::Result<()> {
        // The driver reads DATA itself (writing it to the body file as it comes) and
        // hands mailin only the final `.`.
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        // Never an error here: mailin would stay in its DATA state. The driver replaces
        // this reply with the outcome of the durable commit (or 552 when over-size).
        mailin::response::OK
    }
}

/// Builds the engine for one session. `starttls` offers STARTTLS; AUTH is handled by
/// the driver, not by mailin (see the module documentation).
pub fn session(hostname: &str, peer: IpAddr, starttls: bool) -> (mailin::Session<Engine>, Engine) {
    let engine = Engine::default();
    let mut b = mailin::SessionBuilder::new(hostname);
    if starttls {
        b.enable_start_tls();
    }
    (b.build(peer, engine.clone()), engine)
}

/// RFC 3463 class.subject.detail for a reply code mailin produced without one.
fn enhanced_for(code: u16) -> Option<&'static str> {
    Some(match code {
        221 | 250 => "2.0.0",
        235 => "2.7.0",
        252 => "2.5.0",
        421 | 451 => "4.3.0",
        452 => "4.3.1",
        454 => "4.7.0",
        500 => "5.5.2",
        501 | 502 => "5.5.4",
        503 => "5.5.1",
        530 => "5.7.0",
        535 => "5.7.8",
        552 => "5.3.4",
        553 => "5.1.7",
        554 => "5.6.0",
        c if (200..300).contains(&c) => "2.0.0",
        c if (400..500).contains(&c) => "4.0.0",
        c if (500..600).contains(&c) => "5.0.0",
        _ => return None,
    })
}

fn has_enhanced(text: &str) -> bool {
    let mut parts = text.split(' ').next().unwrap_or("").split('.');
    let digits =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// Wire bytes of a single-line reply from mailin, with an enhanced status code added
/// where RFC 2034 asks for one (not on 3xx continuations). mailin's `502 Missing
/// parameter` for a command lacking its argument is answered as `501` (RFC 5321 4.2.2).
pub fn render(resp: &Response) -> Vec<u8> {
    let raw = resp.buffer().unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let line = text.trim_end_matches(['\r', '\n']);
    let Some((code, rest)) = line.split_once(' ') else {
        return raw;
    };
    let mut code = code.parse::<u16>().unwrap_or(resp.code);
    if code == 502 {
        code = 501;
    }
    if (300..400).contains(&code) || has_enhanced(rest) {
        return format!("{code} {rest}\r\n").into_bytes();
    }
    match enhanced_for(code) {
        Some(e) => format!("{code} {e} {rest}\r\n").into_bytes(),
        None => format!("{code} {rest}\r\n").into_bytes(),
    }
}

/// The MAIL line handed to mailin once the driver has parsed the client's: the path
/// (the null reverse-path as [`NULL_PATH_TOKEN`], which mailin cannot take) and only
/// the parameter mailin understands.
pub fn mail_line(addr: &str, eight_bit: bool) -> String {
    let addr = if addr.is_empty() {
        NULL_PATH_TOKEN
    } else {
        addr
    };
    let body = if eight_bit { " BODY=8BITMIME" } else { "" };
    format!("MAIL FROM:<{addr}>{body}\r\n")
}

/// The RCPT line handed to mailin once the driver has parsed the client's.
pub fn rcpt_line(addr: &str) -> String {
    format!("RCPT TO:<{addr}>\r\n")
}

/// A parsed `MAIL FROM:` / `RCPT TO:` argument.
#[derive(Debug, PartialEq, Eq)]
pub struct Path<'a> {
    /// The mailbox; empty for the null reverse-path `<>`.
    pub addr: &'a str,
    /// ESMTP parameters after the path (`KEY=value`), unparsed.
    pub params: &'a str,
}

/// Parses `FROM:<addr> params` / `TO:<addr> params` (prefix matched case-insensitively;
/// RFC 5321 4.1.2 allows no space after the colon, many clients send one anyway).
/// Source routes (`<@a,@b:user@d>`, RFC 5321 4.1.2 obsolete) are dropped.
pub fn parse_path<'a>(arg: &'a str, prefix: &str) -> Option<Path<'a>> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = &rest[..end];
    let addr = match addr.rfind(':') {
        Some(i) if addr.starts_with('@') => &addr[i + 1..],
        _ => addr,
    };
    let params = &rest[end + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    Some(Path {
        addr,
        params: params.trim(),
    })
}

/// Splits a mailbox into local part and domain when it is acceptable on the wire.
pub fn valid_mailbox(addr: &str) -> Option<(&str, &str)> {
    let (local, domain) = addr.rsplit_once('@')?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 255
        && !addr
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
    ok.then_some((local, domain))
}

/// MAIL parameters this server understands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
}

/// Parses MAIL FROM parameters; `Err` carries the reply.
pub fn mail_params(params: &str) -> Result<MailParams, (u16, &'static str)> {
    let mut out = MailParams::default();
    for p in params.split_whitespace() {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k.to_ascii_uppercase().as_str() {
            // RFC 1870 6.
            "SIZE" => match v.parse::<u64>() {
                Ok(n) => out.size = Some(n),
                Err(_) => return Err((501, "5.5.4 Bad SIZE parameter")),
            },
            // RFC 6152 2.
            "BODY" if v.eq_ignore_ascii_case("8BITMIME") => out.eight_bit = true,
            "BODY" if v.eq_ignore_ascii_case("7BIT") => {}
            // RFC 4954 5: accepted and ignored.
            "AUTH" => {}
            _ => return Err((555, "5.5.4 Unsupported MAIL parameter")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn wire(r: &Response) -> String {
        String::from_utf8(render(r)).unwrap()
    }

    #[test]
    fn rfc5321_4_1_2_paths() {
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            ("FROM:<a@b.c> SIZE=10", "FROM:", Some(("a@b.c", "SIZE=10"))),
            ("from: <>", "FROM:", Some(("", ""))),
            ("TO:<@x,@y:u@d>", "TO:", Some(("u@d", ""))),
            ("TO:<Postmaster>", "TO:", Some(("Postmaster", ""))),
            ("TO:u@d", "TO:", None),
            ("TO:<u@d>junk", "TO:", None),
            ("T", "TO:", None),
            ("TO:<u@d", "TO:", None),
        ];
        for (arg, prefix, want) in cases {
            let got = parse_path(arg, prefix).map(|p| (p.addr, p.params));
            assert_eq!(got, *want, "{arg}");
        }
    }

    #[test]
    fn mailboxes_are_checked() {
        assert_eq!(valid_mailbox("a@b"), Some(("a", "b")));
        assert_eq!(valid_mailbox("a b@c"), None);
        assert_eq!(valid_mailbox("@c"), None);
        assert_eq!(valid_mailbox("abc"), None);
    }

    #[test]
    fn rfc1870_and_rfc6152_parameters() {
        assert_eq!(
            mail_params("SIZE=100 BODY=8BITMIME"),
            Ok(MailParams {
                size: Some(100),
                eight_bit: true
            })
        );
        assert_eq!(mail_params("body=7bit"), Ok(MailParams::default()));
        assert_eq!(mail_params("SIZE=x").unwrap_err().0, 501);
        assert_eq!(mail_params("SMTPUTF8").unwrap_err().0, 555);
    }

    #[test]
    fn rfc2034_enhanced_codes_are_added() {
        let cases = [
            (mailin::response::OK, "250 2.0.0 OK\r\n"),
            (mailin::response::GOODBYE, "221 2.0.0 Goodbye\r\n"),
            (
                mailin::response::START_DATA,
                "354 Start mail input; end with <CRLF>.<CRLF>\r\n",
            ),
            (
                Response::custom(550, "5.1.1 No such user".into()),
                "550 5.1.1 No such user\r\n",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(wire(&r), want);
        }
    }

    /// The engine with its verdicts, driven line by line without any I/O.
    #[test]
    fn mailin_applies_prepared_verdicts() {
        let (mut s, e) = session("mx.test", IpAddr::V4(Ipv4Addr::LOCALHOST), true);
        assert_eq!(s.process(b"MAIL FROM:<a@b>\r\n").code, 503);
        assert_eq!(s.process(b"EHLO c.example\r\n").code, 250);
        assert_eq!(e.env().helo.as_deref(), Some("c.example"));
        e.env().prepared = Some(Prepared::Mail {
            reply: Response::custom(250, "2.1.0 OK".into()),
            sender: String::new(),
        });
        let line = format!("MAIL FROM:<{NULL_PATH_TOKEN}>\r\n");
        assert_eq!(s.process(line.as_bytes()).code, 250);
        assert_eq!(e.env().sender.as_deref(), Some(""));
        assert_eq!(s.process(b"DATA\r\n").code, 503);
        e.env().prepared = Some(Prepared::Rcpt {
            reply: Response::custom(550, "5.1.1 No such user".into()),
            rcpt: None,
        });
        assert_eq!(s.process(b"RCPT TO:<x@y>\r\n").code, 550);
        let r = Rcpt::Local {
            addr: "p@y".into(),
            account: "sistemas".into(),
        };
        e.env().prepared = Some(Prepared::Rcpt {
            reply: Response::custom(250, "2.1.5 OK".into()),
            rcpt: Some(r.clone()),
        });
        assert_eq!(s.process(b"RCPT TO:<p@y>\r\n").code, 250);
        assert_eq!(e.env().rcpts, vec![r]);
        assert_eq!(s.process(b"DATA\r\n").code, 354);
        // The driver decodes the body itself (data.rs) and hands mailin the final dot.
        assert_eq!(s.process(b".\r\n").code, 250);
        assert_eq!(s.process(b"RSET\r\n").code, 250);
    }
}
