//! Continuous traffic over every protocol the server speaks, counting what fails: for tests of
//! upgrades and reloads, which must lose nothing.
//!
//! Clients behave as the protocols let real clients behave, and no more leniently: a GET that
//! failed on a *reused* connection before any response arrived is retried once on a new
//! connection (RFC 9112 section 9.3.1 for HTTP/1.1; for HTTP/2 and HTTP/3 a request a GOAWAY
//! left unprocessed, RFC 9113 section 8.7 and RFC 9114 section 5.2). Everything else counts as a
//! failure: a refused or broken new connection, a non-200 status, a short body, a DNS query
//! unanswered within a second, or a wrong answer.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hickory_proto::{op::Message, rr::RecordType};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::web::{self, H3, H3Options, Proto};

/// Pause between one client's requests: steady traffic that leaves the 2 cores to the server.
const PACE: Duration = Duration::from_millis(5);
/// How long a DNS query may go unanswered before it counts as lost.
const DNS_TIMEOUT: Duration = Duration::from_secs(1);

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub client: String,
    pub sent: u64,
    pub failed: u64,
    /// Requests retried on a new connection, as the protocol allows.
    pub retried: u64,
    /// The longest time between two successes.
    pub longest_pause: Duration,
    /// The first few failures, for the test's message.
    pub failures: Vec<String>,
}

impl Tally {
    fn new(client: &str) -> Tally {
        Tally {
            client: client.to_string(),
            ..Tally::default()
        }
    }

    fn record(&mut self, outcome: Result<bool, String>, last_success: &mut Instant) {
        self.sent += 1;
        match outcome {
            Ok(retried) => {
                self.retried += u64::from(retried);
                self.longest_pause = self.longest_pause.max(last_success.elapsed());
                *last_success = Instant::now();
            }
            Err(failure) => {
                self.failed += 1;
                if self.failures.len() < 5 {
                    self.failures.push(failure);
                }
            }
        }
    }
}

/// The whole load's outcome.
#[derive(Debug)]
pub struct Report {
    pub clients: Vec<Tally>,
}

impl Report {
    pub fn sent(&self, prefix: &str) -> u64 {
        self.matching(prefix).map(|t| t.sent).sum()
    }

    pub fn failed(&self, prefix: &str) -> u64 {
        self.matching(prefix).map(|t| t.failed).sum()
    }

    pub fn retried(&self) -> u64 {
        self.clients.iter().map(|t| t.retried).sum()
    }

    pub fn longest_pause(&self) -> Duration {
        self.clients
            .iter()
            .map(|t| t.longest_pause)
            .max()
            .unwrap_or_default()
    }

    fn matching<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Tally> {
        self.clients
            .iter()
            .filter(move |t| t.client.starts_with(prefix))
    }

