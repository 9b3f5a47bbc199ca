//! A tuner that never moves: the baseline every adaptive tuner is compared with.

use std::time::Instant;

use crate::sample::Sample;
use crate::tuner::{Adjustment, Tuner};

/// Keeps one limit forever (s3db.js's default is 10).
///
/// ```
/// use pool_tuning::{FixedTuner, Tuner};
/// let tuner = FixedTuner::new(10).unwrap();
/// assert_eq!(tuner.limit(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedTuner {
    limit: usize,
}

impl FixedTuner {
    /// `limit` must be at least 1.
    pub fn new(limit: usize) -> Result<Self, crate::ConfigError> {
        let limit = crate::error::check_positive_count("limit", limit)?;
        Ok(Self { limit })
    }
}

impl Tuner for FixedTuner {
    fn limit(&self) -> usize {
        self.limit
    }

    fn observe(&mut self, _sample: &Sample, _now: Instant) -> Option<Adjustment> {
        None
    }

    fn name(&self) -> &'static str {
        "fixed"
    }
}
