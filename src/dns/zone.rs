//! One authoritative zone: read from an RFC 1035 master file (hickory-proto's parser),
//! checked, and answered from.
//!
//! Answers follow RFC 1034 4.3.2 for a zone without delegations or wildcards, with
//! the sections NSD fills by default (tests/dns_nsd.rs compares the two): a positive
//! answer carries the zone's NS RRset in authority (unless it is the answer) and the
//! in-zone A/AAAA records of NS, MX and SRV targets in additional; a negative answer
//! (NXDOMAIN, or NODATA for a name that exists with other types or is an empty
//! non-terminal) carries the SOA with TTL min(SOA TTL, MINIMUM) (RFC 2308 3). CNAMEs
//! are followed inside the zone (at most 8 steps); the rcode is that of the last name
//! (RFC 6604). ANY is answered with one RRset (RFC 8482), the SOA at the apex.

use std::collections::{BTreeMap, HashMap, HashSet};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// RRsets at one owner name, by type.
type Node = BTreeMap<RecordType, Vec<Record>>;

pub struct Zone {
    origin: LowerName,
    nodes: HashMap<LowerName, Node>,
    /// Names with no records but with records below them (RFC 8020 2).
    empty_non_terminals: HashSet<LowerName>,
}

/// The sections of an authoritative answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// Longest CNAME chain followed inside the zone.
const MAX_CNAME_CHAIN: usize = 8;

impl Zone {
    /// Parses and checks a zone file. `origin` is the zone's name (from the file name);
    /// `file` names the file in messages, which read `FILE: line N: problem` when the
    /// parser knows the line.
    pub fn parse(text: &str, origin: &str, file: &str) -> Result<Zone, String> {
        let origin_name = Name::from_ascii(origin)
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .map_err(|e| format!("{file}: {origin:?} is not a zone name: {e}"))?;
        let (_, rrsets) = Parser::new(text, None, Some(origin_name.clone()))
            .parse()
            .map_err(|e| {
                let why = describe_parse_error(text, &origin_name, &e.to_string());
                format!("{file}: {why}")
            })?;
        let origin = LowerName::new(&origin_name);
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        for (key, rrset) in rrsets {
            if !origin.zone_of(&key.name) {
                return Err(format!("{file}: {} is outside the zone {origin}", key.name));
            }
            let records: Vec<Record> = rrset.records_without_rrsigs().cloned().collect();
            if records.is_empty() {
                continue;
            }
            nodes
                .entry(key.name.clone())
                .or_default()
                .insert(key.record_type, records);
        }
        let apex = nodes
            .get(&origin)
            .ok_or_else(|| format!("{file}: no records at the zone apex {origin}"))?;
        if !apex.contains_key(&RecordType::SOA) {
            return Err(format!("{file}: the zone {origin} has no SOA record"));
        }
        if !apex.contains_key(&RecordType::NS) {
            return Err(format!("{file}: the zone {origin} has no NS record"));
        }
        for (name, node) in &nodes {
            // RFC 1034 3.6.2 / RFC 2181 10.1: a CNAME stands alone.
            if node.contains_key(&RecordType::CNAME) && node.len() > 1 {
                return Err(format!(
                    "{file}: {name} has a CNAME and other data (RFC 1034 3.6.2)"
                ));
            }
        }
        let mut empty_non_terminals = HashSet::new();
        for name in nodes.keys() {
            let mut parent = name.base_name();
            while parent.num_labels() > origin.num_labels() {
                if !nodes.contains_key(&parent) {
                    empty_non_terminals.insert(parent.clone());
                }
                parent = parent.base_name();
            }
        }
        Ok(Zone {
            origin,
            nodes,
            empty_non_terminals,
        })
    }

    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    pub fn serial(&self) -> u32 {
        match self.soa().map(|r| &r.data) {
            Some(RData::SOA(soa)) => soa.serial,
            _ => 0,
        }
    }

