//! The webmail's sending side: the compose page (`GET /webmail/compose`, with
//! `?reply=`, `?replyall=`, `?forward=` = `MAILBOX/UID`, `?draft=UID`, `?to=ADDR`) and
//! its multipart form (`POST /webmail/compose`, `action` = send|save).
//!
//! Implementation notes
//! - Sending goes through the delivery path SMTP uses ([`crate::smtp::submit`]): every
//!   recipient is resolved first (a webmail session is an authenticated submission,
//!   so remote domains are allowed and queued; an unknown local recipient or a bad
//!   address is an error on the form and nothing is sent), then one durable commit
//!   (`deliver` + `enqueue`). Only after that is the copy appended to Sent (`\Seen`),
//!   the original flagged (`\Answered` / `$Forwarded`) and a resumed draft removed.
//! - The envelope sender and `From` are the signed-in account's `account@domain`, with
//!   the account's full name (an address the account owns, as SMTP submission
//!   requires); the message carries its own `Message-ID:` and `Date:` (the same
//!   `mail::submission` completion SMTP submission applies finds nothing to add). `Bcc` is never written into a sent or stored copy; only
//!   a draft keeps it (so it can be resumed).
//! - A draft keeps its reply headers (`In-Reply-To`, `References`) and, in the private
//!   header `X-Clusterd-Origin: reply|forward MAILBOX/UID`, which message to flag when
//!   it is finally sent; that header is dropped from the sent message.
//! - Attachments: new uploads come from `attachment` file fields; attachments of an
//!   existing message (the forwarded original, or the resumed draft) are carried over
//!   by index (`keep` = index into mail-parser's attachment list of the message named
//!   in `attsrc`, which must be one of the user's own mailboxes). The upload is read
//!   with a byte budget of `smtp.max_message_bytes`; the finished message must fit
//!   that limit too (else a clear error, status 413).
//! - Saving appends the new draft before removing the resumed one, so a failure never
//!   loses the text the user typed.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use mail_parser::MessageParser;
use serde::Deserialize;

use super::message_not_found as not_found;
use super::{BASE, Lang, Page, User, check_csrf, enc_seg, page, render_status, see_other};
use crate::ctx::Ctx;
use crate::mail::address::{address_list, format_list, parse_addresses, recipients};
use crate::mail::build::{
    Attachment, MessageParts, ORIGIN_HEADER, WebmailTrace, attachments_of, build_message,
    clean_ctype, clean_filename, clean_line, draft_field, forwarded, id_list, quoted_reply,
    received_from_webmail, thread_ids,
};
use crate::mail::date;
use crate::mail::size::human_size;
use crate::mail::subject::{forward_subject, reply_subject};
use crate::mail::submission;
use crate::smtp::submit::{self, Rcpt, Verdict};
use crate::store::{FlagMode, MailboxInfo, MessageMeta, SpecialUse, StoreError};

/// Most recipients one message may have (as SMTP's `MAX_RECIPIENTS`).
const MAX_RECIPIENTS: usize = crate::smtp::MAX_RECIPIENTS;

/// Routes of this module, relative to `/webmail` (merged by `webmail::router`).
pub fn routes() -> Router<Arc<Ctx>> {
    Router::new().route(
        "/compose",
        get(compose_form)
            .post(compose_post)
            // The handler enforces its own budget (`smtp.max_message_bytes`) while it
            // reads the upload, so it can answer with a form error instead of a bare 413.
            .layer(DefaultBodyLimit::disable()),
    )
}

// ------------------------------------------------------------------ the form state

/// Everything the compose form carries (text fields and hidden state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    pub body: String,
    /// UID (in Drafts) of the draft being edited, or "".
    pub draft: String,
    /// `reply MAILBOX/UID` or `forward MAILBOX/UID`, or "".
    pub origin: String,
    /// Message ids without angle brackets, space-separated.
    pub in_reply_to: String,
    pub references: String,
    /// `MAILBOX/UID` whose attachments may be kept, or "".
    pub attsrc: String,
    /// Indexes of `attsrc`'s attachments to keep.
    pub keep: Vec<usize>,
}

/// An attachment listed on the form (of `attsrc`), with a checkbox.
struct KeptView {
    index: usize,
    name: String,
    size: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "webmail/compose.html")]
struct ComposeTpl {
    page: Page,
    f: Form,
    kept: Vec<KeptView>,
    error: Option<String>,
    max_size: String,
}

