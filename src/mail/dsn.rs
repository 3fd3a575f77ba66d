//! Delivery status notifications (RFC 3464): the `multipart/report` (RFC 6522) the
//! outbound queue sends to an envelope sender when some recipients failed for good or
//! are taking long. Three parts: a text for people (which addresses, why, what the
//! remote server said, until when a delay is retried), the `message/delivery-status`
//! fields software reads, and the original's header as `text/rfc822-headers` (never
//! its body: a bounce stays small). [`status_of`] reads the RFC 3463 status out of an
//! SMTP reply.
//!
//! Written by hand rather than with mail-builder: the delivery-status part is header
//! fields that must stay unencoded (parsers read them as they are), and every line's
//! length and folding is ours to bound. The result is 7-bit: the human text is
//! quoted-printable when it is not plain short ASCII, non-ASCII in the machine fields
//! is escaped or replaced, and an original header that is not 7-bit (or has a line
//! over 998 octets) is quoted-printable too. Only a non-ASCII address (SMTPUTF8) in From or To stays
//! as it is.

use super::build::clean_line;
use super::date::rfc5322;
use super::encoding::{decode_words, qp_encode};
use super::header::{fields, header_first, unfold};
use super::mime::message_header;

/// What happened to a recipient (RFC 3464 2.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Given up: a permanent reply, or the queue lifetime ran out.
    Failed,
    /// Not delivered yet, still being retried (the delay warning).
    Delayed,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }
}

/// One recipient the notification reports on.
pub struct Recipient<'a> {
    /// The original recipient address.
    pub addr: &'a str,
    pub action: Action,
    /// RFC 3463 code, e.g. "5.1.1" or "4.4.1" (see [`status_of`]); one that is not a
    /// status code is reported as 5.0.0 (failed) or 4.0.0 (delayed).
    pub status: String,
    /// The remote reply, e.g. "550 5.1.1 <ana@example.net>: no such user", or our own
    /// reason when there was none.
    pub diagnostic: Option<&'a str>,
    /// The host name that gave the reply.
    pub remote_mta: Option<&'a str>,
}

/// A notification to build.
pub struct Report<'a> {
    /// Our host name (the EHLO name).
    pub reporting_mta: &'a str,
    /// The notification's sender, e.g. "MAILER-DAEMON@cluster.com.ec".
    pub from: &'a str,
    /// The envelope sender being notified.
    pub to: &'a str,
    pub queue_id: &'a str,
    /// Unix seconds the message was queued.
    pub arrival: i64,
    /// Unix seconds; the Date, and the last attempt of every recipient.
    pub now: i64,
    pub recipients: Vec<Recipient<'a>>,
    /// The original message; only its header is included.
    pub original: &'a [u8],
    /// For delayed recipients: when we give up (unix seconds).
    pub will_retry_until: Option<i64>,
}

/// The longest original header included; the fields after it are left out.
const MAX_ORIGINAL_HEADER: usize = 64 * 1024;
/// The longest diagnostic included (characters); longer ones are cut.
const MAX_DIAGNOSTIC: usize = 2000;
/// Where header fields are folded when they can be (RFC 5322 2.1.1).
const FOLD_AT: usize = 78;
/// The longest piece of a word without blanks on one line; longer words are split
/// (well under the 998 octets of RFC 5322 2.1.1).
const MAX_PIECE: usize = 900;

