//! The supervisor: every front-end runs as a named service that can be stopped,
//! started and restarted on its own ("smtp", "imap", "dns", "http", "queue",
//! "replication", "cluster"), and one that panics or returns is restarted with
//! [`Backoff`] (100 ms doubling to 10 s, reset after a minute healthy). Every change
//! is a [`SupervisorEvent`], kept in a ring of the last [`EVENTS_KEPT`] and sent on a
//! `tokio::sync::broadcast` that the monitor subscribes to.
//!
//! How a service runs
//! - At start-up `node` prepares each front-end once (its shared state: IMAP's
//!   `\Recent` claims and structure cache, the webmail's sessions, the DNS zones and
//!   their watcher, the queue runner's in-flight set) and registers a *run* function
//!   here. An instance of the service is one call of it: it binds the listeners,
//!   calls [`Run::ready`], and serves until stopped. Its accept loops run in a
//!   `JoinSet` owned by the instance ([`until_first_ends`]), so dropping the instance
//!   ends them.
//! - Stopping an instance drops its future; the supervisor then waits until every
//!   clone of its [`Run`] is gone (each accept loop and each DNS UDP thread holds
//!   one), so when `stop` returns the listening sockets are closed and a client gets
//!   "connection refused". Sessions already open are left to finish (they are
//!   detached tasks and end at their protocol's idle timeout): a restart cures the
//!   listener without cutting users' IMAP sessions or an SMTP transfer.
//! - Fault injection (`clusterd debug`, only with `[monitor] allow_fault_injection`):
//!   *wedge* makes [`Run::gate`] never return, so the listeners stay bound and
//!   accept nothing (a probe connects and times out; DNS UDP threads stop reading);
//!   *panic* panics inside the service's task; both are cured by a restart, which
//!   starts a fresh instance.
//!
//! The cluster loop is supervised for exits and panics only: [`Supervisor::watch`].
//! Its start-up removes a virtual IP left by an earlier run and starts a fresh role
//! machine in `init`, so restarting it on its own would drop the VIP on the active
//! node and could, with heartbeats stopped, let the peer take it too. If it ends, the
//! event is recorded and [`Supervisor::all_alive`] turns false: the systemd watchdog
//! pings stop and systemd restarts the whole process (the peer takes the service
//! through the heartbeat meanwhile). `stop`, `start` and `restart` of "cluster" are
//! refused.
//!
//! systemd's notify protocol (`READY=1`, `STATUS=`, `WATCHDOG=1`) is in
//! [`systemd`]; the pings come from [`Supervisor::watchdog`]'s loop.

pub mod systemd;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// The services, in start order.
pub const SERVICES: [&str; 7] = [
    "smtp",
    "imap",
    "dns",
    "http",
    "queue",
    "replication",
    "cluster",
];

/// Events kept in memory for `clusterd status`.
pub const EVENTS_KEPT: usize = 200;
/// Longest wait for a stopped instance's sockets to close.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for a starting instance to call [`Run::ready`].
const READY_WAIT: Duration = Duration::from_secs(60);

/// What happened to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Started (at start-up, or by `start`).
    Started,
    /// Stopped on request.
    Stopped,
    /// Its task panicked (`detail`: the panic message).
    Panicked,
    /// Its task returned (`detail`: the error, if any).
    Exited,
    /// Started again, after a failure (with back-off) or by `restart`.
    Restarted,
    /// Wedged by fault injection.
    Wedged,
}

/// One event, as the monitor and `clusterd status --json` see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorEvent {
    pub service: String,
    pub kind: EventKind,
    pub detail: String,
    /// Unix time in milliseconds.
    pub at: i64,
}

