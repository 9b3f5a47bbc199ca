//! pool-redis' integration tests in one binary. `redaction` stays alone: it asserts on captured
//! tracing output.

mod support;

mod cluster;
mod parking;
mod permits;
mod processes;
mod rate;
mod tls;
