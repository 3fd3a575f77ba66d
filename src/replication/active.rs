//! The active side of replication: the ship loop (connect, authenticate, read the
//! standby's marks, run the prelude of [`super::resync`] when needed, then stream the
//! log as [`Msg::Op`] and [`Msg::Pos`] frames), the bodies of those frames
//! ([`op_body`], block deltas for large content files), reading the standby's
//! acknowledgements, releasing the sync commits they cover (or all of them on
//! timeout or a dead peer: degraded), and the periodic log compaction ([`compact`],
//! also run by the standby side).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, BufWriter};

use super::channel::AckTiming;
use super::channel::{
    BlobRef, Msg, authenticate, client_config, read_msg, session_exporter, write_msg, write_msg_nf,
};
use super::timing::wall_us;
use super::{Replication, SENT_MAX, delta, resync};
use crate::config::ReplicationMode;
use crate::ctx::Ctx;
use crate::store::op::{LoggedOp, Op};

/// Ops the active node reads from its log at a time.
const SHIP_BATCH: usize = 128;

/// Ops whose files are read at once while shipping.
const READ_AHEAD: usize = 8;

/// The channel's write buffer on the active side.
const WRITE_BUFFER: usize = 64 << 10;

pub(super) async fn ship_loop(ctx: Arc<Ctx>, repl: Arc<Replication>) {
    let connector = tokio_rustls::TlsConnector::from(client_config());
    let mut backoff = Duration::from_millis(100);
    loop {
        if !ctx.store.is_writable() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let started = Instant::now();
        match ship(&ctx, &repl, &connector).await {
            Ok(()) => {}
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "replication: shipping stopped"),
        }
        repl.connected_out.store(false, Ordering::SeqCst);
        // A channel that fails at once (peer down, or refusing: both active) is retried
        // with a growing pause, up to 2 s; one that worked for a while, at once.
        if started.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

async fn ship(
    ctx: &Ctx,
    repl: &Arc<Replication>,
    connector: &tokio_rustls::TlsConnector,
) -> Result<()> {
    let addr = repl.cfg.peer;
    let tcp = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr}: timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("clusterd-peer")
        .expect("a valid name")
        .to_owned();
    let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| anyhow!("TLS handshake with {addr}: timed out"))?
        .with_context(|| format!("TLS handshake with {addr}"))?;
    let exporter = session_exporter(tls.get_ref().1)?;
    authenticate(
        &mut tls, &repl.key, &repl.node, &repl.peer, &exporter, "active", "standby",
    )
    .await?;
    let (msg, _) = tokio::time::timeout(Duration::from_secs(5), read_msg(&mut tls))
        .await
        .map_err(|_| anyhow!("no marks from the peer"))??;
    let Msg::Marks {
        marks,
        resync,
        no_deltas,
    } = msg
    else {
        bail!("expected marks from the peer");
    };
    let peer_marks: HashMap<String, u64> = marks.into_iter().collect();
    // The peer holds ops we lack: both were active. Merge them here first; the peer
    // then takes our snapshot (it may also have asked for one itself).
    let mut snapshot = resync;
    let ours: HashMap<String, u64> = ctx.store.origin_marks().await?.into_iter().collect();
    if peer_marks
        .iter()
        .any(|(o, m)| ours.get(o).is_none_or(|have| m > have))
    {
        resync::merge_divergent(ctx, repl, &mut tls, &peer_marks, ours).await?;
        snapshot = true;
    }
    // Ops the peer lacks that our log no longer holds: only a snapshot has them.
    for (origin, held) in ctx.store.baseline().await? {
        if peer_marks.get(&origin).copied().unwrap_or(0) < held {
            snapshot = true;
        }
    }
    let (mut cursor, marks) = if snapshot {
        resync::send_snapshot(ctx, repl, &mut tls).await?
    } else {
        (start_position(ctx, &peer_marks).await?, peer_marks)
    };
    write_msg(&mut tls, &Msg::Stream, &[]).await?;
    tracing::info!(peer = %repl.peer, from = cursor, "replication: shipping to the peer");
    repl.connected_out.store(true, Ordering::SeqCst);
    let deltas = !no_deltas;

    let (r, w) = tokio::io::split(tls);
    // A run of frames leaves in a few TLS records and writes, flushed once per run.
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, w);
    let acks = tokio::spawn(read_acks(BufReader::new(r), repl.clone()));
    let mut committed = repl.committed.subscribe();
    let mut at_end = false;
    let result: Result<()> = async {
        loop {
            if !ctx.store.is_writable() {
                return Ok(());
            }
            if acks.is_finished() {
                bail!("the peer closed the channel");
            }
            let ops = ctx.store.ops_since(cursor, SHIP_BATCH).await?;
            if ops.is_empty() {
                if !at_end {
                    write_msg(
                        &mut w,
                        &Msg::Pos {
                            seq: cursor,
                            end: true,
                        },
                        &[],
                    )
                    .await?;
                    repl.note_sent(cursor);
                    at_end = true;
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), committed.changed()).await;
                continue;
            }
            at_end = false;
            let mut skipped = false;
            let mut send = Vec::with_capacity(ops.len());
            for op in ops {
                cursor = op.seq;
                if marks.get(&op.origin).is_some_and(|m| op.origin_seq <= *m) {
                    skipped = true;
                    continue;
                }
                skipped = false;
                send.push(op);
            }
            let may_delta =
                |op: &LoggedOp| deltas && matches!(op.op, Op::ContentPut { base: Some(_), .. });
            if send.iter().any(may_delta) {
                // The ops' files are read a few at a time, side by side, in log order
                // (a content file may become a block delta).
                let mut bodies = futures::stream::iter(send.into_iter().map(|op| async move {
                    let body = op_body(ctx, &op.op, deltas).await;
                    (op, body)
                }))
                .buffered(READ_AHEAD);
                while let Some((op, body)) = bodies.next().await {
                    let (blobs, body) = body?;
                    write_msg_nf(&mut w, &Msg::Op { op, blobs }, &body).await?;
                }
            } else {
                // Every file travels whole: the files of READ_AHEAD ops at a time (the
                // same bound on bodies held as above) in one trip to the blocking pool
                // (a hand-off per file cost more than reading a small one).
                let mut group = send;
                while !group.is_empty() {
                    let rest = group.split_off(READ_AHEAD.min(group.len()));
                    let bodies = whole_bodies(ctx, &group).await?;
                    for (op, (blobs, body)) in group.into_iter().zip(bodies) {
                        write_msg_nf(&mut w, &Msg::Op { op, blobs }, &body).await?;
                    }
                    group = rest;
                }
            }
            if skipped {
                write_msg_nf(
                    &mut w,
                    &Msg::Pos {
                        seq: cursor,
                        end: false,
                    },
                    &[],
                )
                .await?;
            }
            w.flush().await?;
            repl.note_sent(cursor);
        }
    }
    .await;
    acks.abort();
    result
}

