//! pool-metrics' integration tests in one binary (one link instead of one per file).

mod support;

mod concurrent;
mod extremes;
mod facade;
mod hedges;
mod memory;
mod model;
mod outcomes;
mod percentiles;
mod prometheus_text;
mod serde_roundtrip;
mod store;
mod tenants;
mod windows;
