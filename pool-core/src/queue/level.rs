//! One priority level: a lane per tenant with tasks waiting, served by deficit round robin
//! (see [`crate::tenant`] for the why).
//!
//! The round is the order of the lanes with tasks waiting: the front lane's turn lasts until
//! it has started as many tasks as its weight (its credit) or runs dry; it then goes to the
//! back with its credit refilled, or leaves the round. A new lane joins at the back. A lane
//! whose tenant may not start a task now (at its own limit) keeps its place and credit and
//! is passed over, so it is served first once it may.
//!
//! The lane of tasks without a tenant lives inline in its level for the level's life; while
//! no named tenant has tasks in the level, it is the whole round, and a pop is a FIFO pop
//! that looks nothing up (a pool whose tasks name no tenant pays nothing for fair share).
//! Alone in the round its turn never passes, so its credit is left as it is.

use std::collections::{HashMap, VecDeque};

use slab::Slab;

use super::lane::{Lane, LanePos};
use super::{LaneId, Next};

/// The round's name for the lane of tasks without a tenant (named lanes are slab indices).
const DEFAULT_LANE: usize = usize::MAX;

#[derive(Debug)]
struct Member<J> {
    id: LaneId,
    /// Tells a lane from a later one at the same index (a stale key must not remove from it).
    generation: u64,
    weight: u32,
    /// Tasks the lane may still start in its current turn.
    credit: u32,
    in_round: bool,
    lane: Lane<J>,
}

impl<J> Member<J> {
    fn new(id: LaneId, weight: u32, lane_generation: &mut u64, edf: bool) -> Self {
        let generation = *lane_generation;
        *lane_generation += 1;
        Self {
            id,
            generation,
            weight,
            credit: weight,
            in_round: false,
            lane: Lane::new(edf),
        }
    }
}

#[derive(Debug)]
pub(super) struct Level<J> {
    /// The lane of tasks without a tenant, kept (with its buffer) when it runs dry.
    default: Member<J>,
    /// Lanes of named tenants with tasks in this level, found by id.
    named: Slab<Member<J>>,
    by_id: HashMap<LaneId, usize>,
    /// Indices into `named` (or [`DEFAULT_LANE`]), in round order; the front's turn is now.
    round: VecDeque<usize>,
    live: usize,
    /// Lanes order their tasks by deadline.
    edf: bool,
}

impl<J> Level<J> {
    /// An empty level; its default lane takes the next lane generation.
    pub(super) fn new(edf: bool, lane_generation: &mut u64) -> Self {
        Self {
            default: Member::new(LaneId::DEFAULT, 1, lane_generation, edf),
            named: Slab::new(),
            by_id: HashMap::new(),
            round: VecDeque::new(),
            live: 0,
            edf,
        }
    }

    #[inline]
    pub(super) fn live(&self) -> usize {
        self.live
    }

    fn member(&mut self, index: usize) -> &mut Member<J> {
        if index == DEFAULT_LANE {
            &mut self.default
        } else {
            &mut self.named[index]
        }
    }

    fn index_of(&self, id: LaneId) -> Option<usize> {
        if id == LaneId::DEFAULT {
            Some(DEFAULT_LANE)
        } else {
            self.by_id.get(&id).copied()
        }
    }

    /// Adds a task to lane `id` (made, with `weight`, if it does not exist); returns the
    /// lane's generation and the task's place in it.
    #[inline]
    pub(super) fn push(
        &mut self,
        job: J,
        id: LaneId,
        weight: u32,
        lane_generation: &mut u64,
        enqueued_at: u64,
        order: u64,
    ) -> (u64, LanePos) {
        let index = match self.index_of(id) {
            Some(index) => index,
            None => {
                let member = Member::new(id, weight, lane_generation, self.edf);
                let index = self.named.insert(member);
                self.by_id.insert(id, index);
                index
            }
        };
        let member = if index == DEFAULT_LANE {
            &mut self.default
        } else {
            &mut self.named[index]
        };
        // A lane left behind by a tenant the engine forgot may be taken over by a new one
        // with the same id: the weight is the current tenant's.
        member.weight = weight;
        if !member.in_round {
            member.in_round = true;
            member.credit = weight;
            self.round.push_back(index);
        }
        self.live += 1;
        (member.generation, member.lane.push(job, enqueued_at, order))
    }

