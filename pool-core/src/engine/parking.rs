//! Parking: tasks out of the queue until a moment — in retry backoff, or deferred by an
//! admission policy — in one ordered set (a slab and a binary heap) with one timer per pool,
//! instead of a sleeping future per task, so a parked task costs about what a queued one
//! does. When a task is due the timer queues it again; a task deferred with a [`Wakeup`] is
//! also queued again when its policy fires it, whichever comes first (the entry's key is
//! unique, so a wakeup for a task that already left finds nothing and does nothing). A task
//! cancelled or stopped while parked abandons its wakeup, which tells its policy not to wait
//! for it.
//!
//! The set is the only owner of the `retrying` and `deferred` counts. A task is counted from
//! the moment the engine decides to park it ([`ParkedSet::reserve`], under the engine's lock)
//! until it leaves: the [`Reservation`] is then either turned into an entry
//! ([`ParkedSet::insert`]) or given back ([`ParkedSet::release`], when the pool stopped or the
//! task was cancelled meanwhile), and an entry leaves by [`pop_due`](ParkedSet::pop_due),
//! [`remove`](ParkedSet::remove) or [`drain_all`](ParkedSet::drain_all). Each of those moves
//! exactly one count, and a reservation can be used once (it is not `Clone`), so no path can
//! count a task out twice — whatever runs in between (a `stop()` on another thread).

use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::future::select;
use slab::Slab;

use crate::admission::Wakeup;
use crate::deadline;

use super::ending::TaskEnd;
use super::job::{Job, TaskRef};
use super::state::{Place, State, DEADLINE_PASSED};
use super::timeline::Timeline;
use super::{Engine, Now};
use crate::sync::MutexGuard;

/// Why a task is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parked {
    /// In retry backoff.
    Retrying,
    /// Until an admission policy's moment for it.
    Deferred,
}

/// Where a parked task sits: its entry in the set, and which occupant of that entry it is
/// (an entry freed and taken again is a new one: a stale key finds nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParkKey {
    index: u32,
    seq: u64,
}

/// A reservation ([`ParkedSet::reserve`]) is counted until it is inserted or released.
#[derive(Debug)]
#[must_use = "a reservation is counted until it is inserted or released"]
pub(super) struct Reservation {
    parked: Parked,
}

/// A parked task, why, and the wakeup its policy may fire.
struct Entry {
    task: TaskRef,
    wakeup: Option<Wakeup>,
    /// Its key's `seq` (which tells this occupant from earlier and later ones of the entry)
    /// shifted left by one, and in the lowest bit why it is parked (1: deferred): one word,
    /// where the two fields apart padded the entry to 32 bytes.
    seq_and_kind: u64,
}

impl Entry {
    fn new(task: TaskRef, wakeup: Option<Wakeup>, seq: u64, parked: Parked) -> Self {
        debug_assert!(seq < 1 << 63, "2^63 tasks parked");
        let kind = match parked {
            Parked::Retrying => 0,
            Parked::Deferred => 1,
        };
        Self {
            task,
            wakeup,
            seq_and_kind: seq << 1 | kind,
        }
    }

    fn seq(&self) -> u64 {
        self.seq_and_kind >> 1
    }

    fn parked(&self) -> Parked {
        if self.seq_and_kind & 1 == 0 {
            Parked::Retrying
        } else {
            Parked::Deferred
        }
    }
}

/// A parked task's place in the order: its moment, then the order it was parked in.
/// Removing a task leaves its `Due` behind (lazy deletion): it is skipped when it comes to
/// the top, so the heap's top is always a task still parked.
///
/// The moment is kept as nanoseconds since the set's epoch in 96 bits (`at_hi`, `at_lo`;
/// see [`deadline::nanos_since`]), exact for every `Instant`, beside the index: 24 bytes
/// where an `Instant` field made 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    at_lo: u64,
    seq: u64,
    at_hi: u32,
    index: u32,
}

