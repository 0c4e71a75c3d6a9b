//! The edge under hostile and unlucky conditions: clients that vanish, stop reading, never
//! send their headers, open too many connections or streams, or spoof their address; and how
//! it stops with such clients connected. Every case goes over the wire through a real client.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http::StatusCode;
use support::{
    Foobar,
    web::{self, H3, H3Options},
};

/// HTTP/3's "no error", which the server closes idle and drained connections with.
const H3_NO_ERROR: u32 = 0x100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_http3_clients_do_not_hold_up_shutdown() {
    let mut server = Foobar::setup().shipped_site().start();
    let pem = server.certificate_pem();
    let addr = server.https;
    // Twenty clients each make a request, then vanish without a word (their process killed,
    // say): their runtime stops, so nothing more is sent, not even a close.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let sessions = runtime.block_on(async {
            let mut sessions = Vec::new();
            for _ in 0..20 {
                let mut h3 = H3::connect(addr, &pem, None).await;
                assert_eq!(h3.get("/").await.unwrap().0, StatusCode::OK);
                sessions.push(h3);
            }
            sessions
        });
        runtime.shutdown_background();
        std::mem::forget(sessions);
    })
    .join()
    .unwrap();

    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait();
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    eprintln!("stopped {took:?} after SIGTERM with 20 vanished HTTP/3 clients");
    assert!(
        took < Duration::from_secs(3),
        "shutdown waited for vanished clients: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_connections_that_only_ping_are_closed_and_busy_ones_are_not() {
    let server = Foobar::setup()
        .file("large.bin", vec![1u8; 4 * 1024 * 1024])
        .edge("idle_timeout = 1")
        .start();
    let pem = server.certificate_pem();
    // The client pings every 200 ms, which keeps QUIC itself alive.
    let mut h3 = H3::connect(server.https, &pem, Some(Duration::from_millis(200))).await;
    // A download that takes longer than the idle timeout is not cut off.
    let started = Instant::now();
    let (status, body) = h3
        .get_over("/large.bin", Duration::from_millis(2500))
        .await
        .unwrap();
    assert_eq!((status, body.len()), (StatusCode::OK, 4 * 1024 * 1024));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "read too fast to test"
    );
    // Then, with nothing in flight, the server closes the connection itself.
    let closed = tokio::time::timeout(Duration::from_secs(5), h3.connection.closed()).await;
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.error_code, H3_NO_ERROR.into());
        }
        other => panic!("not closed by the server as idle: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_request_headers_are_bounded_by_header_timeout() {
    let server = Foobar::setup()
        .shipped_site()
        .edge("header_timeout = 1")
        .start();
    let pem = server.certificate_pem();
    let h3 = H3::connect(server.https, &pem, Some(Duration::from_millis(200))).await;
    // A request stream that starts a HEADERS frame (type 1, length 100) and sends no more.
    let (mut send, mut recv) = h3.connection.open_bi().await.unwrap();
    send.write_all(&[0x01, 0x40, 0x64]).await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
    assert!(ended.is_ok(), "the incomplete request stream is still open");
    eprintln!("incomplete request ended after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// A UDP relay between one client and the server that counts the server's Retry packets.
async fn counting_relay(server: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let retries = Arc::new(AtomicUsize::new(0));
    let counted = retries.clone();
    tokio::spawn(async move {
        let mut client = None;
        let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
        loop {
            tokio::select! {
                Ok((len, from)) = front.recv_from(&mut up) => {
                    client = Some(from);
                    let _ = back.send(&up[..len]).await;
                }
                Ok(len) = back.recv(&mut down) => {
                    // A QUIC v1 long header of type Retry: 1 1 11 in the top bits.
                    if len > 0 && down[0] & 0xF0 == 0xF0 {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(client) = client {
                        let _ = front.send_to(&down[..len], client).await;
                    }
                }
            }
        }
    });
    (addr, retries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_clients_prove_their_address_with_a_retry_when_asked() {
    for (threshold, want_retries) in [(0, 1), (64, 0)] {
        let server = Foobar::setup()
            .shipped_site()
            .edge(&format!("quic_retry_after_handshakes = {threshold}"))
            .start();
        let pem = server.certificate_pem();
        let (relay, retries) = counting_relay(server.https).await;
        let mut h3 = H3::connect(relay, &pem, None).await;
        assert_eq!(h3.get("/").await.unwrap().0, StatusCode::OK);
        assert_eq!(
            retries.load(Ordering::Relaxed),
            want_retries,
            "Retry packets with quic_retry_after_handshakes = {threshold}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let server = Foobar::setup()
        .shipped_site()
        .edge("max_connections_per_address = 2")
        .start();
    let pem = server.certificate_pem();
    let local: IpAddr = [127, 0, 0, 1].into();
    let h2 = || web::tls_config(&pem, &[b"h2"]);
    // One TCP and one QUIC connection from 127.0.0.1: its two slots, over both transports.
    let _tcp = web::connect_from(local, server.https, h2(), None)
        .await
        .unwrap();
    let mut quic = H3::connect(server.https, &pem, None).await;
    assert_eq!(quic.get("/").await.unwrap().0, StatusCode::OK);
    // A third from the same address is refused over either.
    assert!(
        web::connect_from(local, server.https, h2(), None)
            .await
            .is_err(),
        "a third TCP connection from one address was served"
    );
    assert!(
        H3::try_connect(server.https, &pem, H3Options::default())
            .await
            .is_err(),
        "a third QUIC connection from one address was served"
    );
    // Another address is served.
    let other: IpAddr = [127, 0, 0, 2].into();
    assert!(
        web::connect_from(other, server.https, h2(), None)
            .await
            .is_ok()
    );
    let options = H3Options {
        source: other,
        ..H3Options::default()
    };
    let mut quic = H3::try_connect(server.https, &pem, options).await.unwrap();
    assert_eq!(quic.get("/").await.unwrap().0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let size = 32 * 1024 * 1024;
    let server = Foobar::setup()
        .file("large.bin", vec![1u8; size])
        .edge("send_timeout = 1")
        .start();
    let pem = server.certificate_pem();
    // HTTP/1.1, with a small receive buffer: the server's writes block once buffers fill.
    let mut stream = web::connect_from(
        [127, 0, 0, 1].into(),
        server.https,
        web::tls_config(&pem, &[b"http/1.1"]),
        Some(4096),
    )
    .await
    .unwrap();
    stream
        .write_all(b"GET /large.bin HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let _ = stream.read(&mut first).await.unwrap();
    // The server gives up on the response (its access line, written when the response body is
    // dropped, shows the bytes it got to), and only then does the client read again.
    let given_up = |line: &str| -> u64 {
        line.split("bytes=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|bytes| bytes.parse().ok())
            .unwrap()
    };
    let line = wait_for_log_async(&server, 0, "path=/large.bin").await;
    assert!(given_up(&line) < size as u64, "HTTP/1.1: {line}");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    let ended = ended.expect("the connection was never closed");
    assert!(
        ended.is_err() || rest.len() + 1024 < size,
        "HTTP/1.1: all {} bytes arrived after the stall",
        rest.len()
    );

    // HTTP/3, with a small stream window: the server's sends wait on flow control.
    let options = H3Options {
        stream_window: Some(64 * 1024),
        ..H3Options::default()
    };
    let mut h3 = H3::try_connect(server.https, &pem, options).await.unwrap();
    let skip = server.log_len();
    let (status, mut body) = h3.start("/large.bin").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let line = wait_for_log_async(&server, skip, "path=/large.bin").await;
    assert!(given_up(&line) < size as u64, "HTTP/3: {line}");
    let mut received = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match body.recv_data().await {
                Ok(Some(chunk)) => received += bytes::Buf::remaining(&chunk),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("the stream was never ended");
    assert!(
        outcome.is_err() && received < size,
        "HTTP/3: {received} bytes then {outcome:?} after the stall"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_connections_get_max_streams_requests_at_once() {
    let server = Foobar::setup()
        .shipped_site()
        .edge("max_streams = 2")
        .start();
    let pem = server.certificate_pem();
    let h3 = H3::connect(server.https, &pem, None).await;
    // Two request streams that never finish their headers hold both of the server's slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (mut send, recv) = h3.connection.open_bi().await.unwrap();
        send.write_all(&[0x01, 0x40, 0x64]).await.unwrap();
        held.push((send, recv));
    }
    let third = tokio::spawn({
        let connection = h3.connection.clone();
        async move { connection.open_bi().await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third stream opened beyond the limit of two"
    );
    // Once one of them is given up, the third may open.
    let (mut send, _recv) = held.remove(0);
    send.reset(0u32.into()).unwrap();
    let opened = tokio::time::timeout(Duration::from_secs(5), third).await;
    assert!(matches!(opened, Ok(Ok(Ok(())))), "{opened:?}");
}

/// The status line's code of a raw HTTP/1.1 exchange, or 0 if the connection closed first.
async fn h1_status<S>(mut stream: S, request: &str) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_over_max_header_bytes_get_431_everywhere() {
    use support::h2raw::{RawH2, block, flag::*, kind::*};
    let server = Foobar::setup()
        .shipped_site()
        .edge("max_header_bytes = 4096")
        .start();
    let pem = server.certificate_pem();
    let request = |bytes: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(bytes)
        )
    };
    let tls = || async {
        web::connect(
            server.https,
            "www.foobar.com",
            web::tls_config(&pem, &[b"http/1.1"]),
        )
        .await
        .unwrap()
    };
    let plain = || async { tokio::net::TcpStream::connect(server.http).await.unwrap() };
    // Just under the limit passes on both HTTP/1.1 listeners; just over it is refused on both.
    assert_eq!(h1_status(tls().await, &request(3500)).await, 200);
    assert_eq!(h1_status(plain().await, &request(3500)).await, 308);
    assert_eq!(h1_status(tls().await, &request(5000)).await, 431);
    assert_eq!(h1_status(plain().await, &request(5000)).await, 431);

    // HTTP/2: a 431 response, not a reset the client would retry.
    let mut h2 = RawH2::connect(server.https, &pem).await;
    let big = "a".repeat(5000);
    let fields = block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        (":authority", "www.foobar.com"),
        ("x-big", &big),
    ]);
    h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &fields).await;
    let status = loop {
        let frame = h2.read(Duration::from_secs(5)).await.expect("a response");
        assert_ne!(frame.kind, RST_STREAM, "reset instead of 431: {frame:?}");
        if frame.kind == HEADERS && frame.stream == 1 {
            break frame.payload;
        }
    };
    // :status 431 is not in the static table: a literal with name index 8, "431".
    assert!(
        status.windows(3).any(|w| w == b"431") || status.len() < 8,
        "{status:?}"
    );

    // HTTP/3 too.
    let mut h3 = H3::connect(server.https, &pem, None).await;
    let request = http::Request::get("https://www.foobar.com/")
        .header("x-big", &big)
        .body(())
        .unwrap();
    let reply = h3.send(request).await;
    assert!(
        matches!(reply, Ok(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)) || reply.is_err(),
        "{reply:?}"
    );
}

/// curl (nghttp2) sends a header block bigger than a frame as HEADERS and CONTINUATION frames;
/// however far over the limit it is, the answer is a 431, not a connection error that leaves
/// the client with no status at all. (Past 64 KiB of fields nghttp2 refuses to send the
/// request itself, whatever the server.)
#[test]
fn curl_gets_431_over_http2_for_a_header_block_of_any_size() {
    if !support::installed("curl", &["--version"]) {
        return support::skip_without(
            "curl_gets_431_over_http2_for_a_header_block_of_any_size",
            "curl",
            "apt-get install curl",
        );
    }
    let server = Foobar::setup()
        .shipped_site()
        .edge("max_header_bytes = 4096")
        .start();
    let ca = server.state_path("curl-ca.pem");
    std::fs::write(&ca, server.certificate_pem()).unwrap();
    let resolve = format!("www.foobar.com:{}:127.0.0.1", server.https.port());
    // One frame; three frames (more than four times the limit); four frames, near nghttp2's
    // own 64 KiB.
    for size in [5_000, 40_000, 63_000] {
        for version in ["--http1.1", "--http2"] {
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                ])
                .args(["--retry", "0", "--max-time", "10", version, "--cacert"])
                .arg(&ca)
                .args(["--resolve", &resolve, "-H"])
                .arg(format!("X-Big: {}", "a".repeat(size)))
                .arg(format!("https://www.foobar.com:{}/", server.https.port()))
                .output()
                .unwrap();
            let expected = if version == "--http2" {
                "431 2"
            } else {
                "431 1.1"
            };
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                expected,
                "{size} bytes over {version}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_get_max_streams_requests_at_once() {
    use support::h2raw::{self, RawH2, code, flag::*, kind::*};
    let server = Foobar::setup()
        .file("large.bin", vec![0u8; 1 << 20])
        .edge("max_streams = 2")
        .start();
    let pem = server.certificate_pem();
    let mut h2 = RawH2::connect(server.https, &pem).await;
    // Three downloads this client never reads: the first two hold both slots.
    for stream in [1, 3, 5] {
        let get = h2raw::get("/large.bin");
        h2.send(HEADERS, END_HEADERS | END_STREAM, stream, &get)
            .await;
    }
    let seen = h2.outcome_on(5, Duration::from_secs(3)).await;
    assert_eq!(
        seen,
        h2raw::Seen::Reset(5, code::REFUSED_STREAM),
        "the third stream was not refused"
    );
}

/// `server.wait_for_log_after` without blocking the test's runtime.
async fn wait_for_log_async(server: &Foobar, skip: usize, needle: &str) -> String {
    let deadline = std::time::Instant::now() + support::DEADLINE;
    loop {
        if let Some(line) = server
            .log()
            .into_iter()
            .skip(skip)
            .find(|line| line.contains(needle))
        {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
