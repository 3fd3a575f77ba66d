//! Where a sync commit's time goes: one histogram per stage of the commit path
//! (the writer's queue and commit on the active node, shipping, the round trip, the
//! standby's blob files and apply, the way back, the release), filled as commits are
//! released and shown by `clusterd status` (the `stages` of its replication part;
//! `benches/replication.rs` prints them). Recording is a few integer operations under
//! a mutex taken once per release or acknowledgement.
//!
//! The histogram keeps 16 linear sub-buckets per power of two of microseconds
//! (percentiles within ~6 %), with an exact count, sum and maximum: 600 counters per
//! stage, whatever the number of samples.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two: 2^SUB_BITS.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values are capped at 2^40 µs (12 days).
const MAX_EXP: u32 = 40;
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

/// Durations in microseconds, bucketed.
pub(super) struct Histogram {
    counts: Vec<u64>,
    n: u64,
    sum: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            sum: 0,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    let v = v.min((1u64 << MAX_EXP) - 1);
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // e >= SUB_BITS
    let sub = (v >> (e - SUB_BITS)) - SUB;
    ((e - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The smallest value and the width of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    let e = i / SUB - 1 + SUB_BITS as u64;
    let sub = i % SUB;
    let width = 1u64 << (e - SUB_BITS as u64);
    ((SUB + sub) * width, width)
}

impl Histogram {
    pub(super) fn record(&mut self, d: Duration) {
        self.record_us(micros(d));
    }

    pub(super) fn record_us(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
        self.n += 1;
        self.sum = self.sum.saturating_add(us);
        self.max = self.max.max(us);
    }

    /// The value below which a fraction `q` of the samples lie (the middle of its
    /// bucket, never above the maximum seen); 0 without samples.
    pub(super) fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }

    pub(super) fn summary(&self, name: &str, per: &str) -> StageStats {
        StageStats {
            stage: name.to_string(),
            per: per.to_string(),
            count: self.n,
            mean_us: self.sum.checked_div(self.n).unwrap_or(0),
            p50_us: self.quantile(0.5),
            p99_us: self.quantile(0.99),
            max_us: self.max,
        }
    }
}

/// One stage's figures, as `clusterd status --json` gives them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageStats {
    pub stage: String,
    /// What one sample is: a sync `commit` (a writer batch of local ops), or an
    /// `ack` (one batch the standby applied and acknowledged).
    pub per: String,
    pub count: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The stages, in the order a commit passes them.
#[derive(Default)]
pub(super) struct Stages {
    /// Local ops waiting in the writer's queue before their batch began.
    pub(super) writer_queue: Histogram,
    /// The batch's transaction: resolve, apply, log, COMMIT (one fsync).
    pub(super) commit: Histogram,
    /// Committed → its last op written to the channel and flushed.
    pub(super) ship: Histogram,
    /// Flushed → the acknowledgement covering it read (everything below, and any
    /// wait behind the standby's previous batch).
    pub(super) ack_wait: Histogram,
    /// Acknowledged op: its frame sent → read by the standby (wall clocks; exact
    /// when both nodes share one, as in the lab).
    pub(super) to_peer: Histogram,
    /// The standby: the batch's first frame ready (its files durable) → the
    /// applier took it (waiting behind the previous batch's commit).
    pub(super) peer_gather: Histogram,
    /// The standby: the acknowledged frame read → its message files written
    /// (started as soon as it was read; not yet durable).
    pub(super) peer_blobs: Histogram,
    /// The standby: the batch's message files made durable (one `syncfs`) and put
    /// at their addresses.
    pub(super) peer_sync: Histogram,
    /// The standby: the batch applied and committed (one fsync).
    pub(super) peer_apply: Histogram,
    /// The acknowledgement written by the standby → read here (wall clocks).
    pub(super) from_peer: Histogram,
    /// Acknowledgement read → the commit's replies released.
    pub(super) release: Histogram,
    /// Committed → released: what a sync commit waited for the peer.
    pub(super) total: Histogram,
}

impl Stages {
    pub(super) fn summary(&self) -> Vec<StageStats> {
        vec![
            self.writer_queue.summary("writer queue", "commit"),
            self.commit.summary("local commit + fsync", "commit"),
            self.ship.summary("committed -> sent", "commit"),
            self.ack_wait.summary("sent -> ack received", "commit"),
            self.to_peer.summary("  sent -> peer read it", "ack"),
            self.peer_blobs
                .summary("  peer: read -> files written", "ack"),
            self.peer_gather.summary("  peer: ready -> applying", "ack"),
            self.peer_sync.summary("  peer: files syncfs+rename", "ack"),
            self.peer_apply.summary("  peer: apply + fsync", "ack"),
            self.from_peer.summary("  ack sent -> received", "ack"),
            self.release.summary("ack received -> released", "commit"),
            self.total.summary("total wait for the peer", "commit"),
        ]
    }
}

pub(super) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Microseconds since the Unix epoch by the wall clock (carried in acknowledgements).
pub(super) fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, (1 << 39) + 12345, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last || v > 100_000, "bucket order at {v}");
            assert!(b < BUCKETS);
            let (low, width) = bucket_range(b);
            let capped = v.min((1 << MAX_EXP) - 1);
            assert!(
                low <= capped && capped < low + width,
                "{v} in [{low}, +{width})"
            );
            last = b;
        }
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record_us(v);
        }
        for (q, want) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.01, 100.0)] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - want).abs() / want < 1.0 / 16.0,
                "q{q}: {got} vs {want}"
            );
        }
        let s = h.summary("x", "commit");
        assert_eq!((s.count, s.mean_us, s.max_us), (10_000, 5_000, 10_000));
    }

    #[test]
    fn an_empty_histogram_says_zero_and_one_sample_is_itself() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        h.record(Duration::from_micros(321));
        assert_eq!((h.quantile(0.5), h.quantile(0.99)), (321, 321));
    }
}