impl Due {
    fn new(nanos: u128, seq: u64, index: u32) -> Self {
        Self {
            at_lo: nanos as u64,
            seq,
            // An `Instant`'s distance from another fits in 96 bits.
            at_hi: u32::try_from(nanos >> 64).unwrap_or(u32::MAX),
            index,
        }
    }

    /// Nanoseconds since the set's epoch.
    fn nanos(&self) -> u128 {
        u128::from(self.at_hi) << 64 | u128::from(self.at_lo)
    }
}

impl Ord for Due {
    /// Reversed, so the max-heap gives the earliest moment first (the earliest parked
    /// among equal moments).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at_hi, other.at_lo, other.seq).cmp(&(self.at_hi, self.at_lo, self.seq))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Parked tasks in the order they are due, and the counts of parked tasks by kind: the
/// tasks in a slab (reused entries, 24 bytes each), their order in a binary heap of 24-byte
/// [`Due`]s — about 50 bytes a parked task, against 100 or more for an ordered map's nodes.
pub(super) struct ParkedSet {
    /// Where the moments in `order` count from (the engine's epoch: nothing is parked
    /// until earlier).
    epoch: Instant,
    entries: Slab<Entry>,
    order: BinaryHeap<Due>,
    /// `Due`s left behind by tasks that left before their moment.
    stale: usize,
    next_seq: u64,
    /// Entries and reservations of each kind.
    retrying: usize,
    deferred: usize,
}

impl std::fmt::Debug for ParkedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedSet")
            .field("parked", &self.entries.len())
            .field("retrying", &self.retrying)
            .field("deferred", &self.deferred)
            .field("next_due", &self.next_due())
            .finish()
    }
}

