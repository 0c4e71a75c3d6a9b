//! What the edge counts, for `/metrics`: requests by protocol, method and status class, their
//! durations, connections by protocol, TLS handshakes, the file cache, and the certificate's
//! expiry. Atomics in fixed tables, added to as requests finish: no lock, no allocation.

use std::sync::{
    LazyLock, Mutex, PoisonError,
    atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
};

use foobar_metrics::{
    Collector, DescriptorEncoder, Histogram, MetricType, NO_LABELS, Shards, Unit, counters, gauges,
};
use http::{Method, Version};

const PROTOCOLS: [&str; 3] = ["h1", "h2", "h3"];
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "other"];
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Request duration buckets in microseconds (encoded in seconds).
const DURATIONS: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// The protocol a request came over, as a table index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (or 1.0).
    H1 = 0,
    /// HTTP/2.
    H2 = 1,
    /// HTTP/3.
    H3 = 2,
}

impl Protocol {
    /// The protocol of a request's version.
    pub fn of(version: Version) -> Protocol {
        match version {
            Version::HTTP_2 => Protocol::H2,
            Version::HTTP_3 => Protocol::H3,
            _ => Protocol::H1,
        }
    }
}

fn method_slot(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        _ => 5,
    }
}

/// What each thread counts per request on its own (plain stores, no shared cache line),
/// summed when scraped.
#[derive(Debug)]
struct Shard {
    requests: [[[AtomicU64; STATUSES.len()]; METHODS.len()]; PROTOCOLS.len()],
    durations: [Histogram<{ DURATIONS.len() }>; PROTOCOLS.len()],
    response_bytes: [AtomicU64; PROTOCOLS.len()],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

static SHARDS: Shards<Shard> = Shards::new();

thread_local! {
    static SHARD: std::sync::Arc<Shard> = SHARDS.register(Shard {
        requests: Default::default(),
        durations: std::array::from_fn(|_| Histogram::new(DURATIONS)),
        response_bytes: Default::default(),
        cache_hits: AtomicU64::new(0),
        cache_misses: AtomicU64::new(0),
    });
}

#[derive(Debug)]
/// Counters of connections, handshakes and requests, by protocol.
pub struct Metrics {
    connections: [AtomicU64; PROTOCOLS.len()],
    open: [AtomicI64; PROTOCOLS.len()],
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    cache_bytes: AtomicI64,
    redirects: AtomicU64,
    /// The certificates served, by file, the default site's first: the names each covers and
    /// when it expires (Unix seconds).
    certificates: Mutex<Vec<(String, Vec<String>, i64)>>,
    /// The QUIC endpoint serving now: its handshake counts, and its UDP port, whose datagrams
    /// the kernel dropped (a full receive buffer) are read from /proc.
    quic: Mutex<Option<(quinn::Endpoint, u16)>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    connections: Default::default(),
    open: Default::default(),
    handshakes: AtomicU64::new(0),
    handshake_failures: AtomicU64::new(0),
    cache_bytes: AtomicI64::new(0),
    redirects: AtomicU64::new(0),
    certificates: Mutex::new(Vec::new()),
    quic: Mutex::new(None),
});

