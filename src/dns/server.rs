//! From a request's bytes to a response's (RFC 1035 4.1, EDNS(0) RFC 6891), and the
//! UDP and TCP listeners (RFC 1035 4.2, RFC 7766).
//!
//! Implementation notes
//! - UDP is served by [`UDP_THREADS`] blocking threads sharing one socket per
//!   address (so every thread takes whatever arrives: per-thread SO_REUSEPORT sockets
//!   pin each client flow to one thread and measured slower); TCP by tokio tasks. Forwarded queries are handed to the tokio
//!   runtime so a slow upstream never holds a UDP thread. The threads wake every
//!   [`UDP_POLL`] to look at their instance's stop flag, so a stopped service (see
//!   `supervise`) lets its sockets go.
//! - Response cache (UDP): a well-formed query (one question, no compression in it,
//!   at most an OPT record) is looked up by its bytes after the ID, with the name
//!   lowercased, plus the client's policy. A hit is the stored response with the
//!   query's ID and question bytes (same length, so compression pointers into the
//!   question stay valid, and the client's case is echoed). Every answer that depends
//!   only on those (all but forwarded ones) is stored. Each UDP thread has its own
//!   cache (no lock on the hot path); a generation counter bumped when the zones
//!   change empties them, as does reaching [`CACHE_ENTRIES`] or [`CACHE_BYTES`]
//!   (questions are the client's to choose: without a byte bound, large responses to
//!   distinct questions could hold tens of MB per thread).
//! - Size: over UDP a response fits the client's EDNS payload (at least 512, at most
//!   [`EDNS_PAYLOAD`]) or 512 without EDNS. What does not fit loses the additional
//!   section first, then the answer and authority sections with TC set (RFC 2181 9).
//! - Bounds: at most `dns.max_forwards` forwarded questions wait for an upstream at
//!   once (past it SERVFAIL at once, over UDP and TCP); TCP has [`TCP_MAX`]
//!   connections, `dns.max_tcp_per_ip` from one address (more are closed at once).
//! - Bad input never takes the server down: unparsable requests with a readable
//!   header get FORMERR, shorter ones and responses are dropped; a panic while
//!   handling one request is caught and logged.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RecordType, SerialNumber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Zones;
use super::batch::{self, Batch};
use super::forward::Forwarder;
use super::zone::Answer;
use crate::config::DnsConfig;
use crate::supervise::{Run, until_first_ends};
use tokio::task::JoinSet;

/// Sets its flag when dropped: an instance's UDP threads stop with it.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// UDP sockets (and threads) per listen address.
pub const UDP_THREADS: usize = 2;
/// The EDNS payload size we advertise and honour at most (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;
/// How often a UDP thread looks whether its instance was stopped or wedged.
const UDP_POLL: Duration = Duration::from_millis(250);
/// Entries in the response cache before it is emptied.
const CACHE_ENTRIES: usize = 20_000;
/// Bytes of keys and responses in one thread's response cache before it is emptied.
const CACHE_BYTES: usize = 2 << 20;
/// A TCP connection idle this long is closed (RFC 7766 6.2.3).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Concurrent TCP connections.
const TCP_MAX: usize = 256;
/// How long the forwarder waits for each upstream.
const FORWARD_TIMEOUT: Duration = Duration::from_millis(1500);

pub struct Server {
    cfg: DnsConfig,
    zones: Arc<RwLock<Arc<Zones>>>,
    forwarder: Arc<Forwarder>,
    /// Forwarded questions waiting for an upstream (`dns.max_forwards`).
    forwards: Arc<tokio::sync::Semaphore>,
    /// TCP connections per client address (`dns.max_tcp_per_ip`).
    tcp_per_ip: Arc<crate::perip::PerIp>,
    /// Bumped when the zones change; the UDP threads' caches follow it.
    generation: AtomicU64,
}

