//! What the knee tuner measures: a decision window's round trips, and the recent outcomes
//! Little's law reads concurrency from.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::stats::median_interval;

/// The successes of attempts that started in the current window, and the window's memory
/// readings and fullness.
#[derive(Debug, Clone, Default)]
pub(super) struct Window {
    pub(super) started: Option<Instant>,
    latencies: Vec<f64>,
    /// Of those, the ones let in once the limit was full (see `add_full`).
    full: Vec<f64>,
    /// Successes that started after the window settled: (started, ended).
    settled: Vec<(Instant, Instant)>,
    pub(super) max_in_flight: usize,
    memory_sum: f64,
    memory_samples: u32,
}

/// A window's round trips: the median and a confidence interval around it, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rtt {
    pub(super) low: f64,
    pub(super) median: f64,
    pub(super) high: f64,
}

impl Rtt {
    /// Half the interval's width, as a share of the median.
    pub(super) fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.high - self.low) / (2.0 * self.median)
        } else {
            f64::INFINITY
        }
    }
}

impl Window {
    pub(super) fn restart(&mut self, at: Instant) {
        self.started = Some(at);
        self.latencies.clear();
        self.full.clear();
        self.settled.clear();
        self.max_in_flight = 0;
        self.memory_sum = 0.0;
        self.memory_samples = 0;
    }

    pub(super) fn add(&mut self, latency: f64, in_flight: usize, memory: Option<f64>) {
        self.latencies.push(latency);
        self.max_in_flight = self.max_in_flight.max(in_flight);
        if let Some(memory) = memory.filter(|m| m.is_finite()) {
            self.memory_sum += memory;
            self.memory_samples += 1;
        }
    }

    /// A success let in after the burst a rise lets in at once: it saw the new limit full.
    pub(super) fn add_full(&mut self, latency: f64) {
        self.full.push(latency);
    }

    /// How many successes saw the limit full.
    pub(super) fn full_successes(&self) -> usize {
        self.full.len()
    }

    /// The round trips of the successes that saw the limit full.
    pub(super) fn full_rtt(&mut self) -> Option<Rtt> {
        let (low, median, high) = median_interval(&mut self.full)?;
        Some(Rtt { low, median, high })
    }

    pub(super) fn add_settled(&mut self, started: Instant, ended: Instant) {
        self.settled.push((started, ended));
    }

    /// The rate at which attempts ended during each settled success's own round trip,
    /// averaged, if at least `fewest` can be read (those that ended before `now`: attempts
    /// ending at the same moment may not all have been counted yet).
    pub(super) fn rate(&self, recent: &Recent, now: Instant, fewest: usize) -> Option<f64> {
        let rates: Vec<f64> = self
            .settled
            .iter()
            .filter(|(_, ended)| *ended < now)
            .filter_map(|&(started, ended)| recent.rate_between(started, ended))
            .collect();
        (rates.len() >= fewest.max(1)).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    }

    pub(super) fn successes(&self) -> usize {
        self.latencies.len()
    }

    pub(super) fn elapsed(&self, now: Instant) -> Duration {
        self.started
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    pub(super) fn rtt(&mut self) -> Option<Rtt> {
        let (low, median, high) = median_interval(&mut self.latencies)?;
        Some(Rtt { low, median, high })
    }

    pub(super) fn memory(&self) -> Option<f64> {
        (self.memory_samples > 0).then(|| self.memory_sum / f64::from(self.memory_samples))
    }
}

/// Outcomes that ended recently: by Little's law, the sum of their latencies over the span
/// they ended in is the concurrency they were served at.
#[derive(Debug, Clone, Default)]
pub(super) struct Recent {
    /// (ended at, latency in seconds, succeeded, outcomes ended so far, successes so far)
    outcomes: VecDeque<(Instant, f64, bool, u64, u64)>,
    ended: u64,
    succeeded: u64,
    /// When the first outcome ended, or the last forgotten one: spans reaching further
    /// back are not covered.
    since: Option<Instant>,
}

/// Outcomes kept at most (enough for a quarter second at 400,000 a second).
const MOST_RECENT: usize = 100_000;

impl Recent {
    pub(super) fn add(&mut self, ended: Instant, latency: f64, succeeded: bool, keep: Duration) {
        if self.outcomes.len() >= MOST_RECENT {
            if let Some(forgotten) = self.outcomes.pop_front() {
                self.since = Some(forgotten.0);
            }
        }
        self.ended += 1;
        self.succeeded += u64::from(succeeded);
        self.since.get_or_insert(ended);
        self.outcomes
            .push_back((ended, latency, succeeded, self.ended, self.succeeded));
        self.forget_before(ended, keep);
    }