/// The log position after which the peer may lack ops: for every origin of which we
/// hold more than the peer, just before our first op of it above the peer's mark.
async fn start_position(ctx: &Ctx, marks: &HashMap<String, u64>) -> Result<u64> {
    let mut start = u64::MAX;
    for (origin, ours) in ctx.store.origin_marks().await? {
        let theirs = marks.get(&origin).copied().unwrap_or(0);
        if theirs >= ours {
            continue;
        }
        if let Some(first) = ctx.store.first_seq_after(&origin, theirs).await? {
            start = start.min(first - 1);
        }
    }
    Ok(if start == u64::MAX {
        ctx.store.last_seq().await?
    } else {
        start
    })
}

/// The blobs an op names, for a frame's body: whole, or (a content file whose
/// previous version the peer holds, when `deltas`) as a block delta when smaller.
pub(super) async fn op_body(ctx: &Ctx, op: &Op, deltas: bool) -> Result<(Vec<BlobRef>, Vec<u8>)> {
    let mut body = Vec::new();
    let mut refs: Vec<BlobRef> = Vec::new();
    let base = match op {
        Op::ContentPut { base: Some(b), .. } if deltas => Some(b.clone()),
        _ => None,
    };
    for id in op.blobs() {
        if refs.iter().any(|r| r.id == *id) {
            continue;
        }
        let mut data = ctx.store.read_blob(id).await?;
        let mut delta = None;
        if let Some(b) = base.as_ref().filter(|_| data.len() >= DELTA_MIN)
            && let Ok(old) = ctx.store.read_blob(b).await
        {
            let (d, back) =
                tokio::task::spawn_blocking(move || (delta::encode(&old, &data), data)).await?;
            data = back;
            delta = Some(d).filter(|d| d.len() < data.len());
        }
        let (bytes, base) = match delta {
            Some(d) => (d, base.clone()),
            None => (data, None),
        };
        refs.push(BlobRef {
            id: id.clone(),
            len: bytes.len() as u64,
            base,
        });
        body.extend_from_slice(&bytes);
    }
    Ok((refs, body))
}

