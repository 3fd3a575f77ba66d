//! The virtual IP: the one address clients use, held by the active node only.
//!
//! This module owns exactly one IPv4 address on one interface (10.0.0.100/8 on eth0 in
//! the reference deployment) and the gratuitous ARP that moves it between nodes. The role
//! state machine decides *when*; this module only knows *how*.
//!
//! Implementation notes (invariants):
//!
//! - **The address is lifetime-bounded.** [`Vip::hold`] adds the address with a finite
//!   kernel lifetime (`valid_lft` = `preferred_lft`, whole seconds, at least 1 s) and the
//!   active node calls it again before the lifetime runs out; a repeated `hold` replaces
//!   the address (`NLM_F_REPLACE`), which restarts the kernel's countdown. If clusterd
//!   dies (even `kill -9`) or stalls, the kernel deletes the address by itself when the
//!   lifetime ends (measured on Linux 6.18: 0.01-0.45 s after it; the kernel's expiry
//!   check may round up to a whole second by up to HZ/4), and the node stops answering
//!   ARP for the VIP. The address is never added without a lifetime.
//! - **Other addresses are never touched.** Only entries whose local address is the VIP
//!   are ever replaced or deleted, and only on the configured interface. Adding is an
//!   add-or-replace of that one address, never a flush or a change of the primary.
//!   Deleting (or expiring) a *primary* address makes the kernel delete the secondaries
//!   of its subnet as well unless `promote_secondaries` is set; the VIP becomes primary
//!   when it was added before the interface's own address of the same subnet. So when
//!   the VIP is primary and other addresses sit under it, `hold` and `release` turn on the
//!   interface's `promote_secondaries` (IPv4 devconf, over netlink) first, so that neither
//!   a release nor an expiry can take the node's own address with it.
//! - **Stale copies go.** A VIP left on the interface by an earlier process or an
//!   administrator (any prefix length, any lifetime) is removed by [`Vip::release`];
//!   call it once at start-up, before the role machine runs. `hold` also removes copies
//!   of the VIP with a different prefix length than the configured one.
//! - **Gratuitous ARP** ([`Vip::announce`]; the frames and the packet socket are in
//!   `garp`): per round, one broadcast Ethernet frame carrying an ARP request
//!   and one carrying an ARP reply, both with sender IP = target IP = VIP and sender
//!   MAC = the interface's MAC (RFC 5227 section 3 "ARP Announcement", RFC 5944
//!   section 4.6 for the reply form).
//! - The interface is resolved by name once, in [`Vip::open`]; if it is deleted and
//!   re-created later, open a new `Vip`. Sockets belong to the network namespace of the
//!   thread that creates them: `open` and `announce` create theirs on the calling thread.
//!
//! Capabilities: CAP_NET_ADMIN (netlink address and devconf changes) and CAP_NET_RAW
//! (the AF_PACKET socket for gratuitous ARP).
//!
//! Length: about 500 lines of code; the rest (~600 lines) are the tests, which run in
//! network namespaces of their own and belong beside the netlink code they exercise.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use pnet_datalink::MacAddr;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use rtnetlink::packet_route::link::{AfSpecInet, AfSpecUnspec, InetDevConf, LinkAttribute};
use rtnetlink::{Handle, LinkUnspec};
use tokio::task::JoinHandle;

/// `u32::MAX` means "forever" to the kernel; a lifetime must stay below it.
const INFINITE_LIFETIME: u32 = u32::MAX;

/// The virtual IP on one interface. Cheap to share behind an `Arc`; all methods take
/// `&self` and each one is a few netlink round trips.
pub struct Vip {
    handle: Handle,
    connection: JoinHandle<()>,
    interface: String,
    ifindex: u32,
    addr: Ipv4Addr,
    prefix: u8,
    mac: Option<[u8; 6]>,
    /// The loopback interface's index when a silent hold is possible (see
    /// [`Vip::hold_silent`]): `lo` exists and the LAN interface ignores ARP requests for
    /// addresses it does not carry itself (`arp_ignore` ≥ 1).
    silent_on: Option<u32>,
}

impl Drop for Vip {
    fn drop(&mut self) {
        // The connection task would end once every handle is gone; do not wait for it.
        // Dropping a `Vip` does not remove the address: the kernel lifetime does.
        self.connection.abort();
    }
}

impl std::fmt::Debug for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vip")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("addr", &self.addr)
            .field("prefix", &self.prefix)
            .field("mac", &self.mac.map(MacAddr::from))
            .finish()
    }
}

