//! Property tests: random mixes of tasks and control calls on the deterministic executor, with
//! a random schedule (seeded), checking the pool's promises on every step.
//!
//! The default run checks a few hundred cases; `cargo test -p pool-core --test suite
//! properties -- --ignored` runs 10,000.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, ErrorClass, Event, Executor,
    Observer, Pool, Precheck, Rejection, Retryable, SimExecutor, TaskError, TaskId, TaskInfo,
    TaskOptions,
};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scripted {0:?}")]
struct Scripted(ErrorClass);

impl Retryable for Scripted {
    fn error_class(&self) -> ErrorClass {
        self.0
    }
}

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok,
    Retryable,
    Fatal,
    Panic,
    /// Never finishes on its own: only a timeout, cancellation or stop_now ends it.
    Hang,
    /// Fails on the first attempt, succeeds after.
    FlakyOnce,
}

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        priority: i8,
        duration_ms: u16,
        behaviour: Behaviour,
        retries: u32,
        cancellable: bool,
    },
    SetConcurrency(usize),
    Pause,
    Resume,
    Cancel(usize),
    Advance(u16),
    Stop,
    StopNow,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        6 => Just(Behaviour::Ok),
        2 => Just(Behaviour::Retryable),
        1 => Just(Behaviour::Fatal),
        1 => Just(Behaviour::Panic),
        1 => Just(Behaviour::Hang),
        2 => Just(Behaviour::FlakyOnce),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (any::<i8>(), 0u16..200, behaviour(), 0u32..3, any::<bool>()).prop_map(
            |(priority, duration_ms, behaviour, retries, cancellable)| Op::Enqueue {
                priority: priority % 4,
                duration_ms,
                behaviour,
                retries,
                cancellable,
            }
        ),
        2 => (1usize..8).prop_map(Op::SetConcurrency),
        1 => Just(Op::Pause),
        2 => Just(Op::Resume),
        1 => (0usize..64).prop_map(Op::Cancel),
        4 => (0u16..300).prop_map(Op::Advance),
        1 => Just(Op::Stop),
        1 => Just(Op::StopNow),
    ]
}

/// Checks, as events arrive, what must hold at every step.
#[derive(Debug, Default)]
struct Invariants {
    violations: Mutex<Vec<String>>,
    finished: Mutex<BTreeMap<u64, u32>>,
}

impl Observer for Invariants {
    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            *self
                .finished
                .lock()
                .unwrap()
                .entry(record.task.id.0)
                .or_default() += 1;
        }
    }
}

impl Invariants {
    fn violate(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

/// An admission policy that parks some attempts (by task id) for 0–60 ms before letting
/// them through, so deferral runs beside retries, cancellation, pause and stop.
#[derive(Debug)]
struct Deferring {
    executor: SimExecutor,
    granted: Mutex<BTreeMap<TaskId, std::time::Instant>>,
}

impl Admission for Deferring {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(std::future::ready(Ok(AdmissionPermit::empty())))
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        let now = self.executor.now();
        let mut granted = self.granted.lock().unwrap();
        match granted.get(&task.id) {
            Some(until) if *until > now => Precheck::ParkUntil(*until),
            Some(_) => {
                granted.remove(&task.id);
                Precheck::Proceed
            }
            None => {
                let until = now + Duration::from_millis(task.id.0 % 3 * 30);
                granted.insert(task.id, until);
                Precheck::ParkUntil(until)
            }
        }
    }
}

struct Tracked {
    handle: pool_core::TaskHandle<u32, Scripted>,
    attempts: Arc<AtomicU32>,
    retries: u32,
    token: Option<CancellationToken>,
}

/// Scripted panics are expected by the hundred; keep them out of the test output.
fn quiet_scripted_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"scripted panic") {
                default(info);
            }
        }));
    });
}

