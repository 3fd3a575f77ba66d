//! Reading a message: the reader page (headers, text body, attachments, actions), the
//! HTML body document for the sandboxed iframe, the raw source and single parts.
//!
//! Invariants: HTML bodies are only ever served by the body endpoint, through
//! `sanitize::sanitize_html` and with `sanitize::body_csp` as the document's policy,
//! inside `<iframe sandbox="allow-popups allow-popups-to-escape-sandbox">`; the reader
//! page itself only contains text we escaped. Parts are addressed by mail-parser's
//! part index; a part is served inline only when it is a raster image and `?inline=1`
//! is given, otherwise as an attachment, always with `nosniff` and a sandbox CSP.
//! The body document's `cid:` images carry an inline-image token
//! (`auth::Sessions::inline_token`): its sandboxed frame has an opaque origin, so the
//! browser sends no SameSite cookie with them; the token serves that raster part only.
//! Opening the reader sets `\Seen` through the store (so IMAP sees it).

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::auth::Sessions;
use super::list::format_date;
use super::sanitize::{self, Options};
use super::{
    BASE, Lang, Page, User, Webmail, enc_seg, error_page, find_mailbox, page, render, request_lang,
    see_other,
};
use crate::ctx::Ctx;
use crate::mail::address::display_list;
use crate::mail::size::human_size;
use crate::store::{FlagMode, MailboxInfo, MessageMeta};

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/mailbox/{mailbox}/{uid}", get(reader))
        .route("/mailbox/{mailbox}/{uid}/body", get(body))
        .route("/mailbox/{mailbox}/{uid}/raw", get(raw))
        .route("/mailbox/{mailbox}/{uid}/part/{part}", get(part))
}

/// The mailbox, the message's metadata and its bytes, or the 404 page.
async fn load(
    ctx: &Ctx,
    user: &User,
    name: &str,
    uid: &str,
) -> Result<(MailboxInfo, MessageMeta, Vec<u8>), Response> {
    let mb = find_mailbox(ctx, user, name).await?;
    let uid: u32 = uid
        .parse()
        .map_err(|_| super::message_not_found(user.lang))?;
    let meta = super::find_message(ctx, user, &mb, uid).await?;
    let raw = super::message_bytes(ctx, user, &meta).await?;
    Ok((mb, meta, raw))
}

/// An attachment as listed by the reader.
pub struct Attachment {
    pub name: String,
    pub href: String,
    pub size: String,
    pub ctype: String,
}

#[derive(Template)]
#[template(path = "webmail/read.html")]
struct ReadTpl {
    page: Page,
    mailbox_enc: String,
    uid: u32,
    view: View,
    body_src: String,
    images_src: String,
    flagged: bool,
    back: String,
    reply: String,
    /// Set in Drafts: the compose link that resumes this draft.
    edit_draft: Option<String>,
    targets: Vec<(String, String)>,
}

#[derive(serde::Deserialize, Default)]
struct ReadQuery {
    images: Option<String>,
    msg: Option<String>,
}

/// Whether the message has an HTML body to show in the iframe.
fn has_html_body(msg: &Message<'_>) -> bool {
    msg.html_body.iter().any(|&i| {
        matches!(
            msg.parts.get(i as usize).map(|p| &p.body),
            Some(PartType::Html(_))
        )
    })
}

/// The text bodies joined (for messages shown as text).
fn text_body(msg: &Message<'_>) -> String {
    let mut out = String::new();
    for &i in &msg.text_body {
        if let Some(p) = msg.parts.get(i as usize) {
            match &p.body {
                PartType::Text(t) => {
                    if !out.is_empty() {
                        out.push_str("\n\n");
                    }
                    out.push_str(t);
                }
                PartType::Html(h) => {
                    if !out.is_empty() {
                        out.push_str("\n\n");
                    }
                    out.push_str(&mail_parser::decoders::html::html_to_text(h));
                }
                _ => {}
            }
        }
    }
    out
}

/// The HTML of the message's HTML bodies joined (text parts among them escaped).
fn html_body(msg: &Message<'_>) -> String {
    let mut out = String::new();
    for &i in &msg.html_body {
        if let Some(p) = msg.parts.get(i as usize) {
            match &p.body {
                PartType::Html(h) => out.push_str(h),
                PartType::Text(t) => {
                    out.push_str("<div style=\"white-space: pre-wrap\">");
                    out.push_str(&escape(t));
                    out.push_str("</div>");
                }
                _ => {}
            }
        }
    }
    out
}

/// Content-ID (without angle brackets) -> part index.
fn cid_map(msg: &Message<'_>) -> Vec<(String, usize)> {
    msg.parts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.content_id().map(|c| {
                (
                    c.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string(),
                    i,
                )
            })
        })
        .collect()
}

