//! pool-core's integration tests in one binary (one link instead of one per file). `tracing_events`
//! stays alone: it needs tracing's process-wide state to itself.

#[macro_use]
mod support;

mod admission;
mod behaviour;
mod clock;
mod config;
mod deadlines;
mod errors;
mod extremes;
mod forever;
mod handles;
mod intake;
mod observers;
mod policy_circuit_breaker;
mod policy_rate_limit;
mod policy_single_flight;
mod properties;
mod smol;
mod tenants;
mod threads;
mod tower;
mod wakeups;
