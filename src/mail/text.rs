//! The searchable text of a message: what IMAP SEARCH's text keys (RFC 3501 6.4.4:
//! HEADER, FROM/TO/CC/BCC, SUBJECT, BODY, TEXT) and the webmail's search match, plus
//! the sent date that SENTBEFORE/SENTON/SENTSINCE compare with. The MIME tree, header
//! fields, address lists, decoders, the Date parser and the Unicode mapping come from
//! the other files of `mail`; this one owns which parts are searched, how they are
//! decoded and how the keys read them.
//!
//! RFC 3501 leaves the details open ("case-insensitive substring"), so the rules
//! here follow Dovecot 2.3 without FTS plugins, measured against `dovecot-imapd`
//! 2.3.19 (each rule has a unit test in text/tests.rs named after it):
//!
//! - Comparison: needle and haystack are both mapped per character to the Unicode
//!   simple titlecase, then decomposed one level (canonical or compatibility,
//!   following singleton decompositions first; Hangul algorithmically). The result
//!   is *not* case-mapped again. A match is a plain substring of the mapped texts,
//!   so `cafe` finds `café` (`CAFE` + U+0301) but `nandu` does not find `ñandú`,
//!   `ß` does not find `SS`, and `ﬀ` (decomposed to lower-case `ff`) is not found by
//!   `ff`. A NUL in the needle ends it (Dovecot keeps C strings).
//! - Text that is not valid UTF-8 gets one U+FFFD per run of invalid bytes.
//! - HEADER name: the top-level header's fields of that name, each value (one
//!   leading SP/HT removed, folds' CRLF removed, other whitespace kept) RFC 2047
//!   decoded, followed by CRLF and concatenated. The needle "" matches when the
//!   field exists. Encoded words are decoded wherever they are (also inside quotes,
//!   comments and words), whitespace between two encoded words is dropped, words in
//!   a charset we do not know are kept decoded but not case-mapped.
//! - SUBJECT is HEADER Subject with runs of whitespace compressed to one space and
//!   leading whitespace removed, before decoding.
//! - FROM/TO/CC/BCC parse the field as an address list and match the rewritten list:
//!   `Name <local@domain>`, `<local@domain>` without a name, `group: <a@b>, <c@d>;`,
//!   `, ` between addresses; the name is the phrase (or the last comment if there is
//!   no phrase), quoted when it has specials or spaces unless it holds an encoded
//!   word; missing parts read `MISSING_MAILBOX`/`MISSING_DOMAIN`/`SYNTAX_ERROR`; the
//!   rest of the field after a syntax error is dropped (garbage where an address
//!   belongs reads `<MISSING_MAILBOX@MISSING_DOMAIN>`). The result is then decoded
//!   as above. HEADER From etc. do not rewrite: they match the field text.
//! - BODY: the decoded bodies of text/*, message/* (except message/rfc822, whose
//!   message is parsed: its body counts, its header does not) and untyped parts
//!   (untyped parts of multipart/digest are messages), each part on its own.
//!   Transfer encodings 7bit/8bit/binary (CRLF becomes LF), quoted-printable and
//!   base64 (line breaks kept as encoded, so CRLF); other encodings and parts with
//!   an invalid Content-Type are not searched, nor are preambles, epilogues and MIME
//!   headers. The structure follows the first Content-Type, but a part is decoded by
//!   its last Content-Type and Content-Transfer-Encoding fields (Dovecot reads them
//!   in two places). An encoded message/rfc822 is parsed as it is written.
//!   Charsets are converted to UTF-8 (unknown ones and US-ASCII are read as UTF-8);
//!   an incomplete UTF-8 sequence at the very end of a part is dropped. HTML is
//!   searched as it is. BODY "" matches every message.
//! - TEXT: per part, its header (every line unfolded and decoded, CRLF after each,
//!   then an empty line) followed by its body as for BODY; the parts of a message
//!   and nested messages are separate texts.
//! - Sent date: the first Date field, read as written (the time zone does not move
//!   the day). Dovecot does not fall back to INTERNALDATE: a missing or unparsable
//!   Date counts as 1970-01-01, and dates outside 1970..2106 wrap around 2^32
//!   seconds as they do in Dovecot's cache.

use std::cell::OnceCell;

