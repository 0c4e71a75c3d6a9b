//! DNS over TLS (RFC 7858, TLS 1.3 only), over QUIC (RFC 9250) and over HTTPS (RFC 8484) from
//! the same process, with the edge's certificate: Knot's `kdig` and BIND's `dig` get the answers
//! they get over UDP; pipelined queries over TLS come back in order on one connection; a query
//! per QUIC stream, and the RFC's errors; GET and POST over HTTP/1.1, HTTP/2 and HTTP/3, and the
//! statuses of what is not a query; the metrics count each transport; upgrades lose no query
//! over any of them.
#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, process::Command};

use hickory_proto::{op::Message, rr::RecordType};
use rustls_pki_types::pem::PemObject;
use support::{Foobar, installed, output_within, query_message, shipped_zone, skip_without, web};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn dot_server() -> (Foobar, SocketAddr) {
    let server = Foobar::setup()
        .zone("foobar.com.zone", &shipped_zone())
        .dns("tls_listen = [\"127.0.0.1:0\"]")
        .start();
    let dot = server.address_in("dns listening on tls");
    (server, dot)
}

/// Whether Knot's `kdig` or BIND's `dig` is missing: then `test` is skipped, saying why (or fails
/// where FOOBAR_REQUIRE_INTEROP=1 makes them required).
fn clients_missing(test: &str) -> bool {
    let missing = [("kdig", "knot-dnsutils"), ("dig", "bind9-dnsutils")]
        .into_iter()
        .find(|(tool, _)| !installed(tool, &["-v"]));
    if let Some((tool, package)) = missing {
        skip_without(test, tool, &format!("apt-get install {package}"));
    }
    missing.is_some()
}

/// The arguments that send `kdig` or `dig` to `addr`.
fn at(addr: SocketAddr) -> Vec<String> {
    vec![
        format!("@{}", addr.ip()),
        "-p".into(),
        addr.port().to_string(),
    ]
}

/// Asserts that `kdig` and `dig` with `flag` (`+tls`, `+https`) at `encrypted` get, for a name,
/// a type at the apex and a name that does not exist, the answers `kdig` gets over UDP at `udp`.
fn same_as_udp(udp: SocketAddr, encrypted: SocketAddr, flag: &str) {
    for (name, rtype) in [
        ("www.foobar.com", "A"),
        ("foobar.com", "MX"),
        ("nothere.foobar.com", "A"),
    ] {
        let question = [name, rtype, "+noall", "+answer"]
            .map(String::from)
            .to_vec();
        let plain = answers("kdig", &[at(udp), question.clone()].concat());
        for tool in ["kdig", "dig"] {
            let got = answers(
                tool,
                &[at(encrypted), vec![flag.into()], question.clone()].concat(),
            );
            assert_eq!(got, plain, "{name} {rtype} with {flag} ({tool})");
        }
    }
}

/// The answer section of a `kdig` or `dig` run, records only, sorted.
fn answers(tool: &str, args: &[String]) -> Vec<String> {
    let output = output_within(Command::new(tool).args(args));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{tool} {args:?}: {text}");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with(';'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

#[test]
fn kdig_and_dig_get_over_tls_what_they_get_over_udp() {
    if clients_missing("kdig_and_dig_get_over_tls_what_they_get_over_udp") {
        return;
    }
    let (server, dot) = dot_server();
    same_as_udp(server.dns, dot, "+tls");
    let www = answers(
        "kdig",
        &[
            at(dot),
            ["+tls", "www.foobar.com", "A", "+short"]
                .map(String::from)
                .to_vec(),
        ]
        .concat(),
    );
    assert_eq!(www, vec!["8.8.8.8".to_string()]);

    let (_, metrics) = support::admin_get(server.admin(), "/metrics");
    assert!(
        metrics.contains("transport=\"dot\",type=\"A\",rcode=\"NOERROR\""),
        "{metrics}"
    );
    // `ctl status` lists the listener.
    let status = output_within(Command::new(support::binary()).args([
        "ctl",
        "--admin",
        &server.admin().to_string(),
        "status",
    ]));
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("dns over tls 127.0.0.1:0"), "{said}");
}

#[tokio::test]
async fn dns_over_tls_is_tls_1_3_as_zone_transfers_over_it_need() {
    let (server, dot) = dot_server();
    let pem = server.certificate_pem();
    assert!(
        web::connect(dot, "foobar.com", web::tls_config(&pem, &[b"dot"]))
            .await
            .is_ok()
    );
    // RFC 9103 section 9: XoT is TLS 1.3 or later; the listener serves nothing older.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls12.alpn_protocols = vec![b"dot".to_vec()];
    let refused = web::connect(dot, "foobar.com", tls12).await;
    assert!(refused.is_err(), "a TLS 1.2 handshake went through");
}

