//! Media types by file extension, and which of them are worth compressing.
//! Text types carry `charset=utf-8`; unknown extensions are `application/octet-stream`.

/// The Content-Type for a content path.
pub fn for_path(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext,
        _ => return "application/octet-stream",
    };
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "xml" => "application/xml",
        "rss" => "application/rss+xml",
        "atom" => "application/atom+xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "wasm" => "application/wasm",
        "ics" => "text/calendar; charset=utf-8",
        "vcf" => "text/vcard; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether responses of this type shrink usefully with gzip or brotli.
pub fn compressible(mime: &str) -> bool {
    mime.starts_with("text/")
        || mime.starts_with("application/json")
        || mime.starts_with("application/manifest+json")
        || mime.starts_with("application/xml")
        || mime.starts_with("application/rss+xml")
        || mime.starts_with("application/atom+xml")
        || mime.starts_with("application/wasm")
        || mime == "image/svg+xml"
        || mime == "image/x-icon"
        || mime == "image/bmp"
        || mime == "font/ttf"
        || mime == "font/otf"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        assert_eq!(for_path("www/index.html"), "text/html; charset=utf-8");
        assert_eq!(for_path("www/a/B.CSS"), "text/css; charset=utf-8");
        assert_eq!(for_path("www/logo.svg"), "image/svg+xml");
        assert_eq!(for_path("www/x.tar.gz"), "application/gzip");
        assert_eq!(for_path("www/.htaccess"), "application/octet-stream");
        assert_eq!(for_path("www/README"), "application/octet-stream");
        assert!(compressible(for_path("a.js")));
        assert!(compressible(for_path("a.svg")));
        assert!(!compressible(for_path("a.png")));
        assert!(!compressible(for_path("a.woff2")));
    }
}
