//! What the DNS server counts, for `/metrics`: queries by transport, type, RCODE and zone,
//! truncated answers, response sizes, TCP connections, reloads and transfers; and, read from
//! the live catalog when scraped, each zone's serial, records and last load.
//!
//! Answering adds to atomics in fixed tables (a zone's table is found with the zone itself, in
//! the lookup the answer makes anyway): no lock and no allocation per query. The counters live
//! for the whole process, across reloads, as Prometheus expects of counters.

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, Mutex, PoisonError,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
};

use foobar_metrics::{
    Collector, DescriptorEncoder, Histogram, MetricType, Shards, Unit, counters, gauges,
};

use crate::{
    answer::Transport,
    wire::{Rcode, Rtype, rtype, types::mnemonic},
};

/// Query types counted by name (their mnemonics, `wire::types`); the rest count as "other",
/// and 0 stands for a query without a question ("none").
const TYPES: [Rtype; 20] = [
    rtype::A,
    rtype::NS,
    rtype::CNAME,
    rtype::SOA,
    rtype::PTR,
    rtype::MX,
    rtype::TXT,
    rtype::AAAA,
    rtype::SRV,
    rtype::NAPTR,
    rtype::DS,
    rtype::DNSKEY,
    rtype::SVCB,
    rtype::HTTPS,
    rtype::CAA,
    rtype::TLSA,
    rtype::IXFR,
    rtype::AXFR,
    rtype::ANY,
    Rtype(0),
];
/// Response codes counted by mnemonic; the rest count as "other".
const RCODES: [Rcode; 9] = [
    Rcode::NOERROR,
    Rcode::FORMERR,
    Rcode::SERVFAIL,
    Rcode::NXDOMAIN,
    Rcode::NOTIMP,
    Rcode::REFUSED,
    Rcode::NOTAUTH,
    Rcode::BADVERS,
    Rcode::BADCOOKIE,
];
const TRANSPORTS: [&str; 5] = ["udp", "tcp", "dot", "doh", "doq"];
/// Response size buckets, in bytes: the classic 512, the EDNS 1232, then TCP sizes.
const SIZES: [u64; 8] = [64, 128, 256, 512, 1232, 4096, 16384, 65535];

/// The slot of a query type in `TYPES` ("other" past the end), by a table built once.
fn type_slot(qtype: Rtype) -> usize {
    static SLOTS: LazyLock<[u8; 512]> = LazyLock::new(|| {
        let mut slots = [TYPES.len() as u8; 512];
        for (slot, rtype) in TYPES.iter().enumerate() {
            if let Some(entry) = slots.get_mut(usize::from(rtype.0)) {
                *entry = slot as u8;
            }
        }
        slots
    });
    SLOTS
        .get(usize::from(qtype.0))
        .map_or(TYPES.len(), |slot| usize::from(*slot))
}

/// The slot of an RCODE in `RCODES` ("other" past the end); a match, as it runs per answer.
fn rcode_slot(rcode: Rcode) -> usize {
    match rcode {
        Rcode::NOERROR => 0,
        Rcode::FORMERR => 1,
        Rcode::SERVFAIL => 2,
        Rcode::NXDOMAIN => 3,
        Rcode::NOTIMP => 4,
        Rcode::REFUSED => 5,
        Rcode::NOTAUTH => 6,
        Rcode::BADVERS => 7,
        Rcode::BADCOOKIE => 8,
        _ => RCODES.len(),
    }
}

fn transport_slot(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Dot => 2,
        Transport::Doh => 3,
        Transport::Doq => 4,
    }
}

/// Queries of one zone (or of none) by transport, type and RCODE.
#[derive(Debug)]
pub struct ZoneCounters {
    queries: [[[AtomicU64; RCODES.len() + 1]; TYPES.len() + 1]; TRANSPORTS.len()],
}

