//! What a circuit breaker is told (its settings) and what it tells (states, transitions,
//! snapshots).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ConfigError;
use crate::outcome::AttemptResult;

/// Where a circuit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls flow; outcomes are counted over the window.
    Closed,
    /// Calls are refused (or wait) until the cool-down ends.
    Open,
    /// A few probe calls are let through; their outcomes decide.
    HalfOpen,
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        })
    }
}

/// What an attempt does while the circuit is open (or half-open with every probe taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenOpen {
    /// Resolve the task at once with [`TaskError::Rejected`](crate::TaskError::Rejected) of
    /// kind [`RejectionKind::CircuitOpen`](crate::RejectionKind::CircuitOpen). Default.
    #[default]
    FailFast,
    /// Wait until the circuit lets the task through. While the circuit is open (its
    /// cool-down has a known end) the task is parked without its slot until then; while it
    /// is half-open with every probe taken, the task waits holding its slot (the probes
    /// decide soon). The task's cancellation token and `stop_now` still interrupt the wait.
    Wait,
}

/// A state change, as given to [`CircuitBreakerConfig::on_transition`] listeners.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The state left.
    pub from: CircuitState,
    /// The state entered.
    pub to: CircuitState,
    /// When, on the pool's clock.
    pub at: Instant,
    /// The window's failure rate when the circuit opened from closed.
    pub failure_rate: Option<f64>,
}

pub(super) type FailureTest = Arc<dyn Fn(AttemptResult) -> bool + Send + Sync>;
pub(super) type TransitionListener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// Settings of a [`CircuitBreaker`](super::CircuitBreaker). Every setter documents its
/// default.
#[derive(Clone)]
#[must_use = "a config does nothing until given to CircuitBreaker::new"]
pub struct CircuitBreakerConfig {
    pub(super) failure_rate: f64,
    pub(super) minimum_calls: u32,
    pub(super) window: Duration,
    pub(super) open_duration: Duration,
    pub(super) half_open_probes: u32,
    pub(super) when_open: WhenOpen,
    pub(super) is_failure: FailureTest,
    pub(super) listeners: Vec<TransitionListener>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            minimum_calls: 20,
            window: Duration::from_secs(10),
            open_duration: Duration::from_secs(5),
            half_open_probes: 3,
            when_open: WhenOpen::FailFast,
            is_failure: Arc::new(AttemptResult::is_backend_failure),
            listeners: Vec::new(),
        }
    }
}

impl fmt::Debug for CircuitBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("failure_rate", &self.failure_rate)
            .field("minimum_calls", &self.minimum_calls)
            .field("window", &self.window)
            .field("open_duration", &self.open_duration)
            .field("half_open_probes", &self.half_open_probes)
            .field("when_open", &self.when_open)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerConfig {
    /// Every default: opens at a 50 % failure rate over at least 20 calls in a 10 s window,
    /// cools down 5 s, then lets 3 probes through; fails fast while open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Failure rate (failures / counted calls in the window) at or above which the circuit
    /// opens. Default 0.5. Must be in (0, 1].
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Counted calls the window must hold before the rate is judged. Default 20. At least 1.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// The sliding window outcomes are counted over (in ten slices). Default 10 s.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long the circuit stays open before probing. Default 5 s. Not zero.
    /// `Duration::MAX` (anything over a century) never probes: once open, the circuit stays
    /// open.
    pub fn open_duration(mut self, cool_down: Duration) -> Self {
        self.open_duration = cool_down;
        self
    }

    /// Probe calls let through while half-open; all must succeed to close. Default 3.
    /// At least 1.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.half_open_probes = probes;
        self
    }

    /// Fail fast (default) or wait while open.
    pub fn when_open(mut self, behaviour: WhenOpen) -> Self {
        self.when_open = behaviour;
        self
    }

    /// Which attempt results count as failures of the backend; every other result counts as
    /// a success, except attempts [cut short](AttemptResult::is_cut_short), which are never
    /// counted. Default [`AttemptResult::is_backend_failure`]: retryable and throttled
    /// failures, timeouts and panics (a fatal error such as a 404 is a healthy backend's
    /// answer).
    pub fn failure_when(
        mut self,
        is_failure: impl Fn(AttemptResult) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.is_failure = Arc::new(is_failure);
        self
    }

    /// Calls `listener` on every state change (after the breaker's lock is released), e.g. to
    /// publish a metric. Any number may be added. Changes are also traced (target
    /// `pool_core::circuit_breaker`): opening at WARN, the others at INFO.
    pub fn on_transition(mut self, listener: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.failure_rate.is_finite() && self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(ConfigError::InvalidFactor {
                field: "circuit_breaker.failure_rate",
                range: "(0, 1]",
                value: self.failure_rate,
            });
        }
        for (field, count) in [
            ("circuit_breaker.minimum_calls", self.minimum_calls),
            ("circuit_breaker.half_open_probes", self.half_open_probes),
        ] {
            if count == 0 {
                return Err(ConfigError::InvalidFactor {
                    field,
                    range: "[1, inf)",
                    value: 0.0,
                });
            }
        }
        for (field, duration) in [
            ("circuit_breaker.window", self.window),
            ("circuit_breaker.open_duration", self.open_duration),
        ] {
            if duration.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        Ok(())
    }
}

/// What a circuit breaker has done so far, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitSnapshot {
    /// The state now.
    pub state: CircuitState,
    /// Counted calls (successes and failures) in the current window.
    pub calls: u64,
    /// Failures in the current window.
    pub failures: u64,
    /// Times the circuit opened (from closed or from half-open).
    pub opened: u64,
    /// Times it went half-open.
    pub half_opened: u64,
    /// Times it closed again.
    pub closed: u64,
    /// Attempts it refused.
    pub rejected: u64,
}
