//! The message list of a folder (paginated, sortable, searchable), its bulk actions
//! (delete to Trash, move, mark read/unread/flagged) and the new-mail poll endpoint.
//!
//! Implementation notes
//! - The store keeps no envelope data, so the list headers (From, Subject, Date, an
//!   attachment mark) are parsed once per message body and kept in a bounded
//!   in-memory cache keyed by blob id ([`SummaryCache`]); bodies are immutable and
//!   content-addressed, so an entry never goes stale. A background task parses new
//!   deliveries as they are committed, so a list page normally reads no message
//!   file: a request costs one `Store::messages` read, a sort and a page render.
//! - Only the first [`SUMMARY_PREFIX`] bytes of a body are read for its summary.
//! - Sorting is stable with the UID as the last key, so pages do not shuffle.
//! - Search reads the folder's bodies through `mail::text::Text`, as IMAP SEARCH
//!   does, so the webmail finds what IMAP SEARCH finds.
//! - Every write goes through the store (`store_flags`, `copy` with remove, `expunge`)
//!   exactly as IMAP STORE/MOVE/EXPUNGE do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mail_parser::{MessageParser, MimeHeaders};

use super::{
    BASE, Lang, Page, User, Webmail, check_csrf, enc_seg, find_mailbox, page, parse_form, render,
    require_writable, see_other, store_error,
};
use crate::ctx::Ctx;
use crate::mail::size::human_size;
use crate::mail::subject::sort_key;
use crate::mail::text::Text;
use crate::store::{FlagMode, MessageMeta, SpecialUse, Store};

/// How much of a body is read to summarise it.
pub const SUMMARY_PREFIX: usize = 64 * 1024;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/mailbox/{mailbox}", get(list))
        .route("/mailbox/{mailbox}/bulk", post(bulk))
        .route("/mailbox/{mailbox}/poll", get(poll))
}

// ------------------------------------------------------------------ summaries

/// What the list shows of a message besides the store's metadata.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The sender's display name, else the address.
    pub from: String,
    /// Lower-case sort key of `from`.
    pub from_key: String,
    pub subject: String,
    /// Lower-case subject without `Re:`/`Fwd:` prefixes.
    pub subject_key: String,
    /// The Date field (Unix seconds) when present and valid.
    pub date: Option<i64>,
    pub attachment: bool,
}