/// The complete notification, CRLF line ends.
pub fn build(r: &Report) -> Vec<u8> {
    let host = token(r.reporting_mta, "localhost");
    let queue_id = token(r.queue_id, "unknown");
    let boundary = format!(
        "=_dsn_{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let failed = r.recipients.iter().any(|x| x.action == Action::Failed);
    let header = original_header(r.original);

    let mut out = String::new();
    let from = address(r.from);
    out.push_str(&format!("From: Mail Delivery System <{from}>\r\n"));
    match address(r.to) {
        to if to.is_empty() => out.push_str("To: undisclosed-recipients:;\r\n"),
        to => out.push_str(&format!("To: <{to}>\r\n")),
    }
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delayed Mail (still being retried)"
    };
    out.push_str(&format!("Subject: {subject}\r\n"));
    out.push_str(&format!("Date: {}\r\n", rfc5322(r.now)));
    out.push_str(&format!(
        "Message-ID: <{}.{queue_id}.{:08x}@{host}>\r\n",
        r.now,
        rand::random::<u32>()
    ));
    out.push_str("Auto-Submitted: auto-replied\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    out.push_str("\r\nThis is a MIME-encapsulated message.\r\n");

    // (1) For people.
    let text = human_text(r, &host, &header);
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n"
    ));
    if plain_7bit(text.as_bytes(), FOLD_AT, &boundary) {
        out.push_str(&format!("Content-Transfer-Encoding: 7bit\r\n\r\n{text}"));
    } else {
        out.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        out.push_str(&qp_encode(text.as_bytes()));
    }

    // (2) For software (RFC 3464 2.2, 2.3).
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    field(&mut out, "Reporting-MTA", &format!("dns; {host}"));
    field(&mut out, "X-Clusterd-Queue-ID", &queue_id);
    field(&mut out, "Arrival-Date", &rfc5322(r.arrival));
    for rcpt in &r.recipients {
        out.push_str("\r\n");
        recipient_fields(&mut out, r, rcpt);
    }

    // (3) The original header (RFC 6522 allows text/rfc822-headers).
    let description = if failed {
        "Undelivered Message Headers"
    } else {
        "Delayed Message Headers"
    };
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: {description}\r\nContent-Type: text/rfc822-headers\r\n"
    ));
    let mut bytes = out.into_bytes();
    if plain_7bit(&header, 998, &boundary) {
        bytes.extend_from_slice(b"Content-Transfer-Encoding: 7bit\r\n\r\n");
        bytes.extend_from_slice(&header);
    } else {
        bytes.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        bytes.extend_from_slice(qp_encode(&header).as_bytes());
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// The RFC 3463 status to report for a reply text: the enhanced code in it when it
/// has one ("550 5.1.1 ..." -> "5.1.1"; its class follows the reply code's when the
/// two disagree, as RFC 3463 2 requires), else derived from the basic code
/// ("550 ..." -> "5.0.0", "451 ..." -> "4.0.0"); `fallback` when the text has no
/// reply code at all (e.g. "5.4.4" for an unroutable domain, "4.4.1" for no answer).
/// A text that starts with an enhanced code alone ("5.4.4 no route") gives that code.
pub fn status_of(reply: &str, fallback: &str) -> String {
    let text = reply.trim_start();
    let b = text.as_bytes();
    let class = (b.len() >= 3
        && matches!(b[0], b'2' | b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b.get(3)
            .is_none_or(|&c| matches!(c, b' ' | b'-' | b'\t' | b'\r' | b'\n')))
    .then(|| char::from(b[0]));
    let rest = match class {
        Some(_) => text.get(4..).unwrap_or_default(),
        None => text,
    };
    let enhanced = rest.split_whitespace().next().filter(|w| valid_status(w));
    match (class, enhanced) {
        (Some(class), Some(code)) => format!("{class}{}", &code[1..]),
        (Some(class), None) => format!("{class}.0.0"),
        (None, Some(code)) => code.to_string(),
        (None, None) => fallback.to_string(),
    }
}

/// `class.subject.detail` (RFC 3463 2): class 2, 4 or 5, then 1 to 3 digits twice.
fn valid_status(s: &str) -> bool {
    let mut parts = s.split('.');
    let digits = |p: Option<&str>| {
        p.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(parts.next(), Some("2" | "4" | "5"))
        && digits(parts.next())
        && digits(parts.next())
        && parts.next().is_none()
}

/// The status to write for a recipient: its own when valid, else the action's
/// generic one.
fn status(rcpt: &Recipient) -> String {
    if valid_status(&rcpt.status) {
        rcpt.status.clone()
    } else {
        match rcpt.action {
            Action::Failed => "5.0.0".into(),
            Action::Delayed => "4.0.0".into(),
        }
    }
}

// ------------------------------------------------------------------ machine fields

/// One recipient's block (RFC 3464 2.3), each field ending in CRLF.
fn recipient_fields(out: &mut String, r: &Report, rcpt: &Recipient) {
    field(out, "Final-Recipient", &final_recipient(rcpt.addr));
    field(out, "Action", rcpt.action.name());
    field(out, "Status", &status(rcpt));
    if let Some(mta) = rcpt
        .remote_mta
        .map(|m| token(m, ""))
        .filter(|m| !m.is_empty())
    {
        field(out, "Remote-MTA", &format!("dns; {mta}"));
    }
    if let Some(diag) = rcpt.diagnostic.map(diagnostic).filter(|d| !d.is_empty()) {
        // "smtp" only for what is an SMTP reply; our own reasons are typed as ours.
        let kind = if is_reply(&diag) {
            "smtp"
        } else {
            "X-Clusterd"
        };
        let ascii: String = diag
            .chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .collect();
        field(out, "Diagnostic-Code", &format!("{kind}; {ascii}"));
    }
    field(out, "Last-Attempt-Date", &rfc5322(r.now));
    if let (Action::Delayed, Some(until)) = (rcpt.action, r.will_retry_until) {
        field(out, "Will-Retry-Until", &rfc5322(until));
    }
}

/// `rfc822; addr`, or for an address that is not ASCII RFC 6533's `utf-8` type with
/// the characters outside printable ASCII (and `\`, `+`, `=`) as `\x{HEX}`.
fn final_recipient(addr: &str) -> String {
    let addr = address(addr);
    if addr.is_ascii() {
        return format!("rfc822; {addr}");
    }
    let mut out = String::from("utf-8; ");
    for c in addr.chars() {
        if c.is_ascii_graphic() && !matches!(c, '\\' | '+' | '=') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// Writes `name: value` folded at blanks before column 78 when it can; a run without
/// blanks longer than [`MAX_PIECE`] is split (unfolding then shows a blank there).
/// Runs of blanks in `value` become one. `value` is ASCII.
fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut col = name.len() + 1;
    let mut first = true;
    for word in value.split([' ', '\t']).filter(|w| !w.is_empty()) {
        let mut rest = word;
        while !rest.is_empty() {
            let cut = rest.len().min(MAX_PIECE);
            let cut = (cut..=rest.len())
                .find(|&i| rest.is_char_boundary(i))
                .unwrap_or(rest.len());
            let (piece, tail) = rest.split_at(cut);
            if !first && col + 1 + piece.len() > FOLD_AT {
                out.push_str("\r\n");
                col = 0;
            }
            out.push(' ');
            out.push_str(piece);
            col += 1 + piece.len();
            first = false;
            rest = tail;
        }
    }
    out.push_str("\r\n");
}

/// A diagnostic on one line: line breaks and other control characters become
/// blanks, at most [`MAX_DIAGNOSTIC`] characters.
fn diagnostic(s: &str) -> String {
    let line = clean_line(s);
    match line.char_indices().nth(MAX_DIAGNOSTIC) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line,
    }
}

/// Whether a text starts with an SMTP reply code.
fn is_reply(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && matches!(b[0], b'2'..=b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b.get(3).is_none_or(|&c| c == b' ' || c == b'-')
}

/// A host name or id: printable ASCII only, without the characters that end a
/// field's token; at most 255 bytes; `default` when nothing is left.
fn token(s: &str, default: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, ';' | '<' | '>' | '(' | ')' | '"'))
        .take(255)
        .collect();
    if t.is_empty() { default.to_string() } else { t }
}

/// An address on one line without angle brackets or blanks.
fn address(s: &str) -> String {
    clean_line(s)
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | ' '))
        .collect()
}

