//! Vector's adaptive request concurrency (ARC).

use std::time::{Duration, Instant};

use crate::bounds::Bounds;
use crate::sample::{AttemptOutcome, Sample};
use crate::tuner::{Adjustment, Reason, Tuner};

/// Vector's adaptive request concurrency, as in `src/sinks/util/adaptive_concurrency/
/// controller.rs` of vectordotdev/vector (commit 05b56b7), with its defaults: EWMA weight
/// 0.4, deviation scale 2.5, decrease ratio 0.9.
///
/// Once per measurement interval (one past RTT, the EWMA's mean) it compares the interval's
/// mean RTT with the EWMA of past intervals: **+1** if the limit was reached, nothing pushed
/// back and the RTT is at most the past mean; **×0.9** (rounded down) if anything pushed back
/// or the RTT is at least the past mean plus 2.5 standard deviations (the EWMA's variance,
/// West's recurrence). One decrease per interval, however much pushed back.
///
/// Differences a [`Sample`] imposes: Vector takes "the limit was reached" when a request
/// *starts* with the semaphore full; here when an attempt *ends* with `in_flight` at the
/// limit. Vector counts every retriable error (5xx included) as back pressure; a sample only
/// says throttled, timed out, or failed (a 500 and a 404 alike), so here throttles and
/// timeouts are back pressure and other failures are not.
///
/// ```
/// use std::time::{Duration, Instant};
/// use pool_tuning::peers::VectorArc;
/// use pool_tuning::{AttemptOutcome, Bounds, Sample, Tuner};
/// let mut tuner = VectorArc::new(Bounds::new(1, 100)?, 10);
/// let mut now = Instant::now();
/// for _ in 0..100 {
///     now += Duration::from_millis(5);
///     let sample = Sample::new(now, Duration::from_millis(20), AttemptOutcome::Succeeded).in_flight(tuner.limit());
///     tuner.observe(&sample, now);
/// }
/// assert!(tuner.limit() > 10);
/// # Ok::<(), pool_tuning::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct VectorArc {
    bounds: Bounds,
    limit: usize,
    /// EWMA of past intervals' mean RTT: (mean, variance), in seconds.
    past_rtt: Option<(f64, f64)>,
    next_update: Option<Instant>,
    /// This interval's RTTs: (sum, count).
    current_rtt: (f64, u64),
    had_back_pressure: bool,
    reached_limit: bool,
}

impl VectorArc {
    /// Vector's `ewma_alpha` default.
    pub const EWMA_ALPHA: f64 = 0.4;
    /// Vector's `rtt_deviation_scale` default.
    pub const RTT_DEVIATION_SCALE: f64 = 2.5;
    /// Vector's `decrease_ratio` default.
    pub const DECREASE_RATIO: f64 = 0.9;

    /// Starts at `initial`, clamped to `bounds`.
    pub fn new(bounds: Bounds, initial: usize) -> Self {
        Self {
            bounds,
            limit: bounds.clamp(initial),
            past_rtt: None,
            next_update: None,
            current_rtt: (0.0, 0),
            had_back_pressure: false,
            reached_limit: false,
        }
    }

    fn current_mean(&self) -> Option<f64> {
        let (sum, count) = self.current_rtt;
        (count > 0).then(|| sum / count as f64)
    }

    /// West's exponentially weighted mean and variance.
    fn update_past(&mut self, rtt: f64) -> (f64, f64) {
        let state = match self.past_rtt {
            None => (rtt, 0.0),
            Some((mean, variance)) => {
                let difference = rtt - mean;
                let increment = Self::EWMA_ALPHA * difference;
                (
                    mean + increment,
                    (1.0 - Self::EWMA_ALPHA) * (variance + difference * increment),
                )
            }
        };
        self.past_rtt = Some(state);
        state
    }