    /// The rate at which outcomes ended after `started` and by `ended`, if outcomes are
    /// kept from that far back: a rate sample over one attempt's own round trip (BBR's
    /// delivery rate), which a closed loop's waves of completions do not distort.
    pub(super) fn rate_between(&self, started: Instant, ended: Instant) -> Option<f64> {
        let span = ended.saturating_duration_since(started).as_secs_f64();
        if span <= 0.0 || self.since? > started {
            return None;
        }
        let count_by = |at: Instant| {
            let after = self.outcomes.partition_point(|o| o.0 <= at);
            after.checked_sub(1).map_or(0, |i| self.outcomes[i].3)
        };
        let before = if self.outcomes.front()?.0 > started {
            // Everything kept ended after `started`: count from the first kept.
            self.outcomes.front()?.3 - 1
        } else {
            count_by(started)
        };
        Some((count_by(ended) - before) as f64 / span)
    }

    /// The concurrency successes are served at now: for each success that ended in
    /// `[from, now)`, how many successes ended while it was in flight (by Little's law, the
    /// number served at once), averaged. Each attempt measures over its own round trip, so
    /// the figure ages within one round trip (a capacity drop shows at once) and a closed
    /// loop's waves of completions do not distort it.
    pub(super) fn served_since(&self, from: Instant, now: Instant) -> Option<f64> {
        let successes_by = |at: Instant| -> Option<u64> {
            let after = self.outcomes.partition_point(|o| o.0 <= at);
            match after.checked_sub(1) {
                Some(i) => Some(self.outcomes[i].4),
                // Nothing kept ended by then: only if nothing was ever forgotten.
                None => (self.since? <= at).then_some(0),
            }
        };
        let (mut sum, mut count) = (0.0, 0u32);
        for &(ended, latency, succeeded, _, _) in self.outcomes.iter().rev() {
            if ended < from {
                break;
            }
            // Attempts ending at this very moment may not all have been counted yet.
            if !succeeded || ended >= now {
                continue;
            }
            let started = ended.checked_sub(Duration::try_from_secs_f64(latency).ok()?)?;
            if self.since.is_some_and(|since| since > started) {
                continue;
            }
            // Everything that ended by the same moment, not only what was counted before it.
            let (before, by_end) = (successes_by(started)?, successes_by(ended)?);
            sum += (by_end - before) as f64;
            count += 1;
        }
        (count > 0).then(|| sum / f64::from(count))
    }

    /// How many attempts that failed (throttled, timed out, failed) were in flight at once
    /// over `[from, now]`, on average (Little's law: the time each spent in flight within
    /// the span, summed, over the span), if any ended in it.
    pub(super) fn refused_since(&self, from: Instant, now: Instant) -> Option<f64> {
        let span = now.saturating_duration_since(from).as_secs_f64();
        if span <= 0.0 {
            return None;
        }
        let mut held = 0.0;
        let mut any = false;
        for &(ended, latency, succeeded, _, _) in self.outcomes.iter().rev() {
            if ended < from {
                break;
            }
            if succeeded || ended > now {
                continue;
            }
            let since_from = ended.saturating_duration_since(from).as_secs_f64();
            held += latency.min(since_from);
            any = true;
        }
        any.then(|| held / span)
    }

