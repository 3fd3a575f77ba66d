//! FETCH data items (RFC 3501 6.4.5, 7.4.2) written for one message, and the glue to
//! `mime` (ENVELOPE, BODYSTRUCTURE, body sections) and the SEARCH keys, whose text keys
//! [`crate::mail::text::Text`] answers (the webmail's search shares it).

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{MessageDataItemName, Part, Section};
use imap_codec::imap_types::search::SearchKey;

use super::session::Selected;
use super::structure::Kind;
use super::{mime, wire};
use crate::mail::text::Text;
use crate::store::MessageMeta;

/// Whether fetching this item needs the message text.
pub fn needs_body(name: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as N;
    matches!(
        name,
        N::Body
            | N::BodyExt { .. }
            | N::BodyStructure
            | N::Envelope
            | N::Rfc822
            | N::Rfc822Header
            | N::Rfc822Text
    )
}

/// The structure value (cached by content address in `structure`) an item is, if any.
pub fn structure_kind(name: &MessageDataItemName<'_>) -> Option<Kind> {
    use MessageDataItemName as N;
    match name {
        N::Envelope => Some(Kind::Envelope),
        N::Body => Some(Kind::Body),
        N::BodyStructure => Some(Kind::BodyStructure),
        _ => None,
    }
}

/// Whether fetching this item sets `\Seen` (RFC 3501 6.4.5: BODY[...] without PEEK,
/// RFC822, RFC822.TEXT).
pub fn sets_seen(name: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as N;
    matches!(
        name,
        N::BodyExt { peek: false, .. } | N::Rfc822 | N::Rfc822Text
    )
}

/// Appends one `name value` pair of a FETCH response. FLAGS is written by the caller.
/// `structure` holds the ENVELOPE, BODY and BODYSTRUCTURE values (indexed by [`Kind`])
/// for the items that are among those.
pub fn item(
    out: &mut Vec<u8>,
    name: &MessageDataItemName<'_>,
    meta: &MessageMeta,
    raw: Option<&[u8]>,
    structure: &[Option<Vec<u8>>; 3],
) {
    use MessageDataItemName as N;
    let raw = raw.unwrap_or_default();
    match name {
        N::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
        N::Flags => {
            out.extend_from_slice(format!("FLAGS {}", wire::flag_list(&meta.flags)).as_bytes())
        }
        N::InternalDate => out.extend_from_slice(
            format!("INTERNALDATE {}", wire::internal_date(meta.internal_date)).as_bytes(),
        ),
        N::Rfc822Size => out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes()),
        N::Envelope | N::BodyStructure | N::Body => {
            let kind = structure_kind(name).expect("a structure item");
            out.extend_from_slice(match kind {
                Kind::Envelope => b"ENVELOPE ".as_slice(),
                Kind::Body => b"BODY ",
                Kind::BodyStructure => b"BODYSTRUCTURE ",
            });
            match &structure[kind as usize] {
                Some(v) => out.extend_from_slice(v),
                // Callers pass every structure value they ask for; computed here
                // only as a fallback.
                None => out.extend_from_slice(&match kind {
                    Kind::Envelope => mime::envelope(raw),
                    Kind::Body => mime::body_structure(raw, false),
                    Kind::BodyStructure => mime::body_structure(raw, true),
                }),
            }
        }
        N::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            wire::literal(out, raw);
        }
        N::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            let data = mime::section(raw, Some(&Section::Header(None)));
            wire::nstring(out, data.as_deref());
        }
        N::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            let data = mime::section(raw, Some(&Section::Text(None)));
            wire::nstring(out, data.as_deref());
        }
        N::BodyExt {
            section, partial, ..
        } => {
            out.extend_from_slice(b"BODY[");
            section_name(out, section.as_ref());
            out.push(b']');
            let data = mime::section(raw, section.as_ref());
            match (data, partial) {
                (None, _) => out.extend_from_slice(b" NIL"),
                (Some(d), None) => {
                    out.push(b' ');
                    wire::literal(out, &d);
                }
                (Some(d), Some((origin, count))) => {
                    // RFC 3501 6.4.5: <origin> echoed; data clipped to the message.
                    out.extend_from_slice(format!("<{origin}> ").as_bytes());
                    let start = (*origin as usize).min(d.len());
                    let end = start.saturating_add(count.get() as usize).min(d.len());
                    wire::literal(out, &d[start..end]);
                }
            }
        }
        N::ModSeq => out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes()),
        // Refused by the caller.
        N::Binary { .. } | N::BinarySize { .. } => out.extend_from_slice(b"UID 0"),
        #[allow(unreachable_patterns)]
        _ => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
    }
}