#[derive(Debug, Deserialize, Default)]
struct ComposeQuery {
    reply: Option<String>,
    replyall: Option<String>,
    forward: Option<String>,
    draft: Option<String>,
    to: Option<String>,
    msg: Option<String>,
}

// ------------------------------------------------------------------ GET

async fn compose_form(
    State(ctx): State<Arc<Ctx>>,
    user: User,
    Query(q): Query<ComposeQuery>,
) -> Response {
    let mut f = Form::default();
    let result = if let Some(d) = q.draft.as_deref().filter(|s| !s.is_empty()) {
        resume_draft(&ctx, &user, d, &mut f).await
    } else if let Some(r) = q.reply.as_deref() {
        prefill_reply(&ctx, &user, r, false, &mut f).await
    } else if let Some(r) = q.replyall.as_deref() {
        prefill_reply(&ctx, &user, r, true, &mut f).await
    } else if let Some(r) = q.forward.as_deref() {
        prefill_forward(&ctx, &user, r, &mut f).await
    } else {
        if let Some(to) = q.to.as_deref() {
            f.to = clean_line(to);
        }
        Ok(())
    };
    if let Err(resp) = result {
        return resp;
    }
    let kept = kept_views(&ctx, &user, &f, true).await;
    let pg = page(&ctx, &user, "").await.with_flash(q.msg.as_deref());
    render_form(&ctx, pg, f, kept, None, StatusCode::OK)
}

fn render_form(
    ctx: &Ctx,
    page: Page,
    f: Form,
    kept: Vec<KeptView>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    render_status(
        status,
        &ComposeTpl {
            page,
            f,
            kept,
            error,
            max_size: human_size(ctx.cfg.smtp.max_message_bytes),
        },
    )
}

/// The attachments of `f.attsrc` as checkboxes; on a fresh form (`all_checked`) every
/// one is checked, after a failed POST only the kept ones.
async fn kept_views(ctx: &Ctx, user: &User, f: &Form, all_checked: bool) -> Vec<KeptView> {
    if f.attsrc.is_empty() {
        return Vec::new();
    }
    let Ok((_, _, raw)) = load_message(ctx, user, &f.attsrc).await else {
        return Vec::new();
    };
    attachments_of(&raw)
        .into_iter()
        .enumerate()
        .map(|(index, a)| KeptView {
            index,
            size: human_size(a.data.len() as u64),
            name: a.name,
            checked: all_checked || f.keep.contains(&index),
        })
        .collect()
}

async fn resume_draft(ctx: &Ctx, user: &User, uid: &str, f: &mut Form) -> Result<(), Response> {
    let drafts = special_mailbox(ctx, user, SpecialUse::Drafts)
        .await
        .map_err(|e| super::store_error(user.lang, &e))?;
    let r = format!("{}/{}", drafts.name, uid);
    let (_, meta, raw) = load_message(ctx, user, &r).await?;
    let msg = MessageParser::default()
        .parse(crate::mail::mime::bounded(&raw))
        .ok_or_else(|| not_found(user.lang))?;
    f.to = draft_field(&msg, "To", msg.to());
    f.cc = draft_field(&msg, "Cc", msg.cc());
    f.bcc = draft_field(&msg, "Bcc", msg.bcc());
    f.subject = msg.subject().unwrap_or_default().to_string();
    f.body = msg.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
    f.in_reply_to = id_list(msg.in_reply_to());
    f.references = id_list(msg.references());
    f.origin = msg
        .header_raw(ORIGIN_HEADER)
        .map(clean_line)
        .filter(|o| parse_origin(o).is_some())
        .unwrap_or_default();
    f.draft = meta.uid.to_string();
    f.attsrc = r;
    Ok(())
}

