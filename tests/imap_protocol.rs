//! IMAP as real clients use it (Python's imaplib against the real binary): login
//! rules (RFC 3501 6.2, plaintext policy), LIST with SPECIAL-USE (RFC 6154), APPEND
//! and FETCH round trips, STORE, COPY/MOVE with UIDPLUS (RFC 4315, RFC 6851),
//! EXPUNGE numbering, sessions seeing each other's changes, IDLE latency (RFC 2177),
//! and persistence of UIDs, flags and UIDVALIDITY across a restart.

mod common;

use common::{Node, assert_ok, python};
use std::time::Duration;

/// Helpers shared by the Python scripts below.
const PY_PRELUDE: &str = r#"
import imaplib, socket, ssl, sys, time, re

PORT = int(sys.argv[1])

def connect():
    return imaplib.IMAP4('127.0.0.1', PORT)

def login(user='ana', pw='secret'):
    m = connect()
    m.login(user, pw)
    return m

def ok(res):
    typ, data = res
    assert typ == 'OK', (typ, data)
    return data

def untagged(m, name):
    return m.untagged_responses.pop(name, [])

def msg(subject, body='hello'):
    return ('From: Bob <bob@example.org>\r\nTo: ana@cluster.com.ec\r\n'
            'Subject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n%s\r\n' % (subject, subject.replace(' ', '.'), body)).encode()
"#;

fn run_py(node: &Node, script: &str) -> String {
    let full = format!("{PY_PRELUDE}\n{script}");
    let out = python(
        &full,
        &[&node.imap_port.to_string(), &node.imaps_port.to_string()],
    );
    assert_ok(&out, "python imaplib script")
}

fn node_with_ana() -> Node {
    let node = Node::start();
    node.add_user("ana", "secret");
    node
}

#[test]
fn login_plaintext_from_loopback_and_starttls_and_implicit_tls() {
    let node = node_with_ana();
    let out = run_py(
        &node,
        r#"
IMAPS = int(sys.argv[2])
m = connect()
caps = m.capabilities
for c in ('IMAP4REV1', 'STARTTLS', 'AUTH=PLAIN', 'IDLE', 'UIDPLUS', 'MOVE', 'LITERAL+',
          'SASL-IR', 'NAMESPACE', 'ID', 'UNSELECT', 'SPECIAL-USE', 'CHILDREN'):
    assert c in caps, (c, caps)
assert 'LOGINDISABLED' not in caps
# A wrong password is refused (after a delay), the right one accepted.
t0 = time.time()
try:
    m.login('ana', 'wrong')
    raise SystemExit('wrong password accepted')
except imaplib.IMAP4.error as e:
    assert 'AUTHENTICATIONFAILED' in str(e), e
assert time.time() - t0 >= 0.9, 'failed login not delayed'
ok(m.login('ana', 'secret'))
ok(m.noop())
m.logout()

# STARTTLS with a client that does not trust the self-signed certificate.
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = connect()
ok(m.starttls(ssl_context=ctx))
typ, caps = m.capability()
assert b'STARTTLS' not in caps[0], caps
ok(m.login('ana', 'secret'))
ok(m.select('INBOX'))
m.logout()

# Implicit TLS, and AUTHENTICATE PLAIN.
m = imaplib.IMAP4_SSL('127.0.0.1', IMAPS, ssl_context=ctx)
ok(m.authenticate('PLAIN', lambda _: b'\0ana\0secret'))
ok(m.select('INBOX'))
m.logout()

# SASL-IR (RFC 4959) and LITERAL+ (RFC 7888) on a raw connection.
import base64
s = socket.create_connection(('127.0.0.1', PORT), timeout=10)
f = s.makefile('rb')
assert f.readline().startswith(b'* OK')
s.sendall(b'a1 AUTHENTICATE PLAIN ' + base64.b64encode(b'\0ana\0secret') + b'\r\n')
l = f.readline()
assert l.startswith(b'a1 OK'), l
s.close()
s = socket.create_connection(('127.0.0.1', PORT), timeout=10)
f = s.makefile('rb')
assert f.readline().startswith(b'* OK')
s.sendall(b'a1 LOGIN {3+}\r\nana {6+}\r\nsecret\r\na2 SELECT {5}\r\n')
l = f.readline()
assert l.startswith(b'a1 OK'), l
l = f.readline()
assert l.startswith(b'+'), l
s.sendall(b'INBOX\r\n')
while True:
    l = f.readline()
    if l.startswith(b'a2 '):
        assert l.startswith(b'a2 OK [READ-WRITE]'), l
        break
s.close()
print('TLS-OK')
"#,
    );
    assert!(out.contains("TLS-OK"), "{out}");
}

