//! MIME structure of a stored message: the one parsing layer for FETCH and SEARCH.
//! It owns the part tree, header fields, Content-Type and its parameters, the RFC
//! 5322/2045 lexer and the address-list parser, and writes from them ENVELOPE, BODY
//! and BODYSTRUCTURE (RFC 3501 7.4.2) and body sections `BODY[1.2.MIME]`,
//! `BODY[n.HEADER.FIELDS (...)]` (RFC 3501 6.4.5). search.rs reads the same tree and
//! fields (`pub(super)`). Pure functions of the raw message bytes; no I/O.
//!
//! Implementation notes
//! - The message is parsed once into a tree of [`Part`]s borrowing the raw bytes:
//!   each part has a header block (up to and including the blank line; the whole
//!   part when there is none) and a body. A multipart body is cut at lines beginning
//!   with `--boundary` (RFC 2046 5.1.1); the boundaries of all enclosing multiparts
//!   count, the longest that matches wins (as Dovecot), so a boundary line of an
//!   outer multipart also ends an inner one. The CRLF before a delimiter belongs to
//!   the delimiter, so it is not counted in the part's size. The preamble and
//!   epilogue are ignored; a missing close delimiter ends the last part at the end
//!   of its parent. `message/rfc822` parts (and the parts of `multipart/digest`, RFC
//!   2046 5.1.5) hold an embedded message, parsed the same way, whatever their
//!   transfer encoding. Nesting is cut at 64 levels.
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
//!   list ends there.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{Part as PartPath, Section};

use super::wire;

/// One MIME entity.
pub(super) struct Part<'a> {
    /// The header block, including the blank line that ends it when there is one.
    pub(super) header: &'a [u8],
    /// Everything after the header block, up to the part's end.
    pub(super) body: &'a [u8],
    ctype: ContentType,
    kind: Kind<'a>,
}

pub(super) enum Kind<'a> {
    Leaf,
    /// The parts between the delimiters: none when the boundary is missing or never
    /// occurs.
    Multipart(Vec<Part<'a>>),
    /// `message/rfc822`: the embedded message.
    Message(Box<Part<'a>>),
}

impl<'a> Part<'a> {
    pub(super) fn kind(&self) -> &Kind<'a> {
        &self.kind
    }
    /// The Content-Type the structure follows (the first one), or the default.
    pub(super) fn content_type(&self) -> &ContentType {
        &self.ctype
    }
}

/// A parsed Content-Type. `valid` is false when the header did not parse; then the
/// type and subtype are what could be read and there are no parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ContentType {
    pub(super) ty: String,
    pub(super) subtype: String,
    pub(super) params: Vec<(String, String)>,
    pub(super) valid: bool,
}

impl ContentType {
    /// The type of a part without Content-Type (RFC 2045 5.2, RFC 2046 5.1.5).
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
            valid: true,
        }
    }
    pub(super) fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subtype.eq_ignore_ascii_case(subtype)
    }
    pub(super) fn is_text(&self) -> bool {
        self.ty.eq_ignore_ascii_case("text")
    }
    fn is_multipart(&self) -> bool {
        self.ty.eq_ignore_ascii_case("multipart")
    }
    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

// ------------------------------------------------------------------ parsing

/// Nesting deeper than this is not parsed: a multipart or message/rfc822 part at
/// this depth is a leaf (a guard against hostile messages).
const MAX_DEPTH: usize = 64;

/// Parses a whole message.
pub(super) fn parse(raw: &[u8]) -> Part<'_> {
    parse_entity(raw, 0, false, &mut Vec::new(), 0).0
}

/// The header block of a message (see [`Part::header`]) without parsing the rest.
pub(super) fn message_header(raw: &[u8]) -> &[u8] {
    let (end, _) = header_block(raw, 0, &[]);
    &raw[..end]
}

/// End of the line starting at `start`: the index after its LF, or the end.
pub(super) fn line_end(raw: &[u8], start: usize) -> usize {
    raw[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |p| start + p + 1)
}

