//! QRESYNC across a failover (issue 14, acceptance "a QRESYNC client reconnects after
//! a failover"), in the namespace lab of `cluster_lab`: a client on the LAN selects
//! INBOX on the VIP and keeps UIDVALIDITY, HIGHESTMODSEQ and the UIDs; another session
//! changes flags and expunges (replicated in sync mode before each OK); the active
//! node dies and node 2 takes the VIP; the client's `SELECT INBOX (QRESYNC (...))`
//! on the VIP gets exactly the changes — VANISHED (EARLIER) for the expunged UIDs and
//! FETCH for the changed flags — and nothing of the untouched messages, because
//! MODSEQs and the expunge record replicate with the op log.

mod cluster_lab;
mod common;

use std::time::{Duration, Instant};

use cluster_lab::*;

const REPL_PORT: u16 = 7000;
const USER: &str = "ana";
const PASSWORD: &str = "clave-ana";
/// Messages in the folder before the client goes away.
const MESSAGES: usize = 40;

/// The client side: `imap_raw_client.py` plus one phase of the scenario (argv: VIP,
/// user, password, phase, phase arguments). Prints `KEY value` lines.
const SCRIPT: &str = r#"
import sys
host, user, password, phase = sys.argv[1:5]
c = Raw(host, 993, tls=True)
c.ok('LOGIN %s %s' % (user, password))
if phase == 'fill':
    for i in range(int(sys.argv[5])):
        c.append('INBOX', message(i))
    c.ok('ENABLE QRESYNC')
    out, _ = c.ok('SELECT INBOX')
    uids = sorted(fetches(c.ok('UID FETCH 1:* (FLAGS)')[0]))
    print('UIDVALIDITY', code(out, 'UIDVALIDITY'))
    print('HIGHESTMODSEQ', code(out, 'HIGHESTMODSEQ'))
    print('UIDS', ','.join(map(str, uids)))
elif phase == 'change':
    c.ok('SELECT INBOX')
    c.ok('UID STORE 3 +FLAGS (\\Seen)')
    c.ok('UID STORE 7 +FLAGS (\\Flagged $Important)')
    c.ok('UID STORE 5,11 +FLAGS (\\Deleted)')
    c.ok('EXPUNGE')
elif phase == 'resync':
    uv, hms = int(sys.argv[5]), int(sys.argv[6])
    c.ok('ENABLE QRESYNC')
    out, _ = c.ok('SELECT INBOX (QRESYNC (%d %d))' % (uv, hms))
    print('UIDVALIDITY', code(out, 'UIDVALIDITY'))
    print('VANISHED', ','.join(map(str, vanished(out))))
    for uid, (flags, modseq) in sorted(fetches(out).items()):
        # \\Recent is node-local session state: after a failover every message is
        # recent again for the first session (RFC 3501 2.3.2); it is not a change.
        flags = [f for f in flags if f != '\\Recent']
        print('FETCH', uid, ' '.join(flags), modseq > hms)
    print('EXISTS', [l for l in out if l.endswith(' EXISTS')][0].split()[1])
    print('LINES', len(out))
c.close()
print('done')
"#;

fn client(lab: &Lab, args: &[&str]) -> String {
    let script = format!("{}\n{SCRIPT}", include_str!("imap_raw_client.py"));
    let mut argv = vec![VIP, USER, PASSWORD];
    argv.extend_from_slice(args);
    let out = python_in(&lab.client_ns(), &script, &argv);
    let text = common::assert_ok(&out, &format!("QRESYNC client, phase {}", args[0]));
    assert!(text.contains("done"), "{text}");
    text
}

fn value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no {key} in the client's output:\n{text}"))
}

#[test]
fn a_qresync_client_gets_only_the_changes_after_a_failover() {
    let mut lab = Lab::new();
    lab.replicate(REPL_PORT);
    lab.add_user_offline(N1, USER, PASSWORD);
    lab.start_cluster();
    lab.wait_shipping(N1, Duration::from_secs(10));

    // The client's cache: what it saw before going away.
    let before = client(&lab, &["fill", &MESSAGES.to_string()]);
    let uidvalidity = value(&before, "UIDVALIDITY").to_string();
    let highest = value(&before, "HIGHESTMODSEQ").to_string();
    let uids: Vec<u32> = value(&before, "UIDS")
        .split(',')
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(uids, (1..=MESSAGES as u32).collect::<Vec<_>>());

    // Changes on node 1, each acknowledged only once node 2 holds it (sync mode).
    client(&lab, &["change"]);

    // Node 1 dies as a machine does; node 2 takes the VIP.
    let t_kill = Instant::now();
    lab.machine_dies(N1);
    lab.expect_within(
        t_kill,
        DEADTIME + Duration::from_secs(4),
        "node 2 takes over after node 1 died",
        |l| l.vip_holders() == [N2] && l.status(N2).role.as_deref() == Some("active"),
    );

    // The reconnecting client learns exactly what changed, from node 2.
    let after = client(&lab, &["resync", &uidvalidity, &highest]);
    println!("{after}");
    assert_eq!(
        value(&after, "UIDVALIDITY"),
        uidvalidity,
        "UIDVALIDITY kept"
    );
    assert_eq!(value(&after, "VANISHED"), "5,11", "VANISHED (EARLIER)");
    let fetched: Vec<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("FETCH "))
        .collect();
    assert_eq!(
        fetched,
        ["3 \\Seen True", "7 $Important \\Flagged True"],
        "FETCH of the changed messages only, with MODSEQs above the client's"
    );
    assert_eq!(value(&after, "EXISTS"), (MESSAGES - 2).to_string());
    // FLAGS, OK codes, EXISTS, RECENT, VANISHED and two FETCHes: no line per message.
    let lines: usize = value(&after, "LINES").parse().unwrap();
    assert!(
        lines < 16,
        "{lines} untagged lines for a resync of {MESSAGES} messages"
    );
}
