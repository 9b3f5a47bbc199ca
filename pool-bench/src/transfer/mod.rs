//! `bench-transfer`: large objects and many objects, uploaded and downloaded over the
//! in-process S3 server on loopback, s3pool's transfers beside bare object_store idioms,
//! without and with injected failures. Each run is a fresh child process (the matrix's
//! protocol, [`run_child`](crate::run_child)) so its peak RSS and CPU time are its own; the
//! server lives in the orchestrating process.

mod content;
mod engines;
mod report;
mod run;
mod threads;

use std::fmt;
use std::path::PathBuf;

use pool_metrics::{MemoryProbe, ProcessRss};
use serde::{Deserialize, Serialize};

pub use report::{Goal, ServerDelta, TransferGoals, TransferReport, TransferRow, TransferRun};
pub use run::{run_transfer, TransferOptions};

use crate::cpu::{ResourceUsage, Stopwatch};
use crate::error::BenchError;
use crate::measure::worker_threads;

/// Who moves the bytes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum TransferEngine {
    /// `S3Client` (pool limit C, bytes budget, the pressure rule off as for any bulk job):
    /// `upload_from_file` / `download_to_file` for the large object, `upload_from` (one
    /// generated reader per object, all submitted at once) and `get_stream` (all submitted
    /// at once) for many objects.
    S3pool,
    /// Bare object_store with its own retries: `WriteMultipart` over `put_multipart` with at
    /// most C parts in flight; `buffer_unordered(C)` of ranged GETs written at their offsets;
    /// `buffer_unordered(C)` of PUTs and of GETs for many objects.
    ObjectStore,
}

impl TransferEngine {
    /// Both engines, the baseline last.
    pub const ALL: [TransferEngine; 2] = [TransferEngine::S3pool, TransferEngine::ObjectStore];

    /// The engine's name in results.
    pub fn name(self) -> &'static str {
        match self {
            TransferEngine::S3pool => "s3pool",
            TransferEngine::ObjectStore => "object-store",
        }
    }
}

/// What is moved.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// One large object (1 GiB by default), in parts or ranges.
    Large,
    /// Many small objects (1,000 × 1 MiB by default), one request each.
    Many,
}

/// Which way.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// To the server.
    Upload,
    /// From the server.
    Download,
}

/// Whether the server fails some requests.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every request succeeds.
    Clean,
    /// A share of requests (1 % by default) answered `500 InternalError` by the server's
    /// fault switch (seeded).
    Faults,
}

macro_rules! display_as_serde_name {
    ($($kind:ty),*) => {$(
        impl fmt::Display for $kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(name.as_str().ok_or(fmt::Error)?)
            }
        }
    )*};
}
display_as_serde_name!(TransferEngine, Workload, Direction, Scenario);

/// The path of object `index` of the many-objects workload under `prefix`.
pub(crate) fn many_path(prefix: &str, index: usize) -> object_store::path::Path {
    object_store::path::Path::from(format!("{prefix}/{index:05}"))
}

/// One run, as the orchestrator hands it to a child (`pool-bench transfer-case --spec
/// <json>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferSpec {
    /// Who moves the bytes.
    pub engine: TransferEngine,
    /// What is moved.
    pub workload: Workload,
    /// Which way.
    pub direction: Direction,
    /// The server's connection string.
    pub connection: String,
    /// The large object's key, or the prefix of the many objects.
    pub key: String,
    /// Seed of the content (object `i` is `content_key(seed, i)`; the large one is 0).
    pub seed: u64,
    /// Objects moved (1 for the large workload).
    pub objects: usize,
    /// Bytes of each object.
    pub object_bytes: u64,
    /// Requests in flight at most (the pool's limit; the idioms' `buffer_unordered`).
    pub concurrency: usize,
    /// Part and range size.
    pub part_bytes: u64,
    /// s3pool's `max_bytes_in_flight`.
    pub budget_bytes: u64,
    /// s3pool's first retry delay, ms.
    pub retry_delay_ms: u64,
    /// Large upload: the file sent.
    pub source: Option<PathBuf>,
    /// Large download: the file written over, in place (the orchestrator made it the
    /// object's size and zeroed it before the run; the child checks it afterwards).
    pub target: Option<PathBuf>,
    /// Where the child writes its trace (CSV, a row every 10 ms: s3pool's pool counts and
    /// the bodies being read), if one is wanted.
    #[serde(default)]
    pub trace: Option<PathBuf>,
}

