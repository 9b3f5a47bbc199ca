//! The tokio executor.

use std::time::{Duration, Instant};

use super::{BoxFuture, Executor};

/// Runs the pool on a tokio runtime. Under `tokio::time::pause()` its clock is virtual, so
/// tests of timeouts and backoff run instantly.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pool_core::{Pool, TokioExecutor};
/// let pool = Pool::builder().executor(TokioExecutor::current()).build().unwrap();
/// # let _ = pool;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TokioExecutor {
    handle: tokio::runtime::Handle,
}

impl TokioExecutor {
    /// The runtime this is called from. `None` outside a tokio runtime.
    pub fn try_current() -> Option<Self> {
        tokio::runtime::Handle::try_current()
            .ok()
            .map(Self::from_handle)
    }

    /// The runtime this is called from.
    ///
    /// # Panics
    /// Outside a tokio runtime; use [`try_current`](Self::try_current) to get an `Option`.
    pub fn current() -> Self {
        Self::from_handle(tokio::runtime::Handle::current())
    }

    /// A given runtime.
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        Self { handle }
    }
}

impl Executor for TokioExecutor {
    fn spawn(&self, task: BoxFuture<()>) {
        drop(self.handle.spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let _runtime = self.handle.enter();
        Box::pin(tokio::time::sleep(duration))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}