/// The edge's counters, for the whole process.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// A request whose response is done: sent, or dropped by the client.
    pub(crate) fn request(
        &self,
        protocol: Protocol,
        method: &Method,
        status: u16,
        micros: u64,
        bytes: u64,
    ) {
        let p = protocol as usize;
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        SHARD.with(|shard| {
            foobar_metrics::bump(&shard.requests[p][method_slot(method)][class], 1);
            shard.durations[p].observe_owned(micros);
            foobar_metrics::bump(&shard.response_bytes[p], bytes);
        });
    }

    pub(crate) fn opened(&self, protocol: Protocol) {
        self.connections[protocol as usize].fetch_add(1, Relaxed);
        self.open[protocol as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self, protocol: Protocol) {
        self.open[protocol as usize].fetch_sub(1, Relaxed);
    }

    pub(crate) fn handshake(&self, ok: bool) {
        self.handshakes.fetch_add(1, Relaxed);
        if !ok {
            self.handshake_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn cache(&self, hit: bool) {
        SHARD.with(|shard| {
            let counter = if hit {
                &shard.cache_hits
            } else {
                &shard.cache_misses
            };
            foobar_metrics::bump(counter, 1);
        });
    }

    pub(crate) fn cache_size(&self, change: i64) {
        self.cache_bytes.fetch_add(change, Relaxed);
    }

    pub(crate) fn redirected(&self) {
        self.redirects.fetch_add(1, Relaxed);
    }

    pub(crate) fn quic(&self, endpoint: &quinn::Endpoint) {
        let port = endpoint.local_addr().map_or(0, |addr| addr.port());
        *self.quic.lock().unwrap_or_else(PoisonError::into_inner) = Some((endpoint.clone(), port));
    }

    /// The certificate loaded from `file`.
    pub(crate) fn certificate(&self, file: String, names: Vec<String>, not_after: i64) {
        let mut all = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match all.iter_mut().find(|(known, _, _)| *known == file) {
            Some(entry) => *entry = (file, names, not_after),
            None => all.push((file, names, not_after)),
        }
    }

    /// The certificate once served from `from` is served from `to` now (an ACME certificate in
    /// place of its self-signed stand-in): `to` takes `from`'s place in the list.
    pub(crate) fn certificate_moved(&self, from: &str, to: &str) {
        let mut all = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (Some(old), Some(new)) = (
            all.iter().position(|(file, _, _)| file == from),
            all.iter().position(|(file, _, _)| file == to),
        ) else {
            return;
        };
        all.swap(old, new);
        all.remove(new);
    }

    /// Only the certificates of `files` are served now, in that order.
    pub(crate) fn certificates_in_use(&self, files: &[String]) {
        let mut all = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|(file, _, _)| files.contains(file));
        all.sort_by_key(|(file, _, _)| files.iter().position(|f| f == file));
    }
}

/// The certificates served, the default site's first: the names each covers and when it
/// expires (Unix seconds).
pub fn certificates() -> Vec<(Vec<String>, i64)> {
    metrics()
        .certificates
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, names, not_after)| (names.clone(), *not_after))
        .collect()
}

/// The collector for `/metrics`.
#[derive(Debug, Default)]
pub struct EdgeCollector;

