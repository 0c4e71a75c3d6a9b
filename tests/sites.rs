//! Several sites in one process: chosen by TLS server name and Host, each with its own
//! certificate, root and routes; 421 for a request on another site's connection; the routes'
//! kinds; and configuration errors that name the file and line.
#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, path::Path};

use bytes::{Buf, Bytes};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{
    Foobar,
    upstream::Upstream,
    web::{ALL, Proto, Reply, connect, tls_config},
};

/// A self-signed certificate for `names`, written as `NAME.crt` and `NAME.key` in `dir`.
fn certificate(dir: &Path, file: &str, names: &[&str]) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(dir.join(format!("{file}.crt")), made.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{file}.key")),
        made.signing_key.serialize_pem(),
    )
    .unwrap();
    made.cert.pem().into_bytes()
}

/// One request with `sni` as the TLS server name and `host` as Host / :authority.
async fn ask(
    proto: Proto,
    addr: SocketAddr,
    trust: &[u8],
    sni: &str,
    host: &str,
    path: &str,
) -> Result<Reply, String> {
    let uri = format!("https://{host}{path}");
    match proto {
        Proto::H1 | Proto::H2 => {
            let alpn: &[u8] = if proto == Proto::H1 {
                b"http/1.1"
            } else {
                b"h2"
            };
            let stream = connect(addr, sni, tls_config(trust, &[alpn]))
                .await
                .map_err(|e| e.to_string())?;
            let request = Request::get(&uri).body(Full::new(Bytes::new())).unwrap();
            let response = support::web::send_over(proto, stream, request).await?;
            let (parts, body) = response.into_parts();
            Ok(Reply {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: body.collect().await.map_err(|e| e.to_string())?.to_bytes(),
            })
        }
        Proto::H3 => {
            let (mut sender, _endpoint) = support::web::h3_client(addr, trust, sni, false).await?;
            let mut stream = sender
                .send_request(Request::get(&uri).body(()).unwrap())
                .await
                .map_err(|e| e.to_string())?;
            // A server that has answered may stop reading (RFC 9114 section 4.1.2).
            let _ = stream.finish().await;
            let response = stream.recv_response().await.map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
                body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            let (parts, ()) = response.into_parts();
            Ok(Reply {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: Bytes::from(body),
            })
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_has_its_certificate_root_and_routes() {
    let certs = tempfile::tempdir().unwrap();
    let a = certificate(certs.path(), "a", &["a.example"]);
    let b = certificate(certs.path(), "b", &["b.example", "*.b.example"]);
    let c = certs.path().display().to_string();
    let server = Foobar::setup()
        .file("a/index.html", "site A\n")
        .file("b/index.html", "site B\n")
        .tables(&format!(
            "[[site]]\nnames = [\"a.example\"]\nroot = \"{{dir}}/public/a\"\n\
             cert = \"{c}/a.crt\"\nkey = \"{c}/a.key\"\n\
             [[site]]\nnames = [\"b.example\", \"*.b.example\"]\nroot = \"{{dir}}/public/b\"\n\
             cert = \"{c}/b.crt\"\nkey = \"{c}/b.key\"\n\
             [[site.route]]\npath = \"/hello\"\nexact = true\nrespond = \"hello from B\"\n"
        ))
        .start();
    for proto in ALL {
        let reply = ask(proto, server.https, &a, "a.example", "a.example", "/")
            .await
            .unwrap();
        assert_eq!(reply.body, "site A\n", "{proto:?}");
        let reply = ask(
            proto,
            server.https,
            &b,
            "www.b.example",
            "www.b.example",
            "/",
        )
        .await
        .unwrap();
        assert_eq!(reply.body, "site B\n", "{proto:?}: a wildcard name");
        let reply = ask(proto, server.https, &b, "b.example", "b.example", "/hello")
            .await
            .unwrap();
        assert_eq!(reply.body, "hello from B", "{proto:?}");
        // Only B has that route: A answers from its root (404).
        let reply = ask(proto, server.https, &a, "a.example", "a.example", "/hello")
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{proto:?}");
        // A name no site has: the first site answers it.
        let reply = ask(proto, server.https, &a, "a.example", "unknown.example", "/")
            .await
            .unwrap();
        assert_eq!(reply.body, "site A\n", "{proto:?}");
        // ... also on B's connection over HTTP/1.1; HTTP/2 and HTTP/3 get 421, as A's
        // certificate is not the one the connection has.
        let reply = ask(proto, server.https, &b, "b.example", "unknown.example", "/")
            .await
            .unwrap();
        match proto {
            Proto::H1 => assert_eq!(reply.body, "site A\n"),
            _ => assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{proto:?}"),
        }
        // B's name on A's connection (HTTP/2 and HTTP/3 reuse connections so): 421.
        let reply = ask(proto, server.https, &a, "a.example", "b.example", "/")
            .await
            .unwrap();
        match proto {
            Proto::H1 => assert_eq!(reply.body, "site B\n", "HTTP/1.1 goes by Host"),
            _ => assert_eq!(
                reply.status,
                StatusCode::MISDIRECTED_REQUEST,
                "{proto:?}: RFC 9110 section 15.5.20"
            ),
        }
        // A name no certificate covers: the handshake is refused.
        let refused = ask(proto, server.https, &a, "c.example", "c.example", "/").await;
        assert!(refused.is_err(), "{proto:?}: {refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_sharing_a_certificate_share_connections() {
    // Both on the self-signed certificate, which covers both names: no 421.
    let server = Foobar::setup()
        .file("a/index.html", "A\n")
        .file("b/index.html", "B\n")
        .tables(
            "[[site]]\nnames = [\"a.example\"]\nroot = \"{dir}/public/a\"\n\
             [[site]]\nnames = [\"b.example\"]\nroot = \"{dir}/public/b\"\n",
        )
        .start();
    let pem = server.certificate_pem();
    for proto in ALL {
        let reply = ask(proto, server.https, &pem, "a.example", "b.example", "/")
            .await
            .unwrap();
        assert_eq!(reply.body, "B\n", "{proto:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_in_order_by_prefix_exact_path_and_method() {
    let app = Upstream::start("app").await;
    let server = Foobar::setup()
        .file("spa/index.html", "the app shell\n")
        .file("spa/assets/x.js", "js\n")
        .file("docs/guide/start.htm", "start\n")
        .file("static/kept.txt", "kept\n")
        .tables(&format!(
            r#"[[site]]
names = ["www.foobar.com"]
root = "{{dir}}/public"

[[site.route]]
path = "/api"
methods = ["POST"]
respond = "posted"
status = 201

[[site.route]]
path = "/api"
strip_prefix = true
proxy = ["{upstream}"]
request_headers = {{ set = {{ "X-Env" = "test" }}, remove = ["Cookie"] }}
response_headers = {{ set = {{ "X-Route" = "api" }}, remove = ["X-Upstream"] }}

[[site.route]]
path = "/old"
redirect = "https://www.foobar.com/new{{uri}}"
status = 301

[[site.route]]
path = "/spa/"
strip_prefix = true
root = "{{dir}}/public/spa"
try_files = ["{{path}}", "/index.html"]

[[site.route]]
path = "/docs/"
root = "{{dir}}/public"
index = ["start.htm"]

[[site.route]]
path = "/static/"
root = "{{dir}}/public"
response_headers = {{ set = {{ "X-Route" = "static" }} }}

[[site.route]]
path = "/teapot"
exact = true
respond = "short and stout"
status = 418
"#,
            upstream = app.url()
        ))
        .start();
    let pem = server.certificate_pem();
    let host = "www.foobar.com";
    for proto in ALL {
        let get = |path: &'static str| ask(proto, server.https, &pem, host, host, path);
        let reply = get("/api/thing").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(seen["uri"], "/thing", "{proto:?}");
        assert_eq!(seen["headers"]["x-env"], "test", "{proto:?}");
        assert_eq!(reply.header("x-route"), Some("api"), "{proto:?}");
        assert_eq!(reply.header("x-upstream"), None, "{proto:?}");
        // `/api` also takes `/api` itself, never `/apis`.
        let reply = get("/apis").await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{proto:?}");
        let reply = get("/old/page?x=1").await.unwrap();
        assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY, "{proto:?}");
        assert_eq!(
            reply.header("location"),
            Some("https://www.foobar.com/new/old/page?x=1")
        );
        let reply = get("/spa/assets/x.js").await.unwrap();
        assert_eq!(reply.body, "js\n", "{proto:?}");
        let reply = get("/spa/some/client/route").await.unwrap();
        assert_eq!(reply.body, "the app shell\n", "{proto:?}: try_files");
        let reply = get("/docs/guide/").await.unwrap();
        assert_eq!(reply.body, "start\n", "{proto:?}: index");
        // A route's fields go on a static file's kept copy too (asked twice: the second comes
        // from memory, as every one after the first protocol's).
        for _ in 0..2 {
            let reply = get("/static/kept.txt").await.unwrap();
            assert_eq!(reply.body, "kept\n", "{proto:?}");
            assert_eq!(reply.header("x-route"), Some("static"), "{proto:?}");
        }
        let reply = get("/teapot").await.unwrap();
        assert_eq!(reply.status.as_u16(), 418, "{proto:?}");
        let reply = get("/teapot/more").await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{proto:?}: exact");
        // The built-in readiness answers on every site (for [[dns.health]] probes).
        let reply = get("/readyz").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
    }
    // A POST to /api takes the first route.
    let reply = support::web::fetch(
        Proto::H2,
        server.https,
        &pem,
        Request::post("https://www.foobar.com/api/x")
            .body(Bytes::from_static(b"x"))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body, "posted");
}

#[test]
fn a_bad_route_is_refused_with_file_line_and_reason() {
    let rows = [
        (
            "[[site]]\nnames = [\"a.example\"]\nroot = \"/tmp\"\n[[site.route]]\npath = \"/x\"\nproxy = [\"http://127.0.0.1:1\"]\nrespond = \"no\"\n",
            "one of proxy, fastcgi, app, redirect, respond",
        ),
        (
            "[[site]]\nnames = [\"a.example\"]\nroot = \"/tmp\"\n[[site.route]]\npath = \"/x\"\nrespond = \"x\"\npolicy = \"least_conn\"\n",
            "policy does not apply to a respond route",
        ),
        (
            "[[site]]\nnames = [\"a.example\"]\nroot = \"/tmp\"\n[[site.route]]\npath = \"/x\"\nproxy = [\"ftp://x\"]\n",
            "http://, https://, h2c:// or unix:",
        ),
        (
            "[[site]]\nnames = [\"a..example\"]\nroot = \"/tmp\"\n",
            "labels are 1 to 63 characters",
        ),
        (
            "[[site]]\nnames = [\"a.example\"]\nroot = \"/tmp\"\n[[site.route]]\npath = \"/x\"\nproxy = [\"http://127.0.0.1:1\"]\npolicy = \"cookie:\"\n",
            "not a cookie name",
        ),
        (
            "[[site]]\nnames = [\"a.example\"]\n[[site.route]]\npath = \"/x\"\nfastcgi = \"unix:/run/php.sock\"\n",
            "no root, and the site has none",
        ),
    ];
    for (tables, reason) in rows {
        let dir = Foobar::setup().tables(tables).prepare();
        let config = dir.path().join("foobar.toml");
        let output = support::output_within(
            std::process::Command::new(support::binary())
                .args(["serve", "--check", "--config"])
                .arg(&config),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{tables}: {stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
        let text = std::fs::read_to_string(&config).unwrap();
        let table_line = 1 + text.lines().position(|l| l == "[[site]]").unwrap();
        let at = format!("{}:", config.display());
        let line: usize = stderr
            .split(&at)
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no line in {stderr}"));
        assert!(line >= table_line, "{reason}: line {line}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_route_falls_through_to_the_sites_own_files() {
    let server = Foobar::setup()
        .file("blog/about.html", "about us\n")
        .tables(
            "[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{dir}/public/blog\"\n\
             [[site.route]]\npath = \"/\"\napp = true\n",
        )
        .start();
    let pem = server.certificate_pem();
    let reply = support::web::fetch(
        Proto::H2,
        server.https,
        &pem,
        support::web::get("/about.html", &[]),
    )
    .await;
    assert_eq!(reply.body, "about us\n");
    let reply = support::web::fetch(
        Proto::H2,
        server.https,
        &pem,
        support::web::get("/api/posts", &[]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&reply.body).contains("\"posts\""));
}
