//! The engine behind [`Pool`](crate::Pool): one lock over the queue, the parked tasks, the
//! slots and the counters, and the runners and the timer that move tasks between them.
//!
//! One task's path, file by file:
//! 1. [`dispatch`]: `enqueue` queues the task, or hands it to a runner at once; a runner runs
//!    its task, then keeps taking queued ones while a slot is free (a saturated pool spawns
//!    nothing per task). Into a saturated pool the task goes through the [`intake`], without
//!    the lock; the next acquisition of the lock queues it.
//! 2. [`attempt`]: admission (precheck, acquire), then the task's future raced against its
//!    timeout, its cancellation token and `stop_now`; how it ended is an
//!    [`AttemptEnd`](ending::AttemptEnd).
//! 3. [`decision`]: under the lock, what follows the attempt — the task ends with a
//!    [`TaskEnd`](ending::TaskEnd), is retried (the decision itself is
//!    [`RetryPolicy::decide`](crate::RetryPolicy), a pure function), or is parked until an
//!    admission policy's moment; the slot is freed and the runner claims its next task.
//! 4. [`parking`]: retried and deferred tasks wait in one ordered set with one timer, holding
//!    no slot, and go back to the queue when due; the same timer ends waiting tasks whose
//!    deadline passes.
//! 5. [`ending`]: observers hear of the finished task, then its handle resolves.
//!
//! Beside the path, [`stop`] holds what cuts it short: a cancellation (the task's token calls
//! the engine through [`CancelSink`](job::CancelSink)), `stop` and `stop_now`. The engine's
//! view of a task is [`job`]: the task (`cell.rs`) depends on it, never the other way.
//!
//! Every state change happens under one short lock; user code (closures, futures,
//! observers, admission policies, drops of what they own) never runs under it, and its
//! panics are contained ([`crate::unwind`]). Locks are taken engine first, then a task or
//! the intake's (which a producer also takes alone, for a push).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::executor::Executor;
use crate::observer::ObserverSet;
use crate::queue::{AgingQueue, AgingSettings};
use crate::retry::{RetryBudget, RetryPolicy};

use crate::stats::Stats;
use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard};
use crate::task::TaskId;
use attempt::Policy;
use budget::BudgetBucket;

mod attempt;
mod budget;
mod decision;
mod dispatch;
pub(crate) mod ending;
mod intake;
pub(crate) mod job;
mod nesting;
mod parking;
mod service;
mod state;
mod stop;
mod tenants;
pub(crate) mod ticks;
pub(crate) mod timeline;

use service::ServiceTimes;
use state::State;
pub(crate) use tenants::TenantSettings;
use tenants::Tenants;
use ticks::{Epoch, SystemTicks, Ticks};

/// Settings fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) retries: u32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) aging_target_wait: Duration,
    pub(crate) initial_limit: usize,
    pub(crate) aging: AgingSettings,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) tenants: TenantSettings,
    /// Within a tenant's lane, tasks with earlier deadlines start first.
    pub(crate) earliest_deadline_first: bool,
    /// Tasks whose time left is shorter than the median service time are not started.
    pub(crate) shed_doomed: bool,
}

/// Everything the pool, its runners, its timer and its tasks' cancellations share.
///
/// What every task writes sits apart from what runners only read: the lock with its state,
/// the intake, and the counter of ids, each on cache lines of their own (`CachePadded`).
/// Beside the lock, a field that runners read on every task (the executor, the settings)
/// was lost from their cache whenever another thread took the lock: a miss on each read.
pub(crate) struct Engine {
    state: CachePadded<Mutex<State>>,
    /// Where `enqueue` leaves a task without the lock while the pool is saturated; every
    /// acquisition of the lock moves it into the queue.
    intake: CachePadded<intake::Intake>,
    pub(crate) executor: Arc<dyn Executor>,
    /// Where the engine's [`Ticks`] count from.
    epoch: Epoch,
    /// The system's clock read as ticks, if the executor's clock is that clock (see
    /// [`Executor::now_is_system_clock`]); `None`: the executor's `now` is read.
    system_ticks: Option<SystemTicks>,
    settings: Settings,
    budget: Option<BudgetBucket>,
    /// Recent service times, kept only when the pool sheds doomed tasks.
    service: Option<ServiceTimes>,
    pub(crate) observers: ObserverSet,
    admission: Vec<Policy>,
    /// Wakes the timer when a task is parked until earlier than it sleeps, or on stop.
    timer_wake: Notify,
    /// Fires on stop_now: running attempts are dropped.
    stop_now_token: CancellationToken,
    /// Mirrors `stop_now_token` for the check before every attempt (a token's own check
    /// takes a lock) and for waiting attempts, which `interrupt` wakes to read it.
    stopped_now: AtomicBool,
    /// Wakes `drain()` and `stop()` waiters when the engine becomes idle.
    idle: Notify,
    /// Wakes one parked runner when work arrives (cheaper than spawning a new one).
    work_ready: Notify,
    /// Written by every enqueue.
    next_id: CachePadded<AtomicU64>,
    /// Tasks resolved by [`TaskHandle::abort`](crate::TaskHandle::abort) that the engine has
    /// not finished yet: while there are none, no decision asks a task whether it was.
    aborts: AtomicU64,
    /// Wakes every waiting attempt (and wait for admission) when a task is aborted or the
    /// pool is stopped with `stop_now`: each then checks which came, and whether it concerns
    /// it.
    interrupt: Notify,
    /// Some task with a deadline was ever enqueued: until then no attempt asks its task for
    /// one (it takes the task's lock). Set before the task is queued, so the lock the task
    /// passes through orders it before any runner's read.
    deadlines_used: AtomicBool,
    /// The queue held several priority levels at the last runner's pop: the next pop reads
    /// the clock (aging weighs waits), so a runner reads it before taking the lock.
    pops_need_time: AtomicBool,
}

