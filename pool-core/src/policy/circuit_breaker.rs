//! The circuit breaker: a state machine over a sliding window of outcomes (pure, explicit
//! `now`), and the handle that makes it an admission policy and an observer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::select;
use tokio::sync::Notify;

use crate::admission::{Admission, AdmissionPermit, Precheck, Rejection, RejectionKind};
use crate::deadline;
use crate::error::ConfigError;
use crate::executor::{BoxFuture, Executor};
use crate::observer::{AttemptResult, Event, Observer, TaskInfo};
use crate::pool::PoolControl;
use crate::task::{ErrorClass, TaskId};

/// Where a circuit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// How an attempt's outcome counts toward the failure rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallVerdict {
    /// The backend answered well.
    Success,
    /// The backend is unhealthy (counts toward opening).
    Failure,
    /// Says nothing about the backend (the attempt was cancelled or never ran).
    Ignore,
}

/// The default classification: retryable and throttled failures, timeouts and panics are
/// failures; a success or a fatal error (a 404 is an answer from a healthy backend) is a
/// success; cancelled and rejected attempts are ignored.
pub fn default_verdict(result: AttemptResult) -> CallVerdict {
    match result {
        AttemptResult::Succeeded | AttemptResult::Failed(ErrorClass::Fatal) => CallVerdict::Success,
        AttemptResult::Failed(ErrorClass::Retryable | ErrorClass::Throttled)
        | AttemptResult::TimedOut
        | AttemptResult::Panicked => CallVerdict::Failure,
        AttemptResult::Cancelled | AttemptResult::Rejected => CallVerdict::Ignore,
    }
}

/// What an attempt does while the circuit is open (or half-open with every probe taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenOpen {
    /// Resolve the task at once with [`TaskError::Rejected`](crate::TaskError::Rejected) of
    /// kind [`RejectionKind::CircuitOpen`]. Default.
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

type Classifier = Arc<dyn Fn(AttemptResult) -> CallVerdict + Send + Sync>;
type TransitionListener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// Settings of a [`CircuitBreaker`]. Every setter documents its default.
#[derive(Clone)]
#[must_use = "a config does nothing until given to CircuitBreaker::new"]
pub struct CircuitBreakerConfig {
    failure_rate: f64,
    minimum_calls: u32,
    window: Duration,
    open_duration: Duration,
    half_open_probes: u32,
    when_open: WhenOpen,
    classify: Classifier,
    listeners: Vec<TransitionListener>,
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
            classify: Arc::new(default_verdict),
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

    /// Which outcomes count as failures. Default [`default_verdict`].
    pub fn classify(
        mut self,
        classify: impl Fn(AttemptResult) -> CallVerdict + Send + Sync + 'static,
    ) -> Self {
        self.classify = Arc::new(classify);
        self
    }