impl Vip {
    /// `cidr` like "10.0.0.100/8"; `interface` like "eth0". Fails naming the interface if
    /// it does not exist. Changes nothing on the system.
    pub async fn open(cidr: Ipv4Net, interface: &str) -> Result<Vip> {
        let addr = cidr.addr();
        if cidr.prefix_len() < 31 && (addr == cidr.network() || addr == cidr.broadcast()) {
            bail!("virtual IP {cidr} is the network or broadcast address of its subnet");
        }
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a route netlink socket")?;
        let connection = tokio::spawn(connection);
        let link = handle
            .link()
            .get()
            .match_name(interface)
            .execute()
            .try_next()
            .await;
        let link = match link {
            Ok(Some(link)) => link,
            Ok(None) => bail!("network interface {interface:?} does not exist"),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                connection.abort();
                bail!("network interface {interface:?} does not exist")
            }
            Err(e) => {
                connection.abort();
                return Err(anyhow!(e))
                    .with_context(|| format!("looking up network interface {interface:?}"));
            }
        };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        let silent_on = match silent_hold_possible(&handle, interface).await {
            Ok(lo) => Some(lo),
            Err(e) => {
                tracing::warn!("cluster: handovers will leave the VIP unheld for a moment: {e:#}");
                None
            }
        };
        Ok(Vip {
            handle,
            connection,
            interface: interface.to_string(),
            ifindex: link.header.index,
            addr,
            prefix: cidr.prefix_len(),
            mac,
            silent_on,
        })
    }

    /// Whether [`Vip::hold_silent`] is available.
    pub fn can_hold_silently(&self) -> bool {
        self.silent_on.is_some()
    }

    /// Adds the address as /32 to the loopback interface with a kernel lifetime: the
    /// node then accepts packets sent to the VIP that reach it, but nobody learns its
    /// MAC for the VIP from an ARP request (the LAN interface has `arp_ignore` ≥ 1).
    /// Used by a node taking over from a peer that still has the VIP on its LAN
    /// interface: once our gratuitous ARP has turned the clients' caches, their packets
    /// land here, and the peer can drop its copy without a gap.
    pub async fn hold_silent(&self, lifetime: Duration) -> Result<()> {
        let lo = self
            .silent_on
            .ok_or_else(|| anyhow!("a silent hold of the VIP is not possible here"))?;
        let secs = lifetime_secs(lifetime);
        let mut request = self
            .handle
            .address()
            .add(lo, IpAddr::V4(self.addr), 32)
            .replace();
        let mut cache_info = CacheInfo::default();
        cache_info.ifa_valid = secs;
        cache_info.ifa_preferred = secs;
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::CacheInfo(cache_info));
        request
            .execute()
            .await
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("adding virtual IP {}/32 to lo", self.addr))
    }

    /// Removes the silent copy from the loopback interface, if there is one.
    pub async fn release_silent(&self) -> Result<()> {
        let Some(lo) = self.silent_on else {
            return Ok(());
        };
        let current = self.addresses_of(lo).await?;
        for ours in current.iter().filter(|m| self.is_vip(m)) {
            match self.handle.address().del(ours.clone()).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {}
                Err(e) => {
                    return Err(anyhow!(e))
                        .with_context(|| format!("removing virtual IP {} from lo", self.addr));
                }
            }
        }
        Ok(())
    }

    /// The address this `Vip` manages, with its prefix.
    pub fn cidr(&self) -> Ipv4Net {
        Ipv4Net::new(self.addr, self.prefix).expect("prefix checked by Ipv4Net at open")
    }

    /// The interface this `Vip` lives on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Adds the address, or renews its lifetime if present.
    ///
    /// `lifetime` is rounded up to whole seconds (the kernel's granularity), at least 1 s.
    /// Call it again well before the lifetime ends (e.g. lifetime = 3 × renewal period);
    /// if it is not renewed the kernel removes the address by itself, at most about half
    /// a second after the (rounded) lifetime.
    pub async fn hold(&self, lifetime: Duration) -> Result<()> {
        let secs = lifetime_secs(lifetime);
        let before = self.addresses().await?;
        for stale in before
            .iter()
            .filter(|m| self.is_vip(m) && m.header.prefix_len != self.prefix)
        {
            tracing::warn!(
                interface = %self.interface,
                vip = %self.addr,
                stale_prefix = stale.header.prefix_len,
                "removing a copy of the virtual IP with another prefix length"
            );
            self.delete(&before, stale).await?;
        }

        let mut request = self
            .handle
            .address()
            .add(self.ifindex, IpAddr::V4(self.addr), self.prefix)
            .replace();
        let mut cache_info = CacheInfo::default();
        cache_info.ifa_valid = secs;
        cache_info.ifa_preferred = secs;
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::CacheInfo(cache_info));
        request
            .execute()
            .await
            .map_err(|e| anyhow!(e))
            .with_context(|| {
                format!(
                    "adding virtual IP {} to {} (lifetime {secs} s)",
                    self.cidr(),
                    self.interface
                )
            })?;

        // The VIP may have become (or may still be) the primary address of its subnet,
        // e.g. when it was added before the interface's own address: make sure its expiry
        // or release cannot take the addresses under it along.
        let after = self.addresses().await?;
        if let Some(ours) = after.iter().find(|m| self.is_vip(m)) {
            self.protect_secondaries_of(&after, ours).await?;
        }
        Ok(())
    }

    /// Removes the address if present (every copy of it on the interface, whatever its
    /// prefix length or lifetime). Never touches any other address.
    pub async fn release(&self) -> Result<()> {
        let current = self.addresses().await?;
        for ours in current.iter().filter(|m| self.is_vip(m)) {
            self.delete(&current, ours).await?;
        }
        self.release_silent().await
    }

    /// Whether the address is on the interface now.
    pub async fn held(&self) -> Result<bool> {
        Ok(self.addresses().await?.iter().any(|m| self.is_vip(m)))
    }

    /// Sends `count` gratuitous ARP announcements `interval` apart: per round one
    /// broadcast ARP request and one broadcast ARP reply, sender IP = target IP = VIP,
    /// sender MAC = the interface's MAC. Cancel-safe: dropping the future stops it
    /// between rounds.
    pub async fn announce(&self, count: u32, interval: Duration) -> Result<()> {
        super::garp::announce(
            &self.interface,
            self.ifindex,
            self.mac,
            self.addr,
            count,
            interval,
        )
        .await
    }

    /// The IPv4 addresses of our interface.
    async fn addresses(&self) -> Result<Vec<AddressMessage>> {
        self.addresses_of(self.ifindex).await
    }

    /// The IPv4 addresses of interface `ifindex`.
    async fn addresses_of(&self, ifindex: u32) -> Result<Vec<AddressMessage>> {
        let mut request = self.handle.address().get().set_link_index_filter(ifindex);
        request.message_mut().header.family = AddressFamily::Inet;
        let all: Vec<AddressMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("listing the addresses of {}", self.interface))?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet && m.header.index == ifindex)
            .collect())
    }

    fn is_vip(&self, message: &AddressMessage) -> bool {
        local_v4(message) == Some(self.addr)
    }

    /// Deletes exactly `victim` (one of `current`), first making sure that addresses
    /// under it survive if it is a primary address.
    async fn delete(&self, current: &[AddressMessage], victim: &AddressMessage) -> Result<()> {
        self.protect_secondaries_of(current, victim).await?;
        let result = self.handle.address().del(victim.clone()).execute().await;
        match result {
            Ok(()) => {}
            // Gone in between (expired, or removed by someone else): that is what we want.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {}
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!(
                        "removing virtual IP {}/{} from {}",
                        self.addr, victim.header.prefix_len, self.interface
                    )
                });
            }
        }
        Ok(())
    }

    /// If `primary` is a primary address with secondaries of its subnet under it, turn on
    /// the interface's `promote_secondaries` so that removing or expiring `primary` does
    /// not delete them.
    async fn protect_secondaries_of(
        &self,
        current: &[AddressMessage],
        primary: &AddressMessage,
    ) -> Result<()> {
        if is_secondary(primary) {
            return Ok(());
        }
        let Some(subnet) = subnet_of(primary) else {
            return Ok(());
        };
        let under: Vec<Ipv4Addr> = current
            .iter()
            .filter(|m| is_secondary(m) && subnet_of(m) == Some(subnet))
            .filter_map(local_v4)
            .filter(|a| *a != self.addr)
            .collect();
        if under.is_empty() || self.promote_secondaries().await? {
            return Ok(());
        }
        tracing::warn!(
            interface = %self.interface,
            vip = %self.addr,
            secondaries = ?under,
            "the virtual IP is the primary address of its subnet; enabling promote_secondaries \
             so that its removal keeps the other addresses"
        );
        let mut conf = InetDevConf::default();
        conf.promote_secondaries = 1;
        let message = LinkUnspec::new_with_index(self.ifindex)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                AfSpecInet::DevConfRequest(conf),
            ])]))
            .build();
        self.handle
            .link()
            .change(message)
            .execute()
            .await
            .map_err(|e| anyhow!(e))
            .with_context(|| {
                format!(
                    "setting net.ipv4.conf.{}.promote_secondaries = 1",
                    self.interface
                )
            })?;
        if !self.promote_secondaries().await? {
            bail!(
                "net.ipv4.conf.{}.promote_secondaries is still 0 after setting it",
                self.interface
            );
        }
        Ok(())
    }

    /// The interface's IPv4 `promote_secondaries` setting.
    async fn promote_secondaries(&self) -> Result<bool> {
        let link = self
            .handle
            .link()
            .get()
            .match_index(self.ifindex)
            .execute()
            .try_next()
            .await
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("reading the settings of {}", self.interface))?
            .ok_or_else(|| anyhow!("network interface {:?} disappeared", self.interface))?;
        let conf = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::AfSpecUnspec(specs) => specs.iter().find_map(|s| match s {
                AfSpecUnspec::Inet(inet) => inet.iter().find_map(|i| match i {
                    AfSpecInet::DevConf(conf) => Some(*conf),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        });
        Ok(conf.is_some_and(|c| c.promote_secondaries != 0))
    }
}

