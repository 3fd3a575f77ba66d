//! The one authentication limiter, shared by SMTP AUTH, IMAP LOGIN/AUTHENTICATE and the
//! webmail login: every password check of a front-end goes through
//! [`Limiter::verify`], which decides whether the password is checked at all, bounds
//! how many checks one address runs at once, and delays the answer to a wrong one.
//!
//! What it counts (limits in `[auth]`, `crate::config::AuthConfig`), each counter
//! forgotten `window_s` after its last failure:
//! - per address (IPv4, or IPv6 by /64): past `ip_max_failures` the address is refused
//!   at once, without a hash — except for an account that logged in from it within
//!   `trusted_days` (so a stranger behind the owner's NAT cannot lock the owner out);
//! - per (account, address): past `account_ip_max_failures` that account is refused
//!   from that address only;
//! - per account, from every address: it never refuses anything; it only lengthens the
//!   delay of failures from addresses the account has not logged in from. A stranger
//!   guessing from many addresses is slowed; the owner, from anywhere, is never
//!   blocked by what strangers did.
//!
//! A wrong password is answered after `fail_delay_ms`, doubled for each earlier
//! failure counted against it, at most `max_fail_delay_ms`. At most `ip_parallel`
//! passwords of one address are checked at once (the rest wait their turn), so one
//! address never fills the hashing queue ahead of others, and at most
//! `strangers_parallel` over all addresses for accounts that never logged in from
//! there, so many addresses at once cannot either; a login from an address the
//! account used before waits for neither. Hashing itself runs on the
//! store's pool of at most 4 threads (`store/hasher.rs`), whose gauge this module
//! exports with its counters for /metrics ([`figures`]).
//!
//! Memory is bounded: four tables of at most `max_entries` entries each (expired
//! entries go first, then the least recently used quarter); an account is kept as a
//! 16-byte keyed digest of its lowercased name, never as the string a client sent.
//! Everything is in memory: a restart or a failover forgets it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::config::{AuthConfig, canonical_ip};
use crate::store::{Store, StoreError};

/// Where a password came from, for the counters in /metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Imap,
    Webmail,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Smtp, Protocol::Imap, Protocol::Webmail];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Imap => "imap",
            Protocol::Webmail => "webmail",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The outcome of one password check.
#[derive(Debug)]
pub enum Verdict {
    /// The password is right: the account's name.
    Ok(String),
    /// The password is wrong (the answer was already delayed).
    Wrong,
    /// Not checked: too many failures from this address (or for this account from
    /// it). Try again after this long.
    Refused(Duration),
    /// The store could not check it.
    Error(StoreError),
}

/// An address: IPv4 as itself, IPv6 by its /64 (one host usually holds a whole /64).
type IpKey = u128;
/// An account: a keyed digest of its lowercased name (fixed size whatever was sent).
type AcctKey = [u8; 16];

/// Longest wait for this address's turn to have a password checked.
const TURN_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Count {
    n: u32,
    last: Instant,
}

impl Count {
    /// Failures still counted at `now`.
    fn live(&self, now: Instant, window: Duration) -> u32 {
        if now.duration_since(self.last) < window {
            self.n
        } else {
            0
        }
    }

    /// Until when a refusal because of this counter lasts.
    fn wait(&self, now: Instant, window: Duration) -> Duration {
        (self.last + window)
            .saturating_duration_since(now)
            .max(Duration::from_secs(1))
    }

    fn add(&mut self, now: Instant, window: Duration) -> u32 {
        self.n = self.live(now, window).saturating_add(1);
        self.last = now;
        self.n
    }
}

struct IpEntry {
    fails: Count,
    /// Last attempt of any outcome: what eviction looks at.
    seen: Instant,
    /// The address's turns to have a password checked.
    turns: Arc<Semaphore>,
}

impl IpEntry {
    fn new(now: Instant, parallel: usize) -> IpEntry {
        IpEntry {
            fails: Count { n: 0, last: now },
            seen: now,
            turns: Arc::new(Semaphore::new(parallel)),
        }
    }
}

/// When an entry was last touched, for eviction.
trait Touched {
    fn touched(&self) -> Instant;
}
impl Touched for Count {
    fn touched(&self) -> Instant {
        self.last
    }
}
impl Touched for IpEntry {
    fn touched(&self) -> Instant {
        self.seen
    }
}
impl Touched for Instant {
    fn touched(&self) -> Instant {
        *self
    }
}

