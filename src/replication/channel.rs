//! The replication channel, shared by both sides: frames (the [`Msg`] header, the
//! blob body, the size limits, and their encoding and decoding), the TLS client
//! configuration, and the authentication that opens every channel: each end proves
//! it holds the cluster key with an HMAC bound to this TLS session's exporter value
//! ([`authenticate`]). Nothing here touches the store; the unit tests below run the
//! framing and the handshake over in-memory streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::store::op::LoggedOp;

pub(super) const ALPN: &[u8] = b"clusterd-repl/1";
const EXPORTER_LABEL: &[u8] = b"EXPORTER-clusterd-replication";
const MAX_HEADER: usize = 16 << 20;
const MAX_BODY: usize = 256 << 20;

/// One frame's header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Msg {
    /// The first frame each way: who is speaking and the proof it holds the key.
    Auth {
        node: String,
        mac: String,
    },
    /// Standby → active: per origin, the highest origin_seq the standby holds;
    /// `resync`: its content diverged and must be replaced by a snapshot;
    /// `no_deltas`: send whole files (a delta's base was missing here).
    Marks {
        marks: Vec<(String, u64)>,
        #[serde(default)]
        resync: bool,
        #[serde(default)]
        no_deltas: bool,
    },
    /// One op; the body holds its blobs (whole, or as a delta against a base).
    Op {
        op: LoggedOp,
        blobs: Vec<BlobRef>,
    },
    /// Active → standby: the standby holds everything up to `seq` (ops skipped);
    /// `end`: that is the end of the active node's log for now (caught up).
    Pos {
        seq: u64,
        end: bool,
    },
    /// Standby → active: everything up to the active node's `seq` is durable here;
    /// `timing`: how the standby spent the batch it acknowledges.
    Ack {
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timing: Option<AckTiming>,
    },
    /// Active → standby: you hold ops I lack (both were active): send me those
    /// above my marks, then [`Msg::DivergedEnd`] ([`super::resync`]).
    Diverged {
        marks: Vec<(String, u64)>,
    },
    DivergedEnd,
    /// Active → standby: a snapshot follows (tables in chunks, then the end).
    SnapBegin {
        seq: u64,
        marks: Vec<(String, u64)>,
        hlc: u64,
    },
    SnapTable {
        table: crate::store::snapshot::Table,
    },
    SnapEnd,
    /// Standby → active: send these blobs (empty: none left, the snapshot is in).
    Want {
        blobs: Vec<String>,
    },
    /// Active → standby: one blob, its bytes in the body.
    Blob {
        id: String,
    },
    /// Active → standby: from here on, the log ([`Msg::Op`], [`Msg::Pos`]).
    Stream,
}

/// The standby's account of one acknowledged batch (for the active node's stage
/// timings, [`super::timing`]); wall-clock instants are µs since the Unix epoch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct AckTiming {
    /// When the frame of the acknowledged position was read (wall clock).
    pub(super) rx_us: u64,
    /// The batch's first frame: its files durable → the applier took it.
    pub(super) gather_us: u64,
    /// The acknowledged frame: read → its message files written.
    pub(super) blobs_us: u64,
    /// The batch's files made durable and put at their addresses.
    #[serde(default)]
    pub(super) sync_us: u64,
    /// Applying and committing the batch.
    pub(super) apply_us: u64,
    /// When this acknowledgement was written (wall clock).
    pub(super) tx_us: u64,
}

/// A blob carried in a frame's body: `len` bytes, the blob itself or, with `base`,
/// a block delta ([`super::delta`]) against that blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BlobRef {
    pub(super) id: String,
    pub(super) len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) base: Option<String>,
}

/// Frame bytes written and read by this process (both directions of every channel).
pub(super) static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
pub(super) static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

// ------------------------------------------------------------------ authentication

/// The proof a node named `node` gives, for `direction`, under `key` in this session.
fn keyed_mac(key: &[u8], direction: &str, node: &str, exporter: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(b"clusterd replication v1\0");
    m.update(direction.as_bytes());
    m.update(b"\0");
    m.update(node.as_bytes());
    m.update(b"\0");
    m.update(exporter);
    m
}