    /// The mean latency of every outcome that ended in `[from, now]`, in seconds.
    pub(super) fn mean_latency_since(&self, from: Instant) -> Option<f64> {
        let (sum, count) = self
            .outcomes
            .iter()
            .rev()
            .take_while(|o| o.0 >= from)
            .fold((0.0, 0u32), |(sum, count), o| (sum + o.1, count + 1));
        (count > 0).then(|| sum / f64::from(count))
    }

    fn forget_before(&mut self, now: Instant, keep: Duration) {
        while self
            .outcomes
            .front()
            .is_some_and(|o| now.saturating_duration_since(o.0) > keep)
        {
            if let Some(forgotten) = self.outcomes.pop_front() {
                self.since = Some(forgotten.0);
            }
        }
    }
}

/// A maximum that halves every `half_life` unless renewed: how slow an outcome can be.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DecayingMax {
    value: f64,
    at: Option<Instant>,
}

impl DecayingMax {
    pub(super) fn observe(&mut self, value: f64, now: Instant, half_life: Duration) {
        let current = self.get(now, half_life);
        if value >= current {
            self.value = value;
            self.at = Some(now);
        }
    }

    pub(super) fn get(&self, now: Instant, half_life: Duration) -> f64 {
        let Some(at) = self.at else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        self.value * 0.5f64.powf(elapsed / half_life.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn littles_law_reads_concurrency_from_recent_outcomes() {
        let start = Instant::now();
        let keep = MS * 1_000;
        let mut recent = Recent::default();
        // A closed loop of 40 attempts of 20 ms: one ends every 0.5 ms.
        for i in 1..=400u32 {
            recent.add(start + MS * i / 2, 0.02, true, keep);
        }
        let now = start + MS * 200;
        // Each success saw 40 others end during its 20 ms: 40 served at once.
        let served = recent.served_since(now - MS * 40, now).unwrap();
        assert!((served - 40.0).abs() < 1.0, "{served}");
        // In waves (24 ending at once every 20 ms) just the same.
        let mut waves = Recent::default();
        for wave in 1..=20u32 {
            for _ in 0..24 {
                waves.add(start + MS * (20 * wave), 0.02, true, keep);
            }
        }
        let at = start + MS * 410;
        assert_eq!(waves.served_since(at - MS * 40, at), Some(24.0));
        let rate = recent.rate_between(now - MS * 20, now).unwrap();
        assert!((rate - 2_000.0).abs() < 100.0, "{rate}");
        // A storm of throttles: served counts successes only.
        for i in 1..=100u32 {
            recent.add(now + MS * i / 10, 0.005, false, keep);
        }
        let mean = recent.mean_latency_since(now).unwrap();
        assert!(
            (mean - (0.005 * 100.0 + 0.02) / 101.0).abs() < 1e-9,
            "{mean}"
        );
        // The throttles (5 ms each, ending a tenth of a millisecond apart from `now` on)
        // held slots over these 15 ms: the first fifty only from `now` (i tenths of a
        // millisecond each), the other fifty all their 5 ms.
        let refused = recent.refused_since(now, now + MS * 15).unwrap();
        let held = (0.0001 * (1..=50).sum::<u32>() as f64 + 50.0 * 0.005) / 0.015;
        assert!((refused - held).abs() < 1e-6, "{refused} {held}");
        assert_eq!(recent.refused_since(now - MS * 40, now - MS * 30), None);
        // Old outcomes are forgotten, and spans reaching before them are not read.
        recent.add(start + MS * 5_000, 0.02, true, keep);
        assert_eq!(recent.outcomes.len(), 1);
        assert_eq!(recent.rate_between(start, start + MS * 5_000), None);
    }

    #[test]
    fn a_decaying_max_halves_unless_renewed() {
        let now = Instant::now();
        let mut max = DecayingMax::default();
        max.observe(2.0, now, Duration::from_secs(10));
        max.observe(1.0, now, Duration::from_secs(10));
        assert_eq!(max.get(now, Duration::from_secs(10)), 2.0);
        let later = now + Duration::from_secs(10);
        assert!((max.get(later, Duration::from_secs(10)) - 1.0).abs() < 1e-9);
    }
}
