//! HTTP clients on the wire for end-to-end tests: HTTP/1.1 and HTTP/2 over rustls (hyper), and
//! HTTP/3 over quinn (h3).
#![allow(dead_code, clippy::unwrap_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
    H3,
}

pub const ALL: [Proto; 3] = [Proto::H1, Proto::H2, Proto::H3];

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A TLS client that trusts exactly the certificates in `pem`, offering `alpn`.
pub fn tls_config(pem: &[u8], alpn: &[&[u8]]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS connection to `addr` for `name` (an IP address sends no SNI).
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls_over(tcp, name, config).await
}

/// A TLS connection to `addr` from the local address `source`, with a receive buffer of
/// `receive_buffer` bytes when given (a small one makes the server's writes block soon).
pub async fn connect_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    config: ClientConfig,
    receive_buffer: Option<u32>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(addr).await?;
    tls_over(tcp, "www.foobar.com", config).await
}

/// TLS over an open TCP connection.
pub async fn tls_over(
    tcp: TcpStream,
    name: &str,
    config: ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One request over a fresh connection with the given protocol.
pub async fn fetch(proto: Proto, addr: SocketAddr, pem: &[u8], request: Request<Bytes>) -> Reply {
    match proto {
        Proto::H1 | Proto::H2 => {
            let alpn: &[u8] = if proto == Proto::H1 {
                b"http/1.1"
            } else {
                b"h2"
            };
            let stream = connect(addr, "www.foobar.com", tls_config(pem, &[alpn]))
                .await
                .unwrap();
            send_tcp(proto, stream, request).await
        }
        Proto::H3 => fetch_h3(addr, pem, request).await,
    }
}

/// Sends one request on an established TLS stream.
pub async fn send_tcp(
    proto: Proto,
    stream: TlsStream<TcpStream>,
    request: Request<Bytes>,
) -> Reply {
    let response = send_over(proto, stream, request.map(Full::new))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Sends `request` on `stream` over HTTP/1.1 (its authority as Host, its target in origin
/// form) or HTTP/2; the response, its body still to read.
pub async fn send_over<B>(
    proto: Proto,
    stream: TlsStream<TcpStream>,
    request: Request<B>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if proto == Proto::H1 {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        if let Some(authority) = parts.uri.authority().cloned() {
            parts
                .headers
                .insert(http::header::HOST, authority.as_str().parse().unwrap());
        }
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .unwrap();
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|e| e.to_string())
    } else {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }
}

/// An HTTP/3 connection to `addr` with `sni` as the TLS name (extended CONNECT offered when
/// asked), its driver running; the endpoint goes with it.
pub async fn h3_client(
    addr: SocketAddr,
    pem: &[u8],
    sni: &str,
    extended_connect: bool,
) -> Result<
    (
        h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        quinn::Endpoint,
    ),
    String,
> {
    let endpoint = quic_client(pem);
    let connection = endpoint
        .connect(addr, sni)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut driver, sender) = h3::client::builder()
        .enable_extended_connect(extended_connect)
        .build::<_, _, Bytes>(h3_quinn::Connection::new(connection))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok((sender, endpoint))
}

/// An HTTP/2 request whose failure is an expected outcome: the error's text instead of a panic.
pub async fn try_h2(
    addr: SocketAddr,
    pem: &[u8],
    request: Request<Bytes>,
) -> Result<Reply, String> {
    let stream = connect(addr, "www.foobar.com", tls_config(pem, &[b"h2"]))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request.map(Full::new))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.map_err(|e| e.to_string())?.to_bytes(),
    })
}

pub fn quic_client(pem: &[u8]) -> quinn::Endpoint {
    quic_client_for(pem, b"h3")
}

/// A QUIC client endpoint trusting `pem`, offering `alpn`, without 0-RTT.
pub fn quic_client_for(pem: &[u8], alpn: &[u8]) -> quinn::Endpoint {
    let mut tls = tls_config(pem, &[alpn]);
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// One request over HTTP/3.
pub async fn fetch_h3(addr: SocketAddr, pem: &[u8], request: Request<Bytes>) -> Reply {
    let (mut sender, endpoint) = h3_client(addr, pem, "www.foobar.com", false).await.unwrap();
    let (parts, body) = request.into_parts();
    let mut stream = sender
        .send_request(Request::from_parts(parts, ()))
        .await
        .unwrap();
    if !body.is_empty() {
        stream.send_data(body).await.unwrap();
    }
    // A server may stop reading a request it has answered (RFC 9114 section 4.1.2, with
    // H3_NO_ERROR): the response still counts.
    let _ = stream.finish().await;
    let response = stream.recv_response().await.unwrap();
    let mut collected = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        collected.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    drop(sender);
    endpoint.close(0u32.into(), b"done");
    let (parts, ()) = response.into_parts();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: Bytes::from(collected),
    }
}