impl ParkedSet {
    /// An empty set whose moments count from `epoch`.
    pub(super) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            entries: Slab::new(),
            order: BinaryHeap::new(),
            stale: 0,
            next_seq: 0,
            retrying: 0,
            deferred: 0,
        }
    }

    /// Tasks in retry backoff (reserved or parked).
    pub(super) fn retrying(&self) -> usize {
        self.retrying
    }

    /// Tasks deferred by admission (reserved or parked).
    pub(super) fn deferred(&self) -> usize {
        self.deferred
    }

    fn count(&mut self, parked: Parked) -> &mut usize {
        match parked {
            Parked::Retrying => &mut self.retrying,
            Parked::Deferred => &mut self.deferred,
        }
    }

    /// Counts a task as parked before it is inserted.
    pub(super) fn reserve(&mut self, parked: Parked) -> Reservation {
        *self.count(parked) += 1;
        Reservation { parked }
    }

    /// Gives a reservation back: the task resolves instead of parking.
    pub(super) fn release(&mut self, reservation: Reservation) {
        self.uncount(reservation.parked);
    }

    fn uncount(&mut self, parked: Parked) {
        let count = self.count(parked);
        debug_assert!(*count > 0, "a parked task counted out twice");
        *count = count.saturating_sub(1);
    }

    /// Parks a reserved task until `until` (or its `wakeup`).
    ///
    /// # Panics
    ///
    /// With 2^32 tasks parked at once (hundreds of gigabytes of them).
    pub(super) fn insert(
        &mut self,
        reservation: Reservation,
        task: TaskRef,
        until: Instant,
        wakeup: Option<Wakeup>,
    ) -> ParkKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let index = self
            .entries
            .insert(Entry::new(task, wakeup, seq, reservation.parked));
        let index = u32::try_from(index).expect("fewer than 2^32 tasks parked at once");
        self.order.push(Due::new(
            deadline::nanos_since(self.epoch, until),
            seq,
            index,
        ));
        ParkKey { index, seq }
    }

    /// Takes the entry `key` names out, if it is still that task's.
    fn take(&mut self, key: ParkKey) -> Option<Entry> {
        let index = key.index as usize;
        if self.entries.get(index)?.seq() != key.seq {
            return None;
        }
        let entry = self.entries.remove(index);
        self.uncount(entry.parked());
        // Its `Due` stays behind until it comes to the top.
        self.stale += 1;
        self.drop_stale();
        Some(entry)
    }

    /// Whether `due` belongs to a task still parked.
    fn is_live(entries: &Slab<Entry>, due: &Due) -> bool {
        entries
            .get(due.index as usize)
            .is_some_and(|entry| entry.seq() == due.seq)
    }

    /// Keeps the heap's top live, and rebuilds the heap once most of it is stale (tasks that
    /// left long before their moment), so stale `Due`s never outnumber parked tasks by much.
    fn drop_stale(&mut self) {
        while let Some(top) = self.order.peek() {
            if Self::is_live(&self.entries, top) {
                break;
            }
            self.order.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        if self.stale > 64 && self.stale > self.entries.len() {
            let entries = &self.entries;
            self.order.retain(|due| Self::is_live(entries, due));
            self.stale = 0;
        }
    }

    /// Takes the task parked at `key` out, because it was woken: its wakeup has served.
    pub(super) fn remove_woken(&mut self, key: ParkKey) -> Option<TaskRef> {
        self.take(key).map(|entry| entry.task)
    }

    /// Takes the task parked at `key` out for good (it was cancelled): its wakeup, if any,
    /// is abandoned.
    pub(super) fn remove_leaving(&mut self, key: ParkKey) -> Option<TaskRef> {
        let entry = self.take(key)?;
        if let Some(wakeup) = entry.wakeup {
            wakeup.abandon();
        }
        Some(entry.task)
    }

    /// The earliest moment a task is parked until.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.order
            .peek()
            .map(|top| deadline::at_nanos(self.epoch, top.nanos()))
    }

    /// Takes the first task due at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TaskRef> {
        let now = deadline::nanos_since(self.epoch, now);
        loop {
            let top = *self.order.peek()?;
            if !Self::is_live(&self.entries, &top) {
                // Kept off the top by `drop_stale`; skipped all the same.
                self.order.pop();
                self.stale = self.stale.saturating_sub(1);
                continue;
            }
            if top.nanos() > now {
                return None;
            }
            self.order.pop();
            let entry = self.entries.remove(top.index as usize);
            self.uncount(entry.parked());
            self.drop_stale();
            return Some(entry.task);
        }
    }

    /// Takes every task out for good, in the order they are due (their wakeups are
    /// abandoned). Reservations stay counted: their holders give them back.
    pub(super) fn drain_all(&mut self) -> Vec<TaskRef> {
        let mut order = std::mem::take(&mut self.order).into_vec();
        order.sort_unstable_by_key(|due| (due.at_hi, due.at_lo, due.seq));
        self.stale = 0;
        let mut drained = Vec::with_capacity(self.entries.len());
        for due in order {
            if !Self::is_live(&self.entries, &due) {
                continue;
            }
            let entry = self.entries.remove(due.index as usize);
            self.uncount(entry.parked());
            if let Some(wakeup) = entry.wakeup {
                wakeup.abandon();
            }
            drained.push(entry.task);
        }
        drained
    }
}

impl Engine {
    /// Parks `job` until `until` with the reservation that counts it, or ends it if the pool
    /// stopped (`Stopped`) or its token fired (`Cancelled`) since the decision: both are
    /// checked under the lock the parking takes, so a `stop()` or a cancellation between the
    /// decision and here is never missed. Starts the timer, or wakes it if it sleeps past
    /// `until` (or past the task's deadline, if that comes first).
    pub(super) fn park_until(self: &Arc<Self>, job: Job, until: Instant, reservation: Reservation) {
        self.park(job, until, reservation, None);
    }

    /// Parks like [`park_until`](Self::park_until), and queues the task again when `wakeup`
    /// fires if that comes first (at once if it fired already).
    pub(super) fn park_until_woken(
        self: &Arc<Self>,
        job: Job,
        until: Instant,
        reservation: Reservation,
        wakeup: &Wakeup,
    ) {
        if let Some(key) = self.park(job, until, reservation, Some(wakeup.clone())) {
            // Weak: a policy may keep a wakeup longer than the pool lives.
            let engine = Arc::downgrade(self);
            wakeup.on_wake(move || Self::woken(&engine, key));
        }
    }

