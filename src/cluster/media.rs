//! Heartbeat media: the UDP private link and the serial null-modem line.
//!
//! This module owns the sockets and serial ports that carry heartbeat frames
//! ([`super::wire`]) between the two nodes. [`Media::start`] opens every configured
//! medium and runs it in tasks of its own; [`Media::send`] puts one already-encoded
//! frame on every medium; every frame that authenticates comes back on the channel
//! given to `start`, tagged with the index of the medium it arrived on.
//!
//! # Implementation notes
//!
//! - Each medium has its own bounded send queue ([`SEND_QUEUE`]) and writer task;
//!   [`Media::send`] never waits: a frame is dropped for a medium whose queue is
//!   full, so a stuck serial write cannot delay the UDP medium or the caller.
//! - Every authentic frame is passed on, second copies included: the sender puts
//!   the same frame on every medium, and the copies are how the caller sees which
//!   media work. Replay filtering ([`super::replay::ReplayGuard`]) is the caller's.
//! - Frames that fail [`super::wire::decode`] are dropped with a debug log; a
//!   warning is logged at most once per [`WARN_INTERVAL`] per medium and kind.
//! - UDP: bound once at start with `SO_REUSEADDR` (a bind error fails
//!   [`Media::start`]); frames are sent to the configured peer and accepted from
//!   any source address, since only the key makes a frame authentic.
//! - Serial: opened non-exclusively; bytes are cut into frames by a keyed
//!   [`FrameReader`], which resynchronises after line noise. A read that returns end
//!   of file or an error (the far end of a pty went away) or a failed write means
//!   the line is down: the port is closed and reopened with back-off
//!   ([`SERIAL_BACKOFF_MIN`] doubling to [`SERIAL_BACKOFF_MAX`]). A device that
//!   cannot be opened, at start or later, is retried the same way; the node runs on
//!   without it. Frames queued while the line is down are dropped, not sent late.
//! - Dropping [`Media`] stops all its tasks and closes its sockets and ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_serial::{SerialPortBuilderExt as _, SerialStream};
use tracing::{debug, info, warn};

use super::wire::{FrameReader, Heartbeat, MAX_FRAME, decode};

/// Frames waiting per medium before [`Media::send`] drops new ones.
pub const SEND_QUEUE: usize = 8;
/// First wait before reopening a serial line.
pub const SERIAL_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait between attempts to reopen a serial line.
pub const SERIAL_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A serial write that takes longer than this is abandoned (the frame is dropped).
pub const SERIAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning per medium and kind of problem in this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// One heartbeat medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediumConfig {
    /// UDP: bind `bind`, send to `peer`.
    Udp { bind: SocketAddr, peer: SocketAddr },
    /// A serial line (or a pty standing in for one).
    Serial { device: PathBuf, baud: u32 },
}

impl MediumConfig {
    /// How logs and `clusterd status` name the medium.
    pub fn label(&self) -> String {
        match self {
            MediumConfig::Udp { bind, peer } => format!("udp {bind} -> {peer}"),
            MediumConfig::Serial { device, baud } => {
                format!("serial {} @ {baud}", device.display())
            }
        }
    }
}

/// A snapshot of one medium's state and counters, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediumStatus {
    /// "udp BIND -> PEER" or "serial DEVICE @ BAUD".
    pub label: String,
    /// The socket is bound / the serial port is open (says nothing about the peer).
    pub up: bool,
    /// Attempts to bind or open it so far.
    pub open_attempts: u64,
    /// Authentic frames received (passed on).
    pub rx_frames: u64,
    /// Frames received that failed authentication or decoding.
    pub rx_rejected: u64,
    /// Frames written.
    pub tx_frames: u64,
    /// Frames dropped: queue full, line down, or write failed.
    pub tx_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    up: AtomicBool,
    open_attempts: AtomicU64,
    rx_frames: AtomicU64,
    rx_rejected: AtomicU64,
    tx_frames: AtomicU64,
    tx_dropped: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Lets one warning through per [`WARN_INTERVAL`], counting the ones held back.
#[derive(Debug, Default)]
pub(super) struct WarnLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimit {
    /// `Some(number suppressed since the last warning)` if a warning may be logged now.
    pub(super) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < WARN_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

struct Medium {
    label: String,
    queue: mpsc::Sender<Arc<[u8]>>,
    counters: Arc<Counters>,
}

/// The running heartbeat media. Dropping it stops them.
pub struct Media {
    media: Vec<Medium>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.media.iter().map(|m| &m.label))
            .finish()
    }
}

