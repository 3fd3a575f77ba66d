//! CONDSTORE and QRESYNC (RFC 7162) and COMPRESS=DEFLATE (RFC 4978) against the real
//! binary, driven by a raw-socket Python client (`imap_raw_client.py`) that sees the
//! exact responses: HIGHESTMODSEQ in SELECT and STATUS, FETCH MODSEQ and CHANGEDSINCE,
//! STORE UNCHANGEDSINCE with [MODIFIED], SEARCH MODSEQ, MODSEQ in unsolicited FETCH,
//! SELECT (QRESYNC ...) with VANISHED (EARLIER), VANISHED instead of EXPUNGE, UID
//! FETCH (CHANGEDSINCE n VANISHED), the floor of a store older than the expunge
//! record, and a whole session through raw deflate (Python's zlib, wbits = -15).

mod common;

use common::{Node, assert_ok, python};

const CLIENT: &str = include_str!("imap_raw_client.py");

fn run(node: &Node, script: &str) -> String {
    let full = format!(
        "{CLIENT}\nimport sys\nPORT = int(sys.argv[1])\n\
         def login():\n    c = Raw('127.0.0.1', PORT)\n    c.ok('LOGIN ana secret')\n    return c\n\
         {script}\nprint('done')\n"
    );
    let out = python(&full, &[&node.imap_port.to_string()]);
    let text = assert_ok(&out, "python raw IMAP script");
    assert!(text.contains("done"), "script did not finish: {text}");
    print!("{text}");
    text
}

fn node_with_ana() -> Node {
    let node = Node::start();
    node.add_user("ana", "secret");
    node
}

#[test]
fn condstore_modseqs_changedsince_unchangedsince_and_search() {
    let node = node_with_ana();
    run(
        &node,
        r#"
c = login()
st, caps = c.cmd('CAPABILITY')
assert any('CONDSTORE' in l and 'QRESYNC' in l and 'COMPRESS=DEFLATE' in l for l in caps), caps
for i in range(4):
    c.append('INBOX', message(i))
out, _ = c.ok('STATUS INBOX (HIGHESTMODSEQ MESSAGES)')
status_hms = int(re.search(r'HIGHESTMODSEQ (\d+)', out[0]).group(1))
out, _ = c.ok('SELECT INBOX (CONDSTORE)')
hms0 = code(out, 'HIGHESTMODSEQ')
assert hms0 == status_hms and hms0 >= 4, (hms0, status_hms, out)
out, _ = c.ok('FETCH 1:* (MODSEQ)')
m0 = fetches(c.cmd('UID FETCH 1:* (MODSEQ)')[1])
assert sorted(m0) == [1, 2, 3, 4], m0
assert all(ms <= hms0 for _, ms in m0.values()), (m0, hms0)

# A flag change: the untagged FETCH carries UID and MODSEQ, above the old highest.
out, _ = c.ok('STORE 2 +FLAGS (\\Seen)')
f = fetches(out)
assert list(f) == [2] and f[2][1] > hms0, out
# CHANGEDSINCE: only that message, with its MODSEQ.
out, _ = c.ok('FETCH 1:* (FLAGS) (CHANGEDSINCE %d)' % hms0)
assert len(out) == 1 and out[0].startswith('* 2 FETCH') and 'MODSEQ' in out[0], out
out, _ = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)' % hms0)
assert list(fetches(out)) == [2], out

# UNCHANGEDSINCE: message 2 changed after hms0, so it is refused and named.
st, out = c.cmd('STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)' % hms0)
assert st.startswith('OK [MODIFIED 2]'), (st, out)
f = fetches(out)
assert sorted(f) == [1, 3] and all('\\Flagged' in v[0] for v in f.values()), out
st, out = c.cmd('UID STORE 1:4 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Answered)' % hms0)
assert st.startswith('OK [MODIFIED 1:3]'), (st, out)
# .SILENT still reports the new MODSEQ of what changed.
f = fetches(out)
assert list(f) == [4] and f[4][0] is None and f[4][1] is not None, out
# UNCHANGEDSINCE 0 always fails.
st, out = c.cmd('UID STORE 4 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)')
assert st.startswith('OK [MODIFIED 4]'), st

# SEARCH MODSEQ: messages changed at or after a MODSEQ, with the highest found.
out, _ = c.ok('FETCH 1:* (MODSEQ)')
ms = {int(re.match(r'\* (\d+)', l).group(1)): int(re.search(r'MODSEQ \((\d+)\)', l).group(1)) for l in out}
pivot = ms[3]
out, _ = c.ok('SEARCH MODSEQ %d' % pivot)
m = re.match(r'\* SEARCH ([\d ]+) \(MODSEQ (\d+)\)$', out[0])
assert m, out
hits = sorted(int(x) for x in m.group(1).split())
assert hits == sorted(k for k, v in ms.items() if v >= pivot), (hits, ms)
assert int(m.group(2)) == max(v for v in ms.values() if v >= pivot)
out, _ = c.ok('SEARCH MODSEQ "/flags/\\\\draft" all %d' % pivot)
assert out[0].startswith('* SEARCH'), out
out, _ = c.ok('SEARCH MODSEQ 999999')
assert out == ['* SEARCH'], out

# Another session's change reaches this one with MODSEQ.
d = login()
d.ok('SELECT INBOX')
d.ok('STORE 1 -FLAGS (\\Flagged)')
out, _ = c.ok('NOOP')
f = fetches(out)
assert list(f) == [1] and f[1][1] > max(ms.values()), out
out, _ = c.ok('STATUS INBOX (HIGHESTMODSEQ)')
assert int(re.search(r'HIGHESTMODSEQ (\d+)', out[0]).group(1)) == f[1][1], out
"#,
    );
}