use chrono::NaiveDate;

use super::address::{parse_list, render_list};
use super::date::parse_date;
use super::encoding::{
    self, Cte, base64_decode, convert_charset, lossy_utf8, qp_decode, transfer_encoding,
};
use super::header::{Field, fields, parse_content_type, unfold};
use super::mime::{self, Kind, Part};
use super::normalize::{normalize_needle, push_normalized};

/// One message's text for the text search keys. Parsing and decoding happen on
/// first use and are kept, so several keys on one message share the work.
pub struct Text<'a> {
    raw: &'a [u8],
    top: OnceCell<Vec<Field<'a>>>,
    entities: OnceCell<Vec<Entity<'a>>>,
    bodies: OnceCell<Vec<Option<String>>>,
    texts: OnceCell<Vec<String>>,
}

impl<'a> Text<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Text {
            raw,
            top: OnceCell::new(),
            entities: OnceCell::new(),
            bodies: OnceCell::new(),
            texts: OnceCell::new(),
        }
    }

    /// HEADER name needle: the fields' values as written, RFC 2047 decoded. This is
    /// also right for `HEADER From x` etc., but not for the FROM/TO/CC/BCC and SUBJECT
    /// keys, which Dovecot matches differently: use `address` and `subject` for those.
    pub fn header(&self, name: &str, needle: &[u8]) -> bool {
        self.fields_match(name, needle, |value| {
            let value = match value.first() {
                Some(b' ' | b'\t') => &value[1..],
                _ => value,
            };
            decode_words(&unfold(value))
        })
    }

    /// SUBJECT needle: like `header("Subject", ..)` with whitespace compressed.
    pub fn subject(&self, needle: &[u8]) -> bool {
        self.fields_match("Subject", needle, |value| {
            decode_words(&compress_lwsp(&unfold(value)))
        })
    }

    /// FROM/TO/CC/BCC needle (`name` is "From", "To", "Cc" or "Bcc"): the field read
    /// as an address list and rewritten (see the module documentation).
    pub fn address(&self, name: &str, needle: &[u8]) -> bool {
        self.fields_match(name, needle, |value| {
            decode_words(&render_list(&parse_list(&unfold(value))))
        })
    }

    /// BODY needle
    pub fn body(&self, needle: &[u8]) -> bool {
        let needle = normalize_needle(needle);
        needle.is_empty() || self.bodies().iter().flatten().any(|b| b.contains(&needle))
    }

    /// TEXT needle
    pub fn text(&self, needle: &[u8]) -> bool {
        let needle = normalize_needle(needle);
        needle.is_empty() || self.texts().iter().any(|t| t.contains(&needle))
    }

    /// The date SENTBEFORE/SENTON/SENTSINCE compare with: the first Date field's date
    /// as written. Dovecot does not use INTERNALDATE when Date is missing or
    /// unparsable; it uses 1970-01-01, and so does this (the argument is unused; the
    /// result is always `Some`).
    pub fn sent_date(&self, internal_date: i64) -> Option<NaiveDate> {
        let _ = internal_date;
        let value = self
            .top()
            .iter()
            .find(|f| f.is("Date"))
            .map(|f| unfold(f.value));
        let (utc, offset) = value.and_then(|v| parse_date(&v)).unwrap_or((0, 0));
        // Dovecot keeps the time as 32 unsigned bits and adds the zone back.
        let local = utc.rem_euclid(1 << 32) + offset * 60;
        NaiveDate::from_ymd_opt(1970, 1, 1)?
            .checked_add_signed(chrono::Duration::days(local.div_euclid(86_400)))
    }

    fn fields_match(&self, name: &str, needle: &[u8], value: impl Fn(&[u8]) -> String) -> bool {
        let mut hay = String::new();
        let mut found = false;
        for f in self.top().iter().filter(|f| f.is(name)) {
            found = true;
            hay.push_str(&value(f.value));
            hay.push_str("\r\n");
        }
        if !found {
            return false;
        }
        let needle = normalize_needle(needle);
        needle.is_empty() || hay.contains(&needle)
    }

    fn top(&self) -> &[Field<'a>] {
        self.top
            .get_or_init(|| fields(mime::message_header(self.raw)).collect())
    }

    fn entities(&self) -> &[Entity<'a>] {
        self.entities.get_or_init(|| {
            let mut out = Vec::new();
            collect(&mime::parse(self.raw), &mut out);
            out
        })
    }

    fn bodies(&self) -> &[Option<String>] {
        self.bodies.get_or_init(|| {
            self.entities()
                .iter()
                .map(|e| {
                    e.body
                        .as_ref()
                        .map(|b| decode_body(b.bytes, b.cte, b.charset.as_bytes()))
                })
                .collect()
        })
    }

    fn texts(&self) -> &[String] {
        self.texts.get_or_init(|| {
            self.entities()
                .iter()
                .zip(self.bodies())
                .map(|(e, body)| {
                    let mut s = String::new();
                    for f in fields(e.header) {
                        s.push_str(&decode_words(&unfold(f.line)));
                        s.push_str("\r\n");
                    }
                    s.push_str("\r\n");
                    if let Some(body) = body {
                        s.push_str(body);
                    }
                    s
                })
                .collect()
        })
    }
}

