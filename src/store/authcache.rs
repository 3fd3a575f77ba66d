//! Recently verified passwords, so that a client that logs in again and again (phones
//! reconnecting, Thunderbird's parallel connections, the webmail, scripts) pays the
//! argon2 verification (19 MiB, tens of milliseconds of CPU) once per `TTL` instead of
//! at every login — Dovecot's `auth_cache` does the same for the same reason.
//!
//! What is kept per account: the stored password hash the password was verified
//! against and HMAC-SHA256(per-process random key, account ‖ password), never the
//! password. A hit needs both to match, so a password change (a new salted hash)
//! invalidates the entry at once. Only successes are remembered: a wrong password
//! always costs a full verification, so guessing is no cheaper. Bounded: at most
//! `MAX` entries; when full, expired entries go, then everything.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a verified password is remembered.
const TTL: Duration = Duration::from_secs(15 * 60);
/// Accounts remembered at most.
const MAX: usize = 4096;

struct Entry {
    stored_hash: String,
    mac: [u8; 32],
    at: Instant,
}

struct Cache {
    key: [u8; 32],
    map: Mutex<HashMap<String, Entry>>,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache {
        key: rand::random(),
        map: Mutex::new(HashMap::new()),
    })
}

fn mac(account: &str, password: &str) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(&cache().key).expect("any key length");
    m.update(account.as_bytes());
    m.update(&[0]);
    m.update(password.as_bytes());
    m.finalize().into_bytes().into()
}

/// Whether this password was verified for this account against `stored_hash` within
/// the last `TTL`.
pub(super) fn hit(account: &str, stored_hash: &str, password: &str) -> bool {
    let want = mac(account, password);
    let map = cache().map.lock().unwrap();
    map.get(account).is_some_and(|e| {
        e.at.elapsed() < TTL
            && e.stored_hash == stored_hash
            // Constant time: compare every byte.
            && e.mac.iter().zip(want).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    })
}

/// Remembers a successful verification.
pub(super) fn remember(account: &str, stored_hash: &str, password: &str) {
    let entry = Entry {
        stored_hash: stored_hash.to_string(),
        mac: mac(account, password),
        at: Instant::now(),
    };
    let mut map = cache().map.lock().unwrap();
    if map.len() >= MAX && !map.contains_key(account) {
        map.retain(|_, e| e.at.elapsed() < TTL);
        if map.len() >= MAX {
            map.clear();
        }
    }
    map.insert(account.to_string(), entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_password_against_the_same_hash_hits() {
        let (acc, hash) = ("cache-test-ana", "$argon2id$v=19$m=19456,t=2,p=1$salt1$x");
        assert!(!hit(acc, hash, "pw"));
        remember(acc, hash, "pw");
        assert!(hit(acc, hash, "pw"));
        assert!(!hit(acc, hash, "pw2"), "another password");
        assert!(
            !hit(acc, "$argon2id$v=19$m=19456,t=2,p=1$salt2$y", "pw"),
            "a new hash"
        );
        assert!(!hit("cache-test-bob", hash, "pw"), "another account");
    }
}
