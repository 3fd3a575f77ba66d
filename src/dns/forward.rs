//! Forwarding of questions outside our zones to upstream resolvers, with a
//! response cache.
//!
//! The DNS server hands a [`Forwarder`] the parsed request of a client that
//! may recurse (`dns.recursion_from`) when the question is not in one of our
//! zones. This module owns everything from there on: the upstream exchange
//! and the cache of upstream answers. Listening, access control, truncation
//! to the client's UDP payload size and EDNS version checks stay with the
//! server.
//!
//! # Rules
//!
//! * RFC 1035 7 (resolver implementation): upstreams are tried in the
//!   configured order, each with its own timeout. A query goes out over UDP
//!   from a fresh socket on an ephemeral port with a random id and an EDNS0
//!   OPT record advertising a 1232-byte payload (DNS flag day 2020). A reply
//!   counts only if it comes from the upstream's address, carries the id we
//!   sent and repeats our question; anything else (spoofed, stale or
//!   malformed datagrams) is dropped and we keep waiting until the timeout.
//!   A truncated (TC) UDP reply is retried over TCP to the same upstream.
//! * Only NOERROR and NXDOMAIN replies are used. SERVFAIL, REFUSED and
//!   every other rcode mean "try the next upstream". When none gives a usable
//!   reply the client gets SERVFAIL; with no upstreams configured it gets
//!   SERVFAIL at once.
//! * The response to the client has the client's id, RD copied, RA set, AA
//!   clear, and the question exactly as the client wrote it (case preserved).
//!   It carries an OPT record when the request did.
//! * Positive answers are cached for the smallest TTL among the answer RRs
//!   (RFC 2181 5.2: an RRset has one TTL; use the lowest).
//! * Negative answers (NXDOMAIN, and NODATA: NOERROR without an RR of the
//!   asked type) are cached for min(SOA TTL, SOA MINIMUM) of the SOA in the
//!   authority section (RFC 2308 3 and 5); the SOA is returned with that TTL.
//!   Without a SOA a negative answer is passed on but not cached (RFC 2308 5).
//! * A cached response is served with every TTL decremented by the whole
//!   seconds it spent in the cache (RFC 1035 3.2.1, RFC 2181 5.2 / 8).
//!
//! # Invariants
//!
//! * The cache key is (lowercased qname, qtype, qclass); the DO bit is not
//!   part of it because upstream queries never set DO.
//! * The cache only holds NOERROR/NXDOMAIN data with a lifetime above zero,
//!   never more than `MAX_TTL` (or `MAX_NEGATIVE_TTL` for negative data),
//!   and never more than `CACHE_CAPACITY` entries: when full, expired
//!   entries are dropped first, then the oldest.
//! * TTLs with the top bit set count as zero (RFC 2181 8).
//! * No lock is held across an `.await`; a poisoned lock is recovered, and
//!   nothing an upstream sends can make this module panic.
//! * Concurrent identical questions that miss the cache share one upstream
//!   exchange.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::{debug, warn};

/// EDNS0 UDP payload size we advertise, upstream and to clients.
const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer for upstream UDP replies (larger than we advertise, so an
/// oversized reply is still read whole and checked).
const UDP_RECV_BUF: usize = 4096;
/// Maximum number of cached responses.
const CACHE_CAPACITY: usize = 10_000;
/// Cap on any TTL we pass on or cache (one day).
const MAX_TTL: u32 = 86_400;
/// Cap on how long a negative answer is cached (RFC 2308 5: one to three
/// hours is a reasonable maximum).
const MAX_NEGATIVE_TTL: u32 = 10_800;
/// How often a full cache may be scanned for expired entries.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// Forwards questions to upstream resolvers and caches their answers.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    cache: Mutex<Cache>,
    inflight: Mutex<HashMap<Key, Arc<Flight>>>,
    hits: AtomicU64,
}

