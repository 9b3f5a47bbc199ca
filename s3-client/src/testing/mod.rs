//! Test support (feature `testing`): an in-process S3 server that can be told to throttle.
//!
//! Public so that other crates' tests and benches (pool-bench, task-manager) can start the
//! same server: `s3-client = { workspace = true, features = ["testing"] }`.

mod panics;
mod server;

pub use panics::{quiet_injected_panics, INJECTED_PANIC_PREFIX};
pub use server::{percent_encode, InjectedResponse, S3TestServer, ServerFaults};