/// Makes a silent hold possible: finds `lo` and makes sure `interface` answers ARP
/// only for addresses it carries itself (`arp_ignore` = 1 if it was 0; Linux's default
/// answers for any local address, including one on `lo`). Returns `lo`'s index.
async fn silent_hold_possible(handle: &Handle, interface: &str) -> Result<u32> {
    let lo = handle
        .link()
        .get()
        .match_name("lo")
        .execute()
        .try_next()
        .await
        .map_err(|e| anyhow!(e))
        .context("looking up the loopback interface")?
        .ok_or_else(|| anyhow!("no loopback interface"))?;
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/arp_ignore");
    let current = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    if current.trim() == "0" {
        std::fs::write(&path, "1\n").with_context(|| {
            format!("setting {path} to 1 (needs CAP_NET_ADMIN; or set net.ipv4.conf.{interface}.arp_ignore=1)")
        })?;
        tracing::info!(
            interface,
            "cluster: arp_ignore set to 1: ARP answered only for the interface's own addresses"
        );
    }
    Ok(lo.header.index)
}

/// Whole seconds, rounded up, within 1 ..= u32::MAX - 1 (0 is rejected by the kernel and
/// u32::MAX means forever).
fn lifetime_secs(lifetime: Duration) -> u32 {
    let secs = lifetime
        .as_secs()
        .saturating_add(u64::from(lifetime.subsec_nanos() > 0));
    u32::try_from(secs)
        .unwrap_or(INFINITE_LIFETIME)
        .clamp(1, INFINITE_LIFETIME - 1)
}