impl ZoneCounters {
    fn new() -> Self {
        ZoneCounters {
            queries: std::array::from_fn(|_| {
                std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            }),
        }
    }
}

/// A zone's origin as text, and its counters.
type Named = (String, Arc<ZoneCounters>);

/// The process's DNS counters.
#[derive(Debug)]
pub struct Metrics {
    /// By zone origin ("foobar.com."), created when a catalog first holds the zone.
    zones: Mutex<HashMap<Box<[u8]>, Named>>,
    /// Queries no zone of ours holds (REFUSED), and those answered before a zone is looked up.
    outside: ZoneCounters,
    tcp_accepted: AtomicU64,
    tcp_open: AtomicI64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    transfers_in: AtomicU64,
    transfer_in_failures: AtomicU64,
    transfers_out: AtomicU64,
    notifies_sent: AtomicU64,
    /// Each XDP socket's counters, registered when it is bound.
    xdp: Mutex<Vec<Arc<XdpQueue>>>,
}

/// What one XDP socket (an interface's queue) counts.
#[derive(Debug, Default)]
pub(crate) struct XdpQueue {
    interface: String,
    queue: u32,
    /// 1 while the socket serves.
    pub(crate) attached: AtomicU64,
    pub(crate) answered: AtomicU64,
    /// Frames taken and not answered: not a query (malformed, or not for us), or dropped by
    /// the responder (rate limits), or no room to send.
    pub(crate) not_answered: AtomicU64,
    /// The kernel's drops on the way to the socket, as last read: larger than a frame or
    /// otherwise dropped, the rx ring full, no free frame.
    pub(crate) kernel_drops: [AtomicU64; 3],
}

const XDP_DROPS: [&str; 3] = ["dropped", "ring_full", "fill_ring_empty"];

/// What each thread that answers counts on its own (no atomic read-modify-write on the
/// answer path beyond the zone's counter); summed when scraped.
#[derive(Debug)]
struct Shard {
    truncated: [AtomicU64; TRANSPORTS.len()],
    sizes: [Histogram<{ SIZES.len() }>; TRANSPORTS.len()],
}

static SHARDS: Shards<Shard> = Shards::new();

thread_local! {
    static SHARD: Arc<Shard> = SHARDS.register(Shard {
        truncated: Default::default(),
        sizes: std::array::from_fn(|_| Histogram::new(SIZES)),
    });
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    zones: Mutex::default(),
    outside: ZoneCounters::new(),
    tcp_accepted: AtomicU64::new(0),
    tcp_open: AtomicI64::new(0),
    reloads: AtomicU64::new(0),
    reload_failures: AtomicU64::new(0),
    transfers_in: AtomicU64::new(0),
    transfer_in_failures: AtomicU64::new(0),
    transfers_out: AtomicU64::new(0),
    notifies_sent: AtomicU64::new(0),
    xdp: Mutex::default(),
});

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// One query in this many is logged (target `dns_query`); 0 logs none.
static QUERY_LOG_EVERY: AtomicU64 = AtomicU64::new(0);
static QUERIES_SEEN: AtomicU64 = AtomicU64::new(0);

/// Sets the query log's sampling (`[log] dns_queries`).
pub fn log_queries(every: u64) {
    QUERY_LOG_EVERY.store(every, Relaxed);
}

/// Whether this query is one the query log samples.
pub(crate) fn sampled() -> bool {
    let every = QUERY_LOG_EVERY.load(Relaxed);
    every > 0 && QUERIES_SEEN.fetch_add(1, Relaxed).is_multiple_of(every)
}

impl Metrics {
    /// The counters of the zone `origin_key`, made on first use (when a catalog is built).
    pub(crate) fn zone(&self, origin_key: &[u8], origin: &str) -> Arc<ZoneCounters> {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        zones
            .entry(origin_key.into())
            .or_insert_with(|| (origin.to_string(), Arc::new(ZoneCounters::new())))
            .1
            .clone()
    }