/// The section spec as echoed in the response, e.g. `1.2.HEADER.FIELDS (FROM TO)`.
pub fn section_name(out: &mut Vec<u8>, section: Option<&Section<'_>>) {
    let part = |out: &mut Vec<u8>, p: &Part, dot: bool| {
        let nums: Vec<String> = p.0.as_ref().iter().map(|n| n.to_string()).collect();
        out.extend_from_slice(nums.join(".").as_bytes());
        if dot {
            out.push(b'.');
        }
    };
    let fields = |out: &mut Vec<u8>, list: &[AString<'_>]| {
        out.extend_from_slice(b" (");
        for (i, f) in list.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            // Field names are case-insensitive; echoed in upper case (as Dovecot).
            let bytes = AsRef::<[u8]>::as_ref(f).to_ascii_uppercase();
            let bytes = bytes.as_slice();
            let atom = !bytes.is_empty()
                && bytes.iter().all(|&b| {
                    b.is_ascii_graphic()
                        && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b']' | b'%' | b'*')
                });
            if atom {
                out.extend_from_slice(bytes);
            } else {
                wire::string(out, bytes);
            }
        }
        out.push(b')');
    };
    match section {
        None => {}
        Some(Section::Part(p)) => part(out, p, false),
        Some(Section::Header(p)) => {
            if let Some(p) = p {
                part(out, p, true);
            }
            out.extend_from_slice(b"HEADER");
        }
        Some(Section::HeaderFields(p, list)) => {
            if let Some(p) = p {
                part(out, p, true);
            }
            out.extend_from_slice(b"HEADER.FIELDS");
            fields(out, list.as_ref());
        }
        Some(Section::HeaderFieldsNot(p, list)) => {
            if let Some(p) = p {
                part(out, p, true);
            }
            out.extend_from_slice(b"HEADER.FIELDS.NOT");
            fields(out, list.as_ref());
        }
        Some(Section::Text(p)) => {
            if let Some(p) = p {
                part(out, p, true);
            }
            out.extend_from_slice(b"TEXT");
        }
        Some(Section::Mime(p)) => {
            part(out, p, true);
            out.extend_from_slice(b"MIME");
        }
    }
}

// ------------------------------------------------------------------ SEARCH glue

/// Whether evaluating `key` needs message text (headers, body or the Date field).
pub fn search_needs_text(key: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.as_ref().iter().any(search_needs_text),
        K::Not(k) => search_needs_text(k),
        K::Or(a, b) => search_needs_text(a) || search_needs_text(b),
        K::Bcc(_)
        | K::Body(_)
        | K::Cc(_)
        | K::From(_)
        | K::Header(..)
        | K::Subject(_)
        | K::Text(_)
        | K::To(_)
        | K::SentBefore(_)
        | K::SentOn(_)
        | K::SentSince(_) => true,
        _ => false,
    }
}

/// Whether `key` uses MODSEQ (RFC 7162 3.1.5: the SEARCH answer then ends with the
/// highest MODSEQ found, and CONDSTORE is enabled).
pub fn search_uses_modseq(key: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.as_ref().iter().any(search_uses_modseq),
        K::Not(k) => search_uses_modseq(k),
        K::Or(a, b) => search_uses_modseq(a) || search_uses_modseq(b),
        K::ModSequence { .. } => true,
        _ => false,
    }
}

