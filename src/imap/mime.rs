//! IMAP's views of a message's MIME structure: ENVELOPE, BODY and BODYSTRUCTURE (RFC
//! 3501 7.4.2) and body sections `BODY[1.2.MIME]`, `BODY[n.HEADER.FIELDS (...)]` (RFC
//! 3501 6.4.5), written from the part tree, header fields and address lists of
//! [`crate::mail`] (`mime`, `header`, `address`). Pure functions of the raw message
//! bytes; no I/O.
//!
//! Implementation notes
//! - Where RFC 3501 leaves the answer to malformed input open, the choices follow
//!   Dovecot 2.3 so that clients see the same structure as on the server they came
//!   from (tests/imap_dovecot.rs compares the two on a corpus): the first
//!   Content-Type decides the structure; BODYSTRUCTURE shows the first occurrence of
//!   each Content-* field except Content-Disposition (the last); ENVELOPE fields are
//!   the raw header values (last occurrence; unfolded, leading blanks dropped; RFC
//!   2047 words left encoded), Sender and Reply-To default to From, missing address
//!   parts are `MISSING_MAILBOX`/`MISSING_DOMAIN`, an unclosed `<` gives
//!   `SYNTAX_ERROR` and ends the list; a multipart without any delimiter has one
//!   empty text/plain part; a Content-Type that does not parse (or has an empty
//!   subtype) becomes `"" ""` without parameters; text parts get `charset=us-ascii`
//!   when they name none; a section that does not exist is an empty string, and a
//!   leaf part answers to one extra `.1` (so `BODY[1.1]` of a single-part child is
//!   the part itself).
//! - Known differences: an extended parameter without a section number (`title*=`)
//!   next to RFC 2231 continuations is shown as `title*`; Dovecot 2.3 shows it as
//!   `title*1*`, which looks like a slip on its side and is not copied. Dovecot
//!   skips a malformed parameter and reads the ones after it; here the parameter
//!   list ends there (both are `mail::header`'s parameter parsing).

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{Part as PartPath, Section};

use super::wire;
use crate::mail::address::{Item, parse_list};
use crate::mail::header::{
    header_first, header_folded, header_raw, lossy, parse_disposition, parse_languages, trim_lead,
    unfold,
};
use crate::mail::lexer::Lexer;
use crate::mail::mime::{Kind, Part, message_header, parse};

// ------------------------------------------------------------------ ENVELOPE

/// An address as ENVELOPE shows it: (name, adl, mailbox, host); a group start has
/// only the mailbox (the group name), a group end nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Addr {
    name: Option<Vec<u8>>,
    adl: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
}

const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";
const SYNTAX_ERROR: &[u8] = b"SYNTAX_ERROR";

fn or_missing(v: Vec<u8>, missing: &[u8]) -> Vec<u8> {
    if v.is_empty() { missing.to_vec() } else { v }
}

/// An address list as ENVELOPE shows it.
fn envelope_addresses(v: &[u8]) -> Vec<Addr> {
    parse_list(v)
        .into_iter()
        .map(|item| match item {
            Item::GroupStart(name) => Addr {
                mailbox: Some(name),
                ..Addr::default()
            },
            Item::GroupEnd => Addr::default(),
            Item::Mailbox(m) => {
                let route = m.route.strip_suffix(b":").unwrap_or(&m.route);
                Addr {
                    name: (!m.name.is_empty()).then_some(m.name.clone()),
                    adl: (!route.is_empty()).then(|| route.to_vec()),
                    mailbox: Some(or_missing(m.local, MISSING_MAILBOX)),
                    host: Some(match m.domain {
                        _ if m.syntax_error => SYNTAX_ERROR.to_vec(),
                        Some(d) => or_missing(d, MISSING_DOMAIN),
                        None => MISSING_DOMAIN.to_vec(),
                    }),
                }
            }
        })
        .collect()
}

/// Text meant for people (Subject, display names), as Dovecot writes it: runs of
/// blanks and line breaks become one space and the ends are trimmed; anything that
/// needed such a change, or holds `"`, `\\`, NUL (sent as 0x80) or 8-bit bytes, goes
/// as a literal, the rest as a plain quoted string.
fn human_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    let Some(s) = s else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut text = Vec::with_capacity(s.len());
    let mut pending_space = false;
    let mut changed = false;
    for &b in s {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                changed |= b != b' ' || pending_space || text.is_empty();
                pending_space = !text.is_empty();
            }
            _ => {
                if pending_space {
                    text.push(b' ');
                    pending_space = false;
                }
                changed |= b == 0 || b == b'"' || b == b'\\' || b >= 0x80;
                text.push(if b == 0 { 0x80 } else { b });
            }
        }
    }
    changed |= pending_space;
    if changed && !text.is_empty() {
        wire::literal(out, &text);
    } else {
        wire::string(out, &text);
    }
}

