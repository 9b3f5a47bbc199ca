//! Scenario files: what to simulate and what outcome to expect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::report::{Metric, SimReport, Violation};
use super::tuner_spec::TunerSpec;
use crate::ConfigError;

/// Why a scenario could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a scenario (unknown keys are refused, to catch typos).
    #[error("invalid scenario {origin}: {source}")]
    Parse {
        /// The file, or `<string>`.
        origin: String,
        /// The cause, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("scenario {scenario}: {field} {problem}")]
    Invalid {
        /// The scenario's name.
        scenario: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A tuner name is neither `rule`, `knee` nor `fixed:N`.
    #[error("unknown tuner {0:?}: expected rule, knee or fixed:N (N ≥ 1)")]
    UnknownTuner(String),
    /// The tuner settings the scenario implies are invalid.
    #[error("tuner configuration: {0}")]
    Config(#[from] ConfigError),
}

/// The simulated client: a closed loop with an endless backlog.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientParams {
    /// Where every tuner starts. Default 10 (the original's default concurrency).
    pub initial_concurrency: usize,
    /// Tuners' lower bound. Default 1.
    pub min_concurrency: usize,
    /// Tuners' upper bound. Default 1,000.
    pub max_concurrency: usize,
    /// Per-attempt timeout in ms. Default 2,000.
    pub timeout_ms: f64,
}

impl Default for ClientParams {
    fn default() -> Self {
        Self {
            initial_concurrency: 10,
            min_concurrency: 1,
            max_concurrency: 1_000,
            timeout_ms: 2_000.0,
        }
    }
}

/// The simulated backend at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerParams {
    /// Latency with no queueing, in ms. Default 20.
    pub base_latency_ms: f64,
    /// Requests in flight it serves without slowing down. Default 64.
    pub knee: f64,
    /// How steeply latency grows past the knee. Default 1 (with exponent 1: throughput flat
    /// past the knee, pure queueing).
    pub overload_slope: f64,
    /// Shape of the growth past the knee. Default 1; above 1 throughput collapses.
    pub overload_exponent: f64,
    /// Uniform latency noise, ± this share. Default 0.05.
    pub jitter: f64,
    /// Hard cap in requests per second; above it, "503 SlowDown". Default none.
    pub rate_cap_per_s: Option<f64>,
    /// Burst the cap's token bucket allows, in seconds of the rate. Default 0.01.
    pub burst_s: f64,
    /// How fast a throttled answer comes back, in ms. Default 5.
    pub throttle_latency_ms: f64,
    /// Share of requests answered "503 SlowDown" whatever the load (a busy neighbour, a hot
    /// partition being split). Default 0.
    pub random_throttle_fraction: f64,
    /// Memory share in use with nothing in flight. Default 0.3.
    pub memory_base: f64,
    /// Memory share each request in flight adds. Default 0.
    pub memory_per_request: f64,
}

impl Default for ServerParams {
    fn default() -> Self {
        Self {
            base_latency_ms: 20.0,
            knee: 64.0,
            overload_slope: 1.0,
            overload_exponent: 1.0,
            jitter: 0.05,
            rate_cap_per_s: None,
            burst_s: 0.01,
            throttle_latency_ms: 5.0,
            random_throttle_fraction: 0.0,
            memory_base: 0.3,
            memory_per_request: 0.0,
        }
    }
}

impl ServerParams {
    /// Mean latency in seconds with `in_flight` requests (jitter averages out).
    pub fn mean_latency_s(&self, in_flight: usize) -> f64 {
        let excess = (in_flight as f64 - self.knee).max(0.0) / self.knee;
        self.base_latency_ms / 1_000.0
            * (1.0 + self.overload_slope * excess.powf(self.overload_exponent))
    }

    /// The best throughput any fixed limit up to `max_in_flight` could get, in ops/s:
    /// `max over n of n / mean_latency(n)`, capped by the rate cap.
    pub fn capacity_ops_per_s(&self, max_in_flight: usize) -> f64 {
        let best = (1..=max_in_flight.max(1))
            .map(|n| n as f64 / self.mean_latency_s(n))
            .fold(0.0, f64::max);
        // Randomly throttled requests take a slot only briefly but never succeed.
        self.rate_cap_per_s.map_or(best, |cap| best.min(cap))
            * (1.0 - self.random_throttle_fraction)
    }

    pub(crate) fn apply(&mut self, change: &ServerChange) {
        let set = |field: &mut f64, value: Option<f64>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        set(&mut self.base_latency_ms, change.base_latency_ms);
        set(&mut self.knee, change.knee);
        set(&mut self.jitter, change.jitter);
        set(&mut self.memory_base, change.memory_base);
        set(&mut self.memory_per_request, change.memory_per_request);
        set(
            &mut self.random_throttle_fraction,
            change.random_throttle_fraction,
        );
        if let Some(cap) = change.rate_cap_per_s {
            // 0 in a change file means "remove the cap".
            self.rate_cap_per_s = (cap > 0.0).then_some(cap);
        }
    }

