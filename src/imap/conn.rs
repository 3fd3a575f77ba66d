//! The connection under an IMAP session: a plain or TLS stream, an input buffer, the
//! framing of commands (lines plus literals, RFC 3501 4.3 and RFC 7888 LITERAL+) with
//! limits, and buffered output. No IMAP semantics here.
//!
//! Every read waits at most the session timeout, so a client that stalls anywhere
//! (between commands, mid-line, mid-literal) is logged out. Before login the limits
//! are a stranger's: one command (lines and literals) of at most
//! [`MAX_COMMAND_UNAUTHENTICATED`], and the whole session must log in within
//! `imap.login_timeout_s` of connecting ([`Conn::logged_in`] lifts both). Output is buffered and
//! flushed before the session waits for input, which keeps pipelined commands cheap.
//!
//! The message literal of an APPEND of [`SPOOL_LITERAL_AT`] bytes or more is not kept
//! in memory: it is written to a body file as it arrives ([`crate::store::BlobSink`],
//! read straight into the sink's buffer), the command is handed on with that literal
//! as `{0}`, and the session takes the file with [`Conn::take_spooled`]. Memory per
//! session stays about one chunk whatever the message size.
//!
//! COMPRESS=DEFLATE (RFC 4978): once [`Conn::start_deflate`] ran, both directions are
//! raw deflate (RFC 1951, no zlib header) over the stream, TLS or not. flate2 (already
//! the HTTP side's gzip) does the work; each flush ends with a sync flush so every
//! response reaches the client whole. Input is inflated at most [`INFLATE_STEP`] bytes
//! per read, so a small compressed burst cannot grow the buffer past the line and
//! literal limits by more than one step.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::store::{BlobSink, Store, StoreError};

/// Longest line (without literals) a client may send.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest literal a client may announce.
pub const MAX_LITERAL: usize = 64 * 1024 * 1024;
/// Largest literal before authentication (user names and passwords only).
pub const MAX_LITERAL_UNAUTHENTICATED: usize = 8 * 1024;
/// Largest whole command (lines and literals).
pub const MAX_COMMAND: usize = MAX_LITERAL + 1024 * 1024;
/// Largest whole command before authentication (and longest line).
pub const MAX_COMMAND_UNAUTHENTICATED: usize = 16 * 1024;
/// Output is flushed once this much is buffered.
const FLUSH_AT: usize = 256 * 1024;
/// APPEND literals from this size on are written to a body file as they arrive.
pub const SPOOL_LITERAL_AT: usize = 64 * 1024;
/// The most read from the socket at once into a spooled literal.
const SPOOL_READ: usize = 64 * 1024;
/// Most bytes one read inflates (COMPRESS=DEFLATE).
const INFLATE_STEP: usize = 64 * 1024;

/// The two deflate streams of a compressed connection, and compressed input not yet
/// inflated.
struct Deflate {
    tx: flate2::Compress,
    rx: flate2::Decompress,
    pending: Vec<u8>,
    /// Inflated bytes of one step (capacity [`INFLATE_STEP`]).
    scratch: Vec<u8>,
}

impl Deflate {
    /// Compresses `out` and ends with a sync flush.
    fn compress(&mut self, out: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut z = Vec::with_capacity(out.len() / 2 + 64);
        let start = self.tx.total_in();
        loop {
            let done = (self.tx.total_in() - start) as usize;
            z.reserve(4096.max(out.len() - done));
            self.tx
                .compress_vec(&out[done..], &mut z, flate2::FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            // All input taken and room left over: the sync flush is complete.
            if (self.tx.total_in() - start) as usize == out.len() && z.len() < z.capacity() {
                return Ok(z);
            }
        }
    }

    /// Inflates pending input into `buf`, at most [`INFLATE_STEP`] bytes; returns how
    /// many it produced.
    fn inflate(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
        let in0 = self.rx.total_in();
        self.scratch.clear();
        let status = self
            .rx
            .decompress_vec(
                &self.pending,
                &mut self.scratch,
                flate2::FlushDecompress::None,
            )
            .map_err(|e| bad(&e.to_string()))?;
        let used = (self.rx.total_in() - in0) as usize;
        self.pending.drain(..used);
        buf.extend_from_slice(&self.scratch);
        if status == flate2::Status::StreamEnd && !self.pending.is_empty() {
            return Err(bad("data after the end of the deflate stream"));
        }
        if self.scratch.is_empty() && used == 0 && !self.pending.is_empty() {
            return Err(bad("deflate stream stalled"));
        }
        Ok(self.scratch.len())
    }
}

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Transitional state during STARTTLS; never read from.
    Gone,
}

