//! HTTP server: the organisation's site from the store's content area (virtual hosts by
//! Host header) over HTTP and HTTPS, with the webmail mounted at `/webmail/`.
//!
//! Files: `server` (listeners, TLS, HTTP/1.1 and HTTP/2 connections, timeouts and
//! limits), `site` (the static site: in-memory content roots, conditional requests,
//! ranges, compression, 404), `path` (request path → content path, no escapes),
//! `mime` (types by extension), `log` (the access log).
//!
//! Implementation notes
//! - Routing is a prefix test, not a router, so that the static site (the hot path)
//!   costs no routing table walk: `/webmail` answers 308 to `/webmail/`; a path under
//!   `/webmail/` goes, with the prefix stripped (as `axum::Router::nest` would), to
//!   the axum router of `crate::webmail::router`, with a [`ConnInfo`] in its
//!   extensions; `/status`, `/status.json` and `/metrics` go to the monitor
//!   (`crate::monitor::web`, which checks `monitor.status_from`); everything else is
//!   the static site (GET and HEAD only).
//! - With `redirect_to_https`, every plain-HTTP request gets a 301 to the same path
//!   on the first `https_listen` port, the webmail included.
//! - The access log records every request once its response head is known (bytes:
//!   the body length when known in advance, else `-`).
//! - HTTPS uses the node's TLS identity (`crate::tls::Identity`, the same certificate
//!   as mail) in its own rustls configuration offering ALPN `h2` and `http/1.1`.

mod log;
mod mime;
mod path;
mod server;
mod site;

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::{Body as _, Incoming};
use tokio_rustls::TlsAcceptor;

use crate::ctx::{ConnInfo, Ctx};

/// The body of every response: static bytes, or whatever the webmail streams.
pub type ResponseBody = Either<http_body_util::Full<Bytes>, axum::body::Body>;

/// Everything a request needs, shared by all connections.
pub struct App {
    site: Arc<site::Site>,
    webmail: axum::Router,
    log: Option<log::AccessLog>,
    /// `Some(port)` when plain HTTP redirects to HTTPS (`None` inside: port 443).
    redirect_https: Option<Option<u16>>,
    domain: String,
    /// `/status`, `/status.json`, `/metrics`.
    monitor: Arc<crate::monitor::Monitor>,
    /// `http.request_timeout_s`.
    request_timeout: std::time::Duration,
}

/// The HTTP service's lasting part: the site, the webmail (its sessions live in it,
/// so a restart of the service logs nobody out), the TLS acceptor and the limits.
pub struct Http {
    ctx: Arc<Ctx>,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    limits: server::Limits,
    conns: Arc<tokio::sync::Semaphore>,
    per_ip: Arc<crate::perip::PerIp>,
}

/// Prepares the HTTP service (site, webmail, access log); [`Http::serve`] binds
/// `http.listen` and `http.https_listen`.
pub async fn prepare(ctx: Arc<Ctx>, monitor: Arc<crate::monitor::Monitor>) -> Result<Arc<Http>> {
    let cfg = &ctx.cfg.http;
    let log = cfg
        .access_log
        .as_deref()
        .map(|p| {
            log::AccessLog::open(
                p,
                log::Rotation {
                    max_bytes: cfg.access_log_max_mb << 20,
                    keep: cfg.access_log_keep,
                },
            )
        })
        .transpose()?;
    let changes = ctx.store.subscribe();
    // A watched directory published into www/ owns the site: the default site is not
    // imported (it would race the watcher on a node that becomes active later, and an
    // empty watched directory means an empty site; the embedded one serves then).
    let watched = cfg.publish_dir.is_some() && cfg.publish_root == site::DEFAULT_ROOT;
    let imported = watched || site::import_default(&ctx.store).await;
    let site = Arc::new(site::Site::load(ctx.store.clone(), &cfg.vhost).await);
    tokio::spawn(site.clone().follow_changes(changes));
    if !imported {
        tokio::spawn(site.clone().keep_default());
    }

    let tls = if cfg.https_listen.is_empty() {
        None
    } else {
        Some(TlsAcceptor::from(
            ctx.identity.server_config(&[b"h2", b"http/1.1"]),
        ))
    };
    let app = Arc::new(App {
        site,
        webmail: crate::webmail::router(ctx.clone()),
        log,
        redirect_https: cfg
            .redirect_to_https
            .then(|| server::https_port(&cfg.https_listen)),
        domain: ctx.cfg.domain.name.clone(),
        monitor,
        request_timeout: std::time::Duration::from_secs(cfg.request_timeout_s),
    });
    let limits = server::Limits {
        header_timeout: std::time::Duration::from_secs(cfg.header_timeout_s),
        idle_timeout: std::time::Duration::from_secs(cfg.idle_timeout_s),
        max_header_bytes: cfg.max_header_bytes,
    };
    let conns = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    Ok(Arc::new(Http {
        ctx: ctx.clone(),
        app,
        tls,
        limits,
        conns,
        per_ip: crate::perip::PerIp::new(cfg.max_connections_per_ip),
    }))
}

