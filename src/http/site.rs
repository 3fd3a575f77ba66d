//! The static site: content roots of the store's content area held in memory, and
//! the GET/HEAD semantics served from them (index.html, MIME types, ETag and
//! Last-Modified with conditional requests, single byte ranges, gzip and brotli,
//! the custom 404 page).
//!
//! Implementation notes
//! - A root is a prefix of the content area (`www`, `www-intranet`, ...). Each is
//!   loaded as a whole into a [`Root`] (bytes, pre-rendered header values, the
//!   compressed variants made once) and swapped in behind an `RwLock` held only to
//!   clone an `Arc`; a request never touches SQLite or a blob file, except for files
//!   above [`MAX_CACHED`], whose bytes are streamed from their blob file per request
//!   (64 KiB at a time: memory per download stays small whatever the file's size).
//! - The store's change feed (`Change::Content`) marks a root stale; it is reloaded
//!   after a short debounce, reusing every entry whose blob did not change (so an
//!   edit recompresses one file). A lagged feed reloads every root.
//! - While the store holds nothing under `www/` (first start on a standby, or before
//!   the import), the default root serves the `www/` files embedded in the binary.
//!   [`import_default`] loads those files into the store at start when it is
//!   writable; [`Site::keep_default`] does it later for a node that was not.
//! - Only paths under a configured root are reachable: a request path is resolved by
//!   `path::resolve` to a path relative to its root and looked up in that root's map;
//!   other content (e.g. `zones/`) is never in any map.
//! - ETags are strong and name the representation: the blob's hash for the identity
//!   bytes, with `-gz`/`-br` for the compressed ones. Ranges are served from the
//!   identity bytes only.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use http_body_util::Full;
use sha2::Digest;

use super::mime;
use super::path::{self, Target};
use crate::store::{ContentEntry, Store};

/// Files above this size are not kept in memory (read from their blob per request).
pub const MAX_CACHED: u64 = 16 * 1024 * 1024;
/// Compressed variants are made for files up to this size.
const MAX_COMPRESS: u64 = 8 * 1024 * 1024;
/// Root of the default site.
pub const DEFAULT_ROOT: &str = "www";

/// The repository's `www/`, built into the binary.
pub const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../www/index.html")),
    ("404.html", include_bytes!("../../www/404.html")),
    ("estilo.css", include_bytes!("../../www/estilo.css")),
    ("logo.svg", include_bytes!("../../www/logo.svg")),
];

/// A response extension: its body is `len` bytes of the file at `path` from `start`
/// (a site file above [`MAX_CACHED`]), read and sent a chunk at a time.
#[derive(Clone, Debug)]
pub struct Streamed {
    pub path: std::path::PathBuf,
    pub start: u64,
    pub len: u64,
}

/// Chunks of a streamed file: a few of these per connection, whatever the file size.
const STREAM_CHUNK: usize = 64 * 1024;

impl Streamed {
    /// The body: the file's bytes as they are read. A read error ends the body early
    /// (the client sees a short response, as when the connection drops).
    pub async fn body(self) -> std::io::Result<axum::body::Body> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(&self.path).await?;
        file.seek(std::io::SeekFrom::Start(self.start)).await?;
        let chunks = futures::stream::unfold((file, self.len), |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; STREAM_CHUNK.min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(buf)),
                        (file, left - n as u64),
                    ))
                }
                Err(e) => Some((Err(e), (file, 0))),
            }
        });
        Ok(axum::body::Body::from_stream(chunks))
    }
}

/// One stored encoding of a file.
pub struct Variant {
    pub body: Bytes,
    pub len: HeaderValue,
    pub etag: HeaderValue,
}

/// A file ready to serve.
pub struct File {
    blob: String,
    size: u64,
    mtime: i64,
    mime: HeaderValue,
    last_modified: HeaderValue,
    /// Identity bytes; `None` for a file above [`MAX_CACHED`] (read from `blob`).
    identity: Option<Variant>,
    etag: HeaderValue,
    gzip: Option<Variant>,
    br: Option<Variant>,
}

