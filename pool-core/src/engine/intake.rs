//! The intake: where `enqueue` leaves a task without taking the engine's lock while the pool
//! is saturated, and whoever takes the engine's lock next moves it into the queue.
//!
//! A saturated pool (every slot claimed: the usual case under load) starts nothing when a
//! task arrives; all `enqueue` did under the engine's lock was a queue push, and producers'
//! acquisitions collided with the runners' at the end of every attempt (the lock's waits,
//! and the context switches of threads put to sleep on it, grew with the time it is held:
//! the pop of a queue of several priority levels). Now the task goes into a buffer behind a
//! lock of its own, held for a `Vec` push or a swap of two `Vec`s and nothing else; every
//! acquisition of the engine's lock first moves what the buffer holds into the queue
//! ([`Engine::lock`](super::Engine)). A runner ending an attempt takes the engine's lock
//! anyway, so the producers' tasks reach the queue a batch per acquisition, and the engine's
//! lock is taken once per task instead of twice.
//!
//! Order is unchanged: every acquisition of the engine's lock sees each task whose push
//! finished before it, in the order of the pushes, so a pop chooses among exactly the tasks
//! it would have seen had each `enqueue` taken the engine's lock when its push finished (its
//! entry time is read before the push, as before the lock). Stats, cancellation, `stop` and
//! `drain` take the engine's lock, so they see a task in the intake as queued.
//!
//! **When the intake is open.** Only while a runner is sure to take the engine's lock later
//! and no task could start at once: every slot is claimed (each claim's runner takes the lock
//! when its attempt ends) and the pool is not stopping. Whoever changes that under the
//! engine's lock — an attempt ending without a next task, the limit growing, `stop` — closes
//! it and takes what it holds, under the intake's lock: a producer either pushed before (its
//! task is taken) or finds the intake closed and takes the engine's lock itself. A plain
//! mutex rather than a lock-free list: a list's consumer must wait for a push that has
//! claimed its slot but not written it yet (crossbeam's list channel, which std's `mpsc` is,
//! spins and yields there, under the engine's lock), and its per-slot atomics cost more per
//! task than this lock's two (measured: see the crate's README).
//!
//! Tasks with a deadline (the timer must be armed for them), children enqueued by a running
//! task of the same pool (they borrow its slot), and tasks whose `TaskQueued` event is
//! observed (it reports the queue's length) take the engine's lock as before.

use std::sync::atomic::Ordering;

use crate::sync::{AtomicBool, Mutex};

use super::job::{TaskRef, Waiting};
use super::ticks::Ticks;

/// A task in the intake, with what its queue push needs.
pub(super) struct Entry {
    pub(super) task: TaskRef,
    pub(super) waiting: Waiting,
    /// When it was enqueued.
    pub(super) at: Ticks,
}

#[derive(Debug, Default)]
pub(super) struct Intake {
    /// Mirrors `Inbox::open` for a look without the lock: a producer that finds it closed
    /// takes the engine's lock at once. Written under both locks.
    open: AtomicBool,
    inbox: Mutex<Inbox>,
}

#[derive(Debug, Default)]
struct Inbox {
    open: bool,
    entries: Vec<Entry>,
}

impl Intake {
    fn inbox(&self) -> crate::sync::MutexGuard<'_, Inbox> {
        // Nothing under this lock can panic but an allocation failure, which aborts.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many tasks wait in it.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inbox().entries.len()
    }

    /// Whether the intake looked open a moment ago (a hint: [`push`](Self::push) decides).
    #[inline]
    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Leaves `entry` in the intake if it is open; gives it back if not (the caller takes
    /// the engine's lock).
    #[inline]
    pub(super) fn push(&self, entry: Entry) -> Result<(), Entry> {
        let mut inbox = self.inbox();
        if !inbox.open {
            return Err(entry);
        }
        inbox.entries.push(entry);
        Ok(())
    }

    /// Moves what the intake holds into `into` (empty, its buffer kept for the next time:
    /// the two swap). Call it under the engine's lock.
    #[inline]
    pub(super) fn take(&self, into: &mut Vec<Entry>) {
        // Exact under the engine's lock, which every write holds; a closed intake is empty
        // (the closing took what it held).
        if !self.open.load(Ordering::Relaxed) {
            return;
        }
        let mut inbox = self.inbox();
        if !inbox.entries.is_empty() {
            std::mem::swap(&mut inbox.entries, into);
        }
    }

    /// Opens or closes the intake as the state under the engine's lock says (`open`); when
    /// it closes, moves what it holds into `into`. Call it under the engine's lock.
    #[inline]
    pub(super) fn set(&self, open: bool, into: &mut Vec<Entry>) {
        // Written only under the engine's lock, so this is the last value.
        if self.open.load(Ordering::Relaxed) == open {
            return;
        }
        let mut inbox = self.inbox();
        inbox.open = open;
        self.open.store(open, Ordering::Relaxed);
        if !open && !inbox.entries.is_empty() {
            into.append(&mut inbox.entries);
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.task.id())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}
