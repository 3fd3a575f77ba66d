//! Outbound delivery (issue 13) against a fake Internet on loopback: NSD serves
//! example.net, example.org and example.com with MX and A records pointing at
//! 127.0.0.X, where a private Postfix (delivering to a Maildir) and scripted SMTP
//! servers (tests/common/fake_smtp.rs) listen on one shared port, the node's
//! `[outbound] mx_port`. Mail goes in by swaks (587, AUTH) or the webmail; what left
//! is read from the Postfix Maildir, the scripted servers' records, the sender's INBOX
//! (DSNs, parsed by Python's `email`) and `clusterd queue list --json`. DKIM
//! signatures are checked with dkimpy (Debian's python3-dkim) against the TXT record
//! the node's own DNS serves. No name outside the lab is ever resolved.

mod common;
mod smtp_client;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::dns::{Nsd, NsdConfig, write_zone};
use common::fake_smtp::{FakeSmtp, Refuser, Script, free_port_on};
use common::postfix::{Mode, Postfix};
use common::{Node, assert_ok};
use serde_json::Value;
use smtp_client::swaks;

// The lab's addresses: every mail exchanger listens on 127.0.0.X:mx_port.
const MX_NET: u8 = 10; // example.net, the lab Postfix
const MX_ORG_10: u8 = 11; // example.org MX 10: refuses connections
const MX_ORG_20: u8 = 12; // example.org MX 20: accepts
const A_ONLY: u8 = 13; // aonly.example.com: no MX, an A record
const MX_TEMP: u8 = 14; // temp.example.com
const MX_REJECT: u8 = 15; // reject.example.com
const MX_SLOW: u8 = 16; // slow.example.com
const MX_LATE: u8 = 17; // late.example.com
const HOSTS: [u8; 8] = [
    MX_NET, MX_ORG_10, MX_ORG_20, A_ONLY, MX_TEMP, MX_REJECT, MX_SLOW, MX_LATE,
];

/// The fake Internet's DNS and the port every mail exchanger uses.
struct Lab {
    nsd: Nsd,
    mx_port: u16,
    /// Per-test state (zones, Postfix); removed last.
    dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("clusterd-outbound-")
            .tempdir()
            .expect("temp dir");
        let zones = dir.path().join("zones");
        write_zone(
            &zones,
            "example.net",
            &format!("@ IN MX 10 mx\nmx IN A 127.0.0.{MX_NET}"),
        );
        write_zone(
            &zones,
            "example.org",
            &format!(
                "@ IN MX 10 mx1\n@ IN MX 20 mx2\n\
                 mx1 IN A 127.0.0.{MX_ORG_10}\nmx2 IN A 127.0.0.{MX_ORG_20}"
            ),
        );
        // nosuch.example.com does not exist: NXDOMAIN from an authoritative server.
        write_zone(
            &zones,
            "example.com",
            &format!(
                "aonly IN A 127.0.0.{A_ONLY}
                 nullmx IN MX 0 .
                 temp IN MX 10 mx.temp
                 mx.temp IN A 127.0.0.{MX_TEMP}
                 reject IN MX 10 mx.reject
                 mx.reject IN A 127.0.0.{MX_REJECT}
                 slow IN MX 10 mx.slow
                 mx.slow IN A 127.0.0.{MX_SLOW}
                 late IN MX 10 mx.late
                 mx.late IN A 127.0.0.{MX_LATE}"
            ),
        );
        let nsd = Nsd::start(&zones, &NsdConfig::default());
        Lab {
            nsd,
            mx_port: free_port_on(&HOSTS),
            dir,
        }
    }

    fn mx(&self, host: u8) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), self.mx_port))
    }

    /// A scripted server on 127.0.0.`host`.
    fn fake(&self, host: u8, script: Script) -> FakeSmtp {
        FakeSmtp::start(host, self.mx_port, script)
    }

    /// The lab Postfix on the example.net address, delivering example.net mail.
    fn postfix(&self) -> Postfix {
        Postfix::start_with(
            &self.dir.path().join("postfix"),
            self.mx(MX_NET),
            Mode::Deliver(vec!["example.net".into()]),
        )
    }

    /// The `[outbound]` lines for a node in this lab; `over` replaces or adds keys.
    fn outbound(&self, over: &[(&str, &str)]) -> String {
        let mut keys: BTreeMap<&str, String> = BTreeMap::new();
        keys.insert("resolvers", format!("[\"127.0.0.1:{}\"]", self.nsd.port));
        keys.insert("mx_port", self.mx_port.to_string());
        keys.insert("retry_schedule_s", "[1]".into());
        keys.insert("connect_timeout_s", "3".into());
        keys.insert("command_timeout_s", "10".into());
        for (k, v) in over {
            keys.insert(k, v.to_string());
        }
        let mut text = String::new();
        for (k, v) in keys {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text
    }

    /// A node of this lab with users sistemas (postmaster) and luis.
    fn node(&self, over: &[(&str, &str)]) -> Node {
        let node = Node::builder().outbound(&self.outbound(over)).start();
        node.add_user("sistemas", "pw-sis");
        node.add_user("luis", "pw-luis");
        node
    }
}