/// What reading one command produced.
pub enum Frame {
    /// A complete command: lines with CRLF and literal data, as sent.
    Command(Vec<u8>),
    /// A line exceeded the line limit ([`MAX_LINE`], before login
    /// [`MAX_COMMAND_UNAUTHENTICATED`]); the connection must be closed.
    LineTooLong { tag: Option<String> },
    /// A literal above the limits was announced. For a synchronizing literal nothing of
    /// it was read and the session may go on; for LITERAL+ it must close.
    LiteralTooBig { tag: Option<String>, nonsync: bool },
}

#[derive(Debug)]
pub enum ReadError {
    Eof,
    Timeout,
    Io(std::io::Error),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    pub timeout: Duration,
    /// Before login: when the session must have logged in.
    deadline: Option<tokio::time::Instant>,
    /// Current caps on literal sizes, line and command lengths (raised after login).
    max_literal: usize,
    max_line: usize,
    max_command: usize,
    /// Where large APPEND literals are written (none: kept in memory).
    spool: Option<Store>,
    /// The literal of the command just read, if it went to a body file (or the
    /// store's error if writing it failed).
    spooled: Option<Result<BlobSink, StoreError>>,
    /// Set once COMPRESS=DEFLATE is active.
    deflate: Option<Box<Deflate>>,
}

impl Conn {
    /// A connection not logged in yet: each read waits at most `timeout`, and it
    /// must log in within `login_timeout`.
    pub fn new(stream: Stream, timeout: Duration, login_timeout: Duration) -> Conn {
        Conn {
            stream,
            rbuf: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            timeout,
            deadline: Some(tokio::time::Instant::now() + login_timeout),
            max_literal: MAX_LITERAL_UNAUTHENTICATED,
            max_line: MAX_COMMAND_UNAUTHENTICATED,
            max_command: MAX_COMMAND_UNAUTHENTICATED,
            spool: None,
            spooled: None,
            deflate: None,
        }
    }

    /// The client logged in: no login deadline, and the full limits apply.
    pub fn logged_in(&mut self) {
        self.deadline = None;
        self.max_literal = MAX_LITERAL;
        self.max_line = MAX_LINE;
        self.max_command = MAX_COMMAND;
    }

    /// How long the next read may wait: the idle timeout, and before login no
    /// later than the login deadline.
    fn wait(&self) -> Duration {
        match self.deadline {
            Some(d) => self
                .timeout
                .min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => self.timeout,
        }
    }

    /// Large APPEND literals go to `store`'s body files as they arrive.
    pub fn spool_to(&mut self, store: Store) {
        self.spool = Some(store);
    }