/// Sends our proof (this node is `me`, speaking as `mine`), then checks the peer's
/// (it must be `peer`, speaking as `theirs`); `exporter` is this TLS session's.
pub(super) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    key: &[u8],
    me: &str,
    peer: &str,
    exporter: &[u8],
    mine: &str,
    theirs: &str,
) -> Result<()> {
    let mac = hex::encode(keyed_mac(key, mine, me, exporter).finalize().into_bytes());
    write_msg(
        s,
        &Msg::Auth {
            node: me.to_string(),
            mac,
        },
        &[],
    )
    .await?;
    let (msg, _) = tokio::time::timeout(Duration::from_secs(5), read_msg(s))
        .await
        .map_err(|_| anyhow!("no authentication from the peer within 5 s"))??;
    let Msg::Auth { node, mac } = msg else {
        bail!("the peer did not authenticate first");
    };
    let proof = hex::decode(mac).unwrap_or_default();
    if node != peer
        || keyed_mac(key, theirs, &node, exporter)
            .verify_slice(&proof)
            .is_err()
    {
        bail!("the peer {node:?} failed authentication (wrong cluster key or not our peer)");
    }
    Ok(())
}

// ------------------------------------------------------------------------- frames

pub(super) async fn write_msg<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Msg,
    body: &[u8],
) -> Result<()> {
    write_msg_nf(w, msg, body).await?;
    w.flush().await?;
    Ok(())
}

/// Writes a frame without flushing (the caller flushes after a run of frames).
pub(super) async fn write_msg_nf<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Msg,
    body: &[u8],
) -> Result<()> {
    let header = serde_json::to_vec(msg)?;
    let mut head = Vec::with_capacity(8 + header.len());
    head.extend_from_slice(&(header.len() as u32).to_be_bytes());
    head.extend_from_slice(&(body.len() as u32).to_be_bytes());
    head.extend_from_slice(&header);
    w.write_all(&head).await?;
    w.write_all(body).await?;
    BYTES_SENT.fetch_add((head.len() + body.len()) as u64, Ordering::Relaxed);
    Ok(())
}

pub(super) async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> Result<(Msg, Vec<u8>)> {
    let mut lens = [0u8; 8];
    r.read_exact(&mut lens).await?;
    let hlen = u32::from_be_bytes(lens[..4].try_into().unwrap()) as usize;
    let blen = u32::from_be_bytes(lens[4..].try_into().unwrap()) as usize;
    if hlen > MAX_HEADER || blen > MAX_BODY {
        bail!("frame too large ({hlen} + {blen} bytes)");
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header).await?;
    let mut body = vec![0u8; blen];
    r.read_exact(&mut body).await?;
    BYTES_RECEIVED.fetch_add((8 + hlen + blen) as u64, Ordering::Relaxed);
    let msg = serde_json::from_slice(&header).context("malformed frame header")?;
    Ok((msg, body))
}

/// This TLS session's exporter value (RFC 8446 7.5), which [`authenticate`] binds
/// both proofs to.
pub(super) fn session_exporter<D>(tls: &rustls::ConnectionCommon<D>) -> Result<[u8; 32]> {
    tls.export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(|e| anyhow!("TLS exporter: {e}"))
}

pub(super) fn is_eof(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
}

// ---------------------------------------------------------------------------- TLS

/// TLS 1.3 to the peer. Any certificate is accepted here (its signature over the
/// handshake is still checked): the peer is authenticated by the MAC bound to this
/// session's exporter, see the module notes.
pub(super) fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cc = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(KeyBound(provider)))
        .with_no_client_auth();
    cc.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(cc)
}