async fn prefill_reply(
    ctx: &Ctx,
    user: &User,
    r: &str,
    all: bool,
    f: &mut Form,
) -> Result<(), Response> {
    let (mb, meta, raw) = load_message(ctx, user, r).await?;
    let msg = MessageParser::default()
        .parse(crate::mail::mime::bounded(&raw))
        .ok_or_else(|| not_found(user.lang))?;
    let me = |a: &str| is_own_address(ctx, &user.account, a);
    let sender = recipients(msg.reply_to().or(msg.from()));
    // Replying to one's own message (from Sent) goes to its original recipients.
    let from_me = !sender.is_empty() && sender.iter().all(|(_, a)| me(a));
    let mut to = if from_me {
        recipients(msg.to())
    } else {
        sender
    };
    let mut cc = Vec::new();
    if all {
        if !from_me {
            to.extend(recipients(msg.to()));
        }
        cc = recipients(msg.cc());
    }
    let mut seen: Vec<String> = Vec::new();
    let mut dedup = |list: Vec<(Option<String>, String)>| {
        list.into_iter()
            .filter(|(_, a)| {
                let k = a.to_ascii_lowercase();
                let fresh = !(seen.contains(&k) || (all && me(a)));
                seen.push(k);
                fresh
            })
            .collect::<Vec<_>>()
    };
    let to_kept = dedup(to);
    let cc_kept = dedup(cc);
    f.to = format_list(&to_kept);
    f.cc = format_list(&cc_kept);
    f.subject = reply_subject(msg.subject().unwrap_or_default());
    let (ids, refs) = thread_ids(&msg);
    f.in_reply_to = ids;
    f.references = refs;
    let who = msg
        .from()
        .and_then(|a| a.first())
        .map(|a| {
            a.name()
                .map(str::to_string)
                .or_else(|| a.address().map(str::to_string))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let date = msg.date().map(date::display).unwrap_or_default();
    let text = msg.body_text(0).unwrap_or_default();
    f.body = quote_reply(user.lang, &date, &who, &text);
    f.origin = format!("reply {}/{}", mb.name, meta.uid);
    Ok(())
}

async fn prefill_forward(ctx: &Ctx, user: &User, r: &str, f: &mut Form) -> Result<(), Response> {
    let (mb, meta, raw) = load_message(ctx, user, r).await?;
    let msg = MessageParser::default()
        .parse(crate::mail::mime::bounded(&raw))
        .ok_or_else(|| not_found(user.lang))?;
    f.subject = forward_subject(msg.subject().unwrap_or_default());
    let lang = user.lang;
    let fields = [
        ("from", address_list(msg.from())),
        ("date", msg.date().map(date::display).unwrap_or_default()),
        ("subject", msg.subject().unwrap_or_default().to_string()),
        ("to", address_list(msg.to())),
        ("cc", address_list(msg.cc())),
    ]
    .map(|(key, value)| (lang.t(key), value));
    let text = msg.body_text(0).unwrap_or_default();
    f.body = forwarded(lang.t("forwarded_message"), &fields, &text);
    f.origin = format!("forward {}/{}", mb.name, meta.uid);
    f.attsrc = format!("{}/{}", mb.name, meta.uid);
    f.keep = (0..attachments_of(&raw).len()).collect();
    Ok(())
}

// ------------------------------------------------------------------ POST

/// What the multipart form gave.
#[derive(Default)]
struct Posted {
    csrf: String,
    action: String,
    form: Form,
    uploads: Vec<Attachment>,
    /// The upload went over the byte budget (the rest was not read).
    overflow: bool,
}

/// Reads the multipart form with a byte budget over all fields. Unknown fields are
/// ignored; a broken body ends the read (what was read so far is kept).
async fn read_posted(mp: &mut Multipart, budget: usize) -> Posted {
    let mut p = Posted::default();
    let mut used = 0usize;
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "webmail compose: multipart body ended");
                p.overflow |= e.status() == StatusCode::PAYLOAD_TOO_LARGE;
                break;
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let ctype = field.content_type().map(str::to_string);
        let mut data = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(c)) => {
                    used += c.len();
                    if used > budget {
                        // Over the limit: the rest is read and dropped (so the browser
                        // gets the answer rather than a reset connection), up to a
                        // hard cap after which the connection is given up.
                        p.overflow = true;
                        data = Vec::new();
                        if used > budget.saturating_mul(4).saturating_add(16 << 20) {
                            return p;
                        }
                        continue;
                    }
                    data.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "webmail compose: multipart field ended");
                    return p;
                }
            }
        }
        if name == "attachment" {
            if p.overflow {
                continue;
            }
            let fname = clean_filename(file_name.as_deref().unwrap_or_default());
            if fname.is_empty() && data.is_empty() {
                continue; // an empty file input
            }
            p.uploads.push(Attachment {
                name: if fname.is_empty() {
                    "attachment".into()
                } else {
                    fname
                },
                ctype: clean_ctype(ctype.as_deref()),
                data,
            });
            continue;
        }
        let text = String::from_utf8_lossy(&data).into_owned();
        let f = &mut p.form;
        match name.as_str() {
            "csrf" => p.csrf = text,
            "action" => p.action = text,
            "to" => f.to = text,
            "cc" => f.cc = text,
            "bcc" => f.bcc = text,
            "subject" => f.subject = text,
            "body" => f.body = text,
            "draft" => f.draft = text.trim().to_string(),
            "origin" => f.origin = text.trim().to_string(),
            "in_reply_to" => f.in_reply_to = text.trim().to_string(),
            "references" => f.references = text.trim().to_string(),
            "attsrc" => f.attsrc = text.trim().to_string(),
            "keep" => {
                if let Ok(i) = text.trim().parse::<usize>()
                    && !f.keep.contains(&i)
                {
                    f.keep.push(i);
                }
            }
            _ => {}
        }
    }
    p
}