/// Other ENVELOPE strings (Date, In-Reply-To, Message-ID, address parts): the raw
/// value without its line breaks.
fn env_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    wire::nstring(out, s);
}

fn write_addresses(out: &mut Vec<u8>, addrs: &[Addr]) {
    if addrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in addrs {
        out.push(b'(');
        human_nstring(out, a.name.as_deref());
        out.push(b' ');
        env_nstring(out, a.adl.as_deref());
        out.push(b' ');
        env_nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        env_nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// The ENVELOPE of a message (RFC 3501 7.4.2) from its header block.
fn write_envelope(out: &mut Vec<u8>, header: &[u8]) {
    let raw = |name: &str| header_raw(header, name);
    let addrs = |name: &str| raw(name).map(|v| envelope_addresses(&v));
    let from = addrs("From").unwrap_or_default();
    // Sender and Reply-To default to From when absent or empty (RFC 3501 7.4.2).
    let or_from = |name: &str| match raw(name) {
        Some(v) if !v.trim_ascii().is_empty() => envelope_addresses(&v),
        _ => from.clone(),
    };
    let sender = or_from("Sender");
    let reply_to = or_from("Reply-To");
    out.push(b'(');
    env_nstring(out, raw("Date").as_deref());
    out.push(b' ');
    human_nstring(out, header_folded(header, "Subject"));
    for list in [
        from.clone(),
        sender,
        reply_to,
        addrs("To").unwrap_or_default(),
        addrs("Cc").unwrap_or_default(),
        addrs("Bcc").unwrap_or_default(),
    ] {
        out.push(b' ');
        write_addresses(out, &list);
    }
    out.push(b' ');
    env_nstring(out, raw("In-Reply-To").as_deref());
    out.push(b' ');
    env_nstring(out, raw("Message-ID").as_deref());
    out.push(b')');
}

/// `ENVELOPE` value of a whole message.
pub fn envelope(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_envelope(&mut out, message_header(raw));
    out
}

// ------------------------------------------------------------------ BODYSTRUCTURE

fn string(out: &mut Vec<u8>, s: &str) {
    wire::string(out, s.as_bytes());
}

fn nstring(out: &mut Vec<u8>, s: Option<&str>) {
    wire::nstring(out, s.map(str::as_bytes));
}

/// `("name" "value" ...)` or NIL.
fn param_list(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k);
        out.push(b' ');
        string(out, v);
    }
    out.push(b')');
}

fn count_lines(s: &[u8]) -> usize {
    s.iter().filter(|&&b| b == b'\n').count()
}

