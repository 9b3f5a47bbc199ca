//! The best known published controllers, as [`Tuner`](crate::Tuner)s, so they can be measured
//! beside this crate's own in the same simulator, on the same scenarios.
//!
//! Each follows its published code rule for rule, with its published defaults; where a
//! [`Sample`](crate::Sample) cannot carry what s3db.js reads, its docs say so.
//!
//! - [`VectorArc`]: Vector's adaptive request concurrency.
//! - [`Gradient2`]: Netflix concurrency-limits' `Gradient2Limit` in a `WindowedLimit`.
//! - [`Aimd`]: Netflix concurrency-limits' `AIMDLimit`, the plain loss-based controller.

mod aimd;
mod gradient2;
mod vector;

pub use aimd::Aimd;
pub use gradient2::Gradient2;
pub use vector::VectorArc;
