//! DNS acceptance tests: clusterd's authoritative server compared with NSD 4.6
//! (Debian's `nsd`), answering from the same zone files.
//!
//! - `nsd_agrees_with_itself`: two identical private NSD instances answer every query
//!   in `tests/dns_queries.txt` identically, and NSD's replies hold what a few sanity
//!   checks expect. This proves the harness (NSD start-up, dig, parsing, comparison).
//! - `harness_reports_nsd_minimal_responses_as_differences`: NSD with and without
//!   `minimal-responses` differ where expected, so the comparison is not blind.
//! - `dns_answers_match_nsd`: the same queries against NSD and against a clusterd node;
//!   every difference is listed (query, field, NSD's value, clusterd's value), then the
//!   test fails if there was any. Differences that never fail are listed as notes:
//!   TTLs, the advertised EDNS buffer size, EDNS options (EDE, cookies), the number of
//!   messages of a transfer, and fields a query line marks `!ignore=` (see the header
//!   of dns_queries.txt for why each is there).
//! - `nsd_survives_malformed_packets` and
//!   `dns_malformed_packets_get_formerr_or_drop_and_the_server_keeps_answering`: hostile
//!   packets over UDP and TCP get FORMERR or no answer (never an answer to a response),
//!   a normal query is answered after each, and the server is alive at the end; the NSD
//!   variant shows the expectations hold for the reference server.
//!
//! Both servers serve a fresh copy of `zones/` plus `big.test.zone`, a test-only zone
//! written here (40 and 100 A records on two names, a 600-byte TXT, 20 MX records) to
//! exercise truncation. clusterd gets it copied into its zones dir after start-up (the
//! zones dir is watched); if it does not serve it within 10 s the node is restarted once.
//!
//! Configuration that makes the two comparable:
//! - NSD: `provide-xfr: 127.0.0.1/32 NOKEY` for every zone; clusterd:
//!   `axfr_from = ["127.0.0.1/32"]`. Transfers from 127.0.0.1 are allowed, from
//!   127.0.0.2 (`dig -b 127.0.0.2`) refused.
//! - clusterd: `recursion_from = ["192.0.2.0/24"]`, so the loopback client is outside it
//!   and names outside our zones are REFUSED, as NSD (authoritative only) refuses them.
//! - NSD: `hide-version: yes`, `hide-identity: yes` (CHAOS `version.bind`, `id.server`,
//!   ... are REFUSED rather than revealing the software), `rrl-ratelimit: 0` and
//!   `rrl-whitelist-ratelimit: 0` (Debian's NSD otherwise rate-limits loopback bursts),
//!   otherwise NSD's defaults: `minimal-responses: no`, `refuse-any: no`,
//!   `round-robin: no`, `ipv4-edns-size: 1232`, no cookies (`answer-cookie: no`).
//!   `NSD_MINIMAL_RESPONSES=yes` runs the comparison against NSD with
//!   `minimal-responses: yes` instead.
//!
//! NSD 4.6 behaviour these tests pin down (found by probing it; all with the defaults):
//! - Positive answers carry the zone's NS RRset in the authority section and the
//!   addresses of NS, MX and SRV targets in the additional section (from any zone NSD
//!   serves, `confine-to-zone: no`), but never a record that is already in the answer
//!   (`ns.cluster.com.ec A` has no additional section). A query for the apex NS gets no
//!   authority section, only the glue. With
//!   `minimal-responses: yes` the authority NS and the MX/SRV target addresses go, and
//!   only the glue of an NS answer stays.
//! - A CNAME is chased within our zones: `webmail A` answers CNAME + www's A; the
//!   authority/additional sections are those of the final name. A name below a CNAME
//!   is NXDOMAIN. A CNAME to a name without the type gives the CNAME + SOA (NODATA).
//! - NXDOMAIN and NODATA carry the zone's SOA in authority (with TTL = min(SOA TTL,
//!   SOA MINIMUM) = 300, RFC 2308; TTLs are reported as notes, not compared). An empty
//!   non-terminal (`_tcp.cluster.com.ec`) is NODATA, not NXDOMAIN.
//! - RA is never set. RD is copied. CD is *not* copied (RFC 4035 3.1.6 has
//!   security-aware servers copy it; ignored here). AD is never set. The EDNS DO
//!   bit is copied. Unknown EDNS flags and options are ignored. EDNS version 1 gets
//!   BADVERS (with an OPT of version 0). The server advertises a 1232-byte UDP buffer
//!   and answers at most 1232 bytes over UDP even when the client offers 4096.
//! - Names outside our zones: REFUSED, no AA, with EDE 20 (Not Authoritative). The
//!   question is echoed. CHAOS class (with hide-version/hide-identity): REFUSED with
//!   EDE 18 (Prohibited); other classes (CH SOA, HS, NONE): REFUSED with EDE 21 (Not
//!   Supported), for HS and NONE without the question. EDE codes are notes only.
//! - Truncation: when the answer section does not fit, the reply has TC set and empty
//!   answer, authority and additional sections (question kept). When only additional
//!   records do not fit, they are left out and TC stays clear (RFC 2181 9).
//! - AXFR (TCP): from an allowed source the whole zone, SOA first and last; from a
//!   refused source REFUSED (no AA, empty). AXFR for a name that is not a zone apex, or
//!   outside our zones: NOTAUTH. IXFR with the current serial: just the SOA; with an
//!   older serial: a full AXFR-style transfer (NSD keeps no journal here). AXFR over
//!   UDP: NOTIMP.
//! - Opcodes IQUERY, STATUS, UPDATE and unassigned ones: NOTIMP with neither question
//!   nor OPT (even when the query had one). NOTIFY for one of our zones (no
//!   allow-notify): REFUSED, likewise bare.
//! - QTYPE ANY: one RRset only (not compared, see dns_queries.txt).
//! - Malformed input: a packet shorter than the header is dropped (UDP) or the TCP
//!   connection closed. Any other parse failure — header without the promised question,
//!   QDCOUNT 0 or 2, compression loops or pointers past the end, label length 64,
//!   reserved label types, names over 255 octets, truncated questions, records missing
//!   behind ANCOUNT, two OPT records, truncated OPT — gets FORMERR with an empty
//!   question section (over TCP too; a bare 12-byte header over TCP closes instead).
//!   Packets with QR=1 are never answered (UDP dropped, TCP closed). A non-zero RCODE
//!   in a query: FORMERR. Trailing bytes after the question: ignored, answered.
//!
//! Run: `cargo test --test dns_nsd -- --nocapture` (reports of passing tests go to
//! stdout; a failing test puts its report in the panic message). NSD runs as the
//! invoking user (`username: ""`) on a high port. Needs `nsd`, `nsd-checkzone` and
//! `dig` (Debian: nsd, bind9-dnsutils). All traffic stays on 127.0.0.0/8. Every NSD
//! started here is stopped by PID when its guard drops, also when the test panics, and
//! its temp dir removed.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Node;
use common::dns::*;
use common::pid_alive;