fn part_href(mailbox_enc: &str, uid: u32, idx: usize) -> String {
    format!("{BASE}/mailbox/{mailbox_enc}/{uid}/part/{idx}")
}

/// Who may load a body's inline images: the account and the token source.
struct InlineAuth<'a> {
    sessions: &'a Sessions,
    account: &'a str,
}

/// Sanitises the HTML body with cid: references pointing at our part URLs, each with
/// an inline-image token when `inline` is given (the body iframe sends no cookie).
fn sanitized(
    msg: &Message<'_>,
    mailbox_enc: &str,
    uid: u32,
    allow_remote: bool,
    inline: Option<InlineAuth<'_>>,
) -> sanitize::Sanitized {
    let cids = cid_map(msg);
    let expires = inline.as_ref().map(|a| a.sessions.inline_expiry());
    let cid_url = |cid: &str| {
        let cid = cid.trim().trim_start_matches('<').trim_end_matches('>');
        let (_, i) = cids.iter().find(|(c, _)| c.eq_ignore_ascii_case(cid))?;
        let mut url = format!("{}?inline=1", part_href(mailbox_enc, uid, *i));
        if let (Some(a), Some(e)) = (&inline, expires) {
            let k = a.sessions.inline_token(a.account, mailbox_enc, uid, *i, e);
            url.push_str(&format!("&a={}&e={e}&k={k}", enc_seg(a.account)));
        }
        Some(url)
    };
    sanitize::sanitize_html(
        &html_body(msg),
        &Options {
            allow_remote_images: allow_remote,
            cid_url: &cid_url,
        },
    )
}

/// `GET /mailbox/{mailbox}/{uid}`: the reader; marks the message `\Seen`.
async fn reader(
    State(ctx): State<Arc<Ctx>>,
    user: User,
    Path((name, uid)): Path<(String, String)>,
    Query(q): Query<ReadQuery>,
) -> Response {
    let (mb, meta, raw) = match load(&ctx, &user, &name, &uid).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lang = user.lang;
    let mailbox_enc = enc_seg(&mb.name);
    if !meta.has_flag("\\Seen")
        && ctx.store.is_writable()
        && let Err(e) = ctx
            .store
            .store_flags(&mb.id, &[meta.uid], FlagMode::Add, &["\\Seen".to_string()])
            .await
    {
        tracing::warn!(error = %e, "webmail: setting \\Seen");
    }
    let allow_remote = q.images.as_deref() == Some("1");
    let view = {
        let Some(msg) = MessageParser::default().parse(crate::mail::mime::bounded(&raw)) else {
            return error_page(
                lang,
                StatusCode::NOT_FOUND,
                "not_found",
                "message_not_found",
            );
        };
        build_view(
            &msg,
            &mailbox_enc,
            meta.uid,
            allow_remote,
            lang,
            meta.internal_date,
        )
    };
    let chrome = page(&ctx, &user, &mb.name)
        .await
        .with_flash(q.msg.as_deref());
    let targets = chrome
        .folders
        .iter()
        .filter(|f| f.name != mb.name)
        .map(|f| (f.name.clone(), f.label.clone()))
        .collect();
    let base = format!("{BASE}/mailbox/{mailbox_enc}/{}", meta.uid);
    render(&ReadTpl {
        page: chrome,
        uid: meta.uid,
        body_src: if allow_remote {
            format!("{base}/body?images=1")
        } else {
            format!("{base}/body")
        },
        images_src: format!("{base}?images=1"),
        view: View {
            remote_blocked: view.remote_blocked && !allow_remote,
            ..view
        },
        flagged: meta.has_flag("\\Flagged"),
        back: format!("{BASE}/mailbox/{mailbox_enc}"),
        reply: enc_seg(&format!("{}/{}", mb.name, meta.uid)),
        edit_draft: (mb.special_use == Some(crate::store::SpecialUse::Drafts))
            .then(|| format!("{BASE}/compose?draft={}", meta.uid)),
        targets,
        mailbox_enc,
    })
}

/// What the reader shows of the message itself.
struct View {
    subject: String,
    from: String,
    to: String,
    cc: String,
    date: String,
    /// Escaped, linkified text body (safe to embed).
    text_html: String,
    has_html: bool,
    remote_blocked: bool,
    attachments: Vec<Attachment>,
}

