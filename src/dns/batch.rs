//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)` (Linux), so one system call moves
//! up to [`BATCH`] datagrams each way. The only unsafe code of the DNS server lives
//! here; the buffers are owned by [`Batch`] and outlive every call that points at
//! them.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram received (anything longer is truncated by the kernel, and then
/// fails to parse: FORMERR, as for any malformed request).
const MAX_DATAGRAM: usize = 4096;

/// Receive and send buffers for one thread.
pub struct Batch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    /// Datagrams received by the last [`Batch::recv`].
    count: usize,
    /// Replies queued for [`Batch::send`]: (bytes, destination).
    out: Vec<(Vec<u8>, libc::sockaddr_storage, libc::socklen_t)>,
    out_used: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            lens: vec![0; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            count: 0,
            out: (0..BATCH)
                .map(|_| (Vec::with_capacity(1232), unsafe { std::mem::zeroed() }, 0))
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
            .map(|(iov, addr)| {
                // SAFETY: msghdr is plain old data; the fields set below are all used.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = iov;
                h.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: every pointer in `hdrs` refers to `iovs`, `self.bufs` or
        // `self.addrs`, which live until after the call; the lengths match.
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
        for (len, h) in self.lens.iter_mut().zip(&hdrs).take(self.count) {
            *len = (h.msg_len as usize).min(MAX_DATAGRAM);
        }
        Ok(self.count)
    }

    /// Calls `f` with each datagram of the last [`Batch::recv`], its sender and an
    /// empty reply buffer; when `f` returns true the buffer is queued for
    /// [`Batch::send`] to that sender.
    pub fn for_each(&mut self, mut f: impl FnMut(&[u8], SocketAddr, &mut Vec<u8>) -> bool) {
        self.out_used = 0;
        for i in 0..self.count {
            let Some(src) = to_socket_addr(&self.addrs[i]) else {
                continue;
            };
            let slot = &mut self.out[self.out_used];
            slot.0.clear();
            if f(&self.bufs[i][..self.lens[i]], src, &mut slot.0) {
                slot.1 = self.addrs[i];
                slot.2 = match src {
                    SocketAddr::V4(_) => std::mem::size_of::<libc::sockaddr_in>(),
                    SocketAddr::V6(_) => std::mem::size_of::<libc::sockaddr_in6>(),
                } as libc::socklen_t;
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
            .map(|(b, _, _)| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(self.out[..used].iter_mut())
            .map(|(iov, (_, addr, len))| {
                // SAFETY: plain old data, as in `recv`.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = *len;
                h.msg_iov = iov;
                h.msg_iovlen = 1;
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
