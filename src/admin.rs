//! The admin listener (`[admin] listen`, loopback by default): `/metrics` in the Prometheus
//! text format, and the status that `foobar ctl` reads. Plain HTTP/1.1, off the public ports.
//!
//! Each crate counts on its own atomics and hands over a collector; this module registers them
//! with the process collector and encodes at scrape time with `prometheus-client`.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use foobar_metrics::{Collector, DescriptorEncoder, MetricType, NO_LABELS, Registry, Unit, gauges};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::supervise::Supervisor;

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where `/metrics` and `foobar ctl` are served; empty turns the admin listener off.
    pub listen: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9153".to_string(),
        }
    }
}

impl Config {
    /// The address to listen on, `None` when turned off.
    pub fn address(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.listen.trim().is_empty() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("admin.listen {:?}: {e}", self.listen))
    }
}

/// What the admin listener reads from the running server, and acts on.
#[derive(Clone)]
pub struct Admin {
    registry: Arc<Registry>,
    status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    dns: foobar_dns::Dns,
    /// The ACME client's certificates.
    acme: Arc<foobar_acme::Status>,
    /// The running server, once it runs: reloads go through it.
    supervisor: Arc<OnceLock<Supervisor>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// `collectors` are the crates' collectors; the process collector is added.
    pub fn new(
        collectors: Vec<Box<dyn Collector>>,
        dns: foobar_dns::Dns,
        supervisor: Arc<OnceLock<Supervisor>>,
        acme: Arc<foobar_acme::Status>,
        status: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Admin {
        let mut registry = Registry::default();
        for collector in collectors {
            registry.register_collector(collector);
        }
        registry.register_collector(Box::new(Process));
        Admin {
            registry: Arc::new(registry),
            status: Arc::new(status),
            dns,
            acme,
            supervisor,
        }
    }

    /// Serves on `listener` until `shutdown`.
    pub async fn serve(self, listener: std::net::TcpListener, shutdown: CancellationToken) {
        let addr = listener.local_addr().ok();
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(listener) => listener,
            Err(e) => {
                warn!(error = %e, "admin listener not served");
                return;
            }
        };
        if let Some(addr) = addr {
            info!(%addr, "admin listening (/metrics, foobar ctl)");
        }
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .route("/zones", get(zones))
            .route("/reload", post(reload))
            .route("/zones/{name}/reload", post(reload_zone))
            .route(
                "/zones/{name}/dnssec/algorithm/{algorithm}",
                post(algorithm_rollover),
            )
            .route("/acme/renew", post(acme_renew))
            .with_state(self);
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "admin listener");
        }
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let mut text = String::with_capacity(16 * 1024);
    match foobar_metrics::encode(&mut text, &admin.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics could not be encoded\n".to_string(),
        ),
    }
}

async fn status(State(admin): State<Admin>) -> impl IntoResponse {
    let mut status = (admin.status)();
    let certificates: Vec<serde_json::Value> = foobar_edge::metrics::certificates()
        .into_iter()
        .map(|(names, expires)| serde_json::json!({ "names": names, "expires": expires }))
        .collect();
    status["certificate"] = certificates.first().cloned().unwrap_or_default();
    status["certificates"] = serde_json::Value::Array(certificates);
    status["acme"] = serde_json::json!(admin.acme.certificates());
    status["database"] = match foobar_app::metrics::database().await {
        Some((backend, Ok(()))) => serde_json::json!({ "backend": backend, "ready": true }),
        Some((backend, Err(error))) => {
            serde_json::json!({ "backend": backend, "ready": false, "error": error.to_string() })
        }
        None => serde_json::Value::Null,
    };
    Json(status)
}

async fn zones(State(admin): State<Admin>) -> impl IntoResponse {
    Json(serde_json::json!({ "zones": admin.dns.zone_status() }))
}

/// An action's answer: `{"ok": true, "message": ...}`, or 409 with `{"ok": false, "error"}`.
fn outcome<T: std::fmt::Display, E: std::fmt::Display>(
    result: Result<T, E>,
) -> (StatusCode, Json<serde_json::Value>) {
    match result {
        Ok(message) => (
            StatusCode::OK,
            Json(serde_json::json!({ "ok": true, "message": message.to_string() })),
        ),
        // `:#` gives an error's causes too, as `anyhow` chains them.
        Err(error) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "ok": false, "error": format!("{error:#}") })),
        ),
    }
}

async fn reload(State(admin): State<Admin>) -> impl IntoResponse {
    let Some(supervisor) = admin.supervisor.get().cloned() else {
        return outcome::<&str, _>(Err("the server is still starting"));
    };
    outcome(supervisor.reload().await)
}

async fn reload_zone(State(admin): State<Admin>, Path(name): Path<String>) -> impl IntoResponse {
    outcome(admin.dns.reload_zone(&name).await)
}

/// Starts an algorithm rollover (`foobar ctl dnssec algorithm ZONE ALGORITHM`).
async fn algorithm_rollover(
    State(admin): State<Admin>,
    Path((name, algorithm)): Path<(String, String)>,
) -> impl IntoResponse {
    outcome(admin.dns.dnssec_algorithm_rollover(&name, &algorithm))
}

/// Orders every ACME certificate again now, due or not (`foobar ctl acme renew`).
async fn acme_renew(State(admin): State<Admin>) -> impl IntoResponse {
    let count = admin.acme.certificates().len();
    if count == 0 {
        return outcome::<&str, _>(Err("no certificate comes from ACME here"));
    }
    admin.acme.renew_all();
    outcome::<_, &str>(Ok(format!("renewing {count} certificate(s)")))
}

/// The standard process metrics (as Prometheus client libraries name them), read from /proc:
/// `prometheus-client` has no process collector, and these six values are all it would read.
#[derive(Debug)]
struct Process;

/// Linux's clock tick for /proc times: sysconf(_SC_CLK_TCK).
fn clock_ticks() -> f64 {
    let ticks = rustix::param::clock_ticks_per_second();
    if ticks == 0 { 100.0 } else { ticks as f64 }
}

/// Fields of /proc/self/stat after the command name (which may hold spaces).
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let ticks = clock_ticks();
        // After ")": state is field 0, utime 11, stime 12, starttime 19, vsize 20, rss 21.
        let fields = stat_fields().unwrap_or_default();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (field(11), field(12)) {
            let mut cpu = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            cpu.encode_family(&NO_LABELS)?
                .encode_counter::<foobar_metrics::NoLabelSet, _, f64>(
                    &((user + system) as f64 / ticks),
                    None,
                )?;
        }
        let page = rustix::param::page_size() as u64;
        if let Some(rss) = field(21) {
            gauges(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(&Unit::Bytes),
                [(NO_LABELS, (rss * page) as i64)],
            )?;
        }
        if let Some(vsize) = field(20) {
            gauges(
                &mut encoder,
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(&Unit::Bytes),
                [(NO_LABELS, vsize as i64)],
            )?;
        }
        if let (Some(start), Some(boot)) = (field(19), boot_time()) {
            gauges(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                [(NO_LABELS, boot as f64 + start as f64 / ticks)],
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauges(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                [(NO_LABELS, fds.count() as i64)],
            )?;
        }
        if let Ok(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .ok_or(())
        {
            gauges(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                [(NO_LABELS, limit as i64)],
            )?;
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
