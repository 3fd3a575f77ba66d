//! DNS as the administrator and the LAN see it: zone edits are served without a
//! restart and a broken edit keeps the old data; `clusterd check-zone`; names outside
//! our zones are forwarded (and cached) for `recursion_from` clients and REFUSED for
//! others. Clients are `dig`; the upstream is a second clusterd node on another
//! loopback address, authoritative for example.net.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, bin, require_tool, within};

/// `dig +short`-style answer lines and the status of one query.
struct Dig {
    status: String,
    answers: Vec<String>,
    flags: String,
}

fn dig(port: u16, source: &str, name: &str, ty: &str) -> Dig {
    dig_at("127.0.0.1", port, source, name, ty)
}

fn dig_at(server: &str, port: u16, source: &str, name: &str, ty: &str) -> Dig {
    require_tool("dig");
    let out = Command::new("dig")
        .args([
            &format!("@{server}"),
            "-p",
            &port.to_string(),
            "-b",
            source,
            "+tries=1",
            "+time=3",
            name,
            ty,
        ])
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_string();
    let flags = text
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_default()
        .to_string();
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in text.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
        } else if line.is_empty() || line.starts_with(";;") {
            in_answer = false;
        } else if in_answer {
            answers.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    Dig {
        status,
        answers,
        flags,
    }
}

fn a_record(d: &Dig) -> Option<String> {
    d.answers
        .iter()
        .find(|l| l.split(' ').nth(3) == Some("A"))
        .and_then(|l| l.split(' ').nth(4))
        .map(str::to_string)
}

fn ttl(d: &Dig) -> u32 {
    d.answers
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|t| t.parse().ok())
        .expect("an answer with a TTL")
}

#[test]
fn edited_zone_is_served_within_two_seconds_and_a_broken_edit_keeps_the_old_answer() {
    let node = Node::start();
    let www = |n: &Node| a_record(&dig(n.dns_port, "127.0.0.1", "www.cluster.com.ec", "A"));
    assert_eq!(www(&node).as_deref(), Some("10.0.0.100"));

    let file = node.zones_dir.join("cluster.com.ec.zone");
    let original = std::fs::read_to_string(&file).unwrap();
    let edited = original
        .replace("2026112501 ; serial", "2026112502 ; serial")
        .replace(
            "www             IN A    10.0.0.100",
            "www             IN A    10.0.0.101",
        );
    assert_ne!(edited, original, "the test's edit must change the zone");
    std::fs::write(&file, &edited).unwrap();
    let edited_at = Instant::now();
    assert!(
        within(Duration::from_secs(2), || www(&node).as_deref()
            == Some("10.0.0.101")),
        "the edited record was not served within 2 s"
    );
    eprintln!("new answer served after {:?}", edited_at.elapsed());

    // A broken edit: the previous zone keeps serving and the log names file and line.
    let broken = edited.replace(
        "cliente         IN A    10.0.0.10",
        "cliente         IN A    10.0.0.999",
    );
    std::fs::write(&file, &broken).unwrap();
    let logged = within(Duration::from_secs(3), || {
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        log.contains("cluster.com.ec.zone") && log.contains("previous version")
    });
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(logged, "no error logged for the broken zone:\n{log}");
    let error_line = log
        .lines()
        .find(|l| l.contains("previous version"))
        .unwrap();
    assert!(
        error_line.contains("line 24") && error_line.contains("10.0.0.999"),
        "the error must name the line and the bad value: {error_line}"
    );
    assert_eq!(www(&node).as_deref(), Some("10.0.0.101"));
    assert_eq!(
        a_record(&dig(
            node.dns_port,
            "127.0.0.1",
            "cliente.cluster.com.ec",
            "A"
        ))
        .as_deref(),
        Some("10.0.0.10")
    );

    // `clusterd reload` asks the running node to re-read the files now.
    std::fs::write(&file, &original).unwrap();
    let out = node.cli(&["reload"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        within(Duration::from_secs(2), || www(&node).as_deref()
            == Some("10.0.0.100")),
        "the restored zone was not served after reload"
    );
}

#[test]
fn check_zone_accepts_the_shipped_zones_and_names_file_and_line_of_an_error() {
    for zone in ["cluster.com.ec.zone", "0.0.10.in-addr.arpa.zone"] {
        let path = common::repo_zones_dir().join(zone);
        let out = Command::new(bin())
            .arg("check-zone")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{zone}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("cluster.com.ec.zone");
    let text = std::fs::read_to_string(common::repo_zones_dir().join("cluster.com.ec.zone"))
        .unwrap()
        .replace("mail            IN A    10.0.0.100", "mail IN MX mail");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(bin())
        .arg("check-zone")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn names_outside_our_zones_are_forwarded_and_cached_for_recursion_clients_and_refused_for_others() {
    // The upstream: another node on 127.0.0.2, authoritative for example.net.
    let upstream_zones = tempfile::tempdir().unwrap();
    std::fs::write(
        upstream_zones.path().join("example.net.zone"),
        "$ORIGIN example.net.\n$TTL 300\n\
         @ IN SOA ns.example.net. admin.example.net. 1 3600 900 604800 60\n\
         @ IN NS ns.example.net.\n\
         ns IN A 192.0.2.53\n\
         host IN A 192.0.2.7\n",
    )
    .unwrap();
    let up_port = common::free_port();
    let upstream = Node::builder()
        .name("upstream")
        .dns(&format!(
            "listen = [\"127.0.0.2:{up_port}\"]\nzones_dir = \"{}\"",
            upstream_zones.path().display()
        ))
        .start();
    assert_eq!(
        a_record(&dig_at(
            "127.0.0.2",
            up_port,
            "127.0.0.2",
            "host.example.net",
            "A"
        ))
        .as_deref(),
        Some("192.0.2.7"),
        "the upstream serves example.net"
    );

    let node = Node::builder()
        .dns(&format!(
            "recursion_from = [\"127.0.0.1/32\"]\nforwarders = [\"127.0.0.2:{up_port}\"]"
        ))
        .start();
    let first = dig(node.dns_port, "127.0.0.1", "host.example.net", "A");
    assert_eq!(first.status, "NOERROR");
    assert_eq!(a_record(&first).as_deref(), Some("192.0.2.7"));
    assert!(first.flags.contains("ra"), "flags: {}", first.flags);
    assert!(
        !first.flags.contains("aa"),
        "a forwarded answer is not authoritative"
    );

    // Served from the cache: the TTL goes down, and the upstream is no longer needed.
    std::thread::sleep(Duration::from_millis(2100));
    let second = dig(node.dns_port, "127.0.0.1", "host.example.net", "A");
    assert!(
        ttl(&second) < ttl(&first),
        "cached answer keeps counting down: {} then {}",
        ttl(&first),
        ttl(&second)
    );
    drop(upstream);
    let third = dig(node.dns_port, "127.0.0.1", "host.example.net", "A");
    assert_eq!(
        a_record(&third).as_deref(),
        Some("192.0.2.7"),
        "with the upstream stopped the answer comes from the cache"
    );
    // Not cached and no upstream: SERVFAIL.
    let gone = dig(node.dns_port, "127.0.0.1", "ns.example.net", "A");
    assert_eq!(gone.status, "SERVFAIL");

    // A client outside recursion_from is refused; our own zones still answer it.
    let outsider = dig(node.dns_port, "127.0.0.3", "host.example.net", "A");
    assert_eq!(outsider.status, "REFUSED");
    let own = dig(node.dns_port, "127.0.0.3", "www.cluster.com.ec", "A");
    assert_eq!(own.status, "NOERROR");
    assert!(own.flags.contains("aa"));
}
