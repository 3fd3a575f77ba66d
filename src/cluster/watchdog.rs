//! The hardware (or softdog) watchdog: opened when `cluster.watchdog` is set, kicked
//! on every keepalive of the cluster loop, so a loop that hangs gets the machine
//! rebooted instead of leaving a node that holds the VIP but no longer heartbeats.
//! On a clean stop the magic close character disarms it (Linux watchdog API).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

pub struct Watchdog {
    dev: std::fs::File,
}

impl Watchdog {
    /// Opens (and thereby arms) the device.
    pub fn open(path: &Path) -> Result<Watchdog> {
        let dev = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cluster.watchdog: cannot open {}", path.display()))?;
        Ok(Watchdog { dev })
    }

    /// Tells the watchdog the loop is alive.
    pub fn kick(&mut self) {
        if let Err(e) = self.dev.write_all(b"\0") {
            tracing::error!("cluster: kicking the watchdog: {e}");
        }
    }

    /// Disarms it before a deliberate stop ("magic close").
    pub fn disarm(mut self) {
        let _ = self.dev.write_all(b"V");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_kicked_with_a_byte_and_disarmed_with_the_magic_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog");
        std::fs::write(&path, b"").unwrap();
        let mut w = Watchdog::open(&path).unwrap();
        w.kick();
        w.kick();
        w.disarm();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0V");
        let e = Watchdog::open(&dir.path().join("missing")).err().unwrap();
        assert!(format!("{e:#}").contains("cluster.watchdog"), "{e:#}");
    }
}