/// One content root in memory: relative path → file, and the directories it has.
#[derive(Default)]
pub struct Root {
    files: HashMap<String, Arc<File>>,
    dirs: HashSet<String>,
}

/// The body type of every static response.
pub type Body = Full<Bytes>;

/// All roots, and the host → root table.
pub struct Site {
    store: Store,
    /// Content prefixes; index 0 is the default site.
    prefixes: Vec<String>,
    /// Lower-case host name → index into `prefixes`.
    hosts: HashMap<String, usize>,
    roots: RwLock<Vec<Arc<Root>>>,
    /// The embedded site, served while the store has no `www/` content.
    embedded: Arc<Root>,
    /// Set while [`Site::keep_default`] may be importing the default site.
    importing: AtomicBool,
}

impl Site {
    /// Builds the site for `vhosts` (name, aliases, root) and loads every root.
    pub async fn load(store: Store, vhosts: &[crate::config::VhostConfig]) -> Site {
        let mut prefixes = vec![DEFAULT_ROOT.to_string()];
        let mut hosts = HashMap::new();
        for v in vhosts {
            let root = crate::store::normalize_content_path(&v.root).unwrap_or_default();
            let idx = match prefixes.iter().position(|p| *p == root) {
                Some(i) => i,
                None => {
                    prefixes.push(root);
                    prefixes.len() - 1
                }
            };
            for h in std::iter::once(&v.name).chain(&v.aliases) {
                hosts.insert(h.trim_end_matches('.').to_ascii_lowercase(), idx);
            }
        }
        let embedded = Arc::new(embedded_root().await);
        let site = Site {
            store,
            roots: RwLock::new(
                (0..prefixes.len())
                    .map(|_| Arc::new(Root::default()))
                    .collect(),
            ),
            prefixes,
            hosts,
            embedded,
            importing: AtomicBool::new(false),
        };
        for i in 0..site.prefixes.len() {
            site.reload(i).await;
        }
        site
    }

