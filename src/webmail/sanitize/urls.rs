//! URL-valued attributes: the attribute filter ammonia calls for every attribute,
//! which classifies URLs as a browser reads them, keeps only `http(s):`/`mailto:`
//! links, replaces or removes remote images unless allowed, resolves `cid:`
//! references and allows `data:` only for raster images.

use std::borrow::Cow;

use super::State;

/// What remote images become while blocked: a small grey frame (an SVG image, which
/// cannot run script when used as an `<img>`; allowed by the body CSP as `data:`).
pub const BLOCKED_IMAGE: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='24' height='24' viewBox='0 0 24 24'%3E%3Crect x='1' y='1' width='22' height='22' rx='2' fill='%23eeeeee' stroke='%23999999'/%3E%3Cpath d='M4 18l5-6 3 3 3-4 5 7z' fill='%23bbbbbb'/%3E%3C/svg%3E";

impl State {
    /// A `cid:` reference: recorded in the first pass, resolved in the second.
    fn cid(&self, id: &str) -> Option<String> {
        let id = crate::mail::encoding::percent_decode(id.as_bytes());
        let id = id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        if let Some(seen) = &self.collected {
            seen.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
            return None;
        }
        self.cids.get(&id).cloned().flatten()
    }

    /// Decides one attribute: `None` removes it.
    pub(super) fn filter<'u>(
        &self,
        element: &str,
        attr: &str,
        value: &'u str,
    ) -> Option<Cow<'u, str>> {
        match (element, attr) {
            ("a", "href") => match classify(value) {
                Kind::Remote | Kind::Mail => Some(Cow::Borrowed(value)),
                _ => None,
            },
            ("img", "src") => match classify(value) {
                Kind::Remote if self.allow_remote => Some(Cow::Borrowed(value)),
                Kind::Remote => {
                    self.block();
                    Some(Cow::Borrowed(BLOCKED_IMAGE))
                }
                Kind::DataImage => Some(Cow::Borrowed(value)),
                Kind::Cid(id) => self.cid(&id).map(Cow::Owned),
                _ => None,
            },
            ("img", "srcset") => {
                let kinds: Vec<Kind> = value
                    .split(',')
                    .filter_map(|c| c.split_whitespace().next())
                    .map(classify)
                    .collect();
                let remote = kinds.iter().any(|k| matches!(k, Kind::Remote));
                let all_ok = kinds
                    .iter()
                    .all(|k| matches!(k, Kind::Remote | Kind::DataImage));
                if remote && !self.allow_remote {
                    self.block();
                    None
                } else if all_ok && !kinds.is_empty() {
                    Some(Cow::Borrowed(value))
                } else {
                    None
                }
            }
            (_, "background") => match classify(value) {
                Kind::Remote if self.allow_remote => Some(Cow::Borrowed(value)),
                Kind::Remote => {
                    self.block();
                    None
                }
                Kind::DataImage => Some(Cow::Borrowed(value)),
                Kind::Cid(id) => self.cid(&id).map(Cow::Owned),
                _ => None,
            },
            (_, "style") => self.style(value).map(Cow::Owned),
            // Anything URL-valued that slipped into the allow-list by mistake.
            (_, "href" | "src" | "action" | "formaction" | "data" | "ping" | "poster") => None,
            _ => Some(Cow::Borrowed(value)),
        }
    }
}

/// The classes of URL the filter distinguishes.
enum Kind {
    /// `http:`, `https:` or protocol-relative `//host`.
    Remote,
    /// `cid:ID` (ID as written, still percent-encoded).
    Cid(String),
    /// `data:image/{png,gif,jpeg,webp}`.
    DataImage,
    Mail,
    /// Everything else: other schemes, relative URLs and fragments, other data.
    Other,
}

/// Classifies a URL as a browser would read it: leading/trailing C0 controls and
/// spaces stripped, tabs and newlines removed anywhere.
fn classify(value: &str) -> Kind {
    let cleaned: String = value
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let lower = cleaned.to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") || lower.starts_with("//") {
        Kind::Remote
    } else if lower.starts_with("cid:") {
        Kind::Cid(cleaned[4..].to_string())
    } else if let Some(rest) = lower.strip_prefix("data:") {
        let mime = rest.split([';', ',']).next().unwrap_or("").trim();
        if matches!(
            mime,
            "image/png" | "image/gif" | "image/jpeg" | "image/jpg" | "image/webp"
        ) {
            Kind::DataImage
        } else {
            Kind::Other
        }
    } else if lower.starts_with("mailto:") {
        Kind::Mail
    } else {
        Kind::Other
    }
}