    /// What the queue's scan keeps of this level ([`LevelHead`](super::LevelHead)): whether
    /// it holds tasks, and if it holds only tasks without a tenant, when the one it would
    /// start next entered the queue — that task is then the default lane's head, and nothing
    /// needs to be looked up.
    #[inline(always)]
    pub(super) fn scan_head(&mut self) -> (Next, u64) {
        if self.live == 0 {
            (Next::Empty, 0)
        } else if !self.named.is_empty() {
            (Next::Ask, 0)
        } else {
            match self.default.lane.head() {
                Some(at) => (Next::Head, at),
                None => (Next::Empty, 0),
            }
        }
    }

    /// The task this level would start next — the first lane in the round that may start
    /// one — as (its place in the round, when it entered the queue). Lanes found dry leave
    /// the round on the way.
    #[inline(always)]
    pub(super) fn candidate(&mut self, may_start: impl Fn(LaneId) -> bool) -> Option<(usize, u64)> {
        if self.named.is_empty() {
            // The round is the default lane or nothing.
            return match self.default.lane.head() {
                Some(enqueued_at) => may_start(LaneId::DEFAULT).then_some((0, enqueued_at)),
                None => {
                    self.leave_round(0);
                    None
                }
            };
        }
        let mut at = 0;
        while at < self.round.len() {
            let index = self.round[at];
            let member = self.member(index);
            let id = member.id;
            match member.lane.head() {
                None => self.leave_round(at),
                Some(enqueued_at) if may_start(id) => return Some((at, enqueued_at)),
                Some(_) => at += 1,
            }
        }
        None
    }

    /// Takes the task of the lane at place `at` in the round (from [`candidate`](Self::candidate)),
    /// and moves the round on: the lane's turn ends when its credit is spent or it runs dry.
    #[inline(always)]
    pub(super) fn pop_at(&mut self, at: usize) -> Option<(J, u64, LaneId)> {
        if self.named.is_empty() {
            // The default lane alone: its turn never passes.
            let (job, enqueued_at) = self.default.lane.pop()?;
            self.live -= 1;
            if self.default.lane.live() == 0 {
                self.leave_round(0);
            }
            return Some((job, enqueued_at, LaneId::DEFAULT));
        }
        let index = *self.round.get(at)?;
        let member = self.member(index);
        let (job, enqueued_at) = member.lane.pop()?;
        let id = member.id;
        member.credit = member.credit.saturating_sub(1);
        let dry = member.lane.live() == 0;
        let turn_over = member.credit == 0;
        if turn_over {
            member.credit = member.weight;
        }
        self.live -= 1;
        if dry {
            self.leave_round(at);
        } else if turn_over && self.round.len() > 1 {
            self.round.remove(at);
            self.round.push_back(index);
        }
        Some((job, enqueued_at, id))
    }

    /// Takes the lane at place `at` out of the round (it is dry); a named tenant's lane is
    /// dropped with it.
    fn leave_round(&mut self, at: usize) {
        let Some(index) = self.round.remove(at) else {
            return;
        };
        if index == DEFAULT_LANE {
            self.default.in_round = false;
        } else {
            let member = self.named.remove(index);
            self.by_id.remove(&member.id);
        }
    }

    /// Takes the task at `pos` in lane `id`, if that lane (of that generation) still holds it.
    /// A lane it leaves dry stays in the round until a pop passes it.
    pub(super) fn remove(&mut self, id: LaneId, generation: u64, pos: LanePos) -> Option<(J, u64)> {
        let index = self.index_of(id)?;
        let member = self.member(index);
        if member.generation != generation {
            return None;
        }
        let taken = member.lane.remove(pos)?;
        self.live -= 1;
        Some(taken)
    }

    /// Moves every task into `into`, with its lane and when it entered.
    pub(super) fn drain_into(self, into: &mut Vec<(J, u64, LaneId)>) {
        let mut tasks = Vec::new();
        let members = std::iter::once(self.default).chain(self.named.into_iter().map(|(_, m)| m));
        for member in members {
            let id = member.id;
            member.lane.drain_into(&mut tasks);
            into.extend(tasks.drain(..).map(|(job, at)| (job, at, id)));
        }
    }

    /// Slots kept by its lanes, tombstones included.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.default.lane.slots()
            + self
                .named
                .iter()
                .map(|(_, member)| member.lane.slots())
                .sum::<usize>()
    }
}
