//! The `bench-transfer` report: every run, a row per (workload, direction, scenario,
//! engine) with medians, the goals, and its JSON and Markdown forms.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::run::TransferOptions;
use super::{Direction, Scenario, TransferEngine, TransferMeasurement, Workload};
use crate::error::BenchError;
use crate::machine::{MachineInfo, Versions};
use crate::report::MIB;
use crate::stats::Summary;

/// What the server saw during one run (and the CPU time of the process it runs in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerDelta {
    /// Requests received.
    pub requests: u64,
    /// Requests answered with an injected fault.
    pub injected: u64,
    /// Request body bytes received (faulted requests included).
    pub bytes_received: u64,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// CPU time of the orchestrator (the server, mostly), ms.
    pub cpu_ms: Option<f64>,
}

/// One run: one engine moving one workload one way in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRun {
    /// The round (runs alternate their engine order round by round).
    pub round: usize,
    /// What was moved.
    pub workload: Workload,
    /// Which way.
    pub direction: Direction,
    /// With or without failures.
    pub scenario: Scenario,
    /// Who moved it.
    pub engine: TransferEngine,
    /// Payload bytes.
    pub bytes: u64,
    /// A part / range (large) or an object (many): the unit a retry sends again.
    pub piece_bytes: u64,
    /// Objects whose bytes differ from what was sent (0: content identical).
    pub mismatches: usize,
    /// Multipart uploads or parts left on the server after the run.
    pub leftover_uploads: usize,
    /// The child's measurement.
    pub measurement: TransferMeasurement,
    /// The server's counters over the run.
    pub server: ServerDelta,
}

impl TransferRun {
    /// MiB/s of the run.
    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / MIB / (self.measurement.wall_ms / 1e3)
    }

    /// Bytes the server received (upload) or sent (download) beyond the payload: what
    /// retries moved again (plus the XML of multipart requests, a few hundred bytes).
    pub fn resent_bytes(&self) -> u64 {
        let moved = match self.direction {
            Direction::Upload => self.server.bytes_received,
            Direction::Download => self.server.bytes_sent,
        };
        moved.saturating_sub(self.bytes)
    }

    /// The child's CPU time per MiB moved, ms.
    pub fn cpu_ms_per_mib(&self) -> Option<f64> {
        let mib = self.bytes as f64 / MIB;
        self.measurement.cpu_ms.map(|cpu| cpu / mib)
    }

    /// The server process's CPU time per MiB moved, ms.
    pub fn server_cpu_ms_per_mib(&self) -> Option<f64> {
        let mib = self.bytes as f64 / MIB;
        self.server.cpu_ms.map(|cpu| cpu / mib)
    }

    /// A line for the log.
    pub fn one_line(&self) -> String {
        format!(
            "{:.0} MiB/s, {:.0} ms, CPU {:.2} ms/MiB (server {:.2}), peak {:.0} MB, {} injected, {:.1} MiB re-sent, {}",
            self.mib_per_sec(),
            self.measurement.wall_ms,
            self.cpu_ms_per_mib().unwrap_or(f64::NAN),
            self.server_cpu_ms_per_mib().unwrap_or(f64::NAN),
            self.measurement.peak_rss_bytes.unwrap_or(0) as f64 / MIB,
            self.server.injected,
            self.resent_bytes() as f64 / MIB,
            if self.mismatches == 0 { "content identical" } else { "CONTENT DIFFERS" },
        )
    }
}

/// The runs of one (workload, direction, scenario, engine), summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRow {
    /// What was moved.
    pub workload: Workload,
    /// Which way.
    pub direction: Direction,
    /// With or without failures.
    pub scenario: Scenario,
    /// Who moved it.
    pub engine: TransferEngine,
    /// Runs that completed.
    pub runs: usize,
    /// MiB/s over the runs.
    pub mib_per_sec: Summary,
    /// Wall time over the runs, ms.
    pub wall_ms: Summary,
    /// The child's CPU time (user + system) per MiB, ms.
    pub cpu_ms_per_mib: Option<Summary>,
    /// The server process's CPU time per MiB, ms.
    pub server_cpu_ms_per_mib: Option<Summary>,
    /// Highest peak RSS of the runs' processes, MiB.
    pub peak_rss_mb: Option<f64>,
    /// Median throughput over the object-store engine's median in the same setting.
    pub throughput_ratio_vs_object_store: Option<f64>,
    /// The same ratio round by round (same round, same setting), summarised.
    pub paired_ratio_vs_object_store: Option<Summary>,
    /// Failures injected, over the runs.
    pub injected: u64,
    /// Bytes moved again, over the runs (server counters).
    pub resent_bytes: u64,
    /// Resent bytes in pieces (parts, ranges or objects) per injected failure.
    pub resent_pieces_per_failure: Option<f64>,
    /// Objects that differed, over the runs.
    pub mismatches: usize,
    /// Uploads or parts left behind, at most, after a run.
    pub leftover_uploads: usize,
    /// Pool retries, over the runs (s3pool).
    pub retries: Option<u64>,
    /// Most bodies open at once (many downloads).
    pub max_open_bodies: Option<usize>,
}

