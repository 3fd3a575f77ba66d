//! RFC 5322 address lists (3.4). Two parsers live here side by side, on purpose:
//!
//! - [`parse_list`] reads any address header the way Dovecot's
//!   `message_address_parse` does (groups, routes, comments as names, forgiving
//!   errors with `MISSING_MAILBOX`/`MISSING_DOMAIN`/`SYNTAX_ERROR`). IMAP's ENVELOPE
//!   and the search text ([`render_list`]) are built on it and must stay
//!   byte-identical to Dovecot (tests/imap_dovecot.rs).
//! - [`parse_addresses`] reads what a person typed into the webmail's recipient
//!   fields: `Name <addr>`, `"Last, First" <addr>` or `addr`, split at `,`/`;`, each
//!   checked with [`valid_address`], and refuses the whole field otherwise. Reading
//!   typed input with the lenient parser would accept (and send to) what the strict
//!   one refuses, so they are not merged.
//!
//! The webmail's writers ([`format_address`], [`format_list`]) and the readers of
//! mail-parser's parsed headers ([`recipients`], [`display_list`]) are here too.

use super::build::clean_line;
use super::lexer::{Lexer, is_atext, push_quoted};

// ------------------------------------------------------------------ lenient (Dovecot)

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
pub struct Mailbox {
    pub name: Vec<u8>,
    pub route: Vec<u8>,
    pub local: Vec<u8>,
    pub domain: Option<Vec<u8>>,
    pub syntax_error: bool,
}

/// One entry of a parsed address list: a mailbox, or where a group (its name) starts
/// or ends.
pub enum Item {
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
pub fn parse_list(value: &[u8]) -> Vec<Item> {
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

/// A display name as Dovecot writes it: as is if it holds an encoded word or only
/// atom characters, else quoted.
fn push_name(out: &mut Vec<u8>, name: &[u8]) {
    if name.windows(2).any(|w| w == b"=?") || name.iter().all(|&b| is_atext(b)) {
        out.extend_from_slice(name);
    } else {
        push_quoted(out, name);
    }
}

/// An address list rewritten as Dovecot's search sees it (see `text`): `Name
/// <local@domain>`, groups as `name: <a@b>, <c@d>;`, missing parts named.
pub fn render_list(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = true;
    let mut group_first = false;
    let mut in_group = false;
    for item in items {
        match item {
            Item::GroupStart(name) => {
                if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                push_name(&mut out, name);
                out.push(b':');
                in_group = true;
                group_first = true;
            }
            Item::GroupEnd => {
                out.push(b';');
                in_group = false;
            }
            Item::Mailbox(m) => {
                if in_group {
                    out.extend_from_slice(if group_first { b" " } else { b", " });
                    group_first = false;
                } else if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                if !m.name.is_empty() {
                    push_name(&mut out, &m.name);
                    out.push(b' ');
                }
                out.push(b'<');
                out.extend_from_slice(&m.route);
                if m.local.is_empty() {
                    out.extend_from_slice(b"MISSING_MAILBOX");
                } else if m.local.iter().all(|&b| is_atext(b) || b == b'.') {
                    out.extend_from_slice(&m.local);
                } else {
                    push_quoted(&mut out, &m.local);
                }
                out.push(b'@');
                match &m.domain {
                    _ if m.syntax_error => out.extend_from_slice(b"SYNTAX_ERROR"),
                    Some(d) if !d.is_empty() => out.extend_from_slice(d),
                    _ => out.extend_from_slice(b"MISSING_DOMAIN"),
                }
                out.push(b'>');
            }
        }
    }
    out
}

// ------------------------------------------------------------------ typed (webmail)

/// Splits a recipient field at commas and semicolons outside quotes and angle brackets.
pub fn split_addresses(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '<' if !quoted => {
                angle = true;
                cur.push(c);
            }
            '>' if !quoted => {
                angle = false;
                cur.push(c);
            }
            ',' | ';' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `addr` is a plain `local@domain` address this server can route.
pub fn valid_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 255
        && !local.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c))
}

