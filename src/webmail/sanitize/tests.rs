//! Unit tests of the sanitiser: a table of hostile and benign inputs with what each
//! output must (not) contain, plus checks of remote-image counting, the CSP and odd
//! input.

use super::*;

fn run(html: &str, allow: bool) -> Sanitized {
    let cid =
        |id: &str| (id == "logo@x").then(|| "/webmail/mailbox/INBOX/7/part/2?inline=1".to_string());
    sanitize_html(
        html,
        &Options {
            allow_remote_images: allow,
            cid_url: &cid,
        },
    )
}

/// What a case expects of the output.
enum Want {
    /// The lower-cased output must not contain this (lower-cased).
    Absent(&'static str),
    /// The output must contain this.
    Present(&'static str),
    /// `remote_blocked` equals this.
    Blocked(usize),
}
use Want::*;

/// (input, allow remote images, expectations)
const CASES: &[(&str, bool, &[Want])] = &[
    (
        "<p>hola <b>mundo</b></p>",
        false,
        &[Present("<p>hola <b>mundo</b></p>"), Blocked(0)],
    ),
    (
        "<script>alert(1)</script>x",
        false,
        &[Absent("<script"), Absent("alert"), Present("x")],
    ),
    (
        "<ScRiPt>alert(1)</sCrIpT>",
        false,
        &[Absent("<script"), Absent("alert")],
    ),
    (
        "<scr<!-- c -->ipt>alert(1)</script>",
        false,
        &[Absent("<script"), Absent("<scr")],
    ),
    (
        "<img src=x onerror=alert(1)>",
        false,
        &[Absent("onerror"), Absent("alert")],
    ),
    ("<body onload=alert(1)>t</body>", false, &[Absent("onload")]),
    (
        "<div onmouseover='alert(1)'>t</div>",
        false,
        &[Absent("onmouseover"), Present("<div>t</div>")],
    ),
    (
        "<a href=\"javascript:alert(1)\">l</a>",
        false,
        &[Absent("javascript"), Absent("href")],
    ),
    (
        "<a href=\"JaVaScRiPt:alert(1)\">l</a>",
        false,
        &[Absent("javascript"), Absent("href")],
    ),
    (
        "<a href=\"&#106;avascript&#58;alert(1)\">l</a>",
        false,
        &[Absent("javascript"), Absent("href")],
    ),
    (
        "<a href=\" java\tscript:alert(1)\">l</a>",
        false,
        &[Absent("script:"), Absent("href")],
    ),
    (
        "<a href=\"&#x6A;&#x61;vascript:alert(1)\">l</a>",
        false,
        &[Absent("href")],
    ),
    (
        "<a href=\"vbscript:msgbox(1)\">l</a>",
        false,
        &[Absent("vbscript"), Absent("href")],
    ),
    (
        "<a href=\"data:text/html;base64,PHNjcmlwdD4=\">l</a>",
        false,
        &[Absent("data:"), Absent("href")],
    ),
    (
        "<a href=\"/webmail/logout\">l</a>",
        false,
        &[Absent("href")],
    ),
    ("<a href=\"#top\">l</a>", false, &[Absent("href")]),
    (
        "<a href=\"https://example.org/\" ping=\"http://t.example/p\">l</a>",
        false,
        &[
            Present("href=\"https://example.org/\""),
            Present("rel=\"noopener noreferrer\""),
            Present("target=\"_blank\""),
            Absent("ping"),
        ],
    ),
    (
        "<a href=\"mailto:a@b.c\">m</a>",
        false,
        &[Present("href=\"mailto:a@b.c\"")],
    ),
    (
        "<svg onload=alert(1)><script>alert(2)</script></svg>",
        false,
        &[Absent("svg"), Absent("alert")],
    ),
    (
        "<svg><use href=\"data:image/svg+xml,x#a\"/></svg>",
        false,
        &[Absent("use"), Absent("svg")],
    ),
    (
        "<math><mtext><script>alert(1)</script></mtext></math>",
        false,
        &[Absent("math"), Absent("alert")],
    ),
    (
        "<iframe src=\"http://e/\"></iframe><object data=x></object><embed src=y>",
        false,
        &[
            Absent("iframe"),
            Absent("object"),
            Absent("embed"),
            Blocked(0),
        ],
    ),
    (
        "<form action=\"http://e/\"><input name=p><button>go</button></form>",
        false,
        &[
            Absent("<form"),
            Absent("<input"),
            Absent("<button"),
            Absent("action"),
        ],
    ),
    (
        "<meta http-equiv=refresh content=\"0;url=http://e/\">x",
        false,
        &[Absent("<meta"), Absent("refresh")],
    ),
    (
        "<base href=\"http://e/\"><link rel=stylesheet href=\"http://e/s.css\"><link rel=dns-prefetch href=\"//e\">",
        false,
        &[Absent("<base"), Absent("<link")],
    ),
    (
        "<style>body{background:url(http://e/i.png)}</style>x",
        false,
        &[Absent("<style"), Absent("url(")],
    ),
    (
        "<p style=\"color: red; width: expression(alert(1)); background: url(http://e/i.png); position: fixed; top: 0\">x</p>",
        false,
        &[
            Present("color:red"),
            Absent("expression"),
            Absent("url"),
            Absent("position"),
            Absent("top"),
            Blocked(1),
        ],
    ),
    (
        "<p style=\"background-image:url('javascript:alert(1)')\">x</p>",
        false,
        &[Absent("javascript"), Absent("url"), Blocked(0)],
    ),
    (
        "<p style=\"behavior: url(x.htc); -moz-binding: url(y)\">x</p>",
        false,
        &[Absent("behavior"), Absent("binding")],
    ),
    (
        "<p style=\"b\\61 ckground: u\\72l(http://e/)\">x</p>",
        false,
        &[Absent("http"), Absent("ckground")],
    ),
    (
        "<img src=\"http://e/track.gif\" width=1 height=1>",
        false,
        &[Absent("http://e/"), Present(BLOCKED_IMAGE), Blocked(1)],
    ),
    (
        "<img src=\"https://e/a.png\" referrerpolicy=\"unsafe-url\">",
        true,
        &[
            Present("src=\"https://e/a.png\""),
            Present("referrerpolicy=\"no-referrer\""),
            Absent("unsafe-url"),
            Blocked(0),
        ],
    ),
    (
        "<img src=\"//e/a.png\">",
        false,
        &[Absent("//e/"), Blocked(1)],
    ),
    (
        "<img srcset=\"http://e/a.png 1x, http://e/b.png 2x\" src=\"http://e/c.png\">",
        false,
        &[Absent("srcset"), Absent("http://e/"), Blocked(2)],
    ),
    (
        "<img srcset=\"http://e/a.png 1x\">",
        true,
        &[Present("srcset=\"http://e/a.png 1x\"")],
    ),
    (
        "<table background=\"http://e/bg.png\"><tr><td background=\"https://e/x\">c</td></tr></table>",
        false,
        &[Absent("background"), Blocked(2)],
    ),
    (
        "<picture><source srcset=\"http://e/p.webp\"><img src=\"cid:logo@x\"></picture>",
        false,
        &[
            Absent("<source"),
            Absent("http://e/"),
            Present("src=\"/webmail/mailbox/INBOX/7/part/2?inline=1\""),
            Blocked(0),
        ],
    ),
    (
        "<img src=\"cid:logo%40x\">",
        false,
        &[Present("/part/2?inline=1")],
    ),
    (
        "<img src=\"CID:<logo@x>\">",
        false,
        &[Present("/part/2?inline=1")],
    ),
    (
        "<img src=\"cid:unknown@x\" alt=a>",
        false,
        &[Absent("src"), Absent("cid")],
    ),
    (
        "<img src=\"data:image/png;base64,iVBORw0KGgo=\">",
        false,
        &[Present("src=\"data:image/png;base64,iVBORw0KGgo=\"")],
    ),
    (
        "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\">",
        false,
        &[Absent("svg+xml;base64")],
    ),
    (
        "<img src=\"data:text/html,<script>alert(1)</script>\">",
        false,
        &[Absent("text/html"), Absent("src=")],
    ),
    ("<img src=\"/webmail/logout\">", false, &[Absent("src=")]),
    (
        "<textarea><img src=x onerror=alert(1)></textarea>",
        false,
        &[Absent("onerror"), Absent("<img")],
    ),
    (
        "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
        false,
        &[Absent("onerror=alert")],
    ),
    (
        "<!-- <img src=x onerror=alert(1)> -->",
        false,
        &[Absent("<img"), Absent("<!--")],
    ),
    (
        "<p id=x name=y data-foo=1 class=c>x</p>",
        false,
        &[Absent("id="), Absent("data-foo"), Present("class=\"c\"")],
    ),
];

#[test]
fn table_of_hostile_and_benign_inputs() {
    for (i, (input, allow, wants)) in CASES.iter().enumerate() {
        let out = run(input, *allow);
        let lower = out.html.to_lowercase();
        for want in *wants {
            match want {
                Absent(s) => assert!(
                    !lower.contains(&s.to_lowercase()),
                    "case {i}: {input:?} -> {:?} contains {s:?}",
                    out.html
                ),
                Present(s) => assert!(
                    out.html.contains(s),
                    "case {i}: {input:?} -> {:?} lacks {s:?}",
                    out.html
                ),
                Blocked(n) => assert_eq!(
                    out.remote_blocked, *n,
                    "case {i}: {input:?} -> {:?}",
                    out.html
                ),
            }
        }
        // Invariants for every case.
        assert!(!lower.contains("<script"), "case {i}: {}", out.html);
        assert!(!lower.contains("javascript:"), "case {i}: {}", out.html);
        assert!(
            !has_event_attribute(&out.html),
            "case {i}: event attribute in {}",
            out.html
        );
    }
}

/// An `on...=` attribute in the serialised output (the serialiser escapes `<` and
/// `>` in text, so a space inside `<...>` starts an attribute or is in a value).
fn has_event_attribute(html: &str) -> bool {
    let mut in_tag = false;
    for (i, b) in html.bytes().enumerate() {
        match b {
            b'<' => in_tag = true,
            b'>' => in_tag = false,
            b' ' if in_tag => {
                let rest = &html[i + 1..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if name.to_ascii_lowercase().starts_with("on")
                    && rest[name.len()..].starts_with('=')
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[test]
fn every_remote_image_counts_and_none_survive_unless_allowed() {
    let html = "<img src=http://a/1><img src=https://a/2><img src=HTTP://a/3>\
                <table><tr><td background=http://a/4>x</td></tr></table>";
    let blocked = run(html, false);
    assert_eq!(blocked.remote_blocked, 4, "{}", blocked.html);
    assert!(!blocked.html.contains("://a/"), "{}", blocked.html);
    let allowed = run(html, true);
    assert_eq!(allowed.remote_blocked, 0);
    assert!(
        allowed.html.contains("http://a/1") && allowed.html.contains("https://a/2"),
        "{}",
        allowed.html
    );
}

#[test]
fn csp_has_no_script_source_and_images_follow_the_choice() {
    for allow in [false, true] {
        let csp = body_csp(allow);
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("script-src"), "{csp}");
        assert!(!csp.contains("allow-scripts"), "{csp}");
        assert!(csp.contains("form-action 'none'") && csp.contains("base-uri 'none'"));
        assert!(csp.contains("frame-ancestors 'self'"));
        assert_eq!(csp.contains("https: http:"), allow, "{csp}");
    }
}

#[test]
fn odd_input_does_not_panic() {
    let deep = "<div>".repeat(5000);
    for input in [
        "",
        "<",
        "%",
        "<img src=cid:%>",
        "<img src=cid:%4>",
        "<img src='cid:%ZZ'>",
        "<img src='cid:%C3'>",
        "\u{0}<a href=\u{0}javascript:x>",
        &deep,
    ] {
        let out = run(input, false);
        assert!(!out.html.contains("javascript"), "{}", out.html);
    }
}
