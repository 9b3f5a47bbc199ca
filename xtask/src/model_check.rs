//! `cargo xtask model-check`: pool-core's engine under the shuttle model checker
//! (`pool-core/tests/model_check.rs`), built with `--cfg shuttle` in a target directory of
//! its own so the normal build's cache stays valid.
//!
//! The bounded run (what `cargo xtask test` runs) gives each scheduler a few seconds on a
//! debug build; `--deep` builds with optimisations and gives each one five minutes.

use clap::Args;

use crate::cargo_with_env;

/// Options of `cargo xtask model-check`.
#[derive(Debug, Args)]
pub(crate) struct ModelCheckArgs {
    /// A long run: optimised build, 300 s per scheduler (unless `--seconds` says otherwise).
    #[arg(long)]
    pub(crate) deep: bool,
    /// Time budget per scheduler, in seconds (default 5, or 300 with `--deep`).
    #[arg(long)]
    pub(crate) seconds: Option<f64>,
    /// The schedulers' seed (default: fixed, so runs are reproducible).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Replay one failing schedule, as printed by a failed run.
    #[arg(long)]
    pub(crate) replay: Option<String>,
}

impl ModelCheckArgs {
    /// The bounded run of `cargo xtask test`.
    pub(crate) fn bounded() -> Self {
        Self {
            deep: false,
            seconds: None,
            seed: None,
            replay: None,
        }
    }
}

pub(crate) fn run(args: &ModelCheckArgs) -> Result<(), String> {
    let seconds = args.seconds.unwrap_or(if args.deep { 300.0 } else { 5.0 });
    let mut env = vec![
        ("RUSTFLAGS".to_owned(), rustflags()),
        // Its own directory: the flags differ from the normal build's, so sharing artifacts
        // would make each build invalidate the other's.
        (
            "CARGO_TARGET_DIR".to_owned(),
            crate::target_dir().join("shuttle").display().to_string(),
        ),
        ("MODEL_CHECK_SECONDS".to_owned(), seconds.to_string()),
    ];
    if let Some(seed) = args.seed {
        env.push(("MODEL_CHECK_SEED".to_owned(), seed.to_string()));
    }
    let mut cargo = vec!["test", "-p", "pool-core", "--test", "model_check"];
    if args.deep {
        cargo.push("--release");
    }
    cargo.extend(["--", "--nocapture"]);
    if let Some(schedule) = &args.replay {
        env.push(("MODEL_CHECK_REPLAY".to_owned(), schedule.clone()));
        cargo.push("engine_under_pct_schedules");
    }
    cargo_with_env(&cargo, &env)
}

/// The caller's `RUSTFLAGS` with `--cfg shuttle` added.
fn rustflags() -> String {
    match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg shuttle"),
        _ => "--cfg shuttle".to_owned(),
    }
}
