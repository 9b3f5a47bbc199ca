//! The future a caller awaits for one task's result.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::error::TaskError;
use crate::runner::Shared;
use crate::task::TaskId;

/// Resolves exactly once with the task's value or a [`TaskError`].
///
/// Dropping the handle does not cancel the task (like a detached spawn); give the task a
/// cancellation token in [`TaskOptions`](crate::TaskOptions) for that. While a handle with a
/// token is being awaited, cancelling the token takes a queued task out of the queue at once.
#[must_use = "a handle does nothing unless awaited; dropping it lets the task run detached"]
pub struct TaskHandle<T, E> {
    id: TaskId,
    result: oneshot::Receiver<Result<T, TaskError<E>>>,
    // Boxed: most tasks have no token, and a handle should stay small.
    cancel: Option<Box<CancelWatch>>,
}

struct CancelWatch {
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    shared: Weak<Shared>,
    fired: bool,
}

impl<T, E> TaskHandle<T, E> {
    pub(crate) fn new(
        id: TaskId,
        result: oneshot::Receiver<Result<T, TaskError<E>>>,
        cancel: Option<(tokio_util::sync::CancellationToken, Weak<Shared>)>,
    ) -> Self {
        let cancel = cancel.map(|(token, shared)| {
            Box::new(CancelWatch {
                cancelled: Box::pin(token.cancelled_owned()),
                shared,
                fired: false,
            })
        });
        Self { id, result, cancel }
    }

    /// The task's id (as seen in events and metrics).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The result if the task has already resolved, without waiting.
    pub fn try_result(&mut self) -> Option<Result<T, TaskError<E>>> {
        match self.result.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(TaskError::Stopped)),
        }
    }
}

impl<T, E> Future for TaskHandle<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(watch) = this.cancel.as_mut().filter(|w| !w.fired) {
            if watch.cancelled.as_mut().poll(cx).is_ready() {
                watch.fired = true;
                let id = this.id;
                if let Some(shared) = watch.shared.upgrade() {
                    // Resolves the task with `Cancelled` if it is still queued; a running
                    // attempt sees the token itself.
                    shared.cancel_queued(id);
                }
            }
        }
        match Pin::new(&mut this.result).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            // The task was dropped without resolving: only possible when the pool and its
            // runtime are gone. Never leave the caller hanging.
            Poll::Ready(Err(_closed)) => Poll::Ready(Err(TaskError::Stopped)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T, E> fmt::Debug for TaskHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("cancellable", &self.cancel.is_some())
            .finish()
    }
}
