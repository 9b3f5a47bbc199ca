//! The moments one key has booked for tasks that have not taken them yet.
//!
//! Tasks book in the order they reach the limiter, but a parked task is out of the pool's
//! priority queue: a task of higher priority that arrives later would wait behind every task
//! parked before it. So it takes over the earliest future moment held by a task of lower
//! priority; that task books again, at the end, when it comes back and finds it gone.
//!
//! The schedule hands out moments in order, so the bookings are a queue sorted by moment:
//! a new booking goes at the back, a taken-over moment changes hands where it is, and a
//! booking that is used or dropped leaves a vacant place that is let go once it reaches the
//! front. A task finds its booking by its place's number; a booking is a 24-byte place and
//! a 16-byte map entry, against a hash map's and an ordered map's entries (≈ 135 bytes).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use crate::deadline;
use crate::task::TaskId;

/// A place in the queue of booked moments. The moment is kept as nanoseconds since the
/// bookings' epoch in 95 bits (`at_lo` and the low 31 bits of `at_hi_held`; see
/// [`deadline::nanos_since`]), exact for every `Instant`, and the top bit says whether the
/// place is held: 24 bytes where an `Instant` and a flag made 32.
#[derive(Debug, Clone, Copy)]
struct Place {
    at_lo: u64,
    task: TaskId,
    /// The moment's high bits, and [`HELD`] until the booking is used or dropped (the moment
    /// stays, to keep the order).
    at_hi_held: u32,
    priority: i32,
}

/// The bit of [`Place::at_hi_held`] that says the place is held.
const HELD: u32 = 1 << 31;

impl Place {
    fn new(nanos: u128, task: TaskId, priority: i32) -> Self {
        // An `Instant`'s distance from another fits in 95 bits (its seconds are an `i64`).
        let hi = u32::try_from(nanos >> 64).unwrap_or(u32::MAX) & !HELD;
        Self {
            at_lo: nanos as u64,
            task,
            at_hi_held: hi | HELD,
            priority,
        }
    }

    /// Nanoseconds since the bookings' epoch.
    fn nanos(&self) -> u128 {
        u128::from(self.at_hi_held & !HELD) << 64 | u128::from(self.at_lo)
    }

    fn held(&self) -> bool {
        self.at_hi_held & HELD != 0
    }

    fn let_go(&mut self) {
        self.at_hi_held &= !HELD;
    }
}

#[derive(Debug)]
pub(crate) struct Bookings {
    /// Where the places' moments count from (no moment is booked earlier).
    epoch: Instant,
    /// Sorted by moment (then by booking order among equal moments).
    places: VecDeque<Place>,
    /// The number of `places[0]`: place `n` is at index `n - first`.
    first: u64,
    /// Each booked task's place number. foldhash, not SipHash: asked on every admission
    /// (task ids are the pool's own).
    by_task: HashMap<TaskId, u64, foldhash::fast::RandomState>,
    /// How many future-or-due bookings each priority holds: the scan for a moment to take
    /// over runs only if some booking has a lower priority than the newcomer.
    priorities: BTreeMap<i32, usize>,
}

