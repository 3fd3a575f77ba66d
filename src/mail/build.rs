//! Building messages (RFC 5322, MIME via mail-builder): the webmail's new messages,
//! replies and drafts ([`build_message`]) and what it reads back from a draft, the
//! attachments of a stored message, the bodies of replies and forwards, the reply
//! threading headers (RFC 5322 3.6.4), the hygiene applied to what a person typed
//! before it becomes a header, and the `Received:` trace fields SMTP and the webmail
//! prepend.

use std::net::IpAddr;

use mail_parser::{MessageParser, MimeHeaders};

use super::address::{format_list, recipients, split_addresses};

/// The private draft header naming the message to flag when the draft is sent.
pub const ORIGIN_HEADER: &str = "X-Clusterd-Origin";

/// An attachment to put into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub ctype: String,
    pub data: Vec<u8>,
}

/// The parts of a message to build.
pub struct MessageParts<'a> {
    pub from_name: &'a str,
    pub from_addr: &'a str,
    pub to: &'a [(Option<String>, String)],
    pub cc: &'a [(Option<String>, String)],
    /// Written only into drafts.
    pub bcc: &'a [(Option<String>, String)],
    /// Drafts only: To, Cc, Bcc as typed (one line each), when they do not all parse;
    /// replaces the three lists.
    pub verbatim: Option<(&'a str, &'a str, &'a str)>,
    pub subject: &'a str,
    pub body: &'a str,
    /// Space-separated message ids without angle brackets.
    pub in_reply_to: &'a str,
    pub references: &'a str,
    /// Without angle brackets.
    pub message_id: &'a str,
    /// Unix seconds.
    pub date: i64,
    /// The draft's origin header value.
    pub origin: Option<&'a str>,
    pub attachments: &'a [Attachment],
}

fn address_header(
    list: &[(Option<String>, String)],
) -> mail_builder::headers::address::Address<'static> {
    use mail_builder::headers::address::Address;
    Address::new_list(
        list.iter()
            .map(|(n, a)| Address::new_address(n.clone().filter(|n| !n.is_empty()), a.clone()))
            .collect(),
    )
}

/// Message ids from space-separated text, angle brackets removed, invalid ones dropped.
fn ids(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|i| i.trim_matches(|c| c == '<' || c == '>').to_string())
        .filter(|i| valid_msg_id(i))
        .collect()
}

/// A message id (without angle brackets) we are willing to write.
fn valid_msg_id(i: &str) -> bool {
    !i.is_empty()
        && i.len() <= 250
        && i.chars()
            .all(|c| c.is_ascii_graphic() && c != '<' && c != '>')
}

/// Builds the RFC 5322 message (multipart/mixed when there are attachments).
pub fn build_message(p: &MessageParts) -> Vec<u8> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::address::Address;
    use mail_builder::headers::message_id::MessageId;
    use mail_builder::headers::raw::Raw;
    let from_name = clean_line(p.from_name);
    let mut b = MessageBuilder::new()
        .from(Address::new_address(
            (!from_name.is_empty()).then_some(from_name),
            p.from_addr.to_string(),
        ))
        .date(p.date)
        .message_id(p.message_id.to_string());
    if let Some((to, cc, bcc)) = p.verbatim {
        for (name, v) in [("To", to), ("Cc", cc), ("Bcc", bcc)] {
            let v = clean_line(v);
            if !v.is_empty() {
                b = b.header(name, Raw::new(v));
            }
        }
    }
    if !p.to.is_empty() {
        b = b.to(address_header(p.to));
    }
    if !p.cc.is_empty() {
        b = b.cc(address_header(p.cc));
    }
    if !p.bcc.is_empty() {
        b = b.bcc(address_header(p.bcc));
    }
    let subject = clean_line(p.subject);
    if !subject.is_empty() {
        b = b.subject(subject);
    }
    let irt = ids(p.in_reply_to);
    if !irt.is_empty() {
        b = b.in_reply_to(MessageId::new_list(irt.iter().map(|s| s.as_str())));
    }
    let refs = ids(p.references);
    if !refs.is_empty() {
        b = b.references(MessageId::new_list(refs.iter().map(|s| s.as_str())));
    }
    if let Some(o) = p.origin {
        b = b.header(ORIGIN_HEADER, Raw::new(clean_line(o)));
    }
    b = b.header("User-Agent", Raw::new("clusterd webmail"));
    b = b.text_body(crlf(p.body));
    for a in p.attachments {
        b = b.attachment(a.ctype.clone(), a.name.clone(), a.data.as_slice());
    }
    b.write_to_vec().unwrap_or_default()
}

