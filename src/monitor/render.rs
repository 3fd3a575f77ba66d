//! How the monitor's state is shown: the `/status` page (askama, Minotaur's colours:
//! green ok, red failing, yellow untested; both nodes side by side; the history with
//! its filter form; a refresh every interval), Prometheus text for `/metrics`, and
//! the table `clusterd status` prints (coloured only on a terminal).

use std::fmt::Write as _;

use askama::Template;

use super::{Check, Figures, Outcome, StatusView};
use crate::store::Event;

struct Cell {
    node: String,
    class: &'static str,
    result: &'static str,
    last: String,
    next_in: String,
    latency: String,
    failures: u32,
    restarts: u32,
    detail: String,
}

struct Row {
    service: String,
    cells: Vec<Cell>,
}

struct HistRow {
    time: String,
    node: String,
    service: String,
    kind: String,
    class: &'static str,
    detail: String,
}

#[derive(Template)]
#[template(path = "monitor/status.html")]
struct StatusTpl {
    node: String,
    role: String,
    healthy: bool,
    interval: u64,
    refresh: u64,
    generated: String,
    nodes: Vec<String>,
    services: Vec<String>,
    rows: Vec<Row>,
    history: Vec<HistRow>,
    filter_node: String,
    filter_service: String,
    filter_from: String,
    filter_to: String,
}

/// The filter as the form shows it back.
#[derive(Debug, Clone, Default)]
pub struct FormFilter {
    pub node: String,
    pub service: String,
    pub from: String,
    pub to: String,
}

fn hms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

fn stamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn next_in(c: &Check, now: i64) -> String {
    c.next_check
        .map(|n| format!("{}s", ((n - now).max(0) + 999) / 1000))
        .unwrap_or_else(|| "-".into())
}

fn latency(c: &Check) -> String {
    c.latency_ms
        .map(|l| format!("{l:.1} ms"))
        .unwrap_or_default()
}

/// Whether an event is coloured green: a return to normal, or a restart done.
fn is_good(kind: &str) -> bool {
    super::is_recovery(kind) || kind == "restarted"
}

/// The services shown, in the board's order, each once.
fn services(v: &StatusView) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &v.checks {
        if !out.contains(&c.service) {
            out.push(c.service.clone());
        }
    }
    out
}

/// The `/status` page.
pub fn html(v: &StatusView, f: &FormFilter) -> String {
    let services = services(v);
    let rows = services
        .iter()
        .map(|s| Row {
            service: s.clone(),
            cells: v
                .nodes
                .iter()
                .map(
                    |n| match v.checks.iter().find(|c| &c.node == n && &c.service == s) {
                        Some(c) => Cell {
                            node: n.clone(),
                            class: c.result.name(),
                            result: c.result.name(),
                            last: c.last_check.map(hms).unwrap_or_else(|| "never".into()),
                            next_in: next_in(c, v.generated),
                            latency: latency(c),
                            failures: c.failures,
                            restarts: c.restarts,
                            detail: c.detail.clone(),
                        },
                        None => Cell {
                            node: n.clone(),
                            class: "untested",
                            result: "untested",
                            last: "never".into(),
                            next_in: "-".into(),
                            latency: String::new(),
                            failures: 0,
                            restarts: 0,
                            detail: "not probed on this node".into(),
                        },
                    },
                )
                .collect(),
        })
        .collect();
    let history = v
        .history
        .iter()
        .map(|e| HistRow {
            time: stamp(e.at),
            node: e.node.clone(),
            service: e.service.clone(),
            kind: e.kind.clone(),
            class: if is_good(&e.kind) { "ok" } else { "failing" },
            detail: e.detail.clone(),
        })
        .collect();
    let tpl = StatusTpl {
        node: v.node.clone(),
        role: v.role.clone(),
        healthy: v.healthy,
        interval: v.interval_s,
        refresh: v.interval_s.clamp(5, 60),
        generated: stamp(v.generated),
        nodes: v.nodes.clone(),
        services,
        rows,
        history,
        filter_node: f.node.clone(),
        filter_service: f.service.clone(),
        filter_from: f.from.clone(),
        filter_to: f.to.clone(),
    };
    tpl.render()
        .unwrap_or_else(|e| format!("template error: {e}"))
}

/// A Prometheus label value, escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Requests served per protocol (`crate::ctx::REQUESTS`).
pub struct Requests {
    pub smtp: u64,
    pub imap: u64,
    pub http: u64,
    pub dns: u64,
}