    /// A parked task's wakeup fired: it is queued again, if it is still parked.
    fn woken(engine: &Weak<Self>, key: ParkKey) {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let now = engine.now();
        let started = {
            let mut state = engine.lock();
            let Some(task) = state.parked.remove_woken(key) else {
                return;
            };
            let waiting = task.waiting();
            state.push(task, &waiting, now);
            state.take_startable(
                &mut Now::at(&engine, now),
                engine.settings.aging_target_wait,
            )
        };
        engine.spawn_runners(started);
    }

    /// Parks `job`; its key in the set, or `None` if it ended instead (then its wakeup is
    /// abandoned).
    fn park(
        self: &Arc<Self>,
        job: Job,
        until: Instant,
        reservation: Reservation,
        wakeup: Option<Wakeup>,
    ) -> Option<ParkKey> {
        let mut state = self.lock();
        let end = if state.stopped {
            Some(TaskEnd::Stopped)
        } else if job.task().is_cancelled() {
            Some(TaskEnd::Cancelled)
        } else {
            None
        };
        if let Some(end) = end {
            state.parked.release(reservation);
            if let Some(wakeup) = wakeup {
                wakeup.abandon();
            }
            let sequence = state.counters.resolved();
            state.counters.ended(&end);
            let idle = state.is_idle();
            drop(state);
            let now = self.now();
            self.finish(
                job,
                end,
                &mut Now::at(self, now),
                &Timeline::waiting(now),
                None,
                sequence,
            );
            if idle {
                self.notify_idle();
            }
            return None;
        }
        let waiting = job.task().waiting();
        let id = job.task().id();
        let key = state
            .parked
            .insert(reservation, job.into_ref(), until, wakeup);
        state.placed(id, &waiting, Place::Parked(key));
        // A task parked past its deadline (a retry waiting for a budget token, a deferral)
        // ends at the deadline: the timer must wake by then, not only by `until`.
        let wake_by = waiting
            .deadline
            .map_or(until, |deadline| deadline.min(until));
        self.arm_timer(state, wake_by);
        Some(key)
    }

    /// Makes sure the timer wakes by `until`: starts it, or wakes it if it sleeps past then.
    /// Takes the lock's guard to release it before spawning.
    pub(super) fn arm_timer(self: &Arc<Self>, mut state: MutexGuard<'_, State>, until: Instant) {
        match state.timer {
            None => {
                state.timer = Some(until);
                drop(state);
                let engine = Arc::clone(self);
                if !self.spawn(
                    "the timer",
                    Box::pin(async move { engine.run_timer().await }),
                ) {
                    // The next park or deadline tries again.
                    self.lock().timer = None;
                }
            }
            Some(armed) if until < armed => {
                state.timer = Some(until);
                drop(state);
                self.timer_wake.notify_one();
            }
            Some(_) => {}
        }
    }

    /// The pool's timer: ends waiting tasks whose deadline passed, and queues parked tasks as
    /// they fall due, sleeping until the next of either; ends when there is neither (a new
    /// park or deadline starts it again).
    async fn run_timer(self: Arc<Self>) {
        loop {
            let notified = self.timer_wake.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the state is read, so a wake-up in between is not lost.
            notified.as_mut().enable();
            let now = self.executor.now();
            let ticks = self.epoch.ticks(now);
            let (started, (expired, expired_from), idle, next) = {
                let mut state = self.lock();
                // First, so a task due back from parking past its deadline is not queued.
                // Each is counted as it expires, so numbered in this order.
                let expired_from = state.counters.resolved();
                let expired = state.expire(now);
                while let Some(task) = state.parked.pop_due(now) {
                    let waiting = task.waiting();
                    state.push(task, &waiting, ticks);
                }
                let started = state
                    .take_startable(&mut Now::at(&self, ticks), self.settings.aging_target_wait);
                state.timer = state.next_wake();
                let idle = !expired.is_empty() && state.is_idle();
                (started, (expired, expired_from), idle, state.timer)
            };
            self.spawn_runners(started);
            for ((task, stay), sequence) in expired.into_iter().zip(expired_from..) {
                self.finish_waiting(task, DEADLINE_PASSED, ticks, &stay, None, sequence);
            }
            if idle {
                self.notify_idle();
            }
            let Some(next) = next else {
                return;
            };
            let sleep = self.executor.sleep(next.saturating_duration_since(now));
            select(sleep, notified).await;
        }
    }
}

