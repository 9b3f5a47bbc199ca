//! The priority queue with aging. Pure data structure: no async, no clock of its own.
//!
//! Effective priority of a waiting task at time `t`:
//!
//! ```text
//! effective = base + min(max_boost, waited / (aging_interval * multiplier))
//! ```
//!
//! Tasks of one base priority age at the same rate, so among them the oldest always has the
//! highest effective priority: each priority level is a FIFO. A pop compares only the heads
//! of the levels, with the formula evaluated at `now` and the current multiplier, so aging is
//! exact, a multiplier change costs nothing, push is O(log L) and pop O(L), where L is the
//! number of distinct priorities waiting (usually a handful) — never O(n) in queued tasks.
//! Levels are kept (with their buffers) after they empty, so a queue that keeps draining and
//! refilling allocates nothing; a few empty levels are allowed before they are swept.
//! Removal (cancellation) finds the task by its position in its level (levels number their
//! slots consecutively) and leaves a tombstone that pops skip.
//!
//! A slot is 24 bytes: the task reference and when it entered the queue, in the engine's
//! [`Ticks`] (nanoseconds since its epoch). Among heads with equal effective priority the one
//! that entered earlier wins, then the higher base priority.

use std::collections::VecDeque;
use std::time::Duration;

use crate::engine::ticks::Ticks;

/// Where a queued task lives, so it can be removed (cancelled) before it is popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueKey {
    priority: i32,
    /// Which incarnation of the level (a level swept away and made again is a new one).
    generation: u64,
    seq: u64,
}

/// A popped task with what the pool needs to know about its wait.
#[derive(Debug)]
pub(crate) struct Popped<J> {
    pub(crate) job: J,
    pub(crate) enqueued_at: Ticks,
}

#[derive(Debug)]
struct Slot<J> {
    /// Nanoseconds since the engine's epoch.
    enqueued_at: u64,
    /// `None` once removed (a tombstone).
    job: Option<J>,
}

#[derive(Debug)]
struct Level<J> {
    slots: VecDeque<Slot<J>>,
    live: usize,
    generation: u64,
    /// Sequence number the next push gets; the front slot's is `next_seq - slots.len()`.
    next_seq: u64,
}

