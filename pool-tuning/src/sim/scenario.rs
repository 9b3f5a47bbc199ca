//! Scenario files: the server, the client, changes during the run, and the outcomes expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::params::{Capacity, ServerParams};
use super::report::{Metric, SimReport, Violation};
use super::tuner_spec::TunerSpec;
use crate::ConfigError;

/// Why a scenario could not be loaded or run.
///
/// Not `Clone`: it owns the `std::io::Error` or TOML error that stopped the load.
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
    /// A tuner name the simulator does not know.
    #[error("unknown tuner {0:?}: expected {names}", names = TunerSpec::NAMES)]
    UnknownTuner(String),
    /// The tuner settings the scenario implies are invalid.
    #[error("tuner configuration: {0}")]
    Config(#[from] ConfigError),
    /// The pool could not be built (a setting of `[client]` the pool refuses).
    #[error("pool configuration: {0}")]
    Pool(#[from] pool_core::ConfigError),
}

/// The simulated client: a pool with an endless backlog, retrying through the pool's own
/// retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientParams {
    /// Where every tuner starts. Default 10 (s3db.js's default concurrency).
    pub initial_concurrency: usize,
    /// Tuners' lower bound. Default 1.
    pub min_concurrency: usize,
    /// Tuners' upper bound. Default 1,000.
    pub max_concurrency: usize,
    /// Per-attempt timeout in ms; 0 for none. Default 2,000.
    pub timeout_ms: f64,
    /// Retries per task (the pool's setting). Default 3.
    pub retries: u32,
    /// The pool's first retry delay, in ms (full jitter, doubling). Default 50.
    pub retry_delay_ms: f64,
    /// Whether a 429's `Retry-After` holds the task back (parked, without a slot) until then.
    /// Default true.
    pub honour_retry_after: bool,
}

impl Default for ClientParams {
    fn default() -> Self {
        Self {
            initial_concurrency: 10,
            min_concurrency: 1,
            max_concurrency: 1_000,
            timeout_ms: 2_000.0,
            retries: 3,
            retry_delay_ms: 50.0,
            honour_retry_after: true,
        }
    }
}

impl ClientParams {
    /// The timeout in seconds (infinite for none).
    pub fn timeout_s(&self) -> f64 {
        if self.timeout_ms > 0.0 {
            self.timeout_ms / 1_000.0
        } else {
            f64::INFINITY
        }
    }
}

/// A change of server parameters at `at_s`, at once or (with `ramp_s`) in proportion over
/// that many seconds. Any field of [`ServerParams`] may change.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerChange {
    /// When it starts, in seconds from the start.
    pub at_s: f64,
    /// Over how many seconds numbers move to their new values (0: at once).
    pub ramp_s: f64,
    /// The fields and their new values.
    pub set: toml::Table,
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
    #[serde(default)]
    class: String,
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
    changes: Vec<toml::Table>,
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

/// Ramps move in steps this long.
pub(crate) const RAMP_STEP_S: f64 = 0.25;

/// The server's parameters from `at_s` on (until the next step), and the capacity they allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// When it starts, in seconds.
    pub at_s: f64,
    /// The parameters.
    pub params: ServerParams,
    /// What the best fixed limit achieves with them.
    pub capacity: Capacity,
}

