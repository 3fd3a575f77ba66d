//! Small encoders for response syntax (RFC 3501 9): strings, flag lists, UID sets,
//! dates. Responses are written by hand; these keep the quoting rules in one place.

use crate::mail::lexer::push_quoted;

/// A `string` (RFC 3501 4.3): quoted when it can be, else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80);
    if quotable {
        push_quoted(out, s);
    } else {
        literal(out, s);
    }
}

/// A literal `{N}CRLF` followed by the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// An `nstring`: NIL or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A quoted string as text (for names known to be short and 7-bit, e.g. mUTF-7).
pub fn quoted(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    string(&mut out, s.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// `(\Seen \Flagged ...)`.
pub fn flag_list<S: AsRef<str>>(flags: &[S]) -> String {
    let mut s = String::from("(");
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(f.as_ref());
    }
    s.push(')');
    s
}

/// A sequence set in compact form (`1:3,7,9:10`) from ascending numbers.
pub fn uid_set(nums: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && nums[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = nums[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// INTERNALDATE format: `"17-Jul-1996 02:44:25 +0000"`.
pub fn internal_date(unix: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
    format!("\"{}\"", dt.format("%d-%b-%Y %H:%M:%S +0000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn strings() {
        let mut v = Vec::new();
        string(&mut v, b"a\"b\\c");
        assert_eq!(v, b"\"a\\\"b\\\\c\"");
        let mut v = Vec::new();
        string(&mut v, "ñ".as_bytes());
        assert_eq!(v, b"{2}\r\n\xc3\xb1");
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
    }
}
