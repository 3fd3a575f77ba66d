"""Differential test of per-session IMAP state (run by tests/imap_dovecot.rs; Python 3
stdlib only): \\Recent (RECENT in SELECT, EXAMINE and new-mail updates, STATUS,
SEARCH NEW/OLD/RECENT, FETCH FLAGS), the untagged FLAGS/PERMANENTFLAGS that
announce new keywords (RFC 3501 2.3.2, 6.3.1, 6.3.2, 6.3.10, 6.4.4, 7.2.6), CREATE
with a trailing separator (6.3.3), LSUB \\Noselect (6.3.9), and the tagged answers
to odd mailbox names, quoted and as imaplib sends them (unquoted).

Usage: imap_dovecot_state.py LABEL_A PORT_A USER_A LABEL_B PORT_B USER_B PASSWORD

Server A is the reference. The same script of three sessions (a, b, c) on an empty
INBOX runs against each server; after every step the untagged responses of interest
are recorded and compared. Normalisation, and why:
- flag lists are compared as sets (RFC 3501 9: flag-list is a list of flags with no
  order; Dovecot lists keywords in the order they were made, clusterd sorted);
- of an unsolicited FETCH only FLAGS is compared (clusterd adds UID, which RFC 3501
  7.4.2 allows; Dovecot does not);
- UIDVALIDITY and the texts after response codes are not compared (server choices).

Exit status: 0 when everything matches, 10 when something differs (report on
stdout), anything else is a harness failure.
"""

import imaplib
import re
import sys

MISMATCH_EXIT = 10
COMPARED = ('EXISTS', 'RECENT', 'EXPUNGE', 'FLAGS', 'PERMANENTFLAGS', 'FETCH', 'SEARCH',
            'STATUS', 'UNSEEN', 'UIDNEXT', 'LSUB')


def flag_set(text):
    m = re.search(rb'\(([^()]*)\)', text)
    return sorted(m.group(1).decode().split()) if m else text


def norm(key, values):
    if key in ('EXISTS', 'RECENT', 'EXPUNGE', 'UNSEEN', 'UIDNEXT'):
        return [int(v) for v in values]
    if key in ('FLAGS', 'PERMANENTFLAGS'):
        return [flag_set(v) for v in values]
    if key == 'SEARCH':
        return sorted(int(x) for v in values for x in v.split())
    if key == 'FETCH':
        out = {}
        for v in values:
            m = re.match(rb'(\d+) \(.*?FLAGS (\([^()]*\))', v)
            out[int(m.group(1)) if m else v] = flag_set(m.group(2)) if m else 'no FLAGS'
        return out
    if key in ('LIST', 'LSUB'):
        out = []
        for v in values:
            m = re.match(rb'\(([^)]*)\) \S+ "?(.*?)"?$', v)
            out.append((sorted(m.group(1).decode().split()), m.group(2).decode()) if m else v)
        return sorted(out)
    if key == 'STATUS':
        out = []
        for v in values:
            items = re.search(rb'\(([^()]*)\)\s*$', v).group(1).split()
            out.append(dict(zip((i.decode() for i in items[0::2]),
                                (int(n) for n in items[1::2]))))
        return out
    return values


