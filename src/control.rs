//! The control channel: a Unix socket (mode 0600) on which the CLI sends one JSON
//! request per line to the running node and gets one JSON reply per line. Account
//! changes made this way go through the node's store (and so will replicate).
//! The socket is bound early in start-up ([`bind`]) and served ([`Listener::serve`])
//! once the node's cluster and replication handles exist (requests wait in the
//! backlog until then).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::cluster::Cluster;
use crate::ctx::Ctx;
use crate::dkim::Dkim;
use crate::outbound::Outbound;
use crate::replication::Replication;
use crate::store::Store;
use crate::supervise::{ServiceState, Supervisor, SupervisorEvent};

/// The running node as the control socket sees it: the shared context and the
/// handles of the cluster loop (none for a single node) and of replication (none
/// without `[replication]`).
pub struct Node {
    pub ctx: Arc<Ctx>,
    pub cluster: Option<Arc<Cluster>>,
    pub replication: Option<Arc<Replication>>,
    /// The queue runner.
    pub outbound: Arc<Outbound>,
    /// The supervisor of the services (restart, fault injection, their states).
    pub supervisor: Arc<Supervisor>,
    /// The probes, their state and the history.
    pub monitor: Arc<crate::monitor::Monitor>,
}

/// A fault to inject (`clusterd debug`, refused unless
/// `[monitor] allow_fault_injection`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Stop the service (its listeners close).
    Stop,
    /// Start a stopped service.
    Start,
    /// The service keeps its listeners and answers nothing; `supervisor`: the
    /// watchdog pings to systemd stop.
    Wedge,
    /// The service's task panics (the supervisor restarts it).
    Panic,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    UserAdd {
        name: String,
        full_name: String,
        password: String,
    },
    UserPasswd {
        name: String,
        password: String,
    },
    UserDel {
        name: String,
    },
    UserList,
    /// An account's storage quota: `Some(mb)` its own (0: none), `None` the node's
    /// default again.
    QuotaSet {
        name: String,
        quota_mb: Option<u64>,
    },
    /// An account's usage and limit ([`crate::store::Quota`]).
    QuotaShow {
        name: String,
    },
    /// Sweep message files nothing refers to, older than `grace_s` seconds
    /// ([`crate::store::GcReport`]); `replicated`: whether the node has
    /// `[replication]` (else its log is compacted first). A running node uses its
    /// own config for both.
    Gc {
        grace_s: u64,
        replicated: bool,
    },
    QueueList,
    /// Make one queued message (or all) due now.
    QueueRetry {
        id: Option<String>,
    },
    /// Drop a queued message without telling its sender.
    QueueDelete {
        id: String,
    },
    /// Give up on a queued message now and return it to its sender with a DSN.
    QueueBounce {
        id: String,
    },
    /// Re-read the zone files now.
    Reload,
    /// A digest of the store's logical content (equal on nodes holding the same data).
    Digest,
    /// Hand the service to the peer and stay standby.
    Standby,
    /// Take the service from the peer.
    Takeover,
    /// Set a file of the content area (e.g. `www/index.html`); bytes in base64.
    ContentPut {
        path: String,
        data_base64: String,
    },
    /// Remove a file of the content area.
    ContentDel {
        path: String,
    },
    /// Files of the content area under a prefix.
    ContentList {
        prefix: String,
    },
    /// The DKIM record to publish ([`DkimRecord`]).
    DkimShow,
    /// Restart one supervised service (`smtp`, `imap`, `dns`, `http`, `queue`,
    /// `replication`).
    Restart {
        service: String,
    },
    /// Fault injection, for tests only.
    Debug {
        fault: Fault,
        service: String,
    },
    /// The `DKIM-Signature` field for a message (bytes in base64), as outbound
    /// delivery would prepend it.
    DkimSign {
        message_base64: String,
    },
}

