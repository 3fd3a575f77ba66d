//! DNS: authoritative for the zones in `dns.zones_dir` (the organisation's zone and
//! its reverse zone), and the LAN's resolver: names outside our zones are forwarded
//! to `dns.forwarders` for clients in `dns.recursion_from` and REFUSED for others.
//! UDP and TCP on every `dns.listen` address; AXFR for `dns.axfr_from`.
//!
//! Files: `zone` (a zone: parse, checks, answers), `server` (requests to responses,
//! UDP and TCP I/O, the response cache), `batch` (recvmmsg/sendmmsg), `forward`
//! (forwarding with a TTL cache).
//!
//! Implementation notes
//! - The zone files are the administrator's to edit; the store's content area
//!   (`zones/NAME.zone`) is what is served, so that the peer serves the same data once
//!   replication copies it. A file is loaded into the store only after it parses and
//!   passes the checks; a broken edit is logged (file, line, problem) and the previous
//!   version keeps serving. The directory is polled every [`POLL`] and on `clusterd
//!   reload`; a deleted file removes its zone.
//! - Zones are swapped as a whole (`Arc<Zones>` behind a lock held only to clone the
//!   `Arc`); the response cache is emptied on every swap.
//! - The zone's name is its file name without `.zone`.
//! - Built on hickory-proto (messages, zone-file parser), not hickory-server: the
//!   answer logic is ours so that the sections match NSD's (tests/dns_nsd.rs) and a
//!   repeated question is answered from cached bytes (the throughput target is NSD's).
//! - Replies over UDP leave from the address the query was sent to (IP_PKTINFO), so
//!   a node listening on 0.0.0.0 answers queries to the virtual IP correctly; UDP
//!   sockets are also bound with IP_FREEBIND, so a listed address the node does not
//!   hold yet can be bound.
//! - A node whose store is closed for writes (the standby) serves the zones in its
//!   store, which replication keeps equal to the active node's (they are reloaded
//!   when a replicated change arrives), and its own `zones_dir` files only for zones
//!   the store does not have yet.
//! - The DKIM selector's TXT record (`crate::dkim`) is added to the zone holding its
//!   name each time the zones are built, and the zones are rebuilt when the key
//!   changes; a TXT or CNAME the zone file has at that name is served instead.

mod batch;
mod forward;
mod server;
mod zone;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use hickory_proto::rr::LowerName;

use crate::ctx::Ctx;
use crate::store::Store;

pub use server::Server;
pub use zone::Zone;

/// How often `zones_dir` is checked for changes.
pub const POLL: Duration = Duration::from_millis(500);

/// Prefix of zone files in the store's content area.
const CONTENT_PREFIX: &str = "zones/";

/// The zones being served.
#[derive(Default)]
pub struct Zones {
    zones: Vec<Zone>,
}

impl Zones {
    /// Zones served as given (tests and the fuzz targets; the node loads them with
    /// `load_zones`).
    #[doc(hidden)]
    pub fn from_zones(zones: Vec<Zone>) -> Zones {
        Zones { zones }
    }

    /// The zone `name` belongs to (the longest matching origin).
    pub fn find(&self, name: &LowerName) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| z.origin().zone_of(name))
            .max_by_key(|z| z.origin().num_labels())
    }

    /// Serves the DKIM record `owner` TXT `value` in the zone holding `owner`, unless
    /// that zone's file already has a TXT (or CNAME) there.
    fn add_dkim(&mut self, owner: &str, value: &str) {
        let Ok(name) = hickory_proto::rr::Name::from_ascii(format!("{owner}.")) else {
            return;
        };
        let lower = LowerName::new(&name);
        let Some(zone) = self
            .zones
            .iter_mut()
            .filter(|z| z.origin().zone_of(&lower))
            .max_by_key(|z| z.origin().num_labels())
        else {
            return;
        };
        if zone.add_txt_unless_present(&name, crate::dkim::txt_strings(value)) {
            tracing::debug!(%owner, "dns: serving the DKIM record");
        } else {
            tracing::info!(%owner, "dns: the zone file has a TXT record for the DKIM selector; it is served instead of the node's key");
        }
    }
}

/// Checks one zone file as `clusterd check-zone` does: Ok(summary) or the problem.
pub fn check_zone_file(path: &Path) -> Result<String, String> {
    let (origin, text) = read_zone_file(path)?;
    let zone = Zone::parse(&text, &origin, &path.display().to_string())?;
    Ok(format!(
        "{}: zone {} serial {} OK",
        path.display(),
        zone.origin(),
        zone.serial()
    ))
}

/// The zone name (from the file name) and the text of a `NAME.zone` file.
fn read_zone_file(path: &Path) -> Result<(String, String), String> {
    let origin = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".zone"))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{}: zone files are named ZONE.zone", path.display()))?
        .to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok((origin, text))
}

/// What the watcher last saw of a file: modification time and size.
type Seen = BTreeMap<String, (SystemTime, u64)>;

fn scan(dir: &Path) -> Seen {
    let mut seen = Seen::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".zone") {
                continue;
            }
            if let Ok(md) = e.metadata() {
                let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                seen.insert(name, (mtime, md.len()));
            }
        }
    }
    seen
}

