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
//! - The active node ships without waiting for acknowledgements. The standby
//!   stores each op's blobs as soon as its frame is read (their hash is their name:
//!   a wrong body is refused), applies everything that has arrived (up to 64 ops) in
//!   one transaction, and acknowledges the active node's position of the last one
//!   at once ([`Msg::Ack`]); the acknowledgement releases every sync commit up to it
//!   ([`barrier`]). Each stage of a sync commit is timed ([`timing`]).
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
//!
//! Files
//! - `mod.rs`: the [`Replication`] handle (its state, [`Replication::status`],
//!   [`Replication::ready`], the store's [`CommitBarrier`]) and [`start`].
//! - [`channel`]: frames (the [`Msg`] header, blob bodies, size limits, encoding and
//!   decoding), the TLS client configuration and the key-bound MAC handshake that
//!   opens every channel.
//! - [`active`]: the active side: shipping the log, reading acknowledgements,
//!   releasing sync commits (or going degraded), compacting the log.
//! - [`standby`]: the standby side: accepting the channel, applying what arrives,
//!   acknowledging it, and [`Replication::drain`].
//! - [`barrier`]: the sync commits waiting for an acknowledgement.
//! - [`timing`]: the stage histograms of sync commits (`clusterd status --json`).
//! - [`resync`]: what runs on a new channel before the log streams (the split-brain
//!   merge, snapshots), on both sides.
//! - [`delta`]: block deltas for large content files.
//!
//! [`Msg`]: channel::Msg
//! [`Msg::Marks`]: channel::Msg::Marks
//! [`Msg::Pos`]: channel::Msg::Pos
//! [`Msg::Ack`]: channel::Msg::Ack

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{ReplicationConfig, ReplicationMode};
use crate::ctx::Ctx;
use crate::store::{CommitBarrier, Committed};

mod active;
mod barrier;
mod channel;
mod delta;
mod resync;
mod standby;
mod timing;

pub use timing::StageStats;

use channel::{ALPN, BYTES_RECEIVED, BYTES_SENT};

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
    /// Where sync commits' time went, stage by stage ([`timing`]).
    #[serde(default)]
    pub stages: Vec<StageStats>,
}

use barrier::Release;

/// The replication of one node; also the store's commit barrier.
pub struct Replication {
    cfg: ReplicationConfig,
    node: String,
    peer: String,
    key: Vec<u8>,
    committed: watch::Sender<u64>,
    acked: watch::Sender<u64>,
    /// Sync commits waiting for the peer's acknowledgement.
    pending: barrier::Waiting,
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
    /// When the receiver last read a frame or finished applying, and how many frames
    /// it read that are not applied yet ([`Replication::drain`]).
    last_received: Mutex<Instant>,
    unapplied: AtomicUsize,
    /// Where sync commits' time goes ([`timing`]).
    timing: Mutex<Timing>,
    /// Whether the cluster loop hears the peer ([`Replication::set_peer_alive`]): a
    /// dead peer's pending sync commits are released without its acknowledgement.
    peer_alive: AtomicBool,
}

impl Replication {
    /// The cluster loop's word on the peer (its `Hooks::peer_alive`, every keepalive).
    pub fn set_peer_alive(&self, alive: bool) {
        self.peer_alive.store(alive, Ordering::SeqCst);
    }
}

/// The stage histograms and what they are computed from.
struct Timing {
    stages: timing::Stages,
    /// Flushes of the channel: the last log position written, when (monotonic and
    /// wall clock, µs); dropped once acknowledged.
    sent: VecDeque<(u64, Instant, u64)>,
    /// When the latest acknowledgement was read.
    acked_at: Instant,
}

/// Flush records kept at most when the peer does not acknowledge.
const SENT_MAX: usize = 65536;

impl Timing {
    /// When the position `seq` was first flushed to the peer.
    fn sent_at(&self, seq: u64) -> Option<(Instant, u64)> {
        self.sent
            .iter()
            .find(|(s, _, _)| *s >= seq)
            .map(|(_, at, wall)| (*at, *wall))
    }
}

