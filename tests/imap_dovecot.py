"""Differential IMAP test driver (run by tests/imap_dovecot.rs; Python 3 stdlib only).

Usage:
  imap_dovecot.py CORPUS_DIR  LABEL_A PORT_A USER_A PASS_A  LABEL_B PORT_B USER_B PASS_B

Server A is the reference (Dovecot). Both servers get every corpus file APPENDed to
an empty INBOX, in file-name order and with the same internal dates; then the same
flags are stored, the same FETCH items are asked for every message and the same
SEARCH commands are run. Responses are parsed into nested values and compared.

Exit status: 0 when everything matches; 10 when something differs (the report, listing
every difference, is on stdout); anything else is a harness failure (for instance the
reference server refusing a command), with the reason on stderr.
"""

import datetime
import imaplib
import os
import re
import sys

MISMATCH_EXIT = 10
VERBOSE = os.environ.get('DIFF_VERBOSE') == '1'


class HarnessError(Exception):
    """The reference server or the test itself misbehaved: not a difference to report."""


# ---------------------------------------------------------------------------------
# A small IMAP response tokenizer.
#
# Values: None for NIL, bytes for strings (quoted and literal strings are the same
# value: the wire form is the server's choice), str for atoms and numbers, list for
# parenthesised lists.
# ---------------------------------------------------------------------------------


class ParseError(Exception):
    pass


class Parser:
    def __init__(self, data):
        self.d = data
        self.i = 0

    def sequence(self, closing=False):
        out = []
        while True:
            while self.i < len(self.d) and self.d[self.i:self.i + 1] == b' ':
                self.i += 1
            if self.i >= len(self.d):
                if closing:
                    raise ParseError('unterminated list')
                return out
            c = self.d[self.i:self.i + 1]
            if c == b')':
                if not closing:
                    raise ParseError("unexpected ')' at %d" % self.i)
                self.i += 1
                return out
            out.append(self.value())

    def value(self):
        c = self.d[self.i:self.i + 1]
        if c == b'(':
            self.i += 1
            return self.sequence(closing=True)
        if c == b'"':
            return self.quoted()
        if c == b'{' or (c == b'~' and self.d[self.i + 1:self.i + 2] == b'{'):
            return self.literal()
        return self.atom()

    def quoted(self):
        self.i += 1
        out = bytearray()
        while True:
            if self.i >= len(self.d):
                raise ParseError('unterminated quoted string')
            c = self.d[self.i]
            if c == 0x5C:  # backslash
                if self.i + 1 >= len(self.d):
                    raise ParseError('dangling backslash')
                out.append(self.d[self.i + 1])
                self.i += 2
                continue
            if c == 0x22:  # closing quote
                self.i += 1
                return bytes(out)
            out.append(c)
            self.i += 1

    def literal(self):
        m = re.compile(rb'~?\{(\d+)\+?\}\r\n').match(self.d, self.i)
        if not m:
            raise ParseError('bad literal at %d' % self.i)
        n = int(m.group(1))
        start = m.end()
        if start + n > len(self.d):
            raise ParseError('short literal')
        self.i = start + n
        return self.d[start:start + n]

    def atom(self):
        start = self.i
        while self.i < len(self.d):
            c = self.d[self.i:self.i + 1]
            if c == b'[':
                # A section spec ("BODY[HEADER.FIELDS (FROM SUBJECT)]<0>") belongs to
                # the atom although it may hold spaces and parentheses.
                j = self.d.find(b']', self.i)
                if j < 0:
                    raise ParseError('unterminated [ at %d' % self.i)
                self.i = j + 1
                continue
            if c in (b' ', b'(', b')', b'"', b'{', b'\r', b'\n'):
                break
            self.i += 1
        if self.i == start:
            raise ParseError('unexpected %r at %d' % (self.d[self.i:self.i + 1], self.i))
        text = self.d[start:self.i].decode('ascii', 'surrogateescape')
        return None if text.upper() == 'NIL' else text


def parse(data):
    return Parser(data).sequence()


def rebuild(entries):
    """imaplib splits an untagged response around its literals into tuples
    (text-ending-in-{N}, literal) followed by the rest as plain bytes; this puts each
    response back together in wire form (without the leading "* ")."""
    out, cur = [], b''
    for e in entries:
        if isinstance(e, tuple):
            cur += e[0] + b'\r\n' + e[1]
        else:
            out.append(cur + e)
            cur = b''
    if cur:
        out.append(cur)
    return out