async fn compose_post(
    State(ctx): State<Arc<Ctx>>,
    user: User,
    conn: Option<axum::Extension<crate::ctx::ConnInfo>>,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    // A body that is not a multipart form cannot carry the token.
    let Ok(mut mp) = mp else {
        return check_csrf(&user, "")
            .err()
            .unwrap_or_else(|| not_found(user.lang));
    };
    let budget = ctx.cfg.smtp.max_message_bytes as usize;
    let posted = read_posted(&mut mp, budget).await;
    if let Err(r) = super::check_post(&ctx, &user, &posted.csrf) {
        return r;
    }
    let peer = conn.map(|c| c.0);
    let Posted {
        action,
        form,
        uploads,
        overflow,
        ..
    } = posted;
    if overflow {
        let lang = user.lang;
        let msg = format!(
            "{} ({} {}). {}",
            lang.t("message_too_large"),
            lang.t("size_limit"),
            human_size(ctx.cfg.smtp.max_message_bytes),
            lang.t("reattach")
        );
        return form_error(&ctx, &user, form, msg, StatusCode::PAYLOAD_TOO_LARGE).await;
    }
    let had_uploads = !uploads.is_empty();
    let result = if action == "save" {
        save_draft(&ctx, &user, &form, uploads).await
    } else {
        send(&ctx, &user, &form, uploads, peer).await
    };
    match result {
        Ok(resp) => resp,
        Err(Failure::Page(r)) => *r,
        Err(Failure::Form(mut msg, status)) => {
            if had_uploads {
                msg.push(' ');
                msg.push_str(user.lang.t("reattach"));
            }
            form_error(&ctx, &user, form, msg, status).await
        }
    }
}

/// Why a POST did not complete.
enum Failure {
    /// Shown on the form again (the user's text kept).
    Form(String, StatusCode),
    /// A whole page (403, 503, 404).
    Page(Box<Response>),
}

async fn form_error(ctx: &Ctx, user: &User, f: Form, msg: String, status: StatusCode) -> Response {
    let kept = kept_views(ctx, user, &f, false).await;
    let pg = page(ctx, user, "").await;
    render_form(ctx, pg, f, kept, Some(msg), status)
}

fn store_failure(lang: Lang, e: &StoreError) -> Failure {
    match e {
        StoreError::ReadOnly => Failure::Page(Box::new(super::service_moving(lang))),
        other => {
            tracing::error!(error = %other, "webmail compose: store failure");
            Failure::Form(
                lang.t("send_failed").to_string(),
                StatusCode::INTERNAL_SERVER_ERROR,
            )
        }
    }
}

/// The attachments of the message: the kept ones of `attsrc`, then the uploads (new
/// files from the form).
async fn collect_attachments(
    ctx: &Ctx,
    user: &User,
    f: &Form,
    uploads: Vec<Attachment>,
) -> Result<Vec<Attachment>, Failure> {
    let mut out = Vec::new();
    if !f.attsrc.is_empty() && !f.keep.is_empty() {
        let (_, _, raw) = load_message(ctx, user, &f.attsrc)
            .await
            .map_err(|r| Failure::Page(Box::new(r)))?;
        for (i, a) in attachments_of(&raw).into_iter().enumerate() {
            if f.keep.contains(&i) {
                out.push(a);
            }
        }
    }
    out.extend(uploads);
    Ok(out)
}

