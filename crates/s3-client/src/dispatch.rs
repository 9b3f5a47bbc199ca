//! [`Dispatcher`]: the one place where a store call meets the pool (or skips it).

use futures::future::BoxFuture;
use pool_core::{Pool, TaskError};

use crate::classify::classify;
use crate::group::PoolGroup;
use crate::options::CallOptions;

/// Runs store calls through a pool, a group cap, both, or neither. Shared by
/// [`S3Client`](crate::S3Client) and [`PooledStore`](crate::PooledStore).
#[derive(Debug, Clone)]
pub(crate) struct Dispatcher {
    pool: Option<Pool>,
    group: Option<PoolGroup>,
}

impl Dispatcher {
    pub(crate) fn new(pool: Option<Pool>, group: Option<PoolGroup>) -> Self {
        Dispatcher { pool, group }
    }

    pub(crate) fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// Wraps an attempt so that it holds a group permit (if any) while it runs.
    pub(crate) fn guarded<T: Send + 'static>(&self, mut attempt: Attempt<T>) -> Attempt<T> {
        let Some(group) = self.group.clone() else {
            return attempt;
        };
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
        let mut guarded = self.guarded(attempt);
        match &self.pool {
            Some(pool) if !options.bypass_pool => {
                pool.enqueue_with(guarded, options.task_options(operation, key), classify)
                    .await
            }
            _ => guarded()
                .await
                .map_err(|error| TaskError::Failed { error, attempts: 1 }),
        }
    }
}

/// One attempt of a store call, callable again for a retry.
pub(crate) type Attempt<T> =
    Box<dyn FnMut() -> BoxFuture<'static, object_store::Result<T>> + Send + 'static>;

/// Boxes an attempt closure.
pub(crate) fn attempt<T, F, Fut>(mut make: F) -> Attempt<T>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = object_store::Result<T>> + Send + 'static,
{
    Box::new(move || Box::pin(make()))
}
