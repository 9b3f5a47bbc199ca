//! The pool's own view of how long an attempt takes: the median service time of its recent
//! answered attempts, which shedding compares with a task's time left
//! ([`PoolBuilder::shed_doomed`](crate::PoolBuilder::shed_doomed)).
//!
//! A window of the last [`WINDOW`] latencies rather than a decaying average: a median
//! ignores the slow tail that an average would drag in (a few 30 s timeouts must not make
//! the pool shed everything), and a window forgets a past slowdown in `WINDOW` attempts.
//! Only attempts that got an answer count (a value or an error): a timeout or a cut attempt
//! measured the limit, not the backend.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sync::{AtomicU64, Mutex};

/// Latencies kept.
const WINDOW: usize = 64;
/// Latencies needed before the median is trusted: until then nothing is shed.
const MIN_SAMPLES: usize = 8;
/// The stored median while too few latencies are known.
const UNKNOWN: u64 = u64::MAX;

/// The recent latencies (behind a lock of their own: recorded outside the engine's) and
/// their median (read by runners without any lock).
#[derive(Debug)]
pub(super) struct ServiceTimes {
    recent: Mutex<Ring>,
    median: AtomicU64,
}

/// Nanoseconds; the first `len` are filled.
#[derive(Debug)]
struct Ring {
    latencies: [u64; WINDOW],
    len: usize,
    next: usize,
}

impl Default for ServiceTimes {
    fn default() -> Self {
        Self {
            recent: Mutex::new(Ring {
                latencies: [0; WINDOW],
                len: 0,
                next: 0,
            }),
            median: AtomicU64::new(UNKNOWN),
        }
    }
}

impl ServiceTimes {
    /// Adds an answered attempt's latency.
    pub(super) fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX - 1);
        let mut ring = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let at = ring.next;
        ring.latencies[at] = nanos;
        ring.next = (at + 1) % WINDOW;
        ring.len = (ring.len + 1).min(WINDOW);
        if ring.len >= MIN_SAMPLES {
            let mut sorted = ring.latencies;
            let window = &mut sorted[..ring.len];
            let middle = window.len() / 2;
            let (_, median, _) = window.select_nth_unstable(middle);
            self.median.store(*median, Ordering::Relaxed);
        }
    }

    /// The median of the recent answered attempts' latencies; `None` until enough are known.
    pub(super) fn median(&self) -> Option<Duration> {
        match self.median.load(Ordering::Relaxed) {
            UNKNOWN => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_is_known_until_enough_attempts_answered() {
        let times = ServiceTimes::default();
        for _ in 0..MIN_SAMPLES - 1 {
            times.record(ms(10));
        }
        assert_eq!(times.median(), None);
        times.record(ms(10));
        assert_eq!(times.median(), Some(ms(10)));
    }

    #[test]
    fn the_median_ignores_a_slow_tail_and_forgets_the_past() {
        let times = ServiceTimes::default();
        for i in 0..20 {
            times.record(if i % 5 == 0 { ms(30_000) } else { ms(10) });
        }
        assert_eq!(times.median(), Some(ms(10)), "a 20 % tail moves no median");
        for _ in 0..WINDOW {
            times.record(ms(200));
        }
        assert_eq!(times.median(), Some(ms(200)), "a full window later");
        times.record(Duration::MAX);
        assert_eq!(times.median(), Some(ms(200)));
    }
}