impl TransferSpec {
    /// Bytes the run moves.
    pub fn bytes(&self) -> u64 {
        self.objects as u64 * self.object_bytes
    }
}

/// What one child process measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferMeasurement {
    /// Wall-clock time of the transfer, ms (client and store already built).
    pub wall_ms: f64,
    /// CPU time of the child over the transfer (`getrusage`, user + system, every
    /// thread), ms.
    pub cpu_ms: Option<f64>,
    /// Peak RSS of the child (`VmHWM`), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// RSS before the transfer, bytes.
    pub baseline_rss_bytes: Option<u64>,
    /// Downloads: objects whose bytes did not match (checked by the child). Uploads are
    /// checked by the orchestrator against the server's files.
    pub mismatches: usize,
    /// Retries of s3pool's pool.
    pub retries: Option<u64>,
    /// Bytes moved again by retries, as s3pool's transfer summaries count them.
    pub resent_bytes: Option<u64>,
    /// Most bodies open at once (many downloads).
    pub max_open_bodies: Option<usize>,
    /// Tokio worker threads.
    pub worker_threads: usize,
    /// The child's resource usage over the transfer: CPU time split into user and system,
    /// page faults, context switches.
    #[serde(default)]
    pub usage: Option<ResourceUsage>,
}

/// Runs `spec` in this process (the child side of `bench-transfer`).
pub fn measure_transfer(spec: &TransferSpec) -> Result<TransferMeasurement, BenchError> {
    let workers = worker_threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|error| BenchError::Setup(format!("tokio runtime: {error}")))?;
    let memory = ProcessRss::new();
    let (timing, usage, baseline, outcome) = runtime.block_on(async {
        let prepared = engines::prepare(spec)?;
        let baseline = memory.resident_bytes();
        let tracing = spec.trace.as_ref().map(|_| engines::trace(&prepared));
        let threads = spec.trace.as_ref().map(|_| threads::ThreadTimes::now());
        let usage = ResourceUsage::now();
        let stopwatch = Stopwatch::start();
        let outcome = engines::run(spec, &prepared).await?;
        let timing = stopwatch.stop();
        let usage = ResourceUsage::now()
            .zip(usage)
            .map(|(after, before)| after.since(&before));
        if let (Some(tracing), Some(path), Some(threads)) = (tracing, &spec.trace, threads) {
            let per_thread = threads::ThreadTimes::now().since_csv(&threads);
            let rows = tracing.finish().await;
            std::fs::write(path, rows).map_err(|e| BenchError::io(path, e))?;
            let path = path.with_extension("threads.csv");
            std::fs::write(&path, per_thread).map_err(|e| BenchError::io(&path, e))?;
        }
        Ok::<_, BenchError>((timing, usage, baseline, outcome))
    })?;
    let peak_rss_bytes = memory.peak_resident_bytes();
    let mut mismatches = outcome.mismatches;
    if let (Workload::Large, Direction::Download, Some(target)) =
        (spec.workload, spec.direction, &spec.target)
    {
        let key = engines::object_key(spec, 0);
        let same = content::file_matches(target, key, spec.object_bytes)
            .map_err(|e| BenchError::io(target, e))?;
        mismatches += usize::from(!same);
    }
    Ok(TransferMeasurement {
        wall_ms: timing.wall.as_secs_f64() * 1e3,
        cpu_ms: timing.cpu.map(|cpu| cpu.as_secs_f64() * 1e3),
        peak_rss_bytes,
        baseline_rss_bytes: baseline,
        mismatches,
        retries: outcome.retries,
        resent_bytes: outcome.resent_bytes,
        max_open_bodies: outcome.max_open_bodies,
        worker_threads: workers,
        usage,
    })
}
