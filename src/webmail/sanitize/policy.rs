//! What HTML the sanitiser keeps: the allow-lists of elements and attributes, the
//! elements dropped with their content, and the ammonia configuration that applies
//! them together with the attribute filter (`urls`) and the CSS property list (`css`).

use std::sync::Arc;

use super::State;
use super::css::STYLE_PROPERTIES;

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

/// The attributes a table cell (`td`, `th`) keeps.
const CELL_ATTRIBUTES: &[&str] = &[
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
];

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
    ("td", CELL_ATTRIBUTES),
    ("th", CELL_ATTRIBUTES),
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

/// The ammonia configuration, with the attribute filter bound to `state`.
pub(super) fn builder(state: Arc<State>) -> ammonia::Builder<'static> {
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
