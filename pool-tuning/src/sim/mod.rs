//! A simulator to measure tuners against backends that behave like real object stores, in
//! virtual time (a minute of traffic runs in about a second).
//!
//! What runs is the real thing: a `pool_core::Pool` on the deterministic
//! [`SimExecutor`](pool_core::SimExecutor), its limit set by a [`TuningObserver`](crate::TuningObserver)
//! wired by [`AutoConcurrency::tuned_by`](crate::AutoConcurrency::tuned_by) exactly as on a
//! production pool (events in, ticks from the pool's executor, `set_concurrency` out), its
//! failed attempts retried by the pool's own retry policy. Only the backend is simulated:
//!
//! - [`SimServer`]: service times from a [`LatencyModel`] (uniform jitter, log-normal, a
//!   bimodal mixture, a Pareto tail) that grow past a knee; a rate cap answering 503 SlowDown
//!   or 429 with Retry-After, possibly late; a connection limit past which requests get no
//!   answer; background errors and hangs that come whatever the load. Every answer says
//!   whether the load caused it ([`Cause`]), so reports separate what a tuner is responsible
//!   for from the backend's background.
//! - [`Scenario`]: a TOML file — the server, the client, changes of any server parameter at a
//!   moment or as a ramp, and the expected `[min, max]` range of outcomes per tuner (like
//!   Vector's adaptive concurrency tests).
//! - [`ServerParams::capacity`]: what the best fixed limit achieves, computed in closed form
//!   from the same model (timeouts, hangs, errors and the cap included), phase by phase.
//! - [`simulate`] returns a [`SimReport`]: utilisation, overload share, p99 and convergence,
//!   for the run and for each phase.
//!
//! ```
//! use pool_tuning::sim::{simulate, Scenario, TunerSpec};
//! let scenario = Scenario::from_toml_str(r#"
//!     name = "tiny"
//!     duration_s = 3.0
//!     [server]
//!     base_latency_ms = 20.0
//!     knee = 32
//! "#)?;
//! let knee = simulate(&scenario, &TunerSpec::Knee)?;
//! let fixed = simulate(&scenario, &TunerSpec::Fixed(10))?;
//! assert!(knee.utilization > fixed.utilization);
//! # Ok::<(), pool_tuning::sim::ScenarioError>(())
//! ```

mod goals;
mod latency;
mod parallel;
mod params;
mod record;
mod report;
mod run;
mod scenario;
mod server;
mod tuner_spec;

pub use goals::{
    worse_than, PeerScore, PhaseGoals, GOAL_CONVERGED_S, GOAL_OVERLOAD, GOAL_P99_RATIO,
    GOAL_UTILIZATION, PEER_TOLERANCE,
};
pub use latency::LatencyModel;
pub use parallel::on_every_core;
pub use params::{Capacity, ServerParams, ThrottleStatus};
pub use report::{Metric, PhaseReport, SimReport, Violation};
pub use run::{run, simulate, simulate_seeded, simulate_with, SeriesPoint, SimRun};
pub use scenario::{
    load_scenarios, scenario_dir, ClientParams, Scenario, ScenarioError, ServerChange, Step,
};
pub use server::{Admission, Answer, Cause, SimServer};
pub use tuner_spec::TunerSpec;
