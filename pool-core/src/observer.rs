//! The observer seam: events a pool emits, and the trait that receives them.
//!
//! `pool-metrics` and `pool-tuning` plug in here; pool-core knows nothing of them.
//! Observers are called inline on the pool's worker right after the state change, never while
//! the pool's lock is held, so an observer may call back into the pool (e.g.
//! [`PoolControl::set_concurrency`]). They must be quick: for slow work wrap the observer in
//! [`Buffered`](crate::Buffered), which moves events to its own task. A panicking observer is
//! caught, reported through `tracing`, and muted; the pool keeps running.
//!
//! Events own their data (metadata is one `Arc`), so an observer may keep or forward them.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::engine::ticks::{Epoch, Ticks};
use crate::engine::timeline::Timeline;
use crate::outcome::{AttemptResult, Outcome};
use crate::pool::PoolControl;
use crate::task::{ErrorClass, Metadata, TaskId};
use crate::tenant::Tenant;

/// Receives a pool's events. Several may be attached to one pool.
pub trait Observer: Send + Sync + fmt::Debug + 'static {
    /// Called once when the pool is built, with a weak handle that can read stats and change
    /// the concurrency limit (what an adaptive tuner needs). Default: ignored.
    fn on_attach(&self, pool: PoolControl) {
        let _ = pool;
    }

    /// Called for each event of a kind this observer [wants](Self::wants).
    fn on_event(&self, event: &Event);

    /// Called when a task resolves, if this observer wants [`EventKind::TaskFinished`]. The
    /// default makes the owned [`Event::TaskFinished`] ([`FinishedTask::record`]) and hands it
    /// to [`on_event`](Self::on_event).
    ///
    /// Override it to read only what you need: the view turns the engine's moments into
    /// `Instant`s and copies the task's labels only when asked, so an observer that counts
    /// outcomes or sums durations per task pays for neither (a metrics collector recording
    /// every task is the case it is for). The pool calls either this or `on_event` for a
    /// finished task, never both.
    fn on_task_finished(&self, task: &FinishedTask<'_>) {
        self.on_event(&Event::TaskFinished(task.record()));
    }

    /// Whether this observer wants events of `kind`. Asked for every kind when the pool is
    /// built, right after [`on_attach`](Self::on_attach); the pool then builds an event only
    /// if some observer wants its kind (or `tracing` listens to `pool_core::events`), and
    /// hands each observer only the kinds it wants — an event nobody wants costs nothing.
    /// Default: every kind.
    fn wants(&self, kind: EventKind) -> bool {
        let _ = kind;
        true
    }

    /// Whether this observer reads tasks' labels ([`TaskInfo::metadata`]) in the events it
    /// wants. Asked with [`wants`](Self::wants): when the pool is built, and again after
    /// [`on_attach`](Self::on_attach). The pool answers [`Pool::reads_labels`] from it, so
    /// that a caller who labels tasks only for observers (a client labelling each request
    /// with its operation and key) can skip building labels nobody reads.
    /// Default: `true`; answer `false` only if nothing of this observer ever looks at
    /// `metadata`, or hands an event on to something that might.
    ///
    /// [`Pool::reads_labels`]: crate::Pool::reads_labels
    fn reads_labels(&self) -> bool {
        true
    }
}

/// The kind of an [`Event`], for [`Observer::wants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// [`Event::TaskQueued`].
    TaskQueued,
    /// [`Event::TaskStarted`].
    TaskStarted,
    /// [`Event::AttemptFinished`].
    AttemptFinished,
    /// [`Event::TaskRetrying`].
    TaskRetrying,
    /// [`Event::TaskDeferred`].
    TaskDeferred,
    /// [`Event::TaskFinished`].
    TaskFinished,
    /// [`Event::Paused`].
    Paused,
    /// [`Event::Resumed`].
    Resumed,
    /// [`Event::Stopped`].
    Stopped,
    /// [`Event::Drained`].
    Drained,
    /// [`Event::ConcurrencyChanged`].
    ConcurrencyChanged,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 11] = [
        EventKind::TaskQueued,
        EventKind::TaskStarted,
        EventKind::AttemptFinished,
        EventKind::TaskRetrying,
        EventKind::TaskDeferred,
        EventKind::TaskFinished,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::Stopped,
        EventKind::Drained,
        EventKind::ConcurrencyChanged,
    ];

    /// The kind's bit in a set of kinds.
    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// Identity and labels of the task an event is about.
