//! Replication: the active node ships its committed ops, in log order and with the
//! message bodies they name, to the standby, which applies each verbatim and
//! acknowledges the position it holds durably. In `sync` mode the store's replies to
//! a commit (an SMTP 250, an IMAP OK) wait for that acknowledgement
//! ([`crate::store::CommitBarrier`]).
//!
//! Implementation notes
//! - The channel: the active node connects (TCP, `replication.peer`) and speaks TLS 1.3
//!   (ALPN `clusterd-repl/1`; the standby presents the node's TLS identity). The
//!   certificate is not what authenticates: both ends send an HMAC-SHA256, under the
//!   cluster key (`cluster.auth_key_file`), of their direction, their node name and a
//!   TLS exporter value (RFC 8446 7.5) of this session. A stranger without the key
//!   cannot produce it, and a man in the middle would hold two sessions with two
//!   exporter values, so neither MAC would verify. Nothing else is read before both
//!   MACs check out.
//! - Frames: a 4-byte header length, a 4-byte body length, the JSON header
//!   ([`Msg`]), the body (the op's blobs back to back). The standby says which ops it
//!   holds as per-origin high-water marks ([`Msg::Marks`]); the active node starts
//!   just before its first op above them (for each origin of which it holds more)
//!   and skips what the standby holds, so a returning peer catches up from the log. Ops it skips are
//!   covered by a [`Msg::Pos`], so acknowledgements always reach the log's end.
//! - The standby stores blobs first (their hash is their name: a wrong body is
//!   refused), then applies up to 64 ops already received in one transaction, then
//!   acknowledges the active node's position of the last one ([`Msg::Ack`]).
//! - A sync commit waits at most `ack_timeout_ms`, and not at all while the heartbeat
//!   holds the peer dead: then the node goes on alone (degraded, in `clusterd
//!   status`) until the peer has caught up again.
//! - A standby is "caught up" once the active node has sent its log to the end
//!   ([`Msg::Pos`] with `end`); until then [`Replication::ready`] is false, which the
//!   cluster reports as the node's health: a returning preferred node fails back only
//!   after it has everything the peer accepted meanwhile.
//! - Only a node whose store is open for writes (the active one) ships; a node
//!   receiving ops while open for writes refuses them (both are active: a split
//!   brain; once one stands down, the channel's prelude merges, see [`resync`]).
//! - Before the log streams ([`resync`]): if the standby holds ops the active node
//!   lacks, they are merged on the active node (the split-brain merge) and the standby
//!   takes a snapshot; if the standby lacks ops the log no longer holds (compacted:
//!   the active node keeps `log_keep_ops` of what the peer acknowledged; a wiped
//!   disk), it takes a snapshot too. Snapshots are streamed; their message files are
//!   asked for only when missing, so an interrupted resync resumes.
//! - Content files (`ContentPut` with the previous version as base) of 16 KiB or more
//!   travel as block deltas ([`delta`]); a standby that cannot rebuild one asks for
//!   whole files on its next channel.
//! - A node becoming active first lets the receiver apply what already arrived
//!   ([`Replication::drain`]), then opens its store.
//! - Each side compacts its log: the active node up to what the peer acknowledged,
//!   the standby what it holds once the prelude found nothing it alone has.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::config::{ReplicationConfig, ReplicationMode};
use crate::ctx::Ctx;
use crate::store::CommitBarrier;
use crate::store::op::{LoggedOp, Op};

mod delta;
mod resync;

const ALPN: &[u8] = b"clusterd-repl/1";
const EXPORTER_LABEL: &[u8] = b"EXPORTER-clusterd-replication";
const MAX_HEADER: usize = 16 << 20;
const MAX_BODY: usize = 256 << 20;
/// Ops the standby applies in one transaction at most.
const APPLY_BATCH: usize = 64;
/// Ops the active node reads from its log at a time.
const SHIP_BATCH: usize = 128;

