//! The `[store]` section: how the node keeps its disk healthy — the free-space floor
//! below which it refuses new mail but goes on serving reads, the quota every
//! account gets unless it has its own, and how often unreferenced message files are
//! swept.

use serde::{Deserialize, Serialize};

documented! {
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct StoreConfig {
        /// Below this much free space (MiB) on the file system of node.data_dir, new
        /// mail is refused (SMTP 452 4.3.1, IMAP APPEND NO) while reads go on, and the
        /// node reports itself unhealthy so the peer takes the service. 0: no floor
        /// (a write that finds the disk full is still refused the same way).
        #[serde(default = "default_min_free_mb")]
        pub min_free_mb: u64,
        /// Storage quota of an account without its own (MiB); 0: no quota.
        #[serde(default)]
        pub default_quota_mb: u64,
        /// Sweep message files no row references this often (seconds); 0: never.
        #[serde(default = "default_gc_interval")]
        pub gc_interval_s: u64,
        /// A file younger than this (seconds) is never swept, whatever refers to it:
        /// a delivery or a replicated op may be about to commit it.
        #[serde(default = "default_gc_grace")]
        pub gc_grace_s: u64,
    }
}

fn default_min_free_mb() -> u64 {
    256
}
fn default_gc_interval() -> u64 {
    3600
}
fn default_gc_grace() -> u64 {
    600
}

impl Default for StoreConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}
