//! Tests on real threads: a multi-threaded tokio runtime in real time, producers on their own
//! OS threads, every await under a generous timeout so a hang fails the test instead of
//! stalling it. The deterministic executor cannot land a call between two `.await`-free
//! steps of the engine; these can.

mod aborts;
mod cancellation;
mod drain_and_observers;
mod intake;
mod nested;
mod panics;
mod races;
mod rate_limit;
mod stress;
mod wakeups;

use std::future::Future;
use std::time::Duration;

use pool_core::{ErrorClass, Retryable, TaskError};

/// Long enough that only a hang reaches it on a loaded 2-core machine.
pub(crate) const HANG: Duration = Duration::from_secs(60);

/// A multi-threaded runtime with real time.
pub(crate) fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`HANG`].
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(HANG, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {HANG:?}: a hang"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scripted failure ({0:?})")]
pub(crate) struct Failure(pub(crate) ErrorClass);

impl Retryable for Failure {
    fn error_class(&self) -> ErrorClass {
        self.0
    }
}

/// A short name of how a task ended, for tallies.
pub(crate) fn kind<T>(result: &Result<T, TaskError<Failure>>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error.kind(),
    }
}
