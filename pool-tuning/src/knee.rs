//! The knee-finding tuner: the most requests in flight before they queue or are refused.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bounds::Bounds;
use crate::error::{
    check_count_at_most, check_positive_count, check_positive_duration, check_range, ConfigError,
};
use crate::sample::{AttemptOutcome, Sample};
use crate::tuner::{Adjustment, Reason, Tuner};

/// Settings of [`KneeTuner`]. Build with [`KneeConfig::builder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KneeConfig {
    bounds: Bounds,
    latency_tolerance: f64,
    gentlest_cut: f64,
    deepest_cut: f64,
    hold_windows: u32,
    min_samples: usize,
    min_window: Duration,
    memory_target: Option<f64>,
    rate_history: usize,
    baseline_refresh: Duration,
    max_background_overload: f64,
}

impl Default for KneeConfig {
    fn default() -> Self {
        KneeConfigBuilder::default()
            .build()
            .expect("the defaults are valid")
    }
}

impl KneeConfig {
    /// Starts from the defaults (see each setter of [`KneeConfigBuilder`]).
    pub fn builder() -> KneeConfigBuilder {
        KneeConfigBuilder::default()
    }

    /// The limit's range.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
}

/// Builder of [`KneeConfig`]; [`build`](KneeConfigBuilder::build) checks every value.
#[derive(Debug, Clone, Copy)]
pub struct KneeConfigBuilder {
    min: usize,
    max: usize,
    latency_tolerance: f64,
    gentlest_cut: f64,
    deepest_cut: f64,
    hold_windows: u32,
    min_samples: usize,
    min_window: Duration,
    memory_target: Option<f64>,
    rate_history: usize,
    baseline_refresh: Duration,
    max_background_overload: f64,
}

impl Default for KneeConfigBuilder {
    fn default() -> Self {
        Self {
            min: 1,
            max: 1_000,
            latency_tolerance: 0.15,
            gentlest_cut: 0.9,
            deepest_cut: 0.5,
            hold_windows: 24,
            min_samples: 16,
            min_window: Duration::from_millis(5),
            memory_target: Some(0.9),
            rate_history: 16,
            baseline_refresh: Duration::from_secs(10),
            max_background_overload: 0.05,
        }
    }
}

impl KneeConfigBuilder {
    /// Lowest limit. Default 1; must be at least 1.
    pub fn min(mut self, min: usize) -> Self {
        self.min = min;
        self
    }

    /// Highest limit. Default 1,000; must be at least `min` and at most [`Bounds::LARGEST`].
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// How far the RTT may rise above its no-load baseline before it counts as queueing:
    /// 0.15 means 15 %. Default 0.15; must be in (0, 10]. Lower finds the knee more exactly
    /// but reacts to noise.
    pub fn latency_tolerance(mut self, tolerance: f64) -> Self {
        self.latency_tolerance = tolerance;
        self
    }

    /// The smallest cut for throttling, timeouts and memory pressure, as the factor the limit
    /// is multiplied by (0.9 = −10 %). Default 0.9; must be in (0, 1) and at least
    /// `deepest_cut`. (RTT growth may cut less: it has finer evidence.)
    pub fn gentlest_cut(mut self, factor: f64) -> Self {
        self.gentlest_cut = factor;
        self
    }

    /// The largest single cut (0.5 = at most halve). Default 0.5; must be in (0, 1).
    pub fn deepest_cut(mut self, factor: f64) -> Self {
        self.deepest_cut = factor;
        self
    }

    /// Clean windows to stay at the last safe level before probing above it. Default 24
    /// (about 1 s at 20 ms RTT). Higher: fewer overshoots, slower to notice added capacity.
    pub fn hold_windows(mut self, windows: u32) -> Self {
        self.hold_windows = windows;
        self
    }

    /// Successful attempts a window needs before it decides. Default 16; 1 to
    /// [`Bounds::MOST_SAMPLES`]. More
    /// means less noise per decision and slower decisions at low concurrency.
    pub fn min_samples(mut self, samples: usize) -> Self {
        self.min_samples = samples;
        self
    }

    /// Shortest window, whatever the RTT. Default 5 ms; must be positive.
    pub fn min_window(mut self, window: Duration) -> Self {
        self.min_window = window;
        self
    }

    /// Memory share above which the limit is cut like under throttling, or `None` to ignore
    /// memory. Default `Some(0.9)`: only near exhaustion, since other processes' memory is
    /// not this pool's to fix. Must be in (0, 1].
    pub fn memory_target(mut self, target: Option<f64>) -> Self {
        self.memory_target = target;
        self
    }

    /// Windows the best success rate is remembered for. Default 16; at least 1.
    pub fn rate_history(mut self, windows: usize) -> Self {
        self.rate_history = windows;
        self
    }

    /// How often one window at ¾ of the limit re-measures the no-load RTT (like BBR's
    /// ProbeRTT), so neither noise nor a standing queue skews the baseline for long.
    /// Default 10 s; must be positive. Costs about one window in 250 at a 20 ms RTT.
    pub fn baseline_refresh(mut self, every: Duration) -> Self {
        self.baseline_refresh = every;
        self
    }

    /// The largest share of attempts throttled or timed out that the tuner may learn to treat
    /// as background noise, not caused by load. Default 0.05; 0 turns the learning off (every
    /// throttle cuts, as before). Must be in [0, 0.5].
    ///
    /// Learned when a run of cuts has shrunk the limit by a quarter and the share of
    /// throttled attempts did not fall with it (load-dependent throttling, like a rate cap,
    /// falls or stops). From then on a window cuts only when its share is well above twice
    /// the background; the background only decays afterwards (towards what clean windows
    /// show), and when it reaches zero every throttle cuts again.
    pub fn max_background_overload(mut self, share: f64) -> Self {
        self.max_background_overload = share;
        self
    }

