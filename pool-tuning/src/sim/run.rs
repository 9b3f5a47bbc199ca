//! One run: a real `pool_core::Pool` on the deterministic `SimExecutor`, its limit driven by
//! a [`TuningObserver`] wired exactly as on a real pool ([`AutoConcurrency::tuned_by`]: events
//! in, ticks from the pool's executor, `set_concurrency` out), its tasks calling a
//! [`SimServer`], its failures retried by the pool's own retry policy.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, ErrorClass, Event, Executor, Observer, Pool, Precheck,
    Rejection, SimExecutor, TaskId, TaskInfo, TaskOptions,
};

use super::record::{Bucket, Ended, Recorder, Recording, BUCKET_S};
use super::report::SimReport;
use super::scenario::{Scenario, ScenarioError};
use super::server::{Admission as Fate, Answer, Cause, SimServer};
use super::tuner_spec::TunerSpec;
use crate::{
    Adjustment, AutoConcurrency, Sample, SystemMemoryProbe, SystemMemorySnapshot, Tuner,
    TuningObserver, MEMORY_REFRESH,
};

/// A run's report and what it recorded along the way (for plots).
#[derive(Debug, Clone)]
pub struct SimRun {
    /// The figures.
    pub report: SimReport,
    recording: Recording,
    /// The scenario's capacity in each of the recording's buckets.
    capacity: Vec<f64>,
}

/// The run over one slice of time (see [`SimRun::series`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// The slice's middle, in seconds from the start.
    pub at_s: f64,
    /// The limit, averaged over the slice.
    pub limit: f64,
    /// Attempts in flight, averaged over the slice.
    pub in_flight: f64,
    /// Successes per second.
    pub ops_per_s: f64,
    /// What the best fixed limit achieves, per second.
    pub capacity_ops_per_s: f64,
    /// 99th percentile latency of the successes finishing in the slice, in ms (0 if none).
    pub p99_ms: f64,
    /// Attempts the load got throttled or timed out, per second.
    pub overloads_per_s: f64,
}

impl SimRun {
    /// The run in slices of `slice_s` seconds (rounded to whole 100 ms buckets).
    pub fn series(&self, slice_s: f64) -> Vec<SeriesPoint> {
        let per_slice = ((slice_s / BUCKET_S).round() as usize).max(1);
        let buckets = &self.recording.buckets;
        (0..buckets.len())
            .step_by(per_slice)
            .map(|first| {
                let range = first..(first + per_slice).min(buckets.len());
                let span_s = range.len() as f64 * BUCKET_S;
                let from_s = first as f64 * BUCKET_S;
                let slice = &buckets[range.clone()];
                let sum = |field: fn(&Bucket) -> f64| slice.iter().map(field).sum::<f64>();
                SeriesPoint {
                    at_s: from_s + span_s / 2.0,
                    limit: sum(|b| b.limit_seconds) / span_s,
                    in_flight: sum(|b| b.in_flight_seconds) / span_s,
                    ops_per_s: sum(|b| f64::from(b.successes)) / span_s,
                    capacity_ops_per_s: self.capacity[range].iter().sum::<f64>()
                        / slice.len() as f64,
                    p99_ms: self
                        .recording
                        .latency_quantile_ms(from_s, from_s + span_s, 0.99),
                    overloads_per_s: sum(|b| f64::from(b.load_overloads)) / span_s,
                }
            })
            .collect()
    }
}

/// Runs `scenario` with the tuner `spec` names, on the scenario's seed.
pub fn simulate(scenario: &Scenario, spec: &TunerSpec) -> Result<SimReport, ScenarioError> {
    simulate_seeded(scenario, spec, scenario.seed)
}

/// Runs `scenario` with the tuner `spec` names, on `seed`.
pub fn simulate_seeded(
    scenario: &Scenario,
    spec: &TunerSpec,
    seed: u64,
) -> Result<SimReport, ScenarioError> {
    Ok(run(scenario, spec, seed)?.report)
}

/// Runs `scenario` with the tuner `spec` names, on `seed`, keeping the recording.
pub fn run(scenario: &Scenario, spec: &TunerSpec, seed: u64) -> Result<SimRun, ScenarioError> {
    let clock = SimExecutor::new();
    let tuner = spec.build(scenario, clock.now())?;
    run_on(clock, scenario, tuner, &spec.to_string(), seed)
}

