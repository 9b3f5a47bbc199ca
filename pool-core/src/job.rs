//! A task as the pool and its handle share it: one allocation holds the closure that makes
//! attempts, the last attempt's result, and the slot the handle reads.
//!
//! Everything a plain task does not need (labels, a token, per-task retries or timeout, the
//! timeline of a retried task, the detail of an unusual ending) lives in one lazily allocated
//! [`Cold`] box, so a queued no-op task is a single 80-byte block (see the size test below).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::admission::Rejection;
use crate::error::{LastFailure, PanicMessage, TaskError};
use crate::observer::{Outcome, TaskInfo};
use crate::runner::drop_contained;
use crate::sync::{AtomicU32, Mutex, MutexGuard};
use crate::task::{ErrorClass, Metadata, TaskId, TaskOptions};

/// How a task is resolved.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// With the value of its last attempt, or its error (both kept inside the task): `None`
    /// if the attempt succeeded, else the class of its error.
    LastAttempt(Option<ErrorClass>),
    TimedOut {
        timeout: Duration,
    },
    Stopped,
    Cancelled,
    Panicked(PanicMessage),
    Rejected(Rejection),
    /// The retry budget refused a retry; `timed_out` says what the last attempt ended with.
    BudgetExhausted {
        timed_out: bool,
    },
}

impl Resolution {
    /// How the task ended, for observers.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Resolution::LastAttempt(None) => Outcome::Succeeded,
            Resolution::LastAttempt(Some(class)) => Outcome::Failed(*class),
            Resolution::TimedOut { .. } => Outcome::TimedOut,
            Resolution::Stopped => Outcome::Stopped,
            Resolution::Cancelled => Outcome::Cancelled,
            Resolution::Panicked(_) => Outcome::Panicked,
            Resolution::Rejected(_) => Outcome::Rejected,
            Resolution::BudgetExhausted { .. } => Outcome::RetryBudgetExhausted,
        }
    }
}

/// The timeline of the attempts a retried task has made so far (a task that runs once
/// never needs one: the runner knows its single stint).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    pub(crate) queued_at: Instant,
    pub(crate) first_started_at: Option<Instant>,
    pub(crate) queue_wait: Duration,
    pub(crate) execution: Duration,
    pub(crate) retry_delay: Duration,
    pub(crate) previous_delay: Option<Duration>,
}

/// The future of one attempt; its output is how the attempt classifies (`None`: success).
/// The attempt's value or error is kept in the task.
pub(crate) type AttemptFuture = Pin<Box<dyn Future<Output = Option<ErrorClass>> + Send>>;

/// What starting an attempt gave.
pub(crate) enum Start {
    /// The task's token had fired: the closure was not called.
    Cancelled,
    /// The pool was stopped with `stop_now`: the closure was not called.
    StoppedNow,
    /// The closure was called.
    Running {
        future: AttemptFuture,
        /// The task's per-attempt timeout (its own or the pool's).
        timeout: Option<Duration>,
        cancellation: Option<CancellationToken>,
    },
}

/// A task with its closure, output and error types hidden, as the pool holds it.
pub(crate) trait ErasedTask: Send + Sync {
    fn id(&self) -> TaskId;
    fn priority(&self) -> i32;
    /// Attempts started so far.
    fn attempts(&self) -> u32;
    /// Counts a new attempt and returns its number (1 for the first).
    fn begin_attempt(&self) -> u32;
    fn info(&self) -> TaskInfo;
    fn cancellation(&self) -> Option<CancellationToken>;
    /// Whether the task's token has fired.
    fn is_cancelled(&self) -> bool;
    /// From now on, the task's token firing tells the engine at once (if it has fired
    /// already, it tells it now). Call it without holding the pool's lock.
    fn watch_cancellation(&self);
    fn retries(&self, pool_default: u32) -> u32;
    /// Calls the closure for the next attempt, unless the task's token has fired or the
    /// pool was stopped with `stop_now` (checked in that order).
    fn start_attempt(self: Arc<Self>, pool_timeout: Option<Duration>, stopped_now: bool) -> Start;
    fn timeline(&self) -> Option<Timeline>;
    fn set_timeline(&self, timeline: Timeline);
    /// The timeline of earlier attempts if the task was retried.
    fn recorded_timeline(&self) -> Option<Timeline>;
    /// Settles the task and wakes its handle. A second call changes nothing.
    fn resolve(&self, resolution: Resolution);
}

