//! FastCGI against PHP-FPM from Debian: the CGI variables scripts get, bodies both ways,
//! streamed output, statuses, an FPM that is down (503) or a script that is slow (504), and
//! connections kept alive. The scripts are in `tests/php/`. Skipped with a message when PHP-FPM
//! is missing, unless FOOBAR_REQUIRE_INTEROP=1 (as in CI) makes it required.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, StatusCode};
use support::{
    Foobar,
    php::{Fpm, fpm},
    skip_without,
    web::{ALL, Proto, fetch},
};

/// PHP-FPM serving `tests/php/` through foobar, with the route's extra `lines`.
fn php_site(test: &str, lines: &str) -> Option<(Foobar, Fpm, tempfile::TempDir)> {
    let Some(binary) = fpm() else {
        skip_without(test, "PHP-FPM", "apt-get install php8.2-fpm");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/php");
    let php = Fpm::start(binary, &dir.path().join("fpm"), 4);
    let server = Foobar::setup()
        .tables(&format!(
            "[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{}\"\n\
             [[site.route]]\npath = \"/\"\nfastcgi = \"{}\"\n{lines}\n",
            scripts.display(),
            php.address()
        ))
        .start();
    Some((server, php, dir))
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_get_the_cgi_variables_and_the_body() {
    let test = "scripts_get_the_cgi_variables_and_the_body";
    let Some((server, _php, _dir)) = php_site(test, "max_body_bytes = 16777216") else {
        return;
    };
    let pem = server.certificate_pem();
    let port = server.https.port();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/php");
    for proto in ALL {
        let request = Request::get(format!("https://www.foobar.com:{port}/info.php/a/b?x=1"))
            .header("x-thing", "y")
            .header("proxy", "http://evil.example")
            .body(Bytes::new())
            .unwrap();
        let reply = fetch(proto, server.https, &pem, request).await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        let vars = json(&reply.body);
        assert_eq!(vars["REQUEST_METHOD"], "GET", "{proto:?}");
        assert_eq!(vars["REQUEST_URI"], "/info.php/a/b?x=1", "{proto:?}");
        assert_eq!(vars["QUERY_STRING"], "x=1", "{proto:?}");
        assert_eq!(vars["SCRIPT_NAME"], "/info.php", "{proto:?}");
        assert_eq!(
            vars["SCRIPT_FILENAME"],
            format!("{}/info.php", root.display()),
            "{proto:?}"
        );
        assert_eq!(vars["PATH_INFO"], "/a/b", "{proto:?}");
        assert_eq!(vars["HTTPS"], "on", "{proto:?}");
        assert_eq!(vars["SERVER_NAME"], "www.foobar.com", "{proto:?}");
        assert_eq!(vars["SERVER_PORT"], port.to_string(), "{proto:?}");
        assert_eq!(
            vars["HTTP_HOST"],
            format!("www.foobar.com:{port}"),
            "{proto:?}"
        );
        assert_eq!(vars["REMOTE_ADDR"], "127.0.0.1", "{proto:?}");
        assert_eq!(vars["HTTP_X_THING"], "y", "{proto:?}");
        assert_eq!(
            vars["HTTP_PROXY"],
            serde_json::Value::Null,
            "{proto:?}: httpoxy"
        );
        let version = match proto {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2.0",
            Proto::H3 => "HTTP/3.0",
        };
        assert_eq!(vars["SERVER_PROTOCOL"], version, "{proto:?}");
        // A form, and a body large enough to go in several records.
        let body = format!("a=1&b={}", "z".repeat(300_000));
        let request = Request::post(format!("https://www.foobar.com:{port}/info.php"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body.clone()))
            .unwrap();
        let vars = json(&fetch(proto, server.https, &pem, request).await.body);
        assert_eq!(vars["CONTENT_LENGTH"], body.len().to_string(), "{proto:?}");
        assert_eq!(vars["body_length"], body.len(), "{proto:?}");
        assert_eq!(vars["post"]["a"], "1", "{proto:?}");
    }
    // A body of unknown length (HTTP/2 without content-length), larger than what is kept in
    // memory: read whole first, so that PHP gets its length.
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(2);
    tokio::spawn(async move {
        for _ in 0..3 {
            let chunk = Bytes::from(vec![b'q'; 1 << 20]);
            let _ = tx.send(Ok(http_body::Frame::data(chunk))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let reply = support::web::send_streamed_h2(
        server.https,
        &pem,
        Request::post(format!("https://www.foobar.com:{port}/info.php"))
            .body(http_body_util::StreamBody::new(Box::pin(stream)))
            .unwrap(),
    )
    .await;
    let vars = json(&reply.body);
    assert_eq!(vars["CONTENT_LENGTH"], (3 << 20).to_string());
    assert_eq!(vars["body_length"], 3 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_redirects_and_streamed_output_come_through() {
    let test = "statuses_redirects_and_streamed_output_come_through";
    let Some((server, _php, _dir)) = php_site(test, "") else {
        return;
    };
    let pem = server.certificate_pem();
    for proto in ALL {
        let reply = fetch(
            proto,
            server.https,
            &pem,
            support::web::get("/status.php", &[]),
        )
        .await;
        assert_eq!(reply.status.as_u16(), 418, "{proto:?}");
        let reply = fetch(
            proto,
            server.https,
            &pem,
            support::web::get("/status.php?go=1", &[]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FOUND, "{proto:?}");
        assert_eq!(reply.header("location"), Some("/elsewhere"), "{proto:?}");
    }
    // Output flushed by the script arrives as it is written.
    let stream = support::web::connect(
        server.https,
        "www.foobar.com",
        support::web::tls_config(&pem, &[b"h2"]),
    )
    .await
    .unwrap();
    let (_, arrivals) = support::web::frame_arrivals(Proto::H2, stream, "/stream.php", &[]).await;
    assert_eq!(arrivals.len(), 5, "{arrivals:?}");
    let spread = arrivals[4].0 - arrivals[0].0;
    assert!(spread >= Duration::from_millis(900), "{spread:?}");
    let line = server.wait_for_log("stream.php started");
    assert!(line.contains("script=/stream.php"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_script_gets_504_and_fpm_down_a_503() {
    let test = "a_slow_script_gets_504_and_fpm_down_a_503";
    let Some((server, php, _dir)) = php_site(test, "response_timeout = 1\nconnect_timeout = 1")
    else {
        return;
    };
    let pem = server.certificate_pem();
    let started = Instant::now();
    let reply = fetch(
        Proto::H2,
        server.https,
        &pem,
        support::web::get("/slow.php?ms=3000", &[]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_millis(2500));
    server.wait_for_log("did not answer in time");
    drop(php);
    for proto in ALL {
        let started = Instant::now();
        let reply = fetch(
            proto,
            server.https,
            &pem,
            support::web::get("/info.php", &[]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{proto:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{proto:?}");
    }
    server.wait_for_log("FastCGI server unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_fpm_are_kept_alive() {
    let test = "connections_to_fpm_are_kept_alive";
    let Some((server, php, _dir)) = php_site(test, "") else {
        return;
    };
    let pem = server.certificate_pem();
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let reply = fetch(
            Proto::H2,
            server.https,
            &pem,
            support::web::get("/info.php", &[]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        pids.insert(json(&reply.body)["pid"].to_string());
    }
    let admin = server.admin();
    let (_, metrics) = tokio::task::spawn_blocking(move || support::admin_get(admin, "/metrics"))
        .await
        .unwrap();
    let opened: u64 = metrics
        .lines()
        .find(|line| {
            line.starts_with("foobar_upstream_connections_opened_total")
                && line.contains(&php.address())
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    eprintln!(
        "30 requests, {opened} connections to PHP-FPM, {} workers",
        pids.len()
    );
    assert!(opened < 10, "{opened} connections for 30 requests");
}
