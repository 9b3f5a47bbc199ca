//! A task as the engine and its handle share it: one allocation holds the closure that makes
//! attempts, the last attempt's result, how the task ended, and the waker of whoever awaits
//! the handle.
//!
//! Everything a plain task does not need (labels, a token, per-task retries or timeout, the
//! timeline of a task that left for a while, the payload of an unusual ending) lives in one
//! lazily allocated [`Cold`] box, so a queued no-op task is a single 80-byte block (see the
//! size test below).
//!
//! The cell knows of the engine only [`CancelSink`]: what its token's firing must tell.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::engine::ending::TaskEnd;
use crate::engine::job::{CancelSink, ErasedTask, Start, Waiting};
use crate::engine::timeline::Timeline;
use crate::error::TaskError;
use crate::make_attempt::MakeAttempt;
use crate::observer::TaskInfo;
use crate::sync::{AtomicU32, Mutex, MutexGuard};
use crate::task::{ErrorClass, Metadata, TaskId, TaskOptions};
use crate::tenant::Tenant;
use crate::unwind::drop_contained;

/// The handle's view of a task: its types known, its closure hidden.
pub(crate) trait ResultSlot<T, E>: Send + Sync {
    fn id(&self) -> TaskId;
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, TaskError<E>>>;
    fn try_result(&self) -> Option<Result<T, TaskError<E>>>;
    /// Whether the task has resolved.
    fn is_resolved(&self) -> bool;
    /// Resolves the task `Cancelled` if it has not resolved yet; says whether it did.
    fn abort(&self) -> bool;
}

/// A [`TaskEnd`] as the cell keeps it: the common endings inline, small enough that the
/// task's phase fits in the waker's space; the others ([`TaskEnd::TimedOut`], `Panicked`,
/// `Rejected`), whole in the cold box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Succeeded,
    Failed(ErrorClass),
    Stopped,
    Cancelled,
    BudgetExhausted {
        timed_out: bool,
    },
    DeadlineExceeded {
        timed_out: bool,
        shed: bool,
    },
    /// In [`Cold::end`].
    InCold,
    /// The handle has taken the result.
    Taken,
}

impl Kept {
    /// How `end` is kept: inline, or (`None` inline) in the cold box.
    #[inline]
    fn keep(end: TaskEnd) -> (Kept, Option<TaskEnd>) {
        let kept = match end {
            TaskEnd::Succeeded => Kept::Succeeded,
            TaskEnd::Failed(class) => Kept::Failed(class),
            TaskEnd::Stopped => Kept::Stopped,
            TaskEnd::Cancelled => Kept::Cancelled,
            TaskEnd::BudgetExhausted { timed_out } => Kept::BudgetExhausted { timed_out },
            TaskEnd::DeadlineExceeded { timed_out, shed } => {
                Kept::DeadlineExceeded { timed_out, shed }
            }
            TaskEnd::TimedOut(_)
            | TaskEnd::Panicked(_)
            | TaskEnd::Rejected(_)
            | TaskEnd::RetrySkipped { .. } => return (Kept::InCold, Some(end)),
        };
        (kept, None)
    }

    /// The ending back, given what the cold box kept. `None` once taken.
    #[inline]
    fn restore(self, in_cold: Option<TaskEnd>) -> Option<TaskEnd> {
        Some(match self {
            Kept::Succeeded => TaskEnd::Succeeded,
            Kept::Failed(class) => TaskEnd::Failed(class),
            Kept::Stopped => TaskEnd::Stopped,
            Kept::Cancelled => TaskEnd::Cancelled,
            Kept::BudgetExhausted { timed_out } => TaskEnd::BudgetExhausted { timed_out },
            Kept::DeadlineExceeded { timed_out, shed } => {
                TaskEnd::DeadlineExceeded { timed_out, shed }
            }
            // A payload that went missing would be an engine bug: never hang the handle.
            Kept::InCold => in_cold.unwrap_or(TaskEnd::Stopped),
            Kept::Taken => return None,
        })
    }
}

enum Phase<F> {
    /// Not ended yet: the closure, and the waker of whoever awaits the handle (a no-op
    /// waker until someone does).
    Waiting {
        make_attempt: F,
        waker: Waker,
    },
    Ended(Kept),
}

/// Tells the engine when a task's token fires, without a task of its own: the token's wait
/// is registered once with a waker that calls the engine. Dropped when the task ends.
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
    tenant: Option<Tenant>,
    deadline: Option<Instant>,
    retries: Option<u32>,
    timeout: Option<Option<Duration>>,
    /// Boxed apart: only a task that left for a while keeps one.
    timeline: Option<Box<Timeline>>,
    /// An ending kept as [`Kept::InCold`].
    end: Option<TaskEnd>,
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
pub(crate) struct TaskCell<A: MakeAttempt, C> {
    id: TaskId,
    priority: i32,
    attempts: AtomicU32,
    /// Generic, not boxed: the usual classifier (`E::error_class`) takes no space at all.
    classify: C,
    body: Mutex<Body<A, A::Ok, A::Error>>,
}

