//! Bodies stream in both directions and trailers pass through, on every transport: an echo
//! service answers with the request body itself, and the client reads the echo of one chunk
//! before it sends the next.
#![allow(clippy::unwrap_used)]

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::body::Body;
use bytes::{Buf, Bytes};
use foobar_edge::{Config, Edge};
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    addr: std::net::SocketAddr,
    pem: Vec<u8>,
    _state: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn echo_server() -> Running {
    let state = tempfile::tempdir().unwrap();
    let config = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        https: "127.0.0.1:0".parse().unwrap(),
        root: state.path().to_path_buf(),
        ..Config::default()
    };
    let edge = Edge::load(
        &config,
        &[],
        state.path(),
        &["www.foobar.com".to_string()],
        false,
    )
    .unwrap();
    let sockets = edge.bind().unwrap();
    let addr = sockets.https_addr().unwrap();
    let echo = tower::service_fn(|request: Request<Body>| async move {
        Ok::<_, Infallible>(Response::new(request.into_body()))
    });
    let shutdown = CancellationToken::new();
    let handoff =
        foobar_net::quic::QuicRouting::new(foobar_net::quic::Generation::random().unwrap());
    tokio::spawn(edge.run(
        sockets,
        foobar_edge::App::everywhere(foobar_edge::EdgeService::new(echo)),
        shutdown.clone(),
        handoff,
    ));
    let pem = std::fs::read(state.path().join("tls/self-signed.crt")).unwrap();
    Running {
        addr,
        pem,
        _state: state,
        shutdown,
    }
}

fn tls(pem: &[u8], alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

fn trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    trailers
}

/// A request body fed chunk by chunk from the test.
fn channel_body() -> (mpsc::Sender<Frame<Bytes>>, Body) {
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(1);
    let stream = tokio_stream_from(rx);
    (tx, Body::new(StreamBody::new(stream)))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Frame<Bytes>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|f| f.map(Ok)))
}

/// A TLS connection to the echo server offering `alpn`, wrapped for hyper.
async fn connect(
    server: &Running,
    alpn: &[u8],
) -> TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls(&server.pem, alpn)))
        .connect(ServerName::try_from("www.foobar.com").unwrap(), tcp)
        .await
        .unwrap();
    TokioIo::new(stream)
}

/// The next frame of a response body, within the test's patience.
async fn next_frame(body: &mut hyper::body::Incoming) -> Frame<Bytes> {
    tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("a frame in time")
        .expect("a frame")
        .unwrap()
}

/// Sends `request` whose body the test feeds through `tx`, after feeding it a first chunk;
/// returns the response body once its headers arrived.
async fn start_echo<F>(send: F, tx: &mpsc::Sender<Frame<Bytes>>) -> hyper::body::Incoming
where
    F: Future<Output = hyper::Result<Response<hyper::body::Incoming>>>,
{
    tx.send(Frame::data(Bytes::from_static(b"first")))
        .await
        .unwrap();
    let response = tokio::time::timeout(WAIT, send).await.unwrap().unwrap();
    response.into_body()
}

#[tokio::test]
async fn http2_streams_both_ways_with_trailers() {
    let server = echo_server().await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), connect(&server, b"h2").await)
            .await
            .unwrap();
    tokio::spawn(connection);
    let (tx, body) = channel_body();
    let request = Request::post("https://www.foobar.com/echo")
        .body(body)
        .unwrap();
    let mut echoed = start_echo(sender.send_request(request), &tx).await;
    // The echo of the first chunk arrives while the request is still open.
    assert_eq!(next_frame(&mut echoed).await.into_data().unwrap(), "first");
    tx.send(Frame::data(Bytes::from_static(b"second")))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut echoed).await.into_data().unwrap(), "second");
    tx.send(Frame::trailers(trailers())).await.unwrap();
    drop(tx);
    assert_eq!(
        next_frame(&mut echoed).await.into_trailers().unwrap(),
        trailers()
    );
}

#[tokio::test]
async fn http1_streams_a_chunked_body_back() {
    let server = echo_server().await;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(connect(&server, b"http/1.1").await)
            .await
            .unwrap();
    tokio::spawn(connection);
    let (tx, body) = channel_body();
    let request = Request::post("/echo")
        .header("host", "www.foobar.com")
        .body(body)
        .unwrap();
    let mut echoed = start_echo(sender.send_request(request), &tx).await;
    assert_eq!(next_frame(&mut echoed).await.into_data().unwrap(), "first");
    tx.send(Frame::data(Bytes::from_static(b"second")))
        .await
        .unwrap();
    drop(tx);
    let rest = tokio::time::timeout(WAIT, echoed.collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.to_bytes(), "second");
}

#[tokio::test]
async fn http3_streams_both_ways_with_trailers() {
    let server = echo_server().await;
    let mut config = tls(&server.pem, b"h3");
    config.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = endpoint
        .connect(server.addr, "www.foobar.com")
        .unwrap()
        .await
        .unwrap();
    let (mut driver, mut sender) = h3::client::new(h3_quinn::Connection::new(connection))
        .await
        .unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let mut stream = sender
        .send_request(
            Request::post("https://www.foobar.com/echo")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    stream
        .send_data(Bytes::from_static(b"first"))
        .await
        .unwrap();
    let response = tokio::time::timeout(WAIT, stream.recv_response())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut first = tokio::time::timeout(WAIT, stream.recv_data())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.copy_to_bytes(first.remaining()), "first");
    stream
        .send_data(Bytes::from_static(b"second"))
        .await
        .unwrap();
    let mut second = tokio::time::timeout(WAIT, stream.recv_data())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.copy_to_bytes(second.remaining()), "second");
    stream.send_trailers(trailers()).await.unwrap();
    stream.finish().await.unwrap();
    assert!(
        tokio::time::timeout(WAIT, stream.recv_data())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    let received = tokio::time::timeout(WAIT, stream.recv_trailers())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, Some(trailers()));
}
