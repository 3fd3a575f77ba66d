//! The probes: each speaks its protocol to one address and returns what it saw
//! (`Ok(detail)`) or why it failed (`Err`); the caller bounds it with
//! `probe_timeout_s` and measures its latency. Also the node-local measurements:
//! free space (statvfs), the certificate's end of validity, ICMP echo.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest reply line a probe reads.
const MAX_LINE: usize = 4096;

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        bail!("connection closed");
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

use tokio::io::AsyncReadExt as _;

/// One SMTP reply (all its lines); its code and last line.
async fn smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<(u16, String)> {
    loop {
        let line = read_line(r).await?;
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("not an SMTP reply: {line:?}"))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line));
        }
    }
}

/// SMTP: the banner, EHLO, QUIT. A standby's `421 4.3.2` greeting counts as
/// answering (it is up and refers clients to the active node).
pub async fn smtp(addr: SocketAddr) -> Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let (code, banner) = smtp_reply(&mut r).await?;
    match code {
        220 => {}
        421 if banner.contains("4.3.2") => return Ok("standby (421 4.3.2)".into()),
        _ => bail!("banner: {banner}"),
    }
    w.write_all(b"EHLO monitor.invalid\r\n").await?;
    let (code, line) = smtp_reply(&mut r).await?;
    if code != 250 {
        bail!("EHLO: {line}");
    }
    w.write_all(b"QUIT\r\n").await?;
    let (code, line) = smtp_reply(&mut r).await?;
    if code != 221 {
        bail!("QUIT: {line}");
    }
    Ok("220, EHLO 250, QUIT 221".into())
}

/// IMAP: the greeting, CAPABILITY, LOGOUT. A standby's `BYE [UNAVAILABLE] ...
/// standby` greeting counts as answering.
pub async fn imap(addr: SocketAddr) -> Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let greeting = read_line(&mut r).await?;
    if greeting.starts_with("* BYE") && greeting.contains("standby") {
        return Ok("standby (BYE [UNAVAILABLE])".into());
    }
    if !greeting.starts_with("* OK") {
        bail!("greeting: {greeting}");
    }
    w.write_all(b"m1 CAPABILITY\r\n").await?;
    let mut imap4 = false;
    loop {
        let line = read_line(&mut r).await?;
        if line.starts_with("* CAPABILITY") {
            imap4 = line.contains("IMAP4rev1");
        } else if let Some(rest) = line.strip_prefix("m1 ") {
            if !rest.starts_with("OK") {
                bail!("CAPABILITY: {line}");
            }
            break;
        }
    }
    if !imap4 {
        bail!("CAPABILITY without IMAP4rev1");
    }
    w.write_all(b"m2 LOGOUT\r\n").await?;
    loop {
        let line = read_line(&mut r).await?;
        if let Some(rest) = line.strip_prefix("m2 ") {
            if !rest.starts_with("OK") {
                bail!("LOGOUT: {line}");
            }
            break;
        }
    }
    Ok("OK, CAPABILITY IMAP4rev1, LOGOUT".into())
}

/// HTTP/1.1 GET of `path` (over TLS with `tls`, any certificate): any status below
/// 500 from the site; `want_200` for pages that must exist (the webmail's login form).
pub async fn http_get(
    addr: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
    host: &str,
    path: &str,
    want_200: bool,
) -> Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let stream: Box<dyn Stream> = match tls {
        None => Box::new(stream),
        Some(c) => {
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .unwrap_or_else(|_| rustls_pki_types::ServerName::IpAddress(addr.ip().into()));
            Box::new(c.connect(name, stream).await.context("TLS handshake")?)
        }
    };
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    w.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: clusterd-monitor\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let status_line = read_line(&mut r).await?;
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {status_line:?}"))?;
    if code >= 500 || (want_200 && code != 200) {
        bail!("GET {path}: {status_line}");
    }
    Ok(format!("GET {scheme} {path}: {code}"))
}

