//! `cargo xtask soak`: mixed load through the chaos store with the adaptive tuner on, for a
//! fixed time; reports the RSS slope and fails on any failure that was not injected.

use clap::Args;

use crate::cargo;

/// Options of `cargo xtask soak`.
#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub(crate) seconds: u64,
}

pub(crate) fn run(args: &SoakArgs) -> Result<(), String> {
    let seconds = args.seconds.to_string();
    cargo(&[
        "run",
        "--release",
        "-p",
        "s3-client",
        "--features",
        "tuning",
        "--example",
        "soak",
        "--",
        "--seconds",
        &seconds,
    ])
}