/// A service's state ([`Supervisor::services`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceState {
    pub name: String,
    /// An instance is running (it may still be wedged).
    pub running: bool,
    /// Restarts since the node started (after failures and on request).
    pub restarts: u32,
    /// Unix time in milliseconds of the running instance's start.
    pub last_start: Option<i64>,
    /// Why the last instance ended, if it failed.
    pub last_error: Option<String>,
    /// Wedged by fault injection (until the next restart).
    #[serde(default)]
    pub wedged: bool,
    /// Whether it is meant to run (false after `stop`).
    #[serde(default)]
    pub wanted: bool,
}

/// A fault injected into a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Wedge,
    Panic,
}

/// Held (through [`Run`] clones) by everything of one instance that owns a socket.
struct Lease;

/// What a service's instance gets: the ready signal, the fault state and the lease
/// the supervisor waits on. Clone it into each accept loop or thread that owns a
/// listening socket; never into a session.
#[derive(Clone)]
pub struct Run {
    fault: watch::Receiver<Fault>,
    ready: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    _lease: Arc<Lease>,
}

impl Run {
    /// Tells the supervisor the instance is up (its listeners are bound).
    pub fn ready(&self) {
        if let Some(tx) = self.ready.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }

    /// Whether the instance is wedged (for loops on threads, which poll it).
    pub fn wedged(&self) -> bool {
        *self.fault.borrow() == Fault::Wedge
    }

    /// `fut`'s output, or never once the instance is wedged: accept loops wrap their
    /// `accept()` in it.
    pub async fn gate<F: Future>(&self, fut: F) -> F::Output {
        let mut fault = self.fault.clone();
        let wedge = async move {
            if fault.wait_for(|f| *f == Fault::Wedge).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            _ = wedge => std::future::pending().await,
            out = fut => out,
        }
    }
}

/// Runs one instance's tasks until the first ends: a panic is passed on (so the
/// supervisor sees the service panic), a return is an error (accept loops do not
/// return). Dropping the returned future aborts them all.
pub async fn until_first_ends(mut set: JoinSet<()>) -> Result<()> {
    match set.join_next().await {
        None => Err(anyhow!("no task to run")),
        Some(Ok(())) => Err(anyhow!("a task of the service returned")),
        Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Some(Err(e)) => Err(anyhow!("a task of the service was cancelled: {e}")),
    }
}

