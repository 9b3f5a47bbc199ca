//! Runs tuners against simulated backends in virtual time.
//!
//! ```text
//! cargo run -p pool-tuning --features sim --release --example simulate -- --scenario pool-tuning/scenarios/knee-64.toml --tuner knee --trace
//! cargo run -p pool-tuning --features sim --release --example simulate -- --all
//! cargo run -p pool-tuning --features sim --release --example simulate -- --all --phases --seeds 3
//! ```
//!
//! `--all` runs every scenario with every tuner `--tuners` names (default: all of them, the
//! best fixed limit last), prints one row per scenario and tuner (`--phases`: per phase), and
//! fails if an outcome leaves its scenario's expected range (on any seed). With `--goals` it also checks
//! the knee tuner against the goals (per phase: utilization ≥ 0.95, load-caused overload ≤
//! 0.5 %, converged ≤ 10 s, p99 ≤ 1.5 × the best fixed limit's; per scenario: no worse than
//! any peer — Vector's ARC, Gradient2, AIMD — on utilization up to capacity, within a point,
//! and on overload, within a tenth of a point) and lists every
//! miss. With `--plot DIR` it writes one SVG per scenario and seed: the tuner's limit, the
//! attempts in flight, throughput and p99 over time, beside the best fixed limit's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pool_tuning::sim::{
    load_scenarios, on_every_core, run, scenario_dir, worse_than, PeerScore, PhaseGoals, Scenario,
    SeriesPoint, SimReport, TunerSpec, PEER_TOLERANCE,
};

/// Simulate a tuner against a scenario (or every tuner against every scenario).
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Scenario file (TOML).
    #[arg(long, required_unless_present = "all")]
    scenario: Option<PathBuf>,
    /// Tuner for `--scenario`: knee, rule, fixed:N or best-fixed.
    #[arg(long, default_value = "knee")]
    tuner: TunerSpec,
    /// Tuners for `--all`, comma-separated (default: every one the simulator compares).
    #[arg(long, value_delimiter = ',')]
    tuners: Vec<TunerSpec>,
    /// Run each scenario on this many seeds (its own, then the next ones).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Print one JSON object per run.
    #[arg(long)]
    json: bool,
    /// Run every scenario in `--dir`, and print a table.
    #[arg(long, conflicts_with = "scenario")]
    all: bool,
    /// One row per phase instead of per run.
    #[arg(long)]
    phases: bool,
    /// Report the knee tuner against the goals and the peers (needs best-fixed among the
    /// tuners, which it is by default). Misses are listed; only ranges fail the run.
    #[arg(long)]
    goals: bool,
    /// Also print the goal table (markdown, as pool-tuning's README shows it): per throughput
    /// scenario and tuner, the mean over seeds of utilization, load-caused overload and the
    /// worst phase's p99 ÷ the best fixed limit's, and the phases meeting every goal.
    #[arg(long)]
    table: bool,
    /// Also print every change of the limit (time, from, to, reason).
    #[arg(long, conflicts_with = "all")]
    trace: bool,
    /// Where `--all` looks for scenarios.
    #[arg(long, default_value_os_t = scenario_dir())]
    dir: PathBuf,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Write `<scenario>-<seed>.svg` into this directory for every scenario and seed: the
    /// `--plot-tuner` at work beside the best fixed limit.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The tuner `--plot` draws.
    #[arg(long, default_value = "knee")]
    plot_tuner: TunerSpec,
}

mod plot;

