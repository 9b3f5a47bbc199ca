//! The matrix report: [`CaseResult`] per case, [`MatrixReport`] for the run, and its JSON,
//! CSV and Markdown forms.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::case::{Engine, CONCURRENCY};
use crate::engine::{split_concurrency, SEPARATE_POOLS};
use crate::error::BenchError;
use crate::machine::{MachineInfo, Versions};
use crate::measure::{CaseMeasurement, Repetitions};
use crate::payload::BYTES_PER_POSITION;
use crate::stats::Summary;

/// Bytes in a mebibyte, the unit of `peak_rss_mb`.
pub const MIB: f64 = 1024.0 * 1024.0;

/// s3db.js's headline case: 10,000 operations × 1,000 positions at C = 200.
pub const HEADLINE: (usize, usize, usize) = (10_000, 1_000, 200);

/// Peak RSS every pooled case should stay at or under (the benchmark's goal), in MiB.
pub const POOLED_PEAK_GOAL_MB: f64 = 64.0;

/// The results of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// `engine/opsops/pospos/cC`.
    pub name: String,
    /// The engine.
    pub engine: Engine,
    /// Operations per run.
    pub operations: usize,
    /// Positions per payload.
    pub payload_positions: usize,
    /// Bytes per payload.
    pub payload_bytes: usize,
    /// Total concurrency limit (ignored by join-all).
    pub concurrency: usize,
    /// Limits of the separate pools (one entry for shared-pool, none for join-all).
    pub pool_limits: Vec<usize>,
    /// Timed runs.
    pub reps: usize,
    /// Median wall-clock time of a run, ms.
    pub duration_ms_median: f64,
    /// Fastest run, ms.
    pub duration_ms_min: f64,
    /// Slowest run, ms.
    pub duration_ms_max: f64,
    /// Operations per second of the median run.
    pub ops_per_sec_median: f64,
    /// Operations per second of the slowest run.
    pub ops_per_sec_min: f64,
    /// Operations per second of the fastest run.
    pub ops_per_sec_max: f64,
    /// Peak RSS of the case's own process, MiB.
    pub peak_rss_mb: Option<f64>,
    /// Operations the pools retried, over all timed runs.
    #[serde(default)]
    pub retries: u64,
    /// RSS of that process before its first operation, MiB.
    pub baseline_rss_mb: Option<f64>,
}

impl CaseResult {
    /// Summarises one process's measurement; `None` if it has no timed run.
    pub fn from_measurement(measurement: &CaseMeasurement) -> Option<CaseResult> {
        let case = measurement.case;
        let durations = Summary::of(&measurement.durations_ms)?;
        let ops_per_sec = |ms: f64| case.operations as f64 / (ms / 1e3);
        let pool_limits = match case.engine {
            Engine::JoinAll => Vec::new(),
            Engine::SharedPool => vec![case.concurrency],
            Engine::SeparatePools => split_concurrency(case.concurrency, SEPARATE_POOLS),
        };
        Some(CaseResult {
            name: case.name(),
            engine: case.engine,
            operations: case.operations,
            payload_positions: case.payload_positions,
            payload_bytes: case.payload_positions * BYTES_PER_POSITION,
            concurrency: case.concurrency,
            pool_limits,
            reps: measurement.durations_ms.len(),
            duration_ms_median: durations.median,
            duration_ms_min: durations.min,
            duration_ms_max: durations.max,
            ops_per_sec_median: ops_per_sec(durations.median),
            ops_per_sec_min: ops_per_sec(durations.max),
            ops_per_sec_max: ops_per_sec(durations.min),
            peak_rss_mb: measurement.peak_rss_bytes.map(|bytes| bytes as f64 / MIB),
            retries: measurement.retries,
            baseline_rss_mb: measurement
                .baseline_rss_bytes
                .map(|bytes| bytes as f64 / MIB),
        })
    }
}

/// A case whose process failed (e.g. the store answered errors): reported, not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedCase {
    /// The case's name.
    pub name: String,
    /// What went wrong.
    pub error: String,
}

/// A whole matrix run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    /// What it ran on.
    pub machine: MachineInfo,
    /// What was measured.
    pub versions: Versions,
    /// The backend's label.
    pub backend: String,
    /// Warm-up and timed runs per case.
    pub repetitions: Repetitions,
    /// Tokio worker threads in each case's process.
    pub worker_threads: usize,
    /// Wall-clock seconds of the whole matrix, child processes included.
    pub total_seconds: f64,
    /// One entry per measured case, in matrix order.
    pub cases: Vec<CaseResult>,
    /// Cases that failed, with the reason.
    #[serde(default)]
    pub failed_cases: Vec<FailedCase>,
}

impl MatrixReport {
    /// The best median throughput of each engine, with its case.
    pub fn best_per_engine(&self) -> Vec<&CaseResult> {
        Engine::ALL
            .iter()
            .filter_map(|&engine| {
                self.cases
                    .iter()
                    .filter(|case| case.engine == engine)
                    .max_by(|a, b| a.ops_per_sec_median.total_cmp(&b.ops_per_sec_median))
            })
            .collect()
    }

