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

    /// The child's system CPU time per MiB moved, ms: the kernel's side of the client's
    /// work (sockets, page faults, the file's pages). The large download's swung 4× from
    /// one run to the next when its target was a new file (see the README).
    pub fn system_cpu_ms_per_mib(&self) -> Option<f64> {
        let mib = self.bytes as f64 / MIB;
        self.measurement.usage.map(|usage| usage.system_ms / mib)
    }

    /// The server process's CPU time per MiB moved, ms.
    pub fn server_cpu_ms_per_mib(&self) -> Option<f64> {
        let mib = self.bytes as f64 / MIB;
        self.server.cpu_ms.map(|cpu| cpu / mib)
    }

    /// Both sides' CPU time (the child's and the server's) per MiB moved, ms: on a machine
    /// whose cores the two share, the work one MiB costs whatever the wall clock says.
    pub fn total_cpu_ms_per_mib(&self) -> Option<f64> {
        Some(self.cpu_ms_per_mib()? + self.server_cpu_ms_per_mib()?)
    }

    /// Cores the run kept busy: both sides' CPU time over the wall time. Below the cores
    /// the machine can give, the run waited (on its own schedule or on the machine's load).
    pub fn cores_busy(&self) -> Option<f64> {
        let cpu = self.measurement.cpu_ms? + self.server.cpu_ms?;
        (self.measurement.wall_ms > 0.0).then(|| cpu / self.measurement.wall_ms)
    }

    /// A line for the log.
    pub fn one_line(&self) -> String {
        format!(
            "{:.0} MiB/s, {:.0} ms, CPU {:.2} ms/MiB (server {:.2}), {:.2} cores busy, peak {:.0} MB, {} injected, {:.1} MiB re-sent, {}",
            self.mib_per_sec(),
            self.measurement.wall_ms,
            self.cpu_ms_per_mib().unwrap_or(f64::NAN),
            self.server_cpu_ms_per_mib().unwrap_or(f64::NAN),
            self.cores_busy().unwrap_or(f64::NAN),
            self.measurement.peak_rss_bytes.unwrap_or(0) as f64 / MIB,
            self.server.injected,
            self.resent_bytes() as f64 / MIB,
            if self.mismatches == 0 { "content identical" } else { "CONTENT DIFFERS" },
        ) + &self
            .measurement
            .usage
            .map(|usage| {
                format!(
                    "\n    client: user {:.0} ms, system {:.0} ms, {} minor faults, {} major, {} / {} switches (voluntary / involuntary)",
                    usage.user_ms,
                    usage.system_ms,
                    usage.minor_faults,
                    usage.major_faults,
                    usage.voluntary_switches,
                    usage.involuntary_switches,
                )
            })
            .unwrap_or_default()
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
    /// The child's system CPU time per MiB, ms (part of `cpu_ms_per_mib`).
    #[serde(default)]
    pub system_cpu_ms_per_mib: Option<Summary>,
    /// The server process's CPU time per MiB, ms.
    pub server_cpu_ms_per_mib: Option<Summary>,
    /// Both sides' CPU time per MiB (child + server), ms.
    #[serde(default)]
    pub total_cpu_ms_per_mib: Option<Summary>,
    /// Cores kept busy (child + server CPU time over wall time).
    #[serde(default)]
    pub cores_busy: Option<Summary>,
    /// Highest peak RSS of the runs' processes, MiB.
    pub peak_rss_mb: Option<f64>,
    /// Median throughput over the object-store engine's median in the same setting.
    pub throughput_ratio_vs_object_store: Option<f64>,
    /// The same ratio round by round (same round, same setting: the two runs side by
    /// side), summarised. The throughput goal is judged on its median.
    pub paired_ratio_vs_object_store: Option<Summary>,
    /// The child's CPU time per MiB over the object-store engine's, round by round (below
    /// 1: this engine spends less).
    #[serde(default)]
    pub paired_cpu_ratio_vs_object_store: Option<Summary>,
    /// Both sides' CPU time per MiB over the object-store engine's, round by round.
    #[serde(default)]
    pub paired_total_cpu_ratio_vs_object_store: Option<Summary>,
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
            "The throughput goal is judged on the **median of the paired ratios**: in each round \
             the two engines run one after the other, and the ratio of those two runs cancels \
             most of the load the machine carried then. The server shares the client's cores and \
             spends two to four times its CPU, so wall-clock ratios move with the machine's load; \
             the CPU columns (the client's, and the client's plus the server's, per MiB, paired \
             the same way: below 1 is less work) say what each engine costs whatever the load. \
             Cores busy is both sides' CPU time over the wall time: a run below what the machine \
             could give it waited. The client's system time (min–max over the runs) is the \
             kernel's share of its CPU: a setting whose runs differ by several times there met \
             the machine's memory in different states (a new file's pages on a virtual machine \
             that hands free memory back to its host), not a different engine.\n"
        );
        let _ = writeln!(
            md,
            "| workload | direction | scenario | engine | MiB/s (min–max) | × object-store (medians) | paired × (min–max) | CPU ms/MiB | of it system (min–max) | paired CPU × | server CPU ms/MiB | client + server CPU ms/MiB | paired client + server CPU × | cores busy | peak RSS MB | injected | re-sent MiB | pieces re-sent / failure | identical | open bodies max |"
        );
        let _ = writeln!(
            md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for row in &self.rows {
            let opt = |value: Option<f64>, digits: usize| {
                value.map_or("–".to_owned(), |v| format!("{v:.digits$}"))
            };
            let paired = |summary: Option<Summary>| {
                summary.map_or("–".to_owned(), |s| {
                    format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
                })
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} ({:.0}–{:.0}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} |",
                row.workload,
                row.direction,
                row.scenario,
                row.engine,
                row.mib_per_sec.median,
                row.mib_per_sec.min,
                row.mib_per_sec.max,
                opt(row.throughput_ratio_vs_object_store, 2),
                paired(row.paired_ratio_vs_object_store),
                opt(row.cpu_ms_per_mib.map(|s| s.median), 2),
                row.system_cpu_ms_per_mib.map_or("–".to_owned(), |s| {
                    format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
                }),
                paired(row.paired_cpu_ratio_vs_object_store),
                opt(row.server_cpu_ms_per_mib.map(|s| s.median), 2),
                opt(row.total_cpu_ms_per_mib.map(|s| s.median), 2),
                paired(row.paired_total_cpu_ratio_vs_object_store),
                opt(row.cores_busy.map(|s| s.median), 2),
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
        let paired = |figure: fn(&TransferRun) -> Option<f64>| {
            let base = baseline.filter(|_| *engine != TransferEngine::ObjectStore)?;
            let ratios: Vec<f64> = group
                .iter()
                .filter_map(|run| {
                    let other = base.iter().find(|b| b.round == run.round)?;
                    Some(figure(run)? / figure(other)?)
                })
                .collect();
            Summary::of(&ratios)
        };
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
            system_cpu_ms_per_mib: summary(
                group.iter().map(|r| r.system_cpu_ms_per_mib()).collect(),
            ),
            server_cpu_ms_per_mib: summary(
                group.iter().map(|r| r.server_cpu_ms_per_mib()).collect(),
            ),
            total_cpu_ms_per_mib: summary(group.iter().map(|r| r.total_cpu_ms_per_mib()).collect()),
            cores_busy: summary(group.iter().map(|r| r.cores_busy()).collect()),
            peak_rss_mb: group
                .iter()
                .filter_map(|r| r.measurement.peak_rss_bytes)
                .max()
                .map(|bytes| bytes as f64 / MIB),
            throughput_ratio_vs_object_store: ratio,
            paired_ratio_vs_object_store: paired(|run| Some(run.mib_per_sec())),
            paired_cpu_ratio_vs_object_store: paired(TransferRun::cpu_ms_per_mib),
            paired_total_cpu_ratio_vs_object_store: paired(TransferRun::total_cpu_ms_per_mib),
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

    let clean: Vec<&&TransferRow> = pooled
        .iter()
        .filter(|row| row.scenario == Scenario::Clean)
        .collect();
    goals.push(Goal {
        goal: "throughput ≥ 1.0× the bare idioms (clean runs; judged on the median of the \
               paired ratios, each round's s3pool run over the object-store run beside it)"
            .to_owned(),
        met: !clean.is_empty()
            && clean.iter().all(|row| {
                row.paired_ratio_vs_object_store
                    .is_some_and(|ratio| ratio.median >= 1.0)
            }),
        detail: clean
            .iter()
            .map(|row| throughput_detail(row))
            .collect::<Vec<_>>()
            .join("; "),
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

/// A row's throughput verdict: the paired ratio, and beside it what each side's CPU says.
fn throughput_detail(row: &TransferRow) -> String {
    let ratio = |summary: Option<Summary>| {
        summary.map_or("–".to_owned(), |s| {
            format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
        })
    };
    format!(
        "{} {} {}× over {} round(s) (client CPU/MiB × {}, client + server CPU/MiB × {})",
        row.workload,
        row.direction,
        ratio(row.paired_ratio_vs_object_store),
        row.runs,
        ratio(row.paired_cpu_ratio_vs_object_store),
        ratio(row.paired_total_cpu_ratio_vs_object_store),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean many-objects upload of 100 MiB by `engine` in `round`, taking `wall_ms`, with
    /// `cpu_ms` in the child and `server_ms` in the server.
    fn run(
        engine: TransferEngine,
        round: usize,
        wall_ms: f64,
        cpu_ms: f64,
        server_ms: f64,
    ) -> TransferRun {
        TransferRun {
            round,
            workload: Workload::Many,
            direction: Direction::Upload,
            scenario: Scenario::Clean,
            engine,
            bytes: 100 << 20,
            piece_bytes: 1 << 20,
            mismatches: 0,
            leftover_uploads: 0,
            measurement: TransferMeasurement {
                wall_ms,
                cpu_ms: Some(cpu_ms),
                peak_rss_bytes: Some(30 << 20),
                baseline_rss_bytes: None,
                mismatches: 0,
                retries: None,
                resent_bytes: None,
                max_open_bodies: None,
                worker_threads: 2,
                usage: None,
            },
            server: ServerDelta {
                requests: 100,
                injected: 0,
                bytes_received: 100 << 20,
                bytes_sent: 0,
                cpu_ms: Some(server_ms),
            },
        }
    }

    fn throughput_goal(runs: &[TransferRun]) -> (Goal, TransferRow) {
        let rows = rows(runs);
        let pooled = rows
            .iter()
            .find(|row| row.engine == TransferEngine::S3pool)
            .unwrap()
            .clone();
        let goal = goals(&TransferOptions::default(), &rows, &[])
            .goals
            .remove(0);
        (goal, pooled)
    }

    #[test]
    fn the_throughput_goal_is_judged_on_paired_ratios_not_on_medians_of_each_side() {
        use TransferEngine::{ObjectStore, S3pool};
        // The machine's load swings from round to round: s3pool is 10 % slower than the
        // run beside it every time, but its median run fell in a quiet round and the
        // baseline's in a busy one, so the ratio of medians says 1.29.
        let runs = [
            run(S3pool, 0, 1_100.0, 100.0, 300.0),
            run(ObjectStore, 0, 1_000.0, 100.0, 300.0),
            run(ObjectStore, 1, 2_000.0, 100.0, 300.0),
            run(S3pool, 1, 2_200.0, 100.0, 300.0),
            run(S3pool, 2, 3_300.0, 100.0, 300.0),
            run(ObjectStore, 2, 3_000.0, 100.0, 300.0),
            run(ObjectStore, 3, 4_000.0, 100.0, 300.0),
            run(S3pool, 3, 1_650.0, 80.0, 300.0),
        ];
        let (goal, row) = throughput_goal(&runs);
        assert!(row.throughput_ratio_vs_object_store.unwrap() > 1.2);
        let paired = row.paired_ratio_vs_object_store.unwrap();
        assert!((paired.median - 1.0 / 1.1).abs() < 1e-9, "{paired:?}");
        assert!(!goal.met, "{goal:?}");
        assert!(goal.detail.contains("0.91"), "{}", goal.detail);
        // CPU per MiB, paired the same way: 1.0 in three rounds, 0.8 in the last.
        let cpu = row.paired_cpu_ratio_vs_object_store.unwrap();
        assert_eq!((cpu.median, cpu.min), (1.0, 0.8));
        let total = row.paired_total_cpu_ratio_vs_object_store.unwrap();
        assert!((total.min - 380.0 / 400.0).abs() < 1e-9, "{total:?}");
        // Both sides' 400 ms of CPU over 1,100 ms of wall time in the first round.
        assert!((runs[0].cores_busy().unwrap() - 400.0 / 1_100.0).abs() < 1e-9);

        // Faster than the run beside it in three rounds of four: met.
        let mut faster = runs.clone();
        for run in faster.iter_mut().filter(|run| run.engine == S3pool).take(3) {
            run.measurement.wall_ms *= 0.8;
        }
        let (goal, row) = throughput_goal(&faster);
        assert!(row.paired_ratio_vs_object_store.unwrap().median >= 1.0);
        assert!(goal.met, "{goal:?}");
    }
}
