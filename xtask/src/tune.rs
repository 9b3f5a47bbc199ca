//! `cargo xtask tune`: every shipped scenario of pool-tuning's simulator with every tuner it
//! compares, on three seeds, in a release build. Prints the per-phase table and the knee
//! tuner's goals, and fails if any outcome leaves its scenario's range on any seed.
//!
//! The test suite runs only the quick scenarios (`pool-tuning/tests/scenarios`): a debug
//! build simulates about ten times slower, and the shipped set is a minute of thousands of
//! operations per second per scenario.

use clap::Args;

use crate::cargo;

/// Options of `cargo xtask tune`.
#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    /// Seeds per scenario (its own, then the next ones).
    #[arg(long, default_value_t = 3)]
    pub(crate) seeds: u64,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    pub(crate) only: Option<String>,
}

pub(crate) fn run(args: &TuneArgs) -> Result<(), String> {
    let seeds = args.seeds.to_string();
    let mut command = vec![
        "run",
        "--release",
        "-p",
        "pool-tuning",
        "--features",
        "sim",
        "--example",
        "simulate",
        "--",
        "--all",
        "--phases",
        "--goals",
        "--seeds",
        &seeds,
    ];
    if let Some(only) = &args.only {
        command.extend(["--only", only]);
    }
    cargo(&command)
}