/// The moment of one step of the engine, read from the executor's clock the first time
/// something needs it, then kept. A saturated pool's runner takes its next task as its
/// attempt ends: the moment serves the attempt's end and the next pop, and is not read at
/// all when nothing needs it — no observer, no failure to decide on, a queue of one level
/// (which pops its oldest task whatever the time), an attempt that finishes on its first
/// poll (its timeout then never needed a start).
pub(crate) struct Now<'e> {
    engine: &'e Engine,
    at: Option<Ticks>,
}

impl<'e> Now<'e> {
    /// Not read yet.
    fn lazy(engine: &'e Engine) -> Self {
        Self { engine, at: None }
    }

    /// Read already, at `at`.
    fn at(engine: &'e Engine, at: Ticks) -> Self {
        Self {
            engine,
            at: Some(at),
        }
    }

    /// The moment, read now if it was not yet.
    pub(crate) fn get(&mut self) -> Ticks {
        *self.at.get_or_insert_with(|| self.engine.now())
    }

    /// The moment if it was read.
    pub(crate) fn read(&self) -> Option<Ticks> {
        self.at
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("stats", &self.stats())
            .field("executor", &self.executor)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        executor: Arc<dyn Executor>,
        settings: Settings,
        observers: ObserverSet,
        admission: Vec<Arc<dyn Admission>>,
        seed: u64,
    ) -> Self {
        let queue = AgingQueue::new(settings.aging, settings.earliest_deadline_first);
        let (epoch, system_ticks) = match executor
            .now_is_system_clock()
            .then(SystemTicks::start)
            .flatten()
        {
            Some((epoch, system_ticks)) => (epoch, Some(system_ticks)),
            None => (Epoch::new(executor.now()), None),
        };
        let tenants = Tenants::new(settings.tenants.clone());
        let budget = settings
            .budget
            .map(|budget| BudgetBucket::new(budget, executor.now()));
        Self {
            state: CachePadded::new(Mutex::new(State::new(
                queue,
                tenants,
                epoch,
                settings.initial_limit,
                seed,
            ))),
            intake: CachePadded::default(),
            epoch,
            system_ticks,
            executor,
            budget,
            service: settings.shed_doomed.then(ServiceTimes::default),
            settings,
            observers,
            admission: admission.into_iter().map(Policy::new).collect(),
            timer_wake: Notify::new(),
            stop_now_token: CancellationToken::new(),
            stopped_now: AtomicBool::new(false),
            idle: Notify::new(),
            work_ready: Notify::new(),
            next_id: CachePadded::new(AtomicU64::new(0)),
            aborts: AtomicU64::new(0),
            interrupt: Notify::new(),
            deadlines_used: AtomicBool::new(false),
            pops_need_time: AtomicBool::new(false),
        }
    }