fn run_case(
    ops: Vec<Op>,
    seed: u64,
    initial_concurrency: usize,
    defer: bool,
) -> Result<(), TestCaseError> {
    quiet_scripted_panics();
    let sim = SimExecutor::with_seed(seed);
    let invariants = Arc::new(Invariants::default());
    let mut builder = Pool::builder();
    if defer {
        builder = builder.admission(Deferring {
            executor: sim.clone(),
            granted: Mutex::default(),
        });
    }
    let pool = builder
        .executor(sim.clone())
        .concurrency(initial_concurrency)
        .retry_delay(Duration::from_millis(20))
        .timeout(Duration::from_millis(500))
        .seed(seed)
        .observer_arc(invariants.clone())
        .build()
        .expect("valid settings");
    let in_flight = Arc::new(AtomicUsize::new(0));
    // A task popped just before the limit shrank may start right after, at the same virtual
    // instant: the limit it was admitted under is the one before the change.
    let shrunk_at: Arc<Mutex<Option<(std::time::Instant, usize)>>> = Arc::default();
    let env = sim.clone();
    let outcome = sim.try_block_on(async move {
        let mut tracked: Vec<Tracked> = Vec::new();
        for op in ops {
            match op {
                Op::Enqueue {
                    priority,
                    duration_ms,
                    behaviour,
                    retries,
                    cancellable,
                } => {
                    let attempts = Arc::new(AtomicU32::new(0));
                    let token = cancellable.then(CancellationToken::new);
                    let (clock, attempts2, in_flight, control, invariants, shrunk_at) = (
                        env.clone(),
                        attempts.clone(),
                        in_flight.clone(),
                        pool.control(),
                        invariants.clone(),
                        shrunk_at.clone(),
                    );
                    let mut options = TaskOptions::new()
                        .priority(i32::from(priority))
                        .retries(retries);
                    if let Some(token) = &token {
                        options = options.cancellation(token.clone());
                    }
                    let handle = pool.enqueue(
                        move || {
                            let attempt = attempts2.fetch_add(1, Ordering::SeqCst) + 1;
                            let now_running = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            let before_shrink = match *shrunk_at.lock().unwrap() {
                                Some((at, limit)) if at == clock.now() => limit,
                                _ => 0,
                            };
                            if now_running > control.concurrency().max(before_shrink) {
                                invariants.violate(format!(
                                    "started with {now_running} in flight over limit {}",
                                    control.concurrency()
                                ));
                            }
                            let (clock, in_flight) = (clock.clone(), in_flight.clone());
                            async move {
                                struct Leave(Arc<AtomicUsize>);
                                impl Drop for Leave {
                                    fn drop(&mut self) {
                                        self.0.fetch_sub(1, Ordering::SeqCst);
                                    }
                                }
                                let _leave = Leave(in_flight);
                                let duration = Duration::from_millis(u64::from(duration_ms));
                                match behaviour {
                                    Behaviour::Hang => {
                                        clock.sleep(Duration::from_secs(86_400)).await;
                                        Ok(0)
                                    }
                                    Behaviour::Panic => panic!("scripted panic"),
                                    _ => {
                                        clock.sleep(duration).await;
                                        match behaviour {
                                            Behaviour::Retryable => {
                                                Err(Scripted(ErrorClass::Retryable))
                                            }
                                            Behaviour::Fatal => Err(Scripted(ErrorClass::Fatal)),
                                            Behaviour::FlakyOnce if attempt == 1 => {
                                                Err(Scripted(ErrorClass::Throttled))
                                            }
                                            _ => Ok(attempt),
                                        }
                                    }
                                }
                            }
                        },
                        options,
                    );
                    tracked.push(Tracked {
                        handle,
                        attempts,
                        retries,
                        token,
                    });
                }
                Op::SetConcurrency(n) => {
                    let now = env.now();
                    let mut shrunk = shrunk_at.lock().unwrap();
                    let before = match *shrunk {
                        Some((at, limit)) if at == now => limit.max(pool.concurrency()),
                        _ => pool.concurrency(),
                    };
                    *shrunk = Some((now, before));
                    drop(shrunk);
                    pool.set_concurrency(n).expect("n >= 1");
                }
                Op::Pause => pool.pause(),
                Op::Resume => pool.resume(),
                Op::Cancel(i) => {
                    if let Some(token) = tracked.get(i).and_then(|t| t.token.as_ref()) {
                        token.cancel();
                    }
                }
                Op::Advance(ms) => env.sleep(Duration::from_millis(u64::from(ms))).await,
                Op::Stop => pool.stop_now_or_stop(false),
                Op::StopNow => pool.stop_now_or_stop(true),
            }
        }
        // Let everything finish: resume, then wait for every handle.
        pool.resume();
        let enqueued = tracked.len() as u64;
        for (index, task) in tracked.into_iter().enumerate() {
            let result = task.handle.await;
            let attempts = task.attempts.load(Ordering::SeqCst);
            if attempts > task.retries + 1 {
                invariants.violate(format!(
                    "task {index}: {attempts} attempts with {} retries",
                    task.retries
                ));
            }
            if let Err(TaskError::Failed {
                attempts: reported, ..
            }) = &result
            {
                if *reported != attempts {
                    invariants.violate(format!(
                        "task {index}: reported {reported} attempts, ran {attempts}"
                    ));
                }
            }
        }
        pool.drain().await;
        let stats = pool.stats();
        if !stats.in_balance() || stats.resolved() != enqueued || stats.enqueued != enqueued {
            invariants.violate(format!("counters do not add up: {stats:?}"));
        }
        if in_flight.load(Ordering::SeqCst) != 0 {
            invariants.violate("a task future was never dropped".into());
        }
        let finished = invariants.finished.lock().unwrap().clone();
        if finished.len() as u64 != enqueued || finished.values().any(|n| *n != 1) {
            invariants.violate(format!(
                "every task must finish exactly once: {} of {enqueued} finished, repeats {:?}",
                finished.len(),
                finished
                    .iter()
                    .filter(|(_, n)| **n != 1)
                    .collect::<Vec<_>>()
            ));
        }
        invariants.violations.lock().unwrap().clone()
    });
    match outcome {
        Ok(violations) => {
            prop_assert!(violations.is_empty(), "{violations:#?}");
            Ok(())
        }
        Err(deadlock) => Err(TestCaseError::fail(format!(
            "a handle never resolved: {deadlock}"
        ))),
    }
}

