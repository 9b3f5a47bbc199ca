//! The admission seam: what an attempt must obtain, besides a slot, before it runs.
//!
//! A pool's own limit is local; admission policies add what a local slot cannot express:
//! a rate limit, a circuit breaker that fails fast while a backend is down, or a permit of a
//! limit shared by many processes (e.g. on Redis). Each policy is asked after the task has a
//! slot and before each attempt; it may admit at once, make the attempt wait, or reject the
//! task. The permit it returns is held until the attempt ends, then dropped (which is where a
//! global permit is released).
//!
//! A wait in [`Admission::acquire`] holds the task's slot. A policy that knows *when* a task
//! may go (a rate limit) says so first, in [`Admission::precheck`]: the pool then gives the
//! slot back and parks the task, holding no slot, until that moment — so a key far over its
//! rate cannot fill the pool with waiters and hold up everyone else.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use crate::executor::BoxFuture;
use crate::observer::TaskInfo;

/// Decides whether, and when, an attempt may start. See the [module docs](self).
pub trait Admission: Send + Sync + fmt::Debug + 'static {
    /// Resolves when the attempt may start (with a permit held for the attempt's duration),
    /// or with a [`Rejection`] that resolves the task with
    /// [`TaskError::Rejected`](crate::TaskError::Rejected).
    ///
    /// While this waits, the task holds its slot; the pool's `stop_now` and the task's
    /// cancellation token interrupt the wait.
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>>;

    /// Asked before [`acquire`](Self::acquire), each time the task takes a slot. With
    /// [`Precheck::ParkUntil`] the pool gives the slot back and parks the task until then (it
    /// counts in [`Stats::deferred`](crate::Stats::deferred)); the policy should set that
    /// moment aside for the task, so that `acquire` admits it at once when it comes back.
    /// Policies are asked in the order they were added; the first that parks or rejects
    /// decides. It runs on the pool's worker: it must be quick and must not block.
    /// Default: [`Precheck::Proceed`].
    fn precheck(&self, task: &TaskInfo) -> Precheck {
        let _ = task;
        Precheck::Proceed
    }
}

/// What [`Admission::precheck`] says of a task about to take a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precheck {
    /// Go on to [`Admission::acquire`].
    Proceed,
    /// Give the slot back and queue the task again at this moment.
    ParkUntil(std::time::Instant),
    /// Resolve the task with [`TaskError::Rejected`](crate::TaskError::Rejected).
    Reject(Rejection),
}

/// Held while an attempt runs; dropping it releases whatever the policy granted.
#[must_use = "dropping the permit releases it"]
pub struct AdmissionPermit {
    _held: Option<Box<dyn Any + Send>>,
}

impl AdmissionPermit {
    /// A permit that holds nothing (e.g. a rate limiter's: the token is spent on admission).
    pub fn empty() -> Self {
        Self { _held: None }
    }

    /// A permit that keeps `guard` alive until the attempt ends, then drops it.
    pub fn holding(guard: impl Any + Send) -> Self {
        Self {
            _held: Some(Box::new(guard)),
        }
    }
}

impl fmt::Debug for AdmissionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("holds", &self._held.is_some())
            .finish()
    }
}

/// Why an admission policy refused a task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open: the backend is failing, calls fail fast.
    CircuitOpen,
    /// A rate limit cannot admit the task (e.g. the wait would exceed what is allowed).
    RateLimited,
    /// The source of permits is unreachable and the policy is configured to fail closed.
    Unavailable,
    /// Another reason, named by the policy.
    Other(&'static str),
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectionKind::CircuitOpen => f.write_str("circuit open"),
            RejectionKind::RateLimited => f.write_str("rate limited"),
            RejectionKind::Unavailable => f.write_str("permits unavailable"),
            RejectionKind::Other(name) => f.write_str(name),
        }
    }
}

/// A refusal: its kind, a message for people, and when trying again may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Rejection {
    /// What kind of refusal.
    pub kind: RejectionKind,
    /// Details (never secrets).
    pub message: String,
    /// When a new attempt might be admitted, if the policy knows.
    pub retry_after: Option<Duration>,
}

impl Rejection {
    /// A rejection of this kind.
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a hint of when to try again.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}
