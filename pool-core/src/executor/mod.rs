//! Where the pool's work runs and where its time comes from.
//!
//! The pool spawns its runners and sleeps (retry backoff, timeouts) only through
//! [`Executor`], so it runs on tokio ([`TokioExecutor`], feature `tokio`, default), on
//! async-executor with async-io timers (`SmolExecutor`, feature `smol`), or on
//! `SimExecutor` (feature `test-util`): a deterministic single-threaded executor with a
//! virtual clock, for tests and simulations.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

#[cfg(any(test, feature = "test-util"))]
mod sim;
#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(any(test, feature = "test-util"))]
pub use sim::{Deadlock, SimExecutor};
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use smol::SmolExecutor;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio::TokioExecutor;

/// A boxed, sendable future: what an [`Executor`] runs and returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Spawning and timers for a pool.
///
/// Implementations must run spawned futures to completion concurrently with the caller,
/// and `sleep` must complete no earlier than `duration` after it is called according to
/// [`now`](Executor::now).
pub trait Executor: Send + Sync + fmt::Debug + 'static {
    /// Runs `task` in the background; its output is not awaited.
    fn spawn(&self, task: BoxFuture<()>);

    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;

    /// [`sleep`](Executor::sleep), called while this executor polls one of the futures given
    /// to its [`spawn`](Executor::spawn): a pool's runners time their attempts with it, one
    /// sleep per attempt that waits. An executor that must set something up around a sleep
    /// made elsewhere can skip that here: tokio enters its runtime for `sleep` (a counted
    /// reference to the runtime taken and given back, on a cache line that every thread of
    /// the runtime writes), and a task it polls is in its runtime already. The same as
    /// `sleep` unless overridden.
    fn sleep_in_task(&self, duration: Duration) -> BoxFuture<()> {
        self.sleep(duration)
    }

    /// The current time on this executor's clock (virtual for test executors).
    fn now(&self) -> Instant;
}