/// One frame's header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Msg {
    /// The first frame each way: who is speaking and the proof it holds the key.
    Auth {
        node: String,
        mac: String,
    },
    /// Standby → active: per origin, the highest origin_seq the standby holds;
    /// `resync`: its content diverged and must be replaced by a snapshot;
    /// `no_deltas`: send whole files (a delta's base was missing here).
    Marks {
        marks: Vec<(String, u64)>,
        #[serde(default)]
        resync: bool,
        #[serde(default)]
        no_deltas: bool,
    },
    /// One op; the body holds its blobs (whole, or as a delta against a base).
    Op {
        op: LoggedOp,
        blobs: Vec<BlobRef>,
    },
    /// Active → standby: the standby holds everything up to `seq` (ops skipped);
    /// `end`: that is the end of the active node's log for now (caught up).
    Pos {
        seq: u64,
        end: bool,
    },
    /// Standby → active: everything up to the active node's `seq` is durable here.
    Ack {
        seq: u64,
    },
    /// Active → standby: you hold ops I lack (both were active): send me those
    /// above my marks, then [`Msg::DivergedEnd`] ([`resync`]).
    Diverged {
        marks: Vec<(String, u64)>,
    },
    DivergedEnd,
    /// Active → standby: a snapshot follows (tables in chunks, then the end).
    SnapBegin {
        seq: u64,
        marks: Vec<(String, u64)>,
        hlc: u64,
    },
    SnapTable {
        table: crate::store::snapshot::Table,
    },
    SnapEnd,
    /// Standby → active: send these blobs (empty: none left, the snapshot is in).
    Want {
        blobs: Vec<String>,
    },
    /// Active → standby: one blob, its bytes in the body.
    Blob {
        id: String,
    },
    /// Active → standby: from here on, the log ([`Msg::Op`], [`Msg::Pos`]).
    Stream,
}

/// A blob carried in a frame's body: `len` bytes, the blob itself or, with `base`,
/// a block delta ([`delta`]) against that blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BlobRef {
    id: String,
    len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<String>,
}

/// What `clusterd status` shows of replication.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicationStatus {
    pub mode: String,
    /// Shipping to the peer (this node is active) / receiving from it.
    pub connected_out: bool,
    pub connected_in: bool,
    /// Commits go on without the peer's acknowledgement.
    pub degraded: bool,
    /// Receiving, with everything the active node had.
    pub caught_up: bool,
    /// This node's last committed position and the peer's acknowledged one.
    pub committed_seq: u64,
    pub acked_seq: u64,
    /// Ops received from the peer and applied here.
    pub applied: u64,
    /// Bytes of frames written to / read from the peer (before TLS).
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    /// Snapshots sent to the peer / installed here.
    #[serde(default)]
    pub snapshots_sent: u64,
    #[serde(default)]
    pub snapshots_installed: u64,
    /// The last split-brain merge this node did, in words.
    #[serde(default)]
    pub last_merge: Option<String>,
    /// Sync commits released by the peer's acknowledgement: how many, and the mean
    /// and longest time they waited for it (microseconds).
    #[serde(default)]
    pub acks_waited: u64,
    #[serde(default)]
    pub ack_wait_mean_us: u64,
    #[serde(default)]
    pub ack_wait_max_us: u64,
}

type Release = Box<dyn FnOnce() + Send>;

/// The replication of one node; also the store's commit barrier.
pub struct Replication {
    cfg: ReplicationConfig,
    node: String,
    peer: String,
    key: Vec<u8>,
    committed: watch::Sender<u64>,
    acked: watch::Sender<u64>,
    pending: Mutex<VecDeque<(u64, Instant, Release)>>,
    degraded: AtomicBool,
    connected_out: AtomicBool,
    connected_in: AtomicBool,
    /// Receiving, and the active node said its log has been sent to its end.
    caught_up: AtomicBool,
    applied: AtomicU64,
    /// Ask the active node for whole files: a delta's base was missing here.
    no_deltas: AtomicBool,
    snapshots_sent: AtomicU64,
    snapshots_installed: AtomicU64,
    last_merge: Mutex<Option<String>>,
    /// When the receiver last read a frame or finished applying, and whether it is
    /// applying now ([`Replication::drain`]).
    last_received: Mutex<Instant>,
    applying: AtomicBool,
    /// Sync commits released by an acknowledgement: (count, total µs, longest µs).
    ack_waits: Mutex<(u64, u64, u64)>,
    /// Whether the cluster loop hears the peer ([`Replication::set_peer_alive`]): a
    /// dead peer's pending sync commits are released without its acknowledgement.
    peer_alive: AtomicBool,
}

