//! GCRA (the generic cell rate algorithm) that books moments ahead.
//!
//! `governor`'s GCRA answers "now" or "not until t", but cannot set t aside for the caller:
//! every waiter must ask again at t and all but one lose. A pool that parks a task without a
//! slot needs the moment booked, so the task can come back exactly then and go. Booking is
//! GCRA's own bookkeeping: the theoretical arrival time moves one interval per booking, and a
//! booking's moment is the earliest the limit allows — so bookings come out in order, spaced
//! by the rate, with the burst allowed after a quiet spell.

use std::time::{Duration, Instant};

use crate::deadline;

/// One key's schedule: the theoretical arrival time (TAT) of the next booking.
#[derive(Debug, Clone, Default)]
pub(crate) struct Schedule {
    tat: Option<Instant>,
}

/// The pace of a schedule: one booking per `interval`, `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pace {
    pub(crate) interval: Duration,
    pub(crate) burst: u32,
}

impl Pace {
    /// How far ahead of the TAT a booking may fall: room for `burst - 1` more.
    fn tolerance(self) -> Duration {
        self.interval.saturating_mul(self.burst.saturating_sub(1))
    }
}

impl Schedule {
    /// The theoretical arrival time as seen at `now`: a TAT in the past is now.
    fn tat_at(&self, now: Instant) -> Instant {
        self.tat.map_or(now, |tat| tat.max(now))
    }

    /// The earliest moment, at or after `now`, that a booking made now would get.
    pub(crate) fn earliest(&self, now: Instant, pace: Pace) -> Instant {
        self.tat_at(now)
            .checked_sub(pace.tolerance())
            .map_or(now, |moment| moment.max(now))
    }

    /// Books the earliest moment (see [`earliest`](Self::earliest)) and returns it.
    /// Books `now` if the limit allows a start now ([`earliest`](Self::earliest) is not
    /// later); one pass over the arithmetic instead of `earliest` then `book`.
    #[inline]
    pub(crate) fn book_if_due(&mut self, now: Instant, pace: Pace) -> bool {
        let tat = match self.tat {
            // A TAT in the past (a limit above the load): due, whatever the tolerance.
            Some(tat) if tat > now => tat,
            _ => {
                self.tat = Some(deadline::after(now, pace.interval));
                return true;
            }
        };
        let due = tat
            .checked_sub(pace.tolerance())
            .is_none_or(|moment| moment <= now);
        if due {
            self.tat = Some(deadline::after(tat, pace.interval));
        }
        due
    }

    pub(crate) fn book(&mut self, now: Instant, pace: Pace) -> Instant {
        let moment = self.earliest(now, pace);
        self.tat = Some(deadline::after(self.tat_at(now), pace.interval));
        moment
    }

    /// Forgets bookings made so far: the next one is one interval after `now`, with no burst
    /// (after throttling, the old moments were too close together).
    pub(crate) fn restart(&mut self, now: Instant, pace: Pace) {
        let ahead = pace.interval.saturating_add(pace.tolerance());
        self.tat = Some(deadline::after(now, ahead));
    }

    /// Whether moments after `now` are booked.
    pub(crate) fn is_booked_after(&self, now: Instant) -> bool {
        self.tat.is_some_and(|tat| tat > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let now = Instant::now();
        let pace = Pace {
            interval: ms(100),
            burst: 3,
        };
        let mut schedule = Schedule::default();
        let moments: Vec<Duration> = (0..6).map(|_| schedule.book(now, pace) - now).collect();
        assert_eq!(moments, [ms(0), ms(0), ms(0), ms(100), ms(200), ms(300)]);
        assert!(schedule.is_booked_after(now + ms(550)));
        assert!(!schedule.is_booked_after(now + ms(600)));
    }

    #[test]
    fn a_quiet_spell_refills_the_burst_and_no_more() {
        let start = Instant::now();
        let pace = Pace {
            interval: ms(100),
            burst: 2,
        };
        let mut schedule = Schedule::default();
        for _ in 0..4 {
            schedule.book(start, pace);
        }
        // Booked up to 300 ms; a second later the burst of 2 is back, not 10.
        let later = start + ms(1_300);
        let moments: Vec<Duration> = (0..4).map(|_| schedule.book(later, pace) - later).collect();
        assert_eq!(moments, [ms(0), ms(0), ms(100), ms(200)]);
    }

    #[test]
    fn book_if_due_books_exactly_when_earliest_is_now() {
        let now = Instant::now();
        let pace = Pace {
            interval: ms(100),
            burst: 2,
        };
        let (mut checked, mut booked) = (Schedule::default(), Schedule::default());
        for step in 0..8 {
            let at = now + ms(step * 40);
            let due = checked.earliest(at, pace) <= at;
            if due {
                checked.book(at, pace);
            }
            assert_eq!(booked.book_if_due(at, pace), due, "at step {step}");
            assert_eq!(booked.tat, checked.tat, "at step {step}");
        }
    }

    #[test]
    fn earliest_does_not_book() {
        let now = Instant::now();
        let pace = Pace {
            interval: ms(50),
            burst: 1,
        };
        let mut schedule = Schedule::default();
        schedule.book(now, pace);
        assert_eq!(schedule.earliest(now, pace), now + ms(50));
        assert_eq!(schedule.earliest(now, pace), now + ms(50));
        assert_eq!(schedule.book(now, pace), now + ms(50));
    }

    #[test]
    fn paces_of_centuries_saturate_instead_of_overflowing() {
        let now = Instant::now();
        let glacial = Pace {
            interval: Duration::from_secs(u64::MAX / 2),
            burst: 1,
        };
        let mut schedule = Schedule::default();
        assert_eq!(schedule.book(now, glacial), now);
        let next = schedule.book(now, glacial);
        assert!(next > now + Duration::from_secs(50 * 365 * 24 * 3600));
        let glacial_burst = Pace {
            burst: u32::MAX,
            ..glacial
        };
        schedule.restart(now, glacial_burst);
        assert!(schedule.is_booked_after(now));
        assert_eq!(schedule.book(now, glacial_burst), now);
    }

    #[test]
    fn restart_leaves_one_interval_without_a_burst() {
        let now = Instant::now();
        let slow = Pace {
            interval: ms(200),
            burst: 4,
        };
        let mut schedule = Schedule::default();
        for _ in 0..20 {
            schedule.book(now, slow);
        }
        schedule.restart(now, slow);
        assert_eq!(schedule.book(now, slow), now + ms(200));
        assert_eq!(schedule.book(now, slow), now + ms(400));
    }
}
