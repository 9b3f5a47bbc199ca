//! Tasks out of the queue until a moment: in retry backoff, or deferred by an admission
//! policy. One ordered map and one timer per pool, instead of a sleeping future per task, so
//! a parked task costs about what a queued one does.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::job::TaskRef;

/// Why a task is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// In retry backoff.
    Retrying,
    /// Until an admission policy's moment for it.
    Deferred,
}

/// Where a parked task sits: its moment, and a sequence number for tasks of the same moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ParkKey {
    until: Instant,
    seq: u64,
}

/// Parked tasks in the order they are due.
#[derive(Default)]
pub(crate) struct ParkedSet {
    by_moment: BTreeMap<ParkKey, (TaskRef, Parked)>,
    next_seq: u64,
}

impl std::fmt::Debug for ParkedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedSet")
            .field("parked", &self.by_moment.len())
            .field("next_due", &self.next_due())
            .finish()
    }
}

impl ParkedSet {
    pub(crate) fn insert(&mut self, task: TaskRef, parked: Parked, until: Instant) -> ParkKey {
        let key = ParkKey {
            until,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.by_moment.insert(key, (task, parked));
        key
    }

    pub(crate) fn remove(&mut self, key: ParkKey) -> Option<(TaskRef, Parked)> {
        self.by_moment.remove(&key)
    }

    /// The earliest moment a task is parked until.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.by_moment.first_key_value().map(|(key, _)| key.until)
    }

    /// Takes the first task due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TaskRef, Parked)> {
        let entry = self.by_moment.first_entry()?;
        if entry.key().until > now {
            return None;
        }
        Some(entry.remove())
    }

    /// Takes every task, in the order they are due.
    pub(crate) fn drain_all(&mut self) -> Vec<(TaskRef, Parked)> {
        std::mem::take(&mut self.by_moment).into_values().collect()
    }
}
