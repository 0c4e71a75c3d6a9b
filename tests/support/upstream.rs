//! An application behind the proxy, for the tests: HTTP/1.1 and HTTP/2 without TLS (hyper's
//! server, as a Node or Go service would answer), on a port of its own, that says who it is,
//! echoes what it got, streams, sleeps, counts POSTs, echoes WebSocket frames
//! (tokio-tungstenite) and can be killed.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, Infallible>;

/// What the upstream has seen and says.
#[derive(Debug, Default)]
pub struct Seen {
    /// Requests answered.
    pub requests: AtomicU64,
    /// POST /post ids, with how many times each arrived.
    pub posts: Mutex<HashMap<String, u32>>,
    /// Whether /health answers 200 (else 503).
    pub healthy: AtomicBool,
    /// WebSocket connections opened.
    pub websockets: AtomicU64,
    /// Connections accepted, open now, and the most open at once.
    pub connections: AtomicU64,
    pub open: AtomicU64,
    pub most_open: AtomicU64,
}

/// One connection open, counted until dropped.
struct Open(Arc<Seen>);

impl Open {
    fn new(seen: &Arc<Seen>) -> Open {
        seen.connections.fetch_add(1, Ordering::Relaxed);
        let now = seen.open.fetch_add(1, Ordering::Relaxed) + 1;
        seen.most_open.fetch_max(now, Ordering::Relaxed);
        Open(seen.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where an upstream listens.
enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// A running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Seen>,
    tasks: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Upstream {
    /// Starts one on 127.0.0.1, port 0, answering as `name`.
    pub async fn start(name: &str) -> Upstream {
        Upstream::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    /// Starts one on `addr` (a port used before: the same upstream back after a kill).
    pub async fn start_on(addr: SocketAddr, name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        Upstream::serve(Listener::Tcp(listener), addr, name, None)
    }

    /// Starts one on the Unix socket `path`.
    pub async fn start_unix(path: &std::path::Path, name: &str) -> Upstream {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        Upstream::serve(
            Listener::Unix(listener),
            "127.0.0.1:1".parse().unwrap(),
            name,
            None,
        )
    }

    /// Starts one over TLS with `certificate` (PEM chain, PEM key).
    pub async fn start_tls(name: &str, certificate: (&[u8], &[u8])) -> Upstream {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate.0)
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(certificate.1).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Upstream::serve(Listener::Tcp(listener), addr, name, Some(acceptor))
    }

    fn serve(
        listener: Listener,
        addr: SocketAddr,
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Upstream {
        let seen = Arc::new(Seen {
            healthy: AtomicBool::new(true),
            ..Seen::default()
        });
        let tasks = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        let (name_owned, seen_accept, tasks_accept) =
            (name.to_string(), seen.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let stream: Box<dyn Stream> = match &listener {
                    Listener::Tcp(listener) => {
                        let Ok((stream, _)) = listener.accept().await else {
                            return;
                        };
                        let _ = stream.set_nodelay(true);
                        match &tls {
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(stream) => Box::new(stream),
                                Err(_) => continue,
                            },
                            None => Box::new(stream),
                        }
                    }
                    Listener::Unix(listener) => {
                        let Ok((stream, _)) = listener.accept().await else {
                            return;
                        };
                        Box::new(stream)
                    }
                };
                let (name, seen) = (name_owned.clone(), seen_accept.clone());
                let open = Open::new(&seen);
                let service = hyper::service::service_fn(move |request| {
                    answer(request, name.clone(), seen.clone())
                });
                tasks_accept.lock().unwrap().spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                    drop(open);
                });
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            seen,
            tasks,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills it: its listener and every connection close at once, as when the process dies.
    pub fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    /// How many times each POST id arrived.
    pub fn posts(&self) -> HashMap<String, u32> {
        self.seen.posts.lock().unwrap().clone()
    }
}

/// A connection an upstream serves: TCP, TLS or a Unix socket.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

fn query<'a>(request: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// The request's headers as JSON, names in lower case, repeated ones joined with ", ".
fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(name.to_string(), values.join(", ").into());
    }
    serde_json::Value::Object(map)
}

async fn answer(
    mut request: Request<Incoming>,
    name: String,
    seen: Arc<Seen>,
) -> Result<Response<Body>, Infallible> {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path().to_string();
    let response = match path.as_str() {
        "/health" => {
            let status = if seen.healthy.load(Ordering::Relaxed) {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut response = Response::new(full("health\n"));
            *response.status_mut() = status;
            response
        }
        "/sse" => {
            // Five events, 300 ms apart, each its own chunk.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                for i in 0..5 {
                    let event = Frame::data(Bytes::from(format!("data: event {i}\n\n")));
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        "/slow" => {
            let ms = query(&request, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(format!("{name} slept {ms} ms\n")))
        }
        "/post" => {
            let id = query(&request, "id").unwrap_or("").to_string();
            let body = request.into_body().collect().await.map(|b| b.to_bytes());
            *seen.posts.lock().unwrap().entry(id.clone()).or_insert(0) += 1;
            match body {
                Ok(body) => Response::new(full(format!(
                    "{name} got post {id}: {} bytes\n",
                    body.len()
                ))),
                Err(_) => {
                    let mut response = Response::new(full("broken body\n"));
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    response
                }
            }
        }
        "/bytes" => {
            // N bytes of a known pattern, sent in 64 KiB chunks as the client takes them.
            let total: u64 = query(&request, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let chunk = Bytes::from((0..65_536u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            let stream = futures_util::stream::unfold(0u64, move |sent| {
                let chunk = chunk.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    let take = (total - sent).min(chunk.len() as u64) as usize;
                    Some((
                        Ok::<_, Infallible>(Frame::data(chunk.slice(..take))),
                        sent + take as u64,
                    ))
                }
            });
            Response::builder()
                .header("content-length", total.to_string())
                .header("content-type", "application/octet-stream")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        "/upload" => {
            // Counts and sums what arrives, chunk by chunk.
            let mut body = request.into_body();
            let (mut length, mut sum) = (0u64, 0u64);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    break;
                };
                if let Ok(data) = frame.into_data() {
                    length += data.len() as u64;
                    sum = data.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
                }
            }
            Response::new(full(format!("{length} {sum}\n")))
        }
        "/trailers" => {
            // As a gRPC server ends a call: data, then the status in trailers.
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            trailers.insert("grpc-message", "done".parse().unwrap());
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"payload"))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::builder()
                .header("content-type", "application/grpc")
                .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                    frames,
                ))))
                .unwrap()
        }
        "/ws" => websocket(&mut request, &seen),
        _ => {
            let echo = serde_json::json!({
                "upstream": name,
                "method": request.method().as_str(),
                "uri": request.uri().to_string(),
                "version": format!("{:?}", request.version()),
                "headers": headers_json(request.headers()),
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("x-upstream", name.as_str())
                .body(full(echo.to_string()))
                .unwrap()
        }
    };
    Ok(response)
}

/// The WebSocket handshake (RFC 6455), then an echo of every message; `close` closes.
fn websocket(request: &mut Request<Incoming>, seen: &Arc<Seen>) -> Response<Body> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        let mut response = Response::new(full("not a websocket\n"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(request);
    seen.websockets.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(message)) = socket.next().await {
            use tokio_tungstenite::tungstenite::Message;
            let echo = match &message {
                Message::Text(text) if text.as_str() == "close" => {
                    let _ = socket.close(None).await;
                    break;
                }
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(echo).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(full(""))
        .unwrap()
}
