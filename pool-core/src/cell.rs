//! A task as the engine and its handle share it: one allocation holds the closure that makes
//! attempts, the last attempt's result, how the task ended, and the waker of whoever awaits
//! the handle.
//!
//! Everything a plain task does not need (labels, a token, per-task retries or timeout, the
//! timeline of a task that left for a while, the payload of an unusual ending) lives in one
//! lazily allocated [`Cold`] box, so a queued no-op task is a single 56-byte block (a 64-byte
//! malloc chunk; see the size test below), its header and thin references from
//! [`crate::raw_task`].
//!
//! The cell knows of the engine only [`CancelSink`]: what its token's firing and its handle's
//! abort must tell. A plain task reaches it through the pointer its cold box would take
//! ([`ColdOrSink`]); a task with a cold box, through the box.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::engine::ending::TaskEnd;
use crate::engine::job::{AttemptFuture, CancelSink, ErasedTask, Start, Waiting};
use crate::engine::timeline::Timeline;
use crate::error::TaskError;
use crate::make_attempt::MakeAttempt;
use crate::observer::TaskInfo;
use crate::raw_task::{AttemptBuffer, ColdOrSink, Guard, Storage};
use crate::sync::AtomicU32;
use crate::task::{ErrorClass, Metadata, TaskId, TaskOptions};
use crate::tenant::Tenant;
use crate::unwind::drop_contained;

/// The handle's view of a task: its types known, its closure hidden. `attempts`: the task's
/// count of attempts started (kept in its header).
pub(crate) trait ResultSlot<T, E>: Send + Sync {
    fn id(&self) -> TaskId;
    fn poll_result(
        &self,
        cx: &mut Context<'_>,
        attempts: &AtomicU32,
    ) -> Poll<Result<T, TaskError<E>>>;
    fn try_result(&self, attempts: &AtomicU32) -> Option<Result<T, TaskError<E>>>;
    /// Whether the task has resolved.
    fn is_resolved(&self) -> bool;
    /// Resolves the task `Cancelled` if it has not resolved yet, and tells the pool; says
    /// whether it did.
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
struct Cold {
    /// Whom an abort by the handle tells (the pointer that holds the box held it before).
    sink: Weak<dyn CancelSink>,
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

impl Cold {
    /// An empty box for a task that had none: its sink moves in.
    fn new<S: CancelSink + 'static>(sink: Weak<S>) -> Self {
        Self {
            sink: sink as Weak<dyn CancelSink>,
            metadata: Metadata::default(),
            cancellation: None,
            tenant: None,
            deadline: None,
            retries: None,
            timeout: None,
            timeline: None,
            end: None,
            watch: None,
        }
    }
}

/// The last attempt's value or error.
type Last<A> = Option<Result<<A as MakeAttempt>::Ok, <A as MakeAttempt>::Error>>;

/// The concrete task: its id, priority and classifier fixed; its phase, cold box and last
/// result under its lock. The classifier is generic, not boxed: the usual one
/// (`E::error_class`) takes no space at all.
pub(crate) struct TaskCell<A: MakeAttempt, C, S> {
    fields: Storage<Fixed<C>, Phase<A>, ColdOrSink<Cold, S>, Last<A>>,
}

/// What a task fixes when it is made besides its id and priority, read without its lock.
struct Fixed<C> {
    classify: C,
    /// Made with no labels and no tenant (both fixed when a task is made: a cold box made
    /// later has neither), so its identity is its id and priority, read without the lock.
    anonymous: bool,
}

/// A task's guarded fields while its lock is held.
type Body<'a, A, C, S> = Guard<'a, Fixed<C>, Phase<A>, ColdOrSink<Cold, S>, Last<A>>;

impl<A: MakeAttempt, C, S: CancelSink + 'static> TaskCell<A, C, S> {
    /// A task with `options`; `sink` hears when the options' token fires or the handle
    /// aborts the task (the task keeps a weak reference to it).
    pub(crate) fn new(
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
        let anonymous = metadata.is_empty() && tenant.is_none();
        let plain = anonymous
            && retries.is_none()
            && timeout.is_none()
            && cancellation.is_none()
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
                sink: Arc::downgrade(sink) as _,
                metadata,
                cancellation,
                tenant,
                deadline,
                retries,
                timeout,
                watch,
                timeline: None,
                end: None,
            })
        });
        let cold = match cold {
            Some(cold) => ColdOrSink::cold(cold),
            None => ColdOrSink::sink(sink),
        };
        let phase = Phase::Waiting {
            make_attempt,
            waker: Waker::noop().clone(),
        };
        Self {
            fields: Storage::new(
                id,
                priority,
                Fixed {
                    classify,
                    anonymous,
                },
                phase,
                cold,
                None,
            ),
        }
    }

    fn lock(&self) -> Body<'_, A, C, S> {
        // A closure that panicked while called under this lock leaves nothing half-written
        // that matters here: the task ends `Panicked` either way.
        self.fields.lock()
    }

    /// The fields of the cold box, if the task has one.
    fn cold<R>(&self, read: impl FnOnce(&Cold) -> R) -> Option<R> {
        self.lock().cold().get().map(read)
    }

    /// The handle's value, leaving the task's result taken (a second take gives `Stopped`).
    fn take_result(
        body: &mut Body<'_, A, C, S>,
        kept: Kept,
        attempts: &AtomicU32,
    ) -> Result<A::Ok, TaskError<A::Error>> {
        let (phase, cold, last) = body.parts();
        *phase = Phase::Ended(Kept::Taken);
        // A success (the usual ending) is its value: no cold box to look in, no ending to
        // translate.
        if kept == Kept::Succeeded {
            if let Some(Ok(value)) = last.take_if(|last| last.is_ok()) {
                return Ok(value);
            }
        }
        let in_cold = cold.get_mut().and_then(|cold| cold.end.take());
        let Some(end) = kept.restore(in_cold) else {
            return Err(TaskError::Stopped);
        };
        end.into_result(last.take(), attempts.load(Ordering::Acquire))
    }
}

