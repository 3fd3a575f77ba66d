//! MIME structure of a stored message, for FETCH: ENVELOPE, BODY and BODYSTRUCTURE
//! (RFC 3501 7.4.2) and body sections `BODY[1.2.MIME]`, `BODY[n.HEADER.FIELDS (...)]`
//! (RFC 3501 6.4.5). Pure functions of the raw message bytes; no I/O.
//!
//! Implementation notes
//! - The message is split once into a tree of [`Part`]s borrowing the raw bytes: each
//!   part has a header block (up to and including the blank line; the whole part when
//!   there is none) and a body. A multipart body is cut at lines beginning with
//!   `--boundary` (RFC 2046 5.1.1); the CRLF before a delimiter belongs to the
//!   delimiter, so it is not counted in the part's size. The preamble and epilogue
//!   are ignored; a missing close delimiter ends the last part at the end of its
//!   parent. `message/rfc822` parts (and the parts of `multipart/digest`, RFC 2046
//!   5.1.5) hold an embedded message, parsed the same way.
//! - Where RFC 3501 leaves the answer to malformed input open, the choices follow
//!   Dovecot 2.3 so that clients see the same structure as on the server they came
//!   from (tests/imap_dovecot.rs compares the two on a corpus): ENVELOPE fields are
//!   the raw header values (last occurrence; unfolded, leading blanks dropped; RFC
//!   2047 words left encoded), Sender and Reply-To default to From, missing address
//!   parts are `MISSING_MAILBOX`/`MISSING_DOMAIN`; a multipart without any delimiter
//!   has one empty text/plain part; a Content-Type that does not parse becomes `""
//!   ""` without parameters; text parts get `charset=us-ascii` when they name none;
//!   a `message/rfc822` in base64 or quoted-printable is not looked into; a section
//!   that does not exist is an empty string, and a leaf part answers to one extra
//!   `.1` (so `BODY[1.1]` of a single-part child is the part itself).
//! - Known difference: an extended parameter without a section number (`title*=`)
//!   next to RFC 2231 continuations is shown as `title*`; Dovecot 2.3 shows it as
//!   `title*1*`, which looks like a slip on its side and is not copied.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{Part as PartPath, Section};

use super::wire;

/// One MIME entity.
pub struct Part<'a> {
    /// The header block, including the blank line that ends it when there is one.
    pub header: &'a [u8],
    /// Everything after the header block, up to the part's end.
    pub body: &'a [u8],
    ctype: ContentType,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Leaf,
    Multipart(Vec<Part<'a>>),
    /// `message/rfc822`: the embedded message.
    Message(Box<Part<'a>>),
}

/// A parsed Content-Type. `valid` is false when the header did not parse; then the
/// type and subtype are what could be read and there are no parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ContentType {
    ty: String,
    subtype: String,
    params: Vec<(String, String)>,
    /// Whether the part had a Content-Type header at all (else the default applies).
    explicit: bool,
}

impl ContentType {
    fn default_for(parent_digest: bool) -> Self {
        let (ty, subtype) = if parent_digest {
            ("message", "rfc822")
        } else {
            ("text", "plain")
        };
        ContentType {
            ty: ty.into(),
            subtype: subtype.into(),
            params: Vec::new(),
            explicit: false,
        }
    }
    fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subtype.eq_ignore_ascii_case(subtype)
    }
    fn is_text(&self) -> bool {
        self.ty.eq_ignore_ascii_case("text")
    }
    fn is_multipart(&self) -> bool {
        self.ty.eq_ignore_ascii_case("multipart")
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

// ------------------------------------------------------------------ parsing

/// Parses a whole message.
pub fn parse(raw: &[u8]) -> Part<'_> {
    parse_part(raw, false)
}

