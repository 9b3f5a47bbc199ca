//! The original s3db.js engine (`AdaptiveTuning`), rule for rule.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bounds::Bounds;
use crate::error::{check_count_at_most, check_positive_duration, check_range, ConfigError};
use crate::memory::{suggest_initial_concurrency, SystemMemorySnapshot};
use crate::sample::Sample;
use crate::tuner::{Adjustment, Reason, Tuner};

/// Settings of [`RuleTuner`]. Build with [`RuleConfig::builder`]; defaults are s3db.js's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleConfig {
    bounds: Bounds,
    target_latency: Duration,
    target_memory_fraction: f64,
    adjustment_interval: Duration,
    sample_window: usize,
    min_samples: usize,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfigBuilder::default()
            .build()
            .expect("the defaults are valid")
    }
}

impl RuleConfig {
    /// Starts from the defaults: min 1, max 100, target latency 200 ms, target memory 0.7,
    /// interval 5 s, averages over the last 100 samples, acts once it has 10.
    pub fn builder() -> RuleConfigBuilder {
        RuleConfigBuilder::default()
    }

    /// The limit's range.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The latency the rules aim at.
    pub fn target_latency(&self) -> Duration {
        self.target_latency
    }

    /// The memory share above which the engine backs off.
    pub fn target_memory_fraction(&self) -> f64 {
        self.target_memory_fraction
    }

    /// How often the rules run.
    pub fn adjustment_interval(&self) -> Duration {
        self.adjustment_interval
    }
}

/// Builder of [`RuleConfig`]; [`build`](RuleConfigBuilder::build) checks every value.
#[derive(Debug, Clone, Copy)]
pub struct RuleConfigBuilder {
    min: usize,
    max: usize,
    target_latency: Duration,
    target_memory_fraction: f64,
    adjustment_interval: Duration,
    sample_window: usize,
    min_samples: usize,
}

impl Default for RuleConfigBuilder {
    fn default() -> Self {
        Self {
            min: 1,
            max: 100,
            target_latency: Duration::from_millis(200),
            target_memory_fraction: 0.7,
            adjustment_interval: Duration::from_secs(5),
            sample_window: 100,
            min_samples: 10,
        }
    }
}

impl RuleConfigBuilder {
    /// Lowest limit. Default 1; must be at least 1.
    pub fn min(mut self, min: usize) -> Self {
        self.min = min;
        self
    }

    /// Highest limit. Default 100; must be at least `min` and at most [`Bounds::LARGEST`].
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Latency the rules aim at. Default 200 ms; must be positive.
    pub fn target_latency(mut self, target: Duration) -> Self {
        self.target_latency = target;
        self
    }

    /// Memory share above which the engine cuts 20 %. Default 0.7; must be in (0, 1].
    pub fn target_memory_fraction(mut self, fraction: f64) -> Self {
        self.target_memory_fraction = fraction;
        self
    }

    /// How often the rules run. Default 5 s; must be positive.
    pub fn adjustment_interval(mut self, interval: Duration) -> Self {
        self.adjustment_interval = interval;
        self
    }

    /// How many recent samples the averages cover. Default 100; 1 to [`Bounds::MOST_SAMPLES`].
    pub fn sample_window(mut self, samples: usize) -> Self {
        self.sample_window = samples;
        self
    }

    /// Samples needed before any rule runs. Default 10; at most [`Bounds::MOST_SAMPLES`].
    pub fn min_samples(mut self, samples: usize) -> Self {
        self.min_samples = samples;
        self
    }

    /// Checks the values.
    pub fn build(self) -> Result<RuleConfig, ConfigError> {
        let bounds = Bounds::new(self.min, self.max)?;
        check_positive_duration("target_latency", self.target_latency)?;
        check_positive_duration("adjustment_interval", self.adjustment_interval)?;
        check_count_at_most("sample_window", self.sample_window, Bounds::MOST_SAMPLES)?;
        if self.min_samples > Bounds::MOST_SAMPLES {
            return Err(ConfigError::TooLarge {
                field: "min_samples",
                max: Bounds::MOST_SAMPLES,
                value: self.min_samples,
            });
        }
        let target_memory_fraction = check_range(
            "target_memory_fraction",
            self.target_memory_fraction,
            0.0,
            1.0,
            true,
            "(0, 1]",
        )?;
        Ok(RuleConfig {
            bounds,
            target_latency: self.target_latency,
            target_memory_fraction,
            adjustment_interval: self.adjustment_interval,
            sample_window: self.sample_window,
            min_samples: self.min_samples,
        })
    }
}