///
/// Read its fields; build one (to test a policy, an observer or a key function) with
/// [`new`](Self::new) and the `with_*` setters, so that a field added later breaks no one.
///
/// ```
/// use pool_core::{Metadata, TaskId, TaskInfo};
/// let task = TaskInfo::new(TaskId(7)).with_metadata(Metadata::new().with("op", "get"));
/// assert_eq!((task.id, task.priority), (TaskId(7), 0));
/// assert_eq!(task.metadata.get("op"), Some("get"));
/// assert!(task.tenant.is_none());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The task's id.
    pub id: TaskId,
    /// Its base priority.
    pub priority: i32,
    /// Its labels.
    pub metadata: Metadata,
    /// Its tenant, if it names one.
    pub tenant: Option<Tenant>,
}

impl TaskInfo {
    /// Task `id` at priority 0, with no labels and no tenant.
    pub fn new(id: TaskId) -> Self {
        Self {
            id,
            priority: 0,
            metadata: Metadata::new(),
            tenant: None,
        }
    }

    /// With base priority `priority`.
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// With labels `metadata`.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Of tenant `tenant`.
    #[must_use]
    pub fn with_tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }
}

/// The whole life of a finished task, delivered with [`Event::TaskFinished`].
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// The task.
    pub task: TaskInfo,
    /// When it was enqueued.
    pub queued_at: Instant,
    /// When its first attempt started (`None` if it never ran, e.g. stopped while queued).
    pub first_started_at: Option<Instant>,
    /// When it resolved.
    pub finished_at: Instant,
    /// Attempts that ran (0 if it never ran).
    pub attempts: u32,
    /// Time spent waiting in the queue, summed over attempts.
    pub queue_wait: Duration,
    /// Time spent running, summed over attempts.
    pub execution: Duration,
    /// Time spent in retry backoff, summed.
    pub retry_delay: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

impl TaskRecord {
    /// From enqueue to resolution.
    pub fn total(&self) -> Duration {
        self.finished_at.saturating_duration_since(self.queued_at)
    }
}

/// A task that just resolved, as [`Observer::on_task_finished`] sees it: its whole timing,
/// read on demand. Each moment becomes an `Instant` only when asked for. The engine keeps
/// waits and latencies as integer nanoseconds: the `*_nanos` readers hand them over as they
/// are kept (an observer that sums or buckets nanoseconds pays nothing to convert), the
/// `Duration` readers make a `Duration` of them. [`record`](Self::record) makes the owned
/// [`TaskRecord`] of [`Event::TaskFinished`], with the same values.
///
/// ```
/// use pool_core::{Event, FinishedTask, Observer};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Sums how long tasks took from enqueue to resolution, without building a record.
/// #[derive(Debug, Default)]
/// struct TotalTime(AtomicU64);
///
/// impl Observer for TotalTime {
///     fn on_event(&self, _event: &Event) {}
///
///     fn on_task_finished(&self, task: &FinishedTask<'_>) {
///         self.0.fetch_add(task.total_nanos(), Ordering::Relaxed);
///     }
/// }
/// ```
pub struct FinishedTask<'a> {
    task: &'a TaskInfo,
    epoch: Epoch,
    timeline: &'a Timeline,
    finished_at: Ticks,
    attempts: u32,
    outcome: Outcome,
    sequence: u64,
}

impl<'a> FinishedTask<'a> {
    #[inline]
    pub(crate) fn new(
        task: &'a TaskInfo,
        epoch: Epoch,
        timeline: &'a Timeline,
        finished_at: Ticks,
        attempts: u32,
        outcome: Outcome,
        sequence: u64,
    ) -> Self {
        Self {
            task,
            epoch,
            timeline,
            finished_at,
            attempts,
            outcome,
            sequence,
        }
    }

