//! The fuzz targets' entries: one function per parser that faces bytes from outside
//! (a client, a peer, the administrator's files), each taking arbitrary bytes and
//! checking what must hold whatever they are — no panic, no unbounded work, and the
//! invariants noted at each. The harness is `fuzz/` (libFuzzer, built on stable Rust;
//! see `fuzz/README.md`); `tests/fuzz_corpus.rs` replays the checked-in corpora
//! through these same functions in every `cargo test`.
//!
//! Entries that need private parts of a module live in that module
//! (`smtp::fuzz_session`, `imap::fuzz_command`, `replication::fuzz_frames`) and are
//! gathered here.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock, RwLock};

/// The names of the targets, as `fuzz/` and the corpus directories know them.
pub const TARGETS: &[&str] = &[
    "smtp",
    "imap",
    "dns",
    "zone",
    "config",
    "mime",
    "heartbeat",
    "replication",
    "html",
];

/// Runs target `name` on `input`; false for an unknown name.
pub fn run(name: &str, input: &[u8]) -> bool {
    match name {
        "smtp" => {
            crate::smtp::fuzz_session(input);
        }
        "imap" => crate::imap::fuzz_command(input),
        "dns" => dns(input),
        "zone" => zone(input),
        "config" => config(input),
        "mime" => mime(input),
        "heartbeat" => heartbeat(input),
        "replication" => crate::replication::fuzz_frames(input),
        "html" => html(input),
        _ => return false,
    }
    true
}

/// A query (UDP and TCP paths, with and without recursion) against a server holding
/// one small zone.
pub fn dns(input: &[u8]) {
    static SERVER: OnceLock<Arc<crate::dns::Server>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let zone = crate::dns::Zone::parse(SAMPLE_ZONE, "example.com", "fuzz.zone")
            .expect("the sample zone parses");
        let zones = crate::dns::Zones::from_zones(vec![zone]);
        let cfg = crate::config::DnsConfig {
            axfr_from: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        crate::dns::Server::new(cfg, Arc::new(RwLock::new(Arc::new(zones))))
    });
    let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for (recursion, tcp) in [(false, false), (true, false), (false, true)] {
        let n = server.answer_bytes(input, src, recursion, tcp);
        // A UDP answer never exceeds what the query allowed (at most 64 KiB).
        if !tcp {
            assert!(n <= 65_535, "a {n}-byte UDP answer");
        }
    }
}

const SAMPLE_ZONE: &str = "$TTL 300\n\
@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n\
@ IN NS ns1\n\
ns1 IN A 10.0.0.1\n\
@ IN MX 10 mail\n\
mail IN A 10.0.0.100\n\
www IN CNAME mail\n\
@ IN TXT \"v=spf1 mx -all\"\n\
mail IN AAAA fd00::1\n";

/// A zone file, under an origin taken from its first line.
pub fn zone(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let _ = crate::dns::Zone::parse(&text, "example.com", "fuzz.zone");
}

/// A configuration file; an error must name the file.
pub fn config(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Err(e) = crate::config::Config::parse(&text, std::path::Path::new("fuzz.toml")) {
        assert!(
            e.0.contains("fuzz.toml"),
            "an error without the file: {}",
            e.0
        );
    }
}

/// A message: the MIME tree, IMAP's ENVELOPE and BODYSTRUCTURE, the webmail's
/// summary.
pub fn mime(input: &[u8]) {
    let _ = crate::mail::mime::parse(input);
    let _ = crate::imap::mime::envelope(input);
    let _ = crate::imap::mime::body_structure(input, true);
    let _ = crate::webmail::list::Summary::parse(input);
}

/// A datagram as a heartbeat, and the bytes as a serial line's stream of frames; and
/// a heartbeat built from the bytes, which must come back equal from its frame, also
/// when the frame is buried in line noise.
pub fn heartbeat(input: &[u8]) {
    use crate::cluster::wire::{FrameReader, Heartbeat, MAX_NODE_NAME, decode, encode};
    const KEY: &[u8] = b"0123456789abcdef-fuzz-key";
    let _ = decode(input, KEY);
    if input.len() >= 36 {
        let word = |i: usize| u64::from_le_bytes(input[i..i + 8].try_into().unwrap());
        let name: String = String::from_utf8_lossy(&input[36..])
            .chars()
            .take(MAX_NODE_NAME / 4)
            .collect();
        let hb = Heartbeat {
            node: name,
            boot_id: word(0),
            seq: word(8),
            role: input[16] % 3,
            epoch: word(17),
            store_seq: word(25),
            healthy: input[33] & 1 != 0,
            ping_ok: input[33] & 2 != 0,
            request: input[34] % 3,
            vip_held: input[35] & 1 != 0,
        };
        let frame = encode(&hb, KEY);
        assert_eq!(
            decode(&frame, KEY).ok().as_ref(),
            Some(&hb),
            "a heartbeat's round trip"
        );
        let mut noisy = input[..36].to_vec();
        noisy.extend_from_slice(&frame);
        let mut reader = FrameReader::with_key(KEY);
        let got = reader.push(&noisy);
        assert!(
            got.iter()
                .any(|f| decode(f, KEY).ok().as_ref() == Some(&hb)),
            "the serial reader lost a whole frame behind noise"
        );
    }
    let mut reader = FrameReader::with_key(KEY);
    for frame in reader.push(input) {
        // What the reader hands out is a frame that authenticates.
        assert!(
            crate::cluster::wire::decode(&frame, KEY).is_ok(),
            "the serial reader passed a frame that does not decode"
        );
    }
}

/// An HTML body through the webmail's sanitiser; what comes out holds no script.
pub fn html(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let no_cid = |_: &str| None;
    let out = crate::webmail::sanitize::sanitize_html(
        &text,
        &crate::webmail::sanitize::Options {
            allow_remote_images: false,
            cid_url: &no_cid,
        },
    );
    // The serialiser escapes `<` and `>` in text and attribute values, so every `<`
    // in the output opens a tag: look at the tags' names and attributes only (text,
    // and a title that says "onerror=", may say anything).
    let lower = out.html.to_ascii_lowercase();
    for tag in lower.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let name_end = tag
            .find(|c: char| c.is_ascii_whitespace() || c == '/')
            .unwrap_or(tag.len());
        assert!(
            tag.get(..name_end) != Some("script"),
            "the sanitiser let a script element through: <{tag}>"
        );
        for (attr, value) in attributes(&tag[name_end..]) {
            assert!(
                !attr.starts_with("on") && !value.trim_start().starts_with("javascript:"),
                "the sanitiser let a script through: <{tag}>"
            );
        }
    }
}

/// The attributes of a serialised start tag (after its name): names and unquoted
/// values.
fn attributes(mut rest: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return out;
        }
        let end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..end];
        rest = &rest[end..];
        let mut value = "";
        if let Some(after) = rest.strip_prefix('=') {
            match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let close = body.find(q).unwrap_or(body.len());
                    value = &body[..close];
                    rest = body.get(close + 1..).unwrap_or("");
                }
                _ => {
                    let close = after
                        .find(|c: char| c.is_ascii_whitespace())
                        .unwrap_or(after.len());
                    value = &after[..close];
                    rest = &after[close..];
                }
            }
        }
        out.push((name, value));
    }
}