    /// Calls `listener` on every state change (after the breaker's lock is released), e.g. to
    /// publish a metric. Any number may be added. Changes are also traced (target
    /// `pool_core::circuit_breaker`): opening at WARN, the others at INFO.
    pub fn on_transition(mut self, listener: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
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

/// Stops calling a backend that keeps failing, probes it after a cool-down, and lets
/// traffic through again once the probes succeed.
///
/// ```text
///            failure rate >= threshold           cool-down elapsed
///  Closed ─────────────────────────────► Open ─────────────────────► HalfOpen
///    ▲      (over at least minimum_calls)  ▲                            │
///    │                                     └──── a probe fails ─────────┤
///    └────────────────── every probe succeeds ─────────────────────────┘
/// ```
///
/// It is both an [`Admission`] policy (asked before every attempt) and an [`Observer`] (it
/// learns each attempt's outcome from [`Event::AttemptFinished`]): attach it as both, most
/// simply with [`PolicyExt::with_policy`](super::PolicyExt::with_policy). While open, attempts
/// resolve with [`TaskError::Rejected`](crate::TaskError::Rejected) of kind
/// [`RejectionKind::CircuitOpen`] (or wait: [`WhenOpen::Wait`]). Which outcomes are failures
/// is configurable ([`CircuitBreakerConfig::classify`], default [`default_verdict`]).
///
/// State changes are traced, given to [`CircuitBreakerConfig::on_transition`] listeners, and
/// counted in [`snapshot`](Self::snapshot) for metrics.
///
/// Cheap to clone: clones share one circuit. Timing uses the given executor's clock (and the
/// `at` of events), so it runs on virtual time in tests. Probes are recognised by task id;
/// give each pool its own breaker (ids are unique within a pool).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pool_core::policy::{CircuitBreaker, CircuitBreakerConfig, CircuitState, PolicyExt};
/// use pool_core::{Executor, Pool, SimExecutor, TaskError, TaskOptions, Transient};
///
/// let sim = SimExecutor::new();
/// let executor: Arc<dyn Executor> = Arc::new(sim.clone());
/// let breaker = CircuitBreaker::new(
///     CircuitBreakerConfig::new().minimum_calls(4).open_duration(Duration::from_secs(30)),
///     executor.clone(),
/// )
/// .unwrap();
/// let pool = Pool::builder()
///     .executor_arc(executor)
///     .retries(0)
///     .with_policy(&breaker)
///     .build()
///     .unwrap();
///
/// sim.block_on(async {
///     for _ in 0..4 {
///         let failing = pool.enqueue(
///             || async { Err::<(), _>(Transient("503")) },
///             TaskOptions::new(),
///         );
///         assert!(failing.await.is_err());
///     }
///     assert_eq!(breaker.state(), CircuitState::Open);
///     let refused = pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, TaskOptions::new());
///     assert!(matches!(refused.await, Err(TaskError::Rejected(_))));
/// });
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<BreakerShared>,
}

struct BreakerShared {
    executor: Arc<dyn Executor>,
    machine: Mutex<Machine>,
    /// Wakes waiting attempts (mode [`WhenOpen::Wait`]) when the state changes.
    changed: Arc<Notify>,
    rejected: AtomicU64,
    observed: AtomicBool,
    warned_unobserved: AtomicBool,
    when_open: WhenOpen,
    classify: Classifier,
    listeners: Vec<TransitionListener>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Reads without moving the state, so formatting never fires listeners.
        let snapshot = self.shared.lock().snapshot(self.shared.executor.now());
        f.debug_struct("CircuitBreaker")
            .field("state", &snapshot.state)
            .field("calls", &snapshot.calls)
            .field("failures", &snapshot.failures)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed circuit timed by `executor` (use the pool's executor).
    ///
    /// Errors: [`ConfigError`] naming the first bad setting.
    pub fn new(
        config: CircuitBreakerConfig,
        executor: Arc<dyn Executor>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let now = executor.now();
        let machine = Machine::new(
            Thresholds {
                failure_rate: config.failure_rate,
                minimum_calls: u64::from(config.minimum_calls),
                open_duration: config.open_duration,
                half_open_probes: config.half_open_probes,
            },
            OutcomeWindow::new(config.window, now),
        );
        Ok(Self {
            shared: Arc::new(BreakerShared {
                executor,
                machine: Mutex::new(machine),
                changed: Arc::new(Notify::new()),
                rejected: AtomicU64::new(0),
                observed: AtomicBool::new(false),
                warned_unobserved: AtomicBool::new(false),
                when_open: config.when_open,
                classify: config.classify,
                listeners: config.listeners,
            }),
        })
    }

    /// The state now (an open circuit whose cool-down has passed reports half-open).
    pub fn state(&self) -> CircuitState {
        self.snapshot().state
    }

    /// State, window counts and transition counts now.
    pub fn snapshot(&self) -> CircuitSnapshot {
        let now = self.shared.executor.now();
        let (snapshot, transition) = {
            let mut machine = self.shared.lock();
            let transition = machine.expire_open(now);
            (machine.snapshot(now), transition)
        };
        self.shared.announce(transition);
        CircuitSnapshot {
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            ..snapshot
        }
    }

    /// Feeds one outcome by hand (what [`Observer::on_event`] does for pool attempts), for
    /// calls made outside a pool. `task` identifies probes admitted by [`Admission::acquire`].
    pub fn record(&self, task: TaskId, result: AttemptResult, at: Instant) {
        self.shared.observed.store(true, Ordering::Relaxed);
        let verdict = (self.shared.classify)(result);
        let transition = self.shared.lock().record(task, verdict, at);
        self.shared.announce(transition);
    }
}

impl BreakerShared {
    fn lock(&self) -> MutexGuard<'_, Machine> {
        // Only this module's arithmetic runs under the lock; a poisoned lock still holds
        // consistent counts.
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn announce(&self, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        let (from, to) = (transition.from, transition.to);
        match (to, transition.failure_rate) {
            (CircuitState::Open, Some(rate)) => tracing::warn!(
                target: "pool_core::circuit_breaker", %from, %to, failure_rate = rate,
                "circuit opened: calls fail fast until the cool-down ends"
            ),
            (CircuitState::Open, None) => tracing::warn!(
                target: "pool_core::circuit_breaker", %from, %to, "a probe failed: circuit opened again"
            ),
            _ => {
                tracing::info!(target: "pool_core::circuit_breaker", %from, %to, "circuit state changed")
            }
        }
        for listener in &self.listeners {
            listener(&transition);
        }
        self.changed.notify_waiters();
    }

