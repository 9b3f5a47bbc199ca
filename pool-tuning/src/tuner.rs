//! The tuner abstraction: samples and a clock in, a concurrency limit out. No I/O.

use std::fmt;
use std::time::Instant;

use crate::sample::Sample;

/// Decides a concurrency limit from what finished attempts report.
///
/// Implementations are pure state machines: no clock of their own (every call carries `now`),
/// no I/O, no async. A driver feeds them and applies the limit they return to a pool, so the
/// same tuner runs under a real pool, under paused tokio time and in the simulator.
///
/// Contract: [`limit`](Tuner::limit) always lies within the tuner's [`Bounds`](crate::Bounds).
pub trait Tuner: Send + fmt::Debug {
    /// The current limit.
    fn limit(&self) -> usize;

    /// Records one finished attempt. Returns the change if the limit moved.
    fn observe(&mut self, sample: &Sample, now: Instant) -> Option<Adjustment>;

    /// Lets time-driven tuners act when no sample arrives. Default: nothing.
    fn tick(&mut self, now: Instant) -> Option<Adjustment> {
        let _ = now;
        None
    }

    /// A short name for reports (`"rule"`, `"knee"`, `"fixed"`).
    fn name(&self) -> &'static str;
}

impl<T: Tuner + ?Sized> Tuner for Box<T> {
    fn limit(&self) -> usize {
        (**self).limit()
    }
    fn observe(&mut self, sample: &Sample, now: Instant) -> Option<Adjustment> {
        (**self).observe(sample, now)
    }
    fn tick(&mut self, now: Instant) -> Option<Adjustment> {
        (**self).tick(now)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}

/// A change of the limit, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjustment {
    /// The old limit.
    pub from: usize,
    /// The new limit.
    pub to: usize,
    /// What triggered it.
    pub reason: Reason,
}

impl Adjustment {
    /// The change from `from` to `to`; `None` if the limit does not move (a tuner returns
    /// adjustments only for real moves). For tuners outside this crate too:
    ///
    /// ```
    /// use pool_tuning::{Adjustment, Reason};
    /// let down = Adjustment::between(32, 16, Reason::HighLatency).unwrap();
    /// assert_eq!((down.from, down.to), (32, 16));
    /// assert!(Adjustment::between(8, 8, Reason::HighLatency).is_none());
    /// ```
    pub fn between(from: usize, to: usize, reason: Reason) -> Option<Self> {
        (from != to).then_some(Self { from, to, reason })
    }
}

/// Why a tuner moved its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Memory use is above its target.
    MemoryPressure,
    /// Rule engine: average latency above 1.5 × target.
    HighLatency,
    /// Rule engine: latency below half the target and memory fine.
    GoodPerformance,
    /// Rule engine: average latency above 1.2 × target.
    SlightLatencyIncrease,
    /// The backend throttled (503 SlowDown / 429).
    Throttled,
    /// Attempts timed out.
    TimedOut,
    /// Round-trip time grew past the no-load baseline: requests are queueing.
    RttGrowth,
    /// Cutting the limit did not shorten the RTT: the backend itself slowed, so the baseline
    /// moved; one window at fewer requests confirms it, then the cut is undone.
    Rebased,
    /// The RTT fell below the baseline (the backend got faster): one window at fewer
    /// requests reads the new no-load RTT.
    MeasuringRtt,
    /// Climbing back towards the last level known to be safe.
    Recovering,
    /// Probing above the last safe level, or growing with no known ceiling.
    Probing,
    /// No attempt finished for far longer than the slowest recent one: the backend stalled.
    Stalled,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::MemoryPressure => "memory pressure",
            Reason::HighLatency => "high latency",
            Reason::GoodPerformance => "good performance, scaling up",
            Reason::SlightLatencyIncrease => "slight latency increase",
            Reason::Throttled => "throttled",
            Reason::TimedOut => "timed out",
            Reason::RttGrowth => "rtt growth",
            Reason::Rebased => "backend slowed, baseline moved",
            Reason::MeasuringRtt => "measuring no-load rtt",
            Reason::Recovering => "recovering",
            Reason::Probing => "probing",
            Reason::Stalled => "backend stalled",
        })
    }
}