/// The restart delay after a failure: 100 ms, doubling up to 10 s; an instance that
/// ran a minute without failing starts the sequence again.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(10);
    pub const HEALTHY: Duration = Duration::from_secs(60);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The delay before restarting an instance that failed after running `ran`.
    pub fn failed(&mut self, ran: Duration) -> Duration {
        if ran >= Self::HEALTHY {
            self.next = Self::FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
type RunFn = Arc<dyn Fn(Run) -> BoxFuture + Send + Sync>;

/// A request to a service's manager task.
enum Cmd {
    /// Start (`true`: stop the running instance first, i.e. restart).
    Start(bool, oneshot::Sender<Result<()>>),
    Stop(oneshot::Sender<Result<()>>),
    Fault(Fault, oneshot::Sender<Result<()>>),
}

struct Slot {
    name: &'static str,
    /// None: watched only (the cluster loop).
    cmds: Option<mpsc::Sender<Cmd>>,
    state: Mutex<ServiceState>,
}

/// The supervisor of the node's services (see the module documentation).
pub struct Supervisor {
    slots: Mutex<Vec<Arc<Slot>>>,
    events: Mutex<VecDeque<SupervisorEvent>>,
    tx: broadcast::Sender<SupervisorEvent>,
    /// Set by `clusterd debug wedge supervisor`: the watchdog loop stops.
    wedged: AtomicBool,
    /// Set at shutdown: services ending now are expected.
    stopping: AtomicBool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A panic's message.
fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}

impl Supervisor {
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor {
            slots: Mutex::new(Vec::new()),
            events: Mutex::new(VecDeque::new()),
            tx: broadcast::channel(256).0,
            wedged: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        })
    }

    /// Every registered service's state, in registration order.
    pub fn services(&self) -> Vec<ServiceState> {
        self.slots
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.state.lock().unwrap().clone())
            .collect()
    }

    /// The last events, oldest first.
    pub fn events(&self) -> Vec<SupervisorEvent> {
        self.events.lock().unwrap().iter().cloned().collect()
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.tx.subscribe()
    }

    /// Whether every service meant to run has a running instance (a service stopped
    /// on request does not count; one waiting out its back-off does).
    pub fn all_alive(&self) -> bool {
        self.slots.lock().unwrap().iter().all(|s| {
            let st = s.state.lock().unwrap();
            st.running || !st.wanted
        })
    }

    fn record(&self, service: &str, kind: EventKind, detail: String) {
        let e = SupervisorEvent {
            service: service.to_string(),
            kind,
            detail,
            at: now_ms(),
        };
        match kind {
            EventKind::Panicked | EventKind::Exited => {
                tracing::error!(service, kind = ?kind, detail = %e.detail, "supervisor")
            }
            _ => tracing::info!(service, kind = ?kind, detail = %e.detail, "supervisor"),
        }
        {
            let mut ring = self.events.lock().unwrap();
            if ring.len() >= EVENTS_KEPT {
                ring.pop_front();
            }
            ring.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>> {
        let found = self
            .slots
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name)
            .cloned();
        found.ok_or_else(|| {
            let names: Vec<String> = self.services().into_iter().map(|s| s.name).collect();
            anyhow!(
                "no service {name:?} on this node (services: {})",
                names.join(", ")
            )
        })
    }

    fn new_slot(&self, name: &'static str, cmds: Option<mpsc::Sender<Cmd>>) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            name,
            cmds,
            state: Mutex::new(ServiceState {
                name: name.to_string(),
                running: false,
                restarts: 0,
                last_start: None,
                last_error: None,
                wedged: false,
                wanted: true,
            }),
        });
        self.slots.lock().unwrap().push(slot.clone());
        slot
    }

    /// Registers service `name` with its run function and starts it; returns once
    /// the instance called [`Run::ready`], or its error if it ended first.
    pub async fn add<F, Fut>(self: &Arc<Self>, name: &'static str, run: F) -> Result<()>
    where
        F: Fn(Run) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let run: RunFn = Arc::new(move |r| Box::pin(run(r)));
        let (tx, rx) = mpsc::channel(8);
        let slot = self.new_slot(name, Some(tx));
        let (done, wait) = oneshot::channel();
        tokio::spawn(manage(self.clone(), slot, run, rx, done));
        wait.await
            .unwrap_or_else(|_| Err(anyhow!("{name}: the supervisor stopped")))
    }

    /// Watches a task that cannot be restarted on its own (the cluster loop): its end
    /// is recorded and makes [`Self::all_alive`] false.
    pub fn watch(self: &Arc<Self>, name: &'static str, task: tokio::task::JoinHandle<()>) {
        let slot = self.new_slot(name, None);
        {
            let mut st = slot.state.lock().unwrap();
            st.running = true;
            st.last_start = Some(now_ms());
        }
        self.record(name, EventKind::Started, String::new());
        let sup = self.clone();
        tokio::spawn(async move {
            let (kind, detail) = match task.await {
                Ok(()) => (EventKind::Exited, "the task returned".to_string()),
                Err(e) if e.is_panic() => (EventKind::Panicked, panic_text(e)),
                Err(e) => (EventKind::Exited, e.to_string()),
            };
            {
                let mut st = slot.state.lock().unwrap();
                st.running = false;
                if sup.stopping.load(Ordering::SeqCst) {
                    st.wanted = false;
                } else {
                    st.last_error = Some(detail.clone());
                }
            }
            sup.record(name, kind, detail);
        });
    }

    async fn ask(
        &self,
        name: &str,
        make: impl FnOnce(oneshot::Sender<Result<()>>) -> Cmd,
    ) -> Result<()> {
        let slot = self.slot(name)?;
        let Some(cmds) = &slot.cmds else {
            bail!(
                "{name}: supervised for exits only; it cannot be stopped, started or restarted on its own (restarting the cluster loop would release the virtual IP): restart the node, or use clusterd standby/takeover"
            );
        };
        let (tx, rx) = oneshot::channel();
        cmds.send(make(tx))
            .await
            .map_err(|_| anyhow!("{name}: its supervisor task has stopped"))?;
        rx.await
            .map_err(|_| anyhow!("{name}: its supervisor task has stopped"))?
    }

    /// Stops the service and then starts a fresh instance; returns once it is ready.
    pub async fn restart(&self, name: &str) -> Result<()> {
        self.ask(name, |tx| Cmd::Start(true, tx)).await
    }

    /// Stops the service: returns once its listeners are closed.
    pub async fn stop(&self, name: &str) -> Result<()> {
        self.ask(name, Cmd::Stop).await
    }

    /// Starts a stopped service; returns once it is ready (at once if it runs).
    pub async fn start(&self, name: &str) -> Result<()> {
        self.ask(name, |tx| Cmd::Start(false, tx)).await
    }

    /// Fault injection: the service keeps its listeners and answers nothing.
    pub async fn wedge(&self, name: &str) -> Result<()> {
        if name == "supervisor" {
            self.wedged.store(true, Ordering::SeqCst);
            self.record(
                "supervisor",
                EventKind::Wedged,
                "the watchdog loop stops".into(),
            );
            return Ok(());
        }
        self.ask(name, |tx| Cmd::Fault(Fault::Wedge, tx)).await
    }

    /// Fault injection: the service's task panics (and is restarted).
    pub async fn panic(&self, name: &str) -> Result<()> {
        self.ask(name, |tx| Cmd::Fault(Fault::Panic, tx)).await
    }

    /// Marks the node as stopping: services that end from now on are not failures.
    pub fn shutting_down(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether `clusterd debug wedge supervisor` stopped the watchdog loop.
    pub fn is_wedged(&self) -> bool {
        self.wedged.load(Ordering::SeqCst)
    }
}