    /// Checks the values.
    pub fn build(self) -> Result<KneeConfig, ConfigError> {
        let bounds = Bounds::new(self.min, self.max)?;
        let latency_tolerance = check_range(
            "latency_tolerance",
            self.latency_tolerance,
            0.0,
            10.0,
            true,
            "(0, 10]",
        )?;
        let deepest_cut = check_range("deepest_cut", self.deepest_cut, 0.0, 1.0, true, "(0, 1)")
            .and_then(|f| open_below_one("deepest_cut", f, "(0, 1)"))?;
        let gentlest_cut = check_range(
            "gentlest_cut",
            self.gentlest_cut,
            deepest_cut,
            1.0,
            false,
            "[deepest_cut, 1)",
        )
        .and_then(|f| open_below_one("gentlest_cut", f, "[deepest_cut, 1)"))?;
        let memory_target = match self.memory_target {
            Some(target) => Some(check_range(
                "memory_target",
                target,
                0.0,
                1.0,
                true,
                "(0, 1]",
            )?),
            None => None,
        };
        let max_background_overload = check_range(
            "max_background_overload",
            self.max_background_overload,
            0.0,
            0.5,
            false,
            "[0, 0.5]",
        )?;
        check_positive_duration("min_window", self.min_window)?;
        check_positive_duration("baseline_refresh", self.baseline_refresh)?;
        check_count_at_most("min_samples", self.min_samples, Bounds::MOST_SAMPLES)?;
        check_positive_count("rate_history", self.rate_history)?;
        Ok(KneeConfig {
            bounds,
            latency_tolerance,
            gentlest_cut,
            deepest_cut,
            hold_windows: self.hold_windows,
            min_samples: self.min_samples,
            min_window: self.min_window,
            memory_target,
            rate_history: self.rate_history,
            baseline_refresh: self.baseline_refresh,
            max_background_overload,
        })
    }
}

fn open_below_one(
    field: &'static str,
    value: f64,
    range: &'static str,
) -> Result<f64, ConfigError> {
    if value < 1.0 {
        Ok(value)
    } else {
        Err(ConfigError::InvalidNumber {
            field,
            range,
            value,
        })
    }
}

/// Finds and tracks the backend's knee: the most requests in flight before they start to
/// queue (latency grows) or to be refused (throttling, timeouts).
///
/// Family: AIMD with a gradient-sized cut, after Vector's adaptive request concurrency (one
/// decision per RTT-scale window, back-pressure beats latency), Netflix's Gradient2/Vegas
/// (compare the RTT with a no-load baseline) and CUBIC (climb fast back to the last safe
/// level, hold there, then probe slowly and accelerate). Its own additions:
///
/// - **Cuts sized by Little's law.** The knee is estimated as the best recent success rate
///   times the baseline RTT (the bandwidth-delay product); a cut goes straight there instead
///   of a fixed ratio, so it neither overshoots nor needs several rounds.
/// - **Telling a slow backend from a queue.** In a queue, cutting the limit shortens the RTT
///   in proportion; when the backend itself slowed, it does not. If a run of cuts (at least
///   −10 %) leaves the RTT where it was, the baseline moves and the cuts are undone. When the
///   RTT falls below the baseline (the backend got faster), one window at ¾ of the limit
///   reads the new no-load RTT, so a standing queue is not mistaken for the baseline.
/// - **Clean windows.** A window only counts attempts that started after the last change, so
///   every decision measures the limit it is about.
/// - **Noise-proof baseline.** The baseline is the lowest upper bound (mean + 2 standard
///   errors) of a window's RTT: the lowest mean sits below the true no-load RTT by a few
///   standard errors and makes ordinary noise look like queueing. For the same reason a run
///   of cuts counts as queueing only if the RTT fell significantly.
/// - **Background overload.** Throttling that cutting does not reduce (a share of at most
///   `max_background_overload`) is learned and no longer cut for; see
///   [`KneeConfigBuilder::max_background_overload`].
///
/// Per window (at least two smoothed RTTs and `min_samples` successes, counting only attempts
/// started after the last change):
///
/// - a throttled or timed-out attempt cuts **at once**, to the estimated knee but at least
///   to `gentlest_cut` × limit, and caps the climb-back just below the failing level (once a
///   background share is known: only a window with more than twice that share);
/// - memory above `memory_target` cuts to `gentlest_cut` × limit;
/// - an RTT above (1 + `latency_tolerance`) × baseline cuts towards the estimated knee (at
///   most to `deepest_cut` × limit, at least by one); the first cut of a run stops at the
///   last level seen clean. Once a run has cut 10 %, an RTT that did not shrink with it moves
///   the baseline instead, and the limit returns to where the run started;
/// - otherwise, if the limit was in use: climb halfway back to the last safe level; once
///   there, hold `hold_windows` windows, then probe +1, +2, +4 … (at most +1/8 per window).
///
/// ```
/// use std::time::{Duration, Instant};
/// use pool_tuning::{AttemptOutcome, KneeConfig, KneeTuner, Sample, Tuner};
/// let mut tuner = KneeTuner::new(KneeConfig::default(), 40);
/// let now = Instant::now();
/// let throttled = Sample::new(now, Duration::from_millis(5), AttemptOutcome::Throttled).in_flight(40);
/// let cut = tuner.observe(&throttled, now).expect("throttling cuts at once");
/// assert_eq!((cut.from, cut.to), (40, 36));
/// ```
#[derive(Debug, Clone)]
pub struct KneeTuner {
    config: KneeConfig,
    limit: usize,
    /// The last level believed safe; climbs stop here until a hold has passed.
    ceiling: Option<usize>,
    clean_windows_at_ceiling: u32,
    growth_step: usize,
    /// Lowest window-mean RTT since the last rebase, in seconds.
    baseline_rtt: Option<f64>,
    smoothed_rtt: Option<f64>,
    recent_success_rates: VecDeque<f64>,
    /// Where the current run of RTT-growth cuts started, to check that cutting helps.
    latency_cuts_from: Option<LatencyCut>,
    /// When a probe window last measured the baseline.
    baseline_measured_at: Option<Instant>,
    /// Set while a window measures the no-load RTT: the limit to return to afterwards.
    rtt_probe_return_to: Option<usize>,
    /// The limit of the last window that was in use and showed no overload.
    last_clean_limit: Option<usize>,
    /// Share of attempts throttled or timed out whatever the limit, once learned (0: none).
    background_overload: f64,
    /// Smoothed overload share of windows while a background is known; the background
    /// follows it down.
    overload_share_ewma: f64,
    /// A run of overload cuts in progress, to learn whether cutting helps.
    overload_run: Option<OverloadRun>,
    window: Window,
}

