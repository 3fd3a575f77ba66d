//! The webmail's personal address book: `GET /webmail/contacts` (list, the add form,
//! `?edit=ID` the edit form), `POST /webmail/contacts/add|edit|delete`, and the
//! autocomplete endpoint `GET /webmail/contacts/suggest?q=TEXT` (JSON list of
//! `{name, email}`), plus the small script that uses it (`/webmail/static/contacts.js`)
//! and the stylesheet of the compose and contacts pages (`/webmail/static/compose.css`).
//!
//! Implementation notes
//! - Contacts live in the store (ops `ContactPut`/`ContactDelete`, so they replicate);
//!   every store call names the signed-in account, so one user can never read or
//!   change another's book (the store refuses foreign ids).
//! - Suggestions: address-book matches first, then addresses the user has sent to
//!   (the To/Cc of the newest messages in Sent, cached per account until Sent
//!   changes), then local accounts; de-duplicated by address, at most
//!   [`MAX_SUGGESTIONS`]. Matching is case-insensitive on name or address; prefix
//!   matches rank before matches inside a word.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mail_parser::MessageParser;
use serde::{Deserialize, Serialize};

use super::{BASE, Page, User, page, parse_form, render_status, see_other};
use crate::ctx::Ctx;
use crate::mail::address::format_address;
use crate::mail::build::clean_line;
use crate::store::{Contact, SpecialUse, StoreError};

/// Most suggestions one query returns.
pub const MAX_SUGGESTIONS: usize = 10;
/// How many of the newest Sent messages feed the "sent to" suggestions.
const SENT_SCAN: usize = 200;

/// Routes of this module, relative to `/webmail` (merged by `webmail::router`).
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/contacts", get(list))
        .route("/contacts/add", post(add))
        .route("/contacts/edit", post(edit))
        .route("/contacts/delete", post(delete))
        .route("/contacts/suggest", get(suggest))
        .route("/static/contacts.js", get(script))
        .route("/static/compose.css", get(stylesheet))
}

// ------------------------------------------------------------------ pages

#[derive(Template)]
#[template(path = "webmail/contacts.html")]
struct ContactsTpl {
    page: Page,
    contacts: Vec<ContactRow>,
    /// The contact being edited (its form replaces the add form).
    editing: Option<ContactRow>,
    /// The add form's values after a failed add.
    draft: ContactRow,
    error: Option<String>,
}

#[derive(Default, Clone)]
struct ContactRow {
    id: String,
    name: String,
    email: String,
    note: String,
    /// `Name <email>` for the compose link.
    compose_href: String,
}