/// The account's address and display name.
async fn sender_of(ctx: &Ctx, user: &User) -> (String, String) {
    let addr = format!("{}@{}", user.account, ctx.cfg.domain.name);
    let name = match ctx.store.account(&user.account).await {
        Ok(Some(a)) => a.full_name,
        _ => String::new(),
    };
    (addr, clean_line(&name))
}

async fn send(
    ctx: &Ctx,
    user: &User,
    f: &Form,
    uploads: Vec<Attachment>,
    peer: Option<crate::ctx::ConnInfo>,
) -> Result<Response, Failure> {
    let lang = user.lang;
    let bad = |m: String| Failure::Form(m, StatusCode::BAD_REQUEST);
    let to =
        parse_addresses(&f.to).map_err(|a| bad(format!("{}: {a}", lang.t("invalid_address"))))?;
    let cc =
        parse_addresses(&f.cc).map_err(|a| bad(format!("{}: {a}", lang.t("invalid_address"))))?;
    let bcc =
        parse_addresses(&f.bcc).map_err(|a| bad(format!("{}: {a}", lang.t("invalid_address"))))?;
    let all: Vec<&(Option<String>, String)> = to.iter().chain(&cc).chain(&bcc).collect();
    if all.is_empty() {
        return Err(bad(lang.t("recipients_required").to_string()));
    }
    if all.len() > MAX_RECIPIENTS {
        return Err(bad(lang.t("too_many_recipients").to_string()));
    }
    // Resolve every recipient before anything is committed.
    let mut rcpts: Vec<Rcpt> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for (_, addr) in &all {
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return Err(bad(format!("{}: {addr}", lang.t("invalid_address"))));
        };
        match submit::resolve_recipient(ctx, addr.clone(), local, domain, true).await {
            Verdict::Accepted(r) => {
                if !rcpts.contains(&r) {
                    rcpts.push(r);
                }
            }
            Verdict::UnknownUser | Verdict::RelayDenied => unknown.push(addr.clone()),
            Verdict::TempFail => {
                return Err(Failure::Form(
                    lang.t("send_failed").to_string(),
                    StatusCode::SERVICE_UNAVAILABLE,
                ));
            }
        }
    }
    if !unknown.is_empty() {
        return Err(bad(format!(
            "{}: {}",
            lang.t("unknown_recipient"),
            unknown.join(", ")
        )));
    }
    let attachments = collect_attachments(ctx, user, f, uploads).await?;
    let (from_addr, from_name) = sender_of(ctx, user).await;
    let host = ctx.cfg.hostname();
    let msg = build_message(&MessageParts {
        from_name: &from_name,
        from_addr: &from_addr,
        to: &to,
        cc: &cc,
        bcc: &[],
        verbatim: None,
        subject: &f.subject,
        body: &f.body,
        in_reply_to: &f.in_reply_to,
        references: &f.references,
        message_id: &format!("{}@{}", crate::store::new_id(), host),
        date: chrono::Utc::now().timestamp(),
        origin: None,
        attachments: &attachments,
    });
    // The builder writes both origination fields; kept as SMTP submission keeps them.
    let msg = submission::complete(msg, 0, &host);
    check_size(ctx, lang, msg.len())?;
    // The trace header goes only on the delivered copies (not on the Sent copy).
    let id = crate::store::new_id()[..16].to_uppercase();
    let received = received_from_webmail(&WebmailTrace {
        ip: peer.map(|c| c.peer.ip()),
        https: peer.is_some_and(|c| c.https),
        account: &user.account,
        by: &host,
        id: &id,
    });
    let mut delivered = Vec::with_capacity(received.len() + msg.len());
    delivered.extend_from_slice(received.as_bytes());
    delivered.extend_from_slice(&msg);
    let (accounts, remotes) = submit::split(&rcpts);
    if let Err(e) = submit::submit(&ctx.store, delivered, &from_addr, &accounts, &remotes).await {
        return Err(store_failure(lang, &e));
    }
    tracing::info!(id, from = %from_addr, local = accounts.len(), remote = remotes.len(), size = msg.len(), "webmail: sent");
    // From here on the message is out: later failures are logged, not shown as errors.
    match special_mailbox(ctx, user, SpecialUse::Sent).await {
        Ok(sent) => {
            if let Err(e) = ctx
                .store
                .append(&sent.id, msg, &["\\Seen".to_string()], None)
                .await
            {
                tracing::error!(error = %e, "webmail: could not keep the Sent copy");
            }
        }
        Err(e) => tracing::error!(error = %e, "webmail: no Sent mailbox"),
    }
    if let Some((kind, r)) = parse_origin(&f.origin) {
        let flag = if kind == "reply" {
            "\\Answered"
        } else {
            "$Forwarded"
        };
        if let Ok((mb, meta)) = load_message_meta(ctx, user, r).await
            && let Err(e) = ctx
                .store
                .store_flags(&mb.id, &[meta.uid], FlagMode::Add, &[flag.to_string()])
                .await
        {
            tracing::warn!(error = %e, "webmail: could not flag the original");
        }
    }
    if let Some(uid) = draft_uid(f) {
        remove_draft(ctx, user, uid).await;
    }
    Ok(see_other(&format!("{BASE}/mailbox/INBOX?msg=sent_ok")))
}