pub(super) fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The entity at `start` and where it stops: the start of the boundary line (of an
/// enclosing multipart, `stack` from outermost to innermost) that ends it, or the
/// end of `raw`. The CRLF before that line belongs to the delimiter.
fn parse_entity<'a>(
    raw: &'a [u8],
    start: usize,
    in_digest: bool,
    stack: &mut Vec<Vec<u8>>,
    depth: usize,
) -> (Part<'a>, usize) {
    let (header_end, body_start) = header_block(raw, start, stack);
    let header = &raw[start..header_end];
    // The first Content-Type decides the structure (as Dovecot's parser).
    let ctype = header_first(header, "Content-Type")
        .map(|v| parse_content_type(&lossy(&unfold(v))))
        .unwrap_or_else(|| ContentType::default_for(in_digest));
    let (kind, stop) = if depth >= MAX_DEPTH {
        (Kind::Leaf, next_boundary(raw, body_start, stack))
    } else if ctype.is_multipart() {
        let digest = ctype.subtype.eq_ignore_ascii_case("digest");
        let mut children = Vec::new();
        let stop = match ctype.param("boundary") {
            None => next_boundary(raw, body_start, stack),
            Some(b) => {
                stack.push(b.as_bytes().to_vec());
                let stop = scan_multipart(raw, body_start, digest, stack, depth, &mut children);
                stack.pop();
                stop
            }
        };
        (Kind::Multipart(children), stop)
    } else if ctype.is("message", "rfc822") {
        // Looked into whatever the transfer encoding says (as Dovecot).
        let (inner, stop) = parse_entity(raw, body_start, false, stack, depth + 1);
        (Kind::Message(Box::new(inner)), stop)
    } else {
        (Kind::Leaf, next_boundary(raw, body_start, stack))
    };
    let mut end = stop;
    if stop < raw.len() && end > start && raw[end - 1] == b'\n' {
        end -= 1;
        if end > start && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    let part = Part {
        header: &raw[start..header_end.min(end)],
        body: &raw[body_start.min(end)..end],
        ctype,
        kind,
    };
    (part, stop)
}
/// The header block of the entity at `start`: (end of the header, start of the
/// body). It ends after an empty line, or at a boundary line of an enclosing
/// multipart (then the body is empty), or at the end.
fn header_block(raw: &[u8], start: usize, stack: &[Vec<u8>]) -> (usize, usize) {
    let mut ls = start;
    while ls < raw.len() {
        let le = line_end(raw, ls);
        let content = strip_eol(&raw[ls..le]);
        if content.is_empty() {
            return (le, le);
        }
        if boundary_of(content, stack).is_some() {
            return (ls, ls);
        }
        ls = le;
    }
    (raw.len(), raw.len())
}

/// The parts of the multipart whose boundary is the last one on `stack`, from its
/// body at `from` (RFC 2046 5.1.1): the preamble is skipped, each delimiter starts a
/// part, the close delimiter ends them and the epilogue runs to the next boundary
/// line of an enclosing multipart. A boundary line of an enclosing multipart also
/// ends the multipart when there was no close delimiter. Returns where it stops.
fn scan_multipart<'a>(
    raw: &'a [u8],
    from: usize,
    digest: bool,
    stack: &mut Vec<Vec<u8>>,
    depth: usize,
    children: &mut Vec<Part<'a>>,
) -> usize {
    let level = stack.len() - 1;
    let mut pos = from;
    loop {
        let Some(b) = find_boundary(raw, pos, stack) else {
            return raw.len();
        };
        if b.level != level {
            return b.start;
        }
        if b.close {
            return next_boundary(raw, b.next, &stack[..level]);
        }
        let (part, stop) = parse_entity(raw, b.next, digest, stack, depth + 1);
        children.push(part);
        pos = stop;
    }
}

/// The multipart boundary a line (without its line break) starts, as an index into
/// `stack`, and whether it is a close delimiter. As Dovecot: the longest boundary
/// that the line starts with wins, the innermost among equal ones, and one that
/// matches the whole line (with or without the closing `--`) ends the search.
fn boundary_of(line: &[u8], stack: &[Vec<u8>]) -> Option<(usize, bool)> {
    let rest = line.strip_prefix(b"--")?;
    let dashes = rest.len() > 2 && rest.ends_with(b"--");
    let mut best: Option<usize> = None;
    for (level, b) in stack.iter().enumerate().rev() {
        if rest.starts_with(b) && best.is_none_or(|i| stack[i].len() < b.len()) {
            best = Some(level);
            if b.len() == rest.len() || (dashes && b.len() + 2 == rest.len()) {
                break;
            }
        }
    }
    best.map(|level| (level, rest[stack[level].len()..].starts_with(b"--")))
}

struct BoundaryLine {
    start: usize,
    next: usize,
    level: usize,
    close: bool,
}