/// Whether a goal was met, and the figures behind the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// What is asked.
    pub goal: String,
    /// Met?
    pub met: bool,
    /// The figures.
    pub detail: String,
}

/// The goals of the transfer benchmark, judged from the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferGoals {
    /// Every goal, in order.
    pub goals: Vec<Goal>,
}

/// A `bench-transfer` run's results (`results.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    /// What it ran on.
    pub machine: MachineInfo,
    /// What was measured.
    pub versions: Versions,
    /// The sizes and settings.
    pub options: TransferOptions,
    /// Tokio worker threads of each process.
    pub worker_threads: usize,
    /// Wall time of the whole benchmark, s.
    pub total_seconds: f64,
    /// One row per setting and engine.
    pub rows: Vec<TransferRow>,
    /// The goals.
    pub goals: TransferGoals,
    /// Runs that failed, with their error.
    pub failures: Vec<String>,
    /// Every run.
    pub runs: Vec<TransferRun>,
}

type Setting = (Workload, Direction, Scenario);

impl TransferReport {
    /// Summarises `runs` and judges the goals.
    pub fn new(
        machine: MachineInfo,
        versions: Versions,
        options: TransferOptions,
        worker_threads: usize,
        total_seconds: f64,
        runs: Vec<TransferRun>,
        failures: Vec<String>,
    ) -> Self {
        let rows = rows(&runs);
        let goals = goals(&options, &rows, &failures);
        TransferReport {
            machine,
            versions,
            options,
            worker_threads,
            total_seconds,
            rows,
            goals,
            failures,
            runs,
        }
    }

    /// Writes `results.json` and `results.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let json = dir.join("results.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .map_err(|e| BenchError::io(&json, e))?;
        let markdown = dir.join("results.md");
        std::fs::write(&markdown, self.markdown()).map_err(|e| BenchError::io(&markdown, e))?;
        Ok(())
    }

    /// True when every goal is met and no run failed.
    pub fn all_goals_met(&self) -> bool {
        self.failures.is_empty() && self.goals.goals.iter().all(|goal| goal.met)
    }

    /// The tables and goals as Markdown.
    pub fn markdown(&self) -> String {
        let o = &self.options;
        let mut md = String::new();
        let _ = writeln!(md, "# bench-transfer\n");
        let _ = writeln!(
            md,
            "Large: 1 × {} MiB; many: {} × {} KiB. C = {} requests in flight (s3pool's pool limit, \
             the idioms' buffer_unordered / WriteMultipart capacity), parts and ranges of {} MiB, \
             s3pool bytes budget {} MiB, retry delay {} ms; faults: {:.1} % of requests answered 500. \
             {} round(s), engines alternating; each run a fresh process. {} CPUs ({}), load {:?} at start; \
             {:.0} s in all.\n",
            o.large_bytes / (1 << 20),
            o.objects,
            o.object_bytes / 1024,
            o.concurrency,
            o.part_bytes / (1 << 20),
            o.budget_bytes / (1 << 20),
            o.retry_delay_ms,
            o.fault_rate * 100.0,
            o.rounds,
            self.machine.cpus,
            self.machine.cpu_model.as_deref().unwrap_or("?"),
            self.machine.load_average,
            self.total_seconds,
        );
        let _ = writeln!(
            md,
            "| workload | direction | scenario | engine | MiB/s (min–max) | × object-store | paired × (min–max) | CPU ms/MiB | server CPU ms/MiB | peak RSS MB | injected | re-sent MiB | pieces re-sent / failure | identical | open bodies max |"
        );
        let _ = writeln!(
            md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for row in &self.rows {
            let opt = |value: Option<f64>, digits: usize| {
                value.map_or("–".to_owned(), |v| format!("{v:.digits$}"))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} ({:.0}–{:.0}) | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} |",
                row.workload,
                row.direction,
                row.scenario,
                row.engine,
                row.mib_per_sec.median,
                row.mib_per_sec.min,
                row.mib_per_sec.max,
                opt(row.throughput_ratio_vs_object_store, 2),
                row.paired_ratio_vs_object_store
                    .map_or("–".to_owned(), |s| format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)),
                opt(row.cpu_ms_per_mib.map(|s| s.median), 2),
                opt(row.server_cpu_ms_per_mib.map(|s| s.median), 2),
                opt(row.peak_rss_mb, 0),
                row.injected,
                row.resent_bytes as f64 / MIB,
                opt(row.resent_pieces_per_failure, 2),
                if row.mismatches == 0 && row.leftover_uploads == 0 { "yes" } else { "NO" },
                row.max_open_bodies.map_or("–".to_owned(), |n| n.to_string()),
            );
        }
        let _ = writeln!(md, "\n## Goals\n");
        for goal in &self.goals.goals {
            let _ = writeln!(
                md,
                "- {} **{}**: {}",
                if goal.met { "✓" } else { "✗" },
                goal.goal,
                goal.detail
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "\n## Failed runs\n");
            for failure in &self.failures {
                let _ = writeln!(md, "- {failure}");
            }
        }
        md
    }
}