/// A map of at most `cap` entries; entries untouched for `keep` are dropped first.
struct Table<K, V> {
    map: HashMap<K, V>,
    cap: usize,
    keep: Duration,
}

impl<K: Hash + Eq, V: Touched> Table<K, V> {
    fn new(cap: usize, keep: Duration) -> Self {
        Table {
            map: HashMap::new(),
            cap: cap.max(1),
            keep,
        }
    }

    /// The entry of `k`, made with `make` (evicting first when full).
    fn entry(&mut self, k: K, now: Instant, make: impl FnOnce() -> V) -> &mut V {
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            self.evict(now);
        }
        self.map.entry(k).or_insert_with(make)
    }

    /// Drops expired entries, then, if still full, the least recently touched quarter
    /// (a batch, so a flood of new keys costs one scan per `cap / 4` insertions).
    fn evict(&mut self, now: Instant) {
        let keep = self.keep;
        self.map
            .retain(|_, v| now.duration_since(v.touched()) < keep);
        if self.map.len() < self.cap {
            return;
        }
        let mut ages: Vec<Instant> = self.map.values().map(Touched::touched).collect();
        let n = (self.cap / 4).clamp(1, ages.len());
        let (_, cut, _) = ages.select_nth_unstable(n - 1);
        let cut = *cut;
        self.map.retain(|_, v| v.touched() > cut);
    }
}

struct Tables {
    ip: Table<IpKey, IpEntry>,
    pair: Table<(IpKey, AcctKey), Count>,
    account: Table<AcctKey, Count>,
    /// (account, address) pairs with a recent successful login.
    trusted: Table<(AcctKey, IpKey), Instant>,
}

impl Tables {
    fn len(&self) -> usize {
        self.ip.map.len() + self.pair.map.len() + self.account.map.len() + self.trusted.map.len()
    }
}

/// The node's limiter (one per process, in `Ctx`).
pub struct Limiter {
    window: Duration,
    trust: Duration,
    ip_max: u32,
    pair_max: u32,
    parallel: usize,
    /// Turns of the checks from addresses not trusted for the account, over all
    /// addresses.
    strangers: Arc<Semaphore>,
    base_delay: Duration,
    max_delay: Duration,
    /// Key of the account digests (per process).
    key: [u8; 32],
    tables: Mutex<Tables>,
}

/// What [`Limiter::check`] allows: whether the pair is trusted, and the address's
/// turns (none for a trusted pair: it never waits behind the address's strangers).
struct Allowed {
    trusted: bool,
    turns: Option<Arc<Semaphore>>,
}

impl Limiter {
    pub fn new(cfg: &AuthConfig) -> Limiter {
        let window = Duration::from_secs(cfg.window_s.max(1));
        let trust = Duration::from_secs(cfg.trusted_days.saturating_mul(86_400).max(1));
        let cap = cfg.max_entries;
        Limiter {
            window,
            trust,
            ip_max: cfg.ip_max_failures.max(1),
            pair_max: cfg.account_ip_max_failures.max(1),
            parallel: cfg.ip_parallel.max(1) as usize,
            strangers: Arc::new(Semaphore::new(cfg.strangers_parallel.max(1) as usize)),
            base_delay: Duration::from_millis(cfg.fail_delay_ms),
            max_delay: Duration::from_millis(cfg.max_fail_delay_ms.max(cfg.fail_delay_ms)),
            key: rand::random(),
            tables: Mutex::new(Tables {
                ip: Table::new(cap, window),
                pair: Table::new(cap, window),
                account: Table::new(cap, window),
                trusted: Table::new(cap, trust),
            }),
        }
    }