    /// The body file the last command's APPEND literal went to, if it did (that
    /// literal reads `{0}` in the command). Unfinished, it is removed when dropped.
    pub fn take_spooled(&mut self) -> Option<Result<BlobSink, StoreError>> {
        self.spooled.take()
    }

    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// RFC 4978: from here on both directions are raw deflate. Call after the tagged
    /// OK was queued: it is flushed uncompressed first. Input the client sent after
    /// the COMPRESS command is already compressed and is inflated from here.
    pub async fn start_deflate(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        let mut z = Box::new(Deflate {
            tx: flate2::Compress::new(flate2::Compression::default(), false),
            rx: flate2::Decompress::new(false),
            pending: std::mem::take(&mut self.rbuf),
            scratch: Vec::with_capacity(INFLATE_STEP),
        });
        if !z.pending.is_empty() {
            z.inflate(&mut self.rbuf)?;
        }
        self.deflate = Some(z);
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Queues bytes for the client.
    pub fn write(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Queues a line; CRLF is appended.
    pub fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Flushes if a lot of output is waiting (used while producing large responses).
    pub async fn maybe_flush(&mut self) -> std::io::Result<()> {
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        if let Some(z) = &mut self.deflate {
            let packed = z.compress(&out)?;
            out.clear();
            self.out = out;
            out = packed;
        }
        let timeout = self.timeout;
        let res = tokio::time::timeout(timeout, async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(&out).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(&out).await?;
                    s.flush().await
                }
                Stream::Gone => Err(std::io::Error::other("stream gone")),
            }
        })
        .await;
        if self.deflate.is_none() {
            self.out = out;
        }
        self.out.clear();
        match res {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client does not read",
            )),
        }
    }

    /// Reads more input into the buffer (flushing output first). Cancel-safe: if the
    /// future is dropped before completing, no input is lost.
    pub async fn fill(&mut self) -> Result<(), ReadError> {
        self.flush().await?;
        if let Some(z) = &mut self.deflate
            && !z.pending.is_empty()
            && z.inflate(&mut self.rbuf)? > 0
        {
            return Ok(());
        }
        let mut buf = [0u8; 16 * 1024];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut buf).await?,
            Stream::Tls(s) => s.read(&mut buf).await?,
            Stream::Gone => return Err(ReadError::Eof),
        };
        if n == 0 {
            return Err(ReadError::Eof);
        }
        match &mut self.deflate {
            Some(z) => {
                z.pending.extend_from_slice(&buf[..n]);
                z.inflate(&mut self.rbuf)?;
            }
            None => self.rbuf.extend_from_slice(&buf[..n]),
        }
        self.ack_now();
        Ok(())
    }

    /// Acknowledges what was read at once (TCP_QUICKACK; Linux re-enables delayed
    /// ACKs by itself, so it is set after every read). A client with Nagle's
    /// algorithm on (Python's imaplib, most libraries) sends an APPEND literal and its
    /// closing CRLF as two writes; the CRLF waits for our ACK of the literal, and a
    /// delayed ACK made every APPEND take ~40 ms (47 ms measured, against ~1 ms).
    fn ack_now(&self) {
        let tcp = match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
            Stream::Gone => return,
        };
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }

    async fn fill_timeout(&mut self) -> Result<(), ReadError> {
        let t = self.wait();
        match tokio::time::timeout(t, self.fill()).await {
            Ok(r) => r,
            Err(_) => Err(ReadError::Timeout),
        }
    }

    /// Takes one complete line (with its line ending) from the buffer, if there is one.
    pub fn take_line(&mut self) -> Option<Vec<u8>> {
        let pos = self.rbuf.iter().position(|&b| b == b'\n')?;
        let rest = self.rbuf.split_off(pos + 1);
        Some(std::mem::replace(&mut self.rbuf, rest))
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// Reads one line (for AUTHENTICATE responses and IDLE's DONE), at most as long
    /// as a line may be now. `Ok(None)` when the line was too long.
    pub async fn read_line(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(line) = self.take_line() {
                if line.len() > self.max_line {
                    return Ok(None);
                }
                return Ok(Some(line));
            }
            if self.rbuf.len() > self.max_line {
                return Ok(None);
            }
            self.fill_timeout().await?;
        }
    }

    /// Reads one command: a line, and for each literal it announces at its end the
    /// continuation request (for synchronizing literals), the literal data and the line
    /// that follows.
    pub async fn read_command(&mut self) -> Result<Frame, ReadError> {
        let mut msg: Vec<u8> = Vec::new();
        loop {
            let line = loop {
                if let Some(line) = self.take_line() {
                    if line.len() > self.max_line {
                        return Ok(Frame::LineTooLong {
                            tag: tag_of(if msg.is_empty() { &line } else { &msg }),
                        });
                    }
                    break line;
                }
                if self.rbuf.len() > self.max_line {
                    let tag = tag_of(if msg.is_empty() { &self.rbuf } else { &msg });
                    return Ok(Frame::LineTooLong { tag });
                }
                self.fill_timeout().await?;
            };
            msg.extend_from_slice(&line);
            let Some((len, nonsync)) = literal_announcement(&line) else {
                return Ok(Frame::Command(msg));
            };
            if len > self.max_literal || msg.len() + len > self.max_command {
                return Ok(Frame::LiteralTooBig {
                    tag: tag_of(&msg),
                    nonsync,
                });
            }
            if !nonsync {
                self.line("+ Ready for literal data");
            }
            if len >= SPOOL_LITERAL_AT
                && self.spooled.is_none()
                && is_append(&msg)
                && let Some(store) = &self.spool
            {
                let sink = store.blob_sink(b"");
                self.spooled = Some(self.spool_literal(sink, len).await?);
                zero_literal(&mut msg);
                continue;
            }
            while self.rbuf.len() < len {
                self.fill_timeout().await?;
            }
            let rest = self.rbuf.split_off(len);
            let literal = std::mem::replace(&mut self.rbuf, rest);
            msg.extend_from_slice(&literal);
        }
    }

    /// Reads the `len` bytes of a literal into `sink`, handing each chunk to its file
    /// (plain or TLS: read from the socket straight into the sink's buffer; with
    /// COMPRESS: inflated through `rbuf`, a step at a time); after a failed write the
    /// rest is read and dropped (the command still ends where the client thinks), and
    /// the error is what the command gets.
    async fn spool_literal(
        &mut self,
        sink: BlobSink,
        len: usize,
    ) -> Result<Result<BlobSink, StoreError>, ReadError> {
        self.flush().await?;
        let mut sink = Ok(sink);
        let mut scratch = Vec::new();
        let mut left = len;
        while left > 0 {
            if let Ok(s) = &mut sink
                && s.wants_flush()
                && let Err(e) = s.flush().await
            {
                sink = Err(e);
            }
            let buf = match &mut sink {
                Ok(s) => s.buf(),
                Err(_) => {
                    scratch.clear();
                    &mut scratch
                }
            };
            // What is already buffered (inflated, with COMPRESS) goes first.
            if !self.rbuf.is_empty() {
                let take = left.min(self.rbuf.len());
                buf.extend_from_slice(&self.rbuf[..take]);
                self.rbuf.drain(..take);
                left -= take;
                continue;
            }
            if self.deflate.is_some() {
                // Compressed input is inflated a step at a time into `rbuf`.
                self.fill_timeout().await?;
                continue;
            }
            let want = left.min(SPOOL_READ);
            buf.reserve(want);
            let wait = self.wait();
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => AsyncReadExt::take(s, want as u64).read_buf(buf).await,
                    Stream::Tls(s) => {
                        AsyncReadExt::take(&mut **s, want as u64)
                            .read_buf(buf)
                            .await
                    }
                    Stream::Gone => Ok(0),
                }
            };
            let n = match tokio::time::timeout(wait, read).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(r) => r?,
            };
            if n == 0 {
                return Err(ReadError::Eof);
            }
            left -= n;
            self.ack_now();
        }
        Ok(sink)
    }

    /// RFC 3501 6.2.1: switches to TLS after the tagged OK was sent. Input the client
    /// pipelined after STARTTLS is discarded (it was not protected).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> anyhow::Result<()> {
        self.flush().await?;
        self.rbuf.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            anyhow::bail!("STARTTLS on a stream that is not plain");
        };
        let tls = tokio::time::timeout(self.timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| anyhow::anyhow!("TLS handshake timed out"))??;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Closes the write side after flushing (best effort).
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            match &mut self.stream {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
                Stream::Gone => Ok(()),
            }
        })
        .await;
    }
}