/// Runs `scenario` with any tuner (starting where it stands); `label` names it in the report.
pub fn simulate_with(
    scenario: &Scenario,
    tuner: Box<dyn Tuner>,
    label: &str,
    seed: u64,
) -> Result<SimRun, ScenarioError> {
    run_on(SimExecutor::new(), scenario, tuner, label, seed)
}

fn run_on(
    clock: SimExecutor,
    scenario: &Scenario,
    tuner: Box<dyn Tuner>,
    label: &str,
    seed: u64,
) -> Result<SimRun, ScenarioError> {
    let origin = clock.now();
    let client = scenario.client;
    let world = Arc::new(World {
        origin,
        clock: clock.clone(),
        server: Mutex::new(SimServer::new(scenario.server, seed)),
        recorder: Mutex::new(Recorder::new(scenario.duration_s, tuner.limit())),
        timeout_s: client.timeout_s(),
        retry_after: client.honour_retry_after.then(Default::default),
        ended: AtomicBool::new(false),
        wake: Signal::raised(),
        trace: Mutex::new(Vec::new()),
    });
    let traced = Traced {
        inner: tuner,
        world: Arc::downgrade(&world),
    };
    let observer =
        TuningObserver::new(traced).with_memory(SimMemory(Arc::downgrade(&world)), MEMORY_REFRESH);
    let mut builder = Pool::builder()
        .executor(clock.clone())
        .seed(seed)
        .retries(client.retries)
        .retry_delay(Duration::from_secs_f64(client.retry_delay_ms / 1_000.0))
        .observer(Probe(Arc::clone(&world)));
    builder = match client.timeout_ms {
        ms if ms > 0.0 => builder.timeout(Duration::from_secs_f64(ms / 1_000.0)),
        _ => builder.no_timeout(),
    };
    let retry_after_possible = scenario
        .timeline
        .iter()
        .any(|step| step.params.retry_after_ms > 0.0);
    if world.retry_after.is_some() && retry_after_possible {
        builder = builder.admission(RetryAfterGate(Arc::downgrade(&world)));
    }
    let pool = builder.tuned_by(observer).build()?;
    world.recorder().limit_changed(0.0, pool.concurrency());
    spawn_changes(scenario, &world);

    let duration = Duration::from_secs_f64(scenario.duration_s);
    clock.block_on(feed(&pool, &world, duration));
    world.ended.store(true, Ordering::Release);
    pool.stop_now();
    let final_memory = world.memory_fraction();
    let recording = world.recorder().finish(scenario.duration_s, final_memory);
    let trace = std::mem::take(&mut *lock(&world.trace));
    drop(pool);
    // Let the stopped attempts unwind and the tuner's timer see that the pool is gone.
    let idle = clock.sleep(crate::TICK_INTERVAL * 3);
    let _ = clock.try_block_on(idle);
    let report = SimReport::build(scenario, label, seed, &recording, trace);
    let capacity = (0..recording.buckets.len())
        .map(|i| {
            let middle = (i as f64 + 0.5) * BUCKET_S;
            scenario.step_at(middle).capacity.ops_per_s
        })
        .collect();
    Ok(SimRun {
        report,
        recording,
        capacity,
    })
}

/// What the pool's tasks, its observers and the run share.
struct World {
    origin: Instant,
    clock: SimExecutor,
    server: Mutex<SimServer>,
    recorder: Mutex<Recorder>,
    timeout_s: f64,
    /// Per task: the moment (ns from the origin) a 429's Retry-After lets it go again; `None`
    /// when the client ignores Retry-After.
    retry_after: Option<Mutex<HashMap<TaskId, Arc<AtomicU64>>>>,
    /// Set when the run is over: attempts dropped from then on were stopped, not timed out.
    ended: AtomicBool,
    /// Raised when the queue may need topping up.
    wake: Signal,
    trace: Mutex<Vec<(f64, Adjustment)>>,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("now_s", &self.now_s())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl World {
    fn now_s(&self) -> f64 {
        self.clock
            .now()
            .saturating_duration_since(self.origin)
            .as_secs_f64()
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        lock(&self.recorder)
    }

    fn server(&self) -> MutexGuard<'_, SimServer> {
        lock(&self.server)
    }

    fn memory_fraction(&self) -> f64 {
        let in_flight = self.recorder().in_flight();
        self.server().memory_fraction(in_flight)
    }
}

