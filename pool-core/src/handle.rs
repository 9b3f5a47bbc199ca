//! The future a caller awaits for one task's result.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::cell::ResultSlot;
use crate::error::TaskError;
use crate::task::TaskId;

/// Resolves exactly once with the task's value or a [`TaskError`].
///
/// The handle shares the task's one allocation with the pool (it is the size of a fat
/// pointer); there is no separate channel.
///
/// Dropping the handle does not cancel the task (like a detached spawn); give the task a
/// cancellation token in [`TaskOptions`](crate::TaskOptions) for that: cancelling the token
/// resolves a queued or parked task at once, whether or not the handle is being awaited.
#[must_use = "a handle does nothing unless awaited; dropping it lets the task run detached"]
pub struct TaskHandle<T, E> {
    task: Arc<dyn ResultSlot<T, E>>,
}

impl<T, E> TaskHandle<T, E> {
    pub(crate) fn new(task: Arc<dyn ResultSlot<T, E>>) -> Self {
        Self { task }
    }

    /// The task's id (as seen in events and metrics).
    pub fn id(&self) -> TaskId {
        self.task.id()
    }

    /// The result if the task has already resolved, without waiting. After it has returned
    /// `Some` once, the result is gone: later calls (and awaiting) give `Err(Stopped)`.
    pub fn try_result(&mut self) -> Option<Result<T, TaskError<E>>> {
        self.task.try_result()
    }

    /// This handle, resolving to `(index, result)`: for many handles polled together (in a
    /// `FuturesUnordered`, say) whose results must say which item each one is, as a batch's
    /// and a run's do.
    pub fn indexed(self, index: usize) -> IndexedHandle<T, E> {
        IndexedHandle {
            index,
            handle: self,
        }
    }
}

impl<T, E> Future for TaskHandle<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.task.poll_result(cx)
    }
}

/// A [`TaskHandle`] that resolves to its index beside its result; from
/// [`TaskHandle::indexed`].
#[must_use = "a handle does nothing unless awaited; dropping it lets the task run detached"]
pub struct IndexedHandle<T, E> {
    index: usize,
    handle: TaskHandle<T, E>,
}

impl<T, E> fmt::Debug for IndexedHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexedHandle")
            .field("index", &self.index)
            .field("handle", &self.handle)
            .finish()
    }
}

impl<T, E> IndexedHandle<T, E> {
    /// The index it resolves with.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<T, E> Future for IndexedHandle<T, E> {
    type Output = (usize, Result<T, TaskError<E>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        Pin::new(&mut self.handle)
            .poll(cx)
            .map(|result| (index, result))
    }
}

impl<T, E> fmt::Debug for TaskHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}
