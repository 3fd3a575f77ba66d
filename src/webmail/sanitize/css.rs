//! CSS in `style` attributes: declarations that could load or run something are
//! removed (and remote `url()`s counted as blocked images) before ammonia keeps only
//! the properties in [`STYLE_PROPERTIES`].

use super::State;

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

impl State {
    /// Removes declarations that could load or run something; ammonia then applies
    /// the property allow-list and normalises what is left.
    pub(super) fn style(&self, value: &str) -> Option<String> {
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
