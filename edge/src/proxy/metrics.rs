//! What the proxy and FastCGI count per upstream (an application server, or PHP-FPM), for
//! `/metrics`: requests by status class, time to the response head, failures by kind, whether it
//! is up, its pool and the connections it opened. Each upstream's counters are atomics it owns;
//! the collector reads every upstream still configured.

use std::sync::{
    Arc, LazyLock, Mutex, PoisonError, Weak,
    atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed},
};

use foobar_metrics::{DescriptorEncoder, Histogram, MetricType, Unit, counters, gauges};

const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Time to the response head, in microseconds.
const LATENCIES: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// Why a request to an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection: refused, unreachable, TLS, no address.
    Connect = 0,
    /// No response head within `response_timeout` (or no connection within the connect one).
    Timeout = 1,
    /// The connection broke after the request (or part of it) was sent.
    Reset = 2,
    /// Every connection allowed was busy for the whole connect timeout.
    Full = 3,
    /// The response body stalled past `read_timeout` or broke off.
    Body = 4,
}

const FAILURES: [&str; 5] = ["connect", "timeout", "reset", "busy", "body"];

/// One upstream's counters.
#[derive(Debug)]
pub struct UpstreamMetrics {
    route: String,
    upstream: String,
    requests: [AtomicU64; STATUSES.len()],
    failures: [AtomicU64; FAILURES.len()],
    latency: Histogram<{ LATENCIES.len() }>,
    up: AtomicBool,
    in_use: AtomicI64,
    idle: AtomicI64,
    /// Connections opened (kept-alive ones are reused: fewer than requests).
    opened: AtomicU64,
}

static REGISTERED: LazyLock<Mutex<Vec<Weak<UpstreamMetrics>>>> =
    LazyLock::new(|| Mutex::new(Vec::new()));

impl UpstreamMetrics {
    /// Counters for an upstream of `route`, reported while the returned handle lives.
    pub fn register(route: &str, upstream: &str) -> Arc<UpstreamMetrics> {
        let metrics = Arc::new(UpstreamMetrics {
            route: route.to_string(),
            upstream: upstream.to_string(),
            requests: Default::default(),
            failures: Default::default(),
            latency: Histogram::new(LATENCIES),
            up: AtomicBool::new(true),
            in_use: AtomicI64::new(0),
            idle: AtomicI64::new(0),
            opened: AtomicU64::new(0),
        });
        let mut all = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|weak| weak.strong_count() > 0);
        all.push(Arc::downgrade(&metrics));
        metrics
    }

    pub fn answered(&self, status: u16, micros: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Relaxed);
        self.latency.observe(micros);
    }

    pub fn failed(&self, kind: Failure) {
        self.failures[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Relaxed);
    }

    pub fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
    }

    pub fn pool(&self, in_use: i64, idle: i64) {
        self.in_use.store(in_use, Relaxed);
        self.idle.store(idle, Relaxed);
    }
}

/// Writes every configured upstream's series.
pub fn encode(encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let all: Vec<Arc<UpstreamMetrics>> = REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let labels =
        |m: &UpstreamMetrics| [("route", m.route.clone()), ("upstream", m.upstream.clone())];
    let mut requests = Vec::new();
    let mut failures = Vec::new();
    for m in &all {
        for (class, count) in STATUSES.iter().zip(&m.requests) {
            let [route, upstream] = labels(m);
            requests.push((
                [route, upstream, ("status", class.to_string())],
                count.load(Relaxed),
            ));
        }
        for (kind, count) in FAILURES.iter().zip(&m.failures) {
            let [route, upstream] = labels(m);
            failures.push((
                [route, upstream, ("kind", kind.to_string())],
                count.load(Relaxed),
            ));
        }
    }
    counters(
        encoder,
        "foobar_upstream_requests",
        "Requests answered by each upstream (proxied application, FastCGI server), by status class.",
        requests,
    )?;
    counters(
        encoder,
        "foobar_upstream_failures",
        "Requests to each upstream that failed, by kind (connect, timeout, reset, busy, body).",
        failures,
    )?;
    let mut latency = encoder.encode_descriptor(
        "foobar_upstream_response_time",
        "Time from sending a request upstream to its response head.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for m in &all {
        m.latency.encode(&mut latency, &labels(m), 1e-6)?;
    }
    gauges(
        encoder,
        "foobar_upstream_up",
        "Whether each upstream is taking requests (1) or out after failures or checks (0).",
        None,
        all.iter()
            .map(|m| (labels(m), i64::from(m.up.load(Relaxed)))),
    )?;
    counters(
        encoder,
        "foobar_upstream_connections_opened",
        "Connections opened to each upstream (kept alive, they serve many requests).",
        all.iter().map(|m| (labels(m), m.opened.load(Relaxed))),
    )?;
    gauges(
        encoder,
        "foobar_upstream_connections",
        "Connections to each upstream, by state (in use, idle).",
        None,
        all.iter().flat_map(|m| {
            let [route, upstream] = labels(m);
            [
                (
                    [
                        route.clone(),
                        upstream.clone(),
                        ("state", "in_use".to_string()),
                    ],
                    m.in_use.load(Relaxed),
                ),
                (
                    [route, upstream, ("state", "idle".to_string())],
                    m.idle.load(Relaxed),
                ),
            ]
        }),
    )?;
    Ok(())
}