/// The first boundary line at or after `from`.
fn find_boundary(raw: &[u8], from: usize, stack: &[Vec<u8>]) -> Option<BoundaryLine> {
    if stack.is_empty() {
        return None;
    }
    let mut ls = from;
    while ls < raw.len() {
        let le = line_end(raw, ls);
        if let Some((level, close)) = boundary_of(strip_eol(&raw[ls..le]), stack) {
            return Some(BoundaryLine {
                start: ls,
                next: le,
                level,
                close,
            });
        }
        ls = le;
    }
    None
}

/// Where a leaf at `from` stops: the next boundary line, or the end.
fn next_boundary(raw: &[u8], from: usize, stack: &[Vec<u8>]) -> usize {
    find_boundary(raw, from, stack).map_or(raw.len(), |b| b.start)
}

// ------------------------------------------------------------------ header fields

/// One header field: `line` is the whole field (continuation lines included)
/// without its final line break, `name` what precedes the colon without the blanks
/// before it (empty for a line without a colon), `value` what follows the colon.
pub(super) struct Field<'a> {
    pub(super) line: &'a [u8],
    pub(super) name: &'a [u8],
    pub(super) value: &'a [u8],
}

impl Field<'_> {
    pub(super) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The fields of a header block, up to the empty line that ends it. A line that
/// starts with a blank continues the field before it.
pub(super) fn fields(header: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= header.len() {
            return None;
        }
        let start = pos;
        let first = strip_eol(&header[start..line_end(header, start)]);
        if first.is_empty() {
            pos = header.len();
            return None;
        }
        let mut end = line_end(header, start);
        while end < header.len() && matches!(header[end], b' ' | b'\t') {
            end = line_end(header, end);
        }
        pos = end;
        let line = strip_eol(&header[start..end]);
        let (name, value) = match first.iter().position(|&b| b == b':') {
            Some(c) => {
                let mut name = &first[..c];
                while let [rest @ .., b' ' | b'\t'] = name {
                    name = rest;
                }
                (name, &line[c + 1..])
            }
            None => (&line[..0], &line[line.len()..]),
        };
        Some(Field { line, name, value })
    })
}

/// Removes CR and LF (unfolding, RFC 5322 2.2.3), keeping the blanks that follow.
pub(super) fn unfold(v: &[u8]) -> Vec<u8> {
    v.iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// The first occurrence of a field, as written after the colon.
fn header_first<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    fields(header).find(|f| f.is(name)).map(|f| f.value)
}

/// The last occurrence of a field with leading blanks and line breaks removed,
/// still folded.
fn header_folded<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    fields(header)
        .filter(|f| f.is(name))
        .last()
        .map(|f| trim_lead(f.value))
}

/// A value without its leading blanks and line breaks.
fn trim_lead(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(v.len());
    &v[start..]
}

/// The last occurrence of a field, unfolded, with leading blanks removed.
fn header_raw(header: &[u8], name: &str) -> Option<Vec<u8>> {
    header_folded(header, name).map(unfold)
}

// ------------------------------------------------------------------ RFC 2045 lexer

/// A cursor over a structured header value (RFC 5322 3.2, RFC 2045 5.1).
pub(super) struct Lexer<'a> {
    pub(super) s: &'a [u8],
    pub(super) pos: usize,
}

const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

/// RFC 5322 specials (RFC 822's, with `.`).
const SPECIALS: &[u8] = b"()<>@,;:\\\".[]";

/// An RFC 822 atom character.
pub(super) fn is_atext(b: u8) -> bool {
    b > b' ' && b != 0x7f && !SPECIALS.contains(&b)
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer::bytes(s.as_bytes())
    }
    pub(super) fn bytes(s: &'a [u8]) -> Self {
        Lexer { s, pos: 0 }
    }
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    /// Skips blanks and comments; returns the text of the comments skipped.
    pub(super) fn skip_cfws(&mut self) -> Vec<Vec<u8>> {
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
    /// Skips blanks and comments: (anything skipped, the last comment's text).
    pub(super) fn skip_cfws_last(&mut self) -> (bool, Option<Vec<u8>>) {
        let start = self.pos;
        let last = self.skip_cfws().pop();
        (self.pos > start, last)
    }
    /// A quoted string's content (unescaped, line breaks dropped), if one starts here.
    pub(super) fn quoted_bytes(&mut self) -> Option<Vec<u8>> {
        if self.peek() != Some(b'"') {
            return None;
        }
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
                b'\r' | b'\n' => {}
                _ => out.push(b),
            }
        }
        Some(out)
    }
    /// A quoted string as text; the cursor is on `"`.
    fn quoted(&mut self) -> String {
        lossy(&self.quoted_bytes().unwrap_or_default())
    }
    /// An RFC 822 atom, if one starts here.
    pub(super) fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(is_atext) {
            self.pos += 1;
        }
        let s: &'a [u8] = self.s;
        (self.pos > start).then(|| &s[start..self.pos])
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