fn parse_part(region: &[u8], in_digest: bool) -> Part<'_> {
    let (header, body) = split_header(region);
    let ctype = header_value(header, "Content-Type")
        .map(|v| parse_content_type(&v))
        .unwrap_or_else(|| ContentType::default_for(in_digest));
    let kind = if ctype.is_multipart() {
        let digest = ctype.subtype.eq_ignore_ascii_case("digest");
        let boundary = ctype.param("boundary").map(|b| b.as_bytes().to_vec());
        let mut children: Vec<Part<'_>> = boundary
            .map(|b| split_multipart(body, &b))
            .unwrap_or_default()
            .into_iter()
            .map(|r| parse_part(r, digest))
            .collect();
        if children.is_empty() {
            // No delimiter at all: one empty part (as Dovecot).
            children.push(parse_part(&body[body.len()..], digest));
        }
        Kind::Multipart(children)
    } else if ctype.is("message", "rfc822") {
        let cte = header_value(header, "Content-Transfer-Encoding").unwrap_or_default();
        let cte = cte.trim().to_ascii_lowercase();
        let inner = if cte.is_empty() || matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
            body
        } else {
            // Encoded: the embedded message is not looked into.
            &body[body.len()..]
        };
        Kind::Message(Box::new(parse_part(inner, false)))
    } else {
        Kind::Leaf
    };
    Part {
        header,
        body,
        ctype,
        kind,
    }
}

/// Splits at the first empty line: the header keeps that line. Without one, the
/// whole region is header.
fn split_header(region: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    while pos < region.len() {
        let rest = &region[pos..];
        if rest.starts_with(b"\r\n") {
            return region.split_at(pos + 2);
        }
        if rest.starts_with(b"\n") {
            return region.split_at(pos + 1);
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => pos += i + 1,
            None => break,
        }
    }
    region.split_at(region.len())
}

/// The parts of a multipart body (RFC 2046 5.1.1), as byte ranges of `body`.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut parts = Vec::new();
    // Start of the current part's content, once the first delimiter was seen.
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let line_end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        if body[pos..].starts_with(&delim) {
            if let Some(s) = start {
                // The newline before the delimiter belongs to the delimiter.
                let mut end = pos;
                if end > s && body[end - 1] == b'\n' {
                    end -= 1;
                    if end > s && body[end - 1] == b'\r' {
                        end -= 1;
                    }
                }
                parts.push(&body[s..end]);
            }
            if body[pos + delim.len()..].starts_with(b"--") {
                return parts;
            }
            start = Some(line_end);
        }
        pos = line_end;
    }
    if let Some(s) = start {
        parts.push(&body[s.min(body.len())..]);
    }
    parts
}

/// Iterates the fields of a header block: (name, raw value with folds).
fn fields(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        loop {
            if pos >= header.len() {
                return None;
            }
            let start = pos;
            // A field runs to the end of its last continuation line.
            let mut end = start;
            loop {
                end = header[end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(header.len(), |i| end + i + 1);
                if end >= header.len() || !matches!(header[end], b' ' | b'\t') {
                    break;
                }
            }
            pos = end;
            let field = &header[start..end];
            if let Some(colon) = field.iter().position(|&b| b == b':') {
                let name = field[..colon].trim_ascii_end();
                if !name.is_empty() && !name.contains(&b'\n') {
                    return Some((name, &field[colon + 1..]));
                }
            }
        }
    })
}

/// Removes CR and LF (unfolding, RFC 5322 2.2.3).
fn unfold(v: &[u8]) -> Vec<u8> {
    v.iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// The last occurrence of a field with leading blanks removed, still folded.
fn header_folded<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    fields(header)
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .last()
        .map(|(_, v)| {
            let start = v
                .iter()
                .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(v.len());
            let end = v.len()
                - v.iter()
                    .rev()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
            &v[start..end.max(start)]
        })
}

/// The last occurrence of a field, unfolded, with leading blanks removed.
fn header_raw(header: &[u8], name: &str) -> Option<Vec<u8>> {
    header_folded(header, name).map(unfold)
}

/// Like [`header_raw`], as text (bytes that are not UTF-8 are replaced).
fn header_value(header: &[u8], name: &str) -> Option<String> {
    header_raw(header, name).map(|v| String::from_utf8_lossy(&v).into_owned())
}