    /// Re-reads root `i` from the store, reusing unchanged entries.
    async fn reload(&self, i: usize) {
        let prefix = format!("{}/", self.prefixes[i]);
        let entries = match self.store.content_list(&prefix).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(root = %self.prefixes[i], "http: cannot list the site content: {e}");
                return;
            }
        };
        let old = self.roots.read().unwrap()[i].clone();
        let mut root = Root::default();
        for e in entries {
            let Some(rel) = e.path.strip_prefix(&prefix) else {
                continue;
            };
            let rel = rel.to_string();
            let file = match old.files.get(&rel) {
                Some(f) if f.blob == e.blob && f.mtime == e.mtime => f.clone(),
                _ => match self.load_file(&e).await {
                    Some(f) => Arc::new(f),
                    None => continue,
                },
            };
            root.add(rel, file);
        }
        tracing::debug!(root = %self.prefixes[i], files = root.files.len(), "http: site loaded");
        self.roots.write().unwrap()[i] = Arc::new(root);
    }

    async fn load_file(&self, e: &ContentEntry) -> Option<File> {
        if e.size > MAX_CACHED {
            return Some(File::build(&e.path, e.blob.clone(), None, e.size, e.mtime).await);
        }
        match self.store.read_blob(&e.blob).await {
            Ok(bytes) => {
                let size = bytes.len() as u64;
                Some(File::build(&e.path, e.blob.clone(), Some(bytes), size, e.mtime).await)
            }
            Err(err) => {
                tracing::warn!(path = %e.path, "http: cannot read site file: {err}");
                None
            }
        }
    }

    /// Keeps the roots current from the store's change feed (runs forever).
    /// `rx` is subscribed before the site was loaded, so no change falls in between.
    pub async fn follow_changes(
        self: Arc<Self>,
        mut rx: tokio::sync::broadcast::Receiver<crate::store::Change>,
    ) {
        loop {
            let mut stale = vec![false; self.prefixes.len()];
            if !self.mark(&mut stale, rx.recv().await) {
                return;
            }
            if !stale.contains(&true) {
                continue;
            }
            // Debounce: an upload of many files reloads once.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(30);
            while let Ok(c) = tokio::time::timeout_at(deadline, rx.recv()).await {
                if !self.mark(&mut stale, c) {
                    return;
                }
            }
            for (i, s) in stale.iter().enumerate() {
                if *s {
                    self.reload(i).await;
                }
            }
        }
    }

    /// Marks the roots a change touches as stale; false when the feed is closed.
    fn mark(
        &self,
        stale: &mut [bool],
        change: Result<crate::store::Change, tokio::sync::broadcast::error::RecvError>,
    ) -> bool {
        use tokio::sync::broadcast::error::RecvError;
        match change {
            Ok(crate::store::Change::Content { path }) => {
                for (i, p) in self.prefixes.iter().enumerate() {
                    if path.len() > p.len()
                        && path.starts_with(p.as_str())
                        && path.as_bytes()[p.len()] == b'/'
                    {
                        stale[i] = true;
                    }
                }
                true
            }
            Ok(_) => true,
            Err(RecvError::Lagged(_)) => {
                stale.iter_mut().for_each(|s| *s = true);
                true
            }
            Err(RecvError::Closed) => false,
        }
    }

    /// The root serving `host` (a Host header value, maybe with a port).
    fn root_for(&self, host: Option<&str>) -> Arc<Root> {
        let idx = match host {
            Some(h) if !self.hosts.is_empty() => {
                let name = strip_port(h).trim_end_matches('.').to_ascii_lowercase();
                self.hosts.get(&name).copied().unwrap_or(0)
            }
            _ => 0,
        };
        let root = self.roots.read().unwrap()[idx].clone();
        if idx == 0 && (root.files.is_empty() || self.importing.load(Ordering::Relaxed)) {
            return self.embedded.clone();
        }
        root
    }

    /// Answers a GET or HEAD (anything else: 405) for the static site.
    pub async fn serve(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> Response<Body> {
        let head = *method == Method::HEAD;
        if *method != Method::GET && !head {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let root = self.root_for(host);
        let target = match path::resolve(uri.path()) {
            Ok(t) => t,
            Err(path::BadPath) => return plain(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
        };
        let file = match &target {
            Target::File(rel) => match root.files.get(rel) {
                Some(f) => f,
                None if root.dirs.contains(rel) => {
                    let loc = match uri.query() {
                        Some(q) => format!("{}/?{q}", uri.path()),
                        None => format!("{}/", uri.path()),
                    };
                    return redirect(StatusCode::MOVED_PERMANENTLY, &loc);
                }
                None => return self.not_found(&root, head),
            },
            Target::Dir(d) => {
                let key = if d.is_empty() {
                    "index.html".to_string()
                } else {
                    format!("{d}/index.html")
                };
                match root.files.get(&key) {
                    Some(f) => f,
                    None => return self.not_found(&root, head),
                }
            }
        };
        self.serve_file(file, headers, head).await
    }

    async fn serve_file(&self, f: &File, headers: &HeaderMap, head: bool) -> Response<Body> {
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| !head && if_range_holds(f, headers));
        // The representation: compressed when asked, unless a range is asked for.
        let variant = match (range, headers.get(header::ACCEPT_ENCODING)) {
            (None, Some(ae)) if f.br.is_some() || f.gzip.is_some() => {
                let ae = ae.to_str().unwrap_or("");
                if f.br.is_some() && accepts(ae, "br") {
                    f.br.as_ref().map(|v| (v, "br"))
                } else if f.gzip.is_some() && accepts(ae, "gzip") {
                    f.gzip.as_ref().map(|v| (v, "gzip"))
                } else {
                    None
                }
            }
            _ => None,
        };
        let etag = variant.map_or(&f.etag, |(v, _)| &v.etag);

        // RFC 9110 13.1.2, 13.1.3: If-None-Match wins over If-Modified-Since.
        let not_modified = match headers.get(header::IF_NONE_MATCH) {
            Some(inm) => etag_list_matches(inm.as_bytes(), etag.as_bytes()),
            None => headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .is_some_and(|ims| unix_secs(ims) >= f.mtime),
        };
        let mut h = HeaderMap::with_capacity(10);
        h.insert(header::ETAG, etag.clone());
        h.insert(header::LAST_MODIFIED, f.last_modified.clone());
        if f.gzip.is_some() || f.br.is_some() {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if not_modified {
            return respond(StatusCode::NOT_MODIFIED, h, Bytes::new());
        }
        h.insert(header::CONTENT_TYPE, f.mime.clone());
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some((v, coding)) = variant {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
            h.insert(header::CONTENT_LENGTH, v.len.clone());
            let body = if head { Bytes::new() } else { v.body.clone() };
            return respond(StatusCode::OK, h, body);
        }
        // A file too large to hold is not read here: the response names the part of
        // its blob file to stream ([`Streamed`]), and `http::route` sends it.
        let streamed = f.identity.is_none() && !head;
        let bytes = match (&f.identity, head) {
            (Some(v), false) => v.body.clone(),
            _ => Bytes::new(),
        };
        let stream = |h: HeaderMap, status: StatusCode, start: u64, len: u64| {
            let mut r = respond(status, h, Bytes::new());
            r.extensions_mut().insert(Streamed {
                path: self.store.blob_path(&f.blob),
                start,
                len,
            });
            r
        };
        match range.map(|r| parse_range(r, f.size)) {
            Some(ByteRange::Partial(start, end)) => {
                h.insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes {start}-{end}/{}", f.size)),
                );
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                if streamed {
                    return stream(h, StatusCode::PARTIAL_CONTENT, start, end - start + 1);
                }
                let body = bytes.slice(start as usize..=end as usize);
                respond(StatusCode::PARTIAL_CONTENT, h, body)
            }
            Some(ByteRange::Unsatisfiable) => {
                h.insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{}", f.size)),
                );
                h.remove(header::ETAG);
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                let body = Bytes::from_static(b"416 Range Not Satisfiable\n");
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                respond(StatusCode::RANGE_NOT_SATISFIABLE, h, body)
            }
            Some(ByteRange::Full) | None => {
                h.insert(
                    header::CONTENT_LENGTH,
                    match &f.identity {
                        Some(v) => v.len.clone(),
                        None => HeaderValue::from(f.size),
                    },
                );
                if streamed {
                    return stream(h, StatusCode::OK, 0, f.size);
                }
                respond(StatusCode::OK, h, bytes)
            }
        }
    }

    /// The site's 404 page (its own `404.html`, else the default site's, else text).
    fn not_found(&self, root: &Root, head: bool) -> Response<Body> {
        let pick = |r: &Root| -> Option<(HeaderValue, Bytes)> {
            let f = r.files.get("404.html")?;
            Some((f.mime.clone(), f.identity.as_ref()?.body.clone()))
        };
        let default = self.roots.read().unwrap()[0].clone();
        let (mime, body) = pick(root)
            .or_else(|| pick(&default))
            .or_else(|| pick(&self.embedded))
            .unwrap_or_else(|| {
                (
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                    Bytes::from_static(b"404 Not Found\n"),
                )
            });
        let mut h = HeaderMap::with_capacity(4);
        h.insert(header::CONTENT_TYPE, mime);
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        respond(
            StatusCode::NOT_FOUND,
            h,
            if head { Bytes::new() } else { body },
        )
    }
}