/// Frame bytes written and read by this process (both directions of every channel).
static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

impl Replication {
    /// The cluster loop's word on the peer (its `Hooks::peer_alive`, every keepalive).
    pub fn set_peer_alive(&self, alive: bool) {
        self.peer_alive.store(alive, Ordering::SeqCst);
    }
}

impl CommitBarrier for Replication {
    fn after_commit(&self, last_seq: u64, release: Release) {
        self.committed.send_replace(last_seq);
        if self.cfg.mode == ReplicationMode::Async || self.degraded.load(Ordering::SeqCst) {
            release();
            return;
        }
        self.pending
            .lock()
            .unwrap()
            .push_back((last_seq, Instant::now(), release));
    }
}

impl Replication {
    pub fn status(&self) -> ReplicationStatus {
        let waits = *self.ack_waits.lock().unwrap();
        ReplicationStatus {
            mode: match self.cfg.mode {
                ReplicationMode::Sync => "sync".into(),
                ReplicationMode::Async => "async".into(),
            },
            connected_out: self.connected_out.load(Ordering::SeqCst),
            connected_in: self.connected_in.load(Ordering::SeqCst),
            degraded: self.degraded.load(Ordering::SeqCst),
            caught_up: self.caught_up.load(Ordering::SeqCst),
            committed_seq: *self.committed.borrow(),
            acked_seq: *self.acked.borrow(),
            applied: self.applied.load(Ordering::SeqCst),
            bytes_sent: BYTES_SENT.load(Ordering::Relaxed),
            bytes_received: BYTES_RECEIVED.load(Ordering::Relaxed),
            snapshots_sent: self.snapshots_sent.load(Ordering::SeqCst),
            snapshots_installed: self.snapshots_installed.load(Ordering::SeqCst),
            last_merge: self.last_merge.lock().unwrap().clone(),
            acks_waited: waits.0,
            ack_wait_mean_us: waits.1.checked_div(waits.0).unwrap_or(0),
            ack_wait_max_us: waits.2,
        }
    }