/// A GET for `path` on www.foobar.com with extra headers.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Request<Bytes> {
    let mut request = Request::get(format!("https://www.foobar.com{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Bytes::new()).unwrap()
}

/// Sends raw bytes as an HTTP/1.1 request over TLS and returns the status code, for request
/// lines that `http::Uri` would refuse to build.
pub async fn raw_status(addr: SocketAddr, pem: &[u8], request_line: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect(addr, "www.foobar.com", tls_config(pem, &[b"http/1.1"]))
        .await
        .unwrap();
    let request = format!("{request_line}\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// An HTTP/3 connection kept open across requests.
pub struct H3 {
    pub endpoint: quinn::Endpoint,
    pub connection: quinn::Connection,
    sender: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    _driver: tokio::task::JoinHandle<()>,
    /// Makes the driver send a GOAWAY.
    goaway: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What an HTTP/3 client may change about its connection.
#[derive(Debug, Clone, Copy)]
pub struct H3Options {
    pub source: std::net::IpAddr,
    /// Keep-alive pings this often.
    pub ping: Option<Duration>,
    /// Receive window per stream, in bytes.
    pub stream_window: Option<u32>,
}

impl Default for H3Options {
    fn default() -> Self {
        H3Options {
            source: [127, 0, 0, 1].into(),
            ping: None,
            stream_window: None,
        }
    }
}

impl H3 {
    /// Connects to `addr`; with `ping`, the client sends QUIC keep-alive pings that often.
    pub async fn connect(addr: SocketAddr, pem: &[u8], ping: Option<Duration>) -> H3 {
        let options = H3Options {
            ping,
            ..H3Options::default()
        };
        H3::try_connect(addr, pem, options).await.unwrap()
    }

    /// Connects with these options; the error if the server refuses.
    pub async fn try_connect(
        addr: SocketAddr,
        pem: &[u8],
        options: H3Options,
    ) -> Result<H3, String> {
        let mut tls = tls_config(pem, &[b"h3"]);
        tls.enable_early_data = false;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(options.ping);
        if let Some(window) = options.stream_window {
            transport.stream_receive_window(window.into());
        }
        config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client(SocketAddr::new(options.source, 0))
            .map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(config);
        let connection = endpoint
            .connect(addr, "www.foobar.com")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(connection.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let (goaway, asked) = tokio::sync::oneshot::channel::<()>();
        let driver = tokio::spawn(async move {
            tokio::select! {
                _ = std::future::poll_fn(|cx| driver.poll_close(cx)) => return,
                Ok(()) = asked => {}
            }
            let _ = driver.shutdown(0).await;
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3 {
            endpoint,
            connection,
            sender,
            _driver: driver,
            goaway: Some(goaway),
        })
    }

    /// Sends a GOAWAY: the client will send no more requests on this connection.
    pub fn goaway(&mut self) {
        if let Some(goaway) = self.goaway.take() {
            let _ = goaway.send(());
        }
    }

    /// Sends a GET of `path` and waits for the response head; the body is the caller's to read.
    pub async fn start(
        &mut self,
        path: &str,
    ) -> Result<
        (
            StatusCode,
            h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
        ),
        String,
    > {
        let (parts, _) = get(path, &[]).into_parts();
        let mut stream = self
            .sender
            .send_request(Request::from_parts(parts, ()))
            .await
            .map_err(|e| e.to_string())?;
        // A server may stop reading a request it has answered (RFC 9114 section 4.1.2): the
        // response still counts.
        let _ = stream.finish().await;
        let response = stream.recv_response().await.map_err(|e| e.to_string())?;
        Ok((response.status(), stream))
    }

    /// Sends `request` (no body) and returns the response status.
    pub async fn send(&mut self, request: Request<()>) -> Result<StatusCode, String> {
        let mut stream = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        // As in `start`: a server that has answered may stop reading.
        let _ = stream.finish().await;
        let response = stream.recv_response().await.map_err(|e| e.to_string())?;
        Ok(response.status())
    }

    /// A GET of `path`: the status and the whole body.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes), String> {
        self.get_over(path, Duration::ZERO).await
    }

    /// A GET of `path` whose body is read slowly, over at least `over`.
    pub async fn get_over(
        &mut self,
        path: &str,
        over: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        let started = std::time::Instant::now();
        let (status, mut stream) = self.start(path).await?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            if started.elapsed() < over {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok((status, Bytes::from(body)))
    }
}

/// Sends `request`, whose body is streamed, over a new HTTP/2 connection; the whole reply.
pub async fn send_streamed_h2<B>(addr: SocketAddr, pem: &[u8], request: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = connect(addr, "www.foobar.com", tls_config(pem, &[b"h2"]))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// GETs `path` on `stream` (HTTP/1.1 or HTTP/2, as negotiated) with `headers`: the response
/// head, and each body frame with when it arrived (from the head on).
pub async fn frame_arrivals(
    proto: Proto,
    stream: TlsStream<TcpStream>,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::response::Parts, Vec<(Duration, Bytes)>) {
    let mut request = Request::get(format!("https://www.foobar.com{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let response = send_over(proto, stream, request).await.unwrap();
    let start = std::time::Instant::now();
    let (parts, mut body) = response.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        // (An empty DATA frame may end an HTTP/2 stream.)
        if let Ok(data) = frame.unwrap().into_data()
            && !data.is_empty()
        {
            frames.push((start.elapsed(), data));
        }
    }
    (parts, frames)
}
