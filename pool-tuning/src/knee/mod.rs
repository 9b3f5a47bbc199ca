//! The knee-finding tuner: the most requests in flight before they queue or are refused.

mod config;
mod epochs;
mod stats;
mod window;

use std::time::{Duration, Instant};

pub use config::{KneeConfig, KneeConfigBuilder};
use epochs::{Background, Epoch, Epochs};
use window::{DecayingMax, Recent, Rtt, Window};

use crate::sample::{AttemptOutcome, Sample};
use crate::tuner::{Adjustment, Reason, Tuner};

/// Until the first cut, the limit grows this many times per window (a window is at least
/// three round trips). Doubling, not more: a step past the knee overshoots it by at most
/// twice, so the window spent there queues requests at most twice as long (×4 overshot a
/// knee of 600 to 1,000 for a second, enough to set the p99 of a minute).
const STARTUP_GROWTH: usize = 2;
/// … except in a start's round judged after one round trip (see `fast_round`) at a limit
/// below `min_samples`, where it grows ×4: at a long round trip a round at 6 or 12 costs
/// 0.4 s at 200 ms with the backend nearly idle, and quadrupling a dozen overshoots a knee
/// by at most a few dozen requests, for one round.
const SMALL_ROUND_GROWTH: usize = 4;
/// A round trip this many times the baseline is queueing deep enough to cut by the ratio.
const DEEP_QUEUEING: f64 = 1.5;
/// Probes of the no-load RTT run at this fraction of the limit (1/4), halving from there.
const PROBE_FRACTION: usize = 4;
/// A first probe step at this depth or below is taken as unloaded.
const PROBE_FLOOR: usize = 4;
/// A window stops collecting once it holds this many times `min_samples`, whatever the noise.
const MOST_SAMPLES_FACTOR: usize = 8;
/// … or once it lasted this many round trips.
const LONGEST_WINDOW_RTTS: f64 = 10.0;
/// The slowest recent outcome halves every this long unless renewed.
const SLOWEST_HALF_LIFE: Duration = Duration::from_secs(10);
/// No stall is declared before this long without an outcome.
const SHORTEST_STALL: Duration = Duration::from_secs(1);
/// A stall is this many times the slowest recent outcome without any outcome.
const STALL_FACTOR: f64 = 4.0;
/// Attempts in flight beyond this many times what the answers explain (Little's law) are
/// unanswered: held back by the backend.
const UNANSWERED_FACTOR: f64 = 1.5;
/// How long outcomes are kept: the longest span anything is read over.
const RECENT_SLOWEST_FACTOR: f64 = 2.0;
/// How late back-pressure arrives is a property of the backend: forgotten slowly.
const FEEDBACK_HALF_LIFE: Duration = Duration::from_secs(60);
/// A long epoch is judged for overload this many attempts at a time.
const JUDGED_STRETCH: u32 = 2_000;
/// The hold below a level overloaded again and again grows to at most this many times
/// `hold_windows`.
const MOST_HOLD_FACTOR: u32 = 32;
/// … and lasts at most this long.
const LONGEST_HOLD: Duration = Duration::from_secs(6);

/// Finds and tracks the backend's knee: the most requests in flight before they start to
/// queue (the round trip grows) or to be refused (throttled, timed out) — and holds there
/// through the noise real object stores make.
///
/// What it learns from, and how:
///
/// - **The no-load round trip, at low depth only.** It is measured by *probes*: one window at
///   a quarter of the limit, then at half that, and so on while the round trip keeps falling
///   (by more than the confidence interval of a median). A probe runs at the start (so a
///   first window already past the knee is never taken for the baseline), when cutting the
///   limit did not shorten the round trip (the backend itself may have slowed: the cuts are
///   undone only if the baseline moved, all of them since the limit last grew; the first
///   step goes deeper only if its round trip is clearly shorter than the one at the limit,
///   else nothing queues even there), when the round trip falls clearly below the baseline
///   (the backend got faster), and when no window has been consistent with the baseline for
///   `baseline_refresh` — BBR's ProbeRTT, on evidence rather than a clock.
/// - **Queueing, from the median.** Each window compares the median round trip of the
///   attempts started in it with the baseline, both with confidence intervals from order
///   statistics (no assumption about the distribution: heavy tails and bimodal latency
///   included); a window keeps collecting until its median is known to within the
///   tolerance, or it grew too long — or, when even its first successes queue deeply,
///   at once. When even the window's lower bound exceeds the
///   baseline's upper bound by `latency_tolerance`, requests queue. Deep queueing (a round
///   trip 1.5 times the baseline) is cut by the ratio of the two, which in a queue lands on
///   the knee in one step, and may cut twice as deep as `deepest_cut` (a knee that fell to
///   a quarter is followed at once); marginal queueing by `gentlest_cut`.
/// - **Throttles and timeouts, for the limit they came from.** An outcome counts for the
///   limit its attempt *started* under, however late it arrives (a 503 after a second, a
///   timeout after two), at once, against that limit's ended attempts *and* those still
///   running (fast refusals come back before slow successes). A limit is overloaded when it
///   holds more throttles and timeouts than the reference explains, by a test whose
///   threshold grows with the number of attempts (a false alarm once in ten thousand
///   looks) and allows for the reference's own sampling error (the conditional test of two
///   Poisson counts: a reference of a few hundred attempts does not pass a 2 % background
///   for a 0.5 % one). The reference is the share at the lowest levels with enough attempts, aged by
///   time and leaving out levels found overloaded: background overload (S3's trickle of
///   503s) comes at every level alike, load-driven overload does not. A long-held limit is
///   judged 2,000 attempts at a time, each stretch against the ones before. Each overloaded
///   limit is cut for once (one decrease per window of back-pressure, as Vector does), to
///   just below the concurrency successes are served at now — each recent success counts
///   how many others ended during its own round trip (Little's law per attempt, BBR's
///   delivery rate), so the figure ages within a round trip and a capacity drop is followed
///   at once. For the round trip after a fall the successes still ending were let in
///   before it, so fast refusals speak first: the attempts in flight less the slots the
///   refusals hold (their rate times their latency) are what is served. With nothing
///   served at all yet (a start far above a rate cap), the deepest blind cut. Blind gentle
///   steps whose level is refused at once again (a cap that fell far: a cascade) deepen
///   from the third on — ×0.9, ×0.9, ×0.81, ×0.73, ×0.66 — since each step costs a burst of
///   refusals; a deepened step is a guess, so the limit climbs straight back to where a
///   gentle step from the last level refused would have landed, without a hold. When the
///   refusals come late (slower than two round trips), the attempts in
///   flight beyond that concurrency are refusals on their way, each holding a slot: the cut
///   *drains* — it leaves them their slots and takes one back per refusal that arrives (at
///   the latest after twice the refusals' delay), so the attempts that succeed keep the
///   level the cut aimed at instead of dipping below it until the refusals are in.
/// - **Unanswered attempts.** When the attempts in flight exceed, by half, what the answers
///   explain (Little's law: the rate answers come at, sampled over settled attempts' own
///   round trips, times how long answers take), answers are being held back: throttles
///   that will arrive late, requests past a full connection backlog, or a slow tail not seen
///   yet. The limit does not grow until they arrive.
/// - **Time.** With no outcome at all for four times the slowest recent one (at least a
///   second) while attempts were in flight, [`tick`](Tuner::tick) halves the limit, and
///   again for as long as the stall lasts; when answers come again it climbs back towards
///   where the stall found it.
/// - **Memory** above `memory_target` cuts like an overload.
///
/// And how it grows, when a window is clean, the limit was in use and no overload lingers:
/// ×2 per window until the first cut (a slow start from a quarter of the initial limit, see
/// [`new`](Self::new); at long round trips its first probe is read on two rounds' worth
/// of successes and each window closes after one round trip, judged on the successes let
/// in once the doubled limit was full, a limit's worth when that is fewer than
/// `min_samples`), then halfway back to the level the last cut measured as safe, a
/// hold of `hold_windows` windows there (doubling, up to 32 times, while overloads keep
/// coming at about the same level: a token bucket's burst can hide an overload for
/// seconds; never longer than 6 s, so added capacity is found within seconds), then probes of +1, +2, +4 … (at most +1/4 per window; one at a time near the
/// level that failed last; doubling while far below it). A window that would grow past the
/// last safe level lasts at least as long as the slowest recent throttle or timeout took to
/// arrive, so late back-pressure is heard before the next step.
///
/// ```
/// use std::time::{Duration, Instant};
/// use pool_tuning::{AttemptOutcome, KneeConfig, KneeTuner, Sample, Tuner};
/// let mut tuner = KneeTuner::new(KneeConfig::default(), 40);
/// let start = Instant::now();
/// // A backend with its knee at 64 (20 ms, then queueing): the tuner settles near it.
/// let mut now = start;
/// for _ in 0..4_000 {
///     let limit = tuner.limit();
///     let rtt = Duration::from_millis(20) * (limit.max(64) as u32) / 64;
///     now += rtt / limit as u32;
///     let sample = Sample::new(now, rtt, AttemptOutcome::Succeeded).in_flight(limit);
///     tuner.observe(&sample, now);
/// }
/// assert!((56..=80).contains(&tuner.limit()), "{}", tuner.limit());
/// ```
#[derive(Debug, Clone)]
pub struct KneeTuner {
    config: KneeConfig,
    limit: usize,
    epochs: Epochs,
    background: Background,
    window: Window,
    recent: Recent,
    /// The no-load round trip (median and its interval) and when it was measured.
    baseline: Option<(Rtt, Instant)>,
    /// Smoothed window median: the round trip windows are sized by.
    smoothed_rtt: Option<f64>,
    slowest: DecayingMax,
    /// How late throttles and timeouts have been arriving.
    feedback_delay: DecayingMax,
    /// The last cut for an overloaded limit: when, and that limit.
    last_overload_cut: Option<(Instant, usize)>,
    /// How many blind refusal cuts in a row (no measure of what is served) each landed on
    /// a level refused at once: a cascade down to a cap that fell. Steps deepen with it.
    cascade: i32,
    /// The last level believed safe; climbs stop here until a hold has passed.
    ceiling: Option<usize>,
    clean_windows_at_ceiling: u32,
    /// The level the start aims at (`initial`); the limit begins at its probe depth.
    start_aim: usize,
    /// When the first clean window at the ceiling closed.
    at_ceiling_since: Option<Instant>,
    growth_step: usize,
    /// Doubling until the first cut.
    starting: bool,
    /// The window closed after one round of a start's doubling (see `fast_round`).
    judged_on_round: bool,
    /// A cut for back-pressure taking effect as the attempts it held back come back.
    drain: Option<Drain>,
    /// The last limit found overloaded, and how many times longer than `hold_windows` to
    /// hold below it (doubling while overloads keep coming at about the same level).
    last_failing: Option<usize>,
    hold_factor: u32,
    latency_cuts: Option<LatencyCut>,
    /// The limit before the first RTT-growth cut since the limit last grew: where a
    /// backend found to have slowed is returned to.
    rtt_cuts_from: Option<usize>,
    probe: Option<Probe>,
    last_clean_limit: Option<usize>,
    last_sample_at: Option<Instant>,
    last_in_flight: usize,
    last_stall_cut: Option<Instant>,
    /// The limit when a stall still in progress was noticed.
    stalled_at: Option<usize>,
    /// The current epoch's counts when the window started: (epoch start, attempts,
    /// overloads).
    window_counts_from: Option<(Instant, u32, u32)>,
}