impl CommitBarrier for Replication {
    fn after_commit(&self, commit: Committed, release: Release) {
        let last_seq = commit.last_seq;
        {
            let mut t = self.timing.lock().unwrap();
            t.stages.writer_queue.record(commit.queued);
            t.stages.commit.record(commit.took);
        }
        self.committed.send_replace(last_seq);
        if self.cfg.mode == ReplicationMode::Async || self.degraded.load(Ordering::SeqCst) {
            release();
            return;
        }
        let now = Instant::now();
        if self.pending.commit(last_seq, now, release) {
            // The peer acknowledged it before the writer reported it.
            self.note_released(last_seq, &[(last_seq, now)]);
        }
    }
}

impl Replication {
    pub fn status(&self) -> ReplicationStatus {
        let (total, stages) = {
            let t = self.timing.lock().unwrap();
            (t.stages.total.summary("", ""), t.stages.summary())
        };
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
            acks_waited: total.count,
            ack_wait_mean_us: total.mean_us,
            ack_wait_max_us: total.max_us,
            stages,
        }
    }

    /// Whether this node may take the service from a live peer without losing what
    /// the peer holds: it is active already, or it has received the peer's whole log.
    /// The cluster reports this as the node's health, so a returning preferred node
    /// fails back only once it has caught up.
    pub fn ready(&self, store: &crate::store::Store) -> bool {
        store.is_writable() || self.caught_up.load(Ordering::SeqCst)
    }
}

/// Prepares replication for a running node (none without `[replication]` and
/// `[cluster]`): installs the commit barrier. [`Replication::serve`] listens for the
/// peer and ships while this node is active.
pub async fn prepare(ctx: Arc<Ctx>) -> Result<Option<Arc<Replication>>> {
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
        pending: barrier::Waiting::default(),
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
        unapplied: AtomicUsize::new(0),
        timing: Mutex::new(Timing {
            stages: timing::Stages::default(),
            sent: VecDeque::new(),
            acked_at: Instant::now(),
        }),
        peer_alive: AtomicBool::new(true),
    });
    ctx.store.set_commit_barrier(repl.clone());

    Ok(Some(repl))
}

impl Replication {
    /// One instance of the replication service (see `supervise`): binds
    /// `replication.listen`, then accepts the peer, ships to it while active and
    /// releases sync commits as it acknowledges, until stopped. While stopped, sync
    /// commits wait (as for a peer that does not answer) until the heartbeat
    /// declares the peer dead; the peer's inbound stream, already open, goes on.
    pub async fn serve(self: Arc<Self>, ctx: Arc<Ctx>, run: crate::supervise::Run) -> Result<()> {
        let server = ctx.identity.server_config(&[ALPN]);
        let listener = crate::ctx::bind(self.cfg.listen, "replication.listen").await?;
        tracing::info!(addr = %self.cfg.listen, peer = %self.cfg.peer, "replication: listening");
        let mut loops = tokio::task::JoinSet::new();
        loops.spawn(standby::accept_loop(
            ctx.clone(),
            self.clone(),
            listener,
            tokio_rustls::TlsAcceptor::from(server),
            run.clone(),
        ));
        loops.spawn(active::ship_loop(ctx.clone(), self.clone()));
        loops.spawn(active::release_loop(ctx, self.clone()));
        run.ready();
        crate::supervise::until_first_ends(loops).await
    }
}

/// The fuzz target's entry (`crate::fuzz`): bytes from the replication channel read
/// as frames (length-prefixed JSON header and body) until they run out, and a body
/// taken as a block delta against a base.
#[doc(hidden)]
pub fn fuzz_frames(input: &[u8]) {
    let mut reader = input;
    let read = async { while channel::read_msg(&mut reader).await.is_ok() {} };
    // A slice never makes the reader wait: one poll runs the loop to the end.
    futures::executor::block_on(read);
    if input.len() > 2 {
        let (base, delta) = input.split_at(input.len() / 3);
        let _ = delta::decode(base, delta);
    }
}
