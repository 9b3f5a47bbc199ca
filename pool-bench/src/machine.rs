//! [`MachineInfo`] and [`Versions`]: what the results were measured on.

use serde::{Deserialize, Serialize};

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// `std::env::consts::OS`.
    pub os: String,
    /// `std::env::consts::ARCH`.
    pub arch: String,
    /// Cores available to this process.
    pub cpus: usize,
    /// The CPU's model name (`/proc/cpuinfo`), if known.
    pub cpu_model: Option<String>,
    /// Total memory in MiB (`/proc/meminfo`), if known.
    pub total_memory_mb: Option<f64>,
    /// 1, 5 and 15-minute load averages (`/proc/loadavg`) when the run started: on a shared
    /// machine, a load above the core count means the figures are disturbed.
    pub load_average: Option<[f64; 3]>,
}

impl MachineInfo {
    /// Reads this machine's description.
    pub fn detect() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            });
        let total_memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
                let kib: f64 = line["MemTotal:".len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some((kib / 1024.0).round())
            });
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| {
                let mut fields = text
                    .split_whitespace()
                    .map(|field| field.parse::<f64>().ok());
                Some([fields.next()??, fields.next()??, fields.next()??])
            });
        MachineInfo {
            load_average,
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            cpus: crate::measure::worker_threads(),
            cpu_model,
            total_memory_mb,
        }
    }
}

/// Versions of what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// pool-bench (the workspace version: pool-core, s3-client and pool-metrics share it).
    pub s3pool: String,
    /// object_store, as pinned in Cargo.toml.
    pub object_store: String,
    /// tokio, as required in the workspace.
    pub tokio: String,
    /// `rustc --version`, if rustc is on the PATH.
    pub rustc: Option<String>,
    /// The cargo profile of the benchmark binary.
    pub profile: String,
}

impl Versions {
    /// The versions of this build.
    pub fn detect() -> Self {
        let rustc =
            std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
                .arg("--version")
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
        Versions {
            s3pool: env!("CARGO_PKG_VERSION").to_owned(),
            object_store: "0.14.2".to_owned(),
            tokio: "1.54".to_owned(),
            rustc,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_owned(),
        }
    }
}