/// IMAP's readings of a part of `mail::mime`'s tree.
impl Part<'_> {
    /// A field as BODYSTRUCTURE shows it: the first occurrence (as Dovecot; only
    /// Content-Disposition is the last), unfolded, without leading blanks.
    fn field(&self, name: &str) -> Option<String> {
        header_first(self.header, name).map(|v| lossy(&unfold(trim_lead(v))))
    }

    /// body-ext-1part / body-ext-mpart tail: disposition, language, location.
    fn write_dsp_lang_loc(&self, out: &mut Vec<u8>) {
        out.push(b' ');
        match header_raw(self.header, "Content-Disposition").map(|v| lossy(&v)) {
            Some(v) => {
                let (ty, params) = parse_disposition(&v);
                out.push(b'(');
                string(out, &ty);
                out.push(b' ');
                param_list(out, &params);
                out.push(b')');
            }
            None => out.extend_from_slice(b"NIL"),
        }
        out.push(b' ');
        match self.field("Content-Language").map(|v| parse_languages(&v)) {
            Some(langs) if !langs.is_empty() => {
                out.push(b'(');
                for (i, l) in langs.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    string(out, l);
                }
                out.push(b')');
            }
            _ => out.extend_from_slice(b"NIL"),
        }
        out.push(b' ');
        nstring(out, self.field("Content-Location").as_deref());
    }

    /// BODY (`ext` false) or BODYSTRUCTURE (`ext` true) of this part.
    fn write_structure(&self, out: &mut Vec<u8>, ext: bool) {
        out.push(b'(');
        if let Kind::Multipart(children) = self.kind() {
            for c in children {
                c.write_structure(out, ext);
            }
            if children.is_empty() {
                // No delimiter at all: one empty text/plain part (as Dovecot).
                out.extend_from_slice(
                    b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0",
                );
                out.extend_from_slice(if ext { b" NIL NIL NIL NIL)" } else { b")" });
            }
            out.push(b' ');
            string(out, &self.content_type().subtype);
            if ext {
                out.push(b' ');
                param_list(out, &self.content_type().params);
                self.write_dsp_lang_loc(out);
            }
            out.push(b')');
            return;
        }
        let ct = self.content_type();
        if let Kind::Message(_) = self.kind() {
            // Written in lower case whatever the header says (as Dovecot).
            out.extend_from_slice(b"\"message\" \"rfc822\"");
        } else {
            string(out, &ct.ty);
            out.push(b' ');
            string(out, &ct.subtype);
        }
        out.push(b' ');
        let mut params = ct.params.clone();
        if ct.is_text() && ct.param("charset").is_none() {
            params.push(("charset".into(), "us-ascii".into()));
        }
        param_list(out, &params);
        out.push(b' ');
        nstring(out, self.field("Content-ID").as_deref());
        out.push(b' ');
        nstring(out, self.field("Content-Description").as_deref());
        out.push(b' ');
        let cte = self
            .field("Content-Transfer-Encoding")
            .map(|v| Lexer::new(&v).token())
            .filter(|t| !t.is_empty());
        string(out, cte.as_deref().unwrap_or("7bit"));
        out.push_str_num(self.body.len());
        match self.kind() {
            Kind::Message(inner) => {
                out.push(b' ');
                write_envelope(out, inner.header);
                out.push(b' ');
                inner.write_structure(out, ext);
                out.push_str_num(count_lines(self.body));
            }
            _ if ct.is_text() => out.push_str_num(count_lines(self.body)),
            _ => {}
        }
        if ext {
            out.push(b' ');
            nstring(out, self.field("Content-MD5").as_deref());
            self.write_dsp_lang_loc(out);
        }
        out.push(b')');
    }

    /// The part at `path` (RFC 3501 6.4.5 part specifiers). A part inside a
    /// `message/rfc822` is reached through its embedded message; a non-multipart
    /// part answers to one `1` below it.
    fn find(&self, path: &[std::num::NonZeroU32]) -> Option<&Part<'_>> {
        let mut part = self;
        let mut absorbed = false;
        for (i, n) in path.iter().enumerate() {
            match part.kind() {
                Kind::Multipart(children) => {
                    part = children.get(n.get() as usize - 1)?;
                    absorbed = false;
                }
                _ => {
                    if n.get() != 1 || absorbed {
                        return None;
                    }
                    absorbed = true;
                }
            }
            if i + 1 < path.len()
                && let Kind::Message(inner) = part.kind()
            {
                part = inner;
                absorbed = false;
            }
        }
        Some(part)
    }

    /// The message a `HEADER`/`TEXT` section of this `message/rfc822` part reads: the
    /// embedded message.
    fn message(&self) -> Option<&Part<'_>> {
        match self.kind() {
            Kind::Message(inner) => Some(inner.as_ref()),
            _ => None,
        }
    }
}

trait PushNum {
    fn push_str_num(&mut self, n: usize);
}
impl PushNum for Vec<u8> {
    fn push_str_num(&mut self, n: usize) {
        self.push(b' ');
        self.extend_from_slice(n.to_string().as_bytes());
    }
}

/// `BODYSTRUCTURE` (with `ext`) or `BODY` value of a whole message.
pub fn body_structure(raw: &[u8], ext: bool) -> Vec<u8> {
    let mut out = Vec::new();
    parse(raw).write_structure(&mut out, ext);
    out
}

// ------------------------------------------------------------------ sections

