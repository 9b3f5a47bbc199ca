//! How an attempt ended and how a task ended: the two words every part of s3pool uses for
//! endings — events and observers, admission policies (a circuit breaker's failure count,
//! an adaptive rate limit's back-off), tuners and metrics.

use crate::task::ErrorClass;

/// How one attempt ended: what [`Event::AttemptFinished`](crate::Event::AttemptFinished)
/// reports and what an admission policy learns of the attempts it admitted
/// ([`Admission::complete`](crate::Admission::complete)).
///
/// # What an ending says of the backend
///
/// One meaning, used by everything that learns from attempts:
///
/// | [`AttemptResult`]            | the backend…                          | [`is_backend_failure`] | [`is_overload`] |
/// |------------------------------|---------------------------------------|:---:|:---:|
/// | `Succeeded`                  | answered with a value                 |     |     |
/// | `Failed(Fatal)`              | answered no (404, 403): it is healthy |     |     |
/// | `Failed(Retryable)`          | failed (500, a reset connection)      |  ✓  |     |
/// | `Failed(Throttled)`          | said "slow down" (503 SlowDown, 429)  |  ✓  |  ✓  |
/// | `TimedOut`                   | did not answer in time                |  ✓  |  ✓  |
/// | `Panicked`                   | unknown: the attempt's own code panicked; counted, as a breaker had rather stop calling than keep panicking |  ✓  |     |
/// | `Cancelled`, `Rejected`, `DeadlineExceeded` | — the attempt was cut short or never ran: [`is_cut_short`] | | |
///
/// A circuit breaker counts backend failures against the backend and ignores attempts cut
/// short; a tuner backs off on overload and learns nothing from a retryable failure (a 500
/// says the backend is unwell, not that it has too much to do); an adaptive rate limit backs
/// off on [throttling](Self::is_throttled) alone (a timeout speaks of how much is in flight,
/// which is the tuner's business, not of the request rate). Throttling is overload, and
/// overload is always a backend failure: whatever slows a rate limit down makes a tuner back
/// off, and counts toward opening a breaker.
///
/// [`is_backend_failure`]: Self::is_backend_failure
/// [`is_overload`]: Self::is_overload
/// [`is_cut_short`]: Self::is_cut_short
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum AttemptResult {
    /// The attempt returned a value.
    Succeeded,
    /// The attempt returned an error of this class.
    Failed(ErrorClass),
    /// The attempt ran past its timeout and was dropped.
    TimedOut,
    /// The attempt panicked.
    Panicked,
    /// The attempt was dropped by cancellation or `stop_now`.
    Cancelled,
    /// An admission policy refused it; the attempt never ran.
    Rejected,
    /// The task's deadline came while the attempt ran: it was dropped. Cut short — the
    /// backend may have had little time — so nothing that learns from attempts counts it.
    DeadlineExceeded,
}

impl AttemptResult {
    /// The attempt was cut short (cancelled, `stop_now`) or never ran (rejected): it says
    /// nothing of the backend, and nothing that learns from attempts counts it.
    pub fn is_cut_short(self) -> bool {
        matches!(
            self,
            AttemptResult::Cancelled | AttemptResult::Rejected | AttemptResult::DeadlineExceeded
        )
    }

    /// The backend said "slow down" (S3's 503 SlowDown, HTTP 429): its own word that the
    /// request rate is too high. What an adaptive rate limit backs off on.
    pub fn is_throttled(self) -> bool {
        matches!(self, AttemptResult::Failed(ErrorClass::Throttled))
    }

    /// The backend has more than it can take: it throttled the attempt, or did not answer
    /// in time. What tuners back off on.
    pub fn is_overload(self) -> bool {
        matches!(
            self,
            AttemptResult::Failed(ErrorClass::Throttled) | AttemptResult::TimedOut
        )
    }

    /// The attempt failed in a way that speaks against the backend's health: overload, a
    /// retryable failure, or a panic. A fatal error (a 404) is a healthy backend's answer,
    /// so it is not one. What a circuit breaker counts toward opening.
    pub fn is_backend_failure(self) -> bool {
        match self {
            AttemptResult::Failed(class) => class.is_retryable(),
            AttemptResult::TimedOut | AttemptResult::Panicked => true,
            AttemptResult::Succeeded
            | AttemptResult::Cancelled
            | AttemptResult::Rejected
            | AttemptResult::DeadlineExceeded => false,
        }
    }

