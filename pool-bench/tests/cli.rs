//! The `pool-bench` binary end to end: a tiny matrix in child processes, its files, and
//! the queued-memory probe.

use std::path::Path;
use std::process::Command;

use pool_bench::{MatrixReport, QueuedMemory};

fn pool_bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pool-bench"))
}

#[test]
fn matrix_writes_results_tables_and_charts_for_the_chosen_cases() {
    let out = tempfile::tempdir().unwrap();
    let status = pool_bench()
        .args(["matrix", "--operations", "200", "--positions", "64"])
        .args(["--concurrency", "4,16", "--reps", "2", "--warmup", "0"])
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());

    let json = std::fs::read_to_string(out.path().join("results.json")).unwrap();
    let report: MatrixReport = serde_json::from_str(&json).unwrap();
    assert_eq!(report.cases.len(), 6, "3 engines × 2 concurrency levels");
    for case in &report.cases {
        assert_eq!(
            (case.operations, case.payload_positions, case.reps),
            (200, 64, 2)
        );
        assert!(case.duration_ms_min <= case.duration_ms_median);
        assert!(case.duration_ms_median <= case.duration_ms_max);
        assert!(case.ops_per_sec_median > 0.0);
        if cfg!(target_os = "linux") {
            assert!(case.peak_rss_mb.unwrap() > 0.0);
        }
    }
    let csv = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6);
    let markdown = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(markdown.contains("## 200 operations × 64 positions"));
    for chart in ["throughput.svg", "peak_memory.svg"] {
        let svg = std::fs::read_to_string(out.path().join(chart)).unwrap();
        assert!(svg.starts_with("<svg"), "{chart}");
        for engine in ["join-all", "shared-pool", "separate-pools"] {
            assert!(
                svg.contains(engine),
                "{chart} has no legend entry for {engine}"
            );
        }
    }
}

#[test]
fn bad_filters_fail_with_a_message() {
    let output = pool_bench()
        .args(["matrix", "--cases", "no-such-case", "--out"])
        .arg(Path::new("unused"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no case matches"));

    let output = pool_bench()
        .args(["matrix", "--engines", "promise-all"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown engine"));
}

#[test]
#[cfg(target_os = "linux")]
fn queued_bytes_reports_a_delta_and_runs_every_task() {
    let output = pool_bench()
        .args(["queued-bytes", "--tasks", "20000"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let queued: QueuedMemory = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(queued.tasks, 20_000);
    assert_eq!(queued.completed_after_resume, 20_000);
    assert!(queued.rss_queued_bytes >= queued.rss_before_bytes);
    assert!(queued.handle_bytes > 0);
}

#[test]
#[cfg(all(target_os = "linux", feature = "s3-loopback"))]
fn a_small_transfer_run_checks_content_and_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let status = pool_bench()
        .args([
            "transfer",
            "--large-mib",
            "11",
            "--objects",
            "6",
            "--object-kib",
            "300",
        ])
        .args(["--part-mib", "5", "--concurrency", "4", "--rounds", "1"])
        .args(["--fault-rate", "0.05"])
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let json = std::fs::read_to_string(out.path().join("results.json")).unwrap();
    let report: pool_bench::TransferReport = serde_json::from_str(&json).unwrap();
    // 2 workloads × 2 directions × 2 scenarios × 2 engines, one round.
    assert_eq!(report.runs.len(), 16);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for run in &report.runs {
        assert_eq!(run.mismatches, 0, "{run:?}");
        assert_eq!(run.leftover_uploads, 0, "{run:?}");
        assert!(run.measurement.wall_ms > 0.0);
    }
    assert!(report.runs.iter().any(|run| run.server.injected > 0));
    let markdown = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(markdown.contains("## Goals"));
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("transfer-data-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