#[tokio::test]
async fn pipelined_queries_over_tls_come_back_in_order_on_one_connection() {
    let (server, dot) = dot_server();
    let config = web::tls_config(&server.certificate_pem(), &[b"dot"]);
    let mut stream = web::connect(dot, "foobar.com", config).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
    let names = [
        "www.foobar.com",
        "foobar.com",
        "mail.foobar.com",
        "nothere.foobar.com",
    ];
    let mut out = Vec::new();
    for (id, name) in names.iter().enumerate() {
        let mut query = query_message(name, RecordType::A);
        query[..2].copy_from_slice(&(id as u16).to_be_bytes());
        out.extend_from_slice(&(query.len() as u16).to_be_bytes());
        out.extend_from_slice(&query);
    }
    // All of them in one write: the server answers each, in order.
    stream.write_all(&out).await.unwrap();
    for (id, name) in names.iter().enumerate() {
        let len = stream.read_u16().await.unwrap();
        let mut answer = vec![0u8; usize::from(len)];
        stream.read_exact(&mut answer).await.unwrap();
        let message = Message::from_vec(&answer).unwrap();
        assert_eq!(message.metadata.id, id as u16, "{name}");
        assert_eq!(
            message.queries[0].name().to_ascii().trim_end_matches('.'),
            *name
        );
    }
    // The connection stays open for more.
    let query = query_message("www.foobar.com", RecordType::A);
    stream.write_u16(query.len() as u16).await.unwrap();
    stream.write_all(&query).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await.unwrap();
    let message = Message::from_vec(&answer).unwrap();
    assert!(
        message
            .answers
            .iter()
            .any(|rr| rr.data.to_string() == "8.8.8.8")
    );
}

fn doh_server() -> Foobar {
    Foobar::setup()
        .zone("foobar.com.zone", &shipped_zone())
        .dns("https_path = \"/dns-query\"")
        .start()
}

fn post(path: &str, media: &str, body: Vec<u8>) -> http::Request<bytes::Bytes> {
    http::Request::post(format!("https://www.foobar.com{path}"))
        .header("content-type", media)
        .body(bytes::Bytes::from(body))
        .unwrap()
}

#[tokio::test]
async fn dns_over_https_answers_get_and_post_over_http1_http2_and_http3() {
    let server = doh_server();
    let pem = server.certificate_pem();
    let query = query_message("www.foobar.com", RecordType::A);
    let encoded = data_encoding::BASE64URL_NOPAD.encode(&query);
    for proto in web::ALL {
        let got = web::fetch(
            proto,
            server.https,
            &pem,
            web::get(&format!("/dns-query?dns={encoded}"), &[]),
        )
        .await;
        let posted = web::fetch(
            proto,
            server.https,
            &pem,
            post("/dns-query", "application/dns-message", query.clone()),
        )
        .await;
        for reply in [got, posted] {
            assert_eq!(reply.status, 200, "{proto:?}: {:?}", reply.body);
            assert_eq!(
                reply.header("content-type"),
                Some("application/dns-message")
            );
            assert_eq!(
                reply.header("content-length"),
                Some(&*reply.body.len().to_string()),
                "{proto:?}"
            );
            let message = Message::from_vec(&reply.body).unwrap();
            // Fresh for as long as the answer's TTL.
            let ttl = message.answers[0].ttl;
            assert_eq!(
                reply.header("cache-control"),
                Some(&*format!("max-age={ttl}"))
            );
            assert!(
                message
                    .answers
                    .iter()
                    .any(|rr| rr.data.to_string() == "8.8.8.8"),
                "{proto:?}: {message:?}"
            );
        }
        // What is not a DNS query over HTTPS gets the status RFC 8484 and HTTP give it.
        let statuses = [
            (web::get("/dns-query", &[]), 400),
            (web::get("/dns-query?dns=not*base64", &[]), 400),
            (post("/dns-query", "application/json", query.clone()), 415),
            (
                post("/dns-query", "application/dns-message", vec![0; 70_000]),
                413,
            ),
            (
                post("/dns-query", "application/dns-message", b"xx".to_vec()),
                400,
            ),
            (
                http::Request::put("https://www.foobar.com/dns-query")
                    .body(bytes::Bytes::new())
                    .unwrap(),
                405,
            ),
            // The path exactly: below it is the site's.
            (web::get(&format!("/dns-query/x?dns={encoded}"), &[]), 404),
        ];
        for (request, status) in statuses {
            let uri = request.uri().clone();
            let reply = web::fetch(proto, server.https, &pem, request).await;
            assert_eq!(reply.status, status, "{proto:?} {uri}");
        }
    }
    let (_, metrics) = support::admin_get(server.admin(), "/metrics");
    assert!(
        metrics.contains("transport=\"doh\",type=\"A\",rcode=\"NOERROR\""),
        "{metrics}"
    );
}

