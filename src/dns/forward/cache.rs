//! The cache of upstream answers: its key, what is kept of an answer (TTLs
//! normalised, the negative lifetime of RFC 2308) and the bounded map that holds
//! them (see the rules and invariants in the parent module).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::time::Instant;

use super::reply;

/// Cap on any TTL we pass on or cache (one day).
const MAX_TTL: u32 = 86_400;
/// Cap on how long a negative answer is cached (RFC 2308 5: one to three
/// hours is a reasonable maximum).
const MAX_NEGATIVE_TTL: u32 = 10_800;
/// How often a full cache may be scanned for expired entries.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// Cache key: lowercased qname, qtype, qclass.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
}

impl Key {
    pub(super) fn of(question: &Query) -> Self {
        Self {
            name: question.name().to_lowercase(),
            qtype: question.query_type(),
            qclass: question.query_class(),
        }
    }

    /// The question we send upstream (lowercased, so that cached owner names
    /// do not carry one client's capitalisation to another).
    pub(super) fn question(&self) -> Query {
        let mut query = Query::query(self.name.clone(), self.qtype);
        query.set_query_class(self.qclass);
        query
    }
}

/// The usable part of an upstream NOERROR/NXDOMAIN reply, TTLs normalised.
#[derive(Debug)]
pub(super) struct Answer {
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
    pub(super) fn from_upstream(mut message: Message, question: &Query) -> Self {
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
    pub(super) fn lifetime(&self, question: &Query) -> Option<u32> {
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
    pub(super) fn response_to(&self, query: &Message, age: u32) -> Message {
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

struct Entry {
    answer: Arc<Answer>,
    stored: Instant,
    expires: Instant,
    seq: u64,
}

/// Bounded map of answers, with an index by insertion order.
pub(super) struct Cache {
    entries: HashMap<Key, Entry>,
    /// Insertion sequence number to key, oldest first.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    capacity: usize,
    last_purge: Option<Instant>,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            last_purge: None,
        }
    }

    /// A fresh answer and its age in whole seconds; expired ones are dropped.
    pub(super) fn get(&mut self, key: &Key, now: Instant) -> Option<(Arc<Answer>, u32)> {
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.remove(key);
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs();
        Some((entry.answer.clone(), u32::try_from(age).unwrap_or(u32::MAX)))
    }

    pub(super) fn insert(&mut self, key: Key, answer: Arc<Answer>, ttl: u32, now: Instant) {
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
    use super::super::Forwarder;
    use super::super::fake_upstream::*;
    use super::*;
    use hickory_proto::rr::rdata::AAAA;
    use std::net::{Ipv4Addr, Ipv6Addr};

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