/// The queries, one dig command line each (see the file's header).
const QUERIES: &str = include_str!("dns_queries.txt");

/// clusterd's [dns] lines matching the NSD configuration (see the module doc).
const CLUSTERD_DNS: &str = r#"recursion_from = ["192.0.2.0/24"]
axfr_from = ["127.0.0.1/32"]"#;

const BIG_ZONE: &str = "big.test";

/// clusterd adds its DKIM key's TXT record to the served zone (an AXFR would show it);
/// NSD serves the file alone, so the compared node signs nothing.
const NO_DKIM: &str = "dkim = false";

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn nsd_agrees_with_itself() {
    require_dns_tools();
    let zones = ZonesDir::new();
    let a = Nsd::start(zones.path(), &NsdConfig::default());
    let b = Nsd::start(zones.path(), &NsdConfig::default());
    let queries = queries();
    let run = compare_servers(&queries, a.port, b.port);
    sanity_check_reference(&run);
    let report = run.report("NSD (a)", "NSD (b)");
    assert!(
        run.diffs.is_empty(),
        "two identical NSD instances disagree: the harness is unsound\n{report}"
    );
    println!("{report}");
}

/// The comparison sees real differences: NSD with `minimal-responses: yes` differs
/// from NSD's defaults in the authority and additional sections, and only there.
#[test]
fn harness_reports_nsd_minimal_responses_as_differences() {
    require_dns_tools();
    let zones = ZonesDir::new();
    let full = Nsd::start(zones.path(), &NsdConfig::default());
    let minimal = Nsd::start(
        zones.path(),
        &NsdConfig {
            minimal_responses: true,
            ..NsdConfig::default()
        },
    );
    let run = compare_servers(&queries(), full.port, minimal.port);
    let report = run.report("NSD", "NSD minimal-responses");
    let seen = |query: &str, field: &str| {
        run.diffs
            .iter()
            .any(|d| d.query == query && d.field == field)
    };
    assert!(seen("www.cluster.com.ec A", "authority"), "{report}");
    assert!(seen("cluster.com.ec MX", "additional"), "{report}");
    assert!(
        seen("_imaps._tcp.cluster.com.ec SRV", "additional"),
        "{report}"
    );
    assert!(
        run.diffs
            .iter()
            .all(|d| d.field == "authority" || d.field == "additional"),
        "{report}"
    );
}

#[test]
fn dns_answers_match_nsd() {
    require_dns_tools();
    let zones = ZonesDir::new();
    let minimal = std::env::var("NSD_MINIMAL_RESPONSES").is_ok_and(|v| v == "yes");
    let nsd = Nsd::start(
        zones.path(),
        &NsdConfig {
            minimal_responses: minimal,
            ..NsdConfig::default()
        },
    );
    let mut node = Node::builder().dns(CLUSTERD_DNS).outbound(NO_DKIM).start();
    let mut notes = Vec::new();
    if wait_dns(node.dns_port, "cluster.com.ec", Duration::from_secs(10)) {
        add_big_zone_to_node(&mut node, &mut notes);
    } else {
        notes.push(format!(
            "clusterd did not answer `cluster.com.ec SOA` on 127.0.0.1:{} within 10 s \
             (UDP); comparing anyway",
            node.dns_port
        ));
    }
    let queries = queries();
    let run = compare_servers(&queries, nsd.port, node.dns_port);
    sanity_check_reference(&run);
    let mut report = String::new();
    for n in &notes {
        let _ = writeln!(report, "note: {n}");
    }
    report.push_str(&run.report("NSD", "clusterd"));
    if !run.diffs.is_empty() {
        let log = node.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "clusterd's answers differ from NSD's in {} field(s) over {} queries\n{report}\n\
             --- last lines of clusterd's log\n{}",
            run.diffs.len(),
            queries.len(),
            tail.join("\n")
        );
    }
    println!("{report}");
}

#[test]
fn nsd_survives_malformed_packets() {
    require_dns_tools();
    let zones = ZonesDir::new();
    let mut nsd = Nsd::start(zones.path(), &NsdConfig::default());
    let port = nsd.port;
    let failures = hammer(port);
    let alive = nsd.alive();
    report_hammer("NSD", &failures, alive, &nsd.log_text());
}

#[test]
fn dns_malformed_packets_get_formerr_or_drop_and_the_server_keeps_answering() {
    let node = Node::builder().dns(CLUSTERD_DNS).outbound(NO_DKIM).start();
    assert!(
        wait_dns(node.dns_port, "cluster.com.ec", Duration::from_secs(10)),
        "clusterd does not answer `cluster.com.ec SOA` on 127.0.0.1:{} (UDP) within 10 s; \
         log:\n{}",
        node.dns_port,
        node.log_text()
    );
    let failures = hammer(node.dns_port);
    let alive = node.pid().is_some_and(pid_alive);
    report_hammer("clusterd", &failures, alive, &node.log_text());
}

fn require_dns_tools() {
    for tool in ["nsd", "nsd-checkzone", "dig"] {
        common::require_tool(tool);
    }
}

// ---------------------------------------------------------------------------------
// Zones
// ---------------------------------------------------------------------------------

/// A temp dir with the repository's zone files plus the test-only big.test zone.
struct ZonesDir {
    dir: tempfile::TempDir,
}

