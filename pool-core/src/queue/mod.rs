//! The priority queue with aging, and fair share between tenants within a priority level.
//! Pure data structure: no async, no clock of its own.
//!
//! Effective priority of a waiting task at time `t`:
//!
//! ```text
//! effective = base + min(max_boost, waited / (aging_interval * multiplier))
//! ```
//!
//! Each priority level ([`level`]) holds a lane per tenant ([`lane`]) and says which task it
//! would start next: the head of the lane whose turn it is in its round (deficit round robin
//! between tenants). Without tenants a level has one lane, a FIFO, and its next task is its
//! oldest. A pop compares the levels' next tasks, with the formula evaluated at `now` and the
//! current multiplier — a level's age is the age of the task it would start next, which keeps
//! growing until the level wins — so aging is exact, a multiplier change costs nothing,
//! push is O(log L) and pop O(L), where L is the number of distinct priorities waiting
//! (usually a handful) — never O(n) in queued tasks. Levels are kept (with their buffers)
//! after they empty, so a queue that keeps draining and refilling allocates nothing; a few
//! empty levels are allowed before they are swept. Removal (cancellation) finds the task by
//! its lane and its position there.
//!
//! A slot is 24 bytes: the task reference and when it entered the queue, in the engine's
//! [`Ticks`] (nanoseconds since its epoch). Among next tasks with equal effective priority the
//! one that entered earlier wins, then the higher base priority.
//!
//! With earliest-deadline-first on, each lane orders its tasks by deadline (then FIFO), so
//! fair share decides which tenant starts a task and EDF which of its tasks.

use std::time::Duration;

use crate::engine::ticks::Ticks;

mod lane;
mod level;

use lane::LanePos;
use level::Level;

/// A lane of the queue: which tenant's share a task is served from. The engine hands them
/// out ([`LaneId::DEFAULT`] for tasks that name no tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LaneId(pub(crate) u32);

impl LaneId {
    /// The lane of tasks without a tenant.
    pub(crate) const DEFAULT: LaneId = LaneId(0);
}

/// Where a queued task lives, so it can be removed (cancelled) before it is popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueKey {
    priority: i32,
    lane: LaneId,
    /// Which incarnation of the lane (a lane dropped and made again is a new one).
    generation: u64,
    pos: LanePos,
}

/// A popped task with what the pool needs to know about its wait.
#[derive(Debug)]
pub(crate) struct Popped<J> {
    pub(crate) job: J,
    pub(crate) enqueued_at: Ticks,
    pub(crate) lane: LaneId,
}

/// Where a task goes in the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub(crate) priority: i32,
    pub(crate) lane: LaneId,
    /// The lane's weight (taken when the lane is made or joins its round again).
    pub(crate) weight: u32,
    /// Its deadline, for earliest-deadline-first order.
    pub(crate) deadline: Option<Ticks>,
}

