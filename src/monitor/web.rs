//! `/status` (the page), `/status.json` (the same data) and `/metrics` (Prometheus
//! text) on the HTTP listeners: answered only to clients whose address is in
//! `[monitor] status_from` (403 otherwise). The page and the JSON take the history
//! filter as query parameters: `node`, `service`, `from` and `to` (dates
//! `YYYY-MM-DD`, UTC, both days included).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::Monitor;
use super::render::{self, FormFilter};
use crate::store::{EventFilter, KEEP_EVENTS};

/// The paths this module answers.
pub fn owns(path: &str) -> bool {
    matches!(path, "/status" | "/status.json" | "/metrics")
}

/// Whether `client` may read the status (`status_from`).
pub fn allowed(m: &Monitor, client: IpAddr) -> bool {
    let ip = crate::config::canonical_ip(client);
    m.ctx
        .cfg
        .monitor
        .status_from
        .iter()
        .any(|n| n.contains(&ip))
}

/// The history filter from a query string (bad values are ignored).
pub fn filter(query: Option<&str>) -> (EventFilter, FormFilter) {
    let mut f = EventFilter {
        limit: KEEP_EVENTS,
        ..EventFilter::default()
    };
    let mut form = FormFilter::default();
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let ms = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or(0)
    };
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::mail::encoding::form_decode(v.as_bytes());
        let v = v.trim().to_string();
        if v.is_empty() {
            continue;
        }
        match k {
            "node" => {
                f.node = Some(v.clone());
                form.node = v;
            }
            "service" => {
                f.service = Some(v.clone());
                form.service = v;
            }
            "from" => {
                if let Some(d) = day(&v) {
                    f.from = Some(ms(d));
                    form.from = v;
                }
            }
            "to" => {
                if let Some(d) = day(&v).and_then(|d| d.succ_opt()) {
                    f.to = Some(ms(d));
                    form.to = v;
                }
            }
            _ => {}
        }
    }
    (f, form)
}

fn respond(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Answers `/status`, `/status.json` or `/metrics` for `client`.
pub async fn answer(
    m: &Monitor,
    client: IpAddr,
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    if !allowed(m, client) {
        return respond(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "403 Forbidden: not in monitor.status_from\n",
        );
    }
    if method != http::Method::GET && method != http::Method::HEAD {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 Method Not Allowed\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (f, form) = filter(query);
    match path {
        "/metrics" => {
            let view = m
                .view(EventFilter {
                    limit: 1,
                    ..EventFilter::default()
                })
                .await;
            let figures = m.figures().await;
            let r = &crate::ctx::REQUESTS;
            let req = render::Requests {
                smtp: r.smtp.load(Ordering::Relaxed),
                imap: r.imap.load(Ordering::Relaxed),
                http: r.http.load(Ordering::Relaxed),
                dns: r.dns.load(Ordering::Relaxed),
            };
            let mut body = render::metrics(&view, &figures, &req);
            body.push_str(&render::auth_metrics(&crate::authlimit::figures()));
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        "/status.json" => {
            let view = m.view(f).await;
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&view).unwrap_or_default(),
            )
        }
        _ => {
            let view = m.view(f).await;
            respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                render::html(&view, &form),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_filter_reads_node_service_and_a_date_range() {
        let (f, form) = filter(Some(
            "node=clusternodo1&service=imap&from=2026-12-01&to=2026-12-07&x=1",
        ));
        assert_eq!(f.node.as_deref(), Some("clusternodo1"));
        assert_eq!(f.service.as_deref(), Some("imap"));
        // 2026-12-01T00:00Z and the day after the 7th.
        assert_eq!(f.from, Some(1_796_083_200_000));
        assert_eq!(f.to, Some(1_796_083_200_000 + 7 * 86_400_000));
        assert_eq!(form.to, "2026-12-07");
        let (f, _) = filter(Some("from=yesterday&node="));
        assert_eq!((f.from, f.node), (None, None));
        assert_eq!(f.limit, KEEP_EVENTS);
    }
}
