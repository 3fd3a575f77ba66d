//! RFC 3501 details checked with Python's imaplib and raw sockets against the real
//! binary: `\Recent` belongs to one session (2.3.2, 6.3.1, 6.3.2, 6.3.10, 6.4.4,
//! 7.3.2), CREATE with a trailing hierarchy separator (6.3.3), odd but valid mailbox
//! names answered with NO and never a lost connection, untagged FLAGS when a new
//! keyword appears (7.2.6), and LSUB's `\Noselect` for an unsubscribed parent that
//! the `%` wildcard returns (6.3.9).

mod common;

use common::{Node, assert_ok, python};

/// imaplib helpers for the scripts below. `q` quotes a mailbox name the way RFC 3501
/// 4.3 asks (imaplib sends arguments as they are).
const PRELUDE: &str = r#"
import imaplib, re, socket, sys

PORT = int(sys.argv[1])

def login():
    m = imaplib.IMAP4('127.0.0.1', PORT)
    m.login('ana', 'secret')
    return m

def ok(res):
    assert res[0] == 'OK', res
    return res[1]

def take(m, name):
    return m.untagged_responses.pop(name, [])

def select(m, name, readonly=False):
    ok(m.select(name, readonly))
    take(m, 'EXISTS')  # imaplib's select leaves it there

def q(name):
    return '"' + name.replace('\\', '\\\\').replace('"', '\\"') + '"'

def search(m, key):
    return [int(x) for x in ok(m.search(None, key))[0].split()]

def flags_of(fetches):
    out = {}
    for f in fetches:
        mm = re.match(rb'(\d+) \(.*FLAGS \(([^)]*)\)', f)
        out[int(mm.group(1))] = set(mm.group(2).decode().split())
    return out

def message(n):
    return ('Subject: m%d\r\nMessage-ID: <m%d@example.org>\r\n\r\nbody %d\r\n' % (n, n, n)).encode()
"#;

fn run(node: &Node, script: &str, done: &str) {
    let out = python(
        &format!("{PRELUDE}\n{script}\nprint('{done}')"),
        &[&node.imap_port.to_string()],
    );
    let stdout = assert_ok(&out, "imaplib script");
    assert!(stdout.contains(done), "{stdout}");
    assert!(
        !node.log_text().contains("panicked"),
        "panic in the log:\n{}",
        node.log_text()
    );
}

fn node() -> Node {
    let node = Node::start();
    node.add_user("ana", "secret");
    node
}

#[test]
fn recent_belongs_to_the_first_session_that_selects_the_mailbox() {
    let node = node();
    run(
        &node,
        r#"
a, b, c = login(), login(), login()
for i in (1, 2):
    ok(a.append('INBOX', None, None, message(i)))
# Nobody has seen them: STATUS counts both as recent.
st = ok(b.status('INBOX', '(MESSAGES RECENT UNSEEN)'))[0]
assert b'RECENT 2' in st, st

# EXAMINE sees them as recent but does not take them (RFC 3501 6.3.2).
ok(b.select('INBOX', readonly=True))
assert take(b, 'RECENT') == [b'2'], b.untagged_responses
assert search(b, 'RECENT') == [1, 2]
ok(b.close())
st = ok(c.status('INBOX', '(RECENT)'))[0]
assert b'RECENT 2' in st, st

# The first SELECT takes them: RECENT 2, \Recent in FLAGS, SEARCH NEW/OLD/RECENT.
select(a, 'INBOX')
assert take(a, 'RECENT') == [b'2'], a.untagged_responses
typ, d = a.fetch('1:*', '(FLAGS)')
assert all('\\Recent' in f for f in flags_of(d).values()), d
assert search(a, 'RECENT') == [1, 2]
assert search(a, 'NEW') == [1, 2]
assert search(a, 'OLD') == []

# Every later session sees them as not recent, and so does STATUS.
select(c, 'INBOX')
assert take(c, 'RECENT') == [b'0'], c.untagged_responses
typ, d = c.fetch('1:*', '(FLAGS)')
assert not any('\\Recent' in f for f in flags_of(d).values()), d
assert search(c, 'RECENT') == []
assert search(c, 'OLD') == [1, 2]
st = ok(b.status('INBOX', '(RECENT)'))[0]
assert b'RECENT 0' in st, st

# NEW is RECENT and UNSEEN.
ok(a.store('1', '+FLAGS.SILENT', '(\\Seen)'))
assert search(a, 'NEW') == [2]
assert search(a, 'RECENT') == [1, 2]

# Mail arriving while both have the mailbox selected is recent for the session
# that hears of it first, with an untagged RECENT.
ok(b.append('INBOX', None, None, message(3)))
ok(a.noop())
assert take(a, 'EXISTS') == [b'3'], a.untagged_responses
assert take(a, 'RECENT') == [b'3'], a.untagged_responses
ok(c.noop())
assert take(c, 'EXISTS') == [b'3'], c.untagged_responses
# Its number of recent messages did not change: no RECENT (as Dovecot).
assert take(c, 'RECENT') == [], c.untagged_responses
assert search(c, 'RECENT') == []
assert search(a, 'RECENT') == [1, 2, 3]

# A session's own APPEND to its selected mailbox is recent for it.
ok(c.append('INBOX', None, None, message(4)))
assert search(c, 'RECENT') == [4], c.untagged_responses
assert search(a, 'RECENT') == [1, 2, 3]
"#,
        "RECENT-OK",
    );
}

