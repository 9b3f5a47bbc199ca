//! task-manager's integration tests in one binary.

mod runs;
mod sim;
