//! The admission seam: what an attempt must obtain, besides a slot, before it runs.
//!
//! A pool's own limit is local; admission policies add what a local slot cannot express:
//! a rate limit, a circuit breaker that fails fast while a backend is down, or a permit of a
//! limit shared by many processes (e.g. on Redis). Each policy is asked after the task has a
//! slot and before each attempt; it may admit at once, make the attempt wait, or reject the
//! task. The permit it returns is held until the attempt ends; then the policy learns how the
//! attempt ended ([`Admission::complete`], as tower's retry `Policy` sees the `Result` and
//! Vector's response future adjusts its controller) and the permit is dropped (which is
//! where a global permit is released). A policy is one piece: what it decides before an
//! attempt and what it learns after meet in its permit, with no observer beside it.
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
use crate::outcome::AttemptResult;

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

    /// The attempt this policy admitted with `permit` has ended with `result`: a circuit
    /// breaker counts it, an adaptive rate limit backs off on
    /// [overload](AttemptResult::is_overload). The permit carries whatever the policy needs
    /// to know which attempt it was (a probe, a key); take it back with
    /// [`AdmissionPermit::downcast`]. The permit is dropped when this returns. Default: drops
    /// it.
    ///
    /// Called once for every permit granted: right after the attempt ends and before the pool
    /// decides what follows it, or with [`AttemptResult::Rejected`] (or `Cancelled`) when a
    /// policy asked after this one refused the attempt (or it was cancelled) before it ran.
    /// A permit whose runner the executor drops mid-attempt (runtime shutdown) is dropped
    /// without a call. It runs on the pool's worker, outside the pool's lock: it must be
    /// quick and must not block.
    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        let _ = result;
        drop(permit);
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
    held: Option<Box<dyn Any + Send>>,
}

impl AdmissionPermit {
    /// A permit that holds nothing (e.g. a rate limiter's: the token is spent on admission).
    pub fn empty() -> Self {
        Self { held: None }
    }

    /// A permit that keeps `guard` alive until the attempt ends, then drops it (after
    /// [`Admission::complete`] has seen it, if the policy looks).
    pub fn holding(guard: impl Any + Send) -> Self {
        Self {
            held: Some(Box::new(guard)),
        }
    }

    /// The guard this permit holds, if it is a `T` (what a policy's
    /// [`Admission::complete`] uses to learn which of its attempts ended); the permit itself
    /// otherwise.
    ///
    /// ```
    /// use pool_core::AdmissionPermit;
    /// let permit = AdmissionPermit::holding("prefix-a");
    /// let permit = permit.downcast::<u32>().unwrap_err();
    /// assert_eq!(permit.downcast::<&str>().ok(), Some("prefix-a"));
    /// assert!(AdmissionPermit::empty().downcast::<&str>().is_err());
    /// ```
    pub fn downcast<T: Any>(self) -> Result<T, Self> {
        match self.held {
            Some(held) => match held.downcast::<T>() {
                Ok(guard) => Ok(*guard),
                Err(held) => Err(Self { held: Some(held) }),
            },
            None => Err(self),
        }
    }
}

impl fmt::Debug for AdmissionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("holds", &self.held.is_some())
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
