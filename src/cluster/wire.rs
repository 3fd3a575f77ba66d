//! The heartbeat wire format: one authenticated, self-delimiting frame per keepalive.
//!
//! This module owns the bytes that travel between the two nodes on every heartbeat
//! medium (UDP on the private link, the serial null-modem line). It does no I/O:
//! [`encode`] and [`decode`] turn a [`Heartbeat`] into a frame and back,
//! [`FrameReader`] cuts a serial byte stream into frames, and [`read_key_file`] reads
//! the shared key the frames are authenticated with. Whether an authentic heartbeat
//! is new, a second copy or a replay is decided by the
//! [`ReplayGuard`](super::replay::ReplayGuard) in `replay`.
//!
//! The stream reader stays with the codec because it resyncs on the same header
//! checks and MACs; the key file is the MAC's key (replication authenticates with the
//! same key and reads it through here).
//!
//! # Frame layout (version 1, all integers big-endian)
//!
//! ```text
//! offset  size  field
//!      0     4  magic  "CLHB"
//!      4     1  version = 1
//!      5     2  length L of the payload (36 ..= 1024)
//!      7     L  payload
//!    7+L    32  HMAC-SHA256(key, bytes 0 .. 7+L)
//!
//! payload (version 1):
//!      0     8  boot_id      the process's start time, ordered (replay::boot_id)
//!      8     8  seq          +1 per heartbeat within one boot
//!     16     8  epoch
//!     24     8  store_seq    op-log position of the sender's store
//!     32     1  role         0 init, 1 standby, 2 active
//!     33     1  flags        bit 0 healthy, bit 1 ping_ok, bit 2 vip_held, others reserved
//!     34     1  request      0 none, 1 please take over, 2 please stand down
//!     35     1  N, length of the node name
//!     36     N  node name, UTF-8
//!   36+N     -  extension bytes (ignored by version 1 receivers)
//! ```
//!
//! # Rules
//!
//! - The MAC covers every byte before it (header included), so a changed bit
//!   anywhere in a frame is rejected. The tag is compared in constant time
//!   (`hmac`'s `verify_slice`).
//! - Magic, version and the 16-bit length keep their place in every future version,
//!   so a stream reader can always find the end of a frame; a receiver refuses a
//!   version it does not know ([`WireError::BadVersion`]) rather than guess.
//! - Compatible additions need no new version: reserved flag bits are sent as zero
//!   and ignored on receipt, and fields may be appended after the node name; a
//!   version 1 receiver ignores them (they are still covered by the MAC).
//!   Unknown `role` and `request` values are refused ([`WireError::Malformed`]).
//! - A receiver acts on a heartbeat only if it authenticates *and* the
//!   [`ReplayGuard`](super::replay::ReplayGuard) calls it
//!   [`Verdict::New`](super::replay::Verdict::New). The sender puts the same frame
//!   (same `seq`) on every medium, so the copies that arrive on the other media are
//!   [`Verdict::Duplicate`](super::replay::Verdict::Duplicate): proof that medium
//!   works, no new state.
//!
//! # Invariants
//!
//! - `decode(&encode(hb, key), key) == Ok(hb)` for every heartbeat whose node name
//!   is at most [`MAX_NODE_NAME`] bytes and whose role and request are known.
//! - A frame is never longer than [`MAX_FRAME`] bytes, well under the
//!   [`FrameReader`] buffer cap, so the reader can always hold one whole frame.

use std::path::Path;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CLHB";
/// The version this code writes and the only one it reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload: magic, version, length.
pub const HEADER_LEN: usize = 7;
/// Length of the HMAC-SHA256 tag that ends every frame.
pub const MAC_LEN: usize = 32;
/// Smallest version 1 payload (fixed fields and an empty node name).
pub const MIN_PAYLOAD: usize = 36;
/// Largest payload a receiver accepts.
pub const MAX_PAYLOAD: usize = 1024;
/// Largest frame a receiver accepts.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + MAC_LEN;
/// Longest node name that fits in a frame (longer names are cut by [`encode`];
/// the configuration must refuse them).
pub const MAX_NODE_NAME: usize = 255;

/// `role` values.
pub const ROLE_INIT: u8 = 0;
pub const ROLE_STANDBY: u8 = 1;
pub const ROLE_ACTIVE: u8 = 2;

/// `request` values.
pub const REQUEST_NONE: u8 = 0;
/// Sent by a node doing `clusterd standby`: "please take over".
pub const REQUEST_TAKE_OVER: u8 = 1;
/// Sent by a node doing `clusterd takeover`: "please stand down".
pub const REQUEST_STAND_DOWN: u8 = 2;

