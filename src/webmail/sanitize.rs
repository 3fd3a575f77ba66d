//! The HTML sanitiser of the webmail reader: turns an untrusted HTML mail body into a
//! fragment that is safe to show inside the reader's sandboxed body iframe, plus the
//! Content-Security-Policy that document is served with.
//!
//! Invariants (each has a unit test below and a Chromium test in
//! tests/webmail_sanitize.rs over the hostile corpus in tests/corpus-hostile/):
//! - Nothing executes: the output is built by ammonia from an allow-list of formatting
//!   tags and attributes. Scripts, style sheets, frames, objects, forms and their
//!   controls, meta/link/base, SVG and MathML are dropped (the ones that carry code or
//!   raw text together with their content), and no event-handler attribute is ever
//!   allowed.
//! - Links only go to `http:`, `https:` or `mailto:`, and always carry
//!   `rel="noopener noreferrer" target="_blank"` (`javascript:`, `vbscript:`, `data:`,
//!   relative and `#fragment` links are removed, whatever their entity or whitespace
//!   obfuscation: values are checked after HTML decoding and URL whitespace stripping;
//!   fragments are useless since `id`/`name` are not kept, and would open the body
//!   in a new window).
//! - Nothing remote loads unless the user asked: `http(s):` (and protocol-relative)
//!   images in `src`, `srcset` and `background` are replaced by an inline placeholder
//!   (or removed) and counted in [`Sanitized::remote_blocked`] unless
//!   [`Options::allow_remote_images`]. `cid:` URLs are rewritten through
//!   [`Options::cid_url`]; an unknown Content-ID removes the attribute. `data:` is
//!   allowed only for raster images (png, gif, jpeg, webp). Relative URLs are removed
//!   (they would point into the webmail itself).
//! - CSS: `<style>` elements are dropped with their content (filtering whole
//!   stylesheets would need selector sanitising). Inline `style` attributes are kept
//!   but filtered to a safe subset of layout and typography properties (see
//!   [`STYLE_PROPERTIES`]: no `position`, no `background-image`, no `behavior`, no
//!   `cursor`, no `content`); before that, any declaration containing `url(`,
//!   `expression`, `image-set`, `@import`, `behavior`, `binding` or a CSS escape is
//!   removed, so CSS never loads anything. A remote CSS `url()` is counted as blocked
//!   when remote images are not allowed; even when they are, CSS images stay off.
//!   Overlays cannot leave the body iframe in any case.
//! - Every `<img>` carries `referrerpolicy="no-referrer"`, so an allowed remote image
//!   does not leak the reader's URL (mailbox and UID) to the sender.
//! - The output is a fragment; the reader wraps it into a document.
//!
//! Defence in depth: [`body_csp`] forbids scripts, frames, forms, fonts and (unless
//! allowed) remote images for the body document and sandboxes it; the reader's iframe
//! has a `sandbox` attribute without `allow-scripts`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How to sanitise one body.
pub struct Options<'a> {
    /// Keep remote (`http:`/`https:`) images instead of blocking them.
    pub allow_remote_images: bool,
    /// Maps a Content-ID (without `cid:` and angle brackets, percent-decoded) to the
    /// URL of that part; `None` when the message has no such part.
    pub cid_url: &'a dyn Fn(&str) -> Option<String>,
}

/// A sanitised body.
pub struct Sanitized {
    /// The safe HTML fragment.
    pub html: String,
    /// How many remote images (or CSS backgrounds) were blocked.
    pub remote_blocked: usize,
}

/// Elements kept (without their disallowed attributes). Everything else is unwrapped:
/// the element goes, its text stays, except for [`DROP_WITH_CONTENT`].
const TAGS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "article",
    "aside",
    "b",
    "bdi",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "details",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "font",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "main",
    "mark",
    "nav",
    "ol",
    "p",
    "pre",
    "q",
    "rp",
    "rt",
    "ruby",
    "s",
    "samp",
    "section",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "time",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "wbr",
];

