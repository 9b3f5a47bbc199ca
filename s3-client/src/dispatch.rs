//! [`Dispatcher`]: the one place where a store call meets the pool (or skips it).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use pool_core::{MakeAttempt, Pool, TaskError, TaskHandle};

use crate::classify::classify;
use crate::group::PoolGroup;
use crate::options::CallOptions;

/// Runs store calls through a pool, a group cap, both, or neither. Shared by
/// [`S3Client`](crate::S3Client) and [`PooledStore`](crate::PooledStore).
#[derive(Debug, Clone)]
pub(crate) struct Dispatcher {
    pool: Option<Pool>,
    group: Option<PoolGroup>,
    /// The group is the pool's admission policy: calls through the pool are already capped.
    pool_admits_group: bool,
}

impl Dispatcher {
    /// A dispatcher whose pool (if any) does not know the group.
    pub(crate) fn new(pool: Option<Pool>, group: Option<PoolGroup>) -> Self {
        Dispatcher {
            pool,
            group,
            pool_admits_group: false,
        }
    }

    /// A dispatcher whose pool was built with the group as its admission policy.
    pub(crate) fn with_admitting_pool(pool: Pool, group: PoolGroup) -> Self {
        Dispatcher {
            pool: Some(pool),
            group: Some(group),
            pool_admits_group: true,
        }
    }

    pub(crate) fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// The group an attempt must hold a permit of while it runs: none without a group, or
    /// when the attempt goes through a pool that already admits by it (`through_pool`).
    fn group_for(&self, through_pool: bool) -> Option<PoolGroup> {
        let group = self.group.as_ref()?;
        if through_pool && self.pool_admits_group {
            return None;
        }
        Some(group.clone())
    }

    /// Wraps an attempt so that it holds a group permit while it runs, unless there is no
    /// group or the pool it runs through already admits it (`through_pool`).
    pub(crate) fn guarded<T: Send + 'static>(
        &self,
        attempt: Attempt<T>,
        through_pool: bool,
    ) -> Attempt<T> {
        match self.group_for(through_pool) {
            None => attempt,
            Some(group) => {
                let mut holding = holding(group, attempt);
                Box::new(move || Box::pin(holding.make_attempt()))
            }
        }
    }

    /// Runs `attempt` (called once per attempt) for `operation` on `key`: queued on the
    /// pool now, its result when awaited.
    ///
    /// Through the pool unless the pool is disabled or the call bypasses it; then there is
    /// one attempt and its error comes back as `TaskError::Failed { attempts: 1 }`.
    pub(crate) fn run<A>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        attempt: A,
    ) -> Submitted<A::Ok>
    where
        A: MakeAttempt<Error = object_store::Error>,
    {
        self.submit(operation, key, options, attempt)
    }

    /// [`run`](Self::run), boxed: a transfer starts its parts this way, so each is on its
    /// way while the next is read.
    pub(crate) fn start<A>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        attempt: A,
    ) -> BoxFuture<'static, Result<A::Ok, TaskError<object_store::Error>>>
    where
        A: MakeAttempt<Error = object_store::Error>,
    {
        Box::pin(self.submit(operation, key, options, attempt))
    }

    /// Queues `attempt` on the pool, or makes its one attempt when the call skips the pool.
    ///
    /// Generic over the attempt, so that the pool stores it and each attempt's future as
    /// they are (no box per attempt); an attempt that must hold a group permit is wrapped.
    fn submit<A>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        attempt: A,
    ) -> Submitted<A::Ok>
    where
        A: MakeAttempt<Error = object_store::Error>,
    {
        match &self.pool {
            Some(pool) if !options.bypass_pool => {
                let options = options.task_options_on(pool, operation, key);
                let handle = match self.group_for(true) {
                    None => pool.enqueue_with(attempt, options, classify),
                    Some(group) => pool.enqueue_with(holding(group, attempt), options, classify),
                };
                Submitted::Pooled(handle)
            }
            _ => {
                let mut attempt = attempt;
                let call = attempt.make_attempt();
                Submitted::Direct(match self.group_for(false) {
                    None => Box::pin(call),
                    Some(group) => Box::pin(async move {
                        let _permit = group.acquire().await;
                        call.await
                    }),
                })
            }
        }
    }

    /// Queues `attempt` on the pool without waiting for it (it runs on the pool's
    /// executor, with the pool's retries; its result is dropped). Without a pool, or when
    /// the call bypasses it, there is nothing to run it on: it is logged and dropped.
    pub(crate) fn run_detached<T: Send + 'static>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        attempt: Attempt<T>,
    ) {
        match &self.pool {
            Some(pool) if !options.bypass_pool => {
                let guarded = self.guarded(attempt, true);
                // A dropped handle leaves its task running, detached.
                drop(pool.enqueue_with(
                    guarded,
                    options.task_options_on(pool, operation, key),
                    classify,
                ));
            }
            _ => tracing::warn!(
                operation,
                key,
                "no pool and no tokio runtime to run this on: not done"
            ),
        }
    }
}

/// `attempt`, each of its attempts holding a permit of `group` while it runs.
fn holding<A>(
    group: PoolGroup,
    mut attempt: A,
) -> impl MakeAttempt<Ok = A::Ok, Error = object_store::Error>
where
    A: MakeAttempt<Error = object_store::Error>,
{
    move || {
        let call = attempt.make_attempt();
        let group = group.clone();
        async move {
            let _permit = group.acquire().await;
            call.await
        }
    }
}

/// A call on its way: a pool task, or the one attempt of a call that skips the pool. Its
/// output is the call's result, in the pool's terms.
pub(crate) enum Submitted<T> {
    Pooled(TaskHandle<T, object_store::Error>),
    Direct(BoxFuture<'static, object_store::Result<T>>),
}

impl<T> Future for Submitted<T> {
    type Output = Result<T, TaskError<object_store::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Submitted::Pooled(handle) => Pin::new(handle).poll(cx),
            Submitted::Direct(attempt) => attempt
                .as_mut()
                .poll(cx)
                .map_err(|error| TaskError::Failed { error, attempts: 1 }),
        }
    }
}

/// One attempt of a store call, callable again for a retry.
pub(crate) type Attempt<T> =
    Box<dyn FnMut() -> BoxFuture<'static, object_store::Result<T>> + Send + 'static>;

/// Boxes an attempt closure.
pub(crate) fn attempt<A>(mut make: A) -> Attempt<A::Ok>
where
    A: MakeAttempt<Error = object_store::Error>,
{
    Box::new(move || Box::pin(make.make_attempt()))
}