impl Forwarder {
    /// `upstreams` are tried in order; `timeout` per attempt.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: std::time::Duration) -> Self {
        Self {
            upstreams,
            timeout,
            cache: Mutex::new(Cache::new(CACHE_CAPACITY)),
            inflight: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
        }
    }

    /// The response to `query` (a parsed client request with one question):
    /// from the cache when fresh (TTLs decremented by the time spent in the
    /// cache, RFC 1035 / RFC 2181 5.2), else from the first upstream that
    /// answers (UDP with EDNS0 payload 1232; on TC retry that upstream over
    /// TCP). The response has the query's id, RD copied, RA set, the question
    /// as the client wrote it (case preserved). Rcodes NOERROR/NXDOMAIN from
    /// upstream are cached: positive answers for the minimum TTL of the
    /// answer RRs, negative ones (NXDOMAIN/NODATA) for min(SOA TTL, SOA
    /// MINIMUM) from the authority section (RFC 2308 5), not cached if no
    /// SOA. SERVFAIL/REFUSED from upstream are not cached: try the next
    /// upstream. When no upstream answers (timeouts, errors, all SERVFAIL)
    /// the result is a SERVFAIL response. With no upstreams configured:
    /// SERVFAIL at once.
    ///
    /// Requests that are not a standard query get NOTIMP, requests without
    /// exactly one question FORMERR, and zone transfer questions (AXFR, IXFR)
    /// REFUSED: those are not forwarded.
    pub async fn resolve(&self, query: &Message) -> Message {
        if query.op_code != OpCode::Query {
            return reply(query, ResponseCode::NotImp);
        }
        let [question] = query.queries.as_slice() else {
            return reply(query, ResponseCode::FormErr);
        };
        if query.message_type != MessageType::Query {
            return reply(query, ResponseCode::FormErr);
        }
        if matches!(question.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return reply(query, ResponseCode::Refused);
        }
        if self.upstreams.is_empty() {
            return reply(query, ResponseCode::ServFail);
        }

        let key = Key::of(question);
        let cached = lock(&self.cache).get(&key, Instant::now());
        if let Some((answer, age)) = cached {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return answer.response_to(query, age);
        }

        match self.fetch_shared(&key).await {
            Some(answer) => answer.response_to(query, 0),
            None => reply(query, ResponseCode::ServFail),
        }
    }

    /// Number of cache hits so far (for tests/metrics).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "for metrics; nothing reads it outside tests yet")
    )]
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Joins (or starts) the upstream exchange for `key`, so that concurrent
    /// identical questions cause one exchange.
    async fn fetch_shared(&self, key: &Key) -> Option<Arc<Answer>> {
        let seat = Seat::join(&self.inflight, key);
        seat.flight().get_or_init(|| self.fetch(key)).await.clone()
    }

    /// Asks the upstreams in order; caches and returns the first usable
    /// answer.
    async fn fetch(&self, key: &Key) -> Option<Arc<Answer>> {
        let question = key.question();
        for &upstream in &self.upstreams {
            match self.exchange(upstream, &question).await {
                Ok(message) => {
                    let answer = Answer::from_upstream(message, &question);
                    let answer = Arc::new(answer);
                    if let Some(ttl) = answer.lifetime(&question) {
                        lock(&self.cache).insert(key.clone(), answer.clone(), ttl, Instant::now());
                    }
                    return Some(answer);
                }
                Err(failure) => {
                    debug!(%upstream, question = %question, %failure, "dns: upstream failed");
                }
            }
        }
        warn!(question = %question, "dns: no upstream answered; SERVFAIL");
        None
    }

    /// One upstream: UDP, then TCP if the UDP reply was truncated. Only
    /// NOERROR and NXDOMAIN replies count as answers.
    async fn exchange(&self, upstream: SocketAddr, question: &Query) -> Result<Message, Failure> {
        let mut message = within(self.timeout, udp_exchange(upstream, question)).await?;
        if message.truncation {
            debug!(%upstream, question = %question, "dns: truncated over UDP; retrying over TCP");
            message = within(self.timeout, tcp_exchange(upstream, question)).await?;
            if message.truncation {
                return Err(Failure::Truncated);
            }
        }
        match message.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(message),
            rcode => Err(Failure::Rcode(rcode)),
        }
    }
}

