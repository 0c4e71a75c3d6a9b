//! The reverse proxy, end to end: the real binary in front of applications on loopback ports,
//! asked over HTTP/1.1, HTTP/2 and HTTP/3.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use support::{
    Foobar,
    upstream::Upstream,
    web::{ALL, Proto, fetch, get},
};

/// A site for www.foobar.com whose `/app/` goes to `upstreams` (the prefix taken off) with
/// the route's extra `lines`.
fn proxied(upstreams: &[&Upstream], lines: &str) -> support::Setup {
    let list: Vec<String> = upstreams
        .iter()
        .map(|u| format!("\"{}\"", u.url()))
        .collect();
    Foobar::setup().tables(&format!(
        "[[site]]\nnames = [\"www.foobar.com\", \"localhost\"]\nroot = \"{{dir}}/public\"\n\
         [[site.route]]\npath = \"/app/\"\nstrip_prefix = true\nproxy = [{}]\n{lines}\n",
        list.join(", ")
    ))
}

fn json(reply: &support::web::Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&reply.body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_upstream_with_who_asked_and_without_hop_by_hop_fields() {
    let app = Upstream::start("app").await;
    let server = proxied(&[&app], "").start();
    let pem = server.certificate_pem();
    for proto in ALL {
        let request = get(
            "/app/hello?x=1",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=6.6.6.6"),
                ("x-forwarded-proto", "http"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic secret"),
            ],
        );
        let reply = fetch(proto, server.https, &pem, request).await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        assert_eq!(reply.header("x-upstream"), Some("app"), "{proto:?}");
        let seen = json(&reply);
        assert_eq!(
            seen["uri"], "/hello?x=1",
            "{proto:?}: the prefix is stripped"
        );
        assert_eq!(seen["version"], "HTTP/1.1", "{proto:?}");
        let headers = &seen["headers"];
        assert_eq!(headers["host"], "www.foobar.com", "{proto:?}");
        // A client cannot choose the address the upstream sees.
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{proto:?}");
        assert_eq!(headers["x-forwarded-proto"], "https", "{proto:?}");
        assert_eq!(headers["x-forwarded-host"], "www.foobar.com", "{proto:?}");
        assert_eq!(
            headers["forwarded"], "for=127.0.0.1;proto=https;host=www.foobar.com",
            "{proto:?}"
        );
        let via = match proto {
            Proto::H1 => "1.1 foobar",
            Proto::H2 => "2 foobar",
            Proto::H3 => "3 foobar",
        };
        assert_eq!(headers["via"], via, "{proto:?}");
        // Only `trailers` goes on (gRPC needs it).
        assert_eq!(headers["te"], "trailers", "{proto:?}");
        assert_eq!(headers.get("proxy-authorization"), None, "{proto:?}");
    }
    // Over HTTP/1.1, fields the client names in Connection go too.
    let raw = raw_h1(
        &server,
        &pem,
        "GET /app/x HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n",
    )
    .await;
    assert!(raw.contains("\"x-kept\":\"2\""), "{raw}");
    assert!(!raw.contains("x-secret"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_fields_from_a_trusted_proxy_are_kept_and_added_to() {
    let app = Upstream::start("app").await;
    let server = proxied(&[&app], "")
        .edge("trusted_proxies = [\"127.0.0.0/8\"]")
        .start();
    let pem = server.certificate_pem();
    for proto in ALL {
        let request = get(
            "/app/",
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=198.51.100.7"),
            ],
        );
        let seen = json(&fetch(proto, server.https, &pem, request).await);
        let headers = &seen["headers"];
        assert_eq!(
            headers["x-forwarded-for"], "198.51.100.7, 127.0.0.1",
            "{proto:?}"
        );
        assert_eq!(
            headers["forwarded"], "for=198.51.100.7, for=127.0.0.1;proto=https;host=www.foobar.com",
            "{proto:?}"
        );
    }
}

/// Sends raw HTTP/1.1 over TLS and returns the whole response as text.
async fn raw_h1(server: &Foobar, pem: &[u8], request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = support::web::connect(
        server.https,
        "www.foobar.com",
        support::web::tls_config(pem, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_arrive_one_by_one() {
    let app = Upstream::start("app").await;
    let server = proxied(&[&app], "").start();
    let pem = server.certificate_pem();
    for proto in [Proto::H1, Proto::H2] {
        let stream = support::web::connect(
            server.https,
            "www.foobar.com",
            support::web::tls_config(
                &pem,
                &[if proto == Proto::H1 {
                    &b"http/1.1"[..]
                } else {
                    &b"h2"[..]
                }],
            ),
        )
        .await
        .unwrap();
        let arrivals = events(proto, stream).await;
        assert_eq!(arrivals.len(), 5, "{proto:?}");
        // 300 ms apart at the upstream: each arrives on its own, not all at the end.
        let spread = arrivals[4] - arrivals[0];
        assert!(
            spread >= Duration::from_millis(900),
            "{proto:?}: events arrived within {spread:?}"
        );
    }
}

/// GETs /app/sse on `stream`: when each event arrived.
async fn events(
    proto: Proto,
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> Vec<Duration> {
    let (head, frames) = support::web::frame_arrivals(
        proto,
        stream,
        "/app/sse",
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.headers.get("content-encoding"),
        None,
        "a stream is not compressed"
    );
    let mut arrivals = Vec::new();
    let mut text = String::new();
    for (at, data) in frames {
        text.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = text.find("\n\n") {
            text.drain(..end + 2);
            arrivals.push(at);
        }
    }
    arrivals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_gets_504_and_no_upstream_up_a_fast_503() {
    let app = Upstream::start("app").await;
    let server = proxied(
        &[&app],
        "response_timeout = 1\nconnect_timeout = 1\nmax_fails = 1\nfail_timeout = 30",
    )
    .start();
    let pem = server.certificate_pem();
    let started = Instant::now();
    let slow = fetch(Proto::H2, server.https, &pem, get("/app/slow?ms=3000", &[])).await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    server.wait_for_log("proxy: no upstream answered");

    // Killed: the first request finds it refusing (502) and marks it down; the next ones are
    // answered 503 at once, with no connection tried.
    let app2 = Upstream::start("app2").await;
    let server = proxied(
        &[&app2],
        "connect_timeout = 1\nmax_fails = 1\nfail_timeout = 30",
    )
    .start();
    app2.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = fetch(Proto::H1, server.https, &pem_of(&server), get("/app/", &[])).await;
    assert_eq!(first.status, StatusCode::BAD_GATEWAY);
    for proto in ALL {
        let started = Instant::now();
        let reply = fetch(proto, server.https, &pem_of(&server), get("/app/", &[])).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{proto:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{proto:?}: {:?}",
            started.elapsed()
        );
    }
    let line = server.wait_for_log("no upstream is up");
    assert!(line.contains("route=www.foobar.com/app/"), "{line}");
}

fn pem_of(server: &Foobar) -> Vec<u8> {
    server.certificate_pem()
}

/// An HTTP/2 connection to the server, for many requests.
async fn h2_client(
    server: &Foobar,
    pem: &[u8],
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>> {
    h2_client_of(server, pem).await
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// An HTTP/2 connection whose requests have bodies of type `B`.
async fn h2_client_of<B>(server: &Foobar, pem: &[u8]) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = support::web::connect(
        server.https,
        "www.foobar.com",
        support::web::tls_config(pem, &[b"h2"]),
    )
    .await
    .unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `request` on `sender`: the status and body, or what went wrong.
async fn send(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>,
    request: Request<Bytes>,
) -> Result<(StatusCode, Bytes), String> {
    use http_body_util::BodyExt;
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request.map(http_body_util::Full::new))
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_fails_no_get_and_no_post_is_sent_twice() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };
    let one = Upstream::start("one").await;
    let two = Upstream::start("two").await;
    let server = proxied(
        &[&one, &two],
        "connect_timeout = 1\nmax_fails = 1\nfail_timeout = 5\n\
         [site.route.health]\npath = \"/health\"\ninterval = 0.5\ntimeout = 0.5\nfall = 1\nrise = 1",
    )
    .start();
    let pem = server.certificate_pem();
    let running = Arc::new(AtomicBool::new(true));
    let gets_failed = Arc::new(AtomicU64::new(0));
    let gets_done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..4 {
        let mut sender = h2_client(&server, &pem).await;
        let (running, failed, done) = (running.clone(), gets_failed.clone(), gets_done.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while running.load(Ordering::Relaxed) {
                match send(&mut sender, get("/app/echo", &[])).await {
                    Ok((StatusCode::OK, _)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.push(format!("client {client}: {other:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            failures
        }));
    }
    // POSTs, each with an id of its own, a body the upstream reads whole.
    let posted = {
        let running = running.clone();
        let mut sender = h2_client(&server, &pem).await;
        tokio::spawn(async move {
            let mut answered = Vec::new();
            let mut id = 0;
            while running.load(Ordering::Relaxed) {
                id += 1;
                let request = Request::post(format!("https://www.foobar.com/app/post?id={id}"))
                    .body(Bytes::from(vec![b'p'; 20_000]))
                    .unwrap();
                if let Ok((StatusCode::OK, _)) = send(&mut sender, request).await {
                    answered.push(id.to_string());
                }
            }
            (id, answered)
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = gets_done.load(Ordering::Relaxed);
    one.kill();
    server.wait_for_log("upstream=http://127.0.0.1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    let (sent_posts, answered) = posted.await.unwrap();
    let after = gets_done.load(Ordering::Relaxed);
    eprintln!(
        "GETs: {before} before the kill, {} after; POSTs sent {sent_posts}, answered {}",
        after - before,
        answered.len()
    );
    assert!(after - before > 100, "traffic went on after the kill");
    assert!(failures.is_empty(), "failed GETs: {failures:?}");
    // No POST reached the upstreams twice; every one answered 200 arrived exactly once.
    let mut arrived = one.posts();
    for (id, count) in two.posts() {
        *arrived.entry(id).or_insert(0) += count;
    }
    for (id, count) in &arrived {
        assert_eq!(*count, 1, "POST {id} arrived {count} times");
    }
    for id in &answered {
        assert_eq!(arrived.get(id), Some(&1), "POST {id} was answered 200");
    }
    assert!(answered.len() > 10, "{}", answered.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_goes_up_and_down_in_bounded_memory() {
    let app = Upstream::start("app").await;
    let server = proxied(&[&app], "max_body_bytes = 2147483648").start();
    let pem = server.certificate_pem();
    let size: u64 = 1 << 30;
    // Down: the body is read as it comes and counted.
    let mut sender = h2_client(&server, &pem).await;
    let response = {
        sender.ready().await.unwrap();
        let request = get(&format!("/app/bytes?n={size}"), &[]);
        sender
            .send_request(request.map(http_body_util::Full::new))
            .await
            .unwrap()
    };
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut got, mut sum) = (0u64, 0u64);
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            got += data.len() as u64;
            sum = data.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
        }
    }
    assert_eq!(got, size);
    let expected_sum: u64 = (0..size).map(|i| i % 65_536 % 251).sum();
    assert_eq!(sum, expected_sum);
    // Up: a streamed body of unknown length (HTTP/2 without content-length).
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(4);
    let chunk = Bytes::from(vec![3u8; 1 << 20]);
    tokio::spawn(async move {
        for _ in 0..1024 {
            if tx
                .send(Ok(http_body::Frame::data(chunk.clone())))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut upload = h2_client_of::<Boxed>(&server, &pem).await;
    upload.ready().await.unwrap();
    let request = Request::post("https://www.foobar.com/app/upload")
        .body(http_body_util::StreamBody::new(stream).boxed())
        .unwrap();
    let response = upload.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&text).trim(),
        format!("{size} {}", 3 * size)
    );
    let peak = peak_rss_kib(server.pid());
    eprintln!("foobar's peak resident memory: {peak} KiB after 1 GiB down and 1 GiB up");
    assert!(peak < 150 * 1024, "peak {peak} KiB");
}

/// The peak resident memory of process `pid` (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Which upstream answered each of `count` GETs of `/app/` with `headers`, in order.
async fn answered_by(
    server: &Foobar,
    pem: &[u8],
    count: usize,
    headers: &[(&str, &str)],
) -> Vec<String> {
    let mut sender = h2_client(server, pem).await;
    let mut names = Vec::new();
    for _ in 0..count {
        let (status, body) = send(&mut sender, get("/app/", headers)).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        names.push(seen["upstream"].as_str().unwrap().to_string());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_are_chosen_by_each_policy() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let policies = [
        "round_robin",
        "client_ip",
        "header:X-User",
        "cookie:lb",
        "least_conn",
    ];
    for policy in policies {
        let server = proxied(&[&a, &b, &c], &format!("policy = \"{policy}\"")).start();
        let pem = server.certificate_pem();
        match policy {
            "round_robin" => {
                let names = answered_by(&server, &pem, 30, &[]).await;
                for name in ["a", "b", "c"] {
                    let share = names.iter().filter(|n| *n == name).count();
                    assert_eq!(share, 10, "{names:?}");
                }
            }
            "client_ip" => {
                let names = answered_by(&server, &pem, 10, &[]).await;
                assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
            }
            "header:X-User" => {
                let mut seen = std::collections::BTreeSet::new();
                for user in 0..20 {
                    let user = format!("user-{user}");
                    let names = answered_by(&server, &pem, 4, &[("x-user", &user)]).await;
                    assert!(names.iter().all(|n| *n == names[0]), "{user}: {names:?}");
                    seen.insert(names[0].clone());
                }
                assert_eq!(seen.len(), 3, "twenty users over three upstreams");
            }
            "cookie:lb" => {
                // The first answer sets the cookie; with it, every request goes to one upstream.
                let first =
                    support::web::fetch(Proto::H2, server.https, &pem, get("/app/", &[])).await;
                let cookie = first.header("set-cookie").unwrap().to_string();
                assert!(
                    cookie.starts_with("lb=") && cookie.contains("HttpOnly; Secure"),
                    "{cookie}"
                );
                let value = cookie.split(';').next().unwrap().to_string();
                let first_name = json(&first)["upstream"].as_str().unwrap().to_string();
                let names = answered_by(&server, &pem, 10, &[("cookie", &value)]).await;
                assert!(
                    names.iter().all(|n| *n == first_name),
                    "{first_name}: {names:?}"
                );
            }
            "least_conn" => {
                // One slow request holds an upstream; the next ones go to the other two.
                let held = {
                    let (addr, pem) = (server.https, pem.clone());
                    tokio::spawn(async move {
                        support::web::fetch(Proto::H2, addr, &pem, get("/app/slow?ms=1500", &[]))
                            .await
                    })
                };
                tokio::time::sleep(Duration::from_millis(300)).await;
                let names = answered_by(&server, &pem, 12, &[]).await;
                assert_eq!(held.await.unwrap().status, StatusCode::OK);
                let busy = ["a", "b", "c"]
                    .into_iter()
                    .find(|name| !names.iter().any(|n| n == name));
                assert!(busy.is_some(), "the busy upstream got none: {names:?}");
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_unix_and_https_upstreams_are_reached() {
    // h2c: multiplexed, with trailers passed (a gRPC call's status).
    let grpc = Upstream::start("grpc").await;
    let server = Foobar::setup()
        .tables(&format!(
            "[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{{dir}}/public\"\n\
             [[site.route]]\npath = \"/grpc/\"\nstrip_prefix = true\nproxy = [\"h2c://{}\"]\n",
            grpc.addr
        ))
        .start();
    let pem = server.certificate_pem();
    for proto in [Proto::H2, Proto::H3] {
        let (head, trailers) = trailers_of(proto, &server, &pem, "/grpc/trailers").await;
        assert_eq!(head.status, StatusCode::OK, "{proto:?}");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..]),
            "{proto:?}"
        );
    }
    let echo = support::web::fetch(Proto::H1, server.https, &pem, get("/grpc/echo", &[])).await;
    assert_eq!(json(&echo)["version"], "HTTP/2.0", "h2c upstream");

    // A Unix socket.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let _unix = Upstream::start_unix(&socket, "unix").await;
    // HTTPS, verified against a CA file, with its own name.
    let made = rcgen::generate_simple_self_signed(vec!["app.internal".to_string()]).unwrap();
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    std::fs::write(dir.path().join("ca.pem"), &cert).unwrap();
    let tls = Upstream::start_tls("tls", (cert.as_bytes(), key.as_bytes())).await;
    let server = Foobar::setup()
        .tables(&format!(
            "[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{{dir}}/public\"\n\
             [[site.route]]\npath = \"/unix/\"\nstrip_prefix = true\nproxy = [\"unix:{sock}\"]\n\
             [[site.route]]\npath = \"/tls/\"\nstrip_prefix = true\nproxy = [\"https://127.0.0.1:{port}\"]\n\
             ca = \"{ca}\"\ntls_name = \"app.internal\"\n\
             [[site.route]]\npath = \"/untrusted/\"\nstrip_prefix = true\nproxy = [\"https://127.0.0.1:{port}\"]\n\
             tls_name = \"app.internal\"\n",
            sock = socket.display(),
            port = tls.addr.port(),
            ca = dir.path().join("ca.pem").display(),
        ))
        .start();
    let pem = server.certificate_pem();
    for proto in ALL {
        let reply = support::web::fetch(proto, server.https, &pem, get("/unix/x", &[])).await;
        assert_eq!(reply.header("x-upstream"), Some("unix"), "{proto:?}");
        let reply = support::web::fetch(proto, server.https, &pem, get("/tls/x", &[])).await;
        assert_eq!(reply.header("x-upstream"), Some("tls"), "{proto:?}");
    }
    // Without the CA, the upstream's certificate is not trusted: no connection.
    let reply = support::web::fetch(Proto::H2, server.https, &pem, get("/untrusted/x", &[])).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    server.wait_for_log("tls:");
}

/// GETs `path` over `proto`: the response head and its trailers.
async fn trailers_of(
    proto: Proto,
    server: &Foobar,
    pem: &[u8],
    path: &str,
) -> (http::response::Parts, http::HeaderMap) {
    use http_body_util::BodyExt;
    match proto {
        Proto::H3 => {
            let (mut sender, _endpoint) =
                support::web::h3_client(server.https, pem, "www.foobar.com", false)
                    .await
                    .unwrap();
            let request = Request::get(format!("https://www.foobar.com{path}"))
                .header("te", "trailers")
                .body(())
                .unwrap();
            let mut stream = sender.send_request(request).await.unwrap();
            // A server that has answered may stop reading (RFC 9114 section 4.1.2).
            let _ = stream.finish().await;
            let response = stream.recv_response().await.unwrap();
            while stream.recv_data().await.unwrap().is_some() {}
            let trailers = stream.recv_trailers().await.unwrap().unwrap_or_default();
            (response.into_parts().0, trailers)
        }
        _ => {
            let mut sender = h2_client(server, pem).await;
            sender.ready().await.unwrap();
            let request = get(path, &[("te", "trailers")]);
            let response = sender
                .send_request(request.map(http_body_util::Full::new))
                .await
                .unwrap();
            let (parts, body) = response.into_parts();
            let collected = body.collect().await.unwrap();
            let trailers = collected.trailers().cloned().unwrap_or_default();
            (parts, trailers)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_and_never_more_than_allowed() {
    let app = Upstream::start("app").await;
    // By name: resolved at start.
    let server = Foobar::setup()
        .tables(&format!(
            "[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{{dir}}/public\"\n\
             [[site.route]]\npath = \"/app/\"\nstrip_prefix = true\n\
             proxy = [\"http://localhost:{}\"]\nmax_connections = 2\n",
            app.addr.port()
        ))
        .start();
    let pem = server.certificate_pem();
    // Sequential requests reuse one connection.
    let names = answered_by(&server, &pem, 20, &[]).await;
    assert_eq!(names.len(), 20);
    let accepted = app
        .seen
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(accepted <= 2, "{accepted} connections for 20 requests");
    // Ten at once, each slow: all answered, over two connections at most.
    let mut calls = Vec::new();
    for _ in 0..10 {
        let (addr, pem) = (server.https, pem.clone());
        calls.push(tokio::spawn(async move {
            support::web::fetch(Proto::H2, addr, &pem, get("/app/slow?ms=200", &[])).await
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap().status, StatusCode::OK);
    }
    let most = app
        .seen
        .most_open
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(most <= 2, "{most} connections open at once");
    // And the metrics say so.
    let admin = server.admin();
    let (_, metrics) = tokio::task::spawn_blocking(move || support::admin_get(admin, "/metrics"))
        .await
        .unwrap();
    let route = format!(
        "route=\"www.foobar.com/app/\",upstream=\"http://localhost:{}\"",
        app.addr.port()
    );
    let series = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&route))
            .unwrap_or_else(|| panic!("{name} {route}\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(series("foobar_upstream_requests_total"), "0", "1xx first");
    assert!(
        metrics.contains(&format!(
            "foobar_upstream_requests_total{{{route},status=\"2xx\"}} 30"
        )),
        "{metrics}"
    );
    assert_eq!(series("foobar_upstream_up"), "1");
    support::promtool_check(
        "connections_are_kept_alive_and_never_more_than_allowed",
        &metrics,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_upstreams_in_place_and_keeps_what_checks_know() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.seen
        .healthy
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let health = "[site.route.health]\npath = \"/health\"\ninterval = 0.3\nfall = 1\nrise = 1";
    let server = proxied(&[&a], health).start();
    let pem = server.certificate_pem();
    server.wait_for_log("upstream down: health check fails");
    let reply = support::web::fetch(Proto::H2, server.https, &pem, get("/app/", &[])).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    // Reloaded with b added: no new process, and a (still failing its checks) gets nothing,
    // not even the first request after the reload.
    let pid = server.serving_pid();
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    let list = format!("proxy = [\"{}\"]", a.url());
    std::fs::write(
        server.config_path(),
        config.replace(
            &list,
            &format!("proxy = [\"{}\", \"{}\"]", a.url(), b.url()),
        ),
    )
    .unwrap();
    let reloaded = server.control("reload");
    assert!(
        String::from_utf8_lossy(&reloaded.stdout).contains("in place"),
        "{reloaded:?}"
    );
    assert_eq!(server.serving_pid(), pid);
    let names = answered_by(&server, &pem, 10, &[]).await;
    assert!(names.iter().all(|n| n == "b"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_and_reloads_under_proxy_load_lose_nothing() {
    let app = Upstream::start("app").await;
    let server = proxied(&[&app], "").edge("shutdown_timeout = 5").start();
    let pem = server.certificate_pem();
    let load = support::load::Load::start(
        server.https,
        server.dns,
        &pem,
        "/app/bytes?n=2048",
        2048,
        "8.8.8.8",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..6 {
        let command = if round % 2 == 0 { "upgrade" } else { "reload" };
        let (ok, stdout, stderr) = support::control_async(&server, command).await;
        assert!(ok, "{command}: {stdout}{stderr}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let report = load.stop().await;
    eprintln!("{}", report.summary());
    for client in &report.clients {
        assert!(client.sent > 20, "{}", report.summary());
        assert_eq!(client.failed, 0, "{}", report.summary());
    }
}
