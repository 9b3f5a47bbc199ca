//! How much a [`Metrics`](crate::Metrics) collector keeps, over which windows, and how it samples memory.

use std::time::Duration;

use crate::error::ConfigError;

/// When the collector reads the process's resident memory (RSS).
///
/// Reading RSS is a system call (a `/proc` read on Linux), so it is never done per task except
/// in [`Full`](Self::Full) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMode {
    /// Sample after every finished task and store the value in its [`TaskMetrics`](crate::TaskMetrics).
    /// For diagnosis: costs a system call per task and serialises workers on the sampler.
    Full,
    /// Sample at most once per `interval`, piggy-backed on events and snapshot reads.
    Balanced {
        /// Minimum time between two samples.
        interval: Duration,
    },
    /// Never sample.
    Light,
}

impl MemoryMode {
    /// `Balanced` with a one-second interval.
    pub const BALANCED: MemoryMode = MemoryMode::Balanced {
        interval: Duration::from_secs(1),
    };

    /// A short, stable name: `"full"`, `"balanced"` or `"light"`.
    pub fn name(self) -> &'static str {
        match self {
            MemoryMode::Full => "full",
            MemoryMode::Balanced { .. } => "balanced",
            MemoryMode::Light => "light",
        }
    }
}

impl Default for MemoryMode {
    /// [`MemoryMode::BALANCED`].
    fn default() -> Self {
        MemoryMode::BALANCED
    }
}

/// Settings of a [`Metrics`](crate::Metrics) collector. Every field has a default; change the
/// ones you need with the setters and pass the config to [`Metrics::new`](crate::Metrics::new),
/// which checks it.
///
/// ```
/// use std::time::Duration;
/// use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
///
/// let config = MetricsConfig::default()
///     .rolling_window(Duration::from_secs(30))
///     .memory(MemoryMode::Light);
/// let metrics = Metrics::new(config)?;
/// # let _ = metrics;
/// # Ok::<(), pool_metrics::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub(crate) task_store_capacity: usize,
    pub(crate) recent_capacity: usize,
    pub(crate) rolling_window: Duration,
    pub(crate) rolling_buckets: usize,
    pub(crate) history: Duration,
    pub(crate) history_slices: usize,
    pub(crate) significant_digits: u8,
    pub(crate) memory: MemoryMode,
    pub(crate) shards: Option<usize>,
    pub(crate) tenant_capacity: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            task_store_capacity: 1_000,
            recent_capacity: 256,
            rolling_window: Duration::from_secs(10),
            rolling_buckets: 20,
            history: Duration::from_secs(60),
            history_slices: 12,
            significant_digits: 3,
            memory: MemoryMode::default(),
            shards: None,
            tenant_capacity: 100,
        }
    }
}

impl MetricsConfig {
    /// The defaults (same as [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many finished tasks keep a full [`TaskMetrics`](crate::TaskMetrics) record for
    /// [`Metrics::task_metrics`](crate::Metrics::task_metrics). The oldest is evicted first.
    /// Default 1,000; 0 keeps none, `usize::MAX` every one (memory grows with the tasks).
    pub fn task_store_capacity(mut self, capacity: usize) -> Self {
        self.task_store_capacity = capacity;
        self
    }

    /// How many of the latest tasks the recent ring keeps (averages in
    /// [`LiveStats::recent`](crate::LiveStats::recent)). Default 256; 0 keeps none. Memory
    /// follows the tasks kept, not the capacity, so `usize::MAX` keeps every one.
    pub fn recent_capacity(mut self, capacity: usize) -> Self {
        self.recent_capacity = capacity;
        self
    }

    /// The window of the live throughput and success rate. Default 10 s.
    pub fn rolling_window(mut self, window: Duration) -> Self {
        self.rolling_window = window;
        self
    }

    /// How many buckets the rolling window is cut into: the window slides one bucket at a time,
    /// so it covers between `(buckets - 1) / buckets` and all of `rolling_window`. Default 20.
    /// At most [`MAX_ROLLING_BUCKETS`]; each bucket at least a microsecond long.
    pub fn rolling_buckets(mut self, buckets: usize) -> Self {
        self.rolling_buckets = buckets;
        self
    }

    /// How far back [`Metrics::aggregate`](crate::Metrics::aggregate) and the latency
    /// percentiles reach. Older traffic is forgotten, so percentiles reflect recent behaviour.
    /// Default 60 s.
    pub fn history(mut self, history: Duration) -> Self {
        self.history = history;
        self
    }

    /// How many slices the history is cut into (its time resolution: `aggregate(since)` rounds
    /// `since` down to a slice boundary). Each slice holds its own histograms. Default 12 (5 s).
    /// At most [`MAX_HISTORY_SLICES`]; each slice at least a microsecond long.
    pub fn history_slices(mut self, slices: usize) -> Self {
        self.history_slices = slices;
        self
    }

