//! Aging: how long a task has waited turns into priority points.
//!
//! ```text
//! effective = base + min(max_boost, waited / (aging_interval * multiplier))
//! ```
//!
//! The multiplier follows the queue's wait against its target (the engine works it out);
//! the queue evaluates the formula only when it compares levels, at the moment of a pop.

use std::time::Duration;

/// The aging settings the queue needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AgingSettings {
    /// Wait that earns one priority point at multiplier 1.
    pub(crate) interval: Duration,
    /// Largest boost aging can give. 0 turns aging off.
    pub(crate) max_boost: f64,
}

/// The formula's constants for one pop: what a nanosecond of wait earns, and the cap. Worked
/// out once per pop, so comparing a level costs a multiplication, not two divisions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scale {
    /// Priority points per nanosecond of wait (`1 / step` in nanoseconds).
    per_nano: f64,
    /// The cap; 0 (or less) is strict priority.
    max_boost: f64,
}

impl Scale {
    /// `step_secs`: seconds of wait per priority point.
    pub(super) fn new(step_secs: f64, max_boost: f64) -> Self {
        Self {
            per_nano: 1.0 / (step_secs * 1e9),
            max_boost: max_boost.max(0.0),
        }
    }

    /// `base + min(max_boost, waited / step)`; `max_boost == 0` is strict priority. Times in
    /// nanoseconds.
    #[inline]
    pub(super) fn effective(self, priority: i32, enqueued_at: u64, now: u64) -> f64 {
        let boost = if self.max_boost > 0.0 {
            let waited = now.saturating_sub(enqueued_at);
            // Below 2^63 ns (every real wait) the signed conversion gives the same value in
            // one instruction; the unsigned one takes several.
            let waited = i64::try_from(waited).map_or(waited as f64, |waited| waited as f64);
            let boost = waited * self.per_nano;
            // `min` without its NaN handling: the boost is NaN only for 0 × ∞ (a zero step),
            // and then the cap is the answer either way, as with `min`.
            if boost < self.max_boost {
                boost
            } else {
                self.max_boost
            }
        } else {
            0.0
        };
        f64::from(priority) + boost
    }
}
