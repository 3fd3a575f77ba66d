//! The tokens of structured header values (RFC 5322 3.2, RFC 2045 5.1): a cursor that
//! reads blanks and comments, atoms, quoted strings and MIME tokens, and the writer of
//! quoted strings. The address, parameter and date parsers are built on it.

use super::header::lossy;

/// A cursor over a structured header value (RFC 5322 3.2, RFC 2045 5.1).
pub struct Lexer<'a> {
    pub s: &'a [u8],
    pub pos: usize,
}

const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

/// RFC 5322 specials (RFC 822's, with `.`).
const SPECIALS: &[u8] = b"()<>@,;:\\\".[]";

/// An RFC 822 atom character.
pub fn is_atext(b: u8) -> bool {
    b > b' ' && b != 0x7f && !SPECIALS.contains(&b)
}

impl<'a> Lexer<'a> {
    pub fn new(s: &'a str) -> Self {
        Lexer::bytes(s.as_bytes())
    }
    pub fn bytes(s: &'a [u8]) -> Self {
        Lexer { s, pos: 0 }
    }
    pub fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    pub fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    /// Skips blanks and comments; returns the text of the comments skipped.
    pub fn skip_cfws(&mut self) -> Vec<Vec<u8>> {
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
    pub fn skip_cfws_last(&mut self) -> (bool, Option<Vec<u8>>) {
        let start = self.pos;
        let last = self.skip_cfws().pop();
        (self.pos > start, last)
    }
    /// A quoted string's content (unescaped, line breaks dropped), if one starts here.
    pub fn quoted_bytes(&mut self) -> Option<Vec<u8>> {
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
    pub fn quoted(&mut self) -> String {
        lossy(&self.quoted_bytes().unwrap_or_default())
    }
    /// An RFC 822 atom, if one starts here.
    pub fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(is_atext) {
            self.pos += 1;
        }
        let s: &'a [u8] = self.s;
        (self.pos > start).then(|| &s[start..self.pos])
    }
    /// An RFC 2045 token (possibly empty).
    pub fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b <= b' ' || b == 0x7f || TSPECIALS.contains(&b) {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }
}

/// `"..."` with `"` and `\` escaped (RFC 5322 quoted strings and IMAP ones alike).
pub fn push_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}
