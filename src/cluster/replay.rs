//! Replay protection for heartbeats: whether an authentic heartbeat is new, a second
//! copy of one already accepted (the same frame on another medium), a replay within
//! the current boot, or a frame of an earlier boot of the peer.
//!
//! Only the `(node, boot_id, seq)` of a [`Heartbeat`] that [`super::wire::decode`]
//! has authenticated are looked at; the cluster loop acts on a heartbeat only when
//! [`ReplayGuard::check`] calls it [`Verdict::New`]. Boot ids are ordered
//! ([`boot_id`]: the process's start time), so a recorded frame of an earlier boot
//! can never displace the boot the peer runs now.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::wire::Heartbeat;

/// How many earlier boot ids per node the [`ReplayGuard`] refuses outright.
pub const REMEMBERED_BOOTS: usize = 16;
/// How far behind the newest sequence number a second copy is still recognised as
/// a [`Verdict::Duplicate`] (older copies are [`Verdict::Replay`]).
pub const DUPLICATE_WINDOW: u64 = 64;

/// This process's boot id: its start time in microseconds since the Unix epoch,
/// shifted left by 12 bits, with 12 random bits below (two starts in the same
/// microsecond still differ). A later start has a larger id while the clock is
/// roughly right; see [`ReplayGuard`] for a clock set back.
pub fn boot_id() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    (micros << 12) | (rand::random::<u64>() & 0xfff)
}

/// What the [`ReplayGuard`] makes of an authentic heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than anything accepted from that node: act on it.
    New,
    /// A copy of a heartbeat already accepted (typically the same frame arriving on
    /// a second medium): that medium works, but the heartbeat carries nothing new.
    Duplicate,
    /// An older sequence number of the current boot that was never accepted, or one
    /// too old to tell: ignore it (media may reorder).
    Replay,
    /// A boot id the node has left, or one older than the boot heard within the
    /// guard's `alive_for`: a recorded frame replayed (worth a warning).
    EarlierBoot,
}

#[derive(Debug)]
struct PeerState {
    boot_id: u64,
    /// Highest sequence number accepted in `boot_id`.
    seq: u64,
    /// Bit `i` set: sequence `seq - i` was accepted.
    window: u64,
    /// When `boot_id` was last heard (a new or duplicate heartbeat).
    heard: Instant,
    /// Boot ids this node has left behind, newest last.
    old_boots: VecDeque<u64>,
}

/// Replay protection per sending node, from `(boot_id, seq)`.
///
/// - Same boot id: a higher `seq` is [`Verdict::New`]; a `seq` already accepted
///   (within the last [`DUPLICATE_WINDOW`]) is [`Verdict::Duplicate`]; anything else
///   is [`Verdict::Replay`].
/// - A larger boot id: the peer restarted, [`Verdict::New`] (unless it is one of the
///   last [`REMEMBERED_BOOTS`] it has left).
/// - A smaller boot id, or one the node has left: [`Verdict::EarlierBoot`] — except a
///   smaller one while the current boot has been silent for `alive_for` (the
///   deadtime): then the peer restarted with its clock set back, and it is
///   [`Verdict::New`]. So a boot heard within the deadtime is never displaced by an
///   older one.
///
/// Limits: the guard starts empty, so right after this process starts a recorded
/// frame is taken as the peer's current boot until the real one is heard, whose
/// larger id then displaces it. Only holders of the key can produce frames.
#[derive(Debug)]
pub struct ReplayGuard {
    peers: HashMap<String, PeerState>,
    alive_for: Duration,
}

impl ReplayGuard {
    /// A guard for which a boot heard within `alive_for` (the deadtime) is alive.
    pub fn new(alive_for: Duration) -> Self {
        ReplayGuard {
            peers: HashMap::new(),
            alive_for,
        }
    }