#[test]
fn plaintext_login_refused_outside_allowed_networks_until_starttls() {
    let node = Node::builder()
        .imap("allow_plaintext_auth_from = []")
        .start();
    node.add_user("ana", "secret");
    let out = run_py(
        &node,
        r#"
m = connect()
assert 'LOGINDISABLED' in m.capabilities, m.capabilities
assert 'AUTH=PLAIN' not in m.capabilities
typ, data = m._simple_command('LOGIN', 'ana', 'secret')
assert typ == 'NO' and b'PRIVACYREQUIRED' in data[0], (typ, data)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ok(m.starttls(ssl_context=ctx))
ok(m.login('ana', 'secret'))
m.logout()
print('POLICY-OK')
"#,
    );
    assert!(out.contains("POLICY-OK"), "{out}");
}

#[test]
fn list_shows_default_mailboxes_with_special_use_and_hierarchy() {
    let node = node_with_ana();
    let out = run_py(
        &node,
        r#"
m = login()
ok(m.create('Archivo/2024'))
ok(m.create('A&APE-o'))  # 'Año' in modified UTF-7 (imaplib sends ASCII only)
data = ok(m.list())
lines = [d.decode() for d in data]
print('\n'.join(lines))
def attrs(name):
    for l in lines:
        mm = re.match(r'\((.*?)\) "/" "?(.*?)"?$', l)
        if mm and mm.group(2) == name:
            return mm.group(1).split()
    raise SystemExit('no %s in %s' % (name, lines))
assert '\\HasNoChildren' in attrs('INBOX')
assert '\\Sent' in attrs('Sent')
assert '\\Drafts' in attrs('Drafts')
assert '\\Trash' in attrs('Trash')
assert '\\Junk' in attrs('Junk')
assert '\\HasChildren' in attrs('Archivo')
assert '\\HasNoChildren' in attrs('Archivo/2024')
# RFC 3501 5.1.3: non-ASCII names travel in modified UTF-7.
assert '\\HasNoChildren' in attrs('A&APE-o')
# '%' stops at the hierarchy separator.
top = [d.decode() for d in ok(m.list('""', '%'))]
assert not any('2024' in l for l in top), top
assert any('Archivo' in l for l in top), top
sub = [d.decode() for d in ok(m.list('Archivo/', '%'))]
assert len(sub) == 1 and 'Archivo/2024' in sub[0], sub
# Hierarchy delimiter query.
root = ok(m.list('""', '""'))
assert root[0].decode() == '(\\Noselect) "/" ""', root
# Subscriptions.
ok(m.subscribe('Archivo/2024'))
subs = [d.decode() for d in ok(m.lsub('""', '*'))]
assert any('Archivo/2024' in l for l in subs), subs
# Rename and delete with response codes.
ok(m.rename('Archivo/2024', 'Archivo/2025'))
typ, data = m.delete('Nada')
assert typ == 'NO' and b'NONEXISTENT' in data[0], data
typ, data = m.create('Sent')
assert typ == 'NO' and b'ALREADYEXISTS' in data[0], data
ok(m.delete('Archivo/2025'))
# NAMESPACE and ID.
typ, data = m._simple_command('NAMESPACE')
assert typ == 'OK'
assert b'(("" "/"))' in m.untagged_responses.pop('NAMESPACE')[0]
imaplib.Commands['ID'] = ('NONAUTH', 'AUTH', 'SELECTED')
typ, data = m._simple_command('ID', '("name" "test")')
assert b'clusterd' in m.untagged_responses.pop('ID')[0]
assert typ == 'OK'
st = ok(m.status('INBOX', '(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)'))[0].decode()
assert 'MESSAGES 0' in st and 'UIDNEXT 1' in st, st
print('LIST-OK')
"#,
    );
    assert!(out.contains("LIST-OK"), "{out}");
}

