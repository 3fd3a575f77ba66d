//! The node's cache of parsed message structure: ENVELOPE, BODY and BODYSTRUCTURE
//! values keyed by the message's content address (its blob id), shared by every IMAP
//! session. A blob never changes, so an entry never goes stale, and two mailboxes (or
//! accounts) holding the same delivery share it. Clients list folders with
//! `FETCH 1:* (FLAGS ENVELOPE)` or BODYSTRUCTURE after every reconnect; with the values
//! cached such a FETCH reads no message file and parses nothing.
//!
//! Bounded in bytes: two generations of at most `CAP / 2` bytes each; new and
//! recently used entries go to the young one, and when it is full the old generation
//! is dropped and the young one becomes old (an approximation of LRU without per-entry
//! bookkeeping). Kept in memory rather than in the store: the values are derived,
//! cheap to rebuild after a restart, and writing them to SQLite from the read path
//! would contend with the single writer that commits deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::mime;

/// Bytes of cached values (keys included) the node keeps at most.
pub const CAP: usize = 8 << 20;

/// The parsed values of one message; each is computed on first use.
#[derive(Default)]
pub struct Parsed {
    pub envelope: Option<Vec<u8>>,
    pub body: Option<Vec<u8>>,
    pub body_structure: Option<Vec<u8>>,
}

impl Parsed {
    fn bytes(&self, key: &str) -> usize {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len);
        key.len() + len(&self.envelope) + len(&self.body) + len(&self.body_structure) + 64
    }
}

/// Which structure value a FETCH item needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Envelope,
    Body,
    BodyStructure,
}

#[derive(Default)]
struct Generation {
    map: HashMap<String, Arc<Parsed>>,
    bytes: usize,
}

#[derive(Default)]
pub struct StructureCache {
    inner: Mutex<(Generation, Generation)>,
    cap: usize,
}

impl StructureCache {
    pub fn new(cap: usize) -> StructureCache {
        StructureCache {
            inner: Mutex::default(),
            cap,
        }
    }

    /// The cached value of `kind` for this blob, if any.
    pub fn get(&self, blob: &str, kind: Kind) -> Option<Vec<u8>> {
        let mut g = self.inner.lock().unwrap();
        let (young, old) = &mut *g;
        let entry = match young.map.get(blob) {
            Some(e) => e.clone(),
            None => {
                // Used again: move it to the young generation.
                let e = old.map.remove(blob)?;
                old.bytes = old.bytes.saturating_sub(e.bytes(blob));
                Self::put(young, old, self.cap, blob, e.clone());
                e
            }
        };
        let v = match kind {
            Kind::Envelope => &entry.envelope,
            Kind::Body => &entry.body,
            Kind::BodyStructure => &entry.body_structure,
        };
        v.clone()
    }

    /// Computes `kind` from the message text, caches it with whatever was cached
    /// already for the blob, and returns it.
    pub fn compute(&self, blob: &str, kind: Kind, raw: &[u8]) -> Vec<u8> {
        let value = match kind {
            Kind::Envelope => mime::envelope(raw),
            Kind::Body => mime::body_structure(raw, false),
            Kind::BodyStructure => mime::body_structure(raw, true),
        };
        let mut g = self.inner.lock().unwrap();
        let (young, old) = &mut *g;
        let mut parsed = Parsed::default();
        for generation in [&mut *young, &mut *old] {
            if let Some(e) = generation.map.remove(blob) {
                generation.bytes = generation.bytes.saturating_sub(e.bytes(blob));
                parsed.envelope = e.envelope.clone();
                parsed.body = e.body.clone();
                parsed.body_structure = e.body_structure.clone();
            }
        }
        let slot = match kind {
            Kind::Envelope => &mut parsed.envelope,
            Kind::Body => &mut parsed.body,
            Kind::BodyStructure => &mut parsed.body_structure,
        };
        *slot = Some(value.clone());
        Self::put(young, old, self.cap, blob, Arc::new(parsed));
        value
    }

    fn put(young: &mut Generation, old: &mut Generation, cap: usize, blob: &str, e: Arc<Parsed>) {
        let size = e.bytes(blob);
        if size > cap / 2 {
            return;
        }
        if young.bytes + size > cap / 2 {
            *old = std::mem::take(young);
        }
        young.bytes += size;
        young.map.insert(blob.to_string(), e);
    }

    /// Bytes held now (both generations).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        let g = self.inner.lock().unwrap();
        g.0.bytes + g.1.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Ana <ana@example.com>\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn values_are_computed_once_and_shared_between_kinds() {
        let c = StructureCache::new(1 << 20);
        assert_eq!(c.get("b1", Kind::Envelope), None);
        let env = c.compute("b1", Kind::Envelope, MSG);
        assert_eq!(env, mime::envelope(MSG));
        assert_eq!(c.get("b1", Kind::Envelope), Some(env.clone()));
        assert_eq!(c.get("b1", Kind::BodyStructure), None);
        let bs = c.compute("b1", Kind::BodyStructure, MSG);
        assert_eq!(bs, mime::body_structure(MSG, true));
        // Adding BODYSTRUCTURE kept the ENVELOPE.
        assert_eq!(c.get("b1", Kind::Envelope), Some(env));
        assert_eq!(c.get("b1", Kind::BodyStructure), Some(bs));
    }

    #[test]
    fn the_cache_stays_under_its_cap_and_keeps_what_is_used() {
        let cap = 64 * 1024;
        let c = StructureCache::new(cap);
        c.compute("hot", Kind::Envelope, MSG);
        for i in 0..5000 {
            c.compute(&format!("blob{i}"), Kind::Envelope, MSG);
            // A value used all the time survives the churn.
            assert!(c.get("hot", Kind::Envelope).is_some(), "lost at {i}");
            assert!(c.bytes() <= cap, "{} bytes after {i}", c.bytes());
        }
        // Old, unused entries were dropped.
        assert_eq!(c.get("blob0", Kind::Envelope), None);
    }
}
