//! A full disk on the active node of the two-node lab (`cluster_lab`, replicating in
//! sync mode): clusternodo1's data_dir on a 64 MiB tmpfs mounted by the test with
//! `store.min_free_mb = 16`. Filled below the floor, clusternodo1 refuses new mail
//! and reports itself unhealthy, so clusternodo2 takes the VIP and accepts mail (a
//! delivery during the hand-over gets 452, 250 or no answer; `store_disk` checks
//! the 452s and the reads on one node); the filler deleted, clusternodo1
//! accepts again (as the preferred node it takes the service back once it holds
//! everything); every message acknowledged with 250 is on both nodes (equal digests,
//! IMAP on the VIP) and `clusterd verify` is clean on both.
//!
//! Needs root (namespaces, mount); the mount is undone also when the test fails.

mod cluster_lab;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_lab::*;

const REPL_PORT: u16 = 7000;

/// A tmpfs mounted on an existing directory, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount_on(dir: &Path, mb: u64) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t tmpfs failed (the test needs root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One message to ana from the client's namespace to `addr`:25 (smtplib); the
/// server's final reply code, or the code of the command it refused.
fn deliver(lab: &Lab, addr: &str, subject: &str) -> u16 {
    let script = r#"
import smtplib, sys
addr, subject = sys.argv[1], sys.argv[2]
msg = ("From: sender@example.org\r\nTo: ana@cluster.com.ec\r\nSubject: %s\r\n"
       "Message-ID: <%s@example.org>\r\n\r\nbody of %s\r\n") % (subject, subject, subject)
try:
    s = smtplib.SMTP(addr, 25, timeout=15)
    s.ehlo("client.example")
    code, _ = s.mail("sender@example.org")
    if code != 250:
        print(code); sys.exit(0)
    code, _ = s.rcpt("ana@cluster.com.ec")
    if code != 250:
        print(code); sys.exit(0)
    code, _ = s.data(msg.encode())
    print(code)
    s.quit()
except smtplib.SMTPResponseException as e:
    print(e.smtp_code)
except Exception as e:
    print(0)
"#;
    let out = python_in(&lab.client_ns(), script, &[addr, subject]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The subjects in ana's INBOX, by IMAP on the VIP.
fn inbox_subjects(lab: &Lab) -> Vec<String> {
    let script = r#"
import imaplib, ssl, sys
m = imaplib.IMAP4(sys.argv[1], 143, timeout=15)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m.starttls(ssl_context=ctx)
m.login("ana", "secreto-ana-1")
m.select("INBOX", readonly=True)
typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
for part in data:
    if isinstance(part, tuple):
        print(part[1].decode().strip().split(": ", 1)[1])
m.logout()
"#;
    let out = python_in(&lab.client_ns(), script, &[VIP]);
    assert!(
        out.status.success(),
        "IMAP on the VIP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (at most 15 s) until a delivery on the VIP is accepted; remembers it.
fn accepted_on_vip(lab: &Lab, prefix: &str, n: &mut u32, acked: &mut Vec<String>) {
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(15),
        &format!("a delivery on the VIP accepted ({prefix})"),
        |l| {
            *n += 1;
            let s = format!("{prefix}-{n}");
            let ok = deliver(l, VIP, &s) == 250;
            if ok {
                acked.push(s);
            }
            ok
        },
    );
}

fn digest(lab: &Lab, node: NodeId) -> String {
    common::assert_ok(&lab.cli(node, &["digest"]), "clusterd digest")
}

#[test]
fn a_full_disk_on_the_active_node_hands_the_vip_over_and_loses_nothing() {
    // Declared first, dropped last: the lab (and its nodes) goes before the mount.
    let fs: Tmpfs;
    let mut lab = Lab::new();
    let data = lab.node_dir(N1).join("data");
    fs = Tmpfs::mount_on(&data, 64);
    let _ = &fs;
    lab.set_config(
        N1,
        &format!("{}\n[store]\nmin_free_mb = 16\n", lab.config_text(N1)),
    );
    lab.replicate(REPL_PORT);
    lab.add_user_offline(N1, "ana", "secreto-ana-1");
    lab.start_cluster();
    lab.wait_shipping(N1, Duration::from_secs(15));

    let mut acked = Vec::new();
    for i in 0..3 {
        let s = format!("before-{i}");
        assert_eq!(deliver(&lab, VIP, &s), 250, "{s}");
        acked.push(s);
    }

    // Fill clusternodo1's file system to 8 MiB free (below the 16 MiB floor).
    let free = clusterd::store::free_bytes(&data).unwrap();
    let filler = data.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = free - (8 << 20);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }
    let t0 = Instant::now();
    // While it still holds the VIP, clusternodo1 refuses (452); then clusternodo2
    // takes the VIP and accepts. Every 250 is remembered.
    let mut codes = Vec::new();
    let mut n = 0;
    let took = lab.expect_within(
        t0,
        Duration::from_secs(30),
        "clusternodo2 alone holds the VIP after clusternodo1's disk filled",
        |l| {
            n += 1;
            let s = format!("during-{n}");
            let code = deliver(l, VIP, &s);
            if code == 250 {
                acked.push(s);
            }
            codes.push(code);
            l.vip_holders() == [N2]
        },
    );
    println!(
        "disk full on clusternodo1: VIP on clusternodo2 after {} ms; replies meanwhile {codes:?}",
        took.as_millis()
    );
    assert!(
        codes.iter().all(|c| [250, 452, 421, 0].contains(c)),
        "{codes:?}"
    );
    // The store's verdict is in clusternodo1's status.
    let st = lab.cli(N1, &["status"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("UNHEALTHY") && text.contains("new mail refused"),
        "{text}"
    );
    // clusternodo2 serves: mail accepted on the VIP, the old mail readable.
    accepted_on_vip(&lab, "on-peer", &mut n, &mut acked);
    // The preferred node does not take the service back while its disk is full.
    lab.expect_for(
        Duration::from_secs(3),
        "clusternodo2 keeps the VIP while clusternodo1's disk is full",
        |l| l.vip_holders() == [N2],
    );

    // Space back: clusternodo1 is fit again and, preferred, takes the service back
    // once it holds everything clusternodo2 accepted.
    std::fs::remove_file(&filler).unwrap();
    let took = lab.expect_within(
        Instant::now(),
        Duration::from_secs(30),
        "clusternodo1 takes the VIP back once its disk has room",
        |l| l.vip_holders() == [N1],
    );
    println!(
        "space back: VIP on clusternodo1 after {} ms",
        took.as_millis()
    );
    accepted_on_vip(&lab, "after", &mut n, &mut acked);

    // Nothing acknowledged lost, on either node.
    let mut subjects = inbox_subjects(&lab);
    subjects.sort();
    let mut want = acked.clone();
    want.sort();
    assert_eq!(subjects, want, "ana's INBOX against the 250s");
    lab.expect_within(
        Instant::now(),
        Duration::from_secs(15),
        "equal digests on both nodes",
        |l| digest(l, N1) == digest(l, N2),
    );
    for node in [N1, N2] {
        let out = lab.cli(node, &["verify"]);
        let text = common::assert_ok(&out, "clusterd verify");
        assert!(text.contains("verify:  ok"), "{}: {text}", node.name());
    }
}