impl Placement {
    /// A task of `priority` without tenant or deadline.
    #[cfg(test)]
    pub(crate) fn plain(priority: i32) -> Self {
        Self {
            priority,
            lane: LaneId::DEFAULT,
            weight: 1,
            deadline: None,
        }
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
    next_lane_generation: u64,
    aging: AgingSettings,
    multiplier: f64,
    /// Lanes order their tasks by deadline.
    edf: bool,
}

impl<J> AgingQueue<J> {
    /// An empty queue. `edf`: each lane orders its tasks by deadline.
    pub(crate) fn new(aging: AgingSettings, edf: bool) -> Self {
        Self {
            levels: Vec::new(),
            len: 0,
            next_lane_generation: 0,
            aging,
            multiplier: 1.0,
            edf,
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

    pub(crate) fn push(&mut self, job: J, placement: Placement, now: Ticks) -> QueueKey {
        let enqueued_at = now.nanos();
        let order = match placement.deadline {
            Some(deadline) if self.edf => deadline.nanos(),
            _ => u64::MAX,
        };
        let priority = placement.priority;
        let index = match self.levels.binary_search_by_key(&priority, |(p, _)| *p) {
            Ok(index) => index,
            Err(index) => {
                self.levels.insert(index, (priority, Level::new(self.edf)));
                index
            }
        };
        let (generation, pos) = self.levels[index].1.push(
            job,
            placement.lane,
            placement.weight,
            &mut self.next_lane_generation,
            enqueued_at,
            order,
        );
        self.len += 1;
        QueueKey {
            priority,
            lane: placement.lane,
            generation,
            pos,
        }
    }

    /// Removes and returns the task with the highest effective priority at `now` among the
    /// levels' next tasks (the earliest enqueued among equals), passing over lanes for which
    /// `may_start` says no. `None` if nothing may start.
    pub(crate) fn pop(
        &mut self,
        now: Ticks,
        may_start: impl Fn(LaneId) -> bool,
    ) -> Option<Popped<J>> {
        if let [(_, level)] = self.levels.as_mut_slice() {
            // One priority level: its next task is the answer; no aging arithmetic.
            let (at, _) = level.candidate(&may_start)?;
            return self.pop_level(0, at);
        }
        let now = now.nanos();
        let (step, max_boost) = (self.step_secs(), self.aging.max_boost);
        // (index, place in its round, effective, enqueued_at); levels are scanned from the
        // highest priority, so on a full tie the higher base priority stays best.
        let mut best: Option<(usize, usize, f64, u64)> = None;
        for (index, (priority, level)) in self.levels.iter_mut().enumerate().rev() {
            if level.live() == 0 {
                continue;
            }
            let Some((place, at)) = level.candidate(&may_start) else {
                continue;
            };
            let effective = effective(*priority, at, now, step, max_boost);
            let better = match best {
                None => true,
                Some((_, _, best_effective, best_at)) => {
                    effective > best_effective || (effective == best_effective && at < best_at)
                }
            };
            if better {
                best = Some((index, place, effective, at));
            }
        }
        let (index, place, _, _) = best?;
        self.pop_level(index, place)
    }

    fn pop_level(&mut self, index: usize, place: usize) -> Option<Popped<J>> {
        let level = &mut self.levels[index].1;
        let (job, enqueued_at, lane) = level.pop_at(place)?;
        if level.live() == 0 {
            self.sweep_empty_levels();
        }
        self.len -= 1;
        Some(Popped {
            job,
            enqueued_at: Ticks::from_nanos(enqueued_at),
            lane,
        })
    }

    /// Removes a task that is still queued (e.g. cancelled). `None` if it already left.
    pub(crate) fn remove(&mut self, key: QueueKey) -> Option<Popped<J>> {
        let at = self
            .levels
            .binary_search_by_key(&key.priority, |(p, _)| *p)
            .ok()?;
        let level = &mut self.levels[at].1;
        let (job, enqueued_at) = level.remove(key.lane, key.generation, key.pos)?;
        if level.live() == 0 {
            self.sweep_empty_levels();
        }
        self.len -= 1;
        Some(Popped {
            job,
            enqueued_at: Ticks::from_nanos(enqueued_at),
            lane: key.lane,
        })
    }

    /// Drops empty levels once there are more than a few, so pops never scan many.
    fn sweep_empty_levels(&mut self) {
        let empty = self.levels.iter().filter(|(_, l)| l.live() == 0).count();
        if empty > MAX_EMPTY_LEVELS {
            self.levels.retain(|(_, level)| level.live() > 0);
        }
    }

    /// Removes every task, in no particular order.
    pub(crate) fn drain_all(&mut self) -> Vec<Popped<J>> {
        self.len = 0;
        let mut tasks = Vec::new();
        for (_, level) in std::mem::take(&mut self.levels) {
            level.drain_into(&mut tasks);
        }
        tasks
            .into_iter()
            .map(|(job, at, lane)| Popped {
                job,
                enqueued_at: Ticks::from_nanos(at),
                lane,
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
        (AgingQueue::new(aging, false), Ticks::default())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pop_all(q: &mut AgingQueue<u32>, now: Ticks) -> Vec<u32> {
        std::iter::from_fn(|| q.pop(now, |_| true).map(|p| p.job)).collect()
    }

    #[test]
    fn higher_priority_pops_first_and_ties_are_fifo() {
        let (mut q, t0) = queue(10.0);
        q.push(1, Placement::plain(0), t0);
        q.push(2, Placement::plain(5), t0);
        q.push(3, Placement::plain(0), t0);
        q.push(4, Placement::plain(5), t0);
        assert_eq!(pop_all(&mut q, t0), vec![2, 4, 1, 3]);
    }

    #[test]
    fn waiting_earns_one_point_per_interval() {
        let (mut q, t0) = queue(10.0);
        q.push(1, Placement::plain(0), t0); // waits 1 s = 4 intervals => effective 4
        q.push(2, Placement::plain(3), t0 + ms(1000)); // fresh, priority 3
        assert_eq!(pop_all(&mut q, t0 + ms(1000)), vec![1, 2]);

        q.push(3, Placement::plain(0), t0 + ms(1000)); // waits 0.5 s => effective 2 < 3
        q.push(4, Placement::plain(3), t0 + ms(1500));
        assert_eq!(pop_all(&mut q, t0 + ms(1500)), vec![4, 3]);
    }

    #[test]
    fn boost_is_capped() {
        let (mut q, t0) = queue(2.0);
        q.push(1, Placement::plain(0), t0); // waited 10 s but boost capped at 2
        let later = t0 + ms(10_000);
        q.push(2, Placement::plain(3), later);
        assert_eq!(pop_all(&mut q, later), vec![2, 1]);
        assert_eq!(q.effective(0, t0, later), 2.0);
    }

    #[test]
    fn capped_tasks_keep_fifo_among_equals() {
        let (mut q, t0) = queue(1.0);
        for i in 0..5 {
            q.push(i, Placement::plain(0), t0 + ms(u64::from(i)));
        }
        assert_eq!(pop_all(&mut q, t0 + ms(60_000)), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn aging_off_is_plain_priority_fifo() {
        let (mut q, t0) = queue(0.0);
        q.push(1, Placement::plain(0), t0);
        q.push(2, Placement::plain(1), t0 + ms(100_000));
        q.push(3, Placement::plain(0), t0 + ms(1));
        assert_eq!(pop_all(&mut q, t0 + ms(200_000)), vec![2, 1, 3]);
    }

    #[test]
    fn removed_tasks_never_pop() {
        let (mut q, t0) = queue(10.0);
        let a = q.push(1, Placement::plain(0), t0);
        q.push(2, Placement::plain(0), t0);
        assert_eq!(q.remove(a).map(|p| p.job), Some(1));
        assert!(q.remove(a).is_none());
        assert_eq!(q.len(), 1);
        assert_eq!(pop_all(&mut q, t0), vec![2]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_reused_slot_is_not_confused_with_the_removed_task() {
        let (mut q, t0) = queue(10.0);
        let a = q.push(1, Placement::plain(0), t0);
        q.remove(a);
        let b = q.push(2, Placement::plain(0), t0);
        assert!(
            q.remove(a).is_none(),
            "old key must not remove the new task"
        );
        assert_eq!(q.remove(b).map(|p| p.job), Some(2));
    }

    #[test]
    fn a_key_of_a_swept_level_does_not_remove_from_its_successor() {
        let (mut q, t0) = queue(10.0);
        let old = q.push(1, Placement::plain(0), t0);
        assert_eq!(pop_all(&mut q, t0), vec![1]);
        // Empty more levels than are kept, so level 0 is swept away, then made again.
        for p in 1..=(MAX_EMPTY_LEVELS as i32 + 1) {
            q.push(100, Placement::plain(p), t0);
        }
        pop_all(&mut q, t0);
        let new = q.push(2, Placement::plain(0), t0);
        assert!(
            q.remove(old).is_none(),
            "a key of the old level must not remove"
        );
        assert_eq!(q.remove(new).map(|p| p.job), Some(2));
    }

    #[test]
    fn multiplier_change_rescoring_keeps_the_formula() {
        let (mut q, t0) = queue(10.0);
        q.push(1, Placement::plain(0), t0);
        q.push(2, Placement::plain(2), t0 + ms(400));
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
                let popped = q.pop(now, |_| true).expect("queue has tasks").job;
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
                q.push(id, Placement::plain(priority), now);
                model.push((id, priority, now, seq));
                seq += 1;
            }
        }
    }

    #[test]
    fn tombstones_do_not_accumulate() {
        let (mut q, t0) = queue(1.0);
        let keys: Vec<_> = (0..1_000)
            .map(|i| q.push(i, Placement::plain(i as i32 % 3), t0))
            .collect();
        for key in keys.iter().skip(1) {
            assert!(q.remove(*key).is_some());
        }
        assert_eq!(q.len(), 1);
        assert_eq!(pop_all(&mut q, t0), vec![0]);
        assert!(
            q.levels.iter().all(|(_, level)| level.slots() == 0),
            "emptied levels hold no tombstones"
        );
    }

    fn tenant(lane: u32, weight: u32) -> Placement {
        Placement {
            priority: 0,
            lane: LaneId(lane),
            weight,
            deadline: None,
        }
    }

    /// The lanes of the next `n` pops (tasks are numbered by lane × 1000 + index).
    fn lanes_of_pops(q: &mut AgingQueue<u32>, now: Ticks, n: usize) -> Vec<u32> {
        (0..n)
            .map_while(|_| q.pop(now, |_| true))
            .map(|p| p.lane.0)
            .collect()
    }

    #[test]
    fn tenants_of_one_level_take_turns_by_weight() {
        let (mut q, t0) = queue(10.0);
        for lane in 1..=3 {
            let weight = [1, 2, 5][lane as usize - 1];
            for i in 0..100 {
                q.push(lane * 1000 + i, tenant(lane, weight), t0);
            }
        }
        // One round: lane 1 once, lane 2 twice, lane 3 five times; then again.
        assert_eq!(
            lanes_of_pops(&mut q, t0, 16),
            vec![1, 2, 2, 3, 3, 3, 3, 3, 1, 2, 2, 3, 3, 3, 3, 3]
        );
        // Within a lane, FIFO.
        let firsts: Vec<_> = (0..8)
            .filter_map(|_| q.pop(t0, |_| true))
            .map(|p| p.job)
            .collect();
        assert_eq!(firsts, vec![1002, 2004, 2005, 3010, 3011, 3012, 3013, 3014]);
    }

    #[test]
    fn a_newcomer_starts_within_one_round_and_an_idle_tenant_leaves_it() {
        let (mut q, t0) = queue(10.0);
        for i in 0..50 {
            q.push(1000 + i, tenant(1, 3), t0);
            q.push(2000 + i, tenant(2, 3), t0);
        }
        assert_eq!(lanes_of_pops(&mut q, t0, 2), vec![1, 1]);
        q.push(3000, tenant(3, 1), t0);
        // Lane 1 finishes its turn, lane 2 takes its own, then the newcomer.
        assert_eq!(lanes_of_pops(&mut q, t0, 5), vec![1, 2, 2, 2, 3]);
        // Lane 3 is dry: the round is lanes 1 and 2 again, nothing wasted on lane 3.
        assert_eq!(lanes_of_pops(&mut q, t0, 6), vec![1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn a_tenant_that_may_not_start_keeps_its_place_and_others_go_on() {
        let (mut q, t0) = queue(10.0);
        for i in 0..10 {
            q.push(1000 + i, tenant(1, 1), t0);
            q.push(2000 + i, tenant(2, 1), t0);
        }
        let blocked = |lane: LaneId| lane != LaneId(1);
        let lanes: Vec<_> = (0..3)
            .filter_map(|_| q.pop(t0, blocked))
            .map(|p| p.lane.0)
            .collect();
        assert_eq!(
            lanes,
            vec![2, 2, 2],
            "work-conserving: lane 2 runs while 1 may not"
        );
        assert_eq!(q.pop(t0, |_| false).map(|p| p.job), None);
        // Lane 1 kept its turn: it goes first once it may.
        assert_eq!(lanes_of_pops(&mut q, t0, 3), vec![1, 2, 1]);
    }

    #[test]
    fn aging_picks_the_level_and_fair_share_the_tenant_within_it() {
        let (mut q, t0) = queue(10.0);
        // Priority 0: two tenants, entered long ago; priority 3: fresh tasks.
        q.push(1, tenant(1, 1), t0);
        q.push(2, tenant(2, 1), t0);
        let later = t0 + ms(2000); // 8 points of aging for the old ones
        q.push(3, Placement::plain(3), later);
        assert_eq!(pop_all(&mut q, later), vec![1, 2, 3]);
    }

    #[test]
    fn removal_finds_a_task_in_its_lane_and_not_in_a_later_lane() {
        let (mut q, t0) = queue(10.0);
        let a = q.push(1, tenant(5, 2), t0);
        q.push(2, tenant(6, 1), t0);
        assert_eq!(q.remove(a).map(|p| (p.job, p.lane)), Some((1, LaneId(5))));
        // Lane 5 ran dry; a pop passes it and drops it; a new lane 5 is another lane.
        assert_eq!(pop_all(&mut q, t0), vec![2]);
        let b = q.push(3, tenant(5, 2), t0);
        assert!(
            q.remove(a).is_none(),
            "a key of the old lane removes nothing"
        );
        assert_eq!(q.remove(b).map(|p| p.job), Some(3));
        assert!(q.is_empty());
    }

    #[test]
    fn earliest_deadline_first_orders_each_lane_by_deadline() {
        let epoch = Ticks::default();
        let aging = AgingSettings {
            interval: Duration::from_millis(250),
            max_boost: 10.0,
        };
        let mut q = AgingQueue::new(aging, true);
        let due = |job: u32, deadline: Option<u64>| {
            (
                job,
                Placement {
                    deadline: deadline.map(|d| epoch + ms(d)),
                    ..Placement::plain(0)
                },
            )
        };
        let mut keys = Vec::new();
        for (job, placement) in [
            due(1, None),
            due(2, Some(50)),
            due(3, Some(10)),
            due(4, None),
            due(5, Some(30)),
        ] {
            keys.push(q.push(job, placement, epoch));
        }
        assert_eq!(q.remove(keys[4]).map(|p| p.job), Some(5));
        assert_eq!(pop_all(&mut q, epoch), vec![3, 2, 1, 4]);
    }

    #[test]
    fn drain_gives_every_task_of_every_lane() {
        let (mut q, t0) = queue(10.0);
        for i in 0..30u32 {
            q.push(i, tenant(i % 3, 1 + i % 2), t0);
        }
        let mut drained: Vec<_> = q.drain_all().into_iter().map(|p| p.job).collect();
        drained.sort_unstable();
        assert_eq!(drained, (0..30).collect::<Vec<_>>());
        assert!(q.is_empty());
    }
}