// ------------------------------------------------------------------ the original

/// The original's header fields with CRLF line ends, without the blank line that
/// ends them, cut after the last whole field that fits [`MAX_ORIGINAL_HEADER`].
fn original_header(original: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(message_header(original)) {
        if out.len() + f.line.len() + 2 > MAX_ORIGINAL_HEADER {
            break;
        }
        for (i, line) in f.line.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Whether text with CRLF line ends can go as it is: printable ASCII and tabs only,
/// lines of at most `max` characters, none that a boundary delimiter could match.
fn plain_7bit(text: &[u8], max: usize, boundary: &str) -> bool {
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    text.split(|&b| b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() <= max
            && line
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
            && !line.starts_with(format!("--{boundary}").as_bytes())
    })
}

// ------------------------------------------------------------------ the text for people

/// The original's Subject, decoded, on one line (at most 200 characters).
fn original_subject(header: &[u8]) -> Option<String> {
    let raw = unfold(header_first(header, "Subject")?);
    let text = decode_words(&raw, |out, s| out.push_str(s));
    let text = clean_line(&text);
    (!text.is_empty()).then(|| text.chars().take(200).collect())
}

/// What a status means, for people (by its subject and detail, RFC 3463 3).
fn explain(status: &str) -> &'static str {
    match status.get(2..).unwrap_or_default() {
        "1.1" => "the mailbox does not exist; check the address for typing mistakes",
        "1.0" | "1.3" => "the address is not valid; check it for typing mistakes",
        "1.2" | "4.4" => {
            "the domain (the part after the @) has no mail server; check it for typing mistakes"
        }
        "1.6" => "the mailbox has moved and no longer receives mail",
        "2.1" => "the mailbox is disabled and does not accept mail",
        "2.2" => "the recipient's mailbox is full",
        "2.3" | "3.4" => "the message is too large for the recipient's mail server",
        "4.1" | "4.2" => "the recipient's mail server did not answer or broke off the connection",
        "4.7" => "the message could not be delivered in the time allowed",
        d if d.starts_with("7.") => {
            "the recipient's mail server refused the message (its security policy or spam filter)"
        }
        _ if status.starts_with('4') => "a temporary problem at the recipient's mail server",
        _ => "the recipient's mail server refused the message",
    }
}

