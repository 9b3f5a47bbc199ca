//! What a tuner learns from one finished attempt.

use std::time::{Duration, Instant};

/// How an attempt ended, as far as a tuner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The backend answered with a value.
    Succeeded,
    /// The backend failed in a way that says nothing about load (e.g. 404, a dropped socket).
    Failed,
    /// The backend said "slow down" (S3 503 SlowDown, HTTP 429): a strong overload signal.
    Throttled,
    /// The attempt ran past its timeout: also treated as overload.
    TimedOut,
}

impl AttemptOutcome {
    /// True for the outcomes that mean "too much load": throttled or timed out.
    pub fn is_overload(self) -> bool {
        matches!(self, AttemptOutcome::Throttled | AttemptOutcome::TimedOut)
    }
}

/// One finished attempt and the pool's state when it ended.
///
/// ```
/// use std::time::{Duration, Instant};
/// use pool_tuning::{AttemptOutcome, Sample};
/// let now = Instant::now();
/// let sample = Sample::new(now, Duration::from_millis(20), AttemptOutcome::Succeeded)
///     .in_flight(64)
///     .queued(100)
///     .memory_fraction(0.4);
/// assert_eq!(sample.started_at(), now - Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the attempt ended.
    pub finished_at: Instant,
    /// How long it ran.
    pub latency: Duration,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Attempts running when it ended, this one included.
    pub in_flight: usize,
    /// Tasks waiting in the queue when it ended.
    pub queued: usize,
    /// Share of system memory in use (0.0–1.0), if known.
    pub memory_fraction: Option<f64>,
}

impl Sample {
    /// A sample with `in_flight` 1, nothing queued and no memory figure.
    pub fn new(finished_at: Instant, latency: Duration, outcome: AttemptOutcome) -> Self {
        Self {
            finished_at,
            latency,
            outcome,
            in_flight: 1,
            queued: 0,
            memory_fraction: None,
        }
    }

    /// Sets the attempts running when it ended.
    pub fn in_flight(mut self, in_flight: usize) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// Sets the queue length when it ended.
    pub fn queued(mut self, queued: usize) -> Self {
        self.queued = queued;
        self
    }

    /// Sets the share of system memory in use.
    pub fn memory_fraction(mut self, fraction: f64) -> Self {
        self.memory_fraction = Some(fraction);
        self
    }

    /// When the attempt started (`finished_at - latency`).
    pub fn started_at(&self) -> Instant {
        self.finished_at
            .checked_sub(self.latency)
            .unwrap_or(self.finished_at)
    }
}
