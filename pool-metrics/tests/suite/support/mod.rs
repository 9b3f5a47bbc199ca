//! Helpers shared by the integration tests: synthetic task records and a scripted pool.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use pool_core::{ErrorClass, Event, Metadata, Observer, Outcome, TaskId, TaskInfo, TaskRecord};
use pool_metrics::{Metrics, TunerState};

/// A synthetic finished task.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) id: u64,
    pub(crate) finished_at: Instant,
    pub(crate) queue_wait: Duration,
    pub(crate) execution: Duration,
    pub(crate) retry_delay: Duration,
    pub(crate) attempts: u32,
    pub(crate) outcome: Outcome,
    pub(crate) metadata: Metadata,
}

impl Finished {
    pub(crate) fn new(id: u64, finished_at: Instant) -> Self {
        Self {
            id,
            finished_at,
            queue_wait: Duration::ZERO,
            execution: Duration::ZERO,
            retry_delay: Duration::ZERO,
            attempts: 1,
            outcome: Outcome::Succeeded,
            metadata: Metadata::new(),
        }
    }

    pub(crate) fn execution(mut self, execution: Duration) -> Self {
        self.execution = execution;
        self
    }

    pub(crate) fn queue_wait(mut self, queue_wait: Duration) -> Self {
        self.queue_wait = queue_wait;
        self
    }

    pub(crate) fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    pub(crate) fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub(crate) fn record(&self) -> TaskRecord {
        let total = self.queue_wait + self.execution + self.retry_delay;
        let queued_at = self
            .finished_at
            .checked_sub(total)
            .unwrap_or(self.finished_at);
        TaskRecord {
            task: TaskInfo::new(TaskId(self.id)).with_metadata(self.metadata.clone()),
            queued_at,
            first_started_at: Some(queued_at + self.queue_wait),
            finished_at: self.finished_at,
            attempts: self.attempts,
            queue_wait: self.queue_wait,
            execution: self.execution,
            retry_delay: self.retry_delay,
            outcome: self.outcome,
        }
    }

    /// Delivers it as the pool would.
    pub(crate) fn send_to(&self, metrics: &Metrics) {
        metrics.on_event(&Event::TaskFinished(self.record()));
    }
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// The nearest-rank quantile of `values` (the ground truth HDR approximates).
pub(crate) fn exact_quantile(values: &mut [u64], quantile: f64) -> u64 {
    values.sort_unstable();
    let rank = (quantile * values.len() as f64).ceil().max(1.0) as usize;
    values[rank - 1]
}

/// `got` is within the histograms' precision (3 significant digits: 0.1%) of `want`.
#[track_caller]
pub(crate) fn assert_within_precision(got: u64, want: u64) {
    let tolerance = (want as f64 * 0.001).max(1.0);
    assert!(
        (got as f64 - want as f64).abs() <= tolerance,
        "got {got}, want {want} ± {tolerance}"
    );
}

/// The error used by scripted pool tasks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scripted failure ({0:?})")]
pub(crate) struct Scripted(pub ErrorClass);

impl pool_core::Retryable for Scripted {
    fn error_class(&self) -> ErrorClass {
        self.0
    }
}

/// A collector fed a small mix of synthetic outcomes, with a fake memory probe and a tuner
/// state, so that every field of a snapshot has something in it.
pub(crate) fn busy_metrics() -> (Metrics, Instant) {
    use pool_metrics::{MemoryMode, MetricsConfig};
    use std::sync::atomic::{AtomicU64, Ordering};

    let reads = AtomicU64::new(0);
    let probe = move || Some(100_000_000 + reads.fetch_add(1, Ordering::Relaxed) * 4_096);
    let config = MetricsConfig::default().memory(MemoryMode::Full);
    let metrics = Metrics::with_memory_probe(config, probe).unwrap();
    let t0 = Instant::now();
    metrics.aggregate_at(t0, t0); // fixes the clock origin at t0
    let outcomes = [
        Outcome::Succeeded,
        Outcome::Failed(ErrorClass::Throttled),
        Outcome::Succeeded,
        Outcome::TimedOut,
        Outcome::Failed(ErrorClass::Fatal),
    ];
    for id in 0..50u64 {
        Finished::new(id, t0 + ms(id * 100))
            .queue_wait(us(id * 37))
            .execution(ms(5 + id % 7))
            .attempts(1 + (id % 3) as u32)
            .outcome(outcomes[id as usize % outcomes.len()])
            .send_to(&metrics);
    }
    metrics.set_tuner_state(Some(TunerState::from([
        ("algorithm".to_owned(), "gradient".into()),
        ("limit".to_owned(), 24.0.into()),
        ("rtt_no_load_ms".to_owned(), 12.5.into()),
    ])));
    (metrics, t0 + Duration::from_secs(6))
}