/// What to do with a request.
enum Outcome {
    Reply(Vec<u8>),
    /// Ask the forwarder; the response must fit `max` bytes.
    Forward(Message, usize),
    /// A zone transfer: these messages, in order (TCP only).
    Transfer(Vec<Vec<u8>>),
    Drop,
}

impl Server {
    pub fn new(cfg: DnsConfig, zones: Arc<RwLock<Arc<Zones>>>) -> Arc<Server> {
        let forwarder = Arc::new(Forwarder::new(cfg.forwarders.clone(), FORWARD_TIMEOUT));
        Arc::new(Server {
            forwards: Arc::new(tokio::sync::Semaphore::new(cfg.max_forwards)),
            tcp_per_ip: crate::perip::PerIp::new(cfg.max_tcp_per_ip),
            cfg,
            zones,
            forwarder,
            generation: AtomicU64::new(0),
        })
    }

    /// The bytes this server would send for one query, computed as the UDP and TCP
    /// paths compute them but without a socket (a forwarded query is encoded as the
    /// reply it would carry). The fuzz target's entry (`crate::fuzz`).
    #[doc(hidden)]
    pub fn answer_bytes(&self, pkt: &[u8], src: IpAddr, recursion: bool, tcp: bool) -> usize {
        match self.handle_guarded(pkt, src, recursion, tcp) {
            Outcome::Reply(r) => r.len(),
            Outcome::Forward(msg, max) => fit(msg, max).len(),
            Outcome::Transfer(msgs) => msgs.iter().map(Vec::len).sum(),
            Outcome::Drop => 0,
        }
    }