/// `{N}` or `{N+}` at the end of a line (before CRLF/LF): the literal's length and
/// whether it is non-synchronizing.
pub fn literal_announcement(line: &[u8]) -> Option<(usize, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let mut inner = &line[open + 1..];
    let nonsync = inner.last() == Some(&b'+');
    if nonsync {
        inner = &inner[..inner.len() - 1];
    }
    if inner.is_empty() || inner.len() > 19 || !inner.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(inner).ok()?.parse().ok()?;
    Some((usize::try_from(n).unwrap_or(usize::MAX), nonsync))
}

/// Whether the command starting `msg` is an APPEND (`tag APPEND ...`).
fn is_append(msg: &[u8]) -> bool {
    let mut words = msg.splitn(3, |&b| b == b' ');
    words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
}

/// Makes the literal announced at the end of `msg` (`{N}`, `{N+}`, `~{N}`) a `{0}`.
fn zero_literal(msg: &mut Vec<u8>) {
    let open = msg
        .iter()
        .rposition(|&b| b == b'{')
        .expect("an announced literal");
    let close = msg
        .iter()
        .rposition(|&b| b == b'}')
        .expect("an announced literal");
    let digits_end = if msg[close - 1] == b'+' {
        close - 1
    } else {
        close
    };
    msg.splice(open + 1..digits_end, *b"0");
}