    /// One response sent: `message` as written (its header says RCODE and TC; the extended
    /// RCODE bits are `extended`).
    pub(crate) fn answered(
        &self,
        transport: Transport,
        qtype: Option<Rtype>,
        message: &[u8],
        extended: u8,
        zone: Option<&ZoneCounters>,
    ) {
        let t = transport_slot(transport);
        let (flags, rcode) = match message {
            [_, _, flags, low, ..] => (*flags, Rcode::from_parts(u16::from(*low), extended)),
            _ => return,
        };
        let q = qtype.map_or(type_slot(Rtype(0)), type_slot);
        zone.unwrap_or(&self.outside).queries[t][q][rcode_slot(rcode)].fetch_add(1, Relaxed);
        SHARD.with(|shard| {
            if flags & 0x02 != 0 {
                foobar_metrics::bump(&shard.truncated[t], 1);
            }
            shard.sizes[t].observe_owned(message.len() as u64);
        });
    }

    pub(crate) fn tcp_opened(&self) {
        self.tcp_accepted.fetch_add(1, Relaxed);
        self.tcp_open.fetch_add(1, Relaxed);
    }

    pub(crate) fn tcp_closed(&self) {
        self.tcp_open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn reloaded(&self, failed: bool) {
        self.reloads.fetch_add(1, Relaxed);
        if failed {
            self.reload_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn transferred_in(&self, ok: bool) {
        self.transfers_in.fetch_add(1, Relaxed);
        if !ok {
            self.transfer_in_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn transferred_out(&self) {
        self.transfers_out.fetch_add(1, Relaxed);
    }

    pub(crate) fn notified(&self) {
        self.notifies_sent.fetch_add(1, Relaxed);
    }

    /// The counters of queue `queue` of `interface`, made when its socket is first bound.
    pub(crate) fn xdp_queue(&self, interface: &str, queue: u32) -> Arc<XdpQueue> {
        let mut sockets = self.xdp.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = sockets
            .iter()
            .find(|s| s.interface == interface && s.queue == queue)
        {
            return known.clone();
        }
        let made = Arc::new(XdpQueue {
            interface: interface.to_string(),
            queue,
            ..XdpQueue::default()
        });
        sockets.push(made.clone());
        made
    }
}

/// The collector for `/metrics`: the counters above, and each zone of the live catalog.
#[derive(Debug)]
pub struct DnsCollector {
    pub(crate) dns: crate::Dns,
}

impl Collector for DnsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = metrics();
        let zones: Vec<(String, Arc<ZoneCounters>)> = m
            .zones
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut series = Vec::new();
        for (zone, counters) in zones
            .iter()
            .map(|(zone, counters)| (zone.as_str(), &**counters))
            .chain([("", &m.outside)])
        {
            for (t, transport) in TRANSPORTS.iter().enumerate() {
                for (q, by_type) in counters.queries[t].iter().enumerate() {
                    let qtype = match TYPES.get(q) {
                        Some(Rtype(0)) => "none",
                        Some(&rtype) => mnemonic(rtype).unwrap_or("other"),
                        None => "other",
                    };
                    for (r, count) in by_type.iter().enumerate() {
                        let count = count.load(Relaxed);
                        if count > 0 {
                            let labels = [
                                ("transport", *transport),
                                ("type", qtype),
                                (
                                    "rcode",
                                    RCODES.get(r).and_then(|c| c.mnemonic()).unwrap_or("other"),
                                ),
                                ("zone", zone),
                            ];
                            series.push((labels, count));
                        }
                    }
                }
            }
        }
        counters(
            &mut encoder,
            "foobar_dns_responses",
            "DNS responses sent, by transport, query type, RCODE and zone (\"\" outside every zone).",
            series,
        )?;
        let shards = SHARDS.all();
        counters(
            &mut encoder,
            "foobar_dns_truncated_responses",
            "Responses sent with TC set (the client should retry over TCP).",
            TRANSPORTS.iter().enumerate().map(|(t, transport)| {
                let count = shards.iter().map(|s| s.truncated[t].load(Relaxed)).sum();
                ([("transport", *transport)], count)
            }),
        )?;
        let mut sizes = encoder.encode_descriptor(
            "foobar_dns_response_size",
            "Sizes of the responses sent.",
            Some(&Unit::Bytes),
            MetricType::Histogram,
        )?;
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            let parts: Vec<&Histogram<{ SIZES.len() }>> =
                shards.iter().map(|s| &s.sizes[t]).collect();
            Histogram::encode_sum(&parts, &mut sizes, &[("transport", *transport)], 1.0)?;
        }
        let total = [
            (
                "foobar_dns_tcp_connections",
                "TCP connections accepted.",
                &m.tcp_accepted,
            ),
            (
                "foobar_dns_reloads",
                "Loads of the zones folder: at start and at each reload or change.",
                &m.reloads,
            ),
            (
                "foobar_dns_reload_failures",
                "Reloads in which a zone file failed to load.",
                &m.reload_failures,
            ),
            (
                "foobar_dns_transfers_in",
                "Refreshes of secondary zones that brought a new version or failed.",
                &m.transfers_in,
            ),
            (
                "foobar_dns_transfer_in_failures",
                "Refreshes of secondary zones that failed (no primary answered, or the transfer was refused or broken).",
                &m.transfer_in_failures,
            ),
            (
                "foobar_dns_transfers_out",
                "Zone transfers served (AXFR and IXFR).",
                &m.transfers_out,
            ),
            (
                "foobar_dns_notifies",
                "NOTIFY messages acknowledged by secondaries.",
                &m.notifies_sent,
            ),
        ];
        for (name, help, count) in total {
            counters(
                &mut encoder,
                name,
                help,
                [(foobar_metrics::NO_LABELS, count.load(Relaxed))],
            )?;
        }
        let xdp: Vec<Arc<XdpQueue>> = m.xdp.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // Each socket's labels: its interface and queue.
        let queues: Vec<String> = xdp.iter().map(|s| s.queue.to_string()).collect();
        let sockets = || {
            xdp.iter().zip(&queues).map(|(s, queue)| {
                let labels = [
                    ("interface", s.interface.as_str()),
                    ("queue", queue.as_str()),
                ];
                (labels, &**s)
            })
        };
        gauges(
            &mut encoder,
            "foobar_dns_xdp_attached",
            "1 while the AF_XDP socket of an interface's queue serves ([dns] xdp).",
            None,
            sockets().map(|(labels, s)| (labels, s.attached.load(Relaxed))),
        )?;
        counters(
            &mut encoder,
            "foobar_dns_xdp_frames",
            "Frames taken from an XDP socket: answered, or not (not a query, dropped by the rate limit, or no room to send).",
            sockets().flat_map(|([interface, queue], s)| {
                [("answered", &s.answered), ("not_answered", &s.not_answered)].map(
                    |(outcome, count)| {
                        (
                            [interface, queue, ("outcome", outcome)],
                            count.load(Relaxed),
                        )
                    },
                )
            }),
        )?;
        counters(
            &mut encoder,
            "foobar_dns_xdp_kernel_drops",
            "Frames the kernel dropped on the way to an XDP socket: larger than a frame or otherwise (dropped), the rx ring full, no free frame.",
            sockets().flat_map(|([interface, queue], s)| {
                XDP_DROPS
                    .iter()
                    .zip(&s.kernel_drops)
                    .map(move |(reason, count)| {
                        ([interface, queue, ("reason", *reason)], count.load(Relaxed))
                    })
            }),
        )?;
        gauges(
            &mut encoder,
            "foobar_dns_tcp_connections_open",
            "TCP connections open now.",
            None,
            [(foobar_metrics::NO_LABELS, m.tcp_open.load(Relaxed))],
        )?;
        let status = self.dns.zone_status();
        gauges(
            &mut encoder,
            "foobar_dns_zone_serial",
            "The SOA serial served, by zone.",
            None,
            status
                .iter()
                .map(|z| ([("zone", z.zone.as_str())], i64::from(z.serial))),
        )?;
        gauges(
            &mut encoder,
            "foobar_dns_zone_records",
            "Records served, by zone.",
            None,
            status
                .iter()
                .map(|z| ([("zone", z.zone.as_str())], z.records as i64)),
        )?;
        gauges(
            &mut encoder,
            "foobar_dns_zone_load_ok",
            "1 when the zone's last load or transfer succeeded, 0 when what is served is an older version or SERVFAIL.",
            None,
            status.iter().map(|z| {
                let ok = z.state.is_current();
                ([("zone", z.zone.as_str())], i64::from(ok))
            }),
        )?;
        gauges(
            &mut encoder,
            "foobar_dns_zone_last_load_timestamp_seconds",
            "When the zone's file was last loaded or the zone last transferred in (Unix time).",
            None,
            status
                .iter()
                .filter_map(|z| Some(([("zone", z.zone.as_str())], z.loaded_at? as i64))),
        )?;
        let signed = || {
            status
                .iter()
                .filter_map(|z| Some((z.zone.as_str(), z.dnssec.as_ref()?)))
        };
        gauges(
            &mut encoder,
            "foobar_dns_dnssec_signatures_expire_timestamp_seconds",
            "When the first signature of a zone signed here expires (Unix time).",
            None,
            signed().map(|(zone, d)| ([("zone", zone)], d.signatures_expire as i64)),
        )?;
        gauges(
            &mut encoder,
            "foobar_dns_dnssec_next_signing_timestamp_seconds",
            "When a zone signed here is signed again to refresh its signatures (Unix time).",
            None,
            signed().map(|(zone, d)| ([("zone", zone)], d.next_signing as i64)),
        )?;
        let keys: Vec<(String, String, String, &'static str, &'static str)> = signed()
            .flat_map(|(zone, d)| {
                d.keys.iter().map(move |key| {
                    (
                        zone.to_string(),
                        key.tag.to_string(),
                        key.algorithm.to_string(),
                        key.role,
                        key.state,
                    )
                })
            })
            .collect();
        gauges(
            &mut encoder,
            "foobar_dns_dnssec_key",
            "1 for each key of a zone signed here, by tag, algorithm, role and state.",
            None,
            keys.iter().map(|(zone, tag, algorithm, role, state)| {
                (
                    [
                        ("zone", zone.as_str()),
                        ("tag", tag.as_str()),
                        ("algorithm", algorithm.as_str()),
                        ("role", *role),
                        ("state", *state),
                    ],
                    1,
                )
            }),
        )?;
        let events: Vec<(String, String, &'static str, u64)> = signed()
            .flat_map(|(zone, d)| {
                d.keys.iter().filter_map(move |key| {
                    Some((
                        zone.to_string(),
                        key.tag.to_string(),
                        key.next_event?,
                        key.next_event_at?,
                    ))
                })
            })
            .collect();
        gauges(
            &mut encoder,
            "foobar_dns_dnssec_key_next_event_timestamp_seconds",
            "When a key of a zone signed here next changes (Unix time), by tag and event: active, retire or remove.",
            None,
            events.iter().map(|(zone, tag, event, at)| {
                (
                    [
                        ("zone", zone.as_str()),
                        ("tag", tag.as_str()),
                        ("event", *event),
                    ],
                    *at as i64,
                )
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counted_rcode_has_its_own_slot() {
        for (slot, rcode) in RCODES.iter().enumerate() {
            assert_eq!(rcode_slot(*rcode), slot, "{rcode}");
        }
        assert_eq!(rcode_slot(Rcode(22)), RCODES.len(), "other");
    }
}