/// The header fields named (or, with `keep` false, not named) in `names`, followed by
/// the blank line (RFC 3501 6.4.5 HEADER.FIELDS).
fn header_fields(header: &[u8], names: &[AString<'_>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if header.is_empty() {
        return out;
    }
    let mut on = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let listed = names
                .iter()
                .any(|n| AsRef::<[u8]>::as_ref(n).eq_ignore_ascii_case(name.trim_ascii()));
            on = line.contains(&b':') && listed == keep;
        }
        if on {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The bytes of a body section (RFC 3501 6.4.5). `None` is `BODY[]` (the whole
/// message). A part that does not exist is empty, as are `HEADER`/`TEXT` of a part
/// that is not a message. Returns `None` only for sections it cannot express.
pub fn section(raw: &[u8], s: Option<&Section<'_>>) -> Option<Vec<u8>> {
    let Some(s) = s else {
        return Some(raw.to_vec());
    };
    let root = parse(raw);
    // The message a HEADER/TEXT section refers to: the top level, or the message
    // inside the part at `path`.
    let with_message = |path: &Option<PartPath>, f: &dyn Fn(&Part<'_>) -> Vec<u8>| match path {
        None => Some(f(&root)),
        Some(p) => root.find(p.0.as_ref())?.message().map(f),
    };
    let data = match s {
        Section::Part(p) => root.find(p.0.as_ref()).map(|p| p.body.to_vec()),
        Section::Mime(p) => root.find(p.0.as_ref()).map(|p| p.header.to_vec()),
        Section::Header(p) => with_message(p, &|m| m.header.to_vec()),
        Section::Text(p) => with_message(p, &|m| m.body.to_vec()),
        Section::HeaderFields(p, names) => {
            with_message(p, &|m| header_fields(m.header, names.as_ref(), true))
        }
        Section::HeaderFieldsNot(p, names) => {
            with_message(p, &|m| header_fields(m.header, names.as_ref(), false))
        }
    };
    Some(data.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn rfc3501_envelope_of_a_simple_message_defaults_sender_and_reply_to_to_from() {
        let m = crlf(
            "From: Ana <ana@example.org>\nTo: b@x.org\nSubject: hola\nDate: Mon, 3 Feb 2025 10:00:00 -0500\nMessage-ID: <m1@x>\n\nbody\n",
        );
        assert_eq!(
            s(envelope(&m)),
            "(\"Mon, 3 Feb 2025 10:00:00 -0500\" \"hola\" ((\"Ana\" NIL \"ana\" \"example.org\")) \
             ((\"Ana\" NIL \"ana\" \"example.org\")) ((\"Ana\" NIL \"ana\" \"example.org\")) \
             ((NIL NIL \"b\" \"x.org\")) NIL NIL NIL \"<m1@x>\")"
        );
    }

    #[test]
    fn envelope_addresses_groups_routes_comments_and_missing_parts() {
        let cases: &[(&str, &str)] = &[
            ("a@b", "((NIL NIL \"a\" \"b\"))"),
            ("foo", "((NIL NIL \"foo\" \"MISSING_DOMAIN\"))"),
            ("bare@", "((NIL NIL \"bare\" \"MISSING_DOMAIN\"))"),
            ("@nolocal", "((NIL NIL \"MISSING_MAILBOX\" \"nolocal\"))"),
            ("<>", "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))"),
            (",", "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))"),
            ("a b c <d@e>", "((\"a b c\" NIL \"d\" \"e\"))"),
            ("\"Carl, Jr\" <c@y>", "((\"Carl, Jr\" NIL \"c\" \"y\"))"),
            ("\"\" <m@n>", "((NIL NIL \"m\" \"n\"))"),
            ("<@r1,@r2:x@y.z>", "((NIL \"@r1,@r2\" \"x\" \"y.z\"))"),
            ("(comment) k@l (Name)", "((\"Name\" NIL \"k\" \"l\"))"),
            (
                "undisclosed-recipients:;",
                "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))",
            ),
            (
                "team: a@b, \"X Y\" <c@d>; , e@f",
                "((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"b\")(\"X Y\" NIL \"c\" \"d\")(NIL NIL NIL NIL)(NIL NIL \"e\" \"f\"))",
            ),
            ("\"a\\\\b\" <x@y>", "(({3}\r\na\\b NIL \"x\" \"y\"))"),
        ];
        assert_addresses(cases);
    }

    /// Each address list is shown in ENVELOPE as `want`.
    fn assert_addresses(cases: &[(&str, &str)]) {
        for (input, want) in cases {
            let mut out = Vec::new();
            write_addresses(&mut out, &envelope_addresses(input.as_bytes()));
            assert_eq!(s(out), *want, "address list {input:?}");
        }
    }

    #[test]
    fn envelope_uses_the_last_occurrence_unfolded_with_leading_blanks_dropped() {
        let m = crlf("Subject: first\nSubject: \t second\n  part \nDate: x\n\n");
        assert_eq!(
            s(envelope(&m)),
            "(\"x\" {11}\r\nsecond part NIL NIL NIL NIL NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn rfc3501_bodystructure_of_nested_multipart_with_attachment_and_message() {
        let m = crlf(concat!(
            "Subject: t\nContent-Type: multipart/mixed; boundary=\"XX\"\n\npre\n",
            "--XX\nContent-Type: text/plain; charset=UTF-8; format=flowed\n",
            "Content-Transfer-Encoding: quoted-printable\n\nhola=20\nmundo\n",
            "--XX\nContent-Type: multipart/alternative; boundary=YY\n\n",
            "--YY\nContent-Type: text/plain\n\nalt\n",
            "--YY\nContent-Type: text/html; charset=\"us-ascii\"\nContent-Disposition: inline\n\n<b>x</b>\n--YY--\n",
            "--XX\nContent-Type: application/pdf; name=\"a.pdf\"\n",
            "Content-Disposition: attachment; filename*=UTF-8''%C3%B1.pdf\n",
            "Content-Transfer-Encoding: base64\nContent-ID: <cid1>\nContent-Description: a doc\n",
            "Content-Language: es, en\nContent-Location: http://x/y\nContent-MD5: abc\n\nAAAA\n",
            "--XX\nContent-Type: message/rfc822\n\nFrom: inner@x.org\nSubject: inner\n",
            "Content-Type: text/plain\n\ninner body\n--XX--\nepi\n"
        ));
        assert_eq!(
            s(body_structure(&m, true)),
            concat!(
                "((\"text\" \"plain\" (\"charset\" \"UTF-8\" \"format\" \"flowed\") NIL NIL \"quoted-printable\" 14 1 NIL NIL NIL NIL)",
                "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL)",
                "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL (\"inline\" NIL) NIL NIL) \"alternative\" (\"boundary\" \"YY\") NIL NIL NIL)",
                "(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<cid1>\" \"a doc\" \"base64\" 4 \"abc\" (\"attachment\" (\"filename*\" \"UTF-8''%C3%B1.pdf\")) (\"es\" \"en\") \"http://x/y\")",
                "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 73 (NIL \"inner\" ((NIL NIL \"inner\" \"x.org\")) ((NIL NIL \"inner\" \"x.org\")) ((NIL NIL \"inner\" \"x.org\")) NIL NIL NIL NIL NIL) ",
                "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)"
            )
        );
        assert_eq!(
            s(body_structure(&m, false)),
            concat!(
                "((\"text\" \"plain\" (\"charset\" \"UTF-8\" \"format\" \"flowed\") NIL NIL \"quoted-printable\" 14 1)",
                "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0) \"alternative\")",
                "(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<cid1>\" \"a doc\" \"base64\" 4)",
                "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 73 (NIL \"inner\" ((NIL NIL \"inner\" \"x.org\")) ((NIL NIL \"inner\" \"x.org\")) ((NIL NIL \"inner\" \"x.org\")) NIL NIL NIL NIL NIL) ",
                "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0) 4) \"mixed\")"
            )
        );
    }

    #[test]
    fn malformed_content_types_follow_dovecot() {
        let cases: &[(&str, &str)] = &[
            (
                ";;garbage",
                "(\"\" \"\" NIL NIL NIL \"7bit\" 3 NIL NIL NIL NIL)",
            ),
            (
                "text",
                "(\"text\" \"\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)",
            ),
            (
                "text/",
                "(\"\" \"\" NIL NIL NIL \"7bit\" 3 NIL NIL NIL NIL)",
            ),
            (
                "text/plain garbage",
                "(\"\" \"\" NIL NIL NIL \"7bit\" 3 NIL NIL NIL NIL)",
            ),
            (
                "image/jpeg; name=",
                "(\"image\" \"jpeg\" (\"name\" \"\") NIL NIL \"7bit\" 3 NIL NIL NIL NIL)",
            ),
            (
                "text/PLAIN; CHARSET=ISO-8859-1; x=\"a\\\"b\"",
                "(\"text\" \"PLAIN\" (\"CHARSET\" \"ISO-8859-1\" \"x\" \"a\\\"b\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)",
            ),
            (
                "text/plain; a=b c; d",
                "(\"text\" \"plain\" (\"a\" \"b\" \"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)",
            ),
            (
                "text/plain; name*0=\"a\"; name*1=\"b\"",
                "(\"text\" \"plain\" (\"name\" \"ab\" \"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)",
            ),
        ];
        for (ct, want) in cases {
            let m = crlf(&format!("Content-Type: {ct}\n\nb\n"));
            assert_eq!(s(body_structure(&m, true)), *want, "Content-Type: {ct}");
        }
    }

    #[test]
    fn rfc2046_delimiters_unclosed_missing_and_outer_boundary_ends_inner() {
        let cases: &[(&str, &str)] = &[
            // No boundary parameter, and a boundary that never occurs: one empty part.
            (
                "Content-Type: multipart/mixed\n\nno boundary\n",
                "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)",
            ),
            (
                "Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\none\n--B\n\ntwo\n",
                "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"B\") NIL NIL NIL)",
            ),
            (
                "Content-Type: multipart/mixed; boundary=O\n\n--O\nContent-Type: multipart/alternative; boundary=I\n\n--I\n\na\n--O\n\nb\n--O--\n",
                "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"I\") NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"O\") NIL NIL NIL)",
            ),
            // multipart/digest parts default to message/rfc822 (RFC 2046 5.1.5).
            (
                "Content-Type: multipart/digest; boundary=D\n\n--D\n\nSubject: d1\n\nx\n--D--\n",
                "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 16 (NIL \"d1\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) \"digest\" (\"boundary\" \"D\") NIL NIL NIL)",
            ),
            // An encoded message/rfc822 is not looked into.
            (
                "Content-Type: MESSAGE/RFC822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA0KDQp5DQo=\n",
                "(\"message\" \"rfc822\" NIL NIL NIL \"base64\" 26 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL)",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(s(body_structure(&crlf(m), true)), *want, "{m}");
        }
    }

    /// Each expectation is what Dovecot 2.3.19 answered for the same message.
    #[test]
    fn structure_follows_dovecot_on_duplicates_nested_boundaries_and_encoded_messages() {
        let tp = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\"";
        let cases: &[(&str, String)] = &[
            // The first Content-Type decides.
            (
                "Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\none\n--B--\n",
                format!("{tp} 19 4 NIL NIL NIL NIL)"),
            ),
            // An inner boundary that starts with the outer one: the longest wins.
            (
                "Content-Type: multipart/mixed; boundary=BB\n\n--BB\nContent-Type: multipart/alternative; boundary=BB2\n\n--BB2\n\na\n--BB2\n\nb\n--BB2--\n--BB\n\nc\n--BB--\n",
                format!(
                    "(({tp} 1 0 NIL NIL NIL NIL){tp} 1 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"BB2\") NIL NIL NIL){tp} 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"BB\") NIL NIL NIL)"
                ),
            ),
            // An empty boundary and an RFC 2231 one are boundaries too.
            (
                "Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\none\n----\n",
                format!("({tp} 3 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"\") NIL NIL NIL)"),
            ),
            (
                "Content-Type: multipart/mixed; boundary*0=a; boundary*1=b\n\n--ab\n\none\n--ab--\n",
                format!("({tp} 3 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"ab\") NIL NIL NIL)"),
            ),
            // A message/rfc822 is looked into whatever its encoding; the first
            // Content-Transfer-Encoding is shown.
            (
                "Content-Type: message/rfc822\nContent-Transfer-Encoding: x-unknown\nContent-Transfer-Encoding: base64\n\nSubject: in\n\nbody\n",
                format!(
                    "(\"message\" \"rfc822\" NIL NIL NIL \"x-unknown\" 21 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) {tp} 6 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)"
                ),
            ),
            // First Content-ID etc., last Content-Disposition.
            (
                "Content-Type: text/plain\nContent-ID: <1>\nContent-ID: <2>\nContent-Description: d1\nContent-Description: d2\nContent-Disposition: inline\nContent-Disposition: attachment\nContent-Language: en\nContent-Language: es\nContent-Location: l1\nContent-Location: l2\nContent-MD5: m1\nContent-MD5: m2\n\nbody\n",
                "(\"text\" \"plain\" (\"charset\" \"us-ascii\") \"<1>\" \"d1\" \"7bit\" 6 1 \"m1\" (\"attachment\" NIL) (\"en\") \"l1\")".to_string(),
            ),
            // A multipart/digest without delimiters: one empty text/plain part.
            (
                "Content-Type: multipart/digest; boundary=Q\n\nno delimiters\n",
                format!("({tp} 0 0 NIL NIL NIL NIL) \"digest\" (\"boundary\" \"Q\") NIL NIL NIL)"),
            ),
            ("Content-Type: text/;charset=x\n\nb\n", "(\"\" \"\" NIL NIL NIL \"7bit\" 3 NIL NIL NIL NIL)".to_string()),
        ];
        for (m, want) in cases {
            assert_eq!(s(body_structure(&crlf(m), true)), *want, "{m}");
        }
        // A blank before the colon is not part of the name; a form feed is.
        let m = crlf("Subject\u{c}: ff\nTo : a@b\n\n");
        assert_eq!(
            s(envelope(&m)),
            "(NIL NIL NIL NIL NIL ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn envelope_addresses_stop_at_syntax_errors_as_dovecot() {
        let cases: &[(&str, &str)] = &[
            ("<a@b", "((NIL NIL \"a\" \"SYNTAX_ERROR\"))"),
            ("x <c@d e>, f@g", "((\"x\" NIL \"c\" \"SYNTAX_ERROR\"))"),
            (
                ";, @, x@y",
                "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))",
            ),
            (
                "x@y, >, z@w",
                "((NIL NIL \"x\" \"y\")(NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))",
            ),
            ("x@y ;, z@w", "((NIL NIL \"x\" \"y\"))"),
        ];
        assert_addresses(cases);
    }

    fn sec(raw: &[u8], spec: &str) -> String {
        use imap_codec::decode::Decoder;
        let cmd = format!("a FETCH 1 BODY.PEEK[{spec}]\r\n");
        let (_, parsed) = imap_codec::CommandCodec::default()
            .decode(cmd.as_bytes())
            .expect("section parses");
        let imap_codec::imap_types::command::CommandBody::Fetch {
            macro_or_item_names,
            ..
        } = parsed.body
        else {
            panic!("not a fetch")
        };
        let imap_codec::imap_types::fetch::MacroOrMessageDataItemNames::MessageDataItemNames(names) =
            macro_or_item_names
        else {
            panic!("macro")
        };
        let imap_codec::imap_types::fetch::MessageDataItemName::BodyExt { section: sp, .. } =
            &names[0]
        else {
            panic!("not BODY[]")
        };
        s(section(raw, sp.as_ref()).unwrap())
    }

    #[test]
    fn rfc3501_section_numbers_mime_header_and_text() {
        let m = crlf(concat!(
            "Subject: mp\nContent-Type: multipart/mixed; boundary=B\n\n",
            "--B\n\none\n--B\nContent-Type: message/rfc822\n\nSubject: in\n\ninner\n--B--\n"
        ));
        let cases: &[(&str, &str)] = &[
            ("1", "one"),
            ("1.1", "one"),
            ("1.1.1", ""),
            ("1.MIME", "\r\n"),
            ("2.MIME", "Content-Type: message/rfc822\r\n\r\n"),
            ("2", "Subject: in\r\n\r\ninner"),
            ("2.HEADER", "Subject: in\r\n\r\n"),
            ("2.TEXT", "inner"),
            ("2.1", "inner"),
            ("2.1.MIME", "Subject: in\r\n\r\n"),
            ("2.1.HEADER", ""),
            ("1.HEADER", ""),
            ("3", ""),
            ("HEADER.FIELDS (SUBJECT)", "Subject: mp\r\n\r\n"),
            (
                "HEADER.FIELDS.NOT (SUBJECT)",
                "Content-Type: multipart/mixed; boundary=B\r\n\r\n",
            ),
            ("2.HEADER.FIELDS (Subject)", "Subject: in\r\n\r\n"),
        ];
        for (spec, want) in cases {
            assert_eq!(sec(&m, spec), *want, "BODY[{spec}]");
        }
        // A single-part message: part 1 is its body, 1.MIME its header.
        let single = crlf("Subject: plain\n\nhello\n");
        assert_eq!(sec(&single, "1"), "hello\r\n");
        assert_eq!(sec(&single, "1.MIME"), "Subject: plain\r\n\r\n");
        assert_eq!(sec(&single, "1.1"), "");
        assert_eq!(sec(&single, "TEXT"), "hello\r\n");
    }
}
