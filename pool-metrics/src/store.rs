//! The bounded per-task store: full records of the last `capacity` finished tasks.
//!
//! Each shard keeps its own part. A record stays while its sequence number is among the last
//! `capacity` handed out (a global counter), so eviction is first-in-first-out across shards
//! even though no lock spans them.
//!
//! A shard's part is a plain queue in sequence order, with no index by id: recording is a push
//! and a pop, and the rare lookup scans at most `capacity` records.

use std::collections::VecDeque;

use pool_core::TaskId;

use crate::record::FinishedTask;

/// The lowest sequence number still kept once `issued` numbers have been handed out.
pub(crate) fn keep_from(issued: u64, capacity: usize) -> u64 {
    issued.saturating_sub(capacity as u64)
}

/// One shard's records, oldest first.
#[derive(Debug, Default)]
pub(crate) struct StoreShard {
    records: VecDeque<FinishedTask>,
}

impl StoreShard {
    /// Evicts what fell out of the store, then keeps `task` unless it is already out.
    pub(crate) fn insert(&mut self, task: FinishedTask, keep_from: u64) {
        while self
            .records
            .front()
            .is_some_and(|oldest| oldest.sequence < keep_from)
        {
            self.records.pop_front();
        }
        if task.sequence >= keep_from {
            self.records.push_back(task);
        }
    }

    /// The latest record of `id` still kept (an id can repeat when two pools share a collector).
    pub(crate) fn get(&self, id: TaskId, keep_from: u64) -> Option<&FinishedTask> {
        self.records(keep_from).rev().find(|t| t.id == id)
    }

    pub(crate) fn records(&self, keep_from: u64) -> impl DoubleEndedIterator<Item = &FinishedTask> {
        self.records.iter().filter(move |t| t.sequence >= keep_from)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn task(id: u64, sequence: u64) -> FinishedTask {
        FinishedTask::example(id, sequence, Duration::ZERO)
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