/// A plain or TLS connection.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// DNS over UDP: the SOA of every zone, answered. Without zones (none stored yet),
/// the SOA of `domain`, any well-formed answer counting.
pub async fn dns_soa(addr: SocketAddr, zones: &[String], domain: &str) -> Result<String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    let any = zones.is_empty();
    let asked = [domain.to_string()];
    let zones = if any { &asked[..] } else { zones };
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    let mut serials = Vec::new();
    for zone in zones {
        let name = Name::from_ascii(format!("{}.", zone.trim_end_matches('.')))
            .with_context(|| format!("zone name {zone}"))?;
        let id: u16 = rand::random();
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(name.clone(), RecordType::SOA));
        socket.send(&query.to_vec()?).await?;
        let mut buf = vec![0; 4096];
        let reply = loop {
            let n = socket.recv(&mut buf).await?;
            if let Ok(m) = Message::from_vec(&buf[..n])
                && m.id == id
            {
                break m;
            }
        };
        if any {
            return Ok(format!("answers ({}; no zone stored)", reply.response_code));
        }
        if reply.response_code != ResponseCode::NoError {
            bail!("SOA {zone}: {}", reply.response_code);
        }
        let serial = reply.answers.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        });
        match serial {
            Some(s) => serials.push(format!("{zone} {s}")),
            None => bail!("SOA {zone}: no SOA in the answer"),
        }
    }
    Ok(format!("SOA {}", serials.join(", ")))
}

/// Free space of the file system holding `path`, in percent (what unprivileged users
/// may use, as `df` shows it).
pub fn free_percent(path: &std::path::Path) -> Result<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).context("statvfs");
    }
    let total = st.f_blocks as f64;
    if total == 0.0 {
        bail!("statvfs: an empty file system");
    }
    Ok(st.f_bavail as f64 * 100.0 / total)
}

/// The end of validity (unix seconds) of the first certificate in `pem`.
pub fn cert_not_after(pem: &str) -> Result<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow!("certificate PEM: {e}"))?;
    let cert = pem.parse_x509().map_err(|e| anyhow!("certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// ICMP echo to `ip`, answered within `limit`. Uses an unprivileged ICMP datagram
/// socket (Linux `SOCK_DGRAM`/`IPPROTO_ICMP`, allowed by `net.ipv4.ping_group_range`;
/// the kernel sets the identifier), else a raw one (`CAP_NET_RAW`).
pub fn ping(ip: IpAddr, limit: Duration) -> Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, proto, echo, reply) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8, 129u8),
    };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(domain, Type::RAW, Some(proto))
                .context("no ICMP socket: neither ping_group_range nor CAP_NET_RAW allows one")?,
            true,
        ),
    };
    sock.set_read_timeout(Some(limit))?;
    let seq: u16 = rand::random();
    let ident: u16 = std::process::id() as u16;
    let mut pkt = vec![echo, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"clusterd-monitor");
    if matches!(ip, IpAddr::V4(_)) {
        let sum = crate::cluster::ping::checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let to = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    sock.send_to(&pkt, &to)?;
    let deadline = std::time::Instant::now() + limit;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            bail!("no echo reply from {ip}");
        }
        sock.set_read_timeout(Some(left))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no echo reply from {ip}")
            }
            Err(e) => return Err(e.into()),
        };
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        // A raw IPv4 socket hands over the IP header too.
        let icmp = if raw && matches!(ip, IpAddr::V4(_)) {
            let ihl = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
            data.get(ihl..).unwrap_or_default().to_vec()
        } else {
            data
        };
        let from_ip = from.as_socket().map(|s| s.ip());
        if from_ip == Some(ip)
            && icmp.first() == Some(&reply)
            && icmp.get(6..8) == Some(&seq.to_be_bytes()[..])
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_a_real_file_system_is_a_percentage() {
        let p = free_percent(std::path::Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&p), "{p}");
        assert!(free_percent(std::path::Path::new("/no/such/dir")).is_err());
    }

    #[test]
    fn a_self_signed_certificate_ends_after_now() {
        let ck = rcgen::generate_simple_self_signed(vec!["example.com".into()]).unwrap();
        let end = cert_not_after(&ck.cert.pem()).unwrap();
        assert!(end > crate::store::now(), "{end}");
        assert!(cert_not_after("not a certificate").is_err());
    }

    #[test]
    fn loopback_answers_an_echo() {
        ping("127.0.0.1".parse().unwrap(), Duration::from_secs(2)).unwrap();
    }
}
