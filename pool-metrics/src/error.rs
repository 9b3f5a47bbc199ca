//! What can be wrong with a [`MetricsConfig`](crate::MetricsConfig) or an export setting.

use std::time::Duration;

/// A setting that cannot work. Each variant names the setting and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// A count that must be positive is zero.
    #[error("{field} must be at least 1")]
    ZeroCount {
        /// The setting's name.
        field: &'static str,
    },
    /// A count is above what the collector allocates for.
    #[error("{field} must be at most {max} (got {count})")]
    TooMany {
        /// The setting's name.
        field: &'static str,
        /// The most allowed.
        max: usize,
        /// The value given.
        count: usize,
    },
    /// A window is split into slices shorter than a microsecond, the unit latencies are kept in.
    #[error("{field} split into {slices} slices gives slices shorter than 1 µs ({window:?})")]
    SliceTooShort {
        /// The setting's name.
        field: &'static str,
        /// The window.
        window: Duration,
        /// How many slices it was split into.
        slices: usize,
    },
    /// HDR histograms keep 1 to 5 significant decimal digits.
    #[error("significant_digits must be between 1 and 5 (got {0})")]
    SignificantDigits(u8),
    /// A Prometheus metric or label name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`
    /// (labels: no `:`, and no leading `__`, which Prometheus reserves).
    #[error("{0:?} is not a valid Prometheus name")]
    PrometheusName(String),
}