/// Submits on 587 (STARTTLS, AUTH PLAIN) as `user`, from the user's own address.
fn submit(node: &Node, user: &str, pw: &str, to: &str, subject: &str) {
    let from = format!("{user}@cluster.com.ec");
    let (ok, log) = swaks(
        node.submission_port,
        &[
            "-tls",
            "-a",
            "PLAIN",
            "-au",
            user,
            "-ap",
            pw,
            "--from",
            &from,
            "--to",
            to,
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            &format!("Body of {subject}.\n"),
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "submission failed:\n{log}");
}

/// `clusterd queue list --json`.
fn queue(node: &Node) -> Vec<Value> {
    let out = node.cli(&["queue", "list", "--json"], None);
    let text = assert_ok(&out, "clusterd queue list --json");
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("queue list --json is not JSON ({e}): {text}"));
    v.as_array()
        .unwrap_or_else(|| panic!("queue list --json is not an array: {text}"))
        .clone()
}

/// Waits (bounded) until `pred` holds on the queue; returns the last listing.
fn wait_queue(node: &Node, limit: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let q = queue(node);
        if pred(&q) {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "queue did not reach the expected state within {limit:?}:\n{}\n--- node log (tail)\n{}",
            serde_json::to_string_pretty(&q).unwrap(),
            tail(&node.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The recipient `addr` of some entry in a listing.
fn rcpt<'a>(q: &'a [Value], addr: &str) -> Option<(&'a Value, &'a Value)> {
    q.iter().find_map(|e| {
        let r = e["recipients"]
            .as_array()?
            .iter()
            .find(|r| r["addr"].as_str() == Some(addr))?;
        Some((e, r))
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until `user`'s INBOX holds `n` messages; panics after `limit`.
fn wait_inbox(node: &Node, user: &str, pw: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = common::imap_count(node.imap_port, user, pw, "INBOX");
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}'s INBOX holds {got} message(s), expected {n} within {limit:?}; queue:\n{}\n--- node log (tail)\n{}",
            serde_json::to_string_pretty(&queue(node)).unwrap(),
            tail(&node.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every message of `user`'s INBOX parsed by Python's `email`: type, report type,
/// and for a delivery-status report each recipient's fields.
fn reports(node: &Node, user: &str, pw: &str) -> Vec<Value> {
    let script = r#"
import email, email.policy, imaplib, json, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login(sys.argv[2], sys.argv[3])
typ, data = m.select("INBOX")
out = []
for i in range(1, int(data[0]) + 1):
    typ, d = m.fetch(str(i), "(BODY.PEEK[])")
    raw = d[0][1]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    item = {"type": msg.get_content_type(), "report_type": msg.get_param("report-type") or "",
            "subject": str(msg["Subject"] or ""), "recipients": [], "original": False,
            "raw": raw.decode("utf-8", "replace")}
    for part in msg.walk():
        ct = part.get_content_type()
        if ct == "message/delivery-status":
            for block in part.get_payload()[1:]:
                item["recipients"].append({k: str(block[k]) for k in
                    ("Final-Recipient", "Action", "Status", "Diagnostic-Code") if block[k] is not None})
        if ct in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            item["original"] = True
    out.append(item)
m.logout()
print(json.dumps(out))
"#;
    let out = common::python(script, &[&node.imap_port.to_string(), user, pw]);
    let text = assert_ok(&out, "python email parse of the INBOX");
    serde_json::from_str::<Value>(&text)
        .expect("python printed JSON")
        .as_array()
        .unwrap()
        .clone()
}

/// The delivery-status report for `addr` among `reports`, with its recipient fields.
fn report_for<'a>(reports: &'a [Value], addr: &str) -> (&'a Value, &'a Value) {
    reports
        .iter()
        .find_map(|m| {
            let r = m["recipients"].as_array()?.iter().find(|r| {
                r["Final-Recipient"]
                    .as_str()
                    .is_some_and(|f| f.to_ascii_lowercase().contains(addr))
            })?;
            Some((m, r))
        })
        .unwrap_or_else(|| {
            panic!(
                "no delivery-status report for {addr} among:\n{}",
                serde_json::to_string_pretty(reports).unwrap()
            )
        })
}

/// Asserts `m` is an RFC 3464 report and its recipient part `r` says `action` with a
/// status whose class is one of `classes` ("5", or "45" where either is right).
fn assert_dsn(m: &Value, r: &Value, action: &str, classes: &str) {
    let show = || serde_json::to_string_pretty(m).unwrap();
    assert_eq!(m["type"], "multipart/report", "{}", show());
    assert_eq!(m["report_type"], "delivery-status", "{}", show());
    assert!(
        r["Action"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case(action)),
        "Action should be {action}: {}",
        show()
    );
    let status = r["Status"].as_str().unwrap_or("");
    let parts: Vec<&str> = status.trim().split('.').collect();
    assert!(
        parts.len() == 3
            && parts[0].len() == 1
            && classes.contains(parts[0])
            && parts[1..].iter().all(|p| p.parse::<u16>().is_ok()),
        "Status should be [{classes}].x.x, got {status:?}: {}",
        show()
    );
}

/// Verifies the DKIM signature of `msg` with dkimpy, fetching keys from the node's DNS
/// with dig. Debian's python3-dkim is for the system Python, hence /usr/bin/python3.
fn dkim_verify(node: &Node, msg: &[u8]) -> Result<String, String> {
    common::require_tool("dig");
    let path = node.dir.path().join("dkim-check.eml");
    std::fs::write(&path, msg).unwrap();
    let script = r#"
import re, subprocess, sys
try:
    import dkim
except ImportError:
    sys.exit("python3-dkim (dkimpy) is not installed for /usr/bin/python3")
port, path = sys.argv[1], sys.argv[2]
asked = []
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    asked.append(name)
    out = subprocess.run(["dig", "+short", "+time=2", "+tries=1", "-p", port, "@127.0.0.1",
                          name, "TXT"], capture_output=True, text=True).stdout
    lines = out.splitlines()
    if not lines:
        return None
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', lines[0])).encode()
# The Maildir file has LF line ends; the message on the wire had CRLF.
msg = re.sub(rb"\r?\n", b"\r\n", open(path, "rb").read())
ok = dkim.verify(msg, dnsfunc=dnsfunc)
print("asked", asked, "verified", ok)
sys.exit(0 if ok else 1)
"#;
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg("-c")
        .arg(script)
        .arg(node.dns_port.to_string())
        .arg(&path);
    let out = common::run_with_stdin(cmd, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Issue 13: a submission on 587 to ana@example.net reaches the lab Postfix's Maildir
/// within 5 s, with our Received line and a DKIM signature dkimpy verifies against the
/// TXT record the node serves; the queue entry is gone once delivered.
#[test]
fn submission_reaches_the_lab_postfix_stamped_and_dkim_signed() {
    let lab = Lab::start();
    let postfix = lab.postfix();
    let node = lab.node(&[]);
    submit(&node, "luis", "pw-luis", "ana@example.net", "hello lab");
    let sent = Instant::now();
    let got = postfix.wait_delivered(1, Duration::from_secs(5));
    assert_eq!(
        got,
        1,
        "not in the lab Maildir within 5 s; queue:\n{}\n--- node log\n{}\n--- postfix log\n{}",
        serde_json::to_string_pretty(&queue(&node)).unwrap(),
        tail(&node.log_text(), 40),
        tail(&postfix.log_text(), 20)
    );
    println!("delivered to the lab Postfix in {:?}", sent.elapsed());
    let msg = postfix.messages().remove(0);
    let text = String::from_utf8_lossy(&msg).into_owned();
    assert!(text.contains("Subject: hello lab"), "{text}");
    assert!(
        text.contains("(clusterd) with ESMTPSA"),
        "no Received line of ours:\n{text}"
    );
    let sig = text
        .split("\n")
        .find(|l| l.to_ascii_lowercase().starts_with("dkim-signature:"))
        .unwrap_or_else(|| panic!("no DKIM-Signature:\n{text}"));
    // The tags may be folded onto later lines: look at the whole field (the
    // Maildir file has LF line ends).
    let field: String = text[text.find(sig).unwrap()..]
        .split('\n')
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l.trim_end_matches('\r'))
        .collect();
    let compact: String = field.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        compact.contains("d=cluster.com.ec;") && compact.contains("s=clusterd;"),
        "{field}"
    );
    if let Err(why) = dkim_verify(&node, &msg) {
        panic!("dkimpy does not verify the signature: {why}\n--- message\n{text}");
    }
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());
}

/// Issue 13: a message sent from the webmail to ana@example.net arrives.
#[test]
fn webmail_message_reaches_the_lab_postfix() {
    let lab = Lab::start();
    let postfix = lab.postfix();
    let node = lab.node(&[]);
    let script = r#"
import html, re, sys, urllib.error, urllib.parse, urllib.request, uuid
from http.cookiejar import CookieJar
base = "http://127.0.0.1:%s" % sys.argv[1]
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), NoRedirect)
def req(method, path, body=None, ctype=None):
    r = urllib.request.Request(base + path, data=body, method=method)
    if ctype:
        r.add_header("Content-Type", ctype)
    try:
        resp = op.open(r, timeout=30)
        return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
def csrf(page):
    return html.unescape(re.search(r'name="csrf" value="([^"]*)"', page).group(1))
st, page = req("GET", "/webmail/login")
st, page = req("POST", "/webmail/login",
               urllib.parse.urlencode({"user": "luis", "password": "pw-luis", "csrf": csrf(page)}).encode(),
               "application/x-www-form-urlencoded")
assert st == 303, ("login", st, page[:500])
st, page = req("GET", "/webmail/compose")
assert st == 200, ("compose", st, page[:500])
fields = {}
for m in re.finditer(r"<input([^>]*)>", page):
    a = dict((k, html.unescape(v)) for k, v in re.findall(r'(\w[\w-]*)="([^"]*)"', m.group(1)))
    if a.get("type") in ("text", "hidden", "email") and "name" in a:
        fields[a["name"]] = a.get("value", "")
fields.update({"to": "ana@example.net", "subject": "from the webmail", "body": "Sent from the web.\r\n"})
b = "----b" + uuid.uuid4().hex
parts = []
for k, v in list(fields.items()) + [("action", "send")]:
    parts.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (b, k, v)).encode())
parts.append(("--%s--\r\n" % b).encode())
st, page = req("POST", "/webmail/compose", b"".join(parts), "multipart/form-data; boundary=%s" % b)
assert st == 303, ("send", st, page[:2000])
print("sent")
"#;
    let out = common::python(script, &[&node.http_port.to_string()]);
    assert_ok(&out, "webmail send");
    let got = postfix.wait_delivered(1, Duration::from_secs(5));
    assert_eq!(
        got,
        1,
        "webmail message not in the lab Maildir within 5 s; queue:\n{}\n--- node log\n{}",
        serde_json::to_string_pretty(&queue(&node)).unwrap(),
        tail(&node.log_text(), 40)
    );
    let text = String::from_utf8_lossy(&postfix.messages()[0]).into_owned();
    assert!(text.contains("Subject: from the webmail"), "{text}");
    assert!(text.contains("Sent from the web."), "{text}");
    assert!(text.contains("(clusterd webmail)"), "{text}");
}