    /// Its place in the pool's finishing order, from 0: how many of the pool's tasks
    /// resolved before it. The pool numbers a task when it counts the task's end, under the
    /// lock that counts it, so one pool's numbers are unique, dense and in the order its
    /// [stats](crate::Pool::stats) count endings — an observer that orders or keeps the
    /// latest tasks needs no counter of its own (which every worker thread would write, a
    /// cache line passed between cores on every task). Observers hear of tasks in nearly this
    /// order: two workers finishing at once may deliver them the other way round.
    #[inline]
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The task.
    #[inline]
    pub fn task(&self) -> &'a TaskInfo {
        self.task
    }

    /// When it was enqueued.
    #[inline]
    pub fn queued_at(&self) -> Instant {
        self.epoch.instant(self.timeline.queued_at())
    }

    /// When its first attempt started (`None` if it never ran, e.g. stopped while queued).
    #[inline]
    pub fn first_started_at(&self) -> Option<Instant> {
        let started = self.timeline.first_started_at()?;
        Some(self.epoch.instant(started))
    }

    /// When it resolved.
    #[inline]
    pub fn finished_at(&self) -> Instant {
        self.epoch.instant(self.finished_at)
    }

    /// The pool's clock origin: the moment its engine counts time from (when the pool was
    /// built). Every moment of this view is the origin plus an offset.
    #[inline]
    pub fn clock_origin(&self) -> Instant {
        self.epoch.origin()
    }

    /// When it resolved, as time since [`clock_origin`](Self::clock_origin):
    /// [`finished_at`](Self::finished_at) without making an `Instant`. An observer that places
    /// tasks on a timeline of its own compares offsets from one origin, which costs a
    /// fraction of `Instant` arithmetic (each `Instant` operation normalises seconds and
    /// nanoseconds with overflow checks).
    #[inline]
    pub fn finished_since_origin(&self) -> Duration {
        Duration::from_nanos(self.finished_since_origin_nanos())
    }

    /// [`finished_since_origin`](Self::finished_since_origin) in nanoseconds, as the engine
    /// keeps it.
    #[inline]
    pub fn finished_since_origin_nanos(&self) -> u64 {
        self.finished_at.nanos()
    }

    /// From enqueue to resolution ([`TaskRecord::total`]), without making either moment an
    /// `Instant`.
    #[inline]
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_nanos())
    }

    /// [`total`](Self::total) in nanoseconds.
    #[inline]
    pub fn total_nanos(&self) -> u64 {
        self.finished_at.nanos_since(self.timeline.queued_at())
    }

    /// Attempts that ran (0 if it never ran).
    #[inline]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time spent waiting in the queue, summed over attempts.
    #[inline]
    pub fn queue_wait(&self) -> Duration {
        Duration::from_nanos(self.queue_wait_nanos())
    }

    /// [`queue_wait`](Self::queue_wait) in nanoseconds (saturating at 2^64, 584 years, as
    /// every sum of the engine's).
    #[inline]
    pub fn queue_wait_nanos(&self) -> u64 {
        self.timeline.queue_wait_nanos()
    }

    /// Time spent running, summed over attempts.
    #[inline]
    pub fn execution(&self) -> Duration {
        Duration::from_nanos(self.execution_nanos())
    }

    /// [`execution`](Self::execution) in nanoseconds.
    #[inline]
    pub fn execution_nanos(&self) -> u64 {
        self.timeline.execution_nanos()
    }

    /// Time spent in retry backoff, summed.
    #[inline]
    pub fn retry_delay(&self) -> Duration {
        Duration::from_nanos(self.retry_delay_nanos())
    }

    /// [`retry_delay`](Self::retry_delay) in nanoseconds.
    #[inline]
    pub fn retry_delay_nanos(&self) -> u64 {
        self.timeline.retry_delay_nanos()
    }

    /// How it ended.
    #[inline]
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The owned record, as [`Event::TaskFinished`] carries it (the task's identity cloned).
    pub fn record(&self) -> TaskRecord {
        TaskRecord {
            task: self.task.clone(),
            queued_at: self.queued_at(),
            first_started_at: self.first_started_at(),
            finished_at: self.finished_at(),
            attempts: self.attempts,
            queue_wait: self.queue_wait(),
            execution: self.execution(),
            retry_delay: self.retry_delay(),
            outcome: self.outcome,
        }
    }
}

impl fmt::Debug for FinishedTask<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.record(), f)
    }
}

