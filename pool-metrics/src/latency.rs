//! HDR histograms of the three latencies a task has: queue wait, execution and total.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::record::FinishedTask;

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

    pub(crate) fn record(&mut self, task: &FinishedTask) {
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
/// grow to (about 146,000 years) is clamped.
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

    #[test]
    fn empty_histogram_gives_zeroes() {
        let template = HistogramTemplate::new(2).unwrap();
        let summary = LatencySummary::from_histogram(&template.empty(), 0.0);
        assert_eq!(summary, LatencySummary::default());
    }
}