/// Whether message `index` of the selected mailbox matches `key` (RFC 3501 6.4.4).
/// `text` is the message's text when [`search_needs_text`] said so; one per message,
/// shared by all keys so each piece is decoded once.
pub fn search_matches(
    key: &SearchKey<'_>,
    sel: &Selected,
    index: usize,
    text: Option<&Text<'_>>,
) -> bool {
    use SearchKey as K;
    let m = &sel.msgs[index].meta;
    let internal_day =
        || chrono::DateTime::from_timestamp(m.internal_date, 0).map(|d| d.date_naive());
    let sent_day = || text.and_then(|t| t.sent_date(m.internal_date));
    let on_text = |f: &dyn Fn(&Text<'_>) -> bool| text.is_some_and(f);
    match key {
        K::And(keys) => keys
            .as_ref()
            .iter()
            .all(|k| search_matches(k, sel, index, text)),
        K::Not(k) => !search_matches(k, sel, index, text),
        K::Or(a, b) => search_matches(a, sel, index, text) || search_matches(b, sel, index, text),
        K::SequenceSet(set) => sel
            .resolve_indexes(set, false)
            .is_some_and(|v| v.binary_search(&index).is_ok()),
        K::Uid(set) => sel
            .resolve_indexes(set, true)
            .is_some_and(|v| v.binary_search(&index).is_ok()),
        K::All => true,
        K::Answered => m.has_flag("\\Answered"),
        K::Unanswered => !m.has_flag("\\Answered"),
        K::Deleted => m.has_flag("\\Deleted"),
        K::Undeleted => !m.has_flag("\\Deleted"),
        K::Draft => m.has_flag("\\Draft"),
        K::Undraft => !m.has_flag("\\Draft"),
        K::Flagged => m.has_flag("\\Flagged"),
        K::Unflagged => !m.has_flag("\\Flagged"),
        K::Seen => m.has_flag("\\Seen"),
        K::Unseen => !m.has_flag("\\Seen"),
        K::Keyword(k) => m.has_flag(k.as_ref()),
        K::Unkeyword(k) => !m.has_flag(k.as_ref()),
        K::Recent => sel.recent.contains(&m.uid),
        K::New => sel.recent.contains(&m.uid) && !m.has_flag("\\Seen"),
        K::Old => !sel.recent.contains(&m.uid),
        K::Larger(n) => m.size > u64::from(*n),
        K::Smaller(n) => m.size < u64::from(*n),
        K::Before(d) => internal_day().is_some_and(|x| x < *d.as_ref()),
        K::On(d) => internal_day().is_some_and(|x| x == *d.as_ref()),
        K::Since(d) => internal_day().is_some_and(|x| x >= *d.as_ref()),
        K::SentBefore(d) => sent_day().is_some_and(|x| x < *d.as_ref()),
        K::SentOn(d) => sent_day().is_some_and(|x| x == *d.as_ref()),
        K::SentSince(d) => sent_day().is_some_and(|x| x >= *d.as_ref()),
        K::Bcc(s) => on_text(&|t| t.address("Bcc", s.as_ref())),
        K::Cc(s) => on_text(&|t| t.address("Cc", s.as_ref())),
        K::From(s) => on_text(&|t| t.address("From", s.as_ref())),
        K::To(s) => on_text(&|t| t.address("To", s.as_ref())),
        K::Subject(s) => on_text(&|t| t.subject(s.as_ref())),
        K::Header(name, s) => {
            let name = String::from_utf8_lossy(name.as_ref());
            on_text(&|t| t.header(&name, s.as_ref()))
        }
        K::Body(s) => on_text(&|t| t.body(s.as_ref())),
        K::Text(s) => on_text(&|t| t.text(s.as_ref())),
        // One MODSEQ per message: the entry name is ignored (RFC 7162 3.1.5).
        K::ModSequence { modseq, .. } => m.modseq >= *modseq,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}
