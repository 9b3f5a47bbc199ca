//! Runs and single tasks with a caller-given error classifier.

use std::fmt;

use futures::stream::Stream;
use pool_core::{ErrorClass, MakeAttempt, TaskHandle, TaskOptions};

use crate::manager::TaskManager;
use crate::processor::Processor;
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
    pub fn process<I, P>(&self, items: I, f: P) -> Run<P::Ok, P::Error, Collected>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        P: Processor<I::Item>,
        C: Fn(&P::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .run_over_iter(items, f, self.classify.clone(), true)
    }

    /// [`TaskManager::process_corresponding`] with this classifier.
    pub fn process_corresponding<I, P>(&self, items: I, f: P) -> Run<P::Ok, P::Error, InOrder>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        P: Processor<I::Item>,
        C: Fn(&P::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .run_over_iter(items, f, self.classify.clone(), true)
    }

    /// [`TaskManager::process_iterable`] with this classifier.
    pub fn process_iterable<I, P>(&self, items: I, f: P) -> Run<P::Ok, P::Error, Streamed>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Clone + Send + 'static,
        P: Processor<I::Item>,
        C: Fn(&P::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .run_over_iter(items, f, self.classify.clone(), false)
    }

    /// [`TaskManager::process_stream`] with this classifier.
    pub fn process_stream<S, P>(&self, items: S, f: P) -> Run<P::Ok, P::Error, Streamed>
    where
        S: Stream + Send + 'static,
        S::Item: Clone + Send + 'static,
        P: Processor<S::Item>,
        C: Fn(&P::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .run_over_stream(items, f, self.classify.clone())
    }

    /// [`TaskManager::enqueue_with_options`] with this classifier.
    pub fn enqueue_with_options<A>(
        &self,
        task: A,
        options: TaskOptions,
    ) -> TaskHandle<A::Ok, A::Error>
    where
        A: MakeAttempt,
        C: Fn(&A::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.manager
            .pool()
            .enqueue_with(task, options, self.classify.clone())
    }

    /// [`TaskManager::enqueue`] with this classifier.
    pub fn enqueue<A>(&self, task: A) -> TaskHandle<A::Ok, A::Error>
    where
        A: MakeAttempt,
        C: Fn(&A::Error) -> ErrorClass + Clone + Send + Sync + 'static,
    {
        self.enqueue_with_options(task, self.manager.default_task_options())
    }
}
