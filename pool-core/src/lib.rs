//! # pool-core
//!
//! The runtime-agnostic heart of s3pool: a priority pool for async operations with a
//! resizable concurrency limit, priority aging, retries (exponential backoff with jitter,
//! pressure-aware, under a retry budget), per-attempt timeouts, cancellation,
//! pause / resume / drain / stop, batches, and events for observers.
//!
//! Every enqueued task resolves exactly once: with its value, its final error, or a typed
//! `Stopped` / `Cancelled` / `TimedOut` / `Panicked` / `RetryBudgetExhausted`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pool_core::ConfigError> {
//! use std::time::Duration;
//! use pool_core::{Pool, TaskOptions, Transient};
//!
//! let pool = Pool::builder()
//!     .concurrency(8)
//!     .retries(2)
//!     .retry_delay(Duration::from_millis(10))
//!     .build()?;
//!
//! let handles: Vec<_> = (0..100u64)
//!     .map(|i| {
//!         let priority = (i % 3) as i32;
//!         pool.enqueue(
//!             move || async move { Ok::<_, Transient<std::io::Error>>(i * 2) },
//!             TaskOptions::new().priority(priority),
//!         )
//!     })
//!     .collect();
//! let mut sum = 0;
//! for handle in handles {
//!     sum += handle.await.expect("no failures");
//! }
//! assert_eq!(sum, 9_900);
//! pool.drain().await;
//! assert_eq!(pool.stats().succeeded, 100);
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`PoolBuilder`]: settings and defaults; [`Pool`]: enqueue and control.
//! - [`MakeAttempt`]: a task (any `FnMut() -> impl Future<Output = Result<..>>`);
//!   [`TaskOptions`], [`TaskHandle`], [`TaskError`]: one task's settings, future and errors.
//! - [`Observer`], [`Event`]: the seam metrics and tuners plug into ([`observer`] argues it).
//! - [`Admission`]: what an attempt must obtain besides a slot (a rate limit's turn, a closed
//!   circuit, a global permit); [`admission`] argues the seam, [`policy`] has the shipped ones.
//! - [`TenantConfig`]: how tenants share a priority level ([`tenant`] argues the scheduler).
//! - [`Executor`]: [`TokioExecutor`] (feature `tokio`, default), `SmolExecutor` (feature
//!   `smol`) and `SimExecutor` (feature `test-util`: deterministic, on virtual time).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod admission;
mod batch;
mod buffered;
mod builder;
mod cell;
mod deadline;
mod engine;
mod error;
mod executor;
mod handle;
mod make_attempt;
pub mod observer;
mod outcome;
pub mod policy;
mod pool;
mod queue;
mod raw_task;
mod retry;
mod stats;
mod sync;
mod task;
pub mod tenant;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
mod unwind;

pub use admission::{Admission, AdmissionPermit, Precheck, Rejection, RejectionKind, Wakeup};
pub use batch::{Batch, BatchError, BatchResult};
pub use buffered::Buffered;
pub use builder::PoolBuilder;
pub use error::{ConfigError, LastFailure, PanicMessage, Saturation, TaskError};
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use executor::SmolExecutor;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use executor::TokioExecutor;
pub use executor::{BoxFuture, Executor, ResettableSleep};
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use executor::{Deadlock, SimExecutor};
pub use handle::{IndexedHandle, TaskHandle};
pub use make_attempt::MakeAttempt;
pub use observer::{Event, EventKind, FinishedTask, Observer, TaskInfo, TaskRecord};
pub use outcome::{AttemptResult, Outcome};
pub use pool::{Pool, PoolControl};
pub use retry::{Jitter, RetryBudget, RetryPolicy};
pub use stats::Stats;
pub use task::{ErrorClass, Metadata, Permanent, Retryable, TaskId, TaskOptions, Transient};
pub use tenant::{Tenant, TenantConfig, TenantStats};
pub use tokio_util::sync::CancellationToken;