// ------------------------------------------------------------------ RFC 2045 lexer

/// A cursor over a structured header value (RFC 5322 3.2, RFC 2045 5.1).
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer::bytes(s.as_bytes())
    }
    fn bytes(s: &'a [u8]) -> Self {
        Lexer { s, pos: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    /// Skips blanks and comments; returns the text of the comments skipped.
    fn skip_cfws(&mut self) -> Vec<Vec<u8>> {
        let mut comments = Vec::new();
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => comments.push(self.comment()),
                _ => break,
            }
        }
        comments
    }
    /// A comment, possibly nested; the cursor is on `(`.
    fn comment(&mut self) -> Vec<u8> {
        let mut depth = 0;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'(' => {
                    if depth > 0 {
                        out.push(b);
                    }
                    depth += 1;
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    out.push(b);
                }
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }
    /// A quoted string; the cursor is on `"`.
    fn quoted(&mut self) -> String {
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    /// An RFC 2045 token (possibly empty).
    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b <= b' ' || b == 0x7f || TSPECIALS.contains(&b) {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }
    /// `;` separated `name=value` parameters (RFC 2045 5.1); stops at the first thing
    /// that is not one. RFC 2231 continuations are joined.
    fn params(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            self.skip_cfws();
            if self.peek() != Some(b';') {
                break;
            }
            self.pos += 1;
            self.skip_cfws();
            let name = self.token();
            self.skip_cfws();
            if self.peek() != Some(b'=') {
                break;
            }
            self.pos += 1;
            self.skip_cfws();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                self.token()
            };
            out.push((name, value));
        }
        join_continuations(out)
    }
}

/// RFC 2231 parameters: the plain ones keep their order; those with a `*` follow,
/// ordered by name, with continuations (`name*0`, `name*1*`, ...) joined into one
/// `name` (none extended) or `name*` (some extended: plain segments are
/// percent-encoded and an unencoded first segment gets an empty `''` charset and
/// language), as Dovecot shows them.
fn join_continuations(params: Vec<(String, String)>) -> Vec<(String, String)> {
    let (mut plain, starred): (Vec<_>, Vec<_>) =
        params.into_iter().partition(|(k, _)| !k.contains('*'));
    // (base, index, extended, value)
    let mut segs: Vec<(String, Option<u32>, bool, String)> = starred
        .into_iter()
        .map(|(k, v)| {
            let (base, rest) = k.split_once('*').unwrap_or((&k, ""));
            let ext = rest.is_empty() || rest.ends_with('*');
            let index = rest.trim_end_matches('*').parse::<u32>().ok();
            (base.to_string(), index, ext, v)
        })
        .collect();
    segs.sort_by_key(|s| (s.0.to_ascii_lowercase(), s.1));
    let mut i = 0;
    while i < segs.len() {
        let base = segs[i].0.clone();
        let group: Vec<_> = segs[i..]
            .iter()
            .take_while(|s| s.0.eq_ignore_ascii_case(&base))
            .collect();
        i += group.len();
        if group.iter().all(|s| !s.2) {
            plain.push((base, group.iter().map(|s| s.3.as_str()).collect()));
            continue;
        }
        let mut value = String::new();
        for (n, (_, _, ext, v)) in group.iter().enumerate() {
            if *ext {
                value.push_str(v);
            } else {
                if n == 0 {
                    value.push_str("''");
                }
                value.push_str(&percent_encode(v));
            }
        }
        plain.push((format!("{base}*"), value));
    }
    plain
}