fn main() -> ExitCode {
    match execute(Args::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The runs of one scenario on one seed, with their range violations.
struct Runs {
    scenario: Scenario,
    seed: u64,
    reports: Vec<(SimReport, Vec<String>)>,
    /// Per tuner, what `--plot` draws (empty without it).
    series: Vec<Vec<SeriesPoint>>,
}

fn execute(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (scenarios, mut tuners) = if args.all {
        let mut scenarios = load_scenarios(&args.dir)?;
        if let Some(only) = &args.only {
            scenarios.retain(|s| s.name.contains(only.as_str()));
        }
        let tuners = if args.tuners.is_empty() {
            TunerSpec::COMPARED.to_vec()
        } else {
            args.tuners.clone()
        };
        (scenarios, tuners)
    } else {
        let path = args.scenario.as_ref().expect("clap requires --scenario");
        (vec![Scenario::load(path)?], vec![args.tuner])
    };
    if args.plot.is_some() {
        for needed in [args.plot_tuner, TunerSpec::BestFixed] {
            if !tuners.contains(&needed) {
                tuners.push(needed);
            }
        }
    }
    let plotting = args.plot.is_some();
    // Every (scenario, seed) on its own thread, as many at once as there are cores.
    let jobs: Vec<(Scenario, u64)> = scenarios
        .iter()
        .flat_map(|s| (0..args.seeds.max(1)).map(move |i| (s.clone(), s.seed + i)))
        .collect();
    let all: Vec<Runs> = on_every_core(&jobs, |(scenario, seed)| {
        run_all(scenario, *seed, &tuners, plotting)
    })
    .into_iter()
    .collect::<Result<_, _>>()?;
    for runs in &all {
        for (report, _) in &runs.reports {
            if args.trace {
                for (at_s, change) in &report.trace {
                    println!(
                        "{at_s:8.3} s  {:>4} -> {:<4} {}",
                        change.from, change.to, change.reason
                    );
                }
            }
            if args.json {
                println!("{}", serde_json::to_string(report)?);
            }
        }
    }
    if !args.json {
        if args.phases {
            print_phases(&all);
        } else {
            print_runs(&all);
        }
    }
    let failed = all
        .iter()
        .flat_map(|runs| &runs.reports)
        .any(|(_, violations)| !violations.is_empty());
    if args.goals {
        print_goals(&all);
    }
    if args.table {
        print_table(&all, &tuners);
    }
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir)?;
        let position = |tuner: &TunerSpec| tuners.iter().position(|t| t == tuner);
        let (Some(tuned), Some(best)) =
            (position(&args.plot_tuner), position(&TunerSpec::BestFixed))
        else {
            unreachable!("both were added to the tuners");
        };
        for runs in &all {
            let path = dir.join(format!("{}-{}.svg", runs.scenario.name, runs.seed));
            plot::draw(
                &runs.scenario,
                runs.seed,
                &args.plot_tuner.to_string(),
                &runs.series[tuned],
                &runs.series[best],
                &path,
            )?;
            println!("wrote {}", path.display());
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `scenario` on `seed` with every tuner, checking each against the scenario's ranges
/// (on every seed: a range must hold whatever the seed).
fn run_all(
    scenario: &Scenario,
    seed: u64,
    tuners: &[TunerSpec],
    plotting: bool,
) -> Result<Runs, String> {
    let mut reports = Vec::new();
    let mut series = Vec::new();
    for tuner in tuners {
        let ran = run(scenario, tuner, seed).map_err(|e| e.to_string())?;
        if plotting {
            series.push(ran.series(plot::SLICE_S));
        }
        let report = ran.report;
        let violations = scenario
            .check(tuner, &report)
            .iter()
            .map(ToString::to_string)
            .collect();
        reports.push((report, violations));
    }
    Ok(Runs {
        scenario: scenario.clone(),
        seed,
        reports,
        series,
    })
}

fn converged(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s"))
}

fn print_runs(all: &[Runs]) {
    println!("| scenario | seed | tuner | capacity ops/s | utilization | overload % | throttled % | timeouts % | p99 ms | slowest convergence | final limit |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for runs in all {
        for (r, violations) in &runs.reports {
            println!(
                "| {} | {} | {} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |",
                r.scenario,
                r.seed,
                r.tuner,
                r.capacity_ops_per_s,
                r.utilization,
                r.overload_fraction * 100.0,
                r.throttled_fraction * 100.0,
                r.timeout_fraction * 100.0,
                r.p99_latency_ms,
                converged(r.max_converged_after_s()),
                r.final_concurrency,
            );
            for violation in violations {
                println!("| ✗ {violation} |||||||||||");
            }
        }
    }
}

fn print_phases(all: &[Runs]) {
    println!("| scenario | seed | tuner | phase s | capacity ops/s | best limit | utilization | overload % | background % | p99 ms | p99 ÷ best fixed | converged after | mean limit |");
    println!("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for runs in all {
        let best = runs
            .reports
            .iter()
            .find(|(r, _)| r.tuner == TunerSpec::BestFixed.to_string());
        for (r, violations) in &runs.reports {
            for (index, p) in r.phases.iter().enumerate() {
                let ratio = best
                    .and_then(|(b, _)| b.phases.get(index))
                    .filter(|b| b.p99_latency_ms > 0.0)
                    .map_or_else(
                        || "–".to_owned(),
                        |b| format!("{:.2}", p.p99_latency_ms / b.p99_latency_ms),
                    );
                println!(
                    "| {} | {} | {} | {:.0}–{:.0} | {:.0} | {} | {:.3} | {:.2} | {:.2} | {:.1} | {} | {} | {:.0} |",
                    r.scenario,
                    r.seed,
                    r.tuner,
                    p.start_s,
                    p.end_s,
                    p.capacity_ops_per_s,
                    p.best_limit,
                    p.utilization,
                    p.overload_fraction * 100.0,
                    p.background_fraction * 100.0,
                    p.p99_latency_ms,
                    ratio,
                    converged(p.converged_after_s),
                    p.mean_concurrency,
                );
            }
            for violation in violations {
                println!("| ✗ {violation} |||||||||||||");
            }
        }
    }
}

/// Prints every goal the knee tuner misses.
fn print_goals(all: &[Runs]) {
    let knee = TunerSpec::Knee.to_string();
    let best = TunerSpec::BestFixed.to_string();
    println!("\nGoals of the knee tuner (throughput scenarios):");
    for runs in all.iter().filter(|runs| runs.scenario.throughput) {
        let find = |name: &str| runs.reports.iter().find(|(r, _)| r.tuner == name);
        let (Some((report, _)), Some((best_fixed, _))) = (find(&knee), find(&best)) else {
            continue;
        };
        let mut misses = Vec::new();
        for phase in PhaseGoals::of(report, best_fixed) {
            if !phase.misses().is_empty() {
                misses.push(format!("{phase} — misses {}", phase.misses().join(", ")));
            }
        }
        let peers: Vec<String> = TunerSpec::PEERS.iter().map(ToString::to_string).collect();
        for (peer, _) in &runs.reports {
            if peers.contains(&peer.tuner) {
                misses.extend(worse_than(report, peer, PEER_TOLERANCE));
            }
        }
        let name = format!("{} (seed {})", report.scenario, report.seed);
        if misses.is_empty() {
            println!("  ✓ {name}");
        }
        for miss in misses {
            println!("  ✗ {name}: {miss}");
        }
    }
}

/// Prints the goal table: one row per throughput scenario, one column per tuner (fixed
/// limits other than the best one left out), the phases meeting every goal in all, and the
/// scenarios on which no peer is ahead of the column's tuner (means over the seeds, see
/// [`PeerScore`]), with the scenarios where one is, for the knee tuner.
fn print_table(all: &[Runs], tuners: &[TunerSpec]) {
    let best = TunerSpec::BestFixed.to_string();
    let columns: Vec<String> = tuners
        .iter()
        .filter(|t| !matches!(t, TunerSpec::Fixed(_)))
        .map(ToString::to_string)
        .collect();
    println!("\n| scenario | {} |", columns.join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    let mut scenarios: Vec<&str> = Vec::new();
    for runs in all.iter().filter(|runs| runs.scenario.throughput) {
        if !scenarios.contains(&runs.scenario.name.as_str()) {
            scenarios.push(&runs.scenario.name);
        }
    }
    let mut totals = vec![(0usize, 0usize); columns.len()];
    let peers: Vec<String> = TunerSpec::PEERS.iter().map(ToString::to_string).collect();
    let mut level = vec![(0usize, 0usize); columns.len()];
    let mut knee_behind = Vec::new();
    for name in scenarios.iter().copied() {
        let mut cells = Vec::new();
        let mut scores = vec![PeerScore::default(); columns.len()];
        for (column, tuner) in columns.iter().enumerate() {
            let (mut utilization, mut overload, mut p99, mut met, mut phases, mut seeds) =
                (0.0, 0.0, 0.0, 0, 0, 0u32);
            for runs in all.iter().filter(|runs| runs.scenario.name == name) {
                let find = |name: &str| runs.reports.iter().find(|(r, _)| r.tuner == name);
                let (Some((report, _)), Some((best_fixed, _))) = (find(tuner), find(&best)) else {
                    continue;
                };
                let goals = PhaseGoals::of(report, best_fixed);
                let score = PeerScore::of(report);
                scores[column].utilization += score.utilization;
                scores[column].overload += score.overload;
                utilization += report.utilization;
                overload += report.overload_fraction;
                p99 += goals.iter().map(|g| g.p99_ratio).fold(0.0, f64::max);
                met += goals.iter().filter(|g| g.misses().is_empty()).count();
                phases += goals.len();
                seeds += 1;
            }
            let n = f64::from(seeds.max(1));
            scores[column].utilization /= n;
            scores[column].overload /= n;
            totals[column].0 += met;
            totals[column].1 += phases;
            cells.push(format!(
                "{:.2} · {:.2} % · ×{:.1} · {met}/{phases}",
                utilization / n,
                overload / n * 100.0,
                p99 / n
            ));
        }
        println!("| {name} | {} |", cells.join(" | "));
        for (column, tuner) in columns.iter().enumerate() {
            let ahead: Vec<String> = columns
                .iter()
                .zip(&scores)
                .filter(|(peer, _)| *peer != tuner && peers.contains(peer))
                .filter_map(|(peer, score)| {
                    let (utilization, overload) = scores[column].behind(score, PEER_TOLERANCE);
                    let on = match (utilization, overload) {
                        (true, true) => "utilization and overload",
                        (true, false) => "utilization",
                        (false, true) => "overload",
                        (false, false) => return None,
                    };
                    Some(format!("{peer} on {on}"))
                })
                .collect();
            level[column].0 += usize::from(ahead.is_empty());
            level[column].1 += 1;
            if *tuner == TunerSpec::Knee.to_string() && !ahead.is_empty() {
                knee_behind.push(format!("{name}: {}", ahead.join(", ")));
            }
        }
    }
    let totals: Vec<String> = totals.iter().map(|(m, p)| format!("{m}/{p}")).collect();
    println!("| phases meeting every goal | {} |", totals.join(" | "));
    let level: Vec<String> = level.iter().map(|(m, p)| format!("{m}/{p}")).collect();
    println!("| scenarios no peer is ahead on | {} |", level.join(" | "));
    for behind in knee_behind {
        println!("\nA peer is ahead of the knee tuner on {behind}");
    }
}
