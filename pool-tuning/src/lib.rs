//! Adaptive concurrency for s3pool: pick the number of requests in flight from what the
//! backend reports, so a pool gets close to the best throughput without being throttled.
//!
//! - [`Tuner`]: the abstraction — samples and an explicit clock in, a limit out, no I/O.
//! - [`RuleTuner`]: s3db.js's engine (5 s interval, −20 % / −10 % / +20 % / −5 %).
//! - [`KneeTuner`]: finds the backend's knee from RTT growth, throttling and timeouts within
//!   an RTT-scale window, and follows capacity that moves.
//! - [`FixedTuner`]: never moves; the baseline to beat.
//! - [`peers`]: the best known published controllers (Vector's adaptive request
//!   concurrency, Netflix's Gradient2 and AIMD), to measure against.
//! - [`TuningObserver`]: drives any tuner from a `pool_core::Pool`'s events, and ticks it
//!   on the pool's executor; [`AutoConcurrency`] adds `.auto_concurrency(config)` and
//!   `.tuned_by(observer)` to the pool builder.
//! - `sim` (feature `sim`): the real pool in virtual time against simulated object stores
//!   (latency distributions, throttles, timeouts, background errors, changes and ramps),
//!   with TOML scenarios, to measure tuners.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use pool_tuning::{AttemptOutcome, KneeConfig, KneeTuner, Sample, Tuner};
//!
//! let config = KneeConfig::builder().min(2).max(200).build()?;
//! let mut tuner = KneeTuner::new(config, 10);
//! let mut now = Instant::now();
//! // A backend answering in 20 ms whatever the load: the tuner keeps growing.
//! for _ in 0..200 {
//!     now += Duration::from_millis(4);
//!     let sample = Sample::new(now, Duration::from_millis(20), AttemptOutcome::Succeeded)
//!         .in_flight(tuner.limit());
//!     tuner.observe(&sample, now);
//! }
//! assert!(tuner.limit() > 10);
//! # Ok::<(), pool_tuning::ConfigError>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
mod auto;
mod bounds;
mod driver;
mod error;
mod fixed;
mod knee;
mod memory;
pub mod peers;
mod rule;
mod sample;
mod tuner;

#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;

pub use auto::{AutoConcurrency, FALLBACK_INITIAL_CONCURRENCY, MEMORY_REFRESH};
pub use bounds::Bounds;
pub use driver::{TuningObserver, TICK_INTERVAL};
pub use error::ConfigError;
pub use fixed::FixedTuner;
pub use knee::{KneeConfig, KneeConfigBuilder, KneeTuner};
#[cfg(feature = "system-memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "system-memory")))]
pub use memory::SystemMemory;
pub use memory::{suggest_initial_concurrency, SystemMemoryProbe, SystemMemorySnapshot};
pub use rule::{RuleConfig, RuleConfigBuilder, RuleTuner};
pub use sample::{AttemptOutcome, Sample};
pub use tuner::{Adjustment, Reason, Tuner};
