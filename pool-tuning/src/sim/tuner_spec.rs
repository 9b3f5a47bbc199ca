//! Naming a tuner on the command line and in scenario files.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::scenario::{Scenario, ScenarioError};
use crate::peers::{Aimd, Gradient2, VectorArc};
use crate::{
    Adjustment, Bounds, FixedTuner, KneeConfig, KneeTuner, Reason, RuleConfig, RuleTuner, Sample,
    Tuner,
};

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
    /// [`VectorArc`]: Vector's adaptive request concurrency.
    Vector,
    /// [`Gradient2`]: Netflix concurrency-limits' Gradient2 in a windowed limit.
    Gradient2,
    /// [`Aimd`]: Netflix concurrency-limits' AIMD.
    Aimd,
    /// [`RuleTuner`] with s3db.js's defaults, the scenario's bounds and overrides.
    Rule,
    /// [`FixedTuner`] at this limit.
    Fixed(usize),
    /// The best fixed limit of each moment, known in advance from the scenario (an oracle:
    /// the reference for capacity and p99, not a tuner anyone could run).
    BestFixed,
}

impl TunerSpec {
    /// The names [`FromStr`] accepts.
    pub const NAMES: &'static str =
        "knee, vector, gradient2, aimd, rule, fixed:N (N ≥ 1) or best-fixed";

    /// The tuners `--all` compares: this crate's, the published peers, s3db.js's rule
    /// engine, s3db.js's default of 10, and the oracle last.
    pub const COMPARED: [TunerSpec; 7] = [
        TunerSpec::Knee,
        TunerSpec::Vector,
        TunerSpec::Gradient2,
        TunerSpec::Aimd,
        TunerSpec::Rule,
        TunerSpec::Fixed(10),
        TunerSpec::BestFixed,
    ];

    /// The published controllers a tuner of this crate is measured against.
    pub const PEERS: [TunerSpec; 3] = [TunerSpec::Vector, TunerSpec::Gradient2, TunerSpec::Aimd];

    /// Builds the tuner for `scenario`, starting at its `initial_concurrency`; `origin` is
    /// the simulation's start on its clock.
    pub fn build(
        &self,
        scenario: &Scenario,
        origin: Instant,
    ) -> Result<Box<dyn Tuner>, ScenarioError> {
        let client = &scenario.client;
        let initial = client.initial_concurrency;
        let bounds = Bounds::new(client.min_concurrency, client.max_concurrency)?;
        Ok(match *self {
            TunerSpec::Vector => Box::new(VectorArc::new(bounds, initial)),
            TunerSpec::Gradient2 => Box::new(Gradient2::new(bounds, initial)),
            TunerSpec::Aimd => Box::new(Aimd::new(bounds, initial)),
            TunerSpec::Knee => {
                let config = KneeConfig::builder()
                    .min(client.min_concurrency)
                    .max(client.max_concurrency)
                    .build()?;
                Box::new(KneeTuner::new(config, initial))
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
                Box::new(RuleTuner::new(builder.build()?, initial))
            }
            TunerSpec::Fixed(limit) => Box::new(FixedTuner::new(limit)?),
            TunerSpec::BestFixed => Box::new(BestFixed::new(scenario, origin)),
        })
    }
}

impl FromStr for TunerSpec {
    type Err = ScenarioError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "knee" => Ok(TunerSpec::Knee),
            "vector" => Ok(TunerSpec::Vector),
            "gradient2" => Ok(TunerSpec::Gradient2),
            "aimd" => Ok(TunerSpec::Aimd),
            "rule" => Ok(TunerSpec::Rule),
            "best-fixed" => Ok(TunerSpec::BestFixed),
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
            TunerSpec::Vector => f.write_str("vector"),
            TunerSpec::Gradient2 => f.write_str("gradient2"),
            TunerSpec::Aimd => f.write_str("aimd"),
            TunerSpec::Rule => f.write_str("rule"),
            TunerSpec::Fixed(limit) => write!(f, "fixed:{limit}"),
            TunerSpec::BestFixed => f.write_str("best-fixed"),
        }
    }
}

/// The oracle: at every moment the best fixed limit for the server as it is then.
#[derive(Debug, Clone)]
struct BestFixed {
    /// (when, limit), in order.
    schedule: Vec<(Instant, usize)>,
    next: usize,
    limit: usize,
}

impl BestFixed {
    fn new(scenario: &Scenario, origin: Instant) -> Self {
        let schedule: Vec<(Instant, usize)> = scenario
            .timeline
            .iter()
            .map(|step| {
                let at = origin + Duration::from_secs_f64(step.at_s);
                (
                    at,
                    step.capacity
                        .best_limit
                        .max(scenario.client.min_concurrency),
                )
            })
            .collect();
        let limit = schedule.first().map_or(1, |s| s.1);
        Self {
            schedule,
            next: 1,
            limit,
        }
    }

    fn follow(&mut self, now: Instant) -> Option<Adjustment> {
        let from = self.limit;
        while let Some(&(at, limit)) = self.schedule.get(self.next) {
            if at > now {
                break;
            }
            self.limit = limit;
            self.next += 1;
        }
        (from != self.limit).then_some(Adjustment {
            from,
            to: self.limit,
            reason: Reason::Probing,
        })
    }
}

impl Tuner for BestFixed {
    fn limit(&self) -> usize {
        self.limit
    }

    fn observe(&mut self, _sample: &Sample, now: Instant) -> Option<Adjustment> {
        self.follow(now)
    }

    fn tick(&mut self, now: Instant) -> Option<Adjustment> {
        self.follow(now)
    }

    fn name(&self) -> &'static str {
        "best-fixed"
    }
}
