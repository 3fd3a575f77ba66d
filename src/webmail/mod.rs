//! The webmail at `/webmail/`: server-rendered pages (askama templates under
//! `templates/webmail/`) over the store's mailbox API, so the webmail and IMAP always
//! agree (no IMAP loop-back). This module owns sessions, CSRF, login rate limiting,
//! i18n, the folder nav and the page chrome; submodules own the flows.
//!
//! URLs (under `/webmail`; the tests and bookmarks rely on them): `/login`, `/logout`
//! (POST), `/settings`; `/mailbox/{mailbox}` (list: `page`, `sort` = date|from|
//! subject|size, `order` = asc|desc, `q` + `field` for search), `.../bulk` (POST),
//! `.../poll` (new-mail check); `/mailbox/{mailbox}/{uid}` (reader), `.../body` (the
//! sanitised HTML document), `.../raw`, `.../part/{n}`; `/compose` (new, reply,
//! forward, draft); `/folders` and `/folders/{create,rename,delete}`; `/contacts`,
//! `/contacts/{add,edit,delete,suggest}`; `/static/*`. Mailbox names are one
//! percent-encoded path segment ([`enc_seg`]).
//!
//! Implementation notes
//! - Sessions live in memory only ([`auth::Sessions`]): a restart or a cluster
//!   failover logs everybody out, which is acceptable (they sign in again on the new
//!   active node; nothing durable is lost). A session id is 32 random bytes,
//!   base64url, issued fresh at every login; sessions expire after
//!   `webmail.session_idle_minutes` without a request and are removed at logout.
//! - Every state-changing request is a POST carrying the form field `csrf`: the
//!   session's token (32 random bytes) or, for the login form, an HMAC of the
//!   pre-login cookie under a per-process key. Handlers call [`check_csrf`] before
//!   touching anything; the [`User`] extractor answers 403 to POSTs without a session
//!   and 303 to the login page for other requests.
//! - Writes go through the store's typed API (`store_flags`, `copy`, `expunge`,
//!   mailbox create/rename/delete); on a standby node (store not writable) a write
//!   answers 503 with a "service moving" page ([`require_writable`]).
//! - Request bodies: the sign-in form at most [`LOGIN_BODY_MAX`] (4 KiB), other forms
//!   [`FORM_BODY_MAX`] (64 KiB), larger ones 413; compose reads its upload against
//!   `smtp.max_message_bytes` itself. `http.request_timeout_s` bounds the time.
//! - State shared by the handlers ([`Webmail`]) travels as a request extension
//!   added by [`router`], so handlers keep `State<Arc<Ctx>>` as their state type.
//!
//! For the other webmail modules (compose.rs, contacts.rs): take a [`User`] in the
//! handler, call [`check_csrf`] on POSTs, build the chrome with [`page`] and render
//! an askama template whose struct has a `page: Page` field and which
//! `{% extends "webmail/base.html" %}` (blocks `title` and `content`) with
//! [`render`]; map store errors with [`store_error`]; build links with [`enc_seg`].

// Handlers and their helpers return the error page itself as `Err(Response)` (axum's
// idiom); boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod compose;
pub mod contacts;
pub mod folders;
pub mod i18n;
pub mod list;
pub mod read;
pub mod sanitize;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use i18n::Lang;

