//! Tasks out of the queue until a moment: in retry backoff, or deferred by an admission
//! policy. One ordered map and one timer per pool, instead of a sleeping future per task, so
//! a parked task costs about what a queued one does.
//!
//! The set is the only owner of the `retrying` and `deferred` counts. A task is counted from
//! the moment the engine decides to park it ([`ParkedSet::reserve`], under the pool's lock)
//! until it leaves: the [`Reservation`] is then either turned into an entry
//! ([`ParkedSet::insert`]) or given back ([`ParkedSet::release`], when the pool stopped or the
//! task was cancelled meanwhile), and an entry leaves by [`pop_due`](ParkedSet::pop_due),
//! [`remove`](ParkedSet::remove) or [`drain_all`](ParkedSet::drain_all). Each of those moves
//! exactly one count, and a reservation can be used once (it is not `Clone`), so no path can
//! count a task out twice — whatever runs in between (a `stop()` on another thread).

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

/// A task counted as parked that is not in the set yet: the engine decided to park it and
/// released the pool's lock to tell observers first. Use it once: [`ParkedSet::insert`] or
/// [`ParkedSet::release`].
#[derive(Debug)]
#[must_use = "a reservation is counted until it is inserted or released"]
pub(crate) struct Reservation {
    parked: Parked,
}

/// Parked tasks in the order they are due, and the counts of parked tasks by kind.
#[derive(Default)]
pub(crate) struct ParkedSet {
    by_moment: BTreeMap<ParkKey, (TaskRef, Parked)>,
    next_seq: u64,
    /// Entries and reservations of each kind.
    retrying: usize,
    deferred: usize,
}

impl std::fmt::Debug for ParkedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedSet")
            .field("parked", &self.by_moment.len())
            .field("retrying", &self.retrying)
            .field("deferred", &self.deferred)
            .field("next_due", &self.next_due())
            .finish()
    }
}

impl ParkedSet {
    /// Tasks in retry backoff (reserved or parked).
    pub(crate) fn retrying(&self) -> usize {
        self.retrying
    }

    /// Tasks deferred by admission (reserved or parked).
    pub(crate) fn deferred(&self) -> usize {
        self.deferred
    }

    fn count(&mut self, parked: Parked) -> &mut usize {
        match parked {
            Parked::Retrying => &mut self.retrying,
            Parked::Deferred => &mut self.deferred,
        }
    }

    /// Counts a task as parked before it is inserted.
    pub(crate) fn reserve(&mut self, parked: Parked) -> Reservation {
        *self.count(parked) += 1;
        Reservation { parked }
    }

    /// Gives a reservation back: the task resolves instead of parking.
    pub(crate) fn release(&mut self, reservation: Reservation) {
        self.uncount(reservation.parked);
    }

    fn uncount(&mut self, parked: Parked) {
        let count = self.count(parked);
        debug_assert!(*count > 0, "a parked task counted out twice");
        *count = count.saturating_sub(1);
    }

    /// Parks a reserved task until `until`.
    pub(crate) fn insert(
        &mut self,
        reservation: Reservation,
        task: TaskRef,
        until: Instant,
    ) -> ParkKey {
        let key = ParkKey {
            until,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.by_moment.insert(key, (task, reservation.parked));
        key
    }

    pub(crate) fn remove(&mut self, key: ParkKey) -> Option<(TaskRef, Parked)> {
        let (task, parked) = self.by_moment.remove(&key)?;
        self.uncount(parked);
        Some((task, parked))
    }

    /// The earliest moment a task is parked until.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.by_moment.first_key_value().map(|(key, _)| key.until)
    }

    /// Takes the first task due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TaskRef> {
        let entry = self.by_moment.first_entry()?;
        if entry.key().until > now {
            return None;
        }
        let (task, parked) = entry.remove();
        self.uncount(parked);
        Some(task)
    }

    /// Takes every task, in the order they are due. Reservations stay counted: their holders
    /// give them back.
    pub(crate) fn drain_all(&mut self) -> Vec<TaskRef> {
        let drained = std::mem::take(&mut self.by_moment);
        drained
            .into_values()
            .map(|(task, parked)| {
                self.uncount(parked);
                task
            })
            .collect()
    }
}
