//! A discrete-event simulator to measure tuners against a backend with a capacity knee and an
//! optional hard rate cap, in virtual time (a 60 s scenario runs in milliseconds).
//!
//! - [`Scenario`]: a TOML file — the server, the client, changes during the run, and the
//!   expected `[min, max]` range of each outcome per tuner (like Vector's ARC tests).
//! - [`SimServer`]: latency = base · (1 + slope · (excess over knee / knee)^exponent), ± jitter
//!   from a seeded RNG; above the rate cap it answers "503 SlowDown" at once.
//! - [`simulate`]: a closed-loop client that keeps the tuner's limit of requests in flight,
//!   feeding every finished attempt to the tuner; returns a [`SimReport`].
//!
//! ```
//! use pool_tuning::sim::{simulate, Scenario, TunerSpec};
//! let scenario = Scenario::from_toml_str(r#"
//!     name = "tiny"
//!     duration_s = 5.0
//!     [server]
//!     base_latency_ms = 20.0
//!     knee = 32
//! "#)?;
//! let knee = simulate(&scenario, &TunerSpec::Knee)?;
//! let fixed = simulate(&scenario, &TunerSpec::Fixed(10))?;
//! assert!(knee.utilization > fixed.utilization);
//! # Ok::<(), pool_tuning::sim::ScenarioError>(())
//! ```

mod engine;
mod report;
mod scenario;
mod server;
mod tuner_spec;

pub use engine::{simulate, simulate_with};
pub use report::{Metric, PhaseReport, SimReport, Violation};
pub use scenario::{
    load_scenarios, scenario_dir, ClientParams, Scenario, ScenarioError, ServerChange, ServerParams,
};
pub use server::{Response, SimServer};
pub use tuner_spec::TunerSpec;
