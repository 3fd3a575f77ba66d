//! The system clock's synchronisation state as the kernel keeps it (`adjtimex(2)`
//! without changing anything), for `clusterd status`: whether an NTP client
//! (systemd-timesyncd in the image) has marked the clock synchronised, and the
//! kernel's error bounds. The op log's hybrid clocks, TLS and DKIM rely on it.

use serde::{Deserialize, Serialize};

/// The clock's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClockStatus {
    /// The kernel's `STA_UNSYNC` flag is clear (an NTP client disciplines the clock).
    pub synchronized: bool,
    /// The kernel's maximum error bound, in microseconds (grows while unsynchronised).
    pub max_error_us: i64,
    /// The estimated error, in microseconds.
    pub est_error_us: i64,
}

/// Reads the clock's state; `None` if the kernel refuses `adjtimex`.
pub fn status() -> Option<ClockStatus> {
    // SAFETY: a zeroed timex with `modes = 0` only reads; the kernel fills it in.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(ClockStatus {
        synchronized: tx.status & libc::STA_UNSYNC == 0 && state != libc::TIME_ERROR,
        max_error_us: tx.maxerror as i64,
        est_error_us: tx.esterror as i64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_answers() {
        let st = super::status().expect("adjtimex");
        assert!(st.max_error_us >= 0 && st.est_error_us >= 0, "{st:?}");
    }
}
