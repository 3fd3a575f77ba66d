//! Sign-in, sign-out, sessions, CSRF tokens, login rate limits and the settings page.
//!
//! Invariants: sessions are in memory only (see the module docs of `webmail`); a
//! session id and a CSRF token are 32 bytes from the OS RNG, base64url; the login
//! form's token is HMAC-SHA256(per-process key, pre-login cookie), so it cannot be
//! used with another browser's cookie; passwords go through the node's authentication
//! limiter (`crate::authlimit`, shared with SMTP and IMAP): a wrong one is answered
//! after its delay, and over the limits the password is not even checked (429 with
//! Retry-After), so the argon2 cost cannot be used to load the server — and, as the
//! limits are per address, a stranger cannot lock the owner out from elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use sha2::Sha256;

use super::{
    BASE, Lang, PRELOGIN_COOKIE, Page, SESSION_COOKIE, User, Webmail, check_csrf, cookie,
    error_page, page, parse_form, render, render_status, request_lang, see_other, store_error,
};
use crate::authlimit::{Protocol, Verdict, log_name};
use crate::ctx::Ctx;

/// Most sessions kept at once; beyond it the least recently used one is dropped.
const MAX_SESSIONS: usize = 20_000;

/// 32 random bytes, base64url without padding.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    pub csrf: String,
    /// The user's stored preference, if any.
    pub lang: Option<Lang>,
    last_used: Instant,
}