/// Issue 13 (RFC 5321 §5, RFC 7505): MX 10 refuses connections and MX 20 accepts →
/// delivered through MX 20; a domain with only an A record → delivered to the A;
/// NXDOMAIN and a null MX → a DSN in the sender's INBOX within 5 s.
#[test]
fn mx_preference_address_fallback_and_unroutable_domains() {
    let lab = Lab::start();
    let _refuser = Refuser::start(MX_ORG_10, lab.mx_port);
    let mx20 = lab.fake(MX_ORG_20, Script::accept_all());
    // No ESMTP extensions at all: plain delivery still works.
    let a_only = lab.fake(A_ONLY, Script::accept_all().extensions(&[]));
    let node = lab.node(&[]);

    // Two recipients of one domain: one transaction.
    submit(
        &node,
        "luis",
        "pw-luis",
        "bob@example.org,bea@example.org",
        "by preference",
    );
    submit(
        &node,
        "luis",
        "pw-luis",
        "carla@aonly.example.com",
        "by address",
    );
    let got = mx20.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "MX 20 did not get the message");
    let mut rcpts = got[0].rcpts.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["bea@example.org", "bob@example.org"]);
    assert_eq!(got[0].from, "luis@cluster.com.ec");
    assert!(got[0].text().contains("Subject: by preference"));
    let got = a_only.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(
        got.len(),
        1,
        "the A-only domain's host did not get the message"
    );
    assert_eq!(got[0].rcpts, ["carla@aonly.example.com"]);
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());

    submit(
        &node,
        "luis",
        "pw-luis",
        "x@nosuch.example.com",
        "to nxdomain",
    );
    submit(
        &node,
        "luis",
        "pw-luis",
        "y@nullmx.example.com",
        "to null mx",
    );
    wait_inbox(&node, "luis", "pw-luis", 2, Duration::from_secs(5));
    let reports = reports(&node, "luis", "pw-luis");
    for addr in ["x@nosuch.example.com", "y@nullmx.example.com"] {
        let (m, r) = report_for(&reports, addr);
        assert_dsn(m, r, "failed", "5");
    }
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());
    assert_eq!(mx20.accepted().len(), 1);
    assert_eq!(a_only.accepted().len(), 1);
}

