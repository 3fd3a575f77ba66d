//! mbsync (isync) synchronises a 1,000-message mailbox both ways with clusterd: a
//! full download into a local Maildir, then a flag change, a deletion and a new
//! message made locally reach the server; mbsync reports no errors.

mod common;

use common::{Node, assert_ok, python, require_tool};

const SCRIPT: &str = r#"
import imaplib, os, re, socket, subprocess, sys, threading

PORT = int(sys.argv[1])
DIR = sys.argv[2]
IMAPS = int(sys.argv[3])
N = 1000

# Fill INBOX with N messages over one connection, pipelined with LITERAL+.
s = socket.create_connection(('127.0.0.1', PORT), timeout=120)
f = s.makefile('rb')
assert f.readline().startswith(b'* OK')
s.sendall(b'l LOGIN ana secret\r\n')
assert f.readline().startswith(b'l OK')
def sender():
    out = []
    for i in range(N):
        body = ('From: sender%d@example.org\r\nTo: ana@cluster.com.ec\r\nSubject: bulk %d\r\n'
                'Message-ID: <bulk%d@example.org>\r\n\r\nmessage number %d\r\n' % (i, i, i, i)).encode()
        out.append(b'a%d APPEND INBOX {%d+}\r\n%s\r\n' % (i, len(body), body))
        if len(out) == 50:
            s.sendall(b''.join(out)); out = []
    s.sendall(b''.join(out))
th = threading.Thread(target=sender)
th.start()
done = 0
while done < N:
    l = f.readline()
    assert l, 'connection closed during APPENDs'
    if l.startswith(b'a'):
        assert l.split()[1] == b'OK', l
        done += 1
th.join()
s.sendall(b'z LOGOUT\r\n')
s.close()

# mbsync talks STARTTLS and trusts the node's self-signed certificate explicitly.
import ssl
cert = os.path.join(DIR, 'server.pem')
with open(cert, 'w') as fh:
    fh.write(ssl.get_server_certificate(('127.0.0.1', IMAPS)))

mail = os.path.join(DIR, 'mail')
os.makedirs(mail, exist_ok=True)
rc = os.path.join(DIR, 'mbsyncrc')
with open(rc, 'w') as fh:
    fh.write('''IMAPAccount test
Host 127.0.0.1
Port %d
User ana
Pass secret
SSLType STARTTLS
CertificateFile %s
AuthMechs LOGIN

IMAPStore remote
Account test

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Sync All
Expunge Both
Create Both
SyncState *
''' % (PORT, cert, mail, mail))

def mbsync():
    env = dict(os.environ, HOME=DIR)
    r = subprocess.run(['mbsync', '-c', rc, '-a'], capture_output=True, text=True, env=env, timeout=600)
    print('mbsync rc', r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert r.returncode == 0, r.stderr
    bad = [l for l in (r.stdout + r.stderr).splitlines() if 'rror' in l or 'arning' in l]
    assert not bad, bad
    return r

def local_files():
    inbox = os.path.join(mail, 'INBOX')
    files = []
    for sub in ('cur', 'new'):
        d = os.path.join(inbox, sub)
        files += [os.path.join(d, x) for x in os.listdir(d)]
    return files

mbsync()
files = local_files()
assert len(files) == N, len(files)

def uid_of(path):
    m = re.search(r',U=(\d+)', os.path.basename(path))
    assert m, path
    return int(m.group(1))

files.sort(key=uid_of)
# Flag one message Seen + Flagged locally (Maildir info ":2,FS"), delete another,
# and drop a new message into the Maildir.
flag_path = files[10]
flag_uid = uid_of(flag_path)
base = os.path.basename(flag_path).split(':2,')[0]
os.rename(flag_path, os.path.join(mail, 'INBOX', 'cur', base + ':2,FS'))
del_path = files[20]
del_uid = uid_of(del_path)
os.remove(del_path)
with open(os.path.join(mail, 'INBOX', 'new', '1700000000.local1.test'), 'wb') as fh:
    fh.write(b'From: ana@cluster.com.ec\r\nSubject: written locally\r\n\r\nhola\r\n')

mbsync()

m = imaplib.IMAP4('127.0.0.1', PORT)
m.login('ana', 'secret')
typ, d = m.select('INBOX')
count = int(d[0])
assert count == N, ('expected N messages (one deleted, one added)', count)
typ, d = m.uid('FETCH', str(flag_uid), '(FLAGS)')
assert b'\\Seen' in d[0] and b'\\Flagged' in d[0], d
typ, d = m.uid('FETCH', '1:*', '(UID)')
uids = [int(re.search(rb'UID (\d+)', x).group(1)) for x in d]
assert del_uid not in uids and len(uids) == N, ('deleted message still on the server', del_uid)
newest = max(uids)
typ, d = m.uid('FETCH', str(newest), '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
assert b'written locally' in d[0][1], d
m.logout()

# A third run has nothing to do and still succeeds.
mbsync()
assert len(local_files()) == N
print('MBSYNC-OK')
"#;

#[test]
fn mbsync_syncs_a_thousand_message_mailbox_both_ways() {
    require_tool("mbsync");
    let node = Node::start();
    node.add_user("ana", "secret");
    let work = tempfile::tempdir().unwrap();
    let out = python(
        SCRIPT,
        &[
            &node.imap_port.to_string(),
            work.path().to_str().unwrap(),
            &node.imaps_port.to_string(),
        ],
    );
    let stdout = assert_ok(&out, "mbsync script");
    assert!(stdout.contains("MBSYNC-OK"), "{stdout}");
}
