//! Upgrades and reloads without a gap: a new process takes over the sockets while clients of
//! every protocol keep sending, and nothing they send is lost.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::{
    Foobar, exited,
    load::Load,
    web::{self, Proto, fetch, get},
};

use support::control_async as control;

/// Waits until process `pid` has exited; how long that took.
async fn exit_of(pid: u32, within: Duration) -> Duration {
    let start = Instant::now();
    while !exited(pid) {
        assert!(
            start.elapsed() < within,
            "process {pid} still runs after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_and_reloads_under_load_lose_nothing() {
    let large = 16 * 1024 * 1024;
    let server = Foobar::setup()
        .shipped_site()
        .file("large.bin", vec![7u8; large])
        .edge("shutdown_timeout = 5")
        .start();
    let pem = server.certificate_pem();
    let page = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/public/index.html"))
        .unwrap()
        .len();
    let load = Load::start(server.https, server.dns, &pem, "/", page, "8.8.8.8");

    // A long download, read slowly so that it spans the first upgrade.
    let download = {
        let (addr, pem) = (server.https, pem.clone());
        tokio::spawn(async move {
            let mut h3 = web::H3::connect(addr, &pem, None).await;
            h3.get_over("/large.bin", Duration::from_secs(3)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut handovers = Vec::new();
    for round in 0..10 {
        let old = server.serving_pid();
        // Five upgrades, then five reloads: in place when the file is unchanged, by a new
        // process when a setting that needs one changed.
        let command = if round < 5 { "upgrade" } else { "reload" };
        if round == 9 {
            // A second DNS address: new sockets, so a new process takes over.
            let config = std::fs::read_to_string(server.config_path()).unwrap();
            let listening = format!(
                "listen = [\"127.0.0.1:0\", \"127.0.0.2:{}\"]",
                server.dns.port()
            );
            std::fs::write(
                server.config_path(),
                config.replace("listen = [\"127.0.0.1:0\"]", &listening),
            )
            .unwrap();
        } else if round >= 7 {
            let config: String = std::fs::read_to_string(server.config_path())
                .unwrap()
                .lines()
                .filter(|line| !line.starts_with("max_streams"))
                .map(|line| format!("{line}\n"))
                .collect();
            let limit = format!("shutdown_timeout = 5\nmax_streams = {}", 90 + round);
            std::fs::write(
                server.config_path(),
                config.replace("shutdown_timeout = 5", &limit),
            )
            .unwrap();
        }
        let (ok, stdout, stderr) = control(&server, command).await;
        assert!(ok, "{command} {round}: {stdout}{stderr}");
        let new = server.serving_pid();
        if stdout.contains("in place") {
            assert_eq!(new, old, "{stdout}");
            continue;
        }
        assert_ne!(new, old, "{command} {round}: {stdout}");
        assert!(stdout.contains(&new.to_string()), "{stdout}");
        handovers.push(exit_of(old, Duration::from_secs(5 + 2)).await);
    }

    let (status, body) = download.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body.len(),
        large,
        "the download begun before the upgrades completed"
    );

    let report = load.stop().await;
    eprintln!("{}", report.summary());
    eprintln!("old processes exited after {handovers:?}");
    assert_eq!(
        handovers.len(),
        6,
        "5 upgrades and a reload with a new address: {handovers:?}"
    );
    for client in &report.clients {
        assert!(client.sent > 20, "{}", report.summary());
        assert_eq!(client.failed, 0, "{}", report.summary());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let server = Foobar::setup().shipped_site().start();
    let pem = server.certificate_pem();
    let serving = server.serving_pid();
    let good = std::fs::read_to_string(server.config_path()).unwrap();
    let children = || {
        std::fs::read_to_string(format!("/proc/{serving}/task/{serving}/children"))
            .unwrap_or_default()
    };

    // A key the new process does not know: refused with file, line and key.
    std::fs::write(server.config_path(), format!("{good}\nmax_stream = 5\n")).unwrap();
    let (ok, _, stderr) = control(&server, "upgrade").await;
    assert!(!ok);
    let line = good.lines().count() + 2;
    let at = format!(
        "{}:{line}:1: unknown field `max_stream`",
        server.config_path().display()
    );
    assert!(stderr.contains(&at), "{stderr}");
    assert_eq!(server.serving_pid(), serving);
    let reply = fetch(Proto::H3, server.https, &pem, get("/", &[])).await;
    assert_eq!(reply.status, StatusCode::OK);

    // A certificate that does not load: the new process fails after parsing, and says why.
    std::fs::write(
        server.config_path(),
        good.replace(
            "[edge]\n",
            "[edge]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
        ),
    )
    .unwrap();
    let (ok, _, stderr) = control(&server, "upgrade").await;
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
    assert_eq!(server.serving_pid(), serving);
    assert!(children().trim().is_empty(), "the failed process is gone");
    for proto in web::ALL {
        let reply = fetch(proto, server.https, &pem, get("/", &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
    }
    assert_eq!(
        support::addresses(&server.query("www.foobar.com.", hickory_proto::rr::RecordType::A)),
        ["8.8.8.8"]
    );

    // A new binary that dies before it serves.
    std::fs::write(server.config_path(), &good).unwrap();
    let crashing = server.config_path().with_file_name("crashing-foobar");
    std::fs::write(&crashing, "#!/bin/sh\necho 'it broke' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(
        &crashing,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = server.config_path();
    let output = tokio::task::spawn_blocking(move || {
        support::output_within(
            std::process::Command::new(support::binary())
                .args(["upgrade", "--binary"])
                .arg(&crashing)
                .arg("--config")
                .arg(path),
        )
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("exited before serving"), "{stderr}");
    assert_eq!(server.serving_pid(), serving);
    let reply = fetch(Proto::H2, server.https, &pem, get("/", &[])).await;
    assert_eq!(reply.status, StatusCode::OK);

    // Fixed, the upgrade goes through.
    let (ok, stdout, stderr) = control(&server, "upgrade").await;
    assert!(ok, "{stdout}{stderr}");
    assert_ne!(server.serving_pid(), serving);
}

#[test]
fn a_second_server_on_the_same_state_dir_is_refused() {
    let server = Foobar::setup().start();
    let output = support::output_within(
        std::process::Command::new(support::binary())
            .args(["serve", "--config"])
            .arg(server.config_path()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("already runs"), "{stderr}");
    assert!(
        stderr.contains(&server.serving_pid().to_string()),
        "{stderr}"
    );
}

fn post(token: &str, body_bytes: usize) -> http::Request<bytes::Bytes> {
    let body = serde_json::json!({ "title": "Reloaded", "body": "x".repeat(body_bytes) });
    http::Request::post("https://www.foobar.com/api/posts")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(bytes::Bytes::from(body.to_string()))
        .unwrap()
}

fn www(server: &Foobar) -> Vec<String> {
    support::addresses(&server.query("www.foobar.com.", hickory_proto::rr::RecordType::A))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_token_limits_and_zones_folder_in_place_and_refuses_a_broken_file() {
    let server = Foobar::setup()
        .shipped_site()
        .app("api_token = \"first-token\"")
        .start();
    let pem = server.certificate_pem();
    let serving = server.serving_pid();
    // Another zones folder, where www.foobar.com has another address.
    let other = server.config_path().with_file_name("other-zones");
    std::fs::create_dir(&other).unwrap();
    let zone = support::shipped_zone();
    std::fs::write(
        other.join("foobar.com.zone"),
        zone.replace("IN A    8.8.8.8", "IN A    9.9.9.9"),
    )
    .unwrap();
    assert_eq!(www(&server), ["8.8.8.8"]);
    let created = fetch(Proto::H2, server.https, &pem, post("first-token", 10)).await;
    assert_eq!(created.status, StatusCode::CREATED);

    let good = std::fs::read_to_string(server.config_path()).unwrap();
    let zones_line = good.lines().find(|l| l.starts_with("zones = ")).unwrap();
    let reloaded = good
        .replace("first-token", "second-token")
        .replace(zones_line, &format!("zones = \"{}\"", other.display()))
        .replace("[edge]\n", "[edge]\nmax_body_bytes = 200\n");
    std::fs::write(server.config_path(), &reloaded).unwrap();
    let (ok, stdout, stderr) = control(&server, "reload").await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("in place"), "{stdout}");
    assert_eq!(server.serving_pid(), serving, "no new process");

    assert_eq!(www(&server), ["9.9.9.9"], "the other zones folder serves");
    for proto in web::ALL {
        let old_token = fetch(proto, server.https, &pem, post("first-token", 10)).await;
        assert_eq!(old_token.status, StatusCode::UNAUTHORIZED, "{proto:?}");
        let new_token = fetch(proto, server.https, &pem, post("second-token", 10)).await;
        assert_eq!(new_token.status, StatusCode::CREATED, "{proto:?}");
        let too_large = fetch(proto, server.https, &pem, post("second-token", 300)).await;
        assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE, "{proto:?}");
    }
    // The watch follows the zones folder: an edit there is served.
    support::save_by_rename(
        &other.join("foobar.com.zone"),
        &zone
            .replace("IN A    8.8.8.8", "IN A    9.9.9.10")
            .replace("2026112901", "2026112902"),
    );
    support::wait_until("the edit in the new folder is served", || {
        www(&server) == ["9.9.9.10"]
    });
    // Over TCP too: the first connection accepted after the reload is served from the new
    // zones, not from the ones the accept loop held while it waited.
    let over_tcp = support::query_tcp(
        server.dns,
        "www.foobar.com.",
        hickory_proto::rr::RecordType::A,
    );
    assert_eq!(support::addresses(&over_tcp), ["9.9.9.10"], "over TCP");

    // A broken file changes nothing, and says where it is broken.
    let broken = reloaded.replace("max_body_bytes = 200", "max_body_bytes = \"lots\"");
    std::fs::write(server.config_path(), &broken).unwrap();
    let (ok, _, stderr) = control(&server, "reload").await;
    assert!(!ok);
    let line = 1 + broken
        .lines()
        .position(|l| l.starts_with("max_body_bytes"))
        .unwrap();
    let at = format!("{}:{line}:", server.config_path().display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(
        stderr.contains("max_body_bytes") || stderr.contains("integer"),
        "{stderr}"
    );
    // SIGHUP reloads the same way: refused, logged with the place.
    let skip = server.log_len();
    server.signal("HUP");
    let logged = server.wait_for_log_after(skip, "reload failed");
    assert!(logged.contains(&at), "{logged}");
    assert_eq!(server.serving_pid(), serving);
    let still = fetch(Proto::H3, server.https, &pem, post("second-token", 10)).await;
    assert_eq!(still.status, StatusCode::CREATED);
    assert_eq!(www(&server), ["9.9.9.10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_listen_address_is_done_by_a_new_process() {
    let server = Foobar::setup().start();
    let serving = server.serving_pid();
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    // Keep the port the first address has, add a second address on another loopback IP.
    let listening = format!(
        "listen = [\"127.0.0.1:0\", \"127.0.0.2:{}\"]",
        server.dns.port()
    );
    std::fs::write(
        server.config_path(),
        config.replace("listen = [\"127.0.0.1:0\"]", &listening),
    )
    .unwrap();
    let (ok, stdout, stderr) = control(&server, "reload").await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("new process"), "{stdout}");
    assert_ne!(server.serving_pid(), serving);
    exit_of(serving, Duration::from_secs(12)).await;
    // The first address is the same socket as before; the second is new.
    let second: std::net::SocketAddr = format!("127.0.0.2:{}", server.dns.port()).parse().unwrap();
    for address in [server.dns, second] {
        let reply =
            support::query_udp(address, "www.foobar.com.", hickory_proto::rr::RecordType::A);
        assert_eq!(support::addresses(&reply), ["8.8.8.8"], "{address}");
    }
}

/// Messages a service manager would receive on its notification socket.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let (sender, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(length) = socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..length]).into_owned();
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        NotifySocket {
            path,
            messages,
            _dir: dir,
        }
    }

    /// Waits for a message with every one of `fields`.
    fn expect(&self, fields: &[&str]) -> String {
        let deadline = Instant::now() + support::DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no notification with {fields:?}"));
            if fields
                .iter()
                .all(|field| message.lines().any(|line| line == *field))
            {
                return message;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_the_new_main_pid_and_stopping() {
    let notify = NotifySocket::bind();
    let server = Foobar::setup()
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .start();
    let first = server.serving_pid();
    notify.expect(&["READY=1", &format!("MAINPID={first}")]);
    let (ok, stdout, stderr) = control(&server, "upgrade").await;
    assert!(ok, "{stdout}{stderr}");
    let reloading = notify.expect(&["RELOADING=1"]);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let second = server.serving_pid();
    notify.expect(&["READY=1", &format!("MAINPID={second}")]);
    exit_of(first, Duration::from_secs(12)).await;
    // The old process, gone after a handover, never said STOPPING: the service did not stop.
    while let Ok(message) = notify.messages.try_recv() {
        assert!(!message.contains("STOPPING=1"), "{message}");
    }
    std::process::Command::new("kill")
        .args(["-TERM", &second.to_string()])
        .status()
        .unwrap();
    notify.expect(&["STOPPING=1"]);
    exit_of(second, Duration::from_secs(12)).await;
}

#[test]
fn the_systemd_unit_verifies() {
    if !support::installed("systemd-analyze", &["--version"]) {
        return support::skip_without(
            "the_systemd_unit_verifies",
            "systemd-analyze",
            "apt-get install systemd",
        );
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/systemd/foobar.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecReload=/usr/bin/foobar upgrade"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foobar.service");
    std::fs::write(&path, unit.replace("/usr/bin/foobar", support::binary())).unwrap();
    let output = support::output_within(
        std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze has remarks: {said}"
    );
}
