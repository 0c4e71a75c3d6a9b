//! The app through the binary: the same API and pages over HTTP/1.1, HTTP/2 and HTTP/3, data
//! that survives a restart, and a database outage answered with 503 then recovered.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::{
    Foobar,
    web::{Proto, Reply, fetch, get},
};

fn json_request(method: &str, path: &str, body: &Value, token: Option<&str>) -> Request<Bytes> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("https://www.foobar.com{path}"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Bytes::from(body.to_string())).unwrap()
}

fn json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {:?}", reply.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_over_h3_read_over_h1_page_over_h2_and_survive_a_restart() {
    let server = Foobar::setup().shipped_site().start();
    let pem = server.certificate_pem();
    let token = server.api_token();
    let post =
        json!({ "title": "Over QUIC <script>alert(1)</script>", "body": "Sent with HTTP/3." });
    let created = fetch(
        Proto::H3,
        server.https,
        &pem,
        json_request("POST", "/api/posts", &post, Some(&token)),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let location = created.header("location").unwrap().to_string();
    let etag = created.header("etag").unwrap().to_string();
    let comment = json!({ "author": "ann", "body": "Read it over HTTP/2." });
    let added = fetch(
        Proto::H2,
        server.https,
        &pem,
        json_request("POST", &format!("{location}/comments"), &comment, None),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED);

    let read = fetch(Proto::H1, server.https, &pem, get(&location, &[])).await;
    assert_eq!(read.status, StatusCode::OK);
    // The comment changed what the JSON shows (its count), not the post's version: the tag
    // changed, and its id-version part (what a change's If-Match compares) did not.
    let read_etag = read.header("etag").unwrap();
    assert_ne!(read_etag, etag);
    assert_eq!(
        read_etag.rsplit_once('-').unwrap().0,
        etag.rsplit_once('-').unwrap().0
    );
    assert_eq!(json(&read)["title"], post["title"]);
    assert_eq!(json(&read)["comment_count"], 1);

    let id = json(&read)["id"].as_i64().unwrap();
    let page = fetch(
        Proto::H2,
        server.https,
        &pem,
        get(&format!("/posts/{id}"), &[]),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("Over QUIC &#60;script&#62;"), "{html}");
    assert!(!html.contains("<script>alert(1)"), "escaped on the page");
    assert!(html.contains("Read it over HTTP/2."));
    // The app's paths win, everything else is still the static site.
    let home = fetch(Proto::H2, server.https, &pem, get("/", &[])).await;
    assert!(String::from_utf8_lossy(&home.body).contains("One server for the whole site"));

    let server = server.restart();
    let pem = server.certificate_pem();
    let read = fetch(Proto::H3, server.https, &pem, get(&location, &[])).await;
    assert_eq!(read.status, StatusCode::OK, "the post survives a restart");
    assert_eq!(json(&read)["title"], post["title"]);
    assert_eq!(server.api_token(), token, "the generated token is kept");
}

