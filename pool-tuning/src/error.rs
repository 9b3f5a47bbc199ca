//! The one error a tuner's configuration can fail with.

/// A tuner setting that cannot work. Each variant names the field and what it must be.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The lower bound is zero: a pool must be able to run at least one task.
    #[error("min concurrency must be at least 1 (got 0)")]
    ZeroMin,
    /// The bounds are crossed.
    #[error("min concurrency ({min}) must not exceed max concurrency ({max})")]
    MinAboveMax {
        /// The lower bound given.
        min: usize,
        /// The upper bound given.
        max: usize,
    },
    /// A number is NaN, infinite, or outside its range.
    #[error("{field} must be a finite number in {range} (got {value})")]
    InvalidNumber {
        /// The setting's name.
        field: &'static str,
        /// Its accepted range, e.g. `"(0, 1]"`.
        range: &'static str,
        /// The value given.
        value: f64,
    },
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// A count that must be positive is zero.
    #[error("{field} must be at least 1 (got 0)")]
    ZeroCount {
        /// The setting's name.
        field: &'static str,
    },
    /// A count above what the tuners' arithmetic is made for.
    #[error("{field} must be at most {max} (got {value})")]
    TooLarge {
        /// The setting's name.
        field: &'static str,
        /// The most allowed.
        max: usize,
        /// The value given.
        value: usize,
    },
}

/// A count in `[1, max]`.
pub(crate) fn check_count_at_most(
    field: &'static str,
    value: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    check_positive_count(field, value)?;
    if value > max {
        Err(ConfigError::TooLarge { field, max, value })
    } else {
        Ok(value)
    }
}

/// Checks that `value` is finite and inside `[low, high]`, or `(low, high]` when `open_low`.
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    low: f64,
    high: f64,
    open_low: bool,
    range: &'static str,
) -> Result<f64, ConfigError> {
    let above_low = if open_low { value > low } else { value >= low };
    if value.is_finite() && above_low && value <= high {
        Ok(value)
    } else {
        Err(ConfigError::InvalidNumber {
            field,
            range,
            value,
        })
    }
}

/// Checks that a duration setting is not zero.
pub(crate) fn check_positive_duration(
    field: &'static str,
    value: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::ZeroDuration { field })
    } else {
        Ok(value)
    }
}

/// Checks that a count setting is at least 1.
pub(crate) fn check_positive_count(
    field: &'static str,
    value: usize,
) -> Result<usize, ConfigError> {
    if value == 0 {
        Err(ConfigError::ZeroCount { field })
    } else {
        Ok(value)
    }
}
