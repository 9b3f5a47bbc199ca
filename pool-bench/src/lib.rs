//! Benchmarks of s3pool.
//!
//! - **The 108-case matrix** (`cargo xtask bench-matrix`): s3db.js's benchmark
//!   in Rust. Three [`Engine`]s — `join-all`, one `shared-pool`, `separate-pools` — run
//!   1,000 / 5,000 / 10,000 operations of 1,000 / 2,000 / 5,000 positions at concurrency
//!   10 / 50 / 100 / 200 through `s3-client` against an in-memory `object_store`. Each
//!   operation builds and serialises its payload ([`build_payload`]), PUTs it and DELETEs
//!   it. Each case runs in a fresh process ([`measure_case`]) so its peak RSS is its own;
//!   [`run_matrix`] orchestrates, [`MatrixReport`] and [`write_charts`] write JSON, CSV,
//!   Markdown and SVG.
//! - **Overhead** (`cargo xtask bench-overhead`): s3pool beside tokio `Semaphore` + spawn,
//!   `buffer_unordered`, `tower::limit::ConcurrencyLimit`, channel-fed workers and a minimal
//!   priority pool ([`Peer`]) on no-op and latency-bound workloads, wall-clock and CPU time
//!   ([`Stopwatch`]), and the memory of a queued or parked task ([`run_overhead`]).
//! - **Transfers** (`cargo xtask bench-transfer`, feature `s3-loopback`): one large object
//!   and many small ones, up and down over the in-process S3 server, s3pool's transfers
//!   beside bare object_store idioms, with and without injected failures
//!   ([`run_transfer`]).
//!
//! Every benchmark measures in fresh child processes of its own binary ([`run_child`]).
//!
//! ```
//! # fn main() -> Result<(), pool_bench::BenchError> {
//! use pool_bench::{measure_case, Backend, Case, Engine, Repetitions};
//!
//! let case = Case { engine: Engine::SharedPool, operations: 200, payload_positions: 100, concurrency: 10 };
//! let measured = measure_case(&case, &Backend::Memory, Repetitions { warmup: 0, timed: 2 })?;
//! assert_eq!(measured.durations_ms.len(), 2);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
mod backend;
mod case;
mod chart;
mod child;
mod cpu;
mod engine;
mod error;
mod machine;
mod matrix;
mod measure;
mod overhead;
mod payload;
mod report;
mod stats;
#[cfg(feature = "s3-loopback")]
mod transfer;

pub use backend::Backend;
pub use case::{
    filter_cases, full_matrix, matrix, quick_matrix, Case, Engine, CONCURRENCY, OPERATIONS,
    PAYLOAD_POSITIONS,
};
pub use chart::{write_charts, Metric};
pub use child::{print_result, run_child};
pub use cpu::{process_cpu_time, ResourceUsage, Stopwatch, Timing};
pub use engine::{deal_by_limit, run_case, split_concurrency, CaseRun, SEPARATE_POOLS};
pub use error::BenchError;
pub use machine::{MachineInfo, Versions};
pub use matrix::{measure_in_child, run_matrix, MatrixOptions};
pub use measure::{measure_case, worker_threads, CaseMeasurement, Repetitions};
pub use overhead::{
    measure_waiting_bytes, run_overhead, waiting_bytes_in_child, Comparison, GoalCheck,
    LatencyResult, LatencySample, OverheadOptions, OverheadReport, Peer, QueuedMemory, RoundSample,
    RoundsMet, SlotIdle, Waiting, ORIGINAL_NOOP_OPS_PER_SEC,
};
pub use payload::{build_payload, BYTES_PER_POSITION};
pub use report::{CaseResult, FailedCase, MatrixReport, HEADLINE, MIB, POOLED_PEAK_GOAL_MB};
pub use stats::Summary;
#[cfg(feature = "s3-loopback")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3-loopback")))]
pub use transfer::{
    measure_transfer, run_transfer, Direction, Goal, Scenario, ServerDelta, TransferEngine,
    TransferGoals, TransferMeasurement, TransferOptions, TransferReport, TransferRow, TransferRun,
    TransferSpec, Workload,
};
