//! An executor on async-executor with async-io timers (the smol ecosystem).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BoxFuture, Executor};

/// Runs the pool on an [`async_executor::Executor`]; timers come from `async-io`.
/// Whoever owns the executor must drive it (e.g. `future::block_on(ex.run(..))`).
#[derive(Debug, Clone)]
pub struct SmolExecutor {
    executor: Arc<async_executor::Executor<'static>>,
}

impl SmolExecutor {
    /// Wraps an executor that the caller drives.
    pub fn new(executor: Arc<async_executor::Executor<'static>>) -> Self {
        Self { executor }
    }
}

impl Executor for SmolExecutor {
    fn spawn(&self, task: BoxFuture<()>) {
        self.executor.spawn(task).detach();
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let timer = async_io::Timer::after(duration);
        Box::pin(async move {
            timer.await;
        })
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    /// async-io's timers run on `Instant::now()`, which has no virtual mode.
    fn now_is_system_clock(&self) -> bool {
        true
    }
}