impl Root {
    fn add(&mut self, rel: String, file: Arc<File>) {
        let mut dir = rel.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if !self.dirs.insert(parent.to_string()) {
                break;
            }
            dir = parent;
        }
        self.files.insert(rel, file);
    }
}

impl File {
    /// Prepares a file: header values, and the compressed variants (on a blocking
    /// thread: brotli at its best level is slow).
    async fn build(
        path: &str,
        blob: String,
        bytes: Option<Vec<u8>>,
        size: u64,
        mtime: i64,
    ) -> File {
        let mime = mime::for_path(path);
        let tag: String = blob.chars().take(20).collect();
        let etag = header_value(&format!("\"{tag}\""));
        let last_modified = header_value(&httpdate::fmt_http_date(
            UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64),
        ));
        let mut file = File {
            blob,
            size,
            mtime,
            mime: HeaderValue::from_static(mime),
            last_modified,
            identity: None,
            etag: etag.clone(),
            gzip: None,
            br: None,
        };
        let Some(bytes) = bytes else {
            return file;
        };
        let body = Bytes::from(bytes);
        if mime::compressible(mime) && (128..=MAX_COMPRESS).contains(&size) {
            let src = body.clone();
            let (gz, br) = tokio::task::spawn_blocking(move || (gzip(&src), brotli(&src)))
                .await
                .unwrap_or((None, None));
            let worth = |c: Option<Vec<u8>>, suffix: &str| {
                c.filter(|c| (c.len() as u64) * 10 < size * 9)
                    .map(|c| Variant {
                        len: HeaderValue::from(c.len()),
                        body: Bytes::from(c),
                        etag: header_value(&format!("\"{tag}-{suffix}\"")),
                    })
            };
            file.gzip = worth(gz, "gz");
            file.br = worth(br, "br");
        }
        file.identity = Some(Variant {
            len: HeaderValue::from(body.len()),
            body,
            etag,
        });
        file
    }
}