# ---------------------------------------------------------------------------------
# Normalisation. Only what RFC 3501 makes case-insensitive is folded; everything else
# (strings in ENVELOPE, parameter values, body section contents, sizes, ...) must be
# byte-for-byte identical.
# ---------------------------------------------------------------------------------


def lower(v):
    return v.lower() if isinstance(v, bytes) else v


def norm_params(p):
    # body-fld-param names are case-insensitive (RFC 3501 7.4.2 "body parameter
    # parenthesized list ... as defined in [MIME-IMB]"; MIME parameter attribute names
    # are case-insensitive, RFC 2045 5.1). Values are compared as they are.
    if not isinstance(p, list):
        return p
    return [lower(x) if i % 2 == 0 else x for i, x in enumerate(p)]


def norm_disposition(d):
    # body-fld-dsp: the disposition type ("attachment", "inline") is case-insensitive
    # (RFC 2183 2.8), and its parameters are normalised like body-fld-param.
    if not isinstance(d, list) or len(d) < 1:
        return d
    return [lower(d[0])] + [norm_params(x) for x in d[1:]]


def norm_body(b):
    """Normalises a BODY / BODYSTRUCTURE value (RFC 3501 7.4.2)."""
    if not isinstance(b, list) or not b:
        return b
    try:
        if isinstance(b[0], list):
            # body-type-mpart: parts, then subtype, then (BODYSTRUCTURE only)
            # params, disposition, language, location.
            i = 0
            parts = []
            while i < len(b) and isinstance(b[i], list):
                parts.append(norm_body(b[i]))
                i += 1
            rest = list(b[i:])
            if rest:
                rest[0] = lower(rest[0])  # media subtype: case-insensitive
            if len(rest) > 1:
                rest[1] = norm_params(rest[1])
            if len(rest) > 2:
                rest[2] = norm_disposition(rest[2])
            return parts + rest
        r = list(b)
        # body-type-1part: type, subtype, params, id, description, encoding, size, ...
        r[0] = lower(r[0])  # media type: case-insensitive
        r[1] = lower(r[1])  # media subtype: case-insensitive
        r[2] = norm_params(r[2])
        r[5] = lower(r[5])  # body-fld-enc (content transfer encoding): case-insensitive
        ext = 7
        if r[0] == b'text':
            ext = 8  # + body-fld-lines
        elif r[0] == b'message' and r[1] == b'rfc822':
            r[8] = norm_body(r[8])  # + envelope, body, body-fld-lines
            ext = 10
        # Extension data: body-fld-md5, body-fld-dsp, body-fld-lang, body-fld-loc.
        if len(r) > ext + 1:
            r[ext + 1] = norm_disposition(r[ext + 1])
        return r
    except (IndexError, TypeError):
        return b  # malformed: compare as it is


def norm_key(k):
    # FETCH data item names are case-insensitive tokens (RFC 3501 9, rule 3: "all
    # alphabetic characters are case-insensitive"), and so are the header field names
    # echoed in a BODY[HEADER.FIELDS (...)] key (RFC 5322 1.2.2).
    return k.upper() if isinstance(k, str) else k


def norm_fetch(att):
    out = {}
    for k, v in att.items():
        k = norm_key(k)
        if k in ('BODY', 'BODYSTRUCTURE'):
            v = norm_body(v)
        out[k] = v
    return out


# ---------------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------------

MAX_SHOW = 1500


def show_bytes(b):
    s = b.decode('utf-8', 'backslashreplace')
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == '\r':
            out.append('\\r')
        elif ch == '\n':
            out.append('\\n')
        elif ch == '\t':
            out.append('\\t')
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append('\\x%02x' % ord(ch))
        else:
            out.append(ch)
    return '"' + ''.join(out) + '"'


def show(v):
    if v is None:
        return 'NIL'
    if isinstance(v, bytes):
        return show_bytes(v)
    if isinstance(v, list):
        return '(' + ' '.join(show(x) for x in v) + ')'
    return str(v)


def clip(text, limit=MAX_SHOW):
    if len(text) <= limit:
        return text
    return text[:limit] + ' ...[%d more characters]' % (len(text) - limit)