impl Http {
    /// One instance of the service (see `supervise`): binds every listener (all
    /// before serving, so a taken port fails the start), then runs their accept loops
    /// until stopped. Connections outlive it.
    pub async fn serve(self: Arc<Self>, run: crate::supervise::Run) -> Result<()> {
        let cfg = &self.ctx.cfg.http;
        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            listeners.push((crate::ctx::bind(*addr, "http.listen").await?, None));
        }
        for addr in &cfg.https_listen {
            listeners.push((
                crate::ctx::bind(*addr, "http.https_listen").await?,
                self.tls.clone(),
            ));
        }
        let mut loops = tokio::task::JoinSet::new();
        for (listener, tls) in listeners {
            loops.spawn(server::accept_loop(
                listener,
                tls,
                self.app.clone(),
                self.conns.clone(),
                self.per_ip.clone(),
                self.limits,
                run.clone(),
            ));
        }
        tracing::info!(
            http = ?cfg.listen,
            https = ?cfg.https_listen,
            vhosts = cfg.vhost.len(),
            "http: serving"
        );
        run.ready();
        crate::supervise::until_first_ends(loops).await
    }
}

/// Answers one request and logs it.
async fn handle(
    app: Arc<App>,
    info: ConnInfo,
    req: Request<Incoming>,
    _running: server::InFlight,
) -> Result<Response<ResponseBody>, Infallible> {
    crate::ctx::count(&crate::ctx::REQUESTS.http);
    let Some(log) = &app.log else {
        return Ok(route_in_time(&app, info, req).await);
    };
    let method = req.method().clone();
    let uri = req.uri().clone();
    let version = req.version();
    let referer = req.headers().get(header::REFERER).cloned();
    let agent = req.headers().get(header::USER_AGENT).cloned();
    let head = method == http::Method::HEAD;
    let resp = route_in_time(&app, info, req).await;
    let bytes = if head {
        Some(0)
    } else {
        resp.body().size_hint().exact()
    };
    log.record(&log::Entry {
        peer: crate::config::canonical_ip(info.peer.ip()),
        method: method.as_str(),
        target: uri.path_and_query().map_or("/", |p| p.as_str()),
        version,
        status: resp.status().as_u16(),
        bytes,
        referer: referer.as_ref().map(|v| v.as_bytes()),
        user_agent: agent.as_ref().map(|v| v.as_bytes()),
    });
    Ok(resp)
}

/// [`route`] within `http.request_timeout_s`, reading the body included: a body that
/// never completes (or a handler that never answers) gets 408, and hyper closes the
/// connection rather than read the rest.
async fn route_in_time(
    app: &App,
    info: ConnInfo,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let h1 = req.version() < http::Version::HTTP_2;
    match tokio::time::timeout(app.request_timeout, route(app, info, req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::debug!(peer = %info.peer, "http: request not done within request_timeout_s");
            let mut r = site::plain(StatusCode::REQUEST_TIMEOUT, "408 Request Timeout\n");
            if h1 {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r.map(Either::Left)
        }
    }
}

async fn route(app: &App, info: ConnInfo, req: Request<Incoming>) -> Response<ResponseBody> {
    if let Some(port) = app.redirect_https
        && !info.https
    {
        return to_https(app, &req, port).map(Either::Left);
    }
    let path = req.uri().path();
    if path == "/webmail" {
        let loc = match req.uri().query() {
            Some(q) => format!("/webmail/?{q}"),
            None => "/webmail/".to_string(),
        };
        return site::redirect(StatusCode::PERMANENT_REDIRECT, &loc).map(Either::Left);
    }
    if path.starts_with("/webmail/") {
        return webmail(app, info, req).await;
    }
    if crate::monitor::web::owns(path) {
        let (m, pq) = (req.method(), req.uri());
        return crate::monitor::web::answer(&app.monitor, info.peer.ip(), m, pq.path(), pq.query())
            .await
            .map(Either::Left);
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let resp = app
        .site
        .serve(req.method(), req.uri(), req.headers(), host)
        .await;
    let Some(file) = resp.extensions().get::<site::Streamed>().cloned() else {
        return resp.map(Either::Left);
    };
    let path = file.path.clone();
    match file.body().await {
        Ok(body) => {
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Either::Right(body))
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "http: cannot read a site file: {e}");
            site::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n",
            )
            .map(Either::Left)
        }
    }
}

/// Hands a `/webmail/...` request to the webmail with the prefix stripped.
async fn webmail(app: &App, info: ConnInfo, req: Request<Incoming>) -> Response<ResponseBody> {
    let (mut parts, body) = req.into_parts();
    let rest = &parts.uri.path()["/webmail".len()..];
    let pq = match parts.uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut uri = http::uri::Parts::default();
    uri.path_and_query = pq.parse().ok();
    match http::Uri::from_parts(uri) {
        Ok(u) => parts.uri = u,
        Err(_) => {
            return site::plain(StatusCode::BAD_REQUEST, "400 Bad Request\n").map(Either::Left);
        }
    }
    parts.extensions.insert(info);
    let req = Request::from_parts(parts, axum::body::Body::new(body));
    let mut router = app.webmail.clone();
    match tower_service::Service::call(&mut router, req).await {
        Ok(resp) => resp.map(Either::Right),
        Err(never) => match never {},
    }
}

/// The 301 to the same URL over HTTPS.
fn to_https(app: &App, req: &Request<Incoming>, port: Option<u16>) -> Response<site::Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(site::strip_port)
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        })
        .unwrap_or(&app.domain);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut r = site::redirect(
        StatusCode::MOVED_PERMANENTLY,
        &format!("https://{host}{port}{pq}"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