/// The bodies of ops whose files all travel whole ([`op_body`] without deltas), the
/// files read in one trip to the blocking pool; one per op, in order.
async fn whole_bodies(ctx: &Ctx, ops: &[LoggedOp]) -> Result<Vec<(Vec<BlobRef>, Vec<u8>)>> {
    let per_op: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            let mut ids: Vec<String> = Vec::new();
            for id in o.op.blobs() {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
            ids
        })
        .collect();
    let all: Vec<String> = per_op.iter().flatten().cloned().collect();
    let mut files = ctx.store.read_blobs(all).await?.into_iter();
    per_op
        .into_iter()
        .map(|ids| {
            let mut body = Vec::new();
            let mut refs = Vec::with_capacity(ids.len());
            for id in ids {
                let data = files.next().expect("one result per file")?;
                refs.push(BlobRef {
                    id,
                    len: data.len() as u64,
                    base: None,
                });
                body.extend_from_slice(&data);
            }
            Ok((refs, body))
        })
        .collect()
}

/// Files smaller than this travel whole.
const DELTA_MIN: usize = 16 * 1024;

async fn read_acks<R: AsyncRead + Unpin>(mut r: R, repl: Arc<Replication>) -> Result<()> {
    loop {
        match read_msg(&mut r).await? {
            (Msg::Ack { seq, timing }, _) => {
                repl.note_ack(seq, timing);
                repl.acked.send_if_modified(|a| {
                    let newer = seq > *a;
                    if newer {
                        *a = seq;
                    }
                    newer
                });
                // The commits it covers go out now, not at the release loop's next turn.
                let released = repl.pending.ack(seq);
                repl.note_released(seq, &released);
            }
            (other, _) => bail!("unexpected frame from the standby: {other:?}"),
        }
    }
}

// ------------------------------------------------------- sync commits and compaction

pub(super) async fn release_loop(ctx: Arc<Ctx>, repl: Arc<Replication>) {
    let mut acked = repl.acked.subscribe();
    let mut compacted = Instant::now();
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(20), acked.changed()).await;
        repl.release_pending(!repl.peer_alive.load(Ordering::SeqCst));
        // The active node drops what the peer acknowledged (the standby compacts
        // while receiving, see `standby::apply_stream`).
        if ctx.store.is_writable() && compacted.elapsed() >= COMPACT_EVERY {
            compacted = Instant::now();
            let upto = *repl.acked.borrow();
            compact(&ctx, &repl, upto).await;
        }
    }
}

