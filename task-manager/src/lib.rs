//! # task-manager
//!
//! Bulk processing over an s3pool [`Pool`]: "do this to a million keys, at
//! most N at a time, tell me what failed", with memory bounded by the concurrency rather
//! than by the number of items.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pool_core::ConfigError> {
//! use futures::StreamExt;
//! use pool_core::Transient;
//! use task_manager::TaskManager;
//!
//! let manager = TaskManager::builder().concurrency(16).retries(2).build()?;
//!
//! // A million keys would work the same: they are pulled as slots free up.
//! let keys = (0..1_000).map(|i| format!("photos/{i:06}.jpg"));
//! let mut results = manager
//!     .process_iterable(keys, |key: String| async move {
//!         Ok::<_, Transient<std::io::Error>>(key.len()) // e.g. a HEAD request
//!     })
//!     .on_progress(|p| {
//!         if p.done % 250 == 0 {
//!             println!("{p}");
//!         }
//!     });
//! let mut bytes = 0;
//! while let Some(item) = results.next().await {
//!     match item.result {
//!         Ok(len) => bytes += len,
//!         Err(error) => eprintln!("item {} failed: {error}", item.index),
//!     }
//! }
//! assert_eq!(bytes, 17_000);
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`TaskManagerBuilder`]: the pool's settings and the manager's defaults.
//! - [`TaskManager`]: `process`, `process_corresponding`, `process_iterable`,
//!   `process_stream`, `enqueue`, `pause` / `resume` / `drain` / `stop` / `destroy`, `stats`.
//! - [`Run`]: one run's options (fail-fast, callbacks, progress, priority) and its output:
//!   a [`Stream`](futures::Stream) of [`ItemResult`]s, or an awaited
//!   [`BatchResult`] / `Vec<Result<..>>`.
//! - [`Classified`]: the same with a custom error classifier
//!   ([`TaskManager::classify_errors`]).
//! - [`Processor`]: what a run does to each item (any `Fn(Item) -> impl Future<Output =
//!   Result<..>>`); [`MakeAttempt`]: a single task.
//! - [`Progress`]: done / total / failed / rate for a progress bar.
//! - [`ManagerStats`]: the pool's counters plus items across runs.

#![cfg_attr(docsrs, feature(doc_cfg))]
mod builder;
mod classified;
mod manager;
mod processor;
mod progress;
mod run;
mod stats;

pub use builder::{TaskManagerBuilder, DEFAULT_LOOKAHEAD};
pub use classified::Classified;
pub use manager::TaskManager;
pub use processor::Processor;
pub use progress::Progress;
pub use run::{Collected, InOrder, ItemResult, Run, StopReason, Streamed};
pub use stats::ManagerStats;

// The pool-core types of the API above, so that `task-manager` alone in Cargo.toml is
// enough (and always the pool-core version this crate is built with).
pub use futures;
pub use pool_core::{
    self, BatchError, BatchResult, CancellationToken, ConfigError, ErrorClass, Executor,
    LastFailure, MakeAttempt, Metadata, Observer, Permanent, Pool, PoolBuilder, PoolControl,
    RetryBudget, Retryable, Stats, TaskError, TaskHandle, TaskOptions, Transient,
};

/// The names most programs need, and the stream methods (`next`, …) a streamed
/// [`Run`] is read with: `use task_manager::prelude::*;`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_manager::ConfigError> {
/// use task_manager::prelude::*;
///
/// let manager = TaskManager::builder().concurrency(4).build()?;
/// let mut results = manager.process_iterable(0..10u32, |n| async move {
///     if n < 100 { Ok(n) } else { Err(Permanent("too big")) }
/// });
/// let mut sum = 0;
/// while let Some(item) = results.next().await {
///     sum += item.result.unwrap();
/// }
/// assert_eq!(sum, 45);
/// # Ok(()) }
/// ```
pub mod prelude {
    pub use crate::{
        ErrorClass, ItemResult, Permanent, Progress, Retryable, TaskError, TaskManager,
        TaskOptions, Transient,
    };
    pub use futures::{StreamExt as _, TryStreamExt as _};
}