/// Why an upstream attempt gave nothing usable.
#[derive(Debug)]
enum Failure {
    Timeout,
    Io(io::Error),
    Encode(String),
    Rcode(ResponseCode),
    Truncated,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Encode(e) => write!(f, "cannot encode query: {e}"),
            Failure::Rcode(rcode) => write!(f, "answered {rcode}"),
            Failure::Truncated => f.write_str("truncated over TCP"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

async fn within<T>(
    limit: Duration,
    attempt: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// A fresh upstream query for `question`: random id, RD set, EDNS0 with our
/// payload size, DO and CD clear.
fn upstream_query(question: &Query) -> Result<(u16, Vec<u8>), Failure> {
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    message.set_edns(edns);
    let bytes = message
        .to_vec()
        .map_err(|e| Failure::Encode(e.to_string()))?;
    Ok((id, bytes))
}

/// Whether `reply` answers the query we sent with `id` for `question`.
fn is_reply_to(reply: &Message, id: u16, question: &Query) -> bool {
    reply.id == id
        && reply.message_type == MessageType::Response
        && reply.op_code == OpCode::Query
        && matches!(reply.queries.as_slice(), [q] if q.name() == question.name()
            && q.query_type() == question.query_type()
            && q.query_class() == question.query_class())
}

async fn udp_exchange(upstream: SocketAddr, question: &Query) -> Result<Message, Failure> {
    let (id, request) = upstream_query(question)?;
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected, so that an ICMP "port unreachable" fails the attempt at once
    // instead of after the timeout; the source is still checked below.
    socket.connect(upstream).await?;
    socket.send(&request).await?;
    let mut buf = vec![0; UDP_RECV_BUF];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        if from.ip() != upstream.ip() || from.port() != upstream.port() {
            debug!(%upstream, %from, "dns: ignoring datagram from another address");
            continue;
        }
        match Message::from_vec(&buf[..len]) {
            Ok(reply) if is_reply_to(&reply, id, question) => return Ok(reply),
            Ok(reply) => {
                debug!(%upstream, id = reply.id, "dns: ignoring reply that does not match our query")
            }
            Err(e) => debug!(%upstream, error = %e, "dns: ignoring malformed reply"),
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, question: &Query) -> Result<Message, Failure> {
    let (id, request) = upstream_query(question)?;
    let len = u16::try_from(request.len()).map_err(|e| Failure::Encode(e.to_string()))?;
    let mut framed = Vec::with_capacity(2 + request.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&request);
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&framed).await?;
    loop {
        let mut len = [0; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await?;
        match Message::from_vec(&buf) {
            Ok(reply) if is_reply_to(&reply, id, question) => return Ok(reply),
            Ok(reply) => {
                debug!(%upstream, id = reply.id, "dns: ignoring TCP reply that does not match our query")
            }
            Err(e) => debug!(%upstream, error = %e, "dns: ignoring malformed TCP reply"),
        }
    }
}

/// A response to `query` with no records: the query's id, opcode, RD and CD,
/// RA set, its question, and an OPT record if the query had one.
fn reply(query: &Message, rcode: ResponseCode) -> Message {
    let mut response = Message::response(query.id, query.op_code);
    response.metadata = Metadata::response_from_request(&query.metadata);
    response.metadata.recursion_available = true;
    response.metadata.response_code = rcode;
    response.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Cache key: lowercased qname, qtype, qclass.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
}

impl Key {
    fn of(question: &Query) -> Self {
        Self {
            name: question.name().to_lowercase(),
            qtype: question.query_type(),
            qclass: question.query_class(),
        }
    }

    /// The question we send upstream (lowercased, so that cached owner names
    /// do not carry one client's capitalisation to another).
    fn question(&self) -> Query {
        let mut query = Query::query(self.name.clone(), self.qtype);
        query.set_query_class(self.qclass);
        query
    }
}

/// The usable part of an upstream NOERROR/NXDOMAIN reply, TTLs normalised.
#[derive(Debug)]
struct Answer {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

/// RFC 2181 8: a TTL with the top bit set is zero; and ours are capped.
fn normalise_ttl(ttl: u32) -> u32 {
    if ttl > i32::MAX as u32 {
        0
    } else {
        ttl.min(MAX_TTL)
    }
}

impl Answer {
    fn from_upstream(mut message: Message, question: &Query) -> Self {
        let mut answer = Self {
            rcode: message.response_code,
            answers: std::mem::take(&mut message.answers),
            authorities: std::mem::take(&mut message.authorities),
            additionals: std::mem::take(&mut message.additionals),
        };
        for record in answer
            .answers
            .iter_mut()
            .chain(&mut answer.authorities)
            .chain(&mut answer.additionals)
        {
            record.ttl = normalise_ttl(record.ttl);
        }
        if answer.is_negative(question) {
            // RFC 2308 3: the SOA of a negative answer carries the negative
            // TTL, min(SOA TTL, SOA MINIMUM).
            for record in &mut answer.authorities {
                if let RData::SOA(soa) = &record.data {
                    record.ttl = record.ttl.min(soa.minimum);
                }
            }
        }
        answer
    }

    /// NXDOMAIN, or NODATA: NOERROR without an RR of the asked type.
    fn is_negative(&self, question: &Query) -> bool {
        if self.rcode != ResponseCode::NoError {
            return true;
        }
        let qtype = question.query_type();
        !self
            .answers
            .iter()
            .any(|r| qtype == RecordType::ANY || r.record_type() == qtype)
    }

    /// How long this answer may be cached, in seconds; `None` if not at all.
    fn lifetime(&self, question: &Query) -> Option<u32> {
        let answers_ttl = self.answers.iter().map(|r| r.ttl).min();
        let ttl = if self.is_negative(question) {
            let soa_ttl = self.negative_ttl(question)?;
            answers_ttl
                .map_or(soa_ttl, |t| t.min(soa_ttl))
                .min(MAX_NEGATIVE_TTL)
        } else {
            answers_ttl?
        };
        (ttl > 0).then_some(ttl)
    }

    /// RFC 2308 5: min(SOA TTL, SOA MINIMUM) of the authority section's SOA
    /// for the zone of the question (or of a CNAME target in the answer).
    fn negative_ttl(&self, question: &Query) -> Option<u32> {
        let relevant = |zone: &Name| {
            zone.zone_of(question.name())
                || self.answers.iter().any(|r| match &r.data {
                    RData::CNAME(target) => zone.zone_of(&target.0),
                    _ => false,
                })
        };
        self.authorities
            .iter()
            .find_map(|record| match &record.data {
                RData::SOA(soa) if relevant(&record.name) => Some(record.ttl.min(soa.minimum)),
                _ => None,
            })
    }

    /// The response to `query` from this answer, TTLs decremented by `age`
    /// seconds.
    fn response_to(&self, query: &Message, age: u32) -> Message {
        let aged = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    record.decrement_ttl(age);
                    record
                })
                .collect()
        };
        let mut response = reply(query, self.rcode);
        response.answers = aged(&self.answers);
        response.authorities = aged(&self.authorities);
        response.additionals = aged(&self.additionals);
        response
    }
}

/// One upstream exchange shared by concurrent identical questions.
type Flight = OnceCell<Option<Arc<Answer>>>;

/// A question's place in an in-flight exchange. Dropping it (also when the
/// caller's future is cancelled) takes the exchange out of the in-flight map
/// once it has finished or nobody else waits for it.
struct Seat<'a> {
    inflight: &'a Mutex<HashMap<Key, Arc<Flight>>>,
    key: Key,
    flight: Option<Arc<Flight>>,
}

impl<'a> Seat<'a> {
    fn join(inflight: &'a Mutex<HashMap<Key, Arc<Flight>>>, key: &Key) -> Self {
        let mut map = lock(inflight);
        let flight = match map.get(key) {
            // A finished flight is never joined: its answer may be aging.
            Some(flight) if !flight.initialized() => flight.clone(),
            _ => {
                let flight = Arc::new(Flight::new());
                map.insert(key.clone(), flight.clone());
                flight
            }
        };
        Self {
            inflight,
            key: key.clone(),
            flight: Some(flight),
        }
    }