#[test]
fn kdig_and_dig_get_over_https_what_they_get_over_udp() {
    if clients_missing("kdig_and_dig_get_over_https_what_they_get_over_udp") {
        return;
    }
    let server = doh_server();
    same_as_udp(server.dns, server.https, "+https");
}

/// A DNS-over-QUIC connection to `server`'s `quic_listen` address, trusting its certificate.
async fn doq_connect(server: &Foobar, addr: SocketAddr) -> (quinn::Endpoint, quinn::Connection) {
    let endpoint = web::quic_client_for(&server.certificate_pem(), b"doq");
    let connection = endpoint.connect(addr, "foobar.com").unwrap().await.unwrap();
    (endpoint, connection)
}

/// One query on a new stream of `connection` (its ID 0, as RFC 9250 wants): the answer.
async fn doq_query(connection: &quinn::Connection, message: &[u8]) -> Result<Message, String> {
    let bytes = doq_exchange(connection, message, 65_537).await?;
    let (length, answer) = bytes.split_first_chunk::<2>().ok_or("short answer")?;
    assert_eq!(usize::from(u16::from_be_bytes(*length)), answer.len());
    Message::from_vec(answer).map_err(|e| e.to_string())
}

/// `message` with its length on a new stream of `connection`, then all the stream brings back
/// (at most `limit` bytes).
async fn doq_exchange(
    connection: &quinn::Connection,
    message: &[u8],
    limit: usize,
) -> Result<Vec<u8>, String> {
    let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
    let framed = [&(message.len() as u16).to_be_bytes()[..], message].concat();
    send.write_all(&framed).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    receive.read_to_end(limit).await.map_err(|e| e.to_string())
}

/// A query for `name` and `rtype` with the message ID 0 that DNS over QUIC wants.
fn doq_message(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut query = query_message(name, rtype);
    query[..2].copy_from_slice(&[0, 0]);
    query
}

#[tokio::test]
async fn dns_over_quic_answers_a_query_per_stream_and_closes_on_a_protocol_error() {
    let server = Foobar::setup()
        .zone("foobar.com.zone", &shipped_zone())
        .dns("quic_listen = [\"127.0.0.1:0\"]")
        .start();
    let doq = server.address_in("dns listening on quic");
    let (_endpoint, connection) = doq_connect(&server, doq).await;
    // Queries on streams of their own, at once; each answer as over UDP.
    let names = [
        "www.foobar.com",
        "foobar.com",
        "mail.foobar.com",
        "nothere.foobar.com",
    ];
    let asked = names.map(|name| {
        let (connection, query) = (connection.clone(), doq_message(name, RecordType::A));
        tokio::spawn(async move { doq_query(&connection, &query).await })
    });
    for (name, asked) in names.iter().zip(asked) {
        let answer = asked.await.unwrap().unwrap();
        let udp = support::query_udp(server.dns, name, RecordType::A);
        assert_eq!(answer.metadata.id, 0);
        assert_eq!(
            answer.metadata.response_code, udp.metadata.response_code,
            "{name}"
        );
        assert_eq!(answer.answers, udp.answers, "{name}");
    }
    let (_, metrics) = support::admin_get(server.admin(), "/metrics");
    assert!(
        metrics.contains("transport=\"doq\",type=\"A\",rcode=\"NOERROR\""),
        "{metrics}"
    );
    // A message ID other than 0 is a protocol error: the connection is closed with
    // DOQ_PROTOCOL_ERROR (RFC 9250 section 4.3).
    let _ = doq_query(&connection, &query_message("www.foobar.com", RecordType::A)).await;
    match connection.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(2));
        }
        other => panic!("closed with {other:?}"),
    }
}

