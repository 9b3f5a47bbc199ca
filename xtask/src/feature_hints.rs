//! The compile error a user meets when they call a method whose feature is off: checked by
//! building s3-client's `feature_hints` example without features and reading rustc's
//! message. (A `compile_fail` doc test cannot do it: the suite builds with every feature on,
//! so the method exists there.)

use std::process::Command;

use crate::workspace_root;

/// What rustc must say: the feature's name, not a guess at a similar method.
const EXPECTED: &str = "this method needs s3-client's `metrics` feature";

/// Checks `cargo check -p s3-client --example feature_hints` (no features) fails, saying to
/// enable `metrics`.
pub(crate) fn check() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = [
        "check",
        "-p",
        "s3-client",
        "--example",
        "feature_hints",
        "--message-format",
        "short",
    ];
    eprintln!(
        "xtask: running cargo {} (must fail, naming the feature)",
        args.join(" ")
    );
    let output = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("could not start {cargo}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Err(
            "s3-client's feature_hints example compiled without the `metrics` feature: \
             S3Client::metrics must not exist then"
                .to_owned(),
        );
    }
    if !stderr.contains(EXPECTED) {
        return Err(format!(
            "s3-client's feature_hints example failed without the `metrics` feature, but \
             not with \"{EXPECTED}\":\n{stderr}"
        ));
    }
    Ok(())
}