/// Stop or stop_now, for the property driver.
trait StopEither {
    fn stop_now_or_stop(&self, now: bool);
}

impl StopEither for Pool {
    fn stop_now_or_stop(&self, now: bool) {
        if now {
            self.stop_now();
        } else {
            // `stop().await` waits for running tasks; the driver keeps going instead and
            // checks everything at the end.
            let pool = self.clone();
            let _ = futures::FutureExt::now_or_never(async move { pool.stop().await });
        }
    }
}

fn cases() -> impl Strategy<Value = (Vec<Op>, u64, usize, bool)> {
    (
        prop::collection::vec(op(), 1..60),
        any::<u64>(),
        1usize..6,
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_task_resolves_once_within_limits((ops, seed, concurrency, defer) in cases()) {
        run_case(ops, seed, concurrency, defer)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "nightly: 10,000 cases; run with --ignored"]
    fn every_task_resolves_once_within_limits_10k((ops, seed, concurrency, defer) in cases()) {
        run_case(ops, seed, concurrency, defer)?;
    }
}

/// With aging off and no failures, a task never starts while a strictly higher priority
/// task is waiting.
#[test]
fn priority_order_holds_under_random_schedules() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec((0i32..5, 1u16..50), 1..80),
        any::<u64>(),
        1usize..4,
    );
    runner
        .run(&strategy, |(tasks, seed, concurrency)| {
            let sim = SimExecutor::with_seed(seed);
            let pool = Pool::builder()
                .executor(sim.clone())
                .concurrency(concurrency)
                .max_aging_boost(0.0)
                .build()
                .unwrap();
            let waiting: Arc<Mutex<Vec<(usize, i32)>>> = Arc::default();
            let violations: Arc<Mutex<Vec<String>>> = Arc::default();
            let clock = sim.clone();
            sim.block_on(async move {
                // Queue everything first, so every start is a real choice among waiters.
                pool.pause();
                let handles: Vec<_> = tasks
                    .iter()
                    .enumerate()
                    .map(|(index, &(priority, ms))| {
                        waiting.lock().unwrap().push((index, priority));
                        let (waiting, violations, clock) =
                            (waiting.clone(), violations.clone(), clock.clone());
                        pool.enqueue(
                            move || {
                                let mut waiting = waiting.lock().unwrap();
                                waiting.retain(|(i, _)| *i != index);
                                // Tasks popped in the same round start in any order, so
                                // up to `concurrency - 1` higher ones may not have started
                                // yet; more would mean one was passed over.
                                let higher: Vec<_> =
                                    waiting.iter().filter(|(_, p)| *p > priority).collect();
                                if higher.len() >= concurrency {
                                    violations.lock().unwrap().push(format!(
                                        "task {index} (priority {priority}) started while {higher:?} waited"
                                    ));
                                }
                                let clock = clock.clone();
                                async move {
                                    clock.sleep(Duration::from_millis(u64::from(ms))).await;
                                    Ok::<_, Scripted>(0)
                                }
                            },
                            TaskOptions::new().priority(priority),
                        )
                    })
                    .collect();
                pool.resume();
                for handle in handles {
                    handle.await.unwrap();
                }
                let violations = violations.lock().unwrap().clone();
                prop_assert!(violations.is_empty(), "{violations:#?}");
                Ok(())
            })
        })
        .unwrap();
}