    /// Forgets cached responses (the zones changed).
    pub fn zones_changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// One instance of the DNS service (see `supervise`): binds UDP and TCP on every
    /// address and serves until the returned future is dropped. UDP is served by
    /// threads that notice the drop within [`UDP_POLL`] and let their sockets go.
    pub async fn listen(self: Arc<Self>, addrs: &[SocketAddr], run: Run) -> Result<()> {
        let rt = tokio::runtime::Handle::current();
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let mut tcp = JoinSet::new();
        for &addr in addrs {
            let shared = Arc::new(
                udp_socket(addr)
                    .with_context(|| format!("dns.listen: cannot listen on {addr} (UDP)"))?,
            );
            for i in 0..UDP_THREADS {
                let sock = shared.clone();
                let srv = self.clone();
                let rt = rt.clone();
                let (run, stop) = (run.clone(), stop.0.clone());
                std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || srv.serve_udp(sock, rt, run, stop))
                    .context("dns: starting a UDP thread")?;
            }
            let listener = crate::ctx::bind(addr, "dns.listen").await?;
            let srv = self.clone();
            tcp.spawn(srv.serve_tcp(listener, run.clone()));
        }
        run.ready();
        let r = until_first_ends(tcp).await;
        drop(stop);
        r
    }

    fn serve_udp(
        self: Arc<Self>,
        sock: Arc<std::net::UdpSocket>,
        rt: tokio::runtime::Handle,
        run: Run,
        stop: Arc<AtomicBool>,
    ) {
        let mut batch = Batch::default();
        let mut cache = ResponseCache::default();
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if run.wedged() {
                std::thread::sleep(UDP_POLL);
                continue;
            }
            if let Err(e) = batch.recv(&*sock) {
                // The read timeout (time to look at `stop`), or an ICMP error for an
                // earlier reply; the socket is fine.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    tracing::debug!("dns: udp receive: {e}");
                }
                continue;
            }
            if run.wedged() {
                // Wedged while this thread waited in recv: what it read goes unanswered.
                continue;
            }
            let generation = self.generation.load(Ordering::Acquire);
            let mut queries = 0u64;
            batch.for_each(|pkt, src, dst, out| {
                queries += 1;
                let recursion = self.cfg.may_recurse(src.ip());
                if cache.hit(generation, pkt, recursion, out) {
                    return true;
                }
                match self.handle_guarded(pkt, src.ip(), recursion, false) {
                    Outcome::Reply(resp) => {
                        cache.store(&resp);
                        out.extend_from_slice(&resp);
                        true
                    }
                    Outcome::Forward(msg, max) => {
                        let Ok(seat) = self.forwards.clone().try_acquire_owned() else {
                            out.extend_from_slice(&busy(&msg, max));
                            return true;
                        };
                        let (fwd, sock) = (self.forwarder.clone(), sock.clone());
                        // Holds the instance (and so its socket) until it answers: a
                        // restart binds again only once the socket is closed.
                        let lease = run.clone();
                        rt.spawn(async move {
                            let _lease = lease;
                            let _seat = seat;
                            let resp = fit(fwd.resolve(&msg).await, max);
                            let _ = batch::send_one(&*sock, &resp, src, dst);
                        });
                        false
                    }
                    Outcome::Transfer(_) | Outcome::Drop => false,
                }
            });
            // One shared counter update per batch (`/metrics`), not per query.
            crate::ctx::REQUESTS
                .dns
                .fetch_add(queries, std::sync::atomic::Ordering::Relaxed);
            batch.send(&*sock);
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: tokio::net::TcpListener, run: Run) {
        let limit = Arc::new(tokio::sync::Semaphore::new(TCP_MAX));
        loop {
            let Ok((stream, peer)) = run.gate(listener.accept()).await else {
                continue;
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let Some(slot) = self.tcp_per_ip.try_acquire(peer.ip()) else {
                drop(stream);
                continue;
            };
            let srv = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _slot = slot;
                if let Err(e) = srv.tcp_connection(stream, peer.ip()).await {
                    tracing::debug!(%peer, "dns: tcp: {e}");
                }
            });
        }
    }

    async fn tcp_connection(&self, mut stream: tokio::net::TcpStream, peer: IpAddr) -> Result<()> {
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return Ok(()),
            }
            let mut pkt = vec![0u8; u16::from_be_bytes(len) as usize];
            tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut pkt)).await??;
            crate::ctx::count(&crate::ctx::REQUESTS.dns);
            let replies = match self.handle_guarded(&pkt, peer, self.cfg.may_recurse(peer), true) {
                Outcome::Reply(r) => vec![r],
                Outcome::Forward(msg, max) => match self.forwards.clone().try_acquire_owned() {
                    Ok(_seat) => vec![fit(self.forwarder.resolve(&msg).await, max)],
                    Err(_) => vec![busy(&msg, max)],
                },
                Outcome::Transfer(msgs) => msgs,
                Outcome::Drop => Vec::new(),
            };
            for r in replies {
                let mut out = Vec::with_capacity(r.len() + 2);
                out.extend_from_slice(&(r.len() as u16).to_be_bytes());
                out.extend_from_slice(&r);
                tokio::time::timeout(TCP_IDLE, stream.write_all(&out)).await??;
            }
        }
    }

    /// [`Self::answer`], with a panic turned into a dropped request.
    fn handle_guarded(&self, pkt: &[u8], src: IpAddr, recursion: bool, tcp: bool) -> Outcome {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.answer(pkt, src, recursion, tcp)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(%src, "dns: internal error on a request; dropped");
            Outcome::Drop
        })
    }

    fn answer(&self, pkt: &[u8], src: IpAddr, recursion: bool, tcp: bool) -> Outcome {
        let req = match Message::from_vec(pkt) {
            Ok(m) => m,
            Err(_) => return formerr_from_header(pkt),
        };
        if req.metadata.message_type == MessageType::Response {
            return Outcome::Drop;
        }
        let max = if tcp {
            u16::MAX as usize
        } else {
            req.edns
                .as_ref()
                .map_or(512, |e| e.max_payload().clamp(512, EDNS_PAYLOAD) as usize)
        };
        let reply = |rcode: ResponseCode, aa: bool, ans: Answer| {
            Outcome::Reply(response(&req, rcode, aa, recursion, ans, max))
        };
        match req.metadata.op_code {
            OpCode::Query => {}
            // We are the primary: NOTIFY (RFC 1996) is not for us.
            OpCode::Notify => return reply(ResponseCode::Refused, false, Answer::default()),
            _ => return reply(ResponseCode::NotImp, false, Answer::default()),
        }
        if req.queries.len() != 1 {
            return reply(ResponseCode::FormErr, false, Answer::default());
        }
        if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 6.1.3.
            return reply(ResponseCode::BADVERS, false, Answer::default());
        }
        let q = &req.queries[0];
        let qname = LowerName::new(q.name());
        let qtype = q.query_type();
        if q.query_class() != DNSClass::IN {
            return reply(ResponseCode::Refused, false, Answer::default());
        }
        let zones = self.zones.read().unwrap_or_else(|e| e.into_inner()).clone();
        let zone = zones.find(&qname);
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // RFC 5936 4.2: transfers only over TCP, of a zone we hold, to allowed peers.
            if !tcp {
                return reply(ResponseCode::NotImp, false, Answer::default());
            }
            let Some(zone) = zone.filter(|z| *z.origin() == qname) else {
                return reply(ResponseCode::NotAuth, false, Answer::default());
            };
            if !self.cfg.may_transfer(src) {
                return reply(ResponseCode::Refused, false, Answer::default());
            }
            return Outcome::Transfer(transfer(&req, zone));
        }
        let Some(zone) = zone else {
            if recursion && req.metadata.recursion_desired {
                return Outcome::Forward(req, max);
            }
            return reply(ResponseCode::Refused, false, Answer::default());
        };
        let ans = zone.answer(&qname, qtype);
        reply(ans.rcode, true, ans)
    }
}

