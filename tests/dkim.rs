//! DKIM as a receiver and an administrator see it: the node serves its key's TXT
//! record in its own DNS without a zone-file edit (`dig`), `clusterd dkim show`
//! prints the same record, a message signed by `clusterd dkim sign` verifies with an
//! independent verifier (dkimpy, Debian's python3-dkim, fetching the record from the
//! node's DNS with `dig`, so no real name is resolved), a zone file's own TXT at the
//! selector wins, the key survives a restart, and a key that arrives in the store
//! (as replication brings it) is served and used. End to end: mail submitted for
//! another domain reaches a scripted SMTP server on loopback (its MX served by the
//! node's own DNS) signed, and dkimpy verifies it.

mod common;
mod smtp_client;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, assert_ok, free_port, require_tool, run_with_stdin};

/// Debian's python3, which has python3-dkim (a python3 earlier in PATH may not).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

const OWNER: &str = "clusterd._domainkey.cluster.com.ec";

/// `dig +short TYPE NAME` against the DNS on 127.0.0.1:`port`.
fn dig_short(port: u16, ty: &str, name: &str) -> String {
    require_tool("dig");
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tries=1",
            "+time=3",
            "+short",
        ])
        .args([ty, name])
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The character-strings of the TXT answer for `name`, as `dig +short` prints them.
fn dig_txt(port: u16, name: &str) -> Vec<String> {
    let text = dig_short(port, "TXT", name);
    let mut strings = Vec::new();
    for line in text.lines() {
        let mut rest = line.trim();
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let end = after.find('"').expect("closing quote");
            strings.push(after[..end].to_string());
            rest = &after[end + 1..];
        }
    }
    strings
}

/// `clusterd dkim show`: (zone-file line, owner, value).
fn show(node: &Node) -> (String, String, String) {
    let out = assert_ok(&node.cli(&["dkim", "show"], None), "clusterd dkim show");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
            .trim()
            .to_string()
    };
    let zone_line = out
        .lines()
        .find(|l| l.starts_with(&format!("{OWNER}. IN TXT (")))
        .unwrap_or_else(|| panic!("no zone-file line in:\n{out}"))
        .to_string();
    (zone_line, field("name:"), field("value:"))
}

/// Waits (bounded) until the TXT answer for `name` joined is `want`.
fn wait_txt(port: u16, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = dig_txt(port, name).concat();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "TXT {name} is {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// dkimpy's verdict on `message`, the key fetched from the node's DNS on `port`.
fn dkimpy_verify(port: u16, message: &[u8]) -> String {
    require_tool("dig");
    let probe = Command::new(DEBIAN_PYTHON)
        .args(["-c", "import dkim"])
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        probe.status.success(),
        "dkimpy is missing: install Debian's python3-dkim (.ci/run does)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message).expect("write message");
    let script = r#"
import re, subprocess, sys, dkim
port = sys.argv[2]
def txt(name, timeout=5):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", port, "+tries=1", "+time=3", "+short",
                          "TXT", name.decode()], capture_output=True, text=True, timeout=10).stdout
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', out.splitlines()[0] if out else "")
    return "".join(strings).encode() if strings else None
msg = open(sys.argv[1], "rb").read()
print("pass" if dkim.verify(msg, dnsfunc=txt) else "fail")
"#;
    let mut cmd = Command::new(DEBIAN_PYTHON);
    cmd.args(["-c", script, common::s(&path), &port.to_string()]);
    let out = run_with_stdin(cmd, None);
    assert_ok(&out, "dkimpy verification").trim().to_string()
}

const MESSAGE: &str = "From: Ana <ana@cluster.com.ec>\n\
To: Bob <bob@example.net>\n\
Subject: DKIM from clusterd\n\
Date: Mon, 07 Dec 2026 04:00:00 +0000\n\
Message-ID: <dkim-test-1@cluster.com.ec>\n\
MIME-Version: 1.0\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
Hola Bob,\n\
this message is signed.\n";