#[test]
fn qresync_select_reports_only_what_changed() {
    let node = node_with_ana();
    run(
        &node,
        r#"
a = login()
for i in range(6):
    a.append('INBOX', message(i))
# QRESYNC needs ENABLE first.
st, out = a.cmd('SELECT INBOX (QRESYNC (1 1))')
assert st.startswith('BAD'), st
out, _ = a.ok('ENABLE QRESYNC')
assert out == ['* ENABLED QRESYNC'], out
out, _ = a.ok('SELECT INBOX')
uv, hms = code(out, 'UIDVALIDITY'), code(out, 'HIGHESTMODSEQ')
assert uv and hms, out
a.close()

# Changes while the client is away: a flag, two expunges, one new message.
b = login()
b.ok('SELECT INBOX')
b.ok('UID STORE 2 +FLAGS (\\Seen)')
b.ok('UID STORE 3,5 +FLAGS (\\Deleted)')
b.ok('EXPUNGE')
b.append('INBOX', message(9))
b.close()

a = login()
a.ok('ENABLE QRESYNC')
out, _ = a.ok('SELECT INBOX (QRESYNC (%d %d))' % (uv, hms))
assert vanished(out) == [3, 5], out
f = fetches(out)
assert sorted(f) == [2, 7], out
assert f[2][0] == ('\\Seen',) and all(v[1] > hms for v in f.values()), f
assert not any(' EXPUNGE' in l for l in out), out
# Known UIDs limit the answer.
a.ok('ENABLE QRESYNC')
out, _ = a.ok('EXAMINE INBOX (QRESYNC (%d %d 1:4))' % (uv, hms))
assert out[0] == '* OK [CLOSED] Previous mailbox closed', out
assert vanished(out) == [3] and sorted(fetches(out)) == [2], out
# A wrong UIDVALIDITY: a plain SELECT, nothing of the above.
out, _ = a.ok('SELECT INBOX (QRESYNC (%d %d))' % (uv + 1, hms))
assert vanished(out) == [] and fetches(out) == {}, out
# UID FETCH (CHANGEDSINCE n VANISHED).
out, _ = a.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % hms)
assert vanished(out) == [3, 5] and sorted(fetches(out)) == [2, 7], out
out, _ = a.ok('UID FETCH 4:6 (FLAGS) (CHANGEDSINCE %d VANISHED)' % hms)
assert vanished(out) == [5] and fetches(out) == {}, out
st, _ = a.cmd('FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % hms)
assert st.startswith('BAD'), st

# Live expunges reach a QRESYNC session as VANISHED, not EXPUNGE.
b = login()
b.ok('SELECT INBOX')
b.ok('UID STORE 4 +FLAGS (\\Deleted)')
b.ok('EXPUNGE')
out, _ = a.ok('NOOP')
assert out == ['* VANISHED 4'], out
hms2 = code(a.ok('SELECT INBOX')[0], 'HIGHESTMODSEQ')
out, _ = a.ok('SELECT INBOX (QRESYNC (%d %d))' % (uv, hms2))
assert vanished(out) == [] and fetches(out) == {}, out
"#,
    );
}

