//! The circuit breaker: settings and reports (`config.rs`), the pure state machine over a
//! sliding window of outcomes (`machine.rs`), and here the handle that makes it an admission
//! policy.

mod config;
mod machine;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::select;
use tokio::sync::Notify;

use crate::admission::{Admission, AdmissionPermit, Precheck, Rejection, RejectionKind};
use crate::deadline;
use crate::error::ConfigError;
use crate::executor::{BoxFuture, Executor};
use crate::observer::TaskInfo;
use crate::outcome::AttemptResult;

pub use config::{CircuitBreakerConfig, CircuitSnapshot, CircuitState, Transition, WhenOpen};
use config::{FailureTest, TransitionListener};
use machine::{Decision, Machine, ProbeRound, Thresholds, Verdict};

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
/// An [`Admission`] policy: asked before every attempt, and told how each attempt it
/// admitted ended ([`Admission::complete`]) — the permit of a probe says it is one. While
/// open, attempts resolve with [`TaskError::Rejected`](crate::TaskError::Rejected) of kind
/// [`RejectionKind::CircuitOpen`] (or wait: [`WhenOpen::Wait`]). Which results are failures
/// is configurable ([`CircuitBreakerConfig::failure_when`], default
/// [`AttemptResult::is_backend_failure`]); attempts [cut short](AttemptResult::is_cut_short)
/// never count.
///
/// State changes are traced, given to [`CircuitBreakerConfig::on_transition`] listeners, and
/// counted in [`snapshot`](Self::snapshot) for metrics.
///
/// Cheap to clone: clones share one circuit. Timing uses the given executor's clock, so it
/// runs on virtual time in tests. Several pools may share one breaker (one backend).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pool_core::policy::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
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
///     .admission(breaker.clone())
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
    when_open: WhenOpen,
    is_failure: FailureTest,
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
        let thresholds = Thresholds {
            failure_rate: config.failure_rate,
            minimum_calls: u64::from(config.minimum_calls),
            open_duration: config.open_duration,
            half_open_probes: config.half_open_probes,
        };
        let machine = Machine::new(thresholds, config.window, executor.now());
        Ok(Self {
            shared: Arc::new(BreakerShared {
                executor,
                machine: Mutex::new(machine),
                changed: Arc::new(Notify::new()),
                rejected: AtomicU64::new(0),
                when_open: config.when_open,
                is_failure: config.is_failure,
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
}

/// The permit of a probe: it says which half-open round it belongs to, and frees its place
/// if it is dropped without an outcome (its runner dropped mid-attempt).
struct Probe {
    shared: Arc<BreakerShared>,
    round: ProbeRound,
    ended: bool,
}

impl Probe {
    fn end(mut self, verdict: Verdict) {
        self.ended = true;
        let now = self.shared.executor.now();
        let transition = self.shared.lock().probe_ended(self.round, verdict, now);
        self.shared.announce(transition);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.ended {
            let now = self.shared.executor.now();
            let transition = self
                .shared
                .lock()
                .probe_ended(self.round, Verdict::Ignore, now);
            self.shared.announce(transition);
        }
    }
}

impl BreakerShared {
    fn lock(&self) -> MutexGuard<'_, Machine> {
        // Only the machine's arithmetic runs under the lock; a poisoned lock still holds
        // consistent counts.
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verdict(&self, result: AttemptResult) -> Verdict {
        if result.is_cut_short() {
            Verdict::Ignore
        } else if (self.is_failure)(result) {
            Verdict::Failure
        } else {
            Verdict::Success
        }
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

    async fn acquire(self: Arc<Self>) -> Result<AdmissionPermit, Rejection> {
        loop {
            // Registered before the check, so a change between check and wait is not missed.
            let changed = Arc::clone(&self.changed).notified_owned();
            let now = self.executor.now();
            let (decision, transition) = {
                let mut machine = self.lock();
                let transition = machine.expire_open(now);
                (machine.admit(now), transition)
            };
            self.announce(transition);
            let wait = match decision {
                Decision::Admit(None) => return Ok(AdmissionPermit::empty()),
                Decision::Admit(Some(round)) => {
                    return Ok(AdmissionPermit::holding(Probe {
                        shared: Arc::clone(&self),
                        round,
                        ended: false,
                    }))
                }
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
                    // Probes decide soon; the sleep is a safety net should no probe's
                    // outcome wake this wait.
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
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(Arc::clone(&self.shared).acquire())
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

    /// Counts the attempt: a probe decides its half-open round; any other call counts in the
    /// window while the circuit is closed.
    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        let shared = &self.shared;
        let verdict = shared.verdict(*result);
        match permit.downcast::<Probe>() {
            Ok(probe) => probe.end(verdict),
            Err(_call) => {
                let now = shared.executor.now();
                let transition = shared.lock().record(verdict, now);
                shared.announce(transition);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{ErrorClass, TaskId};
    use futures_util::FutureExt;

    fn task() -> TaskInfo {
        TaskInfo::new(TaskId(0))
    }

    /// An attempt admitted now, if the breaker admits it without waiting.
    fn admitted(breaker: &CircuitBreaker) -> Option<AdmissionPermit> {
        breaker.acquire(&task()).now_or_never()?.ok()
    }

    #[test]
    fn a_probe_dropped_without_its_result_frees_its_place() {
        let sim = crate::SimExecutor::new();
        let config = CircuitBreakerConfig::new()
            .minimum_calls(1)
            .half_open_probes(1);
        let breaker = CircuitBreaker::new(config, Arc::new(sim.clone())).unwrap();
        let call = admitted(&breaker).expect("closed");
        breaker.complete(call, &AttemptResult::Failed(ErrorClass::Retryable));
        assert_eq!(breaker.state(), CircuitState::Open);
        sim.block_on(sim.sleep(Duration::from_secs(5)));
        let probe = admitted(&breaker).expect("the one probe");
        assert!(admitted(&breaker).is_none(), "its place is taken");
        // Its runner dropped mid-attempt (runtime shutdown): no result ever comes.
        drop(probe);
        let probe = admitted(&breaker).expect("the place is free again");
        breaker.complete(probe, &AttemptResult::Succeeded);
        assert_eq!(breaker.state(), CircuitState::Closed);
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
