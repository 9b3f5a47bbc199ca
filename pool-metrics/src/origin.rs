//! Where the collector's time grids start, and how a finishing time becomes an offset from
//! there: the hot path places tasks by nanoseconds after the origin, never by `Instant`s.
//!
//! A pool shows a finished task's moment as an offset from its own clock origin
//! ([`FinishedTask::finished_since_origin_nanos`](pool_core::FinishedTask::finished_since_origin_nanos)).
//! The collector keeps the distance from its origin to the first pool's clock origin, so that
//! pool's offsets become the collector's with one addition; making an `Instant` and
//! subtracting another (each normalising seconds and nanoseconds with overflow checks) cost
//! several times that.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::grid::offset_nanos;

#[derive(Debug, Default)]
pub(crate) struct Origin {
    /// The pool's clock at attach, or the first instant seen.
    at: OnceLock<Instant>,
    /// The clock origin of the first pool seen in a view, and the signed nanoseconds from
    /// `at` to it.
    pool_clock: OnceLock<(Instant, i64)>,
}

impl Origin {
    /// The origin, if fixed.
    pub(crate) fn get(&self) -> Option<Instant> {
        self.at.get().copied()
    }

    /// The origin, fixed at `seen` if it was not yet.
    pub(crate) fn get_or_init(&self, seen: Instant) -> Instant {
        *self.at.get_or_init(|| seen)
    }

    /// Nanoseconds from the origin to `at` (0 if `at` is earlier); `at` fixes the origin if
    /// nothing did.
    pub(crate) fn offset_of(&self, at: Instant) -> u64 {
        offset_nanos(self.get_or_init(at), at)
    }

    /// Nanoseconds from the origin to the moment `since` ns after a pool's clock origin
    /// `clock` (`at`: that moment as an `Instant`, made only for a pool not seen before).
    #[inline]
    pub(crate) fn offset_in_pool_clock(
        &self,
        clock: Instant,
        since: u64,
        at: impl FnOnce() -> Instant,
    ) -> u64 {
        match self.pool_clock.get() {
            Some(&(known, shift)) if known == clock => since.saturating_add_signed(shift),
            _ => self.offset_in_new_pool_clock(clock, at()),
        }
    }

    /// The first view of a pool: learns the distance to its clock origin (if it is the first
    /// pool; a second pool on one collector takes the `Instant` path every time).
    #[cold]
    fn offset_in_new_pool_clock(&self, clock: Instant, at: Instant) -> u64 {
        let origin = self.get_or_init(at);
        if let Some(shift) = signed_nanos(origin, clock) {
            let _ = self.pool_clock.set((clock, shift));
        }
        offset_nanos(origin, at)
    }

    /// The instant `offset` nanoseconds after the origin (`None` before the origin is fixed;
    /// the origin itself past what an `Instant` holds).
    pub(crate) fn instant(&self, offset: u64) -> Option<Instant> {
        let origin = self.get()?;
        Some(
            origin
                .checked_add(Duration::from_nanos(offset))
                .unwrap_or(origin),
        )
    }
}

/// Nanoseconds from `from` to `to`, negative if `to` is earlier; `None` past ±292 years.
fn signed_nanos(from: Instant, to: Instant) -> Option<i64> {
    match to.checked_duration_since(from) {
        Some(ahead) => i64::try_from(ahead.as_nanos()).ok(),
        None => i64::try_from(from.duration_since(to).as_nanos())
            .ok()
            .map(|behind| -behind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn nanos(duration: Duration) -> u64 {
        u64::try_from(duration.as_nanos()).unwrap()
    }

    #[test]
    fn pool_offsets_become_offsets_from_the_origin() {
        let origin = Origin::default();
        let pool_clock = Instant::now();
        // The collector's origin 5 ms after the pool's (attached after the pool was built).
        origin.get_or_init(pool_clock + ms(5));
        let offset = |since: Duration| {
            origin.offset_in_pool_clock(pool_clock, nanos(since), || pool_clock + since)
        };
        // The first call learns the distance, the later ones use it: the same answers.
        for _ in 0..2 {
            assert_eq!(offset(ms(12)), 7_000_000);
            assert_eq!(offset(ms(5)), 0);
            assert_eq!(offset(ms(2)), 0, "before the origin: 0");
        }
        // A second pool, whose clock started later: the Instant path, the same figures.
        let second = pool_clock + ms(20);
        let from_second = origin.offset_in_pool_clock(second, nanos(ms(1)), || second + ms(1));
        assert_eq!(from_second, 16_000_000);
        assert_eq!(origin.offset_of(pool_clock + ms(12)), 7_000_000);
        assert_eq!(origin.instant(7_000_000), Some(pool_clock + ms(12)));
    }

    #[test]
    fn a_pool_clock_after_the_origin_shifts_forward() {
        let origin = Origin::default();
        let start = Instant::now();
        origin.get_or_init(start);
        let clock = start + ms(3);
        for _ in 0..2 {
            assert_eq!(
                origin.offset_in_pool_clock(clock, nanos(ms(1)), || clock + ms(1)),
                4_000_000
            );
        }
    }

    #[test]
    fn the_first_view_fixes_an_unset_origin() {
        let origin = Origin::default();
        let clock = Instant::now();
        assert_eq!(
            origin.offset_in_pool_clock(clock, nanos(ms(9)), || clock + ms(9)),
            0
        );
        assert_eq!(origin.get(), Some(clock + ms(9)));
        assert_eq!(
            origin.offset_in_pool_clock(clock, nanos(ms(10)), || clock + ms(10)),
            1_000_000
        );
    }
}
