//! The `clusterd` command line: run a node, check a configuration, manage accounts,
//! and query or steer a running node through its control socket.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use clusterd::config::{self, Config};
use clusterd::control::{self, Request};
use clusterd::store::Store;

const DEFAULT_CONFIG: &str = "/etc/clusterd/clusterd.toml";

#[derive(Parser)]
#[command(
    name = "clusterd",
    version,
    about = "Two-node HA appliance: DNS, web, webmail, SMTP, IMAP"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run a demo node on loopback high ports with a demo account (no config needed).
    Demo {
        /// Where to keep the demo data (default: ./clusterd-demo).
        #[arg(long, default_value = "clusterd-demo")]
        dir: PathBuf,
    },
    /// Validate a configuration file; exits 1 naming the file, line and key at fault.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Manage mail accounts.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Show the running node's role, services and store position.
    Status {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show and manage the outbound queue (without a subcommand: `list`).
    Queue {
        #[command(subcommand)]
        cmd: Option<QueueCmd>,
        #[arg(long, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
    },
    /// Make the running node re-read its zone files now (it also notices changes
    /// by itself within a second).
    Reload {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print a digest of the store's logical content (accounts, mailboxes, messages,
    /// flags, queue, content): two nodes holding the same data print the same digest.
    Digest {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a store, read-only (safe beside the running node): SQLite integrity, the
    /// op log contiguous, every referenced message file present with the right
    /// hash. Prints a summary; exits 1 on any problem.
    Verify {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The data directory to check (default: the config's node.data_dir; with
        /// it, no config is read).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check one zone file (ZONE.zone); exits 1 naming the file, line and problem.
    CheckZone { file: PathBuf },
    /// Manage the content area (the web sites under www/ and the vhost roots).
    Content {
        #[command(subcommand)]
        cmd: ContentCmd,
    },
    /// DKIM: the DNS record to publish, and signing a message by hand.
    Dkim {
        #[command(subcommand)]
        cmd: DkimCmd,
    },
    /// Hand the service (virtual IP, writes) to the peer and stay standby.
    Standby {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Take the service from the peer and keep it.
    Takeover {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Restart one service of the running node (smtp, imap, dns, http, queue,
    /// replication): its listeners close and open again; open sessions go on.
    Restart {
        service: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Delete message files nothing refers to any more (expunged mail, replaced
    /// content files) and older than `store.gc_grace_s`; prints what was freed.
    Gc {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Fault injection for tests (needs `[monitor] allow_fault_injection = true`).
    Debug {
        #[command(subcommand)]
        cmd: DebugCmd,
    },
}

#[derive(Subcommand)]
enum DebugCmd {
    /// Stop a service: its listeners close.
    Stop {
        service: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Start a stopped service.
    Start {
        service: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// The service keeps its listeners but answers nothing until restarted;
    /// `supervisor`: the systemd watchdog pings stop.
    Wedge {
        service: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// The service's task panics; the supervisor restarts it.
    Panic {
        service: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum QueueCmd {
    /// Each queued message: id, age, size, sender, each recipient with its state and
    /// last reply, and when the next attempt is due.
    List {
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Try a message (or every message) now.
    Retry {
        /// The message's id (see `queue list`).
        id: Option<String>,
        /// Every queued message.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Drop a message from the queue; nobody is told.
    Delete { id: String },
    /// Give up on a message now and return it to its sender with a bounce (DSN).
    Bounce { id: String },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a fully commented example configuration with every key and its default.
    Example,
}

#[derive(Subcommand)]
enum ContentCmd {
    /// Store FILE as content PATH (e.g. `www/index.html`); the site serves it at once.
    Put {
        path: String,
        file: PathBuf,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Remove content PATH.
    Del {
        path: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Make the content under ROOT (default `www`) what DIR holds: changed files are
    /// stored, files gone from DIR removed, the rest left alone.
    Publish {
        dir: PathBuf,
        #[arg(long, default_value = "www")]
        root: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// List the content under PREFIX (default: everything).
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DkimCmd {
    /// Print the DKIM record (SELECTOR._domainkey.DOMAIN TXT) in zone-file form and
    /// as name/value for a DNS provider's web form. clusterd's own DNS serves it
    /// already; publish it where the domain's public DNS is hosted.
    Show {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Sign the message read from standard input as outbound delivery does and print
    /// it with the DKIM-Signature field prepended (to test a verifier or the record).
    Sign {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create an account (with INBOX, Sent, Drafts, Trash, Junk).
    Add {
        name: String,
        #[arg(long, default_value = "")]
        full_name: String,
        /// Read the password as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Change an account's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Delete an account and all its mail.
    Del {
        name: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// List accounts.
    List {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show an account's storage usage and quota, or set it: MB (0: no quota), or
    /// `default` for `store.default_quota_mb`.
    Quota {
        name: String,
        mb: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// glibc's allocator, tuned for a long-running server with many threads: blocks of
/// 1 MiB and more are always their own mappings, returned to the system when freed
/// (by default the threshold rises with each large free, so the 19 MiB of an argon2
/// hash, a message body or a snapshot frame stayed in the heap for good), and at most
/// four malloc arenas (by default eight per core, each holding its own free memory).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first thing in main,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

fn main() -> ExitCode {
    tune_malloc();
    clusterd::tls::install_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clusterd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clusterd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| anyhow!("{e}"))
}

async fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Run { config } => clusterd::node::run(load(&config)?).await,
        Cmd::Demo { dir } => demo(&dir).await,
        Cmd::CheckConfig { config } => {
            load(&config)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Cmd::Config {
            cmd: ConfigCmd::Example,
        } => {
            print!("{}", config::example());
            Ok(())
        }
        Cmd::User { cmd } => user(cmd).await,
        Cmd::Verify { config, data_dir } => {
            let dir = match data_dir {
                Some(d) => d,
                None => load(&config)?.node.data_dir,
            };
            let report = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || clusterd::store::verify::verify(&dir)
            })
            .await?
            .with_context(|| format!("verifying the store in {}", dir.display()))?;
            print!("{}", report.render());
            match report.problems() {
                0 => Ok(()),
                n => Err(anyhow!("the store in {} has {n} problem(s)", dir.display())),
            }
        }
        Cmd::Status { config, json } => {
            let cfg = load(&config)?;
            let data = via_control(&cfg, Request::Status).await?.ok_or_else(|| {
                anyhow!(
                    "the node is not running (no answer on {})",
                    cfg.node.control_socket.display()
                )
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                let st: control::Status = serde_json::from_value(data)?;
                println!("node:        {}", st.node);
                println!("role:        {}", st.role);
                println!("writable:    {}", st.writable);
                println!("accounts:    {}", st.accounts);
                match st.queue_oldest {
                    Some(t) => println!(
                        "queue:       {} message(s), oldest queued {} ago",
                        st.queue,
                        age(clusterd::store::now() - t)
                    ),
                    None => println!("queue:       empty"),
                }
                println!("op log:      seq {}", st.last_op_seq);
                if let Some(h) = &st.store {
                    println!(
                        "storage:     {}{}",
                        if h.healthy() { "" } else { "UNHEALTHY: " },
                        h.summary()
                    );
                }
                if let Some(c) = &st.cluster {
                    println!("epoch:       {}", c.epoch);
                    println!(
                        "peer:        {} ({}{})",
                        c.peer,
                        if c.peer_alive { "alive" } else { "dead" },
                        c.peer_role
                            .as_deref()
                            .map(|r| format!(", {r}"))
                            .unwrap_or_default()
                    );
                    for (medium, heard) in &c.media {
                        let heard = heard.map_or("never heard".to_string(), |ms| {
                            format!("last heartbeat {ms} ms ago")
                        });
                        println!("medium:      {medium}: {heard}");
                    }
                    println!(
                        "vip:         {} held by {}",
                        c.vip,
                        c.vip_holder.as_deref().unwrap_or("nobody")
                    );
                    println!(
                        "store:       seq {} here, {} on the peer",
                        c.store_seq,
                        c.peer_store_seq
                            .map_or("unknown".to_string(), |s| s.to_string())
                    );
                }
                if let Some(r) = &st.replication {
                    println!(
                        "replication: {}{}, shipping {}, receiving {}; committed seq {}, peer acknowledged {}; {} op(s) applied from the peer",
                        r.mode,
                        if r.degraded {
                            " (DEGRADED: committing alone)"
                        } else {
                            ""
                        },
                        if r.connected_out { "yes" } else { "no" },
                        if r.connected_in { "yes" } else { "no" },
                        r.committed_seq,
                        r.acked_seq,
                        r.applied
                    );
                    println!(
                        "             {} byte(s) sent, {} received; {} snapshot(s) sent, {} installed",
                        r.bytes_sent, r.bytes_received, r.snapshots_sent, r.snapshots_installed
                    );
                    if r.acks_waited > 0 {
                        println!(
                            "             {} sync commit(s) waited for the peer: mean {:.1} ms, longest {:.1} ms",
                            r.acks_waited,
                            r.ack_wait_mean_us as f64 / 1000.0,
                            r.ack_wait_max_us as f64 / 1000.0
                        );
                    }
                    if let Some(m) = &r.last_merge {
                        println!("last merge:  {m}");
                    }
                }
                for (name, health) in st.services {
                    println!("{:<12} {health}", format!("{name}:"));
                }
                for sv in &st.supervised {
                    let state = match (sv.running, sv.wanted, sv.wedged) {
                        (true, _, true) => "running, WEDGED",
                        (true, _, false) => "running",
                        (false, false, _) => "stopped",
                        (false, true, _) => "DOWN (restarting)",
                    };
                    let error = sv
                        .last_error
                        .as_deref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default();
                    println!(
                        "{:<12} {state}, {} restart(s){error}",
                        format!("[{}]", sv.name),
                        sv.restarts
                    );
                }
                for e in st.events.iter().rev().take(5) {
                    println!(
                        "event:       {} ago: {} {:?} {}",
                        age((clusterd::store::now() * 1000 - e.at) / 1000),
                        e.service,
                        e.kind,
                        e.detail
                    );
                }
                match &st.clock {
                    Some(c) => println!(
                        "clock:       {} (max error {} ms, estimated {} ms)",
                        if c.synchronized {
                            "synchronised"
                        } else {
                            "NOT synchronised"
                        },
                        c.max_error_us / 1000,
                        c.est_error_us / 1000
                    ),
                    None => println!("clock:       unknown"),
                }
                if let Some(m) = &st.monitor {
                    use std::io::IsTerminal as _;
                    print!(
                        "{}",
                        clusterd::monitor::render::table(m, std::io::stdout().is_terminal())
                    );
                }
            }
            Ok(())
        }
        Cmd::Gc { config } => {
            let cfg = load(&config)?;
            let req = Request::Gc {
                grace_s: cfg.store.gc_grace_s,
                replicated: cfg.replication.is_some(),
            };
            let r: clusterd::store::GcReport =
                serde_json::from_value(run_request(&cfg, req).await?)?;
            println!(
                "freed {} files, {} bytes ({} stale temporary files); {} files scanned, {} kept as younger than {} s, in {} ms",
                r.files,
                r.bytes,
                r.tmp_files,
                r.scanned,
                r.young,
                cfg.store.gc_grace_s,
                r.elapsed_ms
            );
            Ok(())
        }
        Cmd::Digest { config } => {
            let cfg = load(&config)?;
            let data = run_request(&cfg, Request::Digest).await?;
            println!("{}", data.as_str().unwrap_or_default());
            Ok(())
        }
        Cmd::Queue { cmd, config } => {
            let cfg = load(&config)?;
            match cmd.unwrap_or(QueueCmd::List { json: false }) {
                QueueCmd::List { json } => {
                    let data = run_request(&cfg, Request::QueueList).await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&data)?);
                        return Ok(());
                    }
                    let entries: Vec<clusterd::store::QueueEntry> = serde_json::from_value(data)?;
                    print_queue(&entries, clusterd::store::now());
                }
                QueueCmd::Retry { id, all } => {
                    if id.is_none() && !all {
                        bail!("name a message id, or --all");
                    }
                    let n = via_control(&cfg, Request::QueueRetry { id })
                        .await?
                        .ok_or_else(|| anyhow!("the node is not running"))?;
                    println!("{n} message(s) due now");
                }
                QueueCmd::Delete { id } => {
                    run_request(&cfg, Request::QueueDelete { id: id.clone() }).await?;
                    println!("deleted {id}");
                }
                QueueCmd::Bounce { id } => {
                    via_control(&cfg, Request::QueueBounce { id: id.clone() })
                        .await?
                        .ok_or_else(|| anyhow!("the node is not running"))?;
                    println!("returned {id} to its sender");
                }
            }
            Ok(())
        }
        Cmd::Reload { config } => {
            let cfg = load(&config)?;
            via_control(&cfg, Request::Reload).await?.ok_or_else(|| {
                anyhow!(
                    "the node is not running (no answer on {})",
                    cfg.node.control_socket.display()
                )
            })?;
            println!("reload requested");
            Ok(())
        }
        Cmd::Restart { service, config } => {
            let cfg = load(&config)?;
            running(
                &cfg,
                Request::Restart {
                    service: service.clone(),
                },
            )
            .await?;
            println!("{service} restarted");
            Ok(())
        }
        Cmd::Debug { cmd } => {
            let (fault, service, config) = match cmd {
                DebugCmd::Stop { service, config } => (control::Fault::Stop, service, config),
                DebugCmd::Start { service, config } => (control::Fault::Start, service, config),
                DebugCmd::Wedge { service, config } => (control::Fault::Wedge, service, config),
                DebugCmd::Panic { service, config } => (control::Fault::Panic, service, config),
            };
            let cfg = load(&config)?;
            running(
                &cfg,
                Request::Debug {
                    fault,
                    service: service.clone(),
                },
            )
            .await?;
            println!("{service}: {fault:?} injected");
            Ok(())
        }
        Cmd::Standby { config } => switchover(&config, Request::Standby).await,
        Cmd::Takeover { config } => switchover(&config, Request::Takeover).await,
        Cmd::Content { cmd } => content(cmd).await,
        Cmd::Dkim { cmd } => dkim(cmd).await,
        Cmd::CheckZone { file } => {
            let summary = clusterd::dns::check_zone_file(&file).map_err(|e| anyhow!("{e}"))?;
            println!("{summary}");
            Ok(())
        }
    }
}

/// `clusterd standby` / `clusterd takeover` against the running node.
async fn switchover(config: &Path, req: Request) -> Result<()> {
    let cfg = load(config)?;
    let what = if matches!(req, Request::Standby) {
        "standby"
    } else {
        "takeover"
    };
    via_control(&cfg, req).await?.ok_or_else(|| {
        anyhow!(
            "the node is not running (no answer on {})",
            cfg.node.control_socket.display()
        )
    })?;
    println!("{what} requested");
    Ok(())
}

/// Sends a request to the running node; `None` when no node runs.
/// `clusterd queue list`: one line per message, then one per recipient.
fn print_queue(entries: &[clusterd::store::QueueEntry], now: i64) {
    for e in entries {
        let sender = if e.sender.is_empty() { "" } else { &e.sender };
        println!(
            "{} {} bytes from <{}> to {} (age {}, attempts {}{})",
            e.id,
            e.size,
            sender,
            e.recipients
                .iter()
                .map(|r| r.addr.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            age(now - e.created),
            e.attempts,
            if e.next_attempt > now {
                format!(", next attempt in {}", age(e.next_attempt - now))
            } else {
                ", next attempt now".to_string()
            }
        );
        for r in &e.recipients {
            let state = match r.state {
                clusterd::store::RcptState::Pending => "pending",
                clusterd::store::RcptState::Delivered => "delivered",
                clusterd::store::RcptState::Failed => "failed",
            };
            println!(
                "    {:<40} {:<9} {}",
                r.addr,
                state,
                r.reply.as_deref().unwrap_or("-")
            );
        }
    }
    println!("{} message(s) queued", entries.len());
}

/// A duration for people: "42s", "5m03s", "2h05m", "3d04h".
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

async fn via_control(cfg: &Config, req: Request) -> Result<Option<serde_json::Value>> {
    match control::send(&cfg.node.control_socket, &req).await? {
        None => Ok(None),
        Some(r) if r.ok => Ok(Some(r.data)),
        Some(r) => Err(anyhow!(r.error.unwrap_or_else(|| "failed".into()))),
    }
}

/// Through the running node; an error if none runs.
async fn running(cfg: &Config, req: Request) -> Result<serde_json::Value> {
    via_control(cfg, req).await?.ok_or_else(|| {
        anyhow!(
            "the node is not running (no answer on {})",
            cfg.node.control_socket.display()
        )
    })
}

/// Through the running node if there is one, else directly on the store.
async fn run_request(cfg: &Config, req: Request) -> Result<serde_json::Value> {
    if control::send(&cfg.node.control_socket, &Request::Status)
        .await?
        .is_some()
    {
        return via_control(cfg, req)
            .await?
            .ok_or_else(|| anyhow!("the node went away"));
    }
    let store = Store::open(&cfg.node.data_dir, &cfg.node.name)
        .with_context(|| format!("opening the store in {}", cfg.node.data_dir.display()))?;
    store.set_default_quota_mb(cfg.store.default_quota_mb);
    control::execute(&store, None, req).await
}

/// `clusterd dkim`: through the running node, or from the store when none runs (a
/// key is only ever generated by a running node).
async fn dkim(cmd: DkimCmd) -> Result<()> {
    let (config, sign) = match cmd {
        DkimCmd::Show { config } => (config, false),
        DkimCmd::Sign { config } => (config, true),
    };
    let cfg = load(&config)?;
    let mut message = Vec::new();
    if sign {
        use std::io::Read as _;
        std::io::stdin()
            .read_to_end(&mut message)
            .context("reading the message from standard input")?;
        message = crlf(&message);
    }
    let request = || {
        if sign {
            use base64::Engine as _;
            Request::DkimSign {
                message_base64: base64::engine::general_purpose::STANDARD.encode(&message),
            }
        } else {
            Request::DkimShow
        }
    };
    let data = match via_control(&cfg, request()).await? {
        Some(data) => data,
        None => {
            let store = Store::open(&cfg.node.data_dir, &cfg.node.name)
                .with_context(|| format!("opening the store in {}", cfg.node.data_dir.display()))?;
            let dkim = clusterd::dkim::Dkim::read(&cfg, &store).await?;
            control::dkim(&dkim, request())?
        }
    };
    if sign {
        let header = data.as_str().unwrap_or_default();
        let mut out = std::io::stdout().lock();
        out.write_all(header.as_bytes())?;
        out.write_all(&message)?;
        out.flush()?;
        return Ok(());
    }
    let rec: control::DkimRecord = serde_json::from_value(data)?;
    let (selector, domain) = rec
        .owner
        .split_once("._domainkey.")
        .unwrap_or((rec.owner.as_str(), ""));
    println!("; DKIM record of {domain}, selector {selector}; clusterd's own DNS serves it.");
    println!("; In a zone file:");
    println!("{}", rec.zone_line);
    println!();
    println!("; At a DNS provider (a TXT record; some forms want the name without the domain):");
    println!("name:  {}", rec.owner);
    println!("type:  TXT");
    println!("value: {}", rec.value);
    Ok(())
}

/// `text` with every bare LF made CRLF (a message typed or saved on Unix).
fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 40);
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' && (i == 0 || text[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn read_password(from_stdin: bool) -> Result<String> {
    let stdin = std::io::stdin();
    let interactive = !from_stdin && stdin.is_terminal();
    if interactive {
        eprint!("Password: ");
        std::io::stderr().flush()?;
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if interactive {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    r.context("reading the password")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err(anyhow!("empty password"));
    }
    Ok(pw)
}

async fn user(cmd: UserCmd) -> Result<()> {
    // The config is read before the password is asked for: a bad one fails at once.
    let (cfg, req, done) = match cmd {
        UserCmd::Add {
            name,
            full_name,
            password_stdin,
            config,
        } => {
            let cfg = load(&config)?;
            let password = read_password(password_stdin)?;
            let done = format!("account {name} created");
            let req = Request::UserAdd {
                name,
                full_name,
                password,
            };
            (cfg, req, done)
        }
        UserCmd::Passwd {
            name,
            password_stdin,
            config,
        } => {
            let cfg = load(&config)?;
            let password = read_password(password_stdin)?;
            let done = format!("password of {name} changed");
            (cfg, Request::UserPasswd { name, password }, done)
        }
        UserCmd::Del { name, config } => {
            let done = format!("account {name} deleted");
            (load(&config)?, Request::UserDel { name }, done)
        }
        UserCmd::List { config } => {
            let cfg = load(&config)?;
            let data = run_request(&cfg, Request::UserList).await?;
            let accounts: Vec<clusterd::store::Account> = serde_json::from_value(data)?;
            for a in accounts {
                println!("{}\t{}", a.name, a.full_name);
            }
            return Ok(());
        }
        UserCmd::Quota { name, mb, config } => {
            let cfg = load(&config)?;
            let Some(mb) = mb else {
                let data = run_request(&cfg, Request::QuotaShow { name: name.clone() }).await?;
                let q: clusterd::store::Quota = serde_json::from_value(data)?;
                let limit = match q.limit {
                    Some(l) => format!("{} KiB", l / 1024),
                    None => "none".into(),
                };
                println!("{name}: {} KiB used, quota {limit}", q.usage.div_ceil(1024));
                return Ok(());
            };
            let quota_mb = if mb.eq_ignore_ascii_case("default") {
                None
            } else {
                Some(mb.parse::<u64>().map_err(|_| {
                    anyhow!("quota {mb:?}: give MiB as a whole number (0: no quota) or \"default\"")
                })?)
            };
            let done = match quota_mb {
                Some(0) => format!("{name} has no quota"),
                Some(n) => format!("quota of {name} set to {n} MiB"),
                None => format!("{name} has the default quota"),
            };
            (cfg, Request::QuotaSet { name, quota_mb }, done)
        }
    };
    run_request(&cfg, req).await?;
    println!("{done}");
    Ok(())
}

async fn content(cmd: ContentCmd) -> Result<()> {
    match cmd {
        ContentCmd::Put { path, file, config } => {
            use base64::Engine as _;
            let cfg = load(&config)?;
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let data_base64 = base64::engine::general_purpose::STANDARD.encode(data);
            let req = Request::ContentPut {
                path: path.clone(),
                data_base64,
            };
            let entry: clusterd::store::ContentEntry =
                serde_json::from_value(run_request(&cfg, req).await?)?;
            println!("{} stored ({} bytes)", entry.path, entry.size);
        }
        ContentCmd::Del { path, config } => {
            let cfg = load(&config)?;
            run_request(&cfg, Request::ContentDel { path: path.clone() }).await?;
            println!("{path} removed");
        }
        ContentCmd::Publish { dir, root, config } => {
            use base64::Engine as _;
            let cfg = load(&config)?;
            let prefix = format!("{}/", root.trim_matches('/'));
            let data = run_request(&cfg, Request::ContentList { prefix }).await?;
            let stored: Vec<clusterd::store::ContentEntry> = serde_json::from_value(data)?;
            let plan = clusterd::publish::plan(&dir, &root, &stored)?;
            for (path, file) in &plan.put {
                let data =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                let data_base64 = base64::engine::general_purpose::STANDARD.encode(data);
                run_request(
                    &cfg,
                    Request::ContentPut {
                        path: path.clone(),
                        data_base64,
                    },
                )
                .await?;
                println!("stored  {path}");
            }
            for path in &plan.delete {
                run_request(&cfg, Request::ContentDel { path: path.clone() }).await?;
                println!("removed {path}");
            }
            println!(
                "{} stored, {} removed, {} unchanged",
                plan.put.len(),
                plan.delete.len(),
                plan.unchanged
            );
        }
        ContentCmd::List { prefix, config } => {
            let cfg = load(&config)?;
            let data = run_request(&cfg, Request::ContentList { prefix }).await?;
            let entries: Vec<clusterd::store::ContentEntry> = serde_json::from_value(data)?;
            for e in entries {
                println!("{}\t{}", e.path, e.size);
            }
        }
    }
    Ok(())
}

/// `clusterd demo`: a node on loopback high ports with a demo account.
/// The repository's zones/, for the demo node.
const DEMO_ZONES: [(&str, &str); 2] = [
    (
        "cluster.com.ec.zone",
        include_str!("../zones/cluster.com.ec.zone"),
    ),
    (
        "0.0.10.in-addr.arpa.zone",
        include_str!("../zones/0.0.10.in-addr.arpa.zone"),
    ),
];

async fn demo(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let text = format!(
        r#"[node]
name = "clusternodo1"
data_dir = "{data}"
control_socket = "{sock}"

[domain]
name = "cluster.com.ec"
aliases = {{ postmaster = "demo", root = "demo", abuse = "demo" }}

[smtp]
listen = ["127.0.0.1:2525"]
submission_listen = ["127.0.0.1:2587"]
submissions_listen = ["127.0.0.1:2465"]
require_resolvable_sender = false

[imap]
listen = ["127.0.0.1:2143"]
tls_listen = ["127.0.0.1:2993"]

[dns]
listen = ["127.0.0.1:2053"]
zones_dir = "{zones}"

[http]
listen = ["127.0.0.1:2080"]
https_listen = ["127.0.0.1:2443"]
"#,
        data = dir.join("data").display(),
        sock = dir.join("control.sock").display(),
        zones = dir.join("zones").display(),
    );
    // The reference deployment's zones, written once so they can be edited.
    let zones = dir.join("zones");
    if !zones.exists() {
        std::fs::create_dir_all(&zones)?;
        for (name, text) in DEMO_ZONES {
            std::fs::write(zones.join(name), text)?;
        }
    }
    let path = dir.join("clusterd.toml");
    std::fs::write(&path, &text)?;
    let cfg = Config::parse(&text, &path).map_err(|e| anyhow!("{e}"))?;
    {
        let store = Store::open(&cfg.node.data_dir, &cfg.node.name)?;
        if store.account("demo").await?.is_none() {
            store.create_account("demo", "Demo User", "demo").await?;
        }
    }
    eprintln!(
        "demo node: SMTP 127.0.0.1:2525 (submission 2587, 2465), IMAP 127.0.0.1:2143 (IMAPS 2993),\n\
         DNS 127.0.0.1:2053 (zones in {}/zones), web http://127.0.0.1:2080/ (https 2443, webmail /webmail/)\n\
         account demo@cluster.com.ec, password \"demo\"; config in {}",
        dir.display(),
        path.display()
    );
    clusterd::node::run(cfg).await
}
