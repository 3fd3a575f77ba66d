//! Mail for other domains: the queue runner. It reads the store's outbound queue on
//! the active node only (a standby's store is not writable, so it never sends), sends
//! each due message through `route` (MX or relay host) and `client` (one SMTP session
//! per destination), records every attempt's outcome per recipient as an op (so a
//! node taking over continues where the other stopped), retries on the back-off of
//! `[outbound] retry_schedule_s`, and returns RFC 3464 DSNs (`bounce`) for recipients
//! given up and delay warnings.
//!
//! Invariants
//! - A recipient is marked delivered in the same commit that ends the attempt, and a
//!   delivered or failed recipient never becomes pending again (the store's
//!   `QueueUpdate` keeps final states), so only a message in flight when a node dies
//!   can be sent twice (delivery is at least once).
//! - Recipients of one domain share one session and one transaction; different
//!   domains of one message go out concurrently. At most `max_connections` messages
//!   are being sent at once and `max_per_domain` sessions go to one destination; a
//!   message waits for its destinations' slots before it takes a global one, so a
//!   stalled destination holds back only its own mail.
//! - An entry leaves the queue when every recipient is final; a DSN is made before
//!   that commit (a crash between them can repeat a DSN, never lose one).

mod bounce;
mod client;
mod route;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Semaphore;

use crate::ctx::Ctx;
use crate::store::{Change, QueueEntry, RcptState};

use client::Outcome;
use route::{RouteError, Router};

/// The queue runner's handle (the control socket uses it for `clusterd queue ...`).
pub struct Outbound {
    ctx: Arc<Ctx>,
    router: Router,
    settings: client::Settings,
    /// Entries being attempted now.
    in_flight: Mutex<HashSet<String>>,
    /// Messages being sent at once (`max_connections`).
    workers: Arc<Semaphore>,
    /// Sessions per destination (domain, or the relay host).
    per_dest: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A TLS connector that accepts any certificate, as outbound SMTP uses it (the
/// monitor's HTTPS probe of the node's own listeners uses it too).
pub fn any_cert_connector() -> tokio_rustls::TlsConnector {
    client::Settings::tls_connector()
}

/// Prepares the queue runner; [`Outbound::serve`] runs it.
pub fn prepare(ctx: Arc<Ctx>) -> Result<Arc<Outbound>> {
    let o = &ctx.cfg.outbound;
    let credentials = match (&o.relay_user, &o.relay_password_file) {
        (Some(user), Some(file)) => {
            let text = std::fs::read_to_string(file).with_context(|| {
                format!(
                    "outbound.relay_password_file: cannot read {}",
                    file.display()
                )
            })?;
            let pass = text.lines().next().unwrap_or_default().to_string();
            Some((user.clone(), pass))
        }
        _ => None,
    };
    let router = Router::new(o);
    let implicit_tls = router.relay().is_some_and(|r| r.port == 465);
    let settings = client::Settings {
        ehlo: ctx.cfg.hostname(),
        connect_timeout: Duration::from_secs(o.connect_timeout_s),
        command_timeout: Duration::from_secs(o.command_timeout_s),
        tls: client::Settings::tls_connector(),
        credentials,
        implicit_tls,
    };
    let runner = Arc::new(Outbound {
        workers: Arc::new(Semaphore::new(o.max_connections)),
        router,
        settings,
        in_flight: Mutex::new(HashSet::new()),
        per_dest: Mutex::new(HashMap::new()),
        ctx,
    });
    Ok(runner)
}

/// Marks an entry in flight for as long as it lives.
struct InFlight<'a>(&'a Outbound, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.lock().unwrap().remove(&self.1);
    }
}