#[test]
fn the_record_is_served_and_printed_and_signatures_verify_with_dkimpy() {
    let mut node = Node::start();

    // The record the node serves in its own DNS is the one `dkim show` prints.
    let (zone_line, owner, value) = show(&node);
    assert_eq!(owner, OWNER);
    assert!(value.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "{value}");
    let strings = dig_txt(node.dns_port, OWNER);
    assert!(
        strings.len() >= 3,
        "a 2048-bit key needs several strings: {strings:?}"
    );
    assert!(strings.iter().all(|s| s.len() <= 255), "{strings:?}");
    assert_eq!(strings.concat(), value);
    let quoted: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
    assert_eq!(
        zone_line,
        format!("{OWNER}. IN TXT ( {} )", quoted.join(" "))
    );

    // A message signed by the node verifies with dkimpy; a changed body does not.
    let signed = assert_ok(
        &node.cli(&["dkim", "sign"], Some(MESSAGE)),
        "clusterd dkim sign",
    );
    assert!(
        signed.starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=clusterd; d=cluster.com.ec;"),
        "{signed}"
    );
    assert!(signed.ends_with("this message is signed.\r\n"), "{signed}");
    assert_eq!(dkimpy_verify(node.dns_port, signed.as_bytes()), "pass");
    let tampered = signed.replace("this message is signed", "this message was changed");
    assert_eq!(dkimpy_verify(node.dns_port, tampered.as_bytes()), "fail");

    // Mail from another domain is not signed.
    let foreign = MESSAGE.replace("ana@cluster.com.ec", "ana@example.org");
    let out = node.cli(&["dkim", "sign"], Some(&foreign));
    assert!(!out.status.success(), "signed a foreign From:");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no From: address in cluster.com.ec"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A TXT record at the selector in the zone file wins; removing it brings ours back.
    let zone = node.zones_dir.join("cluster.com.ec.zone");
    let original = std::fs::read_to_string(&zone).unwrap();
    let edited = original.replace("2026112501 ; serial", "2026112502 ; serial")
        + "clusterd._domainkey IN TXT \"v=DKIM1; k=rsa; p=FROMTHEFILE\"\n";
    std::fs::write(&zone, edited).unwrap();
    wait_txt(node.dns_port, OWNER, "v=DKIM1; k=rsa; p=FROMTHEFILE");
    std::fs::write(
        &zone,
        original.replace("2026112501 ; serial", "2026112503 ; serial"),
    )
    .unwrap();
    wait_txt(node.dns_port, OWNER, &value);

    // The key is kept: `dkim show` reads it from the store while no node runs, and the
    // restarted node serves and signs with the same one.
    node.stop();
    let (_, _, stopped) = show(&node);
    assert_eq!(stopped, value);
    let offline = assert_ok(
        &node.cli(&["dkim", "sign"], Some(MESSAGE)),
        "clusterd dkim sign without a running node",
    );
    node.restart();
    assert_eq!(dig_txt(node.dns_port, OWNER).concat(), value);
    assert_eq!(dkimpy_verify(node.dns_port, offline.as_bytes()), "pass");

    // A key that arrives in the store (as replication or a merge writes it; here put
    // into the settings table by hand, with a key from openssl) is served and used
    // within a second or two, and the old signature no longer verifies.
    let new_key = new_key_pem();
    let script = "import sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1], timeout=10)\n\
        db.execute(\"UPDATE settings SET value = ? WHERE key = 'dkim.key.clusterd'\", (sys.argv[2],))\n\
        db.commit()\n\
        print(db.total_changes)\n";
    let mut cmd = Command::new(DEBIAN_PYTHON);
    cmd.args([
        "-c",
        script,
        common::s(&node.data_dir.join("store.db")),
        &new_key,
    ]);
    assert_eq!(
        assert_ok(&run_with_stdin(cmd, None), "setting the new key").trim(),
        "1"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let (_, _, new_value) = loop {
        let shown = show(&node);
        if shown.2 != value {
            break shown;
        }
        assert!(Instant::now() < deadline, "the node kept the old key");
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_txt(node.dns_port, OWNER, &new_value);
    assert_eq!(dkimpy_verify(node.dns_port, offline.as_bytes()), "fail");
    let resigned = assert_ok(
        &node.cli(&["dkim", "sign"], Some(MESSAGE)),
        "clusterd dkim sign with the new key",
    );
    assert_eq!(dkimpy_verify(node.dns_port, resigned.as_bytes()), "pass");
}

/// A new RSA 2048 key in PKCS#8 PEM, made by openssl.
fn new_key_pem() -> String {
    require_tool("openssl");
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("run openssl");
    let pem = assert_ok(&out, "openssl genpkey");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    pem
}

#[test]
fn dkim_off_serves_no_record_and_signs_nothing() {
    let node = Node::builder().outbound("dkim = false").start();
    assert!(dig_txt(node.dns_port, OWNER).is_empty());
    let out = node.cli(&["dkim", "show"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outbound.dkim = false"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A one-connection SMTP server on `listener` that accepts one message and returns
/// it (dot-unstuffed, CRLF), or None if nothing arrived within 30 s.
fn sink_one(listener: TcpListener) -> std::thread::JoinHandle<Option<Vec<u8>>> {
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return None,
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        w.write_all(b"220 sink.example.net ESMTP\r\n").ok()?;
        let mut message = None;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return message;
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-sink.example.net\r\n250 8BITMIME\r\n",
                "DATA" => {
                    w.write_all(b"354 go ahead\r\n").ok()?;
                    let mut data = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        if r.read_until(b'\n', &mut l).ok()? == 0 {
                            return None;
                        }
                        if l == b".\r\n" {
                            break;
                        }
                        let l = if l.starts_with(b"..") {
                            &l[1..]
                        } else {
                            &l[..]
                        };
                        data.extend_from_slice(l);
                    }
                    message = Some(data);
                    b"250 2.0.0 accepted\r\n"
                }
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n");
                    return message;
                }
                _ => b"250 ok\r\n",
            };
            w.write_all(reply).ok()?;
        }
    })
}