/// Issue 13: 451 on RCPT → deferred and visible in `queue list` with the reply and the
/// next attempt; once the server accepts → delivered exactly once.
#[test]
fn temporary_failure_is_deferred_shown_then_delivered_once() {
    let lab = Lab::start();
    let temp = lab.fake(
        MX_TEMP,
        Script::accept_all().rcpt("451 4.7.1 greylisted, come back later"),
    );
    let node = lab.node(&[("retry_schedule_s", "[2]")]);
    submit(
        &node,
        "luis",
        "pw-luis",
        "dora@temp.example.com",
        "greylisted",
    );
    let q = wait_queue(&node, Duration::from_secs(10), |q| {
        rcpt(q, "dora@temp.example.com").is_some_and(|(_, r)| {
            r["reply"]
                .as_str()
                .is_some_and(|s| s.contains("451 4.7.1 greylisted"))
        })
    });
    let (entry, r) = rcpt(&q, "dora@temp.example.com").unwrap();
    assert_eq!(r["state"], "pending", "{entry}");
    assert!(entry["attempts"].as_u64().unwrap_or(0) >= 1, "{entry}");
    let next = entry["next_attempt"].as_i64().expect("next_attempt");
    let created = entry["created"].as_i64().expect("created");
    assert!(
        next > created,
        "next attempt should be after creation: {entry}"
    );
    // The human listing shows the reply and the next attempt too.
    let human = assert_ok(&node.cli(&["queue", "list"], None), "queue list");
    assert!(
        human.contains("dora@temp.example.com") && human.contains("451 4.7.1 greylisted"),
        "{human}"
    );
    temp.set_script(Script::accept_all());
    let got = temp.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "not delivered after the server accepted");
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());
    // Several more retry periods: still exactly one copy, and no DSN.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(temp.accepted().len(), 1, "delivered more than once");
    assert_eq!(
        common::imap_count(node.imap_port, "luis", "pw-luis", "INBOX"),
        0,
        "a deferred-then-delivered message must not bounce"
    );
}

