//! The multi-threaded stress test: producers and control threads against one pool, with every
//! kind of task (succeeding, failing, retrying, timing out, panicking in the closure, the
//! future or the captured state's `Drop`; deferred, kept waiting, rejected or panicked on by
//! admission; cancelled), and a stop at a random moment; then every promise is checked.
//!
//! `STRESS_ROUNDS` (default 12) and `STRESS_SEED` (default: fixed) widen or replay a run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, ErrorClass, Event, Metadata,
    Observer, Pool, Precheck, Rejection, RejectionKind, TaskHandle, TaskId, TaskInfo, TaskOptions,
};

use super::{kind, runtime, within, Failure};

/// Counts, per task, how many times it finished (observers hear of every resolution).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    finished: Arc<Mutex<HashMap<TaskId, u32>>>,
}

impl Observer for Tally {
    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            *self
                .finished
                .lock()
                .unwrap()
                .entry(record.task.id)
                .or_insert(0) += 1;
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
}

fn produce(
    pool: &Pool,
    seed: u64,
    tasks: usize,
    tokens: &Mutex<Vec<CancellationToken>>,
) -> Produced {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let behaviour = BEHAVIOURS[rng.usize(0..BEHAVIOURS.len())];
        let mut options = TaskOptions::new()
            .priority(rng.i32(-2..3))
            .retries(rng.u32(0..3))
            .timeout(Duration::from_millis(rng.u64(1..6)));
        if let Some(label) = label(&mut rng) {
            options = options.metadata(Metadata::new().with("admission", label));
        }
        if rng.u8(0..4) == 0 {
            let token = CancellationToken::new();
            tokens.lock().unwrap().push(token.clone());
            options = options.cancellation(token);
        }
        let value = i as u32;
        let first = Arc::new(AtomicBool::new(true));
        let loud = (rng.u8(0..16) == 0).then(|| LoudDrop);
        handles.push(pool.enqueue(
            move || {
                let _ = &loud;
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
    Produced { handles }
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
    let tally = Tally::default();
    let budget = rng.bool();
    let pool = Pool::builder()
        .concurrency(rng.usize(1..=64))
        .retry_delay(Duration::from_micros(rng.u64(1..1_500)))
        .max_retry_delay(Duration::from_millis(2))
        .admission(Chaos)
        .observer(tally.clone())
        .seed(seed);
    let pool = if budget { pool } else { pool.no_retry_budget() };
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
        for handle in joined(producer).handles {
            handles += 1;
            let result = within("a handle", handle).await;
            *kinds.entry(kind(&result)).or_default() += 1;
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
    assert_eq!(stats.resolved(), handles, "{context}");
    let finished = tally.finished.lock().unwrap();
    assert_eq!(
        finished.len() as u64,
        handles,
        "every task finished: {context}"
    );
    let twice: Vec<_> = finished.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "resolved more than once: {twice:?}; {context}"
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
    thread.join().unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        panic!("a stress thread panicked: {message}")
    })
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
            // Only where the stress test expects them: on the runtime's workers and its own
            // threads. A panic on the test's thread (a task resolved there, say) still prints.
            let thread = std::thread::current();
            let expected_thread = thread
                .name()
                .is_some_and(|name| name.starts_with("tokio-") || name.starts_with("stress-"));
            if !(expected_thread && message.starts_with("stress ")) {
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
        .unwrap_or(12u64);
    let base = std::env::var("STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    quiet_expected_panics();
    let runtime = runtime(4);
    for r in 0..rounds {
        runtime.block_on(round(base.wrapping_add(r), 1_000));
    }
}