/// Applies the scenario's timeline to the server as virtual time passes. Holds the world
/// only weakly, so an unfinished schedule does not keep a finished run alive.
fn spawn_changes(scenario: &Scenario, world: &Arc<World>) {
    let steps: Vec<_> = scenario
        .timeline
        .iter()
        .skip(1)
        .map(|s| (s.at_s, s.params))
        .collect();
    let weak = Arc::downgrade(world);
    world.clock.spawn(Box::pin(async move {
        for (at_s, params) in steps {
            let sleep = {
                let Some(world) = weak.upgrade() else { return };
                let wait = (at_s - world.now_s()).max(0.0);
                world.clock.sleep(Duration::from_secs_f64(wait))
            };
            sleep.await;
            let Some(world) = weak.upgrade() else { return };
            if world.ended.load(Ordering::Acquire) {
                return;
            }
            world.server().set_params(params);
        }
    }));
}

/// The closed-loop client: keeps a few tasks queued beyond the limit, so every slot the
/// limit allows is always taken (an endless backlog), until `duration` has passed.
async fn feed(pool: &Pool, world: &Arc<World>, duration: Duration) {
    let mut deadline = pin!(world.clock.sleep(duration));
    std::future::poll_fn(|cx| {
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        loop {
            world.wake.register(cx.waker());
            if !world.wake.take() {
                return Poll::Pending;
            }
            top_up(pool, world);
        }
    })
    .await;
}

fn top_up(pool: &Pool, world: &Arc<World>) {
    loop {
        let stats = pool.stats();
        // A slot freed by a finishing attempt is refilled from the queue at once, before
        // this runs again: a few queued tasks are enough.
        if stats.queued >= 2 + stats.concurrency / 8 {
            return;
        }
        enqueue_one(pool, world);
    }
}

fn enqueue_one(pool: &Pool, world: &Arc<World>) {
    let not_before = Arc::new(AtomicU64::new(0));
    let task = {
        let (world, not_before) = (Arc::clone(world), Arc::clone(&not_before));
        move || {
            let (world, not_before) = (Arc::clone(&world), Arc::clone(&not_before));
            async move { Attempt::run(world, not_before).await }
        }
    };
    let handle = pool.enqueue_with(task, TaskOptions::new(), classify);
    if let Some(retry_after) = &world.retry_after {
        lock(retry_after).insert(handle.id(), not_before);
    }
    // The run reads outcomes from the attempts themselves; the task runs detached.
    drop(handle);
}

/// A server answer other than success, as the task's error.
#[derive(Debug)]
struct SimError(Answer);

fn classify(error: &SimError) -> ErrorClass {
    match error.0 {
        Answer::SlowDown | Answer::TooManyRequests { .. } => ErrorClass::Throttled,
        _ => ErrorClass::Retryable,
    }
}

/// One attempt: asks the server for its fate, waits it out on the pool's clock, and records
/// how it ended. If the pool's timeout drops it first, `Drop` records the timeout and frees
/// the server's capacity (a timed-out request stops costing the server).
struct Attempt {
    world: Arc<World>,
    fate: Fate,
    ended: bool,
}

impl Attempt {
    async fn run(world: Arc<World>, not_before: Arc<AtomicU64>) -> Result<(), SimError> {
        let attempt = Attempt::begin(world);
        let latency = attempt.fate.latency_s;
        if latency.is_finite() {
            attempt
                .world
                .clock
                .sleep(Duration::from_secs_f64(latency))
                .await;
        } else {
            std::future::pending::<()>().await;
        }
        attempt.end(&not_before)
    }

    fn begin(world: Arc<World>) -> Self {
        let now_s = world.now_s();
        let fate = world.server().admit(now_s);
        let memory = {
            let in_flight = world.recorder().in_flight() + 1;
            world.server().memory_fraction(in_flight)
        };
        world.recorder().attempt_started(now_s, memory);
        Self {
            world,
            fate,
            ended: false,
        }
    }

    fn end(mut self, not_before: &AtomicU64) -> Result<(), SimError> {
        self.ended = true;
        self.release();
        let fate = self.fate;
        let (ended, result) = match fate.answer {
            Answer::Success => (
                Ended::Succeeded {
                    latency_s: fate.latency_s,
                },
                Ok(()),
            ),
            Answer::SlowDown => (Ended::Throttled { cause: fate.cause }, Err(fate.answer)),
            Answer::TooManyRequests { retry_after_s } => {
                if let Some(after) = retry_after_s {
                    let until = self.world.clock.now() + Duration::from_secs_f64(after);
                    let nanos = until
                        .saturating_duration_since(self.world.origin)
                        .as_nanos();
                    not_before.store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
                }
                (Ended::Throttled { cause: fate.cause }, Err(fate.answer))
            }
            Answer::InternalError | Answer::Reset => (Ended::Failed, Err(fate.answer)),
            Answer::Nothing => unreachable!("an attempt answered nothing never ends by itself"),
        };
        self.world
            .recorder()
            .attempt_ended(self.world.now_s(), ended);
        result.map_err(SimError)
    }