    /// One line per client.
    pub fn summary(&self) -> String {
        self.clients
            .iter()
            .map(|t| {
                format!(
                    "{:<14} sent {:>6} failed {:>3} retried {:>3} longest pause {:>5} ms {}",
                    t.client,
                    t.sent,
                    t.failed,
                    t.retried,
                    t.longest_pause.as_millis(),
                    t.failures.join(" | ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Traffic running until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    /// Starts a kept-alive and a new-connection-per-request client for each of HTTP/1.1,
    /// HTTP/2 and HTTP/3 (GET `path`, expecting `body_len` bytes), and DNS clients over UDP and
    /// TCP (`www.foobar.com A`, expecting `address`).
    pub fn start(
        https: SocketAddr,
        dns: SocketAddr,
        pem: &[u8],
        path: &str,
        body_len: usize,
        address: &str,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for proto in web::ALL {
            for keep_alive in [true, false] {
                let http = Http {
                    proto,
                    keep_alive,
                    addr: https,
                    pem: pem.to_vec(),
                    path: path.to_string(),
                    body_len,
                };
                clients.push(tokio::spawn(http.run(stop.clone())));
            }
        }
        for tcp in [false, true] {
            let client = Dns {
                server: dns,
                tcp,
                address: address.to_string(),
            };
            clients.push(tokio::spawn(client.run(stop.clone())));
        }
        Load { stop, clients }
    }

    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut clients = Vec::new();
        for client in self.clients {
            clients.push(client.await.unwrap());
        }
        Report { clients }
    }
}

/// One open connection of any HTTP version.
enum Connection {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
    H3(Box<H3>),
}

struct Http {
    proto: Proto,
    keep_alive: bool,
    addr: SocketAddr,
    pem: Vec<u8>,
    path: String,
    body_len: usize,
}

/// How a request failed: before any response (retryable on a reused connection) or after.
enum Failure {
    BeforeResponse(String),
    After(String),
}

impl Http {
    async fn run(self, stop: Arc<AtomicBool>) -> Tally {
        let name = format!(
            "{:?} {}",
            self.proto,
            if self.keep_alive { "kept" } else { "new" }
        );
        let mut tally = Tally::new(&name);
        let mut connection: Option<Connection> = None;
        let mut last_success = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let outcome = self.one(&mut connection).await;
            tally.record(outcome, &mut last_success);
            if !self.keep_alive {
                connection = None;
            }
            tokio::time::sleep(PACE).await;
        }
        tally
    }

    /// One GET: `Ok(true)` if it needed the retry the protocol allows.
    async fn one(&self, connection: &mut Option<Connection>) -> Result<bool, String> {
        // A kept connection the server has closed (idle, or GOAWAY) is noticed before use.
        if let Some(open) = connection.as_mut()
            && !ready(open).await
        {
            *connection = None;
        }
        let reused = connection.is_some();
        match self.attempt(connection).await {
            Ok(()) => Ok(false),
            Err(Failure::BeforeResponse(why)) if reused => {
                *connection = None;
                match self.attempt(connection).await {
                    Ok(()) => Ok(true),
                    Err(Failure::BeforeResponse(again) | Failure::After(again)) => {
                        Err(format!("{why}, then on a new connection: {again}"))
                    }
                }
            }
            Err(Failure::BeforeResponse(why) | Failure::After(why)) => Err(why),
        }
    }

    async fn attempt(&self, connection: &mut Option<Connection>) -> Result<(), Failure> {
        if connection.is_none() {
            *connection = Some(
                self.connect()
                    .await
                    .map_err(|e| Failure::After(format!("connect: {e}")))?,
            );
        }
        let Some(open) = connection.as_mut() else {
            return Err(Failure::After("no connection".to_string()));
        };
        let result = match open {
            Connection::H1(sender) => {
                let request = Request::get(&self.path)
                    .header("host", "www.foobar.com")
                    .body(Empty::new())
                    .unwrap();
                hyper_request(sender.send_request(request).await).await
            }
            Connection::H2(sender) => {
                let request = Request::get(format!("https://www.foobar.com{}", self.path))
                    .body(Empty::new())
                    .unwrap();
                hyper_request(sender.send_request(request).await).await
            }
            Connection::H3(h3) => match h3.start(&self.path).await {
                Err(e) => Err(Failure::BeforeResponse(e)),
                Ok((status, mut stream)) => {
                    let mut length = 0;
                    loop {
                        match stream.recv_data().await {
                            Ok(Some(chunk)) => length += bytes::Buf::remaining(&chunk),
                            Ok(None) => break Ok((status, length)),
                            Err(e) => break Err(Failure::After(format!("body: {e}"))),
                        }
                    }
                }
            },
        };
        let outcome = result.and_then(|(status, length)| {
            if status != StatusCode::OK || length != self.body_len {
                Err(Failure::After(format!("{status}, {length} bytes")))
            } else {
                Ok(())
            }
        });
        if outcome.is_err() {
            *connection = None;
        }
        outcome
    }

    async fn connect(&self) -> Result<Connection, String> {
        if self.proto == Proto::H3 {
            let h3 = H3::try_connect(self.addr, &self.pem, H3Options::default()).await?;
            return Ok(Connection::H3(Box::new(h3)));
        }
        let alpn: &[u8] = if self.proto == Proto::H1 {
            b"http/1.1"
        } else {
            b"h2"
        };
        let stream = web::connect(
            self.addr,
            "www.foobar.com",
            web::tls_config(&self.pem, &[alpn]),
        )
        .await
        .map_err(|e| e.to_string())?;
        let io = TokioIo::new(stream);
        if self.proto == Proto::H1 {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            Ok(Connection::H1(sender))
        } else {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            Ok(Connection::H2(sender))
        }
    }
}

/// Whether a kept connection can take another request.
async fn ready(connection: &mut Connection) -> bool {
    match connection {
        Connection::H1(sender) => sender.ready().await.is_ok(),
        Connection::H2(sender) => sender.ready().await.is_ok(),
        Connection::H3(h3) => h3.connection.close_reason().is_none(),
    }
}

/// Status and body length of a hyper response; an error before the head is "before response".
async fn hyper_request(
    response: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<(StatusCode, usize), Failure> {
    let response = response.map_err(|e| Failure::BeforeResponse(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure::After(format!("body: {e}")))?;
    Ok((status, body.to_bytes().len()))
}

struct Dns {
    server: SocketAddr,
    tcp: bool,
    address: String,
}

impl Dns {
    async fn run(self, stop: Arc<AtomicBool>) -> Tally {
        let mut tally = Tally::new(if self.tcp { "dns tcp" } else { "dns udp" });
        let mut last_success = Instant::now();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut id: u16 = 0;
        while !stop.load(Ordering::Relaxed) {
            id = id.wrapping_add(1);
            let outcome = if self.tcp {
                self.over_tcp(id).await
            } else {
                self.over_udp(&socket, id).await
            };
            tally.record(outcome.map(|()| false), &mut last_success);
            tokio::time::sleep(PACE).await;
        }
        tally
    }

    fn query(id: u16) -> Vec<u8> {
        let mut query = super::query_message("www.foobar.com.", RecordType::A);
        query[..2].copy_from_slice(&id.to_be_bytes());
        query
    }

    fn check(&self, id: u16, bytes: &[u8]) -> Result<(), String> {
        let reply = Message::from_vec(bytes).map_err(|e| format!("unparsable answer: {e}"))?;
        if reply.metadata.id != id {
            return Err(format!("answer to query {} for {id}", reply.metadata.id));
        }
        let addresses = super::addresses(&reply);
        if addresses != [self.address.as_str()] {
            return Err(format!("wrong answer {addresses:?}"));
        }
        Ok(())
    }

    async fn over_udp(&self, socket: &tokio::net::UdpSocket, id: u16) -> Result<(), String> {
        socket
            .send_to(&Self::query(id), self.server)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + DNS_TIMEOUT;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
            let (length, _) = match received {
                Err(_) => return Err(format!("query {id}: no answer within 1 s")),
                Ok(result) => result.map_err(|e| e.to_string())?,
            };
            // A late answer to an earlier query (none should be late) is skipped.
            if buf[..2] == id.to_be_bytes() {
                return self.check(id, &buf[..length]);
            }
        }
    }

    async fn over_tcp(&self, id: u16) -> Result<(), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.server)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let query = Self::query(id);
            let mut frame = (query.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&query);
            stream.write_all(&frame).await.map_err(|e| e.to_string())?;
            let mut length = [0u8; 2];
            stream
                .read_exact(&mut length)
                .await
                .map_err(|e| format!("answer length: {e}"))?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream
                .read_exact(&mut answer)
                .await
                .map_err(|e| format!("answer: {e}"))?;
            self.check(id, &answer)
        };
        match tokio::time::timeout(DNS_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("query {id} over TCP: no answer within 1 s")),
        }
    }
}
