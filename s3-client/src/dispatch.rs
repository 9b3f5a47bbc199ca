//! [`Dispatcher`]: the one place where a store call meets the pool (or skips it).

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

    /// Wraps an attempt so that it holds a group permit while it runs, unless there is no
    /// group or the pool it runs through already admits it (`through_pool`).
    pub(crate) fn guarded<T: Send + 'static>(
        &self,
        mut attempt: Attempt<T>,
        through_pool: bool,
    ) -> Attempt<T> {
        let Some(group) = self.group.clone() else {
            return attempt;
        };
        if through_pool && self.pool_admits_group {
            return attempt;
        }
        Box::new(move || {
            let call = attempt();
            let group = group.clone();
            Box::pin(async move {
                let _permit = group.acquire().await;
                call.await
            })
        })
    }

    /// Runs `attempt` (called once per attempt) for `operation` on `key`.
    ///
    /// Through the pool unless the pool is disabled or the call bypasses it; then there is
    /// one attempt and its error comes back as `TaskError::Failed { attempts: 1 }`.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        attempt: Attempt<T>,
    ) -> Result<T, TaskError<object_store::Error>> {
        // Awaited in place: a call through the pool boxes no future of its own here.
        self.submit(operation, key, options, attempt)
            .outcome()
            .await
    }

    /// [`run`](Self::run), queued on the pool now rather than when first polled: a
    /// transfer starts its parts this way, so each is on its way while the next is read.
    pub(crate) fn start<T: Send + 'static>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        attempt: Attempt<T>,
    ) -> BoxFuture<'static, Result<T, TaskError<object_store::Error>>> {
        Box::pin(self.submit(operation, key, options, attempt).outcome())
    }

    /// Queues `attempt` on the pool, or makes its one attempt when the call skips the pool.
    fn submit<T: Send + 'static>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        attempt: Attempt<T>,
    ) -> Submitted<T> {
        match &self.pool {
            Some(pool) if !options.bypass_pool => {
                let guarded = self.guarded(attempt, true);
                let options = options.task_options(operation, key);
                Submitted::Pooled(pool.enqueue_with(guarded, options, classify))
            }
            _ => Submitted::Direct(self.guarded(attempt, false)()),
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
                drop(pool.enqueue_with(guarded, options.task_options(operation, key), classify));
            }
            _ => tracing::warn!(
                operation,
                key,
                "no pool and no tokio runtime to run this on: not done"
            ),
        }
    }
}

/// A call on its way: a pool task, or the one attempt of a call that skips the pool.
enum Submitted<T> {
    Pooled(TaskHandle<T, object_store::Error>),
    Direct(BoxFuture<'static, object_store::Result<T>>),
}

impl<T> Submitted<T> {
    /// The call's result, in the pool's terms.
    async fn outcome(self) -> Result<T, TaskError<object_store::Error>> {
        match self {
            Submitted::Pooled(handle) => handle.await,
            Submitted::Direct(attempt) => attempt
                .await
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
