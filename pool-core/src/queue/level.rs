//! One priority level: a lane per tenant with tasks waiting, served by deficit round robin
//! (see [`crate::tenant`] for the why).
//!
//! The round is the order of the lanes with tasks waiting: the front lane's turn lasts until
//! it has started as many tasks as its weight (its credit) or runs dry; it then goes to the
//! back with its credit refilled, or leaves the round. A new lane joins at the back. A lane
//! whose tenant may not start a task now (at its own limit) keeps its place and credit and
//! is passed over, so it is served first once it may. A pool whose tasks name no tenant has
//! one lane per level, and a pop is a FIFO pop.

use std::collections::{HashMap, VecDeque};

use slab::Slab;

use super::lane::{Lane, LanePos};
use super::LaneId;

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

#[derive(Debug)]
pub(super) struct Level<J> {
    lanes: Slab<Member<J>>,
    /// Lanes of named tenants by id; the lane of tasks without a tenant is kept apart, so the
    /// common case looks nothing up, and is kept when it runs dry (with its buffer).
    by_id: HashMap<LaneId, usize>,
    default: Option<usize>,
    /// Indices into `lanes`, in round order; the front's turn is now.
    round: VecDeque<usize>,
    live: usize,
    /// Lanes order their tasks by deadline.
    edf: bool,
}

impl<J> Level<J> {
    pub(super) fn new(edf: bool) -> Self {
        Self {
            lanes: Slab::new(),
            by_id: HashMap::new(),
            default: None,
            round: VecDeque::new(),
            live: 0,
            edf,
        }
    }

    pub(super) fn live(&self) -> usize {
        self.live
    }

    fn index_of(&self, id: LaneId) -> Option<usize> {
        if id == LaneId::DEFAULT {
            self.default
        } else {
            self.by_id.get(&id).copied()
        }
    }

    /// Adds a task to lane `id` (made, with `weight`, if it does not exist); returns the
    /// lane's generation and the task's place in it.
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
                let index = self.lanes.insert(Member {
                    id,
                    generation: *lane_generation,
                    weight,
                    credit: weight,
                    in_round: false,
                    lane: Lane::new(self.edf),
                });
                *lane_generation += 1;
                if id == LaneId::DEFAULT {
                    self.default = Some(index);
                } else {
                    self.by_id.insert(id, index);
                }
                index
            }
        };
        let member = &mut self.lanes[index];
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

    /// The task this level would start next — the first lane in the round that may start
    /// one — as (its place in the round, when it entered the queue). Lanes found dry leave
    /// the round on the way.
    pub(super) fn candidate(&mut self, may_start: impl Fn(LaneId) -> bool) -> Option<(usize, u64)> {
        let mut at = 0;
        while at < self.round.len() {
            let index = self.round[at];
            let member = &mut self.lanes[index];
            match member.lane.head() {
                None => self.leave_round(at),
                Some(enqueued_at) if may_start(member.id) => return Some((at, enqueued_at)),
                Some(_) => at += 1,
            }
        }
        None
    }

    /// Takes the task of the lane at place `at` in the round (from [`candidate`](Self::candidate)),
    /// and moves the round on: the lane's turn ends when its credit is spent or it runs dry.
    pub(super) fn pop_at(&mut self, at: usize) -> Option<(J, u64, LaneId)> {
        let index = *self.round.get(at)?;
        let member = &mut self.lanes[index];
        let (job, enqueued_at) = member.lane.pop()?;
        let id = member.id;
        self.live -= 1;
        member.credit = member.credit.saturating_sub(1);
        if member.lane.live() == 0 {
            self.leave_round(at);
        } else if member.credit == 0 {
            member.credit = member.weight;
            if self.round.len() > 1 {
                self.round.remove(at);
                self.round.push_back(index);
            }
        }
        Some((job, enqueued_at, id))
    }

    /// Takes the lane at place `at` out of the round (it is dry); a named tenant's lane is
    /// dropped with it.
    fn leave_round(&mut self, at: usize) {
        let Some(index) = self.round.remove(at) else {
            return;
        };
        let member = &mut self.lanes[index];
        member.in_round = false;
        if member.id != LaneId::DEFAULT {
            let id = member.id;
            self.lanes.remove(index);
            self.by_id.remove(&id);
        }
    }

    /// Takes the task at `pos` in lane `id`, if that lane (of that generation) still holds it.
    /// A lane it leaves dry stays in the round until a pop passes it.
    pub(super) fn remove(&mut self, id: LaneId, generation: u64, pos: LanePos) -> Option<(J, u64)> {
        let index = self.index_of(id)?;
        let member = &mut self.lanes[index];
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
        for (_, member) in self.lanes {
            let id = member.id;
            member.lane.drain_into(&mut tasks);
            into.extend(tasks.drain(..).map(|(job, at)| (job, at, id)));
        }
    }

    /// Slots kept by its lanes, tombstones included.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.lanes
            .iter()
            .map(|(_, member)| member.lane.slots())
            .sum()
    }
}
