//! Password hashing on its own small pool: every argon2 hash or verification (19 MiB
//! of memory and tens of milliseconds of CPU each) runs on one of a few dedicated
//! threads, never on tokio's blocking pool. The blocking pool grows to hundreds of
//! threads, each of which kept its own 19 MiB working set and malloc arena: ten
//! clients logging in at once took a node to 1.6 GB that it never gave back
//! (tests/memory_bound.rs). Here concurrency is the pool's size, so the memory is
//! bounded by `threads × 19 MiB` whatever the load, and store reads no longer queue
//! behind password checks. Waiting jobs are bounded too (`QUEUE`): a caller beyond
//! that waits for a slot before its job is accepted. How many hashes run now, and the
//! most that ever ran at once, are kept for /metrics ([`running`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Jobs accepted (running or waiting) at once.
const QUEUE: usize = 256;

type Work = Box<dyn FnOnce() + Send>;

/// Hashes running now, and the most that ran at once since the process started.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static RUNNING_MAX: AtomicUsize = AtomicUsize::new(0);

/// (hashes running now, the most that ran at once since start): at most the pool's
/// size, whatever the load.
pub fn running() -> (usize, usize) {
    (
        RUNNING.load(Ordering::Relaxed),
        RUNNING_MAX.load(Ordering::Relaxed),
    )
}

/// Counts one running hash while it lives (also when the job panics).
struct Running;

impl Running {
    fn start() -> Running {
        let now = RUNNING.fetch_add(1, Ordering::Relaxed) + 1;
        RUNNING_MAX.fetch_max(now, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Pool {
    tx: Mutex<mpsc::Sender<(Work, OwnedSemaphorePermit)>>,
    slots: Arc<Semaphore>,
}

/// The pool's size: the machine's cores, from 1 to 4.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Work, OwnedSemaphorePermit)>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap().recv();
                        let Ok((work, _slot)) = job else {
                            return;
                        };
                        let _running = Running::start();
                        work();
                    }
                })
                .expect("spawn a password hashing thread");
        }
        Pool {
            tx: Mutex::new(tx),
            slots: Arc::new(Semaphore::new(QUEUE)),
        }
    })
}

/// Runs `f` on the password pool and returns its result; `None` if the job was
/// lost (a panic in `f`).
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let pool = pool();
    let slot = pool.slots.clone().acquire_owned().await.ok()?;
    let (reply, answer) = oneshot::channel();
    let work: Work = Box::new(move || {
        let _ = reply.send(f());
    });
    pool.tx.lock().unwrap().send((work, slot)).ok()?;
    answer.await.ok()
}
