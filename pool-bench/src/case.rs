//! [`Case`]: one cell of the 108-case matrix, and the filters that pick cases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// How the operations of a case are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Every operation created up front and awaited together (`futures::future::join_all`),
    /// through a client without a pool: the analogue of s3db.js's `Promise.all`.
    JoinAll,
    /// One s3pool pool with limit C runs every operation.
    SharedPool,
    /// The work split across [`SEPARATE_POOLS`](crate::SEPARATE_POOLS) clients, each with a
    /// pool of its own; their limits add up to C and each gets work in proportion to its
    /// limit ([`deal_by_limit`](crate::deal_by_limit)).
    SeparatePools,
}

impl Engine {
    /// Every engine, in s3db.js's order.
    pub const ALL: [Engine; 3] = [Engine::JoinAll, Engine::SharedPool, Engine::SeparatePools];

    /// The engine's name in results, filters and charts.
    pub fn name(self) -> &'static str {
        match self {
            Engine::JoinAll => "join-all",
            Engine::SharedPool => "shared-pool",
            Engine::SeparatePools => "separate-pools",
        }
    }

    /// True for the engines that run the work through s3pool.
    pub fn is_pooled(self) -> bool {
        !matches!(self, Engine::JoinAll)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = BenchError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().replace('_', "-").as_str() {
            "join-all" => Ok(Engine::JoinAll),
            "shared-pool" | "shared" => Ok(Engine::SharedPool),
            "separate-pools" | "separate" => Ok(Engine::SeparatePools),
            _ => Err(BenchError::UnknownEngine(name.to_owned())),
        }
    }
}

/// Operation counts of the full matrix.
pub const OPERATIONS: [usize; 3] = [1_000, 5_000, 10_000];
/// Payload sizes of the full matrix, in positions (8 bytes each).
pub const PAYLOAD_POSITIONS: [usize; 3] = [1_000, 2_000, 5_000];
/// Concurrency levels of the full matrix.
pub const CONCURRENCY: [usize; 4] = [10, 50, 100, 200];

/// One benchmark case: an engine and a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Case {
    /// How the operations run.
    pub engine: Engine,
    /// Operations (each: build + serialise a payload, PUT it, DELETE it).
    pub operations: usize,
    /// Positions per payload (8 bytes each).
    pub payload_positions: usize,
    /// Operations in flight at once (total over all pools); join-all ignores it.
    pub concurrency: usize,
}

impl Case {
    /// A stable, filterable name: `shared-pool/10000ops/1000pos/c200`.
    pub fn name(&self) -> String {
        format!(
            "{}/{}ops/{}pos/c{}",
            self.engine, self.operations, self.payload_positions, self.concurrency
        )
    }

    /// Checks that the case can run (no zero sizes).
    pub fn validate(&self) -> Result<(), BenchError> {
        for (field, value) in [
            ("operations", self.operations),
            ("payload_positions", self.payload_positions),
            ("concurrency", self.concurrency),
        ] {
            if value == 0 {
                return Err(BenchError::ZeroSize { field });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The full 3 × 3 × 3 × 4 = 108-case matrix, grouped as s3db.js's tables: by
/// operations, then payload, then concurrency, then engine.
pub fn full_matrix() -> Vec<Case> {
    matrix(&Engine::ALL, &OPERATIONS, &PAYLOAD_POSITIONS, &CONCURRENCY)
}

/// A small subset that runs in seconds: 1,000 operations × 1,000 positions at C = 10 and
/// 200, every engine (6 cases).
pub fn quick_matrix() -> Vec<Case> {
    matrix(&Engine::ALL, &[1_000], &[1_000], &[10, 200])
}

/// Every combination of the given dimensions, in the order of [`full_matrix`].
pub fn matrix(
    engines: &[Engine],
    operations: &[usize],
    payload_positions: &[usize],
    concurrency: &[usize],
) -> Vec<Case> {
    let mut cases = Vec::new();
    for &operations in operations {
        for &payload_positions in payload_positions {
            for &concurrency in concurrency {
                for &engine in engines {
                    cases.push(Case {
                        engine,
                        operations,
                        payload_positions,
                        concurrency,
                    });
                }
            }
        }
    }
    cases
}

/// Keeps the cases whose name contains any of `patterns` (all cases when it is empty).
///
/// ```
/// use pool_bench::{filter_cases, full_matrix};
/// let picked = filter_cases(full_matrix(), &["10000ops/1000pos/c200".to_owned()]);
/// assert_eq!(picked.len(), 3); // one per engine
/// ```
pub fn filter_cases(cases: Vec<Case>, patterns: &[String]) -> Vec<Case> {
    if patterns.is_empty() {
        return cases;
    }
    cases
        .into_iter()
        .filter(|case| {
            let name = case.name();
            patterns
                .iter()
                .any(|pattern| name.contains(pattern.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_matrix_has_108_distinct_cases() {
        let cases = full_matrix();
        assert_eq!(cases.len(), 108);
        let names: std::collections::HashSet<_> = cases.iter().map(Case::name).collect();
        assert_eq!(names.len(), 108);
    }

    #[test]
    fn engine_names_round_trip() {
        for engine in Engine::ALL {
            assert_eq!(engine.name().parse::<Engine>().unwrap(), engine);
        }
        assert!(matches!(
            "promise-all".parse::<Engine>(),
            Err(BenchError::UnknownEngine(name)) if name == "promise-all"
        ));
    }

    #[test]
    fn filters_match_substrings_of_case_names() {
        let picked = filter_cases(full_matrix(), &["shared-pool/".into(), "/c10".into()]);
        // 36 shared-pool cases, plus the C=10 and C=100 cases of the two other engines.
        assert_eq!(picked.len(), 36 + 2 * 18);
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let case = Case {
            engine: Engine::SharedPool,
            operations: 10,
            payload_positions: 0,
            concurrency: 4,
        };
        assert!(matches!(
            case.validate(),
            Err(BenchError::ZeroSize {
                field: "payload_positions"
            })
        ));
    }
}