#[test]
fn append_fetch_store_copy_move_expunge_roundtrip() {
    let node = node_with_ana();
    let out = run_py(
        &node,
        r#"
m = login()
raw = msg('roundtrip one', 'body text\r\nsecond line')
date = imaplib.Time2Internaldate(1700000000)
data = ok(m.append('INBOX', '(\\Flagged $Label1)', date, raw))
mm = re.search(rb'\[APPENDUID (\d+) (\d+)\]', data[0])
assert mm, data
uidvalidity, uid = int(mm.group(1)), int(mm.group(2))
assert uid == 1

data = ok(m.select('INBOX'))
assert data == [b'1'], data
typ, d = m.fetch('1', '(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])')
assert typ == 'OK'
head, body = d[0]
head = head.decode()
assert body == raw, body
assert 'UID 1' in head and '\\Flagged' in head and '$Label1' in head and '\\Seen' not in head, head
assert 'RFC822.SIZE %d' % len(raw) in head, head
assert '14-Nov-2023 22:13:20 +0000' in head, head
# BODY.PEEK did not set \Seen; BODY[] does, and reports FLAGS.
typ, d = m.fetch('1', '(FLAGS)')
assert b'\\Seen' not in d[0], d
typ, d = m.fetch('1', '(BODY[TEXT])')
assert d[0][1] == b'body text\r\nsecond line\r\n', d
assert b'\\Seen' in d[0][0], d
typ, d = m.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
assert d[0][1].strip() == b'Subject: roundtrip one', d

# STORE +/-FLAGS and .SILENT.
typ, d = m.store('1', '+FLAGS', '(\\Answered)')
assert typ == 'OK' and b'\\Answered' in d[0], d
typ, d = m.store('1', '-FLAGS.SILENT', '(\\Flagged)')
assert typ == 'OK' and d == [None], d
typ, d = m.uid('FETCH', '1', '(FLAGS)')
assert b'\\Flagged' not in d[0] and b'\\Answered' in d[0] and b'UID 1' in d[0], d

# COPY and UID MOVE with COPYUID.
for i in range(2, 6):
    ok(m.append('INBOX', None, None, msg('message %d' % i)))
ok(m.noop())
typ, d = m.copy('1:2', 'Sent')
assert typ == 'OK' and re.search(rb'\[COPYUID \d+ 1:2 1:2\]', d[0]), d
typ, d = m.uid('MOVE', '3', 'Trash')
assert typ == 'OK', d
copyuid = m.untagged_responses.pop('OK', [])
assert any(re.search(rb'\[COPYUID \d+ 3 1\]', x) for x in copyuid), copyuid
assert m.untagged_responses.pop('EXPUNGE', []) == [b'3']
typ, d = m.copy('1', 'Nonexistent')
assert typ == 'NO' and b'TRYCREATE' in d[0], d
typ, d = m.append('Nonexistent', None, None, msg('x'))
assert typ == 'NO' and b'TRYCREATE' in d[0], d

# Mailbox now holds UIDs 1,2,4,5 as seqs 1..4; delete seq 2 and 4.
typ, d = m.search(None, 'ALL')
assert d[0].split() == [b'1', b'2', b'3', b'4'], d
ok(m.store('2,4', '+FLAGS.SILENT', '(\\Deleted)'))
typ, d = m.search(None, 'DELETED')
assert d[0].split() == [b'2', b'4'], d
typ, d = m.uid('SEARCH', None, 'UNDELETED')
assert d[0].split() == [b'1', b'4'], d
typ, d = m.expunge()
assert typ == 'OK' and d == [b'4', b'2'], d
typ, d = m.uid('SEARCH', None, 'ALL')
assert d[0].split() == [b'1', b'4'], d
typ, d = m.select('Sent')
assert d == [b'2'], d
typ, d = m.select('Trash')
assert d == [b'1'], d
print('ROUNDTRIP-OK')
"#,
    );
    assert!(out.contains("ROUNDTRIP-OK"), "{out}");
}

