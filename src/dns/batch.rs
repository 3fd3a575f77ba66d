//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)` (Linux), so one system call moves
//! up to [`BATCH`] datagrams each way, and each reply leaves from the address its
//! query was sent to (IP_PKTINFO / IPV6_PKTINFO): a socket on 0.0.0.0 answering a
//! query sent to the virtual IP must not answer from the interface's primary
//! address, or the client drops the reply. The only unsafe code of the DNS server
//! lives here; the buffers are owned by [`Batch`] and outlive every call that points
//! at them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram received (anything longer is truncated by the kernel, and then
/// fails to parse: FORMERR, as for any malformed request).
const MAX_DATAGRAM: usize = 4096;
/// Control-message space per datagram (u64 words, for alignment).
const CONTROL_WORDS: usize = 16;

/// Asks the kernel to report each datagram's destination address (needed for
/// replies from the right address on a wildcard socket).
pub fn enable_destination_info(sock: &impl AsRawFd, v6: bool) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: a plain setsockopt with a c_int value of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One queued reply.
struct Reply {
    bytes: Vec<u8>,
    to: libc::sockaddr_storage,
    to_len: libc::socklen_t,
    /// The address the query was sent to: the reply's source.
    from: Option<IpAddr>,
    control: [u64; CONTROL_WORDS],
}

/// Receive and send buffers for one thread.
pub struct Batch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; CONTROL_WORDS]>,
    /// Destination address of each received datagram, when the kernel said.
    dsts: Vec<Option<IpAddr>>,
    /// Datagrams received by the last [`Batch::recv`].
    count: usize,
    out: Vec<Reply>,
    out_used: usize,
}

impl Default for Batch {
    fn default() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Batch {
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            lens: vec![0; BATCH],
            addrs: vec![zero_addr; BATCH],
            controls: vec![[0; CONTROL_WORDS]; BATCH],
            dsts: vec![None; BATCH],
            count: 0,
            out: (0..BATCH)
                .map(|_| Reply {
                    bytes: Vec::with_capacity(1232),
                    to: zero_addr,
                    to_len: 0,
                    from: None,
                    control: [0; CONTROL_WORDS],
                })
                .collect(),
            out_used: 0,
        }
    }
}