/// A run of RTT-growth cuts: the RTT and limit before it.
#[derive(Debug, Clone, Copy)]
struct LatencyCut {
    rtt_before: f64,
    limit_before: usize,
}

/// A cut for throttles or timeouts that leaves room, for a while, for the attempts the
/// backend is still holding back: they hold a slot each until their refusal arrives, and
/// cutting below them at once would leave fewer slots for the attempts that succeed than
/// the cut aimed at (a dip in throughput as deep as the overshoot).
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// The limit the cut aims at.
    to: usize,
    /// Each overload of an attempt started before then takes a slot back…
    cut_at: Instant,
    /// … and from then on the limit is `to` whatever is still out.
    until: Instant,
    reason: Reason,
}

/// The attempts in flight when a refusal arrived, and how late it came.
#[derive(Debug, Clone, Copy)]
enum InFlight {
    /// Later than `LATE_FEEDBACK_RTTS` round trips: more refusals are on their way.
    Late(usize),
    /// Sooner, with the refusal's latency in seconds.
    Fast(usize, f64),
}

/// A window that would grow the limit lasts at least this many round trips.
const FULL_WINDOW_RTTS: f64 = 3.0;
/// Attempts started this share of a round trip (1/8) after a rise saw the limit full…
const FULL_AFTER_RTT_PARTS: f64 = 8.0;
/// … or this long after it, if sooner: a rise lets its burst in at once. (A closed loop's
/// answers may come as one wave, the old limit's replacements at the moment of the rise:
/// an eighth of a long round trip would leave out the whole wave, and a round would last
/// two.)
const BURST_SPAN: Duration = Duration::from_millis(5);

/// A cascade of blind refusal cuts deepens its gentle step at most this many times
/// (×0.9⁴ ≈ ×0.66).
const MOST_CASCADE: i32 = 4;

/// The slots fast refusals hold are read over this many times a refusal's latency.
const REFUSAL_SPAN_LATENCIES: f64 = 2.0;

/// Throttles or timeouts slower than this many round trips are late: the backend held
/// them back.
const LATE_FEEDBACK_RTTS: f64 = 2.0;
/// A drain lasts at most this many times how late back-pressure has been arriving.
const LONGEST_DRAIN_DELAYS: f64 = 2.0;

/// A measurement of the no-load RTT in progress.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The limit to return to.
    return_to: usize,
    /// For a probe that checks whether the backend slowed: the limit to stay at if it did
    /// not (the baseline did not move: the round trip was queueing after all).
    unless_unchanged: Option<usize>,
    /// The depth it runs at now.
    depth: usize,
    /// The previous step's round trip, if this is not the first.
    previous: Option<Rtt>,
}

