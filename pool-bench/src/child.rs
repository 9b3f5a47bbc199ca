//! The child-process protocol: an orchestrating command runs this same binary again with a
//! measuring subcommand, so that what it measures (peak memory, a fresh heap, a process's
//! CPU time) belongs to that measurement alone.
//!
//! The child prints its result as **one JSON line** on stdout ([`print_result`]); anything
//! else it prints is ignored. The parent ([`run_child`]) takes the last line that starts
//! with `{`; a child that exits unsuccessfully becomes [`BenchError::Child`] carrying its
//! exit status and stderr, so a failed measurement is reported, never silently dropped.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::BenchError;

/// Runs `binary args…`, waits for it, and decodes the JSON line it printed. `label` names
/// the measurement in errors (a case name, `queued-bytes`, …).
pub fn run_child<T, I, S>(binary: &Path, label: &str, args: I) -> Result<T, BenchError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let child_error = |reason: String| BenchError::Child {
        case: label.to_owned(),
        reason,
    };
    let output = Command::new(binary)
        .args(args)
        .output()
        .map_err(|error| child_error(format!("could not start {}: {error}", binary.display())))?;
    if !output.status.success() {
        return Err(child_error(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .ok_or_else(|| child_error(format!("no result line in its output: {stdout}")))?;
    serde_json::from_str(line)
        .map_err(|error| child_error(format!("bad result line ({error}): {line}")))
}

/// The child's side: prints `result` as the one JSON line [`run_child`] reads.
pub fn print_result<T: Serialize>(result: &T) -> Result<(), BenchError> {
    println!("{}", serde_json::to_string(result)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn reads_the_last_json_line_and_reports_failures() {
        let shell = Path::new("/bin/sh");
        let value: serde_json::Value = run_child(
            shell,
            "echo",
            ["-c", "echo progress; echo '{\"a\":1}'; echo '{\"a\":2}'"],
        )
        .unwrap();
        assert_eq!(value["a"], 2);

        let failed =
            run_child::<serde_json::Value, _, _>(shell, "failing", ["-c", "echo why >&2; exit 3"]);
        assert!(
            matches!(&failed, Err(BenchError::Child { case, reason })
                if case == "failing" && reason.contains("why")),
            "{failed:?}"
        );

        let silent = run_child::<serde_json::Value, _, _>(shell, "silent", ["-c", "echo hi"]);
        assert!(
            matches!(&silent, Err(BenchError::Child { reason, .. }) if reason.contains("no result line")),
            "{silent:?}"
        );
    }
}
