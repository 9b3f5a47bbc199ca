//! pool-tuning's integration tests in one binary.

mod bounds;
mod extremes;
mod pool_driver;
#[cfg(feature = "sim")]
mod scenarios;
