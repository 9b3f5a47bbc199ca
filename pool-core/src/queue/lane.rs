//! One tenant's waiting tasks within one priority level: first in, first out; or, with
//! earliest-deadline-first on, by deadline, then first in, first out (tasks without a
//! deadline after those with one).
//!
//! A FIFO lane numbers its slots consecutively, so a task is found again (to be removed on
//! cancellation) by its position; removal leaves a tombstone that pops skip. A slot is 16
//! bytes: the task reference (one pointer) and when it entered the queue.

use std::collections::{BTreeMap, VecDeque};

/// Where a task sits in its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LanePos {
    /// The deadline in queue ticks for an EDF lane (`u64::MAX`: none); 0 in a FIFO lane.
    order: u64,
    seq: u64,
}

#[derive(Debug)]
struct Slot<J> {
    /// Nanoseconds since the queue's epoch.
    enqueued_at: u64,
    /// `None` once removed (a tombstone).
    job: Option<J>,
}

#[derive(Debug)]
enum Order<J> {
    Fifo(VecDeque<Slot<J>>),
    Edf(BTreeMap<(u64, u64), Slot<J>>),
}

#[derive(Debug)]
pub(super) struct Lane<J> {
    order: Order<J>,
    live: usize,
    /// Sequence number the next push gets; in a FIFO lane the front slot's is
    /// `next_seq - slots.len()`.
    next_seq: u64,
}

impl<J> Lane<J> {
    pub(super) fn new(edf: bool) -> Self {
        let order = if edf {
            Order::Edf(BTreeMap::new())
        } else {
            Order::Fifo(VecDeque::new())
        };
        Self {
            order,
            live: 0,
            next_seq: 0,
        }
    }

    #[inline]
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// Adds a task that entered at `enqueued_at`; `order` is its deadline in ticks (EDF
    /// lanes only; `u64::MAX` for none).
    #[inline]
    pub(super) fn push(&mut self, job: J, enqueued_at: u64, order: u64) -> LanePos {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.live += 1;
        let slot = Slot {
            enqueued_at,
            job: Some(job),
        };
        match &mut self.order {
            Order::Fifo(slots) => {
                slots.push_back(slot);
                LanePos { order: 0, seq }
            }
            Order::Edf(slots) => {
                slots.insert((order, seq), slot);
                LanePos { order, seq }
            }
        }
    }

    /// When the task this lane would give next entered the queue.
    #[inline(always)]
    pub(super) fn head(&mut self) -> Option<u64> {
        match &mut self.order {
            Order::Fifo(slots) => {
                while slots.front().is_some_and(|slot| slot.job.is_none()) {
                    slots.pop_front();
                }
                slots.front().map(|slot| slot.enqueued_at)
            }
            Order::Edf(slots) => slots.first_key_value().map(|(_, slot)| slot.enqueued_at),
        }
    }

    /// Takes the task [`head`](Self::head) describes.
    #[inline(always)]
    pub(super) fn pop(&mut self) -> Option<(J, u64)> {
        let (job, enqueued_at) = match &mut self.order {
            // Tombstones in front are passed (head() usually dropped them already).
            Order::Fifo(slots) => loop {
                let slot = slots.pop_front()?;
                if let Some(job) = slot.job {
                    break (job, slot.enqueued_at);
                }
            },
            // An EDF lane removes its tasks outright: it has no tombstones.
            Order::Edf(slots) => {
                let slot = slots.pop_first()?.1;
                (slot.job?, slot.enqueued_at)
            }
        };
        self.taken();
        Some((job, enqueued_at))
    }

    /// Takes the task at `pos`, if it is still there.
    pub(super) fn remove(&mut self, pos: LanePos) -> Option<(J, u64)> {
        let (job, enqueued_at) = match &mut self.order {
            Order::Fifo(slots) => {
                let front = self.next_seq - slots.len() as u64;
                if !(front..self.next_seq).contains(&pos.seq) {
                    return None;
                }
                let slot = &mut slots[(pos.seq - front) as usize];
                (slot.job.take()?, slot.enqueued_at)
            }
            Order::Edf(slots) => {
                let slot = slots.remove(&(pos.order, pos.seq))?;
                (slot.job?, slot.enqueued_at)
            }
        };
        self.taken();
        Some((job, enqueued_at))
    }

    #[inline]
    fn taken(&mut self) {
        self.live -= 1;
        if self.live == 0 {
            // Drop the tombstones; the buffer is kept for the next tasks.
            if let Order::Fifo(slots) = &mut self.order {
                slots.clear();
            }
        }
    }

    /// Moves every task, with when it entered, into `into` (in no particular order).
    pub(super) fn drain_into(self, into: &mut Vec<(J, u64)>) {
        let keep = |slot: Slot<J>| Some((slot.job?, slot.enqueued_at));
        match self.order {
            Order::Fifo(slots) => into.extend(slots.into_iter().filter_map(keep)),
            Order::Edf(slots) => into.extend(slots.into_values().filter_map(keep)),
        }
    }

    /// Slots kept, tombstones included (for tests of their cleanup).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        match &self.order {
            Order::Fifo(slots) => slots.len(),
            Order::Edf(slots) => slots.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued task's place: the task reference (8 bytes) and when it entered (8); the
    /// tombstone is the reference's `None`. One more byte makes it 24 and fails here.
    #[cfg(not(shuttle))]
    #[test]
    fn a_queued_task_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Slot<crate::engine::job::TaskRef>>(), 16);
    }
}
