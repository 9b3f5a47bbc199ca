//! The engine under a model checker: shuttle controls every interleaving of producer threads,
//! a control thread, the pool's runners and its timer at the engine's locks and atomics, and
//! checks the pool's promises at the end of each schedule. Some tasks are parked by their
//! admission policy until it fires a `Wakeup` from the control thread, so wakeups race the
//! parking, the timer, cancellations and `stop`; an aborter thread and the producers abort
//! handles (`TaskHandle::abort`), racing attempts that finish, retries being parked,
//! deferrals, limit changes, `stop`, `drain` and one another.
//!
//! Built only with `RUSTFLAGS="--cfg shuttle"` (the engine then takes its `Mutex` and atomics
//! from shuttle, see `src/sync.rs`); `cargo xtask test` runs a bounded budget and
//! `cargo xtask model-check --deep` a long one. Knobs (environment):
//! - `MODEL_CHECK_SECONDS`: time budget of each test (default 5);
//! - `MODEL_CHECK_ITERATIONS`: most schedules each test explores (default unbounded);
//! - `MODEL_CHECK_SEED`: the schedulers' seed (default fixed, so a run is reproducible);
//! - `MODEL_CHECK_REPLAY`: a failing schedule printed by an earlier run, replayed once.
//!
//! Why shuttle and not loom: the engine is async — runners and the timer are futures on an
//! executor — and shuttle ships an executor whose tasks it schedules like threads, so one
//! [`Executor`] over it puts every engine task under its control; its randomized and PCT
//! schedulers scale to a whole pool (dozens of lock acquisitions per schedule), where loom's
//! exhaustive search explodes; and loom would need every primitive below the engine (tokio's
//! `Notify`, tokio-util's `CancellationToken`) rebuilt on its types. What shuttle does not see
//! it treats as one atomic step: inside `Notify` and the token (tokio checks those with loom),
//! and user closures.
#![cfg(shuttle)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, ErrorClass, Event, EventKind,
    Executor, Jitter, Observer, Pool, Precheck, Rejection, Retryable, TaskError, TaskHandle,
    TaskId, TaskInfo, TaskOptions, TenantConfig, Wakeup,
};
use shuttle::rand::{thread_rng, Rng};
use shuttle::scheduler::{PctScheduler, Scheduler, UrwRandomScheduler};
use shuttle::sync::atomic::{AtomicU64, Ordering};
use shuttle::sync::Mutex;

/// An executor whose tasks are shuttle's and whose clock is a model: a sleep ends after a
/// few scheduling steps (any number is a valid duration) and moves the clock to its deadline
/// if it is behind, so the engine sees time pass consistently with its sleeps.
#[derive(Debug, Clone)]
struct ModelExecutor {
    clock: Arc<ModelClock>,
}

#[derive(Debug)]
struct ModelClock {
    base: Instant,
    /// Nanoseconds since `base`.
    elapsed: AtomicU64,
}

impl ModelExecutor {
    fn new() -> Self {
        Self {
            clock: Arc::new(ModelClock {
                base: Instant::now(),
                elapsed: AtomicU64::new(0),
            }),
        }
    }
}