#[derive(Debug)]
struct KeyBound(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for KeyBound {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, duplex};

    const KEY: &[u8] = b"the cluster key, 32 bytes long!!";
    /// Two TLS sessions' exporter values.
    const SESSION: [u8; 32] = [1; 32];
    const OTHER_SESSION: [u8; 32] = [2; 32];
    /// Long enough for any test to finish; a test that hits it has hung.
    const NO_HANG: Duration = Duration::from_secs(10);

    async fn frame(msg: &Msg, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_msg(&mut out, msg, body).await.unwrap();
        out
    }

    /// A frame written by hand: the two lengths as given, then `rest`.
    fn by_hand(hlen: u32, blen: u32, rest: &[u8]) -> Vec<u8> {
        [&hlen.to_be_bytes()[..], &blen.to_be_bytes(), rest].concat()
    }

    /// `node_1` (active) and `node_2` (standby) prove themselves to each other.
    async fn active<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        key: &[u8],
        exporter: &[u8],
    ) -> Result<()> {
        authenticate(s, key, "node_1", "node_2", exporter, "active", "standby").await
    }

    async fn standby<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        key: &[u8],
        exporter: &[u8],
    ) -> Result<()> {
        authenticate(s, key, "node_2", "node_1", exporter, "standby", "active").await
    }

    /// The bytes of one frame as they came, undecoded.
    async fn raw_frame(r: &mut DuplexStream) -> Vec<u8> {
        let mut out = vec![0u8; 8];
        r.read_exact(&mut out).await.unwrap();
        let hlen = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        let blen = u32::from_be_bytes(out[4..].try_into().unwrap()) as usize;
        out.resize(8 + hlen + blen, 0);
        r.read_exact(&mut out[8..]).await.unwrap();
        out
    }

    /// A handshake in session `exporter` through a relay that records what each side
    /// sent: (the active side's result, the standby's, the active side's frame, the
    /// standby's frame).
    async fn recorded_handshake(exporter: &[u8]) -> (Result<()>, Result<()>, Vec<u8>, Vec<u8>) {
        let (mut a, mut a_wire) = duplex(4096);
        let (mut s, mut s_wire) = duplex(4096);
        let relay = async {
            let from_active = raw_frame(&mut a_wire).await;
            let from_standby = raw_frame(&mut s_wire).await;
            s_wire.write_all(&from_active).await.unwrap();
            a_wire.write_all(&from_standby).await.unwrap();
            (from_active, from_standby)
        };
        let (ra, rs, (from_active, from_standby)) = tokio::time::timeout(NO_HANG, async {
            tokio::join!(
                active(&mut a, KEY, exporter),
                standby(&mut s, KEY, exporter),
                relay
            )
        })
        .await
        .expect("the handshake hung");
        (ra, rs, from_active, from_standby)
    }

    enum Side {
        Active,
        Standby,
    }

    /// Plays `recorded` to the active side or the standby, in session `exporter`, as
    /// what its peer sends before it stops sending; returns that side's verdict.
    async fn played_to(side: Side, exporter: &[u8], recorded: &[u8]) -> Result<()> {
        let (mut s, mut wire) = duplex(4096);
        wire.write_all(recorded).await.unwrap();
        wire.shutdown().await.unwrap();
        let verdict = async {
            match side {
                Side::Active => active(&mut s, KEY, exporter).await,
                Side::Standby => standby(&mut s, KEY, exporter).await,
            }
        };
        tokio::time::timeout(NO_HANG, verdict).await.expect("hung")
    }

    fn refused(r: Result<()>) -> String {
        format!("{:#}", r.expect_err("should have been refused"))
    }

    #[tokio::test]
    async fn a_frame_is_two_lengths_the_json_header_and_the_body() {
        let bytes = frame(
            &Msg::Ack {
                seq: 7,
                timing: None,
            },
            b"xy",
        )
        .await;
        let header = br#"{"t":"ack","seq":7}"#;
        let want = by_hand(header.len() as u32, 2, &[&header[..], b"xy"].concat());
        assert_eq!(bytes, want);
        let (msg, body) = read_msg(&mut &bytes[..]).await.unwrap();
        assert!(matches!(msg, Msg::Ack { seq: 7, .. }), "{msg:?}");
        assert_eq!(body, b"xy");
    }

    #[tokio::test]
    async fn marks_without_the_later_flags_read_as_false() {
        let header = br#"{"t":"marks","marks":[["node_1",3]]}"#;
        let bytes = by_hand(header.len() as u32, 0, header);
        let (msg, _) = read_msg(&mut &bytes[..]).await.unwrap();
        assert!(
            matches!(&msg, Msg::Marks { marks, resync: false, no_deltas: false }
                if *marks == [("node_1".to_string(), 3)]),
            "{msg:?}"
        );
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error() {
        let bytes = frame(&Msg::Blob { id: "abc".into() }, b"the blob's bytes").await;
        for cut in 0..bytes.len() {
            let r = tokio::time::timeout(NO_HANG, read_msg(&mut &bytes[..cut]))
                .await
                .expect("hung");
            let e = r.expect_err("a truncated frame was read");
            assert!(is_eof(&e), "cut at {cut}: {e:#}");
        }
    }

    #[tokio::test]
    async fn a_malformed_header_is_an_error() {
        let bytes = by_hand(5, 0, b"{oops");
        let e = read_msg(&mut &bytes[..]).await.expect_err("read garbage");
        assert!(format!("{e:#}").contains("malformed frame header"), "{e:#}");
    }

    #[tokio::test]
    async fn an_oversized_frame_length_is_refused_before_its_bytes_arrive() {
        let too_large = [
            (MAX_HEADER as u32 + 1, 0),
            (2, MAX_BODY as u32 + 1),
            (u32::MAX, u32::MAX),
        ];
        for (hlen, blen) in too_large {
            // The sender stays connected and sends nothing more: the lengths alone
            // must be refused.
            let (mut r, mut w) = duplex(64);
            w.write_all(&by_hand(hlen, blen, &[])).await.unwrap();
            let e = tokio::time::timeout(NO_HANG, read_msg(&mut r))
                .await
                .expect("waited for an oversized frame")
                .expect_err("an oversized frame was accepted");
            assert!(format!("{e:#}").contains("frame too large"), "{e:#}");
            drop(w);
        }
    }

    #[tokio::test]
    async fn a_good_handshake_succeeds_and_frames_follow() {
        let (mut a, mut s) = duplex(4096);
        let (ra, rs) = tokio::time::timeout(NO_HANG, async {
            tokio::join!(
                active(&mut a, KEY, &SESSION),
                standby(&mut s, KEY, &SESSION)
            )
        })
        .await
        .expect("hung");
        ra.unwrap();
        rs.unwrap();
        write_msg(
            &mut s,
            &Msg::Ack {
                seq: 9,
                timing: None,
            },
            &[],
        )
        .await
        .unwrap();
        let (msg, _) = read_msg(&mut a).await.unwrap();
        assert!(matches!(msg, Msg::Ack { seq: 9, .. }), "{msg:?}");
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_by_both_sides() {
        let (mut a, mut s) = duplex(4096);
        let (ra, rs) = tokio::time::timeout(NO_HANG, async {
            tokio::join!(
                active(&mut a, b"another key", &SESSION),
                standby(&mut s, KEY, &SESSION)
            )
        })
        .await
        .expect("hung");
        assert!(refused(ra).contains("failed authentication"));
        assert!(refused(rs).contains("failed authentication"));
    }

    #[tokio::test]
    async fn a_node_other_than_the_peer_is_refused_even_with_the_key() {
        let (mut a, mut s) = duplex(4096);
        let stranger = authenticate(
            &mut a, KEY, "node_3", "node_2", &SESSION, "active", "standby",
        );
        let (_, rs) = tokio::time::timeout(NO_HANG, async {
            tokio::join!(stranger, standby(&mut s, KEY, &SESSION))
        })
        .await
        .expect("hung");
        assert!(refused(rs).contains("\"node_3\" failed authentication"));
    }

    #[tokio::test]
    async fn a_peer_must_authenticate_first() {
        let not_auth = frame(
            &Msg::Marks {
                marks: Vec::new(),
                resync: false,
                no_deltas: false,
            },
            &[],
        )
        .await;
        let r = played_to(Side::Standby, &SESSION, &not_auth).await;
        assert!(refused(r).contains("did not authenticate first"));
    }

    #[tokio::test]
    async fn a_truncated_handshake_is_refused() {
        let (_, _, from_active, _) = recorded_handshake(&SESSION).await;
        for cut in [0, 4, 8, from_active.len() - 1] {
            // The peer sends part of its frame and closes.
            let e = played_to(Side::Standby, &SESSION, &from_active[..cut])
                .await
                .expect_err("a truncated frame authenticated");
            assert!(is_eof(&e), "cut at {cut}: {e:#}");
        }
        // The peer sends part of its frame and then nothing: refused after 5 s.
        let (mut s, mut wire) = duplex(4096);
        wire.write_all(&from_active[..from_active.len() / 2])
            .await
            .unwrap();
        let r = tokio::time::timeout(NO_HANG, standby(&mut s, KEY, &SESSION))
            .await
            .expect("a silent peer held the handshake open");
        assert!(refused(r).contains("no authentication from the peer within 5 s"));
        drop(wire);
    }

    #[tokio::test]
    async fn an_oversized_handshake_frame_is_refused() {
        let lens = by_hand(u32::MAX, 0, &[]);
        let r = played_to(Side::Standby, &SESSION, &lens).await;
        assert!(refused(r).contains("frame too large"));
    }

    #[tokio::test]
    async fn a_replayed_handshake_is_refused() {
        // A genuine handshake, recorded.
        let (ra, rs, from_active, from_standby) = recorded_handshake(&SESSION).await;
        ra.unwrap();
        rs.unwrap();
        // Each side's recorded frame, played to that side's peer in a new session
        // (another TLS session: another exporter value).
        let r = played_to(Side::Standby, &OTHER_SESSION, &from_active).await;
        assert!(refused(r).contains("\"node_1\" failed authentication"));
        let r = played_to(Side::Active, &OTHER_SESSION, &from_standby).await;
        assert!(refused(r).contains("\"node_2\" failed authentication"));
        // Nor does a side accept its own frame reflected back, in the same session.
        let r = played_to(Side::Standby, &SESSION, &from_standby).await;
        refused(r);
        let r = played_to(Side::Active, &SESSION, &from_active).await;
        refused(r);
    }
}
