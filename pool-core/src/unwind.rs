//! Containing panics from user code. The engine calls closures, futures, classifiers,
//! observers and admission policies, and drops what they own; a panic in any of them must
//! end at most the task it belongs to, never unwind through the engine.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::PanicMessage;

/// Runs `f`, turning a panic into its message.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PanicMessage> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| message(&*panic))
}

/// The message of a caught panic.
pub(crate) fn message(panic: &(dyn Any + Send)) -> PanicMessage {
    PanicMessage::from_payload(panic)
}

/// Drops the pinned `value` where it lies (a future that may be stored in place), containing
/// a panic in its `Drop` as [`drop_contained`] does.
pub(crate) fn drop_contained_in_place<T>(what: &str, mut value: std::pin::Pin<&mut Option<T>>) {
    if catch(move || value.set(None)).is_err() {
        tracing::error!(
            target: "pool_core",
            "{what} panicked while dropped; the panic was contained and the pool keeps running"
        );
    }
}

/// Drops `value` (user state: a future, a permit, a closure, a result), containing a panic
/// in its `Drop`: it is reported through `tracing` and the engine goes on.
pub(crate) fn drop_contained<T>(what: &str, value: T) {
    // A type without drop glue (a closure capturing nothing to drop) cannot panic here.
    if !std::mem::needs_drop::<T>() {
        return;
    }
    if catch(move || drop(value)).is_err() {
        tracing::error!(
            target: "pool_core",
            "{what} panicked while dropped; the panic was contained and the pool keeps running"
        );
    }
}