    /// Checks `password` for `user` from `ip` under the limits: refused without a hash
    /// when over them, else checked by the store (waiting for this address's turn);
    /// a wrong password is answered after the delay the counters give.
    pub async fn verify(
        &self,
        store: &Store,
        proto: Protocol,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> Verdict {
        let ip = ip_key(ip);
        let acct = self.account_key(user);
        let allowed = match self.check(ip, acct, Instant::now()) {
            Ok(a) => a,
            Err(wait) => return refused(proto, wait),
        };
        let _turn = match allowed.turns {
            // The address's turn first, so one address holds at most `ip_parallel` of
            // the strangers' turns.
            Some(turns) => {
                let both = async {
                    let mine = turns.acquire_owned().await.ok()?;
                    let shared = self.strangers.clone().acquire_owned().await.ok()?;
                    Some((mine, shared))
                };
                match tokio::time::timeout(TURN_WAIT, both).await {
                    Ok(Some(permits)) => Some(permits),
                    _ => return refused(proto, Duration::from_secs(1)),
                }
            }
            None => None,
        };
        // The limit may have been reached while this attempt waited for its turn.
        if let Err(wait) = self.check(ip, acct, Instant::now()) {
            return refused(proto, wait);
        }
        let result = if user.is_empty() || password.is_empty() {
            Ok(None)
        } else {
            store.verify_password(user, password).await
        };
        drop(_turn);
        match result {
            Ok(Some(account)) => {
                self.succeeded(ip, acct, Instant::now());
                Verdict::Ok(account)
            }
            Ok(None) => {
                STATS.failures[proto.index()].fetch_add(1, Ordering::Relaxed);
                let delay = self.failed(ip, acct, allowed.trusted, Instant::now());
                tokio::time::sleep(delay).await;
                Verdict::Wrong
            }
            Err(e) => Verdict::Error(e),
        }
    }

    fn account_key(&self, user: &str) -> AcctKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(user.trim().to_lowercase().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut k = [0u8; 16];
        k.copy_from_slice(&full[..16]);
        k
    }

    /// Whether a password of `acct` from `ip` may be checked now; else how long until
    /// it may.
    fn check(&self, ip: IpKey, acct: AcctKey, now: Instant) -> Result<Allowed, Duration> {
        let mut t = self.tables.lock().unwrap();
        let trusted = t
            .trusted
            .map
            .get(&(acct, ip))
            .is_some_and(|at| now.duration_since(*at) < self.trust);
        if let Some(c) = t.pair.map.get(&(ip, acct))
            && c.live(now, self.window) >= self.pair_max
        {
            return Err(c.wait(now, self.window));
        }
        let e = t.ip.entry(ip, now, || IpEntry::new(now, self.parallel));
        e.seen = now;
        if !trusted && e.fails.live(now, self.window) >= self.ip_max {
            return Err(e.fails.wait(now, self.window));
        }
        let turns = (!trusted).then(|| e.turns.clone());
        publish_size(&t);
        Ok(Allowed { trusted, turns })
    }

    /// Counts a wrong password; returns how long to wait before answering it.
    fn failed(&self, ip: IpKey, acct: AcctKey, trusted: bool, now: Instant) -> Duration {
        let w = self.window;
        let mut t = self.tables.lock().unwrap();
        let by_ip =
            t.ip.entry(ip, now, || IpEntry::new(now, self.parallel))
                .fails
                .add(now, w);
        let fresh = Count { n: 0, last: now };
        let by_pair = t.pair.entry((ip, acct), now, || fresh).add(now, w);
        let by_account = t.account.entry(acct, now, || fresh).add(now, w);
        publish_size(&t);
        drop(t);
        if by_ip == self.ip_max {
            tracing::warn!(
                ip = %key_ip(ip),
                "auth: {by_ip} failed logins from this address; refusing it for {} s",
                w.as_secs()
            );
        }
        // The owner's own mistakes count only against the owner's address.
        let n = if trusted {
            by_pair
        } else {
            by_ip.max(by_pair).max(by_account)
        };
        self.delay(n)
    }

    /// The wait before answering the `n`th failure: the base delay doubled per earlier
    /// failure, at most the maximum.
    fn delay(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// A successful login: the pair's failures are forgotten and the address is
    /// trusted for the account. The address's and the account's counters stay: a
    /// guesser with one account of its own cannot wipe them by logging in to it.
    fn succeeded(&self, ip: IpKey, acct: AcctKey, now: Instant) {
        let mut t = self.tables.lock().unwrap();
        t.pair.map.remove(&(ip, acct));
        *t.trusted.entry((acct, ip), now, || now) = now;
        publish_size(&t);
    }
}

/// A user name as a client sent it, cut to 64 characters, for logs.
pub fn log_name(user: &str) -> String {
    let mut s: String = user.chars().take(64).collect();
    if s.len() < user.len() {
        s.push('…');
    }
    s
}

fn refused(proto: Protocol, wait: Duration) -> Verdict {
    STATS.refused[proto.index()].fetch_add(1, Ordering::Relaxed);
    Verdict::Refused(wait)
}

fn ip_key(ip: IpAddr) -> IpKey {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

/// The address (or /64) a key stands for, for logs.
fn key_ip(k: IpKey) -> IpAddr {
    canonical_ip(IpAddr::V6(std::net::Ipv6Addr::from(k)))
}

/// The process's counters (one node per process), for /metrics.
struct Stats {
    failures: [AtomicU64; 3],
    refused: [AtomicU64; 3],
    entries: AtomicUsize,
}

static STATS: Stats = Stats {
    failures: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    refused: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    entries: AtomicUsize::new(0),
};

fn publish_size(t: &Tables) {
    STATS.entries.store(t.len(), Ordering::Relaxed);
}

/// What /metrics shows of authentication.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Wrong passwords checked, per protocol (in [`Protocol::ALL`]'s order).
    pub failures: [u64; 3],
    /// Attempts refused without a check, per protocol.
    pub refused: [u64; 3],
    /// Entries in the limiter's tables.
    pub entries: usize,
    /// Password hashes running now, and the most that ran at once since start.
    pub hashes_running: usize,
    pub hashes_running_max: usize,
}

pub fn figures() -> Figures {
    let (hashes_running, hashes_running_max) = crate::store::hashes_running();
    Figures {
        failures: std::array::from_fn(|i| STATS.failures[i].load(Ordering::Relaxed)),
        refused: std::array::from_fn(|i| STATS.refused[i].load(Ordering::Relaxed)),
        entries: STATS.entries.load(Ordering::Relaxed),
        hashes_running,
        hashes_running_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(extra: &str) -> Limiter {
        let cfg: AuthConfig = toml::from_str(extra).unwrap();
        Limiter::new(&cfg)
    }

    fn ip(s: &str) -> IpKey {
        ip_key(s.parse().unwrap())
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let l = limiter("fail_delay_ms = 250\nmax_fail_delay_ms = 5000");
        let ms: Vec<u128> = (1..=8).map(|n| l.delay(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(l.delay(u32::MAX), Duration::from_millis(5000));
        let ms: Vec<u128> = (1..=5).map(|n| limiter("").delay(n).as_millis()).collect();
        assert_eq!(ms, [1000, 2000, 4000, 5000, 5000], "the defaults");
    }

    #[test]
    fn an_address_over_its_limit_is_refused_until_the_window_passes() {
        let l = limiter("ip_max_failures = 3\naccount_ip_max_failures = 100\nwindow_s = 60");
        let (a, t0) = (ip("203.0.113.5"), Instant::now());
        for i in 0..3 {
            let who = l.account_key(&format!("user{i}"));
            assert!(l.check(a, who, t0).is_ok(), "attempt {i}");
            l.failed(a, who, false, t0);
        }
        let wait = l
            .check(a, l.account_key("other"), t0)
            .err()
            .expect("refused");
        assert_eq!(wait, Duration::from_secs(60));
        // Another address is not affected; the same one is free after the window.
        assert!(
            l.check(ip("203.0.113.6"), l.account_key("other"), t0)
                .is_ok()
        );
        let later = t0 + Duration::from_secs(61);
        assert!(l.check(a, l.account_key("other"), later).is_ok());
    }

    #[test]
    fn a_pair_over_its_limit_is_refused_from_that_address_only() {
        let l = limiter("ip_max_failures = 100\naccount_ip_max_failures = 2");
        let (ana, t0) = (l.account_key("Ana"), Instant::now());
        let (attacker, home) = (ip("198.51.100.7"), ip("192.0.2.10"));
        l.failed(attacker, ana, false, t0);
        l.failed(attacker, l.account_key(" ANA "), false, t0);
        assert!(
            l.check(attacker, ana, t0).is_err(),
            "normalised name counts"
        );
        assert!(l.check(attacker, l.account_key("beto"), t0).is_ok());
        // However many failures from elsewhere, the account is never refused from home.
        for i in 0..1000 {
            l.failed(ip(&format!("10.0.{}.{}", i / 250, i % 250)), ana, false, t0);
        }
        assert!(l.check(home, ana, t0).is_ok());
    }

    #[test]
    fn the_account_counter_only_slows_strangers() {
        let l = limiter("fail_delay_ms = 100\nmax_fail_delay_ms = 6400");
        let (ana, t0) = (l.account_key("ana"), Instant::now());
        let home = ip("192.0.2.10");
        for i in 0..6 {
            l.failed(ip(&format!("10.1.0.{i}")), ana, false, t0);
        }
        // A stranger's 7th failure for the account is slowed like the 7th of one address.
        assert_eq!(
            l.failed(ip("10.1.0.99"), ana, false, t0),
            Duration::from_millis(6400)
        );
        // The owner logs in from home: trusted; a typo there costs the base delay only,
        // and the turns of the address are not needed.
        l.succeeded(home, ana, t0);
        let allowed = l.check(home, ana, t0).unwrap();
        assert!(allowed.trusted && allowed.turns.is_none());
        assert_eq!(l.failed(home, ana, true, t0), Duration::from_millis(100));
    }

    #[test]
    fn a_trusted_pair_passes_its_addresss_limit() {
        let l = limiter("ip_max_failures = 2\naccount_ip_max_failures = 5");
        let (ana, nat, t0) = (l.account_key("ana"), ip("192.0.2.1"), Instant::now());
        l.succeeded(nat, ana, t0);
        // A stranger behind the same NAT guesses other accounts.
        for who in ["x", "y", "z"] {
            l.failed(nat, l.account_key(who), false, t0);
        }
        assert!(l.check(nat, l.account_key("beto"), t0).is_err());
        assert!(l.check(nat, ana, t0).is_ok(), "the owner is not locked out");
    }

    #[tokio::test]
    async fn strangers_wait_for_their_turn_and_the_owner_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "n1").unwrap();
        store.create_account("ana", "Ana", "secret").await.unwrap();
        let l = limiter("strangers_parallel = 1\nfail_delay_ms = 0\nmax_fail_delay_ms = 0");
        let (home, away): (IpAddr, IpAddr) = (
            "192.0.2.10".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        let verify = |ip, pw| l.verify(&store, Protocol::Imap, ip, "ana", pw);
        assert!(matches!(verify(home, "secret").await, Verdict::Ok(a) if a == "ana"));
        assert!(matches!(verify(away, "nope").await, Verdict::Wrong));
        // Every strangers' turn is taken (many addresses guessing at once).
        let busy = l.strangers.clone().acquire_owned().await.unwrap();
        let short = Duration::from_millis(300);
        let owner = tokio::time::timeout(short, verify(home, "secret")).await;
        assert!(
            matches!(owner, Ok(Verdict::Ok(_))),
            "the owner waited: {owner:?}"
        );
        let stranger = tokio::time::timeout(short, verify(away, "secret")).await;
        assert!(stranger.is_err(), "a stranger did not wait: {stranger:?}");
        drop(busy);
        assert!(matches!(verify(away, "secret").await, Verdict::Ok(_)));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::2"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(key_ip(ip("192.0.2.1")).to_string(), "192.0.2.1");
    }

    #[test]
    fn memory_is_bounded_whatever_is_sent() {
        let l = limiter("max_entries = 1000");
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // Long junk names are stored as 16 bytes.
            let name = format!("{i}-{}", "x".repeat(1000));
            let now = t0 + Duration::from_millis(u64::from(i));
            l.failed(ip_key(addr), l.account_key(&name), false, now);
            l.succeeded(ip_key(addr), l.account_key(&name), now);
        }
        let t = l.tables.lock().unwrap();
        for (name, n) in [
            ("ip", t.ip.map.len()),
            ("pair", t.pair.map.len()),
            ("account", t.account.map.len()),
            ("trusted", t.trusted.map.len()),
        ] {
            assert!(n <= 1000, "{name}: {n}");
        }
        // The newest entries are the ones kept.
        let newest = ip_key(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 19_999)));
        assert!(t.ip.map.contains_key(&newest));
        assert!(!t.ip.map.contains_key(&ip("10.0.0.0")));
    }
}