/// The first part: an explanation an office worker understands, CRLF line ends.
fn human_text(r: &Report, host: &str, header: &[u8]) -> String {
    let failed: Vec<&Recipient> = r
        .recipients
        .iter()
        .filter(|x| x.action == Action::Failed)
        .collect();
    let delayed: Vec<&Recipient> = r
        .recipients
        .iter()
        .filter(|x| x.action == Action::Delayed)
        .collect();
    let until = r.will_retry_until.map(rfc5322);
    let mut t = format!("This is the mail system at {host}.\n\n");
    if !failed.is_empty() {
        t.push_str(
            "Your message could not be delivered to the recipients listed below.\n\
             We have given up: it will not be sent to them. Check each address for\n\
             typing mistakes; if an address is right, the reason given below may help\n\
             you or the recipient to solve the problem.\n",
        );
    } else {
        t.push_str("Your message has not been delivered yet to the recipients listed below.\n");
        match &until {
            Some(until) => t.push_str(&format!(
                "There is no need to send it again: we keep trying until\n{until}.\n\
                 If it still cannot be delivered by then, you will receive another message.\n"
            )),
            None => t.push_str(
                "There is no need to send it again: we keep trying. If it cannot be\n\
                 delivered in the end, you will receive another message.\n",
            ),
        }
    }
    t.push_str("\nYour message\n");
    if let Some(subject) = original_subject(header) {
        push_wrapped(&mut t, "  Subject:", "           ", &subject);
    }
    t.push_str(&format!("  Sent:    {}\n", rfc5322(r.arrival)));
    let mut section = |title: &str, list: &[&Recipient]| {
        if list.is_empty() {
            return;
        }
        t.push_str(&format!("\n{title}\n"));
        for rcpt in list {
            let status = status(rcpt);
            t.push_str(&format!("\n  {}\n", clean_line(rcpt.addr)));
            let reason = format!("{} ({status}).", explain(&status));
            push_wrapped(&mut t, "    Reason:", "      ", &reason);
            if let Some(diag) = rcpt.diagnostic.map(diagnostic).filter(|d| !d.is_empty()) {
                match rcpt
                    .remote_mta
                    .map(|m| token(m, ""))
                    .filter(|m| !m.is_empty())
                {
                    Some(mta) if is_reply(&diag) => {
                        t.push_str(&format!("    The server {mta} answered:\n"));
                        push_wrapped(&mut t, "      ", "      ", &diag);
                    }
                    _ => push_wrapped(&mut t, "    Details:", "      ", &diag),
                }
            }
        }
    };
    section("Not delivered (we have given up):", &failed);
    let title = match &until {
        Some(until) => format!("Not delivered yet (we keep trying until {until}):"),
        None => "Not delivered yet (we keep trying):".to_string(),
    };
    section(&title, &delayed);
    t.push_str(
        "\nThe header of your message is attached. If you need help, forward this\n\
         message to your mail administrator (postmaster).\n",
    );
    t.replace('\n', "\r\n")
}

/// Appends `lead` and the words of `text` wrapped at blanks into lines of at most 76
/// characters (a longer word stands on a line of its own), the lines after the first
/// starting with `indent`.
fn push_wrapped(t: &mut String, lead: &str, indent: &str, text: &str) {
    let mut line = lead.to_string();
    let mut width = line.chars().count();
    let mut fresh = line.trim().is_empty();
    for word in text.split([' ', '\t']).filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if !fresh && width + 1 + len > 76 {
            t.push_str(&line);
            t.push('\n');
            line = indent.to_string();
            width = line.chars().count();
            fresh = true;
        }
        if !fresh {
            line.push(' ');
            width += 1;
        }
        line.push_str(word);
        width += len;
        fresh = false;
    }
    t.push_str(&line);
    t.push('\n');
}

#[cfg(test)]
mod tests;
