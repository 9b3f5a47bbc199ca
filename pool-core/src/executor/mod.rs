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
use std::task::{Context, Poll};
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

/// A sleep that can be moved to another deadline: from
/// [`Executor::resettable_sleep`].
pub trait ResettableSleep: Send {
    /// Completes at `deadline` (on the executor's clock) instead, earlier or later than it
    /// was set to, whether or not it had completed.
    fn reset(self: Pin<&mut Self>, deadline: Instant);

    /// `Ready` once the deadline has passed; otherwise `cx`'s waker is woken then.
    fn poll_elapsed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

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

    /// A sleep until `deadline` (on [`now`](Executor::now)'s clock) that can be moved to
    /// another deadline, made while this executor polls one of the futures given to its
    /// [`spawn`](Executor::spawn) (as [`sleep_in_task`](Executor::sleep_in_task)). A pool's
    /// runner keeps one for the timeouts of all the attempts it runs and moves it to each
    /// attempt's end: with tokio, moving a registered timer later is one atomic
    /// compare-and-swap, where a sleep per attempt is registered with the timer driver and
    /// taken out again under its lock. `None` (the default): the runner makes a
    /// `sleep_in_task` for each attempt that waits.
    fn resettable_sleep(&self, deadline: Instant) -> Option<Pin<Box<dyn ResettableSleep>>> {
        let _ = deadline;
        None
    }

    /// The current time on this executor's clock (virtual for test executors).
    fn now(&self) -> Instant;

    /// Whether [`now`](Executor::now) is always the system's monotonic clock, the one
    /// `Instant::now()` reads, and never a virtual one, and this executor's sleeps run on
    /// it. A pool then reads that clock itself for the moments of its tasks (about 5 ns and
    /// 55 instructions cheaper per read than `now` and an `Instant` turned into nanoseconds;
    /// one read per task, two with observers that want latencies) and calls `now` only for
    /// the `Instant`s it hands out. `false` (the default) keeps every read going through
    /// `now`: an executor whose clock can be virtual even once (tokio's paused time,
    /// `SimExecutor`) must answer `false`, or the pool would time its tasks on the real
    /// clock while its sleeps run on the virtual one.
    fn now_is_system_clock(&self) -> bool {
        false
    }
}
