//! `cargo xtask bench-matrix`: the 108-case matrix (pool-bench), built in release.

use std::path::PathBuf;
use std::process::Command;

use clap::Args;

use crate::{cargo, workspace_root};

/// Options of `cargo xtask bench-matrix`: everything is passed on to `pool-bench matrix`
/// (`cargo xtask bench-matrix --help` prints its options: --quick, --cases, --engines,
/// --reps, --backend, …).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct BenchArgs {
    /// Arguments for the pool-bench subcommand.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) args: Vec<String>,
}

pub(crate) fn run(args: &BenchArgs) -> Result<(), String> {
    run_pool_bench("matrix", "bench-matrix", &args.args)
}

/// Builds pool-bench's binary in release (without dev-dependencies, so without tokio's
/// `test-util`, which would put tokio's clock behind a mutex) and runs `pool-bench
/// <subcommand> <args>`, writing into `<target dir>/<out_dir_name>` unless `--out` is given.
pub(crate) fn run_pool_bench(
    subcommand: &str,
    out_dir_name: &str,
    args: &[String],
) -> Result<(), String> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "pool-bench",
        "--bin",
        "pool-bench",
    ])?;
    let target = target_directory()?;
    let binary = target
        .join("release")
        .join(format!("pool-bench{}", std::env::consts::EXE_SUFFIX));
    let mut command = Command::new(&binary);
    command
        .arg(subcommand)
        .args(args)
        .current_dir(workspace_root());
    let wants_help = args.iter().any(|arg| arg == "--help" || arg == "-h");
    if !wants_help
        && !args
            .iter()
            .any(|arg| arg == "--out" || arg.starts_with("--out="))
    {
        command.arg("--out").arg(target.join(out_dir_name));
    }
    let status = command
        .status()
        .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("pool-bench {subcommand} failed ({status})"))
    }
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR` and config), from `cargo metadata`.
fn target_directory() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("could not start {cargo} metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`cargo metadata` printed bad JSON: {e}"))?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "`cargo metadata` has no target_directory".to_owned())
}
