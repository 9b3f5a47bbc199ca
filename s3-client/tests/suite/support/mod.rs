//! Shared test helpers: the conformance suite and an observer that records error classes.

#![allow(dead_code, unreachable_pub)]

pub mod conformance;
pub mod corrupt;
pub mod get_hook;
pub mod moto;

use std::sync::{Arc, Mutex};

use pool_core::{AttemptResult, ErrorClass, Event, Observer};

/// Records the class of every failed attempt and every retry, and the largest attempt
/// number seen.
#[derive(Debug, Default, Clone)]
pub struct ClassRecorder {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Default)]
pub struct Recorded {
    pub failed_attempts: Vec<ErrorClass>,
    pub retries: Vec<ErrorClass>,
    pub timed_out_attempts: usize,
    pub panicked_attempts: usize,
    pub max_attempt: u32,
    pub labels: Vec<(String, String)>,
    /// The tenants of started tasks.
    pub tenants: Vec<String>,
}

impl ClassRecorder {
    pub fn snapshot<T>(&self, read: impl FnOnce(&Recorded) -> T) -> T {
        read(&self.inner.lock().unwrap())
    }
}

impl Observer for ClassRecorder {
    fn on_event(&self, event: &Event) {
        let mut recorded = self.inner.lock().unwrap();
        match event {
            Event::AttemptFinished {
                result, attempt, ..
            } => {
                recorded.max_attempt = recorded.max_attempt.max(*attempt);
                match result {
                    AttemptResult::Failed(class) => recorded.failed_attempts.push(*class),
                    AttemptResult::TimedOut => recorded.timed_out_attempts += 1,
                    AttemptResult::Panicked => recorded.panicked_attempts += 1,
                    _ => {}
                }
            }
            Event::TaskRetrying { class, .. } => recorded.retries.push(*class),
            Event::TaskStarted { task, .. } if recorded.labels.len() < 16 => {
                let labels = task
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()));
                recorded.labels.extend(labels);
                if let Some(tenant) = &task.tenant {
                    recorded.tenants.push(tenant.to_string());
                }
            }
            _ => {}
        }
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> bytes::Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    data.into()
}

/// An `AsyncWrite` into shared memory.
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