/// Percent-encodes what is not an RFC 2231 attribute-char.
fn percent_encode(v: &str) -> String {
    let mut out = String::new();
    for &b in v.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Content-Type (RFC 2045 5.1). Unparsable values keep what was read of type and
/// subtype and lose their parameters.
fn parse_content_type(v: &str) -> ContentType {
    let broken = |ty: &str, subtype: &str| ContentType {
        ty: ty.into(),
        subtype: subtype.into(),
        params: Vec::new(),
        explicit: true,
    };
    let mut lx = Lexer::new(v);
    lx.skip_cfws();
    let ty = lx.token();
    if ty.is_empty() {
        return broken("", "");
    }
    lx.skip_cfws();
    if lx.at_end() {
        return broken(&ty, "");
    }
    if lx.peek() != Some(b'/') {
        return broken("", "");
    }
    lx.pos += 1;
    lx.skip_cfws();
    if lx.at_end() {
        return broken("", "");
    }
    let subtype = lx.token();
    lx.skip_cfws();
    if !lx.at_end() && lx.peek() != Some(b';') {
        return broken("", "");
    }
    ContentType {
        ty,
        subtype,
        params: lx.params(),
        explicit: true,
    }
}

/// Content-Disposition (RFC 2183): the type and its parameters.
fn parse_disposition(v: &str) -> (String, Vec<(String, String)>) {
    let mut lx = Lexer::new(v);
    lx.skip_cfws();
    let ty = lx.token();
    (ty, lx.params())
}

/// Content-Language (RFC 3282): a comma-separated list of tags.
fn parse_languages(v: &str) -> Vec<String> {
    let mut lx = Lexer::new(v);
    let mut out = Vec::new();
    loop {
        lx.skip_cfws();
        let tag = lx.token();
        if !tag.is_empty() {
            out.push(tag);
        }
        lx.skip_cfws();
        if lx.peek() != Some(b',') {
            break;
        }
        lx.pos += 1;
    }
    out
}

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

/// A token of an address header (RFC 5322 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Vec<u8>),
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
    Special(u8),
}

/// Tokens of an address list, each with the comments that followed it.
fn address_tokens(v: &[u8]) -> (Vec<Tok>, Vec<Vec<Vec<u8>>>) {
    let mut toks = Vec::new();
    let mut comments: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let mut lx = Lexer::bytes(&v[i..]);
                let c = lx.comment();
                if let Some(last) = comments.last_mut() {
                    last.push(c);
                }
                i += lx.pos;
            }
            b'"' => {
                let mut out = Vec::new();
                i += 1;
                while i < v.len() && v[i] != b'"' {
                    if v[i] == b'\\' && i + 1 < v.len() {
                        i += 1;
                    }
                    out.push(v[i]);
                    i += 1;
                }
                i += 1;
                toks.push(Tok::Quoted(out));
                comments.push(Vec::new());
            }
            b'[' => {
                let end = v[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(v.len(), |e| i + e + 1);
                toks.push(Tok::Literal(v[i..end].to_vec()));
                comments.push(Vec::new());
                i = end;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' => {
                toks.push(Tok::Special(b));
                comments.push(Vec::new());
                i += 1;
            }
            _ => {
                let start = i;
                while i < v.len()
                    && !matches!(
                        v[i],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'('
                            | b')'
                            | b'"'
                            | b'['
                            | b']'
                            | b'<'
                            | b'>'
                            | b'@'
                            | b','
                            | b';'
                            | b':'
                            | b'.'
                            | b'\\'
                    )
                {
                    i += 1;
                }
                if i == start {
                    // A stray `)`, `]` or `\`: skip it.
                    i += 1;
                    continue;
                }
                toks.push(Tok::Word(v[start..i].to_vec()));
                comments.push(Vec::new());
            }
        }
    }
    (toks, comments)
}

const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

fn or_missing(v: Vec<u8>, missing: &[u8]) -> Vec<u8> {
    if v.is_empty() { missing.to_vec() } else { v }
}

/// Parses an address list (RFC 5322 3.4) into ENVELOPE addresses, forgiving errors.
fn parse_addresses(v: &[u8]) -> Vec<Addr> {
    let (toks, comments) = address_tokens(v);
    let mut p = AddrParser {
        toks,
        comments,
        pos: 0,
        out: Vec::new(),
    };
    p.list(false);
    p.out
}

