//! Text search keys of SEARCH (RFC 3501 6.4.4): HEADER, FROM/TO/CC/BCC, SUBJECT, BODY
//! and TEXT, plus the sent date that SENTBEFORE/SENTON/SENTSINCE compare with. The
//! MIME tree, header fields, Content-Type and address lists come from mime.rs; this
//! module owns what only search needs: which parts are searched and how they are
//! decoded (transfer encodings, charsets, RFC 2047), the rewritten address lists,
//! Unicode normalization and the Date parser.
//!
//! RFC 3501 leaves the details open ("case-insensitive substring"), so the rules
//! here follow Dovecot 2.3 without FTS plugins, measured against `dovecot-imapd`
//! 2.3.19 (each rule has a unit test below named after it):
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
use std::ops::Range;
use std::sync::OnceLock;

use chrono::NaiveDate;

use super::mime::{self, Field, Item, Kind, Lexer, Part, is_atext, line_end, strip_eol, unfold};

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
            decode_words(&render_addresses(&mime::parse_addresses(&unfold(value))))
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
            .get_or_init(|| mime::fields(mime::message_header(self.raw)).collect())
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
                    for f in mime::fields(e.header) {
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

// ------------------------------------------------------------------ RFC 2047

/// Decodes encoded words anywhere in `s` and returns the normalized text.
fn decode_words(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut plain = 0;
    let mut after_word = false;
    let mut i = 0;
    while i + 1 < s.len() {
        if s[i] == b'='
            && s[i + 1] == b'?'
            && let Some((end, charset, bytes)) = encoded_word(s, i)
        {
            let between = &s[plain..i];
            let adjacent = after_word && between.iter().all(|&b| matches!(b, b' ' | b'\t'));
            if !adjacent {
                push_normalized(&mut out, &lossy_utf8(between, false));
            }
            let (text, known) = match convert_charset(charset, &bytes, false) {
                Some(text) => (text, true),
                None => (lossy_utf8(&bytes, false), false),
            };
            // Adjacent words' replacement characters run together (Dovecot
            // shows one U+FFFD for `=?utf-8?q?=C3?= =?utf-8?q?=B1?=`).
            let text = match text.strip_prefix('\u{fffd}') {
                Some(rest) if adjacent && out.ends_with('\u{fffd}') => rest,
                _ => &text,
            };
            if known {
                push_normalized(&mut out, text);
            } else {
                out.push_str(text);
            }
            after_word = true;
            plain = end;
            i = end;
            continue;
        }
        i += 1;
    }
    push_normalized(&mut out, &lossy_utf8(&s[plain..], false));
    out
}

/// `=?charset?Q|B?text?=` at `start`: (end, charset, decoded bytes).
fn encoded_word(s: &[u8], start: usize) -> Option<(usize, &[u8], Vec<u8>)> {
    let rest = s.get(start + 2..)?;
    let q = rest.iter().position(|&b| b == b'?')?;
    let charset = &rest[..q];
    if charset.is_empty() || charset.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let encoding = *rest.get(q + 1)?;
    if rest.get(q + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q + 3;
    let text_len = rest[text_start..].windows(2).position(|w| w == b"?=")?;
    let text = &rest[text_start..text_start + text_len];
    let bytes = match encoding {
        b'Q' | b'q' => {
            let text: Vec<u8> = text
                .iter()
                .map(|&b| if b == b'_' { b' ' } else { b })
                .collect();
            qp_unescape(&text)
        }
        b'B' | b'b' => base64_decode(text),
        _ => return None,
    };
    Some((start + 2 + text_start + text_len + 2, charset, bytes))
}

// ------------------------------------------------------------------ addresses

/// A display name as Dovecot writes it: as is if it holds an encoded word or only
/// atom characters, else quoted.
fn push_name(out: &mut Vec<u8>, name: &[u8]) {
    if name.windows(2).any(|w| w == b"=?") || name.iter().all(|&b| is_atext(b)) {
        out.extend_from_slice(name);
    } else {
        super::wire::quoted_bytes(out, name);
    }
}

fn render_addresses(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = true;
    let mut group_first = false;
    let mut in_group = false;
    for item in items {
        match item {
            Item::GroupStart(name) => {
                if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                push_name(&mut out, name);
                out.push(b':');
                in_group = true;
                group_first = true;
            }
            Item::GroupEnd => {
                out.push(b';');
                in_group = false;
            }
            Item::Mailbox(m) => {
                if in_group {
                    out.extend_from_slice(if group_first { b" " } else { b", " });
                    group_first = false;
                } else if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                if !m.name.is_empty() {
                    push_name(&mut out, &m.name);
                    out.push(b' ');
                }
                out.push(b'<');
                out.extend_from_slice(&m.route);
                if m.local.is_empty() {
                    out.extend_from_slice(b"MISSING_MAILBOX");
                } else if m.local.iter().all(|&b| is_atext(b) || b == b'.') {
                    out.extend_from_slice(&m.local);
                } else {
                    super::wire::quoted_bytes(&mut out, &m.local);
                }
                out.push(b'@');
                match &m.domain {
                    _ if m.syntax_error => out.extend_from_slice(b"SYNTAX_ERROR"),
                    Some(d) if !d.is_empty() => out.extend_from_slice(d),
                    _ => out.extend_from_slice(b"MISSING_DOMAIN"),
                }
                out.push(b'>');
            }
        }
    }
    out
}

// ------------------------------------------------------------------ searchable parts

#[derive(Clone, Copy, PartialEq, Debug)]
enum Cte {
    Identity,
    QuotedPrintable,
    Base64,
    Unknown,
}

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
        mime::fields(part.header)
            .filter(|f| f.is(name))
            .last()
            .map(|f| f.value)
    };
    let ct = last("Content-Type")
        .map(|v| mime::parse_content_type(&String::from_utf8_lossy(&unfold(v))));
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

fn transfer_encoding(value: Option<&[u8]>) -> Cte {
    let value = value.map(unfold).unwrap_or_default();
    let value = String::from_utf8_lossy(&value).trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "7bit" | "8bit" | "binary" => Cte::Identity,
        "quoted-printable" => Cte::QuotedPrintable,
        "base64" => Cte::Base64,
        _ => Cte::Unknown,
    }
}

// ------------------------------------------------------------------ body decoding

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

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `=XX` escapes; a `=` not followed by two hex digits stays.
fn qp_unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'='
            && let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex_value),
                s.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Quoted-printable body: soft breaks (`=` and optional whitespace at the end of a
/// line) join lines, trailing whitespace before hard breaks goes, line breaks stay
/// as they are.
fn qp_decode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut ls = 0;
    while ls < body.len() {
        let le = line_end(body, ls);
        let line = &body[ls..le];
        let content = strip_eol(line);
        let eol = &line[content.len()..];
        let mut trimmed = content;
        while let [rest @ .., b' ' | b'\t'] = trimmed {
            trimmed = rest;
        }
        match trimmed.strip_suffix(b"=") {
            Some(soft) => out.extend(qp_unescape(soft)),
            None => {
                out.extend(qp_unescape(trimmed));
                out.extend_from_slice(eol);
            }
        }
        ls = le;
    }
    out
}

/// Base64, skipping whitespace and stopping at padding or any other character.
fn base64_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in s {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => break,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ------------------------------------------------------------------ charsets

/// Text in `charset`, or `None` for a charset we do not know (which headers keep
/// as it is and bodies read as UTF-8). `body` drops an incomplete UTF-8 sequence
/// at the end.
fn convert_charset(charset: &[u8], bytes: &[u8], body: bool) -> Option<String> {
    let name = String::from_utf8_lossy(charset).trim().to_ascii_lowercase();
    match name.as_str() {
        "" | "utf-8" | "utf8" | "us-ascii" | "ascii" | "ansi_x3.4-1968" => {
            Some(lossy_utf8(bytes, body))
        }
        "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "l1" | "iso-ir-100" | "cp819"
        | "ibm819" | "csisolatin1" | "iso_8859-1:1987" => {
            Some(bytes.iter().map(|&b| char::from(b)).collect())
        }
        _ => mail_parser::decoders::charsets::map::charset_decoder(name.as_bytes())
            .map(|decode| decode(bytes)),
    }
}

/// Declared length of a UTF-8 sequence from its first byte (old 6-byte form too).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        0xf8..=0xfb => 5,
        0xfc..=0xfd => 6,
        _ => 1,
    }
}

/// UTF-8 with each run of invalid bytes replaced by one U+FFFD. With
/// `drop_incomplete_tail`, a sequence that its first byte says is longer than
/// what is left at the end is dropped.
fn lossy_utf8(bytes: &[u8], drop_incomplete_tail: bool) -> String {
    let mut bytes = bytes;
    if drop_incomplete_tail {
        let tail_start = bytes.len().saturating_sub(5);
        if let Some(p) = (tail_start..bytes.len())
            .rev()
            .find(|&p| bytes[p] >= 0xc0 && p + utf8_len(bytes[p]) > bytes.len())
        {
            bytes = &bytes[..p];
        }
    }
    let mut out = String::with_capacity(bytes.len());
    let mut invalid = false;
    for chunk in bytes.utf8_chunks() {
        if !chunk.valid().is_empty() {
            out.push_str(chunk.valid());
            invalid = false;
        }
        if !chunk.invalid().is_empty() && !invalid {
            out.push('\u{fffd}');
            invalid = true;
        }
    }
    out
}

// ------------------------------------------------------------------ normalization

fn normalize_needle(needle: &[u8]) -> String {
    let end = needle.iter().position(|&b| b == 0).unwrap_or(needle.len());
    let mut out = String::new();
    push_normalized(&mut out, &lossy_utf8(&needle[..end], false));
    out
}

fn push_normalized(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
            continue;
        }
        let t = titlecase(c);
        let cp = u32::from(t);
        if (HANGUL_BASE..HANGUL_BASE + 11_172).contains(&cp) {
            let s = cp - HANGUL_BASE;
            let jamo = [0x1100 + s / 588, 0x1161 + s % 588 / 28, 0x11a7 + s % 28];
            let n = if s.is_multiple_of(28) { 2 } else { 3 };
            out.extend(jamo[..n].iter().filter_map(|&j| char::from_u32(j)));
        } else if let Some(d) = decomposition(t) {
            out.extend(d);
        } else {
            out.push(t);
        }
    }
}

const HANGUL_BASE: u32 = 0xac00;

/// Simple titlecase mapping: the single-character uppercase mapping, except where
/// Unicode's titlecase differs (digraphs, Greek with prosgegrammeni, Georgian).
fn titlecase(c: char) -> char {
    let cp = u32::from(c);
    let mapped = match cp {
        0x1c4..=0x1c6 => Some(0x1c5),
        0x1c7..=0x1c9 => Some(0x1c8),
        0x1ca..=0x1cc => Some(0x1cb),
        0x1f1..=0x1f3 => Some(0x1f2),
        0x10d0..=0x10fa | 0x10fd..=0x10ff => Some(cp),
        0x1f80..=0x1f87 | 0x1f90..=0x1f97 | 0x1fa0..=0x1fa7 => Some(cp + 8),
        0x1fb3 | 0x1fc3 | 0x1ff3 => Some(cp + 9),
        _ => None,
    };
    if let Some(t) = mapped.and_then(char::from_u32) {
        return t;
    }
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

struct Decompositions {
    /// (code point, start in `pool`, length), sorted by code point.
    index: Vec<(u32, u32, u8)>,
    pool: Vec<char>,
}

fn decompositions() -> &'static Decompositions {
    static TABLE: OnceLock<Decompositions> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Decompositions {
            index: Vec::new(),
            pool: Vec::new(),
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).unwrap_or(0);
        let mut prev = 0u32;
        for record in DECOMPOSITIONS.split_ascii_whitespace() {
            let (from, to) = record.split_once('>').unwrap_or((record, ""));
            let (delta, run) = from.split_once('+').unwrap_or((from, "1"));
            let (cp, run) = (prev + hex(delta), hex(run));
            let targets: Vec<char> = to
                .split(',')
                .filter_map(|x| char::from_u32(hex(x)))
                .collect();
            for k in 0..run {
                let start = t.pool.len() as u32;
                if run > 1 {
                    t.pool.extend(char::from_u32(u32::from(targets[0]) + k));
                } else {
                    t.pool.extend(&targets);
                }
                let len = (t.pool.len() as u32 - start) as u8;
                t.index.push((cp + k, start, len));
            }
            prev = cp + run - 1;
        }
        t
    })
}