impl From<Contact> for ContactRow {
    fn from(c: Contact) -> Self {
        let full = format_address(Some(&c.name), &c.email);
        ContactRow {
            compose_href: format!("{BASE}/compose?to={}", super::enc_seg(&full)),
            id: c.id,
            name: c.name,
            email: c.email,
            note: c.note,
        }
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    edit: Option<String>,
    msg: Option<String>,
}

async fn list(State(ctx): State<Arc<Ctx>>, user: User, Query(q): Query<ListQuery>) -> Response {
    let editing = match q.edit.as_deref() {
        Some(id) => match ctx.store.contact(&user.account, id).await {
            Ok(Some(c)) => Some(ContactRow::from(c)),
            Ok(None) => {
                return super::error_page(
                    user.lang,
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "contact_not_found",
                );
            }
            Err(e) => return super::store_error(user.lang, &e),
        },
        None => None,
    };
    let pg = page(&ctx, &user, "").await.with_flash(q.msg.as_deref());
    render_list(&ctx, &user, pg, editing, ContactRow::default(), None).await
}

async fn render_list(
    ctx: &Ctx,
    user: &User,
    pg: Page,
    editing: Option<ContactRow>,
    draft: ContactRow,
    error: Option<(String, StatusCode)>,
) -> Response {
    let contacts = match ctx.store.contacts(&user.account).await {
        Ok(c) => c,
        Err(e) => return super::store_error(user.lang, &e),
    };
    let rows: Vec<ContactRow> = contacts.into_iter().map(ContactRow::from).collect();
    let (error, status) = match error {
        Some((e, s)) => (Some(e), s),
        None => (None, StatusCode::OK),
    };
    render_status(
        status,
        &ContactsTpl {
            page: pg,
            contacts: rows,
            editing,
            draft,
            error,
        },
    )
}

/// The fields of a contacts form.
struct Posted {
    csrf: String,
    id: String,
    name: String,
    email: String,
    note: String,
}

fn posted(body: &[u8]) -> Posted {
    let mut p = Posted {
        csrf: String::new(),
        id: String::new(),
        name: String::new(),
        email: String::new(),
        note: String::new(),
    };
    for (k, v) in parse_form(body) {
        match k.as_str() {
            "csrf" => p.csrf = v,
            "id" => p.id = v,
            "name" => p.name = v,
            "email" => p.email = v,
            "note" => p.note = v,
            _ => {}
        }
    }
    p
}

/// What to do with a store error on a contacts form: the form again with a message
/// (bad input), or a whole error page.
async fn failed(ctx: &Ctx, user: &User, p: Posted, edit: bool, e: StoreError) -> Response {
    let key = match &e {
        StoreError::InvalidName(what) if what.starts_with("e-mail") => "invalid_address",
        StoreError::InvalidName(_) => "contact_invalid",
        StoreError::NotAllowed(_) if edit => "contact_not_found",
        StoreError::NotAllowed(_) => "contacts_full",
        _ => return super::store_error(user.lang, &e),
    };
    let row = ContactRow {
        id: p.id.clone(),
        name: p.name,
        email: p.email,
        note: p.note,
        compose_href: String::new(),
    };
    let pg = page(ctx, user, "").await;
    let msg = user.lang.t(key).to_string();
    if edit && key == "contact_not_found" {
        return super::error_page(user.lang, StatusCode::NOT_FOUND, "not_found", key);
    }
    let (editing, draft) = if edit {
        (Some(row), ContactRow::default())
    } else {
        (None, row)
    };
    render_list(
        ctx,
        user,
        pg,
        editing,
        draft,
        Some((msg, StatusCode::BAD_REQUEST)),
    )
    .await
}

async fn add(State(ctx): State<Arc<Ctx>>, user: User, body: Bytes) -> Response {
    let p = posted(&body);
    if let Err(r) = super::check_post(&ctx, &user, &p.csrf) {
        return r;
    }
    match ctx
        .store
        .put_contact(&user.account, None, &p.name, &p.email, &p.note)
        .await
    {
        Ok(_) => see_other(&format!("{BASE}/contacts?msg=contact_added")),
        Err(e) => failed(&ctx, &user, p, false, e).await,
    }
}

async fn edit(State(ctx): State<Arc<Ctx>>, user: User, body: Bytes) -> Response {
    let p = posted(&body);
    if let Err(r) = super::check_post(&ctx, &user, &p.csrf) {
        return r;
    }
    match ctx
        .store
        .put_contact(&user.account, Some(&p.id), &p.name, &p.email, &p.note)
        .await
    {
        Ok(_) => see_other(&format!("{BASE}/contacts?msg=contact_saved")),
        Err(e) => failed(&ctx, &user, p, true, e).await,
    }
}

async fn delete(State(ctx): State<Arc<Ctx>>, user: User, body: Bytes) -> Response {
    let p = posted(&body);
    if let Err(r) = super::check_post(&ctx, &user, &p.csrf) {
        return r;
    }
    match ctx.store.delete_contact(&user.account, &p.id).await {
        Ok(()) => see_other(&format!("{BASE}/contacts?msg=contact_deleted")),
        Err(StoreError::NotAllowed(_)) => super::error_page(
            user.lang,
            StatusCode::NOT_FOUND,
            "not_found",
            "contact_not_found",
        ),
        Err(e) => super::store_error(user.lang, &e),
    }
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("static/contacts.js"),
    )
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("static/compose.css"),
    )
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

// ------------------------------------------------------------------ suggestions

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    pub name: String,
    pub email: String,
}

#[derive(Deserialize, Default)]
struct SuggestQuery {
    q: Option<String>,
}

async fn suggest(
    State(ctx): State<Arc<Ctx>>,
    user: User,
    Query(q): Query<SuggestQuery>,
) -> Response {
    let q = clean_line(q.q.as_deref().unwrap_or_default());
    let list = if q.is_empty() || q.len() > 200 {
        Vec::new()
    } else {
        suggestions(&ctx, &user.account, &q).await
    };
    let body = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// How well `(name, email)` matches the lower-case query: 0 prefix of the address
/// or of a word of the name, 1 anywhere, `None` no match.
fn score(q: &str, name: &str, email: &str) -> Option<u8> {
    let (n, e) = (name.to_lowercase(), email.to_lowercase());
    if e.starts_with(q) || n.starts_with(q) || n.split_whitespace().any(|w| w.starts_with(q)) {
        Some(0)
    } else if e.contains(q) || n.contains(q) {
        Some(1)
    } else {
        None
    }
}

/// Ranks one source's candidates: matches only, prefix matches first, stable.
fn ranked(q: &str, items: Vec<Suggestion>) -> Vec<Suggestion> {
    let mut scored: Vec<(u8, usize, Suggestion)> = items
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| score(q, &s.name, &s.email).map(|sc| (sc, i, s)))
        .collect();
    scored.sort_by_key(|(sc, i, _)| (*sc, *i));
    scored.into_iter().map(|(_, _, s)| s).collect()
}

