//! Mergeable counts and duration sums of finished tasks.

use std::collections::BTreeMap;

use pool_core::{ErrorClass, Outcome};

use crate::record::StoredTask;

/// Every [`Outcome::kind`], in the order of [`Outcome::index`].
pub(crate) const OUTCOME_KINDS: [&str; Outcome::KINDS.len()] = Outcome::KINDS;

/// Every failure class, in the order of [`ErrorClass::index`].
pub(crate) const ERROR_CLASSES: [&str; 3] = ErrorClass::KINDS;

/// Counts and sums over a set of finished tasks. Sums are in nanoseconds (`u128`: no overflow).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tally {
    pub(crate) finished: u64,
    pub(crate) by_outcome: [u64; OUTCOME_KINDS.len()],
    pub(crate) failed_by_class: [u64; ERROR_CLASSES.len()],
    pub(crate) attempts: u64,
    pub(crate) retries: u64,
    pub(crate) queue_wait_nanos: u128,
    pub(crate) execution_nanos: u128,
    pub(crate) retry_delay_nanos: u128,
    pub(crate) total_nanos: u128,
}

impl Tally {
    #[inline]
    pub(crate) fn add_task(&mut self, task: &StoredTask) {
        self.finished += 1;
        self.by_outcome[task.outcome.index()] += 1;
        if let Outcome::Failed(class) = task.outcome {
            self.failed_by_class[class.index()] += 1;
        }
        self.attempts += u64::from(task.attempts);
        self.retries += u64::from(task.retries());
        self.queue_wait_nanos += u128::from(task.queue_wait_nanos);
        self.execution_nanos += u128::from(task.execution_nanos);
        self.retry_delay_nanos += u128::from(task.retry_delay_nanos);
        self.total_nanos += u128::from(task.total_nanos);
    }

    pub(crate) fn merge(&mut self, other: &Tally) {
        self.finished += other.finished;
        for (mine, theirs) in self.by_outcome.iter_mut().zip(other.by_outcome) {
            *mine += theirs;
        }
        for (mine, theirs) in self.failed_by_class.iter_mut().zip(other.failed_by_class) {
            *mine += theirs;
        }
        self.attempts += other.attempts;
        self.retries += other.retries;
        self.queue_wait_nanos += other.queue_wait_nanos;
        self.execution_nanos += other.execution_nanos;
        self.retry_delay_nanos += other.retry_delay_nanos;
        self.total_nanos += other.total_nanos;
    }

    pub(crate) fn succeeded(&self) -> u64 {
        self.by_outcome[Outcome::Succeeded.index()]
    }

    pub(crate) fn cancelled(&self) -> u64 {
        self.by_outcome[Outcome::Cancelled.index()]
    }

    pub(crate) fn stopped(&self) -> u64 {
        self.by_outcome[Outcome::Stopped.index()]
    }

    /// Every outcome but success, cancellation and stop.
    pub(crate) fn failed(&self) -> u64 {
        self.unsucceeded() - self.cancelled() - self.stopped()
    }

    /// Every outcome but success: what the deprecated `errors` fields count.
    pub(crate) fn unsucceeded(&self) -> u64 {
        self.finished - self.succeeded()
    }

    /// Tasks that did not succeed over finished tasks; 0 when nothing finished.
    pub(crate) fn error_rate(&self) -> f64 {
        ratio(self.unsucceeded(), self.finished).unwrap_or(0.0)
    }

    /// Retries per finished task; 0 when nothing finished.
    pub(crate) fn avg_retries(&self) -> f64 {
        ratio(self.retries, self.finished).unwrap_or(0.0)
    }

    /// Every outcome other than success that occurred, by [`Outcome::kind`].
    pub(crate) fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        non_zero(&OUTCOME_KINDS[1..], &self.by_outcome[1..])
    }

    /// Failed tasks by the class of their last error.
    pub(crate) fn failures_by_class(&self) -> BTreeMap<String, u64> {
        non_zero(&ERROR_CLASSES, &self.failed_by_class)
    }

    /// Mean of a nanosecond sum over finished tasks, in microseconds.
    pub(crate) fn mean_micros(&self, sum_nanos: u128) -> f64 {
        if self.finished == 0 {
            return 0.0;
        }
        sum_nanos as f64 / self.finished as f64 / 1_000.0
    }
}

fn non_zero(names: &[&str], counts: &[u64]) -> BTreeMap<String, u64> {
    names
        .iter()
        .zip(counts)
        .filter(|(_, &count)| count > 0)
        .map(|(name, &count)| ((*name).to_owned(), count))
        .collect()
}

/// `part / whole`, or `None` when `whole` is 0.
pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}
