//! What every crate of foobar counts with, and how it reaches `/metrics`.
//!
//! Serving paths only touch atomics (`Relaxed` adds into fixed tables: no lock, no allocation);
//! labels are attached and text is written when Prometheus scrapes, by each crate's collector
//! through `prometheus-client`'s encoder. A crate's collector is handed to the binary, which
//! registers it and serves the exposition on the admin listener.

#![warn(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet},
    metrics::MetricType,
    registry::{Registry, Unit},
};

/// Writes every metric of `registry` in the Prometheus text format (0.0.4).
pub fn encode(text: &mut String, registry: &Registry) -> std::fmt::Result {
    prometheus_client::encoding::prometheus_text::encode(text, registry)
}

/// The label set of a series with no labels.
pub const NO_LABELS: [(&str, &str); 0] = [];

/// A histogram with fixed bucket bounds: one atomic count per bucket and the sum. Values are
/// recorded in the unit the bounds are in (bytes, microseconds); `scale` converts to the base
/// unit when encoding (1e-6 for microseconds to seconds).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: [u64; N],
    /// Per bucket (not cumulative), the last for values above every bound.
    counts: [AtomicU64; N],
    above: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    /// A histogram with these bucket upper bounds (in increasing order).
    pub const fn new(bounds: [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            above: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value` in its bucket.
    pub fn observe(&self, value: u64) {
        match self.bounds.iter().position(|&bound| value <= bound) {
            Some(i) => self.counts[i].fetch_add(1, Relaxed),
            None => self.above.fetch_add(1, Relaxed),
        };
        self.sum.fetch_add(value, Relaxed);
    }

    /// [`Histogram::observe`] for a histogram only the calling thread writes (a per-thread
    /// shard): plain loads and stores, no read-modify-write.
    pub fn observe_owned(&self, value: u64) {
        match self.bounds.iter().position(|&bound| value <= bound) {
            Some(i) => bump(&self.counts[i], 1),
            None => bump(&self.above, 1),
        }
        bump(&self.sum, value);
    }

    /// Writes this histogram as one series of a family, its bounds and sum times `scale`.
    pub fn encode(
        &self,
        family: &mut prometheus_client::encoding::MetricEncoder<'_>,
        labels: &impl EncodeLabelSet,
        scale: f64,
    ) -> std::fmt::Result {
        Self::encode_sum(&[self], family, labels, scale)
    }

    /// Writes the sum of `parts` (per-thread shards of one histogram) as one series.
    pub fn encode_sum(
        parts: &[&Self],
        family: &mut prometheus_client::encoding::MetricEncoder<'_>,
        labels: &impl EncodeLabelSet,
        scale: f64,
    ) -> std::fmt::Result {
        // The encoder takes each bucket's own count and makes them cumulative; the +Inf
        // bucket is the total.
        let Some(first) = parts.first() else {
            return Ok(());
        };
        let buckets: Vec<(f64, u64)> = first
            .bounds
            .iter()
            .enumerate()
            .map(|(i, bound)| {
                let count = parts.iter().map(|h| h.counts[i].load(Relaxed)).sum();
                (*bound as f64 * scale, count)
            })
            .collect();
        let above: u64 = parts.iter().map(|h| h.above.load(Relaxed)).sum();
        let total = buckets.iter().map(|(_, count)| count).sum::<u64>() + above;
        let sum = parts.iter().map(|h| h.sum.load(Relaxed)).sum::<u64>() as f64 * scale;
        family
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }
}

/// Per-thread shards of one set of counters: each thread registers its own once (from a
/// `thread_local!`) and alone writes it; a scrape reads them all. Shards stay after their thread
/// ends, so that its counts stay in the totals.
#[derive(Debug)]
pub struct Shards<T>(std::sync::Mutex<Vec<std::sync::Arc<T>>>);

impl<T> Shards<T> {
    /// All counts at zero.
    pub const fn new() -> Self {
        Shards(std::sync::Mutex::new(Vec::new()))
    }

    /// Keeps `shard` for the scrapes; the calling thread's handle to it.
    pub fn register(&self, shard: T) -> std::sync::Arc<T> {
        let shard = std::sync::Arc::new(shard);
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(shard.clone());
        shard
    }

    /// Every shard so far.
    pub fn all(&self) -> Vec<std::sync::Arc<T>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl<T> Default for Shards<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds to a counter only the calling thread writes (a per-thread shard): a plain load and
/// store, cheaper than an atomic add and sharing no cache line with other cores; readers on
/// other threads see each value whole.
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Writes a counter family: `name` gets `_total` (and the unit) as Prometheus names it.
pub fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

/// Writes a gauge family.
pub fn gauges<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (L, V)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// A table of counters indexed by small enums, e.g. `[transport][status class]`.
pub fn load(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct One(Histogram<3>);

    impl Collector for One {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            let mut family = encoder.encode_descriptor(
                "size",
                "Sizes.",
                Some(&Unit::Bytes),
                MetricType::Histogram,
            )?;
            self.0.encode(&mut family, &[("transport", "udp")], 1.0)
        }
    }

    #[test]
    fn histograms_are_cumulative_with_an_inf_bucket() {
        let histogram = Histogram::new([10, 100, 1000]);
        for value in [5, 50, 50, 5000] {
            histogram.observe(value);
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(One(histogram)));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        assert!(
            text.contains("size_bytes_bucket{transport=\"udp\",le=\"10\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("size_bytes_bucket{transport=\"udp\",le=\"100\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("size_bytes_bucket{transport=\"udp\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("size_bytes_sum{transport=\"udp\"} 5105.0\n"),
            "{text}"
        );
        assert!(
            text.contains("size_bytes_count{transport=\"udp\"} 4\n"),
            "{text}"
        );
    }
}
