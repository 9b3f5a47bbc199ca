//! [`measure_case`]: warm-up and timed repetitions of one case in this process, and the
//! process's peak memory afterwards. Run it in a fresh process per case (as the matrix
//! does) so the peak is that case's own.

use pool_metrics::{MemoryProbe, ProcessRss};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::case::Case;
use crate::engine::run_case;
use crate::error::BenchError;

/// How many times a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repetitions {
    /// Untimed runs first (allocator, store and runtime warm up).
    pub warmup: usize,
    /// Timed runs.
    pub timed: usize,
}

impl Default for Repetitions {
    /// One warm-up, five timed runs.
    fn default() -> Self {
        Repetitions {
            warmup: 1,
            timed: 5,
        }
    }
}

/// What one process measured for one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseMeasurement {
    /// The case.
    pub case: Case,
    /// Wall-clock milliseconds of each timed run.
    pub durations_ms: Vec<f64>,
    /// Operations the pools retried, over the timed runs.
    #[serde(default)]
    pub retries: u64,
    /// Peak RSS of the process over the warm-up and every run (`VmHWM`), in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// RSS once the runtime and store were ready, before the first operation, in bytes.
    pub baseline_rss_bytes: Option<u64>,
    /// Tokio worker threads.
    pub worker_threads: usize,
}

/// Worker threads of the benchmark runtimes: the machine's cores.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `case` against a fresh store of `backend`: `repetitions.warmup` untimed runs, then
/// `repetitions.timed` timed ones, on a multi-thread tokio runtime with one worker per core.
pub fn measure_case(
    case: &Case,
    backend: &Backend,
    repetitions: Repetitions,
) -> Result<CaseMeasurement, BenchError> {
    case.validate()?;
    if repetitions.timed == 0 {
        return Err(BenchError::ZeroSize { field: "reps" });
    }
    let workers = worker_threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|error| BenchError::Setup(format!("tokio runtime: {error}")))?;
    let store = backend.open()?;
    let memory = ProcessRss::new();
    let baseline_rss_bytes = memory.resident_bytes();
    let (durations_ms, retries) = runtime.block_on(async {
        for run in 0..repetitions.warmup {
            run_case(case, store.clone(), run).await?;
        }
        let mut durations_ms = Vec::with_capacity(repetitions.timed);
        let mut retries = 0;
        for run in 0..repetitions.timed {
            let measured = run_case(case, store.clone(), repetitions.warmup + run).await?;
            durations_ms.push(measured.elapsed.as_secs_f64() * 1e3);
            retries += measured.retries;
        }
        Ok::<_, BenchError>((durations_ms, retries))
    })?;
    Ok(CaseMeasurement {
        case: *case,
        durations_ms,
        retries,
        peak_rss_bytes: memory.peak_resident_bytes(),
        baseline_rss_bytes,
        worker_threads: workers,
    })
}