impl<A: MakeAttempt, C> TaskCell<A, C> {
    /// A task with `options`; `sink` hears when the options' token fires (only a task with a
    /// token keeps a reference to it, a weak one).
    pub(crate) fn new<S: CancelSink + 'static>(
        id: TaskId,
        options: TaskOptions,
        make_attempt: A,
        classify: C,
        sink: &Arc<S>,
    ) -> Self {
        let TaskOptions {
            priority,
            retries,
            timeout,
            metadata,
            cancellation,
            tenant,
            deadline,
        } = options;
        let plain = retries.is_none()
            && timeout.is_none()
            && metadata.is_empty()
            && cancellation.is_none()
            && tenant.is_none()
            && deadline.is_none();
        let cold = (!plain).then(|| {
            let watch = cancellation.as_ref().map(|token| {
                let sink: Weak<dyn CancelSink> = Arc::downgrade(sink) as _;
                CancelWatch {
                    cancelled: Box::pin(token.clone().cancelled_owned()),
                    waker: Waker::from(Arc::new(CancelWaker { sink, id })),
                }
            });
            Box::new(Cold {
                metadata,
                cancellation,
                tenant,
                deadline,
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
        }
    }

    fn lock(&self) -> MutexGuard<'_, Body<A, A::Ok, A::Error>> {
        // A closure that panicked while called under this lock leaves nothing half-written
        // that matters here: the task ends `Panicked` either way.
        self.body.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle's value, leaving the task's result taken (a second take gives `Stopped`).
    fn take_result(
        &self,
        body: &mut Body<A, A::Ok, A::Error>,
        kept: Kept,
    ) -> Result<A::Ok, TaskError<A::Error>> {
        body.phase = Phase::Ended(Kept::Taken);
        // A success (the usual ending) is its value: no cold box to look in, no ending to
        // translate.
        if kept == Kept::Succeeded {
            if let Some(Ok(value)) = body.last.take_if(|last| last.is_ok()) {
                return Ok(value);
            }
        }
        let in_cold = body.cold.as_mut().and_then(|cold| cold.end.take());
        let Some(end) = kept.restore(in_cold) else {
            return Err(TaskError::Stopped);
        };
        end.into_result(body.last.take(), self.attempts.load(Ordering::Acquire))
    }
}

impl<A, C> TaskCell<A, C>
where
    A: MakeAttempt,
    C: Fn(&A::Error) -> ErrorClass,
{
    /// Keeps an attempt's result and says how it classifies.
    fn record(&self, result: Result<A::Ok, A::Error>) -> Option<ErrorClass> {
        let class = result.as_ref().err().map(&self.classify);
        self.lock().last = Some(result);
        class
    }
}

impl<A, C> ErasedTask for TaskCell<A, C>
where
    A: MakeAttempt,
    C: Fn(&A::Error) -> ErrorClass + Send + Sync + 'static,
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
        let (metadata, tenant) = match self.lock().cold() {
            Some(cold) => (cold.metadata.clone(), cold.tenant.clone()),
            None => Default::default(),
        };
        TaskInfo {
            id: self.id,
            priority: self.priority,
            metadata,
            tenant,
        }
    }

    fn cancellation(&self) -> Option<CancellationToken> {
        self.lock().cold()?.cancellation.clone()
    }

    fn waiting(&self) -> Waiting {
        match self.lock().cold() {
            Some(cold) => Waiting {
                tenant: cold.tenant.clone(),
                cancellable: cold.cancellation.is_some(),
                deadline: cold.deadline,
            },
            None => Waiting::default(),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.lock().cold()?.deadline
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
                // Already ended (stopped meanwhile): nothing to run.
                return Start::Cancelled;
            };
            (make_attempt.make_attempt(), timeout, cancellation)
        };
        let task = self;
        Start::Running {
            future: Box::pin(async move { task.record(future.await) }),
            timeout,
            cancellation,
        }
    }

    fn stored_timeline(&self) -> Option<Timeline> {
        self.lock().cold()?.timeline.as_deref().copied()
    }

    fn info_and_timeline(&self) -> (TaskInfo, Option<Timeline>) {
        let (metadata, tenant, timeline) = match self.lock().cold() {
            Some(cold) => (
                cold.metadata.clone(),
                cold.tenant.clone(),
                cold.timeline.as_deref().copied(),
            ),
            None => Default::default(),
        };
        let info = TaskInfo {
            id: self.id,
            priority: self.priority,
            metadata,
            tenant,
        };
        (info, timeline)
    }

    fn store_timeline(&self, timeline: Timeline) {
        let mut body = self.lock();
        match &mut body.cold_mut().timeline {
            Some(stored) => **stored = timeline,
            empty => *empty = Some(Box::new(timeline)),
        }
    }

    fn resolve(&self, end: TaskEnd) -> bool {
        self.end_with(end)
    }

    fn is_resolved(&self) -> bool {
        matches!(self.lock().phase, Phase::Ended(_))
    }
}