impl Replication {
    /// The channel was flushed with everything up to `seq` written.
    fn note_sent(&self, seq: u64) {
        let mut t = self.timing.lock().unwrap();
        if t.sent.back().is_some_and(|(s, _, _)| *s >= seq) {
            return;
        }
        if t.sent.len() >= SENT_MAX {
            t.sent.pop_front();
        }
        t.sent.push_back((seq, Instant::now(), wall_us()));
    }

    /// An acknowledgement of `seq` was read: the stages the standby measured, and the
    /// way there and back (wall clocks).
    fn note_ack(&self, seq: u64, timing: Option<AckTiming>) {
        let now = Instant::now();
        let mut t = self.timing.lock().unwrap();
        t.acked_at = now;
        if let Some(a) = timing {
            if let Some((_, sent_wall)) = t.sent_at(seq) {
                t.stages
                    .to_peer
                    .record_us(a.rx_us.saturating_sub(sent_wall));
            }
            t.stages.peer_gather.record_us(a.gather_us);
            t.stages.peer_blobs.record_us(a.blobs_us);
            t.stages.peer_sync.record_us(a.sync_us);
            t.stages.peer_apply.record_us(a.apply_us);
            t.stages
                .from_peer
                .record_us(wall_us().saturating_sub(a.tx_us));
        }
    }

    /// Releases the commits the peer holds; on timeout or a dead peer, all of them.
    pub(super) fn release_pending(&self, peer_dead: bool) {
        let acked = *self.acked.borrow();
        let released = self.pending.ack(acked);
        self.note_released(acked, &released);
        let timeout = Duration::from_millis(self.cfg.ack_timeout_ms);
        let (oldest, waiting) = self.pending.oldest();
        let overdue = oldest.is_some_and(|t| t.elapsed() >= timeout);
        if (overdue || peer_dead) && waiting > 0 {
            if !self.degraded.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    peer_dead,
                    waiting,
                    "replication: the peer does not acknowledge; committing alone (degraded)"
                );
            }
            self.pending.release_all();
        }
        if peer_dead
            && self.cfg.mode == ReplicationMode::Sync
            && !self.degraded.swap(true, Ordering::SeqCst)
        {
            tracing::warn!("replication: the peer is dead; committing alone (degraded)");
        }
        if !peer_dead
            && self.connected_out.load(Ordering::SeqCst)
            && acked >= *self.committed.borrow()
            && self.degraded.swap(false, Ordering::SeqCst)
        {
            tracing::info!(
                seq = acked,
                "replication: the peer has caught up; sync again"
            );
        }
    }
}

impl Replication {
    /// Sync commits (last position, when committed) were released by the
    /// acknowledgement of `acked`: their stages from commit to release.
    pub(super) fn note_released(&self, acked: u64, released: &[(u64, Instant)]) {
        let now = Instant::now();
        let mut t = self.timing.lock().unwrap();
        for &(seq, committed) in released {
            if let Some((sent, _)) = t.sent_at(seq) {
                t.stages
                    .ship
                    .record(sent.saturating_duration_since(committed));
                let acked_at = t.acked_at;
                t.stages
                    .ack_wait
                    .record(acked_at.saturating_duration_since(sent));
            }
            let acked_at = t.acked_at;
            t.stages
                .release
                .record(now.saturating_duration_since(acked_at));
            t.stages.total.record(now - committed);
        }
        while t.sent.front().is_some_and(|(s, _, _)| *s <= acked) {
            t.sent.pop_front();
        }
    }
}

/// How often a node drops log entries both sides hold.
pub(super) const COMPACT_EVERY: Duration = Duration::from_secs(2);

/// Compacts the log up to `upto` (active: what the peer acknowledged; standby: all it
/// holds, which the active node holds too), keeping `log_keep_ops`.
pub(super) async fn compact(ctx: &Ctx, repl: &Replication, upto: u64) {
    match ctx.store.compact(upto, repl.cfg.log_keep_ops).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(ops = n, upto, "replication: log compacted"),
        Err(e) => tracing::warn!(error = %e, "replication: compacting the log failed"),
    }
}