fn rows(runs: &[TransferRun]) -> Vec<TransferRow> {
    let mut groups: BTreeMap<(Setting, TransferEngine), Vec<&TransferRun>> = BTreeMap::new();
    for run in runs {
        groups
            .entry(((run.workload, run.direction, run.scenario), run.engine))
            .or_default()
            .push(run);
    }
    let median_of = |runs: &[&TransferRun]| {
        Summary::of(&runs.iter().map(|r| r.mib_per_sec()).collect::<Vec<_>>())
    };
    let mut rows = Vec::new();
    for ((setting, engine), group) in &groups {
        let Some(mib_per_sec) = median_of(group) else {
            continue;
        };
        let baseline = groups.get(&(*setting, TransferEngine::ObjectStore));
        let ratio = baseline
            .and_then(|base| median_of(base))
            .filter(|_| *engine != TransferEngine::ObjectStore)
            .map(|base| mib_per_sec.median / base.median);
        let paired = baseline
            .filter(|_| *engine != TransferEngine::ObjectStore)
            .and_then(|base| {
                let ratios: Vec<f64> = group
                    .iter()
                    .filter_map(|run| {
                        let other = base.iter().find(|b| b.round == run.round)?;
                        Some(run.mib_per_sec() / other.mib_per_sec())
                    })
                    .collect();
                Summary::of(&ratios)
            });
        let summary = |values: Vec<Option<f64>>| -> Option<Summary> {
            Summary::of(&values.into_iter().collect::<Option<Vec<f64>>>()?)
        };
        let injected: u64 = group.iter().map(|r| r.server.injected).sum();
        let resent_bytes: u64 = group.iter().map(|r| r.resent_bytes()).sum();
        let piece = group[0].piece_bytes as f64;
        rows.push(TransferRow {
            workload: setting.0,
            direction: setting.1,
            scenario: setting.2,
            engine: *engine,
            runs: group.len(),
            mib_per_sec,
            wall_ms: Summary::of(
                &group
                    .iter()
                    .map(|r| r.measurement.wall_ms)
                    .collect::<Vec<_>>(),
            )
            .expect("a group has runs"),
            cpu_ms_per_mib: summary(group.iter().map(|r| r.cpu_ms_per_mib()).collect()),
            server_cpu_ms_per_mib: summary(
                group.iter().map(|r| r.server_cpu_ms_per_mib()).collect(),
            ),
            peak_rss_mb: group
                .iter()
                .filter_map(|r| r.measurement.peak_rss_bytes)
                .max()
                .map(|bytes| bytes as f64 / MIB),
            throughput_ratio_vs_object_store: ratio,
            paired_ratio_vs_object_store: paired,
            injected,
            resent_bytes,
            resent_pieces_per_failure: (injected > 0)
                .then(|| resent_bytes as f64 / piece / injected as f64),
            mismatches: group.iter().map(|r| r.mismatches).sum(),
            leftover_uploads: group.iter().map(|r| r.leftover_uploads).max().unwrap_or(0),
            retries: group.iter().map(|r| r.measurement.retries).sum(),
            max_open_bodies: group
                .iter()
                .filter_map(|r| r.measurement.max_open_bodies)
                .max(),
        });
    }
    rows
}

