//! HDR histograms of the three latencies a task has: queue wait, execution and total.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::record::StoredTask;

/// An empty, auto-resizing histogram that every other one is cloned from, so that building one
/// on the hot path cannot fail (the precision was checked once, up front).
#[derive(Debug, Clone)]
pub(crate) struct HistogramTemplate(Histogram<u64>);

impl HistogramTemplate {
    pub(crate) fn new(significant_digits: u8) -> Result<Self, ConfigError> {
        Histogram::new(significant_digits)
            .map(Self)
            .map_err(|_| ConfigError::SignificantDigits(significant_digits))
    }

    pub(crate) fn empty(&self) -> Histogram<u64> {
        Histogram::new_from(&self.0)
    }

    /// Empty buckets of this template's layout.
    pub(crate) fn buckets(&self) -> Buckets {
        Buckets::new(self.0.sigfig())
    }
}

/// Counts of values, in microseconds, in the buckets of an HDR histogram of the template's
/// precision (lowest discernible value 1), without an HDR histogram's bookkeeping on the way
/// in: recording is a count of leading zeros, a shift and an increment. The counts fold into
/// an HDR histogram of the same precision when they are read — the same buckets, so the same
/// count, quantiles, min and max as if each value had been recorded there.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    /// log2 of half the sub-buckets per bucket.
    half_magnitude: u32,
    /// The sub-buckets of bucket 0, as a mask (values under it land in bucket 0).
    mask: u64,
    /// Grown to the highest bucket recorded so far (empty until the first value).
    counts: Vec<u64>,
}

impl Buckets {
    /// The layout [`Histogram::new`] makes for `significant_digits`.
    fn new(significant_digits: u8) -> Self {
        let largest_single_unit = 2 * 10_u64.pow(u32::from(significant_digits));
        let magnitude = largest_single_unit.next_power_of_two().trailing_zeros();
        Self {
            half_magnitude: magnitude - 1,
            mask: (1 << magnitude) - 1,
            counts: Vec::new(),
        }
    }

    fn index(&self, value: u64) -> usize {
        // Powers of two by which `value` passes bucket 0 (the mask keeps small values there).
        let bucket = 63 - (value | self.mask).leading_zeros() - self.half_magnitude;
        let sub_bucket = value >> bucket;
        // Each bucket past the first uses the top half of its sub-buckets: bucket `b` starts
        // at `(b + 1) · half - half`, and its sub-buckets count from `half`.
        ((bucket as usize) << self.half_magnitude) + (sub_bucket as usize)
    }

    /// The lowest value of the bucket at `index`.
    fn value_at(&self, index: usize) -> u64 {
        let half_count = 1_usize << self.half_magnitude;
        let bucket = index >> self.half_magnitude;
        let sub_bucket = (index & (half_count - 1)) + half_count;
        match bucket.checked_sub(1) {
            Some(bucket) => (sub_bucket as u64) << bucket,
            None => (sub_bucket - half_count) as u64,
        }
    }

    /// Records `nanos`, in microseconds.
    #[inline]
    pub(crate) fn record_nanos(&mut self, nanos: u64) {
        let index = self.index(nanos / 1_000);
        match self.counts.get_mut(index) {
            Some(count) => *count += 1,
            None => self.grow_and_record(index),
        }
    }

    /// Records at `index`, past the counts so far: grows them to the end of the value's
    /// bucket, as an HDR histogram grows.
    #[cold]
    fn grow_and_record(&mut self, index: usize) {
        let end = (index | ((1 << self.half_magnitude) - 1)) + 1;
        self.counts.resize(end, 0);
        self.counts[index] += 1;
    }

    /// Adds every count to `histogram` (of the same precision).
    pub(crate) fn fold_into(&self, histogram: &mut Histogram<u64>) {
        for (index, &count) in self.counts.iter().enumerate() {
            if count > 0 {
                let value = self.value_at(index);
                if histogram.record_n(value, count).is_err() {
                    histogram.saturating_record_n(value, count);
                }
            }
        }
    }

    /// Empties the counts, keeping their buffer.
    pub(crate) fn clear(&mut self) {
        self.counts.fill(0);
    }
}

/// Queue wait, execution and total as [`Buckets`]: what a shard records into.
#[derive(Debug, Clone)]
pub(crate) struct LatencyBuckets {
    queue_wait: Buckets,
    execution: Buckets,
    total: Buckets,
}

impl LatencyBuckets {
    pub(crate) fn new(template: &HistogramTemplate) -> Self {
        Self {
            queue_wait: template.buckets(),
            execution: template.buckets(),
            total: template.buckets(),
        }
    }

    #[inline]
    pub(crate) fn record(&mut self, task: &StoredTask) {
        self.queue_wait.record_nanos(task.queue_wait_nanos);
        self.execution.record_nanos(task.execution_nanos);
        self.total.record_nanos(task.total_nanos);
    }

    pub(crate) fn fold_into(&self, into: &mut Latencies) {
        self.queue_wait.fold_into(&mut into.queue_wait);
        self.execution.fold_into(&mut into.execution);
        self.total.fold_into(&mut into.total);
    }

    pub(crate) fn clear(&mut self) {
        self.queue_wait.clear();
        self.execution.clear();
        self.total.clear();
    }
}

/// Queue wait, execution and total, in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    pub(crate) queue_wait: Histogram<u64>,
    pub(crate) execution: Histogram<u64>,
    pub(crate) total: Histogram<u64>,
}