    /// A short, stable name (`"succeeded"`, `"failed"`, …) for metrics labels.
    pub fn kind(self) -> &'static str {
        match self {
            AttemptResult::Succeeded => "succeeded",
            AttemptResult::Failed(_) => "failed",
            AttemptResult::TimedOut => "timed_out",
            AttemptResult::Panicked => "panicked",
            AttemptResult::Cancelled => "cancelled",
            AttemptResult::Rejected => "rejected",
            AttemptResult::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

/// How a task ended: what [`TaskRecord::outcome`](crate::TaskRecord::outcome) reports, one
/// to one with the handle's `Result` (its `Ok`, or the [`TaskError`](crate::TaskError)
/// variant of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Outcome {
    /// Resolved with its value.
    Succeeded,
    /// Resolved with the task's own error, of this class.
    Failed(ErrorClass),
    /// Resolved with `TimedOut`.
    TimedOut,
    /// Resolved with `Panicked`.
    Panicked,
    /// Resolved with `Cancelled`.
    Cancelled,
    /// Resolved with `Stopped`.
    Stopped,
    /// Resolved with `RetryBudgetExhausted`.
    RetryBudgetExhausted,
    /// Resolved with `Rejected` by an admission policy.
    Rejected,
    /// Resolved with `DeadlineExceeded`.
    DeadlineExceeded,
    /// Resolved with `RetrySkipped`: the pressure rule declined a retry (only with
    /// [`skip_retries_when_saturated`](crate::PoolBuilder::skip_retries_when_saturated)).
    RetrySkipped,
}

impl Outcome {
    /// Every kind of outcome, one of each, in the order metrics list them.
    pub const KINDS: [&'static str; 10] = [
        "succeeded",
        "failed",
        "timed_out",
        "panicked",
        "cancelled",
        "stopped",
        "retry_budget_exhausted",
        "rejected",
        "deadline_exceeded",
        "retry_skipped",
    ];

    /// A short, stable name (`"succeeded"`, `"failed"`, …) for metrics labels: one of
    /// [`Outcome::KINDS`].
    pub fn kind(self) -> &'static str {
        Self::KINDS[self.index()]
    }

    /// Where [`kind`](Self::kind) stands in [`Outcome::KINDS`].
    pub fn index(self) -> usize {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed(_) => 1,
            Outcome::TimedOut => 2,
            Outcome::Panicked => 3,
            Outcome::Cancelled => 4,
            Outcome::Stopped => 5,
            Outcome::RetryBudgetExhausted => 6,
            Outcome::Rejected => 7,
            Outcome::DeadlineExceeded => 8,
            Outcome::RetrySkipped => 9,
        }
    }

    /// True only for [`Outcome::Succeeded`].
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Succeeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_RESULT: [AttemptResult; 9] = [
        AttemptResult::Succeeded,
        AttemptResult::Failed(ErrorClass::Fatal),
        AttemptResult::Failed(ErrorClass::Retryable),
        AttemptResult::Failed(ErrorClass::Throttled),
        AttemptResult::TimedOut,
        AttemptResult::Panicked,
        AttemptResult::Cancelled,
        AttemptResult::Rejected,
        AttemptResult::DeadlineExceeded,
    ];

    #[test]
    fn overload_is_a_backend_failure_and_cut_short_is_neither() {
        for result in EVERY_RESULT {
            if result.is_throttled() {
                assert!(result.is_overload(), "{result:?}");
            }
            if result.is_overload() {
                assert!(result.is_backend_failure(), "{result:?}");
            }
            if result.is_cut_short() {
                assert!(!result.is_backend_failure() && !result.is_overload());
            }
        }
    }

    #[test]
    fn a_fatal_error_is_a_healthy_answer_and_a_retryable_one_is_not_overload() {
        assert!(!AttemptResult::Failed(ErrorClass::Fatal).is_backend_failure());
        assert!(AttemptResult::Failed(ErrorClass::Retryable).is_backend_failure());
        assert!(!AttemptResult::Failed(ErrorClass::Retryable).is_overload());
    }

    #[test]
    fn outcome_kinds_are_distinct_and_in_place() {
        let outcomes = [
            Outcome::Succeeded,
            Outcome::Failed(ErrorClass::Fatal),
            Outcome::TimedOut,
            Outcome::Panicked,
            Outcome::Cancelled,
            Outcome::Stopped,
            Outcome::RetryBudgetExhausted,
            Outcome::Rejected,
            Outcome::DeadlineExceeded,
        ];
        for (index, outcome) in outcomes.into_iter().enumerate() {
            assert_eq!(outcome.index(), index);
            assert_eq!(outcome.kind(), Outcome::KINDS[index]);
        }
    }
}
