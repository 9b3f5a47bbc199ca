//! What the engine and a task know of each other: [`ErasedTask`], a task with its closure,
//! output and error types hidden, as the engine holds it; [`Job`], a task out of the queue
//! that must be resolved; and [`CancelSink`], all a task knows of the engine.
//!
//! The concrete task (`TaskCell`, in `cell.rs`) implements `ErasedTask` and calls
//! `CancelSink`; the engine never names it, so dependencies point one way: the cell on the
//! engine's interfaces.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::observer::TaskInfo;
use crate::raw_task::AttemptBuffer;
use crate::task::{ErrorClass, TaskId};
use crate::tenant::Tenant;
use crate::unwind::drop_contained;

use super::ending::TaskEnd;
use super::timeline::Timeline;

/// The future of one attempt; its output is how the attempt classifies (`None`: success).
/// The attempt's value or error is kept in the task, which it borrows. Stored in place when
/// small, else in its runner's buffer (no allocation per attempt either way); it must be
/// pinned where it is polled.
pub(crate) type AttemptFuture<'a> = crate::raw_task::InlineFuture<'a, Option<ErrorClass>>;

/// What starting an attempt gave.
pub(crate) enum Start<'a> {
    /// The task's token had fired: the closure was not called.
    Cancelled,
    /// The pool was stopped with `stop_now`: the closure was not called.
    StoppedNow,
    /// The closure was called.
    Running {
        future: AttemptFuture<'a>,
        /// The task's per-attempt timeout (its own or the pool's).
        timeout: Option<Duration>,
        cancellation: Option<CancellationToken>,
    },
}

/// How a task waits: what the engine needs to know to queue it (again).
#[derive(Debug, Clone, Default)]
pub(crate) struct Waiting {
    /// Whose share of the slots it starts from; `None`: the share of tasks without one.
    pub(crate) tenant: Option<Tenant>,
    /// It has a cancellation token.
    pub(crate) cancellable: bool,
    /// By when it must have resolved.
    pub(crate) deadline: Option<Instant>,
}

impl Waiting {
    /// The engine must be able to find the task where it waits: to end it when its token
    /// fires or its deadline passes.
    pub(crate) fn findable(&self) -> bool {
        self.cancellable || self.deadline.is_some()
    }
}

/// A task with its closure, output and error types hidden, as the engine holds it (through
/// a [`TaskRef`], which also counts its attempts).
pub(crate) trait ErasedTask: Send + Sync + 'static {
    fn id(&self) -> TaskId;
    fn priority(&self) -> i32;
    fn info(&self) -> TaskInfo;
    fn cancellation(&self) -> Option<CancellationToken>;
    /// By when it must have resolved.
    fn deadline(&self) -> Option<Instant>;
    /// How the task waits when it is queued again (after a retry backoff or a deferral).
    fn waiting(&self) -> Waiting;
    /// Whether the task's token has fired.
    fn is_cancelled(&self) -> bool;
    /// From now on, the task's token firing tells the engine at once (if it has fired
    /// already, it tells it now). Call it without holding the engine's lock.
    fn watch_cancellation(&self);
    fn retries(&self, pool_default: u32) -> u32;
    /// Calls the closure for the next attempt, unless the task's token has fired or the
    /// pool was stopped with `stop_now` (checked in that order). The attempt's future
    /// borrows the task (whoever runs it holds the task meanwhile), and is stored in `buffer`
    /// if it is too large to be stored in place.
    fn start_attempt<'a>(
        &'a self,
        buffer: &'a mut AttemptBuffer,
        pool_timeout: Option<Duration>,
        stopped_now: bool,
    ) -> Start<'a>;
    /// The timeline the task kept when it last left for a while (retry backoff, deferral).
    fn stored_timeline(&self) -> Option<Timeline>;
    fn store_timeline(&self, timeline: Timeline);
    /// Ends the task and wakes its handle; says whether it did. A second call changes
    /// nothing (the first may come from [`TaskHandle::abort`](crate::TaskHandle::abort)).
    fn resolve(&self, end: TaskEnd) -> bool;
    /// Whether the task has resolved. Before the engine finishes a task, only an abort
    /// resolves it.
    fn is_resolved(&self) -> bool;
}