/// Elements removed together with everything inside them: code, raw text, embedded
/// documents, form controls with option lists, media, and foreign (SVG/MathML) content.
const DROP_WITH_CONTENT: &[&str] = &[
    "script",
    "style",
    "title",
    "noscript",
    "template",
    "iframe",
    "frame",
    "frameset",
    "noframes",
    "object",
    "embed",
    "applet",
    "noembed",
    "xmp",
    "plaintext",
    "textarea",
    "select",
    "datalist",
    "svg",
    "math",
    "audio",
    "video",
    "canvas",
];

/// Attributes allowed on every kept element.
const GENERIC_ATTRIBUTES: &[&str] = &["title", "lang", "dir", "style", "class", "align"];

/// Attributes allowed per element (URL-valued ones are further checked by the filter).
const TAG_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href", "hreflang"]),
    (
        "img",
        &[
            "src", "srcset", "alt", "width", "height", "border", "hspace", "vspace", "valign",
        ],
    ),
    ("font", &["color", "face", "size"]),
    (
        "table",
        &[
            "width",
            "height",
            "border",
            "cellpadding",
            "cellspacing",
            "bgcolor",
            "background",
            "summary",
            "frame",
            "rules",
        ],
    ),
    ("tbody", &["valign", "bgcolor"]),
    ("thead", &["valign", "bgcolor"]),
    ("tfoot", &["valign", "bgcolor"]),
    ("tr", &["valign", "bgcolor", "height", "background"]),
    (
        "td",
        &[
            "colspan",
            "rowspan",
            "width",
            "height",
            "valign",
            "bgcolor",
            "background",
            "nowrap",
            "headers",
            "scope",
        ],
    ),
    (
        "th",
        &[
            "colspan",
            "rowspan",
            "width",
            "height",
            "valign",
            "bgcolor",
            "background",
            "nowrap",
            "headers",
            "scope",
        ],
    ),
    ("col", &["span", "width", "valign"]),
    ("colgroup", &["span", "width", "valign"]),
    ("ol", &["start", "type", "reversed"]),
    ("ul", &["type"]),
    ("li", &["value", "type"]),
    ("hr", &["width", "size", "noshade", "color"]),
    ("div", &["bgcolor"]),
    ("time", &["datetime"]),
    ("del", &["datetime"]),
    ("ins", &["datetime"]),
    ("details", &["open"]),
    ("bdo", &["dir"]),
];

/// CSS properties kept in `style` attributes: colours, typography, box model and
/// tables. Deliberately absent: `position`/`top`/`left`/`z-index` (overlays),
/// `background`/`background-image`/`list-style`/`border-image`/`cursor`/`content`
/// (they load images), `behavior`/`-moz-binding` (legacy code loading).
pub const STYLE_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "text-align",
    "text-decoration",
    "text-decoration-line",
    "text-decoration-color",
    "text-decoration-style",
    "text-transform",
    "text-indent",
    "text-overflow",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "word-break",
    "word-wrap",
    "overflow-wrap",
    "white-space",
    "vertical-align",
    "direction",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-width",
    "border-style",
    "border-color",
    "border-top-color",
    "border-right-color",
    "border-bottom-color",
    "border-left-color",
    "border-top-width",
    "border-right-width",
    "border-bottom-width",
    "border-left-width",
    "border-top-style",
    "border-right-style",
    "border-bottom-style",
    "border-left-style",
    "border-radius",
    "border-collapse",
    "border-spacing",
    "width",
    "min-width",
    "max-width",
    "height",
    "min-height",
    "max-height",
    "box-sizing",
    "display",
    "float",
    "clear",
    "overflow",
    "list-style-type",
    "list-style-position",
    "table-layout",
    "caption-side",
    "empty-cells",
];

/// Substrings (lower-case) that remove a whole CSS declaration from a `style`
/// attribute before the property allow-list is applied.
const CSS_FORBIDDEN: &[&str] = &[
    "url(",
    "expression",
    "image-set",
    "image(",
    "@import",
    "behavior",
    "binding",
    "javascript:",
    "vbscript:",
    "\\",
];

/// What remote images become while blocked: a small grey frame (an SVG image, which
/// cannot run script when used as an `<img>`; allowed by the body CSP as `data:`).
pub const BLOCKED_IMAGE: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='24' height='24' viewBox='0 0 24 24'%3E%3Crect x='1' y='1' width='22' height='22' rx='2' fill='%23eeeeee' stroke='%23999999'/%3E%3Cpath d='M4 18l5-6 3 3 3-4 5 7z' fill='%23bbbbbb'/%3E%3C/svg%3E";