/// What every receiving task needs.
#[derive(Clone)]
struct Inbound {
    index: usize,
    label: Arc<str>,
    key: Arc<[u8]>,
    rx_tx: mpsc::Sender<(usize, Heartbeat)>,
    counters: Arc<Counters>,
}

impl Media {
    /// Opens every medium and spawns its tasks. Received frames are authenticated
    /// with `key` and sent on `rx_tx` as `(medium index, heartbeat)`, the index being
    /// the position in `media` — every authentic frame, second copies included.
    ///
    /// Fails only if a UDP socket cannot be bound; a serial device that cannot be
    /// opened is logged and retried in the background.
    pub async fn start(
        media: Vec<MediumConfig>,
        key: Vec<u8>,
        rx_tx: mpsc::Sender<(usize, Heartbeat)>,
    ) -> anyhow::Result<Media> {
        let key: Arc<[u8]> = key.into();
        let mut out = Media {
            media: Vec::with_capacity(media.len()),
            tasks: Vec::new(),
        };
        for (index, config) in media.into_iter().enumerate() {
            let label = config.label();
            let counters = Arc::new(Counters::default());
            let (queue, queued) = mpsc::channel(SEND_QUEUE);
            let inbound = Inbound {
                index,
                label: label.as_str().into(),
                key: key.clone(),
                rx_tx: rx_tx.clone(),
                counters: counters.clone(),
            };
            match config {
                MediumConfig::Udp { bind, peer } => {
                    Counters::add(&counters.open_attempts, 1);
                    // On error `out` is dropped, stopping the media started so far.
                    let socket = Arc::new(bind_udp(bind).with_context(|| {
                        format!("heartbeat medium {index} ({label}): cannot bind {bind}")
                    })?);
                    counters.up.store(true, Ordering::Relaxed);
                    info!(medium = index, link = %label, "heartbeat medium ready");
                    out.tasks
                        .push(tokio::spawn(udp_receive(socket.clone(), inbound.clone())));
                    out.tasks
                        .push(tokio::spawn(udp_send(socket, peer, queued, inbound)));
                }
                MediumConfig::Serial { device, baud } => {
                    out.tasks
                        .push(tokio::spawn(serial_run(device, baud, queued, inbound)));
                }
            }
            out.media.push(Medium {
                label,
                queue,
                counters,
            });
        }
        Ok(out)
    }

    /// Queues one encoded frame on every medium without waiting; a medium whose
    /// queue is full (or whose line is down) drops it.
    pub fn send(&self, frame: &[u8]) {
        let frame: Arc<[u8]> = frame.into();
        for (index, medium) in self.media.iter().enumerate() {
            if medium.queue.try_send(frame.clone()).is_err() {
                Counters::add(&medium.counters.tx_dropped, 1);
                debug!(medium = index, link = %medium.label, "send queue full; heartbeat frame dropped");
            }
        }
    }

    /// Number of media (the indices are `0..count()`, in configuration order).
    pub fn count(&self) -> usize {
        self.media.len()
    }