/// The embedded default site as a root (its mtime: when this process started).
async fn embedded_root() -> Root {
    let mtime = crate::store::now();
    let mut root = Root::default();
    for (rel, bytes) in EMBEDDED {
        let blob = hex::encode(sha2::Sha256::digest(bytes));
        let size = bytes.len() as u64;
        let f = File::build(rel, blob, Some(bytes.to_vec()), size, mtime).await;
        root.add(rel.to_string(), Arc::new(f));
    }
    root
}

/// Loads the embedded `www/` into the store if the store is writable and holds no
/// `www/` content yet. True when `www/` has content afterwards.
pub async fn import_default(store: &Store) -> bool {
    match store.content_list(&format!("{DEFAULT_ROOT}/")).await {
        Ok(list) if !list.is_empty() => return true,
        Ok(_) if store.is_writable() => {}
        Ok(_) => return false,
        Err(e) => {
            tracing::warn!("http: cannot list the site content: {e}");
            return false;
        }
    }
    for (rel, bytes) in EMBEDDED {
        let path = format!("{DEFAULT_ROOT}/{rel}");
        if let Err(e) = store.put_content(&path, bytes.to_vec()).await {
            tracing::warn!(%path, "http: cannot load the default site: {e}");
            return false;
        }
    }
    tracing::info!("http: loaded the default site into the store (www/)");
    true
}

impl Site {
    /// For a node that could not import the default site at start (a standby): waits
    /// until `www/` has content, by replication or by importing it once this node is
    /// writable. The embedded site serves meanwhile, also while the import is half
    /// done.
    pub async fn keep_default(self: Arc<Self>) {
        loop {
            self.importing.store(true, Ordering::SeqCst);
            let done = import_default(&self.store).await;
            if done {
                self.reload(0).await;
            }
            self.importing.store(false, Ordering::SeqCst);
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::best(),
    );
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

fn brotli(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let quality = if data.len() <= 1 << 20 { 11 } else { 7 };
    let mut out = Vec::with_capacity(data.len() / 2);
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, quality, 22);
        w.write_all(data).ok()?;
        w.flush().ok()?;
    }
    Some(out)
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn respond(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A short text response.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut h = HeaderMap::with_capacity(3);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    respond(status, h, Bytes::from_static(text.as_bytes()))
}

/// A redirect to `location` (a path or an absolute URL).
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut h = HeaderMap::with_capacity(3);
    match HeaderValue::from_str(location) {
        Ok(v) => h.insert(header::LOCATION, v),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
    };
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    respond(status, h, Bytes::from_static(b"Moved\n"))
}