#[test]
fn mail_leaving_for_another_domain_is_signed_and_dkimpy_verifies_it() {
    // The node's DNS also serves example.net, whose MX is the sink on loopback; the
    // node resolves outbound mail through its own DNS.
    let dns_port = free_port();
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    let sink_port = sink.local_addr().unwrap().port();
    let node = Node::builder()
        .dns(&format!("listen = [\"127.0.0.1:{dns_port}\"]"))
        .outbound(&format!(
            "resolvers = [\"127.0.0.1:{dns_port}\"]\nmx_port = {sink_port}"
        ))
        .start();
    std::fs::write(
        node.zones_dir.join("example.net.zone"),
        "$ORIGIN example.net.\n$TTL 60\n\
         @ IN SOA ns.example.net. hostmaster.example.net. 1 60 60 60 60\n\
         @ IN NS ns.example.net.\n@ IN MX 10 mx.example.net.\n\
         ns IN A 127.0.0.1\nmx IN A 127.0.0.1\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dig_short(dns_port, "MX", "example.net").trim().is_empty() {
        assert!(Instant::now() < deadline, "example.net MX not served");
        std::thread::sleep(Duration::from_millis(100));
    }
    node.add_user("ana", "pw-ana");
    let received = sink_one(sink);
    let auth = ["-tls", "-a", "PLAIN", "-au", "ana", "-ap", "pw-ana"];
    let mail = ["--from", "ana@cluster.com.ec", "--to", "bob@example.net"];
    let content = [
        "--header",
        "Subject: signed on its way out",
        "--body",
        "Hola Bob.",
    ];
    let (ok, log) =
        smtp_client::swaks(node.submission_port, &[&auth[..], &mail, &content].concat());
    assert!(ok, "swaks failed:\n{log}");
    let message = received
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("nothing reached the sink; node log:\n{}", node.log_text()));
    let text = String::from_utf8_lossy(&message);
    assert!(
        text.starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=clusterd; d=cluster.com.ec;"),
        "{text}"
    );
    assert!(text.contains("Subject: signed on its way out"), "{text}");
    assert_eq!(dkimpy_verify(dns_port, &message), "pass", "{text}");
}
