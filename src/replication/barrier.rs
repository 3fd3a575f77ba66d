//! The sync commits waiting for the peer ([`Waiting`]): each committed batch's last
//! log position with its release, and the highest position the peer acknowledged,
//! under one lock. An acknowledgement releases every waiting commit up to it, in
//! commit order, as soon as it is read; a commit the peer already acknowledged when
//! the writer reports it (the ship loop may send an op before its commit is
//! reported) is released at once instead of waiting for the next acknowledgement.
//! Releases run under the lock, so replies and change notices go out in commit
//! order whichever task releases them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

pub(super) type Release = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub(super) struct Waiting {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The highest position the peer acknowledged (never goes back).
    acked: u64,
    /// Last position, when committed, release; positions ascending.
    queue: VecDeque<(u64, Instant, Release)>,
}

impl Waiting {
    /// A sync commit ending at `seq`: released now (true) if the peer holds it
    /// already, else queued until an acknowledgement covers it.
    pub(super) fn commit(&self, seq: u64, committed: Instant, release: Release) -> bool {
        let mut g = self.inner.lock().unwrap();
        // Queued commits are older, hence acknowledged too and already released.
        if seq <= g.acked {
            release();
            return true;
        }
        g.queue.push_back((seq, committed, release));
        false
    }

    /// The peer holds everything up to `seq`: releases the commits that covers, in
    /// order; returns their (last position, when committed).
    pub(super) fn ack(&self, seq: u64) -> Vec<(u64, Instant)> {
        let mut g = self.inner.lock().unwrap();
        g.acked = g.acked.max(seq);
        let acked = g.acked;
        release_upto(&mut g, acked)
    }

    /// Releases every waiting commit without the peer (degraded); returns how many.
    pub(super) fn release_all(&self) -> usize {
        let mut g = self.inner.lock().unwrap();
        let n = g.queue.len();
        for (_, _, release) in g.queue.drain(..) {
            release();
        }
        n
    }

    /// When the oldest waiting commit was committed, and how many wait.
    pub(super) fn oldest(&self) -> (Option<Instant>, usize) {
        let g = self.inner.lock().unwrap();
        (g.queue.front().map(|(_, t, _)| *t), g.queue.len())
    }
}

fn release_upto(g: &mut Inner, acked: u64) -> Vec<(u64, Instant)> {
    let mut done = Vec::new();
    while g.queue.front().is_some_and(|(s, _, _)| *s <= acked) {
        let (seq, at, release) = g.queue.pop_front().unwrap();
        release();
        done.push((seq, at));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A release that appends its name to `log`.
    fn rel(log: &Arc<Mutex<Vec<u64>>>, name: u64) -> Release {
        let log = log.clone();
        Box::new(move || log.lock().unwrap().push(name))
    }

    #[test]
    fn an_ack_releases_every_commit_up_to_it_in_order_and_no_further() {
        let (w, log) = (Waiting::default(), Arc::new(Mutex::new(Vec::new())));
        let now = Instant::now();
        for seq in [3, 5, 9, 12] {
            assert!(!w.commit(seq, now, rel(&log, seq)));
        }
        assert!(w.ack(2).is_empty(), "nothing at or below 2");
        let done: Vec<u64> = w.ack(9).iter().map(|(s, _)| *s).collect();
        assert_eq!(done, [3, 5, 9]);
        assert_eq!(*log.lock().unwrap(), [3, 5, 9]);
        assert_eq!(w.oldest().1, 1, "12 still waits");
        // An older acknowledgement arriving late changes nothing.
        assert!(w.ack(7).is_empty());
        assert_eq!(w.ack(12).len(), 1);
        assert_eq!(*log.lock().unwrap(), [3, 5, 9, 12]);
    }

    #[test]
    fn a_commit_already_acknowledged_is_released_at_once() {
        let (w, log) = (Waiting::default(), Arc::new(Mutex::new(Vec::new())));
        w.ack(10);
        assert!(w.commit(8, Instant::now(), rel(&log, 8)));
        assert_eq!(*log.lock().unwrap(), [8]);
        assert!(!w.commit(11, Instant::now(), rel(&log, 11)));
        assert_eq!(*log.lock().unwrap(), [8], "11 is not acknowledged");
        assert_eq!(w.oldest().1, 1);
    }

    #[test]
    fn release_all_empties_the_queue() {
        let (w, log) = (Waiting::default(), Arc::new(Mutex::new(Vec::new())));
        let t0 = Instant::now();
        w.commit(1, t0, rel(&log, 1));
        w.commit(2, Instant::now(), rel(&log, 2));
        assert_eq!(w.oldest(), (Some(t0), 2));
        assert_eq!(w.release_all(), 2);
        assert_eq!(*log.lock().unwrap(), [1, 2]);
        assert_eq!(w.oldest(), (None, 0));
    }
}
