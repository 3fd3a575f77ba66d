//! The `[auth]` section: the limits of the one authentication limiter shared by SMTP
//! AUTH, IMAP LOGIN/AUTHENTICATE and the webmail login (`crate::authlimit`) — how many
//! wrong passwords an address and an (account, address) pair may send before they are
//! refused without a hash, how failures are delayed, and when a session is closed.

use serde::{Deserialize, Serialize};

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct AuthConfig {
        /// Seconds after its last failure that a counter is forgotten (per address,
        /// per account and address, per account).
        #[serde(default = "default_window")]
        pub window_s: u64,
        /// Wrong passwords from one address (an IPv6 /64) within the window after which
        /// its attempts are refused at once, without checking the password — except for
        /// accounts that logged in successfully from that address within trusted_days.
        #[serde(default = "default_ip_max_failures")]
        pub ip_max_failures: u32,
        /// Wrong passwords for one account from one address within the window after
        /// which that account is refused from that address (only from there: the same
        /// account from another address is never blocked).
        #[serde(default = "default_account_ip_max_failures")]
        pub account_ip_max_failures: u32,
        /// The answer to a wrong password waits this long (milliseconds), doubled for
        /// each earlier failure counted against it: the most of the address's, the
        /// account's from that address and, from an address the account has not
        /// logged in from, the account's from anywhere.
        #[serde(default = "default_fail_delay_ms")]
        pub fail_delay_ms: u64,
        /// The longest wait before answering a wrong password (milliseconds).
        #[serde(default = "default_max_fail_delay_ms")]
        pub max_fail_delay_ms: u64,
        /// Passwords from one address checked at once; more wait their turn, so one
        /// address never fills the hashing queue.
        #[serde(default = "default_ip_parallel")]
        pub ip_parallel: u32,
        /// Passwords checked at once, over all addresses, for accounts the address has
        /// not logged in from; more wait their turn. Logins from an address the
        /// account used before never wait for these, so many addresses guessing at
        /// once cannot keep the owner waiting behind a long hashing queue.
        #[serde(default = "default_strangers_parallel")]
        pub strangers_parallel: u32,
        /// Wrong passwords after which an SMTP session (421 4.7.0) or an IMAP session
        /// (BYE) is closed.
        #[serde(default = "default_session_max_failures")]
        pub session_max_failures: u32,
        /// Days an address an account logged in from stays trusted for that account:
        /// failures from elsewhere never slow it and its address's limit never
        /// refuses it.
        #[serde(default = "default_trusted_days")]
        pub trusted_days: u64,
        /// Entries each table of the limiter keeps at most (addresses, account and
        /// address pairs, accounts, trusted pairs); the least recently used go first.
        #[serde(default = "default_max_entries")]
        pub max_entries: usize,
    }
}

fn default_window() -> u64 {
    900
}
fn default_ip_max_failures() -> u32 {
    20
}
fn default_account_ip_max_failures() -> u32 {
    10
}
fn default_fail_delay_ms() -> u64 {
    1000
}
fn default_max_fail_delay_ms() -> u64 {
    5000
}
fn default_ip_parallel() -> u32 {
    2
}
fn default_strangers_parallel() -> u32 {
    16
}
fn default_session_max_failures() -> u32 {
    3
}
fn default_trusted_days() -> u64 {
    30
}
fn default_max_entries() -> usize {
    10_000
}

impl Default for AuthConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}
