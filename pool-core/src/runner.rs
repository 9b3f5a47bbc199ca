//! The engine: shared state, dispatch, attempts, retries, and the stop path.
//!
//! Runners are spawned only when there is a free slot and a queued task; a runner keeps
//! popping tasks until the queue is empty or the limit is reached, so a saturated pool spawns
//! nothing per task. Every state change happens under one short lock; observers, result
//! delivery and spawning happen after it is released.

use std::future::poll_fn;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, AdmissionPermit, Precheck};
use crate::deadline;
use crate::error::PanicMessage;
use crate::executor::{BoxFuture, Executor};
use crate::job::{CancelSink, Job, Resolution, Start, TaskRef, Timeline};
use crate::observer::{AttemptResult, Event, ObserverSet, TaskInfo, TaskRecord};
use crate::parked::{ParkKey, Parked, ParkedSet, Reservation};
use crate::queue::{AgingQueue, QueueKey};
use crate::retry::{saturation, BudgetBucket, PressureDecision, RetryPolicy};
use crate::stats::Stats;
use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard};
use crate::task::{ErrorClass, TaskId};

/// Settings fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) retries: u32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) aging_target_wait: Duration,
    pub(crate) initial_limit: usize,
    pub(crate) aging: crate::queue::AgingSettings,
    pub(crate) budget: Option<crate::retry::RetryBudget>,
}

#[derive(Debug, Default)]
struct Counters {
    enqueued: u64,
    processed: u64,
    errors: u64,
    retries: u64,
    cancelled: u64,
    stopped: u64,
}

#[derive(Debug)]
struct State {
    queue: AgingQueue<TaskRef>,
    /// Queue keys of tasks that can be cancelled, so a handle can pull its task out early.
    cancellable: std::collections::HashMap<TaskId, Place>,
    /// Tasks in retry backoff or deferred by admission, in the order they are due; it also
    /// counts them (the only owner of the `retrying` and `deferred` counts).
    parked: ParkedSet,
    /// The moment the pool's timer sleeps until; `None` when no timer runs (nothing parked).
    timer: Option<Instant>,
    active: usize,
    /// Runners parked waiting for work (they hold no slot).
    idle_runners: usize,
    limit: usize,
    paused: bool,
    stopped: bool,
    counters: Counters,
    rng: fastrand::Rng,
    queue_wait_ewma: Option<f64>,
}

impl State {
    fn can_start(&self) -> bool {
        !self.paused && !self.stopped && self.active < self.limit && !self.queue.is_empty()
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.active == 0
            && self.parked.retrying() == 0
            && self.parked.deferred() == 0
    }

    /// Pops the next task and claims a slot for it.
    fn take_next(&mut self, now: Instant, aging_target_wait: Duration) -> Option<(Job, Stint)> {
        if !self.can_start() {
            return None;
        }
        let popped = self.queue.pop(now)?;
        if !self.cancellable.is_empty() {
            self.cancellable.remove(&popped.job.id());
        }
        self.active += 1;
        let wait = now.saturating_duration_since(popped.enqueued_at);
        self.observe_queue_wait(wait, aging_target_wait);
        let stint = Stint {
            entered_at: popped.enqueued_at,
            popped_at: Some(now),
            started_at: now,
            ran: false,
            in_flight: self.active,
            latency: Duration::ZERO,
        };
        Some((Job::new(popped.job), stint))
    }

    /// Keeps the aging multiplier in step with queue wait against its target: the
    /// multiplier is `target / average wait`, clamped to [0.25, 4], so aging speeds up when
    /// tasks wait longer than the target and slows down when they don't.
    fn observe_queue_wait(&mut self, wait: Duration, target: Duration) {
        let wait = wait.as_secs_f64();
        let ewma = match self.queue_wait_ewma {
            Some(ewma) => 0.95 * ewma + 0.05 * wait,
            None => wait,
        };
        self.queue_wait_ewma = Some(ewma);
        let multiplier = (target.as_secs_f64() / ewma.max(1e-9)).clamp(0.25, 4.0);
        self.queue.set_multiplier(multiplier);
    }

    fn stats(&self) -> Stats {
        Stats {
            queued: self.queue.len(),
            active: self.active,
            retrying: self.parked.retrying(),
            deferred: self.parked.deferred(),
            enqueued: self.counters.enqueued,
            processed: self.counters.processed,
            errors: self.counters.errors,
            retries: self.counters.retries,
            cancelled: self.counters.cancelled,
            stopped_tasks: self.counters.stopped,
            concurrency: self.limit,
            paused: self.paused,
            stopped: self.stopped,
        }
    }
}

