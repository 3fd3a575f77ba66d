//! Whether the store can take more: the free-space floor (`store.min_free_mb` on the
//! file system of data_dir) and the store's liveness (the writer thread alive, a
//! periodic write probe). Front-ends refuse new mail below the floor while reads go
//! on ([`Store::check_space`]); the node's health, which heartbeats carry, requires
//! [`Store::health`] to be fit, so a node that cannot write hands the service over.
//!
//! Free space is read with `statvfs` at most once per [`RECHECK`] (a delivery costs
//! no system call), and at once after a write failed for lack of space (ENOSPC,
//! EDQUOT, SQLITE_FULL): the failed write is the freshest evidence there is.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError};

/// How old a free-space reading may be before the next check reads it again.
pub const RECHECK: Duration = Duration::from_secs(1);
/// How often the write probe runs ([`Store::start_probe`]).
pub const PROBE_EVERY: Duration = Duration::from_secs(3);
/// A probe that takes longer than this counts as failed (a wedged writer or disk).
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// The probe file, in data_dir.
pub const PROBE_FILE: &str = "probe";

pub(super) struct Space {
    dir: PathBuf,
    /// The floor, in bytes.
    min_free: AtomicU64,
    /// The last reading: when, and the bytes free (None: statvfs failed).
    reading: Mutex<Option<(Instant, Option<u64>)>>,
    /// Set by the writer thread's guard when the thread ends (a panic included).
    pub(super) writer_alive: std::sync::Arc<AtomicBool>,
    /// The last probe's result (None before the first one); `Err` names the failure.
    probe: Mutex<Option<std::result::Result<(), String>>>,
}

/// The store's fitness as the node's health and `clusterd status` see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreHealth {
    /// The writer thread is running.
    pub writer_alive: bool,
    /// The last write probe succeeded (true before the first probe ran).
    pub probe_ok: bool,
    /// Why the last probe failed.
    #[serde(default)]
    pub probe_error: Option<String>,
    /// Bytes free on data_dir's file system (None if statvfs failed).
    pub free_bytes: Option<u64>,
    /// The floor (`store.min_free_mb`), in bytes.
    pub min_free_bytes: u64,
}

impl StoreHealth {
    /// Free space at or above the floor (known).
    pub fn space_ok(&self) -> bool {
        self.free_bytes.is_some_and(|f| f >= self.min_free_bytes)
    }

    /// Fit to serve writes: writer alive, probe passing, free space above the floor.
    pub fn healthy(&self) -> bool {
        self.writer_alive && self.probe_ok && self.space_ok()
    }

    /// One line: "ok, 1.2 GiB free" or what is wrong.
    pub fn summary(&self) -> String {
        let free = match self.free_bytes {
            Some(f) => format!("{} MiB free", f >> 20),
            None => "free space unknown".to_string(),
        };
        let mut wrong = Vec::new();
        if !self.writer_alive {
            wrong.push("the writer thread is gone".to_string());
        }
        if let Some(e) = &self.probe_error {
            wrong.push(format!("write probe failed: {e}"));
        }
        if !self.space_ok() {
            wrong.push(format!(
                "{free}, below the floor of {} MiB: new mail refused",
                self.min_free_bytes >> 20
            ));
        }
        if wrong.is_empty() {
            format!("writable, {free}")
        } else {
            wrong.join("; ")
        }
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: zeroed is a valid statvfs (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

impl Space {
    pub(super) fn new(dir: &Path) -> Space {
        Space {
            dir: dir.to_path_buf(),
            min_free: AtomicU64::new(256 << 20),
            reading: Mutex::new(None),
            writer_alive: std::sync::Arc::new(AtomicBool::new(true)),
            probe: Mutex::new(None),
        }
    }

    /// Bytes free, read again if the last reading is older than [`RECHECK`].
    fn free(&self) -> Option<u64> {
        let mut r = self.reading.lock().unwrap();
        match *r {
            Some((at, free)) if at.elapsed() < RECHECK => free,
            _ => {
                let free = free_bytes(&self.dir).ok();
                *r = Some((Instant::now(), free));
                free
            }
        }
    }

    fn low(&self) -> bool {
        self.free()
            .is_none_or(|f| f < self.min_free.load(Ordering::Relaxed))
    }

    /// A write failed for lack of space: the next check reads statvfs again.
    pub(super) fn write_failed(&self) {
        *self.reading.lock().unwrap() = None;
    }
}

impl StoreError {
    /// Whether this failure is a full file system (or quota): the client may retry
    /// later, and the answer is "insufficient storage", not a local error.
    pub fn is_no_space(&self) -> bool {
        fn io_full(e: &std::io::Error) -> bool {
            matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        }
        match self {
            StoreError::NoSpace => true,
            StoreError::Io(e) => io_full(e),
            StoreError::Db(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            _ => false,
        }
    }
}

impl Store {
    /// Sets the free-space floor (`store.min_free_mb`).
    pub fn set_min_free_mb(&self, mb: u64) {
        self.inner.space.min_free.store(mb << 20, Ordering::Relaxed);
    }

    /// Whether free space is below the floor (or unknown). Cheap: see the module doc.
    pub fn space_low(&self) -> bool {
        self.inner.space.low()
    }

    /// [`StoreError::NoSpace`] below the free-space floor: what every way new mail
    /// comes in asks before writing (SMTP, IMAP APPEND/COPY/MOVE, the webmail).
    pub fn check_space(&self) -> Result<()> {
        if self.space_low() {
            return Err(StoreError::NoSpace);
        }
        Ok(())
    }

    /// Maps a failure for lack of space to [`StoreError::NoSpace`], and makes the
    /// next check read the free space again.
    pub(super) fn note_failure(&self, e: StoreError) -> StoreError {
        if e.is_no_space() {
            self.inner.space.write_failed();
            return StoreError::NoSpace;
        }
        e
    }

    /// The store's fitness now (writer, last probe, free space).
    pub fn health(&self) -> StoreHealth {
        let s = &self.inner.space;
        let probe = s.probe.lock().unwrap().clone();
        StoreHealth {
            writer_alive: s.writer_alive.load(Ordering::SeqCst),
            probe_ok: !matches!(probe, Some(Err(_))),
            probe_error: probe.and_then(|p| p.err()),
            free_bytes: s.free(),
            min_free_bytes: s.min_free.load(Ordering::Relaxed),
        }
    }

    /// One write probe: `data_dir/probe` written and fsynced (the disk takes writes)
    /// and an empty transaction through the writer thread (it answers), within
    /// [`PROBE_LIMIT`].
    pub async fn probe(&self) -> std::result::Result<(), String> {
        let path = self.inner.dir.join(PROBE_FILE);
        let run = async {
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&path)?;
                writeln!(f, "{}", super::now())?;
                f.sync_all()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing {}: {e}", PROBE_FILE))?;
            self.inner
                .writer
                .submit_maintenance(Box::new(|_| Ok(0)))
                .await
                .map_err(|e| format!("the writer: {e}"))?;
            Ok(())
        };
        let r = match tokio::time::timeout(PROBE_LIMIT, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", PROBE_LIMIT.as_secs())),
        };
        *self.inner.space.probe.lock().unwrap() = Some(r.clone());
        r
    }

    /// Runs [`Store::probe`] every [`PROBE_EVERY`] for as long as the store is open
    /// (the node calls it once; it needs a Tokio runtime).
    pub fn start_probe(&self) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let store = Store { inner };
                if let Err(e) = store.probe().await {
                    tracing::warn!(error = %e, "store: the write probe failed");
                }
                drop(store);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
    }
}