/// A store made before the expunge record existed knows no earlier expunges: a
/// QRESYNC from before then gets every UID below UIDNEXT that is gone (RFC 7162
/// 3.2.5.1), later expunges exactly.
#[test]
fn qresync_on_a_store_older_than_the_expunge_record() {
    let mut node = node_with_ana();
    let before = run(
        &node,
        r#"
a = login()
for i in range(5):
    a.append('INBOX', message(i))
a.ok('ENABLE QRESYNC')
out, _ = a.ok('SELECT INBOX')
print('STATE', code(out, 'UIDVALIDITY'), code(out, 'HIGHESTMODSEQ'))
a.ok('UID STORE 2 +FLAGS (\\Deleted)')
a.ok('EXPUNGE')
"#,
    );
    let state: Vec<&str> = before
        .lines()
        .find_map(|l| l.strip_prefix("STATE "))
        .expect("state line")
        .split(' ')
        .collect();
    node.stop();
    // What a store of the previous release looks like: no expunge record.
    let db = node.data_dir.join("store.db");
    let out = python(
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
         c.execute('DROP TABLE expunged')\nc.execute('DROP TABLE expunge_floor')\nc.commit()\n",
        &[db.to_str().unwrap()],
    );
    assert_ok(&out, "drop the expunge record");
    node.restart();
    run(
        &node,
        &format!(
            r#"
uv, hms = {uv}, {hms}
a = login()
a.ok('ENABLE QRESYNC')
out, _ = a.ok('SELECT INBOX')
floor = code(out, 'HIGHESTMODSEQ')
a.ok('UID STORE 4 +FLAGS (\\Deleted)')
a.ok('EXPUNGE')
# From before the migration: everything gone, known or not.
out, _ = a.ok('SELECT INBOX (QRESYNC (%d %d))' % (uv, hms))
assert vanished(out) == [2, 4], out
out, _ = a.ok('SELECT INBOX (QRESYNC (%d %d 3:5))' % (uv, hms))
assert vanished(out) == [4], out
# From after it: exactly the later expunge.
out, _ = a.ok('SELECT INBOX (QRESYNC (%d %d))' % (uv, floor))
assert vanished(out) == [4], out
"#,
            uv = state[0],
            hms = state[1]
        ),
    );
}

#[test]
fn compress_deflate_carries_a_whole_session() {
    let node = node_with_ana();
    run(
        &node,
        r#"
c = Raw('127.0.0.1', PORT)
st, _ = c.cmd('COMPRESS DEFLATE')
assert st.startswith('BAD'), st  # not before login
c.ok('LOGIN ana secret')
st = c.compress()
assert st.startswith('OK'), st
st, caps = c.cmd('CAPABILITY')
assert st.startswith('OK') and 'COMPRESS=DEFLATE' not in caps[0], (st, caps)
st, _ = c.cmd('COMPRESS DEFLATE')
assert st.startswith('NO [COMPRESSIONACTIVE]'), st
body = message(1, 300000)
c.append('INBOX', body)
for i in range(2, 51):
    c.append('INBOX', message(i))
out, _ = c.ok('SELECT INBOX')
assert '* 50 EXISTS' in out, out
wire0, plain0 = c.wire_in, c.plain_in
out, _ = c.ok('FETCH 1 (BODY.PEEK[])')
assert body in out[0].encode(), len(out[0])
wire0, plain0 = c.wire_in, c.plain_in
out, _ = c.ok('FETCH 2:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)')
assert len(out) == 49, out[:3]
wire, plain = c.wire_in - wire0, c.plain_in - plain0
print('deflate: %d bytes on the wire for %d bytes of ENVELOPE responses' % (wire, plain))
assert wire * 2 < plain, (wire, plain)
# Several commands in one compressed write, answered in order.
c.n += 1
c.send(b'p1 NOOP\r\np2 STATUS INBOX (MESSAGES)\r\np3 NOOP\r\n')
seen = [c.line().decode() for _ in range(4)]
assert seen[0].startswith('p1 OK') and 'MESSAGES 50' in seen[1] and seen[2].startswith('p2 OK') and seen[3].startswith('p3 OK'), seen
# IDLE over the compressed stream: another session's APPEND arrives at once.
c.send(b'i1 IDLE\r\n')
assert c.line().startswith(b'+'), 'no IDLE continuation'
other = login()
other.append('INBOX', message(99))
line = c.line().decode()
while not line.endswith('EXISTS'):
    line = c.line().decode()
assert line == '* 51 EXISTS', line
c.send(b'DONE\r\n')
while not line.startswith('i1 '):
    line = c.line().decode()
assert line.startswith('i1 OK'), line
c.close()

# Garbage that is not deflate ends that session with a BYE (compressed, since the
# server's stream is intact), not the server.
g = Raw('127.0.0.1', PORT)
g.ok('LOGIN ana secret')
g.compress()
g.sock.sendall(b'\xff' * 64)
assert g.line().startswith(b'* BYE'), 'no BYE for corrupt compressed input'
try:
    g.line()
    raise SystemExit('the session went on after corrupt compressed input')
except (EOFError, OSError):
    pass
h = login()
h.ok('NOOP')
"#,
    );
}

