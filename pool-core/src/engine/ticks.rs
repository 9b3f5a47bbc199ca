//! Time on the engine's hot path: [`Ticks`], nanoseconds since the engine's [`Epoch`].
//!
//! A task's moves (queued, popped, started, ended) each read the executor's clock once and
//! turn the `Instant` into ticks; the waits and latencies between them are then integer
//! subtractions, and an `Instant` is made again only for what observers are shown. `Instant`
//! arithmetic normalises seconds and nanoseconds with overflow checks on every operation,
//! which cost more than the rest of a queue push.

use std::time::{Duration, Instant};

use crate::deadline;

/// A moment as nanoseconds since the engine's epoch (the executor's clock when the pool was
/// built). 2^64 ns is 584 years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Ticks(u64);

impl Ticks {
    /// The time from `earlier` to this moment; zero if `earlier` is later.
    #[inline]
    pub(crate) fn saturating_since(self, earlier: Ticks) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }

    /// The nanoseconds from `earlier` to this moment; zero if `earlier` is later.
    #[inline]
    pub(crate) fn nanos_since(self, earlier: Ticks) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Nanoseconds since the epoch.
    pub(crate) fn nanos(self) -> u64 {
        self.0
    }

    pub(crate) fn from_nanos(nanos: u64) -> Self {
        Ticks(nanos)
    }
}

impl std::ops::Add<Duration> for Ticks {
    type Output = Ticks;

    /// Saturating: the last tick is 584 years after the epoch.
    fn add(self, duration: Duration) -> Ticks {
        Ticks(self.0.saturating_add(saturating_nanos(duration)))
    }
}

impl std::ops::AddAssign<Duration> for Ticks {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

/// `duration` in nanoseconds, saturating at 2^64 ns (584 years): what the engine's sums of
/// waits and latencies are kept in.
#[inline]
pub(crate) fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Where an engine's [`Ticks`] count from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    pub(crate) fn new(at: Instant) -> Self {
        Epoch(at)
    }

    /// `at` in ticks: moments before the epoch count as the epoch, and moments more than
    /// 584 years after it as the last tick.
    pub(crate) fn ticks(self, at: Instant) -> Ticks {
        let since = at.saturating_duration_since(self.0);
        Ticks(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The moment ticks count from.
    pub(crate) fn origin(self) -> Instant {
        self.0
    }

    /// The `Instant` of `ticks` (saturating, like every moment the engine makes).
    pub(crate) fn instant(self, ticks: Ticks) -> Instant {
        deadline::after(self.0, Duration::from_nanos(ticks.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_and_saturate() {
        let start = Instant::now();
        let epoch = Epoch::new(start);
        let later = start + Duration::from_millis(1500);
        let ticks = epoch.ticks(later);
        assert_eq!(ticks.nanos(), 1_500_000_000);
        assert_eq!(epoch.instant(ticks), later);
        assert_eq!(
            ticks.saturating_since(epoch.ticks(start)),
            Duration::from_millis(1500)
        );
        assert_eq!(epoch.ticks(start).saturating_since(ticks), Duration::ZERO);
        if let Some(before) = start.checked_sub(Duration::from_secs(1)) {
            assert_eq!(epoch.ticks(before), Ticks::default());
        }
    }
}