impl ZonesDir {
    fn new() -> ZonesDir {
        let dir = tempfile::Builder::new()
            .prefix("clusterd-dns-zones-")
            .tempdir()
            .expect("temp dir");
        common::copy_dir(&common::repo_zones_dir(), dir.path());
        std::fs::write(dir.path().join(format!("{BIG_ZONE}.zone")), big_test_zone())
            .expect("write big.test.zone");
        ZonesDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A zone whose answers do not fit 512 (or even 1232) bytes.
fn big_test_zone() -> String {
    let mut z = String::from(
        "; Test-only zone written by tests/dns_nsd.rs: answers too big for small UDP.\n\
         $ORIGIN big.test.\n\
         $TTL 300\n\
         @ IN SOA ns.big.test. hostmaster.big.test. 1 3600 900 1209600 60\n\
         \x20 IN NS ns.big.test.\n\
         ns IN A 192.0.2.53\n",
    );
    for i in 1..=40 {
        let _ = writeln!(z, "many IN A 192.0.2.{i}");
    }
    for i in 1..=100 {
        let _ = writeln!(z, "huge IN A 198.51.100.{i}");
    }
    let _ = writeln!(
        z,
        "txt IN TXT \"{}\" \"{}\" \"{}\"",
        "a".repeat(200),
        "b".repeat(200),
        "c".repeat(200)
    );
    for i in 1..=20 {
        let _ = writeln!(z, "mx IN MX {i} m{i}.big.test.");
        let _ = writeln!(z, "m{i} IN A 192.0.2.{}", 100 + i);
    }
    z
}

/// Puts big.test.zone into the node's zones dir and waits (bounded) until the node
/// serves it: first relying on the directory watch, then by restarting the node once.
fn add_big_zone_to_node(node: &mut Node, notes: &mut Vec<String>) {
    std::fs::write(
        node.zones_dir.join(format!("{BIG_ZONE}.zone")),
        big_test_zone(),
    )
    .expect("write big.test.zone into the node's zones dir");
    if wait_dns(node.dns_port, BIG_ZONE, Duration::from_secs(10)) {
        return;
    }
    notes.push(
        "clusterd did not pick up big.test.zone added to its zones dir within 10 s; \
         restarted it"
            .into(),
    );
    node.restart();
    if !wait_dns(node.dns_port, BIG_ZONE, Duration::from_secs(10)) {
        notes.push("clusterd does not serve big.test even after a restart".into());
    }
}

// ---------------------------------------------------------------------------------
// dig and its YAML output
// ---------------------------------------------------------------------------------

/// One line of dns_queries.txt.
#[derive(Clone, Debug)]
struct Query {
    /// The dig arguments (the line without its `!` markers); names the query.
    key: String,
    args: Vec<String>,
    /// `!additional-subset`: see dns_queries.txt.
    additional_subset: bool,
    /// `!ignore=FIELD,...`: those fields (or header flags) differing is a note.
    ignore: Vec<String>,
}

fn queries() -> Vec<Query> {
    let qs: Vec<Query> = QUERIES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (mut args, mut additional_subset, mut ignore) = (Vec::new(), false, Vec::new());
            for token in line.split_whitespace() {
                if token == "!additional-subset" {
                    additional_subset = true;
                } else if let Some(list) = token.strip_prefix("!ignore=") {
                    ignore.extend(list.split(',').map(String::from));
                } else {
                    assert!(
                        !token.starts_with('!'),
                        "unknown marker {token} in dns_queries.txt"
                    );
                    args.push(token.to_string());
                }
            }
            Query {
                key: args.join(" "),
                args,
                additional_subset,
                ignore,
            }
        })
        .collect();
    assert!(
        qs.len() >= 60,
        "only {} queries in dns_queries.txt",
        qs.len()
    );
    qs
}

fn is_transfer(q: &Query) -> bool {
    q.args.iter().any(|a| {
        let a = a.to_ascii_uppercase();
        a == "AXFR" || a.starts_with("IXFR")
    })
}

/// A resource record as dig printed it, split for comparison.
#[derive(Clone, Debug)]
struct Rr {
    /// Owner (lowercased), class, type and RDATA (names lowercased; TXT kept).
    key: String,
    rtype: String,
    ttl: String,
}

#[derive(Clone, Debug, Default)]
struct Edns {
    version: String,
    flags: String,
    udp: String,
    /// Option lines as dig printed them (EDE, COOKIE, NSID, ...).
    options: Vec<String>,
}

/// A reply as seen by dig (for transfers: all messages, records concatenated).
#[derive(Clone, Debug, Default)]
struct Reply {
    /// dig got no reply (its error text), or printed nothing parseable.
    error: Option<String>,
    messages: usize,
    opcode: String,
    status: String,
    flags: String,
    edns: Option<Edns>,
    question: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
}

fn dig(port: u16, args: &[String]) -> Reply {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string()])
        .args(["+yaml", "+tries=1", "+timeout=2", "+ignore"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dig");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut reply = parse_dig_yaml(&stdout);
    if reply.messages == 0 && reply.error.is_none() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let comments: Vec<&str> = stdout.lines().filter(|l| l.starts_with(';')).collect();
        reply.error = Some(format!(
            "no reply ({}): {} {}",
            out.status,
            comments.join(" "),
            stderr.trim()
        ));
    }
    reply
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Question,
    Answer,
    Authority,
    Additional,
    Opt,
}

