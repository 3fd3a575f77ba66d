//! The HTML sanitiser of the webmail reader: turns an untrusted HTML mail body into a
//! fragment that is safe to show inside the reader's sandboxed body iframe, plus the
//! Content-Security-Policy that document is served with.
//!
//! Invariants (each has a unit test in `tests` and a Chromium test in
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
//!
//! Files: this one (entry points, options, the per-call state), `policy` (the
//! element and attribute allow-lists and the ammonia configuration), `urls` (the
//! attribute filter for URL-valued attributes: classification, `cid:` resolution,
//! remote-image blocking), `css` (filtering of `style` attributes), `tests`.

mod css;
mod policy;
mod urls;

#[cfg(test)]
mod tests;

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

pub use css::STYLE_PROPERTIES;
use policy::builder;
pub use urls::BLOCKED_IMAGE;

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
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}
