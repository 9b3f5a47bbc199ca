//! Runs and single tasks with a caller-given error classifier.

use std::fmt;
use std::future::Future;

use futures::stream::Stream;
use pool_core::{ErrorClass, TaskHandle, TaskOptions};

use crate::manager::TaskManager;
use crate::run::{Collected, InOrder, Run, Streamed};

/// A [`TaskManager`] with an error classifier, from
/// [`TaskManager::classify_errors`]: the same runs and single tasks, for error types that do
/// not implement [`Retryable`](pool_core::Retryable).
#[derive(Clone)]
pub struct Classified<'a, C> {
    manager: &'a TaskManager,
    classify: C,
}

impl<C> fmt::Debug for Classified<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classified")
            .field("manager", self.manager)
            .finish_non_exhaustive()
    }
}

impl<'a, C> Classified<'a, C> {
    pub(crate) fn new(manager: &'a TaskManager, classify: C) -> Self {
        Self { manager, classify }
    }

    /// [`TaskManager::process`] with this classifier.
    pub fn process<I, F, Fut, T, E>(&self, items: I, f: F) -> Run<T, E, Collected>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        F: Fn(I::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .run_over_iter(items, f, self.classify.clone(), true)
    }

    /// [`TaskManager::process_corresponding`] with this classifier.
    pub fn process_corresponding<I, F, Fut, T, E>(&self, items: I, f: F) -> Run<T, E, InOrder>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        F: Fn(I::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .run_over_iter(items, f, self.classify.clone(), true)
    }

    /// [`TaskManager::process_iterable`] with this classifier.
    pub fn process_iterable<I, F, Fut, T, E>(&self, items: I, f: F) -> Run<T, E, Streamed>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        F: Fn(I::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .run_over_iter(items, f, self.classify.clone(), false)
    }

    /// [`TaskManager::process_stream`] with this classifier.
    pub fn process_stream<S, F, Fut, T, E>(&self, items: S, f: F) -> Run<T, E, Streamed>
    where
        S: Stream + Send + 'static,
        S::Item: Clone + Send + 'static,
        F: Fn(S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        let total = crate::manager::exact_len(items.size_hint());
        self.manager
            .run(items, total, f, self.classify.clone(), false)
    }

    /// [`TaskManager::enqueue_with_options`] with this classifier.
    pub fn enqueue_with_options<F, Fut, T, E>(
        &self,
        task: F,
        options: TaskOptions,
    ) -> TaskHandle<T, E>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .pool()
            .enqueue_with(task, options, self.classify.clone())
    }

    /// [`TaskManager::enqueue`] with this classifier.
    pub fn enqueue<F, Fut, T, E>(&self, task: F) -> TaskHandle<T, E>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        C: Fn(&E) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.enqueue_with_options(task, self.manager.default_task_options())
    }
}