/// The attachments of a message, in mail-parser's order (the index used by `keep`).
pub fn attachments_of(raw: &[u8]) -> Vec<Attachment> {
    let Some(msg) = MessageParser::default().parse(crate::mail::mime::bounded(raw)) else {
        return Vec::new();
    };
    msg.attachments()
        .map(|part| {
            let ctype = part
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{}", c.ctype(), s),
                    None => c.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into());
            Attachment {
                name: clean_filename(part.attachment_name().unwrap_or("attachment")),
                ctype: clean_ctype(Some(&ctype)),
                data: part.contents().to_vec(),
            }
        })
        .collect()
}

/// A recipient field of a saved draft: the parsed addresses, or the header text as
/// saved when some entry is not a valid address (a half-typed draft, which
/// [`build_message`] wrote `verbatim`).
pub fn draft_field(
    msg: &mail_parser::Message,
    name: &str,
    parsed: Option<&mail_parser::Address>,
) -> String {
    let list = recipients(parsed);
    let raw = clean_line(msg.header_raw(name).unwrap_or_default());
    if split_addresses(&raw).len() == list.len() {
        format_list(&list)
    } else {
        raw
    }
}

// ------------------------------------------------------------------ reply and forward bodies

/// The body of a reply: an empty line, the attribution line when there is one, and
/// the original text quoted line by line (`> `, or only `>` before a line that is
/// already quoted).
pub fn quoted_reply(attribution: &str, text: &str) -> String {
    let mut out = String::from("\r\n\r\n");
    if !attribution.is_empty() {
        out.push_str(attribution);
        out.push_str("\r\n");
    }
    let text = text.replace("\r\n", "\n");
    for line in text.trim_end().lines() {
        if line.starts_with('>') {
            out.push('>');
        } else {
            out.push_str("> ");
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// The body of a forward: an empty line, `---------- heading ----------`, the
/// original's header fields as `label: value` (empty ones left out), an empty line
/// and the original text with CRLF line ends.
pub fn forwarded(heading: &str, fields: &[(&str, String)], text: &str) -> String {
    let mut block = format!("\r\n\r\n---------- {heading} ----------\r\n");
    for (label, value) in fields {
        if !value.is_empty() {
            block.push_str(&format!("{label}: {value}\r\n"));
        }
    }
    block.push_str("\r\n");
    block.push_str(&crlf(text));
    block
}

// ------------------------------------------------------------------ header hygiene

/// One line: control characters (CR, LF, TAB...) become spaces, trimmed.
pub fn clean_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// A file name without directories or control characters, at most 200 bytes.
pub fn clean_filename(s: &str) -> String {
    let base = s.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out: String = base.chars().filter(|c| !c.is_control()).collect();
    while out.len() > 200 {
        out.pop();
    }
    out.trim().to_string()
}

/// A `type/subtype` media type, or `application/octet-stream`.
pub fn clean_ctype(s: Option<&str>) -> String {
    let s = s
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 100
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    match s.split_once('/') {
        Some((a, b)) if token(a) && token(b) => s.to_ascii_lowercase(),
        _ => "application/octet-stream".into(),
    }
}

/// Normalises line ends to CRLF.
pub fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
}

// ------------------------------------------------------------------ threading

/// An id header mail-parser read (In-Reply-To, References), ids joined with spaces.
pub fn id_list(v: &mail_parser::HeaderValue) -> String {
    match v {
        mail_parser::HeaderValue::Text(t) => t.to_string(),
        mail_parser::HeaderValue::TextList(l) => {
            l.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

/// In-Reply-To and References for a reply to `msg` (RFC 5322 3.6.4).
pub fn thread_ids(msg: &mail_parser::Message) -> (String, String) {
    let Some(id) = msg.message_id().filter(|i| valid_msg_id(i)) else {
        return (String::new(), id_list(msg.references()));
    };
    let mut refs = ids(&id_list(msg.references()));
    if refs.is_empty() {
        refs = ids(&id_list(msg.in_reply_to()))
            .into_iter()
            .take(1)
            .collect();
    }
    refs.push(id.to_string());
    // Keep the first and the most recent ones when the chain grows long.
    if refs.len() > 20 {
        let first = refs[0].clone();
        let tail = refs.split_off(refs.len() - 19);
        refs = std::iter::once(first).chain(tail).collect();
    }
    (id.to_string(), refs.join(" "))
}

// ------------------------------------------------------------------ trace fields

/// What a `Received:` trace field records (RFC 5321 4.4).
pub struct Trace<'a> {
    /// The client's HELO/EHLO name as it sent it.
    pub helo: Option<&'a str>,
    pub ip: IpAddr,
    /// This server's host name.
    pub by: &'a str,
    /// The protocol (`SMTP`, `ESMTPSA`, ..., RFC 3848).
    pub with: &'a str,
    pub id: &'a str,
    /// The recipient, when the message has exactly one.
    pub rcpt: Option<&'a str>,
    /// The account the client authenticated as (submission).
    pub account: Option<&'a str>,
}

/// The `Received:` field (CRLF-terminated) dated now; the HELO name keeps only
/// printable ASCII, at most 255 characters.
pub fn received(t: &Trace<'_>) -> String {
    let rcpt = match t.rcpt {
        Some(addr) => format!("\r\n\tfor <{addr}>"),
        None => String::new(),
    };
    let helo: String = t
        .helo
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let auth = match t.account {
        Some(a) => format!(" (authenticated as {a})"),
        None => String::new(),
    };
    format!(
        "Received: from {helo} ([{ip}]){auth}\r\n\tby {host} (clusterd) with {with} id {id}{rcpt};\r\n\t{date}\r\n",
        ip = t.ip,
        host = t.by,
        with = t.with,
        id = t.id,
        date = chrono::Utc::now().to_rfc2822(),
    )
}

/// What the `Received:` field of a message the webmail submits records.
pub struct WebmailTrace<'a> {
    /// The browser's address, when known.
    pub ip: Option<IpAddr>,
    pub https: bool,
    /// The signed-in account.
    pub account: &'a str,
    /// This server's host name.
    pub by: &'a str,
    pub id: &'a str,
}

/// The webmail's `Received:` field (CRLF-terminated) dated now. It differs from
/// [`received`]'s: there is no HELO, the client is an authenticated account and the
/// protocol is HTTP(S).
pub fn received_from_webmail(t: &WebmailTrace<'_>) -> String {
    format!(
        "Received: from [{ip}] (authenticated as {acc})\r\n\tby {host} (clusterd webmail) with {proto} id {id};\r\n\t{date}\r\n",
        ip =
            t.ip.map(|ip| ip.to_string())
                .unwrap_or_else(|| "unknown".into()),
        acc = t.account,
        host = t.by,
        proto = if t.https { "HTTPS" } else { "HTTP" },
        id = t.id,
        date = chrono::Utc::now().to_rfc2822(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_message_has_headers_attachments_and_no_bcc() {
        let att = Attachment {
            name: "datos año.bin".into(),
            ctype: "application/octet-stream".into(),
            data: (0..=255u8).cycle().take(5000).collect(),
        };
        let raw = build_message(&MessageParts {
            from_name: "Ana Pérez",
            from_addr: "ana@cluster.com.ec",
            to: &[(Some("Luis".into()), "luis@cluster.com.ec".into())],
            cc: &[(None, "x@example.org".into())],
            bcc: &[],
            verbatim: None,
            subject: "Año nuevo ñandú",
            body: "línea 1\nlínea 2\n",
            in_reply_to: "a@b",
            references: "<r@b> a@b",
            message_id: "id1@host.example",
            date: 1_700_000_000,
            origin: None,
            attachments: std::slice::from_ref(&att),
        });
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("Bcc:"), "{text}");
        assert!(text.contains("Message-ID: <id1@host.example>"), "{text}");
        assert!(text.contains("In-Reply-To: <a@b>"), "{text}");
        assert!(text.contains("multipart/mixed"), "{text}");
        // Non-ASCII subjects are encoded words (RFC 2047).
        assert!(text.contains("Subject: =?utf-8?"), "{text}");
        let msg = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(msg.subject(), Some("Año nuevo ñandú"));
        assert_eq!(
            msg.from().unwrap().first().unwrap().name(),
            Some("Ana Pérez")
        );
        assert_eq!(
            msg.body_text(0).unwrap().replace("\r\n", "\n"),
            "línea 1\nlínea 2\n"
        );
        assert_eq!(attachments_of(&raw), vec![att]);
        assert_eq!(id_list(msg.references()), "r@b a@b");
    }

    #[test]
    fn reply_threads_keep_references() {
        let raw = b"Message-ID: <m2@x>\r\nReferences: <m0@x> <m1@x>\r\nSubject: s\r\n\r\nb\r\n";
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(thread_ids(&msg), ("m2@x".into(), "m0@x m1@x m2@x".into()));
        let raw = b"Message-ID: <m2@x>\r\nIn-Reply-To: <m1@x>\r\n\r\nb\r\n";
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(thread_ids(&msg), ("m2@x".into(), "m1@x m2@x".into()));
    }

    #[test]
    fn helpers_sanitise_names_and_types() {
        assert_eq!(clean_filename("C:\\x\\..\\evil\r\n.exe"), "evil.exe");
        assert_eq!(clean_ctype(Some("image/PNG; x=1")), "image/png");
        assert_eq!(clean_ctype(Some("bad type")), "application/octet-stream");
    }

    #[test]
    fn received_names_the_client_the_protocol_and_a_single_recipient() {
        let t = Trace {
            helo: Some("c.example\r\nX-Evil: 1"),
            ip: "192.0.2.1".parse().unwrap(),
            by: "mx.example",
            with: "ESMTPS",
            id: "ABC",
            rcpt: Some("a@b.example"),
            account: None,
        };
        let r = received(&t);
        assert!(
            r.starts_with(
                "Received: from c.exampleX-Evil:1 ([192.0.2.1])\r\n\tby mx.example (clusterd) with ESMTPS id ABC\r\n\tfor <a@b.example>;\r\n\t"
            ),
            "{r}"
        );
        assert!(r.ends_with("\r\n") && r.matches("\r\n").count() == 4, "{r}");
        let r = received(&Trace {
            helo: None,
            rcpt: None,
            ..t
        });
        assert!(r.starts_with("Received: from unknown ([192.0.2.1])\r\n\tby mx.example (clusterd) with ESMTPS id ABC;\r\n"), "{r}");
        let r = received(&Trace {
            account: Some("ana"),
            ..t
        });
        assert!(
            r.starts_with(
                "Received: from c.exampleX-Evil:1 ([192.0.2.1]) (authenticated as ana)\r\n"
            ),
            "{r}"
        );
        let r = received_from_webmail(&WebmailTrace {
            ip: None,
            https: true,
            account: "ana",
            by: "mx.example",
            id: "ABC",
        });
        assert!(
            r.starts_with("Received: from [unknown] (authenticated as ana)\r\n\tby mx.example (clusterd webmail) with HTTPS id ABC;\r\n\t"),
            "{r}"
        );
    }
}