impl<A: MakeAttempt, C> TaskCell<A, C> {
    /// Ends the task with `end` and wakes its handle, unless it has ended already; says
    /// whether it ended it.
    fn end_with(&self, end: TaskEnd) -> bool {
        let (kept, in_cold) = Kept::keep(end);
        let (waiting, watch) = {
            let mut body = self.lock();
            if !matches!(body.phase, Phase::Waiting { .. }) {
                return false;
            }
            if in_cold.is_some() {
                body.cold_mut().end = in_cold;
            }
            let watch = body.cold.as_mut().and_then(|cold| cold.watch.take());
            let waiting = std::mem::replace(&mut body.phase, Phase::Ended(kept));
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
        true
    }
}

impl<A, C> ResultSlot<A::Ok, A::Error> for TaskCell<A, C>
where
    A: MakeAttempt,
    C: Fn(&A::Error) -> ErrorClass + Send + Sync,
{
    fn id(&self) -> TaskId {
        self.id
    }

    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<A::Ok, TaskError<A::Error>>> {
        let mut body = self.lock();
        match &mut body.phase {
            Phase::Waiting { waker, .. } => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                Poll::Pending
            }
            Phase::Ended(kept) => {
                let kept = *kept;
                Poll::Ready(self.take_result(&mut body, kept))
            }
        }
    }

    fn try_result(&self) -> Option<Result<A::Ok, TaskError<A::Error>>> {
        let mut body = self.lock();
        match body.phase {
            Phase::Waiting { .. } => None,
            Phase::Ended(kept) => Some(self.take_result(&mut body, kept)),
        }
    }

    fn is_resolved(&self) -> bool {
        matches!(self.lock().phase, Phase::Ended(_))
    }

    fn abort(&self) -> bool {
        self.end_with(TaskEnd::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout a queued task's 128 bytes rest on (this 80-byte chunk, a 24-byte queue
    /// slot, the caller's 24-byte handle): a waiting task's phase shares the waker's space,
    /// and a no-op cell with `Arc`'s two counters is a 72-byte request (an 80-byte malloc
    /// chunk); one more byte would make it a 96-byte chunk. (Shuttle's mutex is larger than
    /// std's.)
    #[cfg(not(shuttle))]
    #[test]
    fn a_plain_task_is_small() {
        use std::convert::Infallible;
        fn cell_size<A: MakeAttempt, C>(_: &A, _: &C) -> usize {
            std::mem::size_of::<TaskCell<A, C>>()
        }

        assert_eq!(
            std::mem::size_of::<Phase<()>>(),
            std::mem::size_of::<Waker>()
        );
        let make = || std::future::ready(Ok::<(), Infallible>(()));
        let classify = |_: &Infallible| ErrorClass::Fatal;
        let cell = cell_size(&make, &classify);
        assert!(cell + 16 <= 72, "a no-op task cell is {cell} bytes");
    }

    #[test]
    fn every_ending_is_kept_and_restored_whole() {
        use crate::admission::{Rejection, RejectionKind};
        use crate::error::PanicMessage;
        let ends = [
            TaskEnd::Succeeded,
            TaskEnd::Failed(ErrorClass::Throttled),
            TaskEnd::TimedOut(Duration::from_millis(3)),
            TaskEnd::Stopped,
            TaskEnd::Cancelled,
            TaskEnd::Panicked(PanicMessage("boom".into())),
            TaskEnd::Rejected(Rejection::new(RejectionKind::RateLimited, "slow")),
            TaskEnd::BudgetExhausted { timed_out: true },
            TaskEnd::DeadlineExceeded {
                timed_out: true,
                shed: false,
            },
            TaskEnd::DeadlineExceeded {
                timed_out: false,
                shed: true,
            },
        ];
        for end in ends {
            let (kept, in_cold) = Kept::keep(end.clone());
            assert_eq!(kept.restore(in_cold), Some(end));
        }
        assert_eq!(Kept::Taken.restore(None), None);
    }
}