#[test]
fn sessions_on_one_mailbox_see_each_others_changes() {
    let node = node_with_ana();
    let out = run_py(
        &node,
        r#"
a = login()
b = login()
for i in range(3):
    ok(b.append('INBOX', None, None, msg('m%d' % i)))
ok(a.select('INBOX'))
ok(b.select('INBOX'))
untagged(a, 'EXISTS')
untagged(a, 'RECENT')
# b appends and flags; a learns on NOOP.
ok(b.append('INBOX', None, None, msg('m3')))
ok(b.store('1', '+FLAGS', '(\\Flagged)'))
ok(a.noop())
ex = untagged(a, 'EXISTS')
assert ex == [b'4'], (ex, a.untagged_responses)
fl = untagged(a, 'FETCH')
assert any(x.startswith(b'1 ') and b'\\Flagged' in x for x in fl), fl
# b expunges message 2; a must not see EXPUNGE during FETCH, but on NOOP.
ok(b.store('2', '+FLAGS', '(\\Deleted)'))
ok(b.expunge())
untagged(a, 'FETCH')
typ, d = a.fetch('1:*', '(UID)')
assert typ == 'OK'
assert untagged(a, 'EXPUNGE') == [], 'EXPUNGE sent during FETCH'
ok(a.noop())
assert untagged(a, 'EXPUNGE') == [b'2'], a.untagged_responses
typ, d = a.fetch('1:*', '(UID)')
uids = [int(re.search(rb'UID (\d+)', x).group(1)) for x in d]
assert uids == [1, 3, 4], uids
print('SHARED-OK')
"#,
    );
    assert!(out.contains("SHARED-OK"), "{out}");
}

#[test]
fn idle_session_sees_exists_within_one_second_of_another_sessions_append() {
    let node = node_with_ana();
    let out = run_py(
        &node,
        r#"
s = socket.create_connection(('127.0.0.1', PORT), timeout=10)
f = s.makefile('rb')
def send(line):
    s.sendall(line.encode() + b'\r\n')
def expect(tag):
    while True:
        l = f.readline()
        assert l, 'connection closed'
        if l.startswith(tag.encode() + b' '):
            assert l.split()[1] == b'OK', l
            return
f.readline()  # greeting
send('a1 LOGIN ana secret'); expect('a1')
send('a2 SELECT INBOX'); expect('a2')
send('a3 IDLE')
l = f.readline()
assert l.startswith(b'+'), l
other = login()
worst = 0.0
for i in range(5):
    t0 = time.time()
    ok(other.append('INBOX', None, None, msg('idle %d' % i)))
    t1 = time.time()
    l = f.readline()
    t2 = time.time()
    assert l == b'* %d EXISTS\r\n' % (i + 1), l
    l = f.readline()
    assert l.endswith(b'RECENT\r\n'), l
    worst = max(worst, t2 - t1)
send('DONE'); expect('a3')
print('IDLE-LATENCY %.3f' % worst)
assert worst < 1.0, worst
"#,
    );
    let latency: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("IDLE-LATENCY "))
        .expect("latency printed")
        .trim()
        .parse()
        .unwrap();
    assert!(latency < 1.0, "EXISTS arrived {latency} s after the APPEND");
}

#[test]
fn restart_keeps_uids_flags_and_uidvalidity() {
    let mut node = node_with_ana();
    let before = run_py(
        &node,
        r#"
m = login()
for i in range(4):
    ok(m.append('INBOX', '(\\Seen)' if i % 2 else None, None, msg('r%d' % i)))
ok(m.select('INBOX'))
ok(m.store('1', '+FLAGS', '(\\Deleted)'))
ok(m.expunge())
ok(m.store('2', '+FLAGS', '(\\Flagged $Work)'))
uv = untagged(m, 'UIDVALIDITY')
typ, d = m.fetch('1:*', '(UID FLAGS)')
print('UIDVALIDITY', ok(m.status('INBOX', '(UIDVALIDITY UIDNEXT)'))[0].decode())
for x in d:
    print('MSG', x.decode())
"#,
    );
    node.restart();
    let after = run_py(
        &node,
        r#"
m = login()
ok(m.select('INBOX'))
typ, d = m.fetch('1:*', '(UID FLAGS)')
print('UIDVALIDITY', ok(m.status('INBOX', '(UIDVALIDITY UIDNEXT)'))[0].decode())
for x in d:
    print('MSG', x.decode())
"#,
    );
    let pick = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("MSG") || l.starts_with("UIDVALIDITY"))
            .map(|l| l.to_string())
            .collect()
    };
    let (b, a) = (pick(&before), pick(&after));
    assert_eq!(b.len(), 4, "{before}");
    assert!(
        b.iter().any(|l| l.contains("UID 3") && l.contains("$Work")),
        "{before}"
    );
    assert!(b[0].contains("UIDNEXT 5"), "{before}");
    assert_eq!(b, a, "state changed across the restart");
}

