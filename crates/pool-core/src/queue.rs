//! The priority queue with aging. Pure data structure: no async, no clock of its own.
//!
//! Effective priority of a waiting task at time `t`:
//!
//! ```text
//! effective = base + min(max_boost, waited / (aging_interval * multiplier))
//! ```
//!
//! Below the cap, the order of two tasks does not depend on `t` (the `t` term is common to
//! both), so uncapped tasks sit in a heap keyed by `base - enqueued_at / (interval * m)`.
//! All tasks reach the cap after the same wait, so they reach it in enqueue order: a FIFO of
//! uncapped tasks tells which ones cross it, and they move to a second heap keyed by
//! `base + max_boost`. Push and pop are O(log n); removals are lazy (stale heap entries are
//! skipped and compacted away when they outnumber live ones). Only a change of the multiplier
//! re-scores everything, O(n), and the pool rate-limits those.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use slab::Slab;

/// Where a queued task lives, so it can be removed (cancelled) before it is popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueKey {
    slot: usize,
    seq: u64,
}

/// A popped task with what the pool needs to know about its wait.
#[derive(Debug)]
pub(crate) struct Popped<J> {
    pub(crate) job: J,
    pub(crate) enqueued_at: Instant,
}

#[derive(Debug)]
struct Entry<J> {
    job: J,
    priority: i32,
    seq: u64,
    enqueued_at: Instant,
    capped: bool,
}

/// Heap key of an uncapped task: higher score first, then lower sequence (FIFO).
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f64,
    seq: u64,
    slot: usize,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The aging settings the queue needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AgingSettings {
    /// Wait that earns one priority point at multiplier 1.
    pub(crate) interval: Duration,
    /// Largest boost aging can give. 0 turns aging off.
    pub(crate) max_boost: f64,
}

#[derive(Debug)]
pub(crate) struct AgingQueue<J> {
    entries: Slab<Entry<J>>,
    uncapped: BinaryHeap<Scored>,
    capped: BinaryHeap<Scored>,
    /// Uncapped tasks in enqueue order (may hold stale entries).
    order: VecDeque<(u64, usize)>,
    live_uncapped: usize,
    next_seq: u64,
    epoch: Instant,
    aging: AgingSettings,
    multiplier: f64,
}

/// Stale heap entries are compacted once they exceed the live ones by this margin.
const COMPACT_SLACK: usize = 1024;