/// Content-Type (RFC 2045 5.1). Unparsable values (also an empty subtype, as
/// Dovecot) keep what was read of type and subtype and lose their parameters.
pub(super) fn parse_content_type(v: &str) -> ContentType {
    let broken = |ty: &str, subtype: &str| ContentType {
        ty: ty.into(),
        subtype: subtype.into(),
        params: Vec::new(),
        valid: false,
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
    if subtype.is_empty() || (!lx.at_end() && lx.peek() != Some(b';')) {
        return broken("", "");
    }
    ContentType {
        ty,
        subtype,
        params: lx.params(),
        valid: true,
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

// ------------------------------------------------------------------ addresses

struct Word {
    text: Vec<u8>,
    /// An atom or a dot (not a quoted string).
    bare: bool,
    /// Whitespace or a comment came before it.
    gap: bool,
}

/// Words (atoms, quoted strings, dots) and the last comment among them.
fn phrase(lx: &mut Lexer<'_>) -> (Vec<Word>, Option<Vec<u8>>) {
    let mut words = Vec::new();
    let mut last_comment = None;
    loop {
        let (gap, comment) = lx.skip_cfws_last();
        if comment.is_some() {
            last_comment = comment;
        }
        let word = if let Some(a) = lx.atom() {
            Word {
                text: a.to_vec(),
                bare: true,
                gap,
            }
        } else if let Some(q) = lx.quoted_bytes() {
            Word {
                text: q,
                bare: false,
                gap,
            }
        } else if lx.peek() == Some(b'.') {
            lx.pos += 1;
            Word {
                text: b".".to_vec(),
                bare: true,
                gap,
            }
        } else {
            return (words, last_comment);
        };
        words.push(word);
    }
}

/// Words joined with one space where the field had whitespace or comments.
fn phrase_text(words: &[Word]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 && w.gap {
            out.push(b' ');
        }
        out.extend_from_slice(&w.text);
    }
    out
}

/// Words joined as a local part (no spaces).
fn local_text(words: &[Word]) -> Vec<u8> {
    words.iter().flat_map(|w| w.text.iter().copied()).collect()
}

/// `atom *("." atom)` or a domain literal; `None` when there is none.
fn domain(lx: &mut Lexer<'_>) -> Option<Vec<u8>> {
    lx.skip_cfws();
    if lx.peek() == Some(b'[') {
        let start = lx.pos;
        while let Some(b) = lx.peek() {
            lx.pos += 1;
            if b == b']' {
                break;
            }
        }
        return Some(lx.s[start..lx.pos].to_vec());
    }
    let mut out = lx.atom()?.to_vec();
    loop {
        let save = lx.pos;
        lx.skip_cfws();
        if lx.peek() != Some(b'.') {
            lx.pos = save;
            return Some(out);
        }
        lx.pos += 1;
        lx.skip_cfws();
        out.push(b'.');
        match lx.atom() {
            Some(a) => out.extend_from_slice(a),
            None => return Some(out),
        }
    }
}

/// A mailbox of an address list as Dovecot parses it (`message_address_parse`):
/// `route` keeps its `:`, and `syntax_error` is set when `>` was missing (then the
/// rest of the list was dropped).
#[derive(Default)]
pub(super) struct Mailbox {
    pub(super) name: Vec<u8>,
    pub(super) route: Vec<u8>,
    pub(super) local: Vec<u8>,
    pub(super) domain: Option<Vec<u8>>,
    pub(super) syntax_error: bool,
}

pub(super) enum Item {
    Mailbox(Mailbox),
    GroupStart(Vec<u8>),
    GroupEnd,
}

enum Element {
    Mailbox(Mailbox),
    Group(Vec<u8>),
    /// Nothing before the next `,`, `;` or the end.
    Empty,
}

fn element(lx: &mut Lexer<'_>, in_group: bool) -> Element {
    let (words, comment) = phrase(lx);
    match lx.peek() {
        Some(b':') if !in_group && !words.is_empty() => {
            lx.pos += 1;
            Element::Group(phrase_text(&words))
        }
        Some(b'<') => {
            lx.pos += 1;
            let mut m = angle_addr(lx);
            m.name = phrase_text(&words);
            Element::Mailbox(m)
        }
        Some(b'@') => {
            lx.pos += 1;
            let domain = domain(lx);
            let (_, after) = lx.skip_cfws_last();
            Element::Mailbox(Mailbox {
                name: after.or(comment).unwrap_or_default(),
                local: local_text(&words),
                domain,
                ..Mailbox::default()
            })
        }
        _ if words.is_empty() => Element::Empty,
        _ if words
            .iter()
            .enumerate()
            .all(|(i, w)| w.bare && (i == 0 || !w.gap)) =>
        {
            Element::Mailbox(Mailbox {
                name: comment.unwrap_or_default(),
                local: local_text(&words),
                ..Mailbox::default()
            })
        }
        _ => Element::Mailbox(Mailbox {
            name: phrase_text(&words),
            ..Mailbox::default()
        }),
    }
}

/// After `<`: `[route ":"] local ["@" domain] ">"`.
fn angle_addr(lx: &mut Lexer<'_>) -> Mailbox {
    let mut m = Mailbox::default();
    lx.skip_cfws();
    while lx.peek() == Some(b'@') {
        lx.pos += 1;
        m.route.push(b'@');
        m.route.extend(domain(lx).unwrap_or_default());
        lx.skip_cfws();
        match lx.peek() {
            Some(b',') => {
                lx.pos += 1;
                m.route.push(b',');
                lx.skip_cfws();
            }
            Some(b':') => {
                lx.pos += 1;
                m.route.push(b':');
                break;
            }
            _ => break,
        }
    }
    let (words, _) = phrase(lx);
    m.local = local_text(&words);
    if lx.peek() == Some(b'@') {
        lx.pos += 1;
        m.domain = domain(lx);
        lx.skip_cfws();
    }
    if lx.peek() == Some(b'>') {
        lx.pos += 1;
    } else {
        m.syntax_error = true;
    }
    m
}

/// Parses an address list (RFC 5322 3.4), forgiving errors as Dovecot does.
pub(super) fn parse_addresses(value: &[u8]) -> Vec<Item> {
    let mut lx = Lexer::bytes(value);
    let mut items = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b',') => {
                lx.pos += 1;
                items.push(Item::Mailbox(Mailbox::default()));
                continue;
            }
            Some(_) => {}
        }
        match element(&mut lx, false) {
            Element::Empty => {
                // Garbage where an address belongs: one empty address, and the rest
                // of the list is dropped (as Dovecot).
                items.push(Item::Mailbox(Mailbox::default()));
                break;
            }
            Element::Mailbox(m) => items.push(Item::Mailbox(m)),
            Element::Group(name) => {
                items.push(Item::GroupStart(name));
                lx.skip_cfws();
                if lx.peek() == Some(b';') {
                    lx.pos += 1;
                } else {
                    loop {
                        match element(&mut lx, true) {
                            Element::Mailbox(m) => items.push(Item::Mailbox(m)),
                            _ => items.push(Item::Mailbox(Mailbox::default())),
                        }
                        lx.skip_cfws();
                        match lx.peek() {
                            Some(b',') => lx.pos += 1,
                            Some(b';') => {
                                lx.pos += 1;
                                break;
                            }
                            _ => {
                                items.push(Item::GroupEnd);
                                return items;
                            }
                        }
                    }
                }
                items.push(Item::GroupEnd);
            }
        }
        lx.skip_cfws();
        if lx.peek() != Some(b',') {
            break;
        }
        lx.pos += 1;
    }
    items
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

const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";
pub(super) const SYNTAX_ERROR: &[u8] = b"SYNTAX_ERROR";

fn or_missing(v: Vec<u8>, missing: &[u8]) -> Vec<u8> {
    if v.is_empty() { missing.to_vec() } else { v }
}

/// An address list as ENVELOPE shows it.
fn envelope_addresses(v: &[u8]) -> Vec<Addr> {
    parse_addresses(v)
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
        if let Kind::Multipart(children) = &self.kind {
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

    /// The message a `HEADER`/`TEXT` section of this `message/rfc822` part reads: the
    /// embedded message.
    fn message(&self) -> Option<&Part<'_>> {
        match &self.kind {
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
