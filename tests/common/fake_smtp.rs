//! Scripted SMTP servers for the outbound tests: plain std::net and threads on a
//! loopback address 127.0.0.X:PORT, each stage's reply chosen by the test (greeting,
//! MAIL, RCPT per recipient, end of DATA, temporary failures for the first N
//! transactions, a stall until released, the EHLO extensions offered). A server keeps
//! what it accepted with its envelope, and stops (threads joined, bounded) when dropped.
//! `Refuser` holds an address:port bound but not listening, so connects are refused.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a scripted server answers. Every `Option<String>` reply is a full reply line
/// such as "451 4.3.0 try later"; `None` means the normal positive reply.
#[derive(Clone, Debug)]
pub struct Script {
    /// The greeting; anything but 2xx answers every later command with 503 (QUIT: 221).
    pub greeting: String,
    /// EHLO extensions offered (besides the greeting line).
    pub extensions: Vec<String>,
    pub mail: Option<String>,
    /// Per recipient (compared case-insensitively) reply for RCPT.
    pub rcpt_for: Vec<(String, String)>,
    /// RCPT reply for every other recipient.
    pub rcpt: Option<String>,
    /// Reply at the end of DATA.
    pub data: Option<String>,
    /// The first `n` transactions (MAIL commands) get `reply` to every RCPT.
    pub temp_fail_first: Option<(usize, String)>,
    /// Accept connections and say nothing until `FakeSmtp::release` is called.
    pub stall: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 fake.example ESMTP scripted".into(),
            extensions: vec![
                "PIPELINING".into(),
                "SIZE 10485760".into(),
                "8BITMIME".into(),
            ],
            mail: None,
            rcpt_for: Vec::new(),
            rcpt: None,
            data: None,
            temp_fail_first: None,
            stall: false,
        }
    }
}