/// Parses `Name <addr>`, `"Last, First" <addr>` or `addr`; `Err(item)` when invalid.
pub fn parse_one(item: &str) -> Result<(Option<String>, String), String> {
    let item = item.trim();
    let (name, addr) = match (item.rfind('<'), item.ends_with('>')) {
        (Some(i), true) => {
            let name = item[..i].trim();
            let name = name
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or(name)
                .replace("\\\"", "\"")
                .replace("\\\\", "\\");
            (clean_line(&name), item[i + 1..item.len() - 1].trim())
        }
        _ => (String::new(), item),
    };
    if valid_address(addr) {
        Ok(((!name.is_empty()).then_some(name), addr.to_string()))
    } else {
        Err(item.to_string())
    }
}

/// Parses a recipient field; `Err` names the first invalid entry.
pub fn parse_addresses(s: &str) -> Result<Vec<(Option<String>, String)>, String> {
    split_addresses(s).iter().map(|i| parse_one(i)).collect()
}

/// `Name <addr>` (the name quoted when it needs it) or the bare address.
pub fn format_address(name: Option<&str>, addr: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty() && *n != addr) {
        Some(n) if n.chars().any(|c| ",;<>\"@()[]:\\".contains(c)) => {
            format!(
                "\"{}\" <{addr}>",
                n.replace('\\', "\\\\").replace('"', "\\\"")
            )
        }
        Some(n) => format!("{n} <{addr}>"),
        None => addr.to_string(),
    }
}

/// Addresses joined with `, `, each as [`format_address`] writes it.
pub fn format_list(list: &[(Option<String>, String)]) -> String {
    list.iter()
        .map(|(n, a)| format_address(n.as_deref(), a))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The valid addresses of a header mail-parser read, with their names on one line.
pub fn recipients(a: Option<&mail_parser::Address>) -> Vec<(Option<String>, String)> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| {
                let addr = x.address()?.trim().to_string();
                valid_address(&addr).then(|| (x.name().map(clean_line), addr))
            })
            .collect()
    })
    .unwrap_or_default()
}

/// [`recipients`] as [`format_list`] writes them.
pub fn address_list(a: Option<&mail_parser::Address>) -> String {
    format_list(&recipients(a))
}

/// A parsed address header as the reader page shows it: `Name <addr>` unquoted, bare
/// addresses, names without an address; unlike [`address_list`] nothing is dropped or
/// quoted (the page shows what the message says, it is not written back).
pub fn display_list(a: Option<&mail_parser::Address<'_>>) -> String {
    let Some(a) = a else { return String::new() };
    a.iter()
        .map(|x| match (x.name(), x.address()) {
            (Some(n), Some(e)) if !n.trim().is_empty() => format!("{} <{e}>", n.trim()),
            (_, Some(e)) => e.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_addresses(r#""Pérez, Ana" <ana@x.org>, luis@y.com; <z@w.net> ,"#),
            vec![r#""Pérez, Ana" <ana@x.org>"#, "luis@y.com", "<z@w.net>"]
        );
        assert_eq!(
            parse_addresses(r#""Pérez, Ana" <ana@x.org>, luis@y.com"#).unwrap(),
            vec![
                (Some("Pérez, Ana".into()), "ana@x.org".into()),
                (None, "luis@y.com".into())
            ]
        );
        assert_eq!(parse_addresses("").unwrap(), vec![]);
        for bad in [
            "nobody",
            "a b@x.org",
            "a@",
            "@x.org",
            "a@x..org",
            "Ana <a@x.org",
            "a@x.org\r\nBcc: e@f",
        ] {
            assert!(parse_addresses(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_that_need_it_are_quoted() {
        assert_eq!(format_address(Some("Ana"), "a@x.org"), "Ana <a@x.org>");
        assert_eq!(
            format_address(Some("Pérez, Ana"), "a@x.org"),
            "\"Pérez, Ana\" <a@x.org>"
        );
        assert_eq!(format_address(None, "a@x.org"), "a@x.org");
        let s = format_address(Some("say \"hi\", ok"), "a@x.org");
        assert_eq!(
            parse_one(&s).unwrap(),
            (Some("say \"hi\", ok".into()), "a@x.org".into())
        );
    }
}
