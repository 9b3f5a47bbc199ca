//! [`BenchError`]: what can go wrong in a benchmark run.

use std::io;

/// Why a benchmark could not run or its results could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// An engine name that is not `join-all`, `shared-pool` or `separate-pools`.
    #[error("unknown engine `{0}` (expected join-all, shared-pool or separate-pools)")]
    UnknownEngine(String),
    /// A backend that is not `memory`, `memory-latency=<n>ms|us`, `s3-loopback` or a
    /// connection string.
    #[error("unknown backend `{0}` (expected memory, memory-latency=<n>ms, s3-loopback or a connection string such as s3://bucket)")]
    UnknownBackend(String),
    /// `s3-loopback` was asked for but this binary was built without feature `s3-loopback`.
    #[error("backend s3-loopback needs pool-bench's feature `s3-loopback`")]
    LoopbackUnavailable,
    /// A size that must be positive was zero.
    #[error("{field} must be at least 1")]
    ZeroSize {
        /// The setting.
        field: &'static str,
    },
    /// No case is left after the filters.
    #[error("no case matches the filters")]
    NoCases,
    /// The store could not be opened.
    #[error("backend: {0}")]
    Backend(String),
    /// Operations failed during a case.
    #[error("{failed} of {operations} operations failed; first: {first}")]
    OperationsFailed {
        /// Failed operations.
        failed: usize,
        /// Operations in the run.
        operations: usize,
        /// The first error, as text.
        first: String,
    },
    /// A case left objects behind in the store.
    #[error("{0} objects were left in the store after the case")]
    Leftovers(usize),
    /// A pool or client setting was refused.
    #[error("setup: {0}")]
    Setup(String),
    /// A child benchmark process failed.
    #[error("child process for `{case}`: {reason}")]
    Child {
        /// The case (or measurement) it ran.
        case: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Results could not be encoded or decoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A chart could not be drawn.
    #[error("chart {path}: {reason}")]
    Chart {
        /// The SVG file.
        path: String,
        /// What plotters said.
        reason: String,
    },
}

impl BenchError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        BenchError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
