//! The MIME entity tree of a message (RFC 2045, RFC 2046): the one parsing layer that
//! IMAP's FETCH and SEARCH and the webmail's search read. Pure functions of the raw
//! message bytes; no I/O.
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
//!   transfer encoding. Nesting is cut at 64 levels, and a tree at [`MAX_PARTS`]
//!   (1,000) parts: further parts are skipped (a hostile message of millions of
//!   empty parts would otherwise cost a few hundred bytes of tree each).
//! - Where the RFCs leave the answer to malformed input open, the choices follow
//!   Dovecot 2.3 (tests/imap_dovecot.rs compares the two on a corpus): the first
//!   Content-Type decides the structure.

use super::header::{
    ContentType, header_first, line_end, lossy, parse_content_type, strip_eol, unfold,
};

/// One MIME entity.
pub struct Part<'a> {
    /// The header block, including the blank line that ends it when there is one.
    pub header: &'a [u8],
    /// Everything after the header block, up to the part's end.
    pub body: &'a [u8],
    ctype: ContentType,
    kind: Kind<'a>,
}

pub enum Kind<'a> {
    Leaf,
    /// The parts between the delimiters: none when the boundary is missing or never
    /// occurs.
    Multipart(Vec<Part<'a>>),
    /// `message/rfc822`: the embedded message.
    Message(Box<Part<'a>>),
}

impl<'a> Part<'a> {
    pub fn kind(&self) -> &Kind<'a> {
        &self.kind
    }
    /// The Content-Type the structure follows (the first one), or the default.
    pub fn content_type(&self) -> &ContentType {
        &self.ctype
    }
}

/// Nesting deeper than this is not parsed: a multipart or message/rfc822 part at
/// this depth is a leaf (a guard against hostile messages).
const MAX_DEPTH: usize = 64;
/// Most parts in one message's tree (the message itself and embedded messages
/// count): past it a multipart's further parts are skipped as if they were its
/// epilogue, so a hostile message of many tiny parts cannot make a huge tree.
pub const MAX_PARTS: usize = 1000;

/// Parses a whole message.
pub fn parse(raw: &[u8]) -> Part<'_> {
    parse_counted(raw).0
}

/// The parts a tree may still take, and where the first part over [`MAX_PARTS`]
/// would have started.
struct Budget {
    left: usize,
    cut: Option<usize>,
}

fn parse_counted(raw: &[u8]) -> (Part<'_>, Option<usize>) {
    let mut budget = Budget {
        left: MAX_PARTS,
        cut: None,
    };
    let part = parse_entity(raw, 0, false, &mut Vec::new(), 0, &mut budget).0;
    (part, budget.cut)
}

/// `raw`, or when it has more than [`MAX_PARTS`] parts, its beginning up to the
/// first part over the cap: what parsers without a part limit of their own (the
/// webmail's `mail_parser`) are given.
pub fn bounded(raw: &[u8]) -> &[u8] {
    match parse_counted(raw).1 {
        Some(cut) => &raw[..cut],
        None => raw,
    }
}

/// The header block of a message (see [`Part::header`]) without parsing the rest.
pub fn message_header(raw: &[u8]) -> &[u8] {
    let (end, _) = header_block(raw, 0, &[]);
    &raw[..end]
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
    budget: &mut Budget,
) -> (Part<'a>, usize) {
    budget.left = budget.left.saturating_sub(1);
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
                let stop =
                    scan_multipart(raw, body_start, digest, stack, depth, budget, &mut children);
                stack.pop();
                stop
            }
        };
        (Kind::Multipart(children), stop)
    } else if ctype.is("message", "rfc822") && budget.left > 0 {
        // Looked into whatever the transfer encoding says (as Dovecot).
        let (inner, stop) = parse_entity(raw, body_start, false, stack, depth + 1, budget);
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
    budget: &mut Budget,
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
        if budget.left == 0 {
            // Over MAX_PARTS: the rest of this multipart is not looked into.
            budget.cut.get_or_insert(b.start);
            pos = b.next;
            continue;
        }
        let (part, stop) = parse_entity(raw, b.next, digest, stack, depth + 1, budget);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn count(p: &Part<'_>) -> usize {
        1 + match p.kind() {
            Kind::Leaf => 0,
            Kind::Multipart(c) => c.iter().map(count).sum(),
            Kind::Message(m) => count(m),
        }
    }

    #[test]
    fn a_message_of_many_tiny_parts_makes_a_tree_of_at_most_max_parts() {
        // 200,000 empty parts in 1.2 MB, nested one level to check the cap is shared.
        let mut raw = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
            Content-Type: multipart/mixed; boundary=i\r\n\r\n"
            .to_vec();
        for _ in 0..100_000 {
            raw.extend_from_slice(b"--i\r\n\r\n");
        }
        raw.extend_from_slice(b"--i--\r\n");
        for _ in 0..100_000 {
            raw.extend_from_slice(b"--o\r\n\r\n");
        }
        raw.extend_from_slice(b"--o\r\nContent-Type: text/plain\r\n\r\nlast\r\n--o--\r\n");
        let tree = parse(&raw);
        assert_eq!(count(&tree), MAX_PARTS);
        // The tree is still well formed: the outer multipart's first child holds the
        // inner parts that fitted.
        let Kind::Multipart(outer) = tree.kind() else {
            panic!("not a multipart")
        };
        assert_eq!(outer.len(), 1);
        // A message under the cap is whole.
        let small = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\r\na\r\n--o\r\n\r\nb\r\n--o--\r\n";
        assert_eq!(count(&parse(small)), 3);
        assert_eq!(bounded(small), small);
        // What other parsers get of the big one ends before the first skipped part.
        let cut = bounded(&raw);
        assert!(cut.len() < raw.len() && cut.ends_with(b"\r\n"));
        assert!(count(&parse(cut)) <= MAX_PARTS);
    }
}