/// Attempts and how many of them were throttled or timed out.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    attempts: usize,
    overloads: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.overloads += other.overloads;
    }

    fn share(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.overloads as f64 / self.attempts as f64
        }
    }
}

/// Overload cuts close together: the limit before them, and the overload share seen while
/// the limit was still above ¾ of it (`early`) and after it had been cut below (`late`).
/// Load-dependent overload falls with the limit; background overload does not.
#[derive(Debug, Clone, Copy)]
struct OverloadRun {
    limit_before: usize,
    early: Tally,
    late: Tally,
    /// Attempts since the last overload, all clean.
    clean_attempts: usize,
}

impl OverloadRun {
    /// Over once no overload came for three times the attempts per overload seen so far
    /// (and at least a few windows' worth): what cutting was meant to achieve.
    fn is_over(&self, min_samples: usize) -> bool {
        let mut seen = self.early;
        seen.add(self.late);
        let per_overload = seen.attempts / seen.overloads.max(1);
        self.clean_attempts >= (3 * per_overload).max(RUN_ENDS_AFTER_CLEAN_WINDOWS * min_samples)
    }
}

/// The limit must be below this share of where a run started for its share to count as late.
const LATE_SHRINK: f64 = 0.75;
/// At least this many windows' worth of clean attempts end a run of overload cuts.
const RUN_ENDS_AFTER_CLEAN_WINDOWS: usize = 4;

/// The RTT and limit before a run of RTT-growth cuts.
#[derive(Debug, Clone, Copy)]
struct LatencyCut {
    rtt_before: f64,
    limit_before: usize,
}

/// A run of RTT-growth cuts must have shrunk the limit at least this much before the RTT's
/// response tells queueing from a slower backend.
const INFORMATIVE_SHRINK: f64 = 0.9;

/// What the current window has seen.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    started: Option<Instant>,
    successes: usize,
    rtt_sum: f64,
    rtt_square_sum: f64,
    max_in_flight: usize,
    /// Throttled or timed-out attempts.
    overloads: usize,
    /// Successes finishing in the window, whenever they started: the success rate.
    completed: usize,
    memory_sum: f64,
    memory_samples: usize,
}