/// Two nodes on one database: a write through one is read at once through it, and through the
/// other once that node's kept response is older than `cache_ms` (the staleness README states).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_write_is_read_within_the_cache_time() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!(
        "database = \"sqlite://{}\"\ncache_ms = 2000",
        dir.path().join("shared.db").display()
    );
    let one = Foobar::setup().app(&database).start();
    let two = Foobar::setup().app(&database).start();
    let (pem_one, pem_two) = (one.certificate_pem(), two.certificate_pem());
    let post = json!({ "title": "Before", "body": "text" });
    let created = fetch(
        Proto::H2,
        one.https,
        &pem_one,
        json_request("POST", "/api/posts", &post, Some(&one.api_token())),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let location = created.header("location").unwrap().to_string();
    let title = |reply: &Reply| json(reply)["title"].as_str().unwrap().to_string();
    let read = fetch(Proto::H2, two.https, &pem_two, get(&location, &[])).await;
    assert_eq!(title(&read), "Before", "node two keeps this");

    let edit = json!({ "title": "After", "body": "text" });
    let changed = fetch(
        Proto::H1,
        one.https,
        &pem_one,
        json_request("PUT", &location, &edit, Some(&one.api_token())),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);
    let acknowledged = std::time::Instant::now();
    let own = fetch(Proto::H3, one.https, &pem_one, get(&location, &[])).await;
    assert_eq!(title(&own), "After", "the writing node never reads stale");
    let other = fetch(Proto::H2, two.https, &pem_two, get(&location, &[])).await;
    assert_eq!(
        title(&other),
        "Before",
        "the other node serves what it kept"
    );
    loop {
        let other = fetch(Proto::H2, two.https, &pem_two, get(&location, &[])).await;
        if title(&other) == "After" {
            break;
        }
        assert!(
            acknowledged.elapsed() < std::time::Duration::from_millis(2500),
            "node two still stale {:?} after the write",
            acknowledged.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!(
        "the other node read the write {:?} after it",
        acknowledged.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_over_the_wire() {
    let server = Foobar::setup().start();
    let pem = server.certificate_pem();
    let token = server.api_token();
    let post = json!({ "title": "t", "body": "b" });
    for proto in [Proto::H1, Proto::H2, Proto::H3] {
        let unauthorized = fetch(
            proto,
            server.https,
            &pem,
            json_request("POST", "/api/posts", &post, None),
        )
        .await;
        assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED, "{proto:?}");
        assert!(json(&unauthorized)["error"].is_string());
        let bad = Request::post("https://www.foobar.com/api/posts")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::from_static(b"{broken"))
            .unwrap();
        assert_eq!(
            fetch(proto, server.https, &pem, bad).await.status,
            StatusCode::BAD_REQUEST
        );
        let missing = fetch(proto, server.https, &pem, get("/api/posts/424242", &[])).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(json(&missing)["error"], "post not found");
        let huge = json!({ "title": "t", "body": "x".repeat(300 * 1024) });
        let too_large = fetch(
            proto,
            server.https,
            &pem,
            json_request("POST", "/api/posts", &huge, Some(&token)),
        )
        .await;
        assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE, "{proto:?}");
    }
    let created = fetch(
        Proto::H2,
        server.https,
        &pem,
        json_request("POST", "/api/posts", &post, Some(&token)),
    )
    .await;
    let location = created.header("location").unwrap().to_string();
    let mut stale = json_request(
        "PUT",
        &location,
        &json!({ "title": "new", "body": "b" }),
        Some(&token),
    );
    stale
        .headers_mut()
        .insert("if-match", "\"1-99\"".parse().unwrap());
    let reply = fetch(Proto::H1, server.https, &pem, stale).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
}

/// A TCP forwarder the test turns on and off, standing between the app and MariaDB.
struct Switch {
    port: u16,
    to: std::net::SocketAddr,
    /// Holds the port while nothing listens on it: bound, never listening, so a connection to it
    /// is refused, and no other socket on the machine (a test binding port 0, a connect's own
    /// ephemeral port) can take the port between `off` and `on`.
    _hold: socket2::Socket,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A TCP socket with SO_REUSEPORT set, bound to `port` on 127.0.0.1 (0: any free port).
fn reuseport_socket(port: u16) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_port(true).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    socket.bind(&addr.into()).unwrap();
    socket
}

impl Switch {
    fn new(to: std::net::SocketAddr) -> Switch {
        let hold = reuseport_socket(0);
        let port = hold.local_addr().unwrap().as_socket().unwrap().port();
        Switch {
            port,
            to,
            _hold: hold,
            task: None,
        }
    }

    async fn on(&mut self) {
        let socket = reuseport_socket(self.port);
        socket.listen(128).unwrap();
        socket.set_nonblocking(true).unwrap();
        let listener =
            tokio::net::TcpListener::from_std(std::net::TcpListener::from(socket)).unwrap();
        let to = self.to;
        self.task = Some(tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    fn off(&mut self) {
        // Dropping the task closes the listener and every forwarded connection.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A database outage: the app starts against a MySQL address where nothing listens, answers 503
/// quickly, recovers by itself when the server appears, and keeps acknowledged writes across a
/// second outage. Needs FOOBAR_TEST_MYSQL_URL (a MariaDB/MySQL server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503_then_recovers_without_losing_writes() {
    use mysql_async::prelude::Queryable;
    let Some(server_url) =
        support::mysql_url("a_database_outage_gives_503_then_recovers_without_losing_writes")
    else {
        return;
    };
    let name = format!("foobar_outage_{}", std::process::id());
    let admin = mysql_async::Pool::new(server_url.as_str());
    let mut conn = admin.get_conn().await.unwrap();
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    drop(conn);
    let opts = mysql_async::Opts::from_url(&server_url).unwrap();
    let real = std::net::SocketAddr::new(opts.ip_or_hostname().parse().unwrap(), opts.tcp_port());
    let user = opts.user().unwrap_or("root").to_string();
    let password = opts.pass().map(|p| format!(":{p}")).unwrap_or_default();
    let mut switch = Switch::new(real);

    let server = Foobar::setup()
        .app(&format!(
            "database = \"mysql://{user}{password}@127.0.0.1:{}/{name}\"",
            switch.port
        ))
        .start();
    let pem = server.certificate_pem();
    let token = server.api_token();
    let post = json!({ "title": "Kept", "body": "through outages" });

    let started = std::time::Instant::now();
    let ready = fetch(Proto::H2, server.https, &pem, get("/readyz", &[])).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let write = fetch(
        Proto::H2,
        server.https,
        &pem,
        json_request("POST", "/api/posts", &post, Some(&token)),
    )
    .await;
    assert_eq!(write.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&write)["error"], "database unavailable");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "503s come quickly"
    );

    switch.on().await;
    let created = fetch(
        Proto::H2,
        server.https,
        &pem,
        json_request("POST", "/api/posts", &post, Some(&token)),
    )
    .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "recovered by itself: {:?}",
        created.body
    );
    let location = created.header("location").unwrap().to_string();
    assert_eq!(
        fetch(Proto::H1, server.https, &pem, get("/readyz", &[]))
            .await
            .status,
        StatusCode::OK
    );

    switch.off();
    let during = fetch(Proto::H3, server.https, &pem, get(&location, &[])).await;
    assert_eq!(during.status, StatusCode::SERVICE_UNAVAILABLE);
    switch.on().await;
    let after = fetch(Proto::H3, server.https, &pem, get(&location, &[])).await;
    assert_eq!(after.status, StatusCode::OK, "{:?}", after.body);
    assert_eq!(
        json(&after)["title"],
        "Kept",
        "the acknowledged write survived"
    );

    drop(server);
    let mut conn = admin.get_conn().await.unwrap();
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    drop(conn);
    admin.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_posting_is_limited_per_client_address() {
    let server = Foobar::setup()
        .app("comments_per_minute = 1")
        .app("comment_burst = 2")
        .start();
    let pem = server.certificate_pem();
    let token = server.api_token();
    let post = json!({ "title": "Open to comments", "body": "say hi" });
    let created = fetch(
        Proto::H1,
        server.https,
        &pem,
        json_request("POST", "/api/posts", &post, Some(&token)),
    )
    .await;
    let comments = format!("{}/comments", created.header("location").unwrap());
    let comment = json!({ "author": "ann", "body": "hi" });
    // The allowance is per address, whatever the protocol.
    for proto in [Proto::H2, Proto::H3] {
        let reply = fetch(
            proto,
            server.https,
            &pem,
            json_request("POST", &comments, &comment, None),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{proto:?}");
    }
    let refused = fetch(
        Proto::H1,
        server.https,
        &pem,
        json_request("POST", &comments, &comment, None),
    )
    .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Reading is not limited.
    let listed = fetch(Proto::H2, server.https, &pem, get(&comments, &[])).await;
    assert_eq!(json(&listed)["comments"].as_array().unwrap().len(), 2);
}

/// Runs `serve --check` on the configuration in `dir`.
fn check(dir: &std::path::Path) -> std::process::Output {
    support::output_within(
        std::process::Command::new(support::binary())
            .args(["serve", "--check", "--config"])
            .arg(dir.join("foobar.toml")),
    )
}

#[test]
fn serve_check_is_a_dry_run() {
    let dir = Foobar::setup().shipped_site().prepare();
    let output = check(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "no certificate, token or database written"
    );

    // What it checks it reads: a database from a newer binary is refused.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let database = sqlite_at_version(&data.join("foobar.db"), 99);
    let output = check(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("schema is version 99"), "{stderr}");
    assert_eq!(
        std::fs::read(data.join("foobar.db")).unwrap(),
        database,
        "unchanged"
    );
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        1,
        "nothing else written"
    );
}

/// A SQLite database at `path` whose schema is at `version`; its bytes.
fn sqlite_at_version(path: &std::path::Path, version: i64) -> Vec<u8> {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch(&format!(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES ({version});"
        ))
        .unwrap();
    drop(connection);
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_check_reads_a_mysql_database_without_migrating_it() {
    use mysql_async::prelude::Queryable;
    let Some(server_url) =
        support::mysql_url("serve_check_reads_a_mysql_database_without_migrating_it")
    else {
        return;
    };
    let name = format!("foobar_check_{}", std::process::id());
    let admin = mysql_async::Pool::new(server_url.as_str());
    let mut conn = admin.get_conn().await.unwrap();
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    let base = server_url.rsplit_once('/').unwrap().0;
    let dir = Foobar::setup()
        .app(&format!("database = \"{base}/{name}\""))
        .prepare();
    let output = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || check(&path)
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tables: Vec<String> = conn
        .query(format!("SHOW TABLES FROM `{name}`"))
        .await
        .unwrap();
    assert!(tables.is_empty(), "check created {tables:?}");
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    drop(conn);
    admin.disconnect().await.unwrap();
}