/// `/metrics` in the Prometheus text format (0.0.4).
pub fn metrics(v: &StatusView, f: &Figures, req: &Requests) -> String {
    let mut o = String::new();
    family(
        &mut o,
        "clusterd_probe_up",
        "gauge",
        "Whether the last probe of a service passed (1) or failed (0); absent when untested.",
    );
    for c in v.checks.iter().filter(|c| c.result != Outcome::Untested) {
        let _ = writeln!(
            o,
            "clusterd_probe_up{{node=\"{}\",service=\"{}\"}} {}",
            label(&c.node),
            label(&c.service),
            u8::from(c.result == Outcome::Ok)
        );
    }
    family(
        &mut o,
        "clusterd_probe_latency_seconds",
        "gauge",
        "How long the last probe of a service took.",
    );
    for c in &v.checks {
        if let Some(ms) = c.latency_ms {
            let _ = writeln!(
                o,
                "clusterd_probe_latency_seconds{{node=\"{}\",service=\"{}\"}} {}",
                label(&c.node),
                label(&c.service),
                ms / 1000.0
            );
        }
    }
    family(
        &mut o,
        "clusterd_probe_restarts",
        "gauge",
        "Restarts asked for a service since it last passed.",
    );
    for c in v
        .checks
        .iter()
        .filter(|c| c.node == v.node && c.restarts > 0)
    {
        let _ = writeln!(
            o,
            "clusterd_probe_restarts{{node=\"{}\",service=\"{}\"}} {}",
            label(&c.node),
            label(&c.service),
            c.restarts
        );
    }
    family(
        &mut o,
        "clusterd_node_healthy",
        "gauge",
        "Whether this node reports itself healthy to the cluster.",
    );
    let _ = writeln!(o, "clusterd_node_healthy {}", u8::from(v.healthy));
    family(
        &mut o,
        "clusterd_role",
        "gauge",
        "This node's role (1 for the current one).",
    );
    for r in ["init", "standby", "active"] {
        let _ = writeln!(o, "clusterd_role{{role=\"{r}\"}} {}", u8::from(f.role == r));
    }
    family(
        &mut o,
        "clusterd_vip_held",
        "gauge",
        "Whether this node holds the virtual IP.",
    );
    let _ = writeln!(o, "clusterd_vip_held {}", u8::from(f.vip_held));
    family(
        &mut o,
        "clusterd_vip_holder",
        "gauge",
        "The node holding the virtual IP, as this node knows it.",
    );
    if let Some(h) = &f.vip_holder {
        let _ = writeln!(o, "clusterd_vip_holder{{node=\"{}\"}} 1", label(h));
    }
    if let Some(alive) = f.peer_alive {
        family(
            &mut o,
            "clusterd_peer_alive",
            "gauge",
            "Whether the peer is heard.",
        );
        let _ = writeln!(o, "clusterd_peer_alive {}", u8::from(alive));
    }
    if let Some(r) = &f.replication {
        family(
            &mut o,
            "clusterd_replication_lag_ops",
            "gauge",
            "Ops committed here and not yet acknowledged by the peer.",
        );
        let _ = writeln!(
            o,
            "clusterd_replication_lag_ops {}",
            r.committed_seq.saturating_sub(r.acked_seq)
        );
        family(
            &mut o,
            "clusterd_replication_degraded",
            "gauge",
            "Whether commits go on without the peer.",
        );
        let _ = writeln!(o, "clusterd_replication_degraded {}", u8::from(r.degraded));
        family(
            &mut o,
            "clusterd_replication_sent_bytes_total",
            "counter",
            "Bytes of frames written to the peer.",
        );
        let _ = writeln!(o, "clusterd_replication_sent_bytes_total {}", r.bytes_sent);
        family(
            &mut o,
            "clusterd_replication_received_bytes_total",
            "counter",
            "Bytes of frames read from the peer.",
        );
        let _ = writeln!(
            o,
            "clusterd_replication_received_bytes_total {}",
            r.bytes_received
        );
        family(
            &mut o,
            "clusterd_replication_applied_ops_total",
            "counter",
            "Ops received from the peer and applied here.",
        );
        let _ = writeln!(o, "clusterd_replication_applied_ops_total {}", r.applied);
    }
    family(
        &mut o,
        "clusterd_queue_messages",
        "gauge",
        "Messages in the outbound queue.",
    );
    let _ = writeln!(o, "clusterd_queue_messages {}", f.queue);
    family(
        &mut o,
        "clusterd_queue_oldest_age_seconds",
        "gauge",
        "Age of the oldest message in the outbound queue (0 when empty).",
    );
    let _ = writeln!(
        o,
        "clusterd_queue_oldest_age_seconds {}",
        f.queue_oldest_age_s.unwrap_or(0)
    );
    family(&mut o, "clusterd_accounts", "gauge", "Mail accounts.");
    let _ = writeln!(o, "clusterd_accounts {}", f.counts.accounts);
    family(
        &mut o,
        "clusterd_messages",
        "gauge",
        "Messages in all mailboxes.",
    );
    let _ = writeln!(o, "clusterd_messages {}", f.counts.messages);
    family(
        &mut o,
        "clusterd_message_bytes",
        "gauge",
        "Size of all messages in all mailboxes.",
    );
    let _ = writeln!(o, "clusterd_message_bytes {}", f.counts.message_bytes);
    family(
        &mut o,
        "clusterd_oplog_last_seq",
        "gauge",
        "This node's last op-log position.",
    );
    let _ = writeln!(o, "clusterd_oplog_last_seq {}", f.counts.last_seq);
    family(
        &mut o,
        "clusterd_oplog_entries",
        "gauge",
        "Ops held in the log now (after compaction).",
    );
    let _ = writeln!(o, "clusterd_oplog_entries {}", f.counts.logged_ops);
    if let Some(p) = f.free_percent {
        family(
            &mut o,
            "clusterd_data_free_ratio",
            "gauge",
            "Free space of the data directory's file system (0 to 1).",
        );
        let _ = writeln!(o, "clusterd_data_free_ratio {}", p / 100.0);
    }
    if let Some(d) = f.cert_days_left {
        family(
            &mut o,
            "clusterd_tls_cert_expiry_seconds",
            "gauge",
            "Seconds until the TLS certificate expires.",
        );
        let _ = writeln!(
            o,
            "clusterd_tls_cert_expiry_seconds {}",
            (d * 86_400.0).round()
        );
    }
    family(
        &mut o,
        "clusterd_requests_total",
        "counter",
        "Connections (SMTP, IMAP), requests (HTTP) and queries (DNS) served since start.",
    );
    for (p, n) in [
        ("smtp", req.smtp),
        ("imap", req.imap),
        ("http", req.http),
        ("dns", req.dns),
    ] {
        let _ = writeln!(o, "clusterd_requests_total{{protocol=\"{p}\"}} {n}");
    }
    o
}

