//! Progress of one run: what a CLI feeds into a progress bar.

use std::fmt;
use std::time::{Duration, Instant};

use pool_core::TaskError;

/// A snapshot of one run's progress, passed to [`Run::on_progress`](crate::Run::on_progress)
/// after every item resolves and readable at any time with [`Run::progress`](crate::Run::progress).
///
/// `done == succeeded + failed + cancelled + stopped`: the words pool-core's `Stats` and
/// pool-metrics' `LiveStats` use for the same outcomes. Times come from the pool's clock, so under paused
/// or simulated time the rate is in virtual seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Items resolved, whatever the outcome.
    pub done: u64,
    /// Items resolved with their value.
    pub succeeded: u64,
    /// Items resolved with their own failure: an error, a timeout, a panic, or an exhausted
    /// retry budget.
    pub failed: u64,
    /// Items resolved `Cancelled` (fail-fast, a dropped stream, a token).
    pub cancelled: u64,
    /// Items resolved `Stopped` (the pool stopped before they ran).
    pub stopped: u64,
    /// Items that never produced a result of their own: `cancelled + stopped`.
    #[deprecated(
        since = "0.1.0",
        note = "use `cancelled` and `stopped` (this is their sum)"
    )]
    pub skipped: u64,
    /// Items handed to the pool and not yet resolved.
    pub in_flight: u64,
    /// Items in the input, when known: the length of a list, an exact `size_hint`, or what
    /// [`Run::total`](crate::Run::total) said.
    pub total: Option<u64>,
    /// Time since the run was first polled.
    pub elapsed: Duration,
}

impl Progress {
    /// Items resolved per second since the run started (0 before any time has passed).
    pub fn rate_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    /// `done / total` in `[0, 1]`, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        self.total
            .map(|total| (self.done as f64 / total.max(1) as f64).min(1.0))
    }

    /// Estimated time left at the current rate, when the total is known and some items are done.
    /// An estimate longer than a `Duration` holds is `Duration::MAX`.
    pub fn eta(&self) -> Option<Duration> {
        let left = self.total?.saturating_sub(self.done);
        let rate = self.rate_per_sec();
        // A slow start over a huge total gives an estimate past what a Duration holds.
        (rate > 0.0)
            .then(|| Duration::try_from_secs_f64(left as f64 / rate).unwrap_or(Duration::MAX))
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            Some(total) => write!(f, "{}/{total}", self.done)?,
            None => write!(f, "{}", self.done)?,
        }
        write!(
            f,
            " done ({} failed, {} cancelled, {} stopped), {:.1}/s",
            self.failed,
            self.cancelled,
            self.stopped,
            self.rate_per_sec()
        )
    }
}

type ProgressCallback = Box<dyn FnMut(&Progress) + Send>;

/// Counts one run's items and calls the progress callback.
pub(crate) struct ProgressTracker {
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    stopped: u64,
    total: Option<u64>,
    started_at: Option<Instant>,
    callback: Option<ProgressCallback>,
}

impl fmt::Debug for ProgressTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressTracker")
            .field("succeeded", &self.succeeded)
            .field("failed", &self.failed)
            .field("cancelled", &self.cancelled)
            .field("stopped", &self.stopped)
            .field("total", &self.total)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

/// How an item's resolution counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemOutcome {
    Succeeded,
    Failed,
    Cancelled,
    Stopped,
}

impl ItemOutcome {
    pub(crate) fn of<T, E>(result: &Result<T, TaskError<E>>) -> Self {
        match result {
            Ok(_) => ItemOutcome::Succeeded,
            Err(TaskError::Cancelled) => ItemOutcome::Cancelled,
            Err(TaskError::Stopped) => ItemOutcome::Stopped,
            Err(_) => ItemOutcome::Failed,
        }
    }
}

impl ProgressTracker {
    pub(crate) fn new(total: Option<u64>) -> Self {
        Self {
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            stopped: 0,
            total,
            started_at: None,
            callback: None,
        }
    }

    pub(crate) fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    pub(crate) fn set_callback(&mut self, callback: ProgressCallback) {
        self.callback = Some(callback);
    }

