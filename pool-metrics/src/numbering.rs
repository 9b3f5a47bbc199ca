//! How the collector numbers finished tasks in finishing order: the numbers the per-task store
//! evicts by and [`TaskMetrics::sequence`](crate::TaskMetrics::sequence) shows.
//!
//! A pool numbers its own tasks as it counts their ends
//! ([`FinishedTask::sequence`](pool_core::FinishedTask::sequence)), under a lock it takes
//! anyway. A collector watching that one pool takes its numbers as they come, and writes
//! nothing shared per task: a counter of its own, incremented by every worker thread, would
//! pass its cache line from core to core on each task — on an otherwise idle two-core
//! machine, a wait of the order of the whole rest of the recording.
//!
//! A collector that is fed tasks the pool did not number (records replayed through
//! [`Metrics::record`](crate::Metrics::record) or forwarded as events, or the tasks of a
//! second pool) numbers every task itself from then on, continuing after the highest number
//! recorded. It changes over while it holds every shard, and recorders read which numbers
//! apply while they hold theirs: a task is either recorded before the change (its number
//! is counted in the continuation) or numbered after it — no number is given twice. A number
//! the pool gave a task still on its way when the change happened is not used, which leaves
//! a gap there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::shard::Shards;

/// On a cache line of its own: once the collector numbers tasks itself, every recorder
/// writes it, and nothing read per task should share that line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Numbering {
    /// The collector numbers tasks itself (from `next`); until then, by the pool's numbers.
    own: AtomicBool,
    /// The next number the collector gives, once it numbers tasks itself.
    next: AtomicU64,
}

impl Numbering {
    /// The number of a task the pool numbered `pool_sequence` (if it did). Call it while
    /// holding a shard, after [`take_over`](Self::take_over) for a task the pool did not
    /// number.
    #[inline]
    pub(crate) fn number(&self, pool_sequence: Option<u64>) -> u64 {
        match pool_sequence {
            Some(sequence) if !self.own.load(Ordering::Acquire) => sequence,
            _ => self.next.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether the collector numbers tasks itself.
    pub(crate) fn is_own(&self) -> bool {
        self.own.load(Ordering::Acquire)
    }

    /// From now on the collector numbers every task itself, after the highest number
    /// recorded in `shards`. Takes every shard (in order, so two calls cannot deadlock); call
    /// it holding none.
    #[cold]
    pub(crate) fn take_over(&self, shards: &Shards) {
        if self.is_own() {
            return;
        }
        let held = shards.lock_all();
        if !self.is_own() {
            let next = held.iter().map(|shard| shard.next_sequence).max();
            self.next.store(next.unwrap_or(0), Ordering::Relaxed);
            self.own.store(true, Ordering::Release);
        }
        drop(held);
    }
}