/// A running instance, as its manager sees it.
struct Instance {
    task: tokio::task::JoinHandle<Result<Ended>>,
    stop: Option<oneshot::Sender<()>>,
    fault: watch::Sender<Fault>,
    lease: Weak<Lease>,
    started: Instant,
}

/// How an instance's future ended without panicking.
enum Ended {
    Stopped,
    Returned,
}

/// Starts an instance of `run` and waits until it is ready; on failure the instance
/// is gone (its task ended) and the error says why.
async fn launch(name: &str, run: &RunFn) -> Result<Instance, (Option<Instance>, String)> {
    let (fault_tx, fault_rx) = watch::channel(Fault::None);
    let (ready_tx, ready_rx) = oneshot::channel();
    let lease = Arc::new(Lease);
    let weak = Arc::downgrade(&lease);
    let r = Run {
        fault: fault_rx.clone(),
        ready: Arc::new(Mutex::new(Some(ready_tx))),
        _lease: lease,
    };
    let fut = run(r);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let label = name.to_string();
    let mut fault = fault_rx;
    let task = tokio::spawn(async move {
        let panic_req = async move {
            if fault.wait_for(|f| *f == Fault::Panic).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            _ = stop_rx => Ok(Ended::Stopped),
            _ = panic_req => panic!("{label}: injected panic (clusterd debug panic)"),
            r = fut => r.map(|()| Ended::Returned),
        }
    });
    let mut inst = Instance {
        task,
        stop: Some(stop_tx),
        fault: fault_tx,
        lease: weak,
        started: Instant::now(),
    };
    tokio::select! {
        r = ready_rx => match r {
            Ok(()) => Ok(inst),
            // The instance dropped its Run without calling ready: it ended.
            Err(_) => {
                let why = ended_text(&mut inst).await;
                Err((None, why))
            }
        },
        _ = tokio::time::sleep(READY_WAIT) => Err((Some(inst), format!("not ready within {} s", READY_WAIT.as_secs()))),
    }
}