use crate::ctx::Ctx;
use crate::mail::encoding::form_decode;
use crate::store::{MailboxInfo, MessageMeta, SpecialUse, StoreError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "clusterd_session";
/// The cookie binding the login form's CSRF token before there is a session.
pub const PRELOGIN_COOKIE: &str = "clusterd_prelogin";
/// The largest sign-in form body (user, password, CSRF token, language): whoever
/// has no session can make the node hold this much per request, no more.
pub const LOGIN_BODY_MAX: usize = 4 * 1024;
/// The largest body of the other forms (settings, folders, contacts, a page of
/// messages to move); compose has its own budget (`smtp.max_message_bytes`).
pub const FORM_BODY_MAX: usize = 64 * 1024;
/// The mount point, for absolute links and redirects.
pub const BASE: &str = "/webmail";

/// The policy of every webmail page (the message body iframe sets its own).
pub const PAGE_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'";

/// State shared by the webmail's handlers (a request extension).
pub struct Webmail {
    pub sessions: auth::Sessions,
    pub summaries: list::SummaryCache,
}

/// The webmail's routes, relative to its mount point `/webmail`.
pub fn router(ctx: Arc<Ctx>) -> Router {
    let cfg = &ctx.cfg.webmail;
    let wm = Arc::new(Webmail {
        sessions: auth::Sessions::new(std::time::Duration::from_secs(
            cfg.session_idle_minutes.max(1) * 60,
        )),
        summaries: list::SummaryCache::new(cfg.summary_cache_entries),
    });
    list::spawn_warmer(ctx.clone(), wm.clone());
    Router::new()
        .route("/", get(root))
        .route(
            "/login",
            get(auth::login_form)
                .post(auth::login)
                .layer(DefaultBodyLimit::max(LOGIN_BODY_MAX)),
        )
        .route("/logout", post(auth::logout))
        .route(
            "/settings",
            get(auth::settings_form).post(auth::settings_save),
        )
        .route("/static/style.css", get(style_css))
        .route("/static/app.js", get(app_js))
        .merge(list::routes())
        .merge(read::routes())
        .merge(folders::routes())
        .merge(compose::routes())
        .merge(contacts::routes())
        // Every form but compose (which sets its own budget) is a few fields.
        .layer(DefaultBodyLimit::max(FORM_BODY_MAX))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::Extension(wm))
        .with_state(ctx)
}

async fn root(user: Option<User>) -> Response {
    match user {
        Some(_) => see_other(&format!("{BASE}/mailbox/INBOX")),
        None => see_other(&format!("{BASE}/login")),
    }
}

/// Adds the page policy and hardening headers unless a handler set its own.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
    }
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("SAMEORIGIN"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn style_css() -> Response {
    static_asset("text/css; charset=utf-8", include_str!("static/style.css"))
}

async fn app_js() -> Response {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("static/app.js"),
    )
}

fn static_asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

// ------------------------------------------------------------------ the signed-in user

/// The signed-in user of a request. As an extractor: GET/HEAD without a valid session
/// redirect (303) to the login page; other methods get 403.
#[derive(Debug, Clone)]
pub struct User {
    /// Canonical account name (lower case).
    pub account: String,
    /// The session's CSRF token: every form carries it as the field `csrf`.
    pub csrf: String,
    /// The UI language: the user's preference, else Accept-Language, else Spanish.
    pub lang: Lang,
}

impl FromRequestParts<Arc<Ctx>> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _ctx: &Arc<Ctx>) -> Result<Self, Response> {
        let lang = request_lang(&parts.headers);
        let Some(wm) = parts.extensions.get::<Arc<Webmail>>().cloned() else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let found = cookie(&parts.headers, SESSION_COOKIE).and_then(|sid| wm.sessions.touch(sid));
        match found {
            Some(s) => Ok(User {
                account: s.account,
                csrf: s.csrf,
                lang: s.lang.unwrap_or(lang),
            }),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                Err(see_other(&format!("{BASE}/login")))
            }
            None => Err(error_page(
                lang,
                StatusCode::FORBIDDEN,
                "error",
                "session_expired",
            )),
        }
    }
}

impl axum::extract::OptionalFromRequestParts<Arc<Ctx>> for User {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<Ctx>,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <User as FromRequestParts<Arc<Ctx>>>::from_request_parts(parts, ctx)
                .await
                .ok(),
        )
    }
}

/// 403 unless `token` is the session's CSRF token (compared in constant time).
pub fn check_csrf(user: &User, token: &str) -> Result<(), Response> {
    if auth::ct_eq(user.csrf.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(error_page(
            user.lang,
            StatusCode::FORBIDDEN,
            "error",
            "forbidden",
        ))
    }
}

