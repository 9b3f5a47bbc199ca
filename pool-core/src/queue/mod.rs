//! The priority queue with aging, and fair share between tenants within a priority level.
//! Pure data structure: no async, no clock of its own.
//!
//! A waiting task's effective priority is its base priority plus what its wait earned
//! ([`aging`]). Each priority level ([`level`]) holds a lane per tenant ([`lane`]) and says which task it
//! would start next: the head of the lane whose turn it is in its round (deficit round robin
//! between tenants). Without tenants a level has one lane, a FIFO, and its next task is its
//! oldest (a fast path: no round, no lookup). A pop compares the levels' next tasks, with the formula evaluated at `now` and the
//! current multiplier — a level's age is the age of the task it would start next, which keeps
//! growing until the level wins — so aging is exact, a multiplier change costs two
//! multiplications, push is O(log L) (O(1) for consecutive priorities) and pop O(L), where L
//! is the number of distinct priorities waiting (usually a handful) — never O(n) in queued
//! tasks. The pop's scan reads a small array beside the levels, each level's priority and
//! the moment its next task entered (`LevelHead`), not the levels themselves: ten levels are
//! three cache lines, and the one a pop takes from is the only level it touches; it compares
//! ranks (effective priority times the aging step), which take a multiplication, a
//! conversion and an addition, no division. Levels are kept (with their buffers)
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

use aging::Scale;
pub(crate) use aging::{nanos_as_f64, AgingSettings};
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

/// What a pop needs to know of a level to compare it with the others, kept beside the other
/// levels' in one small array: scanning ten levels reads two or three cache lines, not the
/// levels themselves (a level is a few hundred bytes and its next task is in its own buffer).
/// Kept only while the queue has several levels (a pop of one level compares nothing).
#[derive(Debug, Clone, Copy)]
struct LevelHead {
    priority: i32,
    next: Next,
    /// When the task the level would start next entered the queue, if `next` is
    /// [`Next::Head`].
    at: u64,
}

/// What a [`LevelHead`] says of its level's next task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The level holds no task.
    Empty,
    /// The level holds only tasks without a tenant: the next is its default lane's head,
    /// which entered at [`LevelHead::at`].
    Head,
    /// The level has tenants' lanes: which of its tasks is next is its round's to say
    /// ([`Level::candidate`]).
    Ask,
}

/// The best next task a pop's scan has seen: its level, its place in the level's round, its
/// rank (see `aging`) and when it entered.
struct Best {
    index: usize,
    place: usize,
    rank: f64,
    at: u64,
}

impl Best {
    /// Nothing seen: ranks are never NaN nor -inf, so any task is better.
    const NONE: Best = Best {
        index: usize::MAX,
        place: 0,
        rank: f64::NEG_INFINITY,
        at: u64::MAX,
    };

    /// Keeps the task if it ranks higher, or as high and entered earlier (levels come from
    /// the highest priority: on a full tie the one seen first stays).
    #[inline(always)]
    fn offer(&mut self, index: usize, place: usize, rank: f64, at: u64) {
        if rank > self.rank || (rank == self.rank && at < self.at) {
            *self = Best {
                index,
                place,
                rank,
                at,
            };
        }
    }

    fn found(&self) -> Option<(usize, usize)> {
        (self.index != usize::MAX).then_some((self.index, self.place))
    }
}

#[derive(Debug)]
pub(crate) struct AgingQueue<J> {
    /// Sorted by priority (with `heads`, index for index); may contain up to
    /// `MAX_EMPTY_LEVELS` empty levels.
    levels: Vec<Level<J>>,
    /// Each level's priority and next task, for the pop's scan and the push's search.
    heads: Vec<LevelHead>,
    /// How many of `levels` are empty, kept as they empty and refill: a busy queue's
    /// highest levels empty all the time, and counting them each time read every level.
    empty_levels: usize,
    len: usize,
    /// No queued task entered before this (nanoseconds; `u64::MAX` when empty): bounds the
    /// boost any waiting task has earned, so a pop stops scanning at levels that cannot win.
    oldest: u64,
    next_lane_generation: u64,
    /// The aging interval in nanoseconds.
    interval_nanos: f64,
    max_boost: f64,
    /// The formula's constants at the current multiplier.
    scale: Scale,
    /// Lanes order their tasks by deadline.
    edf: bool,
}