    fn manage_limit(&mut self, past: (f64, f64), current: Option<f64>) -> Option<Adjustment> {
        let (mean, variance) = past;
        let threshold = variance.sqrt() * Self::RTT_DEVIATION_SCALE;
        let from = self.limit;
        if from < self.bounds.max()
            && self.reached_limit
            && !self.had_back_pressure
            && current.is_some_and(|rtt| rtt <= mean)
        {
            self.limit = from + 1;
            return Adjustment::between(from, self.limit, Reason::Probing);
        }
        if from > self.bounds.min()
            && (self.had_back_pressure || current.unwrap_or(0.0) >= mean + threshold)
        {
            let reduced = ((from as f64 * Self::DECREASE_RATIO) as usize).max(1);
            self.limit = self.bounds.clamp(reduced);
            let reason = if self.had_back_pressure {
                Reason::Throttled
            } else {
                Reason::RttGrowth
            };
            return Adjustment::between(from, self.limit, reason);
        }
        None
    }
}

impl Tuner for VectorArc {
    fn limit(&self) -> usize {
        self.limit
    }

    fn observe(&mut self, sample: &Sample, now: Instant) -> Option<Adjustment> {
        if sample.in_flight >= self.limit {
            self.reached_limit = true;
        }
        match sample.outcome {
            AttemptOutcome::Throttled | AttemptOutcome::TimedOut => self.had_back_pressure = true,
            AttemptOutcome::Succeeded => {
                self.current_rtt.0 += sample.latency.as_secs_f64();
                self.current_rtt.1 += 1;
            }
            AttemptOutcome::Failed => {}
        }
        let current = self.current_mean();
        let Some(past) = self.past_rtt else {
            if let Some(rtt) = current {
                self.update_past(rtt);
                self.next_update = Some(now + seconds(rtt));
            }
            return None;
        };
        if self.next_update.is_some_and(|at| now < at) {
            return None;
        }
        let adjustment = self.manage_limit(past, current);
        let past = match current {
            Some(rtt) => self.update_past(rtt),
            None => past,
        };
        self.next_update = Some(now + seconds(past.0));
        self.current_rtt = (0.0, 0);
        self.had_back_pressure = false;
        self.reached_limit = false;
        adjustment
    }

    fn name(&self) -> &'static str {
        "vector"
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// 1/64 s: exact in binary, so equal RTTs average to exactly the same value.
    const RTT: Duration = Duration::from_micros(15_625);

    fn feed(tuner: &mut VectorArc, now: &mut Instant, latency: Duration, outcome: AttemptOutcome) {
        *now += MS;
        let sample = Sample::new(*now, latency, outcome).in_flight(tuner.limit());
        tuner.observe(&sample, *now);
    }

    #[test]
    fn grows_by_one_per_interval_while_the_rtt_holds() {
        let mut tuner = VectorArc::new(Bounds::new(1, 100).unwrap(), 10);
        let mut now = Instant::now();
        // A 15.6 ms RTT, one sample per ms: one interval per 16 samples.
        for _ in 0..160 {
            feed(&mut tuner, &mut now, RTT, AttemptOutcome::Succeeded);
        }
        assert!((18..=20).contains(&tuner.limit()), "{}", tuner.limit());
    }

    #[test]
    fn back_pressure_cuts_once_per_interval() {
        let mut tuner = VectorArc::new(Bounds::new(1, 100).unwrap(), 50);
        let mut now = Instant::now();
        for _ in 0..20 {
            feed(&mut tuner, &mut now, RTT, AttemptOutcome::Succeeded);
        }
        let before = tuner.limit();
        // Ten throttles within one interval: one decrease, to 90 % rounded down.
        for _ in 0..10 {
            feed(&mut tuner, &mut now, RTT, AttemptOutcome::Throttled);
        }
        for _ in 0..7 {
            feed(&mut tuner, &mut now, RTT, AttemptOutcome::Succeeded);
        }
        assert_eq!(tuner.limit(), before * 9 / 10);
    }

    #[test]
    fn an_rtt_far_above_the_past_cuts() {
        let mut tuner = VectorArc::new(Bounds::new(1, 100).unwrap(), 50);
        let mut now = Instant::now();
        for _ in 0..100 {
            feed(&mut tuner, &mut now, RTT, AttemptOutcome::Succeeded);
        }
        let before = tuner.limit();
        for _ in 0..40 {
            feed(&mut tuner, &mut now, RTT * 3, AttemptOutcome::Succeeded);
        }
        assert!(tuner.limit() < before);
    }
}
