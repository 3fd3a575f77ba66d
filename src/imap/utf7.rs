//! Modified UTF-7 for mailbox names on the wire (RFC 3501 5.1.3). The store keeps
//! UTF-8 names; sessions decode what clients send and encode what they answer.

use base64::Engine;
use base64::alphabet::Alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

fn engine() -> GeneralPurpose {
    // RFC 3501 5.1.3: the base64 alphabet with ',' instead of '/', no padding.
    let alphabet =
        Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
            .expect("valid alphabet");
    GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    )
}

/// UTF-8 → modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine().encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Modified UTF-7 → UTF-8. `None` when the input is not valid modified UTF-7.
pub fn decode(wire: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        let b = wire[i];
        if b == b'&' {
            let end = wire[i + 1..].iter().position(|&c| c == b'-')? + i + 1;
            let chunk = &wire[i + 1..end];
            if chunk.is_empty() {
                out.push('&');
            } else {
                let bytes = engine().decode(chunk).ok()?;
                if bytes.len() % 2 != 0 {
                    return None;
                }
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect();
                let s = String::from_utf16(&units).ok()?;
                // Printable ASCII must not be base64-encoded (RFC 3501 5.1.3).
                if s.chars().any(|c| (' '..='~').contains(&c)) {
                    return None;
                }
                out.push_str(&s);
            }
            i = end + 1;
        } else if (0x20..=0x7e).contains(&b) {
            out.push(b as char);
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// What a session makes of a mailbox name sent by a client: modified UTF-7 when it
/// decodes, else raw UTF-8 (some clients send it unencoded).
pub fn from_wire(wire: &[u8]) -> Option<String> {
    decode(wire).or_else(|| {
        let s = std::str::from_utf8(wire).ok()?;
        (!s.contains('&')).then(|| s.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        // RFC 3501 5.1.3: "~peter/mail/台北/日本語"
        let utf8 = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(encode(utf8), wire);
        assert_eq!(decode(wire.as_bytes()).as_deref(), Some(utf8));
    }

    #[test]
    fn ampersand_and_plain() {
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode(b"A&-B").as_deref(), Some("A&B"));
        assert_eq!(encode("Enviados"), "Enviados");
        assert_eq!(encode("Año"), "A&APE-o");
        assert_eq!(decode(b"A&APE-o").as_deref(), Some("Año"));
        assert_eq!(encode("😀"), "&2D3eAA-");
        assert_eq!(decode(b"&2D3eAA-").as_deref(), Some("😀"));
    }

    #[test]
    fn invalid() {
        assert_eq!(decode(b"&Jjo"), None);
        assert_eq!(decode(b"&AGE-"), None); // "a" must not be encoded
        assert_eq!(decode(b"\xff"), None);
        assert_eq!(from_wire("Año".as_bytes()).as_deref(), Some("Año"));
    }
}
