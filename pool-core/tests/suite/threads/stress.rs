//! The multi-threaded stress test: producers and control threads against one pool, with every
//! kind of task (succeeding, failing, retrying, timing out, panicking in the closure, the
//! future or the captured state's `Drop`; deferred, kept waiting, rejected or panicked on by
//! admission; cancelled; with deadlines, earliest-deadline-first and shedding), and a stop at
//! a random moment; then every promise is checked.
//!
//! `STRESS_ROUNDS` (default 30) and `STRESS_SEED` (default: fixed) widen or replay a run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, ErrorClass, Event, EventKind,
    Metadata, Observer, Outcome, Pool, Precheck, Rejection, RejectionKind, TaskError, TaskHandle,
    TaskId, TaskInfo, TaskOptions, TenantConfig,
};

use super::{kind, runtime, within, Failure};

/// Every task's finishes as observers hear of them: how it ended, its labels, and whether the
/// pool was being stopped then.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    finished: Arc<Mutex<HashMap<TaskId, Vec<Finish>>>>,
    /// Set just before `stop` or `stop_now` is called.
    stopping: Arc<AtomicBool>,
    /// Wants every kind of event; otherwise only `TaskFinished` (then the pool takes tasks
    /// into its intake without the lock while saturated: `TaskQueued` reports the queue's
    /// length, so a pool whose observers want it takes the lock for every task).
    every_event: bool,
}

#[derive(Debug, Clone)]
struct Finish {
    outcome: Outcome,
    labels: Metadata,
    stopping: bool,
}

impl Observer for Tally {
    fn wants(&self, kind: EventKind) -> bool {
        self.every_event || kind == EventKind::TaskFinished
    }

    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            let finish = Finish {
                outcome: record.outcome,
                labels: record.task.metadata.clone(),
                stopping: self.stopping.load(Ordering::SeqCst),
            };
            self.finished
                .lock()
                .unwrap()
                .entry(record.task.id)
                .or_default()
                .push(finish);
        }
    }
}

impl Finish {
    /// Whether the task's behaviour and labels explain how it ended: `Stopped` only once the
    /// pool is stopping, `Cancelled` only with a token, and otherwise only what the task or
    /// its admission does — never a neighbour's panic or a slot given back under it.
    fn is_explained(&self) -> bool {
        use Outcome::*;
        match self.outcome {
            Stopped => return self.stopping,
            Cancelled => return self.labels.get("token").is_some(),
            DeadlineExceeded => return self.labels.get("deadline").is_some(),
            _ => {}
        }
        match self.labels.get("admission") {
            Some("panic") => return self.outcome == Panicked,
            Some("reject") => return self.outcome == Rejected,
            // Parked on every attempt: only a stop or a cancellation ends it.
            Some("defer") => return false,
            _ => {}
        }
        let timed_out = matches!(self.outcome, TimedOut | RetryBudgetExhausted);
        match self.labels.get("behaviour").unwrap_or_default() {
            "Ok" => self.outcome == Succeeded,
            "Sleeps" => self.outcome == Succeeded || timed_out,
            "Fatal" => self.outcome == Failed(ErrorClass::Fatal),
            "Retryable" => matches!(
                self.outcome,
                Failed(ErrorClass::Retryable) | RetryBudgetExhausted
            ),
            "FlakyOnce" => matches!(
                self.outcome,
                Succeeded | Failed(ErrorClass::Throttled) | RetryBudgetExhausted
            ),
            "Hangs" => timed_out,
            "PanicsInClosure" | "PanicsInFuture" => self.outcome == Panicked,
            other => panic!("unknown behaviour {other:?}"),
        }
    }
}

/// What a stress task does on each attempt.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok,
    Fatal,
    /// Fails retryably on every attempt.
    Retryable,
    /// Fails retryably on the first attempt, succeeds after.
    FlakyOnce,
    /// Sleeps up to 2 ms, then succeeds.
    Sleeps,
    /// Never finishes: its timeout (or cancellation, or `stop_now`) ends it.
    Hangs,
    PanicsInClosure,
    PanicsInFuture,
}

const BEHAVIOURS: [Behaviour; 8] = [
    Behaviour::Ok,
    Behaviour::Fatal,
    Behaviour::Retryable,
    Behaviour::FlakyOnce,
    Behaviour::Sleeps,
    Behaviour::Hangs,
    Behaviour::PanicsInClosure,
    Behaviour::PanicsInFuture,
];

/// Admission that defers some tasks (precheck parking), makes some wait, rejects some and
/// panics for some, by label.
#[derive(Debug)]
struct Chaos;

impl Admission for Chaos {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        let label = task.metadata.get("admission").map(str::to_owned);
        Box::pin(async move {
            match label.as_deref() {
                Some("wait") => {
                    tokio::time::sleep(Duration::from_micros(300)).await;
                    Ok(AdmissionPermit::empty())
                }
                Some("reject") => Err(Rejection::new(RejectionKind::RateLimited, "stress")),
                _ => Ok(AdmissionPermit::empty()),
            }
        })
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        match task.metadata.get("admission") {
            Some("defer") => {
                // Parks on every attempt, so a deferred task keeps coming back.
                Precheck::ParkUntil(Instant::now() + Duration::from_micros(500))
            }
            Some("panic") => panic!("stress precheck"),
            _ => Precheck::Proceed,
        }
    }
}

