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

/// `base + min(max_boost, waited / step)`; `max_boost == 0` is strict priority. Times in
/// nanoseconds.
pub(super) fn effective(
    priority: i32,
    enqueued_at: u64,
    now: u64,
    step: f64,
    max_boost: f64,
) -> f64 {
    let boost = if max_boost > 0.0 {
        let waited = now.saturating_sub(enqueued_at) as f64 / 1e9;
        (waited / step).min(max_boost)
    } else {
        0.0
    };
    f64::from(priority) + boost
}
