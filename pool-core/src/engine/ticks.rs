//! Time on the engine's hot path: [`Ticks`], nanoseconds since the engine's [`Epoch`].
//!
//! A task's moves (queued, popped, started, ended) each read the clock once as ticks; the
//! waits and latencies between them are then integer subtractions, and an `Instant` is made
//! again only for what observers are shown. `Instant` arithmetic normalises seconds and
//! nanoseconds with overflow checks on every operation, which cost more than the rest of a
//! queue push.
//!
//! Where the executor's clock is the system's monotonic clock
//! ([`Executor::now_is_system_clock`](crate::Executor::now_is_system_clock)), the engine
//! reads that clock itself, as nanoseconds ([`SystemTicks`]): no call through the executor,
//! no `Instant`, and none of std's out-of-line `Instant::duration_since` (about 55
//! instructions per read). Every other clock (tokio's paused time, `SimExecutor`) is read
//! through the executor and its `Instant` turned into ticks ([`Epoch::ticks`]), so the
//! engine never mixes a virtual clock with the real one.

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

/// Ticks read straight from the system's monotonic clock, the clock std's `Instant` reads on
/// Linux (`CLOCK_MONOTONIC`), through libc and the vDSO as `Instant::now` does.
///
/// What it saves, per read, in `/tmp` programs of 20 M reads (CPU time, load 5–7): 24.2 ns
/// for `Instant::now()` and `saturating_duration_since`, 20.5 ns for this read and one
/// subtraction; in the engine, also the call through the executor (tokio's `Instant::now`
/// behind a `dyn Executor`). A TSC read scaled to nanoseconds (`quanta`) costs 12 ns, but it
/// is another clock: the system's is slewed by NTP and the TSC is not, so ticks read from it
/// would drift away from the deadlines and sleeps that come and go as `Instant`s on the
/// system clock (500 ppm at most: 43 s a day), and keeping them together takes re-anchoring
/// that moves ticks backwards. This one is the same clock, so ticks from here and ticks
/// turned from `Instant`s agree, whatever the pool's age.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemTicks {
    /// The epoch's moment on the system clock, in nanoseconds.
    origin: u64,
}

impl SystemTicks {
    /// An epoch at the present moment of the system's monotonic clock and the ticks that
    /// count from it, read straight from that clock; `None` where the engine cannot read it
    /// itself (other than Linux).
    ///
    /// The epoch's `Instant` and its reading in nanoseconds are two reads of one clock: the
    /// origin is the middle of the narrowest of a few brackets around the `Instant` (a
    /// bracket is about 40 ns here), so ticks from both agree to within half of it.
    pub(crate) fn start() -> Option<(Epoch, SystemTicks)> {
        let mut best: Option<(Instant, u64, u64)> = None;
        for _ in 0..4 {
            let before = monotonic_nanos()?;
            let at = Instant::now();
            let after = monotonic_nanos()?;
            let width = after.saturating_sub(before);
            if best.is_none_or(|(_, _, narrowest)| width < narrowest) {
                best = Some((at, before + width / 2, width));
            }
        }
        let (at, origin, _) = best?;
        Some((Epoch::new(at), SystemTicks { origin }))
    }

    /// The present moment, in ticks of the epoch [`start`](Self::start) made.
    #[inline]
    pub(crate) fn now(self) -> Ticks {
        // The read cannot fail where `start` succeeded (the clock is always there).
        Ticks(
            monotonic_nanos()
                .unwrap_or(self.origin)
                .saturating_sub(self.origin),
        )
    }
}

/// The system's monotonic clock in nanoseconds (2^64 ns after boot is 584 years), read as
/// std's `Instant::now` reads it on Linux: libc's `clock_gettime(CLOCK_MONOTONIC)`, which
/// glibc answers from the vDSO. `None` if the call fails (it cannot for this clock).
#[cfg(target_os = "linux")]
#[inline]
#[allow(unsafe_code)]
fn monotonic_nanos() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, and `now` is a live,
    // writable `timespec` on this stack frame; nothing else is read or kept.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return None;
    }
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Not read directly here: std's `Instant` may be another clock than this platform's
/// `CLOCK_MONOTONIC` (on macOS it is `CLOCK_UPTIME_RAW`).
#[cfg(not(target_os = "linux"))]
#[inline]
fn monotonic_nanos() -> Option<u64> {
    None
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

    /// Ticks read from the system clock and ticks turned from `Instant::now()` are one
    /// clock: each read lies between the other's reads before and after it, to within the
    /// origin's bracket. Fails if `SystemTicks` read another clock (`CLOCK_REALTIME`,
    /// `CLOCK_BOOTTIME` after a suspend, a TSC that drifts) or mis-placed its origin.
    #[cfg(target_os = "linux")]
    #[test]
    fn system_ticks_agree_with_instants_on_the_same_epoch() {
        let (epoch, system) = SystemTicks::start().expect("Linux has a monotonic clock");
        // The origin's bracket is tens of nanoseconds; a whole microsecond is the margin.
        let margin = 1_000;
        for _ in 0..1_000 {
            let before = epoch.ticks(Instant::now());
            let read = system.now();
            let after = epoch.ticks(Instant::now());
            assert!(
                before.nanos() <= read.nanos() + margin && read.nanos() <= after.nanos() + margin,
                "{before:?} <= {read:?} <= {after:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
        let later = system.now();
        assert!(later.nanos() >= 20_000_000, "{later:?}");
    }
}