#[test]
fn create_with_a_trailing_separator_creates_the_name() {
    let node = node();
    run(
        &node,
        r#"
m = login()
ok(m.create('foo/'))
ok(m.create('a/b/'))
names = [l.decode() for l in ok(m.list('""', '*'))]
assert any(l.endswith('"/" "foo"') for l in names), names
assert any(l.endswith('"/" "a/b"') for l in names), names
assert not any(l.endswith('/"') and not l.endswith('"/"') for l in names), names
ok(m.select('foo'))
typ, d = m.create('foo/')
assert typ == 'NO' and b'ALREADYEXISTS' in d[0], (typ, d)
"#,
        "CREATE-OK",
    );
}

#[test]
fn odd_mailbox_names_get_no_and_the_connection_stays() {
    let node = node();
    run(
        &node,
        r#"
m = login()
names = ['(', ')', '{', '}', '%', '*', '"', '\\', ']', '[', '(){}%*"\\]', 'a b', '&', 'x&y',
         '&Jjo', '&AGE-', '&-', '~', 'NIL', 'foo/', '/foo', 'a//b', '{3}', '\\Seen']
for n in names:
    for cmd, args in (('SELECT', (q(n),)), ('EXAMINE', (q(n),)),
                      ('STATUS', (q(n), '(MESSAGES)')), ('DELETE', (q(n),)),
                      ('RENAME', (q(n), '"elsewhere"'))):
        typ, d = m._simple_command(cmd, *args)
        assert typ == 'NO', (cmd, n, typ, d)
    typ, d = m.append(q(n), None, None, message(1))
    assert typ == 'NO', ('APPEND', n, typ, d)
    for cmd in ('LIST', 'LSUB'):
        typ, d = m._simple_command(cmd, '""', q(n + '%*'))
        assert typ == 'OK', (cmd, n, typ, d)
        found = m.untagged_responses.pop(cmd, [])
        assert found == [] or '%' in n or '*' in n, (cmd, n, found)
    ok(m.noop())

# Names sent as they are (imaplib does not quote): `%`, `*` and `\` are not atom
# characters, but Dovecot takes them as names and so do we, as often as the client
# tries (ten BADs in a row would end the session). What cannot be a name stays BAD.
def bad(*args):
    try:
        m._simple_command(*args)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as e:
        assert ' BAD ' in str(e), e
        return
    raise AssertionError(('accepted', args))
for i in range(6):
    for n in ('%', '*', '\\', 'a%b\\c'):
        typ, d = m._simple_command('SELECT', n)
        assert typ == 'NO', ('SELECT', n, typ, d)
        typ, d = m._simple_command('STATUS', n, '(MESSAGES)')
        assert typ == 'NO', ('STATUS', n, typ, d)
        typ, d = m._simple_command('LIST', '""', n + '%*')
        assert typ == 'OK', ('LIST', n, typ, d)
bad('SELECT', '(')
bad('LIST', '""', '(%*')
ok(m.noop())
ok(m.append('INBOX', None, None, message(1)))
ok(m.select('INBOX'))
for n in names:
    typ, d = m.copy('1', q(n))
    assert typ == 'NO', ('COPY', n, typ, d)
"#,
        "NAMES-OK",
    );
}

