//! Netflix concurrency-limits' Gradient2.

use std::time::{Duration, Instant};

use crate::bounds::Bounds;
use crate::sample::{AttemptOutcome, Sample};
use crate::tuner::{Adjustment, Reason, Tuner};

/// Netflix concurrency-limits' `Gradient2Limit` (commit f2528de: `rttTolerance` 1.5,
/// `smoothing` 0.2, `longWindow` 600) inside a `WindowedLimit` (windows of 1 s, at least 10
/// samples, RTTs under 100 µs ignored), as the library composes them.
///
/// Per window it takes the window's mean RTT as the short-term RTT and adds it to a long-term
/// exponential average (a plain mean over the first 10 windows); then, unless fewer than half
/// the estimated limit were in flight,
///
/// ```text
/// gradient = clamp(1.5 · long / short, 0.5, 1.0)
/// new      = estimate · gradient + queue allowance
/// estimate = 0.8 · estimate + 0.2 · new
/// ```
///
/// and when the long-term RTT exceeds twice the short-term one it decays by 5 % (recovery
/// after a period of overload). The queue allowance is √limit, at least 4 (the library's
/// `SquareRootFunction.create(4)`; `Gradient2Limit` itself defaults to a constant 4).
///
/// Drops (throttled or timed-out attempts, the library's `onDropped`) enter the window with
/// their RTT and mark it, but `Gradient2Limit` does not read the mark: only RTT moves it.
/// Other failures are ignored (`onIgnore`). The library's `minLimit` default of 20 is the
/// bounds' minimum here.
#[derive(Debug, Clone)]
pub struct Gradient2 {
    bounds: Bounds,
    estimate: f64,
    long_rtt: LongRtt,
    window: Window,
    next_update: Option<Instant>,
}

/// `ExpAvgMeasurement(600, 10)`: a mean over the first 10 values, then an EWMA with factor
/// 2 / (600 + 1).
#[derive(Debug, Clone, Copy, Default)]
struct LongRtt {
    value: f64,
    sum: f64,
    count: u32,
}

impl LongRtt {
    const WINDOW: f64 = 600.0;
    const WARMUP: u32 = 10;

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < Self::WARMUP {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / f64::from(self.count);
        } else {
            let factor = 2.0 / (Self::WINDOW + 1.0);
            self.value = self.value * (1.0 - factor) + sample * factor;
        }
        self.value
    }
}

/// `ImmutableAverageSampleWindow`.
#[derive(Debug, Clone, Copy)]
struct Window {
    min_rtt: f64,
    sum: f64,
    max_in_flight: usize,
    count: u32,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            min_rtt: f64::INFINITY,
            sum: 0.0,
            max_in_flight: 0,
            count: 0,
        }
    }
}

impl Gradient2 {
    /// `rttTolerance`.
    pub const RTT_TOLERANCE: f64 = 1.5;
    /// `smoothing`.
    pub const SMOOTHING: f64 = 0.2;
    /// `WindowedLimit`'s minimum and maximum window.
    pub const WINDOW: Duration = Duration::from_secs(1);
    /// `WindowedLimit`'s minimum samples per window.
    pub const WINDOW_SAMPLES: u32 = 10;
    /// `WindowedLimit`'s `minRttThreshold`.
    pub const MIN_RTT: Duration = Duration::from_micros(100);

    /// Starts at `initial`, clamped to `bounds`.
    pub fn new(bounds: Bounds, initial: usize) -> Self {
        Self {
            bounds,
            estimate: bounds.clamp(initial) as f64,
            long_rtt: LongRtt::default(),
            window: Window::default(),
            next_update: None,
        }
    }

    fn queue_allowance(&self) -> f64 {
        ((self.estimate as usize).isqrt().max(1) as f64).max(4.0)
    }