/// The DKIM record as `clusterd dkim show` prints it.
#[derive(Debug, Serialize, Deserialize)]
pub struct DkimRecord {
    /// `SELECTOR._domainkey.DOMAIN` (no final dot).
    pub owner: String,
    /// `v=DKIM1; k=rsa; p=...`.
    pub value: String,
    /// The record in zone-file form, its value split into strings of at most 255 bytes.
    pub zone_line: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The node's state as `clusterd status` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub role: String,
    pub writable: bool,
    pub accounts: usize,
    pub queue: usize,
    /// When the oldest queued message arrived (unix seconds).
    #[serde(default)]
    pub queue_oldest: Option<i64>,
    pub last_op_seq: u64,
    /// Whether the store can write (writer, write probe, free space over the floor).
    #[serde(default)]
    pub store: Option<crate::store::StoreHealth>,
    pub services: Vec<(String, String)>,
    /// None for a single node.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterStatus>,
    /// None without `[replication]`.
    #[serde(default)]
    pub replication: Option<crate::replication::ReplicationStatus>,
    /// The supervised services.
    #[serde(default)]
    pub supervised: Vec<ServiceState>,
    /// The supervisor's last events (at most [`STATUS_EVENTS`]), oldest first.
    #[serde(default)]
    pub events: Vec<SupervisorEvent>,
    /// The system clock's synchronisation (None if the kernel would not say).
    #[serde(default)]
    pub clock: Option<crate::clock::ClockStatus>,
    /// The monitor's checks of both nodes and the newest events.
    #[serde(default)]
    pub monitor: Option<crate::monitor::StatusView>,
}

/// Supervisor events in `clusterd status`.
pub const STATUS_EVENTS: usize = 20;

/// What the sweep compacts the log to first: nothing with replication (its own
/// compaction keeps what a peer may still need), else the newest op only (nobody
/// reads older ones; a peer added later takes a snapshot).
pub fn gc_compact_keep(replicated: bool) -> Option<u64> {
    (!replicated).then_some(1)
}