/// Parses `dig +yaml` output: `- type: MESSAGE` documents with a
/// `response_message_data` map (opcode, status, flags, OPT_PSEUDOSECTION, and the
/// sections as lists of single-quoted record strings), or `- type: DIG_ERROR`.
fn parse_dig_yaml(text: &str) -> Reply {
    let mut r = Reply::default();
    let mut in_data = false;
    let mut in_error = false;
    let mut section: Option<Section> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with(';') {
            continue;
        }
        if t == "- type: MESSAGE" {
            r.messages += 1;
            in_data = false;
            in_error = false;
            section = None;
            continue;
        }
        if t == "- type: DIG_ERROR" {
            in_error = true;
            in_data = false;
            continue;
        }
        if in_error {
            if t != "message: |" {
                let e = r.error.get_or_insert_with(String::new);
                if !e.is_empty() {
                    e.push(' ');
                }
                e.push_str(t);
            }
            continue;
        }
        if t == "response_message_data:" {
            in_data = true;
            continue;
        }
        if !in_data {
            continue;
        }
        let first = r.messages == 1;
        let new_section = match t {
            "QUESTION_SECTION:" => Some(Section::Question),
            "ANSWER_SECTION:" => Some(Section::Answer),
            "AUTHORITY_SECTION:" => Some(Section::Authority),
            "ADDITIONAL_SECTION:" => Some(Section::Additional),
            "OPT_PSEUDOSECTION:" => Some(Section::Opt),
            _ => None,
        };
        if let Some(s) = new_section {
            section = Some(s);
            if s == Section::Opt && first {
                r.edns = Some(Edns::default());
            }
            continue;
        }
        if let Some(item) = t.strip_prefix("- ") {
            let text = unquote(item);
            match section {
                Some(Section::Question) if first => r.question.push(text),
                Some(Section::Answer) => r.answer.push(parse_rr(&text)),
                Some(Section::Authority) => r.authority.push(parse_rr(&text)),
                Some(Section::Additional) => r.additional.push(parse_rr(&text)),
                _ => {}
            }
            continue;
        }
        if !first {
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match section {
            None => match key {
                "opcode" => r.opcode = value,
                "status" => r.status = value,
                "flags" => r.flags = value,
                _ => {}
            },
            Some(Section::Opt) => {
                let e = r.edns.get_or_insert_with(Edns::default);
                match key {
                    "EDNS" => {}
                    "version" => e.version = value,
                    "flags" => e.flags = value,
                    "udp" => e.udp = value,
                    _ => e.options.push(t.to_string()),
                }
            }
            _ => {}
        }
    }
    r
}

/// A YAML scalar as dig writes it: '...' with '' for a quote, or "..." with escapes.
fn unquote(s: &str) -> String {
    if let Some(inner) = s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else if let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        s.to_string()
    }
}

/// `owner ttl class type rdata...` → comparable form.
fn parse_rr(text: &str) -> Rr {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.len() < 4 {
        return Rr {
            key: text.to_string(),
            rtype: String::new(),
            ttl: String::new(),
        };
    }
    let owner = tokens[0].to_lowercase();
    let (ttl, class, rtype) = (tokens[1], tokens[2], tokens[3]);
    let rdata = tokens[4..].join(" ");
    // Names in RDATA compare case-insensitively (compression copies the question's
    // case into them); TXT strings are data.
    let rdata = if matches!(rtype, "TXT" | "SPF") {
        rdata
    } else {
        rdata.to_lowercase()
    };
    Rr {
        key: format!("{owner} {class} {rtype} {rdata}")
            .trim_end()
            .to_string(),
        rtype: rtype.to_string(),
        ttl: ttl.to_string(),
    }
}

// ---------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------

/// One field that differs between the reference (NSD) and the other server.
#[derive(Debug, Clone)]
struct Diff {
    query: String,
    field: String,
    reference: String,
    other: String,
}

struct Run {
    /// NSD's reply per query line (for the sanity checks).
    reference: BTreeMap<String, Reply>,
    diffs: Vec<Diff>,
    /// Differences that do not fail the test (TTLs, EDNS buffer size and options,
    /// message count of transfers).
    notes: Vec<Diff>,
    queries: usize,
}

fn compare_servers(queries: &[Query], reference_port: u16, other_port: u16) -> Run {
    let mut run = Run {
        reference: BTreeMap::new(),
        diffs: Vec::new(),
        notes: Vec::new(),
        queries: queries.len(),
    };
    for q in queries {
        let a = dig(reference_port, &q.args);
        let b = dig(other_port, &q.args);
        let full = q.additional_subset.then(|| {
            let mut args = q.args.clone();
            args.push("+tcp".into());
            dig(reference_port, &args)
        });
        compare_replies(q, &a, &b, full.as_ref(), &mut run);
        run.reference.insert(q.key.clone(), a);
    }
    run
}

fn sorted_keys(rrs: &[Rr]) -> Vec<String> {
    let mut v: Vec<String> = rrs.iter().map(|r| r.key.clone()).collect();
    v.sort();
    v
}

/// Record → its TTLs (sorted).
fn ttl_map(rrs: &[Rr]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rrs {
        m.entry(r.key.clone()).or_default().push(r.ttl.clone());
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

/// Elements of `a` not in `b` (multiset difference).
fn minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest: Vec<&String> = b.iter().collect();
    let mut out = Vec::new();
    for x in a {
        if let Some(i) = rest.iter().position(|y| *y == x) {
            rest.swap_remove(i);
        } else {
            out.push(x.clone());
        }
    }
    out
}

fn show_list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(" | ")
    }
}

fn edns_summary(e: &Option<Edns>) -> String {
    match e {
        None => "no OPT".into(),
        Some(e) => format!("OPT version {} flags [{}]", e.version, e.flags),
    }
}

fn compare_replies(q: &Query, a: &Reply, b: &Reply, full: Option<&Reply>, run: &mut Run) {
    // (field, NSD's value, the other's value); routed to diffs or notes at the end.
    let mut diffs: Vec<(String, String, String)> = Vec::new();
    let mut notes: Vec<(String, String, String)> = Vec::new();
    match (&a.error, &b.error) {
        (None, None) => {}
        // Neither answered: nothing more to compare.
        (Some(_), Some(_)) => {}
        (x, y) => {
            let show = |e: &Option<String>| e.clone().unwrap_or_else(|| "a reply".into());
            diffs.push(("reply".into(), show(x), show(y)));
        }
    }
    if a.error.is_none() && b.error.is_none() {
        compare_fields(q, a, b, full, &mut diffs, &mut notes);
    }
    for (field, x, y) in diffs {
        let ignored = q.ignore.contains(&field);
        let (target, field) = if ignored {
            (&mut run.notes, format!("{field} (ignored for this query)"))
        } else {
            (&mut run.diffs, field)
        };
        target.push(Diff {
            query: q.key.clone(),
            field,
            reference: x,
            other: y,
        });
    }
    for (field, x, y) in notes {
        run.notes.push(Diff {
            query: q.key.clone(),
            field,
            reference: x,
            other: y,
        });
    }
}