fn decomposition(c: char) -> Option<impl Iterator<Item = char>> {
    let table = decompositions();
    let i = table
        .index
        .binary_search_by_key(&u32::from(c), |e| e.0)
        .ok()?;
    let (_, start, len) = table.index[i];
    Some(
        table.pool[start as usize..][..usize::from(len)]
            .iter()
            .copied(),
    )
}

// ------------------------------------------------------------------ dates

/// The Date field as Dovecot reads it: `[day ","] d month yy[yy] h:mm[:ss] [zone]`
/// with RFC 822 tokens (comments and whitespace between any of them; `.` also
/// separates the time; anything after the zone is ignored). Returns (UTC seconds,
/// zone offset in minutes).
fn parse_date(value: &[u8]) -> Option<(i64, i64)> {
    enum Tok<'t> {
        Atom(&'t [u8]),
        Special(u8),
    }
    let mut lx = Lexer::bytes(value);
    let mut toks = Vec::new();
    loop {
        lx.skip_cfws();
        let Some(b) = lx.peek() else { break };
        if let Some(a) = lx.atom() {
            toks.push(Tok::Atom(a));
        } else if lx.quoted_bytes().is_some() {
            toks.push(Tok::Special(b'"'));
        } else {
            lx.pos += 1;
            toks.push(Tok::Special(b));
        }
    }
    let number = |t: Option<&Tok<'_>>, min: usize, max: usize| match t {
        Some(Tok::Atom(a))
            if (min..=max).contains(&a.len()) && a.iter().all(u8::is_ascii_digit) =>
        {
            Some(a.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')))
        }
        _ => None,
    };
    let mut i = 0;
    if let (Some(Tok::Atom(weekday)), Some(Tok::Special(b','))) = (toks.first(), toks.get(1)) {
        if weekday.len() != 3 {
            return None;
        }
        i = 2;
    }
    let day = number(toks.get(i), 1, 2)?;
    let Some(Tok::Atom(month)) = toks.get(i + 1) else {
        return None;
    };
    let month = month.get(..3)?.to_ascii_lowercase();
    let month = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ]
    .iter()
    .position(|m| m.as_slice() == month.as_slice())?;
    let year = match (number(toks.get(i + 2), 2, 4)?, toks.get(i + 2)) {
        (y @ 0..=69, Some(Tok::Atom(a))) if a.len() == 2 => 2000 + y,
        (y, Some(Tok::Atom(a))) if a.len() == 2 => 1900 + y,
        (y @ 1900.., Some(Tok::Atom(a))) if a.len() == 4 => y,
        _ => return None,
    };
    let hour = number(toks.get(i + 3), 1, 2)?;
    let Some(Tok::Special(b':' | b'.')) = toks.get(i + 4) else {
        return None;
    };
    let minute = number(toks.get(i + 5), 2, 2)?;
    i += 6;
    let mut second = 0;
    if let Some(Tok::Special(b':' | b'.')) = toks.get(i) {
        second = number(toks.get(i + 1), 2, 2)?;
        i += 2;
    }
    let offset = match toks.get(i) {
        None => 0,
        Some(Tok::Atom(zone)) => zone_offset(zone),
        Some(Tok::Special(_)) => return None,
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month as u32 + 1, day)?;
    let days = date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?);
    let local = days.num_days() * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let utc = local - offset * 60;
    // (time_t)-1 is Dovecot's error value.
    (utc != -1).then_some((utc, offset))
}