    fn release(&self) {
        if self.fate.held {
            self.world.server().release();
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.release();
        let now_s = self.world.now_s();
        let cause = match self.fate.answer {
            // Slower than the timeout: the load's doing if it would have been in time unloaded.
            Answer::Success if self.fate.unloaded_latency_s <= self.world.timeout_s => Cause::Load,
            Answer::Success => Cause::Background,
            _ => self.fate.cause,
        };
        // Stopped with the run: not an outcome.
        if !self.world.ended.load(Ordering::Acquire) {
            self.world
                .recorder()
                .attempt_ended(now_s, Ended::TimedOut { cause });
        }
    }
}

/// Records the pool's limit and wakes the feeder when slots or tasks free up.
#[derive(Debug)]
struct Probe(Arc<World>);

impl Observer for Probe {
    fn on_event(&self, event: &Event) {
        let world = &self.0;
        match event {
            Event::ConcurrencyChanged { to, .. } => {
                world.recorder().limit_changed(world.now_s(), *to);
            }
            Event::TaskFinished(record) => {
                if let Some(retry_after) = &world.retry_after {
                    lock(retry_after).remove(&record.task.id);
                }
            }
            Event::TaskDeferred { .. } => {
                world.recorder().task_deferred();
                return;
            }
            Event::AttemptFinished { .. } => {}
            _ => return,
        }
        world.wake.raise();
    }
}

/// The client side of Retry-After: a task told to wait gives its slot back and is parked
/// until then (the pool's admission seam), on top of the pool's own backoff.
#[derive(Debug)]
struct RetryAfterGate(Weak<World>);

impl Admission for RetryAfterGate {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(std::future::ready(Ok(AdmissionPermit::empty())))
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        let Some(world) = self.0.upgrade() else {
            return Precheck::Proceed;
        };
        let Some(retry_after) = &world.retry_after else {
            return Precheck::Proceed;
        };
        let nanos = lock(retry_after)
            .get(&task.id)
            .map_or(0, |cell| cell.load(Ordering::Acquire));
        let until = world.origin + Duration::from_nanos(nanos);
        if nanos > 0 && until > world.clock.now() {
            Precheck::ParkUntil(until)
        } else {
            Precheck::Proceed
        }
    }
}

/// Memory as the scenario's server describes it, for the tuner's memory guard.
#[derive(Debug)]
struct SimMemory(Weak<World>);

impl SystemMemoryProbe for SimMemory {
    fn snapshot(&self) -> Option<SystemMemorySnapshot> {
        const TOTAL_MIB: u64 = 1 << 20;
        let fraction = self.0.upgrade()?.memory_fraction();
        Some(SystemMemorySnapshot::from_mib(
            TOTAL_MIB,
            (fraction * TOTAL_MIB as f64) as u64,
        ))
    }
}

/// Passes everything to the tuner, noting each change with its reason (the pool's events
/// carry no reason).
#[derive(Debug)]
struct Traced {
    inner: Box<dyn Tuner>,
    world: Weak<World>,
}

impl Traced {
    fn note(&self, adjustment: Option<Adjustment>) -> Option<Adjustment> {
        if let (Some(change), Some(world)) = (adjustment, self.world.upgrade()) {
            lock(&world.trace).push((world.now_s(), change));
        }
        adjustment
    }
}

impl Tuner for Traced {
    fn limit(&self) -> usize {
        self.inner.limit()
    }

    fn observe(&mut self, sample: &Sample, now: Instant) -> Option<Adjustment> {
        let adjustment = self.inner.observe(sample, now);
        self.note(adjustment)
    }

    fn tick(&mut self, now: Instant) -> Option<Adjustment> {
        let adjustment = self.inner.tick(now);
        self.note(adjustment)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// A flag and the waker of the one future waiting for it.
#[derive(Debug)]
struct Signal {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    fn raised() -> Self {
        Self {
            raised: AtomicBool::new(true),
            waker: Mutex::new(None),
        }
    }

    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    fn register(&self, waker: &Waker) {
        let mut slot = lock(&self.waker);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn take(&self) -> bool {
        self.raised.swap(false, Ordering::AcqRel)
    }
}
