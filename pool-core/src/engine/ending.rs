//! How an attempt ended and how a task ended — the engine's two words for endings — and
//! finishing a task: telling observers, then resolving its handle.
//!
//! An attempt's [`AttemptEnd`] goes into the decision after it (`decision.rs`), which either
//! retries or parks the task, or ends it with a [`TaskEnd`]. A `TaskEnd` is what the
//! observers' [`Outcome`] and the handle's `Result<T, TaskError<E>>` are made from, each in one
//! place below; nothing else translates an ending.

use std::time::{Duration, Instant};

use crate::admission::{Rejection, Wakeup};
use crate::error::{LastFailure, PanicMessage, Saturation, TaskError};
use crate::observer::{EventKind, FinishedTask, TaskInfo};
use crate::outcome::{AttemptResult, Outcome};
use crate::task::ErrorClass;

use super::job::{Job, TaskRef};
use super::ticks::Ticks;
use super::timeline::Timeline;
use super::{Engine, Now};

/// How one attempt ended, before the engine decides what follows.
#[derive(Debug)]
pub(crate) enum AttemptEnd {
    Succeeded,
    Failed(ErrorClass),
    /// The attempt ran past this timeout.
    TimedOut(Duration),
    Panicked(PanicMessage),
    /// The task's token fired.
    Cancelled,
    StoppedNow,
    Rejected(Rejection),
    /// An admission policy's precheck parks the task until then, or until the policy fires
    /// the wakeup; no attempt ran.
    Deferred(Instant, Option<Wakeup>),
    /// The task's deadline had passed before the attempt could start (or, with `shed`, the
    /// recent median service time did not fit in the time left): no attempt ran.
    PastDeadline {
        shed: bool,
    },
    /// The task's deadline came while the attempt ran: it was dropped.
    DeadlineCut,
}

impl AttemptEnd {
    /// How the attempt ended, for observers; `None` if no attempt was made.
    pub(crate) fn result(&self) -> Option<AttemptResult> {
        Some(match self {
            AttemptEnd::Succeeded => AttemptResult::Succeeded,
            AttemptEnd::Failed(class) => AttemptResult::Failed(*class),
            AttemptEnd::TimedOut(_) => AttemptResult::TimedOut,
            AttemptEnd::Panicked(_) => AttemptResult::Panicked,
            AttemptEnd::Cancelled | AttemptEnd::StoppedNow => AttemptResult::Cancelled,
            AttemptEnd::Rejected(_) => AttemptResult::Rejected,
            AttemptEnd::DeadlineCut => AttemptResult::DeadlineExceeded,
            AttemptEnd::Deferred(..) | AttemptEnd::PastDeadline { .. } => return None,
        })
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaskEnd {
    /// Its last attempt returned a value (kept in the task).
    Succeeded,
    /// Its last attempt returned an error of this class (kept in the task), and no retry
    /// followed.
    Failed(ErrorClass),
    /// Its last attempt ran past this timeout, and no retry followed.
    TimedOut(Duration),
    Stopped,
    Cancelled,
    Panicked(PanicMessage),
    Rejected(Rejection),
    /// The retry budget refused a retry; `timed_out` says what the last attempt ended with.
    BudgetExhausted {
        timed_out: bool,
    },
    /// The pressure rule skipped a retry (only with `skip_retries_when_saturated`), at this
    /// saturation; `timed_out` says what the last attempt ended with.
    RetrySkipped {
        timed_out: bool,
        saturation: Saturation,
    },
    /// The deadline passed, or would have before the task could finish. `timed_out`: the
    /// last attempt was cut (by the deadline, or by its timeout with no time left to retry);
    /// `shed`: the pool gave up early (the median service time did not fit).
    DeadlineExceeded {
        timed_out: bool,
        shed: bool,
    },
}

impl TaskEnd {
    /// What a failed or timed-out attempt ends the task with when it is not retried.
    pub(crate) fn of_failure(end: &AttemptEnd) -> Option<TaskEnd> {
        match end {
            AttemptEnd::Failed(class) => Some(TaskEnd::Failed(*class)),
            AttemptEnd::TimedOut(timeout) => Some(TaskEnd::TimedOut(*timeout)),
            _ => None,
        }
    }

    /// How the task ended, for observers.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            TaskEnd::Succeeded => Outcome::Succeeded,
            TaskEnd::Failed(class) => Outcome::Failed(*class),
            TaskEnd::TimedOut(_) => Outcome::TimedOut,
            TaskEnd::Stopped => Outcome::Stopped,
            TaskEnd::Cancelled => Outcome::Cancelled,
            TaskEnd::Panicked(_) => Outcome::Panicked,
            TaskEnd::Rejected(_) => Outcome::Rejected,
            TaskEnd::BudgetExhausted { .. } => Outcome::RetryBudgetExhausted,
            TaskEnd::RetrySkipped { .. } => Outcome::RetrySkipped,
            TaskEnd::DeadlineExceeded { .. } => Outcome::DeadlineExceeded,
        }
    }