impl Collector for EdgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = metrics();
        let shards = SHARDS.all();
        let sum = |count: &dyn Fn(&Shard) -> &AtomicU64| -> u64 {
            shards.iter().map(|shard| count(shard).load(Relaxed)).sum()
        };
        let mut series = Vec::new();
        for (p, protocol) in PROTOCOLS.iter().enumerate() {
            for (k, method) in METHODS.iter().enumerate() {
                for (s, status) in STATUSES.iter().enumerate() {
                    let count = sum(&|shard| &shard.requests[p][k][s]);
                    if count > 0 {
                        let labels = [
                            ("protocol", *protocol),
                            ("method", *method),
                            ("status", *status),
                        ];
                        series.push((labels, count));
                    }
                }
            }
        }
        counters(
            &mut encoder,
            "foobar_http_requests",
            "HTTPS requests answered, by protocol (h1, h2, h3), method and status class.",
            series,
        )?;
        let mut durations = encoder.encode_descriptor(
            "foobar_http_request_duration",
            "Time from a request's arrival to the end of its response.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (p, protocol) in PROTOCOLS.iter().enumerate() {
            let parts: Vec<&Histogram<{ DURATIONS.len() }>> =
                shards.iter().map(|shard| &shard.durations[p]).collect();
            Histogram::encode_sum(&parts, &mut durations, &[("protocol", *protocol)], 1e-6)?;
        }
        counters(
            &mut encoder,
            "foobar_http_response_body_bytes",
            "Bytes of response bodies sent, by protocol.",
            PROTOCOLS.iter().enumerate().map(|(p, protocol)| {
                (
                    [("protocol", *protocol)],
                    sum(&|shard| &shard.response_bytes[p]),
                )
            }),
        )?;
        counters(
            &mut encoder,
            "foobar_http_connections",
            "Connections accepted, by protocol (after TLS for h1 and h2; QUIC for h3).",
            PROTOCOLS
                .iter()
                .zip(&m.connections)
                .map(|(p, count)| ([("protocol", *p)], count.load(Relaxed))),
        )?;
        gauges(
            &mut encoder,
            "foobar_http_connections_open",
            "Connections open now, by protocol.",
            None,
            PROTOCOLS
                .iter()
                .zip(&m.open)
                .map(|(p, open)| ([("protocol", *p)], open.load(Relaxed))),
        )?;
        let totals = [
            (
                "foobar_tls_handshakes",
                "TLS handshakes over TCP, done or failed.",
                &m.handshakes,
            ),
            (
                "foobar_tls_handshake_failures",
                "TLS handshakes over TCP that failed or timed out.",
                &m.handshake_failures,
            ),
            (
                "foobar_http_redirects",
                "Plain-HTTP requests redirected to HTTPS.",
                &m.redirects,
            ),
        ];
        for (name, help, count) in totals {
            counters(&mut encoder, name, help, [(NO_LABELS, count.load(Relaxed))])?;
        }
        counters(
            &mut encoder,
            "foobar_file_cache_hits",
            "Static files answered from memory.",
            [(NO_LABELS, sum(&|shard| &shard.cache_hits))],
        )?;
        counters(
            &mut encoder,
            "foobar_file_cache_misses",
            "Static files that could be kept but were read from disk.",
            [(NO_LABELS, sum(&|shard| &shard.cache_misses))],
        )?;
        gauges(
            &mut encoder,
            "foobar_file_cache",
            "Bytes of static files kept in memory.",
            Some(&Unit::Bytes),
            [(NO_LABELS, m.cache_bytes.load(Relaxed))],
        )?;
        let quic = m
            .quic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((endpoint, port)) = quic {
            let stats = endpoint.stats();
            counters(
                &mut encoder,
                "foobar_quic_handshakes",
                "QUIC handshakes by outcome: accepted, refused (limits, shutdown), ignored (dropped).",
                [
                    ([("outcome", "accepted")], stats.accepted_handshakes),
                    ([("outcome", "refused")], stats.refused_handshakes),
                    ([("outcome", "ignored")], stats.ignored_handshakes),
                ],
            )?;
            counters(
                &mut encoder,
                "foobar_quic_packets_dropped",
                "UDP datagrams for QUIC the kernel dropped (receive buffer full), since the socket opened.",
                [(NO_LABELS, udp_drops(port))],
            )?;
        }
        let mut expiry: Vec<(String, i64)> = Vec::new();
        for (names, not_after) in certificates() {
            for name in names {
                // A name two certificates cover: the first (the one served) counts.
                if !expiry.iter().any(|(known, _)| *known == name) {
                    expiry.push((name, not_after));
                }
            }
        }
        gauges(
            &mut encoder,
            "foobar_tls_certificate_expiry_timestamp_seconds",
            "When the certificate served for each name expires (Unix time).",
            None,
            expiry
                .iter()
                .map(|(name, not_after)| ([("name", name.as_str())], *not_after)),
        )?;
        crate::proxy::metrics::encode(&mut encoder)?;
        Ok(())
    }
}

/// Datagrams the kernel dropped on the UDP sockets bound to `port` (the last column of
/// /proc/net/udp and udp6).
fn udp_drops(port: u16) -> u64 {
    let port = format!(":{port:04X}");
    ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local = fields.get(1)?;
                    local
                        .ends_with(&port)
                        .then(|| fields.last()?.parse::<u64>().ok())
                        .flatten()
                })
                .collect::<Vec<u64>>()
        })
        .sum()
}