impl KneeTuner {
    /// Starts at `initial`, clamped to the bounds.
    pub fn new(config: KneeConfig, initial: usize) -> Self {
        Self {
            limit: config.bounds.clamp(initial),
            config,
            ceiling: None,
            clean_windows_at_ceiling: 0,
            growth_step: 1,
            baseline_rtt: None,
            smoothed_rtt: None,
            recent_success_rates: VecDeque::new(),
            latency_cuts_from: None,
            baseline_measured_at: None,
            rtt_probe_return_to: None,
            last_clean_limit: None,
            background_overload: 0.0,
            overload_share_ewma: 0.0,
            overload_run: None,
            window: Window::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &KneeConfig {
        &self.config
    }

    /// The no-load RTT the tuner compares with, once it has one.
    pub fn baseline_rtt(&self) -> Option<Duration> {
        self.baseline_rtt.map(Duration::from_secs_f64)
    }

    /// The share of attempts throttled or timed out that the tuner has learned not to cut
    /// for (0 until it has seen cuts fail to reduce it).
    pub fn background_overload(&self) -> f64 {
        self.background_overload
    }

    /// The estimated knee: best recent success rate × baseline RTT (requests in flight).
    pub fn estimated_knee(&self) -> Option<f64> {
        let best_rate = self.recent_success_rates.iter().copied().reduce(f64::max)?;
        Some(best_rate * self.baseline_rtt?)
    }

    fn restart_window(&mut self, now: Instant) {
        self.window = Window {
            started: Some(now),
            ..Window::default()
        };
    }

    fn set_limit(&mut self, to: usize, reason: Reason, now: Instant) -> Option<Adjustment> {
        let to = self.config.bounds.clamp(to);
        let adjustment = Adjustment::between(self.limit, to, reason);
        self.limit = to;
        self.restart_window(now);
        adjustment
    }

    /// Cut for back-pressure (throttling, timeouts, memory): towards the knee estimate if one
    /// is known, by at least the gentlest cut, and never climb back to the failing level.
    fn cut_for_overload(&mut self, reason: Reason, now: Instant) -> Option<Adjustment> {
        let limit = self.limit as f64;
        let gentle = limit * self.config.gentlest_cut;
        let target = match (reason, self.estimated_knee()) {
            (Reason::MemoryPressure, _) | (_, None) => gentle,
            (_, Some(knee)) => knee.min(gentle),
        }
        .max(limit * self.config.deepest_cut);
        let to = self.config.bounds.clamp_f64(target);
        // Climb back to the best evidence of a safe level, never to the failing one: the
        // knee estimate lags behind a limit that just grew, a level seen clean does not.
        let below_failing = self.limit.saturating_sub(1).max(to);
        let evidence = self
            .estimated_knee()
            .map(|knee| knee.floor() as usize)
            .max(self.last_clean_limit);
        let mut safe = match (reason, evidence) {
            (Reason::MemoryPressure, _) | (_, None) => to,
            (_, Some(level)) => level.clamp(to, below_failing),
        };
        if let Some(previous) = self.ceiling {
            // Overloaded again before a hold completed: the old safe level was not safe.
            safe = safe.min(previous.saturating_sub(1)).max(to);
        }
        self.ceiling = Some(safe);
        self.clean_windows_at_ceiling = 0;
        self.growth_step = 1;
        self.latency_cuts_from = None;
        // Overload beats an RTT probe in progress: do not jump back when it ends.
        self.rtt_probe_return_to = None;
        self.set_limit(to, reason, now)
    }

    fn window_tally(&self) -> Tally {
        Tally {
            attempts: self.window.successes + self.window.overloads,
            overloads: self.window.overloads,
        }
    }

    /// A throttled or timed-out attempt. Cuts at once, unless a background share is known:
    /// then only a window well above it cuts. While no background is known, each cut adds to
    /// the run that may teach one.
    fn on_overload(&mut self, reason: Reason, now: Instant) -> Option<Adjustment> {
        self.window.overloads += 1;
        let window = self.window_tally();
        if self.background_overload > 0.0 {
            // Twice the background, plus a few attempts of slack for small windows.
            let expected = self.background_overload * window.attempts as f64;
            if window.overloads as f64 > 2.0 * expected + 3.0 {
                return self.cut_for_overload(reason, now);
            }
            return None;
        }
        if self.config.max_background_overload > 0.0 {
            self.count_in_run(window, true);
            if let Some(share) = self.learned_background() {
                let run = self.overload_run.take();
                self.background_overload = share;
                self.overload_share_ewma = share;
                // Back to where the cuts started, halfway per window, then hold and probe.
                self.ceiling = run.map(|run| run.limit_before);
                self.clean_windows_at_ceiling = 0;
                self.growth_step = 1;
                self.restart_window(now);
                return None;
            }
        }
        self.cut_for_overload(reason, now)
    }

    /// Adds a window to the run of overload cuts (starting one at an overload).
    fn count_in_run(&mut self, window: Tally, overloaded: bool) {
        let limit = self.limit;
        let run = match (self.overload_run.as_mut(), overloaded) {
            (Some(run), _) => run,
            (None, true) => self.overload_run.insert(OverloadRun {
                limit_before: limit,
                early: Tally::default(),
                late: Tally::default(),
                clean_attempts: 0,
            }),
            (None, false) => return,
        };
        if (limit as f64) < LATE_SHRINK * run.limit_before as f64 {
            run.late.add(window);
        } else {
            run.early.add(window);
        }
        if overloaded {
            run.clean_attempts = 0;
        } else {
            run.clean_attempts += window.attempts;
            if run.is_over(self.config.min_samples) {
                self.overload_run = None;
            }
        }
    }

    /// The run's overload share, if cutting by a quarter did not lower it (by half, where
    /// the first quarter gave enough to compare) and it is small enough to be background
    /// noise.
    fn learned_background(&self) -> Option<f64> {
        let run = self.overload_run.as_ref()?;
        let evidence = 4 * self.config.min_samples;
        if run.late.attempts < evidence || run.late.overloads < 3 {
            return None;
        }
        let late = run.late.share();
        let fell = run.early.attempts >= evidence && late < 0.5 * run.early.share();
        (late <= self.config.max_background_overload && !fell).then_some(late)
    }

    /// A window that closed without overload cuts: part of a run, and what the background
    /// decays towards.
    fn count_clean_window(&mut self) {
        let window = self.window_tally();
        self.count_in_run(window, false);
        if self.background_overload > 0.0 {
            self.overload_share_ewma = 0.95 * self.overload_share_ewma + 0.05 * window.share();
            // Only clear evidence lowers it (noise alone would ratchet a plain minimum down).
            self.background_overload = self.background_overload.min(2.0 * self.overload_share_ewma);
            if self.background_overload < 1e-4 {
                self.background_overload = 0.0;
            }
        }
    }

    fn cut_for_rtt_growth(&mut self, first_of_run: bool, now: Instant) -> Option<Adjustment> {
        let limit = self.limit as f64;
        // The knee estimate is biased low under noise (a minimum RTT times a rate); a level
        // just seen clean is direct evidence, so the first cut of a run stops there. Later
        // cuts of the same run have shown that level was not enough.
        let clean = self.last_clean_limit.filter(|_| first_of_run);
        let evidence = match (self.estimated_knee(), clean) {
            (Some(knee), Some(clean)) => Some(knee.max(clean as f64)),
            (knee, clean) => knee.or(clean.map(|c| c as f64)),
        };
        // Queueing that a clean level just below explains needs only a small step back.
        let gentlest = ((limit - 1.0) / limit).max(self.config.deepest_cut);
        let factor = evidence
            .map_or(self.config.gentlest_cut, |level| level / limit)
            .clamp(self.config.deepest_cut, gentlest);
        let to = self.config.bounds.clamp_f64(limit * factor);
        self.ceiling = Some(to);
        self.clean_windows_at_ceiling = 0;
        self.growth_step = 1;
        self.set_limit(to, Reason::RttGrowth, now)
    }

    /// One window at a quarter fewer requests to read the no-load RTT, then back to
    /// `return_to`.
    fn probe_rtt(&mut self, return_to: usize, reason: Reason, now: Instant) -> Option<Adjustment> {
        self.rtt_probe_return_to = Some(return_to);
        let to = (self.limit * 3).div_ceil(4);
        self.set_limit(to, reason, now)
    }

    fn grow(&mut self, now: Instant) -> Option<Adjustment> {
        let limit = self.limit;
        match self.ceiling {
            Some(ceiling) if limit < ceiling => {
                let to = (limit + ((ceiling - limit) / 2).max(1)).min(ceiling);
                self.set_limit(to, Reason::Recovering, now)
            }
            Some(_) => {
                self.clean_windows_at_ceiling += 1;
                if self.clean_windows_at_ceiling < self.config.hold_windows {
                    self.restart_window(now);
                    return None;
                }
                self.ceiling = None;
                self.growth_step = 1;
                self.set_limit(limit + 1, Reason::Probing, now)
            }
            None => {
                let to = limit + self.growth_step;
                self.growth_step = (self.growth_step * 2).min((to / 8).max(1));
                self.set_limit(to, Reason::Probing, now)
            }
        }
    }

    fn window_is_complete(&self, now: Instant) -> bool {
        let window = &self.window;
        let Some(started) = window.started else {
            return false;
        };
        if window.successes < self.config.min_samples {
            return false;
        }
        let rtt = self
            .smoothed_rtt
            .unwrap_or(window.rtt_sum / window.successes as f64);
        let span = Duration::from_secs_f64(2.0 * rtt).max(self.config.min_window);
        now.saturating_duration_since(started) >= span
    }

    fn close_window(&mut self, now: Instant) -> Option<Adjustment> {
        self.count_clean_window();
        let window = self.window;
        let started = window.started.unwrap_or(now);
        let samples = window.successes as f64;
        let rtt = window.rtt_sum / samples;
        // Standard error of the mean RTT: how far noise alone can move it.
        let variance = (window.rtt_square_sum / samples - rtt * rtt).max(0.0);
        let noise = 2.0 * (variance / samples).sqrt();
        let span = now.saturating_duration_since(started).as_secs_f64();
        if span > 0.0 {
            if self.recent_success_rates.len() == self.config.rate_history {
                self.recent_success_rates.pop_front();
            }
            self.recent_success_rates
                .push_back(window.completed as f64 / span);
        }
        let previous_baseline = self.baseline_rtt;
        // The minimum of noisy window means sits below the true no-load RTT by a few
        // standard errors, and would make ordinary noise look like queueing; the minimum of
        // their upper bounds does not.
        let candidate = rtt + noise;
        let baseline = previous_baseline.map_or(candidate, |b| b.min(candidate));
        self.baseline_rtt = Some(baseline);
        self.smoothed_rtt = Some(self.smoothed_rtt.map_or(rtt, |s| 0.75 * s + 0.25 * rtt));

        if let Some(return_to) = self.rtt_probe_return_to.take() {
            // A probe window at fewer requests: its RTT is the no-load RTT, replacing a
            // minimum that noise only ever drags down.
            self.baseline_rtt = Some(candidate);
            self.baseline_measured_at = Some(now);
            return self.set_limit(return_to, Reason::Recovering, now);
        }
        let measured_at = *self.baseline_measured_at.get_or_insert(now);
        let tolerance = 1.0 + self.config.latency_tolerance;
        let got_faster = previous_baseline.is_some_and(|b| rtt * tolerance + noise < b);
        let steady = self.latency_cuts_from.is_none() && self.last_clean_limit.is_some();
        if steady
            && (got_faster
                || now.saturating_duration_since(measured_at) >= self.config.baseline_refresh)
        {
            // The backend got faster (this RTT may still hide a queue), or the baseline is
            // due a refresh: measure it with fewer requests in flight.
            return self.probe_rtt(self.limit, Reason::MeasuringRtt, now);
        }

        let memory =
            (window.memory_samples > 0).then(|| window.memory_sum / window.memory_samples as f64);
        if let (Some(target), Some(memory)) = (self.config.memory_target, memory) {
            if memory > target {
                return self.cut_for_overload(Reason::MemoryPressure, now);
            }
        }

        if rtt > baseline * tolerance + noise {
            let here = LatencyCut {
                rtt_before: rtt,
                limit_before: self.limit,
            };
            let Some(run) = self.latency_cuts_from else {
                self.latency_cuts_from = Some(here);
                return self.cut_for_rtt_growth(true, now);
            };
            // Queueing: RTT shrinks in proportion to the limit. A slower backend: it stays
            // put. Judge only once the run has cut enough to tell, at the midpoint between
            // the two expectations.
            let shrink = self.limit as f64 / run.limit_before as f64;
            if shrink <= INFORMATIVE_SHRINK {
                if rtt + noise > run.rtt_before * (1.0 + shrink) / 2.0 {
                    self.baseline_rtt = Some(candidate);
                    self.recent_success_rates.clear();
                    self.last_clean_limit = None;
                    self.latency_cuts_from = None;
                    self.ceiling = None;
                    self.growth_step = 1;
                    // This RTT may include some queueing: confirm the new baseline below the
                    // knee, then return to where the run of cuts started.
                    return self.probe_rtt(run.limit_before, Reason::Rebased, now);
                }
                // Queueing confirmed: judge the next cuts against this point.
                self.latency_cuts_from = Some(here);
            }
            return self.cut_for_rtt_growth(false, now);
        }

        self.latency_cuts_from = None;
        // Only full slots show the limit binds. A non-empty queue does not: its tasks may be
        // on their way to free slots (a runner woken for them), and with the limit above the
        // offered load growing it would only raise a limit nothing uses (the soak saw 256
        // calls outstanding drive the limit to its maximum of 1,000 that way).
        let limit_in_use = window.max_in_flight >= self.limit;
        if limit_in_use {
            self.last_clean_limit = Some(self.limit);
            self.grow(now)
        } else {
            self.restart_window(now);
            None
        }
    }
}

impl Tuner for KneeTuner {
    fn limit(&self) -> usize {
        self.limit
    }

    fn observe(&mut self, sample: &Sample, now: Instant) -> Option<Adjustment> {
        let started = *self.window.started.get_or_insert(sample.started_at());
        if sample.outcome == AttemptOutcome::Succeeded && sample.finished_at >= started {
            self.window.completed += 1;
        }
        if sample.started_at() < started {
            // It ran under an older limit; that limit has already been judged.
            return None;
        }
        match sample.outcome {
            AttemptOutcome::Throttled => return self.on_overload(Reason::Throttled, now),
            AttemptOutcome::TimedOut => return self.on_overload(Reason::TimedOut, now),
            // A failure says nothing about load, and its latency is not a service time.
            AttemptOutcome::Failed => return None,
            AttemptOutcome::Succeeded => {}
        }
        let window = &mut self.window;
        window.successes += 1;
        let latency = sample.latency.as_secs_f64();
        window.rtt_sum += latency;
        window.rtt_square_sum += latency * latency;
        window.max_in_flight = window.max_in_flight.max(sample.in_flight);
        if let Some(memory) = sample.memory_fraction.filter(|m| m.is_finite()) {
            window.memory_sum += memory;
            window.memory_samples += 1;
        }
        if self.window_is_complete(now) {
            self.close_window(now)
        } else {
            None
        }
    }

    fn name(&self) -> &'static str {
        "knee"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Drives a tuner with a closed loop against `rtt_for(limit)`: `limit` attempts per RTT,
    /// each started after the previous window, for `windows` windows.
    struct Loop {
        tuner: KneeTuner,
        now: Instant,
    }

    impl Loop {
        fn new(config: KneeConfig, initial: usize) -> Self {
            Self {
                tuner: KneeTuner::new(config, initial),
                now: Instant::now(),
            }
        }

        /// One RTT's worth of successes at the current limit; returns the adjustments.
        fn round(&mut self, rtt: Duration) -> Vec<Adjustment> {
            let limit = self.tuner.limit();
            let mut adjustments = Vec::new();
            for i in 0..limit {
                // Spread completions over the RTT so windows see a steady stream.
                let at = self.now + rtt + rtt * i as u32 / limit as u32;
                let sample = Sample::new(at, rtt, AttemptOutcome::Succeeded)
                    .in_flight(limit)
                    .queued(10);
                adjustments.extend(self.tuner.observe(&sample, at));
            }
            self.now += rtt;
            adjustments
        }

        fn run(&mut self, rounds: usize, rtt_for: impl Fn(usize) -> Duration) -> Vec<Adjustment> {
            (0..rounds)
                .flat_map(|_| {
                    let rtt = rtt_for(self.tuner.limit());
                    self.round(rtt)
                })
                .collect()
        }
    }

    /// One RTT at the current limit where every `every`-th attempt overall is throttled,
    /// whatever the limit (`counter` carries the count across rounds).
    fn round_with_background(sim: &mut Loop, every: usize, counter: &mut usize) {
        let limit = sim.tuner.limit();
        let rtt = knee_at(64, MS * 20)(limit);
        for i in 0..limit {
            let at = sim.now + rtt + rtt * i as u32 / limit as u32;
            *counter += 1;
            let outcome = if counter.is_multiple_of(every) {
                AttemptOutcome::Throttled
            } else {
                AttemptOutcome::Succeeded
            };
            let sample = Sample::new(at, rtt, outcome).in_flight(limit).queued(10);
            sim.tuner.observe(&sample, at);
        }
        sim.now += rtt;
    }

    #[test]
    fn throttling_that_cutting_does_not_reduce_is_learned_as_background() {
        let mut learning = Loop::new(KneeConfig::default(), 64);
        let off = KneeConfig::builder()
            .max_background_overload(0.0)
            .build()
            .unwrap();
        let mut cutting = Loop::new(off, 64);
        let (mut a, mut b) = (0, 0);
        for _ in 0..3_000 {
            round_with_background(&mut learning, 100, &mut a);
            round_with_background(&mut cutting, 100, &mut b);
        }
        let background = learning.tuner.background_overload();
        assert!(
            (0.005..=0.02).contains(&background),
            "background {background}"
        );
        assert!(
            learning.tuner.limit() >= 48,
            "limit {}",
            learning.tuner.limit()
        );
        // Without the learning every throttle cuts: the limit collapses.
        assert_eq!(cutting.tuner.background_overload(), 0.0);
        assert!(
            cutting.tuner.limit() <= 8,
            "limit {}",
            cutting.tuner.limit()
        );
    }

    #[test]
    fn a_known_background_still_cuts_for_throttling_well_above_it() {
        let mut sim = Loop::new(KneeConfig::default(), 64);
        let mut counter = 0;
        for _ in 0..3_000 {
            round_with_background(&mut sim, 100, &mut counter);
        }
        assert!(sim.tuner.background_overload() > 0.0);
        let before = sim.tuner.limit();
        // Now a third of every window is refused.
        round_with_background(&mut sim, 3, &mut counter);
        assert!(sim.tuner.limit() < before, "limit stayed at {before}");
    }

    /// Latency that does not depend on load but varies a lot (uniform 1–8 ms, like the
    /// soak's chaos store): the minimum of noisy window means must not become a baseline
    /// that ordinary noise exceeds, or the tuner cuts for queueing that is not there.
    #[test]
    fn heavy_latency_noise_alone_does_not_drag_the_limit_down() {
        // Few requests in flight: windows of about `min_samples`, where noise is largest.
        let config = KneeConfig::builder().max(16).build().unwrap();
        let mut tuner = KneeTuner::new(config, 16);
        let mut now = Instant::now();
        // A small deterministic generator (no RNG dependency outside the `sim` feature).
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cuts = 0;
        let mut limit_sum = 0;
        for _ in 0..2_000 {
            let limit = tuner.limit();
            limit_sum += limit;
            for _ in 0..limit {
                let micros = 1_000 + next() % 7_000;
                let latency = Duration::from_micros(micros);
                now += Duration::from_micros(4_500 / limit as u64);
                let sample = Sample::new(now, latency, AttemptOutcome::Succeeded)
                    .in_flight(limit)
                    .queued(10);
                if let Some(adjustment) = tuner.observe(&sample, now) {
                    cuts += usize::from(adjustment.reason == Reason::RttGrowth);
                }
            }
        }
        // Before the baseline became the lowest upper bound and a rebase needed a significant
        // shrink: 121 cuts, 12.2 on average; with only the first change the limit fell to 1.
        let average = limit_sum as f64 / 2_000.0;
        assert!(cuts <= 60, "{cuts} cuts for queueing that is not there");
        assert!(average >= 13.0, "average limit {average}");
        assert!(tuner.limit() >= 12, "limit {}", tuner.limit());
    }

    /// A queue past `knee`: latency grows in proportion to the excess.
    fn knee_at(knee: usize, base: Duration) -> impl Fn(usize) -> Duration {
        move |limit| base * (limit.max(knee) as u32) / knee as u32
    }

    #[test]
    fn grows_while_the_rtt_stays_flat() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(60, |_| MS * 20);
        assert!(sim.tuner.limit() > 100, "limit {}", sim.tuner.limit());
    }

    #[test]
    fn settles_near_the_knee_when_rtt_grows_past_it() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(400, knee_at(64, MS * 20));
        let limit = sim.tuner.limit();
        assert!((60..=80).contains(&limit), "limit {limit}");
        let cuts = sim.run(200, knee_at(64, MS * 20));
        assert!(cuts.iter().any(|a| a.reason == Reason::RttGrowth));
        let rtt_cuts = cuts.iter().filter(|a| a.reason == Reason::RttGrowth);
        assert!(rtt_cuts.clone().all(|a| a.to >= 56), "{cuts:?}");
    }