    /// Releases the commits the peer holds; on timeout or a dead peer, all of them.
    fn release_pending(&self, peer_dead: bool) {
        let acked = *self.acked.borrow();
        let timeout = Duration::from_millis(self.cfg.ack_timeout_ms);
        let mut ready = Vec::new();
        {
            let mut q = self.pending.lock().unwrap();
            let mut waits = self.ack_waits.lock().unwrap();
            while q.front().is_some_and(|(seq, _, _)| *seq <= acked) {
                let (_, since, release) = q.pop_front().unwrap();
                let us = since.elapsed().as_micros() as u64;
                waits.0 += 1;
                waits.1 += us;
                waits.2 = waits.2.max(us);
                ready.push(release);
            }
            drop(waits);
            let overdue = q.front().is_some_and(|(_, t, _)| t.elapsed() >= timeout);
            if (overdue || peer_dead) && !q.is_empty() {
                if !self.degraded.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        peer_dead,
                        waiting = q.len(),
                        "replication: the peer does not acknowledge; committing alone (degraded)"
                    );
                }
                ready.extend(q.drain(..).map(|(_, _, r)| r));
            }
        }
        for r in ready {
            r();
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

    /// Before this node opens its store for writes: lets the receiver apply what
    /// already arrived from the peer (the channel closed, or quiet for a moment with
    /// nothing being applied), for at most a second.
    pub async fn drain(&self) {
        let t0 = Instant::now();
        let applied = self.applied.load(Ordering::SeqCst);
        while t0.elapsed() < DRAIN_MAX {
            let quiet = self.last_received.lock().unwrap().elapsed() >= DRAIN_QUIET;
            if !self.connected_in.load(Ordering::SeqCst)
                || (quiet && !self.applying.load(Ordering::SeqCst))
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

    /// Whether this node may take the service from a live peer without losing what
    /// the peer holds: it is active already, or it has received the peer's whole log.
    /// The cluster reports this as the node's health, so a returning preferred node
    /// fails back only once it has caught up.
    pub fn ready(&self, store: &crate::store::Store) -> bool {
        store.is_writable() || self.caught_up.load(Ordering::SeqCst)
    }

    fn mac(&self, direction: &str, node: &str, exporter: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(b"clusterd replication v1\0");
        m.update(direction.as_bytes());
        m.update(b"\0");
        m.update(node.as_bytes());
        m.update(b"\0");
        m.update(exporter);
        m
    }

    /// Sends our proof, then checks the peer's.
    async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        exporter: &[u8],
        mine: &str,
        theirs: &str,
    ) -> Result<()> {
        let mac = hex::encode(self.mac(mine, &self.node, exporter).finalize().into_bytes());
        write_msg(
            s,
            &Msg::Auth {
                node: self.node.clone(),
                mac,
            },
            &[],
        )
        .await?;
        let (msg, _) = tokio::time::timeout(Duration::from_secs(5), read_msg(s))
            .await
            .map_err(|_| anyhow!("no authentication from the peer within 5 s"))??;
        let Msg::Auth { node, mac } = msg else {
            bail!("the peer did not authenticate first");
        };
        let proof = hex::decode(mac).unwrap_or_default();
        if node != self.peer
            || self
                .mac(theirs, &node, exporter)
                .verify_slice(&proof)
                .is_err()
        {
            bail!("the peer {node:?} failed authentication (wrong cluster key or not our peer)");
        }
        Ok(())
    }
}

/// Starts replication for a running node: installs the commit barrier, listens for
/// the peer, ships while this node is active.
pub async fn start(ctx: Arc<Ctx>) -> Result<Option<Arc<Replication>>> {
    let (Some(cfg), Some(cluster)) = (&ctx.cfg.replication, &ctx.cfg.cluster) else {
        return Ok(None);
    };
    let key = crate::cluster::wire::read_key_file(&cluster.auth_key_file)?;
    let committed = ctx.store.last_seq().await?;
    let repl = Arc::new(Replication {
        cfg: cfg.clone(),
        node: ctx.cfg.node.name.clone(),
        peer: cluster.peer.clone(),
        key,
        committed: watch::channel(committed).0,
        acked: watch::channel(0).0,
        pending: Mutex::new(VecDeque::new()),
        degraded: AtomicBool::new(false),
        connected_out: AtomicBool::new(false),
        connected_in: AtomicBool::new(false),
        caught_up: AtomicBool::new(false),
        applied: AtomicU64::new(0),
        no_deltas: AtomicBool::new(false),
        snapshots_sent: AtomicU64::new(0),
        snapshots_installed: AtomicU64::new(0),
        last_merge: Mutex::new(None),
        last_received: Mutex::new(Instant::now()),
        applying: AtomicBool::new(false),
        ack_waits: Mutex::new((0, 0, 0)),
        peer_alive: AtomicBool::new(true),
    });
    ctx.store.set_commit_barrier(repl.clone());

    let server = ctx.identity.server_config(&[ALPN]);
    let listener = crate::ctx::bind(cfg.listen, "replication.listen").await?;
    tracing::info!(addr = %cfg.listen, peer = %cfg.peer, "replication: listening");
    tokio::spawn(accept_loop(
        ctx.clone(),
        repl.clone(),
        listener,
        tokio_rustls::TlsAcceptor::from(server),
    ));
    tokio::spawn(ship_loop(ctx.clone(), repl.clone()));
    tokio::spawn(release_loop(ctx, repl.clone()));
    Ok(Some(repl))
}

async fn release_loop(ctx: Arc<Ctx>, repl: Arc<Replication>) {
    let mut acked = repl.acked.subscribe();
    let mut compacted = Instant::now();
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(20), acked.changed()).await;
        repl.release_pending(!repl.peer_alive.load(Ordering::SeqCst));
        // The active node drops what the peer acknowledged (the standby compacts
        // while receiving, see `apply_stream`).
        if ctx.store.is_writable() && compacted.elapsed() >= COMPACT_EVERY {
            compacted = Instant::now();
            let upto = *repl.acked.borrow();
            compact(&ctx, &repl, upto).await;
        }
    }
}

// ------------------------------------------------------------------ the active side

