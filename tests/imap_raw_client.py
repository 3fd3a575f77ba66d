# A raw IMAP client for tests that need the exact responses (CONDSTORE, QRESYNC,
# COMPRESS=DEFLATE) which imaplib hides or cannot speak. Prepended to scripts by
# tests/imap_condstore.rs, tests/imap_dovecot.rs and tests/imap_qresync_failover.rs.
import re, socket, ssl, zlib


class Raw:
    def __init__(self, host, port, timeout=20, tls=False):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:  # implicit TLS; the test nodes' certificates are self-signed
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock)
        self.buf = b''
        self.n = 0
        self.deflate = None  # (compressor, decompressor) once COMPRESS is active
        self.wire_in = self.plain_in = 0  # bytes received on the socket / after inflating
        self.greeting = self.line()

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('server closed the connection')
        self.wire_in += len(data)
        if self.deflate:
            data = self.deflate[1].decompress(data)
        self.plain_in += len(data)
        self.buf += data

    def line(self):
        """One response line; a literal at its end is read and joined in."""
        while b'\r\n' not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b'\r\n', 1)
        m = re.search(rb'\{(\d+)\}$', head)
        if not m:
            return head
        n = int(m.group(1))
        while len(self.buf) < n:
            self._recv()
        lit, self.buf = self.buf[:n], self.buf[n:]
        return head + b'\r\n' + lit + self.line()

    def send(self, data):
        if self.deflate:
            c = self.deflate[0]
            data = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def cmd(self, text):
        """Sends one command (str or bytes, LITERAL+ literals inline); returns the
        tagged status text ('OK ...', 'NO ...', 'BAD ...') and the untagged lines."""
        self.n += 1
        tag = 't%d' % self.n
        body = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b' ' + body + b'\r\n')
        out = []
        while True:
            l = self.line().decode('utf-8', 'replace')
            if l.startswith(tag + ' '):
                return l[len(tag) + 1:], out
            out.append(l)

    def ok(self, text):
        st, out = self.cmd(text)
        assert st.startswith('OK'), (text, st, out)
        return out, st

    def append(self, mailbox, msg, flags=''):
        return self.ok(b'APPEND ' + mailbox.encode() + (b' (' + flags.encode() + b')' if flags else b'')
                       + b' {%d+}\r\n' % len(msg) + msg)

    def compress(self):
        out, st = self.ok('COMPRESS DEFLATE')
        self.deflate = (zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15))
        # Anything already buffered came after the OK, compressed.
        pending, self.buf = self.buf, b''
        if pending:
            self.buf = self.deflate[1].decompress(pending)
        return st

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def fetches(lines):
    """{uid: (flags, modseq)} of the untagged FETCH lines that carry a UID."""
    out = {}
    for l in lines:
        if not re.match(r'\* \d+ FETCH ', l):
            continue
        uid = re.search(r'UID (\d+)', l)
        if not uid:
            continue
        flags = re.search(r'FLAGS \(([^)]*)\)', l)
        modseq = re.search(r'MODSEQ \((\d+)\)', l)
        out[int(uid.group(1))] = (
            tuple(sorted(flags.group(1).split())) if flags else None,
            int(modseq.group(1)) if modseq else None)
    return out


def uid_set(text):
    """The UIDs of a sequence set such as 1:3,7."""
    out = []
    for part in text.split(','):
        if ':' in part:
            a, b = part.split(':')
            a, b = int(a), int(b)
            out.extend(range(min(a, b), max(a, b) + 1))
        elif part:
            out.append(int(part))
    return sorted(out)


def vanished(lines, earlier=True):
    """The UIDs of the VANISHED (EARLIER) (or plain VANISHED) lines."""
    out = []
    prefix = '* VANISHED (EARLIER) ' if earlier else '* VANISHED '
    for l in lines:
        if l.startswith(prefix) and (earlier or not l.startswith('* VANISHED (')):
            out.extend(uid_set(l[len(prefix):]))
    return sorted(out)


def code(lines, name):
    """The value of the response code [NAME value] in untagged OK lines, as an int."""
    for l in lines:
        m = re.match(r'\* OK \[%s (\d+)\]' % name, l)
        if m:
            return int(m.group(1))
    return None


def message(n, size=200):
    return (('From: a@example.org\r\nTo: ana@cluster.com.ec\r\nSubject: m%d\r\n'
             'Message-ID: <m%d.%d@example.org>\r\n\r\n' % (n, n, id(object()))).encode()
            + b'x' * size + b'\r\n')