#[test]
fn odd_rfc7162_arguments_get_bad_or_an_answer_and_the_session_goes_on() {
    let node = node_with_ana();
    run(
        &node,
        r#"
c = login()
c.append('INBOX', message(1))
c.ok('ENABLE QRESYNC CONDSTORE')
for cmd in ['SELECT INBOX (QRESYNC (0 1))', 'SELECT INBOX (QRESYNC (1))',
            'SELECT INBOX (CONDSTORE', 'SELECT INBOX (FOO)']:
    st, _ = c.cmd(cmd)
    assert st.startswith('BAD'), (cmd, st)
c.ok('SELECT INBOX')
for cmd in ['FETCH 1 (FLAGS) (CHANGEDSINCE 0)', 'FETCH 1 (FLAGS) (CHANGEDSINCE x)',
            'STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)', 'SEARCH MODSEQ',
            'STATUS INBOX (HIGHESTMODSEQ', 'COMPRESS GZIP']:
    st, _ = c.cmd(cmd)
    assert st.startswith('BAD'), (cmd, st)
# The largest values are answered, not overflowed.
big = 18446744073709551615
out, _ = c.ok('FETCH 1:* (FLAGS) (CHANGEDSINCE %d)' % big)
assert out == [], out
out, _ = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % big)
assert out == [], out
st, out = c.cmd('STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)' % big)
# (\\Recent too: this session took the message's recent state at SELECT.)
assert st.startswith('OK') and 'MODIFIED' not in st and set(fetches(out)[1][0]) - {'\\Recent'} == {'\\Seen'}, (st, out)
out, _ = c.ok('SEARCH MODSEQ %d' % big)
assert out == ['* SEARCH'], out
out, _ = c.ok('SELECT INBOX')
uv = code(out, 'UIDVALIDITY')
out, _ = c.ok('SELECT INBOX (QRESYNC (%d %d 1:4294967295 (1 1)))' % (uv, big))
assert vanished(out) == [] and fetches(out) == {}, out
c.ok('NOOP')
"#,
    );
}

/// A large APPEND literal over COMPRESS=DEFLATE (issue 14): the literal goes to its
/// body file as it arrives, inflated a step at a time, and comes back byte for byte;
/// the session goes on compressed after it.
#[test]
fn a_large_append_through_deflate_is_stored_byte_identical() {
    let node = node_with_ana();
    run(
        &node,
        r#"
import random
c = login()
c.compress()
rnd = random.Random(14)
body = b''.join(b'%06d ' % i + bytes(rnd.choice(b'abcdefghij') for _ in range(70)) + b'\r\n' for i in range(4000))
msg = b'Subject: deflated\r\nMessage-ID: <deflated@example.org>\r\n\r\n' + body
out, st = c.append('INBOX', msg)
assert 'APPENDUID' in st, st
c.ok('SELECT INBOX')
out, _ = c.ok('FETCH 1 (RFC822.SIZE BODY.PEEK[])')
got = out[0].encode('utf-8')
assert got.endswith(msg + b')'), (len(got), len(msg))
assert ('RFC822.SIZE %d' % len(msg)) in out[0], out[0][:80]
c.ok('NOOP')
"#,
    );
}
