//! The standby side of replication: the accept loop (TLS, authentication, at most
//! [`PRE_AUTH_MAX`] unproven connections, one live channel), sending this node's
//! marks, the prelude of [`super::resync`], then applying the stream
//! ([`apply_stream`]): a reader starts storing each op's blobs as its frame arrives
//! ([`receive_blobs`], rebuilding block deltas; written, not yet durable), a syncer
//! waits for them in order and makes every group that has arrived durable with one
//! `syncfs` ([`crate::store::Store::install_staged`]), and an applier commits the
//! groups that are ready, up to [`APPLY_BATCH`] ops per transaction, and acknowledges
//! them at once (one group flushed while the previous one commits); and
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
use crate::store::Staged;
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
    Op(LoggedOp, Option<JoinHandle<Result<Vec<Staged>>>>),
    Pos { seq: u64, end: bool },
}

/// A frame whose files are written: ready to be applied once they are durable.
struct Ready {
    op: Option<LoggedOp>,
    pos: Option<(u64, bool)>,
    at: Instant,
    wall: u64,
    /// When its files were written.
    stored: Instant,
}

/// Frames whose files are durable and at their addresses: ready to be committed.
struct Synced {
    frames: Vec<Ready>,
    /// How long their `syncfs` and renames took.
    sync: Duration,
}

/// Receives the log in four stages that run side by side: a reader reads frames as
/// they arrive and starts writing each op's files at once; the syncer waits, in
/// order, until the files of every frame that has arrived are written (up to
/// [`APPLY_BATCH`] frames), makes them durable with one `syncfs`
/// ([`crate::store::Store::install_staged`]) and passes the group on; the applier
/// commits every group that is ready in one transaction (one fsync) and
/// acknowledges at once. So files are written while earlier frames are flushed, and
/// one group's files are flushed while the previous group commits.
async fn apply_stream<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Arc<Ctx>,
    repl: &Arc<Replication>,
    s: &mut BufReader<S>,
) -> Result<()> {
    repl.unapplied.store(0, Ordering::SeqCst);
    let (mut r, mut w) = tokio::io::split(s);
    let (tx, mut rx) = mpsc::channel::<Arrived>(APPLY_BATCH);
    // One group being committed, one flushed, one waiting.
    let (synced_tx, mut synced_rx) = mpsc::channel::<Synced>(2);
    let reader = async move {
        let result = read_frames(ctx, repl, &mut r, &tx).await;
        drop(tx);
        result
    };
    let syncer = async move {
        while let Some(first) = rx.recv().await {
            let mut staged = Vec::new();
            let mut frames = vec![written(first, &mut staged).await?];
            while frames.len() < APPLY_BATCH {
                match rx.try_recv() {
                    Ok(a) => frames.push(written(a, &mut staged).await?),
                    Err(_) => break,
                }
            }
            // The files first: an op is committed only once every file it names is
            // durable.
            let t0 = Instant::now();
            ctx.store.install_staged(staged).await?;
            let group = Synced {
                frames,
                sync: t0.elapsed(),
            };
            if synced_tx.send(group).await.is_err() {
                break; // the applier stopped
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let applier = async {
        let mut compacted = Instant::now();
        while let Some(first) = synced_rx.recv().await {
            let mut groups = vec![first];
            let mut n = groups[0].frames.len();
            while n < APPLY_BATCH {
                match synced_rx.try_recv() {
                    Ok(g) => {
                        n += g.frames.len();
                        groups.push(g);
                    }
                    Err(_) => break,
                }
            }
            apply_batch(ctx, repl, groups, &mut w).await?;
            // Everything here the active node holds too (the prelude saw to that).
            if compacted.elapsed() >= COMPACT_EVERY {
                compacted = Instant::now();
                compact(ctx, repl, u64::MAX).await;
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let mut reader = std::pin::pin!(reader);
    let mut rest = std::pin::pin!(async { tokio::try_join!(syncer, applier).map(|_| ()) });
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
                let files = tokio::spawn(async move {
                    let mut staged = Vec::new();
                    receive_blobs(&ctx, &repl, &blobs, &body, Some(&mut staged)).await?;
                    Ok(staged)
                });
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

/// Waits until an arrived frame's files are written; adds them to `staged`.
async fn written(a: Arrived, staged: &mut Vec<Staged>) -> Result<Ready> {
    let (op, pos) = match a.frame {
        Frame::Op(op, files) => {
            if let Some(files) = files {
                staged.extend(files.await.context("storing a message file")??);
            }
            (Some(op), None)
        }
        Frame::Pos { seq, end } => (None, Some((seq, end))),
    };
    Ok(Ready {
        op,
        pos,
        at: a.at,
        wall: a.wall,
        stored: Instant::now(),
    })
}

/// Applies groups of frames whose files are durable in one transaction, and
/// acknowledges them.
async fn apply_batch<W: AsyncWrite + Unpin>(
    ctx: &Ctx,
    repl: &Replication,
    groups: Vec<Synced>,
    w: &mut W,
) -> Result<()> {
    let taken = Instant::now();
    let synced: Duration = groups.iter().map(|g| g.sync).sum();
    let frames: Vec<Ready> = groups.into_iter().flat_map(|g| g.frames).collect();
    // The first frame waited longest (for its flush and the applier); the last is the
    // one acknowledged.
    let waited = frames.first().map_or(Duration::ZERO, |f| {
        (taken - f.stored).saturating_sub(synced)
    });
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
        sync_us: micros(synced),
        apply_us: micros(taken.elapsed()),
        tx_us: wall_us(),
    };
    let ack = Msg::Ack {
        seq: last,
        timing: Some(timing),
    };
    write_msg(w, &ack, &[]).await
}

/// Stores the blobs of a frame's body durably (rebuilding deltas against their base),
/// each checked against its address.
pub(super) async fn store_blobs(
    ctx: &Ctx,
    repl: &Replication,
    refs: &[BlobRef],
    body: &[u8],
) -> Result<()> {
    receive_blobs(ctx, repl, refs, body, None).await
}

/// [`store_blobs`], or with `staged`, writes them without making them durable and
/// adds them there for the batch's [`crate::store::Store::install_staged`].
async fn receive_blobs(
    ctx: &Ctx,
    repl: &Replication,
    refs: &[BlobRef],
    body: &[u8],
    mut staged: Option<&mut Vec<Staged>>,
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
        let got = match staged.as_deref_mut() {
            Some(staged) => {
                let (got, file) = ctx.store.stage_blob(data).await?;
                staged.extend(file);
                got
            }
            None => ctx.store.put_blob(data).await?.0,
        };
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