impl Summary {
    /// Parses the header (and as much structure as `raw` holds).
    pub fn parse(raw: &[u8]) -> Summary {
        let Some(msg) = MessageParser::default().parse(crate::mail::mime::bounded(raw)) else {
            return Summary::default();
        };
        let from = msg
            .from()
            .and_then(|a| a.first())
            .map(|a| {
                a.name()
                    .filter(|n| !n.trim().is_empty())
                    .or(a.address())
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let subject = msg.subject().unwrap_or("").trim().to_string();
        let attachment = msg.attachments().any(|p| {
            p.content_disposition().is_some_and(|d| d.is_attachment())
                || (p.attachment_name().is_some() && p.content_id().is_none())
        });
        Summary {
            from_key: from.to_lowercase(),
            subject_key: sort_key(&subject),
            date: msg.date().map(|d| d.to_timestamp()),
            from,
            subject,
            attachment,
        }
    }
}

/// Parsed list headers per blob id, bounded.
pub struct SummaryCache {
    map: Mutex<HashMap<String, Arc<Summary>>>,
    cap: usize,
}

impl SummaryCache {
    pub fn new(cap: usize) -> SummaryCache {
        SummaryCache {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(100),
        }
    }

    fn insert(&self, items: Vec<(String, Arc<Summary>)>) {
        let mut map = self.map.lock().unwrap();
        if map.len() + items.len() > self.cap {
            // Drop about half; entries are cheap to rebuild.
            let drop: Vec<String> = map
                .keys()
                .take(map.len() / 2 + items.len())
                .cloned()
                .collect();
            for k in drop {
                map.remove(&k);
            }
        }
        map.extend(items);
    }

    /// Summaries for `metas` in order, parsing (on a blocking thread) those missing.
    pub async fn get(&self, store: &Store, metas: &[&MessageMeta]) -> Vec<Arc<Summary>> {
        let mut out: Vec<Option<Arc<Summary>>> = Vec::with_capacity(metas.len());
        let mut missing: Vec<String> = Vec::new();
        {
            let map = self.map.lock().unwrap();
            for m in metas {
                let s = map.get(&m.blob).cloned();
                if s.is_none() {
                    missing.push(m.blob.clone());
                }
                out.push(s);
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            let store = store.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                missing
                    .into_iter()
                    .map(|b| {
                        let s = match store.read_blob_prefix_blocking(&b, SUMMARY_PREFIX) {
                            Ok(raw) => Summary::parse(&raw),
                            Err(e) => {
                                tracing::warn!(blob = %b, error = %e, "webmail: unreadable body");
                                Summary::default()
                            }
                        };
                        (b, Arc::new(s))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            let found: HashMap<String, Arc<Summary>> = parsed.iter().cloned().collect();
            self.insert(parsed);
            for (slot, m) in out.iter_mut().zip(metas) {
                if slot.is_none() {
                    *slot = Some(
                        found
                            .get(&m.blob)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Summary::default())),
                    );
                }
            }
        }
        out.into_iter().map(|s| s.unwrap_or_default()).collect()
    }
}

/// Parses newly delivered messages in the background so the next list is warm; on
/// the active node only (a standby serves no webmail: warming there took CPU from
/// applying the peer's log; after a takeover the first lists parse what they show).
pub fn spawn_warmer(ctx: Arc<Ctx>, wm: Arc<Webmail>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut rx = ctx.store.subscribe();
    rt.spawn(async move {
        loop {
            let change = match rx.recv().await {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if let crate::store::Change::Appended { mailbox, uids } = change
                && ctx.store.is_writable()
            {
                // Exactly these (a range from the lowest new UID grew with the
                // warmer's lag behind a burst of deliveries).
                if let Ok(metas) = ctx.store.messages_by_uids(&mailbox, &uids).await {
                    let refs: Vec<&MessageMeta> = metas.iter().collect();
                    wm.summaries.get(&ctx.store, &refs).await;
                }
            }
        }
    });
}

// ------------------------------------------------------------------ sorting and pages

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Date,
    From,
    Subject,
    Size,
}

impl SortKey {
    pub fn parse(s: Option<&str>) -> SortKey {
        match s {
            Some("from") => SortKey::From,
            Some("subject") => SortKey::Subject,
            Some("size") => SortKey::Size,
            _ => SortKey::Date,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Date => "date",
            SortKey::From => "from",
            SortKey::Subject => "subject",
            SortKey::Size => "size",
        }
    }
}

/// Sort order: dates and sizes default to descending, text to ascending.
pub fn parse_order(s: Option<&str>, key: SortKey) -> bool {
    match s {
        Some("asc") => false,
        Some("desc") => true,
        _ => matches!(key, SortKey::Date | SortKey::Size),
    }
}

/// One message with its summary, as sorted.
pub struct Entry<'a> {
    pub meta: &'a MessageMeta,
    pub sum: Arc<Summary>,
}

impl Entry<'_> {
    /// The date shown and sorted by: the Date field, else the arrival time.
    pub fn date(&self) -> i64 {
        self.sum.date.unwrap_or(self.meta.internal_date)
    }
}

/// Sorts in place; ties are broken by UID in the same direction.
pub fn sort_entries(entries: &mut [Entry<'_>], key: SortKey, desc: bool) {
    entries.sort_by(|a, b| {
        let o = match key {
            SortKey::Date => a.date().cmp(&b.date()),
            SortKey::From => a.sum.from_key.cmp(&b.sum.from_key),
            SortKey::Subject => a.sum.subject_key.cmp(&b.sum.subject_key),
            SortKey::Size => a.meta.size.cmp(&b.meta.size),
        }
        .then(a.meta.uid.cmp(&b.meta.uid));
        if desc { o.reverse() } else { o }
    });
}

/// The page actually shown (1-based, clamped), the number of pages (at least 1) and
/// the index range of its items.
pub fn paginate(total: usize, page: usize, size: usize) -> (usize, usize, std::ops::Range<usize>) {
    let size = size.max(1);
    let pages = total.div_ceil(size).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * size;
    (page, pages, start.min(total)..(start + size).min(total))
}

// ------------------------------------------------------------------ the list page

/// One row of the list.
pub struct Row {
    pub uid: u32,
    pub href: String,
    pub from: String,
    pub subject: String,
    pub date: String,
    pub date_full: String,
    pub size: String,
    pub unread: bool,
    pub flagged: bool,
    pub answered: bool,
    pub attachment: bool,
}

/// A sortable column header.
pub struct Column {
    pub label: &'static str,
    pub href: String,
    /// "ascending"/"descending" when this is the current sort.
    pub aria_sort: &'static str,
    pub arrow: &'static str,
}

#[derive(Template)]
#[template(path = "webmail/list.html")]
struct ListTpl {
    page: Page,
    mailbox: String,
    mailbox_enc: String,
    label: String,
    total: usize,
    unseen: u32,
    uidnext: u32,
    rows: Vec<Row>,
    page_no: usize,
    pages: usize,
    prev_href: Option<String>,
    next_href: Option<String>,
    cols: Vec<Column>,
    sort: &'static str,
    order: &'static str,
    q: String,
    field: &'static str,
    fields: Vec<(&'static str, &'static str)>,
    targets: Vec<(String, String)>,
    next: String,
}

/// The list's query parameters (lenient: bad values fall back to defaults).
#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    pub page: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub q: Option<String>,
    pub field: Option<String>,
    pub msg: Option<String>,
}

fn search_field(s: Option<&str>) -> &'static str {
    match s {
        Some("from") => "from",
        Some("to") => "to",
        Some("subject") => "subject",
        Some("body") => "body",
        _ => "all",
    }
}

