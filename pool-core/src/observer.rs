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
use std::time::{Duration, Instant};

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

    /// Called for each event.
    fn on_event(&self, event: &Event);
}

/// Identity and labels of the task an event is about.
#[derive(Debug, Clone)]
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

/// The observers of one pool, each muted after its first panic.
pub(crate) struct ObserverSet {
    slots: Vec<ObserverSlot>,
}

struct ObserverSlot {
    observer: std::sync::Arc<dyn Observer>,
    muted: std::sync::atomic::AtomicBool,
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
        let slots = observers
            .into_iter()
            .map(|observer| ObserverSlot {
                observer,
                muted: std::sync::atomic::AtomicBool::new(false),
            })
            .collect();
        Self { slots }
    }

    /// Whether events need to be built at all: someone listens, or `tracing` wants them.
    pub(crate) fn is_active(&self) -> bool {
        !self.slots.is_empty()
            || tracing::enabled!(target: "pool_core::events", tracing::Level::TRACE)
    }

    pub(crate) fn attach(&self, control: &PoolControl) {
        for slot in &self.slots {
            let observer = &slot.observer;
            let attached = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                observer.on_attach(control.clone());
            }));
            if attached.is_err() {
                self.mute(slot);
            }
        }
    }

    pub(crate) fn emit(&self, event: &Event) {
        tracing::trace!(target: "pool_core::events", ?event);
        for slot in &self.slots {
            if slot.muted.load(std::sync::atomic::Ordering::Relaxed) {
                continue;
            }
            let observer = &slot.observer;
            let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                observer.on_event(event);
            }));
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
