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

use crossbeam_utils::CachePadded;

use super::job::{TaskRef, Waiting};
use super::ticks::Ticks;
use crate::tenant::Tenant;

/// A task in the intake, with what its queue push needs: 32 bytes, two to a cache line. The
/// producer writes entries and a runner reads them on another core, so each line of them
/// crosses between the cores twice (the buffers swap); at 56 bytes (the whole [`Waiting`]
/// and the moment apart) an entry took nearly a line.
pub(super) struct Entry {
    pub(super) task: TaskRef,
    /// Whose share of the slots it starts from.
    tenant: Option<Tenant>,
    stamp: Stamp,
}

/// When a task was enqueued, in ticks (the low 63 bits: 292 years from the engine's epoch),
/// and whether it has a cancellation token (the top bit). A task in the intake has no
/// deadline (one with a deadline takes the engine's lock), so this is all of its
/// [`Waiting`] but the tenant.
#[derive(Clone, Copy)]
struct Stamp(u64);

impl Stamp {
    const CANCELLABLE: u64 = 1 << 63;

    fn new(at: Ticks, cancellable: bool) -> Self {
        let cancellable = if cancellable { Self::CANCELLABLE } else { 0 };
        Self(at.nanos().min(!Self::CANCELLABLE) | cancellable)
    }

    fn at(self) -> Ticks {
        Ticks::from_nanos(self.0 & !Self::CANCELLABLE)
    }

    fn cancellable(self) -> bool {
        self.0 & Self::CANCELLABLE != 0
    }
}

impl Entry {
    /// `task`, enqueued at `at`, waiting as `waiting` says (without a deadline: the caller
    /// checks).
    #[inline]
    pub(super) fn new(task: TaskRef, waiting: Waiting, at: Ticks) -> Self {
        debug_assert!(
            waiting.deadline.is_none(),
            "a task with a deadline is not left here"
        );
        Self {
            task,
            stamp: Stamp::new(at, waiting.cancellable),
            tenant: waiting.tenant,
        }
    }

    /// The task, how it waits and when it was enqueued.
    #[inline]
    pub(super) fn into_parts(self) -> (TaskRef, Waiting, Ticks) {
        let waiting = Waiting {
            tenant: self.tenant,
            cancellable: self.stamp.cancellable(),
            deadline: None,
        };
        (self.task, waiting, self.stamp.at())
    }
}

#[derive(Debug, Default)]
pub(super) struct Intake {
    /// Mirrors `Inbox::open` for a look without the lock: a producer that finds it closed
    /// takes the engine's lock at once. Written under both locks, rarely (when the pool
    /// fills its last slot or frees one); read by every enqueue and every acquisition of
    /// the engine's lock. On a cache line of its own: beside the inbox's lock, which a
    /// producer and the runners take in turn, every producer's look missed.
    open: CachePadded<AtomicBool>,
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
            .field("at", &self.stamp.at())
            .field("cancellable", &self.stamp.cancellable())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(shuttle)))]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Two entries to a cache line: every line of them crosses between the producer's core
    /// and a runner's, twice.
    #[test]
    fn an_entry_is_half_a_cache_line() {
        assert_eq!(size_of::<Entry>(), 32);
    }

    /// The flag every enqueue reads is not on the line of the lock that a producer and the
    /// runners take in turn.
    #[test]
    fn the_open_flag_is_apart_from_the_inbox_lock() {
        let flag = offset_of!(Intake, open)
            ..offset_of!(Intake, open) + size_of::<CachePadded<AtomicBool>>();
        let inbox = offset_of!(Intake, inbox);
        let line = |offset: usize| offset / 64;
        assert!(
            !flag.contains(&inbox)
                && line(flag.start) != line(inbox)
                && line(flag.end - 1) != line(inbox),
            "open at {flag:?}, inbox at {inbox}"
        );
    }

    #[test]
    fn a_stamp_keeps_the_moment_and_the_token() {
        for (nanos, cancellable) in [
            (0, false),
            (0, true),
            (12_345, true),
            (u64::MAX >> 1, false),
        ] {
            let stamp = Stamp::new(Ticks::from_nanos(nanos), cancellable);
            assert_eq!(stamp.at(), Ticks::from_nanos(nanos));
            assert_eq!(stamp.cancellable(), cancellable);
        }
        // Past 292 years the moment saturates rather than taking the token's bit.
        let far = Stamp::new(Ticks::from_nanos(u64::MAX), false);
        assert!(!far.cancellable());
        assert_eq!(far.at(), Ticks::from_nanos(u64::MAX >> 1));
    }
}
