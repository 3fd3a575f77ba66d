//! Hostile and broken IMAP clients (RFC 3501 7.1.3 BAD, 7.1.5 BYE, 5.4 autologout):
//! an over-long line, invalid syntax, binary garbage, a client that stalls mid-command
//! or mid-literal, and huge literal announcements each get BAD/NO/BYE or a timeout
//! close, while a well-behaved client keeps being served the whole time.

mod common;

use common::{Node, assert_ok, python};

/// Raw-socket helpers both scripts use (PORT is the first argument).
const PY_CLIENT: &str = r#"
import socket, sys, time

PORT = int(sys.argv[1])

def conn():
    s = socket.create_connection(('127.0.0.1', PORT), timeout=15)
    greeting = recv_line(s)
    assert greeting.startswith(b'* OK'), greeting
    return s

def recv_line(s):
    buf = b''
    while not buf.endswith(b'\r\n'):
        c = s.recv(1)
        if not c:
            return buf
        buf += c
    return buf

def recv_until_closed(s, limit=30):
    s.settimeout(limit)
    data = b''
    try:
        while True:
            c = s.recv(65536)
            if not c:
                return data
            data += c
    except (ConnectionResetError, socket.timeout):
        return data

"#;

const SCRIPT: &str = r#"
import imaplib, threading

stop = threading.Event()
good = {'rounds': 0, 'error': None}

def good_client():
    try:
        while not stop.is_set():
            m = imaplib.IMAP4('127.0.0.1', PORT)
            m.login('ana', 'secret')
            assert m.select('INBOX')[0] == 'OK'
            typ, d = m.append('INBOX', None, None, b'Subject: ok\r\n\r\nfine\r\n')
            assert typ == 'OK', d
            typ, d = m.fetch('1:*', '(FLAGS)')
            assert typ == 'OK', d
            m.logout()
            good['rounds'] += 1
    except Exception as e:
        good['error'] = repr(e)

t = threading.Thread(target=good_client)
t.start()

def check(name, cond, info):
    if not cond:
        stop.set()
        raise SystemExit('%s: %r' % (name, info))
    print('ok:', name)

# 1. A 1 MB line without CRLF: BAD and BYE, connection closed.
s = conn()
try:
    s.sendall(b'a1 LOGIN ' + b'x' * (1024 * 1024))
except (BrokenPipeError, ConnectionResetError):
    pass
out = recv_until_closed(s)
check('1 MB line', b'BAD' in out and b'BYE' in out, out[:200])

# 2. Invalid syntax: tagged BAD where there is a tag, untagged BAD where not; the
#    session stays usable.
s = conn()
s.sendall(b'a1 FOO\r\n')
l = recv_line(s); check('unknown command', l.startswith(b'a1 BAD'), l)
s.sendall(b'* LOGIN\r\n')
l = recv_line(s); check('star tag', l.startswith(b'* BAD'), l)
s.sendall(b'\r\n')
l = recv_line(s); check('missing tag', l.startswith(b'* BAD'), l)
s.sendall(b'a2 LOGIN\r\n')
l = recv_line(s); check('missing arguments', l.startswith(b'a2 BAD'), l)
s.sendall(b'a3 SELECT INBOX\r\n')
l = recv_line(s); check('select before login', l.startswith(b'a3 BAD'), l)
s.sendall(b'a4 FETCH 1:* (FLAGS\r\n')
l = recv_line(s); check('unbalanced parenthesis', l.startswith(b'a4 BAD'), l)
s.sendall(b'a5 NOOP\r\n')
l = recv_line(s); check('still usable', l.startswith(b'a5 OK'), l)
s.sendall(b'a6 LOGOUT\r\n')
out = recv_until_closed(s)
check('logout', b'* BYE' in out and b'a6 OK' in out, out)

# 3. Binary garbage: BAD responses, then BYE; never a crash.
import random
random.seed(7)
s = conn()
garbage = bytes(random.randrange(256) for _ in range(20000))
garbage = garbage.replace(b'{', b'(')  # no literal announcements in this one
try:
    s.sendall(garbage + b'\r\n' + b'\x00\xff\r\n' * 20)
except (BrokenPipeError, ConnectionResetError):
    pass
out = recv_until_closed(s)
check('binary garbage', b'BAD' in out and b'BYE' in out, out[:300])

# 4. A client that stalls mid-command is logged out after timeout_s (2 s).
s = conn()
t0 = time.time()
s.sendall(b'a1 LOGIN ana')
out = recv_until_closed(s)
dt = time.time() - t0
check('stall mid-line', b'BYE' in out and 1.5 <= dt < 10, (out, dt))

# ... and mid-literal.
s = conn()
s.sendall(b'a1 LOGIN ana secret\r\n')
l = recv_line(s); check('login', l.startswith(b'a1 OK'), l)
s.sendall(b'a2 APPEND INBOX {100}\r\n')
l = recv_line(s); check('continuation', l.startswith(b'+'), l)
t0 = time.time()
s.sendall(b'0123456789')
out = recv_until_closed(s)
dt = time.time() - t0
check('stall mid-literal', b'BYE' in out and 1.5 <= dt < 10, (out, dt))

