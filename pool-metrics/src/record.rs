//! The per-task record: everything measured about one finished task.

use std::time::{Duration, Instant};

use pool_core::{FinishedTask, Metadata, Outcome, TaskId, TaskInfo, TaskRecord};
use serde::{Deserialize, Serialize};

use crate::origin::Origin;

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
    /// Its place in finishing order, from 0: the pool's number for it
    /// ([`FinishedTask::sequence`](pool_core::FinishedTask::sequence)) while the collector
    /// watches one pool; the collector's own (the order tasks reached it, continuing after the
    /// highest number so far) once it is also fed records or a second pool's tasks. Unique
    /// either way.
    pub sequence: u64,
}

impl TaskMetrics {
    /// Copies what an observer gets with [`Event::TaskFinished`](pool_core::Event::TaskFinished).
    pub fn from_record(record: &TaskRecord, sequence: u64, rss_bytes: Option<u64>) -> Self {
        StoredTask::from_ending(record, sequence, rss_bytes).to_metrics()
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

/// What the collector reads of a finished task: the pool's view of it
/// ([`Observer::on_task_finished`](pool_core::Observer::on_task_finished): waits, latencies
/// and the total in the engine's nanoseconds, as the collector counts them, and no moment
/// made an `Instant`) or an owned [`TaskRecord`] (a replay, or an observer that forwards
/// events). The collector is generic over the two, so it reads each figure where it is kept,
/// with no copy or conversion in between.
pub(crate) trait Ending {
    fn task(&self) -> &TaskInfo;
    fn finished_at(&self) -> Instant;
    /// When it finished, in nanoseconds after `origin` (0 if before it).
    fn finished_offset(&self, origin: &Origin) -> u64;
    /// From enqueue to resolution, ns.
    fn total_nanos(&self) -> u64;
    fn queue_wait_nanos(&self) -> u64;
    fn execution_nanos(&self) -> u64;
    fn retry_delay_nanos(&self) -> u64;
    fn attempts(&self) -> u32;
    fn outcome(&self) -> Outcome;
    /// Its place in the pool's finishing order, if a pool numbered it.
    fn pool_sequence(&self) -> Option<u64>;
}

impl Ending for FinishedTask<'_> {
    #[inline]
    fn task(&self) -> &TaskInfo {
        FinishedTask::task(self)
    }
    #[inline]
    fn finished_at(&self) -> Instant {
        FinishedTask::finished_at(self)
    }
    /// From the pool's offset, without making an `Instant` (but for a pool not seen before).
    #[inline]
    fn finished_offset(&self, origin: &Origin) -> u64 {
        origin.offset_in_pool_clock(
            self.clock_origin(),
            self.finished_since_origin_nanos(),
            || FinishedTask::finished_at(self),
        )
    }
    #[inline]
    fn total_nanos(&self) -> u64 {
        FinishedTask::total_nanos(self)
    }
    #[inline]
    fn queue_wait_nanos(&self) -> u64 {
        FinishedTask::queue_wait_nanos(self)
    }
    #[inline]
    fn execution_nanos(&self) -> u64 {
        FinishedTask::execution_nanos(self)
    }
    #[inline]
    fn retry_delay_nanos(&self) -> u64 {
        FinishedTask::retry_delay_nanos(self)
    }
    #[inline]
    fn attempts(&self) -> u32 {
        FinishedTask::attempts(self)
    }
    #[inline]
    fn outcome(&self) -> Outcome {
        FinishedTask::outcome(self)
    }
    #[inline]
    fn pool_sequence(&self) -> Option<u64> {
        Some(FinishedTask::sequence(self))
    }
}

impl Ending for TaskRecord {
    fn task(&self) -> &TaskInfo {
        &self.task
    }
    fn finished_at(&self) -> Instant {
        self.finished_at
    }
    fn finished_offset(&self, origin: &Origin) -> u64 {
        origin.offset_of(self.finished_at)
    }
    fn total_nanos(&self) -> u64 {
        nanos(TaskRecord::total(self))
    }
    fn queue_wait_nanos(&self) -> u64 {
        nanos(self.queue_wait)
    }
    fn execution_nanos(&self) -> u64 {
        nanos(self.execution)
    }
    fn retry_delay_nanos(&self) -> u64 {
        nanos(self.retry_delay)
    }
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn outcome(&self) -> Outcome {
        self.outcome
    }
    fn pool_sequence(&self) -> Option<u64> {
        None
    }
}

/// The compact form recorded on the hot path: durations as nanoseconds (converted once), and
/// the empty metadata for a task without labels (so no reference count to touch and no
/// allocation kept alive for it).
#[derive(Debug, Clone)]
pub(crate) struct StoredTask {
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

impl StoredTask {
    #[inline]
    pub(crate) fn from_ending(ending: &impl Ending, sequence: u64, rss_bytes: Option<u64>) -> Self {
        let task = ending.task();
        Self {
            id: task.id,
            sequence,
            priority: task.priority,
            attempts: ending.attempts(),
            outcome: ending.outcome(),
            metadata: if task.metadata.is_empty() {
                Metadata::new()
            } else {
                task.metadata.clone()
            },
            queue_wait_nanos: ending.queue_wait_nanos(),
            execution_nanos: ending.execution_nanos(),
            retry_delay_nanos: ending.retry_delay_nanos(),
            total_nanos: ending.total_nanos(),
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

/// Nanoseconds, saturating at 584 years (in 64-bit arithmetic: `as_nanos` works in 128 bits,
/// which costs more on the hot path).
#[inline]
fn nanos(duration: Duration) -> u64 {
    duration
        .as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|nanos| nanos.checked_add(u64::from(duration.subsec_nanos())))
        .unwrap_or(u64::MAX)
}