    /// The handle's value: `last` is the result of the task's last attempt, `attempts` how
    /// many ran.
    pub(crate) fn into_result<T, E>(
        self,
        last: Option<Result<T, E>>,
        attempts: u32,
    ) -> Result<T, TaskError<E>> {
        match self {
            TaskEnd::Succeeded | TaskEnd::Failed(_) => match last {
                Some(Ok(value)) => Ok(value),
                Some(Err(error)) => Err(TaskError::Failed { error, attempts }),
                // Ending so without an attempt result is an engine bug; never leave the
                // handle hanging because of it.
                None => Err(TaskError::Stopped),
            },
            TaskEnd::TimedOut(timeout) => Err(TaskError::TimedOut { timeout, attempts }),
            TaskEnd::Stopped => Err(TaskError::Stopped),
            TaskEnd::Cancelled => Err(TaskError::Cancelled),
            TaskEnd::Panicked(message) => Err(TaskError::Panicked(message)),
            TaskEnd::Rejected(rejection) => Err(TaskError::Rejected(rejection)),
            TaskEnd::BudgetExhausted { timed_out } => {
                let last = match last {
                    Some(Err(error)) if !timed_out => LastFailure::Error(error),
                    _ => LastFailure::TimedOut,
                };
                Err(TaskError::RetryBudgetExhausted { last, attempts })
            }
            TaskEnd::RetrySkipped {
                timed_out,
                saturation,
            } => {
                let last = match last {
                    Some(Err(error)) if !timed_out => LastFailure::Error(error),
                    _ => LastFailure::TimedOut,
                };
                Err(TaskError::RetrySkipped {
                    last,
                    attempts,
                    saturation,
                })
            }
            TaskEnd::DeadlineExceeded { timed_out, shed } => {
                let last = match last {
                    _ if timed_out => Some(LastFailure::TimedOut),
                    Some(Err(error)) => Some(LastFailure::Error(error)),
                    _ => None,
                };
                Err(TaskError::DeadlineExceeded {
                    attempts,
                    last,
                    shed,
                })
            }
        }
    }
}

impl Engine {
    /// [`finish`](Self::finish) for a task that ends while it waits (stopped, cancelled, past
    /// its deadline), at `now`, a moment read already.
    pub(super) fn finish_waiting(
        &self,
        task: TaskRef,
        end: TaskEnd,
        now: Ticks,
        stay: &Timeline,
        info: Option<TaskInfo>,
        sequence: u64,
    ) {
        let now = &mut Now::at(self, now);
        self.finish(Job::new(task), end, now, stay, info, sequence);
    }

