//! One exchange with one upstream resolver: the query we send (random id, RD,
//! EDNS0 with our payload size), over UDP and then over TCP when the UDP reply is
//! truncated, within the timeout; only a reply from the upstream's address that
//! carries our id and repeats our question counts, and only NOERROR and NXDOMAIN
//! are answers (see the rules in the parent module).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use super::EDNS_PAYLOAD;

/// Receive buffer for upstream UDP replies (larger than we advertise, so an
/// oversized reply is still read whole and checked).
const UDP_RECV_BUF: usize = 4096;

/// One upstream: UDP, then TCP if the UDP reply was truncated. Only
/// NOERROR and NXDOMAIN replies count as answers.
pub(super) async fn exchange(
    upstream: SocketAddr,
    question: &Query,
    timeout: Duration,
) -> Result<Message, Failure> {
    let mut message = within(timeout, udp_exchange(upstream, question)).await?;
    if message.truncation {
        debug!(%upstream, question = %question, "dns: truncated over UDP; retrying over TCP");
        message = within(timeout, tcp_exchange(upstream, question)).await?;
        if message.truncation {
            return Err(Failure::Truncated);
        }
    }
    match message.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(message),
        rcode => Err(Failure::Rcode(rcode)),
    }
}

/// Why an upstream attempt gave nothing usable.
#[derive(Debug)]
pub(super) enum Failure {
    Timeout,
    Io(io::Error),
    Encode(String),
    Rcode(ResponseCode),
    Truncated,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Encode(e) => write!(f, "cannot encode query: {e}"),
            Failure::Rcode(rcode) => write!(f, "answered {rcode}"),
            Failure::Truncated => f.write_str("truncated over TCP"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

async fn within<T>(
    limit: Duration,
    attempt: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// A fresh upstream query for `question`: random id, RD set, EDNS0 with our
/// payload size, DO and CD clear.
fn upstream_query(question: &Query) -> Result<(u16, Vec<u8>), Failure> {
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    message.set_edns(edns);
    let bytes = message
        .to_vec()
        .map_err(|e| Failure::Encode(e.to_string()))?;
    Ok((id, bytes))
}

/// Whether `reply` answers the query we sent with `id` for `question`.
fn is_reply_to(reply: &Message, id: u16, question: &Query) -> bool {
    reply.id == id
        && reply.message_type == MessageType::Response
        && reply.op_code == OpCode::Query
        && matches!(reply.queries.as_slice(), [q] if q.name() == question.name()
            && q.query_type() == question.query_type()
            && q.query_class() == question.query_class())
}

async fn udp_exchange(upstream: SocketAddr, question: &Query) -> Result<Message, Failure> {
    let (id, request) = upstream_query(question)?;
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected, so that an ICMP "port unreachable" fails the attempt at once
    // instead of after the timeout; the source is still checked below.
    socket.connect(upstream).await?;
    socket.send(&request).await?;
    let mut buf = vec![0; UDP_RECV_BUF];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        if from.ip() != upstream.ip() || from.port() != upstream.port() {
            debug!(%upstream, %from, "dns: ignoring datagram from another address");
            continue;
        }
        match Message::from_vec(&buf[..len]) {
            Ok(reply) if is_reply_to(&reply, id, question) => return Ok(reply),
            Ok(reply) => {
                debug!(%upstream, id = reply.id, "dns: ignoring reply that does not match our query")
            }
            Err(e) => debug!(%upstream, error = %e, "dns: ignoring malformed reply"),
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, question: &Query) -> Result<Message, Failure> {
    let (id, request) = upstream_query(question)?;
    let len = u16::try_from(request.len()).map_err(|e| Failure::Encode(e.to_string()))?;
    let mut framed = Vec::with_capacity(2 + request.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&request);
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&framed).await?;
    loop {
        let mut len = [0; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await?;
        match Message::from_vec(&buf) {
            Ok(reply) if is_reply_to(&reply, id, question) => return Ok(reply),
            Ok(reply) => {
                debug!(%upstream, id = reply.id, "dns: ignoring TCP reply that does not match our query")
            }
            Err(e) => debug!(%upstream, error = %e, "dns: ignoring malformed TCP reply"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Forwarder;
    use super::super::fake_upstream::*;
    use super::*;
    use hickory_proto::rr::RecordType;
    use std::net::Ipv4Addr;
    use tokio::time::Instant;

    #[tokio::test]
    async fn rfc1035_silent_upstream_falls_through_to_the_next() {
        let dead = silent().await;
        let live = answering(300).await;
        let forwarder = Forwarder::new(vec![dead.addr, live.addr], SHORT);

        let started = Instant::now();
        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(started.elapsed() >= SHORT);
        assert_eq!(dead.udp_requests(), 1);
        assert_eq!(live.udp_requests(), 1);
    }

    #[tokio::test]
    async fn rfc1035_all_upstreams_silent_gives_servfail_within_timeout_times_n() {
        let (one, two) = (silent().await, silent().await);
        let forwarder = Forwarder::new(vec![one.addr, two.addr], SHORT);
        let query = client_query("A.example.net.", RecordType::A);

        let started = Instant::now();
        let response = forwarder.resolve(&query).await;
        let elapsed = started.elapsed();
        assert_eq!(response.response_code, ResponseCode::ServFail);
        assert_eq!(response.id, 0x1234);
        assert!(response.recursion_available);
        assert!(response.queries[0].name().eq_case(&name("A.example.net.")));
        assert!(elapsed >= SHORT * 2, "{elapsed:?}");
        assert!(
            elapsed < SHORT * 2 + Duration::from_millis(500),
            "{elapsed:?}"
        );
        assert_eq!((one.udp_requests(), two.udp_requests()), (1, 1));
    }

    #[tokio::test]
    async fn rfc1035_unreachable_upstream_fails_over_without_waiting_for_the_timeout() {
        let closed = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let live = answering(300).await;
        let forwarder = Forwarder::new(vec![closed, live.addr], Duration::from_secs(3));

        let started = Instant::now();
        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn servfail_and_refused_are_not_cached_and_the_next_upstream_is_tried() {
        let failing = rcode_only(ResponseCode::ServFail).await;
        let refusing = rcode_only(ResponseCode::Refused).await;
        let live = answering(300).await;
        let forwarder = Forwarder::new(
            vec![failing.addr, refusing.addr, live.addr],
            Duration::from_secs(2),
        );
        let query = client_query("a.example.net.", RecordType::A);

        let started = Instant::now();
        let response = forwarder.resolve(&query).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no timeout involved"
        );
        assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(
            (
                failing.udp_requests(),
                refusing.udp_requests(),
                live.udp_requests()
            ),
            (1, 1, 1)
        );

        // Only SERVFAIL upstream: the client gets SERVFAIL, nothing is cached.
        let forwarder = Forwarder::new(vec![failing.addr], Duration::from_secs(2));
        for _ in 0..2 {
            let response = forwarder.resolve(&query).await;
            assert_eq!(response.response_code, ResponseCode::ServFail);
            assert!(response.answers.is_empty());
        }
        assert_eq!(failing.udp_requests(), 3);
        assert_eq!(forwarder.cache_hits(), 0);
    }

    #[tokio::test]
    async fn truncated_udp_reply_is_retried_over_tcp() {
        let upstream = Upstream::start(|request, over_tcp| {
            let owner = request.queries[0].name().clone();
            let mut response = response_to(request, ResponseCode::NoError);
            if over_tcp {
                for i in 1..=3 {
                    response.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, i), 300));
                }
            } else {
                response.metadata.truncation = true;
            }
            vec![Out::Send(bytes(&response))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        let response = forwarder
            .resolve(&client_query("big.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert!(!response.truncation);
        assert_eq!(response.answers.len(), 3);
        assert_eq!((upstream.udp_requests(), upstream.tcp_requests()), (1, 1));
    }

    #[tokio::test]
    async fn rfc1035_reply_with_wrong_id_question_or_garbage_is_ignored() {
        let upstream = Upstream::start(|request, _| {
            let owner = request.queries[0].name().clone();
            let bogus = Ipv4Addr::new(203, 0, 113, 66);

            let mut wrong_id = response_to(request, ResponseCode::NoError);
            wrong_id.metadata.id = request.id.wrapping_add(1);
            wrong_id.add_answer(a_record(&owner, bogus, 300));

            let mut wrong_question = response_to(request, ResponseCode::NoError);
            wrong_question.queries = vec![Query::query(name("evil.example.com."), RecordType::A)];
            wrong_question.add_answer(a_record(&name("evil.example.com."), bogus, 300));

            let mut not_a_response = response_to(request, ResponseCode::NoError);
            not_a_response.metadata.message_type = MessageType::Query;
            not_a_response.add_answer(a_record(&owner, bogus, 300));

            let mut right = response_to(request, ResponseCode::NoError);
            right.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, 1), 300));

            vec![
                Out::Send(vec![0xde, 0xad, 0xbe, 0xef]),
                Out::Send(bytes(&wrong_id)),
                Out::Send(bytes(&wrong_question)),
                Out::Send(bytes(&not_a_response)),
                Out::Sleep(Duration::from_millis(50)),
                Out::Send(bytes(&right)),
            ]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], Duration::from_secs(2));

        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert_eq!(response.answers.len(), 1);
        assert_eq!(answer_ip(&response), Some(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[tokio::test]
    async fn wrong_id_only_times_out_into_servfail() {
        let upstream = Upstream::start(|request, _| {
            let mut wrong_id = response_to(request, ResponseCode::NoError);
            wrong_id.metadata.id = request.id.wrapping_add(1);
            vec![Out::Send(bytes(&wrong_id))]
        })
        .await;
        let forwarder = Forwarder::new(vec![upstream.addr], SHORT);
        let response = forwarder
            .resolve(&client_query("a.example.net.", RecordType::A))
            .await;
        assert_eq!(response.response_code, ResponseCode::ServFail);
    }
}