/// Suggestions for `q`: address book, then sent-to, then local accounts.
pub async fn suggestions(ctx: &Ctx, account: &str, q: &str) -> Vec<Suggestion> {
    let q = q.to_lowercase();
    let book: Vec<Suggestion> = ctx
        .store
        .contacts(account)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| Suggestion {
            name: c.name,
            email: c.email,
        })
        .collect();
    let sent = sent_to(ctx, account).await;
    let locals: Vec<Suggestion> = ctx
        .store
        .list_accounts()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|a| Suggestion {
            email: format!("{}@{}", a.name, ctx.cfg.domain.name),
            name: a.full_name,
        })
        .collect();
    let mut out: Vec<Suggestion> = Vec::new();
    for group in [book, sent.as_ref().clone(), locals] {
        for s in ranked(&q, group) {
            if out.len() >= MAX_SUGGESTIONS {
                return out;
            }
            if !out.iter().any(|o| o.email.eq_ignore_ascii_case(&s.email)) {
                out.push(s);
            }
        }
    }
    out
}

type SentCache = Mutex<HashMap<String, (String, Arc<Vec<Suggestion>>)>>;

/// Addresses in To/Cc of the newest Sent messages (newest first), cached per account
/// until the Sent mailbox changes.
async fn sent_to(ctx: &Ctx, account: &str) -> Arc<Vec<Suggestion>> {
    static CACHE: OnceLock<SentCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let Ok(boxes) = ctx.store.list_mailboxes(account).await else {
        return Arc::default();
    };
    let Some(sent) = boxes
        .into_iter()
        .find(|m| m.special_use == Some(SpecialUse::Sent))
    else {
        return Arc::default();
    };
    let key = format!(
        "{}:{}:{}:{}",
        sent.id, sent.uidnext, sent.messages, sent.highest_modseq
    );
    if let Some((k, v)) = cache.lock().unwrap().get(account)
        && *k == key
    {
        return v.clone();
    }
    let mut msgs = ctx.store.messages(&sent.id).await.unwrap_or_default();
    msgs.sort_by_key(|m| std::cmp::Reverse(m.uid));
    msgs.truncate(SENT_SCAN);
    let mut out: Vec<Suggestion> = Vec::new();
    for m in msgs {
        let Ok(raw) = ctx.store.read_blob(&m.blob).await else {
            continue;
        };
        // Only the header section is needed.
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or(raw.len());
        let Some(msg) = MessageParser::default().parse_headers(&raw[..end]) else {
            continue;
        };
        for a in [msg.to(), msg.cc()].into_iter().flatten() {
            for x in a.iter() {
                let Some(email) = x.address().map(str::trim) else {
                    continue;
                };
                if !crate::mail::address::valid_address(email)
                    || out.iter().any(|o| o.email.eq_ignore_ascii_case(email))
                {
                    continue;
                }
                out.push(Suggestion {
                    name: x.name().map(clean_line).unwrap_or_default(),
                    email: email.to_string(),
                });
            }
        }
    }
    let v = Arc::new(out);
    let mut c = cache.lock().unwrap();
    if c.len() > 1000 {
        c.clear();
    }
    c.insert(account.to_string(), (key, v.clone()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, email: &str) -> Suggestion {
        Suggestion {
            name: name.into(),
            email: email.into(),
        }
    }

    #[test]
    fn prefix_matches_rank_first() {
        let items = vec![
            s("Zoe Ana", "zoe@x.org"),
            s("Mariana", "m@x.org"),
            s("Luis", "ana.l@x.org"),
            s("Pedro", "p@x.org"),
        ];
        let r = ranked("ana", items);
        let emails: Vec<&str> = r.iter().map(|s| s.email.as_str()).collect();
        assert_eq!(emails, ["zoe@x.org", "ana.l@x.org", "m@x.org"]);
        assert_eq!(score("ANA".to_lowercase().as_str(), "Ana", "a@x"), Some(0));
    }
}
