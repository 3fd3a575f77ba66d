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
//!
//! # Files
//!
//! * `upstream`: one exchange with one upstream (UDP, TCP after TC, reply checks);
//! * `cache`: the cache key, what is kept of an answer (TTLs, negative lifetimes)
//!   and the bounded cache;
//! * `inflight`: concurrent identical questions sharing one exchange.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::time::Instant;
use tracing::{debug, warn};

mod cache;
#[cfg(test)]
mod fake_upstream;
mod inflight;
mod upstream;

use cache::{Answer, Cache, Key};
use inflight::{Flight, Seat};

/// EDNS0 UDP payload size we advertise, upstream and to clients.
const EDNS_PAYLOAD: u16 = 1232;
/// Maximum number of cached responses.
const CACHE_CAPACITY: usize = 10_000;

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
            match upstream::exchange(upstream, &question, self.timeout).await {
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

#[cfg(test)]
mod tests {
    use super::fake_upstream::*;
    use super::*;
    use hickory_proto::op::Query;
    use std::net::Ipv4Addr;

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
}