/// Something that happened in a pool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A task entered the queue (first time; retries emit [`Event::TaskRetrying`]).
    TaskQueued {
        /// The task.
        task: TaskInfo,
        /// Queue length after the push.
        queued: usize,
    },
    /// An attempt started.
    TaskStarted {
        /// The task.
        task: TaskInfo,
        /// 1 for the first attempt.
        attempt: u32,
        /// How long this attempt waited in the queue.
        queue_wait: Duration,
        /// Tasks running now, this one included.
        in_flight: usize,
        /// When it started.
        at: Instant,
    },
    /// An attempt ended (whatever happens to the task next). The signal an adaptive tuner
    /// samples: latency per attempt, throttling, timeouts.
    AttemptFinished {
        /// The task.
        task: TaskInfo,
        /// 1 for the first attempt.
        attempt: u32,
        /// How long the attempt ran.
        latency: Duration,
        /// How it ended.
        result: AttemptResult,
        /// Tasks running when it ended, this one included.
        in_flight: usize,
        /// Tasks waiting in the queue when it ended.
        queued: usize,
        /// When it ended.
        at: Instant,
    },
    /// A failed attempt will be retried after `delay`.
    TaskRetrying {
        /// The task.
        task: TaskInfo,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The backoff before the next attempt is queued again.
        delay: Duration,
        /// Class of the failure.
        class: ErrorClass,
    },
    /// An admission policy's precheck parked the task: it gave its slot back and queues
    /// again at `until` (see [`Admission::precheck`](crate::Admission::precheck)).
    TaskDeferred {
        /// The task.
        task: TaskInfo,
        /// When it queues again.
        until: Instant,
        /// How long from now that is.
        delay: Duration,
    },
    /// A task resolved, with its whole timing.
    TaskFinished(TaskRecord),
    /// `pause()` took effect.
    Paused,
    /// `resume()` took effect.
    Resumed,
    /// `stop()` or `stop_now()` took effect.
    Stopped,
    /// The queue became empty with nothing running, waiting to retry or deferred.
    Drained,
    /// The concurrency limit changed.
    ConcurrencyChanged {
        /// The old limit.
        from: usize,
        /// The new limit.
        to: usize,
    },
}

impl Event {
    /// What kind of event this is.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::TaskQueued { .. } => EventKind::TaskQueued,
            Event::TaskStarted { .. } => EventKind::TaskStarted,
            Event::AttemptFinished { .. } => EventKind::AttemptFinished,
            Event::TaskRetrying { .. } => EventKind::TaskRetrying,
            Event::TaskDeferred { .. } => EventKind::TaskDeferred,
            Event::TaskFinished(_) => EventKind::TaskFinished,
            Event::Paused => EventKind::Paused,
            Event::Resumed => EventKind::Resumed,
            Event::Stopped => EventKind::Stopped,
            Event::Drained => EventKind::Drained,
            Event::ConcurrencyChanged { .. } => EventKind::ConcurrencyChanged,
        }
    }
}

/// The observers of one pool, each muted after its first panic, and the kinds of events
/// each of them wants.
pub(crate) struct ObserverSet {
    slots: Vec<ObserverSlot>,
    /// The kinds some observer wants (bits of [`EventKind`]); set at build, after attach.
    wanted: AtomicU32,
}

struct ObserverSlot {
    observer: std::sync::Arc<dyn Observer>,
    muted: std::sync::atomic::AtomicBool,
    /// The kinds this observer wants.
    wants: AtomicU32,
    /// It reads the labels of the tasks its events name.
    reads_labels: std::sync::atomic::AtomicBool,
}

/// The kinds `observer` wants, as bits.
fn wanted_by(observer: &dyn Observer) -> u32 {
    EventKind::ALL
        .into_iter()
        .filter(|kind| observer.wants(*kind))
        .fold(0, |bits, kind| bits | kind.bit())
}

/// The kinds of events that name a task (and so carry its labels).
const NAMING_A_TASK: u32 = 1 << EventKind::TaskQueued as u32
    | 1 << EventKind::TaskStarted as u32
    | 1 << EventKind::AttemptFinished as u32
    | 1 << EventKind::TaskRetrying as u32
    | 1 << EventKind::TaskDeferred as u32
    | 1 << EventKind::TaskFinished as u32;

/// Whether `observer`, wanting the kinds `wants`, reads labels: it says it does, and wants
/// some event that names a task.
fn reads_labels(observer: &dyn Observer, wants: u32) -> bool {
    wants & NAMING_A_TASK != 0 && observer.reads_labels()
}

impl std::fmt::Debug for ObserverSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverSet")
            .field("observers", &self.slots.len())
            .finish()
    }
}

impl ObserverSet {
    pub(crate) fn new(observers: Vec<std::sync::Arc<dyn Observer>>) -> Self {
        let slots: Vec<ObserverSlot> = observers
            .into_iter()
            .map(|observer| {
                let wants = wanted_by(observer.as_ref());
                ObserverSlot {
                    wants: AtomicU32::new(wants),
                    reads_labels: reads_labels(observer.as_ref(), wants).into(),
                    observer,
                    muted: std::sync::atomic::AtomicBool::new(false),
                }
            })
            .collect();
        let wanted = slots
            .iter()
            .fold(0, |bits, slot| bits | slot.wants.load(Ordering::Relaxed));
        Self {
            slots,
            wanted: AtomicU32::new(wanted),
        }
    }

