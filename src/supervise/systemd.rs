//! systemd's notify protocol: `READY=1` once the node serves, `STATUS=` (role and
//! health), `WATCHDOG=1` pings, `STOPPING=1` at shutdown. Each is one datagram of
//! `KEY=VALUE` lines sent to the Unix socket `$NOTIFY_SOCKET` names (a path, or an
//! abstract name written with a leading `@`). Without `NOTIFY_SOCKET` (not started
//! by systemd with `Type=notify`) every call does nothing.
//!
//! Written by hand rather than with the `sd-notify` crate: the protocol is these few
//! lines over `std`'s `UnixDatagram`, and the image build vendors every dependency,
//! so one fewer crate to audit and pin is worth more than the ~40 lines it saves.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (newline-separated `KEY=VALUE` lines) to systemd; whether it was
/// sent (false without `NOTIFY_SOCKET`, or on an error, which is logged).
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    match sent {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "systemd: cannot notify {:?}", path);
            false
        }
    }
}

/// How often systemd expects a `WATCHDOG=1` (`WATCHDOG_USEC`), when the watchdog is
/// on for this process (`WATCHDOG_PID`, if set, is ours).
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The `STATUS=` line: the role and the services not running.
pub fn status_line(role: &str, services: &[super::ServiceState]) -> String {
    let down: Vec<&str> = services
        .iter()
        .filter(|s| s.wanted && !s.running)
        .map(|s| s.name.as_str())
        .collect();
    let stopped: Vec<&str> = services
        .iter()
        .filter(|s| !s.wanted && !s.running)
        .map(|s| s.name.as_str())
        .collect();
    let wedged: Vec<&str> = services
        .iter()
        .filter(|s| s.wedged)
        .map(|s| s.name.as_str())
        .collect();
    let mut line = format!("role {role}; ");
    if down.is_empty() && wedged.is_empty() {
        line.push_str("services ok");
    } else {
        line.push_str("unhealthy");
        if !down.is_empty() {
            line.push_str(&format!(", down: {}", down.join(" ")));
        }
        if !wedged.is_empty() {
            line.push_str(&format!(", wedged: {}", wedged.join(" ")));
        }
    }
    if !stopped.is_empty() {
        line.push_str(&format!("; stopped: {}", stopped.join(" ")));
    }
    line
}

impl super::Supervisor {
    /// Starts the loop that keeps systemd informed: `STATUS=` whenever `role()` or the
    /// services' health changes, and (when `WATCHDOG_USEC` is set) `WATCHDOG=1` at a
    /// third of the interval while [`Self::all_alive`]. `clusterd debug wedge
    /// supervisor` stops the loop for good, so systemd's watchdog restarts the node.
    /// Nothing is started without `NOTIFY_SOCKET`.
    pub fn watchdog(self: &std::sync::Arc<Self>, role: impl Fn() -> String + Send + 'static) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        let every = watchdog_interval();
        let tick = every
            .map(|w| (w / 3).min(Duration::from_secs(1)))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(20));
        let sup = self.clone();
        tokio::spawn(async move {
            let mut shown = String::new();
            let mut timer = tokio::time::interval(tick);
            loop {
                timer.tick().await;
                if sup.is_wedged() {
                    tracing::warn!("supervisor: wedged by fault injection; no more watchdog pings");
                    std::future::pending::<()>().await;
                }
                let status = status_line(&role(), &sup.services());
                if status != shown {
                    notify(&format!("STATUS={status}"));
                    shown = status;
                }
                if every.is_some() && sup.all_alive() {
                    notify("WATCHDOG=1");
                }
            }
        });
    }
}