impl Executor for ModelExecutor {
    fn spawn(&self, task: BoxFuture<()>) {
        drop(shuttle::future::spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let clock = Arc::clone(&self.clock);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let deadline = clock.elapsed.load(Ordering::SeqCst).saturating_add(nanos);
        Box::pin(async move {
            for _ in 0..thread_rng().gen_range(0..3) {
                shuttle::future::yield_now().await;
            }
            clock.elapsed.fetch_max(deadline, Ordering::SeqCst);
        })
    }

    fn now(&self) -> Instant {
        self.clock.base + Duration::from_nanos(self.clock.elapsed.load(Ordering::SeqCst))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure(ErrorClass);

impl Retryable for Failure {
    fn error_class(&self) -> ErrorClass {
        self.0
    }
}

/// Parks a task the first time it asks for a slot: a millisecond ahead (`defer=once`), or
/// until a wakeup the control thread fires, with an hour as the safety net (`defer=woken`).
#[derive(Debug)]
struct DeferOnce {
    clock: ModelExecutor,
    seen: Mutex<Vec<TaskId>>,
    wakeups: Arc<Mutex<Vec<Wakeup>>>,
}

impl Admission for DeferOnce {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(async { Ok(AdmissionPermit::empty()) })
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        let mut seen = self.seen.lock().unwrap();
        let Some(how) = task.metadata.get("defer") else {
            return Precheck::Proceed;
        };
        if seen.contains(&task.id) {
            return Precheck::Proceed;
        }
        seen.push(task.id);
        if how == "woken" {
            let wakeup = Wakeup::new();
            self.wakeups.lock().unwrap().push(wakeup.clone());
            Precheck::ParkUntilWoken(self.clock.now() + Duration::from_secs(3_600), wakeup)
        } else {
            Precheck::ParkUntil(self.clock.now() + Duration::from_millis(1))
        }
    }
}

/// How many times each task was reported finished; the second field: it wants every kind
/// of event, else only `TaskFinished` (then a saturated pool takes tasks into its intake
/// without the lock, as it does for observers that do not want `TaskQueued`).
#[derive(Debug, Default)]
struct Tally(std::sync::Mutex<HashMap<TaskId, u32>>, bool);

impl Tally {
    fn reported(&self, id: TaskId) -> bool {
        self.0.lock().unwrap().contains_key(&id)
    }
}

/// The tasks aborted by their handle, each with whether it had been reported finished when
/// every abort of it returned: a task the engine resolved first was reported before it
/// resolved, so a handle that does not say `Cancelled` after an abort must have been.
#[derive(Debug, Default)]
struct Aborts {
    reported: std::sync::Mutex<HashMap<TaskId, bool>>,
    /// What `check` found wrong (inside a task a panic would be contained by the pool).
    violations: std::sync::Mutex<Vec<String>>,
}

impl Aborts {
    /// Aborts `handle` (a second time for some): it must resolve at once.
    fn abort<T, E>(&self, handle: &TaskHandle<T, E>, tally: &Tally) {
        handle.abort();
        if !handle.is_finished() {
            self.violate(format!("aborted {:?} did not resolve at once", handle.id()));
        }
        if thread_rng().gen_bool(0.25) {
            handle.abort();
        }
        let reported = tally.reported(handle.id());
        *self
            .reported
            .lock()
            .unwrap()
            .entry(handle.id())
            .or_insert(true) &= reported;
    }

    /// Checks how task `id` resolved.
    fn check<T>(&self, id: TaskId, result: &Result<T, TaskError<Failure>>) {
        let Some(&reported) = self.reported.lock().unwrap().get(&id) else {
            return;
        };
        if !(matches!(result, Err(TaskError::Cancelled)) || reported) {
            self.violate(format!(
                "task {id:?} aborted before it finished resolved {}, not Cancelled",
                match result {
                    Ok(_) => "Ok",
                    Err(error) => error.kind(),
                }
            ));
        }
    }

    fn violate(&self, violation: String) {
        self.violations.lock().unwrap().push(violation);
    }

    fn assert_kept(&self) {
        let violations = self.violations.lock().unwrap();
        assert!(violations.is_empty(), "{violations:?}");
    }
}

impl Observer for Tally {
    fn wants(&self, kind: EventKind) -> bool {
        self.1 || kind == EventKind::TaskFinished
    }

    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            *self.0.lock().unwrap().entry(record.task.id).or_insert(0) += 1;
        }
    }
}

/// What a model task does.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok,
    /// Fails retryably on every attempt (one retry allowed).
    Retries,
    /// Never finishes: its timeout, its token or `stop_now` ends it.
    Hangs,
    /// Enqueues a child into its own pool and awaits it (the child succeeds, or fails
    /// retryably once): it runs on the parent's loan, or queues for it.
    Nests,
}

/// How the scenario ends the pool.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Stop,
    StopNow,
    /// `drain`, then a fresh task, then `stop`.
    Drain,
    /// The last `Pool` clone is dropped.
    Drop,
}

type Handle = TaskHandle<u32, Failure>;

/// What the model's tasks share: the pool's observer, the aborts, the tokens to cancel,
/// and how many children were enqueued.
#[derive(Debug, Clone)]
struct Shared {
    tally: Arc<Tally>,
    aborts: Arc<Aborts>,
    tokens: Arc<Mutex<Vec<CancellationToken>>>,
    children: Arc<AtomicU64>,
}