fn build_view(
    msg: &Message<'_>,
    mailbox_enc: &str,
    uid: u32,
    allow_remote: bool,
    lang: Lang,
    internal_date: i64,
) -> View {
    let has_html = has_html_body(msg);
    let (text_html, remote_blocked, html_src) = if has_html {
        let s = sanitized(msg, mailbox_enc, uid, allow_remote, None);
        (String::new(), s.remote_blocked > 0, html_body(msg))
    } else {
        (text_to_html(&text_body(msg)), false, String::new())
    };
    let attachments = msg
        .attachments
        .iter()
        .filter_map(|&i| {
            let p = msg.parts.get(i as usize)?;
            // Inline images the HTML shows are not listed as attachments.
            if let Some(cid) = p.content_id() {
                let cid = cid.trim().trim_start_matches('<').trim_end_matches('>');
                if has_html && !cid.is_empty() && html_src.contains(&format!("cid:{cid}")) {
                    return None;
                }
            }
            let name = p
                .attachment_name()
                .map(|s| s.to_string())
                .or_else(|| {
                    p.message()
                        .and_then(|m| m.subject())
                        .map(|s| format!("{s}.eml"))
                })
                .unwrap_or_else(|| format!("part-{i}"));
            let ctype = p
                .content_type()
                .map(|c| match &c.c_subtype {
                    Some(s) => format!("{}/{}", c.c_type, s),
                    None => c.c_type.to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            Some(Attachment {
                name,
                href: part_href(mailbox_enc, uid, i as usize),
                size: human_size(p.contents().len() as u64),
                ctype,
            })
        })
        .collect();
    let date = msg
        .date()
        .map(|d| d.to_timestamp())
        .unwrap_or(internal_date);
    View {
        subject: msg
            .subject()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| lang.t("no_subject").to_string()),
        from: display_list(msg.from()),
        to: display_list(msg.to()),
        cc: display_list(msg.cc()),
        date: format_date(date, lang).1,
        text_html,
        has_html,
        remote_blocked,
        attachments,
    }
}

/// `GET /mailbox/{mailbox}/{uid}/body[?images=1]`: the sanitised HTML document.
async fn body(
    State(ctx): State<Arc<Ctx>>,
    Extension(wm): Extension<Arc<Webmail>>,
    user: User,
    Path((name, uid)): Path<(String, String)>,
    Query(q): Query<ReadQuery>,
) -> Response {
    let (mb, meta, raw) = match load(&ctx, &user, &name, &uid).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let allow_remote = q.images.as_deref() == Some("1");
    let Some(msg) = MessageParser::default().parse(crate::mail::mime::bounded(&raw)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let inner = if has_html_body(&msg) {
        sanitized(
            &msg,
            &enc_seg(&mb.name),
            meta.uid,
            allow_remote,
            Some(InlineAuth {
                sessions: &wm.sessions,
                account: &user.account,
            }),
        )
        .html
    } else {
        format!(
            "<div style=\"white-space: pre-wrap\">{}</div>",
            text_to_html(&text_body(&msg))
        )
    };
    let doc = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_blank\"></head><body>{inner}</body></html>"
    );
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], doc).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(sanitize::body_csp(allow_remote)),
    );
    r
}

/// `GET /mailbox/{mailbox}/{uid}/raw`: the source as text/plain.
async fn raw(
    State(ctx): State<Arc<Ctx>>,
    user: User,
    Path((name, uid)): Path<(String, String)>,
) -> Response {
    match load(&ctx, &user, &name, &uid).await {
        Ok((_, _, raw)) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; sandbox",
                ),
            ],
            raw,
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize, Default)]
struct PartQuery {
    inline: Option<String>,
    /// The inline-image token's account, expiry and MAC ([`Sessions::inline_token`]).
    a: Option<String>,
    e: Option<u64>,
    k: Option<String>,
}

/// Raster image types a browser may show inline from our origin.
fn inline_safe(ctype: &str) -> bool {
    matches!(
        ctype,
        "image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp" | "image/bmp"
    )
}