/// Everything the pool, its runners, handles and observers share.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) settings: Settings,
    budget: Option<BudgetBucket>,
    pub(crate) observers: ObserverSet,
    admission: Vec<Arc<dyn Admission>>,
    /// Wakes the timer when a task is parked until earlier than it sleeps, or on stop.
    timer_wake: Notify,
    /// Fires on stop_now: running attempts are dropped.
    stop_now_token: CancellationToken,
    /// Mirrors `stop_now_token` for the check before every attempt (a token's own check
    /// takes a lock).
    stopped_now: AtomicBool,
    idle: Notify,
    /// Wakes one parked runner when work arrives (cheaper than spawning a new one).
    work_ready: Notify,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stats", &self.stats())
            .field("executor", &self.executor)
            .finish_non_exhaustive()
    }
}

/// How one attempt ended, before the pool decides what follows.
#[derive(Debug)]
enum AttemptEnd {
    Succeeded,
    Failed(ErrorClass),
    /// The attempt ran past this timeout.
    TimedOut(Duration),
    Panicked(crate::error::PanicMessage),
    Cancelled,
    StoppedNow,
    Rejected(crate::admission::Rejection),
    /// An admission policy's precheck parks the task until then; no attempt ran.
    Deferred(Instant),
}

impl AttemptEnd {
    /// How the attempt ended, for observers; `None` if no attempt was made.
    fn result(&self) -> Option<AttemptResult> {
        Some(match self {
            AttemptEnd::Succeeded => AttemptResult::Succeeded,
            AttemptEnd::Failed(class) => AttemptResult::Failed(*class),
            AttemptEnd::TimedOut(_) => AttemptResult::TimedOut,
            AttemptEnd::Panicked(_) => AttemptResult::Panicked,
            AttemptEnd::Cancelled | AttemptEnd::StoppedNow => AttemptResult::Cancelled,
            AttemptEnd::Rejected(_) => AttemptResult::Rejected,
            AttemptEnd::Deferred(_) => return None,
        })
    }
}

/// Where a task that can be cancelled waits.
#[derive(Debug, Clone, Copy)]
enum Place {
    Queued(QueueKey),
    Parked(ParkKey),
}

/// What to do with a task after an attempt.
enum Next {
    Resolve(Resolution),
    Retry {
        /// The delay after the pressure rule.
        delay: Duration,
        /// The backoff before it (what decorrelated jitter grows from).
        backoff: Duration,
        class: ErrorClass,
        /// Counts the task as retrying from the decision on.
        reservation: Reservation,
    },
    /// Park the task, holding no slot, until an admission policy's moment for it.
    Park {
        until: Instant,
        /// Counts the task as deferred from the decision on.
        reservation: Reservation,
    },
}

/// One stay of a task in the queue and the attempt that followed: what the runner knows of a
/// task without asking it. A task that runs once needs nothing more for its record; a
/// retried one folds its stints into its [`Timeline`].
#[derive(Debug, Clone, Copy)]
struct Stint {
    entered_at: Instant,
    /// When it left the queue; `None` if it never did (stopped or cancelled while queued).
    popped_at: Option<Instant>,
    /// When the attempt started (after admission).
    started_at: Instant,
    /// Whether an attempt started (admission may refuse it).
    ran: bool,
    /// Tasks running when it left the queue, this one included.
    in_flight: usize,
    latency: Duration,
}

impl Stint {
    /// A stay that ended without leaving the queue.
    fn waiting(entered_at: Instant) -> Self {
        Stint {
            entered_at,
            popped_at: None,
            started_at: entered_at,
            ran: false,
            in_flight: 0,
            latency: Duration::ZERO,
        }
    }

    /// `timeline` (a task's earlier stints, if it has any) with this stint added.
    fn fold_into(&self, timeline: Option<Timeline>) -> Timeline {
        let mut timeline = timeline.unwrap_or(Timeline {
            queued_at: self.entered_at,
            first_started_at: None,
            queue_wait: Duration::ZERO,
            execution: Duration::ZERO,
            retry_delay: Duration::ZERO,
            previous_delay: None,
        });
        if let Some(popped_at) = self.popped_at {
            timeline.queue_wait += popped_at.saturating_duration_since(self.entered_at);
        }
        if self.ran {
            timeline.first_started_at.get_or_insert(self.started_at);
        }
        timeline.execution += self.latency;
        timeline
    }
}

