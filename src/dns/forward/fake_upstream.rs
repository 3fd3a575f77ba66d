//! Test support: a hand-written upstream resolver on 127.0.0.1 (UDP and TCP on one
//! port) whose replies each test scripts, and builders for the messages the tests
//! send and expect.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// What a fake upstream does in reply to a request.
pub(super) enum Out {
    Send(Vec<u8>),
    Sleep(Duration),
}

type Handler = dyn Fn(&Message, bool) -> Vec<Out> + Send + Sync;

/// A hand-written upstream on 127.0.0.1, UDP and TCP on the same port.
pub(super) struct Upstream {
    pub(super) addr: SocketAddr,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    pub(super) seen: Arc<Mutex<Vec<Message>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Upstream {
    /// `handler(request, over_tcp)` gives what to send back.
    pub(super) async fn start(
        handler: impl Fn(&Message, bool) -> Vec<Out> + Send + Sync + 'static,
    ) -> Self {
        let handler: Arc<Handler> = Arc::new(handler);
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                break (Arc::new(udp), tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let udp_count = Arc::new(AtomicUsize::new(0));
        let tcp_count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));

        let udp_task = {
            let (handler, count, seen) = (handler.clone(), udp_count.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 65_535];
                loop {
                    let Ok((len, from)) = udp.recv_from(&mut buf).await else {
                        return;
                    };
                    let Ok(request) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(request.clone());
                    let (udp, handler) = (udp.clone(), handler.clone());
                    tokio::spawn(async move {
                        for out in handler(&request, false) {
                            match out {
                                Out::Send(bytes) => {
                                    let _ = udp.send_to(&bytes, from).await;
                                }
                                Out::Sleep(d) => tokio::time::sleep(d).await,
                            }
                        }
                    });
                }
            })
        };
        let tcp_task = {
            let (handler, count, seen) = (handler.clone(), tcp_count.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else {
                        return;
                    };
                    let (handler, count, seen) = (handler.clone(), count.clone(), seen.clone());
                    tokio::spawn(async move {
                        let mut len = [0; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        let Ok(request) = Message::from_vec(&buf) else {
                            return;
                        };
                        count.fetch_add(1, Ordering::SeqCst);
                        seen.lock().unwrap().push(request.clone());
                        for out in handler(&request, true) {
                            match out {
                                Out::Send(bytes) => {
                                    let len = u16::try_from(bytes.len()).unwrap();
                                    let _ = stream.write_all(&len.to_be_bytes()).await;
                                    let _ = stream.write_all(&bytes).await;
                                }
                                Out::Sleep(d) => tokio::time::sleep(d).await,
                            }
                        }
                        // Keep the connection open until the client closes it.
                        let _ = stream.read(&mut [0; 1]).await;
                    });
                }
            })
        };
        Self {
            addr,
            udp: udp_count,
            tcp: tcp_count,
            seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    pub(super) fn udp_requests(&self) -> usize {
        self.udp.load(Ordering::SeqCst)
    }

    pub(super) fn tcp_requests(&self) -> usize {
        self.tcp.load(Ordering::SeqCst)
    }
}

pub(super) fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// A client request as the server would hand it over.
pub(super) fn client_query(qname: &str, qtype: RecordType) -> Message {
    let mut query = Message::new(0x1234, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name(qname), qtype));
    query
}

/// An upstream reply skeleton for `request`.
pub(super) fn response_to(request: &Message, rcode: ResponseCode) -> Message {
    let mut response = Message::response(request.id, OpCode::Query);
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.response_code = rcode;
    response.queries = request.queries.clone();
    response
}

pub(super) fn a_record(owner: &Name, ip: Ipv4Addr, ttl: u32) -> Record {
    Record::from_rdata(owner.clone(), ttl, RData::A(A(ip)))
}

pub(super) fn soa_record(zone: &str, ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        name(&format!("ns1.{zone}")),
        name(&format!("hostmaster.{zone}")),
        2024010101,
        7200,
        3600,
        1_209_600,
        minimum,
    );
    Record::from_rdata(name(zone), ttl, RData::SOA(soa))
}

pub(super) fn bytes(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap()
}

/// An upstream that answers every A question with 192.0.2.1 and `ttl`.
pub(super) async fn answering(ttl: u32) -> Upstream {
    Upstream::start(move |request, _| {
        let mut response = response_to(request, ResponseCode::NoError);
        let owner = request.queries[0].name().clone();
        if request.queries[0].query_type() == RecordType::A {
            response.add_answer(a_record(&owner, Ipv4Addr::new(192, 0, 2, 1), ttl));
        }
        vec![Out::Send(bytes(&response))]
    })
    .await
}

pub(super) async fn silent() -> Upstream {
    Upstream::start(|_, _| Vec::new()).await
}

pub(super) async fn rcode_only(rcode: ResponseCode) -> Upstream {
    Upstream::start(move |request, _| vec![Out::Send(bytes(&response_to(request, rcode)))]).await
}

pub(super) fn answer_ip(response: &Message) -> Option<Ipv4Addr> {
    response.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

pub(super) const SHORT: Duration = Duration::from_millis(300);
