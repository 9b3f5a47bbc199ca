//! The recent ring: the latest finished tasks (256 by default), for cheap recent averages.
//! They are the newest records of the per-task store's queue ([`crate::store`]).

use std::time::Duration;

use pool_core::Outcome;
use serde::{Deserialize, Serialize};

use crate::record::StoredTask;
use crate::tally::ratio;

/// A finished task as the recent ring keeps it: timings and outcome, no labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecentTask {
    /// Its place in finishing order, from 0.
    pub sequence: u64,
    /// Time spent waiting in the queue.
    pub queue_wait: Duration,
    /// Time spent running.
    pub execution: Duration,
    /// From enqueue to resolution.
    pub total: Duration,
    /// Attempts that ran.
    pub attempts: u32,
    /// How it ended.
    pub outcome: Outcome,
}

impl RecentTask {
    pub(crate) fn of(task: &StoredTask) -> Self {
        Self {
            sequence: task.sequence,
            queue_wait: Duration::from_nanos(task.queue_wait_nanos),
            execution: Duration::from_nanos(task.execution_nanos),
            total: Duration::from_nanos(task.total_nanos),
            attempts: task.attempts,
            outcome: task.outcome,
        }
    }
}

/// Averages over the recent ring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentSummary {
    /// Tasks in the ring (at most its capacity, 256 by default).
    pub tasks: usize,
    /// Mean queue wait, µs.
    pub avg_queue_wait_us: f64,
    /// Mean execution time, µs.
    pub avg_execution_us: f64,
    /// Mean time from enqueue to resolution, µs.
    pub avg_total_us: f64,
    /// Mean attempts after the first.
    pub avg_retries: f64,
    /// Share that succeeded; `None` when the ring is empty.
    pub success_rate: Option<f64>,
}

impl RecentSummary {
    pub(crate) fn of(tasks: &[RecentTask]) -> Self {
        let count = tasks.len();
        let mean_us = |pick: fn(&RecentTask) -> Duration| {
            if count == 0 {
                return 0.0;
            }
            let nanos: u128 = tasks.iter().map(|t| pick(t).as_nanos()).sum();
            nanos as f64 / count as f64 / 1_000.0
        };
        let retries: u64 = tasks
            .iter()
            .map(|t| u64::from(t.attempts.saturating_sub(1)))
            .sum();
        let succeeded = tasks.iter().filter(|t| t.outcome.is_success()).count();
        Self {
            tasks: count,
            avg_queue_wait_us: mean_us(|t| t.queue_wait),
            avg_execution_us: mean_us(|t| t.execution),
            avg_total_us: mean_us(|t| t.total),
            avg_retries: ratio(retries, count as u64).unwrap_or(0.0),
            success_rate: ratio(succeeded as u64, count as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use pool_core::ErrorClass;

    use super::*;

    fn recent(sequence: u64, attempts: u32, outcome: Outcome) -> RecentTask {
        RecentTask {
            sequence,
            queue_wait: Duration::from_millis(sequence),
            execution: Duration::from_millis(2),
            total: Duration::from_millis(sequence + 2),
            attempts,
            outcome,
        }
    }

    #[test]
    fn summary_averages_the_ring() {
        let tasks = [
            recent(1, 1, Outcome::Succeeded),
            recent(3, 3, Outcome::Failed(ErrorClass::Retryable)),
        ];
        let summary = RecentSummary::of(&tasks);
        assert_eq!(summary.tasks, 2);
        assert_eq!(summary.avg_queue_wait_us, 2_000.0);
        assert_eq!(summary.avg_execution_us, 2_000.0);
        assert_eq!(summary.avg_total_us, 4_000.0);
        assert_eq!(summary.avg_retries, 1.0);
        assert_eq!(summary.success_rate, Some(0.5));
        assert_eq!(RecentSummary::of(&[]).success_rate, None);
    }
}