fn compare_fields(
    q: &Query,
    a: &Reply,
    b: &Reply,
    full: Option<&Reply>,
    diffs: &mut Vec<(String, String, String)>,
    notes: &mut Vec<(String, String, String)>,
) {
    let mut diff = |field: &str, x: String, y: String| diffs.push((field.into(), x, y));
    for (field, x, y) in [
        ("opcode", &a.opcode, &b.opcode),
        ("rcode", &a.status, &b.status),
    ] {
        if x != y {
            diff(field, x.clone(), y.clone());
        }
    }
    // Header flags; those named in `!ignore=` only make a note.
    let kept = |flags: &str| -> String {
        flags
            .split_whitespace()
            .filter(|f| !q.ignore.iter().any(|i| i == f))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if kept(&a.flags) != kept(&b.flags) {
        diff("flags", a.flags.clone(), b.flags.clone());
    } else if a.flags != b.flags {
        notes.push((
            format!("flags (ignored here: {})", q.ignore.join(",")),
            a.flags.clone(),
            b.flags.clone(),
        ));
    }
    if edns_summary(&a.edns) != edns_summary(&b.edns) {
        diff("edns", edns_summary(&a.edns), edns_summary(&b.edns));
    }
    if a.question != b.question {
        diff("question", show_list(&a.question), show_list(&b.question));
    }
    let mut sections = vec![
        ("answer", &a.answer, &b.answer),
        ("authority", &a.authority, &b.authority),
    ];
    if full.is_none() {
        sections.push(("additional", &a.additional, &b.additional));
    }
    for (field, x, y) in sections {
        let (xs, ys) = (sorted_keys(x), sorted_keys(y));
        if xs != ys {
            diff(
                field,
                format!("only here: {}", show_list(&minus(&xs, &ys))),
                format!("only here: {}", show_list(&minus(&ys, &xs))),
            );
        }
    }
    if let Some(full) = full {
        let all = sorted_keys(&full.additional);
        let extra_a = minus(&sorted_keys(&a.additional), &all);
        let extra_b = minus(&sorted_keys(&b.additional), &all);
        if !extra_a.is_empty() || !extra_b.is_empty() {
            diff(
                "additional (must be a subset of NSD's full additional over TCP)",
                format!("not in the full set: {}", show_list(&extra_a)),
                format!("not in the full set: {}", show_list(&extra_b)),
            );
        }
    }
    if is_transfer(q) {
        let ends = |r: &Reply| match (r.answer.first(), r.answer.last()) {
            (Some(f), Some(l)) => format!("first {} last {}", f.rtype, l.rtype),
            _ => "empty".into(),
        };
        if ends(a) != ends(b) {
            diff("transfer first/last record", ends(a), ends(b));
        }
    }
    // Notes: reported, never failing.
    let mut note = |field: &str, x: String, y: String| notes.push((field.into(), x, y));
    for (field, x, y) in [
        ("answer TTLs", &a.answer, &b.answer),
        ("authority TTLs", &a.authority, &b.authority),
        ("additional TTLs", &a.additional, &b.additional),
    ] {
        // Records present on both sides, with other TTLs.
        let (tx, ty) = (ttl_map(x), ttl_map(y));
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for (key, ttls_x) in &tx {
            if let Some(ttls_y) = ty.get(key).filter(|t| *t != ttls_x) {
                xs.push(format!("{key} ttl {}", ttls_x.join(",")));
                ys.push(format!("{key} ttl {}", ttls_y.join(",")));
            }
        }
        if !xs.is_empty() {
            note(field, show_list(&xs), show_list(&ys));
        }
    }
    if let (Some(x), Some(y)) = (&a.edns, &b.edns) {
        if x.udp != y.udp {
            note("EDNS UDP size", x.udp.clone(), y.udp.clone());
        }
        if x.options != y.options {
            note("EDNS options", show_list(&x.options), show_list(&y.options));
        }
    }
    if is_transfer(q) && a.messages != b.messages {
        note(
            "transfer messages",
            a.messages.to_string(),
            b.messages.to_string(),
        );
    }
}

impl Run {
    fn report(&self, a: &str, b: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "=== DNS comparison: {} queries, {} difference(s), {} note(s); reference {a}, \
             compared {b}",
            self.queries,
            self.diffs.len(),
            self.notes.len()
        );
        for d in &self.diffs {
            let _ = writeln!(
                out,
                "DIFF  query: {}\n      field: {}\n      {a}: {}\n      {b}: {}",
                d.query, d.field, d.reference, d.other
            );
        }
        // Notes grouped by (field, values): one line per kind with the queries.
        let mut grouped: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        for n in &self.notes {
            grouped
                .entry((n.field.clone(), n.reference.clone(), n.other.clone()))
                .or_default()
                .push(n.query.clone());
        }
        for ((field, x, y), qs) in grouped {
            let shown: Vec<&str> = qs.iter().take(3).map(String::as_str).collect();
            let more = if qs.len() > 3 {
                format!(" and {} more", qs.len() - 3)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "NOTE  {field}: {a}: {x} / {b}: {y}  ({} quer{}: {}{more})",
                qs.len(),
                if qs.len() == 1 { "y" } else { "ies" },
                shown.join(", ")
            );
        }
        let _ = writeln!(out, "=== end of DNS comparison");
        out
    }
}