/// 503 "service moving" when this node's store does not accept writes (a standby).
/// The checks of every state-changing POST: the CSRF token, then a writable store.
pub fn check_post(ctx: &Ctx, user: &User, token: &str) -> Result<(), Response> {
    check_csrf(user, token)?;
    require_writable(ctx, user.lang)
}

pub fn require_writable(ctx: &Ctx, lang: Lang) -> Result<(), Response> {
    if ctx.store.is_writable() {
        Ok(())
    } else {
        Err(service_moving(lang))
    }
}

/// The language of a request without a session preference.
pub fn request_lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The HTTP server's connection facts (a default when absent, e.g. in unit tests).
pub fn conn_info(parts_ext: &axum::http::Extensions) -> crate::ctx::ConnInfo {
    parts_ext
        .get::<crate::ctx::ConnInfo>()
        .copied()
        .unwrap_or(crate::ctx::ConnInfo {
            peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            https: false,
        })
}

// ------------------------------------------------------------------ page chrome

/// What the base layout needs: language, user, CSRF token, the folder nav.
pub struct Page {
    pub lang: Lang,
    /// Empty when nobody is signed in (login and error pages: no nav).
    pub account: String,
    pub csrf: String,
    pub folders: Vec<Folder>,
    /// The mailbox the page is about (highlighted in the nav), or "".
    pub current: String,
    /// A confirmation or error line shown above the content.
    pub flash: Option<&'static str>,
}

/// One entry of the folder nav.
pub struct Folder {
    pub name: String,
    /// Localised for special-use folders, else the last hierarchy level.
    pub label: String,
    /// Hierarchy depth (0 for top level), for indentation.
    pub depth: usize,
    pub href: String,
    pub unseen: u32,
    pub total: u32,
    pub current: bool,
    pub special: bool,
}

impl Page {
    /// A page without nav (login, errors before sign-in).
    pub fn bare(lang: Lang) -> Page {
        Page {
            lang,
            account: String::new(),
            csrf: String::new(),
            folders: Vec::new(),
            current: String::new(),
            flash: None,
        }
    }

    /// Sets the flash line from a `msg` query value, when it names a UI string.
    pub fn with_flash(mut self, msg: Option<&str>) -> Page {
        if let Some(m) = msg {
            let s = self.lang.t(m);
            if s != "??" {
                self.flash = Some(s);
            }
        }
        self
    }
}

/// The chrome for a signed-in page about mailbox `current` ("" for none). A store
/// failure leaves the nav empty rather than failing the page.
pub async fn page(ctx: &Ctx, user: &User, current: &str) -> Page {
    let boxes = match ctx.store.list_mailboxes(&user.account).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "webmail: listing mailboxes");
            Vec::new()
        }
    };
    Page {
        lang: user.lang,
        account: user.account.clone(),
        csrf: user.csrf.clone(),
        folders: folder_nav(boxes, current, user.lang),
        current: current.to_string(),
        flash: None,
    }
}

/// Orders mailboxes for the nav: INBOX, Drafts, Sent, Trash, Junk, Archive, then the
/// others by name (a child right after its parent).
pub fn folder_nav(mut boxes: Vec<MailboxInfo>, current: &str, lang: Lang) -> Vec<Folder> {
    boxes.sort_by(|a, b| {
        folder_rank(a)
            .cmp(&folder_rank(b))
            .then_with(|| folder_sort_key(&a.name).cmp(&folder_sort_key(&b.name)))
    });
    boxes
        .into_iter()
        .map(|m| {
            let special = folder_rank(&m) < 6;
            let label = match special_key(&m) {
                Some(k) => lang.t(k).to_string(),
                None => m.name.rsplit('/').next().unwrap_or(&m.name).to_string(),
            };
            Folder {
                depth: m.name.matches('/').count(),
                href: format!("{BASE}/mailbox/{}", enc_seg(&m.name)),
                unseen: m.unseen,
                total: m.messages,
                current: m.name == current,
                special,
                label,
                name: m.name,
            }
        })
        .collect()
}

