//! The webmail over real HTTP: CSRF, login rate limits, logout, cookie attributes,
//! reading, the list (pages, sort, search), languages, and the rule that the webmail
//! and IMAP always agree. Each test starts a node and runs one scenario of
//! tests/webmail_http.py (Python's http.client, smtplib and imaplib).

mod common;

use common::{Node, assert_ok, require_tool};

fn scenario(node: &Node, name: &str, args: &[String]) {
    require_tool("python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webmail_http.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(name)
        .args(args)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        panic!(
            "scenario {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n--- node log (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&node.log_text(), 60)
        );
    }
    assert!(stdout.contains(&format!("OK {name}")), "{stdout}");
    let _ = assert_ok;
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn start() -> Node {
    let node = Node::start();
    node.add_user("ana", "clave-ana");
    node
}

#[test]
fn posts_without_or_with_a_wrong_csrf_token_get_403() {
    let node = start();
    scenario(
        &node,
        "csrf_required",
        &[node.http_port.to_string(), "ana".into(), "clave-ana".into()],
    );
}

#[test]
fn wrong_passwords_are_rate_limited_per_user_and_per_ip() {
    let node = Node::builder()
        .extra(
            "[auth]\naccount_ip_max_failures = 3\nip_max_failures = 6\nwindow_s = 300\nfail_delay_ms = 10\nmax_fail_delay_ms = 10",
        )
        .start();
    node.add_user("ana", "clave-ana");
    node.add_user("beto", "clave-beto");
    node.add_user("carla", "clave-carla");
    scenario(
        &node,
        "rate_limit",
        &[
            node.http_port.to_string(),
            "ana".into(),
            "clave-ana".into(),
            "beto".into(),
            "clave-beto".into(),
            "carla".into(),
            "clave-carla".into(),
        ],
    );
}

#[test]
fn a_session_cookie_from_a_logged_out_session_no_longer_works() {
    let node = start();
    scenario(
        &node,
        "logout_ends_session",
        &[
            node.http_port.to_string(),
            node.https_port.to_string(),
            "ana".into(),
            "clave-ana".into(),
        ],
    );
}

#[test]
fn session_cookie_is_httponly_samesite_lax_and_secure_over_https() {
    let node = start();
    scenario(
        &node,
        "cookie_attributes",
        &[
            node.http_port.to_string(),
            node.https_port.to_string(),
            "ana".into(),
            "clave-ana".into(),
        ],
    );
}

#[test]
fn changes_over_imap_show_in_the_webmail_and_the_reverse() {
    let node = start();
    scenario(
        &node,
        "imap_and_webmail_agree",
        &[
            node.http_port.to_string(),
            node.smtp_port.to_string(),
            node.imap_port.to_string(),
            "ana".into(),
            "clave-ana".into(),
        ],
    );
}

#[test]
fn reader_shows_headers_escaped_text_attachments_and_source() {
    let node = start();
    scenario(
        &node,
        "reading",
        &[
            node.http_port.to_string(),
            node.smtp_port.to_string(),
            "ana".into(),
            "clave-ana".into(),
        ],
    );
}

#[test]
fn message_list_pages_sorts_and_searches() {
    let node = start();
    scenario(
        &node,
        "list_pages_sort_search",
        &[
            node.http_port.to_string(),
            node.smtp_port.to_string(),
            "ana".into(),
            "clave-ana".into(),
        ],
    );
}

#[test]
fn spanish_by_default_english_by_accept_language_and_the_user_preference_wins() {
    let node = start();
    scenario(
        &node,
        "languages",
        &[node.http_port.to_string(), "ana".into(), "clave-ana".into()],
    );
}

#[test]
fn stylesheet_and_script_are_served_from_the_binary() {
    let node = start();
    scenario(&node, "static_assets", &[node.http_port.to_string()]);
}