/// The local IPv4 address of an address message (IFA_LOCAL, else IFA_ADDRESS).
fn local_v4(message: &AddressMessage) -> Option<Ipv4Addr> {
    let find = |want_local: bool| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(v4)) if want_local => Some(*v4),
            AddressAttribute::Address(IpAddr::V4(v4)) if !want_local => Some(*v4),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}

fn subnet_of(message: &AddressMessage) -> Option<Ipv4Net> {
    let addr = local_v4(message)?;
    Ipv4Net::new(addr, message.header.prefix_len)
        .ok()
        .map(|n| n.trunc())
}

fn is_secondary(message: &AddressMessage) -> bool {
    message
        .header
        .flags
        .contains(AddressHeaderFlags::Secondary)
        || message.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Flags(flags) if flags.contains(AddressFlags::Secondary))
        })
}

#[cfg(test)]
mod tests {
    //! Every test runs in a network namespace of its own, created by `unshare` on a
    //! dedicated thread (namespaces are per thread), with a veth pair `lan0` ⇄ `peer0`
    //! inside it. Nothing reaches the host's namespace; everything disappears with the
    //! thread. The tests need root (CAP_NET_ADMIN + CAP_NET_RAW + CAP_SYS_ADMIN for
    //! unshare) and fail, not skip, without it.

