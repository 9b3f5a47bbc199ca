//! The bounded per-task store: full records of the last `capacity` finished tasks.
//!
//! Each shard keeps its own part. A record stays while its sequence number is among the last
//! `capacity` handed out (a global counter), so eviction is first-in-first-out across shards
//! even though no lock spans them.

use std::collections::{HashMap, VecDeque};

use pool_core::TaskId;

use crate::record::TaskMetrics;

/// The lowest sequence number still kept once `issued` numbers have been handed out.
pub(crate) fn keep_from(issued: u64, capacity: usize) -> u64 {
    issued.saturating_sub(capacity as u64)
}

/// One shard's records, in the order they were stored.
#[derive(Debug, Default)]
pub(crate) struct StoreShard {
    order: VecDeque<(u64, TaskId)>,
    by_id: HashMap<TaskId, TaskMetrics>,
}

impl StoreShard {
    /// Evicts what fell out of the store, then keeps `task` unless it is already out.
    pub(crate) fn insert(&mut self, task: TaskMetrics, keep_from: u64) {
        while let Some(&(sequence, id)) = self.order.front() {
            if sequence >= keep_from {
                break;
            }
            self.order.pop_front();
            // The id may have been reused by a later record (two pools on one collector).
            if self.by_id.get(&id).is_some_and(|t| t.sequence == sequence) {
                self.by_id.remove(&id);
            }
        }
        if task.sequence < keep_from {
            return;
        }
        self.order.push_back((task.sequence, task.id));
        self.by_id.insert(task.id, task);
    }

    pub(crate) fn get(&self, id: TaskId, keep_from: u64) -> Option<&TaskMetrics> {
        self.by_id.get(&id).filter(|t| t.sequence >= keep_from)
    }

    pub(crate) fn records(&self, keep_from: u64) -> impl Iterator<Item = &TaskMetrics> {
        self.by_id.values().filter(move |t| t.sequence >= keep_from)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pool_core::{Metadata, Outcome};

    use super::*;

    fn task(id: u64, sequence: u64) -> TaskMetrics {
        TaskMetrics {
            id: TaskId(id),
            priority: 0,
            metadata: Metadata::new(),
            outcome: Outcome::Succeeded,
            attempts: 1,
            queue_wait: Duration::ZERO,
            execution: Duration::ZERO,
            retry_delay: Duration::ZERO,
            total: Duration::ZERO,
            rss_bytes: None,
            sequence,
        }
    }

    #[test]
    fn evicts_first_in_first_out() {
        let capacity = 3;
        let mut store = StoreShard::default();
        // Tasks finish out of id order: sequence is finishing order.
        for (sequence, id) in [7, 2, 9, 4, 5].into_iter().enumerate() {
            let sequence = sequence as u64;
            store.insert(task(id, sequence), keep_from(sequence + 1, capacity));
        }
        let floor = keep_from(5, capacity);
        assert!(store.get(TaskId(7), floor).is_none());
        assert!(store.get(TaskId(2), floor).is_none());
        for id in [9, 4, 5] {
            assert!(store.get(TaskId(id), floor).is_some(), "task {id} kept");
        }
        assert_eq!(store.records(floor).count(), 3);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut store = StoreShard::default();
        store.insert(task(1, 0), keep_from(1, 0));
        assert!(store.get(TaskId(1), keep_from(1, 0)).is_none());
    }
}