/// `GET /mailbox/{mailbox}/{uid}/part/{part}[?inline=1]`.
async fn part(
    State(ctx): State<Arc<Ctx>>,
    Extension(wm): Extension<Arc<Webmail>>,
    headers: HeaderMap,
    user: Option<User>,
    Path((name, uid, part)): Path<(String, String, String)>,
    Query(q): Query<PartQuery>,
) -> Response {
    // Without a session only an inline image with a valid token is served.
    let by_token = user.is_none();
    let user = match user {
        Some(u) => u,
        None => match (&q.a, q.e, &q.k, uid.parse::<u32>(), part.parse::<usize>()) {
            (Some(a), Some(e), Some(k), Ok(u), Ok(i))
                if q.inline.as_deref() == Some("1")
                    && wm.sessions.check_inline(a, &enc_seg(&name), u, i, e, k) =>
            {
                User {
                    account: a.clone(),
                    csrf: String::new(),
                    lang: request_lang(&headers),
                }
            }
            _ => return see_other(&format!("{BASE}/login")),
        },
    };
    let (_, _, raw) = match load(&ctx, &user, &name, &uid).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let not_found = || error_page(user.lang, StatusCode::NOT_FOUND, "not_found", "not_found");
    let Ok(idx) = part.parse::<usize>() else {
        return not_found();
    };
    let Some(msg) = MessageParser::default().parse(crate::mail::mime::bounded(&raw)) else {
        return not_found();
    };
    let Some(p) = msg
        .parts
        .get(idx)
        .filter(|p| !matches!(p.body, PartType::Multipart(_)))
    else {
        return not_found();
    };
    let ctype = p
        .content_type()
        .map(|c| match &c.c_subtype {
            Some(s) => format!("{}/{}", c.c_type, s),
            None => c.c_type.to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_ascii_lowercase();
    let ctype = if matches!(p.body, PartType::Message(_)) {
        "message/rfc822".to_string()
    } else {
        ctype
    };
    let filename = p
        .attachment_name()
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("part-{idx}"));
    let inline = q.inline.as_deref() == Some("1") && inline_safe(&ctype);
    if by_token && !inline {
        return not_found();
    }
    let served_type = if inline
        || ctype.starts_with("image/")
        || ctype.starts_with("application/")
        || ctype.starts_with("audio/")
        || ctype.starts_with("video/")
        || ctype == "message/rfc822"
    {
        ctype.clone()
    } else if ctype.starts_with("text/") {
        // Text is downloaded as is; its charset was decoded to UTF-8.
        "text/plain; charset=utf-8".to_string()
    } else {
        "application/octet-stream".to_string()
    };
    let disposition = content_disposition(if inline { "inline" } else { "attachment" }, &filename);
    let mut r = p.contents().to_vec().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&served_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    r
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent` (RFC 6266).
pub fn content_disposition(kind: &str, filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        enc_seg(filename)
    )
}

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a text body and turns `http(s)://` URLs into links that open in a new
/// tab without a referrer.
pub fn text_to_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 64);
    let mut rest = s;
    loop {
        let next = ["https://", "http://"]
            .iter()
            .filter_map(|p| rest.find(p))
            .min();
        let Some(start) = next else {
            out.push_str(&escape(rest));
            return out;
        };
        // A URL must not be glued to a preceding word character.
        let glued = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric());
        let end = rest[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\''))
            .map(|e| start + e)
            .unwrap_or(rest.len());
        let mut url = &rest[start..end];
        while let Some(c) = url.chars().last() {
            if matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | ')' | ']') {
                url = &url[..url.len() - c.len_utf8()];
            } else {
                break;
            }
        }
        let url_end = start + url.len();
        if glued || url.len() <= "https://".len() {
            out.push_str(&escape(&rest[..url_end.max(start + 1)]));
            rest = &rest[url_end.max(start + 1)..];
            continue;
        }
        out.push_str(&escape(&rest[..start]));
        let u = escape(url);
        out.push_str(&format!(
            "<a href=\"{u}\" target=\"_blank\" rel=\"noopener noreferrer\">{u}</a>"
        ));
        rest = &rest[url_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_linked() {
        assert_eq!(
            text_to_html("<b>hi</b> & see https://example.com/a?b=1&c=2."),
            "&lt;b&gt;hi&lt;/b&gt; &amp; see <a href=\"https://example.com/a?b=1&amp;c=2\" target=\"_blank\" rel=\"noopener noreferrer\">https://example.com/a?b=1&amp;c=2</a>."
        );
        assert_eq!(text_to_html("xhttp://a.b"), "xhttp://a.b");
        assert_eq!(text_to_html("http:// x"), "http:// x");
        assert!(text_to_html("(http://a.b/c)").contains(">http://a.b/c</a>)"));
        assert_eq!(
            text_to_html("javascript:alert(1)\"<>"),
            "javascript:alert(1)&quot;&lt;&gt;"
        );
    }

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(
            content_disposition("attachment", "año \"x\".pdf"),
            "attachment; filename=\"a_o _x_.pdf\"; filename*=UTF-8''a%C3%B1o%20%22x%22.pdf"
        );
    }

    #[test]
    fn only_raster_images_inline() {
        assert!(inline_safe("image/png"));
        assert!(!inline_safe("image/svg+xml"));
        assert!(!inline_safe("text/html"));
    }

    #[test]
    fn view_lists_attachments_and_hides_inline_images() {
        let raw = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/corpus/07-mixed-several-attachments.eml"),
        )
        .unwrap();
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        let v = build_view(&msg, "INBOX", 1, false, Lang::En, 0);
        assert!(!v.attachments.is_empty());
        for a in &v.attachments {
            assert!(a.href.starts_with("/webmail/mailbox/INBOX/1/part/"));
        }
    }
}
