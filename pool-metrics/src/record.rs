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
        FinishedTask::from_record(record, sequence, rss_bytes).to_metrics()
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

/// The compact form recorded on the hot path: durations as nanoseconds (converted once), and
/// the empty metadata for a task without labels (so no reference count to touch and no
/// allocation kept alive for it).
#[derive(Debug, Clone)]
pub(crate) struct FinishedTask {
    pub(crate) id: TaskId,
    pub(crate) sequence: u64,
    pub(crate) priority: i32,
    pub(crate) attempts: u32,
    pub(crate) outcome: Outcome,
    pub(crate) metadata: Metadata,
    pub(crate) queue_wait_nanos: u64,
    pub(crate) execution_nanos: u64,
    pub(crate) retry_delay_nanos: u64,
    pub(crate) total_nanos: u64,
    pub(crate) rss_bytes: Option<u64>,
}

impl FinishedTask {
    #[inline]
    pub(crate) fn from_record(record: &TaskRecord, sequence: u64, rss_bytes: Option<u64>) -> Self {
        let metadata = &record.task.metadata;
        Self {
            id: record.task.id,
            sequence,
            priority: record.task.priority,
            attempts: record.attempts,
            outcome: record.outcome,
            metadata: if metadata.is_empty() {
                Metadata::new()
            } else {
                metadata.clone()
            },
            queue_wait_nanos: nanos(record.queue_wait),
            execution_nanos: nanos(record.execution),
            retry_delay_nanos: nanos(record.retry_delay),
            total_nanos: nanos(record.total()),
            rss_bytes,
        }
    }

    pub(crate) fn to_metrics(&self) -> TaskMetrics {
        TaskMetrics {
            id: self.id,
            priority: self.priority,
            metadata: self.metadata.clone(),
            outcome: self.outcome,
            attempts: self.attempts,
            queue_wait: Duration::from_nanos(self.queue_wait_nanos),
            execution: Duration::from_nanos(self.execution_nanos),
            retry_delay: Duration::from_nanos(self.retry_delay_nanos),
            total: Duration::from_nanos(self.total_nanos),
            rss_bytes: self.rss_bytes,
            sequence: self.sequence,
        }
    }

    pub(crate) fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    /// A succeeded single-attempt task that ran `execution`, for unit tests.
    #[cfg(test)]
    pub(crate) fn example(id: u64, sequence: u64, execution: Duration) -> Self {
        Self {
            id: TaskId(id),
            sequence,
            priority: 0,
            attempts: 1,
            outcome: Outcome::Succeeded,
            metadata: Metadata::new(),
            queue_wait_nanos: 0,
            execution_nanos: nanos(execution),
            retry_delay_nanos: 0,
            total_nanos: nanos(execution),
            rss_bytes: None,
        }
    }
}

/// Nanoseconds, saturating at 584 years.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
