//! Aging: how long a task has waited turns into priority points.
//!
//! ```text
//! effective = base + min(max_boost, waited / (aging_interval * multiplier))
//! ```
//!
//! The multiplier follows the queue's wait against its target (the engine works it out);
//! the queue evaluates the formula only when it compares levels, at the moment of a pop.
//!
//! A pop compares, rather than effective priorities, their *ranks*: the effective priority
//! times the step (the wait that earns one point, in nanoseconds),
//!
//! ```text
//! rank = base × step + min(max_boost × step, waited)
//! ```
//!
//! The step is positive, so ranks order tasks exactly as effective priorities do, and a rank
//! costs no division: the wait in nanoseconds is added as it is. Whole-nanosecond steps and
//! waits (below 2^53 ns, 104 days) are exact in it, so equal effective priorities tie
//! exactly, where `waited / step` rounds.

use std::time::Duration;

/// The aging settings the queue needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AgingSettings {
    /// Wait that earns one priority point at multiplier 1.
    pub(crate) interval: Duration,
    /// Largest boost aging can give. 0 turns aging off.
    pub(crate) max_boost: f64,
}

/// The formula's constants at one multiplier: the step and the cap in nanoseconds of wait.
/// Worked out when the multiplier changes, with two multiplications.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scale {
    /// Nanoseconds of wait per priority point (`aging_interval × multiplier`); positive.
    step: f64,
    /// The cap in nanoseconds of wait (`max_boost × step`); 0 is strict priority.
    cap: f64,
}

impl Scale {
    /// The constants at `multiplier` (positive) of an interval of `interval_nanos` and a cap
    /// of `max_boost` points.
    #[inline]
    pub(super) fn new(interval_nanos: f64, max_boost: f64, multiplier: f64) -> Self {
        // A zero interval is refused by the builder; the smallest step keeps ranks ordered
        // by base priority then.
        let step = (interval_nanos * multiplier).max(f64::MIN_POSITIVE);
        Self {
            step,
            cap: max_boost.max(0.0) * step,
        }
    }

    /// The rank of base priority `priority`: its effective priority before aging, times the
    /// step.
    #[inline]
    pub(super) fn base(self, priority: i32) -> f64 {
        f64::from(priority) * self.step
    }

    /// What `base` (from [`base`](Self::base)) is worth after waiting from `enqueued_at` to
    /// `now` (nanoseconds): the effective priority times the step.
    #[inline]
    pub(super) fn rank(self, base: f64, enqueued_at: u64, now: u64) -> f64 {
        base + self.boost(enqueued_at, now)
    }

    /// The boost of a task that entered at `enqueued_at`, at `now`, in nanoseconds of wait:
    /// the wait, up to the cap.
    #[inline]
    pub(super) fn boost(self, enqueued_at: u64, now: u64) -> f64 {
        let waited = now.saturating_sub(enqueued_at);
        let waited = nanos_as_f64(waited);
        // `min` without its NaN handling: neither is NaN.
        if waited < self.cap {
            waited
        } else {
            self.cap
        }
    }

    /// The effective priority itself (for tests of the formula).
    #[cfg(test)]
    pub(super) fn effective(self, priority: i32, enqueued_at: u64, now: u64) -> f64 {
        self.rank(self.base(priority), enqueued_at, now) / self.step
    }
}

/// `nanos` as a float, up to 2^63 ns (292 years; a longer wait counts as that long): the
/// signed conversion is one instruction, the unsigned one several.
#[inline(always)]
pub(crate) fn nanos_as_f64(nanos: u64) -> f64 {
    nanos.min(i64::MAX as u64) as i64 as f64
}