#[cfg(all(test, not(shuttle)))]
mod tests {
    use super::*;
    use crate::engine::job::testing::Inert;
    use std::time::Duration;

    /// A task that is only ever parked, never run.
    fn task() -> TaskRef {
        TaskRef::new(Inert::<()>::default())
    }

    #[test]
    fn a_task_is_counted_from_its_reservation_until_it_leaves() {
        let now = Instant::now();
        let mut set = ParkedSet::new(now);
        let retry = set.reserve(Parked::Retrying);
        let defer = set.reserve(Parked::Deferred);
        assert_eq!((set.retrying(), set.deferred()), (1, 1));
        let key = set.insert(retry, task(), now + Duration::from_millis(5), None);
        set.insert(defer, task(), now, None);
        assert_eq!((set.retrying(), set.deferred()), (1, 1));
        assert!(set.pop_due(now).is_some(), "the deferred one is due");
        assert_eq!((set.retrying(), set.deferred()), (1, 0));
        assert!(set.pop_due(now).is_none());
        assert!(set.remove_leaving(key).is_some());
        assert!(set.remove_woken(key).is_none(), "a key removes once");
        assert_eq!((set.retrying(), set.deferred()), (0, 0));
    }

    /// The race `stop()` used to lose: the engine reserves (decides to retry), the pool
    /// drains the set meanwhile, then the reservation is given back. Each moves one count.
    #[test]
    fn a_drain_between_a_reservation_and_its_release_counts_each_task_out_once() {
        let now = Instant::now();
        let mut set = ParkedSet::new(now);
        let parked = set.reserve(Parked::Retrying);
        set.insert(parked, task(), now, None);
        let in_flight = set.reserve(Parked::Retrying);
        assert_eq!(set.retrying(), 2);
        assert_eq!(set.drain_all().len(), 1);
        assert_eq!(set.retrying(), 1, "the reservation is still counted");
        set.release(in_flight);
        assert_eq!((set.retrying(), set.deferred()), (0, 0));
        assert_eq!(set.next_due(), None);
    }

    /// Only a task that leaves for good abandons its wakeup: one woken or due comes back to
    /// its policy.
    #[test]
    fn a_wakeup_is_abandoned_only_when_its_task_leaves_for_good() {
        let now = Instant::now();
        let mut set = ParkedSet::new(now);
        let wakeups: Vec<Wakeup> = (0..4).map(|_| Wakeup::new()).collect();
        let keys: Vec<ParkKey> = wakeups
            .iter()
            .enumerate()
            .map(|(i, wakeup)| {
                let reservation = set.reserve(Parked::Deferred);
                let until = now + Duration::from_millis(i as u64);
                set.insert(reservation, task(), until, Some(wakeup.clone()))
            })
            .collect();
        assert!(set.pop_due(now).is_some(), "the first is due");
        assert!(set.remove_woken(keys[1]).is_some());
        assert!(set.remove_leaving(keys[2]).is_some(), "cancelled");
        assert_eq!(set.drain_all().len(), 1, "stopped");
        let abandoned: Vec<bool> = wakeups.iter().map(Wakeup::is_abandoned).collect();
        assert_eq!(abandoned, [false, false, true, true]);
        assert_eq!(set.deferred(), 0);
    }