/// Executes a request against a store (used by the node, and by the CLI when no node
/// runs).
pub async fn execute(
    store: &Store,
    node: Option<&Node>,
    req: Request,
) -> Result<serde_json::Value> {
    let running = || node.ok_or_else(|| anyhow!("the node is not running"));
    Ok(match req {
        Request::Status => {
            let node = running()?;
            let ctx = &node.ctx;
            let mut services = Vec::new();
            for (name, addrs) in [
                ("smtp", &ctx.cfg.smtp.listen),
                ("submission", &ctx.cfg.smtp.submission_listen),
                ("submissions", &ctx.cfg.smtp.submissions_listen),
                ("imap", &ctx.cfg.imap.listen),
                ("imaps", &ctx.cfg.imap.tls_listen),
                ("dns", &ctx.cfg.dns.listen),
                ("http", &ctx.cfg.http.listen),
                ("https", &ctx.cfg.http.https_listen),
            ] {
                let health = match addrs.first() {
                    None => "disabled".to_string(),
                    Some(a) => {
                        let probe = probe_addr(*a);
                        match tokio::time::timeout(
                            std::time::Duration::from_secs(2),
                            tokio::net::TcpStream::connect(probe),
                        )
                        .await
                        {
                            Ok(Ok(_)) => format!("ok ({a})"),
                            _ => format!("not answering ({a})"),
                        }
                    }
                };
                services.push((name.to_string(), health));
            }
            let queue = store.queue().await?;
            serde_json::to_value(Status {
                node: ctx.cfg.node.name.clone(),
                role: match &node.cluster {
                    Some(c) => c.status().role,
                    None => "active (single node)".into(),
                },
                writable: store.is_writable(),
                accounts: store.list_accounts().await?.len(),
                queue: queue.len(),
                queue_oldest: queue.iter().map(|e| e.created).min(),
                last_op_seq: store.last_seq().await?,
                store: Some(store.health()),
                services,
                cluster: node.cluster.as_ref().map(|c| c.status()),
                replication: node.replication.as_ref().map(|r| r.status()),
                supervised: node.supervisor.services(),
                events: {
                    let all = node.supervisor.events();
                    all[all.len().saturating_sub(STATUS_EVENTS)..].to_vec()
                },
                clock: crate::clock::status(),
                monitor: Some(
                    node.monitor
                        .view(crate::store::EventFilter {
                            limit: 20,
                            ..Default::default()
                        })
                        .await,
                ),
            })?
        }
        Request::UserAdd {
            name,
            full_name,
            password,
        } => {
            store.create_account(&name, &full_name, &password).await?;
            serde_json::Value::Null
        }
        Request::UserPasswd { name, password } => {
            store.set_password(&name, &password).await?;
            serde_json::Value::Null
        }
        Request::UserDel { name } => {
            store.delete_account(&name).await?;
            serde_json::Value::Null
        }
        Request::UserList => serde_json::to_value(store.list_accounts().await?)?,
        Request::QuotaSet { name, quota_mb } => {
            store.set_quota(&name, quota_mb).await?;
            serde_json::Value::Null
        }
        Request::QuotaShow { name } => match store.quota(&name).await? {
            Some(q) => serde_json::to_value(q)?,
            None => return Err(anyhow!("no such account: {name}")),
        },
        Request::Gc {
            grace_s,
            replicated,
        } => {
            let (grace_s, replicated) = match node {
                Some(n) => (n.ctx.cfg.store.gc_grace_s, n.ctx.cfg.replication.is_some()),
                None => (grace_s, replicated),
            };
            let grace = std::time::Duration::from_secs(grace_s);
            serde_json::to_value(store.gc(grace, gc_compact_keep(replicated)).await?)?
        }
        Request::QueueList => serde_json::to_value(store.queue().await?)?,
        Request::QueueRetry { id } => {
            let n = running()?.outbound.retry(id.as_deref()).await?;
            if let (0, Some(id)) = (n, id) {
                return Err(anyhow!("no queued message {id}"));
            }
            serde_json::to_value(n)?
        }
        Request::QueueDelete { id } => {
            let found = match node {
                Some(n) => n.outbound.delete(&id).await?,
                None => match store.queue_entry(&id).await? {
                    Some(_) => {
                        store.queue_remove(&id).await?;
                        true
                    }
                    None => false,
                },
            };
            if !found {
                return Err(anyhow!("no queued message {id}"));
            }
            serde_json::Value::Null
        }
        Request::QueueBounce { id } => {
            if !running()?.outbound.bounce(&id).await? {
                return Err(anyhow!("no queued message {id}"));
            }
            serde_json::Value::Null
        }
        Request::Standby | Request::Takeover => {
            let cluster = running()?.cluster.as_ref().ok_or_else(|| {
                anyhow!("this node has no [cluster] section: it is always active")
            })?;
            cluster
                .command(if matches!(req, Request::Standby) {
                    crate::cluster::Command::Standby
                } else {
                    crate::cluster::Command::Takeover
                })
                .await?;
            serde_json::Value::Null
        }
        Request::ContentPut { path, data_base64 } => {
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD
                .decode(data_base64.as_bytes())
                .map_err(|e| anyhow!("bad base64 data: {e}"))?;
            serde_json::to_value(store.put_content(&path, data).await?)?
        }
        Request::ContentDel { path } => {
            store.delete_content(&path).await?;
            serde_json::Value::Null
        }
        Request::ContentList { prefix } => {
            serde_json::to_value(store.content_list(&prefix).await?)?
        }
        Request::Digest => serde_json::Value::String(store.digest().await?),
        Request::Reload => {
            running()?.ctx.dns_reload.notify_one();
            serde_json::Value::Null
        }
        Request::DkimShow | Request::DkimSign { .. } => dkim(&running()?.ctx.dkim, req)?,
        Request::Restart { service } => {
            running()?.supervisor.restart(&service).await?;
            serde_json::Value::Null
        }
        Request::Debug { fault, service } => {
            let node = running()?;
            if !node.ctx.cfg.monitor.allow_fault_injection {
                return Err(anyhow!(
                    "fault injection is off: it needs [monitor] allow_fault_injection = true (for tests only)"
                ));
            }
            let sup = &node.supervisor;
            match fault {
                Fault::Stop => sup.stop(&service).await?,
                Fault::Start => sup.start(&service).await?,
                Fault::Wedge => sup.wedge(&service).await?,
                Fault::Panic => sup.panic(&service).await?,
            }
            serde_json::Value::Null
        }
    })
}