/// A destination that stalls holds back only its own mail: with two message slots
/// and one session per domain, three messages waiting for a stalled server leave a
/// slot for mail to another domain, which arrives at once; the stalled messages
/// follow when the server answers.
#[test]
fn a_stalled_destination_holds_back_only_its_own_mail() {
    let lab = Lab::start();
    let stall = lab.fake(MX_LATE, Script::accept_all().stall());
    let other = lab.fake(A_ONLY, Script::accept_all());
    let node = lab.node(&[
        ("max_connections", "2"),
        ("max_per_domain", "1"),
        ("command_timeout_s", "60"),
    ]);
    for i in 0..3 {
        submit(
            &node,
            "luis",
            "pw-luis",
            "ana@late.example.com",
            &format!("stalled {i}"),
        );
    }
    assert!(
        stall.wait_for(Duration::from_secs(10), |r| r.connections >= 1),
        "the stalled server was never reached"
    );
    submit(
        &node,
        "luis",
        "pw-luis",
        "bea@aonly.example.com",
        "meanwhile",
    );
    let got = other.wait_accepted(1, Duration::from_secs(5));
    assert_eq!(
        got.len(),
        1,
        "mail to another domain waited behind a stalled one; queue: {:?}",
        queue(&node)
    );
    stall.release();
    let late = stall.wait_accepted(3, Duration::from_secs(20));
    assert_eq!(late.len(), 3, "the stalled messages did not follow");
    wait_queue(&node, Duration::from_secs(10), |q| q.is_empty());
}

/// Issue 13: 550 → a DSN in the sender's INBOX that Python's `email` parses as
/// multipart/report with Status 5.x.x and the Diagnostic-Code; a message from `<>`
/// that fails produces no DSN anywhere (not to the postmaster either).
#[test]
fn permanent_failure_bounces_to_the_sender_but_never_for_a_null_sender() {
    let lab = Lab::start();
    let reject = lab.fake(
        MX_REJECT,
        Script::accept_all().rcpt("550 5.1.1 <who>: no such user here"),
    );
    let node = lab.node(&[]);

    // A null sender on port 25 (relay_from holds 127.0.0.0/8).
    let (ok, log) = swaks(
        node.smtp_port,
        &[
            "--from",
            "<>",
            "--to",
            "carl@reject.example.com",
            "--header",
            "Subject: a bounce of someone else's",
        ],
    );
    assert!(ok && log.contains("250 2.0.0"), "{log}");
    assert!(
        reject.wait_for(Duration::from_secs(10), |r| r
            .rcpts
            .iter()
            .any(|(a, _)| a == "carl@reject.example.com")),
        "the null-sender message was never tried"
    );
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());
    // Give a wrong DSN time to show up.
    std::thread::sleep(Duration::from_secs(2));
    assert!(queue(&node).is_empty(), "a DSN to <> was queued");
    for (user, pw) in [("sistemas", "pw-sis"), ("luis", "pw-luis")] {
        assert_eq!(
            common::imap_count(node.imap_port, user, pw, "INBOX"),
            0,
            "{user} got mail for a failed <> message"
        );
    }

    submit(
        &node,
        "luis",
        "pw-luis",
        "bob@reject.example.com",
        "to be rejected",
    );
    wait_inbox(&node, "luis", "pw-luis", 1, Duration::from_secs(5));
    let reports = reports(&node, "luis", "pw-luis");
    let (m, r) = report_for(&reports, "bob@reject.example.com");
    assert_dsn(m, r, "failed", "5");
    let diag = r["Diagnostic-Code"].as_str().unwrap_or_else(|| {
        panic!(
            "no Diagnostic-Code: {}",
            serde_json::to_string_pretty(m).unwrap()
        )
    });
    assert!(diag.contains("550 5.1.1"), "Diagnostic-Code: {diag}");
    assert!(
        m["original"].as_bool().unwrap(),
        "the report should carry the original message or headers: {}",
        m["raw"]
    );
    assert!(
        m["raw"].as_str().unwrap().contains("to be rejected"),
        "{}",
        m["raw"]
    );
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());
    assert!(reject.accepted().is_empty());
}

