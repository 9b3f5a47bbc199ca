//! Runs tuners against simulated backends in virtual time.
//!
//! ```text
//! cargo run -p pool-tuning --release --example simulate -- --scenario pool-tuning/scenarios/knee-64.toml --tuner knee --json
//! cargo run -p pool-tuning --release --example simulate -- --all
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pool_tuning::sim::{load_scenarios, scenario_dir, simulate, Scenario, SimReport, TunerSpec};

/// Simulate a tuner against a scenario (or every tuner against every scenario).
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Scenario file (TOML).
    #[arg(long, required_unless_present = "all")]
    scenario: Option<PathBuf>,
    /// Tuner: rule, knee or fixed:N.
    #[arg(long, default_value = "knee")]
    tuner: TunerSpec,
    /// Print one JSON object (with `--all`: one per line).
    #[arg(long)]
    json: bool,
    /// Run every scenario in `--dir` with knee, rule and fixed:10, and print a table.
    #[arg(long, conflicts_with = "scenario")]
    all: bool,
    /// Also print every change of the limit (time, from, to, reason).
    #[arg(long, conflicts_with = "all")]
    trace: bool,
    /// Where `--all` looks for scenarios.
    #[arg(long, default_value_os_t = scenario_dir())]
    dir: PathBuf,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !args.all {
        let path = args
            .scenario
            .expect("clap requires --scenario without --all");
        let scenario = Scenario::load(&path)?;
        let report = simulate(&scenario, &args.tuner)?;
        if args.trace {
            for (at_s, change) in &report.trace {
                println!(
                    "{at_s:8.3} s  {:>4} -> {:<4} {}",
                    change.from, change.to, change.reason
                );
            }
        }
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_table(&[(report, Vec::new())]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for scenario in load_scenarios(&args.dir)? {
        for tuner in TunerSpec::COMPARED {
            let report = simulate(&scenario, &tuner)?;
            let violations = scenario
                .check(&tuner, &report)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            }
            rows.push((report, violations));
        }
    }
    if !args.json {
        print_table(&rows);
    }
    let failed = rows.iter().any(|(_, violations)| !violations.is_empty());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(rows: &[(SimReport, Vec<String>)]) {
    println!(
        "| scenario | tuner | capacity ops/s | achieved ops/s | utilization | throttled | timeouts | converged after | final C | p99 ms | last phase util |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (report, violations) in rows {
        let converged = report
            .converged_after_s
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s"));
        let last_phase = report.phases.last().map_or(0.0, |p| p.utilization);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.4} | {:.4} | {} | {} | {:.1} | {:.3} |",
            report.scenario,
            report.tuner,
            report.capacity_ops_per_s,
            report.achieved_ops_per_s,
            report.utilization,
            report.throttled_fraction,
            report.timeout_fraction,
            converged,
            report.final_concurrency,
            report.p99_latency_ms,
            last_phase,
        );
        for violation in violations {
            println!("|   ✗ {violation} | | | | | | | | | | |");
        }
    }
}