/// Enqueues a model task; `nesting`: whether it may nest (it then holds a clone of the pool,
/// so not when the scenario ends by dropping the pool).
fn enqueue(pool: &Pool, rng: &mut impl Rng, shared: &Shared, nesting: bool) -> Handle {
    let tokens = &shared.tokens;
    let behaviour = match rng.gen_range(0..if nesting { 5 } else { 3 }) {
        0 => Behaviour::Ok,
        1 => Behaviour::Retries,
        2 => Behaviour::Hangs,
        _ => Behaviour::Nests,
    };
    let (parent_pool, parent_shared) = (pool.clone(), shared.clone());
    let mut options = TaskOptions::new()
        .priority(rng.gen_range(0..2))
        .timeout(Duration::from_millis(2));
    match rng.gen_range(0..3) {
        0 => options = options.metadata(pool_core::Metadata::new().with("defer", "once")),
        1 => options = options.metadata(pool_core::Metadata::new().with("defer", "woken")),
        _ => {}
    }
    // Tenant "a" may run one task at a time; "b" has weight 2; some tasks name none.
    match rng.gen_range(0..3) {
        0 => options = options.tenant("a"),
        1 => options = options.tenant("b"),
        _ => {}
    }
    if rng.gen_bool(0.5) {
        let token = CancellationToken::new();
        tokens.lock().unwrap().push(token.clone());
        options = options.cancellation(token);
    }
    // Deadlines race the queue, the parked set, admission and the attempt; some have passed
    // already.
    if rng.gen_bool(0.5) {
        options = options.deadline(pool.now() + Duration::from_millis(rng.gen_range(0..4)));
    }
    pool.enqueue(
        move || {
            let (pool, shared) = (parent_pool.clone(), parent_shared.clone());
            async move {
                if thread_rng().gen_bool(0.5) {
                    shuttle::future::yield_now().await;
                }
                match behaviour {
                    Behaviour::Ok => Ok(1),
                    Behaviour::Retries => Err(Failure(ErrorClass::Retryable)),
                    Behaviour::Hangs => std::future::pending().await,
                    Behaviour::Nests => {
                        let fails = thread_rng().gen_bool(0.5);
                        shared.children.fetch_add(1, Ordering::SeqCst);
                        let child: Handle = pool.enqueue(
                            move || async move {
                                shuttle::future::yield_now().await;
                                if fails {
                                    Err(Failure(ErrorClass::Retryable))
                                } else {
                                    Ok(1)
                                }
                            },
                            TaskOptions::new(),
                        );
                        // An abort of the child races it running on the parent's loan or
                        // queued for it.
                        if thread_rng().gen_bool(0.3) {
                            shared.aborts.abort(&child, &shared.tally);
                        }
                        let id = child.id();
                        let result = child.await;
                        shared.aborts.check(id, &result);
                        // Whatever the child's end (stopped, failed), the parent ends.
                        Ok(result.unwrap_or(0) + 1)
                    }
                }
            }
        },
        options,
    )
}

