# CONDSTORE/QRESYNC differential (tests/imap_dovecot.rs, `condstore_and_qresync_match_dovecot`):
# the same sequence of changes on both servers, then the answers compared.
#
# Usage: SCRIPT LABEL_A PORT_A USER_A PASS_A LABEL_B PORT_B USER_B PASS_B
# (imap_raw_client.py is prepended by the test). Exit 0 when equal, 10 with a report
# when not.
#
# Normalisation: MODSEQ numbers are each server's own (Dovecot and clusterd count
# differently from different starting points), so absolute values are never compared.
# What is compared: which UIDs each answer names (VANISHED sets, FETCH sets with their
# flags, MODIFIED sets, SEARCH hits), the order of the messages by MODSEQ (equal
# MODSEQs grouped), and relations (HIGHESTMODSEQ grew, every reported MODSEQ is above
# the client's, HIGHESTMODSEQ equals the largest MODSEQ reported, STATUS agrees with
# SELECT). Every STORE names one UID, so both servers give each change its own MODSEQ.
import json, sys

MAILBOX = 'CondStore'


def order(modseqs):
    """UIDs ordered by MODSEQ, those with equal MODSEQs grouped (sorted)."""
    groups = {}
    for uid, ms in modseqs.items():
        groups.setdefault(ms, []).append(uid)
    return [sorted(groups[k]) for k in sorted(groups)]


def norm(line):
    """A response line with its MODSEQ values replaced by N."""
    line = re.sub(r'MODSEQ \(\d+\)', 'MODSEQ (N)', line)
    return re.sub(r'HIGHESTMODSEQ \d+', 'HIGHESTMODSEQ N', line)