    /// Classifies an authentic heartbeat received at `now` and, if it is
    /// [`Verdict::New`], remembers it.
    pub fn check(&mut self, hb: &Heartbeat, now: Instant) -> Verdict {
        let Some(peer) = self.peers.get_mut(&hb.node) else {
            self.peers.insert(
                hb.node.clone(),
                PeerState {
                    boot_id: hb.boot_id,
                    seq: hb.seq,
                    window: 1,
                    heard: now,
                    old_boots: VecDeque::new(),
                },
            );
            return Verdict::New;
        };
        if hb.boot_id != peer.boot_id {
            let alive = now.saturating_duration_since(peer.heard) < self.alive_for;
            if peer.old_boots.contains(&hb.boot_id) || (hb.boot_id < peer.boot_id && alive) {
                return Verdict::EarlierBoot;
            }
            if peer.old_boots.len() == REMEMBERED_BOOTS {
                peer.old_boots.pop_front();
            }
            peer.old_boots.push_back(peer.boot_id);
            peer.boot_id = hb.boot_id;
            peer.seq = hb.seq;
            peer.window = 1;
            peer.heard = now;
            return Verdict::New;
        }
        if hb.seq > peer.seq {
            let ahead = hb.seq - peer.seq;
            peer.window = if ahead >= DUPLICATE_WINDOW {
                1
            } else {
                (peer.window << ahead) | 1
            };
            peer.seq = hb.seq;
            peer.heard = now;
            return Verdict::New;
        }
        let behind = peer.seq - hb.seq;
        if behind < DUPLICATE_WINDOW && peer.window & (1 << behind) != 0 {
            peer.heard = now;
            Verdict::Duplicate
        } else {
            Verdict::Replay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::tests::hb;

    const DEAD: Duration = Duration::from_secs(1);

    /// A guard and a clock that moves only when told.
    struct Clock {
        g: ReplayGuard,
        now: Instant,
    }

    impl Clock {
        fn new() -> Clock {
            Clock {
                g: ReplayGuard::new(DEAD),
                now: Instant::now(),
            }
        }
        fn check(&mut self, hb: &Heartbeat) -> Verdict {
            self.now += Duration::from_millis(100);
            self.g.check(hb, self.now)
        }
    }

    fn boot(id: u64, seq: u64) -> Heartbeat {
        Heartbeat {
            boot_id: id,
            ..hb(seq)
        }
    }

    #[test]
    fn replay_older_seq_is_replay() {
        let mut c = Clock::new();
        assert_eq!(c.check(&hb(10)), Verdict::New);
        assert_eq!(c.check(&hb(11)), Verdict::New);
        assert_eq!(c.check(&hb(9)), Verdict::Replay);
    }

    #[test]
    fn replay_same_frame_twice_is_duplicate() {
        let mut c = Clock::new();
        assert_eq!(c.check(&hb(10)), Verdict::New);
        assert_eq!(c.check(&hb(10)), Verdict::Duplicate);
        // A slow medium delivering an accepted heartbeat after a newer one.
        assert_eq!(c.check(&hb(12)), Verdict::New);
        assert_eq!(c.check(&hb(10)), Verdict::Duplicate);
        // Skipped (never accepted) sequence numbers are not duplicates.
        assert_eq!(c.check(&hb(11)), Verdict::Replay);
        // Too far behind to remember.
        assert_eq!(c.check(&hb(12 + DUPLICATE_WINDOW)), Verdict::New);
        assert_eq!(c.check(&hb(12)), Verdict::Replay);
    }

    #[test]
    fn a_larger_boot_id_is_a_restart() {
        let mut c = Clock::new();
        assert_eq!(c.check(&boot(500, 70)), Verdict::New);
        assert_eq!(c.check(&boot(900, 0)), Verdict::New);
        assert_eq!(c.check(&boot(900, 1)), Verdict::New);
    }

    #[test]
    fn an_earlier_boot_never_displaces_one_heard_within_the_deadtime() {
        let mut c = Clock::new();
        // The guard started late: a replayed frame of boot 500 came first.
        assert_eq!(c.check(&boot(500, 9_000)), Verdict::New);
        // The real boot is later: it displaces the replayed one at once.
        assert_eq!(c.check(&boot(900, 3)), Verdict::New);
        for seq in 4..40 {
            // Replayed frames of boot 500 (left) and of an unknown earlier boot,
            // interleaved with the genuine ones: none displaces boot 900.
            assert_eq!(c.check(&boot(500, 9_000 + seq)), Verdict::EarlierBoot);
            assert_eq!(c.check(&boot(700, seq)), Verdict::EarlierBoot);
            assert_eq!(c.check(&boot(900, seq)), Verdict::New);
        }
    }

    #[test]
    fn a_clock_set_back_is_accepted_once_the_current_boot_is_silent() {
        let mut c = Clock::new();
        assert_eq!(c.check(&boot(900, 1)), Verdict::New);
        assert_eq!(c.check(&boot(300, 0)), Verdict::EarlierBoot);
        // Boot 900 silent for the deadtime: the peer restarted with its clock back.
        c.now += DEAD;
        assert_eq!(c.check(&boot(300, 1)), Verdict::New);
        assert_eq!(c.check(&boot(300, 2)), Verdict::New);
        // Boot 900 is left now: refused even when 300 falls silent.
        c.now += DEAD * 2;
        assert_eq!(c.check(&boot(900, 2)), Verdict::EarlierBoot);
    }

    #[test]
    fn left_boots_stay_refused() {
        let mut c = Clock::new();
        assert_eq!(c.check(&boot(100, 0)), Verdict::New);
        for b in 101..101 + REMEMBERED_BOOTS as u64 {
            assert_eq!(c.check(&boot(b, 0)), Verdict::New);
        }
        // 100 fell out of the remembered ones but is older than the current boot.
        assert_eq!(c.check(&boot(100, 5)), Verdict::EarlierBoot);
        assert_eq!(c.check(&boot(101, 5)), Verdict::EarlierBoot);
    }

    #[test]
    fn boot_ids_grow_with_time() {
        let a = boot_id();
        std::thread::sleep(Duration::from_millis(2));
        assert!(boot_id() > a);
    }

    #[test]
    fn replay_guard_keeps_nodes_apart() {
        let mut c = Clock::new();
        assert_eq!(c.check(&hb(10)), Verdict::New);
        let other = Heartbeat {
            node: "clusternodo2".into(),
            ..hb(3)
        };
        assert_eq!(c.check(&other), Verdict::New);
        assert_eq!(c.check(&hb(10)), Verdict::Duplicate);
    }
}