    fn validate(&self, scenario: &str) -> Result<(), ScenarioError> {
        let invalid = |field, problem: &str| ScenarioError::Invalid {
            scenario: scenario.to_owned(),
            field,
            problem: problem.to_owned(),
        };
        let positive = |field, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    &format!("must be a positive number (got {value})"),
                ))
            }
        };
        positive("base_latency_ms", self.base_latency_ms)?;
        positive("knee", self.knee)?;
        positive("overload_exponent", self.overload_exponent)?;
        positive("burst_s", self.burst_s)?;
        positive("throttle_latency_ms", self.throttle_latency_ms)?;
        if !(self.overload_slope.is_finite() && self.overload_slope >= 0.0) {
            return Err(invalid("overload_slope", "must be a number ≥ 0"));
        }
        if !(self.jitter.is_finite() && (0.0..1.0).contains(&self.jitter)) {
            return Err(invalid("jitter", "must be in [0, 1)"));
        }
        if let Some(cap) = self.rate_cap_per_s {
            positive("rate_cap_per_s", cap)?;
        }
        if !(self.random_throttle_fraction.is_finite()
            && (0.0..1.0).contains(&self.random_throttle_fraction))
        {
            return Err(invalid("random_throttle_fraction", "must be in [0, 1)"));
        }
        for (field, value) in [
            ("memory_base", self.memory_base),
            ("memory_per_request", self.memory_per_request),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(field, "must be a number ≥ 0"));
            }
        }
        Ok(())
    }
}

/// A change to the server at `at_s` seconds; fields left out keep their value.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerChange {
    /// When, in seconds from the start.
    pub at_s: f64,
    /// New base latency (ms).
    pub base_latency_ms: Option<f64>,
    /// New knee (requests in flight).
    pub knee: Option<f64>,
    /// New jitter share.
    pub jitter: Option<f64>,
    /// New rate cap (req/s); 0 removes the cap.
    pub rate_cap_per_s: Option<f64>,
    /// New memory share at rest.
    pub memory_base: Option<f64>,
    /// New memory share per request in flight.
    pub memory_per_request: Option<f64>,
    /// New share of requests throttled whatever the load.
    pub random_throttle_fraction: Option<f64>,
}

/// Tuner settings a scenario may override (the rest come from [`ClientParams`] and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleOverrides {
    pub(crate) target_latency_ms: Option<f64>,
    pub(crate) target_memory_fraction: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    duration_s: f64,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_throughput")]
    throughput: bool,
    #[serde(default)]
    client: ClientParams,
    #[serde(default)]
    server: ServerParams,
    #[serde(default)]
    changes: Vec<ServerChange>,
    #[serde(default)]
    rule: RuleOverrides,
    #[serde(default)]
    expect: BTreeMap<String, BTreeMap<Metric, [f64; 2]>>,
}

fn default_seed() -> u64 {
    1
}

fn default_throughput() -> bool {
    true
}

/// One simulation setup and its expected outcomes. Load with [`Scenario::load`].
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What it models and why.
    pub description: String,
    /// Simulated length in seconds.
    pub duration_s: f64,
    /// RNG seed: the same seed gives the same run.
    pub seed: u64,
    /// Whether throughput is the point (the knee tuner's goals apply), as opposed to e.g.
    /// memory pressure.
    pub throughput: bool,
    /// The client.
    pub client: ClientParams,
    /// The server at the start.
    pub server: ServerParams,
    /// Server changes, sorted by time.
    pub changes: Vec<ServerChange>,
    pub(crate) rule: RuleOverrides,
    /// Expected `[min, max]` per tuner and metric.
    pub expectations: Vec<(TunerSpec, Metric, [f64; 2])>,
}