    /// Whether every attempt has events that name its task ([`EventKind::TaskStarted`],
    /// [`EventKind::AttemptFinished`]): someone wants one of them, or `tracing` listens.
    pub(crate) fn wants_attempt_events(&self) -> bool {
        let bits = EventKind::TaskStarted.bit() | EventKind::AttemptFinished.bit();
        self.wanted.load(Ordering::Relaxed) & bits != 0 || Self::traced()
    }

    /// Whether some wanted event reports a task's waits or latencies (a start, an attempt's
    /// end, a finished task's record): the engine then reads the clock at each attempt's
    /// start and end.
    pub(crate) fn wants_times(&self) -> bool {
        let bits = EventKind::TaskStarted.bit()
            | EventKind::AttemptFinished.bit()
            | EventKind::TaskFinished.bit();
        self.wanted.load(Ordering::Relaxed) & bits != 0 || Self::traced()
    }

    /// Whether an event of `kind` needs to be built: an observer wants it, or `tracing`
    /// listens.
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        self.wanted.load(Ordering::Relaxed) & kind.bit() != 0 || Self::traced()
    }

    /// Whether some observer (not muted) reads the labels of the tasks its events name, or
    /// `tracing` listens (it logs events whole).
    pub(crate) fn read_labels(&self) -> bool {
        Self::traced()
            || self.slots.iter().any(|slot| {
                !slot.muted.load(Ordering::Relaxed) && slot.reads_labels.load(Ordering::Relaxed)
            })
    }

    fn traced() -> bool {
        tracing::enabled!(target: "pool_core::events", tracing::Level::TRACE)
    }

    pub(crate) fn attach(&self, control: &PoolControl) {
        for slot in &self.slots {
            let observer = &slot.observer;
            let attached = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                observer.on_attach(control.clone());
            }));
            if attached.is_err() {
                self.mute(slot);
                continue;
            }
            // Asked again now that the observer knows its pool (what it wants may depend on
            // that: a collector reads a pool's stats instead of counting its events).
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let wants = wanted_by(observer.as_ref());
                (wants, reads_labels(observer.as_ref(), wants))
            })) {
                Ok((wants, reads)) => {
                    slot.wants.store(wants, Ordering::Relaxed);
                    slot.reads_labels.store(reads, Ordering::Relaxed);
                }
                Err(_) => self.mute(slot),
            }
        }
        let wanted = self
            .slots
            .iter()
            .filter(|slot| !slot.muted.load(Ordering::Relaxed))
            .fold(0, |bits, slot| bits | slot.wants.load(Ordering::Relaxed));
        self.wanted.store(wanted, Ordering::Relaxed);
    }

    pub(crate) fn emit(&self, event: &Event) {
        tracing::trace!(target: "pool_core::events", ?event);
        self.deliver(event.kind(), |observer| observer.on_event(event));
    }

    /// Hands a finished task to the observers that want [`EventKind::TaskFinished`], as a
    /// view: each reads what it needs ([`Observer::on_task_finished`]). `tracing` gets the
    /// whole event, made only if it listens.
    pub(crate) fn task_finished(&self, task: &FinishedTask<'_>) {
        if Self::traced() {
            let event = Event::TaskFinished(task.record());
            tracing::trace!(target: "pool_core::events", ?event);
        }
        self.deliver(EventKind::TaskFinished, |observer| {
            observer.on_task_finished(task);
        });
    }

    /// Calls `deliver` with each observer that wants `kind` and has not panicked; mutes one
    /// that panics.
    fn deliver(&self, kind: EventKind, deliver: impl Fn(&dyn Observer)) {
        let bit = kind.bit();
        for slot in &self.slots {
            if slot.muted.load(Ordering::Relaxed) || slot.wants.load(Ordering::Relaxed) & bit == 0 {
                continue;
            }
            let observer = slot.observer.as_ref();
            let delivered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(observer)));
            if delivered.is_err() {
                self.mute(slot);
            }
        }
    }

    fn mute(&self, slot: &ObserverSlot) {
        slot.muted.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(
            target: "pool_core",
            "an observer panicked; it receives no further events (the pool keeps running)"
        );
    }
}
