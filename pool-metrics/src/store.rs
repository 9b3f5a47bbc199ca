//! The latest finished tasks, kept whole: the bounded per-task store and the recent ring are
//! two views of this one queue.
//!
//! Each shard keeps its own part. A record stays while its sequence number (its place in
//! finishing order, see `numbering`) is among the last `capacity` handed out, `capacity` being
//! the larger of the store's and the ring's, so eviction is first-in-first-out across shards
//! even though no lock spans them.
//! A read picks the records of its view by sequence number: the store's are the last
//! [`task_store_capacity`](crate::MetricsConfig::task_store_capacity), the ring's the last
//! [`recent_capacity`](crate::MetricsConfig::recent_capacity).
//!
//! A shard's part is a plain queue in (nearly) sequence order, with no index by id: recording
//! is a push, and the rare lookup scans the queue. What fell out of the store leaves in
//! batches: a record past its window stays until the queue has grown by [`EVICTION_BATCH`]
//! since the last eviction, then all such records at its front leave at once (reads skip
//! them meanwhile), which costs a task a fraction of one pop.

use std::collections::VecDeque;

use pool_core::TaskId;

use crate::record::StoredTask;

/// How far a shard's queue grows past its last eviction before it evicts again (records
/// past the window wait at most this long, a few KB per shard).
pub(crate) const EVICTION_BATCH: usize = 64;

/// The lowest sequence number still kept once `numbered` numbers have been handed out.
pub(crate) fn keep_from(numbered: u64, capacity: usize) -> u64 {
    numbered.saturating_sub(capacity as u64)
}

/// One shard's records, oldest first (a task numbered just before another may land just
/// after it: reads filter and sort by sequence number).
#[derive(Debug)]
pub(crate) struct StoreShard {
    records: VecDeque<StoredTask>,
    /// The length past which the next insert evicts.
    evict_at: usize,
}

impl Default for StoreShard {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            evict_at: EVICTION_BATCH,
        }
    }
}

impl StoreShard {
    /// Keeps `task`; evicts what fell out once the queue has grown by [`EVICTION_BATCH`]
    /// since the last eviction. A task already out of the store (a capacity of 0) is pushed
    /// too, and leaves with the next batch (reads skip it): one path, so the record is moved
    /// straight into the queue.
    #[inline]
    pub(crate) fn insert(&mut self, task: StoredTask, keep_from: u64) {
        self.records.push_back(task);
        if self.records.len() > self.evict_at {
            self.evict(keep_from);
        }
    }

    /// Drops the records numbered below `keep_from` at the front of the queue (one numbered
    /// a little earlier than its neighbour may wait for the next eviction).
    #[cold]
    fn evict(&mut self, keep_from: u64) {
        let out = self
            .records
            .iter()
            .take_while(|task| task.sequence < keep_from)
            .count();
        self.records.drain(..out);
        self.evict_at = self.records.len() + EVICTION_BATCH;
    }

    /// The latest record of `id` still kept (an id can repeat when two pools share a collector).
    pub(crate) fn get(&self, id: TaskId, keep_from: u64) -> Option<&StoredTask> {
        self.records(keep_from).rev().find(|t| t.id == id)
    }

    /// The records numbered `keep_from` or later.
    pub(crate) fn records(&self, keep_from: u64) -> impl DoubleEndedIterator<Item = &StoredTask> {
        self.records.iter().filter(move |t| t.sequence >= keep_from)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn task(id: u64, sequence: u64) -> StoredTask {
        StoredTask::example(id, sequence, Duration::ZERO)
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
        // A narrower view of the same records: the last two.
        let ids: Vec<u64> = store.records(keep_from(5, 2)).map(|t| t.id.0).collect();
        assert_eq!(ids, vec![4, 5]);
    }

    #[test]
    fn a_late_arrival_is_kept_in_its_window() {
        let capacity = 3;
        let mut store = StoreShard::default();
        // Sequence 3 arrives after 4 and 5 (another thread took its number first).
        for sequence in [1, 2, 4, 5, 3, 0] {
            store.insert(task(sequence, sequence), keep_from(sequence + 1, capacity));
        }
        let mut kept: Vec<u64> = store
            .records(keep_from(6, capacity))
            .map(|t| t.sequence)
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![3, 4, 5]);
    }

    #[test]
    fn evicted_records_leave_memory_in_batches() {
        let capacity = 100;
        let mut store = StoreShard::default();
        let mut longest = 0;
        for sequence in 0..10_000 {
            store.insert(task(sequence, sequence), keep_from(sequence + 1, capacity));
            longest = longest.max(store.records.len());
        }
        // Never more than the window and one batch; right after an eviction, the window.
        assert!(longest <= capacity + EVICTION_BATCH + 1, "{longest}");
        assert!(
            store.records.len() > capacity,
            "evicts in batches, not per insert"
        );
        assert_eq!(store.records(keep_from(10_000, capacity)).count(), capacity);
        let first = store.records(keep_from(10_000, capacity)).next();
        assert_eq!(first.map(|t| t.sequence), Some(9_900));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut store = StoreShard::default();
        store.insert(task(1, 0), keep_from(1, 0));
        assert!(store.get(TaskId(1), keep_from(1, 0)).is_none());
    }
}