def run(side):
    """The script against one server: a list of (step, recorded responses)."""
    label, port, user, password = side

    def session():
        m = imaplib.IMAP4('127.0.0.1', port, timeout=30)
        m.login(user, password)
        return m

    a, b, c = session(), session(), session()
    names = {id(a): 'a', id(b): 'b', id(c): 'c'}
    log = []

    def step(m, what, call, also=()):
        m.untagged_responses.clear()
        try:
            typ, data = call()
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:  # imaplib raises for BAD
            typ = 'BAD'
        rec = {k: norm(k, v) for k, v in m.untagged_responses.items()
               if k in COMPARED or k in also}
        rec['tagged'] = typ
        log.append(('%s: %s' % (names[id(m)], what), rec))

    def msg(n):
        return ('Subject: state %d\r\nMessage-ID: <state%d@example.org>\r\n\r\n'
                'body %d\r\n' % (n, n, n)).encode()

    def cmd(m, what, *args, also=()):
        # _simple_command leaves every untagged response in place (imaplib's own
        # search(), fetch(), store() and status() take theirs away).
        step(m, what, lambda: m._simple_command(*args), also)

    status = ('STATUS', 'INBOX', '(MESSAGES RECENT UIDNEXT UNSEEN)')
    for n, flags in ((1, '(\\Seen)'), (2, '($Pre)'), (3, None)):
        step(a, 'APPEND %d %s' % (n, flags), lambda: a.append('INBOX', flags, None, msg(n)))
    cmd(b, 'STATUS', *status)
    step(b, 'EXAMINE', lambda: b.select('INBOX', readonly=True))
    for key in ('RECENT', 'NEW', 'OLD'):
        cmd(b, 'SEARCH ' + key, 'SEARCH', key)
    cmd(b, 'FETCH FLAGS', 'FETCH', '1:*', '(FLAGS)')
    step(b, 'CLOSE', lambda: b.close())
    step(a, 'SELECT', lambda: a.select('INBOX'))
    for key in ('RECENT', 'NEW', 'OLD'):
        cmd(a, 'SEARCH ' + key, 'SEARCH', key)
    cmd(a, 'FETCH FLAGS', 'FETCH', '1:*', '(FLAGS)')
    step(c, 'SELECT', lambda: c.select('INBOX'))
    for key in ('RECENT', 'OLD'):
        cmd(c, 'SEARCH ' + key, 'SEARCH', key)
    cmd(b, 'STATUS', *status)
    step(b, 'APPEND 4', lambda: b.append('INBOX', None, None, msg(4)))
    cmd(b, 'STATUS (one untaken)', *status)
    cmd(a, 'NOOP (new mail)', 'NOOP')
    cmd(c, 'NOOP (new mail)', 'NOOP')
    cmd(b, 'STATUS', *status)
    cmd(a, 'STORE 1 +$New1', 'STORE', '1', '+FLAGS', '($New1)')
    cmd(a, 'STORE 2 +$New1 \\Flagged', 'STORE', '2', '+FLAGS', '($New1 \\Flagged)')
    cmd(c, 'NOOP (new keyword)', 'NOOP')
    step(b, 'APPEND 5 $New2', lambda: b.append('INBOX', '($New2)', None, msg(5)))
    cmd(a, 'NOOP (mail with a new keyword)', 'NOOP')
    cmd(a, 'STORE 3 +\\Seen', 'STORE', '3', '+FLAGS', '(\\Seen)')
    for key in ('NEW', 'OLD', 'RECENT', 'UNSEEN'):
        cmd(a, 'SEARCH ' + key, 'SEARCH', key)
    step(c, 'EXAMINE', lambda: c.select('INBOX', readonly=True))
    cmd(c, 'FETCH FLAGS', 'FETCH', '1:*', '(FLAGS)')
    cmd(b, 'STATUS', *status)
    # Copies are recent in their new mailbox; an expunge changes the recent count;
    # a session's own APPEND to its mailbox is recent for it.
    cmd(a, 'CREATE Other', 'CREATE', 'Other')
    cmd(a, 'COPY 1:2 Other', 'COPY', '1:2', 'Other')
    cmd(b, 'STATUS Other', 'STATUS', 'Other', '(MESSAGES RECENT UIDNEXT UNSEEN)')
    cmd(a, 'STORE 2 +\\Deleted', 'STORE', '2', '+FLAGS.SILENT', '(\\Deleted)')
    cmd(a, 'EXPUNGE', 'EXPUNGE')
    cmd(c, 'NOOP (expunged)', 'NOOP')
    step(a, 'APPEND 6 (own mailbox)', lambda: a.append('INBOX', None, None, msg(6)))
    cmd(a, 'SEARCH RECENT', 'SEARCH', 'RECENT')
    cmd(c, 'NOOP (after own APPEND elsewhere)', 'NOOP')
    step(b, 'SELECT Other', lambda: b.select('Other'))
    cmd(b, 'FETCH FLAGS', 'FETCH', '1:*', '(FLAGS)')
    step(b, 'CLOSE', lambda: b.close())
    # CREATE with a trailing separator (RFC 3501 6.3.3), and LSUB's \Noselect for
    # an unsubscribed parent under % (6.3.9). Only names under Work and Trail are
    # listed: clusterd subscribes the mailboxes of a new account and the names CREATE
    # is given, Dovecot does not. LIST is not compared for Work: CREATE Work/Reports
    # makes Work a mailbox in clusterd (RFC 3501 6.3.3: the server SHOULD create the
    # superior names, here unsubscribed), a \Noselect name in Dovecot's Maildir++.
    cmd(a, 'CREATE Trail/', 'CREATE', 'Trail/')
    cmd(a, 'LIST Trail*', 'LIST', '""', 'Trail*', also=('LIST',))
    cmd(a, 'CREATE Work/Reports', 'CREATE', 'Work/Reports')
    cmd(a, 'SUBSCRIBE Work/Reports', 'SUBSCRIBE', 'Work/Reports')
    for pattern in ('Work%', 'Work/%', 'Work*', '%/Reports'):
        cmd(a, 'LSUB ' + pattern, 'LSUB', '""', pattern)
    # Odd but valid names that name no mailbox: NO, not BAD (only the tagged status
    # is compared; the two servers' hierarchy separators differ).
    for n in ('(', ')', '{', ']', '%', '*', '\\', '"', 'a b', '&', 'x&y', '&Jjo', 'NIL'):
        quoted = '"' + n.replace('\\', '\\\\').replace('"', '\\"') + '"'
        cmd(b, 'SELECT ' + quoted, 'SELECT', quoted)
        cmd(b, 'STATUS ' + quoted, 'STATUS', quoted, '(MESSAGES)')
        cmd(b, 'LIST "" ' + quoted[:-1] + '%*"', 'LIST', '""', quoted[:-1] + '%*"')
    # Sent as they are (imaplib does not quote): Dovecot takes %, * and \ in a bare
    # name (NO, or LIST's OK), the rest is BAD on both.
    for n in ('(', ')', '{', '%', '*', '"', '\\', ']'):
        cmd(b, 'SELECT %s (unquoted)' % n, 'SELECT', n)
        cmd(b, 'LIST "" %s%%* (unquoted)' % n, 'LIST', '""', n + '%*')
    cmd(b, 'NOOP', 'NOOP')
    for m in (a, b, c):
        m.logout()
    return log


def main():
    args = sys.argv[1:]
    password = args[6]
    sides = [(args[0], int(args[1]), args[2], password),
             (args[3], int(args[4]), args[5], password)]
    (la, ra), (lb, rb) = [(s[0], run(s)) for s in sides]
    diffs = []
    for (step, va), (_, vb) in zip(ra, rb):
        if va != vb:
            diffs.append('== %s\n   %s: %s\n   %s: %s' % (step, la, va, lb, vb))
    if len(ra) != len(rb):
        raise RuntimeError('the runs took different numbers of steps')
    if diffs:
        print('%d DIFFERENCES between %s (reference) and %s in %d steps'
              % (len(diffs), la, lb, len(ra)))
        print('\n'.join(diffs))
        return MISMATCH_EXIT
    for step, v in ra:
        print('%s -> %s' % (step, v))
    print('ALL EQUAL: %d steps match between %s and %s' % (len(ra), la, lb))
    return 0


if __name__ == '__main__':
    sys.exit(main())