/// The original engine. Every `adjustment_interval`, over the last `sample_window` samples and
/// in this order of priority:
///
/// 1. average memory above `target_memory_fraction` → −20 %;
/// 2. average latency above 1.5 × `target_latency` → −10 %;
/// 3. latency below 0.5 × target and memory below 0.8 × its target → +20 %;
/// 4. latency above 1.2 × target → −5 %.
///
/// Steps round up (at least one), and the result is clamped to the bounds. Nothing happens
/// before `min_samples` samples.
///
/// ```
/// use std::time::{Duration, Instant};
/// use pool_tuning::{AttemptOutcome, RuleConfig, RuleTuner, Sample, Tuner};
/// let mut tuner = RuleTuner::new(RuleConfig::default(), 10);
/// let start = Instant::now();
/// for i in 0..20 {
///     let at = start + Duration::from_millis(i * 300);
///     let fast = Sample::new(at, Duration::from_millis(50), AttemptOutcome::Succeeded);
///     tuner.observe(&fast, at);
/// }
/// assert_eq!(tuner.limit(), 12); // fast and memory fine: +20 % after 5 s
/// ```
#[derive(Debug, Clone)]
pub struct RuleTuner {
    config: RuleConfig,
    limit: usize,
    latencies: VecDeque<Duration>,
    memory_fractions: VecDeque<f64>,
    interval_started: Option<Instant>,
}

impl RuleTuner {
    /// Starts at `initial`, clamped to the bounds.
    pub fn new(config: RuleConfig, initial: usize) -> Self {
        Self {
            limit: config.bounds.clamp(initial),
            config,
            latencies: VecDeque::new(),
            memory_fractions: VecDeque::new(),
            interval_started: None,
        }
    }

    /// Starts at s3db.js's suggestion for this machine (see
    /// [`suggest_initial_concurrency`]).
    pub fn for_memory(config: RuleConfig, memory: SystemMemorySnapshot) -> Self {
        let initial = suggest_initial_concurrency(memory, config.bounds);
        Self::new(config, initial)
    }

    /// The settings.
    pub fn config(&self) -> &RuleConfig {
        &self.config
    }

    /// The rules on averages, without the interval: what the engine would do now.
    pub fn decide(&self, avg_latency: Duration, avg_memory: f64) -> Option<Adjustment> {
        let config = &self.config;
        let target = config.target_latency.as_secs_f64();
        let latency = avg_latency.as_secs_f64();
        let limit = self.limit;
        let (delta, reason) = if avg_memory > config.target_memory_fraction {
            (-(percent_ceil(limit, 20) as i64), Reason::MemoryPressure)
        } else if latency > target * 1.5 {
            (-(percent_ceil(limit, 10) as i64), Reason::HighLatency)
        } else if latency < target * 0.5 && avg_memory < config.target_memory_fraction * 0.8 {
            (percent_ceil(limit, 20) as i64, Reason::GoodPerformance)
        } else if latency > target * 1.2 {
            (
                -(percent_ceil(limit, 5) as i64),
                Reason::SlightLatencyIncrease,
            )
        } else {
            return None;
        };
        let moved = (limit as i64 + delta).max(0) as usize;
        Adjustment::between(limit, config.bounds.clamp(moved), reason)
    }

    fn adjust(&mut self) -> Option<Adjustment> {
        if self.latencies.len() < self.config.min_samples.max(1) {
            return None;
        }
        let avg_latency = self.latencies.iter().sum::<Duration>() / self.latencies.len() as u32;
        let avg_memory = if self.memory_fractions.is_empty() {
            0.0
        } else {
            self.memory_fractions.iter().sum::<f64>() / self.memory_fractions.len() as f64
        };
        let adjustment = self.decide(avg_latency, avg_memory)?;
        self.limit = adjustment.to;
        Some(adjustment)
    }
}

/// `ceil(value × percent / 100)`: s3db.js's `Math.ceil(current * 0.2)` in integers.
fn percent_ceil(value: usize, percent: usize) -> usize {
    (value * percent).div_ceil(100)
}

fn push_bounded<T>(window: &mut VecDeque<T>, value: T, capacity: usize) {
    if window.len() == capacity {
        window.pop_front();
    }
    window.push_back(value);
}

impl Tuner for RuleTuner {
    fn limit(&self) -> usize {
        self.limit
    }

    fn observe(&mut self, sample: &Sample, now: Instant) -> Option<Adjustment> {
        let capacity = self.config.sample_window;
        push_bounded(&mut self.latencies, sample.latency, capacity);
        if let Some(memory) = sample.memory_fraction.filter(|m| m.is_finite()) {
            push_bounded(&mut self.memory_fractions, memory, capacity);
        }
        self.tick(now)
    }

    fn tick(&mut self, now: Instant) -> Option<Adjustment> {
        // s3db.js's interval starts with the engine; ours with the first call that brings
        // a clock, since the core has no clock of its own.
        let started = *self.interval_started.get_or_insert(now);
        if now.saturating_duration_since(started) < self.config.adjustment_interval {
            return None;
        }
        self.interval_started = Some(now);
        self.adjust()
    }

    fn name(&self) -> &'static str {
        "rule"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::AttemptOutcome;

    const MS: Duration = Duration::from_millis(1);

    fn tuner(limit: usize) -> RuleTuner {
        let config = RuleConfig::builder().min(5).max(100).build().unwrap();
        RuleTuner::new(config, limit)
    }

