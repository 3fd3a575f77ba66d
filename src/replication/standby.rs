//! The standby side of replication: the accept loop (TLS, authentication, at most
//! [`PRE_AUTH_MAX`] unproven connections, one live channel), sending this node's
//! marks, the prelude of [`super::resync`], then applying the stream
//! ([`apply_stream`]): a reader starts storing each op's blobs as its frame arrives
//! ([`store_blobs`], rebuilding block deltas), a second stage waits for them in
//! order, and an applier commits every frame whose files are durable, up to
//! [`APPLY_BATCH`] ops per transaction, and acknowledges each batch at once; and
//! [`Replication::drain`], which lets what already arrived be applied before this
//! node becomes active.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::active::{COMPACT_EVERY, compact};
use super::channel::{
    AckTiming, BlobRef, Msg, authenticate, is_eof, read_msg, session_exporter, write_msg,
};
use super::timing::{micros, wall_us};
use super::{Replication, delta, resync};
use crate::ctx::Ctx;
use crate::store::op::LoggedOp;

/// Ops the standby applies in one transaction at most.
const APPLY_BATCH: usize = 64;

/// Connections the standby lets prove themselves at once; more are dropped.
const PRE_AUTH_MAX: usize = 8;

/// [`Replication::drain`]: the longest wait, and the quiet time that ends it.
const DRAIN_MAX: Duration = Duration::from_secs(1);
const DRAIN_QUIET: Duration = Duration::from_millis(30);

pub(super) async fn accept_loop(
    ctx: Arc<Ctx>,
    repl: Arc<Replication>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    run: crate::supervise::Run,
) {
    let current: Arc<Mutex<Option<tokio::task::AbortHandle>>> = Arc::default();
    // Connections still proving themselves (each has 5 s for TLS and 5 s for its MAC).
    let pre_auth = Arc::new(tokio::sync::Semaphore::new(PRE_AUTH_MAX));
    loop {
        let (tcp, from) = match run.gate(listener.accept()).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "replication: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = pre_auth.clone().try_acquire_owned() else {
            tracing::warn!(%from, "replication: too many unauthenticated connections; dropped");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (ctx, repl, acceptor, current2) =
            (ctx.clone(), repl.clone(), acceptor.clone(), current.clone());
        let (me_tx, me_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let Ok(me) = me_rx.await else { return };
            match receive(&ctx, &repl, &acceptor, tcp, me, &current2, permit).await {
                Ok(()) => tracing::info!(%from, "replication: the peer closed the channel"),
                Err(e) => {
                    tracing::warn!(%from, error = %format!("{e:#}"), "replication: channel refused or ended")
                }
            }
        });
        let _ = me_tx.send(task.abort_handle());
    }
}

async fn receive(
    ctx: &Arc<Ctx>,
    repl: &Arc<Replication>,
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    me: tokio::task::AbortHandle,
    current: &Mutex<Option<tokio::task::AbortHandle>>,
    pre_auth: tokio::sync::OwnedSemaphorePermit,
) -> Result<()> {
    let mut tls = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp))
        .await
        .map_err(|_| anyhow!("TLS handshake timed out"))?
        .context("TLS handshake")?;
    let exporter = session_exporter(tls.get_ref().1)?;
    authenticate(
        &mut tls, &repl.key, &repl.node, &repl.peer, &exporter, "standby", "active",
    )
    .await?;
    drop(pre_auth);
    if ctx.store.is_writable() {
        bail!("the peer ships ops but this node is active too (split brain): refused");
    }
    // Only now, authenticated, may it replace an older channel (a peer that
    // restarted leaves a dead one behind).
    if let Some(old) = current.lock().unwrap().replace(me) {
        old.abort();
    }
    let marks = ctx.store.origin_marks().await?;
    let resync = ctx.store.resync_needed().await?;
    let no_deltas = repl.no_deltas.load(Ordering::SeqCst);
    write_msg(
        &mut tls,
        &Msg::Marks {
            marks,
            resync,
            no_deltas,
        },
        &[],
    )
    .await?;
    // Large enough that a batch takes many ops already received.
    let mut s = BufReader::with_capacity(1 << 20, tls);
    resync::prelude(ctx, repl, &mut s).await?;
    tracing::info!(peer = %repl.peer, "replication: receiving from the peer");
    repl.connected_in.store(true, Ordering::SeqCst);
    let result = apply_stream(ctx, repl, &mut s).await;
    repl.connected_in.store(false, Ordering::SeqCst);
    repl.caught_up.store(false, Ordering::SeqCst);
    result
}

