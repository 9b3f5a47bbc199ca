//! Counters of a manager: its pool's, plus items across all runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use pool_core::Stats;

use crate::progress::ItemOutcome;

/// What [`TaskManager::stats`](crate::TaskManager::stats) returns.
///
/// `pool` counts tasks (one per item handed to the pool, plus single `enqueue`s); the `items_*`
/// fields count items of runs (`process*`), including items that were never handed to the
/// pool because a run ended early. Outcomes are named as in pool-core's
/// [`Stats`]: succeeded, failed, cancelled, stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ManagerStats {
    /// The pool's counters and state.
    pub pool: Stats,
    /// Runs being polled now (started and not yet finished or dropped).
    pub active_runs: usize,
    /// Items taken from the inputs of runs.
    pub items_pulled: u64,
    /// Items resolved with their value.
    pub items_succeeded: u64,
    /// Items resolved with their own failure (error, timeout, panic, declined retry, missed
    /// deadline).
    pub items_failed: u64,
    /// Items resolved `Cancelled` (fail-fast, a dropped stream, a token).
    pub items_cancelled: u64,
    /// Items resolved `Stopped` (the pool stopped before they ran).
    pub items_stopped: u64,
    /// Items resolved as cancelled or stopped: `items_cancelled + items_stopped`.
    #[deprecated(
        since = "0.1.0",
        note = "use `items_cancelled` and `items_stopped` (this is their sum)"
    )]
    pub items_skipped: u64,
}

/// The manager-wide item counters every run updates.
#[derive(Debug, Default)]
pub(crate) struct ItemCounters {
    active_runs: AtomicUsize,
    pulled: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    stopped: AtomicU64,
}

impl ItemCounters {
    pub(crate) fn run_started(&self) {
        self.active_runs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn run_ended(&self) {
        self.active_runs.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn pulled(&self) {
        self.pulled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn resolved(&self, outcome: ItemOutcome) {
        let counter = match outcome {
            ItemOutcome::Succeeded => &self.succeeded,
            ItemOutcome::Failed => &self.failed,
            ItemOutcome::Cancelled => &self.cancelled,
            ItemOutcome::Stopped => &self.stopped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, pool: Stats) -> ManagerStats {
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        let stopped = self.stopped.load(Ordering::Relaxed);
        // `items_skipped`: the deprecated sum, filled in for one release.
        #[allow(deprecated)]
        ManagerStats {
            pool,
            active_runs: self.active_runs.load(Ordering::Relaxed),
            items_pulled: self.pulled.load(Ordering::Relaxed),
            items_succeeded: self.succeeded.load(Ordering::Relaxed),
            items_failed: self.failed.load(Ordering::Relaxed),
            items_cancelled: cancelled,
            items_stopped: stopped,
            items_skipped: cancelled + stopped,
        }
    }
}
