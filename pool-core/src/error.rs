//! Errors: what a task resolves with when it has no value, and what a bad configuration is.

use std::fmt;
use std::time::Duration;

/// Why a task resolved without a value.
///
/// Every enqueued task resolves exactly once, either with its value or with one of these.
///
/// # Display and source
/// The message says how the task ended ("task failed after 3 attempt(s)"); the task's own
/// error is its [`source`](std::error::Error::source), not repeated in the message, so a
/// report that walks the chain (anyhow's `{:#}`, eyre, `tracing`'s error fields) prints
/// each cause once and can downcast to it. `TaskError<E>` is a `std::error::Error` when `E`
/// is one; its `Display` needs nothing of `E`.
///
/// ```
/// use std::error::Error as _;
/// use pool_core::TaskError;
/// let error = TaskError::Failed {
///     error: std::io::Error::other("disk full"),
///     attempts: 3,
/// };
/// assert_eq!(error.to_string(), "task failed after 3 attempt(s)");
/// assert_eq!(error.source().unwrap().to_string(), "disk full");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TaskError<E> {
    /// The task's own error from its last attempt: not retryable, or out of retries.
    Failed {
        /// The error of the last attempt (also the [`source`](std::error::Error::source)).
        error: E,
        /// How many attempts ran.
        attempts: u32,
    },
    /// The last attempt ran longer than the task's timeout (and no retry was left).
    TimedOut {
        /// The per-attempt timeout that was exceeded.
        timeout: Duration,
        /// How many attempts ran.
        attempts: u32,
    },
    /// The pool was stopped before the task could finish (or it was enqueued after `stop`).
    Stopped,
    /// The task's cancellation token fired.
    Cancelled,
    /// The task panicked; the pool caught the panic and kept running.
    Panicked(PanicMessage),
    /// An admission policy refused the task (circuit open, rate limit, permits unavailable).
    Rejected(crate::admission::Rejection),
    /// The task's [deadline](crate::TaskOptions::deadline) passed before it could finish, or
    /// the pool gave up on it early because it could not finish in time.
    ///
    /// `attempts == 0` and `last == None`: it never ran. `last` is what its last attempt
    /// ended with when that is why it stopped: [`LastFailure::TimedOut`] for an attempt cut
    /// at the deadline (or by its own timeout, when the retry would have started too late),
    /// [`LastFailure::Error`] for a failure whose retry would have started too late (also the
    /// [`source`](std::error::Error::source)).
    DeadlineExceeded {
        /// How many attempts ran.
        attempts: u32,
        /// What the last attempt ended with, if a failure is why the task stopped.
        last: Option<LastFailure<E>>,
        /// The pool shed it before the deadline: the median of its recent attempts' service
        /// times was longer than the time left (see
        /// [`PoolBuilder::shed_doomed`](crate::PoolBuilder::shed_doomed)).
        shed: bool,
    },
    /// The task would have been retried, but the pool's retry budget had no tokens left.
    RetryBudgetExhausted {
        /// What the last attempt ended with (its error is the
        /// [`source`](std::error::Error::source)).
        last: LastFailure<E>,
        /// How many attempts ran.
        attempts: u32,
    },
    /// The task would have been retried, but the pool was saturated past the pressure
    /// rule's skip threshold and [`skip_retries_when_saturated`] is on.
    ///
    /// [`skip_retries_when_saturated`]: crate::PoolBuilder::skip_retries_when_saturated
    RetrySkipped {
        /// What the last attempt ended with (its error is the
        /// [`source`](std::error::Error::source)).
        last: LastFailure<E>,
        /// How many attempts ran.
        attempts: u32,
        /// How saturated the pool was, against which threshold.
        saturation: Saturation,
    },
}

impl<E> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed { attempts, .. } => {
                write!(f, "task failed after {attempts} attempt(s)")
            }
            TaskError::TimedOut { timeout, attempts } => write!(
                f,
                "task timed out after {attempts} attempt(s) of at most {timeout:?} each"
            ),
            TaskError::Stopped => f.write_str("the pool was stopped before the task finished"),
            TaskError::Cancelled => f.write_str("the task was cancelled"),
            TaskError::Panicked(message) => write!(f, "the task panicked: {message}"),
            TaskError::Rejected(rejection) => write!(f, "task rejected: {rejection}"),
            TaskError::DeadlineExceeded {
                attempts,
                last,
                shed,
            } => {
                write!(f, "deadline exceeded after {attempts} attempt(s)")?;
                if *shed {
                    f.write_str(
                        " (shed: the recent median service time did not fit in the time left)",
                    )?;
                }
                match last {
                    Some(LastFailure::TimedOut) => f.write_str(" (the last attempt timed out)"),
                    _ => Ok(()),
                }
            }
            TaskError::RetryBudgetExhausted { last, attempts } => {
                write!(
                    f,
                    "task failed after {attempts} attempt(s): the retry budget had no token \
                     for another"
                )?;
                last.note_timeout(f)
            }
            TaskError::RetrySkipped {
                last,
                attempts,
                saturation,
            } => {
                write!(
                    f,
                    "task failed after {attempts} attempt(s): its retry was skipped because \
                     the pool was saturated ({saturation}; \
                     PoolBuilder::skip_retries_when_saturated)"
                )?;
                last.note_timeout(f)
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TaskError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.task_error().map(|error| error as _)
    }
}

