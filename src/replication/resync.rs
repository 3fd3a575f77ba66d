//! What happens on a new channel before the log streams: the split-brain merge and
//! the snapshot resync.
//!
//! - Merge: the standby's marks show ops the active node lacks (both were active, or
//!   the standby was the active node and died with ops it never shipped). The active
//!   node asks for them ([`Msg::Diverged`] with its marks); the standby first records
//!   durably that it must resync, then sends them; the active node replays them as
//!   its own ([`crate::store::merge`]) and sends a snapshot. Interrupted anywhere,
//!   the next channel finishes the job: either the active node lacks the ops still
//!   (they are sent again) or it holds them, and the standby's flag asks for the
//!   snapshot.
//! - Snapshot: tables in chunks, then the standby asks for the blobs it lacks in
//!   batches ([`Msg::Want`]) and stores each as it arrives, and installs the tables
//!   in one transaction only once it holds every blob they name. An interrupted
//!   resync restarts, but blobs already stored are not asked for again (resumable).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::Replication;
use super::active::op_body;
use super::channel::{BlobRef, Msg, read_msg, write_msg, write_msg_nf};
use super::standby::store_blobs;
use crate::ctx::Ctx;
use crate::store::snapshot::{Snapshot, Table};

/// How long one side waits for the other's next frame during these phases (a merge
/// of a long split, or reading a large store, takes a while).
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows per snapshot frame; blobs asked for at a time.
const ROWS_PER_FRAME: usize = 2000;
const WANT_BATCH: usize = 64;

async fn next<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> Result<(Msg, Vec<u8>)> {
    tokio::time::timeout(PHASE_TIMEOUT, read_msg(r))
        .await
        .map_err(|_| anyhow!("no {what} from the peer within {PHASE_TIMEOUT:?}"))?
}

// ------------------------------------------------------------------ active side

/// Asks the standby for the ops it holds above `ours` and merges them here.
pub(super) async fn merge_divergent<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx,
    repl: &Replication,
    s: &mut S,
    peer_marks: &HashMap<String, u64>,
    ours: HashMap<String, u64>,
) -> Result<()> {
    tracing::warn!(
        peer = %repl.peer,
        "replication: the peer holds ops this node lacks (both were active): merging them here"
    );
    let mut marks: Vec<(String, u64)> = ours.into_iter().collect();
    marks.sort();
    write_msg(s, &Msg::Diverged { marks }, &[]).await?;
    let mut ops = Vec::new();
    loop {
        match next(s, "divergent ops").await? {
            (Msg::Op { op, blobs }, body) => {
                store_blobs(ctx, repl, &blobs, &body).await?;
                ops.push(op);
            }
            (Msg::DivergedEnd, _) => break,
            (other, _) => bail!("unexpected frame during a merge: {other:?}"),
        }
    }
    let n = ops.len();
    let report = ctx.store.merge(ops, peer_marks.clone()).await?;
    let words = format!(
        "merged {n} op(s) of {}: {} message(s) added, {} already here, {} flag change(s) applied ({} older than ours), {} expunged, {} skipped; new UIDVALIDITY for {}",
        repl.peer,
        report.messages_added,
        report.duplicates,
        report.flag_changes,
        report.flag_changes_lost,
        report.expunged,
        report.skipped,
        if report.renumbered.is_empty() {
            "none".to_string()
        } else {
            report.renumbered.join(", ")
        }
    );
    tracing::warn!(peer = %repl.peer, ?report, "replication: split brain {words}");
    *repl.last_merge.lock().unwrap() = Some(format!("{} {words}", now_text()));
    Ok(())
}

fn now_text() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

/// Sends a snapshot and the blobs the standby asks for; returns the log position
/// and marks it stands for (streaming continues from there).
pub(super) async fn send_snapshot<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx,
    repl: &Replication,
    s: &mut S,
) -> Result<(u64, HashMap<String, u64>)> {
    let snap = ctx.store.snapshot().await?;
    tracing::info!(
        peer = %repl.peer,
        seq = snap.seq,
        rows = snap.rows(),
        blobs = snap.blobs().len(),
        "replication: sending a snapshot"
    );
    write_msg_nf(
        s,
        &Msg::SnapBegin {
            seq: snap.seq,
            marks: snap.marks.clone(),
            hlc: snap.hlc,
        },
        &[],
    )
    .await?;
    for t in &snap.tables {
        let mut chunks = t.rows.chunks(ROWS_PER_FRAME).peekable();
        if chunks.peek().is_none() {
            let table = Table {
                name: t.name.clone(),
                columns: t.columns.clone(),
                rows: Vec::new(),
            };
            write_msg_nf(s, &Msg::SnapTable { table }, &[]).await?;
        }
        for rows in chunks {
            let table = Table {
                name: t.name.clone(),
                columns: t.columns.clone(),
                rows: rows.to_vec(),
            };
            write_msg_nf(s, &Msg::SnapTable { table }, &[]).await?;
        }
    }
    write_msg(s, &Msg::SnapEnd, &[]).await?;
    let mut sent = 0usize;
    loop {
        let (msg, _) = next(s, "blob request").await?;
        let Msg::Want { blobs } = msg else {
            bail!("unexpected frame during a snapshot: {msg:?}");
        };
        if blobs.is_empty() {
            break;
        }
        for id in blobs {
            let data = ctx.store.read_blob(&id).await?;
            write_msg_nf(s, &Msg::Blob { id }, &data).await?;
            sent += 1;
        }
        s.flush().await?;
    }
    repl.snapshots_sent.fetch_add(1, Ordering::SeqCst);
    tracing::info!(peer = %repl.peer, blobs = sent, "replication: snapshot sent");
    Ok((snap.seq, snap.marks.into_iter().collect()))
}