/// NSD's replies hold what they must, so equal replies are not equally empty.
fn sanity_check_reference(run: &Run) {
    let get = |line: &str| -> &Reply {
        let r = run
            .reference
            .get(line)
            .unwrap_or_else(|| panic!("sanity check: query `{line}` not in dns_queries.txt"));
        assert!(
            r.error.is_none(),
            "sanity check: NSD did not answer `{line}`: {:?}",
            r.error
        );
        r
    };
    let has = |rrs: &[Rr], key: &str| rrs.iter().any(|r| r.key == key);
    let r = get("www.cluster.com.ec A");
    assert_eq!(r.status, "NOERROR", "{r:?}");
    assert!(r.flags.split(' ').any(|f| f == "aa"), "{r:?}");
    assert!(
        has(&r.answer, "www.cluster.com.ec. IN A 10.0.0.100"),
        "{r:?}"
    );
    assert!(r.edns.is_some(), "{r:?}");
    let r = get("wWw.ClUsTeR.CoM.eC A");
    assert_eq!(r.question, ["wWw.ClUsTeR.CoM.eC. IN A"], "{r:?}");
    assert!(
        has(&r.answer, "www.cluster.com.ec. IN A 10.0.0.100"),
        "{r:?}"
    );
    let r = get("webmail.cluster.com.ec A");
    assert_eq!(r.answer.len(), 2, "{r:?}");
    let r = get("nx.cluster.com.ec A");
    assert_eq!(r.status, "NXDOMAIN", "{r:?}");
    assert!(r.authority.iter().any(|rr| rr.rtype == "SOA"), "{r:?}");
    let r = get("_tcp.cluster.com.ec SRV");
    assert_eq!(r.status, "NOERROR", "{r:?}");
    assert!(r.answer.is_empty(), "{r:?}");
    let r = get("100.0.0.10.in-addr.arpa PTR");
    assert!(
        has(
            &r.answer,
            "100.0.0.10.in-addr.arpa. IN PTR mail.cluster.com.ec."
        ),
        "{r:?}"
    );
    let r = get("txt.big.test TXT");
    assert!(
        r.answer.iter().any(|rr| rr.key.contains(&"b".repeat(200))),
        "{r:?}"
    );
    assert_eq!(get("example.org A").status, "REFUSED");
    assert_eq!(get("version.bind TXT CH").status, "REFUSED");
    assert_eq!(get("-b 127.0.0.2 cluster.com.ec AXFR").status, "REFUSED");
    let r = get("cluster.com.ec AXFR");
    assert_eq!(r.answer.len(), 18, "{r:?}");
    assert_eq!(r.answer[0].rtype, "SOA");
    assert!(get("many.big.test A +bufsize=512").flags.contains("tc"));
    assert!(get("many.big.test A +noedns").flags.contains("tc"));
    assert!(!get("many.big.test A").flags.contains("tc"));
    assert_eq!(get("many.big.test A +tcp").answer.len(), 40);
    assert_eq!(get("huge.big.test A +tcp").answer.len(), 100);
    let r = get("mx.big.test MX +bufsize=512");
    assert!(!r.flags.contains("tc") && r.answer.len() == 20, "{r:?}");
    assert_eq!(get("www.cluster.com.ec A +opcode=status").status, "NOTIMP");
    assert_eq!(
        get("www.cluster.com.ec A +edns=1 +noednsnegotiation").status,
        "BADVERS"
    );
}

// ---------------------------------------------------------------------------------
// Malformed packets
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// FORMERR (QR set, same ID) or no reply / connection closed.
    FormerrOrDrop,
    /// Any well-formed reply (QR set, same ID, at least a header) or none.
    AnyReplyOrDrop,
    /// Nothing: a response must never be answered.
    NoReply,
}

/// Hand-made malformed messages.
fn malformed_cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let id = 0x4d4d;
    let q = {
        let mut q = encode_name("www.cluster.com.ec");
        q.extend(TYPE_A.to_be_bytes());
        q.extend(1u16.to_be_bytes());
        q
    };
    let tail = |mut p: Vec<u8>, rest: &[u8]| {
        p.extend_from_slice(rest);
        p
    };
    let qtype_class = [0u8, 1, 0, 1];
    let hdr1 = || header(id, FLAG_RD, 1, 0, 0, 0);
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(63u8);
        long_name.extend(std::iter::repeat_n(b'a', 63));
    }
    long_name.extend(encode_name("cluster.com.ec"));
    let mut label64 = vec![64u8];
    label64.extend(std::iter::repeat_n(b'a', 64));
    label64.extend(encode_name("cluster.com.ec"));
    let opt = opt_record();
    let mut bad_rdlen_opt = opt.clone();
    let n = bad_rdlen_opt.len();
    bad_rdlen_opt[n - 2..].copy_from_slice(&8u16.to_be_bytes());
    bad_rdlen_opt.extend([0, 10, 0, 2, b'a', b'b']);
    let mut non_root_opt = vec![1u8, b'a', 0];
    non_root_opt.extend_from_slice(&opt[1..]);
    vec![
        (
            "truncated header (5 bytes)",
            vec![0x4d, 0x4d, 0x01, 0x00, 0x00],
            FormerrOrDrop,
        ),
        (
            "header claiming 1 question, no question bytes",
            hdr1(),
            FormerrOrDrop,
        ),
        ("QDCOUNT 0", header(id, FLAG_RD, 0, 0, 0, 0), FormerrOrDrop),
        (
            "QDCOUNT 2",
            tail(
                tail(header(id, FLAG_RD, 2, 0, 0, 0), &q),
                &query(0, "mail.cluster.com.ec", TYPE_A)[12..],
            ),
            FormerrOrDrop,
        ),
        (
            "compression pointer to itself",
            tail(hdr1(), &[0xc0, 0x0c, 0, 1, 0, 1]),
            FormerrOrDrop,
        ),
        (
            "compression pointer loop of two",
            tail(
                hdr1(),
                &[3, b'w', b'w', b'w', 0xc0, 0x12, 0xc0, 0x0c, 0, 1, 0, 1],
            ),
            FormerrOrDrop,
        ),
        (
            "compression pointer past the end",
            tail(hdr1(), &[0xff, 0xff, 0, 1, 0, 1]),
            FormerrOrDrop,
        ),
        (
            "label length 64",
            tail(tail(hdr1(), &label64), &qtype_class),
            FormerrOrDrop,
        ),
        (
            "reserved label type 0x80",
            tail(hdr1(), &[0x80, b'a', b'b', b'c', 0, 0, 1, 0, 1]),
            FormerrOrDrop,
        ),
        (
            "name longer than 255 octets",
            tail(tail(hdr1(), &long_name), &qtype_class),
            FormerrOrDrop,
        ),
        (
            "name cut mid-label",
            tail(hdr1(), &[3, b'w', b'w', b'w', 7, b'c', b'l', b'u']),
            FormerrOrDrop,
        ),
        (
            "question without QTYPE and QCLASS",
            tail(hdr1(), &encode_name("www.cluster.com.ec")),
            FormerrOrDrop,
        ),
        (
            "ANCOUNT 1 without the record",
            tail(header(id, FLAG_RD, 1, 1, 0, 0), &q),
            FormerrOrDrop,
        ),
        (
            "two OPT records",
            tail(tail(tail(header(id, FLAG_RD, 1, 0, 0, 2), &q), &opt), &opt),
            FormerrOrDrop,
        ),
        (
            "OPT record cut short",
            tail(
                tail(header(id, FLAG_RD, 1, 0, 0, 1), &q),
                &opt[..opt.len() - 1],
            ),
            FormerrOrDrop,
        ),
        (
            "OPT RDLENGTH past the end",
            tail(tail(header(id, FLAG_RD, 1, 0, 0, 1), &q), &bad_rdlen_opt),
            FormerrOrDrop,
        ),
        (
            "OPT with a non-root owner",
            tail(tail(header(id, FLAG_RD, 1, 0, 0, 1), &q), &non_root_opt),
            FormerrOrDrop,
        ),
        (
            "QR=1: a response sent as a query",
            tail(header(id, FLAG_QR | FLAG_RD, 1, 0, 0, 0), &q),
            NoReply,
        ),
        (
            "QR=1 with an answer record",
            {
                let mut p = tail(header(id, FLAG_QR | 0x0400 | FLAG_RD, 1, 1, 0, 0), &q);
                p.extend([
                    0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 0, 0, 100,
                ]);
                p
            },
            NoReply,
        ),
        (
            "QR=1 and malformed (pointer loop)",
            tail(header(id, FLAG_QR, 1, 0, 0, 0), &[0xc0, 0x0c, 0, 1, 0, 1]),
            NoReply,
        ),
    ]
}