async fn save_draft(
    ctx: &Ctx,
    user: &User,
    f: &Form,
    uploads: Vec<Attachment>,
) -> Result<Response, Failure> {
    let lang = user.lang;
    // A draft may hold half-typed addresses: then the fields are kept as typed.
    let (to, cc, bcc, verbatim) = match (
        parse_addresses(&f.to),
        parse_addresses(&f.cc),
        parse_addresses(&f.bcc),
    ) {
        (Ok(to), Ok(cc), Ok(bcc)) => (to, cc, bcc, None),
        _ => (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Some((f.to.as_str(), f.cc.as_str(), f.bcc.as_str())),
        ),
    };
    let attachments = collect_attachments(ctx, user, f, uploads).await?;
    let (from_addr, from_name) = sender_of(ctx, user).await;
    let origin = parse_origin(&f.origin).map(|_| f.origin.as_str());
    let msg = build_message(&MessageParts {
        from_name: &from_name,
        from_addr: &from_addr,
        to: &to,
        cc: &cc,
        bcc: &bcc,
        verbatim,
        subject: &f.subject,
        body: &f.body,
        in_reply_to: &f.in_reply_to,
        references: &f.references,
        message_id: &format!("{}@{}", crate::store::new_id(), ctx.cfg.hostname()),
        date: chrono::Utc::now().timestamp(),
        origin,
        attachments: &attachments,
    });
    check_size(ctx, lang, msg.len())?;
    let drafts = special_mailbox(ctx, user, SpecialUse::Drafts)
        .await
        .map_err(|e| store_failure(lang, &e))?;
    let flags = ["\\Draft".to_string(), "\\Seen".to_string()];
    let appended = ctx
        .store
        .append(&drafts.id, msg, &flags, None)
        .await
        .map_err(|e| store_failure(lang, &e))?;
    if let Some(old) = draft_uid(f) {
        remove_draft(ctx, user, old).await;
    }
    Ok(see_other(&format!(
        "{BASE}/compose?draft={}&msg=draft_saved",
        appended.uid
    )))
}

fn check_size(ctx: &Ctx, lang: Lang, len: usize) -> Result<(), Failure> {
    let max = ctx.cfg.smtp.max_message_bytes;
    if len as u64 > max {
        return Err(Failure::Form(
            format!(
                "{} ({} > {} {})",
                lang.t("message_too_large"),
                human_size(len as u64),
                lang.t("size_limit"),
                human_size(max)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ));
    }
    Ok(())
}

fn draft_uid(f: &Form) -> Option<u32> {
    f.draft.parse().ok().filter(|u| *u > 0)
}

/// Removes a draft (by UID in the Drafts mailbox); failures are logged.
async fn remove_draft(ctx: &Ctx, user: &User, uid: u32) {
    let Ok(drafts) = special_mailbox(ctx, user, SpecialUse::Drafts).await else {
        return;
    };
    let r = async {
        ctx.store
            .store_flags(
                &drafts.id,
                &[uid],
                FlagMode::Add,
                &["\\Deleted".to_string()],
            )
            .await?;
        ctx.store.expunge(&drafts.id, Some(&[uid])).await
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, uid, "webmail: could not remove the old draft");
    }
}

// ------------------------------------------------------------------ store helpers

