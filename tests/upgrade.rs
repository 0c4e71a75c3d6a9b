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

/// Runs `foobar COMMAND` against the server off the async runtime; its stdout and stderr.
async fn control(server: &Foobar, command: &'static str) -> (bool, String, String) {
    let path = server.config_path();
    let output = tokio::task::spawn_blocking(move || {
        support::output_within(
            std::process::Command::new(support::binary())
                .arg(command)
                .arg("--config")
                .arg(path),
        )
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

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
        if round >= 7 {
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
    assert!(handovers.len() >= 7, "{handovers:?}");
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

    // Fixed, the upgrade goes through.
    std::fs::write(server.config_path(), &good).unwrap();
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
