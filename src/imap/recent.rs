//! Who owns `\Recent` (RFC 3501 2.3.2): a message is recent in exactly one session,
//! the first read-write session that selects its mailbox (or hears of the message
//! while holding it selected) after it arrived. This node's sessions share one
//! `Claims`: per mailbox, the highest UID some session has taken as recent. A
//! SELECT, or a refresh of a read-write session, takes every UID above it; EXAMINE
//! and STATUS only look (RFC 3501 6.3.2: EXAMINE keeps `\Recent`).
//!
//! This is session state, in memory only: not in the store, not replicated. After a
//! restart or a failover nothing is known, and a mailbox's messages are recent again
//! for the next session that selects it (RFC 3501 2.3.2: when the server cannot
//! tell, a message SHOULD be considered recent). The map holds at most
//! [`MAX_MAILBOXES`] mailboxes; past that an entry is dropped, with the same effect.

use std::collections::HashMap;
use std::sync::Mutex;

/// Mailboxes remembered at once (an entry is a mailbox id and two numbers, ~100
/// bytes: about 1.6 MB at most).
pub const MAX_MAILBOXES: usize = 16_384;

/// What is known of one mailbox: its UIDVALIDITY (a renumbering merge changes it, and
/// the old claim then means nothing) and the highest UID taken as recent.
#[derive(Clone, Copy)]
struct Claim {
    uidvalidity: u32,
    claimed: u32,
}

#[derive(Default)]
pub struct Claims {
    map: Mutex<HashMap<String, Claim>>,
}

impl Claims {
    /// The highest UID already taken as recent in `mailbox` (0: none known).
    pub fn peek(&self, mailbox: &str, uidvalidity: u32) -> u32 {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(mailbox) {
            Some(c) if c.uidvalidity == uidvalidity => c.claimed,
            _ => 0,
        }
    }

    /// Takes every UID up to `up_to` as recent for the caller; returns the highest
    /// UID taken before, so the caller's recent messages are those above it.
    pub fn take(&self, mailbox: &str, uidvalidity: u32, up_to: u32) -> u32 {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(mailbox) && map.len() >= MAX_MAILBOXES {
            // Bounded memory: forget one mailbox (its messages become recent again).
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        let entry = map.entry(mailbox.to_string()).or_insert(Claim {
            uidvalidity,
            claimed: 0,
        });
        if entry.uidvalidity != uidvalidity {
            *entry = Claim {
                uidvalidity,
                claimed: 0,
            };
        }
        let before = entry.claimed;
        entry.claimed = before.max(up_to);
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_per_uid() {
        let c = Claims::default();
        assert_eq!(c.peek("m", 7), 0);
        assert_eq!(c.take("m", 7, 3), 0); // the first session: UIDs 1..=3 are its own
        assert_eq!(c.take("m", 7, 3), 3); // the next: none
        assert_eq!(c.take("m", 7, 5), 3); // 4 and 5 arrived: they go to this one
        assert_eq!(c.take("m", 7, 4), 5); // never goes back
        assert_eq!(c.peek("m", 7), 5);
        assert_eq!(c.peek("m", 8), 0); // a new UIDVALIDITY knows nothing
        assert_eq!(c.take("m", 8, 2), 0);
    }

    #[test]
    fn bounded() {
        let c = Claims::default();
        for i in 0..MAX_MAILBOXES + 10 {
            c.take(&i.to_string(), 1, 1);
        }
        assert_eq!(c.map.lock().unwrap().len(), MAX_MAILBOXES);
    }
}