impl<E> TaskError<E> {
    /// A short, stable name of the variant (`"failed"`, `"timed_out"`, …) for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::Failed { .. } => "failed",
            TaskError::TimedOut { .. } => "timed_out",
            TaskError::Stopped => "stopped",
            TaskError::Cancelled => "cancelled",
            TaskError::Panicked(_) => "panicked",
            TaskError::Rejected(_) => "rejected",
            TaskError::RetryBudgetExhausted { .. } => "retry_budget_exhausted",
            TaskError::RetrySkipped { .. } => "retry_skipped",
            TaskError::DeadlineExceeded { .. } => "deadline_exceeded",
        }
    }

    /// The task's own error, if the last attempt returned one.
    pub fn task_error(&self) -> Option<&E> {
        match self {
            TaskError::Failed { error, .. } => Some(error),
            TaskError::RetryBudgetExhausted {
                last: LastFailure::Error(error),
                ..
            }
            | TaskError::RetrySkipped {
                last: LastFailure::Error(error),
                ..
            }
            | TaskError::DeadlineExceeded {
                last: Some(LastFailure::Error(error)),
                ..
            } => Some(error),
            _ => None,
        }
    }

    /// Consumes the error and returns the task's own error, if any.
    pub fn into_task_error(self) -> Option<E> {
        match self {
            TaskError::Failed { error, .. } => Some(error),
            TaskError::RetryBudgetExhausted {
                last: LastFailure::Error(error),
                ..
            }
            | TaskError::RetrySkipped {
                last: LastFailure::Error(error),
                ..
            }
            | TaskError::DeadlineExceeded {
                last: Some(LastFailure::Error(error)),
                ..
            } => Some(error),
            _ => None,
        }
    }
}

/// What a task's last attempt ended with, when the retry budget, the pressure rule or the
/// deadline stopped further retries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LastFailure<E> {
    /// The task returned this error.
    Error(E),
    /// The attempt timed out.
    TimedOut,
}

impl<E> LastFailure<E> {
    fn note_timeout(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastFailure::TimedOut => f.write_str(" (the last attempt timed out)"),
            LastFailure::Error(_) => Ok(()),
        }
    }
}

impl<E: fmt::Display> fmt::Display for LastFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastFailure::Error(error) => error.fmt(f),
            LastFailure::TimedOut => f.write_str("timed out"),
        }
    }
}

/// How saturated a pool was when its pressure rule declined a retry
/// ([`TaskError::RetrySkipped`]): tasks queued and running per slot, `(queued + active) /
/// limit`, against the rule's skip threshold.
///
/// Compact — three bytes, which fit beside the attempt count — so that the rare ending it
/// describes does not make every `Result<T, TaskError<E>>` larger: the level is kept to a
/// tenth up to 6,553.5, the threshold to a whole number up to 255 (larger figures read as
/// those maxima).
///
/// ```
/// use pool_core::Saturation;
/// let saturation = Saturation::new(18, 2, 2, 10.0);
/// assert_eq!((saturation.level(), saturation.skip_threshold()), (10.0, 10.0));
/// assert_eq!(
///     saturation.to_string(),
///     "10.0 tasks queued or running per slot, at or above the skip threshold 10"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saturation {
    /// The level in tenths, little-endian: bytes rather than a `u16`, whose alignment would
    /// cost the enum a byte of padding and so eight bytes of size.
    level_tenths: [u8; 2],
    /// The threshold, whole.
    threshold: u8,
}

impl Saturation {
    /// The figures of one decision: `queued + active` tasks over `limit` slots, and the
    /// [`skip_threshold`](crate::RetryPolicy::skip_threshold) they reached.
    pub fn new(queued: usize, active: usize, limit: usize, skip_threshold: f64) -> Self {
        // As the pressure rule computes it, in floats so that no count can overflow.
        let level = (queued as f64 + active as f64) / limit.max(1) as f64 * 10.0;
        Self {
            level_tenths: (saturating(level, u16::MAX.into()) as u16).to_le_bytes(),
            threshold: saturating(skip_threshold, u8::MAX.into()) as u8,
        }
    }

