//! Naming a tuner on the command line and in scenario files: `rule`, `knee`, `fixed:N`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::scenario::{Scenario, ScenarioError};
use crate::{FixedTuner, KneeConfig, KneeTuner, RuleConfig, RuleTuner, Tuner};

/// Which tuner to simulate.
///
/// ```
/// use pool_tuning::sim::TunerSpec;
/// assert_eq!("fixed:10".parse::<TunerSpec>()?, TunerSpec::Fixed(10));
/// assert_eq!(TunerSpec::Knee.to_string(), "knee");
/// assert!("fixed:0".parse::<TunerSpec>().is_err());
/// # Ok::<(), pool_tuning::sim::ScenarioError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunerSpec {
    /// [`KneeTuner`] with default settings and the scenario's bounds.
    Knee,
    /// [`RuleTuner`] with the original's defaults, the scenario's bounds and overrides.
    Rule,
    /// [`FixedTuner`] at this limit.
    Fixed(usize),
}

impl TunerSpec {
    /// The tuners `--all` compares: knee, rule, and fixed 10 (the original's default).
    pub const COMPARED: [TunerSpec; 3] = [TunerSpec::Knee, TunerSpec::Rule, TunerSpec::Fixed(10)];

    /// Builds the tuner for `scenario`, starting at its `initial_concurrency`.
    pub fn build(&self, scenario: &Scenario) -> Result<Box<dyn Tuner>, ScenarioError> {
        let client = &scenario.client;
        Ok(match *self {
            TunerSpec::Knee => {
                let config = KneeConfig::builder()
                    .min(client.min_concurrency)
                    .max(client.max_concurrency)
                    .build()?;
                Box::new(KneeTuner::new(config, client.initial_concurrency))
            }
            TunerSpec::Rule => {
                let mut builder = RuleConfig::builder()
                    .min(client.min_concurrency)
                    .max(client.max_concurrency);
                if let Some(ms) = scenario.rule.target_latency_ms {
                    let target = Duration::try_from_secs_f64(ms / 1_000.0).map_err(|_| {
                        ScenarioError::Invalid {
                            scenario: scenario.name.clone(),
                            field: "rule.target_latency_ms",
                            problem: format!("must be a positive number of ms (got {ms})"),
                        }
                    })?;
                    builder = builder.target_latency(target);
                }
                if let Some(fraction) = scenario.rule.target_memory_fraction {
                    builder = builder.target_memory_fraction(fraction);
                }
                Box::new(RuleTuner::new(builder.build()?, client.initial_concurrency))
            }
            TunerSpec::Fixed(limit) => Box::new(FixedTuner::new(limit)?),
        })
    }
}

impl FromStr for TunerSpec {
    type Err = ScenarioError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "knee" => Ok(TunerSpec::Knee),
            "rule" => Ok(TunerSpec::Rule),
            _ => text
                .strip_prefix("fixed:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .map(TunerSpec::Fixed)
                .ok_or_else(|| ScenarioError::UnknownTuner(text.to_owned())),
        }
    }
}

impl fmt::Display for TunerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunerSpec::Knee => f.write_str("knee"),
            TunerSpec::Rule => f.write_str("rule"),
            TunerSpec::Fixed(limit) => write!(f, "fixed:{limit}"),
        }
    }
}