    fn warn_if_unobserved(&self) {
        if !self.observed.load(Ordering::Relaxed)
            && !self.warned_unobserved.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "pool_core::circuit_breaker",
                "circuit breaker used as admission but not attached as an observer: it never \
                 learns outcomes (attach it with PolicyExt::with_policy)"
            );
        }
    }

    async fn acquire(self: Arc<Self>, task: TaskId) -> Result<AdmissionPermit, Rejection> {
        self.warn_if_unobserved();
        loop {
            // Registered before the check, so a change between check and wait is not missed.
            let changed = Arc::clone(&self.changed).notified_owned();
            let now = self.executor.now();
            let (decision, transition) = {
                let mut machine = self.lock();
                let transition = machine.expire_open(now);
                (machine.admit(task, now), transition)
            };
            self.announce(transition);
            let wait = match decision {
                Decision::Admit => return Ok(AdmissionPermit::empty()),
                Decision::Open { retry_after } => Some(retry_after),
                Decision::ProbesBusy => None,
            };
            if self.when_open == WhenOpen::FailFast {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let rejection = match wait {
                    Some(after) => open_rejection(after),
                    None => Rejection::new(
                        RejectionKind::CircuitOpen,
                        "the circuit is half-open and every probe call is taken",
                    ),
                };
                return Err(rejection);
            }
            match wait {
                Some(after) => self.executor.sleep(after).await,
                None => {
                    // Probes decide soon; the sleep is a safety net should a probe's outcome
                    // never arrive.
                    let fallback = self
                        .executor
                        .sleep(self.lock().thresholds.open_duration.min(deadline::NEVER));
                    let _ = select(Box::pin(changed), fallback).await;
                }
            }
        }
    }
}

/// The refusal of a call while the circuit is open, with the rest of the cool-down.
fn open_rejection(retry_after: Duration) -> Rejection {
    Rejection::new(
        RejectionKind::CircuitOpen,
        "the circuit is open after too many failures",
    )
    .retry_after(retry_after)
}