fn label(rng: &mut fastrand::Rng) -> Option<&'static str> {
    match rng.u8(0..20) {
        0..=2 => Some("defer"),
        3 => Some("wait"),
        4 => Some("reject"),
        5 => Some("panic"),
        _ => None,
    }
}

/// State captured by some tasks' closures that panics when the pool drops it (the task's
/// closure is dropped when it resolves).
struct LoudDrop;

impl Drop for LoudDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("stress drop");
        }
    }
}

struct Produced {
    handles: Vec<TaskHandle<u32, Failure>>,
    /// How many times each task's closure was called, by handle.
    calls: Vec<Arc<AtomicU32>>,
}

fn produce(
    pool: &Pool,
    seed: u64,
    tasks: usize,
    tokens: &Mutex<Vec<CancellationToken>>,
) -> Produced {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut handles = Vec::with_capacity(tasks);
    let mut calls = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let behaviour = BEHAVIOURS[rng.usize(0..BEHAVIOURS.len())];
        let mut options = TaskOptions::new()
            .priority(rng.i32(-2..3))
            .retries(rng.u32(0..3))
            .timeout(Duration::from_millis(rng.u64(1..6)));
        let mut labels = Metadata::new().with("behaviour", format!("{behaviour:?}"));
        if let Some(label) = label(&mut rng) {
            labels = labels.with("admission", label);
        }
        // Three named tenants (one capped at 2 in flight, one of weight 4), and tasks of
        // tenants nobody configured, and tasks without one.
        match rng.u8(0..5) {
            0 => options = options.tenant("capped"),
            1 => options = options.tenant("heavy"),
            2 => options = options.tenant(format!("user-{}", rng.u8(0..8))),
            _ => {}
        }
        if rng.u8(0..4) == 0 {
            let token = CancellationToken::new();
            tokens.lock().unwrap().push(token.clone());
            options = options.cancellation(token);
            labels = labels.with("token", "yes");
        }
        // Some tasks must be done within 0–8 ms: they race the queue, backoff, admission's
        // deferrals and waits, and their attempts.
        if rng.u8(0..4) == 0 {
            let within = Duration::from_micros(rng.u64(0..8_000));
            options = options.deadline(Instant::now() + within);
            labels = labels.with("deadline", "yes");
        }
        options = options.metadata(labels);
        let value = i as u32;
        let called = Arc::new(AtomicU32::new(0));
        calls.push(called.clone());
        let first = Arc::new(AtomicBool::new(true));
        let loud = (rng.u8(0..16) == 0).then(|| LoudDrop);
        handles.push(pool.enqueue(
            move || {
                let _ = &loud;
                called.fetch_add(1, Ordering::SeqCst);
                let first_attempt = first.swap(false, Ordering::SeqCst);
                if let Behaviour::PanicsInClosure = behaviour {
                    panic!("stress closure");
                }
                async move {
                    match behaviour {
                        Behaviour::Ok => Ok(value),
                        Behaviour::Fatal => Err(Failure(ErrorClass::Fatal)),
                        Behaviour::Retryable => Err(Failure(ErrorClass::Retryable)),
                        Behaviour::FlakyOnce if first_attempt => {
                            Err(Failure(ErrorClass::Throttled))
                        }
                        Behaviour::FlakyOnce => Ok(value),
                        Behaviour::Sleeps => {
                            tokio::time::sleep(Duration::from_micros(value as u64 % 2_000)).await;
                            Ok(value)
                        }
                        Behaviour::Hangs => std::future::pending().await,
                        Behaviour::PanicsInFuture => panic!("stress future"),
                        Behaviour::PanicsInClosure => unreachable!(),
                    }
                }
            },
            options,
        ));
        if rng.u8(0..64) == 0 {
            std::thread::yield_now();
        }
    }
    Produced { handles, calls }
}

/// Changes the limit (1–500), pauses and resumes, cancels tokens, until told to stop.
fn control(pool: &Pool, seed: u64, tokens: &Mutex<Vec<CancellationToken>>, done: &AtomicBool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !done.load(Ordering::SeqCst) {
        match rng.u8(0..5) {
            0 => pool.set_concurrency(rng.usize(1..=500)).unwrap(),
            1 => pool.pause(),
            2 => pool.resume(),
            _ => {
                let mut tokens = tokens.lock().unwrap();
                if !tokens.is_empty() {
                    let index = rng.usize(0..tokens.len());
                    tokens.swap_remove(index).cancel();
                }
            }
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..400)));
    }
}