    /// Tasks queued or running per slot, to a tenth.
    pub fn level(&self) -> f64 {
        f64::from(u16::from_le_bytes(self.level_tenths)) / 10.0
    }

    /// The skip threshold the level reached, to a whole number.
    pub fn skip_threshold(&self) -> f64 {
        f64::from(self.threshold)
    }
}

/// `value` rounded into `[0, max]` (NaN reads as 0).
fn saturating(value: f64, max: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.round().clamp(0.0, max)
    }
}

impl fmt::Display for Saturation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1} tasks queued or running per slot, at or above the skip threshold {}",
            self.level(),
            self.skip_threshold()
        )
    }
}

/// The message a task panicked with (the payload if it was a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicMessage(pub String);

impl PanicMessage {
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<non-string panic payload>".to_owned()
        };
        PanicMessage(text)
    }
}

impl fmt::Display for PanicMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A setting that cannot work. Each variant names the field and what it must be.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Concurrency must be at least 1.
    #[error("concurrency must be at least 1 (got 0)")]
    ZeroConcurrency,
    /// `max_retry_delay` is below `retry_delay`.
    #[error("max_retry_delay ({max:?}) must be at least retry_delay ({base:?})")]
    MaxDelayBelowBase {
        /// The base delay.
        base: Duration,
        /// The maximum delay.
        max: Duration,
    },
    /// A numeric factor is NaN, infinite, or out of its range.
    #[error("{field} must be a finite number in {range} (got {value})")]
    InvalidFactor {
        /// The setting's name.
        field: &'static str,
        /// Its accepted range, e.g. `"(0, inf)"`.
        range: &'static str,
        /// The value given.
        value: f64,
    },
    /// The pressure thresholds are out of order (`clamp` must be below `skip`) or not positive.
    #[error(
        "pressure thresholds must satisfy 0 < clamp_threshold < skip_threshold \
         (got clamp {clamp}, skip {skip})"
    )]
    PressureThresholds {
        /// The clamp threshold.
        clamp: f64,
        /// The skip threshold.
        skip: f64,
    },
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// A tenant's weight or `max_in_flight` is 0 (its tasks could never start).
    #[error(
        "{} {field} must be at least 1 (got 0)",
        match tenant { Some(tenant) => format!("tenant {tenant:?}:"), None => "tenant_defaults:".to_owned() }
    )]
    TenantSetting {
        /// The tenant; `None` for [`PoolBuilder::tenant_defaults`](crate::PoolBuilder::tenant_defaults).
        tenant: Option<crate::tenant::Tenant>,
        /// `"weight"` or `"max_in_flight"`.
        field: &'static str,
    },
    /// The pool has no executor: build it inside a tokio runtime, or pass one with
    /// [`PoolBuilder::executor`](crate::PoolBuilder::executor).
    #[error(
        "no executor: call PoolBuilder::executor(..), or build inside a tokio runtime \
         with the `tokio` feature on"
    )]
    NoExecutor,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every handle resolves with a `Result<T, TaskError<E>>`: the figure a skipped retry
    /// carries must not make it larger. A large error costs itself plus eight bytes (the
    /// tag, the attempt count, and the figure in what would be padding); a boxed figure, an
    /// `f64` or a pair of `u16`s would cost eight more on every error whose `E` is large —
    /// object_store's is 72 bytes.
    #[test]
    fn a_skipped_retry_makes_task_errors_no_larger() {
        use std::mem::size_of;
        assert_eq!(size_of::<Saturation>(), 3);
        // Large errors with a niche (object_store's is an enum of 72 bytes).
        type Large = (String, [u64; 6]);
        type Larger = (String, [u64; 13]);
        assert_eq!(size_of::<TaskError<Large>>(), size_of::<Large>() + 8);
        assert_eq!(size_of::<TaskError<Larger>>(), size_of::<Larger>() + 8);
        assert!(size_of::<TaskError<()>>() <= size_of::<crate::admission::Rejection>() + 8);
    }

    #[test]
    fn saturation_keeps_its_figures_and_saturates() {
        let exact = Saturation::new(9, 1, 4, 10.0);
        assert_eq!((exact.level(), exact.skip_threshold()), (2.5, 10.0));
        let huge = Saturation::new(usize::MAX, usize::MAX, 1, f64::MAX);
        assert_eq!((huge.level(), huge.skip_threshold()), (6_553.5, 255.0));
        let odd = Saturation::new(0, 0, 0, f64::NAN);
        assert_eq!((odd.level(), odd.skip_threshold()), (0.0, 0.0));
    }
}