    /// Reports the task's whole timeline, then resolves its handle: whoever awaits the
    /// handle and then reads an observer (metrics) finds the task there. `now` is read only
    /// for the report.
    /// `info`: the task's identity if the caller has it already (else asked here, if needed).
    /// `sequence`: its place in the pool's finishing order, given when its end was counted
    /// ([`Counters::resolved`](super::state::Counters::resolved)).
    pub(super) fn finish(
        &self,
        job: Job,
        end: TaskEnd,
        now: &mut Now<'_>,
        stay: &Timeline,
        info: Option<TaskInfo>,
        sequence: u64,
    ) {
        if let Some(budget) = &self.budget {
            budget.forget(job.task().id());
        }
        if self.observers.wants(EventKind::TaskFinished) {
            let task = job.task();
            let attempts = task.attempts();
            // A task that never left for a while has no stored timeline, and then its lock
            // need not be taken to look: one ending its first attempt in this stay, in a pool
            // without admission policies (a policy may defer a task before its first attempt;
            // the retry budget defers only retries). Its identity is read without the lock
            // too if it has no labels.
            let never_left =
                attempts == 1 && stay.first_started_at().is_some() && self.admission.is_empty();
            let stored = if never_left {
                debug_assert!(
                    task.stored_timeline().is_none(),
                    "a task that left for a while was taken for one that never did"
                );
                None
            } else {
                task.stored_timeline()
            };
            // Read apart (not moved through a tuple with the timeline: a copy of 200 bytes).
            let info = info.unwrap_or_else(|| task.info());
            // A task that never left (nearly all) is read from its stay as it is: no copy.
            let merged;
            let timeline = match stored {
                None => stay,
                Some(earlier) => {
                    merged = stay.after(Some(earlier));
                    &merged
                }
            };
            self.observers.task_finished(&FinishedTask::new(
                &info,
                self.epoch,
                timeline,
                now.get(),
                attempts,
                end.outcome(),
                sequence,
            ));
        }
        if job.resolve(end) {
            // Aborted by its handle: settled now.
            self.aborts
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::RejectionKind;

    #[test]
    fn each_ending_makes_its_handle_value() {
        type Value = Result<u8, TaskError<&'static str>>;
        let value = |end: TaskEnd, last: Option<Result<u8, &'static str>>| -> Value {
            end.into_result(last, 3)
        };
        assert_eq!(value(TaskEnd::Succeeded, Some(Ok(7))).ok(), Some(7));
        assert!(matches!(
            value(TaskEnd::Failed(ErrorClass::Fatal), Some(Err("no"))),
            Err(TaskError::Failed {
                error: "no",
                attempts: 3
            })
        ));
        assert!(matches!(
            value(TaskEnd::TimedOut(Duration::from_secs(2)), None),
            Err(TaskError::TimedOut { attempts: 3, .. })
        ));
        assert!(matches!(
            value(TaskEnd::Stopped, None),
            Err(TaskError::Stopped)
        ));
        assert!(matches!(
            value(TaskEnd::Cancelled, Some(Err("no"))),
            Err(TaskError::Cancelled)
        ));
        let rejection = Rejection::new(RejectionKind::CircuitOpen, "open");
        assert!(matches!(
            value(TaskEnd::Rejected(rejection), None),
            Err(TaskError::Rejected(_))
        ));
        assert!(matches!(
            value(
                TaskEnd::BudgetExhausted { timed_out: false },
                Some(Err("no"))
            ),
            Err(TaskError::RetryBudgetExhausted {
                last: LastFailure::Error("no"),
                attempts: 3
            })
        ));
        assert!(matches!(
            value(
                TaskEnd::BudgetExhausted { timed_out: true },
                Some(Err("no"))
            ),
            Err(TaskError::RetryBudgetExhausted {
                last: LastFailure::TimedOut,
                ..
            })
        ));
    }

    #[test]
    fn a_missed_deadline_keeps_the_failure_that_stopped_the_task() {
        type Value = Result<u8, TaskError<&'static str>>;
        let value = |end: TaskEnd, last: Option<Result<u8, &'static str>>, attempts| -> Value {
            end.into_result(last, attempts)
        };
        let missed = |timed_out, shed| TaskEnd::DeadlineExceeded { timed_out, shed };
        assert!(matches!(
            value(missed(false, false), None, 0),
            Err(TaskError::DeadlineExceeded {
                attempts: 0,
                last: None,
                shed: false
            })
        ));
        assert!(matches!(
            value(missed(false, false), Some(Err("503")), 2),
            Err(TaskError::DeadlineExceeded {
                attempts: 2,
                last: Some(LastFailure::Error("503")),
                ..
            })
        ));
        assert!(matches!(
            value(missed(true, false), None, 1),
            Err(TaskError::DeadlineExceeded {
                last: Some(LastFailure::TimedOut),
                ..
            })
        ));
        let shed = value(missed(false, true), None, 0).unwrap_err();
        assert!(matches!(
            shed,
            TaskError::DeadlineExceeded { shed: true, .. }
        ));
        assert_eq!(shed.kind(), "deadline_exceeded");
        assert!(shed.to_string().contains("shed"), "{shed}");
        assert_eq!(
            missed(false, true).outcome(),
            crate::outcome::Outcome::DeadlineExceeded
        );
    }

    #[test]
    fn a_failure_not_retried_ends_the_task_as_it_ended_the_attempt() {
        assert_eq!(
            TaskEnd::of_failure(&AttemptEnd::Failed(ErrorClass::Throttled)),
            Some(TaskEnd::Failed(ErrorClass::Throttled))
        );
        let timeout = Duration::from_millis(5);
        assert_eq!(
            TaskEnd::of_failure(&AttemptEnd::TimedOut(timeout)),
            Some(TaskEnd::TimedOut(timeout))
        );
        assert_eq!(TaskEnd::of_failure(&AttemptEnd::Succeeded), None);
    }
}