    /// Adds a TXT record of `strings` (one character-string each, at most 255 bytes)
    /// at `owner` with the SOA's TTL, unless the zone file has a TXT or a CNAME there
    /// (the file wins). The DKIM record served without editing the file. Returns
    /// whether it was added; `owner` must be in the zone.
    pub fn add_txt_unless_present(&mut self, owner: &Name, strings: Vec<String>) -> bool {
        let lower = LowerName::new(owner);
        if !self.origin.zone_of(&lower) {
            return false;
        }
        if let Some(node) = self.nodes.get(&lower)
            && (node.contains_key(&RecordType::TXT) || node.contains_key(&RecordType::CNAME))
        {
            return false;
        }
        let ttl = self.soa().map_or(3600, |r| r.ttl);
        let record = Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(strings)));
        self.nodes
            .entry(lower.clone())
            .or_default()
            .insert(RecordType::TXT, vec![record]);
        self.empty_non_terminals.remove(&lower);
        let mut parent = lower.base_name();
        while parent.num_labels() > self.origin.num_labels() {
            if !self.nodes.contains_key(&parent) {
                self.empty_non_terminals.insert(parent.clone());
            }
            parent = parent.base_name();
        }
        true
    }

    fn rrset(&self, name: &LowerName, ty: RecordType) -> Option<&Vec<Record>> {
        self.nodes.get(name).and_then(|n| n.get(&ty))
    }

    /// The zone's SOA record.
    pub fn soa(&self) -> Option<&Record> {
        self.rrset(&self.origin, RecordType::SOA)
            .and_then(|v| v.first())
    }

    /// The SOA as a negative answer carries it (RFC 2308 3).
    fn negative_soa(&self) -> Vec<Record> {
        self.soa()
            .map(|r| {
                let mut r = r.clone();
                if let RData::SOA(soa) = &r.data {
                    r.ttl = r.ttl.min(soa.minimum);
                }
                vec![r]
            })
            .unwrap_or_default()
    }

    /// Answers `qname`/`qtype` (qname must be in this zone).
    pub fn answer(&self, qname: &LowerName, qtype: RecordType) -> Answer {
        let mut ans = Answer::default();
        let mut name = qname.clone();
        let mut positive = false;
        for _ in 0..MAX_CNAME_CHAIN {
            let Some(node) = self.nodes.get(&name) else {
                if !self.empty_non_terminals.contains(&name) {
                    ans.rcode = ResponseCode::NXDomain;
                }
                break;
            };
            if qtype == RecordType::ANY {
                // RFC 8482 4.1: one RRset; the SOA at the apex, else the first type.
                let set = node.get(&RecordType::SOA).or_else(|| node.values().next());
                ans.answers.extend(set.into_iter().flatten().cloned());
                return ans;
            }
            if let Some(set) = node.get(&qtype) {
                ans.answers.extend(set.iter().cloned());
                positive = true;
                break;
            }
            match node.get(&RecordType::CNAME) {
                Some(set) => {
                    ans.answers.extend(set.iter().cloned());
                    positive = true;
                    let Some(RData::CNAME(target)) = set.first().map(|r| &r.data) else {
                        break;
                    };
                    let target = LowerName::new(&target.0);
                    if !self.origin.zone_of(&target) {
                        break;
                    }
                    positive = false;
                    name = target;
                }
                None => break,
            }
        }
        if !positive {
            ans.authorities = self.negative_soa();
            return ans;
        }
        let ns_answered = qtype == RecordType::NS && name == self.origin;
        if !ns_answered && let Some(ns) = self.rrset(&self.origin, RecordType::NS) {
            ans.authorities.extend(ns.iter().cloned());
        }
        let glue = self.glue(ans.answers.iter().chain(ans.authorities.iter()));
        // A record already in the answer is not repeated.
        ans.additionals = glue
            .into_iter()
            .filter(|g| !ans.answers.contains(g))
            .collect();
        ans
    }

    /// In-zone addresses of the NS, MX and SRV targets among `records`.
    fn glue<'r>(&self, records: impl Iterator<Item = &'r Record>) -> Vec<Record> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in records {
            let target = match &r.data {
                RData::NS(ns) => &ns.0,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            let target = LowerName::new(target);
            if !self.origin.zone_of(&target) || !seen.insert(target.clone()) {
                continue;
            }
            for ty in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = self.rrset(&target, ty) {
                    out.extend(set.iter().cloned());
                }
            }
        }
        out
    }

    /// Every record for a zone transfer (RFC 5936 2.2): the SOA, the rest, the SOA.
    pub fn transfer(&self) -> Vec<Record> {
        let Some(soa) = self.soa().cloned() else {
            return Vec::new();
        };
        let mut names: Vec<&LowerName> = self.nodes.keys().collect();
        names.sort();
        let mut out = vec![soa.clone()];
        for name in names {
            for (ty, set) in &self.nodes[name] {
                if *ty != RecordType::SOA || *name != self.origin {
                    out.extend(set.iter().cloned());
                }
            }
        }
        out.push(soa);
        out
    }
}