    /// The cases at s3db.js's headline workload (10,000 × 1,000 at C = 200).
    pub fn headline(&self) -> Vec<&CaseResult> {
        let (operations, positions, concurrency) = HEADLINE;
        self.cases
            .iter()
            .filter(|case| {
                (case.operations, case.payload_positions, case.concurrency)
                    == (operations, positions, concurrency)
            })
            .collect()
    }

    /// The pooled case with the highest peak RSS.
    pub fn max_pooled_peak(&self) -> Option<&CaseResult> {
        self.cases
            .iter()
            .filter(|case| case.engine.is_pooled() && case.peak_rss_mb.is_some())
            .max_by(|a, b| {
                a.peak_rss_mb
                    .unwrap_or(0.0)
                    .total_cmp(&b.peak_rss_mb.unwrap_or(0.0))
            })
    }

    /// Writes `results.json`, `results.csv` and `results.md` into `dir`.
    pub fn write_tables(&self, dir: &Path) -> Result<(), BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        write(dir.join("results.csv"), self.csv())?;
        write(dir.join("results.md"), self.markdown())
    }

    /// One CSV row per case.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "engine,operations,payload_positions,payload_bytes,concurrency,reps,\
             duration_ms_median,duration_ms_min,duration_ms_max,ops_per_sec_median,\
             ops_per_sec_min,ops_per_sec_max,peak_rss_mb,retries\n",
        );
        for case in &self.cases {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.0},{:.0},{:.0},{},{}",
                case.engine,
                case.operations,
                case.payload_positions,
                case.payload_bytes,
                case.concurrency,
                case.reps,
                case.duration_ms_median,
                case.duration_ms_min,
                case.duration_ms_max,
                case.ops_per_sec_median,
                case.ops_per_sec_min,
                case.ops_per_sec_max,
                case.peak_rss_mb
                    .map(|mb| format!("{mb:.1}"))
                    .unwrap_or_default(),
                case.retries,
            );
        }
        out
    }

    /// Tables grouped as s3db.js's: one per operation count × payload, a row per
    /// concurrency, duration / throughput / peak memory per engine.
    pub fn markdown(&self) -> String {
        let mut out = String::from("# pool-bench: the 108-case matrix\n\n");
        let _ = writeln!(
            out,
            "Backend `{}`, {} warm-up + {} timed runs per case (median, min–max), each case in a fresh \
             process on {} tokio workers; {} ({} cpus). Peak RSS is the case process's `VmHWM`.\n",
            self.backend,
            self.repetitions.warmup,
            self.repetitions.timed,
            self.worker_threads,
            self.machine.cpu_model.as_deref().unwrap_or("unknown cpu"),
            self.machine.cpus,
        );
        let mut groups: Vec<(usize, usize)> = self
            .cases
            .iter()
            .map(|case| (case.operations, case.payload_positions))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for (operations, positions) in groups {
            let _ = writeln!(
                out,
                "## {operations} operations × {positions} positions ({:.2} KiB each)\n",
                (positions * BYTES_PER_POSITION) as f64 / 1024.0
            );
            out.push_str("| C |");
            for engine in Engine::ALL {
                let _ = write!(out, " {engine} ms | ops/s | MB |");
            }
            out.push_str("\n|---:|");
            out.push_str(&"---:|---:|---:|".repeat(Engine::ALL.len()));
            out.push('\n');
            for concurrency in CONCURRENCY {
                let row: Vec<Option<&CaseResult>> = Engine::ALL
                    .iter()
                    .map(|&engine| {
                        self.cases.iter().find(|case| {
                            (
                                case.engine,
                                case.operations,
                                case.payload_positions,
                                case.concurrency,
                            ) == (engine, operations, positions, concurrency)
                        })
                    })
                    .collect();
                if row.iter().all(Option::is_none) {
                    continue;
                }
                let _ = write!(out, "| {concurrency} |");
                for cell in row {
                    match cell {
                        Some(case) => {
                            let _ = write!(
                                out,
                                " {:.1} ({:.1}–{:.1}) | {:.0} | {} |",
                                case.duration_ms_median,
                                case.duration_ms_min,
                                case.duration_ms_max,
                                case.ops_per_sec_median,
                                case.peak_rss_mb
                                    .map(|mb| format!("{mb:.1}"))
                                    .unwrap_or("–".into()),
                            );
                        }
                        None => out.push_str(" – | – | – |"),
                    }
                }
                out.push('\n');
            }
            out.push('\n');
        }
        out.push_str("## Summary\n\n```text\n");
        out.push_str(&self.summary());
        out.push_str("```\n");
        out
    }

    /// Best throughput per engine, the headline case, and the pooled memory goal.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Matrix: {} cases in {:.1} s.",
            self.cases.len(),
            self.total_seconds
        );
        if let Some([one, five, fifteen]) = self.machine.load_average {
            let _ = writeln!(
                out,
                "Load average at start: {one:.2} {five:.2} {fifteen:.2} ({} cpus)",
                self.machine.cpus
            );
        }
        out.push_str("Best throughput per engine (median run):\n");
        for case in self.best_per_engine() {
            let _ = writeln!(
                out,
                "  {:<15} {:>12.0} ops/s  at {} ops × {} positions, C={} ({:.1} MB peak)",
                case.engine.name(),
                case.ops_per_sec_median,
                case.operations,
                case.payload_positions,
                case.concurrency,
                case.peak_rss_mb.unwrap_or(f64::NAN),
            );
        }
        let headline = self.headline();
        if !headline.is_empty() {
            out.push_str("10,000 ops × 1,000 positions × C=200 (s3db.js's headline case):\n");
            for case in headline {
                let _ = writeln!(
                    out,
                    "  {:<15} {:>8.1} ms  {:>12.0} ops/s  {:>7.1} MB peak RSS",
                    case.engine.name(),
                    case.duration_ms_median,
                    case.ops_per_sec_median,
                    case.peak_rss_mb.unwrap_or(f64::NAN),
                );
            }
        }
        for failed in &self.failed_cases {
            let _ = writeln!(out, "FAILED {}: {}", failed.name, failed.error);
        }
        if let Some(case) = self.max_pooled_peak() {
            let peak = case.peak_rss_mb.unwrap_or(f64::NAN);
            let verdict = if peak <= POOLED_PEAK_GOAL_MB {
                "meets"
            } else {
                "misses"
            };
            let _ = writeln!(
                out,
                "Highest pooled peak RSS: {peak:.1} MB ({}) — {verdict} the {POOLED_PEAK_GOAL_MB:.0} MB goal.",
                case.name
            );
        }
        out
    }
}