    /// Tasks that leave before their moment leave their place in the order behind: it never
    /// comes out, never hides the next task due, is swept before it outgrows the set, and a
    /// stale key does not take the task that reuses its entry.
    #[test]
    fn tasks_that_left_early_are_skipped_and_their_keys_go_stale() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut set = ParkedSet::new(now);
        let keys: Vec<ParkKey> = (0..200)
            .map(|i| {
                let reservation = set.reserve(Parked::Retrying);
                set.insert(reservation, task(), now + ms(i), None)
            })
            .collect();
        for key in &keys[50..] {
            assert!(set.remove_leaving(*key).is_some());
        }
        assert!(
            set.order.len() <= set.entries.len() + 65,
            "{} places in the order for {} tasks",
            set.order.len(),
            set.entries.len()
        );
        assert_eq!(set.next_due(), Some(now));
        let reservation = set.reserve(Parked::Deferred);
        let fresh = set.insert(reservation, task(), now + ms(500), None);
        assert!(keys[50..]
            .iter()
            .all(|key| set.remove_woken(*key).is_none()));
        for key in &keys[..10] {
            assert!(set.remove_woken(*key).is_some());
        }
        assert_eq!(set.next_due(), Some(now + ms(10)));
        let due = std::iter::from_fn(|| set.pop_due(now + ms(1_000))).count();
        assert_eq!(due, 41, "the 40 left of the first 50, and the fresh one");
        assert!(
            set.remove_woken(fresh).is_none(),
            "it came out by its moment"
        );
        assert_eq!((set.retrying(), set.deferred()), (0, 0));
        assert!(set.order.is_empty() && set.entries.is_empty());
    }

    /// A retry "never" (a century after a moment later than the pool's epoch) is due exactly
    /// when it was parked until: a timer woken earlier would find nothing due and spin.
    #[test]
    fn a_moment_a_century_after_a_later_now_is_kept_exactly() {
        let epoch = Instant::now();
        let mut set = ParkedSet::new(epoch);
        let until = crate::deadline::after(epoch + Duration::from_millis(3), Duration::MAX);
        let reservation = set.reserve(Parked::Retrying);
        set.insert(reservation, task(), until, None);
        assert_eq!(set.next_due(), Some(until));
        assert!(set.pop_due(until - Duration::from_nanos(1)).is_none());
        assert!(set.pop_due(until).is_some());
    }

    /// Moments far past what 64 bits of nanoseconds reach (584 years) keep their order and
    /// come back exact: a rate of one task in 10^12 seconds books them.
    #[test]
    fn moments_beyond_64_bits_of_nanoseconds_keep_their_order() {
        let now = Instant::now();
        let mut set = ParkedSet::new(now);
        let far = |secs: u64| now + Duration::from_secs(secs);
        for secs in [3_000_000_000_000, 1_000_000_000_000, 2_000_000_000_000] {
            let reservation = set.reserve(Parked::Deferred);
            set.insert(reservation, task(), far(secs), None);
        }
        assert_eq!(set.next_due(), Some(far(1_000_000_000_000)));
        assert!(set
            .pop_due(far(1_000_000_000_000) - Duration::from_nanos(1))
            .is_none());
        assert!(set.pop_due(far(1_000_000_000_000)).is_some());
        assert_eq!(set.next_due(), Some(far(2_000_000_000_000)));
        assert_eq!(set.deferred(), 2);
    }

    #[test]
    fn tasks_leave_in_the_order_they_are_due() {
        let now = Instant::now();
        let mut set = ParkedSet::new(now);
        for ms in [30, 10, 20, 10] {
            let reservation = set.reserve(Parked::Retrying);
            set.insert(reservation, task(), now + Duration::from_millis(ms), None);
        }
        assert_eq!(set.next_due(), Some(now + Duration::from_millis(10)));
        let due = std::iter::from_fn(|| set.pop_due(now + Duration::from_millis(20))).count();
        assert_eq!(due, 3);
        assert_eq!(set.next_due(), Some(now + Duration::from_millis(30)));
    }

    /// What a parked task costs in the set: a 24-byte entry in the slab and a 24-byte place
    /// in the heap. One more field grows either by 8 bytes and fails here.
    #[cfg(not(shuttle))]
    #[test]
    fn a_parked_task_is_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<Entry>(), 24);
        assert_eq!(size_of::<Due>(), 24);
    }
}
