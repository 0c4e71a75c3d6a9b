//! What the app counts, for `/metrics`: requests by route and status class, database
//! operations by name with their durations, database errors by kind, and the connection pool.
//! Atomics in fixed tables, found by the route's index: no lock, no allocation per request.

use std::{
    sync::{
        LazyLock, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use foobar_metrics::{
    Collector, DescriptorEncoder, Histogram, MetricType, NO_LABELS, Unit, counters, gauges,
};

use crate::store::{Store, StoreError};

/// The app's routes, as the router names them.
pub(crate) const ROUTES: [&str; 8] = [
    "/healthz",
    "/readyz",
    "/posts",
    "/posts/{id}",
    "/api/posts",
    "/api/posts/{id}",
    "/api/posts/{id}/comments",
    "other",
];
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Database operations, as `Store` names them.
pub(crate) const OPERATIONS: [&str; 9] = [
    "ping",
    "list_posts",
    "get_post",
    "post_with_comments",
    "create_post",
    "update_post",
    "delete_post",
    "add_comment",
    "migrate",
];
const ERRORS: [&str; 4] = [
    "unavailable",
    "conflict_retries_exhausted",
    "database",
    "other",
];
const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "not_modified"];

/// What a lookup in the response cache found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CacheResult {
    Hit = 0,
    Miss = 1,
    /// Found or made, and the client already had it (304).
    NotModified = 2,
}

/// Counts one lookup in the response cache.
pub(crate) fn cache(result: CacheResult) {
    METRICS.cache[result as usize].fetch_add(1, Relaxed);
}

/// Operation duration buckets in microseconds (encoded in seconds).
const DURATIONS: [u64; 11] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
];

#[derive(Debug)]
struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    operations: [Histogram<{ DURATIONS.len() }>; OPERATIONS.len()],
    errors: [AtomicU64; ERRORS.len()],
    cache: [AtomicU64; CACHE_RESULTS.len()],
    /// The store serving now, for the pool gauges.
    store: Mutex<Option<Store>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Default::default(),
    operations: std::array::from_fn(|_| Histogram::new(DURATIONS)),
    errors: Default::default(),
    cache: Default::default(),
    store: Mutex::new(None),
});

/// The middleware that counts each routed request.
pub(crate) async fn count(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| ROUTES.iter().position(|route| *route == path.as_str()))
        .unwrap_or(ROUTES.len() - 1);
    let response = next.run(request).await;
    let class = usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1;
    METRICS.requests[route][class].fetch_add(1, Relaxed);
    response
}

/// Times one database operation and counts its error, if any.
pub(crate) async fn timed<T>(
    operation: &str,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let result = work.await;
    let slot = OPERATIONS.iter().position(|name| *name == operation);
    if let Some(histogram) = slot.and_then(|slot| METRICS.operations.get(slot)) {
        histogram.observe(start.elapsed().as_micros() as u64);
    }
    if let Err(e) = &result {
        let kind = match e {
            StoreError::Unavailable(_) => 0,
            StoreError::Retry(_) => 1,
            StoreError::Database(_) => 2,
            // Not found, conflicts and the like are answers, not database trouble.
            StoreError::NotFound | StoreError::Conflict => return result,
            _ => 3,
        };
        METRICS.errors[kind].fetch_add(1, Relaxed);
    }
    result
}

/// The store whose pool `/metrics` shows.
pub(crate) fn serving(store: &Store) {
    *METRICS.store.lock().unwrap_or_else(PoisonError::into_inner) = Some(store.clone());
}

/// The database in use and whether it answers now (`foobar ctl status`): its backend, and the
/// reason when it does not.
pub async fn database() -> Option<(&'static str, Result<(), crate::StoreError>)> {
    let store = METRICS
        .store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()?;
    let answer = store.ping().await;
    Some((store.backend(), answer))
}

/// The collector for `/metrics`.
#[derive(Debug, Default)]
pub struct AppCollector;

impl Collector for AppCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = &*METRICS;
        let mut series = Vec::new();
        for (r, route) in ROUTES.iter().enumerate() {
            for (s, status) in STATUSES.iter().enumerate() {
                let count = m.requests[r][s].load(Relaxed);
                if count > 0 {
                    series.push(([("route", *route), ("status", *status)], count));
                }
            }
        }
        counters(
            &mut encoder,
            "foobar_app_requests",
            "Requests the app answered, by route and status class.",
            series,
        )?;
        let mut durations = encoder.encode_descriptor(
            "foobar_db_operation_duration",
            "Time of each database operation (its queries, retries included).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (operation, histogram) in OPERATIONS.iter().zip(&m.operations) {
            histogram.encode(&mut durations, &[("operation", *operation)], 1e-6)?;
        }
        counters(
            &mut encoder,
            "foobar_db_errors",
            "Database operations that failed, by kind (the request got a 503).",
            ERRORS
                .iter()
                .zip(&m.errors)
                .map(|(kind, count)| ([("kind", *kind)], count.load(Relaxed))),
        )?;
        counters(
            &mut encoder,
            "foobar_app_cache_lookups",
            "Reads looked up in the rendered-response cache: hit, or miss (rendered from the \
             database); not_modified counts those of either answered 304 to the client's ETag.",
            CACHE_RESULTS
                .iter()
                .zip(&m.cache)
                .map(|(result, count)| ([("result", *result)], count.load(Relaxed))),
        )?;
        let store = m
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(store) = store {
            let pool = store.pool();
            gauges(
                &mut encoder,
                "foobar_db_connections",
                "Database connections by state: in use by a request, or idle in the pool.",
                None,
                [
                    ([("state", "in_use")], pool.in_use as i64),
                    ([("state", "idle")], pool.idle as i64),
                ],
            )?;
            gauges(
                &mut encoder,
                "foobar_db_connection_waits",
                "Requests waiting for a database connection now.",
                None,
                [(NO_LABELS, pool.waiting as i64)],
            )?;
        }
        Ok(())
    }
}