fn special_key(m: &MailboxInfo) -> Option<&'static str> {
    if m.name == "INBOX" {
        return Some("inbox");
    }
    Some(match m.special_use? {
        SpecialUse::Drafts => "drafts",
        SpecialUse::Sent => "sent",
        SpecialUse::Trash => "trash",
        SpecialUse::Junk => "junk",
        SpecialUse::Archive => "archive",
    })
}

fn folder_rank(m: &MailboxInfo) -> u8 {
    if m.name == "INBOX" {
        return 0;
    }
    match m.special_use {
        Some(SpecialUse::Drafts) => 1,
        Some(SpecialUse::Sent) => 2,
        Some(SpecialUse::Trash) => 3,
        Some(SpecialUse::Junk) => 4,
        Some(SpecialUse::Archive) => 5,
        None => 6,
    }
}

/// Sorts `a/b` right after `a` (the separator sorts before every other character).
fn folder_sort_key(name: &str) -> Vec<String> {
    name.split('/').map(|s| s.to_lowercase()).collect()
}

/// Percent-encodes a mailbox name (or any text) as one URL path segment or query
/// value: everything but RFC 3986 unreserved characters.
pub fn enc_seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` (repeated keys kept, in order).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = match kv.iter().position(|&b| b == b'=') {
                Some(i) => (&kv[..i], &kv[i + 1..]),
                None => (kv, &b""[..]),
            };
            (form_decode(k), form_decode(v))
        })
        .collect()
}

// ------------------------------------------------------------------ responses

/// Renders a template as an HTML page (500 when rendering fails).
pub fn render<T: Template>(t: &T) -> Response {
    render_status(StatusCode::OK, t)
}

/// Renders a template with the given status.
pub fn render_status<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "webmail: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// 303 See Other to `location`.
pub fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

#[derive(Template)]
#[template(path = "webmail/error.html")]
struct ErrorTpl {
    page: Page,
    title: &'static str,
    message: &'static str,
    retry: bool,
}

/// A page saying what went wrong, with the given status.
pub fn error_page(lang: Lang, status: StatusCode, title_key: &str, msg_key: &str) -> Response {
    render_status(
        status,
        &ErrorTpl {
            page: Page::bare(lang),
            title: lang.t(title_key),
            message: lang.t(msg_key),
            retry: false,
        },
    )
}

/// 503 with the "service moving, try again" page (a standby node or a failover in
/// progress).
pub fn service_moving(lang: Lang) -> Response {
    let mut r = render_status(
        StatusCode::SERVICE_UNAVAILABLE,
        &ErrorTpl {
            page: Page::bare(lang),
            title: lang.t("service_moving_title"),
            message: lang.t("service_moving"),
            retry: true,
        },
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    r
}

/// Maps a store error to a page: read-only -> 503 "service moving", unknown mailbox
/// -> 404, name problems -> 400/409, anything else -> 500 (logged).
pub fn store_error(lang: Lang, e: &StoreError) -> Response {
    match e {
        StoreError::ReadOnly => service_moving(lang),
        StoreError::NoSuchMailbox(_) => {
            error_page(lang, StatusCode::NOT_FOUND, "not_found", "folder_not_found")
        }
        StoreError::MailboxExists(_) => {
            error_page(lang, StatusCode::CONFLICT, "error", "folder_exists")
        }
        StoreError::InvalidName(_) => {
            error_page(lang, StatusCode::BAD_REQUEST, "error", "invalid_name")
        }
        StoreError::NotAllowed(_) => {
            error_page(lang, StatusCode::BAD_REQUEST, "error", "not_allowed")
        }
        // Below the free-space floor: nothing new is saved, reading goes on.
        e if e.is_no_space() => error_page(
            lang,
            StatusCode::INSUFFICIENT_STORAGE,
            "error",
            "error_internal",
        ),
        other => {
            tracing::error!(error = %other, "webmail: store failure");
            error_page(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "error_internal",
            )
        }
    }
}

/// The user's mailbox called `name`, or the 404 page.
pub async fn find_mailbox(ctx: &Ctx, user: &User, name: &str) -> Result<MailboxInfo, Response> {
    match ctx.store.mailbox(&user.account, name).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) | Err(StoreError::InvalidName(_)) => Err(error_page(
            user.lang,
            StatusCode::NOT_FOUND,
            "not_found",
            "folder_not_found",
        )),
        Err(e) => Err(store_error(user.lang, &e)),
    }
}

/// Message `uid` of the user's mailbox `mb`, or the "message not found" page.
pub async fn find_message(
    ctx: &Ctx,
    user: &User,
    mb: &MailboxInfo,
    uid: u32,
) -> Result<MessageMeta, Response> {
    ctx.store
        .message(&mb.id, uid)
        .await
        .map_err(|e| store_error(user.lang, &e))?
        .ok_or_else(|| message_not_found(user.lang))
}

/// The "message not found" page (404).
pub fn message_not_found(lang: Lang) -> Response {
    error_page(
        lang,
        StatusCode::NOT_FOUND,
        "not_found",
        "message_not_found",
    )
}

/// The bytes of a message, or the store's error page.
pub async fn message_bytes(
    ctx: &Ctx,
    user: &User,
    meta: &MessageMeta,
) -> Result<Vec<u8>, Response> {
    ctx.store
        .read_blob(&meta.blob)
        .await
        .map_err(|e| store_error(user.lang, &e))
}

/// Keeps `State` in scope for submodules' handler signatures.
pub type CtxState = State<Arc<Ctx>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: &str, su: Option<SpecialUse>) -> MailboxInfo {
        MailboxInfo {
            id: name.into(),
            account: "a".into(),
            name: name.into(),
            uidvalidity: 1,
            uidnext: 1,
            highest_modseq: 0,
            special_use: su,
            subscribed: true,
            messages: 0,
            unseen: 0,
        }
    }

    #[test]
    fn nav_puts_special_folders_first() {
        let boxes = vec![
            mb("Zeta", None),
            mb("Trash", Some(SpecialUse::Trash)),
            mb("alpha", None),
            mb("alpha/child", None),
            mb("Junk", Some(SpecialUse::Junk)),
            mb("Sent", Some(SpecialUse::Sent)),
            mb("INBOX", None),
            mb("Drafts", Some(SpecialUse::Drafts)),
            mb("alpha-b", None),
        ];
        let names: Vec<String> = folder_nav(boxes, "Sent", Lang::En)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "INBOX",
                "Drafts",
                "Sent",
                "Trash",
                "Junk",
                "alpha",
                "alpha/child",
                "alpha-b",
                "Zeta"
            ]
        );
    }

    #[test]
    fn nav_labels_are_localised() {
        let f = folder_nav(vec![mb("INBOX", None), mb("a/b", None)], "a/b", Lang::Es);
        assert_eq!(f[0].label, "Bandeja de entrada");
        assert_eq!(f[1].label, "b");
        assert_eq!(f[1].depth, 1);
        assert!(f[1].current);
        assert_eq!(f[1].href, "/webmail/mailbox/a%2Fb");
    }

    #[test]
    fn form_decoding_keeps_repeats() {
        let f = parse_form(b"csrf=x%2By&uid=1&uid=22&target=Mi+carpeta%2Fsub&bad=%zz&e");
        assert_eq!(
            f,
            vec![
                ("csrf".into(), "x+y".into()),
                ("uid".into(), "1".into()),
                ("uid".into(), "22".into()),
                ("target".into(), "Mi carpeta/sub".into()),
                ("bad".into(), "%zz".into()),
                ("e".into(), "".into()),
            ]
        );
        assert_eq!(parse_form(b"a=%4"), vec![("a".into(), "%4".into())]);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(enc_seg("Año 2024/x y"), "A%C3%B1o%202024%2Fx%20y");
    }

    #[test]
    fn cookies_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; clusterd_session=abc"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