const FLAG_HEALTHY: u8 = 0b01;
const FLAG_PING_OK: u8 = 0b10;
const FLAG_VIP_HELD: u8 = 0b100;

/// Cap on the bytes a [`FrameReader`] holds.
pub const READER_CAP: usize = 4096;

/// One heartbeat: what a node says about itself on every keepalive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender's node name (at most [`MAX_NODE_NAME`] bytes).
    pub node: String,
    /// Random, chosen once per process start.
    pub boot_id: u64,
    /// +1 per heartbeat within one boot.
    pub seq: u64,
    /// [`ROLE_INIT`], [`ROLE_STANDBY`] or [`ROLE_ACTIVE`].
    pub role: u8,
    pub epoch: u64,
    /// Op-log sequence of the sender's store.
    pub store_seq: u64,
    /// The sender's services are OK.
    pub healthy: bool,
    /// The sender reaches a ping node.
    pub ping_ok: bool,
    /// [`REQUEST_NONE`], [`REQUEST_TAKE_OVER`] or [`REQUEST_STAND_DOWN`].
    pub request: u8,
    /// The VIP is on the sender's LAN interface (it answers ARP for it). During a
    /// handover the yielding node keeps it, already standby, until the taker is active.
    pub vip_held: bool,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a heartbeat frame (bad magic)")]
    BadMagic,
    #[error("unsupported heartbeat frame version")]
    BadVersion,
    #[error("heartbeat frame is truncated")]
    Truncated,
    #[error("heartbeat frame failed authentication (wrong key or altered)")]
    BadMac,
    #[error("heartbeat frame is malformed")]
    Malformed,
}