/// The tag at the start of a (possibly malformed) command, if it is a valid tag
/// (RFC 3501 9: 1*<any ASTRING-CHAR except "+">).
pub fn tag_of(bytes: &[u8]) -> Option<String> {
    let end = bytes
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let tag = &bytes[..end];
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    ok.then(|| String::from_utf8_lossy(tag).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements() {
        assert_eq!(
            literal_announcement(b"a APPEND x {12}\r\n"),
            Some((12, false))
        );
        assert_eq!(
            literal_announcement(b"a APPEND x {12+}\r\n"),
            Some((12, true))
        );
        assert_eq!(literal_announcement(b"a LOGIN {3}\n"), Some((3, false)));
        assert_eq!(literal_announcement(b"a NOOP\r\n"), None);
        assert_eq!(literal_announcement(b"a x {}\r\n"), None);
        assert_eq!(literal_announcement(b"a x {1a}\r\n"), None);
        assert_eq!(
            literal_announcement(b"a x {99999999999999}\r\n"),
            Some((99999999999999, false))
        );
    }

    #[test]
    fn spooled_literals_are_announced_empty() {
        for (line, want) in [
            (
                &b"a APPEND INBOX {70000}\r\n"[..],
                &b"a APPEND INBOX {0}\r\n"[..],
            ),
            (
                b"a append x (\\Seen) {70000+}\r\n",
                b"a append x (\\Seen) {0+}\r\n",
            ),
            (b"a APPEND x ~{70000}\n", b"a APPEND x ~{0}\n"),
        ] {
            assert!(is_append(line));
            let mut m = line.to_vec();
            zero_literal(&mut m);
            assert_eq!(m, want);
        }
        assert!(!is_append(b"a LOGIN {70000}\r\n"));
        assert!(!is_append(b"APPEND"));
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of(b"a1 FOO\r\n").as_deref(), Some("a1"));
        assert_eq!(tag_of(b"* LOGIN\r\n"), None);
        assert_eq!(tag_of(b"\r\n"), None);
        assert_eq!(tag_of(b"\x00\x01 x"), None);
        assert_eq!(tag_of(b"A001").as_deref(), Some("A001"));
    }
}