/// One DNS-over-TLS query for www.foobar.com A on a connection of its own: whether 8.8.8.8 came.
async fn dot_once(dot: SocketAddr, pem: &[u8]) -> Result<(), String> {
    let config = web::tls_config(pem, &[b"dot"]);
    let mut stream = web::connect(dot, "foobar.com", config)
        .await
        .map_err(|e| e.to_string())?;
    let query = query_message("www.foobar.com", RecordType::A);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let len = stream.read_u16().await.map_err(|e| e.to_string())?;
    let mut answer = vec![0u8; usize::from(len)];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let message = Message::from_vec(&answer).map_err(|e| e.to_string())?;
    has_www(&message)
}

fn has_www(message: &Message) -> Result<(), String> {
    if message
        .answers
        .iter()
        .any(|rr| rr.data.to_string() == "8.8.8.8")
    {
        Ok(())
    } else {
        Err(format!("{message:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_lose_no_query_over_tls_https_or_quic() {
    let server = Foobar::setup()
        .zone("foobar.com.zone", &shipped_zone())
        .dns("tls_listen = [\"127.0.0.1:0\"]")
        .dns("quic_listen = [\"127.0.0.1:0\"]")
        .dns("https_path = \"/dns-query\"")
        .start();
    let (dot, doq) = (
        server.address_in("dns listening on tls"),
        server.address_in("dns listening on quic"),
    );
    let pem = server.certificate_pem();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each client asks again and again, each time on a new connection, while the server is
    // upgraded: every query must be answered.
    let client = |transport: &'static str| {
        let (stop, pem, https) = (stop.clone(), pem.clone(), server.https);
        tokio::spawn(async move {
            let (mut answered, mut failed) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let once = async {
                    if transport == "dot" {
                        return dot_once(dot, &pem).await;
                    }
                    let query = query_message("www.foobar.com", RecordType::A);
                    let encoded = data_encoding::BASE64URL_NOPAD.encode(&query);
                    let path = format!("/dns-query?dns={encoded}");
                    let reply = web::fetch(web::Proto::H2, https, &pem, web::get(&path, &[])).await;
                    if reply.status != 200 {
                        return Err(format!("status {}", reply.status));
                    }
                    has_www(&Message::from_vec(&reply.body).map_err(|e| e.to_string())?)
                };
                match tokio::time::timeout(std::time::Duration::from_secs(5), once).await {
                    Ok(Ok(())) => answered += 1,
                    Ok(Err(e)) => failed.push(e),
                    Err(_) => failed.push("no answer within 5 s".to_string()),
                }
            }
            (transport, answered, failed)
        })
    };
    // A DNS-over-QUIC client keeps one connection and asks on it, stream after stream, until
    // the server closes it with DOQ_NO_ERROR (RFC 9250 section 4.3: what the old process does
    // once it has answered the queries in hand); then it connects again. Nothing else may
    // fail: a packet of the old connection read by the new process goes back to the old one.
    // What the DNS-over-QUIC client has had answered so far: each upgrade waits for it to be
    // asking the serving process, so that each upgrade closes its connection once.
    let doq_answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let doq_client = {
        let (stop, pem, progress) = (stop.clone(), pem.clone(), doq_answered.clone());
        tokio::spawn(async move {
            let endpoint = web::quic_client_for(&pem, b"doq");
            let (mut answered, mut closed, mut failed) = (0usize, 0usize, Vec::new());
            let query = doq_message("www.foobar.com", RecordType::A);
            let mut open: Option<quinn::Connection> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let connection = match &open {
                    Some(connection) => connection.clone(),
                    None => match endpoint.connect(doq, "foobar.com").unwrap().await {
                        Ok(connection) => open.insert(connection).clone(),
                        Err(e) => {
                            failed.push(format!("connect: {e}"));
                            continue;
                        }
                    },
                };
                let asked = doq_query(&connection, &query);
                match tokio::time::timeout(std::time::Duration::from_secs(5), asked).await {
                    Ok(Ok(answer)) => match has_www(&answer) {
                        Ok(()) => {
                            answered += 1;
                            progress.store(answered, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => failed.push(e),
                    },
                    Ok(Err(e)) => match connection.close_reason() {
                        Some(quinn::ConnectionError::ApplicationClosed(close))
                            if close.error_code == quinn::VarInt::from_u32(0) =>
                        {
                            closed += 1;
                            open = None;
                        }
                        _ => failed.push(e),
                    },
                    Err(_) => failed.push("no answer within 5 s".to_string()),
                }
            }
            (answered, closed, failed)
        })
    };
    let clients = [client("dot"), client("doh")];
    // Answered from now on means answered by the process that serves now (the old one is gone).
    let doq_asking_now = || {
        let (progress, from) = (
            doq_answered.clone(),
            doq_answered.load(std::sync::atomic::Ordering::Relaxed),
        );
        async move {
            for _ in 0..500 {
                if progress.load(std::sync::atomic::Ordering::Relaxed) > from {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("the DNS-over-QUIC client got no answer in 10 s");
        }
    };
    for _ in 0..3 {
        doq_asking_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let old = server.serving_pid();
        let (ok, stdout, stderr) = support::control_async(&server, "upgrade").await;
        assert!(ok, "{stdout}{stderr}");
        assert_ne!(server.serving_pid(), old);
        while !support::exited(old) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The QUIC socket went to the new process, which answers on it.
        let (_endpoint, connection) = doq_connect(&server, doq).await;
        let query = doq_message("www.foobar.com", RecordType::A);
        has_www(&doq_query(&connection, &query).await.unwrap()).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let (transport, answered, failed) = client.await.unwrap();
        assert!(
            failed.is_empty(),
            "{transport}: {answered} answered, failed: {failed:?}"
        );
        assert!(answered > 10, "{transport}: {answered}");
    }
    let (answered, closed, failed) = doq_client.await.unwrap();
    assert!(
        failed.is_empty(),
        "doq: {answered} answered, failed: {failed:?}"
    );
    assert!(answered > 10, "doq: {answered}");
    assert!(closed >= 3, "doq: closed {closed} times, once per upgrade");
}

#[tokio::test]
async fn dns_over_quic_connections_are_bounded_per_address_as_tcp_ones_are() {
    let server = Foobar::setup()
        .zone("foobar.com.zone", &shipped_zone())
        .dns("quic_listen = [\"127.0.0.1:0\"]")
        .dns("max_tcp_connections_per_address = 2")
        .start();
    let doq = server.address_in("dns listening on quic");
    let (_first_endpoint, first) = doq_connect(&server, doq).await;
    let (_second_endpoint, second) = doq_connect(&server, doq).await;
    let query = doq_message("www.foobar.com", RecordType::A);
    has_www(&doq_query(&second, &query).await.unwrap()).unwrap();
    // A third from the same address is refused at once.
    let endpoint = web::quic_client_for(&server.certificate_pem(), b"doq");
    match endpoint.connect(doq, "foobar.com").unwrap().await {
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(
                close.error_code,
                quinn::TransportErrorCode::CONNECTION_REFUSED
            );
        }
        other => panic!("a third connection: {other:?}"),
    }
    // Once one closes, another may come.
    first.close(0u32.into(), b"");
    drop(first);
    let mut answered = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Ok(connecting) = endpoint.connect(doq, "foobar.com")
            && let Ok(connection) = connecting.await
        {
            has_www(&doq_query(&connection, &query).await.unwrap()).unwrap();
            answered = true;
            break;
        }
    }
    assert!(answered, "a connection after one closed");
}

#[tokio::test]
async fn a_zone_transfer_over_quic_is_allowed_where_a_rule_asks_for_encryption() {
    let server = Foobar::setup()
        .zone("foobar.com.zone", &shipped_zone())
        .dns("quic_listen = [\"127.0.0.1:0\"]")
        .dns("[dns.zone.\"foobar.com\"]\nallow_transfer = [\"127.0.0.1 tls\"]")
        .start();
    let doq = server.address_in("dns listening on quic");
    let (_endpoint, connection) = doq_connect(&server, doq).await;
    let query = doq_message("foobar.com", RecordType::AXFR);
    // XoQ (RFC 9250 section 4.2): the answer's messages on the request's stream, each with its
    // length, the zone between two SOAs.
    let bytes = doq_exchange(&connection, &query, 1 << 20).await.unwrap();
    let mut records = Vec::new();
    let mut rest = &bytes[..];
    while let Some((length, after)) = rest.split_first_chunk::<2>() {
        let (message, after) = after.split_at(usize::from(u16::from_be_bytes(*length)));
        let message = Message::from_vec(message).unwrap();
        assert_eq!(message.metadata.id, 0);
        records.extend(message.answers);
        rest = after;
    }
    assert!(rest.is_empty());
    assert!(records.len() > 2, "{records:?}");
    let soas = records
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .count();
    assert_eq!(soas, 2, "{records:?}");
    assert!(records.iter().any(|r| r.data.to_string() == "8.8.8.8"));
    let line = server.wait_for_log_after(0, "transfer out");
    assert!(line.contains("tls=true"), "{line}");
    // Over plain TCP the rule refuses it.
    let refused = support::query_tcp(server.dns, "foobar.com", RecordType::AXFR);
    assert_eq!(
        refused.metadata.response_code,
        hickory_proto::op::ResponseCode::Refused
    );
}