    fn flight(&self) -> &Flight {
        self.flight.as_deref().expect("present until dropped")
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        // Counts change only under this lock (clones in `join`, drops here).
        let mut map = lock(self.inflight);
        if let Some(current) = map.get(&self.key)
            && Arc::ptr_eq(current, &flight)
            && (flight.initialized() || Arc::strong_count(&flight) == 2)
        {
            map.remove(&self.key);
        }
        drop(flight);
    }
}

struct Entry {
    answer: Arc<Answer>,
    stored: Instant,
    expires: Instant,
    seq: u64,
}

/// Bounded map of answers, with an index by insertion order.
struct Cache {
    entries: HashMap<Key, Entry>,
    /// Insertion sequence number to key, oldest first.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    capacity: usize,
    last_purge: Option<Instant>,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            last_purge: None,
        }
    }

    /// A fresh answer and its age in whole seconds; expired ones are dropped.
    fn get(&mut self, key: &Key, now: Instant) -> Option<(Arc<Answer>, u32)> {
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.remove(key);
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs();
        Some((entry.answer.clone(), u32::try_from(age).unwrap_or(u32::MAX)))
    }

    fn insert(&mut self, key: Key, answer: Arc<Answer>, ttl: u32, now: Instant) {
        self.remove(&key);
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        let expires = now + Duration::from_secs(u64::from(ttl));
        self.entries.insert(
            key,
            Entry {
                answer,
                stored: now,
                expires,
                seq,
            },
        );
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.seq);
        }
    }

    /// Frees at least one slot: expired entries first (scanning at most once
    /// per `PURGE_INTERVAL`), then the oldest.
    fn make_room(&mut self, now: Instant) {
        let due = self
            .last_purge
            .is_none_or(|last| now.duration_since(last) >= PURGE_INTERVAL);
        if due {
            self.last_purge = Some(now);
            let order = &mut self.order;
            self.entries.retain(|_, entry| {
                let fresh = entry.expires > now;
                if !fresh {
                    order.remove(&entry.seq);
                }
                fresh
            });
        }
        while self.entries.len() >= self.capacity {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, SOA};
    use std::net::Ipv4Addr;
    use std::str::FromStr;
    use std::sync::atomic::AtomicUsize;

    /// What a fake upstream does in reply to a request.
    enum Out {
        Send(Vec<u8>),
        Sleep(Duration),
    }

    type Handler = dyn Fn(&Message, bool) -> Vec<Out> + Send + Sync;

    /// A hand-written upstream on 127.0.0.1, UDP and TCP on the same port.
    struct Upstream {
        addr: SocketAddr,
        udp: Arc<AtomicUsize>,
        tcp: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<Message>>>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Drop for Upstream {
        fn drop(&mut self) {
            for task in &self.tasks {
                task.abort();
            }
        }
    }

    impl Upstream {
        /// `handler(request, over_tcp)` gives what to send back.
        async fn start(
            handler: impl Fn(&Message, bool) -> Vec<Out> + Send + Sync + 'static,
        ) -> Self {
            let handler: Arc<Handler> = Arc::new(handler);
            let (udp, tcp) = loop {
                let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let addr = udp.local_addr().unwrap();
                if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                    break (Arc::new(udp), tcp);
                }
            };
            let addr = udp.local_addr().unwrap();
            let udp_count = Arc::new(AtomicUsize::new(0));
            let tcp_count = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(Mutex::new(Vec::new()));

            let udp_task = {
                let (handler, count, seen) = (handler.clone(), udp_count.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 65_535];
                    loop {
                        let Ok((len, from)) = udp.recv_from(&mut buf).await else {
                            return;
                        };
                        let Ok(request) = Message::from_vec(&buf[..len]) else {
                            continue;
                        };
                        count.fetch_add(1, Ordering::SeqCst);
                        seen.lock().unwrap().push(request.clone());
                        let (udp, handler) = (udp.clone(), handler.clone());
                        tokio::spawn(async move {
                            for out in handler(&request, false) {
                                match out {
                                    Out::Send(bytes) => {
                                        let _ = udp.send_to(&bytes, from).await;
                                    }
                                    Out::Sleep(d) => tokio::time::sleep(d).await,
                                }
                            }
                        });
                    }
                })
            };
            let tcp_task = {
                let (handler, count, seen) = (handler.clone(), tcp_count.clone(), seen.clone());
                tokio::spawn(async move {
                    loop {
                        let Ok((mut stream, _)) = tcp.accept().await else {
                            return;
                        };
                        let (handler, count, seen) = (handler.clone(), count.clone(), seen.clone());
                        tokio::spawn(async move {
                            let mut len = [0; 2];
                            if stream.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
                            if stream.read_exact(&mut buf).await.is_err() {
                                return;
                            }
                            let Ok(request) = Message::from_vec(&buf) else {
                                return;
                            };
                            count.fetch_add(1, Ordering::SeqCst);
                            seen.lock().unwrap().push(request.clone());
                            for out in handler(&request, true) {
                                match out {
                                    Out::Send(bytes) => {
                                        let len = u16::try_from(bytes.len()).unwrap();
                                        let _ = stream.write_all(&len.to_be_bytes()).await;
                                        let _ = stream.write_all(&bytes).await;
                                    }
                                    Out::Sleep(d) => tokio::time::sleep(d).await,
                                }
                            }
                            // Keep the connection open until the client closes it.
                            let _ = stream.read(&mut [0; 1]).await;
                        });
                    }
                })
            };
            Self {
                addr,
                udp: udp_count,
                tcp: tcp_count,
                seen,
                tasks: vec![udp_task, tcp_task],
            }
        }

        fn udp_requests(&self) -> usize {
            self.udp.load(Ordering::SeqCst)
        }

        fn tcp_requests(&self) -> usize {
            self.tcp.load(Ordering::SeqCst)
        }
    }

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    /// A client request as the server would hand it over.
    fn client_query(qname: &str, qtype: RecordType) -> Message {
        let mut query = Message::new(0x1234, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name(qname), qtype));
        query
    }

    /// An upstream reply skeleton for `request`.
    fn response_to(request: &Message, rcode: ResponseCode) -> Message {
        let mut response = Message::response(request.id, OpCode::Query);
        response.metadata.recursion_desired = request.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.response_code = rcode;
        response.queries = request.queries.clone();
        response
    }

    fn a_record(owner: &Name, ip: Ipv4Addr, ttl: u32) -> Record {
        Record::from_rdata(owner.clone(), ttl, RData::A(A(ip)))
    }

    fn soa_record(zone: &str, ttl: u32, minimum: u32) -> Record {
        let soa = SOA::new(
            name(&format!("ns1.{zone}")),
            name(&format!("hostmaster.{zone}")),
            2024010101,
            7200,
            3600,
            1_209_600,
            minimum,
        );
        Record::from_rdata(name(zone), ttl, RData::SOA(soa))
    }

    fn bytes(message: &Message) -> Vec<u8> {
        message.to_vec().unwrap()
    }

    /// An upstream that answers every A question with 192.0.2.1 and `ttl`.
    async fn answering(ttl: u32) -> Upstream {
        Upstream::start(move |request, _| {
            let mut response = response_to(request, ResponseCode::NoError);
            let owner = request.queries[0].name().clone();
            if request.queries[0].query_type() == RecordType::A {
                response.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, 1), ttl));
            }
            vec![Out::Send(bytes(&response))]
        })
        .await
    }

    async fn silent() -> Upstream {
        Upstream::start(|_, _| Vec::new()).await
    }

    async fn rcode_only(rcode: ResponseCode) -> Upstream {
        Upstream::start(move |request, _| vec![Out::Send(bytes(&response_to(request, rcode)))])
            .await
    }

    fn answer_ip(response: &Message) -> Option<Ipv4Addr> {
        response.answers.iter().find_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn rfc1035_answer_is_forwarded_with_client_id_rd_ra_and_question_case() {
        let upstream = answering(300).await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        let mut query = client_query("A.Example.NET.", RecordType::A);
        query.set_edns(Edns::new());
        let response = forwarder.resolve(&query).await;

        assert_eq!(response.id, 0x1234);
        assert_eq!(response.message_type, MessageType::Response);
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert!(response.recursion_desired);
        assert!(response.recursion_available);
        assert!(!response.authoritative);
        assert!(!response.truncation);
        assert_eq!(response.queries.len(), 1);
        assert!(response.queries[0].name().eq_case(&name("A.Example.NET.")));
        assert_eq!(response.queries[0].query_type(), RecordType::A);
        assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(response.answers[0].ttl, 300);
        assert!(
            response.edns.is_some(),
            "OPT in request, so OPT in response"
        );
        // The response survives a round trip through the wire format.
        let wire = Message::from_vec(&bytes(&response)).unwrap();
        assert_eq!(wire.answers.len(), 1);

        // What went upstream: RD, EDNS0 with payload 1232, our question.
        let seen = upstream.seen.lock().unwrap()[0].clone();
        assert!(seen.recursion_desired);
        let edns = seen.edns.as_ref().expect("EDNS0 upstream");
        assert_eq!(edns.max_payload(), 1232);
        assert!(!edns.flags().dnssec_ok);
        assert_eq!(seen.queries[0].name(), &name("a.example.net."));

        // RD is copied, not forced; no OPT in the request, none in the response.
        let mut query = client_query("b.example.net.", RecordType::A);
        query.metadata.recursion_desired = false;
        let response = forwarder.resolve(&query).await;
        assert!(!response.recursion_desired);
        assert!(response.recursion_available);
        assert!(response.edns.is_none());
    }

    #[tokio::test]
    async fn rfc1035_cached_answer_is_served_with_ttl_decremented_by_time_in_cache() {
        let upstream = answering(300).await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        let first = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(first.answers[0].ttl, 300);
        assert_eq!(forwarder.cache_hits(), 0);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut query = client_query("A.EXAMPLE.net.", RecordType::A);
        query.metadata.id = 0x4321;
        let second = forwarder.resolve(&query).await;

        assert_eq!(forwarder.cache_hits(), 1);
        assert_eq!(upstream.udp_requests(), 1, "served from the cache");
        assert_eq!(second.id, 0x4321);
        assert!(second.recursion_available);
        assert!(second.queries[0].name().eq_case(&name("A.EXAMPLE.net.")));
        assert_eq!(answer_ip(&second), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(second.answers[0].ttl, 299);
    }

    #[tokio::test]
    async fn rfc1035_entry_is_refetched_once_its_ttl_expires() {
        let upstream = answering(1).await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));
        let query = client_query("a.example.net.", RecordType::A);

        forwarder.resolve(&query).await;
        forwarder.resolve(&query).await;
        assert_eq!(forwarder.cache_hits(), 1);
        assert_eq!(upstream.udp_requests(), 1);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let response = forwarder.resolve(&query).await;
        assert_eq!(upstream.udp_requests(), 2, "expired, so asked again");
        assert_eq!(forwarder.cache_hits(), 1);
        assert_eq!(response.answers[0].ttl, 1);
    }

    #[tokio::test]
    async fn rfc2181_cache_key_ignores_case_but_separates_types() {
        let upstream = answering(300).await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        forwarder
            .resolve(&client_query("A.Example.Net.", RecordType::A))
            .await;
        assert_eq!(forwarder.cache_hits(), 1);
        let aaaa = forwarder
            .resolve(&client_query("a.example.net.", RecordType::AAAA))
            .await;
        assert_eq!(forwarder.cache_hits(), 1, "AAAA is another key");
        assert_eq!(upstream.udp_requests(), 2);
        assert!(aaaa.answers.is_empty());
    }

    #[tokio::test]
    async fn rfc2181_lowest_ttl_of_the_answer_bounds_the_cache_lifetime() {
        let upstream = Upstream::start(|request, _| {
            let owner = request.queries[0].name().clone();
            let mut response = response_to(request, ResponseCode::NoError);
            response.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, 1), 300));
            response.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, 2), 1));
            vec![Out::Send(bytes(&response))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));
        let query = client_query("a.example.net.", RecordType::A);

        forwarder.resolve(&query).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        forwarder.resolve(&query).await;
        assert_eq!(upstream.udp_requests(), 2);
        assert_eq!(forwarder.cache_hits(), 0);
    }

    #[tokio::test]
    async fn rfc2181_ttl_with_top_bit_set_counts_as_zero_and_is_not_cached() {
        let upstream = answering(0x8000_0001).await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));
        let query = client_query("a.example.net.", RecordType::A);

        let response = forwarder.resolve(&query).await;
        assert_eq!(response.answers[0].ttl, 0);
        forwarder.resolve(&query).await;
        assert_eq!(upstream.udp_requests(), 2);
        assert_eq!(forwarder.cache_hits(), 0);
    }

    #[tokio::test]
    async fn rfc2308_nxdomain_is_cached_for_the_soa_minimum() {
        let upstream = Upstream::start(|request, _| {
            let mut response = response_to(request, ResponseCode::NXDomain);
            response.add_authority(soa_record("example.net.", 3600, 1));
            vec![Out::Send(bytes(&response))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));
        let query = client_query("Nope.Example.Net.", RecordType::A);

        let first = forwarder.resolve(&query).await;
        assert_eq!(first.response_code, ResponseCode::NXDomain);
        assert!(first.queries[0].name().eq_case(&name("Nope.Example.Net.")));
        assert!(first.answers.is_empty());
        assert_eq!(first.authorities.len(), 1);
        assert_eq!(first.authorities[0].ttl, 1, "RFC 2308 3: min(TTL, MINIMUM)");

        let second = forwarder.resolve(&query).await;
        assert_eq!(second.response_code, ResponseCode::NXDomain);
        assert_eq!(forwarder.cache_hits(), 1);
        assert_eq!(upstream.udp_requests(), 1);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let third = forwarder.resolve(&query).await;
        assert_eq!(third.response_code, ResponseCode::NXDomain);
        assert_eq!(
            upstream.udp_requests(),
            2,
            "negative entry expired after MINIMUM"
        );
    }

    #[tokio::test]
    async fn rfc2308_nodata_is_cached_for_the_soa_ttl_when_smaller_than_minimum() {
        let upstream = Upstream::start(|request, _| {
            let mut response = response_to(request, ResponseCode::NoError);
            response.add_authority(soa_record("example.net.", 300, 3600));
            vec![Out::Send(bytes(&response))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));
        let query = client_query("a.example.net.", RecordType::AAAA);

        let first = forwarder.resolve(&query).await;
        assert_eq!(first.response_code, ResponseCode::NoError);
        assert_eq!(first.authorities[0].ttl, 300);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second = forwarder.resolve(&query).await;
        assert_eq!(second.response_code, ResponseCode::NoError);
        assert!(second.answers.is_empty());
        assert_eq!(
            second.authorities[0].ttl, 299,
            "SOA TTL decremented in cache"
        );
        assert_eq!(forwarder.cache_hits(), 1);
        assert_eq!(upstream.udp_requests(), 1);
    }

    #[tokio::test]
    async fn rfc2308_negative_answer_without_soa_is_passed_on_but_not_cached() {
        let upstream = rcode_only(ResponseCode::NXDomain).await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));
        let query = client_query("nope.example.net.", RecordType::A);

        let first = forwarder.resolve(&query).await;
        assert_eq!(first.response_code, ResponseCode::NXDomain);
        let second = forwarder.resolve(&query).await;
        assert_eq!(second.response_code, ResponseCode::NXDomain);
        assert_eq!(upstream.udp_requests(), 2);
        assert_eq!(forwarder.cache_hits(), 0);
    }

    #[tokio::test]
    async fn rfc2308_soa_of_an_unrelated_zone_does_not_make_a_negative_answer_cacheable() {
        let upstream = Upstream::start(|request, _| {
            let mut response = response_to(request, ResponseCode::NXDomain);
            response.add_authority(soa_record("example.org.", 300, 300));
            vec![Out::Send(bytes(&response))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));
        let query = client_query("nope.example.net.", RecordType::A);

        forwarder.resolve(&query).await;
        forwarder.resolve(&query).await;
        assert_eq!(upstream.udp_requests(), 2);
    }

    #[tokio::test]
    async fn rfc1035_silent_upstream_falls_through_to_the_next() {
        let dead = silent().await;
        let live = answering(300).await;
        let forwarder = Forwarder::new(vec![dead.addr, live.addr], SHORT);

        let started = Instant::now();
        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(started.elapsed() >= SHORT);
        assert_eq!(dead.udp_requests(), 1);
        assert_eq!(live.udp_requests(), 1);
    }

    #[tokio::test]
    async fn rfc1035_all_upstreams_silent_gives_servfail_within_timeout_times_n() {
        let (one, two) = (silent().await, silent().await);
        let forwarder = Forwarder::new(vec![one.addr, two.addr], SHORT);
        let query = client_query("A.example.net.", RecordType::A);

        let started = Instant::now();
        let response = forwarder.resolve(&query).await;
        let elapsed = started.elapsed();
        assert_eq!(response.response_code, ResponseCode::ServFail);
        assert_eq!(response.id, 0x1234);
        assert!(response.recursion_available);
        assert!(response.queries[0].name().eq_case(&name("A.example.net.")));
        assert!(elapsed >= SHORT * 2, "{elapsed:?}");
        assert!(
            elapsed < SHORT * 2 + Duration::from_millis(500),
            "{elapsed:?}"
        );
        assert_eq!((one.udp_requests(), two.udp_requests()), (1, 1));
    }

    #[tokio::test]
    async fn rfc1035_unreachable_upstream_fails_over_without_waiting_for_the_timeout() {
        let closed = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let live = answering(300).await;
        let forwarder = Forwarder::new(vec![closed, live.addr], Duration::from_secs(3));

        let started = Instant::now();
        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn servfail_and_refused_are_not_cached_and_the_next_upstream_is_tried() {
        let failing = rcode_only(ResponseCode::ServFail).await;
        let refusing = rcode_only(ResponseCode::Refused).await;
        let live = answering(300).await;
        let forwarder = Forwarder::new(
            vec![failing.addr, refusing.addr, live.addr],
            Duration::from_secs(2),
        );
        let query = client_query("a.example.net.", RecordType::A);

        let started = Instant::now();
        let response = forwarder.resolve(&query).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no timeout involved"
        );
        assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(
            (
                failing.udp_requests(),
                refusing.udp_requests(),
                live.udp_requests()
            ),
            (1, 1, 1)
        );

        // Only SERVFAIL upstream: the client gets SERVFAIL, nothing is cached.
        let forwarder = Forwarder::new(vec![failing.addr], Duration::from_secs(2));
        for _ in 0..2 {
            let response = forwarder.resolve(&query).await;
            assert_eq!(response.response_code, ResponseCode::ServFail);
            assert!(response.answers.is_empty());
        }
        assert_eq!(failing.udp_requests(), 3);
        assert_eq!(forwarder.cache_hits(), 0);
    }

    #[test]
    fn resolve_future_is_send_so_the_server_can_spawn_it() {
        fn assert_send<T: Send>(_: &T) {}
        let forwarder = Forwarder::new(Vec::new(), SHORT);
        let query = client_query("a.example.net.", RecordType::A);
        assert_send(&forwarder.resolve(&query));
    }

    #[tokio::test]
    async fn no_upstreams_gives_servfail_at_once() {
        let forwarder = Forwarder::new(Vec::new(), Duration::from_secs(5));
        let started = Instant::now();
        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(response.response_code, ResponseCode::ServFail);
        assert_eq!(response.id, 0x1234);
        assert!(response.recursion_available);
    }

    #[tokio::test]
    async fn truncated_udp_reply_is_retried_over_tcp() {
        let upstream = Upstream::start(|request, over_tcp| {
            let owner = request.queries[0].name().clone();
            let mut response = response_to(request, ResponseCode::NoError);
            if over_tcp {
                for i in 1..=3 {
                    response.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, i), 300));
                }
            } else {
                response.metadata.truncation = true;
            }
            vec![Out::Send(bytes(&response))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        let response = forwarder
            .resolve(&client_query("big.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert!(!response.truncation);
        assert_eq!(response.answers.len(), 3);
        assert_eq!((upstream.udp_requests(), upstream.tcp_requests()), (1, 1));
    }

    #[tokio::test]
    async fn rfc1035_reply_with_wrong_id_question_or_garbage_is_ignored() {
        let upstream = Upstream::start(|request, _| {
            let owner = request.queries[0].name().clone();
            let bogus = Ipv4Addr::new(203, 0, 113, 66);

            let mut wrong_id = response_to(request, ResponseCode::NoError);
            wrong_id.metadata.id = request.id.wrapping_add(1);
            wrong_id.add_answer(a_record(&owner, bogus, 300));

            let mut wrong_question = response_to(request, ResponseCode::NoError);
            wrong_question.queries = vec![Query::query(name("evil.example.com."), RecordType::A)];
            wrong_question.add_answer(a_record(&name("evil.example.com."), bogus, 300));

            let mut not_a_response = response_to(request, ResponseCode::NoError);
            not_a_response.metadata.message_type = MessageType::Query;
            not_a_response.add_answer(a_record(&owner, bogus, 300));

            let mut right = response_to(request, ResponseCode::NoError);
            right.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, 1), 300));

            vec![
                Out::Send(vec![0xde, 0xad, 0xbe, 0xef]),
                Out::Send(bytes(&wrong_id)),
                Out::Send(bytes(&wrong_question)),
                Out::Send(bytes(&not_a_response)),
                Out::Sleep(Duration::from_millis(50)),
                Out::Send(bytes(&right)),
            ]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert_eq!(response.answers.len(), 1);
        assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[tokio::test]
    async fn wrong_id_only_times_out_into_servfail() {
        let upstream = Upstream::start(|request, _| {
            let mut wrong_id = response_to(request, ResponseCode::NoError);
            wrong_id.metadata.id = request.id.wrapping_add(1);
            vec![Out::Send(bytes(&wrong_id))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], SHORT);
        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn concurrent_identical_queries_share_one_upstream_exchange() {
        let upstream = Upstream::start(|request, _| {
            let owner = request.queries[0].name().clone();
            let mut response = response_to(request, ResponseCode::NoError);
            response.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, 1), 300));
            vec![
                Out::Sleep(Duration::from_millis(200)),
                Out::Send(bytes(&response)),
            ]
        })
        .await;
        let forwarder = Arc::new(Forwarder::new(vec![upstream.addr], Duration::from_secs(2)));

        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let forwarder = forwarder.clone();
                tokio::spawn(async move {
                    let mut query = client_query("a.example.net.", RecordType::A);
                    query.metadata.id = i;
                    forwarder.resolve(&query).await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let response = task.await.unwrap();
            assert_eq!(usize::from(response.id), i);
            assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
        }
        assert_eq!(upstream.udp_requests(), 1);
        assert!(lock(&forwarder.inflight).is_empty());
    }

    #[tokio::test]
    async fn cancelled_query_leaves_no_inflight_state_behind() {
        let dead = silent().await;
        let forwarder = Forwarder::new(vec![dead.addr], Duration::from_secs(5));
        let query = client_query("a.example.net.", RecordType::A);
        let attempt =
            tokio::time::timeout(Duration::from_millis(100), forwarder.resolve(&query)).await;
        assert!(attempt.is_err());
        assert!(lock(&forwarder.inflight).is_empty());
    }

    #[tokio::test]
    async fn requests_that_cannot_be_forwarded_get_an_error_without_upstream_traffic() {
        let upstream = answering(300).await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        let mut none = client_query("a.example.net.", RecordType::A);
        none.queries.clear();
        assert_eq!(
            forwarder.resolve(&none).await.response_code,
            ResponseCode::FormErr
        );

        let mut two = client_query("a.example.net.", RecordType::A);
        two.add_query(Query::query(name("b.example.net."), RecordType::A));
        assert_eq!(
            forwarder.resolve(&two).await.response_code,
            ResponseCode::FormErr
        );

        let mut notify = client_query("a.example.net.", RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(
            forwarder.resolve(&notify).await.response_code,
            ResponseCode::NotImp
        );

        let axfr = client_query("example.net.", RecordType::AXFR);
        assert_eq!(
            forwarder.resolve(&axfr).await.response_code,
            ResponseCode::Refused
        );

        assert_eq!(upstream.udp_requests() + upstream.tcp_requests(), 0);
    }

    #[test]
    fn full_cache_evicts_expired_entries_first_then_the_oldest() {
        let key = |s: &str| Key::of(&Query::query(name(s), RecordType::A));
        let answer = || {
            Arc::new(Answer {
                rcode: ResponseCode::NoError,
                answers: vec![Record::from_rdata(
                    name("x."),
                    60,
                    RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
                )],
                authorities: Vec::new(),
                additionals: Vec::new(),
            })
        };
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        cache.insert(key("old.test."), answer(), 60, t0);
        cache.insert(key("short.test."), answer(), 1, t0);
        cache.insert(key("mid.test."), answer(), 60, t0);
        assert_eq!(cache.entries.len(), 3);

        // Full; "short" has expired, so it goes, not the older "old".
        let t1 = t0 + Duration::from_secs(2);
        cache.insert(key("new.test."), answer(), 60, t1);
        assert_eq!(cache.entries.len(), 3);
        assert!(cache.get(&key("short.test."), t1).is_none());
        assert!(cache.get(&key("old.test."), t1).is_some());

        // Full and nothing expired: the oldest goes.
        let t2 = t1 + Duration::from_secs(2);
        cache.insert(key("newer.test."), answer(), 60, t2);
        assert_eq!(cache.entries.len(), 3);
        assert!(cache.get(&key("old.test."), t2).is_none());
        for fresh in ["mid.test.", "new.test.", "newer.test."] {
            let (_, age) = cache.get(&key(fresh), t2).unwrap();
            assert!(age <= 4);
        }
        assert_eq!(cache.order.len(), cache.entries.len());

        // Re-inserting a key replaces it rather than growing the cache.
        cache.insert(key("mid.test."), answer(), 60, t2);
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(cache.order.len(), 3);
    }
}
