//! Metrics for [`pool_core`] pools: how long tasks wait and run (HDR percentiles over a rolling
//! history), throughput and success rate right now, errors and retries by kind, per-task
//! records, concurrency and memory, exported as serde structs or Prometheus text.
//!
//! [`Metrics`] is an [`Observer`](pool_core::Observer): attach a clone to a pool and read the
//! other clone.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pool_core::{Pool, TaskOptions};
//! use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
//!
//! let metrics = Metrics::new(MetricsConfig::default().memory(MemoryMode::Light))?;
//! let pool = Pool::builder().concurrency(8).observer(metrics.clone()).build()?;
//!
//! let handles: Vec<_> = (0..100)
//!     .map(|i| pool.enqueue(move || async move { Ok::<_, std::io::Error>(i) }, TaskOptions::new()))
//!     .collect();
//! for handle in handles {
//!     handle.await?;
//! }
//!
//! let since_start = metrics.aggregate_all();
//! assert_eq!(since_start.finished, 100);
//! println!("p99 execution: {} µs", since_start.execution.p99_us);
//! println!("{}", serde_json::to_string_pretty(&metrics.stats())?);
//! # Ok(())
//! # }
//! ```
//!
//! ## What is kept
//! - **Lifetime counters**: tasks by outcome, attempts, retries, time spent ([`LiveStats`]).
//! - **Rolling window** (10 s): throughput and success rate ([`RollingRates`]).
//! - **Recent ring** (last 256 tasks): averages ([`RecentSummary`], [`Metrics::recent_tasks`]).
//! - **History** (60 s in 12 slices): counts and HDR histograms per slice, merged by
//!   [`Metrics::aggregate`] into p50/p95/p99/p99.9/max ([`Aggregate`]).
//! - **Per-task store** (last 1,000, first in first out): [`Metrics::task_metrics`].
//! - **Per tenant** (tasks that name one): served, queue-wait p99, queued and in flight
//!   ([`LiveStats::tenants`], Prometheus `…_tenant_…{tenant="…"}`).
//! - **Hedged reads**, when a hedger reports here ([`Metrics::count_hedges_from`]; s3-client's
//!   hedged reads do): reads, hedges sent, won, cancelled, not sent and why
//!   ([`LiveStats::hedges`], Prometheus `…_hedge…`).
//! - **Memory** per [`MemoryMode`]: never a system call per task unless `Full`.
//!
//! ## Cost
//! Recording a finished task takes one lock on a per-thread shard (uncontended: threads
//! spread over twice as many shards as cores) and writes nothing another thread writes: the
//! task's place in finishing order is the pool's
//! ([`FinishedTask::sequence`](pool_core::FinishedTask::sequence)). Readers merge the shards.

#![cfg_attr(docsrs, feature(doc_cfg))]
mod config;
mod error;
#[cfg(feature = "metrics-facade")]
mod facade;
mod grid;
mod hedges;
mod history;
mod latency;
mod memory;
mod metrics;
mod numbering;
mod origin;
mod prometheus;
mod recent;
mod record;
mod rolling;
mod shard;
mod snapshot;
mod store;
mod tally;
mod tenants;

pub use config::{MemoryMode, MetricsConfig, MAX_HISTORY_SLICES, MAX_ROLLING_BUCKETS, MAX_SHARDS};
pub use error::ConfigError;
pub use hedges::HedgeCounts;
pub use latency::LatencySummary;
#[cfg(feature = "process-memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "process-memory")))]
pub use memory::ProcessRss;
pub use memory::{MemoryProbe, MemorySnapshot};
pub use metrics::Metrics;
pub use prometheus::PrometheusFormat;
pub use recent::{RecentSummary, RecentTask};
pub use record::TaskMetrics;
pub use snapshot::{
    Aggregate, ConcurrencySnapshot, LiveStats, RollingRates, Snapshot, TimeSpent, TunerState,
    TunerValue, WaitingTasks,
};
pub use tenants::{TenantSnapshot, OTHER_TENANTS};