struct AddrParser {
    toks: Vec<Tok>,
    /// `comments[i]` follow token i-1 (`comments[0]` precede the first token).
    comments: Vec<Vec<Vec<u8>>>,
    pos: usize,
    out: Vec<Addr>,
}

impl AddrParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn is(&self, c: u8) -> bool {
        self.peek() == Some(&Tok::Special(c))
    }
    /// address *("," address); inside a group it stops at `;`.
    fn list(&mut self, in_group: bool) {
        if self.peek().is_none() {
            return;
        }
        loop {
            if in_group && (self.is(b';') || self.peek().is_none()) {
                return;
            }
            self.address(in_group);
            if self.is(b',') {
                self.pos += 1;
                if self.peek().is_none() {
                    return;
                }
                continue;
            }
            if self.peek().is_none() || (in_group && self.is(b';')) {
                return;
            }
            // Garbage: skip a token and go on.
            self.pos += 1;
            if self.peek().is_none() {
                return;
            }
        }
    }
    /// Reads words (and dots) up to a special; returns them joined by single spaces,
    /// except around dots.
    fn phrase(&mut self) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        let mut last_dot = false;
        while let Some(t) = self.peek() {
            match t {
                Tok::Word(w) | Tok::Quoted(w) => {
                    if !out.is_empty() && !last_dot {
                        out.push(b' ');
                    }
                    out.extend_from_slice(w);
                    last_dot = false;
                }
                Tok::Special(b'.') => {
                    out.push(b'.');
                    last_dot = true;
                }
                _ => break,
            }
            self.pos += 1;
        }
        out
    }
    /// Text of the last comment among tokens `from..self.pos` (and those after).
    fn last_comment(&self, from: usize) -> Option<Vec<u8>> {
        (from..=self.pos.min(self.comments.len() - 1))
            .rev()
            .find_map(|i| self.comments[i].last().cloned())
    }
    fn address(&mut self, in_group: bool) {
        let start = self.pos;
        // Words up to `@`, `<`, `:` (group) or the end of the element.
        let phrase = self.phrase();
        match self.peek() {
            Some(Tok::Special(b':')) if !in_group => {
                self.pos += 1;
                self.out.push(Addr {
                    mailbox: Some(phrase),
                    ..Addr::default()
                });
                self.list(true);
                if self.is(b';') {
                    self.pos += 1;
                }
                self.out.push(Addr::default());
            }
            Some(Tok::Special(b'<')) => {
                self.pos += 1;
                let mut addr = self.angle_addr();
                addr.name = (!phrase.is_empty()).then_some(phrase);
                self.out.push(addr);
            }
            Some(Tok::Special(b'@')) => {
                // addr-spec: the words were the local part (no spaces between them).
                let local = self.local_from(start);
                self.pos += 1;
                let host = self.domain();
                self.out.push(Addr {
                    name: self.last_comment(start),
                    adl: None,
                    mailbox: Some(or_missing(local, MISSING_MAILBOX)),
                    host: Some(host.unwrap_or_else(|| MISSING_DOMAIN.to_vec())),
                });
            }
            _ => {
                // No `@`: a dot-atom is a local part without domain; anything else
                // (several words, a quoted string) is a name without an address.
                let toks = &self.toks[start..self.pos];
                let dot_atom = toks.iter().enumerate().all(|(i, t)| match t {
                    Tok::Word(_) => i == 0 || toks[i - 1] == Tok::Special(b'.'),
                    Tok::Special(b'.') => true,
                    _ => false,
                });
                let (name, local) = if dot_atom {
                    (self.last_comment(start), self.local_from(start))
                } else {
                    (Some(phrase), Vec::new())
                };
                self.out.push(Addr {
                    name,
                    adl: None,
                    mailbox: Some(or_missing(local, MISSING_MAILBOX)),
                    host: Some(MISSING_DOMAIN.to_vec()),
                });
            }
        }
    }
    /// The local part made of the tokens from `start` to the cursor, without spaces.
    fn local_from(&self, start: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for t in &self.toks[start..self.pos] {
            match t {
                Tok::Word(w) | Tok::Quoted(w) => out.extend_from_slice(w),
                Tok::Special(c) => out.push(*c),
                Tok::Literal(l) => out.extend_from_slice(l),
            }
        }
        out
    }
    /// A domain: words and dots, or a domain literal. None when empty.
    fn domain(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            match t {
                Tok::Word(w) | Tok::Literal(w) => out.extend_from_slice(w),
                Tok::Special(b'.') => out.push(b'.'),
                _ => break,
            }
            self.pos += 1;
        }
        (!out.is_empty()).then_some(out)
    }
    /// After `<`: [route ":"] addr-spec ">".
    fn angle_addr(&mut self) -> Addr {
        let mut addr = Addr::default();
        if self.is(b'@') {
            // Obsolete route: @a,@b:
            let mut route = Vec::new();
            while self.is(b'@') || self.is(b',') {
                let c = if self.is(b'@') { b'@' } else { b',' };
                self.pos += 1;
                route.push(c);
                if c == b'@'
                    && let Some(d) = self.domain()
                {
                    route.extend_from_slice(&d);
                }
            }
            if self.is(b':') {
                self.pos += 1;
            }
            addr.adl = Some(route);
        }
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(Tok::Word(_)) | Some(Tok::Quoted(_)) | Some(Tok::Special(b'.'))
        ) {
            self.pos += 1;
        }
        let local = self.local_from(start);
        let host = if self.is(b'@') {
            self.pos += 1;
            self.domain()
        } else {
            None
        };
        // Skip to the closing `>`.
        while let Some(t) = self.peek() {
            let close = t == &Tok::Special(b'>');
            self.pos += 1;
            if close {
                break;
            }
        }
        addr.mailbox = Some(or_missing(local, MISSING_MAILBOX));
        addr.host = Some(host.unwrap_or_else(|| MISSING_DOMAIN.to_vec()));
        addr
    }
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
    let addrs = |name: &str| raw(name).map(|v| parse_addresses(&v));
    let from = addrs("From").unwrap_or_default();
    // Sender and Reply-To default to From when absent or empty (RFC 3501 7.4.2).
    let or_from = |name: &str| match raw(name) {
        Some(v) if !v.trim_ascii().is_empty() => parse_addresses(&v),
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
    write_envelope(&mut out, split_header(raw).0);
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

impl Part<'_> {
    fn field(&self, name: &str) -> Option<String> {
        header_value(self.header, name)
    }

    /// body-ext-1part / body-ext-mpart tail: disposition, language, location.
    fn write_dsp_lang_loc(&self, out: &mut Vec<u8>) {
        out.push(b' ');
        match self.field("Content-Disposition") {
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
        if let Kind::Multipart(children) = &self.kind {
            for c in children {
                c.write_structure(out, ext);
            }
            out.push(b' ');
            string(out, &self.ctype.subtype);
            if ext {
                out.push(b' ');
                param_list(out, &self.ctype.params);
                self.write_dsp_lang_loc(out);
            }
            out.push(b')');
            return;
        }
        let ct = &self.ctype;
        if let Kind::Message(_) = self.kind {
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
        match &self.kind {
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
            match &part.kind {
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
                && let Kind::Message(inner) = &part.kind
            {
                part = inner;
                absorbed = false;
            }
        }
        Some(part)
    }

    /// The message a `HEADER`/`TEXT` section of this `message/rfc822` part reads: its
    /// body taken as a message, also when it is encoded (as Dovecot).
    fn message(&self) -> Option<Part<'_>> {
        match &self.kind {
            Kind::Message(_) => Some(parse_part(self.body, false)),
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
        Some(p) => root.find(p.0.as_ref())?.message().map(|m| f(&m)),
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
        for (input, want) in cases {
            let mut out = Vec::new();
            write_addresses(&mut out, &parse_addresses(input.as_bytes()));
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
