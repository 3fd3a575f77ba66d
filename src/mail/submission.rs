//! The origination fields a submission server completes (RFC 6409 8.3 and 8.4, as
//! Postfix and mox do): a message submitted by an authenticated user (SMTP 587/465,
//! the webmail) that lacks `Message-ID:` or `Date:` gets them. Only the header section
//! is looked at (field names in any case); a field already there is never replaced or
//! duplicated. Mail relayed in from other servers on port 25 is not passed here.

use chrono::{DateTime, FixedOffset};

use super::header::fields;

/// Which origination fields the header section of `message` lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    pub message_id: bool,
    pub date: bool,
}

/// Looks for `Message-ID:` and `Date:` in the header section of `message` (up to the
/// first empty line; `Resent-*` fields do not count).
pub fn missing(message: &[u8]) -> Missing {
    let (mut message_id, mut date) = (true, true);
    for f in fields(message) {
        if f.is("Message-ID") {
            message_id = false;
        } else if f.is("Date") {
            date = false;
        }
    }
    Missing { message_id, date }
}

/// The addresses of the `From:` fields in the header section of `message`, each as
/// (local part, domain); `None` for one without a domain or with bad syntax.
pub fn from_addresses(message: &[u8]) -> Vec<Option<(String, String)>> {
    let mut out = Vec::new();
    for f in fields(message).filter(|f| f.is("From")) {
        for item in super::address::parse_list(&super::header::unfold(f.value)) {
            let super::address::Item::Mailbox(m) = item else {
                continue;
            };
            if m.local.is_empty() && m.domain.is_none() {
                continue; // an empty list element (",,")
            }
            out.push(match (&m.domain, m.syntax_error) {
                (Some(d), false) if !m.local.is_empty() => Some((
                    String::from_utf8_lossy(&m.local).into_owned(),
                    String::from_utf8_lossy(d).into_owned(),
                )),
                _ => None,
            });
        }
    }
    out
}

/// The fields to put at the top of `message`'s header (CRLF-terminated, empty when
/// nothing is missing), with the given id (without angle brackets) and date.
pub fn origin_fields_with(message: &[u8], id: &str, date: DateTime<FixedOffset>) -> String {
    let m = missing(message);
    let mut out = String::new();
    if m.message_id {
        out.push_str(&format!("Message-ID: <{id}>\r\n"));
    }
    if m.date {
        out.push_str(&format!("Date: {}\r\n", date.to_rfc2822()));
    }
    out
}

/// [`origin_fields_with`] for now, in the node's local time zone offset, and a new
/// random id `<32 hex digits>@host`.
pub fn origin_fields(message: &[u8], host: &str) -> String {
    let id = format!("{:032x}@{host}", rand::random::<u128>());
    origin_fields_with(message, &id, chrono::Local::now().fixed_offset())
}

/// `message` with the missing origination fields inserted at byte offset `at` (the
/// start of the client's header, after any trace fields already prepended).
pub fn complete(mut message: Vec<u8>, at: usize, host: &str) -> Vec<u8> {
    let at = at.min(message.len());
    let add = origin_fields(&message[at..], host);
    if !add.is_empty() {
        message.splice(at..at, add.into_bytes());
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn from_addresses_of_the_header_only() {
        let m = b"X: a\r\nFrom: \"Ana, B.\" <ana@x.example>,\r\n luis@y.example, ,bad\r\nfrom: <c@z>\r\n\r\nFrom: body@x\r\n";
        assert_eq!(
            from_addresses(m),
            vec![
                Some(("ana".into(), "x.example".into())),
                Some(("luis".into(), "y.example".into())),
                None,
                Some(("c".into(), "z".into())),
            ]
        );
        assert!(from_addresses(b"Subject: none\r\n\r\n").is_empty());
    }

    use super::*;

    fn date() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2024-03-05T09:07:01-05:00").unwrap()
    }

    #[test]
    fn both_missing_are_added_in_order() {
        let msg = b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(
            origin_fields_with(msg, "x1@mx.example", date()),
            "Message-ID: <x1@mx.example>\r\nDate: Tue, 5 Mar 2024 09:07:01 -0500\r\n"
        );
    }

    #[test]
    fn a_present_field_is_not_added_again_in_any_case() {
        let msg = b"From: a@b.example\r\nmessage-id: <m@b>\r\n\r\nbody\r\n";
        assert_eq!(
            origin_fields_with(msg, "x", date()),
            "Date: Tue, 5 Mar 2024 09:07:01 -0500\r\n"
        );
        let msg = b"DATE: Mon, 4 Mar 2024 10:00:00 +0000\r\nFrom: a@b.example\r\n\r\nb\r\n";
        assert_eq!(
            origin_fields_with(msg, "x1@h", date()),
            "Message-ID: <x1@h>\r\n"
        );
        let msg = b"Date : Mon, 4 Mar 2024 10:00:00 +0000\r\nMessage-Id:\r\n <m@b>\r\n\r\n";
        assert_eq!(origin_fields_with(msg, "x", date()), "");
    }

    #[test]
    fn only_the_header_section_counts() {
        let msg = b"From: a@b.example\r\nResent-Date: Mon, 4 Mar 2024 10:00:00 +0000\r\n\r\nDate: in the body\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(
            missing(msg),
            Missing {
                message_id: true,
                date: true
            }
        );
        // A folded field's continuation is not a field of its own.
        let msg = b"Subject: a\r\n Date: no\r\n\r\n";
        assert!(missing(msg).date);
        // Bare LF line ends too.
        let msg = b"Subject: a\n\nDate: no\n";
        assert!(missing(msg).date);
    }

    #[test]
    fn complete_inserts_after_the_trace_field() {
        let trace = b"Received: from x\r\n\tby y; Tue, 5 Mar 2024 09:07:01 +0000\r\n";
        let mut msg = trace.to_vec();
        msg.extend_from_slice(b"Subject: s\r\n\r\nDate: body\r\n");
        let out = complete(msg, trace.len(), "mx.example");
        let text = String::from_utf8(out).unwrap();
        let rest = text
            .strip_prefix(std::str::from_utf8(trace).unwrap())
            .unwrap();
        assert!(rest.starts_with("Message-ID: <"), "{text}");
        let (head, body) = rest.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "Date: body\r\n");
        assert!(head.contains("@mx.example>\r\nDate: "), "{text}");
        assert!(head.ends_with("\r\nSubject: s"), "{text}");
        // Nothing to add: unchanged.
        let msg = b"Date: d\r\nMessage-ID: <m@x>\r\n\r\nb\r\n".to_vec();
        assert_eq!(complete(msg.clone(), 0, "h"), msg);
    }
}
