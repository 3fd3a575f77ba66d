//! Folder management: the page listing the user's folders and the create, rename and
//! delete actions, all through the store's mailbox API (the same calls as IMAP
//! CREATE/RENAME/DELETE, so the two always agree). Special-use folders are listed but
//! not offered for rename or delete; the store refuses deleting INBOX and folders
//! with children.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};

use super::auth::MsgQuery;
use super::{
    BASE, Page, User, check_csrf, page, parse_form, render, require_writable, see_other,
    store_error,
};
use crate::ctx::Ctx;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/folders", get(manage))
        .route("/folders/create", post(create))
        .route("/folders/rename", post(rename))
        .route("/folders/delete", post(delete))
}

#[derive(Template)]
#[template(path = "webmail/folders.html")]
struct FoldersTpl {
    page: Page,
}

async fn manage(State(ctx): State<Arc<Ctx>>, user: User, Query(q): Query<MsgQuery>) -> Response {
    let page = page(&ctx, &user, "").await.with_flash(q.msg.as_deref());
    render(&FoldersTpl { page })
}

/// Checks the token and writability; returns the form fields.
fn prepare(ctx: &Ctx, user: &User, body: &[u8]) -> Result<Vec<(String, String)>, Response> {
    let form = parse_form(body);
    let token = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    check_csrf(user, token)?;
    require_writable(ctx, user.lang)?;
    Ok(form)
}

fn field<'a>(form: &'a [(String, String)], k: &str) -> &'a str {
    form.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}

async fn create(State(ctx): State<Arc<Ctx>>, user: User, body: axum::body::Bytes) -> Response {
    let form = match prepare(&ctx, &user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match ctx
        .store
        .create_mailbox(&user.account, field(&form, "name"))
        .await
    {
        Ok(_) => see_other(&format!("{BASE}/folders?msg=folder_created")),
        Err(e) => store_error(user.lang, &e),
    }
}

async fn rename(State(ctx): State<Arc<Ctx>>, user: User, body: axum::body::Bytes) -> Response {
    let form = match prepare(&ctx, &user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (from, to) = (field(&form, "from"), field(&form, "to"));
    if from == to {
        return see_other(&format!("{BASE}/folders"));
    }
    match ctx.store.rename_mailbox(&user.account, from, to).await {
        Ok(()) => see_other(&format!("{BASE}/folders?msg=folder_renamed")),
        Err(e) => store_error(user.lang, &e),
    }
}

async fn delete(State(ctx): State<Arc<Ctx>>, user: User, body: axum::body::Bytes) -> Response {
    let form = match prepare(&ctx, &user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match ctx
        .store
        .delete_mailbox(&user.account, field(&form, "name"))
        .await
    {
        Ok(()) => see_other(&format!("{BASE}/folders?msg=folder_deleted")),
        Err(e) => store_error(user.lang, &e),
    }
}