impl Latencies {
    pub(crate) fn new(template: &HistogramTemplate) -> Self {
        Self {
            queue_wait: template.empty(),
            execution: template.empty(),
            total: template.empty(),
        }
    }

    #[cfg(test)]
    pub(crate) fn record(&mut self, task: &StoredTask) {
        record_nanos(&mut self.queue_wait, task.queue_wait_nanos);
        record_nanos(&mut self.execution, task.execution_nanos);
        record_nanos(&mut self.total, task.total_nanos);
    }

    pub(crate) fn merge(&mut self, other: &Latencies) {
        // Auto-resizing histograms of equal precision always add; an error would only drop a
        // slice from a snapshot, never corrupt counts.
        let _ = self.queue_wait.add(&other.queue_wait);
        let _ = self.execution.add(&other.execution);
        let _ = self.total.add(&other.total);
    }
}

/// Records in microseconds, growing the histogram as needed (`saturating_record` would clamp
/// to the current range instead of growing); only a value past the largest a histogram can
/// grow to (about 146,000 years) is clamped. (Shards record into [`Buckets`].)
#[cfg(test)]
fn record_nanos(histogram: &mut Histogram<u64>, nanos: u64) {
    let micros = nanos / 1_000;
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

/// Distribution of one latency, in microseconds, within the precision of the histograms
/// ([`MetricsConfig::significant_digits`](crate::MetricsConfig::significant_digits)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Tasks measured.
    pub count: u64,
    /// Exact mean (from sums, not from the histogram).
    pub mean_us: f64,
    /// Smallest value.
    pub min_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

impl LatencySummary {
    /// The quantiles reported, with the Prometheus label value of each.
    pub const QUANTILES: [(&'static str, f64); 4] = [
        ("0.5", 0.5),
        ("0.95", 0.95),
        ("0.99", 0.99),
        ("0.999", 0.999),
    ];

    pub(crate) fn from_histogram(histogram: &Histogram<u64>, mean_us: f64) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            mean_us,
            min_us: histogram.min(),
            p50_us: histogram.value_at_quantile(0.5),
            p95_us: histogram.value_at_quantile(0.95),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }

    /// The values of [`QUANTILES`](Self::QUANTILES), in the same order.
    pub fn quantile_values(&self) -> [u64; 4] {
        [self.p50_us, self.p95_us, self.p99_us, self.p999_us]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_distribution_percentiles_are_within_precision() {
        let template = HistogramTemplate::new(3).unwrap();
        let mut histogram = template.empty();
        // 1..=10_000 µs once each: the q-quantile is q·10_000.
        for value in 1..=10_000 {
            record_nanos(&mut histogram, value * 1_000);
        }
        let summary = LatencySummary::from_histogram(&histogram, 5_000.5);
        let within = |got: u64, want: u64| {
            let error = (got as f64 - want as f64).abs() / want as f64;
            assert!(error <= 0.001, "got {got}, want {want} (±0.1%)");
        };
        within(summary.p50_us, 5_000);
        within(summary.p95_us, 9_500);
        within(summary.p99_us, 9_900);
        within(summary.p999_us, 9_990);
        within(summary.max_us, 10_000);
        assert_eq!(summary.min_us, 1);
        assert_eq!(summary.count, 10_000);
    }

    /// Values spread over many magnitudes, zeros and the largest included.
    fn spread(seed: &mut u64, n: usize) -> Vec<u64> {
        // splitmix64
        let mut next = || {
            *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut values: Vec<u64> = (0..n).map(|_| next() >> (next() % 64)).collect();
        values.extend([0, 1, 2, 1_023, 1_024, 2_047, 2_048, u64::MAX / 1_000]);
        values
    }

    #[test]
    fn buckets_put_every_value_where_an_hdr_histogram_does() {
        let mut seed = 11;
        for digits in 0..=5 {
            let template = HistogramTemplate::new(digits).unwrap();
            let buckets = template.buckets();
            let hdr = template.empty();
            for micros in spread(&mut seed, 20_000) {
                let lowest = buckets.value_at(buckets.index(micros));
                assert_eq!(
                    lowest,
                    hdr.lowest_equivalent(micros),
                    "{micros} µs at {digits} digits"
                );
            }
        }
    }

    #[test]
    fn folded_buckets_give_the_figures_of_direct_recording() {
        let mut seed = 5;
        for digits in 1..=5 {
            let template = HistogramTemplate::new(digits).unwrap();
            let mut buckets = template.buckets();
            let mut direct = template.empty();
            for micros in spread(&mut seed, 5_000) {
                let nanos = micros.saturating_mul(1_000);
                buckets.record_nanos(nanos);
                record_nanos(&mut direct, nanos);
            }
            let mut folded = template.empty();
            buckets.fold_into(&mut folded);
            let summary = |h: &Histogram<u64>| LatencySummary::from_histogram(h, 0.0);
            assert_eq!(summary(&folded), summary(&direct), "{digits} digits");
            assert_eq!(folded, direct, "{digits} digits: the same counts");
            buckets.clear();
            let mut empty = template.empty();
            buckets.fold_into(&mut empty);
            assert!(empty.is_empty());
        }
    }

    #[test]
    fn empty_histogram_gives_zeroes() {
        let template = HistogramTemplate::new(2).unwrap();
        let summary = LatencySummary::from_histogram(&template.empty(), 0.0);
        assert_eq!(summary, LatencySummary::default());
    }
}