/// One round: 3 producers × `tasks`, 2 control threads, `stop` or `stop_now` 0–25 ms in; the
/// retry budget on or off.
async fn round(seed: u64, tasks: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let tally = Tally {
        every_event: seed.is_multiple_of(2),
        ..Tally::default()
    };
    let budget = rng.bool();
    let pool = Pool::builder()
        .concurrency(rng.usize(1..=64))
        .retry_delay(Duration::from_micros(rng.u64(1..1_500)))
        .max_retry_delay(Duration::from_millis(2))
        .admission(Chaos)
        .observer(tally.clone())
        .tenant("capped", TenantConfig::new().max_in_flight(2))
        .tenant("heavy", TenantConfig::new().weight(4))
        .seed(seed);
    let pool = if budget { pool } else { pool.no_retry_budget() };
    let pool = match rng.u8(0..3) {
        0 => pool.earliest_deadline_first(),
        1 => pool.earliest_deadline_first().shed_doomed(),
        _ => pool,
    };
    let pool = pool.build().unwrap();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let (pool, tokens) = (pool.clone(), tokens.clone());
            named("stress-producer", move || {
                produce(&pool, seed ^ (p + 1), tasks, &tokens)
            })
        })
        .collect();
    let controls: Vec<_> = (0..2)
        .map(|c| {
            let (pool, tokens, done) = (pool.clone(), tokens.clone(), done.clone());
            named("stress-control", move || {
                control(&pool, seed ^ (c + 100), &tokens, &done)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_micros(rng.u64(0..25_000))).await;
    let stop_now = rng.bool();
    tally.stopping.store(true, Ordering::SeqCst);
    if stop_now {
        pool.stop_now();
    }
    within("stop", pool.stop()).await;
    done.store(true, Ordering::SeqCst);
    for control in controls {
        joined(control);
    }
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut handles = 0;
    for producer in producers {
        let produced = joined(producer);
        for (handle, called) in produced.handles.into_iter().zip(produced.calls) {
            handles += 1;
            let result = within("a handle", handle).await;
            *kinds.entry(kind(&result)).or_default() += 1;
            if let Err(TaskError::DeadlineExceeded { attempts, .. }) = &result {
                assert_eq!(
                    *attempts,
                    called.load(Ordering::SeqCst),
                    "a task past its deadline started no attempt it does not report \
                     (seed {seed})"
                );
            }
        }
    }
    within("drain after stop", pool.drain()).await;
    let stats = pool.stats();
    let context = format!("seed {seed} (stop_now: {stop_now}): {stats:?}, {kinds:?}");
    assert!(stats.in_balance(), "{context}");
    assert_eq!(
        (stats.queued, stats.active, stats.retrying, stats.deferred),
        (0, 0, 0, 0),
        "{context}"
    );
    assert_eq!(stats.enqueued, handles, "{context}");
    assert_eq!(
        stats.deadline_exceeded,
        kinds.get("deadline_exceeded").copied().unwrap_or(0),
        "{context}"
    );
    assert!(stats.shed <= stats.deadline_exceeded, "{context}");
    let tenants = pool.tenants();
    assert!(
        tenants.len() == 1 && tenants[0].queued == 0 && tenants[0].in_flight == 0,
        "every tenant's counts back to nothing: {tenants:?}; {context}"
    );
    assert_eq!(stats.resolved(), handles, "{context}");
    let finished = tally.finished.lock().unwrap();
    assert_eq!(
        finished.len() as u64,
        handles,
        "every task finished: {context}"
    );
    let twice: Vec<_> = finished.iter().filter(|(_, f)| f.len() != 1).collect();
    assert!(
        twice.is_empty(),
        "resolved more than once: {twice:?}; {context}"
    );
    let unexplained: Vec<_> = finished
        .iter()
        .filter(|(_, f)| !f[0].is_explained())
        .take(5)
        .collect();
    assert!(
        unexplained.is_empty(),
        "ended in a way their behaviour does not explain: {unexplained:?}; {context}"
    );
    println!("{context}");
}

fn named<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .expect("spawn a thread")
}

/// The thread's result; if it panicked, a panic here that says with what.
fn joined<T>(thread: std::thread::JoinHandle<T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| panic!("a stress thread panicked: {}", payload(&*panic)))
}

fn payload(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The stress test panics on purpose thousands of times; the default hook would print each.
/// Other panics (a failing assertion anywhere in the suite) still print.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or_default();
            // The pool contains them; one that escapes fails the round, which then says
            // with what (see `producers_and_controls_on_many_threads_keep_every_promise`).
            if !message.starts_with("stress ") {
                default(info);
            }
        }));
    });
}

#[test]
fn producers_and_controls_on_many_threads_keep_every_promise() {
    let rounds = std::env::var("STRESS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30u64);
    let base = std::env::var("STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    quiet_expected_panics();
    let runtime = runtime(4);
    for r in 0..rounds {
        let seed = base.wrapping_add(r);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(round(seed, 1_000));
        }));
        if let Err(panic) = outcome {
            panic!("the round of seed {seed} failed: {}", payload(&*panic));
        }
    }
}
