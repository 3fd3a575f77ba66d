//! Header fields (RFC 5322 2.2): reading the fields of a header block, unfolding,
//! looking a field up by name (first or last occurrence, as the caller needs), and the
//! MIME header values with parameters: Content-Type (RFC 2045 5.1), Content-Disposition
//! (RFC 2183) and Content-Language (RFC 3282), with RFC 2231 continuations joined.
//! Where this reading of parameters differs from Dovecot 2.3 is noted in
//! `imap::mime`, whose BODYSTRUCTURE shows it.

use super::lexer::Lexer;

/// End of the line starting at `start`: the index after its LF, or the end.
pub fn line_end(raw: &[u8], start: usize) -> usize {
    raw[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |p| start + p + 1)
}

/// A line without its line break (LF or CRLF).
pub fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One header field: `line` is the whole field (continuation lines included)
/// without its final line break, `name` what precedes the colon without the blanks
/// before it (empty for a line without a colon), `value` what follows the colon.
pub struct Field<'a> {
    pub line: &'a [u8],
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl Field<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The fields of a header block, up to the empty line that ends it. A line that
/// starts with a blank continues the field before it.
pub fn fields(header: &[u8]) -> impl Iterator<Item = Field<'_>> {
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
pub fn unfold(v: &[u8]) -> Vec<u8> {
    v.iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// The first occurrence of a field, as written after the colon.
pub fn header_first<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    fields(header).find(|f| f.is(name)).map(|f| f.value)
}

/// The last occurrence of a field with leading blanks and line breaks removed,
/// still folded.
pub fn header_folded<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    fields(header)
        .filter(|f| f.is(name))
        .last()
        .map(|f| trim_lead(f.value))
}

/// A value without its leading blanks and line breaks.
pub fn trim_lead(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(v.len());
    &v[start..]
}

/// The last occurrence of a field, unfolded, with leading blanks removed.
pub fn header_raw(header: &[u8], name: &str) -> Option<Vec<u8>> {
    header_folded(header, name).map(unfold)
}

// ------------------------------------------------------------------ MIME values

/// A parsed Content-Type. `valid` is false when the header did not parse; then the
/// type and subtype are what could be read and there are no parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentType {
    pub ty: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
    pub valid: bool,
}

impl ContentType {
    /// The type of a part without Content-Type (RFC 2045 5.2, RFC 2046 5.1.5).
    pub fn default_for(parent_digest: bool) -> Self {
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
    pub fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subtype.eq_ignore_ascii_case(subtype)
    }
    pub fn is_text(&self) -> bool {
        self.ty.eq_ignore_ascii_case("text")
    }
    pub fn is_multipart(&self) -> bool {
        self.ty.eq_ignore_ascii_case("multipart")
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `;` separated `name=value` parameters (RFC 2045 5.1); stops at the first thing
/// that is not one. RFC 2231 continuations are joined.
fn params(lx: &mut Lexer<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        lx.skip_cfws();
        if lx.peek() != Some(b';') {
            break;
        }
        lx.pos += 1;
        lx.skip_cfws();
        let name = lx.token();
        lx.skip_cfws();
        if lx.peek() != Some(b'=') {
            break;
        }
        lx.pos += 1;
        lx.skip_cfws();
        let value = if lx.peek() == Some(b'"') {
            lx.quoted()
        } else {
            lx.token()
        };
        out.push((name, value));
    }
    join_continuations(out)
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
pub fn parse_content_type(v: &str) -> ContentType {
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
        params: params(&mut lx),
        valid: true,
    }
}

/// Content-Disposition (RFC 2183): the type and its parameters.
pub fn parse_disposition(v: &str) -> (String, Vec<(String, String)>) {
    let mut lx = Lexer::new(v);
    lx.skip_cfws();
    let ty = lx.token();
    (ty, params(&mut lx))
}

/// Content-Language (RFC 3282): a comma-separated list of tags.
pub fn parse_languages(v: &str) -> Vec<String> {
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