    /// `Gradient2Limit._update` with a window's mean RTT and most attempts in flight.
    fn update(&mut self, rtt: f64, in_flight: usize) -> Option<Adjustment> {
        let from = self.limit();
        let queue = self.queue_allowance();
        let long = self.long_rtt.add(rtt);
        if long / rtt > 2.0 {
            self.long_rtt.value *= 0.95;
        }
        if (in_flight as f64) < self.estimate / 2.0 {
            return None;
        }
        let gradient = (Self::RTT_TOLERANCE * long / rtt).clamp(0.5, 1.0);
        let new = self.estimate * gradient + queue;
        let new = self.estimate * (1.0 - Self::SMOOTHING) + new * Self::SMOOTHING;
        self.estimate = new.clamp(self.bounds.min() as f64, self.bounds.max() as f64);
        let reason = if gradient < 1.0 {
            Reason::RttGrowth
        } else {
            Reason::Probing
        };
        Adjustment::between(from, self.limit(), reason)
    }
}

impl Tuner for Gradient2 {
    fn limit(&self) -> usize {
        self.bounds.clamp_f64(self.estimate)
    }

    fn observe(&mut self, sample: &Sample, _now: Instant) -> Option<Adjustment> {
        if sample.outcome == AttemptOutcome::Failed || sample.latency < Self::MIN_RTT {
            return None;
        }
        let rtt = sample.latency.as_secs_f64();
        let window = &mut self.window;
        window.min_rtt = window.min_rtt.min(rtt);
        window.sum += rtt;
        window.max_in_flight = window.max_in_flight.max(sample.in_flight);
        window.count += 1;
        let end = sample.finished_at;
        if self.next_update.is_some_and(|at| end <= at) {
            return None;
        }
        let current = std::mem::take(&mut self.window);
        let span = seconds(current.min_rtt * 2.0).clamp(Self::WINDOW, Self::WINDOW);
        self.next_update = Some(end + span);
        if current.count < Self::WINDOW_SAMPLES || !current.min_rtt.is_finite() {
            return None;
        }
        self.update(
            current.sum / f64::from(current.count),
            current.max_in_flight,
        )
    }

    fn name(&self) -> &'static str {
        "gradient2"
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `windows` one-second windows of samples at `rtt` with the limit in flight.
    fn run(tuner: &mut Gradient2, now: &mut Instant, windows: usize, rtt: Duration) {
        for _ in 0..windows * 100 {
            *now += MS * 10;
            let sample = Sample::new(*now, rtt, AttemptOutcome::Succeeded).in_flight(tuner.limit());
            tuner.observe(&sample, *now);
        }
    }

    #[test]
    fn grows_by_a_fifth_of_the_queue_allowance_per_window_while_the_rtt_holds() {
        let mut tuner = Gradient2::new(Bounds::new(1, 1_000).unwrap(), 16);
        let mut now = Instant::now();
        run(&mut tuner, &mut now, 10, MS * 20);
        // +0.2 · √limit (at least 4) per window: 16 → about 24 in 10 windows.
        assert!((22..=26).contains(&tuner.limit()), "{}", tuner.limit());
    }

    #[test]
    fn a_longer_rtt_pulls_the_limit_down_at_most_by_half_per_window() {
        let mut tuner = Gradient2::new(Bounds::new(1, 1_000).unwrap(), 100);
        let mut now = Instant::now();
        run(&mut tuner, &mut now, 12, MS * 20);
        let before = tuner.limit();
        run(&mut tuner, &mut now, 5, MS * 100);
        let after = tuner.limit();
        assert!(after < before, "{before} -> {after}");
        // Smoothing 0.2 and a gradient of at least 0.5: at most −10 % (+queue) per window.
        assert!(after as f64 >= before as f64 * 0.9f64.powi(5) - 1.0);
    }

    #[test]
    fn drops_alone_do_not_move_it() {
        let mut tuner = Gradient2::new(Bounds::new(1, 1_000).unwrap(), 50);
        let mut now = Instant::now();
        run(&mut tuner, &mut now, 12, MS * 20);
        let before = tuner.limit();
        for _ in 0..300 {
            now += MS * 10;
            let sample = Sample::new(now, MS * 20, AttemptOutcome::Throttled).in_flight(before);
            tuner.observe(&sample, now);
        }
        assert!(tuner.limit() >= before);
    }
}