    #[test]
    fn baseline_is_measured_again_below_the_limit_every_refresh() {
        let config = KneeConfig::builder()
            .baseline_refresh(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut sim = Loop::new(config, 10);
        // 10 s of a backend with its knee at 64.
        let adjustments = sim.run(500, knee_at(64, MS * 20));
        let probes: Vec<_> = adjustments
            .iter()
            .filter(|a| a.reason == Reason::MeasuringRtt)
            .collect();
        assert!((3..=5).contains(&probes.len()), "{probes:?}");
        // Each probe runs at three quarters of the limit and is followed by a return.
        assert!(probes.iter().all(|p| p.to == (p.from * 3).div_ceil(4)));
    }

    #[test]
    fn throttling_cuts_at_once_and_caps_the_climb_back() {
        let mut sim = Loop::new(KneeConfig::default(), 50);
        let now = sim.now;
        let throttled = Sample::new(now, MS * 5, AttemptOutcome::Throttled).in_flight(50);
        let cut = sim.tuner.observe(&throttled, now).unwrap();
        assert_eq!((cut.from, cut.to, cut.reason), (50, 45, Reason::Throttled));
        // A second 503 from an attempt started before the cut is not counted twice.
        let late = Sample::new(now + MS, MS * 5, AttemptOutcome::Throttled);
        assert_eq!(sim.tuner.observe(&late, now + MS), None);
        // Clean windows climb back to the ceiling and hold there.
        sim.run(10, |_| MS * 20);
        assert_eq!(sim.tuner.limit(), 45);
    }

    #[test]
    fn throttling_during_an_rtt_probe_is_not_undone_when_the_probe_ends() {
        let config = KneeConfig::builder()
            .baseline_refresh(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut sim = Loop::new(config, 40);
        // Flat RTT until the first refresh probe starts.
        let probe = (0..200)
            .flat_map(|_| sim.round(MS * 20))
            .find(|a| a.reason == Reason::MeasuringRtt)
            .expect("a refresh probe within 4 s");
        let now = sim.now + MS;
        let throttled = Sample::new(now, MS, AttemptOutcome::Throttled).in_flight(probe.to);
        let cut = sim.tuner.observe(&throttled, now).unwrap();
        assert_eq!(cut.reason, Reason::Throttled);
        let after = sim.run(4, |_| MS * 20);
        assert!(
            after
                .iter()
                .all(|a| a.to <= cut.to + (probe.from - cut.to) / 2 + 1),
            "jumped back: {after:?}"
        );
    }

    #[test]
    fn timeouts_cut_like_throttling() {
        let mut tuner = KneeTuner::new(KneeConfig::default(), 20);
        let now = Instant::now();
        let timed_out = Sample::new(now, MS * 2_000, AttemptOutcome::TimedOut);
        let cut = tuner.observe(&timed_out, now).unwrap();
        assert_eq!((cut.to, cut.reason), (18, Reason::TimedOut));
    }

    #[test]
    fn plain_failures_do_not_move_the_limit() {
        let mut tuner = KneeTuner::new(KneeConfig::default(), 20);
        let now = Instant::now();
        for i in 0..100 {
            let at = now + MS * i;
            let failed = Sample::new(at, MS, AttemptOutcome::Failed).in_flight(20);
            assert_eq!(tuner.observe(&failed, at), None);
        }
    }

    #[test]
    fn does_not_grow_when_the_limit_is_not_in_use() {
        let mut tuner = KneeTuner::new(KneeConfig::default(), 20);
        let start = Instant::now();
        for i in 0..1_000u32 {
            let at = start + MS * i;
            let idle = Sample::new(at, MS * 20, AttemptOutcome::Succeeded).in_flight(3);
            assert_eq!(tuner.observe(&idle, at), None);
        }
        assert_eq!(tuner.limit(), 20);
    }

    #[test]
    fn a_queue_beside_free_slots_is_not_a_reason_to_grow() {
        // Tasks queued while slots are free are on their way to a runner: the limit does not
        // bind. (Growing on them took the soak's limit to its maximum with 256 calls.)
        let mut tuner = KneeTuner::new(KneeConfig::default(), 300);
        let start = Instant::now();
        for i in 0..1_000u32 {
            let at = start + MS * i;
            let sample = Sample::new(at, MS * 20, AttemptOutcome::Succeeded)
                .in_flight(256)
                .queued(4);
            assert_eq!(tuner.observe(&sample, at), None);
        }
        assert_eq!(tuner.limit(), 300);
    }

    #[test]
    fn a_slower_backend_moves_the_baseline_instead_of_starving() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(300, knee_at(64, MS * 20));
        let before = sim.tuner.limit();
        // The backend slows 2x at every load: cutting does not help.
        let adjustments = sim.run(300, knee_at(64, MS * 40));
        assert!(adjustments.iter().any(|a| a.reason == Reason::Rebased));
        let after = sim.tuner.limit();
        assert!(after + 8 >= before, "before {before}, after {after}");
        assert_eq!(sim.tuner.baseline_rtt().map(|b| b >= MS * 39), Some(true));
    }

    #[test]
    fn memory_above_the_guard_cuts() {
        let config = KneeConfig::builder()
            .memory_target(Some(0.8))
            .build()
            .unwrap();
        let mut tuner = KneeTuner::new(config, 40);
        let start = Instant::now();
        let cut = (0..200u32).find_map(|i| {
            let at = start + MS * i;
            let sample = Sample::new(at, MS * 10, AttemptOutcome::Succeeded)
                .in_flight(40)
                .memory_fraction(0.85);
            tuner.observe(&sample, at)
        });
        let cut = cut.expect("memory pressure cuts");
        assert_eq!((cut.to, cut.reason), (36, Reason::MemoryPressure));
    }

    #[test]
    fn never_leaves_its_bounds() {
        let config = KneeConfig::builder().min(8).max(16).build().unwrap();
        let mut sim = Loop::new(config, 1);
        assert_eq!(sim.tuner.limit(), 8);
        sim.run(200, |_| MS * 20);
        assert_eq!(sim.tuner.limit(), 16);
        let now = sim.now;
        for i in 0..50 {
            let at = now + MS * (i * 100);
            let throttled = Sample::new(at, MS, AttemptOutcome::Throttled);
            sim.tuner.observe(&throttled, at);
        }
        assert_eq!(sim.tuner.limit(), 8);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert_eq!(
            KneeConfig::builder().min(10).max(5).build(),
            Err(ConfigError::MinAboveMax { min: 10, max: 5 })
        );
        assert_eq!(
            KneeConfig::builder().min(0).build(),
            Err(ConfigError::ZeroMin)
        );
        for tolerance in [f64::NAN, -0.1, 0.0, f64::INFINITY] {
            assert!(matches!(
                KneeConfig::builder().latency_tolerance(tolerance).build(),
                Err(ConfigError::InvalidNumber {
                    field: "latency_tolerance",
                    ..
                })
            ));
        }
        assert!(matches!(
            KneeConfig::builder().gentlest_cut(1.0).build(),
            Err(ConfigError::InvalidNumber {
                field: "gentlest_cut",
                ..
            })
        ));
        assert!(matches!(
            KneeConfig::builder()
                .gentlest_cut(0.4)
                .deepest_cut(0.5)
                .build(),
            Err(ConfigError::InvalidNumber {
                field: "gentlest_cut",
                ..
            })
        ));
        assert!(matches!(
            KneeConfig::builder().memory_target(Some(1.5)).build(),
            Err(ConfigError::InvalidNumber {
                field: "memory_target",
                ..
            })
        ));
        assert_eq!(
            KneeConfig::builder().min_window(Duration::ZERO).build(),
            Err(ConfigError::ZeroDuration {
                field: "min_window"
            })
        );
    }
}