impl Bookings {
    /// No bookings; moments count from `epoch`.
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            places: VecDeque::new(),
            first: 0,
            by_task: HashMap::default(),
            priorities: BTreeMap::new(),
        }
    }

    fn nanos(&self, at: Instant) -> u128 {
        deadline::nanos_since(self.epoch, at)
    }

    fn instant(&self, nanos: u128) -> Instant {
        deadline::at_nanos(self.epoch, nanos)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_task.len()
    }

    /// The moment booked for `task`, if any.
    #[inline]
    pub(crate) fn get(&self, task: TaskId) -> Option<Instant> {
        // Under the load's rate nothing is booked: no hashing, and no call, for the common
        // case.
        if self.by_task.is_empty() {
            return None;
        }
        self.find(task)
    }

    fn find(&self, task: TaskId) -> Option<Instant> {
        let number = *self.by_task.get(&task)?;
        self.place(number).map(|place| self.instant(place.nanos()))
    }

    /// Books `at` for `task`, after every moment booked so far, and returns the moment
    /// booked: `at`, or the last booked moment if that is later (the schedule hands out
    /// moments in order, so it never is; a later moment never breaks the limit).
    pub(crate) fn insert(&mut self, task: TaskId, priority: i32, at: Instant) -> Instant {
        self.remove(task);
        let at = self.nanos(at);
        let at = self.places.back().map_or(at, |last| at.max(last.nanos()));
        let number = self.first + self.places.len() as u64;
        self.places.push_back(Place::new(at, task, priority));
        self.by_task.insert(task, number);
        *self.priorities.entry(priority).or_default() += 1;
        self.instant(at)
    }

    /// Removes `task`'s booking and returns its moment.
    pub(crate) fn remove(&mut self, task: TaskId) -> Option<Instant> {
        let number = self.by_task.remove(&task)?;
        let place = self.place_mut(number)?;
        place.let_go();
        let (at, priority) = (place.nanos(), place.priority);
        self.forget_priority(priority);
        self.let_go_of_vacant_front();
        Some(self.instant(at))
    }

    /// Takes over, for a task of `priority`, the earliest moment after `now` (and at or before
    /// `latest`) booked by a task of lower priority; that task loses its booking. With
    /// `keep_for`, the moment stays booked, for that task; without, it is used now.
    pub(crate) fn take_over(
        &mut self,
        keep_for: Option<TaskId>,
        priority: i32,
        now: Instant,
        latest: Option<Instant>,
    ) -> Option<Instant> {
        let lowest = *self.priorities.first_key_value()?.0;
        if lowest >= priority {
            return None;
        }
        let (now, latest) = (self.nanos(now), latest.map(|latest| self.nanos(latest)));
        let start = self.places.partition_point(|place| place.nanos() <= now);
        let index = self
            .places
            .range(start..)
            .take_while(|place| latest.is_none_or(|latest| place.nanos() <= latest))
            .position(|place| place.held() && place.priority < priority)?
            + start;
        let number = self.first + index as u64;
        let victim = self.places[index];
        self.by_task.remove(&victim.task);
        self.forget_priority(victim.priority);
        match keep_for {
            Some(task) => {
                // (A task books anew only without a booking; if it had one, it is dropped.)
                self.remove(task);
                self.by_task.insert(task, number);
                *self.priorities.entry(priority).or_default() += 1;
                if let Some(place) = self.place_mut(number) {
                    place.task = task;
                    place.priority = priority;
                }
            }
            None => {
                self.places[index].let_go();
                self.let_go_of_vacant_front();
            }
        }
        Some(self.instant(victim.nanos()))
    }

    /// Drops bookings whose moment passed before `cutoff` (their tasks never came back).
    pub(crate) fn forget_before(&mut self, cutoff: Instant) {
        if cutoff <= self.epoch {
            // Nothing is booked before the epoch.
            return;
        }
        let cutoff = self.nanos(cutoff);
        while let Some(place) = self.places.front().copied() {
            if place.nanos() >= cutoff {
                break;
            }
            if place.held() {
                self.by_task.remove(&place.task);
                self.forget_priority(place.priority);
            }
            self.places.pop_front();
            self.first += 1;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.first += self.places.len() as u64;
        self.places.clear();
        self.by_task.clear();
        self.priorities.clear();
    }

    /// Place `number` (a booked task's place is never let go while it is booked).
    fn place(&self, number: u64) -> Option<&Place> {
        let index = usize::try_from(number.checked_sub(self.first)?).ok()?;
        self.places.get(index)
    }

    fn place_mut(&mut self, number: u64) -> Option<&mut Place> {
        let index = usize::try_from(number.checked_sub(self.first)?).ok()?;
        self.places.get_mut(index)
    }

    /// Vacant places at the front are no longer needed to keep the order.
    fn let_go_of_vacant_front(&mut self) {
        while self.places.front().is_some_and(|place| !place.held()) {
            self.places.pop_front();
            self.first += 1;
        }
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
        let mut bookings = Bookings::new(now);
        bookings.insert(TaskId(1), 5, now + s(1));
        bookings.insert(TaskId(2), 0, now + s(2));
        bookings.insert(TaskId(3), 0, now + s(3));
        assert_eq!(
            bookings.take_over(None, 0, now, None),
            None,
            "equal priority waits its turn"
        );
        assert_eq!(bookings.take_over(None, 3, now, None), Some(now + s(2)));
        assert_eq!(
            bookings.get(TaskId(2)),
            None,
            "the lower priority task lost its moment"
        );
        assert_eq!(
            bookings.take_over(None, 3, now, Some(now + s(2))),
            None,
            "too far"
        );
        assert_eq!(bookings.take_over(None, 3, now, None), Some(now + s(3)));
        assert_eq!(bookings.take_over(None, 9, now, None), Some(now + s(1)));
        assert_eq!(bookings.len(), 0);
        assert!(bookings.priorities.is_empty());
        assert!(bookings.places.is_empty(), "every place was let go");
    }

    #[test]
    fn a_moment_taken_over_stays_booked_for_its_new_task() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut bookings = Bookings::new(now);
        for (id, at) in [(1, 1), (2, 2), (3, 3)] {
            bookings.insert(TaskId(id), 0, now + s(at));
        }
        assert_eq!(
            bookings.take_over(Some(TaskId(9)), 5, now, None),
            Some(now + s(1))
        );
        assert_eq!(bookings.get(TaskId(1)), None);
        assert_eq!(bookings.get(TaskId(9)), Some(now + s(1)));
        assert_eq!(bookings.len(), 3);
        // The moment is held at its new task's priority, by its new task.
        assert_eq!(
            bookings.take_over(Some(TaskId(11)), 3, now, Some(now + s(1))),
            None
        );
        assert_eq!(
            bookings.take_over(Some(TaskId(11)), 7, now, Some(now + s(1))),
            Some(now + s(1))
        );
        assert_eq!(bookings.get(TaskId(9)), None, "task 9 lost it in turn");
        assert_eq!(bookings.remove(TaskId(11)), Some(now + s(1)));
        bookings.insert(TaskId(9), 5, now + s(4));
        // A second newcomer of the same priority cannot take it back, but takes the next.
        assert_eq!(
            bookings.take_over(Some(TaskId(10)), 5, now, None),
            Some(now + s(2))
        );
        assert_eq!(bookings.remove(TaskId(3)), Some(now + s(3)));
        assert_eq!(bookings.get(TaskId(10)), Some(now + s(2)));
        assert_eq!(
            bookings.places.len(),
            3,
            "the front was let go, a hole behind stays"
        );
        assert_eq!(bookings.remove(TaskId(10)), Some(now + s(2)));
        assert_eq!(bookings.remove(TaskId(9)), Some(now + s(4)));
        assert!(bookings.places.is_empty());
        assert!(bookings.priorities.is_empty());
    }

    #[test]
    fn places_are_found_again_after_the_front_moved() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut bookings = Bookings::new(now);
        for id in 0..100 {
            bookings.insert(TaskId(id), 0, now + ms(id));
        }
        // Tasks come back in another order than they booked.
        for id in (0..100).filter(|id| id % 3 == 0) {
            assert_eq!(bookings.remove(TaskId(id)), Some(now + ms(id)));
        }
        bookings.forget_before(now + ms(50));
        for id in 0..100 {
            let expected = (id >= 50 && id % 3 != 0).then(|| now + ms(id));
            assert_eq!(bookings.get(TaskId(id)), expected, "task {id}");
        }
        bookings.clear();
        bookings.insert(TaskId(7), 0, now);
        assert_eq!(bookings.get(TaskId(7)), Some(now));
        assert_eq!(bookings.len(), 1);
    }

    #[test]
    fn a_moment_before_the_last_booked_one_is_booked_after_it() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut bookings = Bookings::new(now);
        assert_eq!(bookings.insert(TaskId(1), 0, now + s(2)), now + s(2));
        assert_eq!(bookings.insert(TaskId(2), 0, now + s(1)), now + s(2));
        assert_eq!(bookings.get(TaskId(2)), Some(now + s(2)));
    }

    /// What a parked task costs here: a 24-byte place (and a 16-byte map entry).
    #[test]
    fn a_booking_is_small() {
        assert_eq!(std::mem::size_of::<Place>(), 24);
    }

    /// A moment 10^12 seconds ahead (a rate of one task in 10^12 s books it) comes back
    /// exact, and a place let go keeps its moment.
    #[test]
    fn far_moments_are_kept_exactly() {
        let now = Instant::now();
        let far = now + Duration::from_secs(1_000_000_000_000);
        let mut bookings = Bookings::new(now);
        assert_eq!(bookings.insert(TaskId(1), 0, far), far);
        assert_eq!(bookings.get(TaskId(1)), Some(far));
        let later = far + Duration::from_nanos(1);
        assert_eq!(bookings.insert(TaskId(2), 0, later), later);
        assert_eq!(bookings.remove(TaskId(1)), Some(far));
        assert_eq!(bookings.get(TaskId(2)), Some(later));
    }

    #[test]
    fn moments_that_are_due_are_not_taken_over() {
        let now = Instant::now();
        let mut bookings = Bookings::new(now);
        bookings.insert(TaskId(1), 0, now);
        assert_eq!(bookings.take_over(None, 1, now, None), None);
        assert_eq!(bookings.remove(TaskId(1)), Some(now));
    }

    #[test]
    fn stale_bookings_are_forgotten() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut bookings = Bookings::new(now);
        bookings.insert(TaskId(1), 0, now);
        bookings.insert(TaskId(2), 0, now + s(5));
        bookings.forget_before(now + s(1));
        assert_eq!(bookings.get(TaskId(1)), None);
        assert_eq!(bookings.get(TaskId(2)), Some(now + s(5)));
        assert_eq!(bookings.len(), 1);
    }
}
