//! Gratuitous ARP for the virtual IP: the frames and the AF_PACKET socket that sends
//! them, so that the clients' ARP caches point at the node that now holds the VIP.
//!
//! Per round, one broadcast Ethernet frame carrying an ARP request and one carrying an
//! ARP reply, both with sender IP = target IP = VIP and sender MAC = the interface's MAC
//! (RFC 5227 section 3 "ARP Announcement", RFC 5944 section 4.6 for the reply form).
//! [`super::vip::Vip::announce`] is the way in; it knows the interface.
//!
//! The packet socket is created on the calling thread, so it belongs to that thread's
//! network namespace. Capability: CAP_NET_RAW.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use pnet_datalink::{Channel, DataLinkSender, MacAddr, NetworkInterface};
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};

/// Ethernet header (14) + ARP for IPv4 over Ethernet (28), padded to the 60-byte minimum
/// frame (without FCS) so that no driver has to pad it.
const GARP_FRAME_LEN: usize = 60;
const ETHERNET_HEADER_LEN: usize = 14;

/// Sends `count` gratuitous ARP announcements for `vip` `interval` apart on interface
/// `interface` (index `ifindex`, Ethernet address `mac`): per round one broadcast ARP
/// request and one broadcast ARP reply. Cancel-safe: dropping the future stops it
/// between rounds.
pub async fn announce(
    interface: &str,
    ifindex: u32,
    mac: Option<[u8; 6]>,
    vip: Ipv4Addr,
    count: u32,
    interval: Duration,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let mac = MacAddr::from(mac.ok_or_else(|| {
        anyhow!(
            "network interface {:?} has no Ethernet address; cannot send gratuitous ARP",
            interface
        )
    })?);
    let request = garp_frame(mac, vip, ArpOperations::Request);
    let reply = garp_frame(mac, vip, ArpOperations::Reply);
    // Created on the calling thread (socket + bind, which do not block) so that the
    // socket is in the caller's network namespace; only the sends go to the pool.
    let mut tx = packet_sender(interface, ifindex, mac)?;
    for round in 0..count {
        if round > 0 {
            tokio::time::sleep(interval).await;
        }
        let interface = interface.to_string();
        tx = tokio::task::spawn_blocking(move || -> Result<Box<dyn DataLinkSender>> {
            for frame in [&request, &reply] {
                tx.send_to(frame, None)
                    .unwrap_or_else(|| Err(std::io::ErrorKind::Unsupported.into()))
                    .with_context(|| format!("sending gratuitous ARP on {interface}"))?;
            }
            Ok(tx)
        })
        .await
        .context("gratuitous ARP sender task")??;
    }
    tracing::debug!(interface = %interface, vip = %vip, count, "sent gratuitous ARP");
    Ok(())
}

fn packet_sender(interface: &str, ifindex: u32, mac: MacAddr) -> Result<Box<dyn DataLinkSender>> {
    let link = NetworkInterface {
        name: interface.to_string(),
        description: String::new(),
        index: ifindex,
        mac: Some(mac),
        ips: Vec::new(),
        flags: 0,
    };
    let config = pnet_datalink::Config {
        write_timeout: Some(Duration::from_secs(1)),
        read_timeout: Some(Duration::from_millis(1)),
        read_buffer_size: 64,
        promiscuous: false,
        ..Default::default()
    };
    match pnet_datalink::channel(&link, config) {
        Ok(Channel::Ethernet(tx, _rx)) => Ok(tx),
        Ok(_) => bail!("unexpected datalink channel type on {}", interface),
        Err(e) => Err(e).with_context(|| {
            format!(
                "opening a packet socket on {} (needs CAP_NET_RAW)",
                interface
            )
        }),
    }
}

/// One gratuitous ARP frame: broadcast Ethernet, ARP `operation`, sender = target = `vip`.
fn garp_frame(mac: MacAddr, vip: Ipv4Addr, operation: ArpOperation) -> [u8; GARP_FRAME_LEN] {
    let mut frame = [0u8; GARP_FRAME_LEN];
    {
        let mut ethernet =
            MutableEthernetPacket::new(&mut frame[..]).expect("frame holds an Ethernet header");
        ethernet.set_destination(MacAddr::broadcast());
        ethernet.set_source(mac);
        ethernet.set_ethertype(EtherTypes::Arp);
    }
    let mut arp = MutableArpPacket::new(&mut frame[ETHERNET_HEADER_LEN..])
        .expect("frame holds an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(operation);
    arp.set_sender_hw_addr(mac);
    arp.set_sender_proto_addr(vip);
    // RFC 5227: the target hardware address of a request is ignored (zero); a
    // gratuitous reply is addressed to everyone.
    arp.set_target_hw_addr(if operation == ArpOperations::Reply {
        MacAddr::broadcast()
    } else {
        MacAddr::zero()
    });
    arp.set_target_proto_addr(vip);
    frame
}

#[cfg(test)]
mod tests {
    //! The frames only; sending them is tested on a veth pair in `vip`'s tests.

    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::arp::ArpPacket;
    use pnet_packet::ethernet::EthernetPacket;

    #[test]
    fn garp_frames_are_broadcast_announcements_of_the_vip() {
        let mac = MacAddr::new(0x02, 0, 0, 0, 0, 0x01);
        let vip = Ipv4Addr::new(10, 0, 0, 100);
        for (operation, target_hw) in [
            (ArpOperations::Request, MacAddr::zero()),
            (ArpOperations::Reply, MacAddr::broadcast()),
        ] {
            let frame = garp_frame(mac, vip, operation);
            assert_eq!(frame.len(), 60, "minimum Ethernet frame, no padding needed");
            let eth = EthernetPacket::new(&frame).unwrap();
            assert_eq!(eth.get_destination(), MacAddr::broadcast());
            assert_eq!(eth.get_source(), mac);
            assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
            let arp = ArpPacket::new(eth.payload()).unwrap();
            assert_eq!(arp.get_hardware_type(), ArpHardwareTypes::Ethernet);
            assert_eq!(arp.get_protocol_type(), EtherTypes::Ipv4);
            assert_eq!((arp.get_hw_addr_len(), arp.get_proto_addr_len()), (6, 4));
            assert_eq!(arp.get_operation(), operation);
            assert_eq!(arp.get_sender_hw_addr(), mac);
            assert_eq!(arp.get_sender_proto_addr(), vip);
            assert_eq!(arp.get_target_hw_addr(), target_hw);
            assert_eq!(arp.get_target_proto_addr(), vip, "gratuitous");
        }
    }
}
