//! The moments one key has booked for tasks that have not taken them yet.
//!
//! Tasks book in the order they reach the limiter, but a parked task is out of the pool's
//! priority queue: a task of higher priority that arrives later would wait behind every task
//! parked before it. So it takes over the earliest future moment held by a task of lower
//! priority; that task books again, at the end, when it comes back and finds it gone.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::task::TaskId;

/// A booked moment; `seq` tells apart moments booked for the same instant (a burst).
type Slot = (Instant, u64);

#[derive(Debug, Default)]
pub(crate) struct Bookings {
    /// foldhash, not SipHash: asked on every admission (task ids are the pool's own).
    by_task: HashMap<TaskId, Slot, foldhash::fast::RandomState>,
    by_moment: BTreeMap<Slot, (TaskId, i32)>,
    /// How many future-or-due bookings each priority holds: the scan for a moment to take
    /// over runs only if some booking has a lower priority than the newcomer.
    priorities: BTreeMap<i32, usize>,
    next_seq: u64,
}

impl Bookings {
    pub(crate) fn len(&self) -> usize {
        self.by_task.len()
    }

    /// The moment booked for `task`, if any.
    pub(crate) fn get(&self, task: TaskId) -> Option<Instant> {
        // Under the load's rate nothing is booked: no hashing for the common case.
        if self.by_task.is_empty() {
            return None;
        }
        self.by_task.get(&task).map(|&(at, _)| at)
    }

    pub(crate) fn insert(&mut self, task: TaskId, priority: i32, at: Instant) {
        self.remove(task);
        let slot = (at, self.next_seq);
        self.next_seq += 1;
        self.by_task.insert(task, slot);
        self.by_moment.insert(slot, (task, priority));
        *self.priorities.entry(priority).or_default() += 1;
    }

    /// Removes `task`'s booking and returns its moment.
    pub(crate) fn remove(&mut self, task: TaskId) -> Option<Instant> {
        let slot = self.by_task.remove(&task)?;
        if let Some((_, priority)) = self.by_moment.remove(&slot) {
            self.forget_priority(priority);
        }
        Some(slot.0)
    }

    /// Takes over, for a task of `priority`, the earliest moment after `now` (and at or before
    /// `latest`) booked by a task of lower priority; that task loses its booking.
    pub(crate) fn take_over(
        &mut self,
        priority: i32,
        now: Instant,
        latest: Option<Instant>,
    ) -> Option<Instant> {
        let lowest = *self.priorities.first_key_value()?.0;
        if lowest >= priority {
            return None;
        }
        let (&slot, &(victim, _)) = self
            .by_moment
            .range((now, u64::MAX)..)
            .take_while(|((at, _), _)| latest.is_none_or(|latest| *at <= latest))
            .find(|(_, (_, held_by))| *held_by < priority)?;
        self.remove(victim);
        Some(slot.0)
    }

    /// Drops bookings whose moment passed before `cutoff` (their tasks never came back).
    pub(crate) fn forget_before(&mut self, cutoff: Instant) {
        let stale: Vec<TaskId> = self
            .by_moment
            .range(..(cutoff, 0))
            .map(|(_, &(task, _))| task)
            .collect();
        for task in stale {
            self.remove(task);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.by_task.clear();
        self.by_moment.clear();
        self.priorities.clear();
    }

    fn forget_priority(&mut self, priority: i32) {
        if let Some(count) = self.priorities.get_mut(&priority) {
            *count -= 1;
            if *count == 0 {
                self.priorities.remove(&priority);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_higher_priority_takes_the_earliest_lower_priority_moment() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut bookings = Bookings::default();
        bookings.insert(TaskId(1), 5, now + s(1));
        bookings.insert(TaskId(2), 0, now + s(2));
        bookings.insert(TaskId(3), 0, now + s(3));
        assert_eq!(
            bookings.take_over(0, now, None),
            None,
            "equal priority waits its turn"
        );
        assert_eq!(bookings.take_over(3, now, None), Some(now + s(2)));
        assert_eq!(
            bookings.get(TaskId(2)),
            None,
            "the lower priority task lost its moment"
        );
        assert_eq!(
            bookings.take_over(3, now, Some(now + s(2))),
            None,
            "too far"
        );
        assert_eq!(bookings.take_over(3, now, None), Some(now + s(3)));
        assert_eq!(bookings.take_over(9, now, None), Some(now + s(1)));
        assert_eq!(bookings.len(), 0);
        assert!(bookings.priorities.is_empty());
    }

    #[test]
    fn moments_that_are_due_are_not_taken_over() {
        let now = Instant::now();
        let mut bookings = Bookings::default();
        bookings.insert(TaskId(1), 0, now);
        assert_eq!(bookings.take_over(1, now, None), None);
        assert_eq!(bookings.remove(TaskId(1)), Some(now));
    }

    #[test]
    fn stale_bookings_are_forgotten() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut bookings = Bookings::default();
        bookings.insert(TaskId(1), 0, now);
        bookings.insert(TaskId(2), 0, now + s(5));
        bookings.forget_before(now + s(1));
        assert_eq!(bookings.get(TaskId(1)), None);
        assert_eq!(bookings.get(TaskId(2)), Some(now + s(5)));
        assert_eq!(bookings.len(), 1);
    }
}
