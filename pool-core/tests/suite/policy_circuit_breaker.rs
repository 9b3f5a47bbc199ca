//! The circuit breaker on a real pool, on virtual time.
#![cfg(feature = "circuit-breaker")]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::policy::{CircuitBreaker, CircuitBreakerConfig, CircuitState, Transition, WhenOpen};
use pool_core::{
    ErrorClass, Executor, Pool, RejectionKind, SimExecutor, TaskError, TaskHandle, TaskOptions,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Down,
    NotFound,
}

fn classify(error: &Backend) -> ErrorClass {
    match error {
        Backend::Down => ErrorClass::Retryable,
        Backend::NotFound => ErrorClass::Fatal,
    }
}

struct Setup {
    sim: SimExecutor,
    pool: Pool,
    breaker: CircuitBreaker,
    transitions: Arc<Mutex<Vec<Transition>>>,
    /// Whether the simulated backend fails.
    down: Arc<AtomicBool>,
    /// Attempts that reached the backend.
    calls: Arc<AtomicU32>,
}

fn setup(config: CircuitBreakerConfig) -> Setup {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let log = transitions.clone();
    let breaker = CircuitBreaker::new(
        config.on_transition(move |t| log.lock().unwrap().push(*t)),
        executor.clone(),
    )
    .expect("valid config");
    let pool = Pool::builder()
        .executor_arc(executor)
        .concurrency(4)
        .retries(0)
        .seed(1)
        .admission(breaker.clone())
        .build()
        .expect("valid pool");
    Setup {
        sim,
        pool,
        breaker,
        transitions,
        down: Arc::new(AtomicBool::new(true)),
        calls: Arc::new(AtomicU32::new(0)),
    }
}

impl Setup {
    /// One call taking 10 ms that fails with `failure` while the backend is down.
    fn call(&self, failure: Backend) -> TaskHandle<(), Backend> {
        let (down, calls, sim) = (self.down.clone(), self.calls.clone(), self.sim.clone());
        self.pool.enqueue_with(
            move || {
                let (down, calls, sim) = (down.clone(), calls.clone(), sim.clone());
                async move {
                    calls.fetch_add(1, Ordering::Relaxed);
                    sim.sleep(Duration::from_millis(10)).await;
                    if down.load(Ordering::Relaxed) {
                        Err(failure)
                    } else {
                        Ok(())
                    }
                }
            },
            TaskOptions::new(),
            classify,
        )
    }

    fn states(&self) -> Vec<(CircuitState, CircuitState)> {
        let transitions = self.transitions.lock().unwrap();
        transitions.iter().map(|t| (t.from, t.to)).collect()
    }
}

fn small_config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::new()
        .minimum_calls(10)
        .window(Duration::from_secs(10))
        .open_duration(Duration::from_secs(5))
        .half_open_probes(2)
}

#[test]
fn opens_after_the_failure_rate_then_fails_fast_without_calling_the_backend() {
    let s = setup(small_config());
    s.sim.block_on(async {
        for _ in 0..10 {
            assert!(matches!(
                s.call(Backend::Down).await,
                Err(TaskError::Failed { .. })
            ));
        }
        assert_eq!(s.breaker.state(), CircuitState::Open);
        let refused = s.call(Backend::Down).await;
        match refused {
            Err(TaskError::Rejected(rejection)) => {
                assert_eq!(rejection.kind, RejectionKind::CircuitOpen);
                let after = rejection.retry_after.expect("open circuits say when");
                assert!(after <= Duration::from_secs(5) && after > Duration::ZERO);
            }
            other => panic!("expected a CircuitOpen rejection, got {other:?}"),
        }
    });
    assert_eq!(
        s.calls.load(Ordering::Relaxed),
        10,
        "the refused call never ran"
    );
    let snapshot = s.breaker.snapshot();
    assert_eq!((snapshot.opened, snapshot.rejected), (1, 1));
    assert_eq!(s.states(), vec![(CircuitState::Closed, CircuitState::Open)]);
}

#[test]
fn fatal_errors_are_answers_and_do_not_open_the_circuit() {
    let s = setup(small_config());
    s.sim.block_on(async {
        for _ in 0..30 {
            assert!(s.call(Backend::NotFound).await.is_err());
        }
    });
    assert_eq!(s.breaker.state(), CircuitState::Closed);
    assert_eq!(s.breaker.snapshot().failures, 0);
}