    pub(crate) fn start(&mut self, now: Instant) {
        self.started_at.get_or_insert(now);
    }

    pub(crate) fn record(&mut self, outcome: ItemOutcome, in_flight: u64, now: Instant) {
        match outcome {
            ItemOutcome::Succeeded => self.succeeded += 1,
            ItemOutcome::Failed => self.failed += 1,
            ItemOutcome::Cancelled => self.cancelled += 1,
            ItemOutcome::Stopped => self.stopped += 1,
        }
        if self.callback.is_some() {
            let progress = self.snapshot(in_flight, now);
            if let Some(callback) = self.callback.as_mut() {
                callback(&progress);
            }
        }
    }

    pub(crate) fn snapshot(&self, in_flight: u64, now: Instant) -> Progress {
        // `skipped`: the deprecated sum, filled in for one release.
        #[allow(deprecated)]
        Progress {
            done: self.succeeded + self.failed + self.cancelled + self.stopped,
            succeeded: self.succeeded,
            failed: self.failed,
            cancelled: self.cancelled,
            stopped: self.stopped,
            skipped: self.cancelled + self.stopped,
            in_flight,
            total: self.total,
            elapsed: self
                .started_at
                .map_or(Duration::ZERO, |start| now.saturating_duration_since(start)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64, total: Option<u64>, elapsed_secs: u64) -> Progress {
        #[allow(deprecated)]
        Progress {
            done,
            succeeded: done,
            failed: 0,
            cancelled: 0,
            stopped: 0,
            skipped: 0,
            in_flight: 0,
            total,
            elapsed: Duration::from_secs(elapsed_secs),
        }
    }

    #[test]
    fn rate_fraction_and_eta_follow_done_total_and_elapsed() {
        let p = progress(50, Some(200), 10);
        assert_eq!(p.rate_per_sec(), 5.0);
        assert_eq!(p.fraction(), Some(0.25));
        assert_eq!(p.eta(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn an_estimate_too_long_for_a_duration_saturates() {
        let slow = Progress {
            elapsed: Duration::MAX,
            ..progress(1, Some(u64::MAX), 0)
        };
        assert_eq!(slow.eta(), Some(Duration::MAX));
        assert_eq!(progress(0, Some(u64::MAX), 1).eta(), None);
        assert!(progress(1, Some(u64::MAX), 1).fraction().unwrap() < 1e-18);
        assert_eq!(progress(u64::MAX, Some(0), 1).fraction(), Some(1.0));
    }

    #[test]
    fn no_time_or_no_total_gives_no_rate_or_eta() {
        assert_eq!(progress(5, Some(10), 0).rate_per_sec(), 0.0);
        assert_eq!(progress(5, Some(10), 0).eta(), None);
        assert_eq!(progress(5, None, 1).fraction(), None);
        assert_eq!(progress(5, None, 1).eta(), None);
    }

    #[test]
    fn tracker_counts_by_outcome_and_calls_back_each_time() {
        let start = Instant::now();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tracker = ProgressTracker::new(Some(4));
        let sink = std::sync::Arc::clone(&seen);
        tracker.set_callback(Box::new(move |p| sink.lock().unwrap().push(*p)));
        tracker.start(start);
        let later = start + Duration::from_secs(1);
        tracker.record(ItemOutcome::Succeeded, 2, later);
        tracker.record(ItemOutcome::Failed, 1, later);
        tracker.record(ItemOutcome::Cancelled, 1, later);
        tracker.record(ItemOutcome::Stopped, 0, later);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        let last = seen[3];
        assert_eq!(
            (
                last.done,
                last.succeeded,
                last.failed,
                last.cancelled,
                last.stopped
            ),
            (4, 1, 1, 1, 1)
        );
        #[allow(deprecated)]
        let skipped = last.skipped;
        assert_eq!(skipped, 2);
        assert_eq!(last.rate_per_sec(), 4.0);
        assert_eq!(
            last.to_string(),
            "4/4 done (1 failed, 1 cancelled, 1 stopped), 4.0/s"
        );
    }
}
