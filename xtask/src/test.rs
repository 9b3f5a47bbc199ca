//! `cargo xtask test`: the one command that runs every test.

use clap::Args;

use crate::cargo;

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Extra arguments passed to `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub(crate) rest: Vec<String>,
}

pub(crate) fn run(args: &TestArgs) -> Result<(), String> {
    let mut workspace = vec!["test", "--workspace"];
    if !args.rest.is_empty() {
        workspace.push("--");
        workspace.extend(args.rest.iter().map(String::as_str));
    }
    cargo(&workspace)?;
    // The second real runtime is behind a feature; its suite runs here too.
    cargo(&[
        "test",
        "-p",
        "pool-core",
        "--features",
        "smol",
        "--test",
        "smol",
    ])
}