fn list_href(
    mailbox_enc: &str,
    page: usize,
    sort: SortKey,
    desc: bool,
    q: &str,
    field: &str,
) -> String {
    let mut s = format!(
        "{BASE}/mailbox/{mailbox_enc}?sort={}&order={}",
        sort.name(),
        if desc { "desc" } else { "asc" }
    );
    if page > 1 {
        s.push_str(&format!("&page={page}"));
    }
    if !q.is_empty() {
        s.push_str(&format!("&q={}&field={field}", enc_seg(q)));
    }
    s
}

/// `GET /mailbox/{mailbox}`.
async fn list(
    State(ctx): State<Arc<Ctx>>,
    axum::Extension(wm): axum::Extension<Arc<Webmail>>,
    user: User,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let started = std::time::Instant::now();
    let mb = match find_mailbox(&ctx, &user, &name).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let lang = user.lang;
    let metas = match ctx.store.messages(&mb.id).await {
        Ok(m) => m,
        Err(e) => return store_error(lang, &e),
    };
    let needle = q.q.as_deref().unwrap_or("").trim().to_string();
    let field = search_field(q.field.as_deref());
    let metas = if needle.is_empty() {
        metas
    } else {
        search(&ctx.store, metas, field, &needle).await
    };
    let key = SortKey::parse(q.sort.as_deref());
    let desc = parse_order(q.order.as_deref(), key);
    let refs: Vec<&MessageMeta> = metas.iter().collect();
    let sums = wm.summaries.get(&ctx.store, &refs).await;
    let mut entries: Vec<Entry> = refs
        .into_iter()
        .zip(sums)
        .map(|(meta, sum)| Entry { meta, sum })
        .collect();
    sort_entries(&mut entries, key, desc);
    let want = q.page.as_deref().and_then(|p| p.parse().ok()).unwrap_or(1);
    let (page_no, pages, range) = paginate(entries.len(), want, ctx.cfg.webmail.page_size);
    let mailbox_enc = enc_seg(&mb.name);
    let drafts = mb.special_use == Some(SpecialUse::Drafts);
    let rows = entries[range]
        .iter()
        .map(|e| {
            let mut r = row(e, &mailbox_enc, lang);
            if drafts {
                // A draft opens in the compose form, to be finished.
                r.href = format!("{BASE}/compose?draft={}", r.uid);
            }
            r
        })
        .collect();
    let chrome = page(&ctx, &user, &mb.name)
        .await
        .with_flash(q.msg.as_deref());
    let label = chrome
        .folders
        .iter()
        .find(|f| f.name == mb.name)
        .map(|f| f.label.clone())
        .unwrap_or_else(|| mb.name.clone());
    let targets = chrome
        .folders
        .iter()
        .filter(|f| f.name != mb.name)
        .map(|f| (f.name.clone(), f.label.clone()))
        .collect();
    let cols = [
        (SortKey::From, "from"),
        (SortKey::Subject, "subject"),
        (SortKey::Date, "date"),
        (SortKey::Size, "size"),
    ]
    .into_iter()
    .map(|(k, label)| {
        let current = k == key;
        // Clicking the current column flips the order; another starts at its default.
        let d = if current { !desc } else { parse_order(None, k) };
        Column {
            label: lang.t(label),
            href: list_href(&mailbox_enc, 1, k, d, &needle, field),
            aria_sort: match (current, desc) {
                (false, _) => "none",
                (true, true) => "descending",
                (true, false) => "ascending",
            },
            arrow: match (current, desc) {
                (false, _) => "",
                (true, true) => "▼",
                (true, false) => "▲",
            },
        }
    })
    .collect();
    let fields = ["all", "from", "to", "subject", "body"]
        .into_iter()
        .map(|f| (f, lang.t(if f == "all" { "all_fields" } else { f })))
        .collect();
    let here = list_href(&mailbox_enc, page_no, key, desc, &needle, field);
    let mut resp = render(&ListTpl {
        page: chrome,
        total: entries.len(),
        unseen: mb.unseen,
        uidnext: mb.uidnext,
        rows,
        prev_href: (page_no > 1)
            .then(|| list_href(&mailbox_enc, page_no - 1, key, desc, &needle, field)),
        next_href: (page_no < pages)
            .then(|| list_href(&mailbox_enc, page_no + 1, key, desc, &needle, field)),
        page_no,
        pages,
        cols,
        sort: key.name(),
        order: if desc { "desc" } else { "asc" },
        q: needle,
        field,
        fields,
        targets,
        next: here,
        label,
        mailbox: mb.name,
        mailbox_enc,
    });
    // The server's own time for the page (RFC-less but widely read: Server-Timing).
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = header::HeaderValue::from_str(&format!("render;dur={ms:.2}")) {
        resp.headers_mut().insert("server-timing", v);
    }
    resp
}