impl<J> AgingQueue<J> {
    /// An empty queue. `edf`: each lane orders its tasks by deadline.
    pub(crate) fn new(aging: AgingSettings, edf: bool) -> Self {
        let interval_nanos = aging.interval.as_nanos() as f64;
        Self {
            levels: Vec::new(),
            heads: Vec::new(),
            empty_levels: 0,
            len: 0,
            oldest: u64::MAX,
            next_lane_generation: 0,
            interval_nanos,
            max_boost: aging.max_boost,
            scale: Scale::new(interval_nanos, aging.max_boost, 1.0),
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

    #[cfg(test)]
    fn effective(&self, priority: i32, enqueued_at: Ticks, now: Ticks) -> f64 {
        self.scale
            .effective(priority, enqueued_at.nanos(), now.nanos())
    }

    /// Where level `priority` is in `levels`, or where it would go. Priorities in use are
    /// usually consecutive (0 to 9, say): the level is then found at its offset from the
    /// lowest, without a search.
    #[inline(always)]
    fn level_of(&self, priority: i32) -> Result<usize, usize> {
        let Some(lowest) = self.heads.first() else {
            return Err(0);
        };
        let offset = i64::from(priority) - i64::from(lowest.priority);
        if let Ok(offset) = usize::try_from(offset) {
            if self
                .heads
                .get(offset)
                .is_some_and(|h| h.priority == priority)
            {
                return Ok(offset);
            }
        }
        self.heads.binary_search_by_key(&priority, |h| h.priority)
    }

    // `always`: the engine's push is its one caller, and as a call its prologue and the key
    // returned through memory cost as much as the search.
    #[inline(always)]
    pub(crate) fn push(&mut self, job: J, placement: Placement, now: Ticks) -> QueueKey {
        let enqueued_at = now.nanos();
        let order = match placement.deadline {
            Some(deadline) if self.edf => deadline.nanos(),
            _ => u64::MAX,
        };
        let priority = placement.priority;
        let (index, new_level) = match self.level_of(priority) {
            Ok(index) => (index, false),
            Err(index) => {
                let level = Level::new(self.edf, &mut self.next_lane_generation);
                self.levels.insert(index, level);
                self.heads.insert(
                    index,
                    LevelHead {
                        priority,
                        next: Next::Empty,
                        at: 0,
                    },
                );
                (index, true)
            }
        };
        let level = &mut self.levels[index];
        let was_empty = level.live() == 0;
        if was_empty && !new_level {
            self.empty_levels -= 1;
        }
        let (generation, pos) = level.push(
            job,
            placement.lane,
            placement.weight,
            &mut self.next_lane_generation,
            enqueued_at,
            order,
        );
        self.len += 1;
        self.oldest = self.oldest.min(enqueued_at);
        if self.levels.len() > 1 {
            if new_level {
                // From one level to two the heads were not kept; a new level is rare.
                self.refresh_heads();
            } else if was_empty || self.edf || placement.lane != LaneId::DEFAULT {
                // Otherwise the task went behind the level's next one, in its FIFO.
                self.refresh_head(index);
            }
        }
        QueueKey {
            priority,
            lane: placement.lane,
            generation,
            pos,
        }
    }

    /// Level `index`'s entry in `heads`, after its tasks changed.
    #[inline(always)]
    fn refresh_head(&mut self, index: usize) {
        let head = &mut self.heads[index];
        (head.next, head.at) = self.levels[index].scan_head();
    }

    #[cold]
    #[inline(never)]
    fn refresh_heads(&mut self) {
        for (head, level) in self.heads.iter_mut().zip(&mut self.levels) {
            (head.next, head.at) = level.scan_head();
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
        if let [level] = self.levels.as_mut_slice() {
            // One priority level: its next task is the answer; no aging arithmetic.
            let (at, _) = level.candidate(&may_start)?;
            return self.pop_level(0, at);
        }
        let (index, place) = self.choose(now, may_start)?;
        self.pop_level(index, place)
    }

    /// The level whose next task has the highest effective priority at `now`, and that task's
    /// place in its level's round. Not inlined into the pop (and the engine's lock holder):
    /// on its own the scan keeps its state in registers. Levels are scanned from the highest
    /// priority, so on a full tie the higher base priority stays best, and once the best is
    /// above what a level could reach with the boost of the oldest waiting task, no lower
    /// level can win.
    #[inline(never)]
    fn choose(&mut self, now: Ticks, may_start: impl Fn(LaneId) -> bool) -> Option<(usize, usize)> {
        let now = now.nanos();
        let scale = self.scale;
        let most_boost = scale.boost(self.oldest, now);
        // Levels without tenants (the usual case) are compared by their head in `heads`
        // alone, and whether the lane without a tenant may start is asked once for all.
        let default_may_start = may_start(LaneId::DEFAULT);
        let mut best = Best::NONE;
        // No call in this loop (its floats would be saved around it): a level with tenants
        // sends the pop to the scan that asks them.
        for (index, head) in self.heads.iter().enumerate().rev() {
            if head.next == Next::Empty {
                continue;
            }
            let base = scale.base(head.priority);
            if best.rank > base + most_boost {
                break;
            }
            if head.next == Next::Ask {
                return self.choose_asking(now, most_boost, default_may_start, may_start);
            }
            if default_may_start {
                best.offer(index, 0, scale.rank(base, head.at, now), head.at);
            }
        }
        best.found()
    }

    /// [`choose`](Self::choose) where levels with tenants' lanes may win: their next task is
    /// what their round says ([`Level::candidate`]).
    #[cold]
    #[inline(never)]
    fn choose_asking(
        &mut self,
        now: u64,
        most_boost: f64,
        default_may_start: bool,
        may_start: impl Fn(LaneId) -> bool,
    ) -> Option<(usize, usize)> {
        let scale = self.scale;
        let mut best = Best::NONE;
        let levels = self.heads.iter_mut().zip(&mut self.levels).enumerate();
        for (index, (head, level)) in levels.rev() {
            if head.next == Next::Empty {
                continue;
            }
            let base = scale.base(head.priority);
            if best.rank > base + most_boost {
                break;
            }
            let (place, at) = if head.next == Next::Head {
                if !default_may_start {
                    continue;
                }
                (0, head.at)
            } else {
                let candidate = level.candidate(&may_start);
                // The round may have dropped dry lanes: the level may hold no tenant's now.
                (head.next, head.at) = level.scan_head();
                let Some(candidate) = candidate else {
                    continue;
                };
                candidate
            };
            best.offer(index, place, scale.rank(base, at, now), at);
        }
        best.found()
    }

    // `always` here and on the level's and lane's steps of a pop: with a plain hint they
    // stayed calls whose prologues cost more than their bodies, under the engine's lock
    // (callgrind: the engine's take_next, a pop and its bookkeeping, 290 -> 207 instructions).
    #[inline(always)]
    fn pop_level(&mut self, index: usize, place: usize) -> Option<Popped<J>> {
        let level = &mut self.levels[index];
        let (job, enqueued_at, lane) = level.pop_at(place)?;
        let emptied = level.live() == 0;
        if self.levels.len() > 1 {
            self.refresh_head(index);
        }
        if emptied {
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
        let index = self.level_of(key.priority).ok()?;
        let level = &mut self.levels[index];
        let (job, enqueued_at) = level.remove(key.lane, key.generation, key.pos)?;
        let emptied = level.live() == 0;
        if self.levels.len() > 1 {
            self.refresh_head(index);
        }
        if emptied {
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
            self.levels.iter().filter(|l| l.live() == 0).count()
        );
        if self.empty_levels > MAX_EMPTY_LEVELS {
            let mut kept = self.levels.iter().map(|level| level.live() > 0);
            self.heads.retain(|_| kept.next().unwrap_or(false));
            self.levels.retain(|level| level.live() > 0);
            self.empty_levels = 0;
        }
    }

    /// Removes every task, in no particular order.
    pub(crate) fn drain_all(&mut self) -> Vec<Popped<J>> {
        self.len = 0;
        self.empty_levels = 0;
        self.oldest = u64::MAX;
        self.heads.clear();
        let mut tasks = Vec::new();
        for level in std::mem::take(&mut self.levels) {
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

    /// Changes the aging multiplier (positive and finite: the engine's is in [0.25, 4]); it
    /// applies from the next pop. Two multiplications: the engine sets it before every pop of
    /// several levels.
    #[inline]
    pub(crate) fn set_multiplier(&mut self, multiplier: f64) {
        debug_assert!(multiplier.is_finite() && multiplier > 0.0, "{multiplier}");
        self.scale = Scale::new(self.interval_nanos, self.max_boost, multiplier);
    }
}

#[cfg(test)]
mod tests;
