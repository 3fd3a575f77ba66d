//! Content encodings: RFC 2047 encoded words, quoted-printable and base64 (RFC 2045
//! 6.7, 6.8) as Content-Transfer-Encoding names them, charset conversion to UTF-8 and
//! percent-decoding (RFC 3986 2.1, HTML form bodies, RFC 2392 `cid:` URLs). Decoding
//! is lenient everywhere: what does not decode is kept or skipped as each function
//! says, never an error. The one encoder here is quoted-printable for the text parts
//! clusterd writes itself (delivery status notifications); messages built from what
//! people type go through mail-builder (see `build`).

use super::header::{line_end, strip_eol, unfold};

// ------------------------------------------------------------------ RFC 2047

/// Decodes encoded words anywhere in `s` (also inside quotes, comments and words, as
/// Dovecot) and drops the whitespace between two adjacent ones. `push` appends the
/// plain text and the text of words in a charset we know (text search passes its
/// normalization); a word in a charset we do not know is appended as decoded, read as
/// UTF-8.
pub fn decode_words(s: &[u8], push: fn(&mut String, &str)) -> String {
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
                push(&mut out, &lossy_utf8(between, false));
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
                push(&mut out, text);
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
    push(&mut out, &lossy_utf8(&s[plain..], false));
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

// ------------------------------------------------------------------ transfer encodings

/// A Content-Transfer-Encoding (RFC 2045 6.1).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Cte {
    Identity,
    QuotedPrintable,
    Base64,
    Unknown,
}

/// The encoding a Content-Transfer-Encoding value names: none is 7bit, as are 8bit
/// and binary; unknown names are [`Cte::Unknown`].
pub fn transfer_encoding(value: Option<&[u8]>) -> Cte {
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
pub fn qp_decode(body: &[u8]) -> Vec<u8> {
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
pub fn base64_decode(s: &[u8]) -> Vec<u8> {
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

// ------------------------------------------------------------------ body encoding

/// Quoted-printable (RFC 2045 6.7) for a text body: every line break (LF, CRLF or a
/// lone CR) becomes CRLF; bytes outside printable ASCII, `=`, and a blank before a
/// line break are `=XX` escapes; lines longer than 76 characters get soft breaks.
/// The output is 7-bit and decodes with [`qp_decode`] to the text with CRLF line ends.
pub fn qp_encode(text: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A lone CR is a line break of its own.
        for (j, line) in line.split(|&b| b == b'\r').enumerate() {
            if j > 0 {
                out.push_str("\r\n");
            }
            let mut col = 0;
            for (i, &b) in line.iter().enumerate() {
                let last = i + 1 == line.len();
                let plain =
                    (b.is_ascii_graphic() && b != b'=') || (matches!(b, b' ' | b'\t') && !last);
                let width = if plain { 1 } else { 3 };
                // Room for a soft break `=` unless this is the line's last unit.
                let limit = if last { 76 } else { 75 };
                if col + width > limit {
                    out.push_str("=\r\n");
                    col = 0;
                }
                if plain {
                    out.push(char::from(b));
                } else {
                    out.push('=');
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 15)]));
                }
                col += width;
            }
        }
        if lines.peek().is_some() {
            out.push_str("\r\n");
        }
    }
    out
}

// ------------------------------------------------------------------ charsets

/// Text in `charset`, or `None` for a charset we do not know (which headers keep
/// as it is and bodies read as UTF-8). `body` drops an incomplete UTF-8 sequence
/// at the end.
pub fn convert_charset(charset: &[u8], bytes: &[u8], body: bool) -> Option<String> {
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
pub fn lossy_utf8(bytes: &[u8], drop_incomplete_tail: bool) -> String {
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

// ------------------------------------------------------------------ percent-encoding

/// The bytes of percent-encoded text (RFC 3986 2.1), each with whether it was written
/// as a `%XX` escape. A `%` not followed by two hex digits is a plain `%`.
pub fn percent_units(s: &[u8]) -> impl Iterator<Item = (u8, bool)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *s.get(i)?;
        if b == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex_value),
                s.get(i + 2).copied().and_then(hex_value),
            )
        {
            i += 3;
            return Some((h << 4 | l, true));
        }
        i += 1;
        Some((b, false))
    })
}

/// `%XX` decoded, invalid escapes kept as written (e.g. RFC 2392 `cid:` URLs), read
/// as UTF-8 with invalid sequences replaced.
pub fn percent_decode(s: &[u8]) -> String {
    let bytes: Vec<u8> = percent_units(s).map(|(b, _)| b).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A name or value of an `application/x-www-form-urlencoded` body: `+` is a space,
/// the rest as [`percent_decode`].
pub fn form_decode(s: &[u8]) -> String {
    let bytes: Vec<u8> = percent_units(s)
        .map(|(b, escaped)| if b == b'+' && !escaped { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_and_invalid_ones_stay() {
        assert_eq!(percent_decode(b"a%20b%2Fc%e2%82%ac"), "a b/c\u{20ac}");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%4"), "%4");
        assert_eq!(percent_decode(b"%zz%41"), "%zzA");
        assert_eq!(percent_decode(b"a+b"), "a+b");
        assert_eq!(percent_decode(b"%ff"), "\u{fffd}");
        assert_eq!(form_decode(b"a+b%2B%20c"), "a b+ c");
        assert_eq!(form_decode(b"%+41"), "% 41");
        let units: Vec<_> = percent_units(b"%2f/%").collect();
        assert_eq!(units, [(b'/', true), (b'/', false), (b'%', false)]);
    }

    #[test]
    fn quoted_printable_round_trips_with_short_lines() {
        let text = format!("Año ñandú = 1 \nend\t\r\n{}\rlast", "x".repeat(200) + "é");
        let enc = qp_encode(text.as_bytes());
        assert!(enc.is_ascii(), "{enc}");
        assert!(enc.split("\r\n").all(|l| l.len() <= 76), "{enc}");
        assert!(
            enc.starts_with("A=C3=B1o =C3=B1and=C3=BA =3D 1=20\r\nend=09\r\n"),
            "{enc}"
        );
        let want = text
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\n', "\r\n");
        assert_eq!(qp_decode(enc.as_bytes()), want.as_bytes());
        assert_eq!(qp_encode(b""), "");
        assert_eq!(qp_encode(b"a\r\n"), "a\r\n");
    }
}