    /// Precision of the HDR histograms, in significant decimal digits (1 to 5): 3 keeps every
    /// percentile within 0.1% of the true value. Default 3.
    pub fn significant_digits(mut self, digits: u8) -> Self {
        self.significant_digits = digits;
        self
    }

    /// When to sample the process's memory. Default [`MemoryMode::BALANCED`] (once a second).
    pub fn memory(mut self, mode: MemoryMode) -> Self {
        self.memory = mode;
        self
    }

    /// How many independent recorders workers spread over (each behind its own lock, merged
    /// when read). Default: twice the available parallelism, rounded up to a power of two.
    /// 1 to [`MAX_SHARDS`].
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// How many tenants (pool-core's `TaskOptions::tenant`) keep figures of their own
    /// ([`LiveStats::tenants`](crate::LiveStats::tenants): served, queue-wait p99, queued,
    /// in flight); the tasks of tenants past it are counted together as
    /// [`OTHER_TENANTS`](crate::OTHER_TENANTS). Default 100. 0 counts every tenant together;
    /// memory follows the tenants seen (two histograms each), not the capacity, so
    /// `usize::MAX` keeps every one.
    pub fn tenant_capacity(mut self, tenants: usize) -> Self {
        self.tenant_capacity = tenants;
        self
    }

    /// The configured memory mode.
    pub fn memory_mode(&self) -> MemoryMode {
        self.memory
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_window(
            ("rolling_window", self.rolling_window),
            ("rolling_buckets", self.rolling_buckets, MAX_ROLLING_BUCKETS),
        )?;
        check_window(
            ("history", self.history),
            ("history_slices", self.history_slices, MAX_HISTORY_SLICES),
        )?;
        if !(1..=5).contains(&self.significant_digits) {
            return Err(ConfigError::SignificantDigits(self.significant_digits));
        }
        if let Some(shards) = self.shards {
            check_count("shards", shards, MAX_SHARDS)?;
        }
        if let MemoryMode::Balanced { interval } = self.memory {
            if interval.is_zero() {
                return Err(ConfigError::ZeroDuration {
                    field: "memory interval",
                });
            }
        }
        Ok(())
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores * 2).next_power_of_two()
        })
    }
}

/// Most buckets of the rolling window: every shard holds them all, allocated up front.
pub const MAX_ROLLING_BUCKETS: usize = 1_000;
/// Most history slices: each holds its own histograms (a few KB).
pub const MAX_HISTORY_SLICES: usize = 10_000;
/// Most shards: each holds a rolling window, a recent ring and a part of the task store.
pub const MAX_SHARDS: usize = 1_024;

/// A count in `[1, max]`.
fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), ConfigError> {
    if count == 0 {
        return Err(ConfigError::ZeroCount { field });
    }
    if count > max {
        return Err(ConfigError::TooMany { field, max, count });
    }
    Ok(())
}

/// A window cut into slices of at least a microsecond.
fn check_window(
    (window_field, window): (&'static str, Duration),
    (slices_field, slices, max_slices): (&'static str, usize, usize),
) -> Result<(), ConfigError> {
    if window.is_zero() {
        return Err(ConfigError::ZeroDuration {
            field: window_field,
        });
    }
    check_count(slices_field, slices, max_slices)?;
    if window.as_nanos() / (slices as u128) < 1_000 {
        return Err(ConfigError::SliceTooShort {
            field: window_field,
            window,
            slices,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(MetricsConfig::default().validate(), Ok(()));
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases = [
            (
                MetricsConfig::new().rolling_window(Duration::ZERO),
                ConfigError::ZeroDuration {
                    field: "rolling_window",
                },
            ),
            (
                MetricsConfig::new().history_slices(0),
                ConfigError::ZeroCount {
                    field: "history_slices",
                },
            ),
            (
                MetricsConfig::new().rolling_buckets(0),
                ConfigError::ZeroCount {
                    field: "rolling_buckets",
                },
            ),
            (
                MetricsConfig::new().rolling_buckets(usize::MAX),
                ConfigError::TooMany {
                    field: "rolling_buckets",
                    max: MAX_ROLLING_BUCKETS,
                    count: usize::MAX,
                },
            ),
            (
                MetricsConfig::new().shards(MAX_SHARDS + 1),
                ConfigError::TooMany {
                    field: "shards",
                    max: MAX_SHARDS,
                    count: MAX_SHARDS + 1,
                },
            ),
            (
                MetricsConfig::new().significant_digits(6),
                ConfigError::SignificantDigits(6),
            ),
            (
                MetricsConfig::new().shards(0),
                ConfigError::ZeroCount { field: "shards" },
            ),
            (
                MetricsConfig::new().memory(MemoryMode::Balanced {
                    interval: Duration::ZERO,
                }),
                ConfigError::ZeroDuration {
                    field: "memory interval",
                },
            ),
            (
                MetricsConfig::new()
                    .rolling_window(Duration::from_micros(10))
                    .rolling_buckets(20),
                ConfigError::SliceTooShort {
                    field: "rolling_window",
                    window: Duration::from_micros(10),
                    slices: 20,
                },
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
    }
}