impl<A, C, S> TaskCell<A, C, S>
where
    A: MakeAttempt,
    C: Fn(&A::Error) -> ErrorClass,
    S: CancelSink + 'static,
{
    /// Keeps an attempt's result and says how it classifies.
    fn record(&self, result: Result<A::Ok, A::Error>) -> Option<ErrorClass> {
        let class = result.as_ref().err().map(&self.fields.classify.classify);
        *self.lock().last() = Some(result);
        class
    }
}

impl<A, C, S> ErasedTask for TaskCell<A, C, S>
where
    A: MakeAttempt,
    C: Fn(&A::Error) -> ErrorClass + Send + Sync + 'static,
    S: CancelSink + 'static,
{
    fn id(&self) -> TaskId {
        self.fields.id
    }

    fn priority(&self) -> i32 {
        self.fields.priority
    }

    fn info(&self) -> TaskInfo {
        let (metadata, tenant) = if self.fields.classify.anonymous {
            Default::default()
        } else {
            self.cold(|cold| (cold.metadata.clone(), cold.tenant.clone()))
                .unwrap_or_default()
        };
        TaskInfo {
            id: self.fields.id,
            priority: self.fields.priority,
            metadata,
            tenant,
        }
    }

    fn cancellation(&self) -> Option<CancellationToken> {
        self.cold(|cold| cold.cancellation.clone()).flatten()
    }

    fn waiting(&self) -> Waiting {
        self.cold(|cold| Waiting {
            tenant: cold.tenant.clone(),
            cancellable: cold.cancellation.is_some(),
            deadline: cold.deadline,
        })
        .unwrap_or_default()
    }

    fn deadline(&self) -> Option<Instant> {
        self.cold(|cold| cold.deadline).flatten()
    }

    fn is_cancelled(&self) -> bool {
        self.cold(|cold| {
            cold.cancellation
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
        })
        .unwrap_or(false)
    }

    fn watch_cancellation(&self) {
        let fired = {
            let mut body = self.lock();
            let Some(watch) = body.cold().get_mut().and_then(|cold| cold.watch.as_mut()) else {
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
        self.cold(|cold| cold.retries)
            .flatten()
            .unwrap_or(pool_default)
    }

    fn start_attempt<'a>(
        &'a self,
        buffer: &'a mut AttemptBuffer,
        pool_timeout: Option<Duration>,
        stopped_now: bool,
    ) -> Start<'a> {
        let (future, timeout, cancellation) = {
            let mut body = self.lock();
            let (phase, cold, last) = body.parts();
            let (timeout, cancellation) = match cold.get() {
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
            *last = None;
            let Phase::Waiting { make_attempt, .. } = phase else {
                // Already ended (stopped meanwhile): nothing to run.
                return Start::Cancelled;
            };
            (make_attempt.make_attempt(), timeout, cancellation)
        };
        Start::Running {
            future: AttemptFuture::new(async move { self.record(future.await) }, buffer),
            timeout,
            cancellation,
        }
    }

    fn stored_timeline(&self) -> Option<Timeline> {
        self.cold(|cold| cold.timeline.as_deref().copied())
            .flatten()
    }

    fn store_timeline(&self, timeline: Timeline) {
        let mut body = self.lock();
        let cold = body.cold().get_or_insert_with(Cold::new);
        match &mut cold.timeline {
            Some(stored) => **stored = timeline,
            empty => *empty = Some(Box::new(timeline)),
        }
    }

    fn resolve(&self, end: TaskEnd) -> bool {
        self.end_with(end)
    }

    fn is_resolved(&self) -> bool {
        matches!(self.lock().phase(), Phase::Ended(_))
    }
}

impl<A: MakeAttempt, C, S: CancelSink + 'static> TaskCell<A, C, S> {
    /// Ends the task with `end` and wakes its handle, unless it has ended already; says
    /// whether it ended it.
    fn end_with(&self, end: TaskEnd) -> bool {
        let (kept, in_cold) = Kept::keep(end);
        let (waiting, watch) = {
            let mut body = self.lock();
            let (phase, cold, _) = body.parts();
            if !matches!(phase, Phase::Waiting { .. }) {
                return false;
            }
            if in_cold.is_some() {
                cold.get_or_insert_with(Cold::new).end = in_cold;
            }
            let watch = cold.get_mut().and_then(|cold| cold.watch.take());
            let waiting = std::mem::replace(phase, Phase::Ended(kept));
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

impl<A, C, S> ResultSlot<A::Ok, A::Error> for TaskCell<A, C, S>
where
    A: MakeAttempt,
    C: Fn(&A::Error) -> ErrorClass + Send + Sync,
    S: CancelSink + 'static,
{
    fn id(&self) -> TaskId {
        self.fields.id
    }

    fn poll_result(
        &self,
        cx: &mut Context<'_>,
        attempts: &AtomicU32,
    ) -> Poll<Result<A::Ok, TaskError<A::Error>>> {
        let mut body = self.lock();
        match body.phase() {
            Phase::Waiting { waker, .. } => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                Poll::Pending
            }
            Phase::Ended(kept) => {
                let kept = *kept;
                Poll::Ready(Self::take_result(&mut body, kept, attempts))
            }
        }
    }

    fn try_result(&self, attempts: &AtomicU32) -> Option<Result<A::Ok, TaskError<A::Error>>> {
        let mut body = self.lock();
        match *body.phase() {
            Phase::Waiting { .. } => None,
            Phase::Ended(kept) => Some(Self::take_result(&mut body, kept, attempts)),
        }
    }

    fn is_resolved(&self) -> bool {
        matches!(self.lock().phase(), Phase::Ended(_))
    }

    fn abort(&self) -> bool {
        if !self.end_with(TaskEnd::Cancelled) {
            return false;
        }
        let sink = {
            let mut body = self.lock();
            let cold = body.cold();
            match cold.get() {
                Some(cold) => cold.sink.upgrade(),
                None => cold.upgrade_sink().map(|sink| sink as Arc<dyn CancelSink>),
            }
        };
        if let Some(sink) = sink {
            sink.aborted(self.fields.id);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout a queued task's 88 bytes rest on (this 64-byte chunk, a 16-byte queue
    /// slot, the caller's 8-byte handle): a waiting task's phase shares the waker's space, and a no-op
    /// task with its header is a 56-byte request (a 64-byte malloc chunk); one more byte
    /// would make it an 80-byte chunk and fails here. (Shuttle's mutex is larger than the
    /// one-byte lock of a normal build.)
    #[cfg(not(shuttle))]
    #[test]
    fn a_plain_task_is_small() {
        use std::convert::Infallible;
        fn allocation<A: MakeAttempt, C>(_: &A, _: &C) -> usize {
            crate::raw_task::allocation_size::<TaskCell<A, C, crate::engine::Engine>>()
        }

        assert_eq!(
            std::mem::size_of::<Phase<()>>(),
            std::mem::size_of::<Waker>()
        );
        let make = || std::future::ready(Ok::<(), Infallible>(()));
        let classify = |_: &Infallible| ErrorClass::Fatal;
        let bytes = allocation(&make, &classify);
        assert!(bytes <= 56, "a no-op task's allocation is {bytes} bytes");
        assert_eq!(
            std::mem::size_of::<crate::TaskHandle<(), Infallible>>(),
            8,
            "the caller's handle is one pointer"
        );
    }

    /// A pool's tasks through their thin references, end to end: the allocation, the
    /// handle's reference, aborts of a plain task and of one with a cold box, attempt
    /// futures stored in place and in the runner's buffer. For Miri (`cargo +nightly miri
    /// test -p pool-core --lib -- raw_task cell::tests`); the suite's `handles` tests are the
    /// ones that fail when an abort does not reach the pool.
    #[test]
    fn tasks_run_resolve_and_abort_through_their_references() {
        use crate::{Pool, TaskError, Transient};
        use tokio_util::sync::CancellationToken;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pool = Pool::builder().concurrency(2).build().unwrap();
            let quick = pool.enqueue(|| async { Ok::<_, Transient<&str>>(7) }, TaskOptions::new());
            let ballast = [3u8; 100];
            let large = pool.enqueue(
                move || async move { Ok::<_, Transient<&str>>(ballast[5]) },
                TaskOptions::new(),
            );
            let forever = || std::future::pending::<Result<(), Transient<&str>>>();
            let plain = pool.enqueue(forever, TaskOptions::new());
            let cold = pool.enqueue(
                forever,
                TaskOptions::new().cancellation(CancellationToken::new()),
            );
            tokio::task::yield_now().await;
            plain.abort();
            cold.abort();
            assert!(matches!(plain.await, Err(TaskError::Cancelled)));
            assert!(matches!(cold.await, Err(TaskError::Cancelled)));
            assert_eq!(quick.await.unwrap(), 7);
            assert_eq!(large.await.unwrap(), 3);
            pool.drain().await;
            assert_eq!(pool.stats().cancelled, 2);
        });
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