/// The in-memory session table.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    /// Key of the login form's token HMAC (per process).
    key: [u8; 32],
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            key,
        }
    }

    /// Creates a session and returns its id.
    pub fn create(&self, account: &str, lang: Option<Lang>) -> String {
        let id = random_token();
        let mut map = self.map.lock().unwrap();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_used) < self.idle);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                account: account.to_string(),
                csrf: random_token(),
                lang,
                last_used: now,
            },
        );
        id
    }

    /// The live session `id`, refreshing its idle timer; expired sessions are removed.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap();
        let now = Instant::now();
        let s = map.get_mut(id)?;
        if now.duration_since(s.last_used) >= self.idle {
            map.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.map.lock().unwrap().remove(id);
    }

    /// Sets the language preference of every session of `account`.
    pub fn set_lang(&self, account: &str, lang: Lang) {
        for s in self.map.lock().unwrap().values_mut() {
            if s.account == account {
                s.lang = Some(lang);
            }
        }
    }

    /// A capability for one inline image of a message, valid until `expires` (unix
    /// seconds). The body iframe is sandboxed (an opaque origin), so the browser sends
    /// no SameSite cookie with the image requests it makes; the `cid:` URLs carry this
    /// token instead. It grants nothing but that one part, inline.
    pub fn inline_token(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
        part: usize,
        expires: u64,
    ) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"clusterd webmail inline\0");
        for field in [
            account,
            mailbox,
            &uid.to_string(),
            &part.to_string(),
            &expires.to_string(),
        ] {
            mac.update(field.as_bytes());
            mac.update(b"\0");
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is [`Sessions::inline_token`] for these values and not expired.
    pub fn check_inline(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
        part: usize,
        expires: u64,
        token: &str,
    ) -> bool {
        expires >= unix_now()
            && ct_eq(
                self.inline_token(account, mailbox, uid, part, expires)
                    .as_bytes(),
                token.as_bytes(),
            )
    }

    /// How long an inline-image token issued now stays valid: the idle timeout.
    pub fn inline_expiry(&self) -> u64 {
        unix_now() + self.idle.as_secs()
    }

    /// The login form's CSRF token for a pre-login cookie value.
    pub fn prelogin_token(&self, cookie: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"clusterd webmail login\0");
        mac.update(cookie.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// `Set-Cookie` for the session (HttpOnly, SameSite=Lax, Path=/webmail,
/// Secure over HTTPS); `None` clears it.
pub fn session_cookie(id: Option<&str>, https: bool) -> HeaderValue {
    cookie_header(SESSION_COOKIE, id, https)
}

fn cookie_header(name: &str, value: Option<&str>, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let v = match value {
        Some(v) => format!("{name}={v}; Path={BASE}; HttpOnly; SameSite=Lax{secure}"),
        None => format!("{name}=; Path={BASE}; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&v).expect("cookie value is ASCII")
}

// ------------------------------------------------------------------ handlers

#[derive(Template)]
#[template(path = "webmail/login.html")]
struct LoginTpl {
    page: Page,
    csrf: String,
    user: String,
    error: Option<&'static str>,
}

/// `GET /login`: the form (with a fresh pre-login cookie when there is none).
pub async fn login_form(
    user: Option<User>,
    axum::Extension(wm): axum::Extension<Arc<Webmail>>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Response {
    if user.is_some() {
        return see_other(&format!("{BASE}/"));
    }
    let lang = request_lang(&headers);
    login_page(&wm, &headers, &ext, lang, StatusCode::OK, "", None)
}

fn login_page(
    wm: &Webmail,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    lang: Lang,
    status: StatusCode,
    user: &str,
    error: Option<&'static str>,
) -> Response {
    let https = super::conn_info(ext).https;
    let (pre, fresh) = match cookie(headers, PRELOGIN_COOKIE) {
        Some(c) if c.len() >= 16 && c.len() <= 64 => (c.to_string(), false),
        _ => (random_token(), true),
    };
    let mut resp = render_status(
        status,
        &LoginTpl {
            page: Page::bare(lang),
            csrf: wm.sessions.prelogin_token(&pre),
            user: user.to_string(),
            error,
        },
    );
    if fresh {
        resp.headers_mut().append(
            header::SET_COOKIE,
            cookie_header(PRELOGIN_COOKIE, Some(&pre), https),
        );
    }
    resp
}

/// `POST /login`.
pub async fn login(
    State(ctx): State<Arc<Ctx>>,
    axum::Extension(wm): axum::Extension<Arc<Webmail>>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Response {
    let lang = request_lang(&headers);
    let info = super::conn_info(&ext);
    let form = parse_form(&body);
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let (name, password, token) = (field("user").trim(), field("password"), field("csrf"));
    let good_token = cookie(&headers, PRELOGIN_COOKIE)
        .is_some_and(|c| ct_eq(wm.sessions.prelogin_token(c).as_bytes(), token.as_bytes()));
    if !good_token {
        return error_page(lang, StatusCode::FORBIDDEN, "error", "forbidden");
    }
    let ip = crate::config::canonical_ip(info.peer.ip());
    let verdict = ctx
        .auth
        .verify(&ctx.store, Protocol::Webmail, ip, name, password)
        .await;
    let account = match verdict {
        Verdict::Ok(a) => a,
        Verdict::Refused(wait) => {
            tracing::debug!(%ip, "webmail: login refused (limit)");
            let mut r = login_page(
                &wm,
                &headers,
                &ext,
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                name,
                Some(lang.t("login_rate_limited")),
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&wait.as_secs().max(1).to_string()).expect("digits"),
            );
            return r;
        }
        Verdict::Wrong => {
            tracing::info!(user = %log_name(name), %ip, "webmail: login failed");
            return login_page(
                &wm,
                &headers,
                &ext,
                lang,
                StatusCode::UNAUTHORIZED,
                name,
                Some(lang.t("login_failed")),
            );
        }
        Verdict::Error(e) => return store_error(lang, &e),
    };
    let pref = ctx
        .store
        .setting(&lang_key(&account))
        .await
        .ok()
        .flatten()
        .and_then(|v| Lang::from_code(&v));
    // A new id at every login (no session fixation); any old session ends.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        wm.sessions.remove(old);
    }
    let sid = wm.sessions.create(&account, pref);
    tracing::info!(user = %account, %ip, "webmail: login");
    let mut r = see_other(&format!("{BASE}/"));
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, session_cookie(Some(&sid), info.https));
    h.append(
        header::SET_COOKIE,
        cookie_header(PRELOGIN_COOKIE, None, info.https),
    );
    r
}

/// `POST /logout` (csrf): ends the session server-side and clears the cookie.
pub async fn logout(
    user: User,
    axum::Extension(wm): axum::Extension<Arc<Webmail>>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Response {
    let form = parse_form(&body);
    let token = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if let Err(r) = check_csrf(&user, token) {
        return r;
    }
    if let Some(sid) = cookie(&headers, SESSION_COOKIE) {
        wm.sessions.remove(sid);
    }
    let mut r = see_other(&format!("{BASE}/login"));
    r.headers_mut().append(
        header::SET_COOKIE,
        session_cookie(None, super::conn_info(&ext).https),
    );
    r
}

/// The settings key of a user's UI language.
pub fn lang_key(account: &str) -> String {
    format!("user/{account}/lang")
}

#[derive(Template)]
#[template(path = "webmail/settings.html")]
struct SettingsTpl {
    page: Page,
    langs: Vec<(&'static str, &'static str, bool)>,
}

#[derive(Deserialize)]
pub struct MsgQuery {
    pub msg: Option<String>,
}

/// `GET /settings`.
pub async fn settings_form(
    State(ctx): State<Arc<Ctx>>,
    user: User,
    Query(q): Query<MsgQuery>,
) -> Response {
    let page = page(&ctx, &user, "").await.with_flash(q.msg.as_deref());
    let langs = Lang::ALL
        .iter()
        .map(|l| {
            (
                l.code(),
                user.lang
                    .t(if *l == Lang::Es { "lang_es" } else { "lang_en" }),
                *l == user.lang,
            )
        })
        .collect();
    render(&SettingsTpl { page, langs })
}

/// `POST /settings` (csrf, lang).
pub async fn settings_save(
    State(ctx): State<Arc<Ctx>>,
    axum::Extension(wm): axum::Extension<Arc<Webmail>>,
    user: User,
    body: axum::body::Bytes,
) -> Response {
    let form = parse_form(&body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Err(r) = check_csrf(&user, get("csrf").unwrap_or("")) {
        return r;
    }
    let Some(lang) = get("lang").and_then(Lang::from_code) else {
        return error_page(user.lang, StatusCode::BAD_REQUEST, "error", "not_allowed");
    };
    if let Err(r) = super::require_writable(&ctx, user.lang) {
        return r;
    }
    if let Err(e) = ctx
        .store
        .set_setting(&lang_key(&user.account), lang.code())
        .await
    {
        return store_error(user.lang, &e);
    }
    wm.sessions.set_lang(&user.account, lang);
    see_other(&format!("{BASE}/settings?msg=settings_saved"))
}

/// Keeps `IntoResponse` imported for status-only answers in this module.
#[allow(dead_code)]
fn _unused() -> Response {
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::new(Duration::from_millis(50));
        let id = s.create("bob", None);
        assert_eq!(id.len(), 43);
        assert_eq!(s.touch(&id).unwrap().account, "bob");
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.touch(&id).is_none());
        let id = s.create("bob", Some(Lang::En));
        s.remove(&id);
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn login_token_is_bound_to_the_cookie() {
        let s = Sessions::new(Duration::from_secs(60));
        assert_eq!(s.prelogin_token("abc"), s.prelogin_token("abc"));
        assert_ne!(s.prelogin_token("abc"), s.prelogin_token("abd"));
    }

    #[test]
    fn cookie_attributes() {
        let c = session_cookie(Some("x"), true);
        assert_eq!(
            c.to_str().unwrap(),
            "clusterd_session=x; Path=/webmail; HttpOnly; SameSite=Lax; Secure"
        );
        let c = session_cookie(None, false);
        assert!(c.to_str().unwrap().contains("Max-Age=0"));
    }
}