    /// Takes the engine's lock and moves the tasks waiting in the intake into the queue, so
    /// that whoever holds the lock sees every task enqueued before.
    fn lock(&self) -> MutexGuard<'_, State> {
        // User code never runs under this lock, so poisoning can only come from a bug in
        // the engine itself; the counters are still consistent enough to keep serving.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.intake.take(&mut state.arrivals);
        state.queue_arrivals();
        state
    }

    /// Opens the intake if `state` is saturated, closes it if not; if it closed now, moves
    /// in the tasks pushed meanwhile and says whether there were any (the caller starts
    /// what may start). Call it after a change under the lock that may free a slot or stop
    /// the pool, before starting what may start.
    fn settle_intake(&self, state: &mut State) -> bool {
        let open = state.saturated();
        self.intake.set(open, &mut state.arrivals);
        state.queue_arrivals()
    }

    /// The executor's clock, in ticks: read straight from the system's clock when that is
    /// the executor's.
    #[inline]
    fn now(&self) -> Ticks {
        match self.system_ticks {
            Some(system_ticks) => system_ticks.now(),
            None => self.epoch.ticks(self.executor.now()),
        }
    }

    /// Whether a runner must know when each attempt starts and ends: observers want
    /// events that report waits, latencies or records, or the pool sheds doomed tasks
    /// (service times). Otherwise a runner reads the clock only for what needs a moment
    /// (see [`Now`]).
    fn wants_times(&self) -> bool {
        self.service.is_some() || self.observers.wants_times()
    }

    /// Whether anything reads tasks' labels: an observer that says so, `tracing`, or an
    /// admission policy (each is handed the task's identity, labels included).
    pub(crate) fn reads_labels(&self) -> bool {
        !self.admission.is_empty() || self.observers.read_labels()
    }

    /// Whether `task` was aborted (asked only while some abort is unsettled).
    fn was_aborted(&self, task: &job::TaskRef) -> bool {
        self.aborts.load(Ordering::SeqCst) > 0 && task.is_resolved()
    }

    /// The deadline of `task`, asked only if some task ever had one.
    fn deadline_of(&self, task: &job::TaskRef) -> Option<std::time::Instant> {
        if self.deadlines_used.load(Ordering::Relaxed) {
            task.deadline()
        } else {
            None
        }
    }

    pub(crate) fn next_task_id(&self) -> TaskId {
        TaskId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats()
    }

    pub(crate) fn tenants(&self) -> Vec<crate::tenant::TenantStats> {
        self.lock().tenants.stats()
    }

    pub(crate) fn limit(&self) -> usize {
        self.lock().limit
    }

    pub(crate) fn budget_tokens(&self) -> Option<f64> {
        self.budget.as_ref().map(BudgetBucket::tokens)
    }
}

#[cfg(all(test, not(shuttle)))]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};
    use std::ops::Range;

    /// The cache lines (64 bytes) a field at `offset` of `size` bytes spans.
    fn lines(offset: usize, size: usize) -> Range<usize> {
        offset / 64..(offset + size).div_ceil(64)
    }

    /// The fields a runner reads on every task never share a cache line with what every
    /// task writes (the lock and its state, the id counter): in one build the executor and
    /// the retry budget sat on the lock's line, and each of their reads missed.
    #[test]
    fn what_runners_read_is_apart_from_what_every_task_writes() {
        macro_rules! field {
            ($name:ident: $ty:ty) => {
                (
                    stringify!($name),
                    lines(offset_of!(Engine, $name), size_of::<$ty>()),
                )
            };
        }
        assert!(align_of::<Engine>() >= 64, "offsets are cache-line offsets");
        let written = [
            field!(state: CachePadded<Mutex<State>>),
            field!(intake: CachePadded<intake::Intake>),
            field!(next_id: CachePadded<AtomicU64>),
        ];
        let read = [
            field!(settings: Settings),
            field!(executor: Arc<dyn Executor>),
            field!(epoch: Epoch),
            field!(system_ticks: Option<SystemTicks>),
            field!(budget: Option<BudgetBucket>),
            field!(service: Option<ServiceTimes>),
            field!(observers: ObserverSet),
            field!(admission: Vec<Policy>),
            field!(stop_now_token: CancellationToken),
            field!(stopped_now: AtomicBool),
            field!(aborts: AtomicU64),
            field!(deadlines_used: AtomicBool),
            field!(pops_need_time: AtomicBool),
        ];
        for (hot, hot_lines) in &written {
            for (name, lines) in &read {
                let shared = hot_lines.start < lines.end && lines.start < hot_lines.end;
                assert!(
                    !shared,
                    "{name} ({lines:?}) shares a cache line with {hot} ({hot_lines:?})"
                );
            }
        }
    }

    /// A burst that waited in the intake (every slot busy) leaves no buffer of its size
    /// behind once it is queued: the intake's buffer and the arrivals' swap, and each would
    /// otherwise keep 10,000 entries' room for the pool's life.
    #[test]
    fn a_burst_through_the_intake_leaves_no_buffer_of_its_size() {
        use crate::{Pool, SimExecutor, TaskOptions, Transient};
        let sim = SimExecutor::new();
        let pool = Pool::builder()
            .executor(sim.clone())
            .concurrency(1)
            .build()
            .unwrap();
        let blocker = pool.enqueue(
            std::future::pending::<Result<(), Transient<&str>>>,
            TaskOptions::new(),
        );
        let burst: Vec<_> = (0..10_000)
            .map(|_| {
                pool.enqueue(
                    || async { Ok::<_, Transient<&str>>(()) },
                    TaskOptions::new(),
                )
            })
            .collect();
        assert_eq!(
            pool.engine().intake.len(),
            10_000,
            "the burst waits in the intake"
        );
        // Taking the engine's lock queues the burst.
        assert_eq!(pool.stats().queued, 10_000);
        let kept = pool.engine().state.lock().unwrap().arrivals.capacity();
        assert!(kept <= state::KEPT_ARRIVALS, "{kept} entries' room kept");
        pool.stop_now();
        drop((blocker, burst));
    }
}