/// Loads every valid zone file of `dir` into the store (only when its text changed)
/// and removes zones whose file is gone. Broken files are logged and skipped.
async fn import_dir(store: &Store, dir: &Path) -> Result<()> {
    if !store.is_writable() {
        // A standby serves what replication brings; the active node imports.
        return Ok(());
    }
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "dns: zones_dir does not exist; serving the zones in the store");
        return Ok(());
    }
    let files = scan(dir);
    for name in files.keys() {
        let path = dir.join(name);
        let checked = read_zone_file(&path).and_then(|(origin, text)| {
            Zone::parse(&text, &origin, &path.display().to_string()).map(|_| text)
        });
        match checked {
            Ok(text) => {
                let key = format!("{CONTENT_PREFIX}{name}");
                if store.content(&key).await?.as_deref() != Some(text.as_bytes()) {
                    store.put_content(&key, text.into_bytes()).await?;
                    tracing::info!(file = %path.display(), "dns: zone loaded");
                }
            }
            Err(problem) => {
                tracing::error!("dns: {problem}; the previous version of the zone keeps serving");
            }
        }
    }
    for entry in store.content_list(CONTENT_PREFIX).await? {
        let name = entry.path.trim_start_matches(CONTENT_PREFIX);
        if !files.contains_key(name) {
            store.delete_content(&entry.path).await?;
            tracing::info!(zone = name, "dns: zone file removed; zone no longer served");
        }
    }
    Ok(())
}

/// Builds the served zones from the store's content area. A node whose store is
/// closed for writes (a standby, or a cluster node before it becomes active) also
/// serves the valid files of its own `dir` for zones the store does not have yet;
/// replication of the active node's zones replaces that. `dkim` (owner, TXT value)
/// is added to the zone holding its owner name unless that zone's file has a TXT
/// there.
async fn load_zones(store: &Store, dir: &Path, dkim: Option<(String, String)>) -> Result<Zones> {
    let mut zones = Vec::new();
    for entry in store.content_list(CONTENT_PREFIX).await? {
        let name = entry.path.trim_start_matches(CONTENT_PREFIX);
        let Some(origin) = name.strip_suffix(".zone") else {
            continue;
        };
        let Some(data) = store.content(&entry.path).await? else {
            continue;
        };
        match Zone::parse(&String::from_utf8_lossy(&data), origin, &entry.path) {
            Ok(z) => zones.push(z),
            Err(problem) => tracing::error!("dns: stored zone does not load: {problem}"),
        }
    }
    if !store.is_writable() {
        for name in scan(dir).keys() {
            let path = dir.join(name);
            let parsed = read_zone_file(&path).and_then(|(origin, text)| {
                Zone::parse(&text, &origin, &path.display().to_string())
            });
            match parsed {
                Ok(z) if !zones.iter().any(|have| have.origin() == z.origin()) => zones.push(z),
                Ok(_) => {}
                Err(problem) => tracing::error!("dns: {problem}"),
            }
        }
    }
    let mut zones = Zones { zones };
    if let Some((owner, value)) = dkim {
        zones.add_dkim(&owner, &value);
    }
    Ok(zones)
}

/// The DNS service's lasting part: the zones and the server answering from them.
pub struct Dns {
    srv: Arc<server::Server>,
    listen: Vec<std::net::SocketAddr>,
}

impl Dns {
    /// One instance of the service (see `supervise`): binds UDP and TCP on every
    /// `dns.listen` address and serves until stopped.
    pub async fn serve(self: Arc<Self>, run: crate::supervise::Run) -> Result<()> {
        self.srv.clone().listen(&self.listen, run).await
    }
}

/// Prepares the DNS service: loads the zones and watches the files (kept across the
/// service's restarts); [`Dns::serve`] binds the listeners.
pub async fn prepare(ctx: Arc<Ctx>) -> Result<Arc<Dns>> {
    let cfg = &ctx.cfg.dns;
    import_dir(&ctx.store, &cfg.zones_dir).await?;
    let zones = Arc::new(RwLock::new(Arc::new(
        load_zones(&ctx.store, &cfg.zones_dir, ctx.dkim.record()).await?,
    )));
    let srv = server::Server::new(cfg.clone(), zones.clone());
    let dns = Arc::new(Dns {
        srv: srv.clone(),
        listen: cfg.listen.clone(),
    });

    let watch_ctx = ctx.clone();
    tokio::spawn(async move {
        let dir = watch_ctx.cfg.dns.zones_dir.clone();
        let mut seen = scan(&dir);
        let mut writable = watch_ctx.store.is_writable();
        let mut changes = watch_ctx.store.subscribe();
        let mut dkim_changes = watch_ctx.dkim.subscribe();
        loop {
            let reload = tokio::select! {
                _ = tokio::time::sleep(POLL) => false,
                _ = watch_ctx.dns_reload.notified() => true,
                // A zone changed in the store (replicated to a standby, say).
                c = changes.recv() => match c {
                    Ok(crate::store::Change::Content { path }) => path.starts_with(CONTENT_PREFIX),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep(POLL).await;
                        false
                    }
                    Ok(_) => false,
                },
                // The DKIM key changed (generated, or replicated from the peer).
                Ok(()) = dkim_changes.changed() => true,
            };
            // Also import when this node becomes active.
            let (now_seen, now_writable) = (scan(&dir), watch_ctx.store.is_writable());
            if !reload && now_seen == seen && now_writable == writable {
                continue;
            }
            seen = now_seen;
            writable = now_writable;
            if let Err(e) = import_dir(&watch_ctx.store, &dir).await {
                tracing::error!("dns: loading zones: {e:#}");
            }
            match load_zones(&watch_ctx.store, &dir, watch_ctx.dkim.record()).await {
                Ok(z) => {
                    *zones.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(z);
                    srv.zones_changed();
                }
                Err(e) => tracing::error!("dns: reading zones from the store: {e:#}"),
            }
        }
    });
    Ok(dns)
}
