//! Netflix concurrency-limits' AIMD: the plain loss-based controller.

use std::time::{Duration, Instant};

use crate::bounds::Bounds;
use crate::sample::{AttemptOutcome, Sample};
use crate::tuner::{Adjustment, Reason, Tuner};

/// Additive increase, multiplicative decrease, as Netflix concurrency-limits' `AIMDLimit`
/// (commit 00f751f, backoff ratio 0.9, timeout 5 s), updated on every sample as the
/// library's `SimpleLimiter` does:
///
/// - a drop (throttled or timed out) or an RTT above 5 s: `max(1, min(limit − 1,
///   ⌊limit · 0.9⌋))`;
/// - otherwise, if at least half the limit was in flight: `limit + 1`.
///
/// Other failures are ignored (the library's `onIgnore`).
///
/// ```
/// use std::time::{Duration, Instant};
/// use pool_tuning::peers::Aimd;
/// use pool_tuning::{AttemptOutcome, Bounds, Sample, Tuner};
/// let mut tuner = Aimd::new(Bounds::new(1, 100)?, 10);
/// let now = Instant::now();
/// let throttled = Sample::new(now, Duration::from_millis(5), AttemptOutcome::Throttled);
/// tuner.observe(&throttled, now);
/// assert_eq!(tuner.limit(), 9);
/// # Ok::<(), pool_tuning::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Aimd {
    bounds: Bounds,
    limit: usize,
}

impl Aimd {
    /// `backoffRatio`.
    pub const BACKOFF_RATIO: f64 = 0.9;
    /// `timeout`: an RTT above it counts as a drop.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts at `initial`, clamped to `bounds`.
    pub fn new(bounds: Bounds, initial: usize) -> Self {
        Self {
            bounds,
            limit: bounds.clamp(initial),
        }
    }
}

impl Tuner for Aimd {
    fn limit(&self) -> usize {
        self.limit
    }

    fn observe(&mut self, sample: &Sample, _now: Instant) -> Option<Adjustment> {
        let from = self.limit;
        let (to, reason) = match sample.outcome {
            AttemptOutcome::Failed => return None,
            AttemptOutcome::Throttled | AttemptOutcome::TimedOut => {
                let backed_off = (from as f64 * Self::BACKOFF_RATIO) as usize;
                (backed_off.min(from - 1).max(1), Reason::Throttled)
            }
            _ if sample.latency > Self::TIMEOUT => {
                let backed_off = (from as f64 * Self::BACKOFF_RATIO) as usize;
                (backed_off.min(from - 1).max(1), Reason::TimedOut)
            }
            _ if sample.in_flight.saturating_mul(2) >= from => (from + 1, Reason::Probing),
            _ => return None,
        };
        self.limit = self.bounds.clamp(to);
        Adjustment::between(from, self.limit, reason)
    }

    fn name(&self) -> &'static str {
        "aimd"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_success_with_half_the_limit_in_flight_adds_one_every_drop_cuts() {
        let mut tuner = Aimd::new(Bounds::new(1, 100).unwrap(), 10);
        let now = Instant::now();
        let ok = |in_flight| {
            Sample::new(now, Duration::from_millis(20), AttemptOutcome::Succeeded)
                .in_flight(in_flight)
        };
        tuner.observe(&ok(5), now);
        assert_eq!(tuner.limit(), 11);
        tuner.observe(&ok(5), now);
        assert_eq!(tuner.limit(), 11, "fewer than half in flight: no growth");
        let slow = Sample::new(now, Duration::from_secs(6), AttemptOutcome::Succeeded);
        tuner.observe(&slow, now);
        assert_eq!(tuner.limit(), 9);
        let throttled = Sample::new(now, Duration::from_millis(1), AttemptOutcome::Throttled);
        for _ in 0..100 {
            tuner.observe(&throttled, now);
        }
        assert_eq!(tuner.limit(), 1);
    }
}