fn row(e: &Entry<'_>, mailbox_enc: &str, lang: Lang) -> Row {
    let (date, date_full) = format_date(e.date(), lang);
    Row {
        uid: e.meta.uid,
        href: format!("{BASE}/mailbox/{mailbox_enc}/{}", e.meta.uid),
        from: if e.sum.from.is_empty() {
            lang.t("no_sender").to_string()
        } else {
            e.sum.from.clone()
        },
        subject: if e.sum.subject.is_empty() {
            lang.t("no_subject").to_string()
        } else {
            e.sum.subject.clone()
        },
        date,
        date_full,
        size: human_size(e.meta.size),
        unread: !e.meta.has_flag("\\Seen"),
        flagged: e.meta.has_flag("\\Flagged"),
        answered: e.meta.has_flag("\\Answered"),
        attachment: e.sum.attachment,
    }
}

/// A short date for the list (time today, else the day) and the full one.
pub fn format_date(ts: i64, lang: Lang) -> (String, String) {
    use chrono::TimeZone;
    let Some(t) = chrono::Local.timestamp_opt(ts, 0).single() else {
        return (String::new(), String::new());
    };
    let full_fmt = match lang {
        Lang::Es => "%d/%m/%Y %H:%M",
        Lang::En => "%Y-%m-%d %H:%M",
    };
    let today = chrono::Local::now().date_naive() == t.date_naive();
    let short = if today {
        t.format("%H:%M").to_string()
    } else {
        t.format(match lang {
            Lang::Es => "%d/%m/%Y",
            Lang::En => "%Y-%m-%d",
        })
        .to_string()
    };
    (short, t.format(full_fmt).to_string())
}