async fn ship_loop(ctx: Arc<Ctx>, repl: Arc<Replication>) {
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

async fn ship(ctx: &Ctx, repl: &Replication, connector: &tokio_rustls::TlsConnector) -> Result<()> {
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
    let exporter = export(
        tls.get_ref()
            .1
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None),
    )?;
    repl.authenticate(&mut tls, &exporter, "active", "standby")
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

    let (r, mut w) = tokio::io::split(tls);
    let acks = tokio::spawn(read_acks(BufReader::new(r), repl.acked.clone()));
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
                    at_end = true;
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), committed.changed()).await;
                continue;
            }
            at_end = false;
            let mut skipped = false;
            for op in ops {
                cursor = op.seq;
                if marks.get(&op.origin).is_some_and(|m| op.origin_seq <= *m) {
                    skipped = true;
                    continue;
                }
                skipped = false;
                let (blobs, body) = op_body(ctx, &op.op, deltas).await?;
                write_msg_nf(&mut w, &Msg::Op { op, blobs }, &body).await?;
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

/// Connections the standby lets prove themselves at once; more are dropped.
const PRE_AUTH_MAX: usize = 8;

/// [`Replication::drain`]: the longest wait, and the quiet time that ends it.
const DRAIN_MAX: Duration = Duration::from_secs(1);
const DRAIN_QUIET: Duration = Duration::from_millis(30);

/// How often a node drops log entries both sides hold.
const COMPACT_EVERY: Duration = Duration::from_secs(2);

/// Compacts the log up to `upto` (active: what the peer acknowledged; standby: all it
/// holds, which the active node holds too), keeping `log_keep_ops`.
async fn compact(ctx: &Ctx, repl: &Replication, upto: u64) {
    match ctx.store.compact(upto, repl.cfg.log_keep_ops).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(ops = n, upto, "replication: log compacted"),
        Err(e) => tracing::warn!(error = %e, "replication: compacting the log failed"),
    }
}