#[test]
fn a_new_keyword_is_announced_by_untagged_flags_first() {
    let node = node();
    run(
        &node,
        r#"
a, b = login(), login()
ok(a.append('INBOX', '($Old)', None, message(1)))
ok(a.append('INBOX', None, None, message(2)))
ok(a.select('INBOX'))
flags = take(a, 'FLAGS')
assert len(flags) == 1 and b'$Old' in flags[0], flags
perm = [x for x in take(a, 'OK') if b'PERMANENTFLAGS' in x]
assert perm and b'$Old' in perm[0] and b'\\*' in perm[0], perm

# Raw socket, so the order of the responses is visible.
s = socket.create_connection(('127.0.0.1', PORT), timeout=10)
f = s.makefile('rb')
f.readline()
def cmd(tag, line):
    s.sendall(tag + b' ' + line + b'\r\n')
    out = []
    while True:
        l = f.readline()
        assert l, 'connection closed'
        out.append(l.rstrip(b'\r\n'))
        if l.startswith(tag + b' '):
            assert l.split()[1] == b'OK', out
            return out
cmd(b'r1', b'LOGIN ana secret')
cmd(b'r2', b'SELECT INBOX')
out = cmd(b'r3', b'STORE 1 +FLAGS ($New1)')
assert out[0].startswith(b'* FLAGS (') and b'$New1' in out[0] and b'$Old' in out[0], out
assert out[1].startswith(b'* OK [PERMANENTFLAGS (') and b'$New1' in out[1] and b'\\*' in out[1], out
assert out[2].startswith(b'* 1 FETCH') and b'$New1' in out[2], out
# A keyword already announced, or a system flag, brings no FLAGS response.
out = cmd(b'r4', b'STORE 2 +FLAGS ($New1 \\Flagged)')
assert not any(l.startswith(b'* FLAGS') for l in out), out

# The other session learns of the keyword before the FETCH that shows it.
ok(a.noop())
flags = take(a, 'FLAGS')
assert len(flags) == 1 and b'$New1' in flags[0] and b'$Old' in flags[0], flags
perm = [x for x in take(a, 'OK') if b'PERMANENTFLAGS' in x]
assert perm and b'$New1' in perm[0] and b'\\*' in perm[0], perm

# A message appended with a new keyword to the selected mailbox: FLAGS before EXISTS.
ok(b.append('INBOX', '($New2)', None, message(3)))
out = cmd(b'r5', b'NOOP')
i_flags = [i for i, l in enumerate(out) if l.startswith(b'* FLAGS') and b'$New2' in l]
i_exists = [i for i, l in enumerate(out) if l == b'* 3 EXISTS']
assert i_flags and i_exists and i_flags[0] < i_exists[0], out
ok(a.noop())
flags = take(a, 'FLAGS')
assert len(flags) == 1 and b'$New2' in flags[0], flags
# EXAMINE: FLAGS lists the keywords, PERMANENTFLAGS stays empty.
ok(b.select('INBOX', readonly=True))
flags = take(b, 'FLAGS')
assert all(k in flags[0] for k in (b'$Old', b'$New1', b'$New2')), flags
perm = [x for x in take(b, 'OK') if b'PERMANENTFLAGS' in x]
assert perm == [b'[PERMANENTFLAGS ()] Read-only mailbox'], perm
"#,
        "FLAGS-OK",
    );
}

#[test]
fn lsub_marks_an_unsubscribed_parent_noselect_under_percent() {
    let node = node();
    run(
        &node,
        r#"
m = login()
def lsub(pattern):
    return [l.decode() for l in ok(m.lsub('""', pattern)) if l]
# CREATE makes the parent on the way; only the name the client gave is subscribed.
ok(m.create('Work/Reports'))
ok(m.subscribe('Work/Reports'))
top = lsub('%')
assert '(\\Noselect) "/" "Work"' in top, top
every = lsub('*')
assert '() "/" "Work/Reports"' in every, every
assert not any(l.endswith('"Work"') for l in every), every
assert lsub('Work/%') == ['() "/" "Work/Reports"'], lsub('Work/%')
# A subscribed name under a parent that does not exist at all.
ok(m.subscribe('Ghost/Child'))
top = lsub('%')
assert '(\\Noselect) "/" "Ghost"' in top, top
# Once the parent is subscribed it is listed as itself.
ok(m.subscribe('Work'))
assert '() "/" "Work"' in lsub('%'), lsub('%')
"#,
        "LSUB-OK",
    );
}
