//! The per-task record: everything measured about one finished task.

use std::time::Duration;

use pool_core::{Metadata, Outcome, TaskId, TaskRecord};
use serde::{Deserialize, Serialize};

/// How one finished task went, as kept in the bounded per-task store
/// ([`Metrics::task_metrics`](crate::Metrics::task_metrics)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// The task.
    pub id: TaskId,
    /// Its base priority.
    pub priority: i32,
    /// Its labels.
    pub metadata: Metadata,
    /// How it ended.
    pub outcome: Outcome,
    /// Attempts that ran (0 if it never started).
    pub attempts: u32,
    /// Time spent waiting in the queue, summed over attempts.
    pub queue_wait: Duration,
    /// Time spent running, summed over attempts.
    pub execution: Duration,
    /// Time spent in retry backoff, summed.
    pub retry_delay: Duration,
    /// From enqueue to resolution.
    pub total: Duration,
    /// The process's resident memory right after it finished (only in
    /// [`MemoryMode::Full`](crate::MemoryMode::Full)).
    pub rss_bytes: Option<u64>,
    /// Its place in finishing order as seen by this collector, from 0.
    pub sequence: u64,
}

impl TaskMetrics {
    /// Copies what an observer gets with [`Event::TaskFinished`](pool_core::Event::TaskFinished).
    pub fn from_record(record: &TaskRecord, sequence: u64, rss_bytes: Option<u64>) -> Self {
        Self {
            id: record.task.id,
            priority: record.task.priority,
            metadata: record.task.metadata.clone(),
            outcome: record.outcome,
            attempts: record.attempts,
            queue_wait: record.queue_wait,
            execution: record.execution,
            retry_delay: record.retry_delay,
            total: record.total(),
            rss_bytes,
            sequence,
        }
    }

    /// Attempts after the first.
    pub fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    /// True if it resolved with its value.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_success()
    }
}
