//! A point-in-time view of a pool's counters.

/// What [`Pool::stats`](crate::Pool::stats) returns.
///
/// Every task enqueued is, at any moment, in exactly one of: `queued`, `active`, `retrying`,
/// `deferred`, or resolved as one of `succeeded`, `failed`, `cancelled`, `stopped_tasks`. So
/// `enqueued == queued + active + retrying + deferred + succeeded + failed + cancelled +
/// stopped_tasks`
/// whenever the pool is quiescent (see [`Stats::in_balance`]).
///
/// The outcome counts use the words every s3pool crate uses for them — `succeeded`,
/// `failed`, `cancelled`, `stopped` — as pool-metrics'
/// `LiveStats` and task-manager's `ManagerStats` do. `processed` and `errors` are the old
/// names of `succeeded` and `failed`, kept (same values) for one release.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pool_core::{Permanent, Pool, TaskOptions};
///
/// let pool = Pool::builder().concurrency(2).build().unwrap();
/// let ok = pool.enqueue(|| async { Ok::<_, Permanent<&str>>(1) }, TaskOptions::new());
/// let bad = pool.enqueue(|| async { Err::<u8, _>(Permanent("no")) }, TaskOptions::new());
/// let _ = (ok.await, bad.await);
/// let stats = pool.stats();
/// assert_eq!((stats.succeeded, stats.failed), (1, 1));
/// assert!(stats.in_balance());
/// # }
/// ```
///
/// The old names warn (here made an error):
///
/// ```compile_fail
/// #![deny(deprecated)]
/// let stats = pool_core::Stats::default();
/// let _ = stats.processed + stats.errors;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stats {
    /// Tasks waiting in the queue.
    pub queued: usize,
    /// Tasks running an attempt now.
    pub active: usize,
    /// Tasks waiting out a retry backoff (neither queued nor running).
    pub retrying: usize,
    /// Tasks parked by an admission policy until a moment it set aside for them (a rate
    /// limit's turn), holding no slot; see [`Admission::precheck`](crate::Admission::precheck).
    #[cfg_attr(feature = "serde", serde(default))]
    pub deferred: usize,
    /// Tasks ever enqueued.
    pub enqueued: u64,
    /// Tasks resolved with their value.
    #[cfg_attr(feature = "serde", serde(default))]
    pub succeeded: u64,
    /// Tasks resolved with a failure: their own error, timeout, panic, exhausted retry
    /// budget, declined retry, rejection or missed deadline.
    #[cfg_attr(feature = "serde", serde(default))]
    pub failed: u64,
    /// The old name of [`succeeded`](Self::succeeded) (same value).
    #[deprecated(since = "0.1.0", note = "use `succeeded` (same value)")]
    #[cfg_attr(feature = "serde", serde(default))]
    pub processed: u64,
    /// The old name of [`failed`](Self::failed) (same value).
    #[deprecated(since = "0.1.0", note = "use `failed` (same value)")]
    #[cfg_attr(feature = "serde", serde(default))]
    pub errors: u64,
    /// Of `failed`, tasks resolved with `DeadlineExceeded` (shed ones included).
    #[cfg_attr(feature = "serde", serde(default))]
    pub deadline_exceeded: u64,
    /// Of `deadline_exceeded`, tasks the pool shed before their deadline because their
    /// recent median service time did not fit in the time left.
    #[cfg_attr(feature = "serde", serde(default))]
    pub shed: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Tasks resolved with `Cancelled`.
    pub cancelled: u64,
    /// Tasks resolved with `Stopped`.
    pub stopped_tasks: u64,
    /// The concurrency limit.
    pub concurrency: usize,
    /// Whether the pool is paused.
    pub paused: bool,
    /// Whether the pool is stopped.
    pub stopped: bool,
}

impl Stats {
    /// Tasks that have resolved, one way or another.
    pub fn resolved(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled + self.stopped_tasks
    }

    /// True if every enqueued task is accounted for exactly once.
    pub fn in_balance(&self) -> bool {
        let pending = (self.queued + self.active + self.retrying + self.deferred) as u64;
        self.enqueued == self.resolved() + pending
    }
}