def first_difference(a, b):
    """Where two values first differ, as a readable pointer (None if not useful)."""
    if isinstance(a, bytes) and isinstance(b, bytes):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return 'first difference at byte %d (lengths %d and %d): %s vs %s' % (
            n, len(a), len(b), show_bytes(a[max(0, n - 20):n + 40]),
            show_bytes(b[max(0, n - 20):n + 40]))
    if isinstance(a, list) and isinstance(b, list):
        path = []
        while isinstance(a, list) and isinstance(b, list):
            i = 0
            while i < min(len(a), len(b)) and a[i] == b[i]:
                i += 1
            if i == min(len(a), len(b)):
                return 'first difference at element %s: %d elements vs %d' % (
                    ''.join('[%d]' % p for p in path) or 'top level', len(a), len(b))
            path.append(i)
            a, b = a[i], b[i]
        return 'first difference at element %s: %s vs %s' % (
            ''.join('[%d]' % p for p in path), clip(show(a), 200), clip(show(b), 200))
    return None


def show_value(v):
    """A value for the report: long strings are cut shorter than structures (the
    first-difference line points at the spot)."""
    if isinstance(v, bytes) and len(v) > 400:
        return clip(show(v), 300)
    return clip(show(v))


# ---------------------------------------------------------------------------------
# Talking to a server
# ---------------------------------------------------------------------------------


class Lit:
    """A search key sent as a literal (non-ASCII text under CHARSET UTF-8)."""

    def __init__(self, text):
        self.data = text.encode('utf-8')

    def __str__(self):
        return '{%s}' % self.data.decode('utf-8')


class Server:
    def __init__(self, label, port, user, password):
        self.label = label
        try:
            self.m = imaplib.IMAP4('127.0.0.1', port, timeout=30)
        except TypeError:  # Python < 3.9 has no timeout argument
            self.m = imaplib.IMAP4('127.0.0.1', port)
        self.m.login(user, password)
        self.files = []  # sequence number - 1 -> corpus file name
        self.uids = {}  # file name -> UID

    def command(self, name, *args, untagged=None):
        """Runs a command; returns (status, untagged data of type `untagged`, text).
        A BAD or a broken connection becomes a status, not an exception."""
        m = self.m
        if untagged:
            m.untagged_responses.pop(untagged, None)
        try:
            typ, dat = m._simple_command(name, *args)
        except (imaplib.IMAP4.abort, OSError) as e:
            raise HarnessError('%s: connection lost or timed out during %s: %s'
                               % (self.label, name, e))
        except imaplib.IMAP4.error as e:
            return 'BAD', [], str(e)
        text = b' '.join(d for d in dat if isinstance(d, bytes)).decode('utf-8', 'replace')
        data = m.untagged_responses.pop(untagged, []) if untagged else []
        return typ, data, text

    def append(self, data, date):
        m = self.m
        m.literal = data
        typ, _, text = self.command('APPEND', 'INBOX', date)
        m.literal = None
        return typ, text

    def fetch(self, seq, item):
        typ, data, text = self.command('FETCH', str(seq), '(%s)' % item, untagged='FETCH')
        att = {}
        errors = []
        for resp in rebuild(data):
            try:
                v = parse(resp)
            except ParseError as e:
                errors.append('unparsable FETCH response (%s): %s' % (e, show_bytes(resp)))
                continue
            if len(v) != 2 or v[0] != str(seq) or not isinstance(v[1], list):
                if len(v) >= 1 and v[0] != str(seq):
                    continue  # an unsolicited update about another message
                errors.append('malformed FETCH response: %s' % show_bytes(resp))
                continue
            pairs = v[1]
            if len(pairs) % 2:
                errors.append('odd number of items in FETCH response: %s' % show_bytes(resp))
                pairs = pairs + ['<missing value>']
            for i in range(0, len(pairs), 2):
                att[pairs[i]] = pairs[i + 1]
        if errors:
            att['<protocol error>'] = '; '.join(errors)
        return typ, norm_fetch(att), text

    def search(self, args, uid=False):
        wire = []
        literal = None
        lits = [a for a in args if isinstance(a, Lit)]
        for n, a in enumerate(args):
            if isinstance(a, Lit):
                if len(lits) == 1 and n == len(args) - 1:
                    literal = a.data  # one trailing literal: a synchronising literal
                else:
                    # Elsewhere: a non-synchronising literal (RFC 7888, LITERAL+),
                    # which both servers announce.
                    wire.append(b'{%d+}\r\n' % len(a.data) + a.data)
            else:
                wire.append(a.encode('ascii'))
        self.m.literal = literal
        if uid:
            typ, data, text = self.command('UID', 'SEARCH', *wire, untagged='SEARCH')
        else:
            typ, data, text = self.command('SEARCH', *wire, untagged='SEARCH')
        self.m.literal = None
        nums = []
        bad = []
        for d in data:
            if isinstance(d, tuple):
                bad.append(show_bytes(d[0] + d[1]))
                continue
            for tok in d.split():
                if tok.isdigit():
                    nums.append(int(tok))
                else:
                    bad.append(show_bytes(tok))
        return typ, nums, bad, text


