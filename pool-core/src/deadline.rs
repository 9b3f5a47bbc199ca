//! Moments computed from durations a user may set to "forever".
//!
//! `Instant + Duration` panics when the sum cannot be represented, and settings such as a
//! cool-down, a time-to-live or an idle time accept any `Duration`, `Duration::MAX` included.
//! Every moment built from such a setting goes through [`after`], which saturates: a wait
//! longer than [`NEVER`] is taken as "never" and ends a century from now, a moment that
//! nothing reaches yet that every executor can still sleep until and subtract from.

use std::time::{Duration, Instant};

/// The longest wait scheduled: about a century. Longer ones (up to `Duration::MAX`) mean
/// "never" and are cut to this, so the moment stays representable and later arithmetic on it
/// (a sleep until then, `until - now`) cannot overflow either.
pub(crate) const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `at + wait`, with waits of [`NEVER`] or more cut to it. On a platform whose `Instant`
/// cannot reach a century ahead, the furthest moment it can.
pub(crate) fn after(at: Instant, wait: Duration) -> Instant {
    let wait = wait.min(NEVER);
    at.checked_add(wait).unwrap_or_else(|| furthest(at, wait))
}

/// The latest moment at most `wait` after `at` that `Instant` can represent.
fn furthest(mut at: Instant, mut wait: Duration) -> Instant {
    while !wait.is_zero() {
        match at.checked_add(wait) {
            Some(later) => at = later,
            None => wait /= 2,
        }
    }
    at
}

/// `at` as nanoseconds since `base` (0 if `at` is earlier): 96 bits hold any `Instant`'s
/// distance exactly, so a moment kept as two integers (packed beside other fields, where an
/// `Instant` takes 16 bytes) comes back as it went in ([`at_nanos`]).
pub(crate) fn nanos_since(base: Instant, at: Instant) -> u128 {
    at.saturating_duration_since(base).as_nanos()
}

/// The moment `nanos` nanoseconds after `base` (the inverse of [`nanos_since`]); saturating
/// as [`after`] does where `Instant` cannot reach.
pub(crate) fn at_nanos(base: Instant, nanos: u128) -> Instant {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    let since = Duration::new(secs, (nanos % NANOS_PER_SEC) as u32);
    base.checked_add(since)
        .unwrap_or_else(|| after(base, since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_waits_add_exactly() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(after(now, Duration::ZERO), now);
    }

    #[test]
    fn forever_is_a_century_ahead() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + NEVER);
        assert_eq!(after(now, NEVER * 2), now + NEVER);
        // Arithmetic on the result still works.
        let never = after(now, Duration::MAX);
        assert_eq!(never.saturating_duration_since(now), NEVER);
        assert!(never.checked_add(Duration::from_secs(1)).is_some());
    }

    #[test]
    fn furthest_stops_at_what_instant_can_hold() {
        let now = Instant::now();
        let end = furthest(now, Duration::MAX);
        assert!(end > now);
        assert!(end.checked_add(Duration::from_secs(1)).is_none());
    }

    #[test]
    fn a_moment_in_nanoseconds_comes_back_exact() {
        let base = Instant::now();
        for wait in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_secs(1) - Duration::from_nanos(1),
            Duration::from_secs(100 * 365 * 24 * 3600 + 7),
            Duration::from_secs(1_000_000_000_000) + Duration::from_nanos(999_999_999),
        ] {
            let at = base + wait;
            assert_eq!(at_nanos(base, nanos_since(base, at)), at, "{wait:?}");
        }
        assert_eq!(
            nanos_since(base + Duration::from_secs(1), base),
            0,
            "earlier: 0"
        );
    }
}
