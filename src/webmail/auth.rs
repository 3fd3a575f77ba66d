//! Sign-in, sign-out, sessions, CSRF tokens, login rate limits and the settings page.
//!
//! Invariants: sessions are in memory only (see the module docs of `webmail`); a
//! session id and a CSRF token are 32 bytes from the OS RNG, base64url; the login
//! form's token is HMAC-SHA256(per-process key, pre-login cookie), so it cannot be
//! used with another browser's cookie; failed logins count per user and per client IP
//! in a sliding window, and once over the limit the password is not even checked
//! (429 with Retry-After), so the argon2 cost cannot be used to load the server.

use std::collections::{HashMap, VecDeque};
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

/// Failed-login counters per user and per client IP (sliding window).
pub struct Limiter {
    fails: Mutex<HashMap<String, VecDeque<Instant>>>,
    per_user: u32,
    per_ip: u32,
    window: Duration,
}

impl Limiter {
    pub fn new(per_user: u32, per_ip: u32, window: Duration) -> Limiter {
        Limiter {
            fails: Mutex::new(HashMap::new()),
            per_user: per_user.max(1),
            per_ip: per_ip.max(1),
            window,
        }
    }

    /// Seconds to wait when `user` or `ip` is over its limit, else None.
    pub fn blocked(&self, user: &str, ip: &str) -> Option<u64> {
        self.blocked_at(user, ip, Instant::now())
    }

    fn blocked_at(&self, user: &str, ip: &str, now: Instant) -> Option<u64> {
        let mut map = self.fails.lock().unwrap();
        let mut wait = None;
        for (key, max) in [(user_key(user), self.per_user), (ip_key(ip), self.per_ip)] {
            let Some(q) = map.get_mut(&key) else { continue };
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                q.pop_front();
            }
            if q.len() >= max as usize {
                // Free again when enough of the oldest failures leave the window.
                let idx = q.len() - max as usize;
                let until = q[idx] + self.window;
                let secs = until.saturating_duration_since(now).as_secs().max(1);
                wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
            }
        }
        wait
    }

    /// Records a failed attempt for `user` and `ip`.
    pub fn fail(&self, user: &str, ip: &str) {
        self.fail_at(user, ip, Instant::now())
    }

    fn fail_at(&self, user: &str, ip: &str, now: Instant) {
        let mut map = self.fails.lock().unwrap();
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for key in [user_key(user), ip_key(ip)] {
            let q = map.entry(key).or_default();
            q.push_back(now);
            while q.len() > 1000 {
                q.pop_front();
            }
        }
    }

    /// A successful login clears the user's failures (not the IP's).
    pub fn succeeded(&self, user: &str) {
        self.fails.lock().unwrap().remove(&user_key(user));
    }
}

fn user_key(user: &str) -> String {
    format!("u:{}", user.trim().to_lowercase())
}
fn ip_key(ip: &str) -> String {
    format!("i:{ip}")
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
    let ip = info.peer.ip().to_string();
    if let Some(wait) = wm.limiter.blocked(name, &ip) {
        tracing::warn!(user = name, %ip, "webmail: login rate limited");
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
            HeaderValue::from_str(&wait.to_string()).expect("digits"),
        );
        return r;
    }
    let verified = if name.is_empty() || password.is_empty() {
        Ok(None)
    } else {
        ctx.store.verify_password(name, password).await
    };
    let account = match verified {
        Ok(Some(a)) => a,
        Ok(None) => {
            wm.limiter.fail(name, &ip);
            tracing::info!(user = name, %ip, "webmail: login failed");
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
        Err(e) => return store_error(lang, &e),
    };
    wm.limiter.succeeded(&account);
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
    fn limiter_blocks_after_the_limit_and_frees_after_the_window() {
        let l = Limiter::new(3, 10, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.blocked_at("bob", "1.2.3.4", t0), None, "attempt {i}");
            l.fail_at("bob", "1.2.3.4", t0);
        }
        let wait = l
            .blocked_at("BOB", "9.9.9.9", t0)
            .expect("blocked per user");
        assert!((59..=60).contains(&wait), "{wait}");
        assert_eq!(l.blocked_at("alice", "1.2.3.4", t0), None);
        assert_eq!(
            l.blocked_at("bob", "1.2.3.4", t0 + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn limiter_counts_per_ip() {
        let l = Limiter::new(100, 4, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..4 {
            l.fail_at(&format!("u{i}"), "5.5.5.5", t0);
        }
        assert!(l.blocked_at("new", "5.5.5.5", t0).is_some());
        assert!(l.blocked_at("new", "5.5.5.6", t0).is_none());
    }

    #[test]
    fn success_clears_the_user_count() {
        let l = Limiter::new(2, 100, Duration::from_secs(60));
        l.fail("bob", "1.1.1.1");
        l.fail("bob", "1.1.1.1");
        assert!(l.blocked("bob", "1.1.1.1").is_some());
        l.succeeded("bob");
        assert!(l.blocked("bob", "1.1.1.1").is_none());
    }

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