# 5. Huge literal announcements: refused without reading them.
s = conn()
s.sendall(b'a1 LOGIN ana secret\r\n')
l = recv_line(s); check('login', l.startswith(b'a1 OK'), l)
s.sendall(b'a2 APPEND INBOX {4000000000}\r\n')
l = recv_line(s); check('huge sync literal', l.startswith(b'a2 NO') or l.startswith(b'a2 BAD'), l)
s.sendall(b'a3 NOOP\r\n')
l = recv_line(s); check('usable after refused literal', l.startswith(b'a3 OK'), l)
s.sendall(b'a4 APPEND INBOX {4000000000+}\r\nxxxxxxxx')
out = recv_until_closed(s)
check('huge non-sync literal', (b'a4 NO' in out or b'a4 BAD' in out) and b'BYE' in out, out)

# 6. Unauthenticated garbage cannot log in with a bad password quickly.
s = conn()
t0 = time.time()
s.sendall(b'a1 LOGIN ana nope\r\n')
l = recv_line(s)
check('bad password delayed', l.startswith(b'a1 NO') and time.time() - t0 >= 0.9, l)

time.sleep(0.5)
stop.set()
t.join(30)
check('good client unaffected', good['error'] is None and good['rounds'] >= 3, good)
print('BAD-INPUT-OK rounds=%d' % good['rounds'])
"#;

#[test]
fn bad_input_gets_bad_no_bye_or_timeout_while_other_clients_are_served() {
    let node = Node::builder().imap("timeout_s = 2").start();
    node.add_user("ana", "secret");
    let out = python(
        &format!("{PY_CLIENT}{SCRIPT}"),
        &[&node.imap_port.to_string()],
    );
    let stdout = assert_ok(&out, "bad-input script");
    assert!(stdout.contains("BAD-INPUT-OK"), "{stdout}");
    // The node survived all of it.
    let probe = python(
        r#"
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
m.login('ana', 'secret')
print(m.select('INBOX')[0])
"#,
        &[&node.imap_port.to_string()],
    );
    assert!(assert_ok(&probe, "probe").contains("OK"));
    assert!(
        !node.log_text().contains("panicked"),
        "panic in the log:\n{}",
        node.log_text()
    );
}

#[test]
fn too_many_sessions_get_bye_unavailable() {
    let node = Node::builder().imap("max_sessions = 2").start();
    let out = python(
        r#"
import socket, sys, time
port = int(sys.argv[1])
keep = []
for i in range(2):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    assert s.recv(1000).startswith(b'* OK'), i
    keep.append(s)
s = socket.create_connection(('127.0.0.1', port), timeout=10)
l = s.recv(1000)
assert l.startswith(b'* BYE [UNAVAILABLE]'), l
keep[0].close()
time.sleep(0.3)
s = socket.create_connection(('127.0.0.1', port), timeout=10)
l = s.recv(1000)
assert l.startswith(b'* OK'), l
print('LIMIT-OK')
"#,
        &[&node.imap_port.to_string()],
    );
    assert!(assert_ok(&out, "session limit script").contains("LIMIT-OK"));
}

/// Issue 16: before login a client can make the node hold little and not for long:
/// one command (lines and literals together) of at most 16 KiB, and
/// `imap.login_timeout_s` to log in (2 s here; timeout_s stays the default 30 min).
#[test]
fn before_login_commands_are_small_and_sessions_short() {
    let node = Node::builder().imap("login_timeout_s = 2").start();
    node.add_user("ana", "secret");
    let script = r#"
def check(name, cond, info):
    if not cond:
        raise SystemExit('%s: %r' % (name, info))
    print('ok:', name)

# Chained 8 KiB literals: the third would pass 16 KiB and is refused unread.
s = conn()
s.sendall(b'a1 LOGIN {8000}\r\n')
check('first literal', recv_line(s).startswith(b'+'), '')
s.sendall(b'x' * 8000 + b' {8000}\r\n')
check('second literal', recv_line(s).startswith(b'+'), '')
s.sendall(b'y' * 8000 + b' {8000}\r\n')
l = recv_line(s)
check('third literal refused', l.startswith(b'a1 NO') or l.startswith(b'a1 BAD'), l)

# A 20 KB line before login: refused and closed.
s = conn()
try:
    s.sendall(b'a1 LOGIN ' + b'z' * 20000 + b'\r\n')
except (BrokenPipeError, ConnectionResetError):
    pass
out = recv_until_closed(s)
check('long line before login', b'BYE' in out, out[:200])

# Logged in, the same line is an ordinary (bad) command.
s = conn()
s.sendall(b'a1 LOGIN ana secret\r\n')
check('login', recv_line(s).startswith(b'a1 OK'), '')
s.sendall(b'a2 SELECT ' + b'z' * 20000 + b'\r\n')
l = recv_line(s)
check('long line after login', l.startswith(b'a2 '), l[:100])
s.sendall(b'a3 NOOP\r\n')
check('usable', recv_line(s).startswith(b'a3 OK'), '')

# Silent before login: BYE after login_timeout_s.
s = conn()
t0 = time.time()
out = recv_until_closed(s)
dt = time.time() - t0
check('login timeout', b'BYE' in out and 1.5 <= dt < 8, (out, dt))
print('PRE-LOGIN-OK')
"#;
    let out = python(
        &format!("{PY_CLIENT}{script}"),
        &[&node.imap_port.to_string()],
    );
    let stdout = assert_ok(&out, "pre-login script");
    assert!(stdout.contains("PRE-LOGIN-OK"), "{stdout}");
}