/// The UDP socket on `addr`.
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // An address this node does not hold yet (the virtual IP on the standby) can be
    // bound all the same.
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
        sock.set_freebind_v6(true)?;
    } else {
        sock.set_freebind_v4(true)?;
    }
    sock.bind(&addr.into())?;
    let sock: std::net::UdpSocket = sock.into();
    // The UDP threads look at their stop flag this often.
    sock.set_read_timeout(Some(UDP_POLL))?;
    // Replies leave from the address each query was sent to (the virtual IP too).
    batch::enable_destination_info(&sock, addr.is_ipv6())?;
    Ok(sock)
}

/// One UDP thread's cache of encoded responses.
#[derive(Default)]
struct ResponseCache {
    generation: u64,
    map: HashMap<Vec<u8>, Vec<u8>>,
    /// Bytes of keys and responses in `map`.
    bytes: usize,
    /// The key of the last query looked up, when it was cacheable.
    key: Vec<u8>,
    cacheable: bool,
}

impl ResponseCache {
    /// Puts the cached response to `pkt` into `out` and returns true, or prepares
    /// [`Self::store`] for the response computed instead.
    fn hit(&mut self, generation: u64, pkt: &[u8], recursion: bool, out: &mut Vec<u8>) -> bool {
        if generation != self.generation {
            self.map.clear();
            self.bytes = 0;
            self.generation = generation;
        }
        self.cacheable = false;
        let Some(qend) = plain_question_end(pkt) else {
            return false;
        };
        self.key.clear();
        self.key.push(recursion as u8);
        self.key.extend_from_slice(&pkt[1..]);
        // key[i + 1] is pkt[i]: lowercase the name, and drop the ID's second byte.
        self.key[13..qend + 1].make_ascii_lowercase();
        self.key[1] = 0;
        self.cacheable = true;
        let Some(stored) = self.map.get(self.key.as_slice()) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(stored);
        out[..2].copy_from_slice(&pkt[..2]);
        out[12..qend].copy_from_slice(&pkt[12..qend]);
        true
    }

