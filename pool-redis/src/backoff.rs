//! Exponential backoff with jitter, for waiting on Redis without polling it hard.

use std::time::Duration;

/// Delays that double from `min` up to `max`; each delay is drawn from its upper half
/// (equal jitter), so agents that failed together do not retry together. Saturating: a
/// `max` of `Duration::MAX` grows to it without overflowing.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The next delay; the one after will be up to twice as long.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        let half = ceiling / 2;
        half.saturating_add(half.mul_f64(fastrand::f64()))
    }

    /// Back to the shortest delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let (min, max) = (Duration::from_millis(2), Duration::from_millis(50));
        let mut backoff = Backoff::new(min, max);
        let mut ceiling = min;
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(max);
        }
        assert_eq!(ceiling, max);
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn a_cap_of_duration_max_saturates() {
        for min in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::MAX / 2,
            Duration::MAX,
        ] {
            let mut backoff = Backoff::new(min, Duration::MAX);
            for _ in 0..200 {
                let delay = backoff.next_delay();
                assert!(delay <= Duration::MAX);
            }
        }
    }
}
