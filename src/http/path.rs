//! Request paths to content paths, with no way out of a site's root.
//!
//! Invariants: the raw path is percent-decoded exactly once; an encoded `/` or `\`
//! (`%2f`, `%5c`), a decoded `\`, NUL or other control character, invalid UTF-8, and
//! any `.` or `..` segment (literal or encoded) make the request a 400; what comes
//! out is a relative path that [`crate::store::normalize_content_path`] accepts once
//! joined to the root, so the store itself refuses anything that slipped through.

use crate::mail::encoding::percent_units;

/// What a request path names inside a site's root.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A file, e.g. `css/site.css` (no leading slash).
    File(String),
    /// A directory (the path ended in `/`); `""` is the root.
    Dir(String),
}

/// Why a request path was refused (always answered with 400).
#[derive(Debug, PartialEq, Eq)]
pub struct BadPath;

/// Maps the raw (still percent-encoded) path of a request URI to a [`Target`].
pub fn resolve(raw: &str) -> Result<Target, BadPath> {
    let raw = raw.strip_prefix('/').ok_or(BadPath)?;
    if raw.len() > 2048 {
        return Err(BadPath);
    }
    let mut out = Vec::with_capacity(raw.len());
    for (b, escaped) in percent_units(raw.as_bytes()) {
        // A `%` that does not start an escape.
        if b == b'%' && !escaped {
            return Err(BadPath);
        }
        // An encoded separator would change the segmentation after decoding.
        if escaped && (b == b'/' || b == b'\\') {
            return Err(BadPath);
        }
        out.push(b);
    }
    let decoded = String::from_utf8(out).map_err(|_| BadPath)?;
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return Err(BadPath);
    }
    let (body, dir) = match decoded.strip_suffix('/') {
        Some(b) => (b, true),
        None => (decoded.as_str(), false),
    };
    if !body.is_empty()
        && body
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(BadPath);
    }
    if dir {
        Ok(Target::Dir(body.to_string()))
    } else if body.is_empty() {
        Ok(Target::Dir(String::new()))
    } else {
        Ok(Target::File(body.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str) -> Result<Target, BadPath> {
        Ok(Target::File(s.into()))
    }
    fn dir(s: &str) -> Result<Target, BadPath> {
        Ok(Target::Dir(s.into()))
    }

    #[test]
    fn plain_paths() {
        assert_eq!(resolve("/"), dir(""));
        assert_eq!(resolve("/index.html"), file("index.html"));
        assert_eq!(resolve("/docs/"), dir("docs"));
        assert_eq!(resolve("/docs"), file("docs"));
        assert_eq!(resolve("/a/b/c.css"), file("a/b/c.css"));
        assert_eq!(resolve("/caf%C3%A9.html"), file("café.html"));
        assert_eq!(resolve("/a%20b"), file("a b"));
        // Decoded once only: %252e stays the literal text %2e.
        assert_eq!(resolve("/%252e%252e/x"), file("%2e%2e/x"));
    }

    #[test]
    fn traversal_is_refused() {
        for p in [
            "/../etc/passwd",
            "/a/../../x",
            "/..",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a/./b",
            "/%2e/x",
            "/a%2f..%2fb",
            "/..%2fzones%2fx",
            "/a%5c..%5cb",
            "/a\\..\\b",
            "/a%00b",
            "/a%0ab",
            "//etc/passwd",
            "/a//b",
            "/%zz",
            "/%4",
            "/%ff",
            "relative",
        ] {
            assert_eq!(resolve(p), Err(BadPath), "{p}");
        }
    }

    #[test]
    fn every_accepted_path_is_a_valid_content_path() {
        for p in ["/", "/x", "/a/b/", "/caf%C3%A9", "/-/_/~"] {
            let rel = match resolve(p).unwrap() {
                Target::File(f) => f,
                Target::Dir(d) => format!("{d}/index.html"),
            };
            let full = format!("www/{}", rel.trim_start_matches('/'));
            assert!(crate::store::normalize_content_path(&full).is_ok(), "{p}");
        }
    }
}