    /// Keeps `resp` for the query last passed to [`Self::hit`], if it was cacheable.
    fn store(&mut self, resp: &[u8]) {
        if !self.cacheable {
            return;
        }
        let size = self.key.len() + resp.len();
        if self.map.len() >= CACHE_ENTRIES || self.bytes + size > CACHE_BYTES {
            self.map.clear();
            self.bytes = 0;
        }
        if let Some(old) = self.map.insert(self.key.clone(), resp.to_vec()) {
            self.bytes -= self.key.len() + old.len();
        }
        self.bytes += size;
    }
}

/// Where the question name of a plain query ends; None for anything unusual (those
/// are never cached).
fn plain_question_end(pkt: &[u8]) -> Option<usize> {
    if pkt.len() < 17 || pkt.len() > 512 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([pkt[i], pkt[i + 1]]);
    // QR = 0, opcode QUERY; one question; at most one additional (OPT).
    if pkt[2] & 0xf8 != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut pos = 12;
    loop {
        let len = *pkt.get(pos)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        pos += 1 + len;
        if len == 0 {
            break;
        }
        if pos > 12 + 255 {
            return None;
        }
    }
    (pos + 4 <= pkt.len()).then_some(pos)
}

/// FORMERR for a request whose header can be read (RFC 1035 4.1.1); otherwise drop.
fn formerr_from_header(pkt: &[u8]) -> Outcome {
    if pkt.len() < 12 || pkt[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let mut resp = vec![0u8; 12];
    resp[..2].copy_from_slice(&pkt[..2]);
    // QR, the opcode and RD from the request; RCODE 1.
    resp[2] = 0x80 | (pkt[2] & 0x79);
    resp[3] = ResponseCode::FormErr.low();
    Outcome::Reply(resp)
}

fn base_response(req: &Message, rcode: ResponseCode, aa: bool, ra: bool) -> Message {
    let mut m = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    m.metadata.authoritative = aa;
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = ra;
    m.metadata.checking_disabled = req.metadata.checking_disabled;
    m.metadata.response_code = rcode;
    m.queries = req.queries.clone();
    if let Some(e) = &req.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        edns.set_version(0);
        edns.set_dnssec_ok(e.flags().dnssec_ok);
        m.set_edns(edns);
    }
    m
}

/// The response for `req`, made to fit `max` bytes.
fn response(
    req: &Message,
    rcode: ResponseCode,
    aa: bool,
    ra: bool,
    ans: Answer,
    max: usize,
) -> Vec<u8> {
    let mut m = base_response(req, rcode, aa, ra);
    m.answers = ans.answers;
    m.authorities = ans.authorities;
    m.additionals = ans.additionals;
    fit(m, max)
}

/// The answer to a question to forward while `dns.max_forwards` are already waiting:
/// SERVFAIL at once (the client tries again or asks another server), never a queue.
fn busy(req: &Message, max: usize) -> Vec<u8> {
    response(
        req,
        ResponseCode::ServFail,
        false,
        true,
        Answer::default(),
        max,
    )
}

/// Encodes `m` within `max` bytes: without the additional section if needed, then
/// with TC and no records (RFC 2181 9).
fn fit(mut m: Message, max: usize) -> Vec<u8> {
    let mut bytes = m.to_vec().unwrap_or_default();
    if bytes.len() > max && !m.additionals.is_empty() {
        m.additionals.clear();
        bytes = m.to_vec().unwrap_or_default();
    }
    if bytes.len() > max {
        m.answers.clear();
        m.authorities.clear();
        m.metadata.truncation = true;
        bytes = m.to_vec().unwrap_or_default();
    }
    bytes
}