/// Why an instance whose task is ending ended.
async fn ended_text(inst: &mut Instance) -> String {
    match (&mut inst.task).await {
        Ok(Ok(_)) => "returned".into(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e)),
        Err(e) => e.to_string(),
    }
}

/// Ends an instance: asks its future to stop (dropping it), aborts it if it does not
/// within the wait, then waits until its sockets are released.
async fn end(mut inst: Instance) {
    if let Some(stop) = inst.stop.take() {
        let _ = stop.send(());
    }
    if tokio::time::timeout(RELEASE_WAIT, &mut inst.task)
        .await
        .is_err()
    {
        inst.task.abort();
        let _ = (&mut inst.task).await;
    }
    released(&inst.lease).await;
}

/// Waits (bounded) until every clone of an instance's [`Run`] is gone.
async fn released(lease: &Weak<Lease>) {
    let deadline = Instant::now() + RELEASE_WAIT;
    while lease.strong_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if lease.strong_count() > 0 {
        tracing::warn!("supervisor: a stopped instance still holds its sockets");
    }
}

/// The manager task of one service: starts it, restarts it after failures, carries
/// out requests.
async fn manage(
    sup: Arc<Supervisor>,
    slot: Arc<Slot>,
    run: RunFn,
    mut cmds: mpsc::Receiver<Cmd>,
    first: oneshot::Sender<Result<()>>,
) {
    let name = slot.name;
    let mut backoff = Backoff::new();
    let set_state = |f: &dyn Fn(&mut ServiceState)| f(&mut slot.state.lock().unwrap());

    // Starts an instance; records `kind` on success, the failure otherwise.
    let start = |kind: EventKind, detail: String| {
        let (sup, run) = (sup.clone(), run.clone());
        let slot = slot.clone();
        async move {
            match launch(name, &run).await {
                Ok(inst) => {
                    {
                        let mut st = slot.state.lock().unwrap();
                        st.running = true;
                        st.wedged = false;
                        st.last_start = Some(now_ms());
                        if kind == EventKind::Restarted {
                            st.restarts += 1;
                        }
                    }
                    sup.record(name, kind, detail);
                    Ok(inst)
                }
                Err((inst, why)) => {
                    if let Some(inst) = inst {
                        end(inst).await;
                    }
                    slot.state.lock().unwrap().last_error = Some(why.clone());
                    sup.record(name, EventKind::Exited, format!("could not start: {why}"));
                    Err(anyhow!("{name}: {why}"))
                }
            }
        }
    };

    let mut current = match start(EventKind::Started, String::new()).await {
        Ok(i) => {
            let _ = first.send(Ok(()));
            Some(i)
        }
        Err(e) => {
            let _ = first.send(Err(e));
            None
        }
    };
    // When a failed service is to be started again.
    let mut retry_at: Option<tokio::time::Instant> = None;
    // The delay before that start, for its event.
    let mut last_delay = Duration::ZERO;
    if current.is_none() {
        last_delay = backoff.failed(Duration::ZERO);
        retry_at = Some(tokio::time::Instant::now() + last_delay);
    }

    loop {
        let ended = async {
            match current.as_mut() {
                Some(i) => (&mut i.task).await,
                None => std::future::pending().await,
            }
        };
        let retry = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = ended => {
                let inst = current.take().expect("a running instance");
                let ran = inst.started.elapsed();
                let (kind, detail) = match r {
                    Ok(Ok(_)) => (EventKind::Exited, "returned".to_string()),
                    Ok(Err(e)) => (EventKind::Exited, format!("{e:#}")),
                    Err(e) if e.is_panic() => (EventKind::Panicked, panic_text(e)),
                    Err(e) => (EventKind::Exited, e.to_string()),
                };
                set_state(&|st| {
                    st.running = false;
                    st.wedged = false;
                    st.last_error = Some(detail.clone());
                });
                sup.record(name, kind, detail);
                released(&inst.lease).await;
                if sup.stopping.load(Ordering::SeqCst) {
                    continue;
                }
                last_delay = backoff.failed(ran);
                retry_at = Some(tokio::time::Instant::now() + last_delay);
            }
            _ = retry => {
                retry_at = None;
                let detail = format!("after a failure (back-off {} ms)", last_delay.as_millis());
                match start(EventKind::Restarted, detail).await {
                    Ok(i) => current = Some(i),
                    Err(_) => {
                        last_delay = backoff.failed(Duration::ZERO);
                        retry_at = Some(tokio::time::Instant::now() + last_delay);
                    }
                }
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                match cmd {
                    Cmd::Stop(reply) => {
                        retry_at = None;
                        set_state(&|st| st.wanted = false);
                        if let Some(inst) = current.take() {
                            end(inst).await;
                            set_state(&|st| { st.running = false; st.wedged = false; });
                            sup.record(name, EventKind::Stopped, "on request".into());
                        }
                        let _ = reply.send(Ok(()));
                    }
                    Cmd::Start(restart, reply) => {
                        set_state(&|st| st.wanted = true);
                        if current.is_some() && !restart {
                            let _ = reply.send(Ok(()));
                            continue;
                        }
                        retry_at = None;
                        if let Some(inst) = current.take() {
                            end(inst).await;
                            set_state(&|st| { st.running = false; st.wedged = false; });
                        }
                        let kind = if restart { EventKind::Restarted } else { EventKind::Started };
                        let r = match start(kind, "on request".into()).await {
                            Ok(i) => { current = Some(i); Ok(()) }
                            Err(e) => {
                                last_delay = backoff.failed(Duration::ZERO);
                                retry_at = Some(tokio::time::Instant::now() + last_delay);
                                Err(e)
                            }
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::Fault(f, reply) => {
                        let Some(inst) = current.as_ref() else {
                            let _ = reply.send(Err(anyhow!("{name} is not running")));
                            continue;
                        };
                        let _ = inst.fault.send(f);
                        if f == Fault::Wedge {
                            set_state(&|st| st.wedged = true);
                            sup.record(name, EventKind::Wedged, "fault injection".into());
                        }
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_healthy_minute() {
        let mut b = Backoff::new();
        let quick = Duration::from_millis(5);
        let seq: Vec<u64> = (0..9).map(|_| b.failed(quick).as_millis() as u64).collect();
        assert_eq!(
            seq,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000],
            "100 ms doubling, at most 10 s"
        );
        // A failure after a minute of good service starts again at 100 ms.
        assert_eq!(
            b.failed(Duration::from_secs(61)),
            Duration::from_millis(100)
        );
        assert_eq!(b.failed(quick), Duration::from_millis(200));
        // Just under a minute is not healthy enough.
        assert_eq!(
            b.failed(Duration::from_secs(59)),
            Duration::from_millis(400)
        );
    }

    #[tokio::test]
    async fn a_panicking_service_is_restarted_and_the_event_is_sent() {
        let sup = Supervisor::new();
        let mut events = sup.subscribe();
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let s2 = starts.clone();
        sup.add("imap", move |run: Run| {
            let n = s2.fetch_add(1, Ordering::SeqCst);
            async move {
                run.ready();
                if n == 0 {
                    panic!("first instance fails");
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .await
        .unwrap();
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("an event")
                .unwrap();
            kinds.push(e.kind);
        }
        assert_eq!(
            kinds,
            [
                EventKind::Started,
                EventKind::Panicked,
                EventKind::Restarted
            ]
        );
        let st = &sup.services()[0];
        assert!(st.running && st.restarts == 1, "{st:?}");
        assert!(
            st.last_error
                .as_deref()
                .unwrap()
                .contains("first instance fails")
        );
        assert!(sup.all_alive());
        sup.stop("imap").await.unwrap();
        assert!(!sup.services()[0].running);
        assert!(
            sup.all_alive(),
            "a service stopped on request is not a failure"
        );
    }
}