/// Issue 13: `delay_warning_h` → a delay DSN (Action: delayed), then delivery once the
/// server accepts; `queue_lifetime_h` → the message that never gets through bounces on
/// expiry (Action: failed). Test-sized values: 0.0008 h ≈ 2.9 s, 0.003 h ≈ 10.8 s.
#[test]
fn delay_warning_then_delivery_and_bounce_on_expiry() {
    let lab = Lab::start();
    let slow = lab.fake(MX_SLOW, Script::accept_all().rcpt("451 4.3.0 not now"));
    let late = lab.fake(MX_LATE, Script::accept_all().rcpt("451 4.3.0 not yet"));
    let node = lab.node(&[("delay_warning_h", "0.0008"), ("queue_lifetime_h", "0.003")]);
    submit(&node, "luis", "pw-luis", "eva@slow.example.com", "never");
    submit(&node, "luis", "pw-luis", "fer@late.example.com", "later");
    let start = Instant::now();
    // Two delay warnings, one per message.
    wait_inbox(&node, "luis", "pw-luis", 2, Duration::from_secs(8));
    let reports1 = reports(&node, "luis", "pw-luis");
    for addr in ["eva@slow.example.com", "fer@late.example.com"] {
        let (m, r) = report_for(&reports1, addr);
        assert_dsn(m, r, "delayed", "4");
    }
    let q = queue(&node);
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(q.iter().all(|e| e["warned"] == true), "{q:?}");
    late.set_script(Script::accept_all());
    let got = late.wait_accepted(1, Duration::from_secs(5));
    assert_eq!(
        got.len(),
        1,
        "fer@late.example.com not delivered after the warning"
    );
    // The other one runs out of lifetime: a failure report.
    wait_inbox(&node, "luis", "pw-luis", 3, Duration::from_secs(15));
    println!("bounce on expiry after {:?}", start.elapsed());
    assert!(
        start.elapsed() >= Duration::from_secs(8),
        "bounced before the lifetime ran out"
    );
    let all = reports(&node, "luis", "pw-luis");
    let failed: Vec<Value> = all
        .iter()
        .filter(|m| {
            m["recipients"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["Action"] == "failed"))
        })
        .cloned()
        .collect();
    assert_eq!(failed.len(), 1, "{all:?}");
    let (m, r) = report_for(&failed, "eva@slow.example.com");
    // Expiry after 451s: 4.4.7 (or the last 4.x.x) as well as a 5.x.x class is right.
    assert_dsn(m, r, "failed", "45");
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());
    assert!(slow.accepted().is_empty());
    assert_eq!(late.accepted().len(), 1);
}