/// What a task needs of the engine: to hear that its token fired, or that its handle aborted
/// it, so a queued or parked task ends `Cancelled` at once (and a running one at its next
/// wake-up). The engine implements it; a task holds it weakly.
pub(crate) trait CancelSink: Send + Sync {
    /// The token of task `id` fired.
    fn cancelled(&self, id: TaskId);
    /// Task `id` was resolved by its handle's `abort`.
    fn aborted(&self, id: TaskId);
}

/// The engine's reference to a task (8 bytes; see [`crate::raw_task`]).
pub(crate) use crate::raw_task::TaskRef;

/// A task taken out of the queue. Whoever holds it must resolve it: dropping it unresolved
/// (a runtime shut down under a running task) resolves the handle with `Stopped`, so a
/// caller is never left waiting.
pub(crate) struct Job {
    task: Option<TaskRef>,
}

impl Job {
    pub(crate) fn new(task: TaskRef) -> Self {
        Self { task: Some(task) }
    }

    pub(crate) fn task(&self) -> &TaskRef {
        self.task
            .as_ref()
            .expect("a job holds its task until it is resolved or parked")
    }

    /// Back into the engine's keeping (parked): the parked set is drained, and every task in
    /// it resolved, when the pool stops.
    pub(crate) fn into_ref(mut self) -> TaskRef {
        self.task
            .take()
            .expect("a job holds its task until it is resolved or parked")
    }

    /// Resolves the task; says whether it was resolved by someone else first (an abort).
    pub(crate) fn resolve(mut self, end: TaskEnd) -> bool {
        match self.task.take() {
            Some(task) => !settle(task, end),
            None => false,
        }
    }
}

/// Resolves `task` and lets go of the engine's reference. If the handle is gone, that was the
/// last one and the task's own state (its last value or error) is dropped here: a panic in
/// that `Drop` is contained.
fn settle(task: TaskRef, end: TaskEnd) -> bool {
    let resolved = task.resolve(end);
    drop_contained("a task's result", task);
    resolved
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            settle(task, TaskEnd::Stopped);
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Job");
        if let Some(task) = &self.task {
            debug
                .field("id", &task.id())
                .field("attempts", &task.attempts());
        }
        debug.finish_non_exhaustive()
    }
}

/// A task that is only ever held, never run: for tests of what holds tasks.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Keeps `held` (say, something that counts its drops) as long as the task lives.
    #[derive(Debug)]
    pub(crate) struct Inert<D = ()> {
        pub(crate) id: TaskId,
        pub(crate) priority: i32,
        pub(crate) _held: D,
    }

    impl Default for Inert {
        fn default() -> Self {
            Self {
                id: TaskId(0),
                priority: 0,
                _held: (),
            }
        }
    }

    impl<D: Send + Sync + 'static> ErasedTask for Inert<D> {
        fn id(&self) -> TaskId {
            self.id
        }
        fn priority(&self) -> i32 {
            self.priority
        }
        fn info(&self) -> TaskInfo {
            unreachable!("an inert task is never observed")
        }
        fn cancellation(&self) -> Option<CancellationToken> {
            None
        }
        fn deadline(&self) -> Option<Instant> {
            None
        }
        fn waiting(&self) -> Waiting {
            Waiting::default()
        }
        fn is_cancelled(&self) -> bool {
            false
        }
        fn watch_cancellation(&self) {}
        fn retries(&self, pool_default: u32) -> u32 {
            pool_default
        }
        fn start_attempt<'a>(
            &'a self,
            _: &'a mut AttemptBuffer,
            _: Option<Duration>,
            _: bool,
        ) -> Start<'a> {
            unreachable!("an inert task is never run")
        }
        fn stored_timeline(&self) -> Option<Timeline> {
            None
        }
        fn store_timeline(&self, _: Timeline) {}
        fn resolve(&self, _: TaskEnd) -> bool {
            true
        }
        fn is_resolved(&self) -> bool {
            false
        }
    }
}