/// One schedule: two producer threads enqueue two tasks each (some with deadlines, some
/// enqueueing a child into the pool and awaiting it, some aborted at once) into a shared list
/// that an aborter thread picks handles from to abort (the same one twice, sometimes); a
/// control thread changes the limit, pauses and resumes, cancels tokens, fires wakeups, and
/// ends the pool (`stop`, `stop_now`, `drain` or dropping it) at a moment the scheduler
/// picks. Then every handle must resolve (an aborted one `Cancelled` unless it had been
/// reported finished before), each task be reported finished exactly once, and the counters
/// add up with nothing left; after a drain a fresh task must still get a slot.
fn scenario() {
    SCHEDULES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let executor = ModelExecutor::new();
    let tally = Arc::new(Tally(Default::default(), thread_rng().gen_bool(0.5)));
    let wakeups = Arc::new(Mutex::new(Vec::new()));
    let mut builder = Pool::builder();
    if thread_rng().gen_bool(0.5) {
        builder = builder.earliest_deadline_first().shed_doomed();
    }
    let pool = builder
        .executor(executor.clone())
        // Up to 3: four tasks into an idle pool of 3 claim a slot more than the two runners an
        // enqueue spawns, and the third claim waits for one of them to start (`handoff`).
        .concurrency(thread_rng().gen_range(1..4))
        .retries(1)
        .retry_delay(Duration::from_millis(1))
        .jitter(Jitter::None)
        .no_pressure_rule()
        .no_retry_budget()
        .admission(DeferOnce {
            clock: executor.clone(),
            seen: Mutex::new(Vec::new()),
            wakeups: Arc::clone(&wakeups),
        })
        .observer_arc(tally.clone())
        .tenant("a", TenantConfig::new().max_in_flight(1))
        .tenant("b", TenantConfig::new().weight(2))
        .seed(1)
        .build()
        .unwrap();
    let control_of_stats = pool.control();
    let shared = Shared {
        tally: Arc::clone(&tally),
        aborts: Arc::new(Aborts::default()),
        tokens: Arc::new(Mutex::new(Vec::new())),
        children: Arc::new(AtomicU64::new(0)),
    };
    let ending = match thread_rng().gen_range(0..4) {
        0 => Ending::Stop,
        1 => Ending::StopNow,
        2 => Ending::Drain,
        _ => Ending::Drop,
    };

    let nesting = !matches!(ending, Ending::Drop);
    let handles: Arc<Mutex<Vec<Handle>>> = Arc::new(Mutex::new(Vec::new()));
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let (pool, shared, handles) = (pool.clone(), shared.clone(), Arc::clone(&handles));
            shuttle::thread::spawn(move || {
                let mut rng = thread_rng();
                for _ in 0..2 {
                    let handle = enqueue(&pool, &mut rng, &shared, nesting);
                    if rng.gen_bool(0.2) {
                        shared.aborts.abort(&handle, &shared.tally);
                    }
                    handles.lock().unwrap().push(handle);
                }
            })
        })
        .collect();
    let aborter = {
        let (shared, handles) = (shared.clone(), Arc::clone(&handles));
        shuttle::thread::spawn(move || {
            let mut rng = thread_rng();
            for _ in 0..rng.gen_range(0..3) {
                let handles = handles.lock().unwrap();
                if !handles.is_empty() {
                    let handle = &handles[rng.gen_range(0..handles.len())];
                    shared.aborts.abort(handle, &shared.tally);
                }
                drop(handles);
                shuttle::thread::yield_now();
            }
        })
    };
    let control = {
        let (pool, tokens) = (pool.clone(), Arc::clone(&shared.tokens));
        let wakeups = Arc::clone(&wakeups);
        shuttle::thread::spawn(move || {
            let mut rng = thread_rng();
            for _ in 0..rng.gen_range(0..4) {
                match rng.gen_range(0..4) {
                    0 => pool.set_concurrency(rng.gen_range(1..4)).unwrap(),
                    1 => {
                        pool.pause();
                        shuttle::thread::yield_now();
                        pool.resume();
                    }
                    2 => {
                        let token = tokens.lock().unwrap().pop();
                        if let Some(token) = token {
                            token.cancel();
                        }
                    }
                    _ => {
                        let wakeup = wakeups.lock().unwrap().pop();
                        if let Some(wakeup) = wakeup {
                            wakeup.wake();
                        }
                    }
                }
            }
            match ending {
                Ending::Stop => shuttle::future::block_on(pool.stop()),
                Ending::StopNow => pool.stop_now(),
                Ending::Drain => shuttle::future::block_on(pool.drain()),
                Ending::Drop => drop(pool),
            }
        })
    };
    for producer in producers {
        producer.join().expect("producer");
    }
    aborter.join().expect("aborter");
    control.join().expect("control");
    let handles = std::mem::take(&mut *handles.lock().unwrap());
    let parents = handles.len() as u64;

    let fresh = shuttle::future::block_on({
        let aborts = Arc::clone(&shared.aborts);
        async move {
            let mut fresh = 0;
            if let Ending::Drain = ending {
                // Every task resolves without the pool stopping (a wakeup never fired lets
                // its parked task wait out its hour of model time).
                for handle in handles {
                    let id = handle.id();
                    let result = handle.await;
                    aborts.check(id, &result);
                }
                pool.drain().await;
                let stats = pool.stats();
                assert_eq!(
                    (stats.queued, stats.active, stats.retrying, stats.deferred),
                    (0, 0, 0, 0),
                    "drained: {stats:?}"
                );
                // No slot, loan or tenant share left taken: on one slot, a fresh task of
                // the tenant allowed one at a time runs.
                pool.set_concurrency(1).unwrap();
                let fresh_task: Handle =
                    pool.enqueue(|| async { Ok(7) }, TaskOptions::new().tenant("a"));
                assert!(
                    matches!(fresh_task.await, Ok(7)),
                    "a fresh task runs after a drain"
                );
                fresh = 1;
                pool.stop().await;
                return fresh;
            }
            match ending {
                Ending::Drop => drop(pool),
                Ending::Stop | Ending::StopNow | Ending::Drain => pool.stop().await,
            }
            for handle in handles {
                let id = handle.id();
                let result = handle.await;
                aborts.check(id, &result);
            }
            fresh
        }
    });
    // Every parent has ended, so every child it enqueued is counted.
    let enqueued = parents + shared.children.load(Ordering::SeqCst) + fresh;
    // A child whose parent stopped awaiting it has no handle here: the pool went idle when
    // its slot was freed, and it is reported finished just after; give its runner the turns.
    for _ in 0..1_000 {
        if tally.0.lock().unwrap().len() as u64 >= enqueued {
            break;
        }
        shuttle::thread::yield_now();
    }
    if let Some(stats) = control_of_stats.stats() {
        assert!(stats.in_balance(), "{stats:?}");
        assert_eq!(
            (stats.queued, stats.active, stats.retrying, stats.deferred),
            (0, 0, 0, 0),
            "{stats:?}"
        );
        assert_eq!(stats.resolved(), enqueued, "{stats:?}");
        let tenants = control_of_stats.tenants();
        assert!(
            tenants.iter().all(|t| t.queued == 0 && t.in_flight == 0) && tenants.len() <= 1,
            "tenant counts back to nothing: {tenants:?}"
        );
    }
    shared.aborts.assert_kept();
    let finished = tally.0.lock().unwrap();
    assert_eq!(
        finished.len() as u64,
        enqueued,
        "every task reported finished"
    );
    assert!(
        finished.values().all(|times| *times == 1),
        "a task reported finished twice: {finished:?}"
    );
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