/// The user's special-use mailbox (Sent, Drafts), falling back to one with the
/// default name, created when missing.
async fn special_mailbox(
    ctx: &Ctx,
    user: &User,
    su: SpecialUse,
) -> Result<MailboxInfo, StoreError> {
    let boxes = ctx.store.list_mailboxes(&user.account).await?;
    if let Some(m) = boxes.iter().find(|m| m.special_use == Some(su)) {
        return Ok(m.clone());
    }
    let name = match su {
        SpecialUse::Sent => "Sent",
        SpecialUse::Drafts => "Drafts",
        SpecialUse::Trash => "Trash",
        SpecialUse::Junk => "Junk",
        SpecialUse::Archive => "Archive",
    };
    if let Some(m) = boxes
        .into_iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
    {
        return Ok(m);
    }
    ctx.store.create_mailbox(&user.account, name).await
}

/// Splits `MAILBOX/UID` (the mailbox may itself contain `/`).
fn split_ref(r: &str) -> Option<(&str, u32)> {
    let (mb, uid) = r.rsplit_once('/')?;
    let uid: u32 = uid.trim().parse().ok()?;
    (!mb.is_empty() && uid > 0).then_some((mb, uid))
}

/// A message of the user's own mailboxes, without its body.
async fn load_message_meta(
    ctx: &Ctx,
    user: &User,
    r: &str,
) -> Result<(MailboxInfo, MessageMeta), Response> {
    let lang = user.lang;
    let (name, uid) = split_ref(r).ok_or_else(|| not_found(lang))?;
    let mb = match ctx.store.mailbox(&user.account, name).await {
        Ok(Some(m)) => m,
        Ok(None) | Err(StoreError::InvalidName(_)) => return Err(not_found(lang)),
        Err(e) => return Err(super::store_error(lang, &e)),
    };
    let meta = super::find_message(ctx, user, &mb, uid).await?;
    Ok((mb, meta))
}

/// A message of the user's own mailboxes with its bytes; 404 page when absent.
async fn load_message(
    ctx: &Ctx,
    user: &User,
    r: &str,
) -> Result<(MailboxInfo, MessageMeta, Vec<u8>), Response> {
    let (mb, meta) = load_message_meta(ctx, user, r).await?;
    let raw = super::message_bytes(ctx, user, &meta).await?;
    Ok((mb, meta, raw))
}

/// `reply MAILBOX/UID` or `forward MAILBOX/UID`.
fn parse_origin(o: &str) -> Option<(&str, &str)> {
    let (kind, r) = o.split_once(' ')?;
    (matches!(kind, "reply" | "forward") && split_ref(r).is_some()).then_some((kind, r))
}

/// Whether `addr` is one of the account's own addresses (any local domain, aliases).
fn is_own_address(ctx: &Ctx, account: &str, addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((l, d)) if ctx.cfg.domain.is_local(d) => {
            ctx.cfg.domain.resolve_local_part(l) == account
        }
        _ => false,
    }
}

// ------------------------------------------------------------------ text helpers

/// The reply body: an attribution line and the original quoted with `> `.
pub fn quote_reply(lang: Lang, date: &str, who: &str, text: &str) -> String {
    let attribution = match (date.is_empty(), who.is_empty()) {
        (false, false) => format!("{} {date}, {who} {}:", lang.t("quote_on"), lang.t("wrote")),
        (true, false) => format!("{who} {}:", lang.t("wrote")),
        _ => String::new(),
    };
    quoted_reply(&attribution, text)
}

/// Link to the compose page for a reply etc. (`kind` = reply|replyall|forward).
pub fn compose_link(kind: &str, mailbox: &str, uid: u32) -> String {
    format!("{BASE}/compose?{kind}={}%2F{uid}", enc_seg(mailbox))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_quote_each_line_and_say_who_wrote() {
        let q = quote_reply(
            Lang::En,
            "2024-01-02 10:00 +0000",
            "Ana",
            "hola\r\n> old\r\n\r\nbye\r\n",
        );
        assert_eq!(
            q,
            "\r\n\r\nOn 2024-01-02 10:00 +0000, Ana wrote:\r\n> hola\r\n>> old\r\n> \r\n> bye\r\n"
        );
        let q = quote_reply(Lang::Es, "d", "Ana", "x");
        assert!(q.contains("El d, Ana escribió:"), "{q}");
    }

    #[test]
    fn helpers_sanitise_names_and_types() {
        assert_eq!(split_ref("a/b/12"), Some(("a/b", 12)));
        assert_eq!(split_ref("INBOX/0"), None);
        assert_eq!(parse_origin("reply INBOX/3"), Some(("reply", "INBOX/3")));
        assert_eq!(parse_origin("delete INBOX/3"), None);
    }
}