#[test]
fn half_open_probes_close_the_circuit_when_the_backend_is_back() {
    let s = setup(small_config());
    s.sim.block_on(async {
        for _ in 0..10 {
            let _ = s.call(Backend::Down).await;
        }
        assert_eq!(s.breaker.state(), CircuitState::Open);
        s.down.store(false, Ordering::Relaxed);
        s.sim.sleep(Duration::from_secs(5)).await;
        // Four calls at once: two probes go through, two are refused while they run.
        let calls: Vec<_> = (0..4).map(|_| s.call(Backend::Down)).collect();
        let mut succeeded = 0;
        let mut refused = 0;
        for call in calls {
            match call.await {
                Ok(()) => succeeded += 1,
                Err(TaskError::Rejected(_)) => refused += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((succeeded, refused), (2, 2));
        assert_eq!(s.breaker.state(), CircuitState::Closed);
        assert!(s.call(Backend::Down).await.is_ok());
    });
    assert_eq!(
        s.states(),
        vec![
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
    let snapshot = s.breaker.snapshot();
    assert_eq!(
        (snapshot.opened, snapshot.half_opened, snapshot.closed),
        (1, 1, 1)
    );
}

#[test]
fn a_failing_probe_opens_the_circuit_for_another_cool_down() {
    let s = setup(small_config());
    s.sim.block_on(async {
        for _ in 0..10 {
            let _ = s.call(Backend::Down).await;
        }
        s.sim.sleep(Duration::from_secs(5)).await;
        assert_eq!(s.breaker.state(), CircuitState::HalfOpen);
        assert!(matches!(
            s.call(Backend::Down).await,
            Err(TaskError::Failed { .. })
        ));
        assert_eq!(s.breaker.state(), CircuitState::Open);
        s.sim.sleep(Duration::from_secs(4)).await;
        assert_eq!(s.breaker.state(), CircuitState::Open, "a fresh cool-down");
        s.sim.sleep(Duration::from_secs(1)).await;
        assert_eq!(s.breaker.state(), CircuitState::HalfOpen);
    });
    assert_eq!(s.breaker.snapshot().opened, 2);
}

#[test]
fn in_wait_mode_calls_wait_for_the_circuit_instead_of_failing() {
    let s = setup(small_config().when_open(WhenOpen::Wait));
    s.sim.block_on(async {
        for _ in 0..10 {
            let _ = s.call(Backend::Down).await;
        }
        let opened_at = s.sim.now();
        s.down.store(false, Ordering::Relaxed);
        let waiting: Vec<_> = (0..6).map(|_| s.call(Backend::Down)).collect();
        s.sim.sleep(Duration::from_millis(100)).await;
        let stats = s.pool.stats();
        assert_eq!(
            (stats.deferred, stats.active),
            (6, 0),
            "parked without slots while the circuit is open: {stats:?}"
        );
        for call in waiting {
            call.await
                .expect("every waiting call runs once the circuit lets it");
        }
        assert!(s.sim.now() - opened_at >= Duration::from_secs(5));
    });
    assert_eq!(s.breaker.state(), CircuitState::Closed);
    assert_eq!(s.breaker.snapshot().rejected, 0);
    assert_eq!(s.calls.load(Ordering::Relaxed), 16);
}

#[test]
fn an_open_duration_of_duration_max_opens_for_good() {
    // `Duration::MAX` means "never probe again": the circuit opens and stays open (it used to
    // overflow `Instant + Duration` in the observer, which was muted, so it never opened).
    let s = setup(small_config().open_duration(Duration::MAX));
    s.sim.block_on(async {
        for _ in 0..10 {
            assert!(s.call(Backend::Down).await.is_err());
        }
        assert_eq!(s.breaker.state(), CircuitState::Open);
        match s.call(Backend::Down).await {
            Err(TaskError::Rejected(rejection)) => {
                assert_eq!(rejection.kind, RejectionKind::CircuitOpen);
                let after = rejection.retry_after.expect("open circuits say when");
                assert!(
                    after > Duration::from_secs(50 * 365 * 24 * 3600),
                    "{after:?}"
                );
            }
            other => panic!("expected a CircuitOpen rejection, got {other:?}"),
        }
        // A year later it is still open.
        s.sim.advance(Duration::from_secs(365 * 24 * 3600));
        assert_eq!(s.breaker.state(), CircuitState::Open);
    });
    assert_eq!(s.calls.load(Ordering::Relaxed), 10);
    assert_eq!(s.states(), vec![(CircuitState::Closed, CircuitState::Open)]);
}