/// Sanitises an HTML body (see the module docs for what is kept).
pub fn sanitize_html(html: &str, opts: &Options) -> Sanitized {
    // The attribute filter must be 'static, so `cid_url` cannot be called from it:
    // a first pass collects the Content-IDs referenced, they are resolved here, and the
    // second pass rewrites with the resolved map. Without "cid:" in the text (entity
    // tricks included) the map stays empty and any cid: URL is removed.
    let mut cids = HashMap::new();
    if contains_ci(html, "cid:") {
        let collect = Arc::new(State {
            allow_remote: opts.allow_remote_images,
            blocked: AtomicUsize::new(0),
            cids: HashMap::new(),
            collected: Some(Mutex::new(HashSet::new())),
        });
        let _ = builder(collect.clone()).clean(html);
        let found = collect
            .collected
            .as_ref()
            .map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default();
        for id in found {
            let url = (opts.cid_url)(&id);
            cids.insert(id, url);
        }
    }
    let state = Arc::new(State {
        allow_remote: opts.allow_remote_images,
        blocked: AtomicUsize::new(0),
        cids,
        collected: None,
    });
    let html = builder(state.clone()).clean(html).to_string();
    Sanitized {
        html,
        remote_blocked: state.blocked.load(Ordering::Relaxed),
    }
}

/// The Content-Security-Policy of the body document: no script, frame, form, font or
/// connection at all; inline styles (already filtered) allowed; images from `data:`
/// and the webmail itself (`cid:` parts), plus any `http(s):` image once the user
/// allowed remote images. The `sandbox` directive keeps the document sandboxed (no
/// scripts, opaque origin) even when it is opened outside the reader's iframe.
pub fn body_csp(allow_remote: bool) -> &'static str {
    if allow_remote {
        "default-src 'none'; img-src data: 'self' https: http:; style-src 'unsafe-inline'; \
         font-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; \
         sandbox allow-popups allow-popups-to-escape-sandbox"
    } else {
        "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; \
         font-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; \
         sandbox allow-popups allow-popups-to-escape-sandbox"
    }
}

/// Per-call state shared with the ('static) attribute filter.
struct State {
    allow_remote: bool,
    blocked: AtomicUsize,
    /// Resolved Content-IDs (second pass).
    cids: HashMap<String, Option<String>>,
    /// Content-IDs seen (first pass only).
    collected: Option<Mutex<HashSet<String>>>,
}

impl State {
    fn block(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }

    /// A `cid:` reference: recorded in the first pass, resolved in the second.
    fn cid(&self, id: &str) -> Option<String> {
        let id = percent_decode(id);
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
    fn filter<'u>(&self, element: &str, attr: &str, value: &'u str) -> Option<Cow<'u, str>> {
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

    /// Removes declarations that could load or run something; ammonia then applies
    /// the property allow-list and normalises what is left.
    fn style(&self, value: &str) -> Option<String> {
        let mut kept = Vec::new();
        for decl in value.split(';') {
            let lower = decl.to_ascii_lowercase();
            if CSS_FORBIDDEN.iter().any(|bad| lower.contains(bad)) {
                if !self.allow_remote && is_remote_css_url(&lower) {
                    self.block();
                }
                continue;
            }
            if !decl.trim().is_empty() {
                kept.push(decl);
            }
        }
        (!kept.is_empty()).then(|| kept.join(";"))
    }
}

