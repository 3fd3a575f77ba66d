//! Subject lines: the `Re:`/`Fwd:` a reply or forward gets (not added again when the
//! subject already starts with such a prefix in a common language) and the key the
//! webmail's list sorts subjects by (every leading reply and forward prefix removed).
//! The two lists of prefixes differ and are kept as they were.

use super::build::clean_line;

fn has_prefix(s: &str, prefixes: &[&str]) -> bool {
    let l = s.trim_start().to_lowercase();
    prefixes.iter().any(|p| l.starts_with(p))
}

/// `Re: subject`, without doubling an existing reply prefix.
pub fn reply_subject(s: &str) -> String {
    let s = clean_line(s);
    if has_prefix(&s, &["re:", "aw:", "sv:", "re :"]) {
        s
    } else {
        format!("Re: {s}")
    }
}

/// `Fwd: subject`, without doubling an existing forward prefix.
pub fn forward_subject(s: &str) -> String {
    let s = clean_line(s);
    if has_prefix(&s, &["fwd:", "fw:", "rv:", "wg:", "tr:"]) {
        s
    } else {
        format!("Fwd: {s}")
    }
}

/// Lower case, without leading reply/forward prefixes.
pub fn sort_key(subject: &str) -> String {
    let mut s = subject.trim().to_lowercase();
    loop {
        let before = s.len();
        for p in ["re:", "fw:", "fwd:", "rv:", "reenviar:", "[fwd:", "aw:"] {
            if let Some(rest) = s.strip_prefix(p) {
                s = rest.trim_start().to_string();
            }
        }
        if s.len() == before {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_not_prefixed_twice() {
        assert_eq!(reply_subject("hola"), "Re: hola");
        assert_eq!(reply_subject("RE: hola"), "RE: hola");
        assert_eq!(reply_subject(""), "Re: ");
        assert_eq!(forward_subject("Fwd: x"), "Fwd: x");
        assert_eq!(forward_subject("RV: x"), "RV: x");
        assert_eq!(forward_subject("Re: x"), "Fwd: Re: x");
        assert_eq!(reply_subject("a\r\nBcc: x"), "Re: a  Bcc: x");
    }
}