/// Issue 13: a restart keeps the queue and its retry times; `queue retry`, `queue
/// bounce` and `queue delete` act on entries.
#[test]
fn restart_keeps_the_queue_and_retry_times_and_the_cli_acts_on_entries() {
    let lab = Lab::start();
    let temp = lab.fake(MX_TEMP, Script::accept_all().rcpt("451 4.4.5 busy"));
    let mut node = lab.node(&[("retry_schedule_s", "[600]")]);
    for (to, subject) in [
        ("one@temp.example.com", "one"),
        ("two@temp.example.com", "two"),
        ("three@temp.example.com", "three"),
    ] {
        submit(&node, "luis", "pw-luis", to, subject);
    }
    let before = wait_queue(&node, Duration::from_secs(10), |q| {
        q.len() == 3 && q.iter().all(|e| e["attempts"].as_u64() == Some(1))
    });
    let snapshot = |q: &[Value]| -> BTreeMap<String, (i64, u64, String)> {
        q.iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_string(),
                    (
                        e["next_attempt"].as_i64().unwrap(),
                        e["attempts"].as_u64().unwrap(),
                        e["recipients"][0]["addr"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect()
    };
    let before = snapshot(&before);
    for (next, _, _) in before.values() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(*next > now + 500, "retry 600 s ahead expected: {before:?}");
    }
    let tried = temp.with(|r| r.transactions);
    node.restart();
    let after = snapshot(&queue(&node));
    assert_eq!(after, before, "the restart changed the queue");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        temp.with(|r| r.transactions),
        tried,
        "the restarted node tried before the next attempt time"
    );

    let id_of = |addr: &str| {
        before
            .iter()
            .find(|(_, v)| v.2 == addr)
            .map(|(k, _)| k.clone())
            .unwrap()
    };
    // delete: gone, nobody told.
    assert_ok(
        &node.cli(&["queue", "delete", &id_of("one@temp.example.com")], None),
        "queue delete",
    );
    // bounce: gone, the sender gets a failure report.
    assert_ok(
        &node.cli(&["queue", "bounce", &id_of("two@temp.example.com")], None),
        "queue bounce",
    );
    wait_inbox(&node, "luis", "pw-luis", 1, Duration::from_secs(5));
    let r = reports(&node, "luis", "pw-luis");
    let (m, rr) = report_for(&r, "two@temp.example.com");
    // The last reply was 451, so a 4.x.x status is as right as 5.x.x.
    assert_dsn(m, rr, "failed", "45");
    // retry: the server accepts now; the last one goes at once.
    temp.set_script(Script::accept_all());
    assert_ok(&node.cli(&["queue", "retry", "--all"], None), "queue retry");
    let got = temp.wait_accepted(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, ["three@temp.example.com"]);
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());
    assert_eq!(
        common::imap_count(node.imap_port, "luis", "pw-luis", "INBOX"),
        1
    );
}

/// Issue 13: with a relay host (here a second clusterd with AUTH on its submission
/// port, whose local domains include example.net) all outbound mail goes through it,
/// whatever DNS says; a wrong relay password leaves the message deferred with the
/// relay's reply shown.
#[test]
fn relay_host_receives_all_outbound_mail_and_a_wrong_password_defers() {
    let lab = Lab::start();
    // DNS sends example.net here: it must see nothing.
    let direct = lab.fake(MX_NET, Script::accept_all());
    let relay = Node::builder()
        .local_domains(&["cluster.com.ec", "example.net"])
        .start();
    relay.add_user("sistemas", "relay-pw");
    relay.add_user("ana", "pw-ana");
    let good = lab.dir.path().join("relay-pw");
    let bad = lab.dir.path().join("wrong-pw");
    std::fs::write(&good, "relay-pw\n").unwrap();
    std::fs::write(&bad, "not-the-password\n").unwrap();
    let relay_host = format!("\"127.0.0.1:{}\"", relay.submission_port);
    let relay_user = "\"sistemas\"".to_string();
    let with_pw = |file: &std::path::Path| {
        let file = format!("\"{}\"", file.display());
        let node = Node::builder()
            .outbound(&lab.outbound(&[
                ("relay_host", &relay_host),
                ("relay_user", &relay_user),
                ("relay_password_file", &file),
            ]))
            .start();
        node.add_user("sistemas", "pw-sis");
        node
    };
    let node = with_pw(&good);
    submit(
        &node,
        "sistemas",
        "pw-sis",
        "ana@example.net",
        "via the relay",
    );
    wait_inbox(&relay, "ana", "pw-ana", 1, Duration::from_secs(10));
    let msgs = smtp_client::inbox(&relay, "ana", "pw-ana");
    assert!(msgs[0].contains("Subject: via the relay"), "{}", msgs[0]);
    wait_queue(&node, Duration::from_secs(5), |q| q.is_empty());

    let wrong = with_pw(&bad);
    submit(
        &wrong,
        "sistemas",
        "pw-sis",
        "ana@example.net",
        "wrong password",
    );
    let q = wait_queue(&wrong, Duration::from_secs(10), |q| {
        rcpt(q, "ana@example.net").is_some_and(|(e, r)| {
            let said = |v: &Value| v.as_str().is_some_and(|s| s.contains("535"));
            said(&r["reply"]) || said(&e["last_error"])
        })
    });
    let (_, r) = rcpt(&q, "ana@example.net").unwrap();
    assert_eq!(r["state"], "pending", "{q:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        common::imap_count(relay.imap_port, "ana", "pw-ana", "INBOX"),
        1
    );
    assert_eq!(direct.connections(), 0, "mail went around the relay host");
}

