//! `cargo xtask <command>`: project automation for s3pool.
//!
//! - `cargo xtask test`: provisions what the test suite needs, then runs every test of the
//!   workspace (the README's test command, and what CI runs).
//! - `cargo xtask bench-matrix`: the 108-case matrix (join_all vs a shared pool vs separate
//!   pools), results in `target/bench-matrix/` (`--quick` for a seconds-long subset).
//! - `cargo xtask bench-overhead`: s3pool beside the bare tokio / futures / tower idioms,
//!   results in `target/bench-overhead/results.json`.
//! - `cargo xtask model-check [--deep]`: pool-core's engine under the shuttle model checker
//!   (`cargo xtask test` runs the bounded budget; `--deep` runs five minutes per scheduler on
//!   an optimised build).
//! - `cargo xtask bench-transfer`: one 1 GiB object and 1,000 × 1 MiB objects up and down
//!   over the in-process S3 server, s3pool beside bare object_store, with 1 % of requests
//!   failing too; results in `target/bench-transfer/` (`--quick` for a minute-long run).
//! - `cargo xtask bench-hedge`: hedged reads against a slow tail over the in-process S3
//!   server (p99 / p99.9 with and without hedging, the extra requests, a uniform slowdown
//!   against the budget), and the fair-share figures of three weighted tenants.
//! - `cargo xtask soak`: ten minutes of mixed load through the chaos store with the adaptive
//!   tuner on; prints the RSS slope and fails on any failure that was not injected.
//! - `cargo xtask tune`: pool-tuning's shipped scenarios with every tuner on three seeds
//!   (release build): the per-phase table, the knee tuner's goals, and every range checked.

use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

mod bench_hedge;
mod bench_matrix;
mod bench_overhead;
mod bench_transfer;
mod crate_docs;
mod feature_hints;
mod model_check;
mod moto;
mod soak;
mod test;
mod tune;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "s3pool project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the whole test suite (provisioning what it needs first).
    Test(test::TestArgs),
    /// Run the 108-case matrix and write results and charts (`--help` lists its options).
    BenchMatrix(bench_matrix::BenchArgs),
    /// Compare s3pool's overhead with the bare idioms (`--help` lists its options).
    BenchOverhead(bench_matrix::BenchArgs),
    /// Check pool-core's engine under the shuttle model checker (`--deep` for a long run).
    ModelCheck(model_check::ModelCheckArgs),
    /// Large and many objects up and down, s3pool beside bare object_store (`--help`).
    BenchTransfer(bench_matrix::BenchArgs),
    /// Hedged reads against a slow tail, and fair share between tenants (`-- --help`).
    BenchHedge(bench_matrix::BenchArgs),
    /// Soak: mixed load through the chaos store with the tuner on (default 10 minutes).
    Soak(soak::SoakArgs),
    /// Simulate every shipped scenario with every tuner on three seeds; check the ranges.
    Tune(tune::TuneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Test(args) => test::run(&args),
        Task::BenchMatrix(args) => bench_matrix::run(&args),
        Task::BenchOverhead(args) => bench_overhead::run(&args),
        Task::ModelCheck(args) => model_check::run(&args),
        Task::BenchTransfer(args) => bench_transfer::run(&args),
        Task::BenchHedge(args) => bench_hedge::run(&args),
        Task::Soak(args) => soak::run(&args),
        Task::Tune(args) => tune::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cargo` with `args` in the workspace root; an error names the command that failed.
pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with environment variables set for it.
pub(crate) fn cargo_with_env(args: &[&str], env: &[(String, String)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    eprintln!(
        "xtask: running {} cargo {}",
        shown.join(" "),
        args.join(" ")
    );
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("could not start {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, or `target/` in the workspace root.
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub(crate) fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
