//! A queued task with its types erased, so one pool runs tasks of any output and error type.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::{LastFailure, PanicMessage, TaskError};
use crate::observer::{Outcome, TaskInfo};
use crate::task::{ErrorClass, Metadata, TaskId};

/// What every task carries, whatever its types: identity, settings, and its timeline.
#[derive(Debug)]
pub(crate) struct TaskCore {
    pub(crate) id: TaskId,
    pub(crate) priority: i32,
    pub(crate) metadata: Metadata,
    pub(crate) retries: u32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) cancellation: Option<CancellationToken>,
    pub(crate) attempts: u32,
    pub(crate) queued_at: Instant,
    /// When the task last entered the queue (first enqueue or after a backoff).
    pub(crate) entered_queue_at: Instant,
    pub(crate) first_started_at: Option<Instant>,
    /// When the current attempt started (set when the task is popped).
    pub(crate) attempt_started_at: Instant,
    pub(crate) queue_wait: Duration,
    pub(crate) execution: Duration,
    pub(crate) retry_delay: Duration,
    pub(crate) previous_delay: Option<Duration>,
    /// How long the last attempt ran.
    pub(crate) last_attempt: Duration,
    /// Tasks running when the current attempt started, this one included.
    pub(crate) in_flight_at_start: usize,
}

impl TaskCore {
    pub(crate) fn info(&self) -> TaskInfo {
        TaskInfo {
            id: self.id,
            priority: self.priority,
            metadata: self.metadata.clone(),
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancellation
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }
}

/// How a task is resolved.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// With the value of its last attempt, or its error (both kept inside the task).
    LastAttempt,
    TimedOut,
    Stopped,
    Cancelled,
    Panicked(PanicMessage),
    Rejected(crate::admission::Rejection),
    /// The retry budget refused a retry; `timed_out` says what the last attempt ended with.
    BudgetExhausted {
        timed_out: bool,
    },
}

/// A task whose output and error types are hidden behind this trait.
pub(crate) trait ErasedTask: Send {
    fn core(&self) -> &TaskCore;
    fn core_mut(&mut self) -> &mut TaskCore;
    /// Creates the future of the next attempt (calls the task's closure).
    fn start_attempt(&mut self);
    /// Polls the running attempt. `Ready(None)` is success, `Ready(Some(class))` a failure.
    fn poll_attempt(&mut self, cx: &mut Context<'_>) -> Poll<Option<ErrorClass>>;
    /// Drops the running attempt (timed out, cancelled, or it panicked).
    fn abandon_attempt(&mut self);
    /// Which outcome `resolution` will be, without resolving (observers hear of it first).
    fn outcome(&self, resolution: &Resolution) -> Outcome;
    /// Sends the result to the task's handle.
    fn resolve(self: Box<Self>, resolution: Resolution);
}

pub(crate) type Job = Box<dyn ErasedTask>;

impl std::fmt::Debug for dyn ErasedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("core", self.core())
            .finish_non_exhaustive()
    }
}

/// The concrete task: the closure that makes attempts, the attempt in flight, the last
/// result, and the channel to the handle.
pub(crate) struct TaskCell<F, Fut, T, E, C>
where
    Fut: Future<Output = Result<T, E>>,
{
    pub(crate) core: TaskCore,
    make_attempt: F,
    /// Generic, not boxed: the usual classifier (`E::error_class`) takes no space at all.
    classify: C,
    in_flight: Option<Pin<Box<Fut>>>,
    last: Option<Result<T, E>>,
    result_tx: oneshot::Sender<Result<T, TaskError<E>>>,
}

impl<F, Fut, T, E, C> TaskCell<F, Fut, T, E, C>
where
    Fut: Future<Output = Result<T, E>>,
{
    pub(crate) fn new(
        core: TaskCore,
        make_attempt: F,
        classify: C,
        result_tx: oneshot::Sender<Result<T, TaskError<E>>>,
    ) -> Self {
        Self {
            core,
            make_attempt,
            classify,
            in_flight: None,
            last: None,
            result_tx,
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
    fn core(&self) -> &TaskCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut TaskCore {
        &mut self.core
    }

    fn start_attempt(&mut self) {
        self.last = None;
        self.in_flight = Some(Box::pin((self.make_attempt)()));
    }

    fn poll_attempt(&mut self, cx: &mut Context<'_>) -> Poll<Option<ErrorClass>> {
        let Some(future) = self.in_flight.as_mut() else {
            return Poll::Ready(Some(ErrorClass::Fatal));
        };
        let result = std::task::ready!(future.as_mut().poll(cx));
        self.in_flight = None;
        let class = match &result {
            Ok(_) => None,
            Err(error) => Some((self.classify)(error)),
        };
        self.last = Some(result);
        Poll::Ready(class)
    }

    fn abandon_attempt(&mut self) {
        self.in_flight = None;
    }

    fn outcome(&self, resolution: &Resolution) -> Outcome {
        match resolution {
            Resolution::LastAttempt => match &self.last {
                Some(Ok(_)) => Outcome::Succeeded,
                Some(Err(error)) => Outcome::Failed((self.classify)(error)),
                None => Outcome::Stopped,
            },
            Resolution::TimedOut => Outcome::TimedOut,
            Resolution::Stopped => Outcome::Stopped,
            Resolution::Cancelled => Outcome::Cancelled,
            Resolution::Panicked(_) => Outcome::Panicked,
            Resolution::Rejected(_) => Outcome::Rejected,
            Resolution::BudgetExhausted { .. } => Outcome::RetryBudgetExhausted,
        }
    }

    fn resolve(self: Box<Self>, resolution: Resolution) {
        let this = *self;
        let attempts = this.core.attempts;
        let timeout = this.core.timeout.unwrap_or_default();
        let result = match resolution {
            Resolution::LastAttempt => match this.last {
                Some(Ok(value)) => Ok(value),
                Some(Err(error)) => Err(TaskError::Failed { error, attempts }),
                // Resolving without an attempt result is a pool bug; never leave the
                // handle hanging because of it.
                None => Err(TaskError::Stopped),
            },
            Resolution::TimedOut => Err(TaskError::TimedOut { timeout, attempts }),
            Resolution::Stopped => Err(TaskError::Stopped),
            Resolution::Cancelled => Err(TaskError::Cancelled),
            Resolution::Panicked(message) => Err(TaskError::Panicked(message)),
            Resolution::Rejected(rejection) => Err(TaskError::Rejected(rejection)),
            Resolution::BudgetExhausted { timed_out } => {
                let last = match this.last {
                    Some(Err(error)) if !timed_out => LastFailure::Error(error),
                    _ => LastFailure::TimedOut,
                };
                Err(TaskError::RetryBudgetExhausted { last, attempts })
            }
        };
        // The handle may have been dropped: the caller does not want the result.
        let _ = this.result_tx.send(result);
    }
}