fn mac_for(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Cuts `name` to at most `max` bytes at a character boundary.
fn cut_name(name: &str, max: usize) -> &str {
    if name.len() <= max {
        return name;
    }
    let mut end = max;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Encodes `hb` as one frame authenticated with `key`.
///
/// A node name longer than [`MAX_NODE_NAME`] bytes is cut to fit (the
/// configuration is expected to refuse such names).
pub fn encode(hb: &Heartbeat, key: &[u8]) -> Vec<u8> {
    let name = cut_name(&hb.node, MAX_NODE_NAME);
    let payload_len = MIN_PAYLOAD + name.len();
    let mut out = Vec::with_capacity(HEADER_LEN + payload_len + MAC_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    out.extend_from_slice(&hb.boot_id.to_be_bytes());
    out.extend_from_slice(&hb.seq.to_be_bytes());
    out.extend_from_slice(&hb.epoch.to_be_bytes());
    out.extend_from_slice(&hb.store_seq.to_be_bytes());
    out.push(hb.role);
    let mut flags = 0;
    if hb.healthy {
        flags |= FLAG_HEALTHY;
    }
    if hb.ping_ok {
        flags |= FLAG_PING_OK;
    }
    if hb.vip_held {
        flags |= FLAG_VIP_HELD;
    }
    out.push(flags);
    out.push(hb.request);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    let mut mac = mac_for(key);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// What the fixed header says, before anything is authenticated.
enum Header {
    /// More bytes are needed to read the header.
    Short,
    /// A frame of this total length starts here.
    Frame(usize),
}

/// Reads the header at the start of `bytes`: magic, version, length.
fn parse_header(bytes: &[u8]) -> Result<Header, WireError> {
    let magic_seen = bytes.len().min(MAGIC.len());
    if bytes[..magic_seen] != MAGIC[..magic_seen] {
        return Err(WireError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Ok(Header::Short);
    }
    if bytes[4] != VERSION {
        return Err(WireError::BadVersion);
    }
    let len = u16::from_be_bytes([bytes[5], bytes[6]]) as usize;
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Err(WireError::Malformed);
    }
    Ok(Header::Frame(HEADER_LEN + len + MAC_LEN))
}

/// Checks the tag of a frame of exactly `frame.len()` bytes (length already known).
fn mac_ok(frame: &[u8], key: &[u8]) -> bool {
    let (signed, tag) = frame.split_at(frame.len() - MAC_LEN);
    let mut mac = mac_for(key);
    mac.update(signed);
    mac.verify_slice(tag).is_ok()
}

/// Decodes and authenticates exactly one frame.
///
/// Checks, in order: magic ([`WireError::BadMagic`]), version
/// ([`WireError::BadVersion`]), length field in range ([`WireError::Malformed`]),
/// enough bytes for the length it announces ([`WireError::Truncated`]), the MAC
/// ([`WireError::BadMac`]), no bytes after the MAC and a well-formed payload
/// ([`WireError::Malformed`]). Nothing in the payload is looked at before the MAC
/// has been verified.
pub fn decode(frame: &[u8], key: &[u8]) -> Result<Heartbeat, WireError> {
    let total = match parse_header(frame)? {
        Header::Short => return Err(WireError::Truncated),
        Header::Frame(total) => total,
    };
    if frame.len() < total {
        return Err(WireError::Truncated);
    }
    if !mac_ok(&frame[..total], key) {
        return Err(WireError::BadMac);
    }
    if frame.len() > total {
        return Err(WireError::Malformed);
    }
    parse_payload(&frame[HEADER_LEN..total - MAC_LEN])
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

fn parse_payload(p: &[u8]) -> Result<Heartbeat, WireError> {
    if p.len() < MIN_PAYLOAD {
        return Err(WireError::Malformed);
    }
    let role = p[32];
    let flags = p[33];
    let request = p[34];
    let name_len = p[35] as usize;
    if role > ROLE_ACTIVE || request > REQUEST_STAND_DOWN {
        return Err(WireError::Malformed);
    }
    let name = p
        .get(MIN_PAYLOAD..MIN_PAYLOAD + name_len)
        .ok_or(WireError::Malformed)?;
    let node = std::str::from_utf8(name).map_err(|_| WireError::Malformed)?;
    // Bytes after the name are extension fields of a later sender: ignored.
    Ok(Heartbeat {
        node: node.to_owned(),
        boot_id: be_u64(p, 0),
        seq: be_u64(p, 8),
        epoch: be_u64(p, 16),
        store_seq: be_u64(p, 24),
        role,
        healthy: flags & FLAG_HEALTHY != 0,
        ping_ok: flags & FLAG_PING_OK != 0,
        request,
        vip_held: flags & FLAG_VIP_HELD != 0,
    })
}

/// Cuts a byte stream (the serial line) into frames.
///
/// Bytes that cannot start a frame are skipped up to the next magic (resync). A
/// candidate is a magic followed by version 1 and a length in range; once it is
/// complete it is yielded. With a key ([`FrameReader::with_key`]) the reader also
/// checks the MAC: a complete candidate that does not authenticate is not consumed
/// as a whole but skipped one byte at a time, and an incomplete candidate is
/// abandoned as soon as a complete authentic frame starts after it, so garbage that
/// happens to contain the magic cannot swallow a real frame behind it.
///
/// The reader never holds more than [`READER_CAP`] bytes.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    key: Option<Vec<u8>>,
    discarded: u64,
    rejected: u64,
}

impl std::fmt::Debug for FrameReader {
    // Leaves the key out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buf.len())
            .field("keyed", &self.key.is_some())
            .field("discarded", &self.discarded)
            .field("rejected", &self.rejected)
            .finish()
    }
}

impl FrameReader {
    /// A reader that checks structure only (magic, version, length).
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader that also checks each frame's MAC with `key` before yielding it.
    pub fn with_key(key: &[u8]) -> Self {
        Self {
            key: Some(key.to_vec()),
            ..Self::default()
        }
    }

    /// Feeds bytes in; returns the frames completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        // Feed in slices so the buffer never exceeds the cap: after `drain` the
        // buffer holds less than one maximal frame.
        for chunk in bytes.chunks(READER_CAP - MAX_FRAME) {
            self.buf.extend_from_slice(chunk);
            self.drain(&mut frames);
            debug_assert!(self.buf.len() <= READER_CAP);
        }
        frames
    }

    /// Bytes currently held, waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Total bytes skipped as not part of any frame.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Complete candidate frames whose MAC failed (only with a key).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    fn skip(&mut self, n: usize) {
        self.buf.drain(..n);
        self.discarded += n as u64;
    }

    /// Position of the first full magic at or after `from`, or else of a trailing
    /// partial magic, or `buf.len()`.
    fn next_magic(&self, from: usize) -> usize {
        let buf = &self.buf;
        if let Some(i) = buf[from.min(buf.len())..]
            .windows(MAGIC.len())
            .position(|w| w == MAGIC)
        {
            return from + i;
        }
        let tail_start = buf.len().saturating_sub(MAGIC.len() - 1).max(from);
        (tail_start..buf.len())
            .find(|&i| MAGIC.starts_with(&buf[i..]))
            .unwrap_or(buf.len())
    }

    /// The total length of an authentic, complete frame at `at`, if there is one.
    fn authentic_frame_at(&self, at: usize, key: &[u8]) -> Option<usize> {
        match parse_header(&self.buf[at..]) {
            Ok(Header::Frame(total))
                if self.buf.len() - at >= total && mac_ok(&self.buf[at..at + total], key) =>
            {
                Some(total)
            }
            _ => None,
        }
    }

    fn drain(&mut self, frames: &mut Vec<Vec<u8>>) {
        loop {
            let start = self.next_magic(0);
            self.skip(start);
            let total = match parse_header(&self.buf) {
                Ok(Header::Short) => return,
                Ok(Header::Frame(total)) => total,
                Err(_) => {
                    // A magic that does not start a frame: step over it.
                    self.skip(1);
                    continue;
                }
            };
            if self.buf.len() >= total {
                let authentic = match &self.key {
                    Some(key) => mac_ok(&self.buf[..total], key),
                    None => true,
                };
                if authentic {
                    frames.push(self.buf.drain(..total).collect());
                } else {
                    self.rejected += 1;
                    self.skip(1);
                }
                continue;
            }
            // Incomplete candidate: with a key, an authentic frame starting later
            // proves the candidate was garbage.
            let Some(key) = self.key.clone() else {
                return;
            };
            let mut at = self.next_magic(1);
            let mut found = None;
            while at + HEADER_LEN <= self.buf.len() {
                if self.authentic_frame_at(at, &key).is_some() {
                    found = Some(at);
                    break;
                }
                at = self.next_magic(at + 1);
            }
            match found {
                Some(at) => self.skip(at),
                None => return,
            }
        }
    }
}

/// Reads the shared heartbeat key: the file's bytes with trailing whitespace
/// removed. Refuses an empty key, one shorter than 16 bytes, and a file its group or
/// others may read; errors name the file.
pub fn read_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut key =
        std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
    while key.last().is_some_and(|b| b.is_ascii_whitespace()) {
        key.pop();
    }
    if key.is_empty() {
        anyhow::bail!("key file {} is empty", path.display());
    }
    if key.len() < 16 {
        anyhow::bail!(
            "key file {}: key is {} bytes, at least 16 are required",
            path.display(),
            key.len()
        );
    }
    if let Some(problem) = crate::config::key_file_mode_problem(path) {
        anyhow::bail!(problem);
    }
    Ok(key)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-shared-key";

    /// A heartbeat from `clusternodo1` with sequence number `seq`.
    pub(in crate::cluster) fn hb(seq: u64) -> Heartbeat {
        Heartbeat {
            node: "clusternodo1".into(),
            boot_id: 0x1122_3344_5566_7788,
            seq,
            role: ROLE_ACTIVE,
            epoch: 7,
            store_seq: 4242,
            healthy: true,
            ping_ok: false,
            request: REQUEST_STAND_DOWN,
            vip_held: true,
        }
    }

    #[test]
    fn decode_inverts_encode() {
        let mut cases = vec![hb(1), hb(u64::MAX)];
        cases.push(Heartbeat {
            node: String::new(),
            boot_id: 0,
            seq: 0,
            role: ROLE_INIT,
            epoch: 0,
            store_seq: 0,
            healthy: false,
            ping_ok: true,
            request: REQUEST_NONE,
            vip_held: false,
        });
        cases.push(Heartbeat {
            node: "nodo-ñ".repeat(36), // 252 bytes of UTF-8
            role: ROLE_STANDBY,
            request: REQUEST_TAKE_OVER,
            ..hb(9)
        });
        for case in cases {
            let frame = encode(&case, KEY);
            assert_eq!(decode(&frame, KEY), Ok(case));
        }
    }

    #[test]
    fn frame_layout_is_magic_version_length_payload_mac() {
        let frame = encode(&hb(0x0102), KEY);
        assert_eq!(&frame[..4], b"CLHB");
        assert_eq!(frame[4], 1);
        let len = u16::from_be_bytes([frame[5], frame[6]]) as usize;
        assert_eq!(len, MIN_PAYLOAD + "clusternodo1".len());
        assert_eq!(frame.len(), HEADER_LEN + len + MAC_LEN);
        let p = &frame[HEADER_LEN..HEADER_LEN + len];
        assert_eq!(&p[0..8], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(&p[8..16], &0x0102u64.to_be_bytes());
        assert_eq!(&p[16..24], &7u64.to_be_bytes());
        assert_eq!(&p[24..32], &4242u64.to_be_bytes());
        assert_eq!(&p[32..36], &[ROLE_ACTIVE, 0b101, REQUEST_STAND_DOWN, 12]);
        assert_eq!(&p[36..], b"clusternodo1");
        let mut mac = mac_for(KEY);
        mac.update(&frame[..HEADER_LEN + len]);
        assert_eq!(&frame[HEADER_LEN + len..], &mac.finalize().into_bytes()[..]);
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let frame = encode(&hb(5), KEY);
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                let got = decode(&bad, KEY);
                match i {
                    0..4 => assert_eq!(got, Err(WireError::BadMagic), "byte {i} bit {bit}"),
                    4 => assert_eq!(got, Err(WireError::BadVersion), "byte {i} bit {bit}"),
                    // A changed length makes the frame too short, out of range, or
                    // moves the tag: never accepted.
                    5 | 6 => assert!(
                        matches!(
                            got,
                            Err(WireError::Truncated | WireError::Malformed | WireError::BadMac)
                        ),
                        "byte {i} bit {bit}: {got:?}"
                    ),
                    _ => assert_eq!(got, Err(WireError::BadMac), "byte {i} bit {bit}"),
                }
            }
        }
    }

    #[test]
    fn wrong_key_is_bad_mac() {
        let frame = encode(&hb(5), KEY);
        assert_eq!(
            decode(&frame, b"another-key-of-16+bytes"),
            Err(WireError::BadMac)
        );
    }

    #[test]
    fn truncated_frame_is_truncated() {
        let frame = encode(&hb(5), KEY);
        for cut in [1, 4, 6, 7, 20, frame.len() - MAC_LEN, frame.len() - 1] {
            assert_eq!(
                decode(&frame[..cut], KEY),
                Err(WireError::Truncated),
                "cut at {cut}"
            );
        }
        assert_eq!(decode(&[], KEY), Err(WireError::Truncated));
    }

    #[test]
    fn bytes_after_the_mac_are_malformed() {
        let mut frame = encode(&hb(5), KEY);
        frame.push(0);
        assert_eq!(decode(&frame, KEY), Err(WireError::Malformed));
    }

    /// Builds a correctly authenticated frame around an arbitrary payload.
    fn sign(version: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.push(version);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        let mut mac = mac_for(KEY);
        mac.update(&f);
        f.extend_from_slice(&mac.finalize().into_bytes());
        f
    }

    fn payload_of(frame: &[u8]) -> Vec<u8> {
        frame[HEADER_LEN..frame.len() - MAC_LEN].to_vec()
    }

    #[test]
    fn unknown_version_is_bad_version() {
        let p = payload_of(&encode(&hb(5), KEY));
        assert_eq!(decode(&sign(2, &p), KEY), Err(WireError::BadVersion));
    }

    #[test]
    fn appended_fields_and_reserved_flags_are_ignored() {
        let mut p = payload_of(&encode(&hb(5), KEY));
        p[33] |= 0b1111_0000;
        p.extend_from_slice(b"future field");
        assert_eq!(decode(&sign(1, &p), KEY), Ok(hb(5)));
    }

    #[test]
    fn unknown_role_request_or_bad_name_is_malformed() {
        let good = payload_of(&encode(&hb(5), KEY));
        let mut bad_role = good.clone();
        bad_role[32] = 3;
        let mut bad_request = good.clone();
        bad_request[34] = 3;
        let mut long_name = good.clone();
        long_name[35] = 13; // one byte more than there is
        let mut not_utf8 = good.clone();
        not_utf8[36] = 0xff;
        for p in [bad_role, bad_request, long_name, not_utf8] {
            assert_eq!(decode(&sign(1, &p), KEY), Err(WireError::Malformed));
        }
        // Length field out of range.
        assert_eq!(
            decode(&sign(1, &good[..35]), KEY),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn overlong_node_name_is_cut_at_a_char_boundary() {
        let mut h = hb(1);
        h.node = "é".repeat(200); // 400 bytes
        let got = decode(&encode(&h, KEY), KEY).unwrap();
        assert_eq!(got.node, "é".repeat(127));
    }

    fn frames(n: u64) -> Vec<Vec<u8>> {
        (1..=n).map(|s| encode(&hb(s), KEY)).collect()
    }

    #[test]
    fn reader_yields_two_frames_from_one_push() {
        let f = frames(2);
        for mut r in [FrameReader::new(), FrameReader::with_key(KEY)] {
            assert_eq!(r.push(&[f[0].clone(), f[1].clone()].concat()), f);
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn reader_reassembles_a_frame_split_byte_by_byte() {
        let f = frames(2);
        let stream = f.concat();
        for mut r in [FrameReader::new(), FrameReader::with_key(KEY)] {
            let mut got = Vec::new();
            for b in &stream {
                got.extend(r.push(std::slice::from_ref(b)));
            }
            assert_eq!(got, f);
            assert_eq!(r.discarded(), 0);
        }
    }

    #[test]
    fn reader_skips_garbage_before_and_between_frames() {
        let f = frames(2);
        let stream = [
            b"\x00\xffnoise CL".to_vec(),
            f[0].clone(),
            b"CLH\x00 more noise\r\n".to_vec(),
            f[1].clone(),
        ]
        .concat();
        for mut r in [FrameReader::new(), FrameReader::with_key(KEY)] {
            assert_eq!(r.push(&stream), f);
            assert_eq!(
                r.discarded() as usize,
                stream.len() - f[0].len() - f[1].len()
            );
        }
    }

    #[test]
    fn reader_finds_a_frame_behind_garbage_with_a_fake_magic() {
        let f = frames(2);
        // Looks like the start of a long frame; the real frame follows at once.
        let fake = [b"CLHB\x01".as_slice(), &500u16.to_be_bytes(), b"junk"].concat();
        let stream = [fake.clone(), f[0].clone(), f[1].clone()].concat();
        let mut r = FrameReader::with_key(KEY);
        assert_eq!(r.push(&stream), f);
        assert_eq!(r.discarded() as usize, fake.len());
        // Byte by byte as well: the real frame comes out as soon as it is complete.
        let mut r = FrameReader::with_key(KEY);
        let mut got = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            got.extend(r.push(std::slice::from_ref(b)));
            if i + 1 == fake.len() + f[0].len() {
                assert_eq!(got, f[..1]);
            }
        }
        assert_eq!(got, f);
        // A fake magic that is not followed by a valid header costs nothing.
        let mut r = FrameReader::new();
        let stream = [b"xxCLHByy".to_vec(), f[0].clone()].concat();
        assert_eq!(r.push(&stream), f[..1]);
    }

    #[test]
    fn reader_with_key_drops_forged_frames() {
        let f = frames(2);
        let forged = encode(&hb(1), b"not-the-key-at-all!");
        let mut r = FrameReader::with_key(KEY);
        assert_eq!(r.push(&[forged, f[0].clone(), f[1].clone()].concat()), f);
        assert_eq!(r.rejected(), 1);
    }

    #[test]
    fn reader_buffer_is_capped() {
        let f = frames(1);
        let mut r = FrameReader::new();
        let garbage: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        assert!(r.push(&garbage).is_empty());
        assert!(r.buffered() <= READER_CAP);
        // A stream of near-magics that never completes stays small too.
        for _ in 0..10_000 {
            r.push(b"CLHB\x01\x04\x00");
            assert!(r.buffered() <= READER_CAP);
        }
        // And a real frame still gets through after a flood of garbage.
        let mut r = FrameReader::with_key(KEY);
        r.push(&garbage);
        assert_eq!(r.push(&f[0]), f);
    }

    #[test]
    fn key_file_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heartbeat.key");
        std::fs::write(&path, b"0123456789abcdef  \n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(read_key_file(&path).unwrap(), b"0123456789abcdef");

        std::fs::write(&path, b" \n").unwrap();
        let err = format!("{:#}", read_key_file(&path).unwrap_err());
        assert!(
            err.contains("heartbeat.key") && err.contains("empty"),
            "{err}"
        );

        std::fs::write(&path, b"short\n").unwrap();
        let err = format!("{:#}", read_key_file(&path).unwrap_err());
        assert!(err.contains("heartbeat.key") && err.contains("16"), "{err}");

        let missing = dir.path().join("missing.key");
        let err = format!("{:#}", read_key_file(&missing).unwrap_err());
        assert!(err.contains("missing.key"), "{err}");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authkey");
        std::fs::write(&path, b"0123456789abcdef\n").unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = format!("{:#}", read_key_file(&path).unwrap_err());
            assert!(
                err.contains("authkey")
                    && err.contains(&format!("{mode:o}"))
                    && err.contains("chmod 600"),
                "{err}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_key_file(&path).unwrap(), b"0123456789abcdef");
        }
    }
}
