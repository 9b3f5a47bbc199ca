//! The `[min, max]` range every tuner keeps its limit in.

use crate::error::ConfigError;

/// The inclusive range a tuner's concurrency limit stays in.
///
/// ```
/// use pool_tuning::Bounds;
/// let bounds = Bounds::new(5, 100)?;
/// assert_eq!(bounds.clamp(1), 5);
/// assert_eq!(bounds.clamp(500), 100);
/// assert!(Bounds::new(10, 5).is_err());
/// # Ok::<(), pool_tuning::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    min: usize,
    max: usize,
}

impl Bounds {
    /// The highest `max`: 2^24 (16,777,216) tasks at once, far beyond any backend, and low
    /// enough that a tuner's steps (a fifth of the limit, twice the limit) cannot overflow.
    pub const LARGEST: usize = 1 << 24;

    /// Most samples a tuner's window may ask for (`min_samples`, `sample_window`): counts of
    /// samples are multiplied by small factors and kept in memory.
    pub const MOST_SAMPLES: usize = 1 << 24;

    /// `min` must be at least 1 and not above `max`; `max` at most [`Bounds::LARGEST`].
    pub fn new(min: usize, max: usize) -> Result<Self, ConfigError> {
        if min == 0 {
            return Err(ConfigError::ZeroMin);
        }
        if min > max {
            return Err(ConfigError::MinAboveMax { min, max });
        }
        if max > Self::LARGEST {
            return Err(ConfigError::TooLarge {
                field: "max concurrency",
                max: Self::LARGEST,
                value: max,
            });
        }
        Ok(Self { min, max })
    }

    /// The lower bound.
    pub fn min(&self) -> usize {
        self.min
    }

    /// The upper bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// `value` moved into the range.
    pub fn clamp(&self, value: usize) -> usize {
        value.clamp(self.min, self.max)
    }

    /// A fractional `value` rounded down and moved into the range (NaN gives `min`).
    pub(crate) fn clamp_f64(&self, value: f64) -> usize {
        if value.is_nan() || value < self.min as f64 {
            self.min
        } else if value >= self.max as f64 {
            self.max
        } else {
            self.clamp(value as usize)
        }
    }
}
