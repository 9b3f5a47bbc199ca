//! The synchronisation primitives of the engine, from one place: std's in every build, and
//! shuttle's under `--cfg shuttle`, so that the model checker (`tests/model_check.rs`)
//! controls every interleaving at the engine's locks (its intake's too) and atomics.
//! Nothing else changes between the two builds.

#[cfg(not(shuttle))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
#[cfg(not(shuttle))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(shuttle)]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
#[cfg(shuttle)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

/// A task's lock: one byte (parking_lot's) in a normal build, so that it packs beside the
/// task's other fields (see `raw_task`); shuttle's under the model checker.
#[cfg(not(shuttle))]
pub(crate) type TaskLock = parking_lot::Mutex<()>;
#[cfg(not(shuttle))]
pub(crate) type TaskLockGuard<'a> = parking_lot::MutexGuard<'a, ()>;

#[cfg(shuttle)]
pub(crate) type TaskLock = shuttle::sync::Mutex<()>;
#[cfg(shuttle)]
pub(crate) type TaskLockGuard<'a> = shuttle::sync::MutexGuard<'a, ()>;

/// Takes a task's lock. It guards no invariant a panic could break halfway (a panic under
/// it ends the task `Panicked` either way), so a poisoned one is simply taken.
#[inline]
pub(crate) fn lock_task(lock: &TaskLock) -> TaskLockGuard<'_> {
    #[cfg(not(shuttle))]
    return lock.lock();
    #[cfg(shuttle)]
    return lock.lock().unwrap_or_else(|e| e.into_inner());
}