/// The pool's reference to a queued task.
pub(crate) type TaskRef = Arc<dyn ErasedTask>;

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
            .expect("a job holds its task until it is resolved or queued")
    }

    /// Back into the queue: the queue is drained (and every task resolved) when the pool stops.
    pub(crate) fn into_ref(mut self) -> TaskRef {
        self.task
            .take()
            .expect("a job holds its task until it is resolved or queued")
    }

    pub(crate) fn resolve(mut self, resolution: Resolution) {
        if let Some(task) = self.task.take() {
            settle(task, resolution);
        }
    }
}

/// Resolves `task` and lets go of the engine's reference. If the handle is gone, that was the
/// last one and the task's own state (its last value or error) is dropped here: a panic in
/// that `Drop` is contained.
fn settle(task: TaskRef, resolution: Resolution) {
    task.resolve(resolution);
    drop_contained("a task's result", task);
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            settle(task, Resolution::Stopped);
        }
    }
}

impl std::fmt::Debug for dyn ErasedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id())
            .field("priority", &self.priority())
            .field("attempts", &self.attempts())
            .finish_non_exhaustive()
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

/// The handle's view of a task: its types known, its closure hidden.
pub(crate) trait ResultSlot<T, E>: Send + Sync {
    fn id(&self) -> TaskId;
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, TaskError<E>>>;
    fn try_result(&self) -> Option<Result<T, TaskError<E>>>;
}

/// How a settled task ended; with the last result and [`Cold::detail`] it makes the handle's
/// value. One byte, so the task's phase fits in the waker's space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    LastAttempt,
    TimedOut,
    Stopped,
    Cancelled,
    Panicked,
    Rejected,
    BudgetExhausted {
        timed_out: bool,
    },
    /// The handle has taken the result.
    Taken,
}

enum Phase<F> {
    /// Not resolved yet: the closure, and the waker of whoever awaits the handle (a no-op
    /// waker until someone does).
    Waiting {
        make_attempt: F,
        waker: Waker,
    },
    Settled(Settled),
}

/// Payloads of the rare endings.
#[derive(Debug)]
enum Detail {
    TimedOut(Duration),
    Panicked(PanicMessage),
    Rejected(Rejection),
}

/// What a task needs of the engine: to hear that its token fired, so a queued or parked
/// task resolves `Cancelled` at once. The engine implements it; the task holds it weakly.
pub(crate) trait CancelSink: Send + Sync {
    /// The token of task `id` fired.
    fn cancelled(&self, id: TaskId);
}

/// Tells the engine when a task's token fires, without a task of its own: the token's wait
/// is registered once with a waker that calls the engine. Dropped when the task resolves.
struct CancelWatch {
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    waker: Waker,
}

/// The waker of a [`CancelWatch`]: woken (on the thread that cancels) when the token fires.
struct CancelWaker {
    sink: Weak<dyn CancelSink>,
    id: TaskId,
}

impl Wake for CancelWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(sink) = self.sink.upgrade() {
            sink.cancelled(self.id);
        }
    }
}

/// What most tasks never need, allocated only for those that do.
#[derive(Default)]
struct Cold {
    metadata: Metadata,
    cancellation: Option<CancellationToken>,
    retries: Option<u32>,
    timeout: Option<Option<Duration>>,
    timeline: Option<Timeline>,
    detail: Option<Detail>,
    watch: Option<CancelWatch>,
}

struct Body<F, T, E> {
    phase: Phase<F>,
    last: Option<Result<T, E>>,
    cold: Option<Box<Cold>>,
}

impl<F, T, E> Body<F, T, E> {
    fn cold(&self) -> Option<&Cold> {
        self.cold.as_deref()
    }

    fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Default::default)
    }
}

/// The concrete task.
pub(crate) struct TaskCell<F, Fut, T, E, C> {
    id: TaskId,
    priority: i32,
    attempts: AtomicU32,
    /// Generic, not boxed: the usual classifier (`E::error_class`) takes no space at all.
    classify: C,
    body: Mutex<Body<F, T, E>>,
    _attempt: PhantomData<fn() -> Fut>,
}