impl Script {
    pub fn accept_all() -> Script {
        Script::default()
    }
    pub fn greeting(mut self, reply: &str) -> Self {
        self.greeting = reply.into();
        self
    }
    pub fn extensions(mut self, ext: &[&str]) -> Self {
        self.extensions = ext.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn mail(mut self, reply: &str) -> Self {
        self.mail = Some(reply.into());
        self
    }
    pub fn rcpt(mut self, reply: &str) -> Self {
        self.rcpt = Some(reply.into());
        self
    }
    pub fn rcpt_for(mut self, addr: &str, reply: &str) -> Self {
        self.rcpt_for
            .push((addr.to_ascii_lowercase(), reply.into()));
        self
    }
    pub fn data(mut self, reply: &str) -> Self {
        self.data = Some(reply.into());
        self
    }
    pub fn temp_fail_first(mut self, n: usize, reply: &str) -> Self {
        self.temp_fail_first = Some((n, reply.into()));
        self
    }
    pub fn stall(mut self) -> Self {
        self.stall = true;
        self
    }
}

/// One message the server accepted (250 at the end of DATA).
#[derive(Clone, Debug)]
pub struct Accepted {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

impl Accepted {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Default, Debug)]
pub struct Record {
    pub connections: usize,
    /// MAIL commands seen.
    pub transactions: usize,
    /// Every command line received, in order (all connections).
    pub commands: Vec<String>,
    /// Every RCPT address with the reply it got.
    pub rcpts: Vec<(String, String)>,
    pub accepted: Vec<Accepted>,
}

struct Shared {
    /// Read by each new connection (`FakeSmtp::set_script` changes what later
    /// connections get).
    script: Mutex<Script>,
    stop: AtomicBool,
    released: Mutex<bool>,
    release_cv: Condvar,
    record: Mutex<Record>,
}

/// Most connections served at once; more wait in the accept backlog.
const MAX_SESSIONS: usize = 64;
/// Longest one session may last before the server drops it.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

/// A scripted SMTP server on `addr`; stops when dropped.
pub struct FakeSmtp {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeSmtp {
    /// Listens on 127.0.0.`host`:`port`; panics (loudly) when the address is taken.
    pub fn start(host: u8, port: u16, script: Script) -> FakeSmtp {
        let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), port));
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("fake SMTP bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            stop: AtomicBool::new(false),
            released: Mutex::new(false),
            release_cv: Condvar::new(),
            record: Mutex::new(Record::default()),
        });
        let sh = shared.clone();
        let acceptor = std::thread::spawn(move || accept_loop(listener, sh));
        FakeSmtp {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Replaces the script for connections accepted from now on.
    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap() = script;
    }

    /// Lets stalled sessions go on (they greet and follow the rest of the script).
    pub fn release(&self) {
        *self.shared.released.lock().unwrap() = true;
        self.shared.release_cv.notify_all();
    }

    /// Runs `f` on the record of what the server saw so far.
    pub fn with<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.shared.record.lock().unwrap())
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.with(|r| r.accepted.clone())
    }

    pub fn connections(&self) -> usize {
        self.with(|r| r.connections)
    }

    /// Waits (bounded) until `pred` holds on the record; returns whether it did.
    pub fn wait_for(&self, limit: Duration, pred: impl Fn(&Record) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.with(&pred) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `n` messages were accepted; returns them (maybe fewer on timeout).
    pub fn wait_accepted(&self, n: usize, limit: Duration) -> Vec<Accepted> {
        self.wait_for(limit, |r| r.accepted.len() >= n);
        self.accepted()
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.release();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>) {
    let mut sessions: Vec<JoinHandle<()>> = Vec::new();
    while !sh.stop.load(Ordering::SeqCst) {
        sessions.retain(|t| !t.is_finished());
        if sessions.len() >= MAX_SESSIONS {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                sh.record.lock().unwrap().connections += 1;
                let sh = sh.clone();
                sessions.push(std::thread::spawn(move || {
                    let _ = session(stream, &sh);
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for t in sessions {
        let _ = t.join();
    }
}

/// Reads one line (CRLF or LF ended, without it); None at EOF, on stop or after the
/// session limit.
fn read_line(r: &mut BufReader<TcpStream>, sh: &Shared, until: Instant) -> Option<String> {
    let mut buf = Vec::new();
    loop {
        if sh.stop.load(Ordering::SeqCst) || Instant::now() > until {
            return None;
        }
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) if buf.ends_with(b"\n") => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

fn addr_of(arg: &str) -> String {
    let start = arg.find('<').map(|i| i + 1).unwrap_or(0);
    let end = arg[start..]
        .find('>')
        .map(|i| start + i)
        .unwrap_or(arg.len());
    arg[start..end].trim().to_string()
}

fn session(stream: TcpStream, sh: &Shared) -> std::io::Result<()> {
    let until = Instant::now() + SESSION_LIMIT;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let script = sh.script.lock().unwrap().clone();
    if script.stall {
        let mut released = sh.released.lock().unwrap();
        while !*released && !sh.stop.load(Ordering::SeqCst) && Instant::now() < until {
            released = sh
                .release_cv
                .wait_timeout(released, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        if sh.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
    let say = |w: &mut TcpStream, text: &str| w.write_all(format!("{text}\r\n").as_bytes());
    say(&mut w, &script.greeting)?;
    let refused = !script.greeting.starts_with('2');
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut txn = 0usize;
    while let Some(line) = read_line(&mut r, sh, until) {
        sh.record.lock().unwrap().commands.push(line.clone());
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if verb == "QUIT" {
            say(&mut w, "221 2.0.0 bye")?;
            return Ok(());
        }
        if refused {
            say(&mut w, "503 5.5.1 no service")?;
            continue;
        }
        match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["fake.example".to_string()];
                lines.extend(script.extensions.iter().cloned());
                let n = lines.len();
                let text: String = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}\r\n", if i + 1 == n { ' ' } else { '-' }))
                    .collect();
                w.write_all(text.as_bytes())?;
            }
            "HELO" => say(&mut w, "250 fake.example")?,
            "RSET" => {
                from = None;
                rcpts.clear();
                say(&mut w, "250 2.0.0 ok")?;
            }
            "NOOP" => say(&mut w, "250 2.0.0 ok")?,
            "MAIL" => {
                sh.record.lock().unwrap().transactions += 1;
                txn = sh.record.lock().unwrap().transactions;
                rcpts.clear();
                match &script.mail {
                    Some(reply) => {
                        from = None;
                        say(&mut w, reply)?;
                    }
                    None => {
                        from = Some(addr_of(&line[4..]));
                        say(&mut w, "250 2.1.0 ok")?;
                    }
                }
            }
            "RCPT" => {
                let addr = addr_of(&line[4..]);
                let lower = addr.to_ascii_lowercase();
                let reply = if from.is_none() {
                    "503 5.5.1 MAIL first".to_string()
                } else if let Some((_, r)) =
                    script.temp_fail_first.as_ref().filter(|(n, _)| txn <= *n)
                {
                    r.clone()
                } else if let Some((_, r)) = script.rcpt_for.iter().find(|(a, _)| *a == lower) {
                    r.clone()
                } else {
                    script
                        .rcpt
                        .clone()
                        .unwrap_or_else(|| "250 2.1.5 ok".to_string())
                };
                if reply.starts_with('2') {
                    rcpts.push(addr.clone());
                }
                sh.record.lock().unwrap().rcpts.push((addr, reply.clone()));
                say(&mut w, &reply)?;
            }
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    say(&mut w, "554 5.5.1 no valid recipients")?;
                    continue;
                }
                say(&mut w, "354 go ahead")?;
                let mut data = Vec::new();
                loop {
                    let Some(l) = read_line(&mut r, sh, until) else {
                        return Ok(());
                    };
                    if l == "." {
                        break;
                    }
                    let l = l.strip_prefix('.').unwrap_or(&l);
                    data.extend_from_slice(l.as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                let reply = script
                    .data
                    .clone()
                    .unwrap_or_else(|| "250 2.0.0 accepted".to_string());
                if reply.starts_with('2') {
                    sh.record.lock().unwrap().accepted.push(Accepted {
                        from: from.take().unwrap_or_default(),
                        rcpts: std::mem::take(&mut rcpts),
                        data,
                    });
                }
                from = None;
                rcpts.clear();
                say(&mut w, &reply)?;
            }
            _ => say(&mut w, "502 5.5.2 not implemented")?,
        }
    }
    Ok(())
}

/// 127.0.0.`host`:`port` bound but never listening: connections are refused.
pub struct Refuser {
    _sock: socket2::Socket,
}

impl Refuser {
    pub fn start(host: u8, port: u16) -> Refuser {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), port));
        sock.bind(&addr.into())
            .unwrap_or_else(|e| panic!("refuser bind {addr}: {e}"));
        Refuser { _sock: sock }
    }
}

/// A TCP port free on 127.0.0.`host` for every host given (the mail exchangers of a
/// test all use it, on their own addresses). Only a best effort: the port is released.
pub fn free_port_on(hosts: &[u8]) -> u16 {
    'next: for _ in 0..100 {
        let port = super::free_port();
        for h in hosts {
            if TcpListener::bind((Ipv4Addr::new(127, 0, 0, *h), port)).is_err() {
                continue 'next;
            }
        }
        return port;
    }
    panic!("no port free on every address {hosts:?}");
}
