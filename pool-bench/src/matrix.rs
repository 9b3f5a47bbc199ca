//! [`run_matrix`]: every case in a fresh child process, with a progress bar, then the
//! tables and charts.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::Backend;
use crate::case::Case;
use crate::chart::write_charts;
use crate::child::run_child;
use crate::error::BenchError;
use crate::machine::{MachineInfo, Versions};
use crate::measure::{worker_threads, CaseMeasurement, Repetitions};
use crate::report::{CaseResult, FailedCase, MatrixReport};

/// What [`run_matrix`] runs and where it writes.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    /// The cases, in order.
    pub cases: Vec<Case>,
    /// Where the objects go.
    pub backend: Backend,
    /// Warm-up and timed runs per case.
    pub repetitions: Repetitions,
    /// Directory for `results.{json,csv,md}` and the SVG charts.
    pub out_dir: PathBuf,
    /// The binary that measures one case (`<binary> case …`); normally this one.
    pub case_binary: PathBuf,
}

/// Runs every case in its own child process (`case_binary case …`), shows progress, writes
/// the results and charts into `out_dir`, and returns the report. A case whose process
/// fails is listed in [`MatrixReport::failed_cases`] and the matrix goes on.
pub fn run_matrix(options: &MatrixOptions) -> Result<MatrixReport, BenchError> {
    if options.cases.is_empty() {
        return Err(BenchError::NoCases);
    }
    let started = Instant::now();
    let machine = MachineInfo::detect();
    let mut loopback = LoopbackServer::start_if(&options.backend)?;

    let reps = options.repetitions;
    let weight = |case: &Case| (case.operations * (reps.warmup + reps.timed)) as u64;
    let progress = ProgressBar::with_draw_target(
        Some(options.cases.iter().map(weight).sum()),
        ProgressDrawTarget::stderr(),
    );
    progress.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:32}] {percent:>3}% ETA {eta_precise}  {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let verbose_log = !std::io::stderr().is_terminal();

    let mut cases = Vec::with_capacity(options.cases.len());
    let mut failed_cases = Vec::new();
    for (number, case) in options.cases.iter().enumerate() {
        progress.set_message(format!("[{}/{}] {case}", number + 1, options.cases.len()));
        let child_backend = match loopback.as_mut() {
            Some(server) => server.restart()?,
            None => backend_argument(&options.backend),
        };
        let measurement = match measure_in_child(&options.case_binary, case, &child_backend, reps) {
            Ok(measurement) => measurement,
            // A case the backend could not take (e.g. errors under 10,000 requests at once)
            // is a result too: report it and go on.
            Err(BenchError::Child { reason, .. }) => {
                progress.suspend(|| {
                    eprintln!(
                        "[{}/{}] {case}: FAILED: {reason}",
                        number + 1,
                        options.cases.len()
                    )
                });
                failed_cases.push(FailedCase {
                    name: case.name(),
                    error: reason,
                });
                progress.inc(weight(case));
                continue;
            }
            Err(other) => return Err(other),
        };
        let result =
            CaseResult::from_measurement(&measurement).ok_or_else(|| BenchError::Child {
                case: case.name(),
                reason: "no timed run".to_owned(),
            })?;
        if verbose_log {
            eprintln!(
                "[{}/{}] {case}: {:.1} ms median, {:.0} ops/s, {:.1} MB peak",
                number + 1,
                options.cases.len(),
                result.duration_ms_median,
                result.ops_per_sec_median,
                result.peak_rss_mb.unwrap_or(f64::NAN)
            );
        }
        cases.push(result);
        progress.inc(weight(case));
    }
    progress.finish_and_clear();

    let report = MatrixReport {
        machine,
        versions: Versions::detect(),
        backend: options.backend.label(),
        repetitions: reps,
        worker_threads: worker_threads(),
        total_seconds: started.elapsed().as_secs_f64(),
        cases,
        failed_cases,
    };
    report.write_tables(&options.out_dir)?;
    write_charts(&report, &options.out_dir)?;
    Ok(report)
}

/// The `--backend` argument that makes a child open the same backend.
fn backend_argument(backend: &Backend) -> String {
    match backend {
        Backend::Memory | Backend::MemoryLatency(_) => backend.label(),
        Backend::S3Loopback => "s3-loopback".to_owned(),
        Backend::Url(url) => url.clone(),
    }
}

/// Runs `binary case …` in a child process ([`run_child`]) and reads its measurement.
pub fn measure_in_child(
    binary: &std::path::Path,
    case: &Case,
    backend: &str,
    repetitions: Repetitions,
) -> Result<CaseMeasurement, BenchError> {
    let args = [
        "case".to_owned(),
        "--engine".to_owned(),
        case.engine.name().to_owned(),
        "--operations".to_owned(),
        case.operations.to_string(),
        "--positions".to_owned(),
        case.payload_positions.to_string(),
        "--concurrency".to_owned(),
        case.concurrency.to_string(),
        "--warmup".to_owned(),
        repetitions.warmup.to_string(),
        "--reps".to_owned(),
        repetitions.timed.to_string(),
        "--backend".to_owned(),
        backend.to_owned(),
    ];
    run_child(binary, &case.name(), args)
}

/// The in-process S3 server, kept in this (orchestrating) process so that its memory does
/// not count in the cases' peak RSS. A fresh server (and directory) per case: s3s-fs keeps
/// two metadata files per object it ever stored, even after a DELETE, and a directory that
/// grows case after case would slow the later cases down.
struct LoopbackServer {
    #[cfg(feature = "s3-loopback")]
    server: Option<s3_client::testing::S3TestServer>,
    #[cfg(feature = "s3-loopback")]
    runtime: Option<tokio::runtime::Runtime>,
}

#[cfg(feature = "s3-loopback")]
impl LoopbackServer {
    fn start_if(backend: &Backend) -> Result<Option<Self>, BenchError> {
        if *backend != Backend::S3Loopback {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .enable_all()
            .build()
            .map_err(|error| BenchError::Setup(format!("tokio runtime: {error}")))?;
        Ok(Some(LoopbackServer {
            server: None,
            runtime: Some(runtime),
        }))
    }

    /// Stops the previous server (removing its directory) and starts a new one; returns its
    /// connection string.
    fn restart(&mut self) -> Result<String, BenchError> {
        drop(self.server.take());
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let server = runtime
            .block_on(s3_client::testing::S3TestServer::start())
            .map_err(|error| BenchError::Backend(format!("S3 test server: {error}")))?;
        let connection_string = server.connection_string();
        self.server = Some(server);
        Ok(connection_string)
    }
}

#[cfg(feature = "s3-loopback")]
impl Drop for LoopbackServer {
    fn drop(&mut self) {
        drop(self.server.take());
        // Idle keep-alive connections of the last case must not hold the exit up.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(not(feature = "s3-loopback"))]
impl LoopbackServer {
    fn start_if(backend: &Backend) -> Result<Option<Self>, BenchError> {
        match backend {
            Backend::S3Loopback => Err(BenchError::LoopbackUnavailable),
            _ => Ok(None),
        }
    }

    fn restart(&mut self) -> Result<String, BenchError> {
        Err(BenchError::LoopbackUnavailable)
    }
}