/// Deterministic xorshift64* generator (fixed seed: the same 200 packets every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// 200 random packets: pure noise, a query header followed by noise, and a valid
/// query (with EDNS) with a few bytes changed.
fn random_packets() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_d15c_0de5_2026);
    let mut base = query(0, "www.cluster.com.ec", TYPE_A);
    base[11] = 1; // ARCOUNT 1
    base.extend(opt_record());
    (0..200)
        .map(|i| match i % 3 {
            0 => {
                let n = rng.below(513) as usize;
                rng.bytes(n)
            }
            1 => {
                let mut p = header(rng.next() as u16, FLAG_RD, 1, 0, 0, 0);
                let n = rng.below(301) as usize;
                p.extend(rng.bytes(n));
                p
            }
            _ => {
                let mut p = base.clone();
                p[0] = rng.next() as u8;
                p[1] = rng.next() as u8;
                for _ in 0..=rng.below(8) {
                    let at = rng.below(p.len() as u64) as usize;
                    p[at] = rng.next() as u8;
                }
                p
            }
        })
        .collect()
}

/// Checks one reply against the expectation; None when acceptable.
fn judge(sent: &[u8], reply: Option<&[u8]>, expect: Expect) -> Option<String> {
    let expect = if sent.len() >= 3 && sent[2] & 0x80 != 0 {
        Expect::NoReply
    } else {
        expect
    };
    let r = reply?;
    if expect == Expect::NoReply {
        return Some(format!(
            "answered a packet with QR=1 ({} bytes back)",
            r.len()
        ));
    }
    if r.len() < 12 {
        return Some(format!("reply shorter than a header: {r:02x?}"));
    }
    if r[2] & 0x80 == 0 {
        return Some("reply without QR".into());
    }
    if sent.len() >= 2 && r[..2] != sent[..2] {
        return Some(format!(
            "reply ID {:02x}{:02x} does not match the query's {:02x}{:02x}",
            r[0], r[1], sent[0], sent[1]
        ));
    }
    if expect == Expect::FormerrOrDrop && rcode(r) != RCODE_FORMERR {
        return Some(format!("rcode {} instead of FORMERR (1)", rcode(r)));
    }
    None
}

fn judge_tcp(sent: &[u8], outcome: &TcpOutcome, expect: Expect) -> Option<String> {
    match outcome {
        TcpOutcome::Reply(r) => judge(sent, Some(r), expect),
        TcpOutcome::Closed | TcpOutcome::Silent => None,
        TcpOutcome::Partial(n) => Some(format!("incomplete TCP reply ({n} bytes)")),
        TcpOutcome::NoConnect(e) => Some(format!("TCP connect failed: {e}")),
    }
}

/// A normal query over UDP and over TCP gets the right answer; failures described.
fn probe(port: u16, after: &str) -> Vec<String> {
    let mut out = Vec::new();
    let id = 0x7e57;
    let q = query(id, "www.cluster.com.ec", TYPE_A);
    let good = |r: &[u8]| {
        r.len() >= 12
            && r[..2] == id.to_be_bytes()
            && r[2] & 0x80 != 0
            && rcode(r) == 0
            && u16::from_be_bytes([r[6], r[7]]) >= 1
            && has_a_record(r, [10, 0, 0, 100])
    };
    let udp = (0..3).find_map(|_| udp_exchange(port, &q, Duration::from_secs(2)));
    match udp {
        Some(r) if good(&r) => {}
        Some(r) => out.push(format!(
            "after {after}: UDP `www.cluster.com.ec A` got a wrong reply {r:02x?}"
        )),
        None => out.push(format!(
            "after {after}: UDP `www.cluster.com.ec A` got no reply (3 tries, 2 s each)"
        )),
    }
    match tcp_exchange(port, &q, true, Duration::from_secs(3)) {
        TcpOutcome::Reply(r) if good(&r) => {}
        other => out.push(format!(
            "after {after}: TCP `www.cluster.com.ec A` failed: {other:02x?}"
        )),
    }
    out
}

/// Whether the message holds an A record (type 1, class IN) with this address.
fn has_a_record(msg: &[u8], addr: [u8; 4]) -> bool {
    msg.windows(14)
        .any(|w| w[..4] == [0, 1, 0, 1] && w[8..10] == [0, 4] && w[10..14] == addr)
}