/// The authentication part of `/metrics` (`crate::authlimit`): password hashes running
/// now and at most, wrong passwords checked and attempts refused per protocol.
pub fn auth_metrics(a: &crate::authlimit::Figures) -> String {
    let mut o = String::new();
    family(
        &mut o,
        "clusterd_auth_hashes_running",
        "gauge",
        "Password hashes (argon2) running now.",
    );
    let _ = writeln!(o, "clusterd_auth_hashes_running {}", a.hashes_running);
    family(
        &mut o,
        "clusterd_auth_hashes_running_max",
        "gauge",
        "The most password hashes that ran at once since start (at most 4).",
    );
    let _ = writeln!(
        o,
        "clusterd_auth_hashes_running_max {}",
        a.hashes_running_max
    );
    for (name, help, values) in [
        (
            "clusterd_auth_failures_total",
            "Wrong passwords checked since start.",
            a.failures,
        ),
        (
            "clusterd_auth_refused_total",
            "Login attempts refused without a check (too many failures) since start.",
            a.refused,
        ),
    ] {
        family(&mut o, name, "counter", help);
        for (p, n) in crate::authlimit::Protocol::ALL.iter().zip(values) {
            let _ = writeln!(o, "{name}{{protocol=\"{}\"}} {n}", p.name());
        }
    }
    family(
        &mut o,
        "clusterd_auth_tracked_entries",
        "gauge",
        "Entries in the authentication limiter's tables (bounded by auth.max_entries each).",
    );
    let _ = writeln!(o, "clusterd_auth_tracked_entries {}", a.entries);
    o
}

/// The table `clusterd status` prints: one line per service and node.
pub fn table(v: &StatusView, colour: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "monitor:     {} ({}), probes every {} s",
        if v.healthy {
            "healthy"
        } else {
            "UNHEALTHY: handing over"
        },
        v.role,
        v.interval_s
    );
    let _ = writeln!(
        o,
        "{:<14} {:<14} {:<9} {:<9} {:>7} {:>10}  detail",
        "node", "service", "result", "last", "next in", "latency"
    );
    for c in &v.checks {
        let result = format!("{:<9}", c.result.name());
        let result = if colour {
            let code = match c.result {
                Outcome::Ok => "32",
                Outcome::Failing => "31",
                Outcome::Untested => "33",
            };
            format!("\x1b[{code}m{result}\x1b[0m")
        } else {
            result
        };
        let _ = writeln!(
            o,
            "{:<14} {:<14} {result} {:<9} {:>7} {:>10}  {}",
            c.node,
            c.service,
            c.last_check.map(hms).unwrap_or_else(|| "never".into()),
            next_in(c, v.generated),
            latency(c),
            c.detail
        );
    }
    if !v.history.is_empty() {
        let _ = writeln!(o, "recent events:");
        for e in v.history.iter().take(10) {
            let _ = writeln!(o, "  {}", event_line(e));
        }
    }
    o
}

fn event_line(e: &Event) -> String {
    format!(
        "{} {} {} {}: {}",
        stamp(e.at),
        e.node,
        e.service,
        e.kind,
        e.detail
    )
}
