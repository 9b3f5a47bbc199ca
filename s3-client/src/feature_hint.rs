//! Compile errors that name the feature a method needs.
//!
//! Without its feature a gated method does not exist, and rustc's "no method named
//! `metrics`" points at whatever similar name it finds (`retries`). So each gated method a
//! user is likely to call has a stand-in when its feature is off: hidden from the docs,
//! bound by a trait nothing implements, whose `on_unimplemented` message says which feature
//! to enable. The stand-ins never compile into a call.

/// Implemented by nothing: the bound of `metrics` stand-ins without the `metrics` feature.
#[diagnostic::on_unimplemented(
    message = "this method needs s3-client's `metrics` feature",
    label = "enable the `metrics` feature of s3-client",
    note = "in Cargo.toml: s3-client = {{ version = \"0.1\", features = [\"metrics\"] }}"
)]
#[cfg(not(feature = "metrics"))]
pub(crate) trait NeedsMetricsFeature {}

/// Implemented by nothing: the bound of `tuning` stand-ins without the `tuning` feature.
#[diagnostic::on_unimplemented(
    message = "this method needs s3-client's `tuning` feature",
    label = "enable the `tuning` feature of s3-client",
    note = "in Cargo.toml: s3-client = {{ version = \"0.1\", features = [\"tuning\"] }}"
)]
#[cfg(not(feature = "tuning"))]
pub(crate) trait NeedsTuningFeature {}
