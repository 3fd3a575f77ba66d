//! Replay protection for heartbeats: whether an authentic heartbeat is new, a second
//! copy of one already accepted (the same frame on another medium), or a replay.
//!
//! Only the `(node, boot_id, seq)` of a [`Heartbeat`] that [`super::wire::decode`]
//! has authenticated are looked at; the cluster loop acts on a heartbeat only when
//! [`ReplayGuard::check`] calls it [`Verdict::New`].

use std::collections::{HashMap, VecDeque};

use super::wire::Heartbeat;

/// How many earlier boot ids per node the [`ReplayGuard`] refuses.
pub const REMEMBERED_BOOTS: usize = 16;
/// How far behind the newest sequence number a second copy is still recognised as
/// a [`Verdict::Duplicate`] (older copies are [`Verdict::Replay`]).
pub const DUPLICATE_WINDOW: u64 = 64;

/// What the [`ReplayGuard`] makes of an authentic heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than anything accepted from that node: act on it.
    New,
    /// A copy of a heartbeat already accepted (typically the same frame arriving on
    /// a second medium): that medium works, but the heartbeat carries nothing new.
    Duplicate,
    /// An older sequence number of the current boot that was never accepted, one
    /// too old to tell, or a boot id the node has already left: ignore it.
    Replay,
}

#[derive(Debug)]
struct PeerState {
    boot_id: u64,
    /// Highest sequence number accepted in `boot_id`.
    seq: u64,
    /// Bit `i` set: sequence `seq - i` was accepted.
    window: u64,
    /// Boot ids this node has left behind, newest last.
    old_boots: VecDeque<u64>,
}

/// Replay protection per sending node, from `(boot_id, seq)`.
///
/// - Same boot id: a higher `seq` is [`Verdict::New`]; a `seq` already accepted
///   (within the last [`DUPLICATE_WINDOW`]) is [`Verdict::Duplicate`]; anything else
///   is [`Verdict::Replay`].
/// - Another boot id: the peer restarted, [`Verdict::New`] — unless it is one of the
///   last [`REMEMBERED_BOOTS`] boot ids that node has left, which is a
///   [`Verdict::Replay`].
///
/// Limits (inherent to random boot ids without a clock): the guard starts empty, so
/// after this process restarts, or for a boot id older than the remembered ones, a
/// recorded frame is taken as a restart of the peer. Only holders of the key can
/// produce frames; replaying requires access to a heartbeat medium.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    peers: HashMap<String, PeerState>,
}

impl ReplayGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies an authentic heartbeat and, if it is [`Verdict::New`], remembers it.
    pub fn check(&mut self, hb: &Heartbeat) -> Verdict {
        let Some(peer) = self.peers.get_mut(&hb.node) else {
            self.peers.insert(
                hb.node.clone(),
                PeerState {
                    boot_id: hb.boot_id,
                    seq: hb.seq,
                    window: 1,
                    old_boots: VecDeque::new(),
                },
            );
            return Verdict::New;
        };
        if hb.boot_id != peer.boot_id {
            if peer.old_boots.contains(&hb.boot_id) {
                return Verdict::Replay;
            }
            if peer.old_boots.len() == REMEMBERED_BOOTS {
                peer.old_boots.pop_front();
            }
            peer.old_boots.push_back(peer.boot_id);
            peer.boot_id = hb.boot_id;
            peer.seq = hb.seq;
            peer.window = 1;
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
            return Verdict::New;
        }
        let behind = peer.seq - hb.seq;
        if behind < DUPLICATE_WINDOW && peer.window & (1 << behind) != 0 {
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

    #[test]
    fn replay_older_seq_is_replay() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&hb(10)), Verdict::New);
        assert_eq!(g.check(&hb(11)), Verdict::New);
        assert_eq!(g.check(&hb(9)), Verdict::Replay);
    }

    #[test]
    fn replay_same_frame_twice_is_duplicate() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&hb(10)), Verdict::New);
        assert_eq!(g.check(&hb(10)), Verdict::Duplicate);
        // A slow medium delivering an accepted heartbeat after a newer one.
        assert_eq!(g.check(&hb(12)), Verdict::New);
        assert_eq!(g.check(&hb(10)), Verdict::Duplicate);
        // Skipped (never accepted) sequence numbers are not duplicates.
        assert_eq!(g.check(&hb(11)), Verdict::Replay);
        // Too far behind to remember.
        assert_eq!(g.check(&hb(12 + DUPLICATE_WINDOW)), Verdict::New);
        assert_eq!(g.check(&hb(12)), Verdict::Replay);
    }

    #[test]
    fn replay_new_boot_id_is_a_restart() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&hb(500)), Verdict::New);
        let restarted = Heartbeat {
            boot_id: 99,
            ..hb(0)
        };
        assert_eq!(g.check(&restarted), Verdict::New);
        assert_eq!(
            g.check(&Heartbeat {
                seq: 1,
                ..restarted
            }),
            Verdict::New
        );
    }

    #[test]
    fn replay_old_boot_id_is_replay() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&hb(500)), Verdict::New);
        assert_eq!(
            g.check(&Heartbeat {
                boot_id: 99,
                ..hb(0)
            }),
            Verdict::New
        );
        // The first boot again, even with a higher sequence number.
        assert_eq!(g.check(&hb(501)), Verdict::Replay);
        assert_eq!(g.check(&hb(500)), Verdict::Replay);
        // Every remembered boot stays refused.
        for boot in 100..100 + REMEMBERED_BOOTS as u64 - 1 {
            assert_eq!(
                g.check(&Heartbeat {
                    boot_id: boot,
                    ..hb(0)
                }),
                Verdict::New
            );
        }
        assert_eq!(g.check(&hb(600)), Verdict::Replay);
        assert_eq!(
            g.check(&Heartbeat {
                boot_id: 99,
                ..hb(7)
            }),
            Verdict::Replay
        );
    }

    #[test]
    fn replay_guard_keeps_nodes_apart() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&hb(10)), Verdict::New);
        let other = Heartbeat {
            node: "clusternodo2".into(),
            ..hb(3)
        };
        assert_eq!(g.check(&other), Verdict::New);
        assert_eq!(g.check(&hb(10)), Verdict::Duplicate);
    }
}