/// One simulation setup and its expected outcomes. Load with [`Scenario::load`].
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What it models and why.
    pub description: String,
    /// Which family of backend behaviour it belongs to (for reports).
    pub class: String,
    /// Simulated length in seconds.
    pub duration_s: f64,
    /// RNG seed: the same seed gives the same run.
    pub seed: u64,
    /// Whether throughput is the point (the tuners' throughput goals apply), as opposed to
    /// e.g. memory pressure.
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
    /// The server over time, ramps in steps, with the capacity of each step.
    pub timeline: Vec<Step>,
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
        let invalid = |field, problem: String| ScenarioError::Invalid {
            scenario: file.name.clone(),
            field,
            problem,
        };
        let mut expectations = Vec::new();
        for (tuner, metrics) in &file.expect {
            let spec: TunerSpec = tuner.parse()?;
            for (metric, range) in metrics {
                expectations.push((spec, *metric, *range));
            }
        }
        let mut changes = Vec::new();
        for mut set in file.changes {
            let mut seconds = |key: &'static str| -> Result<f64, ScenarioError> {
                match set.remove(key) {
                    None => Ok(0.0),
                    Some(toml::Value::Float(f)) => Ok(f),
                    Some(toml::Value::Integer(i)) => Ok(i as f64),
                    Some(other) => Err(invalid(key, format!("must be a number (got {other})"))),
                }
            };
            let at_s = seconds("at_s")?;
            let ramp_s = seconds("ramp_s")?;
            changes.push(ServerChange { at_s, ramp_s, set });
        }
        changes.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let mut scenario = Self {
            name: file.name,
            description: file.description,
            class: file.class,
            duration_s: file.duration_s,
            seed: file.seed,
            throughput: file.throughput,
            client: file.client,
            server: file.server,
            changes,
            rule: file.rule,
            expectations,
            timeline: Vec::new(),
        };
        scenario.validate()?;
        scenario.timeline = scenario.build_timeline()?;
        Ok(scenario)
    }

    fn invalid(&self, field: &'static str, problem: String) -> ScenarioError {
        ScenarioError::Invalid {
            scenario: self.name.clone(),
            field,
            problem,
        }
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 3_600.0) {
            return Err(self.invalid(
                "duration_s",
                format!("must be in (0, 3600] (got {})", self.duration_s),
            ));
        }
        let client = &self.client;
        if !(client.timeout_ms.is_finite() && client.timeout_ms >= 0.0) {
            return Err(self.invalid("timeout_ms", "must be ≥ 0 (0: none)".to_owned()));
        }
        if !(client.retry_delay_ms.is_finite() && client.retry_delay_ms > 0.0) {
            return Err(self.invalid("retry_delay_ms", "must be positive".to_owned()));
        }
        if client.initial_concurrency == 0 {
            return Err(self.invalid("initial_concurrency", "must be at least 1".to_owned()));
        }
        crate::Bounds::new(client.min_concurrency, client.max_concurrency)?;
        if let Some(problem) = self.server.problem() {
            return Err(self.invalid("server", problem));
        }
        for change in &self.changes {
            let at = change.at_s;
            if !(at.is_finite() && at >= 0.0 && change.ramp_s.is_finite() && change.ramp_s >= 0.0) {
                return Err(self.invalid(
                    "changes",
                    format!("at_s and ramp_s must be ≥ 0 (got {at}, {})", change.ramp_s),
                ));
            }
        }
        for (tuner, metric, [low, high]) in &self.expectations {
            if !(low.is_finite() && high.is_finite() && low <= high) {
                return Err(self.invalid(
                    "expect",
                    format!("{tuner}.{metric}: range [{low}, {high}] is empty or not finite"),
                ));
            }
        }
        Ok(())
    }

    /// Every change as steps: one at its start, or for a ramp one at the end of each
    /// `RAMP_STEP_S` until it is complete. Later changes start from wherever the earlier ones left the server.
    fn build_timeline(&self) -> Result<Vec<Step>, ScenarioError> {
        let mut raw: Vec<(f64, ServerParams)> = vec![(0.0, self.server)];
        let mut current = self.server;
        for change in &self.changes {
            let start = current;
            let steps = (change.ramp_s / RAMP_STEP_S).ceil().max(1.0) as usize;
            for step in 1..=steps {
                let fraction = step as f64 / steps as f64;
                let at_s = change.at_s + change.ramp_s * fraction;
                let params = start
                    .patched(&change.set, fraction)
                    .map_err(|problem| self.invalid("changes", problem))?;
                if let Some(problem) = params.problem() {
                    return Err(self.invalid("changes", problem));
                }
                raw.push((at_s, params));
                current = params;
            }
        }
        raw.sort_by(|a, b| a.0.total_cmp(&b.0));
        let timeout_s = self.client.timeout_s();
        let max = self.client.max_concurrency;
        let mut timeline: Vec<Step> = Vec::with_capacity(raw.len());
        for (at_s, params) in raw {
            if timeline.last().is_some_and(|last| last.at_s == at_s) {
                timeline.pop();
            }
            let capacity = match timeline.last() {
                Some(last) if last.params == params => last.capacity,
                _ => params.capacity(max, timeout_s),
            };
            timeline.push(Step {
                at_s,
                params,
                capacity,
            });
        }
        Ok(timeline)
    }

    /// The step in force at `at_s`.
    pub fn step_at(&self, at_s: f64) -> &Step {
        let index = self.timeline.partition_point(|s| s.at_s <= at_s);
        &self.timeline[index.saturating_sub(1)]
    }

    /// The server as it is at `at_s` seconds.
    pub fn server_at(&self, at_s: f64) -> ServerParams {
        self.step_at(at_s).params
    }

    /// Where phases begin and end: the start, each change's start and (for a ramp) its end,
    /// and the end of the run.
    pub fn phase_boundaries(&self) -> Vec<f64> {
        let mut bounds = vec![0.0, self.duration_s];
        for change in &self.changes {
            bounds.push(change.at_s);
            bounds.push(change.at_s + change.ramp_s);
        }
        bounds.retain(|b| *b <= self.duration_s);
        bounds.sort_by(f64::total_cmp);
        bounds.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        bounds
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
    fn changes_apply_in_time_order_and_ramps_move_in_steps() {
        let scenario = Scenario::from_toml_str(
            r#"
            name = "t"
            duration_s = 20.0
            [[changes]]
            at_s = 6.0
            base_latency_ms = 20.0
            [[changes]]
            at_s = 3.0
            base_latency_ms = 40.0
            [[changes]]
            at_s = 10.0
            ramp_s = 4.0
            knee = 32
            "#,
        )
        .unwrap();
        assert_eq!(scenario.server_at(1.0).base_latency_ms, 20.0);
        assert_eq!(scenario.server_at(4.0).base_latency_ms, 40.0);
        assert_eq!(scenario.server_at(7.0).base_latency_ms, 20.0);
        // Knee 64 → 32 over 4 s, in 16 steps of 2.
        assert_eq!(scenario.server_at(10.1).knee, 64.0);
        assert_eq!(scenario.server_at(10.25).knee, 62.0);
        assert_eq!(scenario.server_at(12.0).knee, 48.0);
        assert_eq!(scenario.server_at(13.9).knee, 34.0);
        assert_eq!(scenario.server_at(14.0).knee, 32.0);
        assert_eq!(
            scenario.phase_boundaries(),
            vec![0.0, 3.0, 6.0, 10.0, 14.0, 20.0]
        );
        // Capacity follows the knee: 32 / 20 ms.
        assert!((scenario.step_at(15.0).capacity.ops_per_s - 1_600.0).abs() < 20.0);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        let typo = Scenario::from_toml_str("name = \"t\"\nduration_s = 1.0\n[server]\nkne = 3\n");
        assert!(matches!(typo, Err(ScenarioError::Parse { .. })));
        let change_typo = Scenario::from_toml_str(
            "name = \"t\"\nduration_s = 1.0\n[[changes]]\nat_s = 0.5\nkne = 3\n",
        );
        assert!(matches!(
            change_typo,
            Err(ScenarioError::Invalid {
                field: "changes",
                ..
            })
        ));
        let bad_latency = Scenario::from_toml_str(
            "name = \"t\"\nduration_s = 1.0\n[server]\nlatency = { kind = \"pareto\", alpha = 0.5 }\n",
        );
        assert!(matches!(
            bad_latency,
            Err(ScenarioError::Invalid {
                field: "server",
                ..
            })
        ));
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