/// The messages of `metas` that match `needle` in `field` (IMAP SEARCH semantics).
async fn search(
    store: &Store,
    metas: Vec<MessageMeta>,
    field: &str,
    needle: &str,
) -> Vec<MessageMeta> {
    let store = store.clone();
    let field = field.to_string();
    let needle = needle.to_string();
    tokio::task::spawn_blocking(move || {
        metas
            .into_iter()
            .filter(|m| {
                let Ok(raw) = store.read_blob_blocking(&m.blob) else {
                    return false;
                };
                let t = Text::new(&raw);
                let n = needle.as_bytes();
                match field.as_str() {
                    "from" => t.address("From", n),
                    "to" => t.address("To", n) || t.address("Cc", n),
                    "subject" => t.subject(n),
                    "body" => t.body(n),
                    _ => t.text(n),
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

// ------------------------------------------------------------------ bulk actions

/// `POST /mailbox/{mailbox}/bulk`: csrf, uid (repeated), action, target, next.
async fn bulk(
    State(ctx): State<Arc<Ctx>>,
    user: User,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = parse_form(&body);
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if let Err(r) = check_csrf(&user, get("csrf")) {
        return r;
    }
    let lang = user.lang;
    let mb = match find_mailbox(&ctx, &user, &name).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let next = get("next");
    let back = if next.starts_with(&format!("{BASE}/mailbox/")) && !next.contains(['\r', '\n']) {
        next.to_string()
    } else {
        format!("{BASE}/mailbox/{}", enc_seg(&mb.name))
    };
    let with_msg = |msg: &str| {
        let sep = if back.contains('?') { '&' } else { '?' };
        see_other(&format!("{back}{sep}msg={msg}"))
    };
    let mut uids: Vec<u32> = form
        .iter()
        .filter(|(k, _)| k == "uid")
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect();
    uids.sort_unstable();
    uids.dedup();
    if uids.is_empty() {
        return with_msg("nothing_selected");
    }
    if let Err(r) = require_writable(&ctx, lang) {
        return r;
    }
    let store = &ctx.store;
    let action = get("action");
    let (mb_id, uid_list) = (&mb.id, &uids);
    let flag = |mode, f: &'static str| async move {
        store
            .store_flags(mb_id, uid_list, mode, &[f.to_string()])
            .await
            .map(|_| "updated")
    };
    let result = match action {
        "read" => flag(FlagMode::Add, "\\Seen").await,
        "unread" => flag(FlagMode::Remove, "\\Seen").await,
        "flag" => flag(FlagMode::Add, "\\Flagged").await,
        "unflag" => flag(FlagMode::Remove, "\\Flagged").await,
        "move" => {
            let target = match find_mailbox(&ctx, &user, get("target")).await {
                Ok(t) => t,
                Err(r) => return r,
            };
            if target.id == mb.id {
                Ok("moved")
            } else {
                store
                    .copy(&mb.id, &uids, &target.id, true)
                    .await
                    .map(|_| "moved")
            }
        }
        "delete" => delete(&ctx, &user, &mb, &uids).await.map(|_| "deleted"),
        _ => {
            return super::error_page(lang, StatusCode::BAD_REQUEST, "error", "not_allowed");
        }
    };
    match result {
        Ok(msg) => {
            // Leaving a message page after deleting or moving it: back to the list.
            with_msg(msg)
        }
        Err(e) => store_error(lang, &e),
    }
}

/// Delete: move to Trash; in Trash (or without one) flag `\Deleted` and expunge.
pub async fn delete(
    ctx: &Ctx,
    user: &User,
    mb: &crate::store::MailboxInfo,
    uids: &[u32],
) -> crate::store::Result<()> {
    let trash = ctx
        .store
        .list_mailboxes(&user.account)
        .await?
        .into_iter()
        .find(|m| m.special_use == Some(SpecialUse::Trash));
    match trash {
        Some(t) if t.id != mb.id => {
            ctx.store.copy(&mb.id, uids, &t.id, true).await?;
        }
        _ => {
            ctx.store
                .store_flags(&mb.id, uids, FlagMode::Add, &["\\Deleted".to_string()])
                .await?;
            ctx.store.expunge(&mb.id, Some(uids)).await?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ new-mail poll

#[derive(serde::Deserialize)]
struct PollQuery {
    uidnext: Option<String>,
}

/// `GET /mailbox/{mailbox}/poll?uidnext=N` -> `{"exists","unseen","uidnext","new"}`;
/// `new` is true when mail arrived since the page showed `uidnext` N.
async fn poll(
    State(ctx): State<Arc<Ctx>>,
    user: Option<User>,
    Path(name): Path<String>,
    Query(q): Query<PollQuery>,
) -> Response {
    let Some(user) = user else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"error\":\"login\"}",
        )
            .into_response();
    };
    let mb = match ctx.store.mailbox(&user.account, &name).await {
        Ok(Some(m)) => m,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let seen_next: u32 = q.uidnext.and_then(|v| v.parse().ok()).unwrap_or(mb.uidnext);
    let body = serde_json::json!({
        "exists": mb.messages,
        "unseen": mb.unseen,
        "uidnext": mb.uidnext,
        "new": mb.uidnext > seen_next,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, size: u64, date: i64) -> MessageMeta {
        MessageMeta {
            id: uid.to_string(),
            uid,
            modseq: 1,
            blob: format!("b{uid}"),
            size,
            internal_date: date,
            flags: vec![],
        }
    }

    fn sum(from: &str, subject: &str, date: Option<i64>) -> Arc<Summary> {
        Arc::new(Summary {
            from: from.into(),
            from_key: from.to_lowercase(),
            subject: subject.into(),
            subject_key: sort_key(subject),
            date,
            attachment: false,
        })
    }

    fn uids(e: &[Entry]) -> Vec<u32> {
        e.iter().map(|e| e.meta.uid).collect()
    }

    #[test]
    fn sorting_by_each_key() {
        let m = [
            meta(1, 300, 10),
            meta(2, 100, 30),
            meta(3, 200, 20),
            meta(4, 100, 5),
        ];
        let s = [
            sum("bob", "Re: zebra", None),
            sum("Alice", "apple", None),
            sum("carol", "Mango", Some(25)),
            sum("alice", "fwd: Apple", Some(40)),
        ];
        let mk = || -> Vec<Entry> {
            m.iter()
                .zip(s.iter())
                .map(|(meta, sum)| Entry {
                    meta,
                    sum: sum.clone(),
                })
                .collect()
        };
        let mut e = mk();
        sort_entries(&mut e, SortKey::Date, true);
        // Date field wins over arrival time: 4 (40), 2 (30), 3 (25), 1 (10).
        assert_eq!(uids(&e), [4, 2, 3, 1]);
        sort_entries(&mut e, SortKey::Date, false);
        assert_eq!(uids(&e), [1, 3, 2, 4]);
        sort_entries(&mut e, SortKey::From, false);
        assert_eq!(uids(&e), [2, 4, 1, 3], "case-insensitive, ties by uid");
        sort_entries(&mut e, SortKey::Subject, false);
        assert_eq!(uids(&e), [2, 4, 3, 1], "prefixes ignored");
        sort_entries(&mut e, SortKey::Size, true);
        assert_eq!(uids(&e), [1, 3, 4, 2]);
    }

    #[test]
    fn default_orders() {
        assert!(parse_order(None, SortKey::Date));
        assert!(!parse_order(None, SortKey::From));
        assert!(!parse_order(Some("asc"), SortKey::Date));
        assert!(parse_order(Some("desc"), SortKey::Subject));
        assert_eq!(SortKey::parse(Some("bogus")), SortKey::Date);
    }

    #[test]
    fn pagination_clamps() {
        assert_eq!(paginate(0, 1, 50), (1, 1, 0..0));
        assert_eq!(paginate(120, 1, 50), (1, 3, 0..50));
        assert_eq!(paginate(120, 3, 50), (3, 3, 100..120));
        assert_eq!(paginate(120, 9, 50), (3, 3, 100..120));
        assert_eq!(paginate(120, 0, 50), (1, 3, 0..50));
        assert_eq!(paginate(100, 2, 50), (2, 2, 50..100));
    }

    #[test]
    fn summaries_decode_headers() {
        let raw = b"From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.com>\r\nSubject: =?UTF-8?B?w7FhbmTDug==?=\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nAAAA\r\n--x--\r\n";
        let s = Summary::parse(raw);
        assert_eq!(s.from, "José");
        assert_eq!(s.subject, "ñandú");
        assert_eq!(s.date, Some(1057049557));
        assert!(s.attachment);
        let s = Summary::parse(b"From: <a@b.c>\r\n\r\nbody");
        assert_eq!(s.from, "a@b.c");
        assert!(!s.attachment);
        assert_eq!(s.date, None);
    }
}