impl Outbound {
    /// One instance of the queue runner (see `supervise`): scans the queue until
    /// stopped. Attempts already started outlive it.
    pub async fn serve(self: Arc<Self>, run: crate::supervise::Run) -> Result<()> {
        run.ready();
        let mut changes = self.ctx.store.subscribe();
        let mut open = true;
        loop {
            run.gate(self.scan()).await;
            // Wake on a queue change (a new message, or a takeover's store opening),
            // on `queue retry`, or once a second for retry times; at most ten scans a
            // second however busy the queue is.
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::select! {
                _ = tick => {}
                _ = self.ctx.queue_kick.notified() => {}
                changed = queue_changed(&mut changes), if open => open = changed,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts an attempt for every due entry not already in flight.
    async fn scan(self: &Arc<Self>) {
        if !self.ctx.store.is_writable() {
            return;
        }
        let now = crate::store::now();
        let warn_before = self.warn_after_s().map(|w| now - w);
        let due = self
            .ctx
            .store
            .queue_due(now, now - self.lifetime_s(), warn_before)
            .await;
        let ids = match due {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "outbound: reading the queue failed");
                return;
            }
        };
        for id in ids {
            if !self.in_flight.lock().unwrap().insert(id.clone()) {
                continue;
            }
            tokio::spawn(self.clone().process(id));
        }
    }

    fn lifetime_s(&self) -> i64 {
        (self.ctx.cfg.outbound.queue_lifetime_h * 3600.0) as i64
    }

    fn warn_after_s(&self) -> Option<i64> {
        let h = self.ctx.cfg.outbound.delay_warning_h;
        (h > 0.0).then_some((h * 3600.0) as i64)
    }

    fn due(&self, e: &QueueEntry, now: i64) -> bool {
        e.next_attempt <= now
            || now >= e.created + self.lifetime_s()
            || (!e.warned && self.warn_after_s().is_some_and(|w| now >= e.created + w))
    }

    /// One attempt of one entry, and its consequences (DSNs, the commit).
    async fn process(self: Arc<Self>, id: String) {
        let _flight = InFlight(&self, id.clone());
        let store = &self.ctx.store;
        let Some(e) = self.entry(&id).await else {
            return;
        };
        // A message to be sent first waits for its destinations' session slots (in
        // name order, so two messages never hold one each of the other's), then for
        // one of the `max_connections` slots; only then is its body read. A stalled
        // destination so holds back only its own mail, and the bodies in memory are
        // bounded by `max_connections`.
        let now = crate::store::now();
        let _permits = if now < e.created + self.lifetime_s() && e.next_attempt <= now {
            let mut permits = Vec::new();
            for key in self.destinations(&e) {
                let sem = self.dest_slots(key);
                let Ok(p) = sem.acquire_owned().await else {
                    return;
                };
                permits.push(p);
            }
            let Ok(p) = self.workers.clone().acquire_owned().await else {
                return;
            };
            permits.push(p);
            permits
        } else {
            Vec::new()
        };
        // The entry as it is now (the administrator or a finished attempt may have
        // changed it while this task waited).
        let Some(mut e) = self.entry(&id).await else {
            return;
        };
        let now = crate::store::now();
        if !self.due(&e, now) || !store.is_writable() {
            return;
        }
        let before = e.recipients.clone();
        let mut raw: Option<Vec<u8>> = None;
        if now >= e.created + self.lifetime_s() {
            let hours = self.ctx.cfg.outbound.queue_lifetime_h;
            for r in e.recipients.iter_mut().filter(|r| !r.state.is_final()) {
                let last = r.reply.take().or_else(|| e.last_error.clone());
                r.state = RcptState::Failed;
                r.reply = Some(match last {
                    Some(l) => {
                        format!("5.4.7 gave up after {hours} hours in the queue; last error: {l}")
                    }
                    None => format!("5.4.7 gave up after {hours} hours in the queue"),
                });
            }
        } else if e.next_attempt <= now {
            match store.read_blob(&e.blob).await {
                Ok(bytes) => {
                    self.attempt(&mut e, &bytes).await;
                    raw = Some(bytes);
                }
                Err(err) => {
                    e.last_error = Some(format!("reading the message from the store: {err}"));
                }
            }
            e.attempts += 1;
            e.next_attempt = now + self.ctx.cfg.outbound.retry_delay(e.attempts) as i64;
        }
        if raw.is_none() {
            raw = store.read_blob(&e.blob).await.ok();
        }
        let original = raw.unwrap_or_default();
        // Recipients given up in this round get their DSN.
        let failed: Vec<_> = e
            .recipients
            .iter()
            .zip(&before)
            .filter(|(r, b)| r.state == RcptState::Failed && b.state != RcptState::Failed)
            .map(|(r, _)| r.clone())
            .collect();
        if !failed.is_empty() {
            bounce::notify(&self.ctx, &e, &failed, &original, bounce::Kind::Failed).await;
        }
        let pending: Vec<_> = e.pending().cloned().collect();
        if !pending.is_empty()
            && !e.warned
            && self.warn_after_s().is_some_and(|w| now >= e.created + w)
        {
            let until = e.created + self.lifetime_s();
            bounce::notify(
                &self.ctx,
                &e,
                &pending,
                &original,
                bounce::Kind::Delayed(until),
            )
            .await;
            e.warned = true;
        }
        let res = if pending.is_empty() {
            store.queue_remove(&e.id).await
        } else {
            store.queue_update(&e).await
        };
        if let Err(err) = res {
            tracing::warn!(id = %e.id, error = %err, "outbound: recording the attempt failed");
        }
    }

    /// Sends the pending recipients of `e`, one destination at a time in parallel,
    /// and records each recipient's outcome in `e`.
    async fn attempt(&self, e: &mut QueueEntry, raw: &[u8]) {
        let signed;
        let msg: &[u8] = match self.ctx.dkim.sign(raw) {
            Some(header) => {
                signed = [header.as_bytes(), raw].concat();
                &signed
            }
            None => raw,
        };
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in e.pending() {
            groups
                .entry(domain_of(&r.addr))
                .or_default()
                .push(r.addr.clone());
        }
        let sender = e.sender.clone();
        let results = futures::future::join_all(
            groups
                .into_iter()
                .map(|(domain, rcpts)| self.deliver(domain, &sender, rcpts, msg)),
        )
        .await;
        let mut first_deferral = None;
        for (addr, outcome, remote) in results.into_iter().flatten() {
            let Some(r) = e.recipients.iter_mut().find(|r| r.addr == addr) else {
                continue;
            };
            let (state, text) = match outcome {
                Outcome::Delivered(t) => (RcptState::Delivered, t),
                Outcome::Failed(t) => (RcptState::Failed, t),
                Outcome::Deferred(t) => {
                    first_deferral.get_or_insert_with(|| t.clone());
                    (RcptState::Pending, t)
                }
            };
            match state {
                RcptState::Delivered => {
                    tracing::info!(id = %e.id, to = %addr, reply = %text, "outbound: delivered")
                }
                RcptState::Failed => {
                    tracing::info!(id = %e.id, to = %addr, reply = %text, "outbound: failed")
                }
                RcptState::Pending => {
                    tracing::info!(id = %e.id, to = %addr, reply = %text, "outbound: deferred")
                }
            }
            r.state = state;
            r.reply = Some(text);
            r.remote = remote;
        }
        e.last_error = first_deferral;
    }

    /// The session slots of one destination. Destinations with no session open are
    /// forgotten once more than a thousand are known (the map stays small).
    fn dest_slots(&self, key: String) -> Arc<Semaphore> {
        let max = self.ctx.cfg.outbound.max_per_domain;
        let mut map = self.per_dest.lock().unwrap();
        if map.len() > 1000 && !map.contains_key(&key) {
            map.retain(|_, s| s.available_permits() < max || Arc::strong_count(s) > 1);
        }
        map.entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(max)))
            .clone()
    }

    /// One queue entry, or `None` (gone, or unreadable: logged).
    async fn entry(&self, id: &str) -> Option<QueueEntry> {
        match self.ctx.store.queue_entry(id).await {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(%id, error = %err, "outbound: reading a queue entry failed");
                None
            }
        }
    }

    /// The destinations (domains, or the relay host) of an entry's pending
    /// recipients, sorted and without repeats.
    fn destinations(&self, e: &QueueEntry) -> Vec<String> {
        if let Some(r) = self.router.relay() {
            return vec![format!("[{}]:{}", r.host, r.port)];
        }
        let mut keys: Vec<String> = e.pending().map(|r| domain_of(&r.addr)).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// One destination: its hosts in order until one takes the transaction.
    /// Returns (recipient, outcome, remote host) for each recipient.
    async fn deliver(
        &self,
        domain: String,
        sender: &str,
        rcpts: Vec<String>,
        msg: &[u8],
    ) -> Vec<(String, Outcome, Option<String>)> {
        let all = |o: Outcome, remote: Option<String>| {
            rcpts
                .iter()
                .map(|r| (r.clone(), o.clone(), remote.clone()))
                .collect::<Vec<_>>()
        };
        let hops = match self.router.hops(&domain).await {
            Ok(h) => h,
            Err(RouteError::Permanent(status, why)) => {
                return all(Outcome::Failed(format!("{status} {why}")), None);
            }
            Err(RouteError::Temporary(why)) => return all(Outcome::Deferred(why), None),
        };
        let job = client::Job {
            sender,
            rcpts: &rcpts,
            msg,
        };
        let mut last = String::new();
        let mut temporary = false;
        for hop in &hops {
            let addrs = match self.router.addresses(hop).await {
                Ok(a) => a,
                Err(RouteError::Temporary(why)) | Err(RouteError::Permanent(_, why)) => {
                    temporary = true;
                    last = why;
                    continue;
                }
            };
            if addrs.is_empty() {
                last = format!("host {} has no address (A/AAAA)", hop.host);
                continue;
            }
            temporary = true;
            for addr in addrs {
                match client::send(addr, &hop.host, &self.settings, &job).await {
                    client::Session::Done(outcomes) => {
                        return rcpts
                            .iter()
                            .cloned()
                            .zip(outcomes)
                            .map(|(r, o)| (r, o, Some(hop.host.clone())))
                            .collect();
                    }
                    client::Session::NextHost(why) => last = why,
                }
            }
        }
        if temporary {
            all(Outcome::Deferred(last), None)
        } else {
            // No host of the domain has an address: it cannot receive mail.
            all(
                Outcome::Failed(format!("5.4.4 unable to route: {last}")),
                None,
            )
        }
    }

    /// `clusterd queue retry`: makes one entry (or all) due now.
    pub async fn retry(&self, id: Option<&str>) -> Result<usize> {
        let store = &self.ctx.store;
        let mut n = 0;
        for mut e in store.queue().await? {
            if id.is_some_and(|id| id != e.id) {
                continue;
            }
            e.next_attempt = crate::store::now();
            store.queue_update(&e).await?;
            n += 1;
        }
        self.ctx.queue_kick.notify_one();
        Ok(n)
    }

    /// `clusterd queue delete`: drops an entry without telling anyone.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let store = &self.ctx.store;
        if store.queue_entry(id).await?.is_none() {
            return Ok(false);
        }
        store.queue_remove(id).await?;
        Ok(true)
    }

    /// `clusterd queue bounce`: gives up on an entry's pending recipients now and
    /// returns it to its sender with a DSN.
    pub async fn bounce(&self, id: &str) -> Result<bool> {
        if !self.in_flight.lock().unwrap().insert(id.to_string()) {
            anyhow::bail!("message {id} is being delivered right now; try again in a moment");
        }
        let _flight = InFlight(self, id.to_string());
        let store = &self.ctx.store;
        let Some(mut e) = store.queue_entry(id).await? else {
            return Ok(false);
        };
        for r in e.recipients.iter_mut().filter(|r| !r.state.is_final()) {
            r.state = RcptState::Failed;
            r.reply = Some(format!(
                "5.0.0 returned by the administrator{}",
                r.reply
                    .as_deref()
                    .map(|l| format!("; last error: {l}"))
                    .unwrap_or_default()
            ));
        }
        let failed: Vec<_> = e
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Failed)
            .cloned()
            .collect();
        let raw = store.read_blob(&e.blob).await.unwrap_or_default();
        bounce::notify(&self.ctx, &e, &failed, &raw, bounce::Kind::Failed).await;
        store.queue_remove(id).await?;
        Ok(true)
    }
}

/// The domain of an address, lower case.
fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Waits for a queue change; `false` once the store's channel is closed.
async fn queue_changed(rx: &mut tokio::sync::broadcast::Receiver<Change>) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(Change::Queue) | Err(RecvError::Lagged(_)) => return true,
            Ok(_) => {}
            Err(RecvError::Closed) => return false,
        }
    }
}