impl Admission for CircuitBreaker {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(Arc::clone(&self.shared).acquire(task.id))
    }

    /// While the circuit is open: rejects the task at once ([`WhenOpen::FailFast`], before
    /// any later policy books anything for it) or parks it until the cool-down ends
    /// ([`WhenOpen::Wait`]).
    fn precheck(&self, _task: &TaskInfo) -> Precheck {
        let shared = &self.shared;
        let now = shared.executor.now();
        let (open_until, transition) = {
            let mut machine = shared.lock();
            let transition = machine.expire_open(now);
            (machine.open_until(now), transition)
        };
        shared.announce(transition);
        match (open_until, shared.when_open) {
            (None, _) => Precheck::Proceed,
            (Some(until), WhenOpen::Wait) => Precheck::ParkUntil(until),
            (Some(until), WhenOpen::FailFast) => {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                Precheck::Reject(open_rejection(until - now))
            }
        }
    }
}

impl Observer for CircuitBreaker {
    fn on_attach(&self, _pool: PoolControl) {
        self.shared.observed.store(true, Ordering::Relaxed);
    }

    fn on_event(&self, event: &Event) {
        if let Event::AttemptFinished {
            task, result, at, ..
        } = event
        {
            self.record(task.id, *result, *at);
        }
    }
}

/// The numbers the state machine works with.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    failure_rate: f64,
    minimum_calls: u64,
    open_duration: Duration,
    half_open_probes: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probes: Vec<TaskId>, succeeded: u32 },
}