fn write(path: std::path::PathBuf, text: String) -> Result<(), BenchError> {
    std::fs::write(&path, text).map_err(|e| BenchError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{full_matrix, Case};

    fn report(durations: impl Fn(&Case) -> Vec<f64>) -> MatrixReport {
        let cases = full_matrix()
            .iter()
            .map(|case| {
                CaseResult::from_measurement(&CaseMeasurement {
                    case: *case,
                    durations_ms: durations(case),
                    retries: 0,
                    peak_rss_bytes: Some((case.concurrency as u64 + 10) << 20),
                    baseline_rss_bytes: Some(8 << 20),
                    worker_threads: 2,
                })
                .unwrap()
            })
            .collect();
        MatrixReport {
            machine: MachineInfo::detect(),
            versions: Versions {
                s3pool: "0".into(),
                object_store: "0".into(),
                tokio: "0".into(),
                rustc: None,
                profile: "test".into(),
            },
            backend: "memory".into(),
            repetitions: Repetitions::default(),
            worker_threads: 2,
            total_seconds: 1.0,
            cases,
            failed_cases: vec![FailedCase {
                name: "join-all/10000ops/1000pos/c200".into(),
                error: "3 of 10000 operations failed".into(),
            }],
        }
    }

    #[test]
    fn throughput_comes_from_the_median_run() {
        let result = CaseResult::from_measurement(&CaseMeasurement {
            case: Case {
                engine: Engine::SeparatePools,
                operations: 1_000,
                payload_positions: 1_000,
                concurrency: 10,
            },
            durations_ms: vec![250.0, 100.0, 125.0],
            retries: 4,
            peak_rss_bytes: Some(32 << 20),
            baseline_rss_bytes: None,
            worker_threads: 2,
        })
        .unwrap();
        assert_eq!(result.ops_per_sec_median, 8_000.0);
        assert_eq!(
            (result.ops_per_sec_min, result.ops_per_sec_max),
            (4_000.0, 10_000.0)
        );
        assert_eq!(result.peak_rss_mb, Some(32.0));
        assert_eq!(result.pool_limits, vec![3, 3, 2, 2]);
        assert_eq!(result.payload_bytes, 8_000);
        assert_eq!(result.retries, 4);
    }

    #[test]
    fn summary_picks_the_best_case_of_each_engine() {
        // Faster with more operations and a bigger limit: the best is the last case.
        let report = report(|case| vec![1e6 / (case.operations * case.concurrency) as f64]);
        let best = report.best_per_engine();
        assert_eq!(best.len(), 3);
        assert!(best
            .iter()
            .all(|case| case.operations == 10_000 && case.concurrency == 200));
        assert_eq!(report.headline().len(), 3);
        assert_eq!(report.max_pooled_peak().unwrap().peak_rss_mb, Some(210.0));
        assert!(report.summary().contains("misses the 64 MB goal"));
        assert!(report
            .summary()
            .contains("FAILED join-all/10000ops/1000pos/c200: 3 of 10000"));
    }

    #[test]
    fn tables_have_a_row_per_case() {
        let report = report(|_| vec![10.0]);
        assert_eq!(report.csv().lines().count(), 1 + 108);
        let markdown = report.markdown();
        assert_eq!(markdown.matches("\n## ").count(), 9 + 1);
        assert_eq!(
            markdown
                .lines()
                .filter(|line| line.starts_with("| 200 |"))
                .count(),
            9
        );
    }
}