# ---------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------

# Internal dates: message i (0-based, in file order) is dated BASE + 5*i days at noon
# UTC, so that BEFORE/SINCE/ON discriminate and no server time zone moves a date.
BASE = datetime.datetime(2024, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
MONTHS = 'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split()


def internal_date(i):
    d = BASE + datetime.timedelta(days=5 * i)
    return d


def imap_datetime(d):
    return '"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        d.day, MONTHS[d.month - 1], d.year, d.hour, d.minute, d.second)


def imap_date(d):
    return '%d-%s-%04d' % (d.day, MONTHS[d.month - 1], d.year)


FETCH_ITEMS = [
    'ENVELOPE',
    'BODYSTRUCTURE',
    'BODY',
    'BODY.PEEK[1.2.MIME]',
    'BODY.PEEK[TEXT]<0.100>',
    'BODY.PEEK[1]',
    'BODY.PEEK[2]',
    'BODY.PEEK[1.MIME]',
    'BODY.PEEK[HEADER.FIELDS (From Subject)]',
    'RFC822.SIZE',
]

# Flags stored (by file number) on both servers before the searches.
STORES = [
    ('+FLAGS', '(\\Flagged)', [6, 11, 19]),
    ('+FLAGS', '(\\Seen)', [1, 2, 3, 15]),
    ('+FLAGS', '(\\Answered)', [19]),
    ('+FLAGS', '(\\Draft)', [29]),
    ('+FLAGS', '(\\Deleted)', [24]),
    ('+FLAGS', '($Work)', [7, 10]),
    ('+FLAGS', '(Project-X)', [10, 14]),
]


def searches():
    d = internal_date
    return [
        # (uid?, criteria)
        (False, ['ALL']),
        (False, ['FROM', 'alice']),
        (False, ['FROM', '"example.net"']),
        (False, ['FROM', 'juan']),
        (False, ['TO', 'bob']),
        (False, ['TO', '"ANA@cluster"']),
        (False, ['CC', 'carol']),
        (False, ['CC', 'frank']),
        (False, ['BCC', 'hidden']),
        (False, ['SUBJECT', 'quarterly']),
        (False, ['SUBJECT', '"fwd:"']),
        (False, ['SUBJECT', '"capybara migration that keeps"']),  # across a fold
        (False, ['CHARSET', 'UTF-8', 'SUBJECT', Lit('café')]),
        (False, ['CHARSET', 'UTF-8', 'SUBJECT', Lit('réunion')]),
        (False, ['CHARSET', 'UTF-8', 'SUBJECT', Lit('Olá mundo')]),  # adjacent words
        (False, ['CHARSET', 'UTF-8', 'SUBJECT', Lit('écureuil')]),  # raw 8-bit header
        (False, ['CHARSET', 'UTF-8', 'FROM', Lit('José')]),
        (False, ['CHARSET', 'UTF-8', 'TO', Lit('Jörg')]),
        (False, ['CHARSET', 'UTF-8', 'TO', Lit('Señal')]),  # encoded group name
        (False, ['CHARSET', 'UTF-8', 'BODY', Lit('mañana')]),  # utf-8 8bit and latin1 QP
        (False, ['CHARSET', 'UTF-8', 'TEXT', Lit('München')]),  # base64 body
        (False, ['CHARSET', 'UTF-8', 'OR', 'FROM', Lit('François'), 'SUBJECT', Lit('Café')]),
        (False, ['CHARSET', 'US-ASCII', 'SUBJECT', 'kiwi']),
        (False, ['BODY', 'pretzel']),
        (False, ['BODY', 'walrus']),  # two levels of message/rfc822
        (False, ['BODY', 'tamarind']),  # inside a forwarded multipart
        (False, ['BODY', 'glacier']),  # message/rfc822 as the only body
        (False, ['BODY', '"yak inventory attachment"']),  # base64 attachment
        (False, ['BODY', 'ocelot']),  # broken base64
        (False, ['BODY', 'narwhal']),  # unknown transfer encoding
        (False, ['BODY', '"ignored by MIME"']),  # only in a preamble
        (False, ['BODY', 'Quarterly']),
        (False, ['TEXT', 'zephyr']),
        (False, ['TEXT', '"Inventory attached"']),
        (False, ['HEADER', 'Message-ID', '"<reply-19@example.com>"']),
        (False, ['HEADER', 'In-Reply-To', '""']),
        (False, ['HEADER', 'X-Mailer', '""']),
        (False, ['HEADER', 'Content-Type', '"multipart/mixed"']),
        (False, ['HEADER', 'X-Latin1', 'Se']),
        (False, ['SENTBEFORE', '1-Jun-2021']),
        (False, ['SENTON', '15-Jan-2024']),  # Date: 23:30 -0500 on the 15th
        (False, ['SENTON', '16-Jan-2024']),
        (False, ['SENTSINCE', '1-Jan-2023']),
        (False, ['BEFORE', imap_date(d(4))]),
        (False, ['SINCE', imap_date(d(29))]),
        (False, ['ON', imap_date(d(11))]),
        (False, ['LARGER', '1000']),
        (False, ['SMALLER', '300']),
        (False, ['LARGER', '400', 'SMALLER', '500']),
        (False, ['NOT', 'FROM', 'example.com']),
        (False, ['OR', 'SUBJECT', 'lighthouse', 'SUBJECT', 'walrus']),
        (False, ['OR', '(FROM', 'alice', 'SUBJECT', 'kiwi)', '(TO', 'bob', 'CC', 'alice)']),
        (False, ['2:5,10,30:*', 'SUBJECT', 'the']),
        (False, ['*']),
        (False, ['FLAGGED']),
        (False, ['SEEN']),
        (False, ['UNSEEN', 'SINCE', imap_date(d(30))]),
        (False, ['ANSWERED']),
        (False, ['DELETED']),
        (False, ['DRAFT']),
        (False, ['KEYWORD', '$Work']),
        (False, ['KEYWORD', 'Project-X', 'NOT', 'KEYWORD', '$Work']),
        (False, ['UNKEYWORD', '$Work', 'FLAGGED']),
        (False, ['FLAGGED', 'SINCE', imap_date(d(5)), 'NOT', 'TO', 'alice']),
        (False, ['NOT', '(OR', 'FLAGGED', 'SEEN)', 'SENTBEFORE', '1-Jan-2022']),
        (True, ['UID', '3:7,20']),
        (True, ['1:*', 'NOT', 'DELETED', 'NOT', 'SEEN', 'BODY', 'the']),
        (True, ['UID', '5:*', 'SUBJECT', 'note']),
    ]


def describe(nums, files):
    names = []
    for n in nums:
        names.append(files[n - 1] if 1 <= n <= len(files) else '#%d(no such message)' % n)
    return names


class Report:
    def __init__(self, a, b):
        self.a, self.b = a, b
        self.lines = []
        self.count = 0
        self.categories = {}

    def add(self, where, item, va, vb, note=None):
        self.count += 1
        self.categories[item] = self.categories.get(item, 0) + 1
        self.lines.append('== %s :: %s' % (where, item))
        w = max(len(self.a.label), len(self.b.label))
        self.lines.append('   %s: %s' % (self.a.label.ljust(w), va))
        self.lines.append('   %s: %s' % (self.b.label.ljust(w), vb))
        if note:
            self.lines.append('   %s' % note)


def main():
    corpus = sys.argv[1]
    a = Server(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    b = Server(sys.argv[6], int(sys.argv[7]), sys.argv[8], sys.argv[9])
    rep = Report(a, b)
    names = sorted(f for f in os.listdir(corpus) if f.endswith('.eml'))
    if len(names) < 30:
        raise HarnessError('corpus has only %d messages' % len(names))

    for srv in (a, b):
        typ, data = srv.m.select('INBOX')  # imaplib.select also moves its state
        if typ != 'OK':
            raise HarnessError('%s: SELECT INBOX failed: %s %s' % (srv.label, typ, data))
        if data != [b'0']:
            raise HarnessError('%s: INBOX is not empty: %s' % (srv.label, data))

    # APPEND, in name order, with the same internal dates.
    for i, name in enumerate(names):
        with open(os.path.join(corpus, name), 'rb') as fh:
            data = fh.read()
        date = imap_datetime(internal_date(i))
        res = {}
        for srv in (a, b):
            res[srv.label] = srv.append(data, date)
            if res[srv.label][0] == 'OK':
                srv.files.append(name)
        ta, tb = res[a.label], res[b.label]
        if ta[0] != 'OK':
            raise HarnessError('%s refused APPEND of %s: %s %s' % (a.label, name, ta[0], ta[1]))
        if tb[0] != 'OK':
            rep.add(name, 'APPEND', 'OK', '%s %s' % tb, 'not compared further')

    for srv in (a, b):
        srv.command('NOOP')
        typ, data, text = srv.command('FETCH', '1:*', '(UID)', untagged='FETCH')
        seen = 0
        for resp in rebuild(data):
            v = parse(resp)
            seq, att = int(v[0]), dict(zip(v[1][0::2], v[1][1::2]))
            if 1 <= seq <= len(srv.files):
                srv.uids[srv.files[seq - 1]] = int(att['UID'])
                seen += 1
        if seen != len(srv.files):
            raise HarnessError('%s: %d messages appended but FETCH 1:* UID saw %d (%s %s)'
                               % (srv.label, len(srv.files), seen, typ, text))

    # FETCH, one item per command (so that one refused item costs nothing else).
    nfetch = 0
    for name in names:
        if name not in b.files:
            continue
        seq_a, seq_b = a.files.index(name) + 1, b.files.index(name) + 1
        typ, bs, text = a.fetch(seq_a, 'BODYSTRUCTURE')
        items = list(FETCH_ITEMS)
        # The header and text of every message/rfc822 part (as Dovecot sees them).
        for path in message_parts(bs.get('BODYSTRUCTURE')):
            items.append('BODY.PEEK[%s.HEADER]' % path)
            items.append('BODY.PEEK[%s.TEXT]' % path)
        for item in items:
            nfetch += 1
            ra = a.fetch(seq_a, item)
            rb = b.fetch(seq_b, item)
            if ra[0] != 'OK':
                raise HarnessError('%s: FETCH %d %s: %s %s' % (a.label, seq_a, item, ra[0], ra[2]))
            if VERBOSE and a is not b:
                print('-- %s %s: %s' % (name, item, clip(show_att(ra[1]))))
            compare_fetch(rep, name, item, ra, rb)

    # STORE the same flags on both (by file number), then SEARCH.
    for srv in (a, b):
        for op, flags, nums in STORES:
            seqs = [str(srv.files.index(names[n - 1]) + 1) for n in nums
                    if names[n - 1] in srv.files]
            typ, _, text = srv.command('STORE', ','.join(seqs), op, flags)
            if typ != 'OK':
                if srv is a:
                    raise HarnessError('%s: STORE %s %s: %s %s' % (a.label, op, flags, typ, text))
                rep.add('STORE', '%s %s' % (op, flags), 'OK', '%s %s' % (typ, text))

    nsearch = 0
    for uid, crit in searches():
        nsearch += 1
        label = ('UID SEARCH ' if uid else 'SEARCH ') + ' '.join(str(c) for c in crit)
        ra = a.search(crit, uid)
        rb = b.search(crit, uid)
        if ra[0] != 'OK' or ra[2]:
            raise HarnessError('%s: %s: %s %s %s' % (a.label, label, ra[0], ra[3], ra[2]))
        fa = search_files(a, ra[1], uid)
        fb = search_files(b, rb[1], uid)
        if VERBOSE:
            print('-- %s -> %s' % (label, ' '.join(n[:2] for n in fa)))
        # SEARCH results are compared as sets: RFC 3501 7.2.5 gives no order.
        if ra[0] != rb[0] or sorted(fa) != sorted(fb) or rb[2]:
            only_a = sorted(set(fa) - set(fb))
            only_b = sorted(set(fb) - set(fa))
            note = []
            if only_a:
                note.append('only %s: %s' % (a.label, ', '.join(only_a)))
            if only_b:
                note.append('only %s: %s' % (b.label, ', '.join(only_b)))
            if rb[2]:
                note.append('%s sent non-numbers: %s' % (b.label, ' '.join(rb[2])))
            rep.add('SEARCH', label, search_show(ra, fa), search_show(rb, fb),
                    '; '.join(note) or None)

    for srv in (a, b):
        try:
            srv.m.logout()
        except Exception:
            pass

    scope = '%d messages (%d FETCH items in all) and %d searches' % (
        len(names), nfetch, nsearch)
    if rep.count == 0:
        print('ALL EQUAL: %s match between %s and %s' % (scope, a.label, b.label))
        return 0
    print('%d DIFFERENCES between %s (reference) and %s over %s'
          % (rep.count, a.label, b.label, scope))
    print('Per item: ' + ', '.join('%s %d' % (k, v) for k, v in sorted(
        summary_categories(rep.categories).items(), key=lambda kv: -kv[1])))
    print()
    print('\n'.join(rep.lines))
    return MISMATCH_EXIT


def summary_categories(cats):
    out = {}
    for k, v in cats.items():
        k = 'SEARCH' if k.startswith(('SEARCH', 'UID SEARCH')) else k
        k = re.sub(r'\[[0-9.]+\.(HEADER|TEXT)\]', r'[n.\1]', k)
        out[k] = out.get(k, 0) + v
    return out


def search_files(srv, nums, uid):
    if uid:
        by_uid = {u: f for f, u in srv.uids.items()}
        return [by_uid.get(n, 'UID %d(no such message)' % n) for n in nums]
    return describe(nums, srv.files)


def search_show(r, files):
    typ, nums, bad, text = r
    if typ != 'OK':
        return '%s %s' % (typ, text)
    return '%s [%s]' % (typ, ' '.join(f[:2] if f[:2].isdigit() else f for f in files))


def show_att(att):
    return ' '.join('%s %s' % (k, show(v)) for k, v in att.items())


def expected_key(item):
    """The FETCH response key an item asks for: BODY.PEEK[1] -> BODY[1],
    BODY.PEEK[TEXT]<0.100> -> BODY[TEXT]<0>."""
    k = item.replace('BODY.PEEK[', 'BODY[')
    k = re.sub(r'<(\d+)\.\d+>$', r'<\1>', k)
    return norm_key(k)


def compare_fetch(rep, name, item, ra, rb):
    typ_a, att_a, text_a = ra
    typ_b, att_b, text_b = rb
    if typ_b != 'OK':
        rep.add(name, 'FETCH ' + item, show_att(att_a), '%s %s' % (typ_b, text_b))
        return
    if att_a == att_b:
        return
    want = expected_key(item)
    for k in list(att_a) + [k for k in att_b if k not in att_a]:
        va, vb = att_a.get(k), att_b.get(k)
        if k in att_a and k in att_b and va == vb:
            continue

        def one(att, v):
            if k not in att:
                return '(no %s in the response)' % k
            return show_value(v) if k == want else '%s %s' % (k, show_value(v))

        rep.add(name, 'FETCH ' + item, one(att_a, va), one(att_b, vb),
                first_difference(va, vb))


def message_parts(bs):
    """Part numbers of every message/rfc822 part in a (normalised) BODYSTRUCTURE."""
    out = []

    def walk(body, path):
        if not isinstance(body, list) or not body:
            return
        if isinstance(body[0], list):
            n = 0
            for child in body:
                if not isinstance(child, list):
                    break
                n += 1
                walk(child, '%s.%d' % (path, n) if path else str(n))
            return
        if len(body) > 8 and body[0] == b'message' and body[1] == b'rfc822':
            out.append(path)
            inner = body[8]
            if isinstance(inner, list) and inner and isinstance(inner[0], list):
                walk(inner, path)
            else:
                walk(inner, path + '.1')

    if isinstance(bs, list) and bs and isinstance(bs[0], list):
        walk(bs, '')
    else:
        walk(bs, '1')
    return out


if __name__ == '__main__':
    try:
        sys.exit(main())
    except HarnessError as e:
        sys.stderr.write('HARNESS ERROR: %s\n' % e)
        sys.exit(2)
