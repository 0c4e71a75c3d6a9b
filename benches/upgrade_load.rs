//! Upgrades under load, longer than the test does: steady traffic over HTTP/1.1, HTTP/2 and
//! HTTP/3 (kept-alive and new connections) and DNS over UDP and TCP against a release build,
//! with an upgrade every few seconds. Prints what each client sent, what failed, what was
//! retried as the protocols allow, and the longest pause any client saw.
//!
//!   cargo bench --bench upgrade_load -- [SECONDS] [UPGRADES]     (default 60 s, 20 upgrades)
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Foobar, load::Load};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(60);
    let upgrades = args.get(1).copied().unwrap_or(20).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs(seconds), upgrades));
}

async fn run(length: Duration, upgrades: u64) {
    let server = Foobar::setup().shipped_site().start();
    let pem = server.certificate_pem();
    let page = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/public/index.html"))
        .unwrap()
        .len();
    let load = Load::start(server.https, server.dns, &pem, "/", page, "8.8.8.8");
    let started = Instant::now();
    let every = length / u32::try_from(upgrades + 1).unwrap_or(u32::MAX);
    let mut handovers = Vec::new();
    for n in 1..=upgrades {
        let at = every * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        let old = server.serving_pid();
        let began = Instant::now();
        let path = server.config_path();
        let output = tokio::task::spawn_blocking(move || {
            support::output_within(
                std::process::Command::new(support::binary())
                    .args(["upgrade", "--config"])
                    .arg(path),
            )
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let ready = began.elapsed();
        while !support::exited(old) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handovers.push((ready, began.elapsed()));
    }
    tokio::time::sleep(length.saturating_sub(started.elapsed())).await;
    let report = load.stop().await;
    println!("{} s of load, {} upgrades", length.as_secs(), upgrades);
    println!("{}", report.summary());
    let http = ["H1", "H2", "H3"];
    let sent: u64 = http.iter().map(|p| report.sent(p)).sum();
    let failed: u64 = http.iter().map(|p| report.failed(p)).sum();
    println!(
        "HTTP requests: {sent} sent, {failed} failed, {} retried as the protocols allow",
        report.retried()
    );
    println!(
        "DNS queries: {} sent, {} unanswered or wrong",
        report.sent("dns"),
        report.failed("dns")
    );
    println!(
        "longest pause a client saw: {} ms",
        report.longest_pause().as_millis()
    );
    let ready: Vec<u128> = handovers.iter().map(|(r, _)| r.as_millis()).collect();
    let exited: Vec<u128> = handovers.iter().map(|(_, e)| e.as_millis()).collect();
    println!("new process serving after (ms): {ready:?}");
    println!("old process gone after (ms): {exited:?}");
}
