//! The binary as a web server: HTTP/1.1, HTTP/2 and HTTP/3 from one port, TLS, static files,
//! limits, signals. Every request goes over the wire through a real client.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use support::{
    Foobar,
    web::{self, ALL, Proto, fetch, get},
};

fn site() -> Foobar {
    Foobar::setup()
        .shipped_site()
        .file("docs/index.html", "<h1>docs</h1>\n")
        .file("empty/.keep", "")
        .file("big.txt", "x".repeat(200_000))
        .file("blob.bin", "y".repeat(50_000))
        .file(
            "pre.css",
            "body { color: red; } /* the plain file */\n".repeat(20),
        )
        .file("pre.css.br", "BROTLI-SIBLING")
        .file("pre.css.gz", "GZIP-SIBLING")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_is_identical_over_h1_h2_and_h3() {
    let server = site();
    let pem = server.certificate_pem();
    let shipped = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/public/index.html")).unwrap();
    let mut versions = Vec::new();
    for proto in ALL {
        let reply = fetch(proto, server.https, &pem, get("/", &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        assert_eq!(reply.body, shipped, "{proto:?} body");
        assert_eq!(reply.header("content-type"), Some("text/html"), "{proto:?}");
        versions.push(reply.version);
    }
    assert_eq!(
        versions,
        [Version::HTTP_11, Version::HTTP_2, Version::HTTP_3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_responses_carry_alt_svc_hsts_and_nosniff() {
    let server = site();
    let pem = server.certificate_pem();
    let alt_svc = format!("h3=\":{}\"; ma=86400", server.https.port());
    for proto in ALL {
        let reply = fetch(proto, server.https, &pem, get("/", &[])).await;
        assert_eq!(reply.header("alt-svc"), Some(alt_svc.as_str()), "{proto:?}");
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=63072000")
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("cache-control"), Some("no-cache"), "{proto:?}");
        assert_eq!(reply.header("content-security-policy"), None);
        assert_eq!(reply.header("x-frame-options"), None);
    }
}

/// The kept copy of a page carries the site's fields (`StaticFiles::stamped`) and a place for
/// `Date`: each field must still come once, and `Date` be now, read from disk or from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_each_field_once_and_the_current_date() {
    let server = site();
    let pem = server.certificate_pem();
    for round in 0..2 {
        for proto in ALL {
            for (path, status) in [("/", StatusCode::OK), ("/missing", StatusCode::NOT_FOUND)] {
                let reply = fetch(proto, server.https, &pem, get(path, &[])).await;
                let what = format!("{proto:?} {path} round {round}");
                assert_eq!(reply.status, status, "{what}");
                for name in reply.headers.keys() {
                    assert_eq!(
                        reply.headers.get_all(name).iter().count(),
                        1,
                        "{what}: {name}"
                    );
                }
                let date = reply
                    .header("date")
                    .unwrap_or_else(|| panic!("{what}: no date"));
                let date = httpdate::parse_http_date(date).unwrap();
                let off = date
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_else(|late| late.duration());
                assert!(off < Duration::from_secs(5), "{what}: {off:?} off");
                if status == StatusCode::OK {
                    assert_eq!(reply.header("vary"), Some("accept-encoding"), "{what}");
                    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
                }
            }
        }
        // A kept copy a second older is given the second it is sent in.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_and_security_headers_follow_the_configuration() {
    let server = Foobar::setup()
        .shipped_site()
        .file("assets/app.js", "console.log(1);\n")
        .file("assets/fonts/a.woff2", "font")
        .edge(
            r#"cache_control = { "/" = "no-cache", "/assets/" = "public, max-age=31536000, immutable", "/assets/fonts/" = "public, max-age=600" }"#,
        )
        .edge("headers.hsts_max_age = 300")
        .edge("headers.hsts_include_subdomains = true")
        .edge("headers.content_security_policy = \"default-src 'self'\"")
        .edge("headers.frame_ancestors = \"'none'\"")
        .start();
    let pem = server.certificate_pem();
    for proto in ALL {
        let cases = [
            ("/", "no-cache"),
            ("/assets/app.js", "public, max-age=31536000, immutable"),
            ("/assets/fonts/a.woff2", "public, max-age=600"),
        ];
        for (path, expected) in cases {
            let first = fetch(proto, server.https, &pem, get(path, &[])).await;
            assert_eq!(first.status, StatusCode::OK, "{proto:?} {path}");
            assert_eq!(
                first.header("cache-control"),
                Some(expected),
                "{proto:?} {path}"
            );
            // Asked twice: the second answer may come from the in-memory cache.
            let again = fetch(proto, server.https, &pem, get(path, &[])).await;
            assert_eq!(
                again.header("cache-control"),
                Some(expected),
                "{proto:?} {path}"
            );
            let etag = first.header("etag").unwrap().to_string();
            let unchanged = fetch(
                proto,
                server.https,
                &pem,
                get(path, &[("if-none-match", &etag)]),
            )
            .await;
            assert_eq!(
                unchanged.status,
                StatusCode::NOT_MODIFIED,
                "{proto:?} {path}"
            );
            assert_eq!(
                unchanged.header("cache-control"),
                Some(expected),
                "{proto:?} {path}"
            );
        }
        let missing = fetch(proto, server.https, &pem, get("/assets/none.js", &[])).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.header("cache-control"), None, "a 404 is not cached");
        let reply = fetch(proto, server.https, &pem, get("/", &[])).await;
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=300; includeSubDomains")
        );
        assert_eq!(
            reply.header("content-security-policy"),
            Some("default-src 'self'; frame-ancestors 'none'")
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    }
}

#[test]
fn a_bad_header_value_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("foobar.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{dir}/data\"\n[dns]\nlisten = [\"127.0.0.1:0\"]\nzones = \"{dir}\"\n\
             [edge]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nroot = \"{dir}\"\n\
             cache_control = {{ \"assets/\" = \"max-age=60\" }}\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let output = support::output_within(
        std::process::Command::new(support::binary())
            .args(["serve", "--check", "--config"])
            .arg(&config),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("cache_control.\"assets/\""), "{stderr}");
    assert!(stderr.contains("starts with \"/\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_redirects_to_https_keeping_host_path_and_query() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = site();
    let mut stream = tokio::net::TcpStream::connect(server.http).await.unwrap();
    stream
        .write_all(b"GET /docs/?q=1&r=2 HTTP/1.1\r\nHost: www.foobar.com:8080\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    let location = format!(
        "location: https://www.foobar.com:{}/docs/?q=1&r=2",
        server.https.port()
    );
    assert!(
        response.to_ascii_lowercase().contains(&location),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_get_304() {
    let server = site();
    let pem = server.certificate_pem();
    for proto in ALL {
        let first = fetch(proto, server.https, &pem, get("/style.css", &[])).await;
        assert_eq!(first.header("content-type"), Some("text/css"));
        let etag = first.header("etag").unwrap().to_string();
        let modified = first.header("last-modified").unwrap().to_string();
        let by_etag = fetch(
            proto,
            server.https,
            &pem,
            get("/style.css", &[("if-none-match", &etag)]),
        )
        .await;
        assert_eq!(by_etag.status, StatusCode::NOT_MODIFIED, "{proto:?}");
        assert!(by_etag.body.is_empty());
        let by_date = fetch(
            proto,
            server.https,
            &pem,
            get("/style.css", &[("if-modified-since", &modified)]),
        )
        .await;
        assert_eq!(by_date.status, StatusCode::NOT_MODIFIED, "{proto:?}");
        let changed = fetch(
            proto,
            server.https,
            &pem,
            get("/style.css", &[("if-none-match", "\"other\"")]),
        )
        .await;
        assert_eq!(changed.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_ranges_get_206_and_unsatisfiable_ones_416() {
    let server = site();
    let pem = server.certificate_pem();
    for proto in ALL {
        let part = fetch(
            proto,
            server.https,
            &pem,
            get("/big.txt", &[("range", "bytes=10-19")]),
        )
        .await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{proto:?}");
        assert_eq!(part.body, "x".repeat(10));
        assert_eq!(part.header("content-range"), Some("bytes 10-19/200000"));
        let beyond = fetch(
            proto,
            server.https,
            &pem,
            get("/big.txt", &[("range", "bytes=300000-")]),
        )
        .await;
        assert_eq!(
            beyond.status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{proto:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_siblings_and_on_the_fly_compression() {
    let server = site();
    let pem = server.certificate_pem();
    for proto in ALL {
        let br = fetch(
            proto,
            server.https,
            &pem,
            get("/pre.css", &[("accept-encoding", "br")]),
        )
        .await;
        assert_eq!(br.header("content-encoding"), Some("br"));
        assert_eq!(br.body, "BROTLI-SIBLING");
        assert_eq!(br.header("content-type"), Some("text/css"));
        let gz = fetch(
            proto,
            server.https,
            &pem,
            get("/pre.css", &[("accept-encoding", "gzip")]),
        )
        .await;
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert_eq!(gz.body, "GZIP-SIBLING");
        let plain = fetch(proto, server.https, &pem, get("/pre.css", &[])).await;
        assert_eq!(plain.header("content-encoding"), None);
        assert!(plain.body.starts_with(b"body { color: red; }"));
        // A client that asks for no encoding gets the page as it is, marked as one that
        // varies by what is asked (a cache must not give it to one that asks for gzip).
        let identity = fetch(proto, server.https, &pem, get("/big.txt", &[])).await;
        assert_eq!(identity.header("content-encoding"), None, "{proto:?}");
        assert_eq!(
            identity.header("vary"),
            Some("accept-encoding"),
            "{proto:?}"
        );
        assert!(identity.body.len() > 10_000, "{proto:?}");
        // No sibling: compressed on the fly, for each encoding the client takes.
        for encoding in ["gzip", "br", "zstd"] {
            let reply = fetch(
                proto,
                server.https,
                &pem,
                get("/big.txt", &[("accept-encoding", encoding)]),
            )
            .await;
            assert_eq!(
                reply.header("content-encoding"),
                Some(encoding),
                "{proto:?}"
            );
            assert_eq!(reply.header("vary"), Some("accept-encoding"), "{proto:?}");
            assert!(
                reply.body.len() < 10_000,
                "{encoding}: {} bytes",
                reply.body.len()
            );
        }
        // Types that do not compress are sent as they are.
        let binary = fetch(
            proto,
            server.https,
            &pem,
            get("/blob.bin", &[("accept-encoding", "gzip, br, zstd")]),
        )
        .await;
        assert_eq!(binary.header("content-encoding"), None, "{proto:?}");
        assert_eq!(binary.body.len(), 50_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_not_found_and_head() {
    let server = site();
    let pem = server.certificate_pem();
    for proto in ALL {
        let docs = fetch(proto, server.https, &pem, get("/docs/", &[])).await;
        assert_eq!(docs.body, "<h1>docs</h1>\n", "{proto:?}");
        // A folder without index.html is not listed.
        let empty = fetch(proto, server.https, &pem, get("/empty/", &[])).await;
        assert_eq!(empty.status, StatusCode::NOT_FOUND, "{proto:?}");
        assert!(!String::from_utf8_lossy(&empty.body).contains(".keep"));
        let missing = fetch(proto, server.https, &pem, get("/no/such/page", &[])).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(
            String::from_utf8_lossy(&missing.body).contains("There is nothing at this address")
        );
        let head = Request::head("https://www.foobar.com/big.txt")
            .body(Bytes::new())
            .unwrap();
        let head = fetch(proto, server.https, &pem, head).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), Some("200000"));
        assert!(head.body.is_empty());
    }
}

/// Small files are answered from memory once read; an edit in place, a save by rename, a new
/// file and a removal must each be served at once all the same, on every protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_to_static_files_are_served_at_once() {
    let server = site();
    let pem = server.certificate_pem();
    let root = server.dir.path().join("public");
    let served = |path: &'static str, want: &'static str| {
        let pem = pem.clone();
        async move {
            let start = std::time::Instant::now();
            loop {
                let mut bodies = Vec::new();
                for proto in ALL {
                    let reply = fetch(proto, server.https, &pem, get(path, &[])).await;
                    bodies.push((
                        reply.status,
                        String::from_utf8_lossy(&reply.body).into_owned(),
                    ));
                }
                if bodies.iter().all(|(status, body)| match want {
                    "404" => *status == StatusCode::NOT_FOUND,
                    _ => *status == StatusCode::OK && body == want,
                }) {
                    return start.elapsed();
                }
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "{path}: want {want:?}, got {bodies:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    std::fs::write(root.join("note.txt"), "one").unwrap();
    served("/note.txt", "one").await;
    // Again, now from memory.
    served("/note.txt", "one").await;
    std::fs::write(root.join("note.txt"), "two").unwrap();
    let took = served("/note.txt", "two").await;
    println!("edit in place served after {took:?}");
    support::save_by_rename(&root.join("note.txt"), "three");
    served("/note.txt", "three").await;
    std::fs::remove_file(root.join("note.txt")).unwrap();
    served("/note.txt", "404").await;
    std::fs::create_dir(root.join("new")).unwrap();
    served("/new/page.txt", "404").await;
    std::fs::write(root.join("new/page.txt"), "fresh").unwrap();
    served("/new/page.txt", "fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_escapes_the_root() {
    let server = site();
    let pem = server.certificate_pem();
    std::fs::write(server.dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(
        server.dir.path().join("secret.txt"),
        server.dir.path().join("public/link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(server.dir.path(), server.dir.path().join("public/up")).unwrap();
    std::fs::write(server.dir.path().join("public/inside.txt"), "fine").unwrap();
    std::os::unix::fs::symlink("inside.txt", server.dir.path().join("public/alias.txt")).unwrap();
    for line in [
        "GET /../secret.txt HTTP/1.1",
        "GET /%2e%2e/secret.txt HTTP/1.1",
        "GET /%2E%2E/secret.txt HTTP/1.1",
        "GET /docs/..%2f..%2fsecret.txt HTTP/1.1",
        "GET /..%5csecret.txt HTTP/1.1",
        "GET /..\\secret.txt HTTP/1.1",
        "GET /docs\\..\\..\\secret.txt HTTP/1.1",
        "GET /link.txt HTTP/1.1",
        "GET /up/secret.txt HTTP/1.1",
        "GET /up/ HTTP/1.1",
    ] {
        let status = web::raw_status(server.https, &pem, line).await;
        assert!(
            status == 400 || status == 404,
            "{line} got {status}, expected a refusal"
        );
    }
    // A link that stays inside the root is fine.
    let alias = fetch(Proto::H2, server.https, &pem, get("/alias.txt", &[])).await;
    assert_eq!(alias.body, "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_logged() {
    let server = site();
    let pem = server.certificate_pem();
    for proto in ALL {
        fetch(proto, server.https, &pem, get("/style.css", &[])).await;
    }
    for version in ["HTTP/1.1", "HTTP/2.0", "HTTP/3.0"] {
        let line = server.wait_for_log(&format!("protocol={version}"));
        assert!(line.contains("method=GET"), "{line}");
        assert!(line.contains("path=/style.css"), "{line}");
        assert!(line.contains("status=200"), "{line}");
        assert!(line.contains("bytes="), "{line}");
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_bodies_are_refused() {
    let server = site();
    let pem = server.certificate_pem();
    let huge = "a".repeat(100 * 1024);
    let line = format!("GET / HTTP/1.1\r\nX-Big: {huge}");
    assert_eq!(web::raw_status(server.https, &pem, &line).await, 431);
    // HTTP/2 answers the header block with 431 too (not a reset the client would retry).
    let reply = web::try_h2(server.https, &pem, get("/", &[("x-big", &huge)])).await;
    assert_eq!(
        reply.map(|reply| reply.status),
        Ok(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
    let body = Request::post("https://www.foobar.com/")
        .header("content-length", (2 * 1024 * 1024).to_string())
        .body(Bytes::from(vec![b'x'; 2 * 1024 * 1024]))
        .unwrap();
    let reply = fetch(Proto::H2, server.https, &pem, body).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // So is a GET of a page kept in memory that declares a body over the limit. (Not asked
    // over HTTP/3: the test client fails its own send when the server, having answered, stops
    // reading the rest with H3_NO_ERROR, as RFC 9114 section 4.1.1 lets it.)
    fetch(Proto::H1, server.https, &pem, get("/", &[])).await;
    for proto in [Proto::H1, Proto::H2] {
        let body = Request::get("https://www.foobar.com/")
            .header("content-length", (2 * 1024 * 1024).to_string())
            .body(Bytes::from(vec![b'x'; 2 * 1024 * 1024]))
            .unwrap();
        let reply = fetch(proto, server.https, &pem, body).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{proto:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Foobar::setup()
        .shipped_site()
        .edge("header_timeout = 1")
        .start();
    let pem = server.certificate_pem();
    let mut stream = web::connect(
        server.https,
        "www.foobar.com",
        web::tls_config(&pem, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the connection stays open past the header timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

fn certificate(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

fn presented(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_unknown_names_get_an_alert() {
    let server = site();
    let pem = server.certificate_pem();
    // By IP address: no SNI, the default certificate (which also covers 127.0.0.1).
    let by_ip = web::connect(server.https, "127.0.0.1", web::tls_config(&pem, &[b"h2"])).await;
    assert!(by_ip.is_ok(), "{by_ip:?}");
    for name in ["www.foobar.com", "foobar.com", "localhost"] {
        let known = web::connect(server.https, name, web::tls_config(&pem, &[b"h2"])).await;
        assert!(known.is_ok(), "{name}: {known:?}");
    }
    let unknown = web::connect(
        server.https,
        "www.example.org",
        web::tls_config(&pem, &[b"h2"]),
    )
    .await;
    let error = unknown.expect_err("handshake refused").to_string();
    assert!(error.contains("alert"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let files = tempfile::tempdir().unwrap();
    let (cert_a, key_a) = certificate(&["www.foobar.com"]);
    let (cert_b, key_b) = certificate(&["www.foobar.com"]);
    let cert_path = files.path().join("cert.pem");
    let key_path = files.path().join("key.pem");
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let server = Foobar::setup()
        .shipped_site()
        .edge(&format!("cert = \"{}\"", cert_path.display()))
        .edge(&format!("key = \"{}\"", key_path.display()))
        .start();
    let both = format!("{cert_a}{cert_b}");
    let config = || web::tls_config(both.as_bytes(), &[b"h2"]);

    let first = web::connect(server.https, "www.foobar.com", config())
        .await
        .unwrap();
    assert_eq!(presented(&first), der(&cert_a));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(first),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = || get("/", &[]).map(http_body_util::Full::new);
    assert_eq!(
        sender.send_request(request()).await.unwrap().status(),
        StatusCode::OK
    );

    std::fs::write(&cert_path, &cert_b).unwrap();
    std::fs::write(&key_path, &key_b).unwrap();
    let skip = server.log_len();
    server.signal("HUP");
    server.wait_for_log_after(skip, "certificate reloaded");

    let second = web::connect(server.https, "www.foobar.com", config())
        .await
        .unwrap();
    assert_eq!(presented(&second), der(&cert_b));
    // The connection opened before the reload still works.
    assert_eq!(
        sender.send_request(request()).await.unwrap().status(),
        StatusCode::OK
    );
    // QUIC handshakes get the new certificate too.
    let reply = web::fetch_h3(server.https, cert_b.as_bytes(), get("/", &[])).await;
    assert_eq!(reply.status, StatusCode::OK);

    // A broken certificate file is refused and the current one stays.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    let skip = server.log_len();
    server.signal("HUP");
    server.wait_for_log_after(skip, "certificate reload failed");
    let third = web::connect(server.https, "www.foobar.com", config())
        .await
        .unwrap();
    assert_eq!(presented(&third), der(&cert_b));
}

/// The certificate the server presents to a new connection for www.foobar.com, if it is
/// `trusted` (PEM).
async fn served_now(server: &Foobar, trusted: &str) -> Option<Vec<u8>> {
    let config = web::tls_config(trusted.as_bytes(), &[b"h2"]);
    let stream = web::connect(server.https, "www.foobar.com", config)
        .await
        .ok()?;
    Some(presented(&stream))
}

/// Points the symlink `link` at `target` in one rename, as certbot renews `live/`.
fn swap_link(link: &std::path::Path, target: &str) {
    let tmp = link.with_extension("new");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_renewed_on_disk_are_served_without_a_signal() {
    // certbot's layout: live/ holds symlinks into archive/, swapped on each renewal.
    let files = tempfile::tempdir().unwrap();
    let (live, archive) = (files.path().join("live"), files.path().join("archive"));
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&archive).unwrap();
    let expiring = {
        let mut params = rcgen::CertificateParams::new(vec!["www.foobar.com".to_string()]).unwrap();
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(5);
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let pairs = [
        certificate(&["www.foobar.com"]),
        certificate(&["www.foobar.com"]),
        ("not a certificate".to_string(), "not a key".to_string()),
        expiring,
    ];
    for (n, (cert, key)) in pairs.iter().enumerate() {
        std::fs::write(archive.join(format!("cert{n}.pem")), cert).unwrap();
        std::fs::write(archive.join(format!("key{n}.pem")), key).unwrap();
    }
    let renew = |n: usize| {
        swap_link(&live.join("key.pem"), &format!("../archive/key{n}.pem"));
        swap_link(&live.join("cert.pem"), &format!("../archive/cert{n}.pem"));
    };
    renew(0);
    let server = Foobar::setup()
        .shipped_site()
        .edge(&format!("cert = \"{}\"", live.join("cert.pem").display()))
        .edge(&format!("key = \"{}\"", live.join("key.pem").display()))
        .start();
    let served = |n: usize| {
        let (trusted, expected) = (pairs[n].0.clone(), der(&pairs[n].0));
        let server = &server;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let now = served_now(server, &trusted).await;
                if now.as_ref() == Some(&expected) || std::time::Instant::now() > deadline {
                    return now == Some(expected);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(served(0).await);
    assert!(
        !server
            .log()
            .iter()
            .any(|line| line.contains("expires soon"))
    );

    renew(1);
    assert!(served(1).await, "the renewed certificate is served");
    assert!(
        !server
            .log()
            .iter()
            .any(|line| line.contains("certificate reload failed")),
        "the key is swapped first, so no half-renewed pair was refused"
    );

    let skip = server.log_len();
    renew(2);
    let line = server.wait_for_log_after(skip, "certificate reload failed");
    assert!(line.contains("live/cert.pem: no certificate"), "{line}");
    assert!(
        served(1).await,
        "a broken renewal keeps the current certificate"
    );

    let skip = server.log_len();
    renew(3);
    assert!(served(3).await);
    let line = server.wait_for_log_after(skip, "certificate expires soon");
    assert!(line.contains("days_left=4"), "{line}");
}

/// A download of `size` bytes started over `proto`, its first part read: the bytes so far,
/// and the rest of the body to read.
async fn start_download(
    proto: Proto,
    server: &Foobar,
    pem: &[u8],
) -> (
    usize,
    std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>,
) {
    use http_body_util::BodyExt;
    let alpn: &[u8] = if proto == Proto::H1 {
        b"http/1.1"
    } else {
        b"h2"
    };
    if proto == Proto::H3 {
        let mut h3 = web::H3::connect(server.https, pem, None).await;
        let (status, mut stream) = h3.start("/large.bin").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let first = stream.recv_data().await.unwrap().unwrap();
        let rest = async move {
            let _keep = h3;
            let mut received = 0;
            while let Some(chunk) = stream.recv_data().await.unwrap() {
                received += bytes::Buf::remaining(&chunk);
            }
            received
        };
        return (bytes::Buf::remaining(&first), Box::pin(rest));
    }
    let stream = web::connect(
        server.https,
        "www.foobar.com",
        web::tls_config(pem, &[alpn]),
    )
    .await
    .unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let mut request = get("/large.bin", &[]).map(http_body_util::Full::new);
    let response = if proto == Proto::H1 {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        *request.uri_mut() = "/large.bin".parse().unwrap();
        request
            .headers_mut()
            .insert("host", "www.foobar.com".parse().unwrap());
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let mut body = response.into_body();
    let first = body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap()
        .len();
    let rest = async move {
        let mut received = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                received += data.len();
            }
        }
        received
    };
    (first, Box::pin(rest))
}

/// SIGTERM while a large download is in flight over `proto`: new connections are refused, the
/// download completes, the server exits 0.
async fn sigterm_finishes_the_download_in_flight(proto: Proto) {
    let size = 30 * 1024 * 1024;
    let mut server = Foobar::setup().file("large.bin", vec![7u8; size]).start();
    let pem = server.certificate_pem();
    // Only the first part is taken: the rest waits on flow control while the server stops.
    let (first, rest) = start_download(proto, &server, &pem).await;
    let skip = server.log_len();
    server.signal("TERM");
    server.wait_for_log_after(skip, "stopping");
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let refused = if proto == Proto::H3 {
                web::H3::try_connect(server.https, &pem, web::H3Options::default())
                    .await
                    .is_err()
            } else {
                tokio::net::TcpStream::connect(server.https).await.is_err()
            };
            if refused {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "{proto:?}: still accepting after SIGTERM");
    let received = first + rest.await;
    assert_eq!(
        received, size,
        "{proto:?}: the response in flight was cut short"
    );
    let status = server.wait();
    assert!(status.success(), "{proto:?}: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_an_http1_download_then_exits_zero() {
    sigterm_finishes_the_download_in_flight(Proto::H1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_an_http2_download_then_exits_zero() {
    sigterm_finishes_the_download_in_flight(Proto::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_an_http3_download_then_exits_zero() {
    sigterm_finishes_the_download_in_flight(Proto::H3).await;
}

/// RFC 9114 section 5.2: a client that sends a GOAWAY still gets the responses to the requests
/// it sent, then the server closes the connection at once (not at the idle timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http3_clients_goaway_lets_its_request_finish_then_the_connection_closes() {
    let size = 8 * 1024 * 1024;
    let server = Foobar::setup().file("large.bin", vec![3u8; size]).start();
    let pem = server.certificate_pem();
    let mut h3 = web::H3::connect(server.https, &pem, None).await;
    let (status, mut stream) = h3.start("/large.bin").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    h3.goaway();
    // The GOAWAY arrives while most of the response waits on flow control.
    let mut received = 0;
    while let Some(chunk) = stream.recv_data().await.unwrap() {
        received += bytes::Buf::remaining(&chunk);
    }
    assert_eq!(received, size, "the request in flight was cut short");
    let closed = tokio::time::timeout(Duration::from_secs(5), h3.connection.closed()).await;
    assert!(
        closed.is_ok(),
        "the connection is still open after its last request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_busy_ones_are_not() {
    let server = Foobar::setup()
        .file("large.bin", vec![1u8; 8 * 1024 * 1024])
        .edge("idle_timeout = 1")
        .start();
    let pem = server.certificate_pem();
    for (proto, alpn) in [(Proto::H1, &b"http/1.1"[..]), (Proto::H2, &b"h2"[..])] {
        let stream = web::connect(
            server.https,
            "www.foobar.com",
            web::tls_config(&pem, &[alpn]),
        )
        .await
        .unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let request = || {
            let mut request = get("/large.bin", &[]).map(http_body_util::Full::new);
            request
                .headers_mut()
                .insert("host", "www.foobar.com".parse().unwrap());
            request
        };
        // A response that takes longer than the idle timeout to read is not cut off.
        let (closed, received) = if proto == Proto::H1 {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            let closed = tokio::spawn(connection);
            let mut request = request();
            *request.uri_mut() = "/large.bin".parse().unwrap();
            let response = sender.send_request(request).await.unwrap();
            (closed, slow_read(response.into_body()).await)
        } else {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            let closed = tokio::spawn(connection);
            let response = sender.send_request(request()).await.unwrap();
            (closed, slow_read(response.into_body()).await)
        };
        assert_eq!(
            received,
            8 * 1024 * 1024,
            "{proto:?}: the busy connection was kept"
        );
        // Then, with nothing in flight, the server closes it.
        let outcome = tokio::time::timeout(Duration::from_secs(5), closed).await;
        assert!(
            outcome.is_ok(),
            "{proto:?}: the idle connection is still open"
        );
    }
}

/// Reads a body slowly, over at least 1.5 s, returning how many bytes arrived.
async fn slow_read(mut body: hyper::body::Incoming) -> usize {
    use http_body_util::BodyExt;
    let start = std::time::Instant::now();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len();
        }
        if start.elapsed() < Duration::from_millis(1500) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1000),
        "read too fast to test"
    );
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let server = Foobar::setup()
        .shipped_site()
        .edge("max_connections = 1")
        .start();
    let pem = server.certificate_pem();
    let config = || web::tls_config(&pem, &[b"h2"]);
    let first = web::connect(server.https, "www.foobar.com", config())
        .await
        .unwrap();
    let second = tokio::spawn(web::connect(server.https, "www.foobar.com", config()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !second.is_finished(),
        "a second connection was served beyond the limit of one"
    );
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), second).await;
    assert!(
        matches!(second, Ok(Ok(Ok(_)))),
        "the waiting connection never got the slot"
    );
}
