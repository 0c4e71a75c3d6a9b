//! WebSockets through the proxy: asked for over HTTP/1.1 (Upgrade), HTTP/2 (RFC 8441) and
//! HTTP/3 (RFC 9220), relayed to an HTTP/1.1 WebSocket upstream, kept across a reload, and told
//! "going away" (Close 1001) when an upgrade's drain runs out.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes};
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{
    Foobar,
    upstream::Upstream,
    web::{Proto, connect, tls_config},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        protocol::{CloseFrame, Role, frame::coding::CloseCode},
    },
};

type Socket = WebSocketStream<Pin<Box<dyn Io>>>;

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

fn server(upstream: &Upstream, edge: &[&str]) -> Foobar {
    let setup = edge
        .iter()
        .fold(Foobar::setup(), |setup, line| setup.edge(line));
    setup
        .tables(&format!(
            "[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{{dir}}/public\"\n\
             [[site.route]]\npath = \"/app/\"\nstrip_prefix = true\nproxy = [\"{}\"]\n",
            upstream.url()
        ))
        .start()
}

/// A WebSocket to `/app/ws` over `proto`.
async fn open(proto: Proto, server: &Foobar, pem: &[u8]) -> Socket {
    match proto {
        Proto::H1 => {
            let stream = connect(
                server.https,
                "www.foobar.com",
                tls_config(pem, &[b"http/1.1"]),
            )
            .await
            .unwrap();
            let stream: Pin<Box<dyn Io>> = Box::pin(stream);
            let (socket, response) =
                tokio_tungstenite::client_async("wss://www.foobar.com/app/ws", stream)
                    .await
                    .unwrap();
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            socket
        }
        Proto::H2 => {
            let stream = connect(server.https, "www.foobar.com", tls_config(pem, &[b"h2"]))
                .await
                .unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut request = Request::connect("https://www.foobar.com/app/ws")
                .header("sec-websocket-version", "13")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            request
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static("websocket"));
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "RFC 8441: 200");
            let upgraded = hyper::upgrade::on(response).await.unwrap();
            let io: Pin<Box<dyn Io>> = Box::pin(TokioIo::new(upgraded));
            // The connection must outlive this function.
            std::mem::forget(sender);
            WebSocketStream::from_raw_socket(io, Role::Client, None).await
        }
        Proto::H3 => {
            let (mut sender, endpoint) =
                support::web::h3_client(server.https, pem, "www.foobar.com", true)
                    .await
                    .unwrap();
            let mut request = Request::connect("https://www.foobar.com/app/ws")
                .header("sec-websocket-version", "13")
                .body(())
                .unwrap();
            request
                .extensions_mut()
                .insert(h3::ext::Protocol::WEBSOCKET);
            let mut stream = sender.send_request(request).await.unwrap();
            let response = stream.recv_response().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "RFC 9220: 200");
            std::mem::forget((sender, endpoint));
            let (send, recv) = stream.split();
            let io: Pin<Box<dyn Io>> = Box::pin(H3Io::new(send, recv));
            WebSocketStream::from_raw_socket(io, Role::Client, None).await
        }
    }
}

/// A client's HTTP/3 request stream as a byte stream.
struct H3Io {
    recv: h3::client::RequestStream<h3_quinn::RecvStream, Bytes>,
    leftover: Bytes,
    writes: tokio_util::sync::PollSender<Bytes>,
}

impl H3Io {
    fn new(
        mut send: h3::client::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
        recv: h3::client::RequestStream<h3_quinn::RecvStream, Bytes>,
    ) -> H3Io {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if send.send_data(data).await.is_err() {
                    return;
                }
            }
            let _ = send.finish().await;
        });
        H3Io {
            recv,
            leftover: Bytes::new(),
            writes: tokio_util::sync::PollSender::new(tx),
        }
    }
}

impl tokio::io::AsyncRead for H3Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.leftover.is_empty() {
            match self.recv.poll_recv_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(Some(mut data))) => {
                    self.leftover = data.copy_to_bytes(data.remaining());
                }
            }
        }
        let n = self.leftover.len().min(buf.remaining());
        buf.put_slice(&self.leftover.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for H3Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.writes.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Poll::Ready(Ok(())) => {
                let _ = self.writes.send_item(Bytes::copy_from_slice(buf));
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writes.close();
        Poll::Ready(Ok(()))
    }
}

/// Sends `text` and waits for its echo.
async fn echo(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an echo in time")
        .expect("an echo")
        .unwrap();
    assert_eq!(answer, Message::text(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_echo_over_http1_http2_and_http3() {
    let upstream = Upstream::start("ws").await;
    let server = server(&upstream, &[]);
    let pem = server.certificate_pem();
    for proto in support::web::ALL {
        let mut socket = open(proto, &server, &pem).await;
        echo(&mut socket, &format!("hello over {proto:?}")).await;
        let big = vec![7u8; 200_000];
        socket.send(Message::binary(big.clone())).await.unwrap();
        let answer = socket.next().await.unwrap().unwrap();
        assert_eq!(answer, Message::binary(big), "{proto:?}");
        // The upstream closes: the client hears it.
        socket.send(Message::text("close")).await.unwrap();
        let closing = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a close in time");
        assert!(
            matches!(closing, Some(Ok(Message::Close(_))) | None),
            "{proto:?}: {closing:?}"
        );
    }
    assert_eq!(
        upstream
            .seen
            .websockets
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_outlive_a_reload_and_hear_going_away_when_an_upgrade_drains() {
    let upstream = Upstream::start("ws").await;
    let server = server(&upstream, &["shutdown_timeout = 2"]);
    let pem = server.certificate_pem();
    let mut sockets = Vec::new();
    for proto in support::web::ALL {
        let mut socket = open(proto, &server, &pem).await;
        echo(&mut socket, "before").await;
        sockets.push((proto, socket));
    }
    // A reload in place (another route added): every WebSocket goes on.
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    std::fs::write(
        server.config_path(),
        format!("{config}\n[[site.route]]\npath = \"/hello\"\nrespond = \"hi\"\n"),
    )
    .unwrap();
    let reloaded = server.control("reload");
    assert!(
        String::from_utf8_lossy(&reloaded.stdout).contains("in place"),
        "{reloaded:?}"
    );
    for (proto, socket) in &mut sockets {
        echo(socket, &format!("after the reload, {proto:?}")).await;
    }
    // An upgrade: the old process keeps them, and they still work, until its drain runs out.
    let old = server.serving_pid();
    let upgraded = server.control("upgrade");
    assert!(upgraded.status.success(), "{upgraded:?}");
    let started = Instant::now();
    assert_ne!(server.serving_pid(), old);
    for (proto, socket) in &mut sockets {
        echo(socket, &format!("after the upgrade, {proto:?}")).await;
    }
    // A new WebSocket goes to the new process.
    let mut fresh = open(Proto::H2, &server, &pem).await;
    echo(&mut fresh, "to the new process").await;
    for (proto, socket) in &mut sockets {
        let heard = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("told within the drain");
        let Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) = heard else {
            panic!("{proto:?}: {heard:?}");
        };
        assert_eq!(code, CloseCode::Away, "{proto:?}");
    }
    let told = started.elapsed();
    eprintln!("going away heard {told:?} after the upgrade (shutdown_timeout 2 s)");
    assert!(told >= Duration::from_millis(1900), "{told:?}");
    assert!(told < Duration::from_secs(6), "{told:?}");
    assert!(
        support::exited(old) || {
            tokio::time::sleep(Duration::from_secs(3)).await;
            support::exited(old)
        }
    );
    echo(&mut fresh, "still here").await;
}