impl KneeTuner {
    /// A tuner whose start aims at `initial` (clamped to the bounds) but begins at a quarter
    /// of it, which [`limit`](Tuner::limit) returns until the first sample: the first
    /// window measures the no-load round trip at that depth (the first step of a probe, see
    /// the type's docs), so a start far above the backend's capacity sends a quarter of the
    /// burst it would have before any answer can say so. From there the start goes to twice
    /// that depth and doubles per clean window.
    pub fn new(config: KneeConfig, initial: usize) -> Self {
        let aim = config.bounds.clamp(initial);
        Self {
            limit: config.bounds.clamp(aim.div_ceil(PROBE_FRACTION)),
            start_aim: aim,
            background: Background::new(config.max_background_overload),
            config,
            epochs: Epochs::default(),
            window: Window::default(),
            recent: Recent::default(),
            baseline: None,
            smoothed_rtt: None,
            slowest: DecayingMax::default(),
            feedback_delay: DecayingMax::default(),
            last_overload_cut: None,
            cascade: 0,
            ceiling: None,
            clean_windows_at_ceiling: 0,
            at_ceiling_since: None,
            growth_step: 1,
            starting: true,
            judged_on_round: false,
            last_failing: None,
            drain: None,
            hold_factor: 1,
            latency_cuts: None,
            rtt_cuts_from: None,
            probe: None,
            last_clean_limit: None,
            last_sample_at: None,
            last_in_flight: 0,
            last_stall_cut: None,
            stalled_at: None,
            window_counts_from: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &KneeConfig {
        &self.config
    }

    /// The no-load round trip (a median) the tuner compares with, once measured.
    pub fn baseline_rtt(&self) -> Option<Duration> {
        self.baseline.map(|(rtt, _)| seconds(rtt.median))
    }

    /// The estimated share of attempts throttled or timed out whatever the load, as seen
    /// at limits below the current one, at `now`.
    pub fn background_overload(&self, now: Instant) -> f64 {
        self.background.share_up_to(self.limit, (0, 0), now)
    }

    fn rtt_estimate(&self) -> f64 {
        self.smoothed_rtt
            .or(self.baseline.map(|b| b.0.median))
            .unwrap_or(0.0)
    }

    /// How long epochs are kept: while an attempt of theirs may still end.
    fn keep(&self, now: Instant) -> Duration {
        seconds(2.0 * self.slowest.get(now, SLOWEST_HALF_LIFE)).max(Duration::from_secs(2))
    }

    /// The span the success rate is read over: `rate_window`, at least four round trips.
    fn rate_span(&self) -> Duration {
        self.config
            .rate_window
            .max(seconds(4.0 * self.rtt_estimate()))
    }

    /// How long outcomes are kept: a rate span, a whole window, twice the slowest.
    fn recent_span(&self, now: Instant) -> Duration {
        // A little more than any span read, so the oldest needed outcome is still kept.
        self.rate_span()
            .max(seconds(LONGEST_WINDOW_RTTS * self.rtt_estimate()))
            .max(seconds(
                RECENT_SLOWEST_FACTOR * self.slowest.get(now, SLOWEST_HALF_LIFE),
            ))
            .saturating_add(seconds(self.rtt_estimate()))
    }

    fn set_limit(&mut self, to: usize, reason: Reason, now: Instant) -> Option<Adjustment> {
        let to = self.config.bounds.clamp(to);
        let adjustment = Adjustment::between(self.limit, to, reason);
        self.limit = to;
        if adjustment.is_some() {
            let keep = self.keep(now);
            self.epochs.begin(now, to, keep);
        }
        self.restart_window(now);
        adjustment
    }

    fn restart_window(&mut self, now: Instant) {
        self.window.restart(now);
        self.judged_on_round = false;
        self.window_counts_from = self
            .epochs
            .current()
            .map(|e| (e.start, e.attempts, e.overloads));
    }

    /// The first call: the starting limit (the probe depth of the start's aim) has been in
    /// force since before anything was seen, and the first windows probe the no-load RTT.
    ///
    /// Where the first answer (`first_latency`) says a whole window of three round trips
    /// outlasts `rate_window` (over 83 ms at the default), the first wave is the probe's
    /// first round: its attempts started at the probe's depth like any later ones, and
    /// leaving them out made the probe wait a round more (at 200 ms, the start's first
    /// 0.6 s instead of 0.4 s, with nothing else to do). At shorter round trips the probe
    /// takes a few tens of milliseconds either way, and its window starts here, as it did.
    fn start(&mut self, first_latency: Duration, now: Instant) -> Option<Adjustment> {
        let long_ago = now.checked_sub(Duration::from_secs(3_600)).unwrap_or(now);
        self.epochs.begin(long_ago, self.limit, Duration::MAX);
        let adjustment = self.begin_probe(self.start_aim, now);
        let long = first_latency.mul_f64(FULL_WINDOW_RTTS) > self.config.rate_window;
        if adjustment.is_none() && long {
            self.restart_window(long_ago);
        }
        adjustment
    }

    fn probe_depth(&self, limit: usize) -> usize {
        self.config.bounds.clamp(limit.div_ceil(PROBE_FRACTION))
    }

    fn begin_probe(&mut self, return_to: usize, now: Instant) -> Option<Adjustment> {
        self.begin_probe_unless(return_to, None, None, now)
    }

    /// A probe that returns to `return_to` (or stays at `unless_unchanged` if the baseline
    /// did not move); `at_limit`: the round trip just read at the limit, which the first
    /// step is compared with like any step with the one before it.
    fn begin_probe_unless(
        &mut self,
        return_to: usize,
        unless_unchanged: Option<usize>,
        at_limit: Option<Rtt>,
        now: Instant,
    ) -> Option<Adjustment> {
        let depth = self.probe_depth(return_to);
        self.probe = Some(Probe {
            return_to,
            unless_unchanged,
            depth,
            previous: at_limit,
        });
        self.set_limit(depth, Reason::MeasuringRtt, now)
    }

    /// A probe window closed: go one step deeper while the round trip keeps falling, else
    /// take it as the baseline and return.
    fn continue_probe(&mut self, probe: Probe, rtt: Rtt, now: Instant) -> Option<Adjustment> {
        // The first step goes deeper unless it already ran at a depth of a few: at a quarter
        // of the limit it may still be past the knee (a start far above it).
        let fell = probe
            .previous
            .map_or(probe.depth > PROBE_FLOOR, |previous| {
                rtt.high < previous.low
            });
        let deeper = self.config.bounds.clamp(probe.depth / 2);
        if fell && deeper < probe.depth {
            self.probe = Some(Probe {
                depth: deeper,
                previous: Some(rtt),
                ..probe
            });
            return self.set_limit(deeper, Reason::MeasuringRtt, now);
        }
        let best = match probe.previous {
            Some(previous) if previous.median < rtt.median => previous,
            _ => rtt,
        };
        let previous = self.baseline.map(|b| b.0.median);
        self.baseline = Some((best, now));
        self.smoothed_rtt = Some(best.median);
        self.probe = None;
        let unchanged =
            previous.is_some_and(|old| best.median <= old * (1.0 + self.config.latency_tolerance));
        let back_to = match probe.unless_unchanged {
            Some(stay) if unchanged => stay,
            // The first probe: nothing above it is known yet, so the start goes on from
            // twice its depth, doubling (a start far above the knee is not gone back to).
            _ if previous.is_none() => probe.return_to.min(2 * probe.depth),
            _ => probe.return_to,
        };
        self.set_limit(back_to, Reason::Recovering, now)
    }

    /// Successes a window needs: `min_samples`, fewer for probes at a depth of a few.
    fn samples_needed(&self) -> usize {
        let needed = self.config.min_samples.max(1);
        match self.probe {
            Some(probe) => needed.min(4 * probe.depth).max(4),
            None => needed,
        }
    }

    /// Whether a start's window may close after one round trip, as BBR's startup grows
    /// once per round: judged on the successes let in once the doubled limit was full (the
    /// burst a doubling lets in at once queues behind fewer than the limit, so it would
    /// hide a knee between the old limit and the new), `min_samples` of them, or a limit's
    /// worth below that (a round of 6 attempts at 200 ms waited 16 successes, three rounds;
    /// the limit's worth is all one round can give). Only at the
    /// start (doubling, the no-load round trip known), with no back-pressure seen arriving
    /// late (one round is over before a late refusal could speak), and where a whole window
    /// of three round trips outlasts `rate_window` (over 83 ms at the default): at shorter
    /// round trips the start reaches any knee within a second anyway, and a whole window is
    /// the surer verdict.
    fn fast_round(&self, now: Instant) -> bool {
        self.starting
            && self.probe.is_none()
            && self.baseline.is_some()
            && seconds(FULL_WINDOW_RTTS * self.rtt_estimate()) > self.config.rate_window
            && self.feedback_delay.get(now, FEEDBACK_HALF_LIFE)
                <= LATE_FEEDBACK_RTTS * self.rtt_estimate()
    }

    /// Whether the next clean window would grow past the last level known safe.
    fn would_probe_upwards(&self) -> bool {
        let held_enough = self.clean_windows_at_ceiling + 1 >= self.config.hold_windows.clamp(1, 2);
        self.probe.is_none()
            && self
                .ceiling
                .is_none_or(|ceiling| self.limit >= ceiling && held_enough)
    }

    fn window_is_complete(&mut self, now: Instant) -> bool {
        if self.window.started.is_none() {
            return false;
        }
        let successes = self.window.successes();
        let needed = self.samples_needed();
        // A round at a limit below `min_samples` is judged on a limit's worth of full
        // successes: one round trip, not several.
        let round_needed = needed.min(self.limit).max(4);
        if self.fast_round(now)
            && successes >= round_needed
            && self.window.elapsed(now) >= seconds(self.rtt_estimate()).max(self.config.min_window)
            && self.window.full_successes() >= round_needed
        {
            self.judged_on_round = true;
            return true;
        }
        // The start's first probe at a long round trip: two rounds' worth of successes
        // measure it (three attempts at 200 ms took four rounds, 0.8 s, to give twelve).
        let start_probe = self.baseline.is_none() && self.probe.is_some();
        if start_probe && successes >= (2 * self.limit).max(4) && successes < needed {
            let long = self.window.rtt().is_some_and(|rtt| {
                seconds(FULL_WINDOW_RTTS * rtt.median) > self.config.rate_window
            });
            if long {
                return true;
            }
        }
        if successes < needed {
            return false;
        }
        let mut rtt = self.rtt_estimate();
        if rtt <= 0.0 {
            // Nothing measured yet: this window's own median sizes it.
            rtt = self.window.rtt().map_or(0.0, |r| r.median);
        }
        let elapsed = self.window.elapsed(now);
        let mut shortest = seconds(2.0 * rtt).max(self.config.min_window);
        if self.would_probe_upwards() {
            // Long enough for attempts started after the change to be answered (the rate
            // samples unanswered attempts are judged by), and for late back-pressure.
            shortest = shortest
                .max(seconds(FULL_WINDOW_RTTS * rtt))
                .max(seconds(self.feedback_delay.get(now, FEEDBACK_HALF_LIFE)));
        }
        if elapsed < shortest {
            // Deep queueing needs no long look: cut at once (an overshoot costs every
            // request's latency while it lasts).
            return self.queues_deeply_already(successes, needed);
        }
        // Keep collecting until the median is known to within the tolerance; look only at
        // doublings of the sample, so finding the median stays cheap.
        let long_enough = successes >= MOST_SAMPLES_FACTOR * needed
            || elapsed.as_secs_f64() >= LONGEST_WINDOW_RTTS * rtt;
        if long_enough {
            return true;
        }
        if !(successes / needed).is_power_of_two() || !successes.is_multiple_of(needed) {
            return false;
        }
        self.window
            .rtt()
            .is_some_and(|rtt| rtt.spread() <= self.config.latency_tolerance)
    }

    /// Whether a window not yet long enough already shows deep queueing beyond doubt: its
    /// median's lower bound 1.5 times the baseline's upper bound. Looked at only when the
    /// successes reach `needed` and its doublings, so finding the median stays cheap.
    fn queues_deeply_already(&mut self, successes: usize, needed: usize) -> bool {
        if self.probe.is_some() || !successes.is_multiple_of(needed) {
            return false;
        }
        if !(successes / needed).is_power_of_two() {
            return false;
        }
        let Some((baseline, _)) = self.baseline else {
            return false;
        };
        self.window
            .rtt()
            .is_some_and(|rtt| rtt.low > DEEP_QUEUEING * baseline.high)
    }

    /// Concurrency successes are served at now (see [`Recent::served_since`]), over the
    /// successes of the last two round trips.
    fn served(&self, now: Instant) -> Option<f64> {
        let span = seconds(2.0 * self.rtt_estimate()).max(self.config.min_window);
        self.recent.served_since(now.checked_sub(span)?, now)
    }

    /// `failing` was found overloaded (or queueing): remember it, and when it was
    /// overloaded (`refused`: throttles or timeouts, which cost requests, not only latency)
    /// about where the last one was, hold longer below it.
    fn note_failing(&mut self, failing: usize, refused: bool) {
        let again = refused
            && self
                .last_failing
                .is_some_and(|last| (last as f64 - failing as f64).abs() <= 0.15 * last as f64);
        self.hold_factor = if again {
            (self.hold_factor * 2).min(MOST_HOLD_FACTOR)
        } else {
            1
        };
        self.last_failing = Some(failing);
    }

    fn note_cut(&mut self, ceiling: usize) {
        self.ceiling = Some(ceiling);
        self.clean_windows_at_ceiling = 0;
        self.at_ceiling_since = None;
        self.growth_step = 1;
        self.starting = false;
        self.drain = None;
    }

    /// An overload came for `epoch`: cut if its limit is overloaded and not cut for yet.
    ///
    /// The overload counts at once, against the attempts of its limit that have ended *and*
    /// those still running (`in_flight`), most of which will succeed: fast failures come back
    /// before slow successes, and counting only what has ended would make the first outcomes
    /// of every limit look overloaded.
    fn on_overload(
        &mut self,
        epoch: Epoch,
        in_flight: usize,
        latency: f64,
        reason: Reason,
        now: Instant,
    ) -> Option<Adjustment> {
        if let Some((at, limit)) = self.last_overload_cut {
            // Started before the last cut, at or above the level it answered: answered.
            if epoch.start < at && epoch.limit >= limit {
                return self.drain_one(epoch.start, now);
            }
        }
        if epoch.overloaded || self.drain.is_some_and(|drain| epoch.start >= drain.cut_at) {
            // Already cut for; or started while a cut drains, with only the level it aims at
            // succeeding: that cut answered it.
            return None;
        }
        // How late back-pressure about the load comes (not what a stall explained).
        self.feedback_delay
            .observe(latency, now, FEEDBACK_HALF_LIFE);
        let under_test = (
            epoch.attempts.saturating_sub(epoch.judged.0),
            epoch.overloads.saturating_sub(epoch.judged.1),
        );
        let running = u32::try_from(in_flight.saturating_sub(1)).unwrap_or(u32::MAX);
        let reference = self
            .background
            .reference_up_to(epoch.limit, under_test, now);
        if !stats::excess_over_reference(
            under_test.1,
            under_test.0.saturating_add(running),
            (reference.attempts, reference.overloads),
            self.background.most(),
        ) {
            if under_test.0 >= JUDGED_STRETCH {
                // Judged clean: from now on part of the reference for what follows.
                if let Some(found) = self.epochs.starting_at(epoch.start) {
                    found.judged = (epoch.attempts, epoch.overloads);
                }
            }
            return None;
        }
        if let Some(found) = self.epochs.starting_at(epoch.start) {
            found.overloaded = true;
        }
        self.background.overloaded_at(epoch.limit, now);
        // The level the last cut aimed at was refused at once too: a cascade goes on (if
        // that cut was a blind step, see `cut_for_overload`).
        let consecutive = self
            .last_overload_cut
            .is_some_and(|(at, limit)| limit > 0 && epoch.start == at);
        if !consecutive {
            self.cascade = 0;
        }
        self.last_overload_cut = Some((now, epoch.limit));
        // Refusals much slower than successes were held back by the backend: more are on
        // their way.
        let late = latency > LATE_FEEDBACK_RTTS * self.rtt_estimate();
        let in_flight = if late {
            InFlight::Late(in_flight)
        } else {
            InFlight::Fast(in_flight, latency)
        };
        self.cut_for_overload(epoch.limit, in_flight, reason, now)
    }

    /// Cut below `failing`: to the concurrency successes are served at, by at least the
    /// gentlest cut, at most the deepest; never up; and do not climb back to `failing`.
    /// When refusals arrive late, the cut drains: see [`Drain`].
    fn cut_for_overload(
        &mut self,
        failing: usize,
        in_flight: InFlight,
        reason: Reason,
        now: Instant,
    ) -> Option<Adjustment> {
        let failing_f = failing as f64;
        // What is served now is the evidence of what the backend sustains (a rate cap, a
        // connection limit): aim just below it, off the cap's edge. Without it, or when
        // more is served than failed, the gentlest cut.
        // In a cascade of blind steps (the level the last one aimed at refused at once)
        // each step from the third on is a gentle step further: ×0.9, ×0.9, ×0.81, ×0.73 …
        // so a cap that fell to 40 % is reached in six steps, not ten (each costs a burst
        // of refusals). The first two stay gentle: a probe over a token bucket's edge
        // empties it, and the level below is refused once too.
        let gentle = failing_f * self.config.gentlest_cut.powi(self.cascade.max(1));
        let mut gentle_step = false;
        // Evidence allows cutting twice as deep as a blind cut.
        let deepest = self.config.deepest_cut;
        let served_now = self.served(now);
        let served = served_now.filter(|&served| served < failing_f);
        let target = match served {
            Some(served) => (0.97 * served)
                .min(failing_f - 1.0)
                .max(failing_f * deepest * deepest),
            // Refused, and nothing at all succeeded over the last two round trips (a start
            // far above a rate cap, before its first answer): no level is known to be
            // served, so the deepest blind cut, not the gentlest — each gentle step would be
            // refused again, one cut per step.
            None if served_now.is_none() => failing_f * deepest,
            None => match in_flight {
                // More served than failed: the successes of the last round trips were let
                // in before the backend began refusing (a rate cap that just fell), and
                // fast refusals say more sooner. By Little's law the slots refusals hold
                // are the rate they come at times how long they take; the rest are served.
                InFlight::Fast(in_flight, latency) => {
                    let span =
                        seconds(REFUSAL_SPAN_LATENCIES * latency).max(self.config.min_window);
                    let refusing = now
                        .checked_sub(span)
                        .and_then(|from| self.recent.refused_since(from, now))
                        .unwrap_or(0.0);
                    let served = in_flight as f64 - refusing;
                    gentle_step = served >= failing_f || 0.97 * served >= gentle;
                    if served < failing_f {
                        (0.97 * served)
                            .min(gentle)
                            .max(failing_f * deepest * deepest)
                    } else {
                        gentle.max(failing_f * deepest)
                    }
                }
                InFlight::Late(_) => {
                    gentle_step = true;
                    gentle.max(failing_f * deepest)
                }
            },
        };
        let to = self.config.bounds.clamp_f64(target).min(self.limit);
        // A step deeper than a gentle one is a guess: climb back at once to where a gentle
        // step would have landed (the cap lies between it and the level refused).
        let guessed = (gentle_step && self.cascade > 1)
            .then(|| {
                self.config
                    .bounds
                    .clamp_f64(failing_f * self.config.gentlest_cut)
            })
            .filter(|&gentle_level| gentle_level > to);
        // Only blind steps make a cascade deeper: a cut to what is measured served is not.
        self.cascade = if gentle_step {
            (self.cascade + 1).min(MOST_CASCADE)
        } else {
            0
        };
        // Attempts in flight beyond what the successes are served at are held back by the
        // backend (Little's law): their refusals are on their way. Leave them their slots
        // until they arrive, one slot back per refusal.
        let held_back = match (served, in_flight) {
            (Some(served), InFlight::Late(in_flight)) => {
                (in_flight as f64 - served).max(0.0) as usize
            }
            _ => 0,
        };
        let longest =
            seconds(LONGEST_DRAIN_DELAYS * self.feedback_delay.get(now, FEEDBACK_HALF_LIFE));
        let drain = (held_back > 0).then(|| Drain {
            to,
            cut_at: now,
            until: now.checked_add(longest).unwrap_or(now),
            reason,
        });
        self.note_failing(failing, true);
        // Climb back only to the level the cut measured as served: between it and the
        // failing limit nothing is known safe (late throttles of those levels may still be
        // on their way). Probes above it wait for the slowest back-pressure.
        self.note_cut(to);
        if guessed.is_some() {
            self.ceiling = guessed;
        }
        self.latency_cuts = None;
        self.rtt_cuts_from = None;
        // Overload beats a probe in progress: do not jump back when it would have ended.
        self.probe = None;
        self.drain = drain;
        let room = to.saturating_add(held_back).min(self.limit);
        self.set_limit(room, reason, now)
    }

    /// An overload of an attempt started at `started` arrived after the cut it was
    /// answered by: while that cut drains, its slot goes.
    fn drain_one(&mut self, started: Instant, now: Instant) -> Option<Adjustment> {
        let drain = self.drain?;
        if started >= drain.cut_at || self.limit <= drain.to {
            return None;
        }
        if self.limit - 1 <= drain.to {
            self.finish_drain(now);
        }
        self.set_limit(self.limit - 1, drain.reason, now)
    }

    /// Everything started during the drain was answered by its cut, and ends under it.
    fn finish_drain(&mut self, now: Instant) {
        self.drain = None;
        self.last_overload_cut = Some((now, 0));
    }

    /// A drain that outlasted the back-pressure it waited for ends: the limit goes to
    /// where the cut aimed.
    fn end_drain(&mut self, now: Instant) -> Option<Adjustment> {
        let drain = self.drain.filter(|d| now >= d.until)?;
        self.finish_drain(now);
        (self.limit > drain.to).then(|| self.set_limit(drain.to, drain.reason, now))?
    }

    fn cut_for_rtt(&mut self, rtt: Rtt, first_of_run: bool, now: Instant) -> Option<Adjustment> {
        let (baseline, _) = self.baseline?;
        let limit = self.limit as f64;
        // Deep queueing: the ratio of round trips lands on the knee in one step (in a queue
        // the round trip grows in proportion to the excess). Marginal queueing: the ratio is
        // mostly noise, so a gentle step.
        let deep = rtt.median > DEEP_QUEUEING * baseline.median;
        let mut target = if deep {
            limit * baseline.high / rtt.median
        } else {
            limit * self.config.gentlest_cut
        };
        // The ratio is evidence: like a cut to the concurrency served, it may go twice as
        // deep as a blind cut (a knee that fell to a quarter is followed in one step).
        let deepest = if deep {
            self.config.deepest_cut * self.config.deepest_cut
        } else {
            self.config.deepest_cut
        };
        // Deep beyond doubt: even the interval's low end is that far above the baseline's
        // high end (a heavy tail's noisy median is not).
        let deep_beyond_doubt = rtt.low > DEEP_QUEUEING * baseline.high;
        if first_of_run && !deep_beyond_doubt {
            // A level just seen clean is direct evidence: the first cut stops there. Not
            // under queueing deep beyond doubt: the ratio is evidence enough, and a backend
            // whose knee just fell far below that level queues every request until the cut
            // lands.
            if let Some(clean) = self.last_clean_limit.filter(|&c| c < self.limit) {
                target = target.max(clean as f64);
            }
        }
        // At a limit of 1 there is nothing below to cut to: min/max, not clamp (whose bounds
        // would cross and panic).
        let target = target.round().min(limit - 1.0).max(limit * deepest);
        let to = self.config.bounds.clamp_f64(target);
        self.rtt_cuts_from.get_or_insert(self.limit);
        self.note_failing(self.limit, false);
        self.note_cut(to);
        self.set_limit(to, Reason::RttGrowth, now)
    }

    fn on_queueing(&mut self, rtt: Rtt, now: Instant) -> Option<Adjustment> {
        let here = LatencyCut {
            rtt_before: rtt.median,
            limit_before: self.limit,
        };
        let Some(run) = self.latency_cuts else {
            self.latency_cuts = Some(here);
            return self.cut_for_rtt(rtt, true, now);
        };
        // Queueing: the round trip shrinks with the limit. A slower backend: it stays. Judge
        // once the run has cut enough to tell, at the midpoint of the two expectations.
        let shrink = self.limit as f64 / run.limit_before as f64;
        // (A gentle cut rounded to a whole limit counts: 61 -> 55 is one.)
        let judged_at = self.config.gentlest_cut + 0.5 / run.limit_before as f64;
        if shrink <= judged_at {
            if rtt.low > run.rtt_before * (1.0 + shrink) / 2.0 {
                self.latency_cuts = None;
                self.ceiling = None;
                self.at_ceiling_since = None;
                self.last_clean_limit = None;
                // Did the backend slow, or was the round trip still draining a queue?
                // Measure; undo the cuts only if the baseline moved.
                // The first step, at a quarter, goes deeper only if its round trip is clearly
                // shorter than this one: if it is not, the round trip does not depend on the
                // depth (no queue even at the limit), and a quarter is already unloaded.
                // Every cut since the limit last grew, not only those since the run's last
                // judged step: a window that neither queues nor grows (a hold) ends a run,
                // and a backend slowing as a ramp makes several.
                let undo_to = self.rtt_cuts_from.unwrap_or(run.limit_before);
                self.rtt_cuts_from = None;
                return self.begin_probe_unless(undo_to, Some(self.limit), Some(rtt), now);
            }
            self.latency_cuts = Some(here);
        }
        self.cut_for_rtt(rtt, false, now)
    }

    fn grow(&mut self, now: Instant) -> Option<Adjustment> {
        let grown = self.grow_unless_held(now);
        if grown.is_some() {
            self.rtt_cuts_from = None;
        }
        grown
    }

    fn grow_unless_held(&mut self, now: Instant) -> Option<Adjustment> {
        let limit = self.limit;
        match self.ceiling {
            Some(ceiling) if limit < ceiling => {
                let to = (limit + ((ceiling - limit) / 2).max(1)).min(ceiling);
                self.set_limit(to, Reason::Recovering, now)
            }
            Some(_) => {
                self.clean_windows_at_ceiling += 1;
                // Hold `hold_windows` windows, or as many double round trips when windows
                // are long (a few requests in flight at a long round trip).
                // Overloaded again and again at the same level: hold longer each time (a
                // token bucket's burst can hide a level's overload for seconds).
                let hold = self.config.hold_windows.saturating_mul(self.hold_factor);
                let since = *self.at_ceiling_since.get_or_insert(now);
                let held = now.saturating_duration_since(since);
                // At most `LONGEST_HOLD`, whatever the round trip: added capacity (a cap
                // that doubles) must be found within seconds.
                let held_long = held.as_secs_f64() >= f64::from(hold) * 2.0 * self.rtt_estimate()
                    || held >= LONGEST_HOLD;
                if self.clean_windows_at_ceiling < hold
                    && !(held_long && self.clean_windows_at_ceiling >= 2)
                {
                    self.restart_window(now);
                    return None;
                }
                self.ceiling = None;
                self.at_ceiling_since = None;
                self.growth_step = 1;
                self.set_limit(limit + 1, Reason::Probing, now)
            }
            None => {
                let to = self.next_probe(limit);
                self.set_limit(to, Reason::Probing, now)
            }
        }
    }

    /// How far to grow above the last level known safe: doubling until the first cut, and
    /// while far below the last level that failed; one at a time near it (CUBIC's plateau);
    /// accelerating beyond it, by at most a quarter per window.
    fn next_probe(&mut self, limit: usize) -> usize {
        let failing = self.last_failing.map(|f| f as f64);
        let far_below = failing.is_some_and(|failing| (limit as f64) < 0.5 * failing);
        if self.starting {
            self.growth_step = 1;
            let growth = if self.judged_on_round && limit < self.config.min_samples {
                SMALL_ROUND_GROWTH
            } else {
                STARTUP_GROWTH
            };
            return limit.saturating_mul(growth);
        }
        if far_below {
            self.growth_step = 1;
            return limit.saturating_mul(2);
        }
        let near = failing.is_some_and(|failing| {
            let next = (limit + self.growth_step) as f64;
            next >= 0.9 * failing && (limit as f64) < 1.1 * failing
        });
        if near {
            self.growth_step = 1;
        }
        let to = limit + self.growth_step;
        self.growth_step = (self.growth_step * 2).min((to / 4).max(1));
        to
    }

    /// Little's law: the attempts in flight should equal the rate answers come at times how
    /// long answers take. Far more in flight means answers are held back: throttles that
    /// will arrive late, requests past a full connection backlog — or a slow tail not seen
    /// yet. Until they arrive, do not grow.
    fn answers_lag(&self, now: Instant) -> bool {
        let fewest = (self.samples_needed() / 2).max(4);
        let mut expected = self.limit;
        let rate = match self.window.rate(&self.recent, now, fewest) {
            Some(rate) => rate,
            // One round after a doubling no attempt let in at the new limit has seen only
            // its like end. Over the round every attempt in flight when it began has been
            // answered, unless held back: the limit before the rise (half this one, or
            // less). Those the rise let in come back as the round ends, some just after:
            // counting them too held rounds of 192 and 384 at 200 ms for a round more.
            None if self.judged_on_round => {
                let Some(rate) = self
                    .window
                    .started
                    .and_then(|from| self.recent.rate_between(from, now))
                else {
                    return false;
                };
                expected = self.limit / STARTUP_GROWTH;
                rate
            }
            None => return false,
        };
        let span = self.rate_span().max(seconds(
            RECENT_SLOWEST_FACTOR * self.slowest.get(now, SLOWEST_HALF_LIFE),
        ));
        let Some(from) = now.checked_sub(span) else {
            return false;
        };
        let Some(mean_latency) = self.recent.mean_latency_since(from) else {
            return false;
        };
        rate * mean_latency * UNANSWERED_FACTOR < expected as f64
    }

    /// Counts an ended attempt for the limit it started under; returns that epoch.
    fn count_attempt(
        &mut self,
        started: Instant,
        outcome: AttemptOutcome,
        now: Instant,
    ) -> Option<Epoch> {
        let overload = outcome.is_overload();
        let epoch = self.epochs.containing(started).map(|epoch| {
            epoch.record(overload);
            *epoch
        })?;
        self.background.record(epoch.limit, overload, now);
        Some(epoch)
    }

    /// Whether the limit in force shows any sign of overload in this window, not yet
    /// significant: more throttles and timeouts than the reference share plus two standard
    /// deviations. Not a reason to cut; a reason not to grow.
    fn overloads_linger(&self, now: Instant) -> bool {
        let Some(epoch) = self.epochs.current() else {
            return false;
        };
        let (at_start_attempts, at_start_overloads) = match self.window_counts_from {
            Some((start, attempts, overloads)) if start == epoch.start => (attempts, overloads),
            _ => (0, 0),
        };
        let attempts = epoch.attempts.saturating_sub(at_start_attempts);
        let overloads = epoch.overloads.saturating_sub(at_start_overloads);
        if overloads < 2 {
            return false;
        }
        let share = self
            .background
            .share_up_to(epoch.limit, (attempts, overloads), now);
        let expected = f64::from(attempts) * share;
        f64::from(overloads) > expected + 2.0 * expected.sqrt() + 1.0
    }

    fn close_window(&mut self, now: Instant) -> Option<Adjustment> {
        // A round is judged on the attempts that saw the limit full: the burst a doubling
        // lets in at once was queued behind fewer than the limit.
        let rtt = if self.judged_on_round {
            self.window.full_rtt()?
        } else {
            self.window.rtt()?
        };
        self.smoothed_rtt = Some(
            self.smoothed_rtt
                .map_or(rtt.median, |s| 0.75 * s + 0.25 * rtt.median),
        );
        if self.drain.is_some() {
            // Attempts held back are still out: this window's limit is not the one to judge.
            self.restart_window(now);
            return None;
        }
        if let Some(probe) = self.probe {
            return self.continue_probe(probe, rtt, now);
        }
        let Some((baseline, measured_at)) = self.baseline else {
            return self.begin_probe(self.limit, now);
        };
        // Compared with the baseline's own confidence interval: a baseline from a noisy
        // probe must not make ordinary noise look like queueing (or like a faster backend).
        let in_use = self.window.max_in_flight >= self.limit;

        if let (Some(target), Some(memory)) = (self.config.memory_target, self.window.memory()) {
            if memory > target {
                let to = (self.limit as f64 * self.config.gentlest_cut) as usize;
                self.note_cut(self.config.bounds.clamp(to));
                self.latency_cuts = None;
                self.rtt_cuts_from = None;
                return self.set_limit(to, Reason::MemoryPressure, now);
            }
        }

        let tolerance = 1.0 + self.config.latency_tolerance;
        if rtt.low > baseline.high * tolerance {
            return self.on_queueing(rtt, now);
        }
        self.latency_cuts = None;
        if rtt.high * tolerance < baseline.low {
            // The backend got faster (this round trip may still hide a queue): measure.
            return self.begin_probe(self.limit, now);
        }
        if rtt.low <= baseline.high * tolerance && rtt.high * tolerance >= baseline.low {
            // This window's round trip is consistent with the baseline: it still holds.
            self.baseline = Some((baseline, now));
        } else if now.saturating_duration_since(measured_at) >= self.config.baseline_refresh {
            return self.begin_probe(self.limit, now);
        }
        // Only full slots show the limit binds. A non-empty queue does not: its tasks may be
        // on their way to free slots.
        if in_use && (self.answers_lag(now) || self.overloads_linger(now)) {
            // Hold: the answers still out decide whether this limit is safe.
            self.restart_window(now);
            return None;
        }
        if in_use {
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
        let started_probe = if self.epochs.current().is_none() {
            self.start(sample.latency, now)
        } else {
            None
        };
        let ended_drain = self.end_drain(now);
        self.last_sample_at = Some(now);
        self.last_in_flight = sample.in_flight;
        if self.stalled_at.take().is_some() {
            // The stall explains every overload of attempts started before it ended (the
            // timeouts it will bring): the stall cuts answered them.
            self.last_overload_cut = Some((now, 0));
        }
        let latency = sample.latency.as_secs_f64();
        let succeeded = sample.outcome == AttemptOutcome::Succeeded;
        self.slowest.observe(latency, now, SLOWEST_HALF_LIFE);
        let span = self.recent_span(now);
        self.recent
            .add(sample.finished_at, latency, succeeded, span);

        let started = sample.started_at();
        let decided = match sample.outcome {
            AttemptOutcome::Throttled | AttemptOutcome::TimedOut => {
                let reason = if sample.outcome == AttemptOutcome::Throttled {
                    Reason::Throttled
                } else {
                    Reason::TimedOut
                };
                self.count_attempt(started, sample.outcome, now)
                    .and_then(|epoch| {
                        self.on_overload(epoch, sample.in_flight, latency, reason, now)
                    })
            }
            // A failure says nothing about load, and its latency is not a service time.
            AttemptOutcome::Failed => {
                self.count_attempt(started, sample.outcome, now);
                None
            }
            AttemptOutcome::Succeeded => {
                self.count_attempt(started, sample.outcome, now);
                if let Some(at) = self.window.started.filter(|&at| started >= at) {
                    self.window
                        .add(latency, sample.in_flight, sample.memory_fraction);
                    // Started a round trip after the change: its own round trip saw only
                    // attempts of this limit end.
                    let settled = at.checked_add(seconds(self.rtt_estimate()));
                    // Let in after the rise's burst: the slots it opened were taken at once,
                    // so anything later waited for one to free, with the limit full.
                    let full = at.checked_add(
                        seconds(self.rtt_estimate() / FULL_AFTER_RTT_PARTS).min(BURST_SPAN),
                    );
                    if full.is_some_and(|full| started >= full) {
                        self.window.add_full(latency);
                    }
                    if settled.is_some_and(|settled| started >= settled) {
                        self.window.add_settled(started, sample.finished_at);
                    }
                }
                if self.window_is_complete(now) {
                    self.close_window(now)
                } else {
                    None
                }
            }
        };
        decided.or(started_probe).or(ended_drain)
    }

    fn tick(&mut self, now: Instant) -> Option<Adjustment> {
        if let Some(ended) = self.end_drain(now) {
            return Some(ended);
        }
        let last = self.last_sample_at?;
        // Attempts were still running when the last one ended.
        if self.last_in_flight <= 1 {
            return None;
        }
        let stall =
            seconds(STALL_FACTOR * self.slowest.get(now, SLOWEST_HALF_LIFE)).max(SHORTEST_STALL);
        let since = self.last_stall_cut.map_or(last, |cut| cut.max(last));
        if now.saturating_duration_since(since) < stall {
            return None;
        }
        self.last_stall_cut = Some(now);
        let before = *self.stalled_at.get_or_insert(self.limit);
        let to = self
            .config
            .bounds
            .clamp_f64(self.limit as f64 * self.config.deepest_cut);
        self.note_cut(to);
        // Once answers come again, climb back towards where the stall found it.
        self.ceiling = Some(before.max(to));
        self.latency_cuts = None;
        self.rtt_cuts_from = None;
        self.probe = None;
        self.set_limit(to, Reason::Stalled, now)
    }

    fn name(&self) -> &'static str {
        "knee"
    }
}

fn seconds(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// How a toy backend answers an attempt started with `held` attempts in service.
    #[derive(Clone, Copy)]
    enum Fate {
        Success(Duration),
        Throttled(Duration),
    }

    /// A closed loop in virtual time: the tuner's limit of attempts in flight, each ended by
    /// `fate`, every outcome fed back. A tiny xorshift makes it deterministic.
    struct Loop {
        tuner: KneeTuner,
        start: Instant,
        now: Instant,
        /// (ends at, started at, fate), earliest first.
        in_flight: BinaryHeap<Reverse<(Instant, Instant, u8, Duration)>>,
        rng: u64,
    }

    impl Loop {
        fn new(config: KneeConfig, initial: usize) -> Self {
            let start = Instant::now();
            Self {
                tuner: KneeTuner::new(config, initial),
                start,
                now: start,
                in_flight: BinaryHeap::new(),
                rng: 0x9E37_79B9_7F4A_7C15,
            }
        }

        fn random(&mut self) -> f64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng >> 11) as f64 / (1u64 << 53) as f64
        }

        fn elapsed(&self) -> Duration {
            self.now - self.start
        }

        /// Runs in steps of 100 ms until the limit reaches `limit` (at most 8 s); returns
        /// when it did, if it did, and every adjustment on the way.
        fn time_to_reach(
            &mut self,
            limit: usize,
            mut fate: impl FnMut(&mut Self, usize) -> Fate,
        ) -> (Option<Duration>, Vec<Adjustment>) {
            let mut steps = Vec::new();
            while self.elapsed() < MS * 8_000 {
                steps.extend(self.run(MS * 100, &mut fate));
                if self.tuner.limit() >= limit {
                    return (Some(self.elapsed()), steps);
                }
            }
            (None, steps)
        }

        /// Runs for `span`, starting attempts up to the limit; returns every adjustment.
        fn run(
            &mut self,
            span: Duration,
            mut fate: impl FnMut(&mut Self, usize) -> Fate,
        ) -> Vec<Adjustment> {
            let until = self.now + span;
            let mut adjustments = Vec::new();
            loop {
                while self.in_flight.len() < self.tuner.limit() {
                    let held = self.in_flight.len() + 1;
                    let (kind, latency) = match fate(self, held) {
                        Fate::Success(latency) => (0, latency),
                        Fate::Throttled(latency) => (1, latency),
                    };
                    let ends = self.now + latency.max(Duration::from_micros(1));
                    self.in_flight
                        .push(Reverse((ends, self.now, kind, latency)));
                }
                let next = self.in_flight.peek().map(|Reverse(a)| a.0);
                let tick = self.now + MS * 100;
                match next {
                    Some(ends) if ends <= tick && ends <= until => {
                        let Reverse((ends, _, kind, latency)) =
                            self.in_flight.pop().expect("peeked");
                        self.now = ends;
                        let outcome = if kind == 0 {
                            AttemptOutcome::Succeeded
                        } else {
                            AttemptOutcome::Throttled
                        };
                        let sample = Sample::new(ends, latency, outcome)
                            .in_flight(self.in_flight.len() + 1)
                            .queued(10);
                        adjustments.extend(self.tuner.observe(&sample, ends));
                    }
                    _ if tick > until => return adjustments,
                    _ => {
                        self.now = tick;
                        adjustments.extend(self.tuner.tick(tick));
                    }
                }
            }
        }
    }

