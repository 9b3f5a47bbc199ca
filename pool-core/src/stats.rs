//! A point-in-time view of a pool's counters.

/// What [`Pool::stats`](crate::Pool::stats) returns.
///
/// Every task enqueued is, at any moment, in exactly one of: `queued`, `active`, `retrying`,
/// `deferred`, or resolved as one of `processed`, `errors`, `cancelled`, `stopped_tasks`. So
/// `enqueued == queued + active + retrying + deferred + processed + errors + cancelled +
/// stopped_tasks`
/// whenever the pool is quiescent (see [`Stats::in_balance`]).
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
    pub processed: u64,
    /// Tasks resolved with a failure: their own error, timeout, panic, exhausted budget or
    /// missed deadline.
    pub errors: u64,
    /// Of `errors`, tasks resolved with `DeadlineExceeded` (shed ones included).
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
        self.processed + self.errors + self.cancelled + self.stopped_tasks
    }

    /// True if every enqueued task is accounted for exactly once.
    pub fn in_balance(&self) -> bool {
        let pending = (self.queued + self.active + self.retrying + self.deferred) as u64;
        self.enqueued == self.resolved() + pending
    }
}