impl Shared {
    pub(crate) fn new(
        executor: Arc<dyn Executor>,
        settings: Settings,
        observers: ObserverSet,
        admission: Vec<Arc<dyn Admission>>,
        seed: u64,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                queue: AgingQueue::new(settings.aging, executor.now()),
                cancellable: Default::default(),
                parked: ParkedSet::default(),
                timer: None,
                active: 0,
                idle_runners: 0,
                limit: settings.initial_limit,
                paused: false,
                stopped: false,
                counters: Counters::default(),
                rng: fastrand::Rng::with_seed(seed),
                queue_wait_ewma: None,
            }),
            executor,
            budget: settings.budget.map(BudgetBucket::new),
            settings,
            observers,
            admission,
            timer_wake: Notify::new(),
            stop_now_token: CancellationToken::new(),
            stopped_now: AtomicBool::new(false),
            idle: Notify::new(),
            work_ready: Notify::new(),
            next_id: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // User code never runs under this lock, so poisoning can only come from a bug in
        // the pool itself; the counters are still consistent enough to keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_task_id(&self) -> TaskId {
        TaskId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats()
    }

    pub(crate) fn budget_tokens(&self) -> Option<f64> {
        self.budget.as_ref().map(BudgetBucket::tokens)
    }

    /// Adds a new task; starts it at once if a slot is free. `cancellable`: it has a token.
    /// `info` is the task's identity if observers listen (built by the caller, which has it
    /// at hand without asking the task).
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        task: TaskRef,
        cancellable: bool,
        info: Option<TaskInfo>,
    ) {
        let now = self.executor.now();
        let mut state = self.lock();
        state.counters.enqueued += 1;
        if state.stopped {
            state.counters.stopped += 1;
            drop(state);
            self.finish(
                Job::new(task),
                Resolution::Stopped,
                now,
                Stint::waiting(now),
                info,
            );
            return;
        }
        let watched = cancellable.then(|| Arc::clone(&task));
        self.push_locked(&mut state, task, cancellable, now);
        let queued = state.queue.len();
        // If a slot is free the queue held nothing else, so at most this one task starts:
        // on a parked runner if there is one, else on a new one.
        let wake_parked = state.can_start() && state.idle_runners > 0;
        let started = if wake_parked {
            state.idle_runners -= 1;
            None
        } else {
            state.take_next(now, self.settings.aging_target_wait)
        };
        drop(state);
        if wake_parked {
            self.work_ready.notify_one();
        }
        if let Some(task) = info {
            self.observers.emit(&Event::TaskQueued { task, queued });
        }
        self.spawn_runners(started);
        if let Some(task) = watched {
            task.watch_cancellation();
        }
    }

    fn push_locked(&self, state: &mut State, task: TaskRef, cancellable: bool, now: Instant) {
        let id = task.id();
        let priority = task.priority();
        let key = state.queue.push(task, priority, now);
        if cancellable {
            state.cancellable.insert(id, Place::Queued(key));
        }
    }

    /// Claims slots for as many queued tasks as the limit allows.
    fn take_startable(&self, state: &mut State, now: Instant) -> Vec<(Job, Stint)> {
        let mut started = Vec::new();
        while let Some(job) = state.take_next(now, self.settings.aging_target_wait) {
            started.push(job);
        }
        started
    }

    fn spawn_runners(self: &Arc<Self>, jobs: impl IntoIterator<Item = (Job, Stint)>) {
        for (job, stint) in jobs {
            let shared = Arc::clone(self);
            self.executor
                .spawn(Box::pin(async move { shared.run(job, stint).await }));
        }
    }

    /// A runner: runs its task, then keeps taking queued tasks while it may.
    async fn run(self: Arc<Self>, mut job: Job, mut stint: Stint) {
        loop {
            // Asked once per stint and reused by every event of it.
            let info = self.observers.is_active().then(|| job.task().info());
            let (end, finished_at) = self.attempt(&job, &mut stint, info.as_ref()).await;
            (job, stint) = match self.after_attempt(job, end, finished_at, stint, info) {
                Some(next) => next,
                None => match self.wait_for_work().await {
                    Some(next) => next,
                    None => return,
                },
            };
        }
    }

    /// Parks a runner that found no work until an enqueue wakes it, so a pool whose queue
    /// keeps running dry does not spawn a runner per task. At most `limit` runners park; the
    /// others end, and all of them end when the pool stops.
    async fn wait_for_work(&self) -> Option<(Job, Stint)> {
        loop {
            let notified = self.work_ready.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check below, so a wake-up between them is not lost.
            notified.as_mut().enable();
            {
                let now = self.executor.now();
                let mut state = self.lock();
                if state.stopped {
                    return None;
                }
                if let Some(job) = state.take_next(now, self.settings.aging_target_wait) {
                    return Some(job);
                }
                if state.idle_runners >= state.limit {
                    return None;
                }
                state.idle_runners += 1;
            }
            notified.await;
        }
    }

    /// Runs one attempt of `job`: the task's future raced against its timeout, its
    /// cancellation token and `stop_now`. The timer and the cancellation waits are only set
    /// up if the future does not finish on its first poll, which keeps quick tasks cheap.
    async fn attempt(
        &self,
        job: &Job,
        stint: &mut Stint,
        info: Option<&TaskInfo>,
    ) -> (AttemptEnd, Instant) {
        let task = job.task();
        let mut permits = Vec::new();
        if !self.admission.is_empty() {
            let admit_info = info.cloned().unwrap_or_else(|| task.info());
            if let Some(end) = self.precheck(&admit_info) {
                return (end, self.executor.now());
            }
            match self.admit(admit_info, task.cancellation()).await {
                Ok(granted) => {
                    permits = granted;
                    // Waiting for admission is not part of the attempt's latency.
                    stint.started_at = self.executor.now();
                }
                Err(end) => return (end, self.executor.now()),
            }
        }
        // Set when the task was popped (or admitted): the attempt starts right away.
        let started_at = stint.started_at;
        stint.ran = true;
        let attempt = task.begin_attempt();
        if let Some(info) = info {
            self.observers.emit(&Event::TaskStarted {
                task: info.clone(),
                attempt,
                queue_wait: started_at.saturating_duration_since(stint.entered_at),
                in_flight: stint.in_flight,
                at: started_at,
            });
        }
        let start = catch_unwind(AssertUnwindSafe(|| {
            let stopped_now = self.stopped_now.load(Ordering::Acquire);
            Arc::clone(task).start_attempt(self.settings.timeout, stopped_now)
        }));
        let end = match start {
            Err(panic) => AttemptEnd::Panicked(PanicMessage::from_payload(&*panic)),
            Ok(Start::Cancelled) => AttemptEnd::Cancelled,
            Ok(Start::StoppedNow) => AttemptEnd::StoppedNow,
            Ok(Start::Running {
                future,
                timeout,
                cancellation,
            }) => {
                let mut future = Some(future);
                let end = self
                    .poll_attempt(&mut future, timeout, cancellation, started_at)
                    .await;
                // Dropping a future can panic too; that must not take the runner down.
                drop_contained("an attempt's future", future.take());
                end
            }
        };
        let finished_at = self.executor.now();
        drop_contained("an admission permit", permits);
        stint.latency = finished_at.saturating_duration_since(started_at);
        (end, finished_at)
    }

    /// Asks every admission policy's precheck in turn: the first that parks or rejects the
    /// task decides (moments set aside by policies before it stay set aside: the task comes
    /// back and takes them). A panicking precheck ends the attempt as a panic.
    fn precheck(&self, info: &TaskInfo) -> Option<AttemptEnd> {
        let now = self.executor.now();
        self.admission.iter().find_map(|policy| {
            match catch_unwind(AssertUnwindSafe(|| policy.precheck(info))) {
                Err(panic) => Some(AttemptEnd::Panicked(PanicMessage::from_payload(&*panic))),
                Ok(Precheck::Proceed) => None,
                Ok(Precheck::ParkUntil(until)) if until <= now => None,
                Ok(Precheck::ParkUntil(until)) => Some(AttemptEnd::Deferred(until)),
                Ok(Precheck::Reject(rejection)) => Some(AttemptEnd::Rejected(rejection)),
            }
        })
    }

    /// Asks every admission policy in turn, interruptible by `stop_now` and the task's token.
    /// Policies run under `catch_unwind` like task code: a panic in `acquire` or in its future
    /// ends the attempt as a panic, and permits granted before a refusal are dropped here.
    async fn admit(
        &self,
        info: TaskInfo,
        task_token: Option<CancellationToken>,
    ) -> Result<Vec<AdmissionPermit>, AttemptEnd> {
        let mut permits = Vec::with_capacity(self.admission.len());
        for policy in &self.admission {
            match self.acquire(policy.as_ref(), &info, &task_token).await {
                Ok(permit) => permits.push(permit),
                Err(end) => {
                    drop_contained("an admission permit", permits);
                    return Err(end);
                }
            }
        }
        Ok(permits)
    }

    async fn acquire(
        &self,
        policy: &dyn Admission,
        info: &TaskInfo,
        task_token: &Option<CancellationToken>,
    ) -> Result<AdmissionPermit, AttemptEnd> {
        let panicked = |panic: Box<dyn std::any::Any + Send>| {
            AttemptEnd::Panicked(PanicMessage::from_payload(&*panic))
        };
        let acquire = catch_unwind(AssertUnwindSafe(|| policy.acquire(info))).map_err(panicked)?;
        let mut acquire = AssertUnwindSafe(acquire).catch_unwind();
        // Most admissions are immediate: try once before setting up the interruptions.
        let admitted = match (&mut acquire).now_or_never() {
            Some(admitted) => {
                drop_contained("an admission future", acquire);
                admitted
            }
            None => {
                let interrupted = {
                    let stop_now = Box::pin(self.stop_now_token.clone().cancelled_owned());
                    let cancelled: BoxFuture<()> = match task_token {
                        Some(token) => Box::pin(token.clone().cancelled_owned()),
                        None => Box::pin(std::future::pending()),
                    };
                    select(stop_now, cancelled)
                };
                match select(acquire, interrupted).await {
                    Either::Left((admitted, _)) => admitted,
                    Either::Right((interruption, acquire)) => {
                        drop_contained("an admission future", acquire);
                        return Err(match interruption {
                            Either::Left(_) => AttemptEnd::StoppedNow,
                            Either::Right(_) => AttemptEnd::Cancelled,
                        });
                    }
                }
            }
        };
        match admitted.map_err(panicked)? {
            Ok(permit) => Ok(permit),
            Err(rejection) => Err(AttemptEnd::Rejected(rejection)),
        }
    }

    async fn poll_attempt(
        &self,
        future: &mut Option<crate::job::AttemptFuture>,
        timeout: Option<Duration>,
        task_token: Option<CancellationToken>,
        started_at: Instant,
    ) -> AttemptEnd {
        let mut timer: Option<BoxFuture<()>> = None;
        let mut stop_now: Option<BoxFuture<()>> = None;
        let mut cancelled: Option<BoxFuture<()>> = None;
        poll_fn(|cx| {
            let Some(attempt) = future.as_mut() else {
                return Poll::Ready(AttemptEnd::Failed(ErrorClass::Fatal));
            };
            match catch_unwind(AssertUnwindSafe(|| attempt.as_mut().poll(cx))) {
                Err(panic) => {
                    return Poll::Ready(AttemptEnd::Panicked(PanicMessage::from_payload(&*panic)))
                }
                Ok(Poll::Ready(None)) => return Poll::Ready(AttemptEnd::Succeeded),
                Ok(Poll::Ready(Some(class))) => return Poll::Ready(AttemptEnd::Failed(class)),
                Ok(Poll::Pending) => {}
            }
            if let Some(timeout) = timeout {
                let timer = timer.get_or_insert_with(|| {
                    let elapsed = self.executor.now().saturating_duration_since(started_at);
                    self.executor.sleep(timeout.saturating_sub(elapsed))
                });
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(AttemptEnd::TimedOut(timeout));
                }
            }
            let stop_now = stop_now
                .get_or_insert_with(|| Box::pin(self.stop_now_token.clone().cancelled_owned()));
            if stop_now.as_mut().poll(cx).is_ready() {
                return Poll::Ready(AttemptEnd::StoppedNow);
            }
            if let Some(token) = &task_token {
                let cancelled =
                    cancelled.get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
                if cancelled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(AttemptEnd::Cancelled);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Decides what follows an attempt, frees its slot, and claims the next task for this
    /// runner if one may start. All under one lock; the rest after it.
    fn after_attempt(
        self: &Arc<Self>,
        job: Job,
        end: AttemptEnd,
        now: Instant,
        stint: Stint,
        info: Option<TaskInfo>,
    ) -> Option<(Job, Stint)> {
        let result = end.result();
        let mut state = self.lock();
        let in_flight = state.active;
        let queued = state.queue.len();
        let next = self.decide(&mut state, &job, end);
        state.active -= 1;
        let next_job = state.take_next(now, self.settings.aging_target_wait);
        let extra = self.take_startable(&mut state, now);
        let idle = state.is_idle();
        drop(state);

        if let (Some(info), Some(result)) = (&info, result) {
            self.observers.emit(&Event::AttemptFinished {
                task: info.clone(),
                attempt: job.task().attempts(),
                latency: stint.latency,
                result,
                in_flight,
                queued,
                at: now,
            });
        }
        match next {
            Next::Resolve(resolution) => self.finish(job, resolution, now, stint, info),
            Next::Retry {
                delay,
                backoff,
                class,
                reservation,
            } => self.schedule_retry(job, delay, backoff, class, stint, info, reservation),
            Next::Park { until, reservation } => {
                self.park(job, until, now, stint, info, reservation)
            }
        }
        self.spawn_runners(extra);
        if idle {
            self.notify_idle();
        }
        next_job
    }

    /// Runs under the pool's lock; may lock the task (the runner's own, so nobody else holds
    /// it: the lock order is always pool, then task). A task whose token has fired is never
    /// retried or parked: it resolves `Cancelled` now (its cancellation may have come while
    /// its attempt ran, too late for the attempt's own race to see it).
    fn decide(&self, state: &mut State, job: &Job, end: AttemptEnd) -> Next {
        let (class, give_up) = match end {
            AttemptEnd::Succeeded => {
                if let Some(budget) = &self.budget {
                    budget.refill();
                }
                state.counters.processed += 1;
                return Next::Resolve(Resolution::LastAttempt(None));
            }
            AttemptEnd::Panicked(message) => {
                state.counters.errors += 1;
                return Next::Resolve(Resolution::Panicked(message));
            }
            AttemptEnd::Cancelled => {
                state.counters.cancelled += 1;
                return Next::Resolve(Resolution::Cancelled);
            }
            AttemptEnd::StoppedNow => {
                state.counters.stopped += 1;
                return Next::Resolve(Resolution::Stopped);
            }
            AttemptEnd::Rejected(rejection) => {
                state.counters.errors += 1;
                return Next::Resolve(Resolution::Rejected(rejection));
            }
            AttemptEnd::Deferred(until) => {
                if state.stopped {
                    state.counters.stopped += 1;
                    return Next::Resolve(Resolution::Stopped);
                }
                if job.task().is_cancelled() {
                    state.counters.cancelled += 1;
                    return Next::Resolve(Resolution::Cancelled);
                }
                let reservation = state.parked.reserve(Parked::Deferred);
                return Next::Park { until, reservation };
            }
            AttemptEnd::Failed(class) => (class, Resolution::LastAttempt(Some(class))),
            AttemptEnd::TimedOut(timeout) => {
                (ErrorClass::Retryable, Resolution::TimedOut { timeout })
            }
        };
        let timed_out = matches!(give_up, Resolution::TimedOut { .. });
        let task = job.task();
        let attempts = task.attempts();
        if !class.is_retryable() || attempts > task.retries(self.settings.retries) || state.stopped
        {
            state.counters.errors += 1;
            return Next::Resolve(give_up);
        }
        if task.is_cancelled() {
            state.counters.cancelled += 1;
            return Next::Resolve(Resolution::Cancelled);
        }
        let saturation = saturation(state.queue.len(), state.active, state.limit);
        let previous = task.timeline().and_then(|timeline| timeline.previous_delay);
        let backoff = self
            .settings
            .retry
            .delay(attempts, previous, &mut state.rng);
        let delay = match self.settings.retry.under_pressure(backoff, saturation) {
            PressureDecision::Skip => {
                state.counters.errors += 1;
                return Next::Resolve(give_up);
            }
            PressureDecision::Retry(delay) | PressureDecision::Clamped(delay) => delay,
        };
        if let Some(budget) = &self.budget {
            if !budget.try_withdraw(timed_out) {
                state.counters.errors += 1;
                return Next::Resolve(Resolution::BudgetExhausted { timed_out });
            }
        }
        state.counters.retries += 1;
        Next::Retry {
            delay,
            backoff,
            class,
            reservation: state.parked.reserve(Parked::Retrying),
        }
    }

    /// Reports the task's whole timeline, then resolves its handle: whoever awaits the
    /// handle and then reads an observer (metrics) finds the task there.
    /// `info`: the task's identity if the caller has it already (else asked here, if needed).
    fn finish(
        &self,
        job: Job,
        resolution: Resolution,
        now: Instant,
        stint: Stint,
        info: Option<TaskInfo>,
    ) {
        if self.observers.is_active() {
            let task = job.task();
            let outcome = resolution.outcome();
            let timeline = stint.fold_into(task.recorded_timeline());
            self.observers.emit(&Event::TaskFinished(TaskRecord {
                task: info.unwrap_or_else(|| task.info()),
                queued_at: timeline.queued_at,
                first_started_at: timeline.first_started_at,
                finished_at: now,
                attempts: task.attempts(),
                queue_wait: timeline.queue_wait,
                execution: timeline.execution,
                retry_delay: timeline.retry_delay,
                outcome,
            }));
        }
        job.resolve(resolution);
    }

    #[allow(clippy::too_many_arguments)]
    fn schedule_retry(
        self: &Arc<Self>,
        job: Job,
        delay: Duration,
        backoff: Duration,
        class: ErrorClass,
        stint: Stint,
        info: Option<TaskInfo>,
        reservation: Reservation,
    ) {
        let task = job.task();
        let mut timeline = stint.fold_into(task.timeline());
        timeline.retry_delay = timeline.retry_delay.saturating_add(delay);
        timeline.previous_delay = Some(backoff);
        task.set_timeline(timeline);
        if self.observers.is_active() {
            self.observers.emit(&Event::TaskRetrying {
                task: info.unwrap_or_else(|| task.info()),
                attempt: task.attempts(),
                delay,
                class,
            });
        }
        // A delay of `Duration::MAX` means "never": a century ahead, still a moment the timer
        // can sleep until.
        let until = deadline::after(self.executor.now(), delay);
        self.park_until(job, until, reservation);
    }

    /// Parks a task that an admission policy deferred: it waits, holding no slot, until
    /// `until`, then queues again. The parked time counts as queue wait in its record.
    fn park(
        self: &Arc<Self>,
        job: Job,
        until: Instant,
        now: Instant,
        stint: Stint,
        info: Option<TaskInfo>,
        reservation: Reservation,
    ) {
        let task = job.task();
        let delay = until.saturating_duration_since(now);
        // The timeline only feeds observers' task records; without observers a parked task
        // keeps none (it would cost a cold box, 240 bytes, per parked task).
        if self.observers.is_active() {
            let mut timeline = stint.fold_into(task.timeline());
            timeline.queue_wait = timeline.queue_wait.saturating_add(delay);
            task.set_timeline(timeline);
            self.observers.emit(&Event::TaskDeferred {
                task: info.unwrap_or_else(|| task.info()),
                until,
                delay,
            });
        }
        self.park_until(job, until, reservation);
    }

    /// Parks `job` until `until` with the reservation that counts it, or resolves it if the
    /// pool stopped (`Stopped`) or its token fired (`Cancelled`) since the decision: both
    /// are checked under the lock the parking takes, so a `stop()` or a cancellation between
    /// the decision and here is never missed. Starts the timer, or wakes it if it sleeps
    /// past `until`.
    fn park_until(self: &Arc<Self>, job: Job, until: Instant, reservation: Reservation) {
        let mut state = self.lock();
        let cancelled = job.task().is_cancelled();
        if state.stopped || cancelled {
            state.parked.release(reservation);
            let resolution = if state.stopped {
                state.counters.stopped += 1;
                Resolution::Stopped
            } else {
                state.counters.cancelled += 1;
                Resolution::Cancelled
            };
            let idle = state.is_idle();
            drop(state);
            let now = self.executor.now();
            self.finish(job, resolution, now, Stint::waiting(now), None);
            if idle {
                self.notify_idle();
            }
            return;
        }
        let cancellable = job.task().cancellation().is_some();
        let id = job.task().id();
        let key = state.parked.insert(reservation, job.into_ref(), until);
        if cancellable {
            state.cancellable.insert(id, Place::Parked(key));
        }
        match state.timer {
            None => {
                state.timer = Some(until);
                drop(state);
                let shared = Arc::clone(self);
                self.executor
                    .spawn(Box::pin(async move { shared.run_timer().await }));
            }
            Some(armed) if until < armed => {
                state.timer = Some(until);
                drop(state);
                self.timer_wake.notify_one();
            }
            Some(_) => {}
        }
    }

    /// The pool's timer: queues parked tasks as they fall due, sleeping until the next one;
    /// ends when nothing is parked (a new park starts it again).
    async fn run_timer(self: Arc<Self>) {
        loop {
            let notified = self.timer_wake.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the state is read, so a wake-up in between is not lost.
            notified.as_mut().enable();
            let now = self.executor.now();
            let (started, next) = {
                let mut state = self.lock();
                while let Some(task) = state.parked.pop_due(now) {
                    let cancellable = task.cancellation().is_some();
                    self.push_locked(&mut state, task, cancellable, now);
                }
                let started = self.take_startable(&mut state, now);
                state.timer = state.parked.next_due();
                (started, state.timer)
            };
            self.spawn_runners(started);
            let Some(next) = next else {
                return;
            };
            let sleep = self.executor.sleep(next.saturating_duration_since(now));
            select(sleep, notified).await;
        }
    }

    /// Resolves a cancelled task at once if it waits in the queue or is parked. A running
    /// task's attempt sees its token itself, and the decision after an attempt checks it.
    fn cancel_waiting(&self, id: TaskId) {
        let now = self.executor.now();
        let mut state = self.lock();
        let (task, stint) = match state.cancellable.remove(&id) {
            None => return,
            Some(Place::Queued(key)) => {
                let Some(popped) = state.queue.remove(key) else {
                    return;
                };
                (popped.job, Stint::waiting(popped.enqueued_at))
            }
            Some(Place::Parked(key)) => {
                let Some((task, _)) = state.parked.remove(key) else {
                    return;
                };
                (task, Stint::waiting(now))
            }
        };
        state.counters.cancelled += 1;
        let idle = state.is_idle();
        drop(state);
        self.finish(Job::new(task), Resolution::Cancelled, now, stint, None);
        if idle {
            self.notify_idle();
        }
    }

    fn notify_idle(&self) {
        self.idle.notify_waiters();
        self.observers.emit(&Event::Drained);
    }

    pub(crate) fn set_limit(self: &Arc<Self>, limit: usize) {
        let now = self.executor.now();
        let mut state = self.lock();
        let from = state.limit;
        state.limit = limit;
        let started = self.take_startable(&mut state, now);
        drop(state);
        self.spawn_runners(started);
        if from != limit {
            tracing::debug!(target: "pool_core", from, to = limit, "concurrency changed");
            self.observers
                .emit(&Event::ConcurrencyChanged { from, to: limit });
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.lock().limit
    }

    pub(crate) fn set_paused(self: &Arc<Self>, paused: bool) {
        let now = self.executor.now();
        let mut state = self.lock();
        if state.paused == paused || state.stopped {
            return;
        }
        state.paused = paused;
        let started = self.take_startable(&mut state, now);
        drop(state);
        self.spawn_runners(started);
        if paused {
            tracing::debug!(target: "pool_core", "pool paused");
            self.observers.emit(&Event::Paused);
        } else {
            tracing::debug!(target: "pool_core", "pool resumed");
            self.observers.emit(&Event::Resumed);
        }
    }

    /// Stops the pool: queued tasks resolve `Stopped`, tasks in backoff too; running tasks
    /// finish, or with `now` are dropped at their next poll.
    pub(crate) fn stop(&self, cancel_running: bool) {
        let now = self.executor.now();
        let mut state = self.lock();
        let first_stop = !state.stopped;
        state.stopped = true;
        let jobs = state.queue.drain_all();
        let parked = state.parked.drain_all();
        state.cancellable.clear();
        state.idle_runners = 0;
        // Parked tasks are counted out by the drain; a task the engine decided to park but
        // has not parked yet stays counted until its runner finds the pool stopped.
        state.counters.stopped += (jobs.len() + parked.len()) as u64;
        let idle = state.is_idle();
        drop(state);
        self.timer_wake.notify_one();
        self.work_ready.notify_waiters();
        if cancel_running {
            self.stopped_now.store(true, Ordering::Release);
            self.stop_now_token.cancel();
        }
        for popped in jobs {
            let stint = Stint::waiting(popped.enqueued_at);
            self.finish(Job::new(popped.job), Resolution::Stopped, now, stint, None);
        }
        for task in parked {
            self.finish(
                Job::new(task),
                Resolution::Stopped,
                now,
                Stint::waiting(now),
                None,
            );
        }
        if first_stop {
            tracing::debug!(target: "pool_core", cancel_running, "pool stopped");
            self.observers.emit(&Event::Stopped);
        }
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// Waits until nothing is queued, running, or in backoff.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.lock().is_idle() {
                return;
            }
            notified.await;
        }
    }
}

impl CancelSink for Shared {
    fn cancelled(&self, id: TaskId) {
        self.cancel_waiting(id);
    }
}

/// Drops `value` (user state: a future, a permit, a closure), containing a panic in its `Drop`:
/// it is reported through `tracing` and the engine goes on.
pub(crate) fn drop_contained<T>(what: &str, value: T) {
    if catch_unwind(AssertUnwindSafe(move || drop(value))).is_err() {
        tracing::error!(
            target: "pool_core",
            "{what} panicked while dropped; the panic was contained and the pool keeps running"
        );
    }
}