/// Issue 13: unauthenticated relaying from outside `relay_from` is still refused on 25,
/// 587 and 465 with the queue runner at work; nothing is queued or sent.
#[test]
fn unauthenticated_relay_is_refused_on_every_port() {
    let lab = Lab::start();
    let mx = lab.fake(MX_ORG_20, Script::accept_all());
    let _refuser = Refuser::start(MX_ORG_10, lab.mx_port);
    let node = Node::builder()
        .smtp(r#"relay_from = ["127.0.0.1/32"]"#)
        .outbound(&lab.outbound(&[]))
        .start();
    let outside = ["--local-interface", "127.0.0.2"];
    let msg = ["--from", "x@example.net", "--to", "bob@example.org"];
    let (ok, log) = swaks(node.smtp_port, &[&outside[..], &msg[..]].concat());
    assert!(!ok && log.contains("550 5.7.1"), "port 25: {log}");
    let (ok, log) = swaks(
        node.submission_port,
        &[&outside[..], &["-tls"], &msg[..]].concat(),
    );
    assert!(!ok && log.contains("530 5.7.0"), "port 587: {log}");
    let (ok, log) = swaks(
        node.submissions_port,
        &[&outside[..], &["--tlsc"], &msg[..]].concat(),
    );
    assert!(!ok && log.contains("530 5.7.0"), "port 465: {log}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(queue(&node).is_empty());
    assert_eq!(mx.connections(), 0);
}

/// The fake Internet itself, without clusterd: NSD answers MX, A, null MX and NXDOMAIN
/// as the zones say, the lab Postfix delivers, a scripted server answers its script
/// and keeps what it accepted, and a refuser refuses. A failure here is the lab's.
#[test]
fn the_fake_internet_answers_as_scripted() {
    common::require_tool("dig");
    let lab = Lab::start();
    let dig = |name: &str, ty: &str| -> String {
        let out = std::process::Command::new("dig")
            .args(["+time=2", "+tries=1", "-p", &lab.nsd.port.to_string()])
            .args(["@127.0.0.1", name, ty])
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mx = dig("example.org", "MX");
    assert!(
        mx.contains("10 mx1.example.org.") && mx.contains("20 mx2.example.org."),
        "{mx}"
    );
    assert!(dig("nullmx.example.com", "MX").contains("MX\t0 ."));
    let a = dig("aonly.example.com", "MX");
    assert!(
        a.contains("status: NOERROR") && a.contains("ANSWER: 0"),
        "{a}"
    );
    assert!(dig("nosuch.example.com", "MX").contains("status: NXDOMAIN"));
    assert!(dig("mx.reject.example.com", "A").contains(&format!("127.0.0.{MX_REJECT}")));

    let postfix = lab.postfix();
    let port = lab.mx_port.to_string();
    let server = |host: u8| format!("127.0.0.{host}:{port}");
    let run_swaks = |host: u8, args: &[&str]| -> (bool, String) {
        let out = std::process::Command::new("swaks")
            .args(["--server", &server(host), "--timeout", "10"])
            .args(args)
            .output()
            .expect("run swaks");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, log) = run_swaks(MX_NET, &["--from", "a@lab.test", "--to", "ana@example.net"]);
    assert!(ok, "{log}");
    assert_eq!(postfix.wait_delivered(1, Duration::from_secs(5)), 1);
    assert!(String::from_utf8_lossy(&postfix.messages()[0]).contains("To: ana@example.net"));

    let fake = lab.fake(
        MX_TEMP,
        Script::accept_all()
            .temp_fail_first(1, "451 4.7.1 first time")
            .rcpt_for("no@temp.example.com", "550 5.1.1 unknown"),
    );
    let (ok, log) = run_swaks(MX_TEMP, &["--to", "x@temp.example.com"]);
    assert!(!ok && log.contains("451 4.7.1 first time"), "{log}");
    let (ok, log) = run_swaks(MX_TEMP, &["--to", "no@temp.example.com"]);
    assert!(!ok && log.contains("550 5.1.1 unknown"), "{log}");
    let (ok, log) = run_swaks(
        MX_TEMP,
        &["--from", "s@lab.test", "--to", "x@temp.example.com"],
    );
    assert!(ok, "{log}");
    let got = fake.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].from.as_str(), &got[0].rcpts[..]),
        ("s@lab.test", &["x@temp.example.com".to_string()][..])
    );
    let greet = lab.fake(MX_SLOW, Script::accept_all().greeting("554 5.3.2 go away"));
    let (ok, log) = run_swaks(MX_SLOW, &["--to", "x@slow.example.com"]);
    assert!(!ok && log.contains("554 5.3.2 go away"), "{log}");
    drop(greet);

    let stall = lab.fake(MX_LATE, Script::accept_all().stall());
    let mut c = std::net::TcpStream::connect(lab.mx(MX_LATE)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        std::io::Read::read(&mut c, &mut buf).is_err(),
        "a stalled server said something"
    );
    stall.release();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = std::io::Read::read(&mut c, &mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220 "));

    let _refuser = Refuser::start(MX_ORG_10, lab.mx_port);
    let err = std::net::TcpStream::connect(lab.mx(MX_ORG_10)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