impl<J> Level<J> {
    /// The oldest live slot, dropping tombstones in front of it.
    fn head(&mut self) -> Option<&Slot<J>> {
        while self.slots.front().is_some_and(|slot| slot.job.is_none()) {
            self.slots.pop_front();
        }
        self.slots.front()
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        let front = self.next_seq - self.slots.len() as u64;
        (front..self.next_seq)
            .contains(&seq)
            .then(|| (seq - front) as usize)
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

/// Empty levels tolerated before they are swept out of the scan.
const MAX_EMPTY_LEVELS: usize = 8;

#[derive(Debug)]
pub(crate) struct AgingQueue<J> {
    /// Sorted by priority; may contain up to `MAX_EMPTY_LEVELS` empty levels.
    levels: Vec<(i32, Level<J>)>,
    len: usize,
    next_generation: u64,
    aging: AgingSettings,
    multiplier: f64,
}

impl<J> AgingQueue<J> {
    /// An empty queue.
    pub(crate) fn new(aging: AgingSettings) -> Self {
        Self {
            levels: Vec::new(),
            len: 0,
            next_generation: 0,
            aging,
            multiplier: 1.0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether tasks of more than one priority may be waiting (aging has something to
    /// weigh). Levels emptied lately may still count.
    pub(crate) fn has_several_levels(&self) -> bool {
        self.levels.len() > 1
    }

    /// Seconds of wait per priority point.
    fn step_secs(&self) -> f64 {
        self.aging.interval.as_secs_f64() * self.multiplier
    }

    #[cfg(test)]
    fn effective(&self, priority: i32, enqueued_at: Ticks, now: Ticks) -> f64 {
        effective(
            priority,
            enqueued_at.nanos(),
            now.nanos(),
            self.step_secs(),
            self.aging.max_boost,
        )
    }

    pub(crate) fn push(&mut self, job: J, priority: i32, now: Ticks) -> QueueKey {
        let enqueued_at = now.nanos();
        let index = match self.levels.binary_search_by_key(&priority, |(p, _)| *p) {
            Ok(index) => index,
            Err(index) => {
                let level = Level {
                    slots: VecDeque::new(),
                    live: 0,
                    generation: self.next_generation,
                    next_seq: 0,
                };
                self.next_generation += 1;
                self.levels.insert(index, (priority, level));
                index
            }
        };
        let level = &mut self.levels[index].1;
        let seq = level.next_seq;
        level.next_seq += 1;
        level.slots.push_back(Slot {
            enqueued_at,
            job: Some(job),
        });
        level.live += 1;
        self.len += 1;
        QueueKey {
            priority,
            generation: level.generation,
            seq,
        }
    }

    /// Removes and returns the task with the highest effective priority at `now`
    /// (the earliest enqueued among equals).
    pub(crate) fn pop(&mut self, now: Ticks) -> Option<Popped<J>> {
        if let [(_, level)] = self.levels.as_mut_slice() {
            // One priority level: the oldest task is the answer; no aging arithmetic.
            level.head()?;
            return self.pop_level(0);
        }
        let now = now.nanos();
        let (step, max_boost) = (self.step_secs(), self.aging.max_boost);
        // (index, effective, enqueued_at); levels are scanned from the highest priority,
        // so on a full tie the higher base priority stays best.
        let mut best: Option<(usize, f64, u64)> = None;
        for (index, (priority, level)) in self.levels.iter_mut().enumerate().rev() {
            let Some(head) = level.head() else {
                continue;
            };
            let at = head.enqueued_at;
            let effective = effective(*priority, at, now, step, max_boost);
            let better = match best {
                None => true,
                Some((_, best_effective, best_at)) => {
                    effective > best_effective || (effective == best_effective && at < best_at)
                }
            };
            if better {
                best = Some((index, effective, at));
            }
        }
        let (index, _, _) = best?;
        self.pop_level(index)
    }

    fn pop_level(&mut self, index: usize) -> Option<Popped<J>> {
        let level = &mut self.levels[index].1;
        let slot = level.slots.pop_front()?;
        level.live -= 1;
        if level.live == 0 {
            level.slots.clear();
            self.sweep_empty_levels();
        }
        self.len -= 1;
        Some(Popped {
            job: slot.job?,
            enqueued_at: Ticks::from_nanos(slot.enqueued_at),
        })
    }

    /// Removes a task that is still queued (e.g. cancelled). `None` if it already left.
    pub(crate) fn remove(&mut self, key: QueueKey) -> Option<Popped<J>> {
        let at = self
            .levels
            .binary_search_by_key(&key.priority, |(p, _)| *p)
            .ok()?;
        let level = &mut self.levels[at].1;
        if level.generation != key.generation {
            return None;
        }
        let index = level.index_of(key.seq)?;
        let slot = &mut level.slots[index];
        let job = slot.job.take()?;
        let enqueued_at = slot.enqueued_at;
        level.live -= 1;
        if level.live == 0 {
            level.slots.clear();
            self.sweep_empty_levels();
        }
        self.len -= 1;
        Some(Popped {
            job,
            enqueued_at: Ticks::from_nanos(enqueued_at),
        })
    }

    /// Drops empty levels once there are more than a few, so pops never scan many.
    fn sweep_empty_levels(&mut self) {
        let empty = self.levels.iter().filter(|(_, l)| l.live == 0).count();
        if empty > MAX_EMPTY_LEVELS {
            self.levels.retain(|(_, level)| level.live > 0);
        }
    }

    /// Removes every task, in no particular order.
    pub(crate) fn drain_all(&mut self) -> Vec<Popped<J>> {
        self.len = 0;
        std::mem::take(&mut self.levels)
            .into_iter()
            .flat_map(|(_, level)| level.slots)
            .filter_map(|slot| {
                Some(Popped {
                    job: slot.job?,
                    enqueued_at: Ticks::from_nanos(slot.enqueued_at),
                })
            })
            .collect()
    }

    /// Changes the aging multiplier; it applies from the next pop.
    pub(crate) fn set_multiplier(&mut self, multiplier: f64) {
        if multiplier.is_finite() && multiplier > 0.0 {
            self.multiplier = multiplier;
        }
    }
}

/// `base + min(max_boost, waited / step)`; `max_boost == 0` is strict priority. Times in
/// nanoseconds.
fn effective(priority: i32, enqueued_at: u64, now: u64, step: f64, max_boost: f64) -> f64 {
    let boost = if max_boost > 0.0 {
        let waited = now.saturating_sub(enqueued_at) as f64 / 1e9;
        (waited / step).min(max_boost)
    } else {
        0.0
    };
    f64::from(priority) + boost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_boost: f64) -> (AgingQueue<u32>, Ticks) {
        let aging = AgingSettings {
            interval: Duration::from_millis(250),
            max_boost,
        };
        (AgingQueue::new(aging), Ticks::default())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pop_all(q: &mut AgingQueue<u32>, now: Ticks) -> Vec<u32> {
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
        assert_eq!(q.remove(a).map(|p| p.job), Some(1));
        assert!(q.remove(a).is_none());
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
        assert!(
            q.remove(a).is_none(),
            "old key must not remove the new task"
        );
        assert_eq!(q.remove(b).map(|p| p.job), Some(2));
    }

    #[test]
    fn a_key_of_a_swept_level_does_not_remove_from_its_successor() {
        let (mut q, t0) = queue(10.0);
        let old = q.push(1, 0, t0);
        assert_eq!(pop_all(&mut q, t0), vec![1]);
        // Empty more levels than are kept, so level 0 is swept away, then made again.
        for p in 1..=(MAX_EMPTY_LEVELS as i32 + 1) {
            q.push(100, p, t0);
        }
        pop_all(&mut q, t0);
        let new = q.push(2, 0, t0);
        assert!(
            q.remove(old).is_none(),
            "a key of the old level must not remove"
        );
        assert_eq!(q.remove(new).map(|p| p.job), Some(2));
    }

    #[test]
    fn multiplier_change_rescoring_keeps_the_formula() {
        let (mut q, t0) = queue(10.0);
        q.push(1, 0, t0);
        q.push(2, 2, t0 + ms(400));
        let now = t0 + ms(500);
        // multiplier 1: task 1 has 2 points, task 2 has 2 + 0.4 => task 2 first.
        // multiplier 0.25: task 1 has 8 points, task 2 has 2 + 1.6 => task 1 first.
        q.set_multiplier(0.25);
        assert_eq!(pop_all(&mut q, now), vec![1, 2]);
    }

    #[test]
    fn pop_order_matches_a_brute_force_model() {
        let (mut q, t0) = queue(3.0);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut model: Vec<(u32, i32, Ticks, u64)> = Vec::new();
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
                            .then(b.2.cmp(&a.2))
                            .then(a.1.cmp(&b.1))
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
    fn tombstones_do_not_accumulate() {
        let (mut q, t0) = queue(1.0);
        let keys: Vec<_> = (0..1_000).map(|i| q.push(i, i as i32 % 3, t0)).collect();
        for key in keys.iter().skip(1) {
            assert!(q.remove(*key).is_some());
        }
        assert_eq!(q.len(), 1);
        assert_eq!(pop_all(&mut q, t0), vec![0]);
        assert!(
            q.levels.iter().all(|(_, level)| level.slots.is_empty()),
            "emptied levels hold no tombstones"
        );
    }
}