impl<J> AgingQueue<J> {
    pub(crate) fn new(aging: AgingSettings, epoch: Instant) -> Self {
        Self {
            entries: Slab::new(),
            uncapped: BinaryHeap::new(),
            capped: BinaryHeap::new(),
            order: VecDeque::new(),
            live_uncapped: 0,
            next_seq: 0,
            epoch,
            aging,
            multiplier: 1.0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn aging_on(&self) -> bool {
        self.aging.max_boost > 0.0
    }

    /// Seconds of wait per priority point.
    fn step_secs(&self) -> f64 {
        self.aging.interval.as_secs_f64() * self.multiplier
    }

    fn cap_wait(&self) -> Duration {
        Duration::from_secs_f64(self.aging.max_boost * self.step_secs())
    }

    fn uncapped_score(&self, priority: i32, enqueued_at: Instant) -> f64 {
        let since_epoch = enqueued_at.saturating_duration_since(self.epoch).as_secs_f64();
        f64::from(priority) - since_epoch / self.step_secs()
    }

    fn capped_score(&self, priority: i32) -> f64 {
        f64::from(priority) + self.aging.max_boost
    }

    pub(crate) fn push(&mut self, job: J, priority: i32, now: Instant) -> QueueKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let capped = !self.aging_on();
        let slot = self.entries.insert(Entry {
            job,
            priority,
            seq,
            enqueued_at: now,
            capped,
        });
        if capped {
            let score = self.capped_score(priority);
            self.capped.push(Scored { score, seq, slot });
        } else {
            let score = self.uncapped_score(priority, now);
            self.uncapped.push(Scored { score, seq, slot });
            self.order.push_back((seq, slot));
            self.live_uncapped += 1;
        }
        QueueKey { slot, seq }
    }

    fn is_live(&self, seq: u64, slot: usize, capped: bool) -> bool {
        self.entries
            .get(slot)
            .is_some_and(|e| e.seq == seq && e.capped == capped)
    }

    /// Moves tasks whose wait reached the cap into the capped heap.
    fn promote_capped(&mut self, now: Instant) {
        if !self.aging_on() {
            return;
        }
        let cap_wait = self.cap_wait();
        while let Some(&(seq, slot)) = self.order.front() {
            if !self.is_live(seq, slot, false) {
                self.order.pop_front();
                continue;
            }
            let entry = &self.entries[slot];
            if now.saturating_duration_since(entry.enqueued_at) < cap_wait {
                break;
            }
            let score = self.capped_score(entry.priority);
            self.entries[slot].capped = true;
            self.live_uncapped -= 1;
            self.capped.push(Scored { score, seq, slot });
            self.order.pop_front();
        }
    }

    fn top(heap: &mut BinaryHeap<Scored>, entries: &Slab<Entry<J>>, capped: bool) -> Option<Scored> {
        while let Some(&top) = heap.peek() {
            let live = entries
                .get(top.slot)
                .is_some_and(|e| e.seq == top.seq && e.capped == capped);
            if live {
                return Some(top);
            }
            heap.pop();
        }
        None
    }

    /// Removes and returns the task with the highest effective priority at `now`.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<Popped<J>> {
        self.promote_capped(now);
        let uncapped = Self::top(&mut self.uncapped, &self.entries, false);
        let capped = Self::top(&mut self.capped, &self.entries, true);
        let elapsed = now.saturating_duration_since(self.epoch).as_secs_f64();
        let pick_uncapped = match (uncapped, capped) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(u), Some(c)) => {
                let effective = u.score + elapsed / self.step_secs();
                match effective.total_cmp(&c.score) {
                    Ordering::Greater => true,
                    Ordering::Less => false,
                    Ordering::Equal => u.seq < c.seq,
                }
            }
        };
        let chosen = if pick_uncapped {
            self.uncapped.pop()
        } else {
            self.capped.pop()
        }?;
        let entry = self.entries.remove(chosen.slot);
        if !entry.capped {
            self.live_uncapped -= 1;
        }
        self.compact();
        Some(Popped {
            job: entry.job,
            enqueued_at: entry.enqueued_at,
        })
    }

    /// Removes a task that is still queued (e.g. cancelled). `None` if it already left.
    pub(crate) fn remove(&mut self, key: QueueKey) -> Option<J> {
        let live = self
            .entries
            .get(key.slot)
            .is_some_and(|e| e.seq == key.seq);
        if !live {
            return None;
        }
        let entry = self.entries.remove(key.slot);
        if !entry.capped {
            self.live_uncapped -= 1;
        }
        self.compact();
        Some(entry.job)
    }

    /// Removes every task, in no particular order.
    pub(crate) fn drain_all(&mut self) -> Vec<J> {
        self.uncapped.clear();
        self.capped.clear();
        self.order.clear();
        self.live_uncapped = 0;
        self.entries.drain().map(|e| e.job).collect()
    }

    fn compact(&mut self) {
        let live_capped = self.entries.len() - self.live_uncapped;
        if self.uncapped.len() > 2 * self.live_uncapped + COMPACT_SLACK {
            let entries = &self.entries;
            self.uncapped
                .retain(|s| entries.get(s.slot).is_some_and(|e| e.seq == s.seq && !e.capped));
        }
        if self.capped.len() > 2 * live_capped + COMPACT_SLACK {
            let entries = &self.entries;
            self.capped
                .retain(|s| entries.get(s.slot).is_some_and(|e| e.seq == s.seq && e.capped));
        }
        if self.order.len() > 2 * self.live_uncapped + COMPACT_SLACK {
            let entries = &self.entries;
            self.order
                .retain(|&(seq, slot)| entries.get(slot).is_some_and(|e| e.seq == seq && !e.capped));
        }
    }

    /// Changes the aging multiplier and re-scores every queued task: O(n), so callers should
    /// rate-limit it. A task's capped state is recomputed, since the cap wait scales with `m`.
    pub(crate) fn set_multiplier(&mut self, multiplier: f64, now: Instant) {
        if multiplier == self.multiplier || !multiplier.is_finite() || multiplier <= 0.0 {
            return;
        }
        self.multiplier = multiplier;
        if !self.aging_on() {
            return;
        }
        let cap_wait = self.cap_wait();
        self.uncapped.clear();
        self.capped.clear();
        self.order.clear();
        self.live_uncapped = 0;
        let mut order = Vec::new();
        for (slot, entry) in self.entries.iter_mut() {
            let capped = now.saturating_duration_since(entry.enqueued_at) >= cap_wait;
            entry.capped = capped;
            if !capped {
                order.push((entry.seq, slot));
            }
        }
        order.sort_unstable();
        let mut uncapped = Vec::with_capacity(order.len());
        let mut capped = Vec::with_capacity(self.entries.len() - order.len());
        for (slot, entry) in self.entries.iter() {
            let (heap, score) = if entry.capped {
                (&mut capped, self.capped_score(entry.priority))
            } else {
                (&mut uncapped, self.uncapped_score(entry.priority, entry.enqueued_at))
            };
            heap.push(Scored {
                score,
                seq: entry.seq,
                slot,
            });
        }
        self.live_uncapped = order.len();
        self.order = order.into();
        self.uncapped = BinaryHeap::from(uncapped);
        self.capped = BinaryHeap::from(capped);
    }

    /// Effective priority a task with these properties has at `now` (for tests and docs).
    #[cfg(test)]
    fn effective(&self, priority: i32, enqueued_at: Instant, now: Instant) -> f64 {
        let waited = now.saturating_duration_since(enqueued_at).as_secs_f64();
        f64::from(priority) + (waited / self.step_secs()).min(self.aging.max_boost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_boost: f64) -> (AgingQueue<u32>, Instant) {
        let epoch = Instant::now();
        let aging = AgingSettings {
            interval: Duration::from_millis(250),
            max_boost,
        };
        (AgingQueue::new(aging, epoch), epoch)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pop_all(q: &mut AgingQueue<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| q.pop(now).map(|p| p.job)).collect()
    }

    #[test]
    fn higher_priority_pops_first_and_ties_are_fifo() {
        let (mut q, t0) = queue(10.0);
        q.push(1, 0, t0);
        q.push(2, 5, t0);
        q.push(3, 0, t0);
        q.push(4, 5, t0);
        assert_eq!(pop_all(&mut q, t0), vec![2, 4, 1, 3]);
    }

    #[test]
    fn waiting_earns_one_point_per_interval() {
        let (mut q, t0) = queue(10.0);
        q.push(1, 0, t0); // waits 1 s = 4 intervals => effective 4
        q.push(2, 3, t0 + ms(1000)); // fresh, priority 3
        assert_eq!(pop_all(&mut q, t0 + ms(1000)), vec![1, 2]);

        q.push(3, 0, t0 + ms(1000)); // waits 0.5 s => effective 2 < 3
        q.push(4, 3, t0 + ms(1500));
        assert_eq!(pop_all(&mut q, t0 + ms(1500)), vec![4, 3]);
    }

    #[test]
    fn boost_is_capped() {
        let (mut q, t0) = queue(2.0);
        q.push(1, 0, t0); // waited 10 s but boost capped at 2
        let later = t0 + ms(10_000);
        q.push(2, 3, later);
        assert_eq!(pop_all(&mut q, later), vec![2, 1]);
        assert_eq!(q.effective(0, t0, later), 2.0);
    }

    #[test]
    fn capped_tasks_keep_fifo_among_equals() {
        let (mut q, t0) = queue(1.0);
        for i in 0..5 {
            q.push(i, 0, t0 + ms(u64::from(i)));
        }
        assert_eq!(pop_all(&mut q, t0 + ms(60_000)), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn aging_off_is_plain_priority_fifo() {
        let (mut q, t0) = queue(0.0);
        q.push(1, 0, t0);
        q.push(2, 1, t0 + ms(100_000));
        q.push(3, 0, t0 + ms(1));
        assert_eq!(pop_all(&mut q, t0 + ms(200_000)), vec![2, 1, 3]);
    }

    #[test]
    fn removed_tasks_never_pop() {
        let (mut q, t0) = queue(10.0);
        let a = q.push(1, 0, t0);
        q.push(2, 0, t0);
        assert_eq!(q.remove(a), Some(1));
        assert_eq!(q.remove(a), None);
        assert_eq!(q.len(), 1);
        assert_eq!(pop_all(&mut q, t0), vec![2]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_reused_slot_is_not_confused_with_the_removed_task() {
        let (mut q, t0) = queue(10.0);
        let a = q.push(1, 0, t0);
        q.remove(a);
        let b = q.push(2, 0, t0);
        assert_eq!(q.remove(a), None, "old key must not remove the new task");
        assert_eq!(q.remove(b), Some(2));
    }

    #[test]
    fn multiplier_change_rescoring_keeps_the_formula() {
        let (mut q, t0) = queue(10.0);
        q.push(1, 0, t0);
        q.push(2, 2, t0 + ms(400));
        let now = t0 + ms(500);
        // multiplier 1: task 1 has 2 points, task 2 has 2 + 0.4 => task 2 first.
        // multiplier 0.25: task 1 has 8 points, task 2 has 2 + 1.6 => task 1 first.
        q.set_multiplier(0.25, now);
        assert_eq!(pop_all(&mut q, now), vec![1, 2]);
    }

    #[test]
    fn pop_order_matches_a_brute_force_model() {
        let (mut q, t0) = queue(3.0);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut model: Vec<(u32, i32, Instant, u64)> = Vec::new();
        let mut now = t0;
        let mut seq = 0;
        for id in 0..2_000u32 {
            now += ms(rng.u64(0..40));
            if rng.u8(0..3) == 0 && !model.is_empty() {
                let popped = q.pop(now).expect("queue has tasks").job;
                let best = model
                    .iter()
                    .enumerate()
                    .max_by(|(_, a), (_, b)| {
                        q.effective(a.1, a.2, now)
                            .total_cmp(&q.effective(b.1, b.2, now))
                            .then(b.3.cmp(&a.3))
                    })
                    .map(|(i, _)| i)
                    .expect("model has tasks");
                let expected = model.remove(best).0;
                assert_eq!(popped, expected, "at step {id}");
            } else {
                let priority = rng.i32(-3..4);
                q.push(id, priority, now);
                model.push((id, priority, now, seq));
                seq += 1;
            }
        }
    }

    #[test]
    fn stale_entries_are_compacted() {
        let (mut q, t0) = queue(1.0);
        // Low-priority tasks cross the cap and leave via the capped heap, leaving stale
        // entries in the uncapped heap; they must not accumulate without bound.
        for round in 0..50u64 {
            let now = t0 + ms(round * 1_000);
            for i in 0..100 {
                q.push(i, 0, now);
            }
            let later = now + ms(900);
            while q.pop(later).is_some() {}
        }
        assert!(q.uncapped.len() <= 2 * q.live_uncapped + COMPACT_SLACK);
        assert!(q.order.len() <= 2 * q.live_uncapped + COMPACT_SLACK);
    }
}