/// Answers a DKIM request from `dkim`: the node's, or (the CLI when no node runs) one
/// read from the store with [`Dkim::read`].
pub fn dkim(dkim: &Dkim, req: Request) -> Result<serde_json::Value> {
    if !dkim.enabled() {
        return Err(anyhow!("DKIM signing is off (outbound.dkim = false)"));
    }
    let Some((owner, value)) = dkim.record() else {
        return Err(anyhow!(
            "no DKIM key yet: the active node generates it at start, and a standby receives it by replication"
        ));
    };
    Ok(match req {
        Request::DkimShow => serde_json::to_value(DkimRecord {
            zone_line: crate::dkim::zone_line(&owner, &value),
            owner,
            value,
        })?,
        Request::DkimSign { message_base64 } => {
            use base64::Engine as _;
            let msg = base64::engine::general_purpose::STANDARD
                .decode(message_base64.as_bytes())
                .map_err(|e| anyhow!("bad base64 data: {e}"))?;
            let header = dkim.sign(&msg).ok_or_else(|| {
                anyhow!(
                    "not signed: the message has no From: address in {} or below it",
                    dkim.domain()
                )
            })?;
            serde_json::Value::String(header)
        }
        _ => return Err(anyhow!("not a DKIM request")),
    })
}

/// A listener's address as a local client reaches it (0.0.0.0 → 127.0.0.1).
fn probe_addr(a: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut a = a;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

/// Largest request line (a content file of ~96 MiB, in base64).
const MAX_REQUEST: usize = 128 << 20;

/// The bound control socket, not yet answering.
pub struct Listener(UnixListener);

/// Binds the control socket `path` (`node.control_socket`), refusing one that
/// another running node answers on.
pub async fn bind(path: &Path) -> Result<Listener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("node.control_socket: creating {}", dir.display()))?;
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(anyhow!(
            "node.control_socket: {} is in use: is another clusterd running?",
            path.display()
        ));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("node.control_socket: cannot bind {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(Listener(listener))
}

impl Listener {
    /// Serves the socket in the background for `node`.
    pub fn serve(self, node: Arc<Node>) {
        let listener = self.0;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut r = BufReader::new(r);
                    loop {
                        let mut line = Vec::new();
                        match (&mut r)
                            .take(MAX_REQUEST as u64 + 1)
                            .read_until(b'\n', &mut line)
                            .await
                        {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        if line.len() > MAX_REQUEST {
                            let reply = Reply {
                                ok: false,
                                error: Some(format!(
                                    "request larger than {} MiB",
                                    MAX_REQUEST >> 20
                                )),
                                data: serde_json::Value::Null,
                            };
                            let mut out = serde_json::to_string(&reply).unwrap_or_default();
                            out.push('\n');
                            let _ = w.write_all(out.as_bytes()).await;
                            break;
                        }
                        let reply = match serde_json::from_slice::<Request>(&line) {
                            Ok(req) => match execute(&node.ctx.store, Some(&node), req).await {
                                Ok(data) => Reply {
                                    ok: true,
                                    error: None,
                                    data,
                                },
                                Err(e) => Reply {
                                    ok: false,
                                    error: Some(e.to_string()),
                                    data: serde_json::Value::Null,
                                },
                            },
                            Err(e) => Reply {
                                ok: false,
                                error: Some(format!("bad request: {e}")),
                                data: serde_json::Value::Null,
                            },
                        };
                        let mut out = serde_json::to_string(&reply).unwrap_or_default();
                        out.push('\n');
                        if w.write_all(out.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
}

use tokio::io::AsyncReadExt as _;

/// Sends one request to a running node. `Ok(None)` when no node listens on `path`.
pub async fn send(path: &Path, req: &Request) -> Result<Option<Reply>> {
    let Ok(stream) = UnixStream::connect(path).await else {
        return Ok(None);
    };
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(r).lines();
    let reply = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("the node closed the control connection"))?;
    Ok(Some(serde_json::from_str(&reply)?))
}
