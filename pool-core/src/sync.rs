//! The synchronisation primitives of the engine, from one place: std's in every build, and
//! shuttle's under `--cfg shuttle`, so that the model checker (`tests/model_check.rs`)
//! controls every interleaving at the engine's locks and atomics. Nothing else changes
//! between the two builds.

#[cfg(not(shuttle))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
#[cfg(not(shuttle))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(shuttle)]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
#[cfg(shuttle)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};
