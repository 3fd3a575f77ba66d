//! Listeners and connections: one accept loop per listening address, TLS with ALPN
//! (`h2`, `http/1.1`), hyper's HTTP/1.1 and HTTP/2 connection drivers, and the
//! limits that keep slow or idle clients from holding the server.
//!
//! Implementation notes
//! - A connection holds a permit of one semaphore of `http.max_connections`; at the
//!   limit the accept loop waits, so further clients queue in the listen backlog.
//!   One address has at most `http.max_connections_per_ip`: past it a plain HTTP
//!   connection gets a 503 and is closed, an HTTPS one is closed.
//! - A request must be answered within `http.request_timeout_s` of its head, reading
//!   its body included (else 408, and the unread body closes the connection); HTTP/2
//!   allows [`H2_MAX_STREAMS`] streams per connection.
//! - HTTP/1.1: the request head must arrive within `header_timeout_s` (hyper's
//!   header read timeout, which also bounds the keep-alive wait between requests)
//!   and fit in `max_header_bytes` (else hyper answers 431; a malformed head gets
//!   400). HTTP/2: the header list is bounded the same way.
//! - Every connection is watched for progress: bytes read or written, counted by the
//!   I/O wrapper. With no progress for `idle_timeout_s` and no request in flight,
//!   it is shut down gracefully (HTTP/2 gets GOAWAY). The TLS handshake has
//!   `header_timeout_s` to finish.
//! - TCP_NODELAY is set: responses are written whole, so Nagle only adds delay.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Result;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::{App, ConnInfo};

/// Connection limits, from `[http]`.
#[derive(Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Progress counters one connection shares with its watchdog.
#[derive(Default)]
pub struct Activity {
    io: AtomicU64,
    in_flight: AtomicU64,
}

impl Activity {
    /// Marks a request as running until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.io.fetch_add(1, Ordering::Relaxed);
    }
}

/// The answer to a connection over `http.max_connections_per_ip`, before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 40\r\nRetry-After: 10\r\n\r\nToo many connections from your address\r\n";

/// Most concurrent streams on one HTTP/2 connection (hyper's default is 200 and
/// more): enough for a page's assets, and a bound on what one connection can start.
pub const H2_MAX_STREAMS: u32 = 32;

/// The accept loop of `listener` (one instance of the service's, see `supervise`).
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    conns: Arc<Semaphore>,
    per_ip: Arc<crate::perip::PerIp>,
    limits: Limits,
    run: crate::supervise::Run,
) {
    loop {
        let Ok(permit) = conns.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match run.gate(listener.accept()).await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait rather than spin.
                tracing::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = per_ip.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "http: too many connections from one address");
            if tls.is_none() {
                // Plain HTTP can say why; over TLS the handshake is not worth it.
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio::io::AsyncWriteExt::write_all(&mut stream, TOO_MANY),
                    )
                    .await;
                });
            }
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let activity = Arc::new(Activity::default());
            let https = tls.is_some();
            let info = ConnInfo { peer, https };
            match tls {
                None => {
                    let io = Watched::new(stream, activity.clone());
                    serve(io, false, app, info, activity, limits).await;
                }
                Some(acceptor) => {
                    let accepted =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await;
                    let Ok(Ok(tls)) = accepted else {
                        tracing::debug!(%peer, "http: TLS handshake failed or timed out");
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let io = Watched::new(tls, activity.clone());
                    serve(io, h2, app, info, activity, limits).await;
                }
            }
            drop(permit);
        });
    }
}

/// Drives one connection until it ends, is idle too long, or fails.
async fn serve<I>(
    io: Watched<I>,
    h2: bool,
    app: Arc<App>,
    info: ConnInfo,
    activity: Arc<Activity>,
    limits: Limits,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let guard = act.begin();
        super::handle(app.clone(), info, req, guard)
    });
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(H2_MAX_STREAMS);
        let conn = b.serve_connection(io, svc);
        watch(conn, &activity, limits.idle_timeout, |c| {
            c.graceful_shutdown()
        })
        .await;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_bytes)
            .keep_alive(true);
        let conn = b.serve_connection(io, svc);
        watch(conn, &activity, limits.idle_timeout, |c| {
            c.graceful_shutdown()
        })
        .await;
    }
}

/// Polls `conn` to completion, shutting it down after `idle` without progress.
async fn watch<C, E>(
    conn: C,
    activity: &Activity,
    idle: Duration,
    shutdown: impl FnOnce(Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let mut seen = activity.io.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("http: connection ended: {e}");
                }
                return;
            }
            _ = tokio::time::sleep(idle) => {
                let now = activity.io.load(Ordering::Relaxed);
                if now == seen && activity.in_flight.load(Ordering::Relaxed) == 0 {
                    break;
                }
                seen = now;
            }
        }
    }
    shutdown(conn.as_mut());
    // A well-behaved connection closes at once; give a stuck one a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

/// An I/O object that counts successful reads and writes for the idle watchdog.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }

    fn tick(&self) {
        self.activity.io.fetch_add(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tick();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.tick();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.tick();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The first `https_listen` port, for redirects (None: 443 or no HTTPS).
pub fn https_port(addrs: &[SocketAddr]) -> Option<u16> {
    addrs.first().map(|a| a.port()).filter(|p| *p != 443)
}