def scenario(port, user, password):
    t = {}

    def conn():
        c = Raw('127.0.0.1', port)
        c.ok('LOGIN %s %s' % (user, password))
        return c

    a = conn()
    a.cmd('DELETE ' + MAILBOX)
    a.ok('CREATE ' + MAILBOX)
    for i in range(8):
        a.append(MAILBOX, message(i))
    out, _ = a.ok('ENABLE QRESYNC')
    t['enabled'] = out
    out, _ = a.ok('SELECT ' + MAILBOX)
    uv, hms0 = code(out, 'UIDVALIDITY'), code(out, 'HIGHESTMODSEQ')
    t['select_has_highestmodseq'] = hms0 is not None
    out, _ = a.ok('UID FETCH 1:* (MODSEQ)')
    t['initial_uids'] = sorted(fetches(out))
    t['initial_modseqs_at_most_highest'] = all(v[1] <= hms0 for v in fetches(out).values())
    a.close()

    # Changes while the client is away (one UID per STORE).
    b = conn()
    b.ok('SELECT ' + MAILBOX)
    b.ok('UID STORE 2 +FLAGS (\\Seen)')
    b.ok('UID STORE 3 +FLAGS ($Label1)')
    b.ok('UID STORE 5 +FLAGS (\\Flagged)')
    b.ok('UID STORE 4 +FLAGS (\\Deleted)')
    b.ok('UID STORE 6 +FLAGS (\\Deleted)')
    b.ok('EXPUNGE')
    b.append(MAILBOX, message(9))
    b.ok('UID STORE 7 +FLAGS (\\Answered)')
    b.close()

    a = conn()
    a.ok('ENABLE QRESYNC')
    out, _ = a.ok('SELECT %s (QRESYNC (%d %d))' % (MAILBOX, uv, hms0))
    hms1 = code(out, 'HIGHESTMODSEQ')
    f = fetches(out)
    t['qresync_vanished'] = vanished(out)
    t['qresync_fetch'] = {u: v[0] for u, v in sorted(f.items())}
    t['qresync_order'] = order({u: v[1] for u, v in f.items()})
    t['qresync_highest_grew'] = hms1 > hms0
    t['qresync_modseqs_above_client'] = all(v[1] > hms0 for v in f.values())
    t['qresync_highest_is_largest'] = hms1 == max(v[1] for v in f.values())
    t['qresync_no_expunge'] = not any(l.endswith(' EXPUNGE') for l in out)
    out, _ = a.ok('STATUS %s (HIGHESTMODSEQ)' % MAILBOX)
    t['status_equals_select'] = ('HIGHESTMODSEQ %d' % hms1) in out[0]
    mod3 = f[3][1]

    out, _ = a.ok('EXAMINE %s (QRESYNC (%d %d 1:5))' % (MAILBOX, uv, hms0))
    t['known_closed'] = [l for l in out if '[CLOSED]' in l] != []
    t['known_vanished'] = vanished(out)
    t['known_fetch'] = sorted(fetches(out))

    out, _ = a.ok('SELECT ' + MAILBOX)
    out, _ = a.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % hms0)
    t['uidfetch_vanished'] = vanished(out)
    t['uidfetch_fetch'] = {u: v[0] for u, v in sorted(fetches(out).items())}
    out, _ = a.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)' % mod3)
    t['changedsince_mid'] = sorted(fetches(out))
    t['changedsince_mid_has_modseq'] = all(v[1] is not None for v in fetches(out).values())

    out, _ = a.ok('SEARCH MODSEQ %d' % mod3)
    hits = out[0].split('(')[0].split()[2:]
    t['search_modseq_hits'] = sorted(int(h) for h in hits)
    t['search_modseq_has_highest'] = '(MODSEQ ' in out[0]

    st, out = a.cmd('UID STORE 1:* (UNCHANGEDSINCE %d) +FLAGS (\\Draft)' % hms0)
    t['unchangedsince_code'] = st.split(']')[0] + ']' if st.startswith('OK [') else st.split(' ')[0]
    t['unchangedsince_fetch'] = sorted(fetches(out))

    # Live changes to a QRESYNC session: VANISHED instead of EXPUNGE, MODSEQ in FETCH.
    b = conn()
    b.ok('SELECT ' + MAILBOX)
    b.ok('UID STORE 8 +FLAGS (\\Deleted)')
    b.ok('EXPUNGE')
    b.ok('UID STORE 1 +FLAGS (\\Flagged)')
    b.close()
    out, _ = a.ok('NOOP')
    t['live_vanished'] = vanished(out, earlier=False)
    t['live_expunge_lines'] = [l for l in out if l.endswith(' EXPUNGE')]
    f = fetches(out)
    t['live_fetch'] = {u: v[0] for u, v in sorted(f.items())}
    t['live_fetch_has_modseq'] = all(v[1] is not None for v in f.values())
    # An expunge that may not be reported yet (during FETCH, RFC 3501 7.4.1) next to a
    # flag change that is.
    b = conn()
    b.ok('SELECT ' + MAILBOX)
    b.ok('UID STORE 2 +FLAGS (\\Deleted)')
    b.ok('EXPUNGE')
    b.ok('UID STORE 3 +FLAGS (\\Seen)')
    b.close()
    out, _ = a.ok('FETCH 1 (UID)')
    # Dovecot also reports the new flags of the expunged message 2 it still numbers;
    # clusterd skips it until the VANISHED (RFC 2180 4.1): only live ones compared.
    f = fetches(out)
    t['delayed_expunge_fetch'] = {u: (v[0], v[1] is not None) for u, v in f.items() if u != 2}
    t['delayed_expunge_highestmodseq'] = [norm(l) for l in out if 'HIGHESTMODSEQ' in l]
    out, _ = a.ok('NOOP')
    t['delayed_expunge_noop'] = [norm(l) for l in out]
    # This session's own EXPUNGE, UID EXPUNGE and MOVE answer with VANISHED.
    a.ok('UID STORE 3 +FLAGS (\\Deleted)')
    out, _ = a.ok('EXPUNGE')
    t['own_expunge'] = (vanished(out, earlier=False), [l for l in out if l.endswith('EXPUNGE')])
    a.ok('UID STORE 5 +FLAGS (\\Deleted)')
    out, _ = a.ok('UID EXPUNGE 5')
    t['own_uid_expunge'] = (vanished(out, earlier=False), [l for l in out if l.endswith('EXPUNGE')])
    a.cmd('DELETE %sMoved' % MAILBOX)
    a.ok('CREATE %sMoved' % MAILBOX)
    out, _ = a.ok('UID MOVE 7 %sMoved' % MAILBOX)
    t['own_move'] = (vanished(out, earlier=False), [l for l in out if l.endswith('EXPUNGE')],
                     [l.split(' ')[2] for l in out if '[COPYUID' in l])
    a.close()

    # A client that enabled nothing: which response codes its SELECT carries, and a
    # SELECT replacing a mailbox.
    c = conn()
    out, _ = c.ok('SELECT ' + MAILBOX)
    t['plain_select_codes'] = sorted(re.match(r'\* OK \[([A-Z-]+)', l).group(1)
                                     for l in out if l.startswith('* OK ['))
    out, _ = c.ok('EXAMINE ' + MAILBOX)
    t['plain_reselect_codes'] = sorted(re.match(r'\* OK \[([A-Z-]+)', l).group(1)
                                       for l in out if l.startswith('* OK ['))
    # CONDSTORE enabled by a FETCH MODSEQ with the mailbox selected.
    out, _ = c.ok('FETCH 1 (MODSEQ)')
    t['enabled_by_fetch'] = [re.sub(r'\d{2,}', 'N', l) for l in out]
    c.close()

    # A CONDSTORE-only client.
    c = conn()
    out, _ = c.ok('SELECT %s (CONDSTORE)' % MAILBOX)
    t['condstore_select_highest'] = code(out, 'HIGHESTMODSEQ') is not None
    out, _ = c.ok('FETCH 1:* (MODSEQ)')
    t['condstore_fetch_count'] = len([l for l in out if 'MODSEQ (' in l])
    out, _ = c.ok('UID FETCH 1:* (MODSEQ)')
    t['condstore_order'] = order({u: v[1] for u, v in fetches(out).items()})
    out, _ = c.ok('STORE 1 +FLAGS.SILENT (\\Seen)')
    t['condstore_silent_store'] = {u: v[0] for u, v in fetches(out).items()}
    out, _ = c.ok('UID STORE 1,2 (UNCHANGEDSINCE 999999999) +FLAGS.SILENT ($Done)')
    t['condstore_silent_conditional_store'] = {u: (v[0], v[1] is not None)
                                              for u, v in fetches(out).items()}
    c.close()
    return t


def main():
    a_label, a_port, a_user, a_pass, b_label, b_port, b_user, b_pass = sys.argv[1:9]
    ta = scenario(int(a_port), a_user, a_pass)
    tb = scenario(int(b_port), b_user, b_pass)
    diffs = []
    for key in ta:
        va, vb = json.dumps(ta[key], sort_keys=True), json.dumps(tb.get(key), sort_keys=True)
        if va != vb:
            diffs.append('%s:\n  %s: %s\n  %s: %s' % (key, a_label, va, b_label, vb))
    print(json.dumps(ta, sort_keys=True))
    if diffs:
        print('DIFFERENCES (%d)' % len(diffs))
        print('\n'.join(diffs))
        sys.exit(10)
    print('ALL EQUAL (%d answers)' % len(ta))


main()