// ------------------------------------------------------------------ header values

/// Runs of whitespace become one space; leading whitespace goes.
fn compress_lwsp(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut space = false;
    for &b in value {
        if matches!(b, b' ' | b'\t') {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(b' ');
            }
            space = false;
            out.push(b);
        }
    }
    if space && !out.is_empty() {
        out.push(b' ');
    }
    out
}

/// RFC 2047 words decoded, the text normalized for comparison.
fn decode_words(s: &[u8]) -> String {
    encoding::decode_words(s, push_normalized)
}

// ------------------------------------------------------------------ searchable parts

struct SearchableBody<'a> {
    bytes: &'a [u8],
    cte: Cte,
    charset: String,
}

/// A message or MIME part: its header block and, if BODY searches it, its body.
struct Entity<'a> {
    header: &'a [u8],
    body: Option<SearchableBody<'a>>,
}

/// The parts of `part` in pre-order (a multipart's own body, its preamble and
/// epilogue are not searched; a message/rfc822 part is its embedded message).
fn collect<'a>(part: &Part<'a>, out: &mut Vec<Entity<'a>>) {
    out.push(Entity {
        header: part.header,
        body: None,
    });
    match part.kind() {
        Kind::Multipart(children) => children.iter().for_each(|c| collect(c, out)),
        Kind::Message(inner) => collect(inner, out),
        Kind::Leaf => {
            let index = out.len() - 1;
            out[index].body = searchable(part);
        }
    }
}

/// The body of a leaf part if BODY searches it. While the MIME structure follows
/// the first Content-Type, Dovecot decodes by the last Content-Type and
/// Content-Transfer-Encoding fields.
fn searchable<'a>(part: &Part<'a>) -> Option<SearchableBody<'a>> {
    let last = |name: &str| {
        fields(part.header)
            .filter(|f| f.is(name))
            .last()
            .map(|f| f.value)
    };
    let ct = last("Content-Type").map(|v| parse_content_type(&String::from_utf8_lossy(&unfold(v))));
    let ct = ct.as_ref().unwrap_or(part.content_type());
    let cte = transfer_encoding(last("Content-Transfer-Encoding"));
    let text = ct.ty.eq_ignore_ascii_case("text")
        || (ct.ty.eq_ignore_ascii_case("message") && !ct.is("message", "rfc822"));
    (ct.valid && text && cte != Cte::Unknown).then(|| SearchableBody {
        bytes: part.body,
        cte,
        charset: ct.param("charset").unwrap_or_default().to_string(),
    })
}

fn decode_body(body: &[u8], cte: Cte, charset: &[u8]) -> String {
    let bytes = match cte {
        Cte::QuotedPrintable => qp_decode(body),
        Cte::Base64 => base64_decode(body),
        _ => {
            let mut out = Vec::with_capacity(body.len());
            let mut rest = body;
            while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
                out.extend_from_slice(&rest[..p]);
                out.push(b'\n');
                rest = &rest[p + 2..];
            }
            out.extend_from_slice(rest);
            out
        }
    };
    let text = convert_charset(charset, &bytes, true).unwrap_or_else(|| lossy_utf8(&bytes, true));
    let mut out = String::with_capacity(text.len());
    push_normalized(&mut out, &text);
    out
}

#[cfg(test)]
mod tests;