/// Schedules started by this process (both tests), to say when a failure was found.
static SCHEDULES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs `scenario` under `scheduler` for the configured budget; prints what it explored, or
/// after how many schedules it failed.
fn explore(name: &str, scheduler: impl Scheduler + 'static) {
    let seconds = env("MODEL_CHECK_SECONDS").unwrap_or(5.0);
    let mut config = shuttle::Config::new();
    config.max_time = Some(Duration::from_secs_f64(seconds));
    // The engine's futures are deep in a debug build; shuttle's default stack is 60 KiB.
    config.stack_size = 1 << 20;
    config.silence_warnings = true;
    let started = Instant::now();
    let runner = shuttle::Runner::new(scheduler, config);
    let before = SCHEDULES.load(std::sync::atomic::Ordering::Relaxed);
    let schedules =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(scenario))) {
            Ok(schedules) => schedules,
            Err(panic) => {
                let failed_at = SCHEDULES.load(std::sync::atomic::Ordering::Relaxed) - before;
                println!(
                    "model check {name}: failed at schedule {failed_at} after {:.2} s",
                    started.elapsed().as_secs_f64()
                );
                std::panic::resume_unwind(panic);
            }
        };
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "model check {name}: {schedules} schedules in {elapsed:.1} s ({:.0}/s)",
        schedules as f64 / elapsed
    );
}

fn iterations() -> usize {
    env("MODEL_CHECK_ITERATIONS").unwrap_or(usize::MAX)
}

fn seed() -> u64 {
    env("MODEL_CHECK_SEED").unwrap_or(0x5_eed)
}

/// PCT: a random priority per thread and a few priority changes per schedule, which finds
/// bugs of small depth (an operation landing between two steps of another) with a known
/// probability per schedule.
#[test]
fn engine_under_pct_schedules() {
    if let Ok(schedule) = std::env::var("MODEL_CHECK_REPLAY") {
        shuttle::replay(scenario, &schedule);
        return;
    }
    explore("pct", PctScheduler::new_from_seed(seed(), 3, iterations()));
}

/// Uniform random walk: interleavings sampled uniformly (by the events each thread will
/// take, estimated on a first run), so long unstructured ones come up as often as any.
#[test]
fn engine_under_uniformly_random_schedules() {
    explore(
        "uniform random walk",
        UrwRandomScheduler::new_from_seed(seed(), iterations()),
    );
}