    /// A queue in front of `knee` servers of `base` (± 5 %).
    fn queue(knee: usize, base: Duration) -> impl FnMut(&mut Loop, usize) -> Fate {
        move |sim, held| {
            let service = base.mul_f64(0.95 + 0.1 * sim.random());
            let wait = base.mul_f64(held.saturating_sub(knee) as f64 / knee as f64);
            Fate::Success(service + wait)
        }
    }

    #[test]
    fn settles_near_the_knee_of_a_queue() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(Duration::from_secs(10), queue(64, MS * 20));
        let limit = sim.tuner.limit();
        assert!((60..=80).contains(&limit), "limit {limit}");
        let baseline = sim.tuner.baseline_rtt().expect("measured");
        assert!((MS * 19..=MS * 22).contains(&baseline), "{baseline:?}");
    }

    #[test]
    fn a_start_at_a_long_round_trip_doubles_per_round() {
        // Knee 400 at 100 ms, from 10: with windows of three round trips the start reached
        // 768 at 2.7 s and came back to the knee at 3.0 s; judged a round at a time on the
        // attempts that saw the limit full, it is back by 2.3 s.
        let mut sim = Loop::new(KneeConfig::default(), 10);
        let adjustments = sim.run(MS * 2_500, queue(400, MS * 100));
        let cut = adjustments.iter().find(|a| a.reason == Reason::RttGrowth);
        assert!(
            cut.is_some_and(|cut| cut.from == 768 && (380..=480).contains(&cut.to)),
            "{adjustments:?}"
        );
    }

    #[test]
    fn a_start_at_a_long_round_trip_quadruples_small_rounds() {
        // Knee 600 at 200 ms, from 10 (the first probe at 3, then 6). The first probe once
        // measured the no-load round trip on 12 successes and each round waited for 16,
        // let in a round trip's eighth after the doubling: 768 at 4.0 s; on two rounds'
        // worth for the probe and a limit's worth per round, 3.3 s. Doubling, the rounds
        // at 6, 12 and 24 each waited two round trips, and the round at 192 one more for
        // the answers of the attempts its rise let in. Quadrupling below `min_samples`
        // (6 -> 24) and judging a round's answers against the limit before its rise, the
        // start is at 768 by 2.5 s.
        let mut sim = Loop::new(KneeConfig::default(), 10);
        let (reached, steps) = sim.time_to_reach(768, queue(600, MS * 200));
        assert!(steps.iter().any(|a| a.from == 6 && a.to == 24), "{steps:?}");
        assert!(
            reached.is_some_and(|at| at <= MS * 2_600),
            "{reached:?} {steps:?}"
        );
    }

    #[test]
    fn a_start_at_a_long_round_trip_measures_the_first_wave() {
        // Knee 600 at 200 ms, from 10: the first probe (3 in flight) closes on two rounds'
        // worth of successes. Counting the first wave, which ran at the probe's depth, it
        // leaves 3 after two rounds (0.4 s); leaving it out, after three (0.6 s).
        let mut sim = Loop::new(KneeConfig::default(), 10);
        let adjustments = sim.run(MS * 500, queue(600, MS * 200));
        assert!(
            adjustments
                .first()
                .is_some_and(|a| a.from == 3 && a.to == 6),
            "{adjustments:?}"
        );
    }

    #[test]
    fn starting_far_above_the_knee_does_not_take_a_queue_for_the_baseline() {
        let mut sim = Loop::new(KneeConfig::default(), 200);
        let adjustments = sim.run(Duration::from_secs(3), queue(32, MS * 20));
        let baseline = sim.tuner.baseline_rtt().expect("measured");
        assert!(baseline <= MS * 22, "{baseline:?} {adjustments:?}");
        let limit = sim.tuner.limit();
        assert!((30..=40).contains(&limit), "limit {limit}: {adjustments:?}");
    }

    #[test]
    fn a_capacity_drop_is_followed_within_seconds() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(Duration::from_secs(8), queue(128, MS * 20));
        assert!(sim.tuner.limit() >= 120, "limit {}", sim.tuner.limit());
        sim.run(Duration::from_secs(3), queue(32, MS * 20));
        let limit = sim.tuner.limit();
        assert!((28..=40).contains(&limit), "limit {limit}");
    }

    #[test]
    fn a_slower_backend_moves_the_baseline_instead_of_starving() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(Duration::from_secs(8), queue(64, MS * 20));
        let before = sim.tuner.limit();
        let adjustments = sim.run(Duration::from_secs(8), queue(64, MS * 40));
        let after = sim.tuner.limit();
        assert!(after + 10 >= before, "{before} -> {after}: {adjustments:?}");
        let baseline = sim.tuner.baseline_rtt().expect("measured");
        assert!(baseline >= MS * 38, "{baseline:?}");
    }

    /// Load-independent throttling (a share of attempts refused whatever the limit) is not
    /// cut for: it is the background every level shows alike.
    #[test]
    fn a_rate_cap_that_falls_below_half_is_reached_in_a_cascade_of_deepening_steps() {
        // A token bucket (burst 50 ms of its rate) in front of a backend answering in 50–150 ms;
        // refusals come in 5 ms. 4,000 requests a second at first, then 40 % of what the
        // limit sends. For a whole round trip the successes still ending were let in before
        // the fall, so neither they nor the few refusals yet say how far it fell: each cut
        // is a blind step, refused again at once. Ten 10 % steps each cost a burst of
        // refusals; deepening ones (×0.9, ×0.9, ×0.81, ×0.73 …) take about five.
        let bucket = |rate: f64| {
            let mut tokens = rate * 0.05;
            let mut at: Option<Instant> = None;
            move |sim: &mut Loop, _: usize| {
                let elapsed = at.map_or(0.0, |at| (sim.now - at).as_secs_f64());
                at = Some(sim.now);
                tokens = (tokens + elapsed * rate).min(rate * 0.05);
                if tokens < 1.0 {
                    Fate::Throttled(MS * 5)
                } else {
                    tokens -= 1.0;
                    // Jitter, so that the closed loop's answers do not come in waves.
                    Fate::Success(Duration::from_secs_f64(0.05 + 0.1 * sim.random()))
                }
            }
        };
        let mut sim = Loop::new(KneeConfig::default(), 300);
        sim.run(Duration::from_secs(20), bucket(4_000.0));
        let before = sim.tuner.limit();
        assert!(before >= 200, "limit {before}");
        // The cap falls to 40 % of what the limit was sending (10 a second per slot).
        let served = 0.4 * before as f64;
        let cuts = sim.run(MS * 300, bucket(10.0 * served));
        let refused = cuts
            .iter()
            .filter(|c| c.reason == Reason::Throttled)
            .count();
        let landed = sim.tuner.limit() as f64;
        assert!(
            landed <= 1.05 * served,
            "{before} -> {landed} after {cuts:?}"
        );
        assert!(refused <= 6, "{refused} cuts: {cuts:?}");
        // A deepened step is a guess: the limit climbs back at once to where a gentle step
        // from the last level refused would have landed, without the hold a measured cut
        // earns.
        let after = sim.run(Duration::from_secs(1), bucket(10.0 * served));
        let back = sim.tuner.limit() as f64;
        assert!(
            back >= 0.8 * served && back <= 1.05 * served,
            "{landed} -> {back}: {cuts:?} {after:?}"
        );
    }

    /// Settled at a knee of 64 (20 ms), then the round trip grows to 60 ms over 10 s at the
    /// same knee; the adjustments of the ramp.
    fn slowing_ramp() -> Vec<Adjustment> {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(Duration::from_secs(8), queue(64, MS * 20));
        let start = sim.elapsed();
        sim.run(Duration::from_secs(10), |sim, held| {
            let ramp = ((sim.elapsed() - start).as_secs_f64() / 10.0).min(1.0);
            queue(64, MS * 20 + (MS * 40).mul_f64(ramp))(sim, held)
        })
    }

    #[test]
    fn a_backend_slowing_as_a_ramp_costs_one_probe_step_per_baseline_move() {
        // The same knee (64), the round trip growing from 20 to 60 ms over 10 s: cutting
        // does not shorten it. Each time it leaves the baseline's band, a cut shows the
        // round trip did not follow the limit, and a probe moves the baseline. The probe's
        // first step, at a quarter, reads the same round trip as the limit did: no queue at
        // the limit, so none at a quarter — going deeper would only starve the backend.
        let adjustments = slowing_ramp();
        let probes = adjustments
            .iter()
            .filter(|a| a.reason == Reason::MeasuringRtt)
            .count();
        let deeper = adjustments
            .windows(2)
            .filter(|pair| pair.iter().all(|a| a.reason == Reason::MeasuringRtt))
            .count();
        assert!(probes >= 2, "{adjustments:?}");
        assert_eq!(deeper, 0, "{adjustments:?}");
        // And a gentle cut rounded to a whole limit (61 -> 55) is one: the run of cuts is
        // judged after it, not after another.
        let mut in_a_row = 0;
        for adjustment in &adjustments {
            match adjustment.reason {
                Reason::RttGrowth => in_a_row += 1,
                Reason::MeasuringRtt => {
                    assert!(in_a_row <= 3, "{in_a_row} cuts: {adjustments:?}");
                    in_a_row = 0;
                }
                _ => in_a_row = 0,
            }
        }
    }

    #[test]
    fn a_backend_found_slower_gets_back_every_cut_since_the_limit_last_grew() {
        // The ramp of the test above. A run of cuts is judged against the limit of its last
        // judged step, and a window that neither queues nor grows (a hold) ends the run:
        // once a probe showed the backend had slowed, the limit went back only to where the
        // last run began (here 69 -> 68 -> 61 -> 55, probe, back to 61; in the simulator's
        // `slowdown-ramp` 76 -> 75 -> 68 -> 61 -> 55, back to 61, utilisation 0.94 over the
        // ramp). Every cut since the limit last grew was the slowdown's: all are undone.
        let adjustments = slowing_ramp();
        let mut cuts_from = None;
        let mut undone = 0;
        for pair in adjustments.windows(2) {
            let (before, this) = (pair[0], pair[1]);
            match this.reason {
                Reason::RttGrowth => {
                    cuts_from.get_or_insert(this.from);
                }
                Reason::Recovering if before.reason == Reason::MeasuringRtt => {
                    let from = cuts_from
                        .take()
                        .expect("a probe for a slower backend follows cuts");
                    assert!(
                        this.to >= from,
                        "{this:?} after cuts from {from}: {adjustments:?}"
                    );
                    undone += 1;
                }
                _ if this.to > this.from => cuts_from = None,
                _ => {}
            }
        }
        assert!(undone >= 2, "{adjustments:?}");
    }

    #[test]
    fn refusals_before_any_success_cut_by_the_deepest_cut() {
        // A start at 300 (a quarter: 75 in flight) against a rate cap serving 20 at once:
        // the rest are refused in 5 ms, long before the first success (20 ms) says what is
        // served. A gentle cut would be refused again, one 10 % step per refusal.
        let mut sim = Loop::new(KneeConfig::default(), 300);
        assert_eq!(sim.tuner.limit(), 75);
        let adjustments = sim.run(MS * 10, |_, held| {
            if held > 20 {
                Fate::Throttled(MS * 5)
            } else {
                Fate::Success(MS * 20)
            }
        });
        let first = adjustments.first().expect("the refusals cut");
        assert_eq!((first.from, first.reason), (75, Reason::Throttled));
        assert!(first.to <= 38, "{first:?}");
    }

    #[test]
    fn a_cap_that_falls_is_followed_in_a_few_cuts_by_the_slots_refusals_hold() {
        // Refused in 5 ms beyond what the backend serves, served in 20 ms: 64 at first…
        let cap = |served: usize| {
            move |_: &mut Loop, held: usize| {
                if held > served {
                    Fate::Throttled(MS * 5)
                } else {
                    Fate::Success(MS * 20)
                }
            }
        };
        let mut sim = Loop::new(KneeConfig::default(), 64);
        sim.run(Duration::from_secs(5), cap(64));
        let before = sim.tuner.limit();
        assert!((48..=70).contains(&before), "limit {before}");
        // … then 20. For a round trip the successes still ending were let in before the
        // fall: what they say is served is stale, and gentle cuts would step down 10 % at
        // a time, each refused again. The slots the refusals hold say it at once.
        let cuts = sim.run(MS * 150, cap(20));
        let refused = cuts
            .iter()
            .filter(|c| c.reason == Reason::Throttled)
            .count();
        let limit = sim.tuner.limit();
        assert!(limit <= 22, "limit {limit} after {cuts:?}");
        assert!(refused <= 5, "{refused} cuts: {cuts:?}");
    }

    #[test]
    fn a_deep_queue_is_cut_by_the_ratio_even_just_after_a_clean_window() {
        // Clean at 143 a window ago, then the knee falls to 32: the round trip is 4.5 times
        // the baseline. Stopping the first cut at the clean level would leave every request
        // queueing for another window.
        let mut tuner = KneeTuner::new(KneeConfig::default(), 144);
        let now = Instant::now();
        let rtt = |median: f64| Rtt {
            low: median * 0.98,
            median,
            high: median * 1.02,
        };
        tuner.limit = 144;
        tuner.baseline = Some((rtt(0.02), now));
        tuner.last_clean_limit = Some(143);
        let cut = tuner.on_queueing(rtt(0.09), now).expect("cuts");
        assert!(cut.to <= 40, "{cut:?}");
        // Marginal queueing still stops at the clean level.
        let mut tuner = KneeTuner::new(KneeConfig::default(), 144);
        tuner.limit = 144;
        tuner.baseline = Some((rtt(0.02), now));
        tuner.last_clean_limit = Some(143);
        let cut = tuner.on_queueing(rtt(0.025), now).expect("cuts");
        assert_eq!(cut.to, 143);
    }

    #[test]
    fn background_throttling_does_not_drag_the_limit_down() {
        for share in [0.005, 0.01, 0.02] {
            let mut sim = Loop::new(KneeConfig::default(), 10);
            let mut serve = queue(64, MS * 20);
            sim.run(Duration::from_secs(30), |sim, held| {
                if sim.random() < share {
                    Fate::Throttled(MS * 5)
                } else {
                    serve(sim, held)
                }
            });
            let limit = sim.tuner.limit();
            assert!(limit >= 56, "{share}: limit {limit}");
            assert!(sim.tuner.background_overload(sim.now) > 0.0);
        }
        // Without the background test every throttle cuts: the limit collapses.
        let off = KneeConfig::builder()
            .max_background_overload(0.0)
            .build()
            .unwrap();
        let mut sim = Loop::new(off, 10);
        let mut serve = queue(64, MS * 20);
        sim.run(Duration::from_secs(30), |sim, held| {
            if sim.random() < 0.01 {
                Fate::Throttled(MS * 5)
            } else {
                serve(sim, held)
            }
        });
        assert!(sim.tuner.limit() <= 16, "limit {}", sim.tuner.limit());
    }

    /// A rate cap whose refusals come back a second late: each refusal counts for the limit
    /// its attempt started under, and the limit stays near the cap instead of climbing to
    /// its maximum while the refusals are on their way.
    #[test]
    fn late_throttles_count_for_the_limit_their_attempts_started_under() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        // 2,000 a second at 20 ms ± 5 %: the cap is 40 in flight. A token bucket with a
        // burst of 100.
        let (mut tokens, mut refilled) = (100.0, Duration::ZERO);
        let (mut throttled, mut total) = (0u32, 0u32);
        let mut serve = queue(10_000, MS * 20);
        sim.run(Duration::from_secs(30), |sim, held| {
            let now = sim.elapsed();
            tokens = (tokens + (now - refilled).as_secs_f64() * 2_000.0).min(100.0);
            refilled = now;
            total += 1;
            if tokens < 1.0 {
                throttled += 1;
                return Fate::Throttled(Duration::from_secs(1));
            }
            tokens -= 1.0;
            serve(sim, held)
        });
        let limit = sim.tuner.limit();
        assert!((30..=48).contains(&limit), "limit {limit}");
        let share = f64::from(throttled) / f64::from(total);
        assert!(share < 0.03, "{throttled} of {total} throttled");
    }

    /// The same cap: after each cut the attempts still waiting for their late refusal keep
    /// their slots until it arrives, so the attempts that succeed are not squeezed below
    /// the cap (a dip in throughput for as long as the refusals take).
    #[test]
    fn a_cut_for_late_throttles_leaves_their_slots_until_they_arrive() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        let (mut tokens, mut refilled) = (100.0, Duration::ZERO);
        // Successes started per second.
        let mut per_second = vec![0u32; 40];
        let mut serve = queue(10_000, MS * 20);
        sim.run(Duration::from_secs(40), |sim, held| {
            let now = sim.elapsed();
            tokens = (tokens + (now - refilled).as_secs_f64() * 2_000.0).min(100.0);
            refilled = now;
            if tokens < 1.0 {
                return Fate::Throttled(Duration::from_secs(1));
            }
            tokens -= 1.0;
            per_second[now.as_secs() as usize] += 1;
            serve(sim, held)
        });
        // Cutting below the refusals still out dips to about 1,450 a second for a second.
        let worst = per_second[10..39].iter().min().copied().unwrap_or(0);
        assert!(
            worst >= 1_700,
            "{worst} successes in a second: {per_second:?}"
        );
    }

    #[test]
    fn heavy_tails_do_not_inflate_the_limit() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        let mut serve = queue(64, MS * 10);
        sim.run(Duration::from_secs(20), |sim, held| {
            // 2 % take 40 times longer, queueing or not.
            let Fate::Success(latency) = serve(sim, held) else {
                unreachable!()
            };
            if sim.random() < 0.02 {
                Fate::Success(latency + MS * 390)
            } else {
                Fate::Success(latency)
            }
        });
        let limit = sim.tuner.limit();
        assert!((40..=100).contains(&limit), "limit {limit}");
    }

    /// No attempt ends at all: only time (`tick`) can move the limit, and it does.
    #[test]
    fn a_stall_halves_the_limit_through_tick() {
        let mut sim = Loop::new(KneeConfig::default(), 10);
        sim.run(Duration::from_secs(5), queue(64, MS * 20));
        let before = sim.tuner.limit();
        let adjustments = sim.run(Duration::from_millis(3_500), |_, _| {
            Fate::Success(Duration::from_secs(3_600))
        });
        let stalls: Vec<_> = adjustments
            .iter()
            .filter(|a| a.reason == Reason::Stalled)
            .collect();
        assert!(stalls.len() >= 2, "{adjustments:?}");
        assert!(
            sim.tuner.limit() <= before / 4,
            "{before} -> {}",
            sim.tuner.limit()
        );
    }

    #[test]
    fn plain_failures_do_not_move_the_limit() {
        let mut tuner = KneeTuner::new(KneeConfig::default(), 20);
        let now = Instant::now();
        tuner.observe(&Sample::new(now, MS * 20, AttemptOutcome::Succeeded), now);
        let limit = tuner.limit();
        for i in 0..100 {
            let at = now + MS * i;
            let failed = Sample::new(at, MS, AttemptOutcome::Failed).in_flight(20);
            assert_eq!(tuner.observe(&failed, at), None);
        }
        assert_eq!(tuner.limit(), limit);
    }

    #[test]
    fn memory_above_the_guard_cuts() {
        let config = KneeConfig::builder()
            .memory_target(Some(0.8))
            .build()
            .unwrap();
        let mut sim = Loop::new(config, 40);
        sim.run(Duration::from_secs(2), queue(1_000, MS * 10));
        let before = sim.tuner.limit();
        let mut cuts = Vec::new();
        for i in 0..400u32 {
            let at = sim.now + MS * i;
            let sample = Sample::new(at, MS * 10, AttemptOutcome::Succeeded)
                .in_flight(sim.tuner.limit())
                .memory_fraction(0.85);
            cuts.extend(sim.tuner.observe(&sample, at));
        }
        assert!(cuts.iter().any(|a| a.reason == Reason::MemoryPressure));
        assert!(sim.tuner.limit() < before);
    }

    #[test]
    fn never_leaves_its_bounds() {
        let config = KneeConfig::builder().min(8).max(16).build().unwrap();
        let mut sim = Loop::new(config, 1);
        assert_eq!(sim.tuner.limit(), 8);
        sim.run(Duration::from_secs(3), queue(1_000, MS * 20));
        assert_eq!(sim.tuner.limit(), 16);
        sim.run(Duration::from_secs(3), |_, _| Fate::Throttled(MS));
        assert_eq!(sim.tuner.limit(), 8);
    }
}