    fn decide(limit: usize, latency_ms: u64, memory: f64) -> Option<(usize, Reason)> {
        tuner(limit)
            .decide(MS * latency_ms as u32, memory)
            .map(|a| (a.to, a.reason))
    }

    #[test]
    fn memory_above_target_cuts_twenty_percent_first() {
        // Memory wins even when latency is also far too high.
        assert_eq!(decide(50, 1_000, 0.75), Some((40, Reason::MemoryPressure)));
        assert_eq!(decide(11, 50, 0.71), Some((8, Reason::MemoryPressure)));
    }

    #[test]
    fn latency_above_one_and_a_half_target_cuts_ten_percent() {
        assert_eq!(decide(50, 301, 0.1), Some((45, Reason::HighLatency)));
        assert_eq!(decide(11, 301, 0.1), Some((9, Reason::HighLatency)));
    }

    #[test]
    fn fast_with_memory_headroom_grows_twenty_percent() {
        assert_eq!(decide(50, 99, 0.1), Some((60, Reason::GoodPerformance)));
        assert_eq!(decide(11, 99, 0.1), Some((14, Reason::GoodPerformance)));
    }

    #[test]
    fn fast_but_memory_near_target_holds() {
        // 0.6 is under the 0.7 target but not under 0.8 × 0.7 = 0.56.
        assert_eq!(decide(50, 50, 0.6), None);
    }

    #[test]
    fn latency_above_one_point_two_target_cuts_five_percent() {
        assert_eq!(
            decide(50, 241, 0.1),
            Some((47, Reason::SlightLatencyIncrease))
        );
        assert_eq!(
            decide(50, 300, 0.1),
            Some((47, Reason::SlightLatencyIncrease))
        );
    }

    #[test]
    fn latency_near_target_holds() {
        assert_eq!(decide(50, 100, 0.1), None);
        assert_eq!(decide(50, 240, 0.1), None);
    }

    #[test]
    fn decisions_stay_within_bounds() {
        assert_eq!(decide(5, 1_000, 0.9), None, "already at min");
        assert_eq!(decide(6, 1_000, 0.9), Some((5, Reason::MemoryPressure)));
        assert_eq!(decide(100, 10, 0.1), None, "already at max");
        assert_eq!(decide(95, 10, 0.1), Some((100, Reason::GoodPerformance)));
    }

    #[test]
    fn initial_limit_is_clamped() {
        assert_eq!(tuner(1).limit(), 5);
        assert_eq!(tuner(1_000).limit(), 100);
    }

    #[test]
    fn rules_run_once_per_interval_and_only_with_ten_samples() {
        let mut tuner = tuner(20);
        let start = Instant::now();
        let fast = |at| Sample::new(at, MS * 20, AttemptOutcome::Succeeded);
        // Nine samples over 6 s: interval elapsed but too few samples.
        for i in 0..9 {
            let at = start + MS * (i * 750);
            assert_eq!(tuner.observe(&fast(at), at), None);
        }
        let at = start + MS * 6_500;
        // The interval restarted at the 5 s check that had too few samples.
        assert_eq!(tuner.observe(&fast(at), at), None);
        let at = start + MS * 10_250;
        let grown = tuner
            .observe(&fast(at), at)
            .expect("second interval adjusts");
        assert_eq!((grown.from, grown.to), (20, 24));
        let at = start + MS * 10_300;
        assert_eq!(
            tuner.observe(&fast(at), at),
            None,
            "not before the next interval"
        );
    }

    #[test]
    fn averages_cover_only_the_last_window_of_samples() {
        let config = RuleConfig::builder()
            .sample_window(10)
            .adjustment_interval(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut tuner = RuleTuner::new(config, 50);
        let start = Instant::now();
        for i in 0..30u32 {
            // 20 slow samples, then 10 fast ones: only the fast ones count.
            let latency = if i < 20 { MS * 1_000 } else { MS * 10 };
            let at = start + MS * (i * 10);
            tuner.observe(&Sample::new(at, latency, AttemptOutcome::Succeeded), at);
        }
        let at = start + Duration::from_secs(2);
        let adjustment = tuner.tick(at).unwrap();
        assert_eq!(adjustment.reason, Reason::GoodPerformance);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert_eq!(
            RuleConfig::builder().min(10).max(5).build(),
            Err(ConfigError::MinAboveMax { min: 10, max: 5 })
        );
        assert_eq!(
            RuleConfig::builder().min(0).build(),
            Err(ConfigError::ZeroMin)
        );
        assert!(matches!(
            RuleConfig::builder()
                .target_memory_fraction(f64::NAN)
                .build(),
            Err(ConfigError::InvalidNumber {
                field: "target_memory_fraction",
                ..
            })
        ));
        assert!(matches!(
            RuleConfig::builder().target_memory_fraction(-0.5).build(),
            Err(ConfigError::InvalidNumber { .. })
        ));
        assert_eq!(
            RuleConfig::builder().target_latency(Duration::ZERO).build(),
            Err(ConfigError::ZeroDuration {
                field: "target_latency"
            })
        );
    }
}