impl<F, Fut, T, E, C> TaskCell<F, Fut, T, E, C> {
    /// A task with `options`; `sink` hears when the options' token fires (only a task with a
    /// token keeps a reference to it).
    pub(crate) fn new(
        id: TaskId,
        options: TaskOptions,
        make_attempt: F,
        classify: C,
        sink: Weak<dyn CancelSink>,
    ) -> Self {
        let TaskOptions {
            priority,
            retries,
            timeout,
            metadata,
            cancellation,
        } = options;
        let plain =
            retries.is_none() && timeout.is_none() && metadata.is_empty() && cancellation.is_none();
        let cold = (!plain).then(|| {
            let watch = cancellation.as_ref().map(|token| CancelWatch {
                cancelled: Box::pin(token.clone().cancelled_owned()),
                waker: Waker::from(Arc::new(CancelWaker { sink, id })),
            });
            Box::new(Cold {
                metadata,
                cancellation,
                retries,
                timeout,
                watch,
                ..Cold::default()
            })
        });
        Self {
            id,
            priority,
            attempts: AtomicU32::new(0),
            classify,
            body: Mutex::new(Body {
                phase: Phase::Waiting {
                    make_attempt,
                    waker: Waker::noop().clone(),
                },
                last: None,
                cold,
            }),
            _attempt: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Body<F, T, E>> {
        // A closure that panicked while called under this lock leaves nothing half-written
        // that matters here: the task resolves `Panicked` either way.
        self.body.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<F, Fut, T, E, C> TaskCell<F, Fut, T, E, C>
where
    C: Fn(&E) -> ErrorClass,
{
    /// Keeps an attempt's result and says how it classifies.
    fn record(&self, result: Result<T, E>) -> Option<ErrorClass> {
        let class = result.as_ref().err().map(&self.classify);
        self.lock().last = Some(result);
        class
    }

    /// The handle's value, leaving the task `Taken`.
    fn take_result(&self, body: &mut Body<F, T, E>, settled: Settled) -> Result<T, TaskError<E>> {
        body.phase = Phase::Settled(Settled::Taken);
        let attempts = self.attempts.load(Ordering::Acquire);
        let detail = body.cold.as_mut().and_then(|cold| cold.detail.take());
        let last = body.last.take();
        match (settled, detail) {
            (Settled::LastAttempt, _) => match last {
                Some(Ok(value)) => Ok(value),
                Some(Err(error)) => Err(TaskError::Failed { error, attempts }),
                // Resolving without an attempt result is a pool bug; never leave the
                // handle hanging because of it.
                None => Err(TaskError::Stopped),
            },
            (Settled::TimedOut, detail) => Err(TaskError::TimedOut {
                timeout: match detail {
                    Some(Detail::TimedOut(timeout)) => timeout,
                    _ => Duration::ZERO,
                },
                attempts,
            }),
            (Settled::Panicked, Some(Detail::Panicked(message))) => {
                Err(TaskError::Panicked(message))
            }
            (Settled::Rejected, Some(Detail::Rejected(rejection))) => {
                Err(TaskError::Rejected(rejection))
            }
            (Settled::BudgetExhausted { timed_out }, _) => {
                let last = match last {
                    Some(Err(error)) if !timed_out => LastFailure::Error(error),
                    _ => LastFailure::TimedOut,
                };
                Err(TaskError::RetryBudgetExhausted { last, attempts })
            }
            (Settled::Cancelled, _) => Err(TaskError::Cancelled),
            // Stopped; a second take (polled after completion); a detail that went missing.
            _ => Err(TaskError::Stopped),
        }
    }
}

impl<F, Fut, T, E, C> ErasedTask for TaskCell<F, Fut, T, E, C>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    C: Fn(&E) -> ErrorClass + Send + Sync + 'static,
{
    fn id(&self) -> TaskId {
        self.id
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Acquire)
    }

    fn begin_attempt(&self) -> u32 {
        self.attempts
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1)
    }

    fn info(&self) -> TaskInfo {
        TaskInfo {
            id: self.id,
            priority: self.priority,
            metadata: self
                .lock()
                .cold()
                .map(|cold| cold.metadata.clone())
                .unwrap_or_default(),
        }
    }

    fn cancellation(&self) -> Option<CancellationToken> {
        self.lock().cold()?.cancellation.clone()
    }

    fn is_cancelled(&self) -> bool {
        self.lock()
            .cold()
            .and_then(|cold| cold.cancellation.as_ref())
            .is_some_and(CancellationToken::is_cancelled)
    }

    fn watch_cancellation(&self) {
        let fired = {
            let mut body = self.lock();
            let Some(watch) = body.cold.as_mut().and_then(|cold| cold.watch.as_mut()) else {
                return;
            };
            let mut cx = Context::from_waker(&watch.waker);
            // Pending: the waker is registered and the token's firing calls it.
            watch
                .cancelled
                .as_mut()
                .poll(&mut cx)
                .is_ready()
                .then(|| watch.waker.clone())
        };
        if let Some(waker) = fired {
            waker.wake();
        }
    }

    fn retries(&self, pool_default: u32) -> u32 {
        self.lock()
            .cold()
            .and_then(|cold| cold.retries)
            .unwrap_or(pool_default)
    }

    fn start_attempt(self: Arc<Self>, pool_timeout: Option<Duration>, stopped_now: bool) -> Start {
        let (future, timeout, cancellation) = {
            let mut body = self.lock();
            let (timeout, cancellation) = match body.cold() {
                Some(cold) => (
                    cold.timeout.unwrap_or(pool_timeout),
                    cold.cancellation.clone(),
                ),
                None => (pool_timeout, None),
            };
            if cancellation
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
            {
                return Start::Cancelled;
            }
            if stopped_now {
                return Start::StoppedNow;
            }
            body.last = None;
            let Phase::Waiting { make_attempt, .. } = &mut body.phase else {
                // Already resolved (stopped meanwhile): nothing to run.
                return Start::Cancelled;
            };
            (make_attempt(), timeout, cancellation)
        };
        let task = self;
        Start::Running {
            future: Box::pin(async move { task.record(future.await) }),
            timeout,
            cancellation,
        }
    }

    fn timeline(&self) -> Option<Timeline> {
        self.lock().cold()?.timeline
    }

    fn set_timeline(&self, timeline: Timeline) {
        self.lock().cold_mut().timeline = Some(timeline);
    }

    fn recorded_timeline(&self) -> Option<Timeline> {
        self.lock().cold()?.timeline
    }

    fn resolve(&self, resolution: Resolution) {
        let (settled, detail) = match resolution {
            Resolution::LastAttempt(_) => (Settled::LastAttempt, None),
            Resolution::TimedOut { timeout } => {
                (Settled::TimedOut, Some(Detail::TimedOut(timeout)))
            }
            Resolution::Stopped => (Settled::Stopped, None),
            Resolution::Cancelled => (Settled::Cancelled, None),
            Resolution::Panicked(message) => (Settled::Panicked, Some(Detail::Panicked(message))),
            Resolution::Rejected(rejection) => {
                (Settled::Rejected, Some(Detail::Rejected(rejection)))
            }
            Resolution::BudgetExhausted { timed_out } => {
                (Settled::BudgetExhausted { timed_out }, None)
            }
        };
        let (waiting, watch) = {
            let mut body = self.lock();
            if !matches!(body.phase, Phase::Waiting { .. }) {
                return;
            }
            if let Some(detail) = detail {
                body.cold_mut().detail = Some(detail);
            }
            let watch = body.cold.as_mut().and_then(|cold| cold.watch.take());
            let waiting = std::mem::replace(&mut body.phase, Phase::Settled(settled));
            (waiting, watch)
        };
        drop(watch);
        // The closure (and what it captured) is dropped outside the lock, and before the
        // handle wakes: a panic in its `Drop` is contained and the handle still wakes.
        if let Phase::Waiting {
            make_attempt,
            waker,
        } = waiting
        {
            drop_contained("a task's closure", make_attempt);
            waker.wake();
        }
    }
}

impl<F, Fut, T, E, C> ResultSlot<T, E> for TaskCell<F, Fut, T, E, C>
where
    F: Send,
    T: Send,
    E: Send,
    C: Fn(&E) -> ErrorClass + Send + Sync,
{
    fn id(&self) -> TaskId {
        self.id
    }

    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, TaskError<E>>> {
        let mut body = self.lock();
        match &mut body.phase {
            Phase::Waiting { waker, .. } => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                Poll::Pending
            }
            Phase::Settled(settled) => {
                let settled = *settled;
                Poll::Ready(self.take_result(&mut body, settled))
            }
        }
    }

    fn try_result(&self) -> Option<Result<T, TaskError<E>>> {
        let mut body = self.lock();
        match body.phase {
            Phase::Waiting { .. } => None,
            Phase::Settled(settled) => Some(self.take_result(&mut body, settled)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn cell_size<F, Fut, C>(_: &F, _: &C) -> usize
    where
        F: FnMut() -> Fut,
    {
        std::mem::size_of::<TaskCell<F, Fut, (), Infallible, C>>()
    }

    /// The layout the memory goal (≤ 128 bytes per queued task) rests on: a waiting task's
    /// phase shares the waker's space, and a no-op cell with `Arc`'s two counters is a
    /// 72-byte request (an 80-byte malloc chunk).
    #[test]
    fn a_plain_task_is_small() {
        assert_eq!(
            std::mem::size_of::<Phase<()>>(),
            std::mem::size_of::<Waker>()
        );
        let make = || std::future::ready(Ok::<(), Infallible>(()));
        let classify = |_: &Infallible| ErrorClass::Fatal;
        let cell = cell_size(&make, &classify);
        assert!(cell + 16 <= 72, "a no-op task cell is {cell} bytes");
    }
}
