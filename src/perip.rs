//! Per-IP connection caps, one [`PerIp`] per listener family (SMTP MX, submission,
//! IMAP, HTTP, DNS over TCP): each counts the open connections of every client
//! address and refuses one more past its cap, so one host cannot take a service's
//! whole session pool.
//!
//! The map holds only addresses with open connections (an entry goes when its count
//! returns to zero), so its size is bounded by the service's own connection limit.
//! IPv4-mapped IPv6 addresses count as their IPv4 address (`config::canonical_ip`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections per client address, each at most `cap`.
pub struct PerIp {
    cap: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; dropping it uncounts it.
pub struct Slot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(cap: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            cap: u32::try_from(cap).unwrap_or(u32::MAX),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more connection from `ip`, or `None` when `ip` already has `cap`.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = crate::config::canonical_ip(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cap {
            if *n == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: self.clone(),
            ip,
        })
    }

    /// Addresses with open connections (for tests and `/metrics`-style checks).
    pub fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_forgets_it_at_zero() {
        let p = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = p.try_acquire(a).unwrap();
        let s2 = p.try_acquire(a).unwrap();
        assert!(p.try_acquire(a).is_none());
        // Another address is counted on its own; a mapped v4 address is the same one.
        let s3 = p.try_acquire(b).unwrap();
        assert!(p.try_acquire("::ffff:192.0.2.1".parse().unwrap()).is_none());
        assert_eq!(p.addresses(), 2);
        drop(s1);
        let s4 = p.try_acquire(a).unwrap();
        drop((s2, s3, s4));
        assert_eq!(
            p.addresses(),
            0,
            "entries go when their count returns to zero"
        );
    }
}