fn zone_offset(z: &[u8]) -> i64 {
    match z {
        [sign @ (b'+' | b'-'), digits @ ..]
            if digits.len() == 4 && digits.iter().all(u8::is_ascii_digit) =>
        {
            let n = |r: Range<usize>| {
                digits[r]
                    .iter()
                    .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'))
            };
            let minutes = n(0..2) * 60 + n(2..4);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => {
            let hours = match z.to_ascii_uppercase().as_slice() {
                b"EDT" => -4,
                b"EST" | b"CDT" => -5,
                b"CST" | b"MDT" => -6,
                b"MST" | b"PDT" => -7,
                b"PST" => -8,
                _ => 0,
            };
            hours * 60
        }
    }
}

// ------------------------------------------------------------------ data

/// Unicode 14 decompositions (canonical and compatibility) of every code point
/// that has one, except Hangul syllables (computed) and the CJK compatibility
/// ideographs, Kangxi radicals and Arabic presentation forms (left as they are).
/// Singleton decompositions are followed to their end; a multi-character
/// decomposition is given one level deep, as Dovecot applies it. Generated from
/// the Unicode Character Database. Records `delta[+run]>targets` in hex: the code
/// point is the previous record's last one plus `delta`; a run maps `run`
/// consecutive code points to consecutive single targets.
const DECOMPOSITIONS: &str = "
a0>20 8>20,308 2>61 5>20,304 3+2>32 1>20,301 1>3bc 3>20,327 1>31 1>6f 2>31,2044,34
1>31,2044,32 1>33,2044,34 2>41,300 1>41,301 1>41,302 1>41,303 1>41,308 1>41,30a 2>43,327
1>45,300 1>45,301 1>45,302 1>45,308 1>49,300 1>49,301 1>49,302 1>49,308 2>4e,303 1>4f,300
1>4f,301 1>4f,302 1>4f,303 1>4f,308 3>55,300 1>55,301 1>55,302 1>55,308 1>59,301 3>61,300
1>61,301 1>61,302 1>61,303 1>61,308 1>61,30a 2>63,327 1>65,300 1>65,301 1>65,302 1>65,308
1>69,300 1>69,301 1>69,302 1>69,308 2>6e,303 1>6f,300 1>6f,301 1>6f,302 1>6f,303 1>6f,308
3>75,300 1>75,301 1>75,302 1>75,308 1>79,301 2>79,308 1>41,304 1>61,304 1>41,306 1>61,306
1>41,328 1>61,328 1>43,301 1>63,301 1>43,302 1>63,302 1>43,307 1>63,307 1>43,30c 1>63,30c
1>44,30c 1>64,30c 3>45,304 1>65,304 1>45,306 1>65,306 1>45,307 1>65,307 1>45,328 1>65,328
1>45,30c 1>65,30c 1>47,302 1>67,302 1>47,306 1>67,306 1>47,307 1>67,307 1>47,327 1>67,327
1>48,302 1>68,302 3>49,303 1>69,303 1>49,304 1>69,304 1>49,306 1>69,306 1>49,328 1>69,328
1>49,307 2>49,4a 1>69,6a 1>4a,302 1>6a,302 1>4b,327 1>6b,327 2>4c,301 1>6c,301 1>4c,327
1>6c,327 1>4c,30c 1>6c,30c 1>4c,b7 1>6c,b7 3>4e,301 1>6e,301 1>4e,327 1>6e,327 1>4e,30c
1>6e,30c 1>2bc,6e 3>4f,304 1>6f,304 1>4f,306 1>6f,306 1>4f,30b 1>6f,30b 3>52,301 1>72,301
1>52,327 1>72,327 1>52,30c 1>72,30c 1>53,301 1>73,301 1>53,302 1>73,302 1>53,327 1>73,327
1>53,30c 1>73,30c 1>54,327 1>74,327 1>54,30c 1>74,30c 3>55,303 1>75,303 1>55,304 1>75,304
1>55,306 1>75,306 1>55,30a 1>75,30a 1>55,30b 1>75,30b 1>55,328 1>75,328 1>57,302 1>77,302
1>59,302 1>79,302 1>59,308 1>5a,301 1>7a,301 1>5a,307 1>7a,307 1>5a,30c 1>7a,30c 1>73
21>4f,31b 1>6f,31b e>55,31b 1>75,31b 14>44,17d 1>44,17e 1>64,17e 1>4c,4a 1>4c,6a 1>6c,6a
1>4e,4a 1>4e,6a 1>6e,6a 1>41,30c 1>61,30c 1>49,30c 1>69,30c 1>4f,30c 1>6f,30c 1>55,30c
1>75,30c 1>dc,304 1>fc,304 1>dc,301 1>fc,301 1>dc,30c 1>fc,30c 1>dc,300 1>fc,300 2>c4,304
1>e4,304 1>226,304 1>227,304 1>c6,304 1>e6,304 3>47,30c 1>67,30c 1>4b,30c 1>6b,30c 1>4f,328
1>6f,328 1>1ea,304 1>1eb,304 1>1b7,30c 1>292,30c 1>6a,30c 1>44,5a 1>44,7a 1>64,7a 1>47,301
1>67,301 3>4e,300 1>6e,300 1>c5,301 1>e5,301 1>c6,301 1>e6,301 1>d8,301 1>f8,301 1>41,30f
1>61,30f 1>41,311 1>61,311 1>45,30f 1>65,30f 1>45,311 1>65,311 1>49,30f 1>69,30f 1>49,311
1>69,311 1>4f,30f 1>6f,30f 1>4f,311 1>6f,311 1>52,30f 1>72,30f 1>52,311 1>72,311 1>55,30f
1>75,30f 1>55,311 1>75,311 1>53,326 1>73,326 1>54,326 1>74,326 3>48,30c 1>68,30c 7>41,307
1>61,307 1>45,327 1>65,327 1>d6,304 1>f6,304 1>d5,304 1>f5,304 1>4f,307 1>6f,307 1>22e,304
1>22f,304 1>59,304 1>79,304 7d>68 1>266 1>6a 1>72 1>279 1>27b 1>281 1>77 1>79 20>20,306
1>20,307 1>20,30a 1>20,328 1>20,303 1>20,30b 3>263 1>6c 1>73 1>78 1>295 5c+2>300 2>313
1>308,301 30>2b9 6>20,345 4>3b 6>20,301 1>a8,301 1>391,301 1>b7 1>395,301 1>397,301
1>399,301 2>39f,301 2>3a5,301 1>3a9,301 1>3ca,301 1a>399,308 1>3a5,308 1>3b1,301 1>3b5,301
1>3b7,301 1>3b9,301 1>3cb,301 1a>3b9,308 1>3c5,308 1>3bf,301 1>3c5,301 1>3c9,301 2>3b2 1>3b8
1>3a5 1>3d2,301 1>3d2,308 1>3c6 1>3c0 1a>3ba 1+2>3c1 2>398 1>3b5 4>3a3 7>415,300 1>415,308
2>413,301 4>406,308 5>41a,301 1>418,300 1>423,306 b>418,306 20>438,306 17>435,300 1>435,308
2>433,301 4>456,308 5>43a,301 1>438,300 1>443,306 18>474,30f 1>475,30f 4a>416,306 1>436,306
e>410,306 1>430,306 1>410,308 1>430,308 3>415,306 1>435,306 3>4d8,308 1>4d9,308 1>416,308
1>436,308 1>417,308 1>437,308 3>418,304 1>438,304 1>418,308 1>438,308 1>41e,308 1>43e,308
3>4e8,308 1>4e9,308 1>42d,308 1>44d,308 1>423,304 1>443,304 1>423,308 1>443,308 1>423,30b
1>443,30b 1>427,308 1>447,308 3>42b,308 1>44b,308 8e>565,582 9b>627,653 1>627,654 1>648,654
1>627,655 1>64a,654 4f>627,674 1>648,674 1>6c7,674 1>64a,674 48>6d5,654 2>6c1,654 11>6d2,654
256>928,93c 8>930,93c 3>933,93c 24>915,93c 1>916,93c 1>917,93c 1>91c,93c 1>921,93c 1>922,93c
1>92b,93c 1>92f,93c 6c>9c7,9be 1>9c7,9d7 10>9a1,9bc 1>9a2,9bc 2>9af,9bc 54>a32,a3c 3>a38,a3c
23>a16,a3c 1>a17,a3c 1>a1c,a3c 3>a2b,a3c ea>b47,b56 3>b47,b3e 1>b47,b57 10>b21,b3c 1>b22,b3c
37>b92,bd7 36>bc6,bbe 1>bc7,bbe 1>bc6,bd7 7c>c46,c56 78>cbf,cd5 7>cc6,cd5 1>cc6,cd6
2>cc6,cc2 1>cca,cd5 7f>d46,d3e 1>d47,d3e 1>d46,d57 8e>dd9,dca 2>dd9,dcf 1>ddc,dca 1>dd9,ddf
55>e4d,e32 80>ecd,eb2 29>eab,e99 1>eab,ea1 2f>f0b 37>f42,fb7 a>f4c,fb7 5>f51,fb7 5>f56,fb7
5>f5b,fb7 d>f40,fb5 a>f71,f72 2>f71,f74 1>fb2,f80 1>fb2,f81 1>fb3,f80 1>fb3,f81 8>f71,f80
12>f92,fb7 a>f9c,fb7 5>fa1,fb7 5>fa6,fb7 5>fab,fb7 d>f90,fb5 6d>1025,102e d6>10dc
a0a>1b05,1b35 2>1b07,1b35 2>1b09,1b35 2>1b0b,1b35 2>1b0d,1b35 4>1b11,1b35 29>1b3a,1b35
2>1b3c,1b35 3>1b3e,1b35 1>1b3f,1b35 2>1b42,1b35 1e9>41 1>c6 1>42 2+2>44 1>18e 1+8>47 2>4f
1>222 1>50 1>52 1+2>54 1>57 1>61 1+2>250 1>1d02 1>62 1+2>64 1>259 1+2>25b 1>67 2>6b 1>6d
1>14b 1>6f 1>254 1+2>1d16 1>70 1+2>74 1>1d1d 1>26f 1>76 1>1d25 1+3>3b2 1+2>3c6 1>69 1>72
1+2>75 1+2>3b2 1>3c1 1+2>3c6 e>43d 23>252 1>63 1>255 1>f0 1>25c 1>66 1>25f 1>261 1>265
1+3>268 1>1d7b 1>29d 1>26d 1>1d85 1>29f 1>271 1>270 1+4>272 1>278 1+2>282 1>1ab 1+2>289
1>1d1c 1+2>28b 1>7a 1+3>290 1>3b8 41>41,325 1>61,325 1>42,307 1>62,307 1>42,323 1>62,323
1>42,331 1>62,331 1>c7,301 1>e7,301 1>44,307 1>64,307 1>44,323 1>64,323 1>44,331 1>64,331
1>44,327 1>64,327 1>44,32d 1>64,32d 1>112,300 1>113,300 1>112,301 1>113,301 1>45,32d
1>65,32d 1>45,330 1>65,330 1>228,306 1>229,306 1>46,307 1>66,307 1>47,304 1>67,304 1>48,307
1>68,307 1>48,323 1>68,323 1>48,308 1>68,308 1>48,327 1>68,327 1>48,32e 1>68,32e 1>49,330
1>69,330 1>cf,301 1>ef,301 1>4b,301 1>6b,301 1>4b,323 1>6b,323 1>4b,331 1>6b,331 1>4c,323
1>6c,323 1>1e36,304 1>1e37,304 1>4c,331 1>6c,331 1>4c,32d 1>6c,32d 1>4d,301 1>6d,301
1>4d,307 1>6d,307 1>4d,323 1>6d,323 1>4e,307 1>6e,307 1>4e,323 1>6e,323 1>4e,331 1>6e,331
1>4e,32d 1>6e,32d 1>d5,301 1>f5,301 1>d5,308 1>f5,308 1>14c,300 1>14d,300 1>14c,301
1>14d,301 1>50,301 1>70,301 1>50,307 1>70,307 1>52,307 1>72,307 1>52,323 1>72,323 1>1e5a,304
1>1e5b,304 1>52,331 1>72,331 1>53,307 1>73,307 1>53,323 1>73,323 1>15a,307 1>15b,307
1>160,307 1>161,307 1>1e62,307 1>1e63,307 1>54,307 1>74,307 1>54,323 1>74,323 1>54,331
1>74,331 1>54,32d 1>74,32d 1>55,324 1>75,324 1>55,330 1>75,330 1>55,32d 1>75,32d 1>168,301
1>169,301 1>16a,308 1>16b,308 1>56,303 1>76,303 1>56,323 1>76,323 1>57,300 1>77,300 1>57,301
1>77,301 1>57,308 1>77,308 1>57,307 1>77,307 1>57,323 1>77,323 1>58,307 1>78,307 1>58,308
1>78,308 1>59,307 1>79,307 1>5a,302 1>7a,302 1>5a,323 1>7a,323 1>5a,331 1>7a,331 1>68,331
1>74,308 1>77,30a 1>79,30a 1>61,2be 1>17f,307 5>41,323 1>61,323 1>41,309 1>61,309 1>c2,301
1>e2,301 1>c2,300 1>e2,300 1>c2,309 1>e2,309 1>c2,303 1>e2,303 1>1ea0,302 1>1ea1,302
1>102,301 1>103,301 1>102,300 1>103,300 1>102,309 1>103,309 1>102,303 1>103,303 1>1ea0,306
1>1ea1,306 1>45,323 1>65,323 1>45,309 1>65,309 1>45,303 1>65,303 1>ca,301 1>ea,301 1>ca,300
1>ea,300 1>ca,309 1>ea,309 1>ca,303 1>ea,303 1>1eb8,302 1>1eb9,302 1>49,309 1>69,309
1>49,323 1>69,323 1>4f,323 1>6f,323 1>4f,309 1>6f,309 1>d4,301 1>f4,301 1>d4,300 1>f4,300
1>d4,309 1>f4,309 1>d4,303 1>f4,303 1>1ecc,302 1>1ecd,302 1>1a0,301 1>1a1,301 1>1a0,300
1>1a1,300 1>1a0,309 1>1a1,309 1>1a0,303 1>1a1,303 1>1a0,323 1>1a1,323 1>55,323 1>75,323
1>55,309 1>75,309 1>1af,301 1>1b0,301 1>1af,300 1>1b0,300 1>1af,309 1>1b0,309 1>1af,303
1>1b0,303 1>1af,323 1>1b0,323 1>59,300 1>79,300 1>59,323 1>79,323 1>59,309 1>79,309 1>59,303
1>79,303 7>3b1,313 1>3b1,314 1>1f00,300 1>1f01,300 1>1f00,301 1>1f01,301 1>1f00,342
1>1f01,342 1>391,313 1>391,314 1>1f08,300 1>1f09,300 1>1f08,301 1>1f09,301 1>1f08,342
1>1f09,342 1>3b5,313 1>3b5,314 1>1f10,300 1>1f11,300 1>1f10,301 1>1f11,301 3>395,313
1>395,314 1>1f18,300 1>1f19,300 1>1f18,301 1>1f19,301 3>3b7,313 1>3b7,314 1>1f20,300
1>1f21,300 1>1f20,301 1>1f21,301 1>1f20,342 1>1f21,342 1>397,313 1>397,314 1>1f28,300
1>1f29,300 1>1f28,301 1>1f29,301 1>1f28,342 1>1f29,342 1>3b9,313 1>3b9,314 1>1f30,300
1>1f31,300 1>1f30,301 1>1f31,301 1>1f30,342 1>1f31,342 1>399,313 1>399,314 1>1f38,300
1>1f39,300 1>1f38,301 1>1f39,301 1>1f38,342 1>1f39,342 1>3bf,313 1>3bf,314 1>1f40,300
1>1f41,300 1>1f40,301 1>1f41,301 3>39f,313 1>39f,314 1>1f48,300 1>1f49,300 1>1f48,301
1>1f49,301 3>3c5,313 1>3c5,314 1>1f50,300 1>1f51,300 1>1f50,301 1>1f51,301 1>1f50,342
1>1f51,342 2>3a5,314 2>1f59,300 2>1f59,301 2>1f59,342 1>3c9,313 1>3c9,314 1>1f60,300
1>1f61,300 1>1f60,301 1>1f61,301 1>1f60,342 1>1f61,342 1>3a9,313 1>3a9,314 1>1f68,300
1>1f69,300 1>1f68,301 1>1f69,301 1>1f68,342 1>1f69,342 1>3b1,300 1>3b1,301 1>3b5,300
1>3b5,301 1>3b7,300 1>3b7,301 1>3b9,300 1>3b9,301 1>3bf,300 1>3bf,301 1>3c5,300 1>3c5,301
1>3c9,300 1>3c9,301 3>1f00,345 1>1f01,345 1>1f02,345 1>1f03,345 1>1f04,345 1>1f05,345
1>1f06,345 1>1f07,345 1>1f08,345 1>1f09,345 1>1f0a,345 1>1f0b,345 1>1f0c,345 1>1f0d,345
1>1f0e,345 1>1f0f,345 1>1f20,345 1>1f21,345 1>1f22,345 1>1f23,345 1>1f24,345 1>1f25,345
1>1f26,345 1>1f27,345 1>1f28,345 1>1f29,345 1>1f2a,345 1>1f2b,345 1>1f2c,345 1>1f2d,345
1>1f2e,345 1>1f2f,345 1>1f60,345 1>1f61,345 1>1f62,345 1>1f63,345 1>1f64,345 1>1f65,345
1>1f66,345 1>1f67,345 1>1f68,345 1>1f69,345 1>1f6a,345 1>1f6b,345 1>1f6c,345 1>1f6d,345
1>1f6e,345 1>1f6f,345 1>3b1,306 1>3b1,304 1>1f70,345 1>3b1,345 1>3ac,345 2>3b1,342
1>1fb6,345 1>391,306 1>391,304 1>391,300 1>391,301 1>391,345 1>20,313 1>3b9 1>20,313
1>20,342 1>a8,342 1>1f74,345 1>3b7,345 1>3ae,345 2>3b7,342 1>1fc6,345 1>395,300 1>395,301
1>397,300 1>397,301 1>397,345 1>1fbf,300 1>1fbf,301 1>1fbf,342 1>3b9,306 1>3b9,304 1>3ca,300
1>3ca,301 3>3b9,342 1>3ca,342 1>399,306 1>399,304 1>399,300 1>399,301 2>1ffe,300 1>1ffe,301
1>1ffe,342 1>3c5,306 1>3c5,304 1>3cb,300 1>3cb,301 1>3c1,313 1>3c1,314 1>3c5,342 1>3cb,342
1>3a5,306 1>3a5,304 1>3a5,300 1>3a5,301 1>3a1,314 1>a8,300 1>a8,301 1>60 3>1f7c,345
1>3c9,345 1>3ce,345 2>3c9,342 1>1ff6,345 1>39f,300 1>39f,301 1>3a9,300 1>3a9,301 1>3a9,345
1>20,301 1>20,314 2>20 1>20 1>20 1>20 1>20 1>20 1>20 1>20 1>20 1>20 1>20 7>2010 6>20,333
d>2e 1>2e,2e 1>2e,2e,2e 9>20 4>2032,2032 1>2032,2032,2032 2>2035,2035 1>2035,2035,2035
5>21,21 2>20,305 9>3f,3f 1>3f,21 1>21,3f e>2032,2032,2032,2032 8>20 11>30 1>69 3+6>34 1>2b
1>2212 1>3d 1+2>28 1>6e 1+a>30 1>2b 1>2212 1>3d 1+2>28 2>61 1>65 1>6f 1>78 1>259 1>68 1+4>6b
1>70 1+2>73 c>52,73 58>61,2f,63 1>61,2f,73 1>43 1>b0,43 2>63,2f,6f 1>63,2f,75 1>190 2>b0,46
1>67 1>48 1>48 1>48 1>68 1>127 1>49 1>49 1>4c 1>6c 2>4e 1>4e,6f 3+3>50 1>52 1>52 3>53,4d
1>54,45,4c 1>54,4d 2>5a 2>3a9 2>5a 2>4b 1>41,30a 1+2>42 2>65 1+2>45 2>4d 1>6f 1+4>5d0 1>69
2>46,41,58 1>3c0 1>3b3 1>393 1>3a0 1>2211 5>44 1+2>64 1+2>69 7>31,2044,37 1>31,2044,39
1>31,2044,31,30 1>31,2044,33 1>32,2044,33 1>31,2044,35 1>32,2044,35 1>33,2044,35
1>34,2044,35 1>31,2044,36 1>35,2044,36 1>31,2044,38 1>33,2044,38 1>35,2044,38 1>37,2044,38
1>31,2044 1>49 1>49,49 1>49,49,49 1>49,56 1>56 1>56,49 1>56,49,49 1>56,49,49,49 1>49,58 1>58
1>58,49 1>58,49,49 1>4c 1+2>43 1>4d 1>69 1>69,69 1>69,69,69 1>69,76 1>76 1>76,69 1>76,69,69
1>76,69,69,69 1>69,78 1>78 1>78,69 1>78,69,69 1>6c 1+2>63 1>6d a>30,2044,33 11>2190,338
1>2192,338 13>2194,338 1f>21d0,338 1>21d4,338 1>21d2,338 35>2203,338 5>2208,338 3>220b,338
18>2223,338 2>2225,338 6>222b,222b 1>222b,222b,222b 2>222e,222e 1>222e,222e,222e 11>223c,338
3>2243,338 3>2245,338 2>2248,338 17>3d,338 2>2261,338 b>224d,338 1>3c,338 1>3e,338
1>2264,338 1>2265,338 3>2272,338 1>2273,338 3>2276,338 1>2277,338 7>227a,338 1>227b,338
3>2282,338 1>2283,338 3>2286,338 1>2287,338 23>22a2,338 1>22a8,338 1>22a9,338 1>22ab,338
31>227c,338 1>227d,338 1>2291,338 1>2292,338 7>22b2,338 1>22b3,338 1>22b4,338 1>22b5,338
3c+2>3008 136+9>31 1>31,30 1>31,31 1>31,32 1>31,33 1>31,34 1>31,35 1>31,36 1>31,37 1>31,38
1>31,39 1>32,30 1>28,31,29 1>28,32,29 1>28,33,29 1>28,34,29 1>28,35,29 1>28,36,29 1>28,37,29
1>28,38,29 1>28,39,29 1>28,31,30,29 1>28,31,31,29 1>28,31,32,29 1>28,31,33,29 1>28,31,34,29
1>28,31,35,29 1>28,31,36,29 1>28,31,37,29 1>28,31,38,29 1>28,31,39,29 1>28,32,30,29 1>31,2e
1>32,2e 1>33,2e 1>34,2e 1>35,2e 1>36,2e 1>37,2e 1>38,2e 1>39,2e 1>31,30,2e 1>31,31,2e
1>31,32,2e 1>31,33,2e 1>31,34,2e 1>31,35,2e 1>31,36,2e 1>31,37,2e 1>31,38,2e 1>31,39,2e
1>32,30,2e 1>28,61,29 1>28,62,29 1>28,63,29 1>28,64,29 1>28,65,29 1>28,66,29 1>28,67,29
1>28,68,29 1>28,69,29 1>28,6a,29 1>28,6b,29 1>28,6c,29 1>28,6d,29 1>28,6e,29 1>28,6f,29
1>28,70,29 1>28,71,29 1>28,72,29 1>28,73,29 1>28,74,29 1>28,75,29 1>28,76,29 1>28,77,29
1>28,78,29 1>28,79,29 1>28,7a,29 1+1a>41 1+1a>61 1>30 522>222b,222b,222b,222b 68>3a,3a,3d
1>3d,3d 1>3d,3d,3d 66>2add,338 1a0>6a 1>56 f2>2d61 130>6bcd 54>9f9f 10d>20 36>3012 2>5341
1+2>5344 12>304b,3099 2>304d,3099 2>304f,3099 2>3051,3099 2>3053,3099 2>3055,3099
2>3057,3099 2>3059,3099 2>305b,3099 2>305d,3099 2>305f,3099 2>3061,3099 3>3064,3099
2>3066,3099 2>3068,3099 7>306f,3099 1>306f,309a 2>3072,3099 1>3072,309a 2>3075,3099
1>3075,309a 2>3078,3099 1>3078,309a 2>307b,3099 1>307b,309a 17>3046,3099 7>20,3099 1>20,309a
2>309d,3099 1>3088,308a d>30ab,3099 2>30ad,3099 2>30af,3099 2>30b1,3099 2>30b3,3099
2>30b5,3099 2>30b7,3099 2>30b9,3099 2>30bb,3099 2>30bd,3099 2>30bf,3099 2>30c1,3099
3>30c4,3099 2>30c6,3099 2>30c8,3099 7>30cf,3099 1>30cf,309a 2>30d2,3099 1>30d2,309a
2>30d5,3099 1>30d5,309a 2>30d8,3099 1>30d8,309a 2>30db,3099 1>30db,309a 17>30a6,3099
3>30ef,3099 1>30f0,3099 1>30f1,3099 1>30f2,3099 4>30fd,3099 1>30b3,30c8 32+2>1100 1>11aa
1>1102 1+2>11ac 1+3>1103 1+6>11b0 1>111a 1+3>1106 1>1121 1+a>1109 1+15>1161 1>1160 1+2>1114
1+2>11c7 1>11cc 1>11ce 1>11d3 1>11d7 1>11d9 1>111c 1>11dd 1>11df 1+2>111d 1>1120 1+2>1122
1>1127 1>1129 1+5>112b 1>1132 1>1136 1>1140 1>1147 1>114c 1+2>11f1 1+3>1157 1+2>1184 1>1188
1+2>1191 1>1194 1>119e 1>11a1 4>4e00 1>4e8c 1>4e09 1>56db 1>4e0a 1>4e2d 1>4e0b 1>7532 1>4e59
1>4e19 1>4e01 1>5929 1>5730 1>4eba 61>28,1100,29 1>28,1102,29 1>28,1103,29 1>28,1105,29
1>28,1106,29 1>28,1107,29 1>28,1109,29 1>28,110b,29 1>28,110c,29 1>28,110e,29 1>28,110f,29
1>28,1110,29 1>28,1111,29 1>28,1112,29 1>28,1100,1161,29 1>28,1102,1161,29 1>28,1103,1161,29
1>28,1105,1161,29 1>28,1106,1161,29 1>28,1107,1161,29 1>28,1109,1161,29 1>28,110b,1161,29
1>28,110c,1161,29 1>28,110e,1161,29 1>28,110f,1161,29 1>28,1110,1161,29 1>28,1111,1161,29
1>28,1112,1161,29 1>28,110c,116e,29 1>28,110b,1169,110c,1165,11ab,29
1>28,110b,1169,1112,116e,29 2>28,4e00,29 1>28,4e8c,29 1>28,4e09,29 1>28,56db,29 1>28,4e94,29
1>28,516d,29 1>28,4e03,29 1>28,516b,29 1>28,4e5d,29 1>28,5341,29 1>28,6708,29 1>28,706b,29
1>28,6c34,29 1>28,6728,29 1>28,91d1,29 1>28,571f,29 1>28,65e5,29 1>28,682a,29 1>28,6709,29
1>28,793e,29 1>28,540d,29 1>28,7279,29 1>28,8ca1,29 1>28,795d,29 1>28,52b4,29 1>28,4ee3,29
1>28,547c,29 1>28,5b66,29 1>28,76e3,29 1>28,4f01,29 1>28,8cc7,29 1>28,5354,29 1>28,796d,29
1>28,4f11,29 1>28,81ea,29 1>28,81f3,29 1>554f 1>5e7c 1>6587 1>7b8f 9>50,54,45 1>32,31
1>32,32 1>32,33 1>32,34 1>32,35 1>32,36 1>32,37 1>32,38 1>32,39 1>33,30 1>33,31 1>33,32
1>33,33 1>33,34 1>33,35 1>1100 1+2>1102 1+3>1105 1>1109 1+2>110b 1+5>110e 1>1100,1161
1>1102,1161 1>1103,1161 1>1105,1161 1>1106,1161 1>1107,1161 1>1109,1161 1>110b,1161
1>110c,1161 1>110e,1161 1>110f,1161 1>1110,1161 1>1111,1161 1>1112,1161
1>110e,1161,11b7,1100,1169 1>110c,116e,110b,1174 1>110b,116e 2>4e00 1>4e8c 1>4e09 1>56db
1>4e94 1>516d 1>4e03 1>516b 1>4e5d 1>5341 1>6708 1>706b 1>6c34 1>6728 1>91d1 1>571f 1>65e5
1>682a 1>6709 1>793e 1>540d 1>7279 1>8ca1 1>795d 1>52b4 1>79d8 1>7537 1>5973 1>9069 1>512a
1>5370 1>6ce8 1>9805 1>4f11 1>5199 1>6b63 1>4e0a 1>4e2d 1>4e0b 1>5de6 1>53f3 1>533b 1>5b97
1>5b66 1>76e3 1>4f01 1>8cc7 1>5354 1>591c 1>33,36 1>33,37 1>33,38 1>33,39 1>34,30 1>34,31
1>34,32 1>34,33 1>34,34 1>34,35 1>34,36 1>34,37 1>34,38 1>34,39 1>35,30 1>31,6708 1>32,6708
1>33,6708 1>34,6708 1>35,6708 1>36,6708 1>37,6708 1>38,6708 1>39,6708 1>31,30,6708
1>31,31,6708 1>31,32,6708 1>48,67 1>65,72,67 1>65,56 1>4c,54,44 1>30a2 1>30a4 1>30a6 1>30a8
1+2>30aa 1>30ad 1>30af 1>30b1 1>30b3 1>30b5 1>30b7 1>30b9 1>30bb 1>30bd 1>30bf 1>30c1 1>30c4
1>30c6 1>30c8 1+6>30ca 1>30d2 1>30d5 1>30d8 1>30db 1+5>30de 1>30e4 1>30e6 1+6>30e8 1+4>30ef
1>4ee4,548c 1>30a2,30d1,30fc,30c8 1>30a2,30eb,30d5,30a1 1>30a2,30f3,30da,30a2
1>30a2,30fc,30eb 1>30a4,30cb,30f3,30b0 1>30a4,30f3,30c1 1>30a6,30a9,30f3
1>30a8,30b9,30af,30fc,30c9 1>30a8,30fc,30ab,30fc 1>30aa,30f3,30b9 1>30aa,30fc,30e0
1>30ab,30a4,30ea 1>30ab,30e9,30c3,30c8 1>30ab,30ed,30ea,30fc 1>30ac,30ed,30f3
1>30ac,30f3,30de 1>30ae,30ac 1>30ae,30cb,30fc 1>30ad,30e5,30ea,30fc 1>30ae,30eb,30c0,30fc
1>30ad,30ed 1>30ad,30ed,30b0,30e9,30e0 1>30ad,30ed,30e1,30fc,30c8,30eb
1>30ad,30ed,30ef,30c3,30c8 1>30b0,30e9,30e0 1>30b0,30e9,30e0,30c8,30f3
1>30af,30eb,30bc,30a4,30ed 1>30af,30ed,30fc,30cd 1>30b1,30fc,30b9 1>30b3,30eb,30ca
1>30b3,30fc,30dd 1>30b5,30a4,30af,30eb 1>30b5,30f3,30c1,30fc,30e0 1>30b7,30ea,30f3,30b0
1>30bb,30f3,30c1 1>30bb,30f3,30c8 1>30c0,30fc,30b9 1>30c7,30b7 1>30c9,30eb 1>30c8,30f3
1>30ca,30ce 1>30ce,30c3,30c8 1>30cf,30a4,30c4 1>30d1,30fc,30bb,30f3,30c8 1>30d1,30fc,30c4
1>30d0,30fc,30ec,30eb 1>30d4,30a2,30b9,30c8,30eb 1>30d4,30af,30eb 1>30d4,30b3 1>30d3,30eb
1>30d5,30a1,30e9,30c3,30c9 1>30d5,30a3,30fc,30c8 1>30d6,30c3,30b7,30a7,30eb 1>30d5,30e9,30f3
1>30d8,30af,30bf,30fc,30eb 1>30da,30bd 1>30da,30cb,30d2 1>30d8,30eb,30c4 1>30da,30f3,30b9
1>30da,30fc,30b8 1>30d9,30fc,30bf 1>30dd,30a4,30f3,30c8 1>30dc,30eb,30c8 1>30db,30f3
1>30dd,30f3,30c9 1>30db,30fc,30eb 1>30db,30fc,30f3 1>30de,30a4,30af,30ed 1>30de,30a4,30eb
1>30de,30c3,30cf 1>30de,30eb,30af 1>30de,30f3,30b7,30e7,30f3 1>30df,30af,30ed,30f3
1>30df,30ea 1>30df,30ea,30d0,30fc,30eb 1>30e1,30ac 1>30e1,30ac,30c8,30f3
1>30e1,30fc,30c8,30eb 1>30e4,30fc,30c9 1>30e4,30fc,30eb 1>30e6,30a2,30f3
1>30ea,30c3,30c8,30eb 1>30ea,30e9 1>30eb,30d4,30fc 1>30eb,30fc,30d6,30eb 1>30ec,30e0
1>30ec,30f3,30c8,30b2,30f3 1>30ef,30c3,30c8 1>30,70b9 1>31,70b9 1>32,70b9 1>33,70b9
1>34,70b9 1>35,70b9 1>36,70b9 1>37,70b9 1>38,70b9 1>39,70b9 1>31,30,70b9 1>31,31,70b9
1>31,32,70b9 1>31,33,70b9 1>31,34,70b9 1>31,35,70b9 1>31,36,70b9 1>31,37,70b9 1>31,38,70b9
1>31,39,70b9 1>32,30,70b9 1>32,31,70b9 1>32,32,70b9 1>32,33,70b9 1>32,34,70b9 1>68,50,61
1>64,61 1>41,55 1>62,61,72 1>6f,56 1>70,63 1>64,6d 1>64,6d,b2 1>64,6d,b3 1>49,55 1>5e73,6210
1>662d,548c 1>5927,6b63 1>660e,6cbb 1>682a,5f0f,4f1a,793e 1>70,41 1>6e,41 1>3bc,41 1>6d,41
1>6b,41 1>4b,42 1>4d,42 1>47,42 1>63,61,6c 1>6b,63,61,6c 1>70,46 1>6e,46 1>3bc,46 1>3bc,67
1>6d,67 1>6b,67 1>48,7a 1>6b,48,7a 1>4d,48,7a 1>47,48,7a 1>54,48,7a 1>3bc,2113 1>6d,2113
1>64,2113 1>6b,2113 1>66,6d 1>6e,6d 1>3bc,6d 1>6d,6d 1>63,6d 1>6b,6d 1>6d,6d,b2 1>63,6d,b2
1>6d,b2 1>6b,6d,b2 1>6d,6d,b3 1>63,6d,b3 1>6d,b3 1>6b,6d,b3 1>6d,2215,73 1>6d,2215,73,b2
1>50,61 1>6b,50,61 1>4d,50,61 1>47,50,61 1>72,61,64 1>72,61,64,2215,73 1>72,61,64,2215,73,b2
1>70,73 1>6e,73 1>3bc,73 1>6d,73 1>70,56 1>6e,56 1>3bc,56 1>6d,56 1>6b,56 1>4d,56 1>70,57
1>6e,57 1>3bc,57 1>6d,57 1>6b,57 1>4d,57 1>6b,3a9 1>4d,3a9 1>61,2e,6d,2e 1>42,71 1>63,63
1>63,64 1>43,2215,6b,67 1>43,6f,2e 1>64,42 1>47,79 1>68,61 1>48,50 1>69,6e 1>4b,4b 1>4b,4d
1>6b,74 1>6c,6d 1>6c,6e 1>6c,6f,67 1>6c,78 1>6d,62 1>6d,69,6c 1>6d,6f,6c 1>50,48
1>70,2e,6d,2e 1>50,50,4d 1>50,52 1>73,72 1>53,76 1>57,62 1>56,2215,6d 1>41,2215,6d 1>31,65e5
1>32,65e5 1>33,65e5 1>34,65e5 1>35,65e5 1>36,65e5 1>37,65e5 1>38,65e5 1>39,65e5 1>31,30,65e5
1>31,31,65e5 1>31,32,65e5 1>31,33,65e5 1>31,34,65e5 1>31,35,65e5 1>31,36,65e5 1>31,37,65e5
1>31,38,65e5 1>31,39,65e5 1>32,30,65e5 1>32,31,65e5 1>32,32,65e5 1>32,33,65e5 1>32,34,65e5
1>32,35,65e5 1>32,36,65e5 1>32,37,65e5 1>32,38,65e5 1>32,39,65e5 1>33,30,65e5 1>33,31,65e5
1>67,61,6c 729d>44a 1>44c d3>a76f 82>43 1>46 1>51 4>126 1>153 363>a727 1>ab37 1>26b 1>ab52
a>28d 4f97>66,66 1>66,69 1>66,6c 1>66,66,69 1>66,66,6c 1>17f,74 1>73,74 d>574,576 1>574,565
1>574,56b 1>57e,576 1>574,56d 6>5d9,5b4 2>5f2,5b7 1>5e2 1>5d0 1+2>5d3 1+3>5db 1>5e8 1>5ea
1>2b 1>5e9,5c1 1>5e9,5c2 1>fb49,5c1 1>fb49,5c2 1>5d0,5b7 1>5d0,5b8 1>5d0,5bc 1>5d1,5bc
1>5d2,5bc 1>5d3,5bc 1>5d4,5bc 1>5d5,5bc 1>5d6,5bc 2>5d8,5bc 1>5d9,5bc 1>5da,5bc 1>5db,5bc
1>5dc,5bc 2>5de,5bc 2>5e0,5bc 1>5e1,5bc 2>5e3,5bc 1>5e4,5bc 2>5e6,5bc 1>5e7,5bc 1>5e8,5bc
1>5e9,5bc 1>5ea,5bc 1>5d5,5b9 1>5d1,5bf 1>5db,5bf 1>5e4,5bf 1>5d0,5dc 2c1>2c 1+2>3001 1+2>3a
1>21 1>3f 1+2>3016 1>2e,2e,2e 17>2e,2e 1>2014 1>2013 1>5f 1>5f 1+2>28 1>7b 1>7d 1+2>3014
1+2>3010 1+2>300a 1+2>3008 1+4>300c 3>5b 1>5d 1>20,305 1>20,305 1>20,305 1>20,305 1>5f 1>5f
1>5f 1>2c 1>3001 1>2e 2>3b 1>3a 1>3f 1>21 1>2014 1+2>28 1>7b 1>7d 1+2>3014 1>23 1>26 1+2>2a
1>2d 1>3c 1>3e 1>3d 2>5c 1+2>24 1>40 96+5e>21 1+2>2985 1>3002 1+2>300c 1>3001 1>30fb 1>30f2
1>30a1 1>30a3 1>30a5 1>30a7 1>30a9 1>30e3 1>30e5 1>30e7 1>30c3 1>30fc 1>30a2 1>30a4 1>30a6
1>30a8 1+2>30aa 1>30ad 1>30af 1>30b1 1>30b3 1>30b5 1>30b7 1>30b9 1>30bb 1>30bd 1>30bf 1>30c1
1>30c4 1>30c6 1>30c8 1+6>30ca 1>30d2 1>30d5 1>30d8 1>30db 1+5>30de 1>30e4 1>30e6 1+6>30e8
1>30ef 1>30f3 1+2>3099 1>1160 1+2>1100 1>11aa 1>1102 1+2>11ac 1+3>1103 1+6>11b0 1>111a
1+3>1106 1>1121 1+a>1109 4+6>1161 3+6>1167 3+6>116d 3+3>1173 4+2>a2 1>ac 1>20,304 1>a6 1>a5
1>20a9 2>2502 1+4>2190 1>25a0 1>25cb 793+2>2d0 1>e6 1>299 1>253 2>2a3 1>ab66 1>2a5 1>2a4
1+2>256 1>1d91 1>258 1>25e 1>2a9 1>264 1>262 1>260 1>29b 1>127 1>29c 1>267 1>284 1+2>2aa
1>26c 1>1df04 1>a78e 1>26e 1>1df05 1>28e 1>1df06 1>f8 1+2>276 1>71 1>27a 1>1df08 1+2>27d
1>280 1>2a8 1>2a6 1>ab67 1>2a7 1>288 1>2c71 2>28f 1+2>2a1 1>298 1+3>1c0 1>1df0a 1>1df1e
8e0>11099,110ba 2>1109b,110ba f>110a5,110ba 83>11131,11127 1>11132,11127 21c>11347,1133e
1>11347,11357 16f>114b9,114ba 1>114b9,114b0 2>114b9,114bd fc>115b8,115af 1>115b9,115af
37d>11935,11930 b826>1d157,1d165 1>1d158,1d165 1>1d15f,1d16e 1>1d15f,1d16f 1>1d15f,1d170
1>1d15f,1d171 1>1d15f,1d172 57>1d1b9,1d165 1>1d1ba,1d165 1>1d1bb,1d16e 1>1d1bc,1d16e
1>1d1bb,1d16f 1>1d1bc,1d16f 240+1a>41 1+1a>61 1+1a>41 1+7>61 2+12>69 1+1a>41 1+1a>61 1>41
2+2>43 3>47 3+2>4a 3+4>4e 2+8>53 1+4>61 2>66 2+7>68 2+b>70 1+1a>41 1+1a>61 1+2>41 2+4>44
3+8>4a 2+7>53 2+1a>61 1+2>41 2+4>44 2+5>49 2>4f 4+7>53 2+1a>61 1+1a>41 1+1a>61 1+1a>41
1+1a>61 1+1a>41 1+1a>61 1+1a>41 1+1a>61 1+1a>41 1+1a>61 1+1a>41 1+1a>61 1>131 1>237 3+11>391
1>398 1+7>3a3 1>2207 1+19>3b1 1>2202 1>3b5 1>3b8 1>3ba 1>3c6 1>3c1 1>3c0 1+11>391 1>398
1+7>3a3 1>2207 1+19>3b1 1>2202 1>3b5 1>3b8 1>3ba 1>3c6 1>3c1 1>3c0 1+11>391 1>398 1+7>3a3
1>2207 1+19>3b1 1>2202 1>3b5 1>3b8 1>3ba 1>3c6 1>3c1 1>3c0 1+11>391 1>398 1+7>3a3 1>2207
1+19>3b1 1>2202 1>3b5 1>3b8 1>3ba 1>3c6 1>3c1 1>3c0 1+11>391 1>398 1+7>3a3 1>2207 1+19>3b1
1>2202 1>3b5 1>3b8 1>3ba 1>3c6 1>3c1 1>3c0 1+2>3dc 3+a>30 1+a>30 1+a>30 1+a>30 1+a>30
1601+2>627 1>62c 1>62f 2>648 1>632 1>62d 1>637 1>64a 1+4>643 1>633 1>639 1>641 1>635 1>642
1>631 1>634 1+2>62a 1>62e 1>630 1>636 1>638 1>63a 1>66e 1>6ba 1>6a1 1>66f 2>628 1>62c 2>647
3>62d 2>64a 1+4>643 1>633 1>639 1>641 1>635 1>642 2>634 1+2>62a 1>62e 2>636 2>63a 7>62c
5>62d 2>64a 2>644 2>646 1>633 1>639 2>635 1>642 2>634 3>62e 2>636 2>63a 2>6ba 2>66f 2>628
1>62c 2>647 3>62d 1>637 1>64a 1>643 2+2>645 1>633 1>639 1>641 1>635 1>642 2>634 1+2>62a
1>62e 2>636 1>638 1>63a 1>66e 2>6a1 2+2>627 1>62c 1>62f 1+2>647 1>632 1>62d 1>637 1>64a
2+3>644 1>633 1>639 1>641 1>635 1>642 1>631 1>634 1+2>62a 1>62e 1>630 1>636 1>638 1>63a
6>628 1>62c 1>62f 2>648 1>632 1>62d 1>637 1>64a 2+3>644 1>633 1>639 1>641 1>635 1>642 1>631
1>634 1+2>62a 1>62e 1>630 1>636 1>638 1>63a 245>30,2e 1>30,2c 1>31,2c 1>32,2c 1>33,2c
1>34,2c 1>35,2c 1>36,2c 1>37,2c 1>38,2c 1>39,2c 6>28,41,29 1>28,42,29 1>28,43,29 1>28,44,29
1>28,45,29 1>28,46,29 1>28,47,29 1>28,48,29 1>28,49,29 1>28,4a,29 1>28,4b,29 1>28,4c,29
1>28,4d,29 1>28,4e,29 1>28,4f,29 1>28,50,29 1>28,51,29 1>28,52,29 1>28,53,29 1>28,54,29
1>28,55,29 1>28,56,29 1>28,57,29 1>28,58,29 1>28,59,29 1>28,5a,29 1>3014,53,3015 1>43 1>52
1>43,44 1>57,5a 2+1a>41 1>48,56 1>4d,56 1>53,44 1>53,53 1>50,50,56 1>57,43 1b>4d,43 1>4d,44
1>4d,52 24>44,4a 70>307b,304b 1>30b3,30b3 1>30b5 e>624b 1>5b57 1>53cc 1>30c6,3099 1>4e8c
1>591a 1>89e3 1>5929 1>4ea4 1>6620 1>7121 1>6599 1>524d 1>5f8c 1>518d 1>65b0 1>521d 1>7d42
1>751f 1>8ca9 1>58f0 1>5439 1>6f14 1>6295 1>6355 1>4e00 1>4e09 1>904a 1>5de6 1>4e2d 1>53f3
1>6307 1>8d70 1>6253 1>7981 1>7a7a 1>5408 1>6e80 1>6709 1>6708 1>7533 1>5272 1>55b6 1>914d
5>3014,672c,3015 1>3014,4e09,3015 1>3014,4e8c,3015 1>3014,5b89,3015 1>3014,70b9,3015
1>3014,6253,3015 1>3014,76d7,3015 1>3014,52dd,3015 1>3014,6557,3015 8>5f97 1>53ef 99f+a>30
";

#[cfg(test)]
mod tests {
    use super::*;

    /// A message from text with LF line ends (made CRLF).
    fn crlf(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in s {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

    fn with_subject(subject: &[u8]) -> Vec<u8> {
        crlf(&[b"From: a@b.c\nSubject: ", subject, b"\n\nbody\n"].concat())
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// (subject as sent, needle, expected) for SUBJECT.
    fn check_subjects(rule: &str, cases: &[(&str, &str, bool)]) {
        for &(subject, needle, want) in cases {
            let raw = with_subject(subject.as_bytes());
            let got = Text::new(&raw).subject(needle.as_bytes());
            assert_eq!(got, want, "{rule}: SUBJECT {needle:?} in {subject:?}");
        }
    }

    #[test]
    fn case_insensitive_by_unicode_titlecase() {
        check_subjects(
            "titlecase",
            &[
                ("ñandú bird", "ÑANDÚ", true),
                ("ÑANDÚ bird", "ñandú", true),
                ("=?utf-8?Q?=C3=B1and=C3=BA?=", "ÑANDÚ", true),
                ("Straße", "STRASSE", false),
                ("Straße", "STRAßE", true),
                ("Straße", "ẞ", false),
                ("Ǆemal", "ǆemal", true),
                ("Ǆemal", "ǅemal", true),
                ("ΣΟΦΟΣ", "σοφος", true),
                ("σοφος", "ΣΟΦΟΣ", true),
                ("KELVIN \u{212a}", "kelvin k", true),
                ("micro\u{b5}", "microμ", true),
                ("İstanbul", "istanbul", false),
                ("İstanbul", "i\u{307}stanbul", true),
                ("dotless ı", "I", true),
                ("geo ა", "Ა", false),
                ("ᾳ", "Α", true),
                ("Cherokee ꭰ", "Ꭰ", true),
            ],
        );
    }

    #[test]
    fn decomposition_lets_base_letters_match() {
        check_subjects(
            "decomposition",
            &[
                ("café", "cafe", true),
                ("cafe", "café", false),
                ("ñandú", "nandu", false),
                ("ñandú", "ANDU", true),
                ("ñandú", "n\u{303}andu\u{301}", true),
                ("n\u{303}andu\u{301}", "ñandú", true),
                ("ñandú", "\u{301}", true),
                ("한", "ᄒ", true),
                ("\u{212b}", "a\u{30a}", true),
            ],
        );
    }

    #[test]
    fn decomposition_is_one_level_deep() {
        check_subjects(
            "one level",
            &[
                ("ǖ", "ü", false),
                ("ǖ", "u", false),
                ("ǖ", "ǖ", true),
                ("ệ", "e", false),
                ("ᾀ", "ἀ", false),
            ],
        );
    }

    #[test]
    fn compatibility_decomposition_is_not_case_mapped_again() {
        check_subjects(
            "compatibility",
            &[
                ("ﬀ", "ff", false),
                ("ﬀ", "ﬀ", true),
                ("ﬁsh", "fish", false),
                ("ĳ", "ij", true),
                ("ＡＢＣ", "abc", true),
                ("ａｂｃ", "ＡＢＣ", true),
                ("half\u{bd}", "half1", true),
                ("sup\u{b2}", "sup2", true),
                ("ord\u{aa}", "orda", false),
                ("nbsp\u{a0}here", "nbsp here", true),
                ("\u{2103}", "°C", true),
                ("roman ⅰ", "I", true),
                ("circ ⓐ", "A", true),
            ],
        );
    }

    #[test]
    fn header_matches_decoded_encoded_words_not_raw_text() {
        check_subjects(
            "RFC 2047",
            &[
                ("=?iso-8859-1?Q?caf=E9?= au lait", "café", true),
                ("=?iso-8859-1?Q?caf=E9?= au lait", "CAFÉ", true),
                ("=?iso-8859-1?Q?caf=E9?= au lait", "caf=E9", false),
                ("=?iso-8859-1?Q?caf=E9?= au lait", "iso-8859", false),
                ("=?UTF-8?B?Y2Fmw6k=?=", "café", true),
                ("=?utf-8?B?w7E?= unpadded", "ñ unpadded", true),
                ("=?windows-1252?Q?=80uro?=", "€uro", true),
                ("=?utf-7?Q?+AOk-?=", "é", true),
                ("=?utf-8?Q?x_y=5F?=", "x y_", true),
            ],
        );
    }

    #[test]
    fn encoded_words_are_decoded_anywhere_and_joined() {
        check_subjects(
            "encoded words",
            &[
                ("=?utf-8?Q?a?= =?utf-8?Q?b?=", "ab", true),
                ("=?utf-8?Q?a?=\n =?utf-8?Q?b?=", "ab", true),
                ("pre=?utf-8?Q?mid?=post", "premidpost", true),
                ("k =?utf-8?Q?a?=(c) =?utf-8?Q?b?= k", "k a(c) b k", true),
                (
                    "\"=?utf-8?Q?a=C3=B1?=\" (=?utf-8?Q?b=C3=B1?=)",
                    "\"añ\" (bñ)",
                    true,
                ),
                (
                    "=?utf-8?Q?x?=   y  =?utf-8?Q?z?=   =?utf-8?Q?w?=",
                    "x y zw",
                    true,
                ),
                ("=?utf-8?Q?broken", "=?utf-8?q?broken", true),
                ("=?utf-8?X?bad?= q", "?X?bad?= q", true),
            ],
        );
    }

    #[test]
    fn unknown_charset_words_are_decoded_but_not_case_mapped() {
        check_subjects(
            "unknown charset",
            &[
                ("=?x-unknown?Q?ABC_def?= tail", "abc", true),
                ("=?x-unknown?Q?ABC_def?= tail", "ABC def", false),
                ("=?x-unknown?Q?abc?= tail", "abc", false),
                ("=?x-unknown?Q?caf=E9?=", "\u{fffd}", true),
                ("=?iso-8859-1*en?Q?caf=E9?=", "caf", false),
            ],
        );
    }

    #[test]
    fn invalid_utf8_runs_become_one_replacement_character() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"raw \xc3\xb1and\xc3\xba", "raw ñandú", true),
            (b"latin caf\xe9 end", "latin caf\u{fffd} end", true),
            (b"a\x80\x80b", "a\u{fffd}b", true),
            (b"a\xe9\xe9b", "a\u{fffd}b", true),
            (b"a\xed\xa0\x80b", "a\u{fffd}b", true),
            (b"a\xe9b\xe9c", "a\u{fffd}b\u{fffd}c", true),
            (b"=?us-ascii?Q?caf=E9?=", "caf\u{fffd}", true),
            (b"=?utf-8?q?ab=C3?= end", "ab\u{fffd} end", true),
            (b"=?utf-8?q?=C3?= =?utf-8?q?=B1?= end", "\u{fffd} end", true),
            (
                b"=?utf-8?q?=C3?= =?utf-8?q?=B1?= end",
                "\u{fffd}\u{fffd}",
                false,
            ),
        ];
        for &(subject, needle, want) in cases {
            let raw = with_subject(subject);
            let got = Text::new(&raw).subject(needle.as_bytes());
            assert_eq!(got, want, "SUBJECT {needle:?} in {subject:?}");
        }
    }

    #[test]
    fn header_keeps_whitespace_but_one_leading_blank_and_fold_line_breaks() {
        let raw = crlf(
            b"From: a@b.c\nX-Foo:  a  b\t\tc\nX-Tab:\tx\nX-Fold: p\n  q\nX-Enc: =?utf-8?Q?a__b?=\n\nbody\n",
        );
        let t = Text::new(&raw);
        let cases: &[(&str, &str, bool)] = &[
            ("X-Foo", " a  b\t\tc", true),
            ("X-Foo", "  a", false),
            ("X-Foo", "a b", false),
            ("X-Tab", "x", true),
            ("X-Tab", "\tx", false),
            ("X-Fold", "p  q", true),
            ("X-Fold", "p q", false),
            ("X-Fold", "p\r\n", false),
            ("X-Enc", "a  b", true),
            ("x-fold", "P  Q", true),
        ];
        for &(name, needle, want) in cases {
            assert_eq!(
                t.header(name, needle.as_bytes()),
                want,
                "HEADER {name} {needle:?}"
            );
        }
    }

    #[test]
    fn subject_compresses_whitespace_before_decoding() {
        check_subjects(
            "LWSP",
            &[
                ("  lead  and   trail  ", "lead and trail ", true),
                ("  lead  and   trail  ", " lead", false),
                ("  lead  and   trail  ", "trail  ", false),
                ("a  b\t\tc", "a b c", true),
                ("hello\n  world", "hello world", true),
                ("hello\n\tworld", "hello world", true),
                ("hello\n  world", "hello  world", false),
                ("=?utf-8?Q?a__b?= c", "a  b c", true),
            ],
        );
    }

    #[test]
    fn repeated_fields_are_joined_with_crlf() {
        let raw = crlf(b"X-Foo: first\nX-Bar: mid\nX-Foo: second\nSubject: s\n\nbody\n");
        let t = Text::new(&raw);
        for (needle, want) in [
            ("first\r\nsecond", true),
            ("first\r\nsecond\r\n", true),
            ("first second", false),
            ("firstsecond", false),
            ("mid", false),
        ] {
            assert_eq!(t.header("X-Foo", needle.as_bytes()), want, "{needle:?}");
        }
    }

    #[test]
    fn empty_needle_matches_when_the_field_exists() {
        let raw = crlf(b"From: a@b.c\nX-Empty:\nSubject: s\n\nbody\n");
        let t = Text::new(&raw);
        assert!(t.header("X-Empty", b""));
        assert!(t.header("x-empty", b"\r\n"));
        assert!(!t.header("X-Nope", b""));
        assert!(t.address("From", b""));
        assert!(!t.address("Bcc", b""));
        let raw = crlf(b"From: a@b.c\n\nbody\n");
        assert!(!Text::new(&raw).subject(b""));
    }

    #[test]
    fn header_keys_see_only_the_top_level_header() {
        let raw = crlf(
            b"From: x@y.z\nSubject: top\nContent-Type: message/rfc822\n\nSubject: nested\nFrom: nested@n.n\n\nbody\n",
        );
        let t = Text::new(&raw);
        assert!(t.subject(b"top"));
        assert!(!t.subject(b"nested"));
        assert!(!t.header("Subject", b"nested"));
        assert!(!t.address("From", b"nested"));
        assert!(t.text(b"nested"));
    }

    #[test]
    fn header_names_end_at_the_colon_and_lines_without_one_are_skipped() {
        let raw = crlf(b"From: x@y.z\nNo colon line\nSubject: after\nX-Name : spaced\n\nbody\n");
        let t = Text::new(&raw);
        assert!(t.subject(b"after"));
        assert!(t.header("X-Name", b"spaced"));
        assert!(t.text(b"no colon line\r\n"));
        assert!(t.text(b"x-name : spaced"));
    }

    #[test]
    fn address_fields_are_matched_as_rewritten_address_lists() {
        let cases: &[(&str, &str, bool)] = &[
            (
                "Anna Smith <anna@example.org>",
                "\"Anna Smith\" <anna@example.org>",
                true,
            ),
            ("Anna Smith <anna@example.org>", "Anna Smith <anna", false),
            ("Anna    Smith <anna@example.org>", "\"Anna Smith\"", true),
            ("Anna <anna@example.org>", "Anna <anna@example.org>", true),
            (
                "=?utf-8?Q?J=C3=B6rg?= Mueller <jorg@Example.COM>",
                "Jörg Mueller <jorg@example.com>",
                true,
            ),
            (
                "=?utf-8?Q?J=C3=B6rg?= Mueller <jorg@Example.COM>",
                "\"Jörg",
                false,
            ),
            (
                "\"=?utf-8?Q?J=C3=B6rg?=\" <j@x.org>",
                "Jörg <j@x.org>",
                true,
            ),
            (
                "=?utf-8?Q?M=C3=BCller=2C_Hans?= <x@y.z>",
                "Müller, Hans <x@y.z>",
                true,
            ),
            ("Jörg Müller <x@y.z>", "\"Jörg Müller\" <x@y.z>", true),
            ("anna@example.org", "<anna@example.org>\r\n", true),
            ("<anna@example.org>", "<anna@example.org>", true),
            (
                "anna@example.org (Anna Smith)",
                "\"Anna Smith\" <anna@example.org>",
                true,
            ),
            ("x@y.z (Anna) (Smith)", "Smith <x@y.z>", true),
            (
                "Anna  (Comment) Smith <x@y.z>",
                "\"Anna Smith\" <x@y.z>",
                true,
            ),
            ("Anna  (Comment) Smith <x@y.z>", "Comment", false),
            (
                "\"Smith, Anna\" <anna@example.org>",
                "\"Smith, Anna\" <",
                true,
            ),
            ("a.b <x@y.z>", "\"a.b\" <x@y.z>", true),
            ("a . b <x@y.z>", "\"a . b\" <x@y.z>", true),
            ("O'Brien <x@y.z>", "O'Brien <x@y.z>", true),
            ("\"a\\\"b\" <x@y.z>", "\"a\\\"b\" <x@y.z>", true),
            ("\"\" <x@y.z>", "<x@y.z>", true),
            ("\"\" <x@y.z>", "\"\"", false),
            ("\"  \" <x@y.z>", "\"  \" <x@y.z>", true),
            (
                "Group: carl@example.com, dan@example.com;",
                "Group: <carl@example.com>, <dan@example.com>;",
                true,
            ),
            ("undisclosed-recipients:;", "undisclosed-recipients:;", true),
            ("G1: a@b;, G2: ;, c@d", "G1: <a@b>;, G2:;, <c@d>", true),
            (
                "g: x@y.z, ;",
                "g: <x@y.z>, <MISSING_MAILBOX@MISSING_DOMAIN>;",
                true,
            ),
            (
                "just some text",
                "\"just some text\" <MISSING_MAILBOX@MISSING_DOMAIN>",
                true,
            ),
            ("x", "<x@MISSING_DOMAIN>", true),
            ("x (c)", "c <x@MISSING_DOMAIN>", true),
            ("\"x\"", "x <MISSING_MAILBOX@MISSING_DOMAIN>", true),
            ("<>", "<MISSING_MAILBOX@MISSING_DOMAIN>", true),
            ("@y.z", "<MISSING_MAILBOX@y.z>", true),
            ("Name <x@y.z", "Name <x@SYNTAX_ERROR>", true),
            ("x <", "x <MISSING_MAILBOX@SYNTAX_ERROR>", true),
            (",x@y.z", "<MISSING_MAILBOX@MISSING_DOMAIN>, <x@y.z>", true),
            ("x@y.z,", "<x@y.z>\r\n", true),
            (
                "x@y.z, , w@v.u",
                "<x@y.z>, <MISSING_MAILBOX@MISSING_DOMAIN>, <w@v.u>",
                true,
            ),
            ("a@b c@d", "c@d", false),
            ("Name <x@y.z> junk, a@b", "a@b", false),
            ("x @ y . z", "<x@y.z>", true),
            ("\"quoted local\"@y.z", "<\"quoted local\"@y.z>", true),
            ("x@[1.2.3.4]", "<x@[1.2.3.4]>", true),
            ("<@route,@r2:x@y.z>", "<@route,@r2:x@y.z>", true),
            ("(only comment)", "@", false),
        ];
        for &(from, needle, want) in cases {
            let raw = crlf(format!("From: {from}\nSubject: x\n\nbody\n").as_bytes());
            let got = Text::new(&raw).address("From", needle.as_bytes());
            assert_eq!(got, want, "FROM {needle:?} in {from:?}");
        }
    }

    #[test]
    fn header_from_is_not_rewritten() {
        let raw = crlf(b"From: Anna   Smith <anna@example.org>\nSubject: x\n\nbody\n");
        let t = Text::new(&raw);
        assert!(t.header("From", b"Anna   Smith <anna"));
        assert!(!t.header("From", b"\"Anna Smith\""));
        assert!(t.address("From", b"\"Anna Smith\""));
        assert!(!t.address("From", b"Anna   Smith"));
    }

    fn mixed() -> Vec<u8> {
        crlf(
            b"From: Outer <outer@x.org>\nSubject: outer subj\nContent-Type: multipart/mixed; boundary=\"ZZ\"\n\n\
preambletext\n--ZZ\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\nX-Part-Header: parthdr\n\n\
Caf=E9 cr=E8me soft=\nbreak word  two   spaces=20\nline1\nline2\n\
--ZZ\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
PHA+w5FhbmTDuiA8Yj5ib2xkPC9iPiZhbXA7IGh0bWw8L3A+\n\
--ZZ\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nYXR0YWNoc2VjcmV0\n\
--ZZ\nContent-Type: message/rfc822\n\nFrom: Inner <inner@x.org>\nSubject: =?utf-8?Q?inner_subj_=C3=BC?=\n\ninnerbody\n\
--ZZ\nContent-Type: application/pdf\n\nrawpdftext\n\
--ZZ\nContent-Type: text/csv\n\ncsvtext\n\
--ZZ\nContent-Type: image/png\n\npngtext\n\
--ZZ\n\nnoctpart\n\
--ZZ\nContent-Type: message/delivery-status\n\nReporting-MTA: dsn; mtaname\n\
--ZZ\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogYjY0aW5uZXIKCmI2NGlubmVyYm9keQo=\n\
--ZZ\nContent-Type: text\n\nbaretext\n\
--ZZ\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nuuraw\n\
--ZZ\nContent-Type: multipart/digest; boundary=EE\n\n--EE\n\nSubject: digestsubj\n\ndigestbody\n--EE--\n\
--ZZ--\nepiloguetext\n",
        )
    }

    #[test]
    fn body_searches_text_and_message_parts_only() {
        let raw = mixed();
        let t = Text::new(&raw);
        let cases = [
            ("Café crème", true),
            ("ñandú", true),
            ("<b>bold</b>&amp;", true),
            ("innerbody", true),
            ("csvtext", true),
            ("noctpart", true),
            ("mtaname", true),
            ("digestbody", true),
            ("attachsecret", false),
            ("rawpdftext", false),
            ("pngtext", false),
            ("b64inner", false),
            ("baretext", false),
            ("uuraw", false),
            ("preambletext", false),
            ("epiloguetext", false),
            ("parthdr", false),
            ("Content-Type", false),
            ("inner subj", false),
            ("digestsubj", false),
            ("outer subj", false),
            ("", true),
        ];
        for (needle, want) in cases {
            assert_eq!(t.body(needle.as_bytes()), want, "BODY {needle:?}");
        }
    }

    #[test]
    fn text_is_every_header_block_with_its_body() {
        let raw = mixed();
        let t = Text::new(&raw);
        let cases = [
            ("outer subj", true),
            ("From: Outer <outer@x.org>\r\n", true),
            ("parthdr\r\n\r\nCafé", true),
            ("inner subj ü", true),
            ("Subject: inner subj ü\r\n\r\ninnerbody", true),
            ("digestsubj", true),
            ("image/png", true),
            ("Reporting-MTA", true),
            ("innerbody", true),
            ("pngtext", false),
            ("preambletext", false),
            ("boundary=\"ZZ\"\r\n\r\nContent", false),
            ("Content-Type: message/rfc822\r\n\r\nFrom", false),
            ("lines2\r\nContent", false),
            ("=?utf-8?Q?inner", false),
            ("", true),
        ];
        for (needle, want) in cases {
            assert_eq!(t.text(needle.as_bytes()), want, "TEXT {needle:?}");
        }
        let raw = crlf(
            b"From: a@b.c\nSubject:   lead  and\n  more\nX-Multi: one\nX-Multi: two\n\nbodystart\n",
        );
        let t = Text::new(&raw);
        assert!(
            t.text(b"Subject:   lead  and  more\r\nX-Multi: one\r\nX-Multi: two\r\n\r\nbodystart")
        );
    }

    #[test]
    fn body_parts_are_searched_separately() {
        let raw = crlf(
            b"Subject: s\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\npart1\n--B\nContent-Type: text/plain\n\npart2\n--B--\n",
        );
        let t = Text::new(&raw);
        assert!(t.body(b"part1") && t.body(b"part2"));
        for needle in ["part1part2", "part1\r\npart2", "part1\npart2", "part1\r\n"] {
            assert!(!t.body(needle.as_bytes()), "{needle:?}");
        }
    }

    #[test]
    fn body_decodes_transfer_encodings_and_charsets() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9 cr=E8me\n", "café crème", true),
            (b"Content-Type: text/plain; charset=\"UTF-8\"\nContent-Transfer-Encoding: BASE64\n\nY2Fmw6kgdXBwZXI=\n", "café upper", true),
            (b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nY2Fmw6kgdXBwZXI=\n", "Y2Fm", false),
            (b"Content-Type: text/plain; charset=iso-8859-1\n\nlatin8 caf\xe9\n", "latin8 café", true),
            (b"Content-Type: text/plain; charset=iso-8859-1\n\nlat \x80 end\n", "lat \u{80} end", true),
            (b"Content-Type: text/plain; charset=windows-1252\n\nwin \x80uro\n", "win €uro", true),
            (b"Content-Type: text/plain; charset=iso-8859-15\n\niso15 \xa4uro\n", "iso15 €uro", true),
            (b"Content-Type: text/plain; charset=koi8-r\n\nkoi \xf0\xd2\xc9\xd7\xc5\xd4\n", "koi привет", true),
            (b"Content-Type: text/plain; charset=utf-16\nContent-Transfer-Encoding: base64\n\n//51AHQAZgAxADYAdABlAHgAdAA=\n", "utf16text", true),
            (b"Content-Type: text/plain; charset=x-unknown\n\nUNKBODY lowbody caf\xc3\xa9\n", "unkbody LOWBODY café", true),
            (b"Content-Type: text/plain; charset=us-ascii\n\nascii \xc3\xa9t\xc3\xa9 more\n", "ascii été more", true),
            (b"Content-Type: text/plain\n\nnocharset caf\xe9 and utf8 \xc3\xb1\n", "caf\u{fffd} and utf8 ñ", true),
            (b"Content-Type: text/plain;\n charset=\"iso-8859-1\"; format=flowed\n\nfolded caf\xe9\n", "folded café", true),
            (b"Content-Type: TEXT/PLAIN\n\nuppertype\n", "uppertype", true),
        ];
        assert_bodies(cases);
    }

    #[test]
    fn body_line_breaks_follow_the_transfer_encoding() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"\nline1\nline2\n", "line1\nline2\n", true),
            (b"\nline1\nline2\n", "line1\r\nline2", false),
            (b"\ncr1\rcr2 end\n", "cr1\rcr2", true),
            (b"Content-Transfer-Encoding: quoted-printable\n\nqp1\nqp2 qpcr=0D=0Aqq qplf=0Aqq\n", "qp1\r\nqp2", true),
            (b"Content-Transfer-Encoding: quoted-printable\n\nqp1\nqp2 qpcr=0D=0Aqq qplf=0Aqq\n", "qpcr\r\nqq qplf\nqq", true),
            (b"Content-Transfer-Encoding: quoted-printable\n\nqp1\nqp2\n", "qp1\nqp2", false),
            (b"Content-Transfer-Encoding: base64\n\nYjY0Y3JsZjENCmI2NGNybGYyIGI2NGxmMQpiNjRsZjI=\n", "b64crlf1\r\nb64crlf2 b64lf1\nb64lf2", true),
            (b"Content-Transfer-Encoding: base64\n\nYjY0Y3JsZjENCmI2NGNybGYyIGI2NGxmMQpiNjRsZjI=\n", "b64crlf1\nb64crlf2", false),
            (b"\nno trailing newline", "newline", true),
            (b"\nends with newline\n", "newline\n", true),
        ];
        assert_bodies(cases);
    }

    #[test]
    fn quoted_printable_and_base64_are_decoded_leniently() {
        let qp = crlf(
            b"Subject: s\nContent-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak qa=ZZb qc=3dd trailing   \nqe= \nf q=\ng last=\n",
        );
        let t = Text::new(&qp);
        for (needle, want) in [
            ("softbreak", true),
            ("soft=", false),
            ("qa=zzb qc=d trailing\r\nqef qg last", true),
            ("trailing ", false),
        ] {
            assert_eq!(t.body(needle.as_bytes()), want, "{needle:?}");
        }
        let b64 = crlf(b"Subject: s\nContent-Transfer-Encoding: base64\n\nYWJj\n!!ZGVm\n");
        let t = Text::new(&b64);
        assert!(t.body(b"abc"));
        assert!(!t.body(b"def"));
    }

    #[test]
    fn body_replaces_invalid_utf8_and_drops_an_incomplete_tail() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"zz\xe9\nnext\n", "zz\u{fffd}\nnext", true),
            (b"zz\xe2\x82\n", "zz\u{fffd}\n", true),
            (b"zz\xe9\xe9 x\n", "zz\u{fffd} x", true),
            (b"zz\xc3", "zz\u{fffd}", false),
            (b"zz\xc3", "zz", true),
            (b"zz\xe9\n", "zz\u{fffd}", false),
            (b"zz\xb1", "zz\u{fffd}", true),
        ];
        for &(body, needle, want) in cases {
            let raw = [crlf(b"From: a@b.c\nSubject: s\n\n").as_slice(), body].concat();
            let got = Text::new(&raw).body(needle.as_bytes());
            assert_eq!(got, want, "BODY {needle:?} in {body:?}");
        }
    }

    #[test]
    fn multipart_boundaries_match_by_prefix_innermost_first() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BBextra\nContent-Type: text/plain\n\nprefixpart\n--BB \nContent-Type: text/plain\n\nspacepart\n--BB--\n", "prefixpart", true),
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BBextra\nContent-Type: text/plain\n\nprefixpart\n--BB \nContent-Type: text/plain\n\nspacepart\n--BB--\n", "spacepart", true),
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BB\nContent-Type: multipart/alternative; boundary=BB2\n\n--BB2\nContent-Type: text/plain\n\ninnerA\n--BB\nContent-Type: text/plain\n\nouterB\n--BB--\n", "innerA", true),
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BB\nContent-Type: multipart/alternative; boundary=BB2\n\n--BB2\nContent-Type: text/plain\n\ninnerA\n--BB\nContent-Type: text/plain\n\nouterB\n--BB--\n", "outerB", true),
            (b"Content-Type: multipart/mixed\n\n--BB\nContent-Type: text/plain\n\nnoboundary\n--BB--\n", "noboundary", false),
            (b"Content-Type: multipart/mixed; boundary=\"BB\"\n\n--BB\nContent-Type: text/plain\n\nnoclose\n", "noclose\n", true),
            (b"Content-Type: garbage\n\ngarbagetype\n", "garbagetype", false),
            (b"Content-Type: message/rfc822\n\nSubject: toplevelrfc\n\ntoprfcbody\n", "toprfcbody", true),
        ];
        assert_bodies(cases);
    }

    /// Each expectation is what Dovecot 2.3.19 answered for the same message.
    #[test]
    fn parts_are_split_by_the_first_content_type_and_decoded_by_the_last() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\npartone\n--B--\n", "partone", false),
            (b"Content-Type: multipart/mixed; boundary=B\nContent-Type: text/plain\n\npre\n--B\n\npartone\n--B--\n", "partone", true),
            (b"Content-Type: multipart/mixed; boundary=B\nContent-Type: text/plain\n\npre\n--B\n\npartone\n--B--\n", "pre", false),
            (b"Content-Type: image/png\nContent-Type: text/plain\n\nlasttext\n", "lasttext", true),
            (b"Content-Type: text/plain\nContent-Type: image/png\n\nlastimage\n", "lastimage", false),
            (b"Content-Transfer-Encoding: base64\nContent-Transfer-Encoding: 7bit\n\naGVsbG93b3JsZA==\n", "aGVsbG93", true),
            (b"Content-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: base64\n\naGVsbG93b3JsZA==\n", "helloworld", true),
            (b"Content-Type: text/plain garbage\n\ngarbagetail\n", "garbagetail", false),
            (b"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nemptyboundary\n----\n", "emptyboundary", true),
            (b"Content-Type: multipart/mixed; boundary*0=a; boundary*1=b\n\n--ab\n\nrfc2231\n--ab--\n", "rfc2231", true),
            (b"Content-Type: multipart/mixed; foo; boundary=B\n\n--B\n\nafterbadparam\n--B--\n", "afterbadparam", false),
            (b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nSubject: inner\n\nencodedinner\n", "encodedinner", true),
        ];
        assert_bodies(cases);
        let raw = crlf(
            b"Subject: s\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA0KDQp5DQo=\n",
        );
        assert!(Text::new(&raw).text(b"U3ViamVj"));
        assert!(!Text::new(&raw).body(b"U3ViamVj"));
    }

    #[test]
    fn garbage_in_an_address_list_reads_as_a_missing_address() {
        for (value, needle, want) in [
            (";, @, x@y", "<MISSING_MAILBOX@MISSING_DOMAIN>", true),
            (";, @, x@y", "x@y", false),
            ("x@y, ;", "<x@y>, <MISSING_MAILBOX@MISSING_DOMAIN>", true),
            ("x@y ;, z@w", "MISSING", false),
        ] {
            let raw = crlf(format!("From: a@b\nBcc: {value}\n\nbody\n").as_bytes());
            assert_eq!(
                Text::new(&raw).address("Bcc", needle.as_bytes()),
                want,
                "BCC {needle:?} in {value:?}"
            );
        }
    }

    /// BODY `needle` in a message with a common header followed by `part` (its own
    /// header lines and body) matches as `want` says.
    fn assert_bodies(cases: &[(&[u8], &str, bool)]) {
        for &(part, needle, want) in cases {
            let raw = crlf(&[b"From: a@b.c\nSubject: s\n", part].concat());
            let got = Text::new(&raw).body(needle.as_bytes());
            assert_eq!(
                got,
                want,
                "BODY {needle:?} in {:?}",
                String::from_utf8_lossy(part)
            );
        }
    }

    #[test]
    fn needle_ends_at_nul() {
        let raw = crlf(b"From: a@b.c\nX-Foo: first\nSubject: s\n\nbody\n");
        assert!(Text::new(&raw).header("X-Foo", b"first\0zzz"));
        assert!(Text::new(&raw).body(b"\0zzz"));
    }

    #[test]
    fn sent_date_is_the_date_as_written_or_the_epoch() {
        let epoch = date(1970, 1, 1);
        let cases: &[(Option<&str>, NaiveDate)] = &[
            (Some("Mon, 1 Jan 2024 23:30:00 -0500"), date(2024, 1, 1)),
            (Some("Mon, 1 Jan 2024 00:30:00 +0900"), date(2024, 1, 1)),
            (
                Some("Mon, 15 Jan 2024 23:30:00 -0500 (EST)"),
                date(2024, 1, 15),
            ),
            (Some("Mon, 1 Jan 2024 23:30:00 +2500"), date(2024, 1, 1)),
            (Some("Mon, 1 Jan 2024 23:30:00 XYZ"), date(2024, 1, 1)),
            (Some("Mon, 1 Jan 2024 10:00:00"), date(2024, 1, 1)),
            (None, epoch),
            (Some(""), epoch),
            (Some("garbage"), epoch),
            (Some("2024-01-05T10:00:00Z"), epoch),
            (
                Some("=?utf-8?Q?Mon=2C_1_Jan_2024_10=3A00=3A00_+0000?="),
                epoch,
            ),
            (Some("1 Jan 99 10:00:00 GMT"), date(1999, 1, 1)),
            (Some("Mon, 01 Jan 24 10:00:00 +0000"), date(2024, 1, 1)),
            (Some("Mon, 01 Jan 69 10:00:00 +0000"), date(2069, 1, 1)),
            (Some("Mon, 01 Jan 70 10:00:00 +0000"), date(1970, 1, 1)),
            (Some("1 Jan 124 10:00:00 +0000"), epoch),
            (Some("1 Jan 02024 10:00:00 +0000"), epoch),
            (Some("Mon, 1 Jan 2024 23:30 -0500"), date(2024, 1, 1)),
            (Some("Mon 1 Jan 2024 23:30:00 -0500"), epoch),
            (Some("Mon ,1 Jan 2024 10:00:00 +0000"), date(2024, 1, 1)),
            (Some("Monday, 1 Jan 2024 10:00:00 +0000"), epoch),
            (Some("Foo, 1 Jan 2024 10:00:00 +0000"), date(2024, 1, 1)),
            (Some(", 1 Jan 2024 10:00:00 +0000"), epoch),
            (
                Some("(comment) Mon, 1 Jan 2024 10:00:00 +0000"),
                date(2024, 1, 1),
            ),
            (Some("Mon, 1 Jan 2024\n 10:00:00 +0000"), date(2024, 1, 1)),
            (Some("1 January 2024 10:00:00 +0000"), date(2024, 1, 1)),
            (Some("1 JAN 2024 10:00:00 +0000"), date(2024, 1, 1)),
            (Some("1 Ja 2024 10:00:00 +0000"), epoch),
            (Some("001 Jan 2024 10:00:00 +0000"), epoch),
            (Some("0 Jan 2024 10:00:00 +0000"), epoch),
            (Some("1-Jan-2024 10:00:00 +0000"), epoch),
            (Some("1 Jan 2024 9:05:03 +0000"), date(2024, 1, 1)),
            (Some("1 Jan 2024 09:5:03 +0000"), epoch),
            (Some("1 Jan 2024 10 : 00 : 00 +0000"), date(2024, 1, 1)),
            (Some("1 Jan 2024 10.00.00 +0000"), date(2024, 1, 1)),
            (Some("1 Jan 2024 10,00,00 +0000"), epoch),
            (Some("1 Jan 2024 10"), epoch),
            (Some("1 Jan 2024"), epoch),
            (Some("1 Jan 2024 10:00:00+0000"), epoch),
            (Some("1 Jan 2024 10:00:00.123 +0000"), epoch),
            (Some("1 Jan 2024 10:00:00 ,"), epoch),
            (Some("1 Jan 2024 10:00:00 \"zone\""), epoch),
            (Some("1 Jan 2024 10:00:00 garbage"), date(2024, 1, 1)),
            (Some("1 Jan 2024 10:00:00 +0000 ,"), date(2024, 1, 1)),
            (Some("31 Feb 2024 10:00:00 +0000"), epoch),
            (Some("29 Feb 2024 10:00:00 +0000"), date(2024, 2, 29)),
            (Some("29 Feb 2023 10:00:00 +0000"), epoch),
            (Some("1 Jan 2024 10:00:60 +0000"), date(2024, 1, 1)),
            (Some("1 Jan 2024 10:00:61 +0000"), epoch),
            (Some("1 Jan 2024 24:00:00 +0000"), epoch),
            (Some("1 Jan 1899 10:00:00 +0000"), epoch),
            (Some("31 Dec 1969 23:59:59 +0000"), epoch),
            (Some("Thu, 01 Jan 1970 00:30:00 -0100"), date(1970, 1, 1)),
            (Some("Thu, 01 Jan 1970 00:30:00 +0100"), date(2106, 2, 7)),
            (Some("Mon, 01 Jan 1969 10:00:00 +0000"), date(2105, 2, 7)),
            (Some("Thu, 01 Jan 1900 10:00:00 +0000"), date(2036, 2, 7)),
            (Some("Thu, 01 Jan 9999 10:00:00 +0000"), date(2105, 1, 29)),
            (Some("Thu, 01 Jan 2100 10:00:00 +0000"), date(2100, 1, 1)),
        ];
        for &(value, want) in cases {
            let header = match value {
                Some(v) => format!("Date: {v}\n"),
                None => String::new(),
            };
            let raw = crlf(format!("From: a@b.c\n{header}Subject: s\n\nbody\n").as_bytes());
            let got = Text::new(&raw).sent_date(1_700_000_000);
            assert_eq!(got, Some(want), "Date: {value:?}");
        }
    }

    #[test]
    fn sent_date_uses_the_first_date_field() {
        let raw = crlf(
            b"Date: Mon, 3 Jan 2024 10:00:00 +0000\nDate: Mon, 4 Jan 2024 10:00:00 +0000\n\nx\n",
        );
        assert_eq!(Text::new(&raw).sent_date(0), Some(date(2024, 1, 3)));
        let raw = crlf(b"Date: garbage\nDate: Mon, 4 Jan 2024 10:00:00 +0000\n\nx\n");
        assert_eq!(Text::new(&raw).sent_date(0), Some(date(1970, 1, 1)));
    }

    #[test]
    fn decomposition_table_is_sorted_and_complete_for_latin() {
        for (c, want) in [
            ('é', "e\u{301}"),
            ('Ñ', "N\u{303}"),
            ('ǖ', "ü\u{304}"),
            ('\u{212b}', "A\u{30a}"),
            ('\u{2126}', "\u{3a9}"),
            ('ﬀ', "ff"),
            ('Ａ', "A"),
            ('𝐀', "A"),
            ('\u{a0}', " "),
        ] {
            let got: String = decomposition(c).map(|d| d.collect()).unwrap_or_default();
            assert_eq!(got, want, "{c:?}");
        }
        assert!(decomposition('a').is_none());
        let index = &decompositions().index;
        assert!(index.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(index.len() > 3000);
    }
}