/// A zone transfer (RFC 5936 2.2): the records in order, several per message. An
/// IXFR (RFC 1995) from a client that already has our serial gets the SOA alone
/// (RFC 1995 4); any other IXFR gets the whole zone, as we keep no history.
fn transfer(req: &Message, zone: &super::Zone) -> Vec<Vec<u8>> {
    const PER_MESSAGE: usize = 100;
    let client_serial = req.authorities.iter().find_map(|r| match &r.data {
        hickory_proto::rr::RData::SOA(soa) => Some(soa.serial),
        _ => None,
    });
    let ixfr = req.queries[0].query_type() == RecordType::IXFR;
    let up_to_date = ixfr
        && client_serial.is_some_and(|c| SerialNumber::new(c) >= SerialNumber::new(zone.serial()));
    let records = if up_to_date {
        zone.soa().cloned().into_iter().collect()
    } else {
        zone.transfer()
    };
    tracing::info!(zone = %zone.origin(), records = records.len(), "dns: zone transfer");
    records
        .chunks(PER_MESSAGE)
        .map(|chunk| {
            let mut m = base_response(req, ResponseCode::NoError, true, false);
            m.answers = chunk.to_vec();
            m.to_vec().unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_cache_matches_any_id_and_case_and_echoes_the_query() {
        // id 0x1234, RD, one question: Www.Cluster.com.ec A IN.
        let query = |id: u8, name: [&str; 4]| {
            let mut q = vec![id, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in name {
                q.push(label.len() as u8);
                q.extend_from_slice(label.as_bytes());
            }
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            q
        };
        let q1 = query(0x12, ["Www", "Cluster", "com", "ec"]);
        let mut cache = ResponseCache::default();
        let mut out = Vec::new();
        assert!(!cache.hit(0, &q1, false, &mut out));
        let mut resp = q1.clone();
        resp[2] |= 0x80;
        resp.extend_from_slice(b"answer");
        cache.store(&resp);
        // Another ID and case: a hit carrying the new ID and the new case.
        let q2 = query(0x99, ["WWW", "cluster", "COM", "ec"]);
        assert!(cache.hit(0, &q2, false, &mut out));
        assert_eq!(&out[..2], &q2[..2]);
        assert_eq!(&out[12..q2.len() - 4], &q2[12..q2.len() - 4]);
        assert!(out.ends_with(b"answer"));
        // Another policy, or a new generation of zones: a miss.
        assert!(!cache.hit(0, &q2, true, &mut out));
        assert!(!cache.hit(1, &q2, false, &mut out));
        // A response (QR) or a compressed name is never cached.
        let mut qr = q1.clone();
        qr[2] |= 0x80;
        assert!(plain_question_end(&qr).is_none());
        let mut ptr = q1.clone();
        ptr[12] = 0xc0;
        assert!(plain_question_end(&ptr).is_none());
    }

    #[test]
    fn response_cache_holds_at_most_its_byte_budget() {
        // Distinct questions (any stranger can send them) with the largest UDP
        // responses: the cache must stay within CACHE_BYTES, not CACHE_ENTRIES of them.
        let mut cache = ResponseCache::default();
        let mut out = Vec::new();
        let mut most = 0;
        for i in 0..10_000u32 {
            let mut q = vec![1, 2, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 8];
            q.extend_from_slice(format!("{i:08}").as_bytes());
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            assert!(!cache.hit(0, &q, false, &mut out));
            let mut resp = q.clone();
            resp.resize(EDNS_PAYLOAD as usize, 0);
            cache.store(&resp);
            let held: usize = cache.map.iter().map(|(k, v)| k.len() + v.len()).sum();
            most = most.max(held);
        }
        assert!(most <= CACHE_BYTES, "held {most} bytes");
    }

    #[test]
    fn rfc1035_formerr_keeps_the_id_and_short_garbage_is_dropped() {
        let Outcome::Reply(r) =
            formerr_from_header(&[0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff])
        else {
            panic!("expected a reply")
        };
        assert_eq!(&r[..2], &[0xab, 0xcd]);
        assert_eq!(r[2] & 0x80, 0x80);
        assert_eq!(r[3] & 0x0f, 1);
        assert!(matches!(formerr_from_header(&[1, 2, 3]), Outcome::Drop));
    }
}