/// hickory's parse errors carry no line number. The parser stops at the first error,
/// so the shortest prefix of the file (in whole lines) that fails with the same
/// message ends at the faulty line: found by bisection, and quoted.
fn describe_parse_error(text: &str, origin: &Name, err: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let fails_same = |n: usize| {
        let prefix: String = lines[..n].concat();
        matches!(
            Parser::new(prefix, None, Some(origin.clone())).parse(),
            Err(e) if e.to_string() == err
        )
    };
    if lines.is_empty() || !fails_same(lines.len()) {
        return err.to_string();
    }
    let (mut lo, mut hi) = (0, lines.len());
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fails_same(mid) { hi = mid } else { lo = mid }
    }
    let line = lines[hi - 1].split(';').next().unwrap_or_default();
    format!(
        "line {hi}: `{}`: {err}",
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/zones/cluster.com.ec.zone"
        ))
        .unwrap();
        Zone::parse(&text, "cluster.com.ec", "cluster.com.ec.zone").expect("zone parses")
    }

    fn q(z: &Zone, name: &str, ty: RecordType) -> Answer {
        z.answer(&LowerName::from(Name::from_ascii(name).unwrap()), ty)
    }

    fn names(rs: &[Record]) -> Vec<String> {
        let mut v: Vec<String> = rs
            .iter()
            .map(|r| format!("{} {}", r.name.to_lowercase(), r.record_type()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rfc1034_positive_answer_has_ns_in_authority_and_glue_in_additional() {
        let z = zone();
        let a = q(&z, "cluster.com.ec.", RecordType::MX);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(names(&a.answers), ["cluster.com.ec. MX"]);
        assert_eq!(names(&a.authorities), ["cluster.com.ec. NS"]);
        assert_eq!(
            names(&a.additionals),
            ["mail.cluster.com.ec. A", "ns.cluster.com.ec. A"]
        );
        // Case does not matter (RFC 4343).
        let a = q(&z, "WwW.ClUsTeR.cOm.Ec.", RecordType::A);
        assert_eq!(names(&a.answers), ["www.cluster.com.ec. A"]);
        // NS at the apex: no NS in authority.
        let a = q(&z, "cluster.com.ec.", RecordType::NS);
        assert!(a.authorities.is_empty());
        assert_eq!(names(&a.additionals), ["ns.cluster.com.ec. A"]);
    }

    #[test]
    fn rfc2308_nxdomain_and_nodata_carry_the_soa_with_the_minimum_ttl() {
        let z = zone();
        let a = q(&z, "nope.cluster.com.ec.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert!(a.answers.is_empty());
        assert_eq!(names(&a.authorities), ["cluster.com.ec. SOA"]);
        assert_eq!(a.authorities[0].ttl, 300);
        let a = q(&z, "www.cluster.com.ec.", RecordType::MX);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        assert_eq!(names(&a.authorities), ["cluster.com.ec. SOA"]);
        // An empty non-terminal is NODATA, not NXDOMAIN (RFC 8020).
        let a = q(&z, "_tcp.cluster.com.ec.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(names(&a.authorities), ["cluster.com.ec. SOA"]);
    }

    #[test]
    fn rfc1034_cname_is_followed_inside_the_zone() {
        let z = zone();
        let a = q(&z, "webmail.cluster.com.ec.", RecordType::A);
        assert_eq!(
            names(&a.answers),
            ["webmail.cluster.com.ec. CNAME", "www.cluster.com.ec. A"]
        );
        assert_eq!(names(&a.authorities), ["cluster.com.ec. NS"]);
        let a = q(&z, "webmail.cluster.com.ec.", RecordType::CNAME);
        assert_eq!(names(&a.answers), ["webmail.cluster.com.ec. CNAME"]);
        // Below a CNAME there is nothing.
        let a = q(&z, "x.webmail.cluster.com.ec.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn zone_checks_name_the_file_and_problem() {
        let bad = "$ORIGIN x.test.\n@ 60 IN SOA ns hm 1 2 3 4 5\n@ 60 IN NS ns\nns 60 IN A 10.0.0.1\nfoo 60 IN CNAME ns\nfoo 60 IN A 10.0.0.2\n";
        let e = Zone::parse(bad, "x.test", "x.test.zone").err().unwrap();
        assert!(e.starts_with("x.test.zone: ") && e.contains("CNAME"), "{e}");
        let no_soa = "$ORIGIN x.test.\n@ 60 IN NS ns\nns 60 IN A 10.0.0.1\n";
        let e = Zone::parse(no_soa, "x.test", "x.test.zone").err().unwrap();
        assert!(e.contains("no SOA"), "{e}");
        let garbage =
            "$ORIGIN x.test.\n@ 60 IN SOA ns hm 1 2 3 4 5\n@ 60 IN NS ns\nwww 60 IN A 10.0.0.999\n";
        let e = Zone::parse(garbage, "x.test", "x.test.zone").err().unwrap();
        assert!(e.starts_with("x.test.zone: "), "{e}");
    }

    #[test]
    fn an_added_txt_is_answered_unless_the_file_has_one() {
        let mut z = zone();
        let owner = Name::from_ascii("sel._domainkey.cluster.com.ec.").unwrap();
        let strings = vec!["v=DKIM1; k=rsa; ".to_string(), "p=AAAA".to_string()];
        assert!(z.add_txt_unless_present(&owner, strings.clone()));
        let a = q(&z, "sel._domainkey.cluster.com.ec.", RecordType::TXT);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].ttl, 3600);
        let RData::TXT(txt) = &a.answers[0].data else {
            panic!("not a TXT: {:?}", a.answers[0]);
        };
        let got: Vec<&[u8]> = txt.txt_data.iter().map(|s| &s[..]).collect();
        assert_eq!(got, [&b"v=DKIM1; k=rsa; "[..], &b"p=AAAA"[..]]);
        // The new empty non-terminal is NODATA, not NXDOMAIN (RFC 8020).
        let a = q(&z, "_domainkey.cluster.com.ec.", RecordType::TXT);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        // The apex's own TXT (SPF) and a CNAME are the file's: nothing is added there.
        let apex = Name::from_ascii("cluster.com.ec.").unwrap();
        assert!(!z.add_txt_unless_present(&apex, strings.clone()));
        let a = q(&z, "cluster.com.ec.", RecordType::TXT);
        assert_eq!(a.answers.len(), 1);
        let cname = Name::from_ascii("webmail.cluster.com.ec.").unwrap();
        assert!(!z.add_txt_unless_present(&cname, strings.clone()));
        let outside = Name::from_ascii("sel._domainkey.example.net.").unwrap();
        assert!(!z.add_txt_unless_present(&outside, strings));
    }

    #[test]
    fn rfc5936_transfer_starts_and_ends_with_the_soa() {
        let z = zone();
        let t = z.transfer();
        assert_eq!(t.first().unwrap().record_type(), RecordType::SOA);
        assert_eq!(t.last().unwrap().record_type(), RecordType::SOA);
        assert_eq!(
            t.iter()
                .filter(|r| r.record_type() == RecordType::SOA)
                .count(),
            2
        );
        assert!(t.len() > 15);
    }
}