/// Sends every malformed case and the random packets over UDP and TCP; returns what
/// went wrong.
fn hammer(port: u16) -> Vec<String> {
    let mut failures = probe(port, "nothing (start)");
    let timeout = Duration::from_millis(500);
    for (what, packet, expect) in malformed_cases() {
        let reply = udp_exchange(port, &packet, timeout);
        if let Some(f) = judge(&packet, reply.as_deref(), expect) {
            failures.push(format!("UDP {what}: {f}"));
        }
        let outcome = tcp_exchange(port, &packet, true, timeout);
        if let Some(f) = judge_tcp(&packet, &outcome, expect) {
            failures.push(format!("TCP {what}: {f}"));
        }
        failures.extend(probe(port, what));
    }
    failures.extend(tcp_framing_abuse(port));
    failures.extend(probe(port, "TCP framing abuse"));

    let packets = random_packets();
    // UDP: one socket per packet, so every reply maps to its packet; all in flight at
    // once, then read what came back within 1 s.
    let socks: Vec<Option<UdpSocket>> = packets
        .iter()
        .map(|p| {
            let s = UdpSocket::bind("127.0.0.1:0").ok()?;
            s.connect(("127.0.0.1", port)).ok()?;
            s.send(p).ok()?;
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    for (i, (p, s)) in packets.iter().zip(&socks).enumerate() {
        let Some(s) = s else {
            failures.push(format!("UDP random packet {i}: could not send"));
            continue;
        };
        s.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65535];
        let reply = match s.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(_) => None,
        };
        if let Some(f) = judge(p, reply.as_deref(), Expect::AnyReplyOrDrop) {
            failures.push(format!("UDP random packet {i} ({} bytes): {f}", p.len()));
        }
    }
    drop(socks);
    failures.extend(probe(port, "200 random UDP packets"));
    // TCP: one connection per packet, 20 at a time.
    for (chunk_no, chunk) in packets.chunks(20).enumerate() {
        let handles: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|p| {
                std::thread::spawn(move || {
                    let o = tcp_exchange(port, &p, true, Duration::from_secs(1));
                    (p, o)
                })
            })
            .collect();
        for (j, h) in handles.into_iter().enumerate() {
            let (p, o) = h.join().expect("TCP sender thread");
            if let Some(f) = judge_tcp(&p, &o, Expect::AnyReplyOrDrop) {
                failures.push(format!(
                    "TCP random packet {} ({} bytes): {f}",
                    chunk_no * 20 + j,
                    p.len()
                ));
            }
        }
    }
    failures.extend(probe(port, "200 random TCP packets"));
    failures
}

/// Broken TCP framing: zero length, half a length prefix, a length longer than what
/// follows, 64 KiB of noise, and two pipelined queries (both must be answered).
fn tcp_framing_abuse(port: u16) -> Vec<String> {
    let mut failures = Vec::new();
    let t = Duration::from_millis(700);
    // Length 0.
    if let Some(f) = judge_tcp(
        &[],
        &tcp_exchange(port, &[0, 0], false, t),
        Expect::FormerrOrDrop,
    ) {
        failures.push(format!("TCP zero-length message: {f}"));
    }
    // One byte of the length prefix, then the client half-closes.
    // A length of 300 with 12 bytes behind it, then half-close.
    for (what, bytes) in [
        ("half a length prefix, then EOF", vec![0u8]),
        ("length 300 with 12 bytes, then EOF", {
            let mut b = vec![1u8, 44];
            b.extend(header(0x1111, FLAG_RD, 1, 0, 0, 0));
            b
        }),
    ] {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(t));
                let _ = s.write_all(&bytes);
                let _ = s.shutdown(Shutdown::Write);
                match read_framed(&mut s, &mut Vec::new(), t) {
                    TcpOutcome::Closed | TcpOutcome::Silent => {}
                    other => failures.push(format!("TCP {what}: got {other:?}")),
                }
            }
            Err(e) => failures.push(format!("TCP {what}: connect failed: {e}")),
        }
    }
    // 65535 bytes of noise in one frame.
    let mut rng = Rng(0x00c0_ffee);
    let noise = {
        let mut n = header(0x2222, FLAG_RD, 1, 0, 0, 0);
        n.extend(rng.bytes(65535 - 12));
        n
    };
    if let Some(f) = judge_tcp(
        &noise,
        &tcp_exchange(port, &noise, true, Duration::from_secs(2)),
        Expect::AnyReplyOrDrop,
    ) {
        failures.push(format!("TCP 64 KiB of noise: {f}"));
    }
    // Two queries in one write: both answered (RFC 7766 6.2.1.1).
    match TcpStream::connect(("127.0.0.1", port)) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut bytes = Vec::new();
            for (id, name) in [
                (0x0a0a_u16, "www.cluster.com.ec"),
                (0x0b0b, "mail.cluster.com.ec"),
            ] {
                let q = query(id, name, TYPE_A);
                bytes.extend((q.len() as u16).to_be_bytes());
                bytes.extend(q);
            }
            let _ = s.write_all(&bytes);
            let (mut ids, mut buf) = (Vec::new(), Vec::new());
            for _ in 0..2 {
                match read_framed(&mut s, &mut buf, Duration::from_secs(2)) {
                    TcpOutcome::Reply(r) if r.len() >= 12 && rcode(&r) == 0 => {
                        ids.push(u16::from_be_bytes([r[0], r[1]]));
                    }
                    other => {
                        failures.push(format!("TCP pipelined queries: got {other:02x?}"));
                        break;
                    }
                }
            }
            ids.sort_unstable();
            if ids.len() == 2 && ids != [0x0a0a, 0x0b0b] {
                failures.push(format!("TCP pipelined queries: reply IDs {ids:04x?}"));
            }
        }
        Err(e) => failures.push(format!("TCP pipelined queries: connect failed: {e}")),
    }
    failures
}

fn report_hammer(server: &str, failures: &[String], alive: bool, log: &str) {
    let mut report = format!(
        "=== malformed packets against {server}: {} failure(s), process {}\n",
        failures.len(),
        if alive { "alive" } else { "DEAD" }
    );
    for f in failures {
        let _ = writeln!(report, "FAIL  {f}");
    }
    assert!(
        failures.is_empty() && alive,
        "{report}\n--- {server} log\n{log}"
    );
    println!("{report}");
}