// ----------------------------------------------------------------- standby side

/// The standby's part before the log streams: sends its divergent ops and/or
/// receives a snapshot, as the active node asks, until [`Msg::Stream`].
pub(super) async fn prelude<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx,
    repl: &Replication,
    s: &mut BufReader<S>,
) -> Result<()> {
    loop {
        match next(s, "replication frame").await? {
            (Msg::Stream, _) => return Ok(()),
            (Msg::Diverged { marks }, _) => send_divergent(ctx, s.get_mut(), marks).await?,
            (Msg::SnapBegin { seq, marks, hlc }, _) => {
                receive_snapshot(
                    ctx,
                    repl,
                    s,
                    Snapshot {
                        seq,
                        marks,
                        hlc,
                        tables: Vec::new(),
                    },
                )
                .await?
            }
            (other, _) => bail!("unexpected frame before the log: {other:?}"),
        }
    }
}

/// Sends the ops of our log above the active node's `marks`, after recording that
/// this node must then take a snapshot.
async fn send_divergent<S: AsyncWrite + Unpin>(
    ctx: &Ctx,
    s: &mut S,
    marks: Vec<(String, u64)>,
) -> Result<()> {
    ctx.store.set_resync_needed().await?;
    let marks: HashMap<String, u64> = marks.into_iter().collect();
    let mut start = u64::MAX;
    for (origin, _) in ctx.store.origin_marks().await? {
        let theirs = marks.get(&origin).copied().unwrap_or(0);
        if let Some(first) = ctx.store.first_seq_after(&origin, theirs).await? {
            start = start.min(first - 1);
        }
    }
    let mut sent = 0usize;
    if start != u64::MAX {
        let mut cursor = start;
        loop {
            let ops = ctx.store.ops_since(cursor, 128).await?;
            let Some(last) = ops.last() else { break };
            cursor = last.seq;
            for op in ops {
                if marks.get(&op.origin).is_some_and(|m| op.origin_seq <= *m) {
                    continue;
                }
                let (blobs, body): (Vec<BlobRef>, Vec<u8>) = op_body(ctx, &op.op, false).await?;
                write_msg_nf(s, &Msg::Op { op, blobs }, &body).await?;
                sent += 1;
            }
        }
    }
    write_msg(s, &Msg::DivergedEnd, &[]).await?;
    tracing::warn!(
        ops = sent,
        "replication: sent the ops the active node lacked (split brain); a snapshot follows"
    );
    Ok(())
}

async fn receive_snapshot<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx,
    repl: &Replication,
    s: &mut BufReader<S>,
    mut snap: Snapshot,
) -> Result<()> {
    loop {
        match next(s, "snapshot").await? {
            (Msg::SnapTable { table }, _) => match snap.tables.last_mut() {
                Some(t) if t.name == table.name => t.rows.extend(table.rows),
                _ => snap.tables.push(table),
            },
            (Msg::SnapEnd, _) => break,
            (other, _) => bail!("unexpected frame in a snapshot: {other:?}"),
        }
    }
    let wanted = snap.blobs();
    let missing = ctx.store.missing_blobs(&wanted);
    tracing::info!(
        seq = snap.seq,
        rows = snap.rows(),
        blobs = wanted.len(),
        missing = missing.len(),
        "replication: receiving a snapshot"
    );
    for batch in missing.chunks(WANT_BATCH) {
        write_msg(
            s.get_mut(),
            &Msg::Want {
                blobs: batch.to_vec(),
            },
            &[],
        )
        .await?;
        for id in batch {
            let (msg, body) = next(s, "blob").await?;
            match msg {
                Msg::Blob { id: got } if got == *id => {
                    let refs = [BlobRef {
                        id: got,
                        len: body.len() as u64,
                        base: None,
                    }];
                    store_blobs(ctx, repl, &refs, &body).await?;
                }
                other => bail!("expected blob {id}, got {other:?}"),
            }
        }
    }
    write_msg(s.get_mut(), &Msg::Want { blobs: Vec::new() }, &[]).await?;
    let seq = snap.seq;
    ctx.store.install_snapshot(snap).await?;
    repl.snapshots_installed.fetch_add(1, Ordering::SeqCst);
    tracing::info!(
        seq,
        "replication: snapshot installed; this node's content is the active node's"
    );
    Ok(())
}