/// The blobs an op names, for a frame's body: whole, or (a content file whose
/// previous version the peer holds, when `deltas`) as a block delta when smaller.
async fn op_body(ctx: &Ctx, op: &Op, deltas: bool) -> Result<(Vec<BlobRef>, Vec<u8>)> {
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

/// Files smaller than this travel whole.
const DELTA_MIN: usize = 16 * 1024;

/// Stores the blobs of a frame's body (rebuilding deltas against their base), each
/// checked against its address.
async fn store_blobs(ctx: &Ctx, repl: &Replication, refs: &[BlobRef], body: &[u8]) -> Result<()> {
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

async fn read_acks<R: AsyncRead + Unpin>(mut r: R, acked: watch::Sender<u64>) -> Result<()> {
    loop {
        match read_msg(&mut r).await? {
            (Msg::Ack { seq }, _) => {
                acked.send_if_modified(|a| {
                    let newer = seq > *a;
                    if newer {
                        *a = seq;
                    }
                    newer
                });
            }
            (other, _) => bail!("unexpected frame from the standby: {other:?}"),
        }
    }
}

// ----------------------------------------------------------------- the standby side

async fn accept_loop(
    ctx: Arc<Ctx>,
    repl: Arc<Replication>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let current: Arc<Mutex<Option<tokio::task::AbortHandle>>> = Arc::default();
    // Connections still proving themselves (each has 5 s for TLS and 5 s for its MAC).
    let pre_auth = Arc::new(tokio::sync::Semaphore::new(PRE_AUTH_MAX));
    loop {
        let (tcp, from) = match listener.accept().await {
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
    ctx: &Ctx,
    repl: &Replication,
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
    let exporter = export(
        tls.get_ref()
            .1
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None),
    )?;
    repl.authenticate(&mut tls, &exporter, "standby", "active")
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

async fn apply_stream<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx,
    repl: &Replication,
    s: &mut BufReader<S>,
) -> Result<()> {
    let mut compacted = Instant::now();
    loop {
        let mut batch = Vec::new();
        let mut bodies: Vec<(Vec<BlobRef>, Vec<u8>)> = Vec::new();
        let mut last = 0u64;
        // One frame (waiting), then whatever is already buffered.
        loop {
            let (msg, body) = match read_msg(s).await {
                Ok(x) => x,
                Err(e) if batch.is_empty() && is_eof(&e) => return Ok(()),
                Err(e) => return Err(e),
            };
            repl.applying.store(true, Ordering::SeqCst);
            *repl.last_received.lock().unwrap() = Instant::now();
            match msg {
                Msg::Op { op, blobs } => {
                    if !blobs.is_empty() {
                        bodies.push((blobs, body));
                    }
                    last = op.seq;
                    batch.push(op);
                }
                Msg::Pos { seq, end } => {
                    last = last.max(seq);
                    if end && !repl.caught_up.swap(true, Ordering::SeqCst) {
                        tracing::info!(seq, "replication: caught up with the active node");
                        repl.no_deltas.store(false, Ordering::SeqCst);
                    }
                }
                other => bail!("unexpected frame from the active node: {other:?}"),
            }
            if batch.len() >= APPLY_BATCH || s.buffer().len() < 8 {
                break;
            }
        }
        if ctx.store.is_writable() {
            repl.applying.store(false, Ordering::SeqCst);
            bail!("this node became active: no more ops from the peer");
        }
        // The batch's message files, written (and fsynced) side by side.
        futures::future::try_join_all(
            bodies
                .iter()
                .map(|(refs, body)| store_blobs(ctx, repl, refs, body)),
        )
        .await?;
        if !batch.is_empty() {
            let r = ctx.store.apply_replicated(batch).await;
            *repl.last_received.lock().unwrap() = Instant::now();
            repl.applying.store(false, Ordering::SeqCst);
            repl.applied.fetch_add(r? as u64, Ordering::SeqCst);
        }
        repl.applying.store(false, Ordering::SeqCst);
        write_msg(s.get_mut(), &Msg::Ack { seq: last }, &[]).await?;
        // Everything here the active node holds too (the prelude saw to that).
        if compacted.elapsed() >= COMPACT_EVERY {
            compacted = Instant::now();
            compact(ctx, repl, u64::MAX).await;
        }
    }
}

fn is_eof(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
}

// ------------------------------------------------------------------------- frames

async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg, body: &[u8]) -> Result<()> {
    write_msg_nf(w, msg, body).await?;
    w.flush().await?;
    Ok(())
}

/// Writes a frame without flushing (the caller flushes after a run of frames).
async fn write_msg_nf<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg, body: &[u8]) -> Result<()> {
    let header = serde_json::to_vec(msg)?;
    let mut head = Vec::with_capacity(8 + header.len());
    head.extend_from_slice(&(header.len() as u32).to_be_bytes());
    head.extend_from_slice(&(body.len() as u32).to_be_bytes());
    head.extend_from_slice(&header);
    w.write_all(&head).await?;
    w.write_all(body).await?;
    BYTES_SENT.fetch_add((head.len() + body.len()) as u64, Ordering::Relaxed);
    Ok(())
}

async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> Result<(Msg, Vec<u8>)> {
    let mut lens = [0u8; 8];
    r.read_exact(&mut lens).await?;
    let hlen = u32::from_be_bytes(lens[..4].try_into().unwrap()) as usize;
    let blen = u32::from_be_bytes(lens[4..].try_into().unwrap()) as usize;
    if hlen > MAX_HEADER || blen > MAX_BODY {
        bail!("frame too large ({hlen} + {blen} bytes)");
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header).await?;
    let mut body = vec![0u8; blen];
    r.read_exact(&mut body).await?;
    BYTES_RECEIVED.fetch_add((8 + hlen + blen) as u64, Ordering::Relaxed);
    let msg = serde_json::from_slice(&header).context("malformed frame header")?;
    Ok((msg, body))
}

fn export<T>(r: std::result::Result<T, rustls::Error>) -> Result<T> {
    r.map_err(|e| anyhow!("TLS exporter: {e}"))
}

// ---------------------------------------------------------------------------- TLS

/// TLS 1.3 to the peer. Any certificate is accepted here (its signature over the
/// handshake is still checked): the peer is authenticated by the MAC bound to this
/// session's exporter, see the module notes.
fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cc = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(KeyBound(provider)))
        .with_no_client_auth();
    cc.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(cc)
}

#[derive(Debug)]
struct KeyBound(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for KeyBound {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