    /// State and counters of every medium, by index.
    pub fn status(&self) -> Vec<MediumStatus> {
        self.media
            .iter()
            .map(|m| {
                let c = &m.counters;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                MediumStatus {
                    label: m.label.clone(),
                    up: c.up.load(Ordering::Relaxed),
                    open_attempts: get(&c.open_attempts),
                    rx_frames: get(&c.rx_frames),
                    rx_rejected: get(&c.rx_rejected),
                    tx_frames: get(&c.tx_frames),
                    tx_dropped: get(&c.tx_dropped),
                }
            })
            .collect()
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn bind_udp(bind: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    UdpSocket::from_std(socket.into())
}

/// Authenticates one received frame and passes it on. `Err(())` once the receiver
/// of the channel is gone (the node is shutting down).
async fn pass_on(
    frame: &[u8],
    from: &(dyn std::fmt::Display + Sync),
    inbound: &Inbound,
    limit: &mut WarnLimit,
) -> Result<(), ()> {
    match decode(frame, &inbound.key) {
        Ok(hb) => {
            Counters::add(&inbound.counters.rx_frames, 1);
            inbound
                .rx_tx
                .send((inbound.index, hb))
                .await
                .map_err(|_| ())
        }
        Err(error) => {
            Counters::add(&inbound.counters.rx_rejected, 1);
            reject_log(inbound, limit, &format!("frame from {from}: {error}"));
            Ok(())
        }
    }
}

fn reject_log(inbound: &Inbound, limit: &mut WarnLimit, what: &str) {
    match limit.allow() {
        Some(suppressed) => warn!(
            medium = inbound.index,
            link = %inbound.label,
            suppressed,
            "dropped heartbeat data: {what} (check the key on both nodes if this repeats)"
        ),
        None => {
            debug!(medium = inbound.index, link = %inbound.label, "dropped heartbeat data: {what}")
        }
    }
}

async fn udp_receive(socket: Arc<UdpSocket>, inbound: Inbound) {
    // One byte more than the largest frame, so an oversized datagram is not
    // silently cut into something of the right size.
    let mut buf = vec![0u8; MAX_FRAME + 1];
    let mut rejects = WarnLimit::default();
    let mut errors = WarnLimit::default();
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if pass_on(&buf[..n], &from, &inbound, &mut rejects)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => {
                if let Some(suppressed) = errors.allow() {
                    warn!(medium = inbound.index, link = %inbound.label, %error, suppressed, "heartbeat receive failed");
                }
                // Never spin on an error that repeats.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn udp_send(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    mut queued: mpsc::Receiver<Arc<[u8]>>,
    inbound: Inbound,
) {
    let mut errors = WarnLimit::default();
    while let Some(frame) = queued.recv().await {
        match socket.send_to(&frame, peer).await {
            Ok(_) => Counters::add(&inbound.counters.tx_frames, 1),
            Err(error) => {
                Counters::add(&inbound.counters.tx_dropped, 1);
                match errors.allow() {
                    Some(suppressed) => {
                        warn!(medium = inbound.index, link = %inbound.label, %error, suppressed, "heartbeat send failed")
                    }
                    None => {
                        debug!(medium = inbound.index, link = %inbound.label, %error, "heartbeat send failed")
                    }
                }
            }
        }
    }
}

fn open_serial(device: &Path, baud: u32) -> tokio_serial::Result<SerialStream> {
    let mut port = tokio_serial::new(device.to_string_lossy(), baud).open_native_async()?;
    port.set_exclusive(false)?;
    // Whatever waited in the line while we were away is stale (possibly from before
    // our restart): start from what the peer sends now.
    tokio_serial::SerialPort::clear(&port, tokio_serial::ClearBuffer::Input)?;
    Ok(port)
}

/// Why a serial session ended.
enum SessionEnd {
    /// The line went away; reopen it.
    Down(String),
    /// The node is shutting down (a channel closed); stop.
    Stop,
}

/// Owns one serial line for the life of the [`Media`]: open, run, reopen.
async fn serial_run(
    device: PathBuf,
    baud: u32,
    mut queued: mpsc::Receiver<Arc<[u8]>>,
    inbound: Inbound,
) {
    let counters = inbound.counters.clone();
    let mut backoff = SERIAL_BACKOFF_MIN;
    let mut open_failure_logged = false;
    loop {
        Counters::add(&counters.open_attempts, 1);
        match open_serial(&device, baud) {
            Ok(port) => {
                info!(medium = inbound.index, link = %inbound.label, "serial heartbeat line open");
                counters.up.store(true, Ordering::Relaxed);
                let opened = Instant::now();
                let end = serial_session(port, &mut queued, &inbound).await;
                counters.up.store(false, Ordering::Relaxed);
                match end {
                    SessionEnd::Stop => return,
                    SessionEnd::Down(why) => warn!(
                        medium = inbound.index,
                        link = %inbound.label,
                        "serial heartbeat line down: {why}; reopening"
                    ),
                }
                // A line that stayed up a while starts over with short waits; one
                // that fails as soon as it opens keeps backing off.
                if opened.elapsed() >= SERIAL_BACKOFF_MAX {
                    backoff = SERIAL_BACKOFF_MIN;
                }
                open_failure_logged = false;
            }
            Err(error) => {
                if open_failure_logged {
                    debug!(medium = inbound.index, link = %inbound.label, %error, "cannot open serial heartbeat line");
                } else {
                    warn!(
                        medium = inbound.index,
                        link = %inbound.label,
                        %error,
                        "cannot open serial heartbeat line; retrying every {} s at most",
                        SERIAL_BACKOFF_MAX.as_secs()
                    );
                    open_failure_logged = true;
                }
            }
        }
        if !wait_dropping(&mut queued, backoff, &counters).await {
            return;
        }
        backoff = (backoff * 2).min(SERIAL_BACKOFF_MAX);
    }
}

/// Waits `wait`, dropping the frames queued meanwhile (they would arrive stale).
/// `false` if the queue closed (the [`Media`] is gone).
async fn wait_dropping(
    queued: &mut mpsc::Receiver<Arc<[u8]>>,
    wait: Duration,
    counters: &Counters,
) -> bool {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return true,
            frame = queued.recv() => match frame {
                Some(_) => Counters::add(&counters.tx_dropped, 1),
                None => return false,
            },
        }
    }
}

/// Runs one open serial line until it goes down or the node stops.
async fn serial_session(
    port: SerialStream,
    queued: &mut mpsc::Receiver<Arc<[u8]>>,
    inbound: &Inbound,
) -> SessionEnd {
    let (mut rd, mut wr) = tokio::io::split(port);
    let counters = &inbound.counters;
    let reader = async {
        let mut frames = FrameReader::with_key(&inbound.key);
        let mut buf = [0u8; 1024];
        let mut rejects = WarnLimit::default();
        let mut noise = WarnLimit::default();
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) => return SessionEnd::Down("end of file".into()),
                Ok(n) => n,
                Err(error) => return SessionEnd::Down(format!("read: {error}")),
            };
            let (discarded, rejected) = (frames.discarded(), frames.rejected());
            for frame in frames.push(&buf[..n]) {
                if pass_on(&frame, &"serial line", inbound, &mut rejects)
                    .await
                    .is_err()
                {
                    return SessionEnd::Stop;
                }
            }
            let rejected = frames.rejected() - rejected;
            if rejected > 0 {
                Counters::add(&counters.rx_rejected, rejected);
                reject_log(
                    inbound,
                    &mut rejects,
                    &format!("{rejected} frame(s) failed authentication"),
                );
            }
            let discarded = frames.discarded() - discarded;
            if discarded > 0 {
                reject_log(
                    inbound,
                    &mut noise,
                    &format!("{discarded} byte(s) of line noise or unauthenticated data"),
                );
            }
        }
    };
    let writer = async {
        loop {
            let Some(frame) = queued.recv().await else {
                return SessionEnd::Stop;
            };
            match tokio::time::timeout(SERIAL_WRITE_TIMEOUT, wr.write_all(&frame)).await {
                Ok(Ok(())) => Counters::add(&counters.tx_frames, 1),
                Ok(Err(error)) => {
                    Counters::add(&counters.tx_dropped, 1);
                    return SessionEnd::Down(format!("write: {error}"));
                }
                Err(_) => {
                    // The far end is not draining the line. The frame may be cut
                    // short; the receiver resynchronises on the next magic.
                    Counters::add(&counters.tx_dropped, 1);
                    debug!(medium = inbound.index, link = %inbound.label, "serial write stalled; heartbeat frame dropped");
                }
            }
        }
    };
    tokio::select! {
        end = reader => end,
        end = writer => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::{ROLE_ACTIVE, ROLE_STANDBY, encode};
    use std::os::fd::{FromRawFd as _, OwnedFd};
    use std::process::{Child, Command, Stdio};

    const KEY: &[u8] = b"0123456789abcdef-media-test";

    fn hb(node: &str, seq: u64) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            boot_id: 42,
            seq,
            role: if node == "a" {
                ROLE_ACTIVE
            } else {
                ROLE_STANDBY
            },
            epoch: 3,
            store_seq: 100 + seq,
            healthy: true,
            ping_ok: true,
            request: 0,
            vip_held: node == "a",
        }
    }

    fn free_udp_addr() -> SocketAddr {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    type Rx = mpsc::Receiver<(usize, Heartbeat)>;

    async fn start(media: Vec<MediumConfig>) -> (Media, Rx) {
        let (tx, rx) = mpsc::channel(64);
        let media = Media::start(media, KEY.to_vec(), tx).await.unwrap();
        (media, rx)
    }

    async fn next(rx: &mut Rx, within: Duration) -> Option<(usize, Heartbeat)> {
        tokio::time::timeout(within, rx.recv()).await.ok().flatten()
    }

    /// Sends `hb` every 100 ms (like keepalives) until it arrives; `false` if it
    /// did not within `within`. Other heartbeats received meanwhile are skipped.
    async fn send_until_received(
        from: &Media,
        to: &mut Rx,
        hb: &Heartbeat,
        within: Duration,
    ) -> Option<usize> {
        let frame = encode(hb, KEY);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            from.send(&frame);
            let round = Instant::now() + Duration::from_millis(100);
            while let Some(left) = round.checked_duration_since(Instant::now()) {
                match next(to, left).await {
                    Some((index, got)) if got == *hb => return Some(index),
                    Some(_) => {}
                    None => break,
                }
            }
        }
        None
    }

    fn udp_pair() -> (MediumConfig, MediumConfig) {
        let (a, b) = (free_udp_addr(), free_udp_addr());
        (
            MediumConfig::Udp { bind: a, peer: b },
            MediumConfig::Udp { bind: b, peer: a },
        )
    }

    #[tokio::test]
    async fn udp_media_exchange_authentic_heartbeats() {
        let (ca, cb) = udp_pair();
        let (a, mut rx_a) = start(vec![ca]).await;
        let (b, mut rx_b) = start(vec![cb]).await;
        assert_eq!((a.count(), b.count()), (1, 1));

        a.send(&encode(&hb("a", 1), KEY));
        assert_eq!(
            next(&mut rx_b, Duration::from_secs(2)).await,
            Some((0, hb("a", 1)))
        );
        b.send(&encode(&hb("b", 1), KEY));
        assert_eq!(
            next(&mut rx_a, Duration::from_secs(2)).await,
            Some((0, hb("b", 1)))
        );
        let status = a.status();
        assert!(status[0].up);
        assert_eq!((status[0].tx_frames, status[0].rx_frames), (1, 1));
    }

    #[tokio::test]
    async fn udp_passes_every_copy_and_drops_forged_or_garbage_frames() {
        let (ca, _) = udp_pair();
        let MediumConfig::Udp { bind, .. } = ca else {
            unreachable!()
        };
        let (a, mut rx_a) = start(vec![ca]).await;
        let intruder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        intruder
            .send_to(&encode(&hb("b", 1), b"guessed-key-0123456"), bind)
            .unwrap();
        intruder.send_to(b"hello, garbage", bind).unwrap();
        let genuine = encode(&hb("b", 2), KEY);
        intruder.send_to(&genuine, bind).unwrap();
        intruder.send_to(&genuine, bind).unwrap();

        let within = Duration::from_secs(2);
        assert_eq!(next(&mut rx_a, within).await, Some((0, hb("b", 2))));
        assert_eq!(next(&mut rx_a, within).await, Some((0, hb("b", 2))));
        assert_eq!(next(&mut rx_a, Duration::from_millis(200)).await, None);
        assert_eq!(a.status()[0].rx_rejected, 2);
        assert_eq!(a.status()[0].rx_frames, 2);
    }

    #[tokio::test]
    async fn invalid_udp_bind_address_fails_start() {
        // TEST-NET-3 is not an address of this host: binding fails, nothing is sent.
        let bind: SocketAddr = "203.0.113.7:6940".parse().unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let err = Media::start(
            vec![MediumConfig::Udp {
                bind,
                peer: free_udp_addr(),
            }],
            KEY.to_vec(),
            tx,
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("203.0.113.7:6940"), "{msg}");
    }

    #[tokio::test]
    async fn missing_serial_device_is_retried_with_back_off_and_udp_runs_on() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cb) = udp_pair();
        let serial = MediumConfig::Serial {
            device: dir.path().join("no-such-tty"),
            baud: 115_200,
        };
        let (a, _rx_a) = start(vec![serial, ca]).await;
        let (_b, mut rx_b) = start(vec![cb]).await;
        assert_eq!(
            send_until_received(&a, &mut rx_b, &hb("a", 1), Duration::from_secs(2)).await,
            Some(0)
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let serial = &a.status()[0];
        assert!(!serial.up);
        // Attempts at about 0, 0.2, 0.6 and 1.4 s: a handful, not a spin.
        assert!(
            (2..=5).contains(&serial.open_attempts),
            "{} open attempts",
            serial.open_attempts
        );
        assert!(a.status()[1].up);
    }

    /// A socat process joining two ptys (a null-modem cable), killed when dropped.
    struct Socat {
        child: Child,
    }

    impl Socat {
        fn start(a: &Path, b: &Path) -> Socat {
            for link in [a, b] {
                let _ = std::fs::remove_file(link);
            }
            let child = Command::new("socat")
                .arg("-d")
                .arg("-d")
                .arg(format!("pty,raw,echo=0,link={}", a.display()))
                .arg(format!("pty,raw,echo=0,link={}", b.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("socat must be installed for the serial heartbeat tests");
            let socat = Socat { child };
            let deadline = Instant::now() + Duration::from_secs(5);
            while !(a.exists() && b.exists()) {
                assert!(Instant::now() < deadline, "socat did not create the ptys");
                std::thread::sleep(Duration::from_millis(20));
            }
            socat
        }

        /// Ends socat with SIGTERM, so it closes the ptys and removes the links
        /// the way a pulled cable ends the line.
        fn stop(&mut self) {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    impl Drop for Socat {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serial_line_carries_frames_both_ways_and_recovers_after_the_cable_is_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("ttyA"), dir.path().join("ttyB"));
        let mut socat = Socat::start(&pa, &pb);
        let serial = |device: &Path| MediumConfig::Serial {
            device: device.to_path_buf(),
            baud: 115_200,
        };
        let (a, mut rx_a) = start(vec![serial(&pa)]).await;
        let (b, mut rx_b) = start(vec![serial(&pb)]).await;
        let within = Duration::from_secs(3);

        // Frames pass both ways.
        assert_eq!(
            send_until_received(&a, &mut rx_b, &hb("a", 1), within).await,
            Some(0)
        );
        assert_eq!(
            send_until_received(&b, &mut rx_a, &hb("b", 1), within).await,
            Some(0)
        );

        // Pull the cable: both ends see the line go down ...
        socat.stop();
        wait_for("both lines down", within, || {
            !a.status()[0].up && !b.status()[0].up
        })
        .await;
        // ... and retry with back-off instead of spinning.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = a.status()[0].open_attempts;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let during_one_second = a.status()[0].open_attempts - before;
        assert!(
            during_one_second <= 3,
            "{during_one_second} reopen attempts in one second"
        );
        // Frames sent meanwhile are dropped, not queued up.
        for seq in 2..100 {
            a.send(&encode(&hb("a", seq), KEY));
        }
        assert!(a.status()[0].tx_dropped > 0);

        // Plug it back in: frames flow again both ways.
        let _socat = Socat::start(&pa, &pb);
        let within = Duration::from_secs(5);
        assert_eq!(
            send_until_received(&a, &mut rx_b, &hb("a", 100), within).await,
            Some(0)
        );
        assert_eq!(
            send_until_received(&b, &mut rx_a, &hb("b", 100), within).await,
            Some(0)
        );
        assert!(a.status()[0].up && b.status()[0].up);
        assert_eq!(a.status()[0].rx_rejected, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_never_waits_for_a_stuck_serial_line() {
        // A pty whose far end (the master) nobody reads: writes to it stall.
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two fds into the given integers; the other
        // arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just opened by openpty and are owned here only.
        let (_master, _slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let tty = std::fs::read_link(format!("/proc/self/fd/{slave}")).unwrap();

        let (ca, cb) = udp_pair();
        let serial = MediumConfig::Serial {
            device: tty,
            baud: 115_200,
        };
        let (a, _rx_a) = start(vec![serial, ca]).await;
        let (_b, mut rx_b) = start(vec![cb]).await;
        wait_for("serial line open", Duration::from_secs(2), || {
            a.status()[0].up
        })
        .await;

        // Keep the queues topped up until the serial writer stops making progress:
        // the pty buffer is full and the write is stuck.
        let frame = encode(&hb("a", 1), KEY);
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut written, mut since) = (0, Instant::now());
        while since.elapsed() < Duration::from_millis(300) {
            assert!(Instant::now() < deadline, "the serial line never filled up");
            for _ in 0..SEND_QUEUE {
                a.send(&frame);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = a.status()[0].tx_frames;
            if now != written {
                (written, since) = (now, Instant::now());
            }
        }

        // With the serial write stuck, send still returns at once ...
        let started = Instant::now();
        for _ in 0..1000 {
            a.send(&frame);
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "send took {:?}",
            started.elapsed()
        );
        // ... and the UDP medium still delivers.
        assert_eq!(
            send_until_received(&a, &mut rx_b, &hb("a", 2), Duration::from_secs(2)).await,
            Some(0)
        );
        let serial = &a.status()[0];
        assert_eq!(serial.tx_frames, written, "the serial line was not stuck");
        assert!(serial.up && serial.tx_dropped > 0);
    }
}