fn goals(options: &TransferOptions, rows: &[TransferRow], failures: &[String]) -> TransferGoals {
    let pooled: Vec<&TransferRow> = rows
        .iter()
        .filter(|row| row.engine == TransferEngine::S3pool)
        .collect();
    let mut goals = Vec::new();

    let throughput: Vec<String> = pooled
        .iter()
        .filter(|row| row.scenario == Scenario::Clean)
        .filter_map(|row| {
            let ratio = row.throughput_ratio_vs_object_store?;
            Some(format!("{} {} {ratio:.2}×", row.workload, row.direction))
        })
        .collect();
    goals.push(Goal {
        goal: "throughput ≥ 1.0× the bare idioms (clean runs, ratio of medians)".to_owned(),
        met: !throughput.is_empty()
            && pooled
                .iter()
                .filter(|row| row.scenario == Scenario::Clean)
                .all(|row| {
                    row.throughput_ratio_vs_object_store
                        .is_some_and(|r| r >= 1.0)
                }),
        detail: throughput.join(", "),
    });

    let limit_mb = options.budget_bytes as f64 / MIB + 64.0;
    let peaks: Vec<String> = pooled
        .iter()
        .filter_map(|row| {
            let peak = row.peak_rss_mb?;
            Some(format!(
                "{} {} {} {peak:.0} MB",
                row.workload, row.direction, row.scenario
            ))
        })
        .collect();
    goals.push(Goal {
        goal: format!("s3pool's peak RSS ≤ the bytes budget + 64 MB ({limit_mb:.0} MB)"),
        met: !peaks.is_empty()
            && pooled
                .iter()
                .all(|row| row.peak_rss_mb.is_some_and(|p| p <= limit_mb)),
        detail: peaks.join(", "),
    });

    let faulted: Vec<&TransferRow> = rows
        .iter()
        .filter(|row| row.scenario == Scenario::Faults)
        .collect();
    goals.push(Goal {
        goal: format!(
            "with {:.1} % of requests failing every transfer completes, content identical, nothing left behind",
            options.fault_rate * 100.0
        ),
        met: failures.is_empty()
            && !faulted.is_empty()
            && faulted.iter().all(|row| row.mismatches == 0 && row.leftover_uploads == 0),
        detail: faulted
            .iter()
            .map(|row| {
                format!(
                    "{} {} {}: {} runs, {} injected, {} differing",
                    row.workload, row.direction, row.engine, row.runs, row.injected, row.mismatches
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    });

    let resent: Vec<&&TransferRow> = faulted
        .iter()
        .filter(|row| row.engine == TransferEngine::S3pool)
        .collect();
    goals.push(Goal {
        goal: "s3pool re-sends ≤ 2 parts per injected failure".to_owned(),
        met: !resent.is_empty()
            && resent
                .iter()
                .all(|row| row.resent_pieces_per_failure.is_none_or(|p| p <= 2.0)),
        detail: resent
            .iter()
            .map(|row| {
                format!(
                    "{} {}: {:.2} MiB for {} failures ({} pieces each)",
                    row.workload,
                    row.direction,
                    row.resent_bytes as f64 / MIB,
                    row.injected,
                    row.resent_pieces_per_failure
                        .map_or("–".to_owned(), |p| format!("{p:.2}"))
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    });

    let open: Vec<String> = pooled
        .iter()
        .filter_map(|row| {
            Some(format!(
                "{} {}: {}",
                row.workload, row.scenario, row.max_open_bodies?
            ))
        })
        .collect();
    goals.push(Goal {
        goal: format!(
            "a pooled get never has more bodies open than the limit ({})",
            options.concurrency
        ),
        met: !open.is_empty()
            && pooled
                .iter()
                .all(|row| row.max_open_bodies.is_none_or(|n| n <= options.concurrency)),
        detail: open.join(", "),
    });
    TransferGoals { goals }
}