    use super::*;
    use pnet_datalink::{Channel, NetworkInterface};
    use pnet_packet::Packet;
    use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket};
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
    use std::future::Future;
    use std::time::Instant;

    const VIP: &str = "10.0.0.100/8";
    const PRIMARY: &str = "10.0.0.1/8";

    /// Runs `body` on a fresh thread in a fresh network namespace, on a current-thread
    /// runtime, bounded to 15 s; re-raises its panic.
    fn in_private_netns<F, Fut>(body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let thread = std::thread::Builder::new()
            .name("vip-netns-test".into())
            .spawn(move || {
                // SAFETY: geteuid has no preconditions.
                let euid = unsafe { libc::geteuid() };
                assert_eq!(
                    euid, 0,
                    "the VIP tests must run as root (they create a private network namespace \
                     and need CAP_NET_ADMIN and CAP_NET_RAW); euid is {euid}"
                );
                // SAFETY: unshare only affects the calling thread here (CLONE_NEWNET).
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "unshare(CLONE_NEWNET) failed: {}",
                    std::io::Error::last_os_error()
                );
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async move {
                    tokio::time::timeout(Duration::from_secs(15), body())
                        .await
                        .expect("test took longer than 15 s");
                });
            })
            .expect("spawn test thread");
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    /// A veth pair `lan0` ⇄ `peer0`, both up, in the current (private) namespace.
    struct Lan {
        handle: Handle,
        lan: u32,
        peer: u32,
        _connection: JoinHandle<()>,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        cidr: Ipv4Net,
        secondary: bool,
        /// Remaining valid lifetime in seconds; u32::MAX = forever.
        valid_lft: u32,
    }

    impl Lan {
        async fn new() -> Lan {
            let (connection, handle, _) = rtnetlink::new_connection().expect("netlink socket");
            let connection = tokio::spawn(connection);
            handle
                .link()
                .add(rtnetlink::LinkVeth::new("lan0", "peer0").build())
                .execute()
                .await
                .expect("create veth pair lan0/peer0");
            let lan = Self::index(&handle, "lan0").await;
            let peer = Self::index(&handle, "peer0").await;
            for index in [lan, peer] {
                handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .expect("set link up");
            }
            Lan {
                handle,
                lan,
                peer,
                _connection: connection,
            }
        }

        /// Also gives `lan0` its own address, as networkd would.
        async fn with_primary() -> Lan {
            let lan = Lan::new().await;
            lan.add_forever(PRIMARY).await;
            lan
        }

        /// Sets lan0's net.ipv4.conf.lan0.promote_secondaries, so that a test does not
        /// depend on what the namespace inherited.
        async fn set_promote_secondaries(&self, on: bool) {
            // DevConfRequest only carries non-zero values, so write 0 through /proc; this
            // thread is in the private namespace, which is the one /proc/sys/net shows it.
            std::fs::write(
                "/proc/sys/net/ipv4/conf/lan0/promote_secondaries",
                if on { "1" } else { "0" },
            )
            .expect("write promote_secondaries");
            let seen = open_vip().await.promote_secondaries().await.unwrap();
            assert_eq!(seen, on, "promote_secondaries on lan0 as seen over netlink");
        }

        async fn index(handle: &Handle, name: &str) -> u32 {
            handle
                .link()
                .get()
                .match_name(name)
                .execute()
                .try_next()
                .await
                .expect("get link")
                .expect("link exists")
                .header
                .index
        }

        /// Adds an address to lan0 without a lifetime, as an administrator would.
        async fn add_forever(&self, cidr: &str) {
            let net: Ipv4Net = cidr.parse().unwrap();
            self.handle
                .address()
                .add(self.lan, IpAddr::V4(net.addr()), net.prefix_len())
                .execute()
                .await
                .unwrap_or_else(|e| panic!("add {cidr}: {e}"));
        }

        /// The IPv4 addresses of lan0, as `ip -4 addr show lan0` would list them.
        async fn addresses(&self) -> Vec<Seen> {
            let mut request = self.handle.address().get().set_link_index_filter(self.lan);
            request.message_mut().header.family = AddressFamily::Inet;
            let all: Vec<AddressMessage> = request.execute().try_collect().await.unwrap();
            all.iter()
                .filter(|m| m.header.family == AddressFamily::Inet)
                .map(|m| Seen {
                    cidr: Ipv4Net::new(local_v4(m).unwrap(), m.header.prefix_len).unwrap(),
                    secondary: is_secondary(m),
                    valid_lft: m
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            AddressAttribute::CacheInfo(c) => Some(c.ifa_valid),
                            _ => None,
                        })
                        .unwrap_or(INFINITE_LIFETIME),
                })
                .collect()
        }

        async fn copies_of(&self, cidr: &str) -> Vec<Seen> {
            let want: Ipv4Net = cidr.parse().unwrap();
            self.addresses()
                .await
                .into_iter()
                .filter(|s| s.cidr.addr() == want.addr())
                .collect()
        }

        async fn mac(&self, index: u32) -> MacAddr {
            let link = self
                .handle
                .link()
                .get()
                .match_index(index)
                .execute()
                .try_next()
                .await
                .unwrap()
                .unwrap();
            link.attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Address(b) => Some(MacAddr::from(
                        <[u8; 6]>::try_from(b.as_slice()).expect("6-byte MAC"),
                    )),
                    _ => None,
                })
                .expect("link has a MAC")
        }
    }

    async fn open_vip() -> Vip {
        Vip::open(VIP.parse().unwrap(), "lan0")
            .await
            .expect("open VIP on lan0")
    }

    fn assert_primary_intact(seen: &[Seen]) {
        let primary: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.cidr == PRIMARY.parse().unwrap())
            .collect();
        assert_eq!(
            primary.len(),
            1,
            "the primary address must still be there: {seen:?}"
        );
        assert!(!primary[0].secondary, "still primary: {seen:?}");
        assert_eq!(
            primary[0].valid_lft, INFINITE_LIFETIME,
            "untouched: {seen:?}"
        );
    }

    #[test]
    fn hold_adds_the_vip_with_a_finite_lifetime_beside_the_primary_address() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            lan.add_forever("192.168.1.1/24").await;
            let before = lan.addresses().await;
            let vip = open_vip().await;
            assert!(!vip.held().await.unwrap());

            vip.hold(Duration::from_secs(3)).await.unwrap();

            assert!(vip.held().await.unwrap());
            let after = lan.addresses().await;
            let copies = lan.copies_of(VIP).await;
            assert_eq!(copies.len(), 1, "{after:?}");
            assert_eq!(copies[0].cidr, VIP.parse().unwrap());
            assert!(
                copies[0].secondary,
                "the VIP sits under 10.0.0.1/8: {after:?}"
            );
            assert!(
                (1..=3).contains(&copies[0].valid_lft),
                "finite kernel lifetime: {after:?}"
            );
            assert_primary_intact(&after);
            let others: Vec<Seen> = after
                .into_iter()
                .filter(|s| s.cidr.addr() != vip.cidr().addr())
                .collect();
            assert_eq!(others, before, "other addresses are not disturbed");
        });
    }

    #[test]
    fn hold_again_renews_the_lifetime_without_a_second_copy() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            let vip = open_vip().await;
            vip.hold(Duration::from_secs(2)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let aged = lan.copies_of(VIP).await;
            assert_eq!(aged.len(), 1);
            assert!(aged[0].valid_lft <= 1, "the countdown runs: {aged:?}");

            vip.hold(Duration::from_secs(2)).await.unwrap();
            let renewed = lan.copies_of(VIP).await;
            assert_eq!(renewed.len(), 1, "still one copy: {renewed:?}");
            assert_eq!(renewed[0].valid_lft, 2, "lifetime restarted: {renewed:?}");

            // Past the first lifetime (2 s after the first hold): still held.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            assert!(vip.held().await.unwrap(), "renewal kept the VIP");
            assert_primary_intact(&lan.addresses().await);
        });
    }

    #[test]
    fn sub_second_lifetime_is_rounded_up_to_one_second() {
        assert_eq!(lifetime_secs(Duration::ZERO), 1);
        assert_eq!(lifetime_secs(Duration::from_millis(200)), 1);
        assert_eq!(lifetime_secs(Duration::from_millis(2001)), 3);
        assert_eq!(lifetime_secs(Duration::from_secs(u64::MAX)), u32::MAX - 1);
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            let vip = open_vip().await;
            vip.hold(Duration::from_millis(200)).await.unwrap();
            let copies = lan.copies_of(VIP).await;
            assert_eq!(copies.len(), 1);
            assert!(copies[0].valid_lft <= 1, "{copies:?}");
        });
    }

    #[test]
    fn silent_hold_puts_a_32_on_lo_with_arp_ignore_and_release_removes_it() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            let vip = open_vip().await;
            assert!(vip.can_hold_silently());
            let arp_ignore =
                std::fs::read_to_string("/proc/sys/net/ipv4/conf/lan0/arp_ignore").unwrap();
            assert_eq!(
                arp_ignore.trim(),
                "1",
                "lan0 must not answer ARP for lo's addresses"
            );

            vip.hold_silent(Duration::from_secs(2)).await.unwrap();
            let lo = vip.silent_on.unwrap();
            let on_lo: Vec<_> = vip
                .addresses_of(lo)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| vip.is_vip(m))
                .collect();
            assert_eq!(on_lo.len(), 1);
            assert_eq!(on_lo[0].header.prefix_len, 32);
            assert!(!vip.held().await.unwrap(), "not on the LAN interface");
            assert!(lan.copies_of(VIP).await.is_empty());

            vip.hold(Duration::from_secs(2)).await.unwrap();
            vip.release().await.unwrap();
            let left: Vec<_> = vip
                .addresses_of(lo)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| vip.is_vip(m))
                .collect();
            assert!(left.is_empty(), "{left:?}");
            assert!(!vip.held().await.unwrap());
        });
    }

    #[test]
    fn release_removes_the_vip_and_keeps_the_primary_address() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            lan.add_forever("10.0.0.50/8").await;
            let vip = open_vip().await;
            vip.hold(Duration::from_secs(3)).await.unwrap();

            vip.release().await.unwrap();

            assert!(!vip.held().await.unwrap());
            let after = lan.addresses().await;
            assert!(lan.copies_of(VIP).await.is_empty(), "{after:?}");
            assert_primary_intact(&after);
            assert!(
                after
                    .iter()
                    .any(|s| s.cidr == "10.0.0.50/8".parse().unwrap()),
                "another secondary stays: {after:?}"
            );
            // Releasing again is a no-op.
            vip.release().await.unwrap();
        });
    }

    #[test]
    fn release_at_start_up_removes_a_stale_vip_of_any_prefix_and_lifetime() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            // Left behind by an administrator or an old configuration: no lifetime,
            // another prefix length.
            lan.add_forever("10.0.0.100/24").await;
            lan.add_forever("10.0.0.100/8").await;
            let vip = open_vip().await;
            assert!(vip.held().await.unwrap());

            vip.release().await.unwrap();

            assert!(!vip.held().await.unwrap());
            assert!(lan.copies_of(VIP).await.is_empty());
            assert_primary_intact(&lan.addresses().await);
        });
    }

    #[test]
    fn hold_replaces_a_stale_forever_vip_with_a_lifetime_bounded_one() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            lan.add_forever("10.0.0.100/24").await;
            lan.add_forever("10.0.0.100/8").await;
            let vip = open_vip().await;

            vip.hold(Duration::from_secs(3)).await.unwrap();

            let copies = lan.copies_of(VIP).await;
            assert_eq!(copies.len(), 1, "{copies:?}");
            assert_eq!(copies[0].cidr, VIP.parse().unwrap());
            assert!(copies[0].valid_lft <= 3, "no longer forever: {copies:?}");
            assert_primary_intact(&lan.addresses().await);
        });
    }

    /// The rule: a node whose clusterd is killed must stop answering ARP for the
    /// VIP shortly after. Here the holder goes away (its netlink socket closes) without
    /// releasing; the kernel must remove the VIP when the 2 s lifetime ends.
    #[test]
    fn vip_of_a_killed_holder_expires_by_itself_within_its_lifetime() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            let vip = open_vip().await;
            let start = Instant::now();
            vip.hold(Duration::from_secs(2)).await.unwrap();
            drop(vip); // "kill -9": no release, no renewal.

            let observer = open_vip().await;
            while observer.held().await.unwrap() {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "VIP still present 3 s after a hold with a 2 s lifetime"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let gone_after = start.elapsed();
            eprintln!("VIP with a 2 s lifetime disappeared after {gone_after:?}");
            assert!(
                gone_after >= Duration::from_millis(1500),
                "expired too early: {gone_after:?}"
            );
            assert_primary_intact(&lan.addresses().await);
        });
    }

    /// When the VIP was added before the node's own address it is the primary of its
    /// subnet, and the kernel would delete the addresses under it along with it (unless
    /// `promote_secondaries`). Its expiry must keep the node's own address.
    #[test]
    fn expiry_of_a_primary_vip_keeps_the_addresses_under_it() {
        in_private_netns(|| async {
            let lan = Lan::new().await;
            lan.set_promote_secondaries(false).await;
            let vip = open_vip().await;
            vip.hold(Duration::from_secs(1)).await.unwrap();
            lan.add_forever(PRIMARY).await; // becomes a secondary under the VIP
            let seen = lan.addresses().await;
            assert!(
                seen.iter()
                    .any(|s| s.cidr == PRIMARY.parse().unwrap() && s.secondary),
                "{seen:?}"
            );
            vip.hold(Duration::from_secs(1)).await.unwrap(); // the next renewal notices it
            assert!(vip.promote_secondaries().await.unwrap());

            let start = Instant::now();
            while vip.held().await.unwrap() {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "VIP did not expire"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_primary_intact(&lan.addresses().await);
        });
    }

    #[test]
    fn release_of_a_primary_vip_keeps_the_addresses_under_it() {
        in_private_netns(|| async {
            let lan = Lan::new().await;
            lan.set_promote_secondaries(false).await;
            let vip = open_vip().await;
            vip.hold(Duration::from_secs(3)).await.unwrap();
            lan.add_forever(PRIMARY).await; // becomes a secondary under the VIP
            lan.add_forever("10.0.0.50/8").await;

            vip.release().await.unwrap();

            assert!(!vip.held().await.unwrap());
            let after = lan.addresses().await;
            assert_primary_intact(&after);
            assert!(
                after
                    .iter()
                    .any(|s| s.cidr == "10.0.0.50/8".parse().unwrap()),
                "{after:?}"
            );
        });
    }

    #[test]
    fn open_fails_naming_a_missing_interface() {
        in_private_netns(|| async {
            let error = Vip::open(VIP.parse().unwrap(), "eth9")
                .await
                .expect_err("no such interface");
            let text = format!("{error:#}");
            assert!(text.contains("eth9"), "{text}");
            assert!(text.contains("does not exist"), "{text}");
        });
    }

    #[test]
    fn open_rejects_a_network_address_as_vip() {
        in_private_netns(|| async {
            let _lan = Lan::new().await;
            let error = Vip::open("10.0.0.0/8".parse().unwrap(), "lan0")
                .await
                .expect_err("network address");
            assert!(format!("{error:#}").contains("10.0.0.0/8"), "{error:#}");
        });
    }

    #[test]
    fn announce_broadcasts_gratuitous_arp_requests_and_replies_for_the_vip() {
        in_private_netns(|| async {
            let lan = Lan::with_primary().await;
            let lan_mac = lan.mac(lan.lan).await;
            let vip = open_vip().await;
            vip.hold(Duration::from_secs(5)).await.unwrap();

            // The receiver on the far end of the wire, opened here so that its socket is
            // in this namespace; read on a blocking thread.
            let peer = NetworkInterface {
                name: "peer0".into(),
                description: String::new(),
                index: lan.peer,
                mac: None,
                ips: Vec::new(),
                flags: 0,
            };
            let config = pnet_datalink::Config {
                read_timeout: Some(Duration::from_millis(50)),
                promiscuous: false,
                ..Default::default()
            };
            let Ok(Channel::Ethernet(_tx, mut rx)) = pnet_datalink::channel(&peer, config) else {
                panic!("packet socket on peer0");
            };
            let vip_addr = vip.cidr().addr();
            let receiver = tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(3);
                let mut frames = Vec::new();
                while Instant::now() < deadline && frames.len() < 6 {
                    let Ok(frame) = rx.next() else { continue };
                    let Some(eth) = EthernetPacket::new(frame) else {
                        continue;
                    };
                    if eth.get_ethertype() != EtherTypes::Arp {
                        continue;
                    }
                    let Some(arp) = ArpPacket::new(eth.payload()) else {
                        continue;
                    };
                    if arp.get_sender_proto_addr() == vip_addr {
                        frames.push((Instant::now(), frame.to_vec()));
                    }
                }
                frames
            });

            let interval = Duration::from_millis(100);
            vip.announce(3, interval).await.unwrap();
            let frames = receiver.await.unwrap();

            let (mut requests, mut replies) = (0, 0);
            for (_, frame) in &frames {
                let eth = EthernetPacket::new(frame).unwrap();
                assert_eq!(eth.get_destination(), MacAddr::broadcast(), "broadcast");
                assert_eq!(eth.get_source(), lan_mac, "from lan0's MAC");
                let arp = ArpPacket::new(eth.payload()).unwrap();
                assert_eq!(arp.get_hardware_type(), ArpHardwareTypes::Ethernet);
                assert_eq!(arp.get_protocol_type(), EtherTypes::Ipv4);
                assert_eq!(arp.get_sender_hw_addr(), lan_mac);
                assert_eq!(arp.get_sender_proto_addr(), vip_addr);
                assert_eq!(arp.get_target_proto_addr(), vip_addr, "gratuitous");
                match arp.get_operation() {
                    ArpOperations::Request => requests += 1,
                    ArpOperations::Reply => replies += 1,
                    other => panic!("unexpected ARP operation {other:?}"),
                }
            }
            assert_eq!((requests, replies), (3, 3), "3 rounds of request + reply");
            let span = frames.last().unwrap().0 - frames.first().unwrap().0;
            assert!(
                span >= interval * 2 - Duration::from_millis(30),
                "rounds are {interval:?} apart (first to last: {span:?})"
            );
        });
    }

    #[test]
    fn vip_can_be_shared_between_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Vip>();
    }
}
