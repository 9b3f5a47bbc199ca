//! task-manager's integration tests in one binary.

mod extremes;
mod outage;
mod runs;
mod sim;
mod with_s3_client;