impl Phase {
    fn state(&self) -> CircuitState {
        match self {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Admit,
    Open { retry_after: Duration },
    ProbesBusy,
}

/// The pure state machine: no clock of its own, every method takes `now`.
#[derive(Debug)]
struct Machine {
    thresholds: Thresholds,
    phase: Phase,
    window: OutcomeWindow,
    opened: u64,
    half_opened: u64,
    closed: u64,
}

impl Machine {
    fn new(thresholds: Thresholds, window: OutcomeWindow) -> Self {
        Self {
            thresholds,
            phase: Phase::Closed,
            window,
            opened: 0,
            half_opened: 0,
            closed: 0,
        }
    }

    fn enter(&mut self, phase: Phase, at: Instant, failure_rate: Option<f64>) -> Transition {
        let from = self.phase.state();
        match phase {
            Phase::Closed => self.closed += 1,
            Phase::Open { .. } => self.opened += 1,
            Phase::HalfOpen { .. } => self.half_opened += 1,
        }
        self.phase = phase;
        Transition {
            from,
            to: self.phase.state(),
            at,
            failure_rate,
        }
    }

    /// Open -> half-open once the cool-down has passed.
    fn expire_open(&mut self, now: Instant) -> Option<Transition> {
        match self.phase {
            Phase::Open { until } if now >= until => Some(self.enter(
                Phase::HalfOpen {
                    probes: Vec::new(),
                    succeeded: 0,
                },
                now,
                None,
            )),
            _ => None,
        }
    }

    /// When an open circuit's cool-down ends, if it is open at `now`.
    fn open_until(&self, now: Instant) -> Option<Instant> {
        match self.phase {
            Phase::Open { until } if until > now => Some(until),
            _ => None,
        }
    }

    fn admit(&mut self, task: TaskId, now: Instant) -> Decision {
        let limit = self.thresholds.half_open_probes as usize;
        match &mut self.phase {
            Phase::Closed => Decision::Admit,
            Phase::Open { until } => Decision::Open {
                retry_after: until.saturating_duration_since(now),
            },
            Phase::HalfOpen { probes, .. } if probes.len() < limit => {
                probes.push(task);
                Decision::Admit
            }
            Phase::HalfOpen { .. } => Decision::ProbesBusy,
        }
    }

    fn record(&mut self, task: TaskId, verdict: CallVerdict, at: Instant) -> Option<Transition> {
        let open_until = deadline::after(at, self.thresholds.open_duration);
        match &mut self.phase {
            Phase::Closed => {
                match verdict {
                    CallVerdict::Success => self.window.record(false, at),
                    CallVerdict::Failure => self.window.record(true, at),
                    CallVerdict::Ignore => return None,
                }
                let (calls, failures) = self.window.totals(at);
                let rate = failures as f64 / calls.max(1) as f64;
                (calls >= self.thresholds.minimum_calls && rate >= self.thresholds.failure_rate)
                    .then(|| self.enter(Phase::Open { until: open_until }, at, Some(rate)))
            }
            // Attempts admitted before the circuit opened say nothing the window did not.
            Phase::Open { .. } => None,
            Phase::HalfOpen { probes, succeeded } => {
                // Only probes decide; late outcomes of attempts admitted while closed do not.
                let index = probes.iter().position(|probe| *probe == task)?;
                match verdict {
                    CallVerdict::Ignore => {
                        // Cancelled or refused by a later policy: free the probe slot.
                        probes.swap_remove(index);
                        None
                    }
                    CallVerdict::Failure => {
                        Some(self.enter(Phase::Open { until: open_until }, at, None))
                    }
                    CallVerdict::Success => {
                        *succeeded += 1;
                        if *succeeded < self.thresholds.half_open_probes {
                            return None;
                        }
                        self.window.clear();
                        Some(self.enter(Phase::Closed, at, None))
                    }
                }
            }
        }
    }

    fn snapshot(&self, now: Instant) -> CircuitSnapshot {
        let (calls, failures) = self.window.totals(now);
        CircuitSnapshot {
            state: self.phase.state(),
            calls,
            failures,
            opened: self.opened,
            half_opened: self.half_opened,
            closed: self.closed,
            rejected: 0,
        }
    }
}

const WINDOW_SLICES: u64 = 10;

/// Successes and failures over a sliding time window, kept in ten slices.
#[derive(Debug)]
struct OutcomeWindow {
    origin: Instant,
    slice: Duration,
    /// (slice index since origin, calls, failures), oldest first.
    slices: VecDeque<(u64, u64, u64)>,
}

impl OutcomeWindow {
    fn new(window: Duration, origin: Instant) -> Self {
        let slice = (window / WINDOW_SLICES as u32).max(Duration::from_nanos(1));
        Self {
            origin,
            slice,
            slices: VecDeque::with_capacity(WINDOW_SLICES as usize),
        }
    }

    fn index(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.slice.as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_current(index: u64, now_index: u64) -> bool {
        now_index.saturating_sub(index) < WINDOW_SLICES
    }

    fn record(&mut self, failure: bool, at: Instant) {
        let index = self.index(at);
        while self
            .slices
            .front()
            .is_some_and(|&(first, ..)| !Self::is_current(first, index))
        {
            self.slices.pop_front();
        }
        let slot = match self.slices.iter_mut().find(|(i, ..)| *i == index) {
            Some(slot) => slot,
            None => {
                self.slices.push_back((index, 0, 0));
                self.slices.back_mut().expect("just pushed")
            }
        };
        slot.1 += 1;
        slot.2 += u64::from(failure);
    }

    /// (calls, failures) in the window ending at `now`.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let now_index = self.index(now);
        self.slices
            .iter()
            .filter(|(index, ..)| Self::is_current(*index, now_index))
            .fold((0, 0), |(calls, failures), (_, c, f)| {
                (calls + c, failures + f)
            })
    }

    fn clear(&mut self) {
        self.slices.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(origin: Instant) -> Machine {
        Machine::new(
            Thresholds {
                failure_rate: 0.5,
                minimum_calls: 4,
                open_duration: Duration::from_secs(5),
                half_open_probes: 2,
            },
            OutcomeWindow::new(Duration::from_secs(10), origin),
        )
    }

    #[test]
    fn opens_only_once_the_minimum_number_of_calls_is_reached() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 0..3 {
            assert_eq!(m.record(TaskId(i), CallVerdict::Failure, t0), None);
        }
        let opened = m
            .record(TaskId(3), CallVerdict::Failure, t0)
            .expect("opens");
        assert_eq!(
            (opened.from, opened.to),
            (CircuitState::Closed, CircuitState::Open)
        );
        assert_eq!(opened.failure_rate, Some(1.0));
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 0..3 {
            m.record(TaskId(i), CallVerdict::Failure, t0);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(m.window.totals(later), (0, 0));
        assert_eq!(m.record(TaskId(9), CallVerdict::Failure, later), None);
        assert_eq!(m.window.totals(later), (1, 1));
    }

    #[test]
    fn below_the_threshold_the_circuit_stays_closed() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 0..30 {
            let verdict = if i % 3 == 2 {
                CallVerdict::Failure
            } else {
                CallVerdict::Success
            };
            assert_eq!(m.record(TaskId(i), verdict, t0), None);
        }
        assert_eq!(m.phase, Phase::Closed);
    }

    #[test]
    fn half_open_admits_only_the_probes_then_closes_after_they_succeed() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 0..4 {
            m.record(TaskId(i), CallVerdict::Failure, t0);
        }
        let early = t0 + Duration::from_secs(4);
        assert_eq!(m.expire_open(early), None);
        assert_eq!(
            m.admit(TaskId(10), early),
            Decision::Open {
                retry_after: Duration::from_secs(1)
            }
        );
        let cooled = t0 + Duration::from_secs(5);
        assert!(m.expire_open(cooled).is_some());
        assert_eq!(m.admit(TaskId(10), cooled), Decision::Admit);
        assert_eq!(m.admit(TaskId(11), cooled), Decision::Admit);
        assert_eq!(m.admit(TaskId(12), cooled), Decision::ProbesBusy);
        // A straggler's outcome does not decide.
        assert_eq!(m.record(TaskId(2), CallVerdict::Success, cooled), None);
        assert_eq!(m.record(TaskId(10), CallVerdict::Success, cooled), None);
        let closed = m
            .record(TaskId(11), CallVerdict::Success, cooled)
            .expect("closes");
        assert_eq!(
            (closed.from, closed.to),
            (CircuitState::HalfOpen, CircuitState::Closed)
        );
        assert_eq!(m.window.totals(cooled), (0, 0));
        assert_eq!((m.opened, m.half_opened, m.closed), (1, 1, 1));
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_for_another_cool_down() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 0..4 {
            m.record(TaskId(i), CallVerdict::Failure, t0);
        }
        let cooled = t0 + Duration::from_secs(5);
        m.expire_open(cooled);
        assert_eq!(m.admit(TaskId(20), cooled), Decision::Admit);
        let probe_failed = cooled + Duration::from_secs(1);
        let reopened = m
            .record(TaskId(20), CallVerdict::Failure, probe_failed)
            .expect("reopens");
        assert_eq!(reopened.to, CircuitState::Open);
        assert_eq!(
            m.admit(TaskId(21), probe_failed),
            Decision::Open {
                retry_after: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn an_ignored_probe_frees_its_slot() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 0..4 {
            m.record(TaskId(i), CallVerdict::Failure, t0);
        }
        let cooled = t0 + Duration::from_secs(5);
        m.expire_open(cooled);
        assert_eq!(m.admit(TaskId(30), cooled), Decision::Admit);
        assert_eq!(m.admit(TaskId(31), cooled), Decision::Admit);
        assert_eq!(m.admit(TaskId(32), cooled), Decision::ProbesBusy);
        assert_eq!(m.record(TaskId(30), CallVerdict::Ignore, cooled), None);
        assert_eq!(m.admit(TaskId(32), cooled), Decision::Admit);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let executor: Arc<dyn Executor> = Arc::new(crate::SimExecutor::new());
        for config in [
            CircuitBreakerConfig::new().failure_rate(0.0),
            CircuitBreakerConfig::new().failure_rate(f64::NAN),
            CircuitBreakerConfig::new().failure_rate(1.5),
            CircuitBreakerConfig::new().minimum_calls(0),
            CircuitBreakerConfig::new().half_open_probes(0),
            CircuitBreakerConfig::new().window(Duration::ZERO),
            CircuitBreakerConfig::new().open_duration(Duration::ZERO),
        ] {
            assert!(CircuitBreaker::new(config, executor.clone()).is_err());
        }
    }
}
