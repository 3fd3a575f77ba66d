//! Reachability of the ping nodes: ICMP echo over a raw socket (CAP_NET_RAW),
//! one probe per node every half second; a node counts as reached when it
//! answered within the dead time (`cluster.ping_nodes`; the role machine only
//! sees [`Pinger::ok`]).

use std::net::IpAddr;
use std::time::Duration;

pub struct Pinger {
    nodes: Vec<IpAddr>,
    last_ok: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    window: Duration,
}

impl Pinger {
    pub fn new(nodes: &[IpAddr], window: Duration) -> Pinger {
        let p = Pinger {
            nodes: nodes.to_vec(),
            last_ok: Default::default(),
            window,
        };
        if !p.nodes.is_empty() {
            let nodes = p.nodes.clone();
            let last_ok = p.last_ok.clone();
            std::thread::Builder::new()
                .name("cluster-ping".into())
                .spawn(move || probe_loop(nodes, last_ok))
                .ok();
        }
        p
    }

    /// True when no ping nodes are configured, or one answered recently.
    pub fn ok(&mut self) -> bool {
        if self.nodes.is_empty() {
            return true;
        }
        self.last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < self.window)
    }
}

fn probe_loop(
    nodes: Vec<IpAddr>,
    last_ok: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
) {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cluster: ping nodes need a raw ICMP socket (CAP_NET_RAW): {e}");
            return;
        }
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let id = std::process::id() as u16;
    let mut seq: u16 = 0;
    loop {
        for node in &nodes {
            let IpAddr::V4(v4) = node else { continue };
            seq = seq.wrapping_add(1);
            let mut pkt = [
                8u8,
                0,
                0,
                0,
                (id >> 8) as u8,
                id as u8,
                (seq >> 8) as u8,
                seq as u8,
            ];
            let sum = checksum(&pkt);
            pkt[2..4].copy_from_slice(&sum.to_be_bytes());
            let _ = sock.send_to(&pkt, &std::net::SocketAddr::new((*v4).into(), 0).into());
        }
        let until = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < until {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            // SAFETY: recv_from initialised the first n bytes.
            let data: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let ihl = data.first().map_or(0, |b| ((b & 0x0f) as usize) * 4);
            let icmp = data.get(ihl..).unwrap_or_default();
            let from_node = from.as_socket().is_some_and(|a| nodes.contains(&a.ip()));
            // Echo reply (type 0) with our identifier.
            if from_node && icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() {
                *last_ok.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
            }
        }
    }
}

/// The ICMP checksum (RFC 1071: the one's complement of the one's complement sum).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_the_ones_complement_sum_of_rfc_1071() {
        // RFC 1071 section 3's example: the sum is 0xddf2, the checksum its complement.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // An odd length is padded with a zero byte.
        assert_eq!(checksum(&[0x12, 0x34, 0x56]), !0x6834);
        // An echo request with its checksum filled in sums to zero.
        let mut pkt = [8u8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01];
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&pkt), 0);
    }

    #[test]
    fn without_ping_nodes_the_pinger_is_always_ok() {
        let mut pinger = Pinger::new(&[], Duration::from_millis(1));
        assert!(pinger.ok());
    }
}
