//! The priority queue with aging, and fair share between tenants within a priority level.
//! Pure data structure: no async, no clock of its own.
//!
//! A waiting task's effective priority is its base priority plus what its wait earned
//! ([`aging`]). Each priority level ([`level`]) holds a lane per tenant ([`lane`]) and says which task it
//! would start next: the head of the lane whose turn it is in its round (deficit round robin
//! between tenants). Without tenants a level has one lane, a FIFO, and its next task is its
//! oldest (a fast path: no round, no lookup). A pop compares the levels' next tasks, with the formula evaluated at `now` and the
//! current multiplier — a level's age is the age of the task it would start next, which keeps
//! growing until the level wins — so aging is exact, a multiplier change costs nothing,
//! push is O(log L) and pop O(L), where L is the number of distinct priorities waiting
//! (usually a handful) — never O(n) in queued tasks. Levels are kept (with their buffers)
//! after they empty, so a queue that keeps draining and refilling allocates nothing; a few
//! empty levels are allowed before they are swept. Removal (cancellation) finds the task by
//! its lane and its position there.
//!
//! A slot is 16 bytes: the task reference (one pointer) and when it entered the queue, in the engine's
//! [`Ticks`] (nanoseconds since its epoch). Among next tasks with equal effective priority the
//! one that entered earlier wins, then the higher base priority.
//!
//! With earliest-deadline-first on, each lane orders its tasks by deadline (then FIFO), so
//! fair share decides which tenant starts a task and EDF which of its tasks.

use crate::engine::ticks::Ticks;

mod aging;
mod lane;
mod level;

pub(crate) use aging::AgingSettings;
use aging::Scale;
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

/// Empty levels tolerated before they are swept out of the scan.
const MAX_EMPTY_LEVELS: usize = 8;

#[derive(Debug)]
pub(crate) struct AgingQueue<J> {
    /// Sorted by priority; may contain up to `MAX_EMPTY_LEVELS` empty levels.
    levels: Vec<(i32, Level<J>)>,
    /// How many of `levels` are empty, kept as they empty and refill: a busy queue's
    /// highest levels empty all the time, and counting them each time read every level.
    empty_levels: usize,
    len: usize,
    /// No queued task entered before this (nanoseconds; `u64::MAX` when empty): bounds the
    /// boost any waiting task has earned, so a pop stops scanning at levels that cannot win.
    oldest: u64,
    next_lane_generation: u64,
    aging: AgingSettings,
    multiplier: f64,
    /// The formula's constants at `multiplier`, worked out when it changes (a saturated
    /// queue keeps the same multiplier pop after pop), not on every pop.
    scale: Scale,
    /// Lanes order their tasks by deadline.
    edf: bool,
}

impl<J> AgingQueue<J> {
    /// An empty queue. `edf`: each lane orders its tasks by deadline.
    pub(crate) fn new(aging: AgingSettings, edf: bool) -> Self {
        Self {
            levels: Vec::new(),
            empty_levels: 0,
            len: 0,
            oldest: u64::MAX,
            next_lane_generation: 0,
            aging,
            multiplier: 1.0,
            scale: Self::scale_at(aging, 1.0),
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

    /// The aging formula's constants at the current multiplier.
    fn scale(&self) -> Scale {
        self.scale
    }

    fn scale_at(aging: AgingSettings, multiplier: f64) -> Scale {
        let step_secs = aging.interval.as_secs_f64() * multiplier;
        Scale::new(step_secs, aging.max_boost)
    }

    #[cfg(test)]
    fn effective(&self, priority: i32, enqueued_at: Ticks, now: Ticks) -> f64 {
        self.scale()
            .effective(priority, enqueued_at.nanos(), now.nanos())
    }

    pub(crate) fn push(&mut self, job: J, placement: Placement, now: Ticks) -> QueueKey {
        let enqueued_at = now.nanos();
        let order = match placement.deadline {
            Some(deadline) if self.edf => deadline.nanos(),
            _ => u64::MAX,
        };
        let priority = placement.priority;
        let index = match self.levels.binary_search_by_key(&priority, |(p, _)| *p) {
            Ok(index) => {
                if self.levels[index].1.live() == 0 {
                    self.empty_levels -= 1;
                }
                index
            }
            Err(index) => {
                let level = Level::new(self.edf, &mut self.next_lane_generation);
                self.levels.insert(index, (priority, level));
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
        self.oldest = self.oldest.min(enqueued_at);
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
        let scale = self.scale();
        let most_boost = scale.effective(0, self.oldest, now);
        // Levels without tenants (the usual case) are compared by their FIFO head alone, and
        // whether the lane without a tenant may start is asked once for all of them.
        let mut default_may_start = None;
        // (index, place in its round, effective, enqueued_at); levels are scanned from the
        // highest priority, so on a full tie the higher base priority stays best, and once
        // the best is above what a level could reach with the boost of the oldest waiting
        // task, no lower level can win.
        let mut best: Option<(usize, usize, f64, u64)> = None;
        for (index, (priority, level)) in self.levels.iter_mut().enumerate().rev() {
            if level.live() == 0 {
                continue;
            }
            if best.is_some_and(|(_, _, best_effective, _)| {
                best_effective > f64::from(*priority) + most_boost
            }) {
                break;
            }
            let candidate = match level.untenanted_head() {
                Some(at) => {
                    let may = *default_may_start.get_or_insert_with(|| may_start(LaneId::DEFAULT));
                    may.then_some((0, at))
                }
                None => level.candidate(&may_start),
            };
            let Some((place, at)) = candidate else {
                continue;
            };
            let effective = scale.effective(*priority, at, now);
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

    // `always` here and on the level's and lane's steps of a pop: with a plain hint they
    // stayed calls whose prologues cost more than their bodies, under the engine's lock
    // (callgrind: the engine's take_next, a pop and its bookkeeping, 290 -> 207 instructions).
    #[inline(always)]
    fn pop_level(&mut self, index: usize, place: usize) -> Option<Popped<J>> {
        let level = &mut self.levels[index].1;
        let (job, enqueued_at, lane) = level.pop_at(place)?;
        if level.live() == 0 {
            self.level_emptied();
        }
        self.taken();
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
            self.level_emptied();
        }
        self.taken();
        Some(Popped {
            job,
            enqueued_at: Ticks::from_nanos(enqueued_at),
            lane: key.lane,
        })
    }

    #[inline]
    fn taken(&mut self) {
        self.len -= 1;
        if self.len == 0 {
            self.oldest = u64::MAX;
        }
    }

    /// A level ran dry: empty levels are dropped once there are more than a few, so pops
    /// never scan many.
    #[inline]
    fn level_emptied(&mut self) {
        self.empty_levels += 1;
        debug_assert_eq!(
            self.empty_levels,
            self.levels.iter().filter(|(_, l)| l.live() == 0).count()
        );
        if self.empty_levels > MAX_EMPTY_LEVELS {
            self.levels.retain(|(_, level)| level.live() > 0);
            self.empty_levels = 0;
        }
    }

    /// Removes every task, in no particular order.
    pub(crate) fn drain_all(&mut self) -> Vec<Popped<J>> {
        self.len = 0;
        self.empty_levels = 0;
        self.oldest = u64::MAX;
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
        if multiplier.is_finite() && multiplier > 0.0 && multiplier != self.multiplier {
            self.multiplier = multiplier;
            self.scale = Self::scale_at(self.aging, multiplier);
        }
    }
}

#[cfg(test)]
mod tests;