/// A frame the reader passed on: an op with the task storing its files (already
/// running), or a position; when it was read (monotonic and wall clock, µs).
struct Arrived {
    frame: Frame,
    at: Instant,
    wall: u64,
}

enum Frame {
    Op(LoggedOp, Option<JoinHandle<Result<()>>>),
    Pos { seq: u64, end: bool },
}

/// A frame whose files are durable: ready to be applied.
struct Ready {
    op: Option<LoggedOp>,
    pos: Option<(u64, bool)>,
    at: Instant,
    wall: u64,
    /// When its files were stored.
    stored: Instant,
}

/// Receives the log in three stages that run side by side: a reader reads frames
/// as they arrive and starts storing each op's files at once; a second stage waits,
/// in order, until each frame's files are durable; the applier takes every frame
/// that is ready (up to [`APPLY_BATCH`]), applies the ops in one transaction (one
/// fsync) and acknowledges at once. So the files of what arrives are written while
/// the previous batch commits, and a batch never waits for files of frames behind it.
async fn apply_stream<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Arc<Ctx>,
    repl: &Arc<Replication>,
    s: &mut BufReader<S>,
) -> Result<()> {
    repl.unapplied.store(0, Ordering::SeqCst);
    let (mut r, mut w) = tokio::io::split(s);
    let (tx, mut rx) = mpsc::channel::<Arrived>(APPLY_BATCH);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Ready>(APPLY_BATCH);
    let reader = async move {
        let result = read_frames(ctx, repl, &mut r, &tx).await;
        drop(tx);
        result
    };
    let files = async move {
        while let Some(a) = rx.recv().await {
            let (op, pos) = match a.frame {
                Frame::Op(op, files) => {
                    if let Some(files) = files {
                        files.await.context("storing a message file")??;
                    }
                    (Some(op), None)
                }
                Frame::Pos { seq, end } => (None, Some((seq, end))),
            };
            let ready = Ready {
                op,
                pos,
                at: a.at,
                wall: a.wall,
                stored: Instant::now(),
            };
            if ready_tx.send(ready).await.is_err() {
                break; // the applier stopped
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let applier = async {
        let mut compacted = Instant::now();
        while let Some(first) = ready_rx.recv().await {
            let mut frames = vec![first];
            while frames.len() < APPLY_BATCH {
                match ready_rx.try_recv() {
                    Ok(f) => frames.push(f),
                    Err(_) => break,
                }
            }
            apply_batch(ctx, repl, frames, &mut w).await?;
            // Everything here the active node holds too (the prelude saw to that).
            if compacted.elapsed() >= COMPACT_EVERY {
                compacted = Instant::now();
                compact(ctx, repl, u64::MAX).await;
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let mut reader = std::pin::pin!(reader);
    let mut rest = std::pin::pin!(async { tokio::try_join!(files, applier).map(|_| ()) });
    let mut read_result = None;
    // The rest ends once the reader has ended and everything read is applied, or at
    // its first error; the reader's own error (a broken frame) is reported then.
    let result = loop {
        tokio::select! {
            r = &mut reader, if read_result.is_none() => read_result = Some(r),
            r = &mut rest => break r.and(read_result.unwrap_or(Ok(()))),
        }
    };
    repl.unapplied.store(0, Ordering::SeqCst);
    result
}

/// The reader: frames until the channel ends (Ok at a frame boundary).
async fn read_frames<R: AsyncRead + Unpin>(
    ctx: &Arc<Ctx>,
    repl: &Arc<Replication>,
    r: &mut R,
    tx: &mpsc::Sender<Arrived>,
) -> Result<()> {
    loop {
        let (msg, body) = match read_msg(r).await {
            Ok(x) => x,
            Err(e) if is_eof(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let (at, wall) = (Instant::now(), wall_us());
        repl.unapplied.fetch_add(1, Ordering::SeqCst);
        *repl.last_received.lock().unwrap() = at;
        let frame = match msg {
            Msg::Op { op, blobs } if blobs.is_empty() => Frame::Op(op, None),
            Msg::Op { op, blobs } => {
                let (ctx, repl) = (ctx.clone(), repl.clone());
                let files =
                    tokio::spawn(async move { store_blobs(&ctx, &repl, &blobs, &body).await });
                Frame::Op(op, Some(files))
            }
            Msg::Pos { seq, end } => Frame::Pos { seq, end },
            other => bail!("unexpected frame from the active node: {other:?}"),
        };
        if tx.send(Arrived { frame, at, wall }).await.is_err() {
            return Ok(()); // the applier stopped
        }
    }
}

/// Applies one batch of frames whose files are durable, and acknowledges it.
async fn apply_batch<W: AsyncWrite + Unpin>(
    ctx: &Ctx,
    repl: &Replication,
    frames: Vec<Ready>,
    w: &mut W,
) -> Result<()> {
    let taken = Instant::now();
    // The first frame waited longest for the applier; the last is the one acknowledged.
    let waited = frames.first().map_or(Duration::ZERO, |f| taken - f.stored);
    let (files, last_rx_wall) = frames
        .last()
        .map_or((Duration::ZERO, 0), |f| (f.stored - f.at, f.wall));
    let n = frames.len();
    let mut batch = Vec::new();
    let mut last = 0u64;
    let mut end_at = None;
    for f in frames {
        if let Some(op) = f.op {
            last = op.seq;
            batch.push(op);
        }
        if let Some((seq, end)) = f.pos {
            last = last.max(seq);
            if end {
                end_at = Some(seq);
            }
        }
    }
    if ctx.store.is_writable() {
        bail!("this node became active: no more ops from the peer");
    }
    if !batch.is_empty() {
        let r = ctx.store.apply_replicated(batch).await;
        *repl.last_received.lock().unwrap() = Instant::now();
        repl.applied.fetch_add(r? as u64, Ordering::SeqCst);
    }
    repl.unapplied.fetch_sub(n, Ordering::SeqCst);
    if let Some(seq) = end_at
        && !repl.caught_up.swap(true, Ordering::SeqCst)
    {
        tracing::info!(seq, "replication: caught up with the active node");
        repl.no_deltas.store(false, Ordering::SeqCst);
    }
    let timing = AckTiming {
        rx_us: last_rx_wall,
        gather_us: micros(waited),
        blobs_us: micros(files),
        apply_us: micros(taken.elapsed()),
        tx_us: wall_us(),
    };
    let ack = Msg::Ack {
        seq: last,
        timing: Some(timing),
    };
    write_msg(w, &ack, &[]).await
}

/// Stores the blobs of a frame's body (rebuilding deltas against their base), each
/// checked against its address.
pub(super) async fn store_blobs(
    ctx: &Ctx,
    repl: &Replication,
    refs: &[BlobRef],
    body: &[u8],
) -> Result<()> {
    let mut at = 0usize;
    for r in refs {
        let end = at
            .checked_add(r.len as usize)
            .filter(|e| *e <= body.len())
            .ok_or_else(|| anyhow!("frame body shorter than its blobs"))?;
        let bytes = &body[at..end];
        let data = match &r.base {
            None => bytes.to_vec(),
            Some(base) => {
                let rebuilt = match ctx.store.read_blob(base).await {
                    Ok(old) => delta::decode(&old, bytes),
                    Err(e) => Err(anyhow!("its base {base} is missing here: {e}")),
                };
                match rebuilt {
                    Ok(d) => d,
                    Err(e) => {
                        // Next channel: whole files.
                        repl.no_deltas.store(true, Ordering::SeqCst);
                        bail!(
                            "blob {} arrived as a delta that does not apply: {e:#}",
                            r.id
                        );
                    }
                }
            }
        };
        let (got, _) = ctx.store.put_blob(data).await?;
        if got != r.id {
            if r.base.is_some() {
                repl.no_deltas.store(true, Ordering::SeqCst);
            }
            bail!("blob {} arrived with other content ({got})", r.id);
        }
        at = end;
    }
    Ok(())
}

impl Replication {
    /// Before this node opens its store for writes: lets the receiver apply what
    /// already arrived from the peer (the channel closed, or quiet for a moment with
    /// nothing being applied), for at most a second.
    pub async fn drain(&self) {
        let t0 = Instant::now();
        let applied = self.applied.load(Ordering::SeqCst);
        while t0.elapsed() < DRAIN_MAX {
            let quiet = self.last_received.lock().unwrap().elapsed() >= DRAIN_QUIET;
            if !self.connected_in.load(Ordering::SeqCst)
                || (quiet && self.unapplied.load(Ordering::SeqCst) == 0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(
            waited_ms = t0.elapsed().as_millis() as u64,
            applied = self.applied.load(Ordering::SeqCst) - applied,
            "replication: applied what the peer sent; opening the store"
        );
    }
}