/// Whether a CSS text holds a `url(...)` pointing off the machine.
fn is_remote_css_url(lower: &str) -> bool {
    lower.split("url(").skip(1).any(|rest| {
        let target = rest
            .trim_start()
            .trim_start_matches(['"', '\''])
            .trim_start();
        target.starts_with("http:") || target.starts_with("https:") || target.starts_with("//")
    })
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

/// `%XX` decoding (RFC 2392 cid URLs); invalid escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The ammonia configuration, with the attribute filter bound to `state`.
fn builder(state: Arc<State>) -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::empty();
    b.tags(TAGS.iter().copied().collect())
        .clean_content_tags(DROP_WITH_CONTENT.iter().copied().collect())
        .generic_attributes(GENERIC_ATTRIBUTES.iter().copied().collect())
        .tag_attributes(
            TAG_ATTRIBUTES
                .iter()
                .map(|(t, a)| (*t, a.iter().copied().collect()))
                .collect(),
        )
        .url_schemes(
            ["http", "https", "mailto", "cid", "data"]
                .into_iter()
                .collect(),
        )
        .url_relative(ammonia::UrlRelative::PassThrough)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        // Allowed remote images must not tell the sender which mailbox and message
        // (the body URL) they were shown in.
        .set_tag_attribute_value("img", "referrerpolicy", "no-referrer")
        .strip_comments(true)
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect())
        .attribute_filter(move |element, attr, value| state.filter(element, attr, value));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str, allow: bool) -> Sanitized {
        let cid = |id: &str| {
            (id == "logo@x").then(|| "/webmail/mailbox/INBOX/7/part/2?inline=1".to_string())
        };
        sanitize_html(
            html,
            &Options {
                allow_remote_images: allow,
                cid_url: &cid,
            },
        )
    }

    /// What a case expects of the output.
    enum Want {
        /// The lower-cased output must not contain this (lower-cased).
        Absent(&'static str),
        /// The output must contain this.
        Present(&'static str),
        /// `remote_blocked` equals this.
        Blocked(usize),
    }
    use Want::*;

    /// (input, allow remote images, expectations)
    const CASES: &[(&str, bool, &[Want])] = &[
        (
            "<p>hola <b>mundo</b></p>",
            false,
            &[Present("<p>hola <b>mundo</b></p>"), Blocked(0)],
        ),
        (
            "<script>alert(1)</script>x",
            false,
            &[Absent("<script"), Absent("alert"), Present("x")],
        ),
        (
            "<ScRiPt>alert(1)</sCrIpT>",
            false,
            &[Absent("<script"), Absent("alert")],
        ),
        (
            "<scr<!-- c -->ipt>alert(1)</script>",
            false,
            &[Absent("<script"), Absent("<scr")],
        ),
        (
            "<img src=x onerror=alert(1)>",
            false,
            &[Absent("onerror"), Absent("alert")],
        ),
        ("<body onload=alert(1)>t</body>", false, &[Absent("onload")]),
        (
            "<div onmouseover='alert(1)'>t</div>",
            false,
            &[Absent("onmouseover"), Present("<div>t</div>")],
        ),
        (
            "<a href=\"javascript:alert(1)\">l</a>",
            false,
            &[Absent("javascript"), Absent("href")],
        ),
        (
            "<a href=\"JaVaScRiPt:alert(1)\">l</a>",
            false,
            &[Absent("javascript"), Absent("href")],
        ),
        (
            "<a href=\"&#106;avascript&#58;alert(1)\">l</a>",
            false,
            &[Absent("javascript"), Absent("href")],
        ),
        (
            "<a href=\" java\tscript:alert(1)\">l</a>",
            false,
            &[Absent("script:"), Absent("href")],
        ),
        (
            "<a href=\"&#x6A;&#x61;vascript:alert(1)\">l</a>",
            false,
            &[Absent("href")],
        ),
        (
            "<a href=\"vbscript:msgbox(1)\">l</a>",
            false,
            &[Absent("vbscript"), Absent("href")],
        ),
        (
            "<a href=\"data:text/html;base64,PHNjcmlwdD4=\">l</a>",
            false,
            &[Absent("data:"), Absent("href")],
        ),
        (
            "<a href=\"/webmail/logout\">l</a>",
            false,
            &[Absent("href")],
        ),
        ("<a href=\"#top\">l</a>", false, &[Absent("href")]),
        (
            "<a href=\"https://example.org/\" ping=\"http://t.example/p\">l</a>",
            false,
            &[
                Present("href=\"https://example.org/\""),
                Present("rel=\"noopener noreferrer\""),
                Present("target=\"_blank\""),
                Absent("ping"),
            ],
        ),
        (
            "<a href=\"mailto:a@b.c\">m</a>",
            false,
            &[Present("href=\"mailto:a@b.c\"")],
        ),
        (
            "<svg onload=alert(1)><script>alert(2)</script></svg>",
            false,
            &[Absent("svg"), Absent("alert")],
        ),
        (
            "<svg><use href=\"data:image/svg+xml,x#a\"/></svg>",
            false,
            &[Absent("use"), Absent("svg")],
        ),
        (
            "<math><mtext><script>alert(1)</script></mtext></math>",
            false,
            &[Absent("math"), Absent("alert")],
        ),
        (
            "<iframe src=\"http://e/\"></iframe><object data=x></object><embed src=y>",
            false,
            &[
                Absent("iframe"),
                Absent("object"),
                Absent("embed"),
                Blocked(0),
            ],
        ),
        (
            "<form action=\"http://e/\"><input name=p><button>go</button></form>",
            false,
            &[
                Absent("<form"),
                Absent("<input"),
                Absent("<button"),
                Absent("action"),
            ],
        ),
        (
            "<meta http-equiv=refresh content=\"0;url=http://e/\">x",
            false,
            &[Absent("<meta"), Absent("refresh")],
        ),
        (
            "<base href=\"http://e/\"><link rel=stylesheet href=\"http://e/s.css\"><link rel=dns-prefetch href=\"//e\">",
            false,
            &[Absent("<base"), Absent("<link")],
        ),
        (
            "<style>body{background:url(http://e/i.png)}</style>x",
            false,
            &[Absent("<style"), Absent("url(")],
        ),
        (
            "<p style=\"color: red; width: expression(alert(1)); background: url(http://e/i.png); position: fixed; top: 0\">x</p>",
            false,
            &[
                Present("color:red"),
                Absent("expression"),
                Absent("url"),
                Absent("position"),
                Absent("top"),
                Blocked(1),
            ],
        ),
        (
            "<p style=\"background-image:url('javascript:alert(1)')\">x</p>",
            false,
            &[Absent("javascript"), Absent("url"), Blocked(0)],
        ),
        (
            "<p style=\"behavior: url(x.htc); -moz-binding: url(y)\">x</p>",
            false,
            &[Absent("behavior"), Absent("binding")],
        ),
        (
            "<p style=\"b\\61 ckground: u\\72l(http://e/)\">x</p>",
            false,
            &[Absent("http"), Absent("ckground")],
        ),
        (
            "<img src=\"http://e/track.gif\" width=1 height=1>",
            false,
            &[Absent("http://e/"), Present(BLOCKED_IMAGE), Blocked(1)],
        ),
        (
            "<img src=\"https://e/a.png\" referrerpolicy=\"unsafe-url\">",
            true,
            &[
                Present("src=\"https://e/a.png\""),
                Present("referrerpolicy=\"no-referrer\""),
                Absent("unsafe-url"),
                Blocked(0),
            ],
        ),
        (
            "<img src=\"//e/a.png\">",
            false,
            &[Absent("//e/"), Blocked(1)],
        ),
        (
            "<img srcset=\"http://e/a.png 1x, http://e/b.png 2x\" src=\"http://e/c.png\">",
            false,
            &[Absent("srcset"), Absent("http://e/"), Blocked(2)],
        ),
        (
            "<img srcset=\"http://e/a.png 1x\">",
            true,
            &[Present("srcset=\"http://e/a.png 1x\"")],
        ),
        (
            "<table background=\"http://e/bg.png\"><tr><td background=\"https://e/x\">c</td></tr></table>",
            false,
            &[Absent("background"), Blocked(2)],
        ),
        (
            "<picture><source srcset=\"http://e/p.webp\"><img src=\"cid:logo@x\"></picture>",
            false,
            &[
                Absent("<source"),
                Absent("http://e/"),
                Present("src=\"/webmail/mailbox/INBOX/7/part/2?inline=1\""),
                Blocked(0),
            ],
        ),
        (
            "<img src=\"cid:logo%40x\">",
            false,
            &[Present("/part/2?inline=1")],
        ),
        (
            "<img src=\"CID:<logo@x>\">",
            false,
            &[Present("/part/2?inline=1")],
        ),
        (
            "<img src=\"cid:unknown@x\" alt=a>",
            false,
            &[Absent("src"), Absent("cid")],
        ),
        (
            "<img src=\"data:image/png;base64,iVBORw0KGgo=\">",
            false,
            &[Present("src=\"data:image/png;base64,iVBORw0KGgo=\"")],
        ),
        (
            "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\">",
            false,
            &[Absent("svg+xml;base64")],
        ),
        (
            "<img src=\"data:text/html,<script>alert(1)</script>\">",
            false,
            &[Absent("text/html"), Absent("src=")],
        ),
        ("<img src=\"/webmail/logout\">", false, &[Absent("src=")]),
        (
            "<textarea><img src=x onerror=alert(1)></textarea>",
            false,
            &[Absent("onerror"), Absent("<img")],
        ),
        (
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
            false,
            &[Absent("onerror=alert")],
        ),
        (
            "<!-- <img src=x onerror=alert(1)> -->",
            false,
            &[Absent("<img"), Absent("<!--")],
        ),
        (
            "<p id=x name=y data-foo=1 class=c>x</p>",
            false,
            &[Absent("id="), Absent("data-foo"), Present("class=\"c\"")],
        ),
    ];

    #[test]
    fn table_of_hostile_and_benign_inputs() {
        for (i, (input, allow, wants)) in CASES.iter().enumerate() {
            let out = run(input, *allow);
            let lower = out.html.to_lowercase();
            for want in *wants {
                match want {
                    Absent(s) => assert!(
                        !lower.contains(&s.to_lowercase()),
                        "case {i}: {input:?} -> {:?} contains {s:?}",
                        out.html
                    ),
                    Present(s) => assert!(
                        out.html.contains(s),
                        "case {i}: {input:?} -> {:?} lacks {s:?}",
                        out.html
                    ),
                    Blocked(n) => assert_eq!(
                        out.remote_blocked, *n,
                        "case {i}: {input:?} -> {:?}",
                        out.html
                    ),
                }
            }
            // Invariants for every case.
            assert!(!lower.contains("<script"), "case {i}: {}", out.html);
            assert!(!lower.contains("javascript:"), "case {i}: {}", out.html);
            assert!(
                !has_event_attribute(&out.html),
                "case {i}: event attribute in {}",
                out.html
            );
        }
    }

    /// An `on...=` attribute in the serialised output (the serialiser escapes `<` and
    /// `>` in text, so a space inside `<...>` starts an attribute or is in a value).
    fn has_event_attribute(html: &str) -> bool {
        let mut in_tag = false;
        for (i, b) in html.bytes().enumerate() {
            match b {
                b'<' => in_tag = true,
                b'>' => in_tag = false,
                b' ' if in_tag => {
                    let rest = &html[i + 1..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect();
                    if name.to_ascii_lowercase().starts_with("on")
                        && rest[name.len()..].starts_with('=')
                    {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }

    #[test]
    fn every_remote_image_counts_and_none_survive_unless_allowed() {
        let html = "<img src=http://a/1><img src=https://a/2><img src=HTTP://a/3>\
                    <table><tr><td background=http://a/4>x</td></tr></table>";
        let blocked = run(html, false);
        assert_eq!(blocked.remote_blocked, 4, "{}", blocked.html);
        assert!(!blocked.html.contains("://a/"), "{}", blocked.html);
        let allowed = run(html, true);
        assert_eq!(allowed.remote_blocked, 0);
        assert!(
            allowed.html.contains("http://a/1") && allowed.html.contains("https://a/2"),
            "{}",
            allowed.html
        );
    }

    #[test]
    fn csp_has_no_script_source_and_images_follow_the_choice() {
        for allow in [false, true] {
            let csp = body_csp(allow);
            assert!(csp.starts_with("default-src 'none';"), "{csp}");
            assert!(!csp.contains("script-src"), "{csp}");
            assert!(!csp.contains("allow-scripts"), "{csp}");
            assert!(csp.contains("form-action 'none'") && csp.contains("base-uri 'none'"));
            assert!(csp.contains("frame-ancestors 'self'"));
            assert_eq!(csp.contains("https: http:"), allow, "{csp}");
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        let deep = "<div>".repeat(5000);
        for input in [
            "",
            "<",
            "%",
            "<img src=cid:%>",
            "<img src=cid:%4>",
            "<img src='cid:%ZZ'>",
            "<img src='cid:%C3'>",
            "\u{0}<a href=\u{0}javascript:x>",
            &deep,
        ] {
            let out = run(input, false);
            assert!(!out.html.contains("javascript"), "{}", out.html);
        }
    }
}