/// `host[:port]` or `[v6]:port` without the port.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether an Accept-Encoding value allows `coding` (RFC 9110 12.5.3): named with
/// q > 0, or covered by `*` with q > 0 and not named.
pub fn accepts(ae: &str, coding: &str) -> bool {
    let mut star = false;
    for item in ae.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case(coding) {
            return q > 0.0;
        }
        if name == "*" {
            star = q > 0.0;
        }
    }
    star
}

/// Whether an If-None-Match list names `etag` (weak comparison, RFC 9110 8.8.3.2)
/// or is `*`.
fn etag_list_matches(list: &[u8], etag: &[u8]) -> bool {
    let list = match std::str::from_utf8(list) {
        Ok(l) => l.trim(),
        Err(_) => return false,
    };
    if list == "*" {
        return true;
    }
    let want = std::str::from_utf8(etag).unwrap_or("");
    list.split(',')
        .map(|t| t.trim())
        .map(|t| t.strip_prefix("W/").unwrap_or(t))
        .any(|t| t == want)
}

/// If-Range (RFC 9110 13.1.5): the range applies only if the validator still holds
/// (an entity tag compared strongly, or the exact Last-Modified date).
fn if_range_holds(f: &File, headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(v) = v.to_str() else {
        return false;
    };
    let v = v.trim();
    if v.starts_with('"') {
        v.as_bytes() == f.etag.as_bytes()
    } else if v.starts_with("W/") {
        false
    } else {
        httpdate::parse_http_date(v).is_ok_and(|t| unix_secs(t) == f.mtime)
    }
}

/// What a Range header asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// Ignore it (not bytes, malformed, or several ranges): send everything.
    Full,
    /// Inclusive byte positions.
    Partial(u64, u64),
    Unsatisfiable,
}

/// RFC 9110 14.1.2 for a single range; several ranges get the whole representation.
pub fn parse_range(h: &str, len: u64) -> ByteRange {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if a.is_empty() {
        let Some(n) = num(b) else {
            return ByteRange::Full;
        };
        if n == 0 || len == 0 {
            return ByteRange::Unsatisfiable;
        }
        return ByteRange::Partial(len.saturating_sub(n), len - 1);
    }
    let Some(start) = num(a) else {
        return ByteRange::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match num(b) {
            Some(e) if e >= start => e,
            _ => return ByteRange::Full,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Partial(start, end.min(len - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=90-1000", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Partial(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("bytes=5-2", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=a-b", 100), Full);
        assert_eq!(parse_range("bytes=+1-2", 100), Full);
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("deflate", "gzip"));
        assert!(accepts("*", "br"));
        assert!(!accepts("*, br;q=0", "br"));
        assert!(!accepts("", "gzip"));
        assert!(accepts("GZIP", "gzip"));
    }

    #[test]
    fn if_none_match_lists() {
        assert!(etag_list_matches(b"\"a\", \"b\"", b"\"b\""));
        assert!(etag_list_matches(b"W/\"b\"", b"\"b\""));
        assert!(etag_list_matches(b"*", b"\"b\""));
        assert!(!etag_list_matches(b"\"a\"", b"\"b\""));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("www.cluster.com.ec:8080"), "www.cluster.com.ec");
        assert_eq!(strip_port("www.cluster.com.ec"), "www.cluster.com.ec");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
    }

    #[tokio::test]
    async fn embedded_site_is_compressed_once() {
        let root = embedded_root().await;
        let f = root.files.get("index.html").expect("index.html");
        assert!(f.gzip.is_some() && f.br.is_some());
        assert_ne!(f.etag, f.gzip.as_ref().unwrap().etag);
        let logo = root.files.get("logo.svg").expect("logo.svg");
        assert_eq!(logo.mime, "image/svg+xml");
        assert!(root.files.contains_key("404.html"));
    }
}