impl Batch {
    /// Waits for at least one datagram and takes up to [`BATCH`] that are ready.
    pub fn recv(&mut self, sock: &impl AsRawFd) -> std::io::Result<usize> {
        let fd: RawFd = sock.as_raw_fd();
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(self.addrs.iter_mut())
            .zip(self.controls.iter_mut())
            .map(|((iov, addr), control)| {
                // SAFETY: msghdr is plain old data; the fields set below are all used.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = iov;
                h.msg_iovlen = 1;
                h.msg_control = control.as_mut_ptr().cast();
                h.msg_controllen = std::mem::size_of_val(control);
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: every pointer in `hdrs` refers to `iovs`, `self.bufs`,
        // `self.addrs` or `self.controls`, which live until after the call; the
        // lengths match the buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(std::io::Error::last_os_error());
        }
        self.count = n as usize;
        for (i, h) in hdrs.iter().enumerate().take(self.count) {
            self.lens[i] = (h.msg_len as usize).min(MAX_DATAGRAM);
            // SAFETY: the kernel filled msg_control/msg_controllen of this header,
            // which still point into `self.controls[i]`.
            self.dsts[i] = unsafe { destination(&h.msg_hdr) };
        }
        Ok(self.count)
    }

    /// Calls `f` with each datagram of the last [`Batch::recv`], its sender, the
    /// address it was sent to and an empty reply buffer; when `f` returns true the
    /// buffer is queued for [`Batch::send`] to that sender, from that address.
    pub fn for_each(
        &mut self,
        mut f: impl FnMut(&[u8], SocketAddr, Option<IpAddr>, &mut Vec<u8>) -> bool,
    ) {
        self.out_used = 0;
        for i in 0..self.count {
            let Some(src) = to_socket_addr(&self.addrs[i]) else {
                continue;
            };
            let slot = &mut self.out[self.out_used];
            slot.bytes.clear();
            if f(
                &self.bufs[i][..self.lens[i]],
                src,
                self.dsts[i],
                &mut slot.bytes,
            ) {
                slot.to = self.addrs[i];
                slot.to_len = match src {
                    SocketAddr::V4(_) => std::mem::size_of::<libc::sockaddr_in>(),
                    SocketAddr::V6(_) => std::mem::size_of::<libc::sockaddr_in6>(),
                } as libc::socklen_t;
                slot.from = self.dsts[i];
                self.out_used += 1;
            }
        }
    }

    /// Sends the queued replies. Failures for single datagrams are ignored (UDP).
    pub fn send(&mut self, sock: &impl AsRawFd) {
        let fd = sock.as_raw_fd();
        let used = std::mem::take(&mut self.out_used);
        let mut iovs: Vec<libc::iovec> = self.out[..used]
            .iter_mut()
            .map(|r| libc::iovec {
                iov_base: r.bytes.as_mut_ptr().cast(),
                iov_len: r.bytes.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(self.out[..used].iter_mut())
            .map(|(iov, r)| {
                // SAFETY: plain old data, as in `recv`; the control buffer belongs to
                // the reply and outlives the send below.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = (&mut r.to as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = r.to_len;
                h.msg_iov = iov;
                h.msg_iovlen = 1;
                unsafe { set_source(&mut h, &mut r.control, r.from) };
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        let mut sent = 0;
        while sent < hdrs.len() {
            // SAFETY: the pointers refer to `iovs` and `self.out`, alive until after
            // the call; `hdrs[sent..]` has the length passed.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[sent..].as_mut_ptr(),
                    (hdrs.len() - sent) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                // Skip the datagram that failed (e.g. an unreachable client).
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
}

/// Sends one datagram to `to`, from `from` when given (for replies produced later,
/// such as forwarded answers).
pub fn send_one(
    sock: &impl AsRawFd,
    bytes: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> std::io::Result<()> {
    let (mut storage, len) = from_socket_addr(to);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: plain old data; every pointer refers to a local that outlives sendmsg.
    let r = unsafe {
        let mut h: libc::msghdr = std::mem::zeroed();
        h.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = len;
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        set_source(&mut h, &mut control, from);
        libc::sendmsg(sock.as_raw_fd(), &h, 0)
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The destination address reported by IP_PKTINFO / IPV6_PKTINFO, if any.
///
/// # Safety
/// `h` must be a header the kernel filled, whose control buffer is still alive.
unsafe fn destination(h: &libc::msghdr) -> Option<IpAddr> {
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(h) };
    while !cmsg.is_null() {
        let c = unsafe { &*cmsg };
        if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
            let info =
                unsafe { (libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo).read_unaligned() };
            return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                info.ipi_addr.s_addr,
            ))));
        }
        if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
            let info =
                unsafe { (libc::CMSG_DATA(cmsg) as *const libc::in6_pktinfo).read_unaligned() };
            return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
        }
        cmsg = unsafe { libc::CMSG_NXTHDR(h, cmsg) };
    }
    None
}

/// Attaches the source address `from` to an outgoing message (no control data when
/// None: the kernel picks the source).
///
/// # Safety
/// `control` must outlive the use of `h`.
unsafe fn set_source(
    h: &mut libc::msghdr,
    control: &mut [u64; CONTROL_WORDS],
    from: Option<IpAddr>,
) {
    let Some(from) = from else {
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        return;
    };
    *control = [0; CONTROL_WORDS];
    h.msg_control = control.as_mut_ptr().cast();
    h.msg_controllen = std::mem::size_of_val(control);
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(h);
        match from {
            IpAddr::V4(a) => {
                let size = std::mem::size_of::<libc::in_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
                let mut info: libc::in_pktinfo = std::mem::zeroed();
                info.ipi_spec_dst.s_addr = u32::from(a).to_be();
                (libc::CMSG_DATA(cmsg) as *mut libc::in_pktinfo).write_unaligned(info);
                h.msg_controllen = libc::CMSG_SPACE(size) as _;
            }
            IpAddr::V6(a) => {
                let size = std::mem::size_of::<libc::in6_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
                let mut info: libc::in6_pktinfo = std::mem::zeroed();
                info.ipi6_addr.s6_addr = a.octets();
                (libc::CMSG_DATA(cmsg) as *mut libc::in6_pktinfo).write_unaligned(info);
                h.msg_controllen = libc::CMSG_SPACE(size) as _;
            }
        }
    }
}

fn from_socket_addr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: plain old data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(sin.sin_addr.s_addr).into(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