impl Scenario {
    /// Parses a scenario from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ScenarioError> {
        Self::parse(text, "<string>")
    }

    /// Reads a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|source| ScenarioError::Parse {
            origin: origin.to_owned(),
            source: Box::new(source),
        })?;
        let mut expectations = Vec::new();
        for (tuner, metrics) in &file.expect {
            let spec: TunerSpec = tuner.parse()?;
            for (metric, range) in metrics {
                expectations.push((spec, *metric, *range));
            }
        }
        let mut changes = file.changes;
        changes.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let scenario = Self {
            name: file.name,
            description: file.description,
            duration_s: file.duration_s,
            seed: file.seed,
            throughput: file.throughput,
            client: file.client,
            server: file.server,
            changes,
            rule: file.rule,
            expectations,
        };
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |field, problem: String| ScenarioError::Invalid {
            scenario: self.name.clone(),
            field,
            problem,
        };
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 3_600.0) {
            return Err(invalid(
                "duration_s",
                format!("must be in (0, 3600] (got {})", self.duration_s),
            ));
        }
        if !(self.client.timeout_ms.is_finite() && self.client.timeout_ms > 0.0) {
            return Err(invalid("timeout_ms", "must be positive".to_owned()));
        }
        crate::Bounds::new(self.client.min_concurrency, self.client.max_concurrency)?;
        let mut server = self.server;
        server.validate(&self.name)?;
        for change in &self.changes {
            if !(change.at_s.is_finite() && change.at_s >= 0.0) {
                return Err(invalid(
                    "changes.at_s",
                    format!("must be ≥ 0 (got {})", change.at_s),
                ));
            }
            server.apply(change);
            server.validate(&self.name)?;
        }
        for (tuner, metric, [low, high]) in &self.expectations {
            let ordered = low.is_finite() && high.is_finite() && low <= high;
            if !ordered {
                return Err(invalid(
                    "expect",
                    format!("{tuner}.{metric}: range [{low}, {high}] is empty or not finite"),
                ));
            }
        }
        Ok(())
    }

    /// The server as it is at `at_s` seconds.
    pub fn server_at(&self, at_s: f64) -> ServerParams {
        let mut server = self.server;
        for change in self.changes.iter().take_while(|c| c.at_s <= at_s) {
            server.apply(change);
        }
        server
    }

    /// The tuners this scenario has expectations for, in a stable order.
    pub fn expected_tuners(&self) -> Vec<TunerSpec> {
        let mut tuners: Vec<TunerSpec> = self.expectations.iter().map(|e| e.0).collect();
        tuners.sort();
        tuners.dedup();
        tuners
    }

    /// Checks `report` against this scenario's expectations for its tuner.
    pub fn check(&self, tuner: &TunerSpec, report: &SimReport) -> Vec<Violation> {
        self.expectations
            .iter()
            .filter(|(spec, _, _)| spec == tuner)
            .filter_map(|&(_, metric, range)| {
                let value = metric.value(report);
                let within = value.is_some_and(|v| v >= range[0] && v <= range[1]);
                (!within).then_some(Violation {
                    tuner: *tuner,
                    metric,
                    range,
                    value,
                })
            })
            .collect()
    }
}

/// The scenarios shipped with this crate (`pool-tuning/scenarios`).
pub fn scenario_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
}

/// Every `*.toml` scenario in `dir`, sorted by file name.
pub fn load_scenarios(dir: impl AsRef<Path>) -> Result<Vec<Scenario>, ScenarioError> {
    let dir = dir.as_ref();
    let io_error = |source| ScenarioError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(Scenario::load).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_past_the_knee_caps_capacity_at_knee_over_base() {
        let server = ServerParams {
            knee: 64.0,
            base_latency_ms: 20.0,
            ..ServerParams::default()
        };
        assert!((server.capacity_ops_per_s(1_000) - 3_200.0).abs() < 1e-6);
        // With fewer slots than the knee, the slots are the limit.
        assert!((server.capacity_ops_per_s(32) - 1_600.0).abs() < 1e-6);
    }

    #[test]
    fn rate_cap_bounds_capacity() {
        let server = ServerParams {
            knee: 1_000.0,
            rate_cap_per_s: Some(3_500.0),
            ..ServerParams::default()
        };
        assert_eq!(server.capacity_ops_per_s(1_000), 3_500.0);
    }

    #[test]
    fn changes_apply_in_time_order() {
        let scenario = Scenario::from_toml_str(
            r#"
            name = "t"
            duration_s = 10.0
            [[changes]]
            at_s = 6.0
            base_latency_ms = 20.0
            [[changes]]
            at_s = 3.0
            base_latency_ms = 40.0
            "#,
        )
        .unwrap();
        assert_eq!(scenario.server_at(1.0).base_latency_ms, 20.0);
        assert_eq!(scenario.server_at(4.0).base_latency_ms, 40.0);
        assert_eq!(scenario.server_at(7.0).base_latency_ms, 20.0);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        let typo = Scenario::from_toml_str("name = \"t\"\nduration_s = 1.0\n[server]\nkne = 3\n");
        assert!(matches!(typo, Err(ScenarioError::Parse { .. })));
        let bad_metric = Scenario::from_toml_str(
            "name = \"t\"\nduration_s = 1.0\n[expect.knee]\nthroughput = [0.0, 1.0]\n",
        );
        assert!(matches!(bad_metric, Err(ScenarioError::Parse { .. })));
        let bad_tuner = Scenario::from_toml_str(
            "name = \"t\"\nduration_s = 1.0\n[expect.magic]\nutilization = [0.0, 1.0]\n",
        );
        assert!(matches!(bad_tuner, Err(ScenarioError::UnknownTuner(_))));
        let negative = Scenario::from_toml_str("name = \"t\"\nduration_s = -1.0\n");
        assert!(matches!(
            negative,
            Err(ScenarioError::Invalid {
                field: "duration_s",
                ..
            })
        ));
        let crossed = Scenario::from_toml_str(
            "name = \"t\"\nduration_s = 1.0\n[client]\nmin_concurrency = 9\nmax_concurrency = 3\n",
        );
        assert!(matches!(
            crossed,
            Err(ScenarioError::Config(ConfigError::MinAboveMax { .. }))
        ));
        let empty_range = Scenario::from_toml_str(
            "name = \"t\"\nduration_s = 1.0\n[expect.knee]\nutilization = [1.0, 0.5]\n",
        );
        assert!(matches!(
            empty_range,
            Err(ScenarioError::Invalid {
                field: "expect",
                ..
            })
        ));
    }
}