/// Issue 14: an APPEND literal of 64 KiB or more is written to its body file as it
/// arrives (a file in `blobs/tmp` grows mid-literal: this failed before, when the
/// literal was read whole into memory); a client gone mid-literal and an APPEND
/// refused after its literal (`[TRYCREATE]`) leave no file; Python's imaplib appends
/// 2 MB that FETCH returns byte for byte.
#[test]
fn large_append_literals_go_to_their_file_as_they_arrive() {
    use std::io::{BufRead, BufReader, Write};
    let node = node_with_ana();
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", node.imap_port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        (s, r)
    };
    let until = |r: &mut BufReader<std::net::TcpStream>, prefix: &str| {
        let mut all = String::new();
        for _ in 0..100 {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            all.push_str(&line);
            if line.starts_with(prefix) {
                return all;
            }
        }
        panic!("no {prefix:?} in {all:?}");
    };
    let (mut w, mut r) = connect();
    w.write_all(b"a LOGIN ana secret\r\n").unwrap();
    until(&mut r, "a OK");
    w.write_all(b"b APPEND INBOX {1000000}\r\n").unwrap();
    until(&mut r, "+");
    w.write_all(&vec![b'x'; 300_000]).unwrap();
    assert!(
        common::within(Duration::from_secs(20), || node
            .spool_files()
            .iter()
            .any(|(_, n)| *n >= 64 * 1024)),
        "no body file grew in blobs/tmp during the literal: {:?}",
        node.spool_files()
    );
    drop((w, r));
    assert!(
        common::within(Duration::from_secs(20), || node.spool_files().is_empty()),
        "a client gone mid-literal left {:?}",
        node.spool_files()
    );

    let (mut w, mut r) = connect();
    w.write_all(b"a LOGIN ana secret\r\n").unwrap();
    until(&mut r, "a OK");
    w.write_all(b"c APPEND Nowhere {100000+}\r\n").unwrap();
    w.write_all(&vec![b'y'; 100_000]).unwrap();
    w.write_all(b"\r\n").unwrap();
    let reply = until(&mut r, "c ");
    assert!(reply.starts_with("c NO [TRYCREATE]"), "{reply}");
    assert!(node.spool_files().is_empty(), "{:?}", node.spool_files());
    w.write_all(b"d NOOP\r\n").unwrap();
    until(&mut r, "d OK");

    let out = run_py(
        &node,
        r#"
import hashlib
body = b''.join(b'%07d ' % i + '\u00e1rbol '.encode() * 10 + b'\r\n' for i in range(30000))
raw = b'Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n' + body
m = login()
typ, data = m.append('INBOX', '(\\Seen)', None, raw)
assert typ == 'OK' and b'APPENDUID' in data[0], (typ, data)
ok(m.select('INBOX'))
typ, d = m.fetch('1', '(RFC822.SIZE FLAGS BODY.PEEK[])')
assert typ == 'OK', d
assert d[0][1] == raw, (len(d[0][1]), len(raw))
assert b'RFC822.SIZE %d' % len(raw) in d[0][0], d[0][0]
assert b'\\Seen' in d[0][0], d[0][0]
print(len(raw), hashlib.sha256(raw).hexdigest())
"#,
    );
    let mut words = out.split_whitespace();
    let (size, sha) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    assert!(size.parse::<usize>().unwrap_or(0) > 2_000_000, "{out}");
    // The file is named by the literal's SHA-256: stored byte for byte.
    let file = node.data_dir.join("blobs").join(&sha[..2]).join(sha);
    assert!(file.exists(), "no body file {}", file.display());
    assert!(node.spool_files().is_empty(), "{:?}", node.spool_files());
}
