//! One task's timeline: when it entered the queue, waited, ran and backed off, from enqueue
//! to resolution — what its events and its [`TaskRecord`](crate::TaskRecord) report.
//!
//! A runner keeps the timeline of the stay it handles (from the task's entry into the queue
//! to the end of its attempt) on its stack: a task that runs once needs nothing else. A task
//! that leaves for a while (retry backoff; deferral, when observers listen) keeps its
//! timeline so far in its cold box, and the next stay is added to it with
//! [`Timeline::after`]: timelines compose, so the stored one and the current one are one type.
//!
//! Moments are the engine's [`Ticks`]; they become `Instant`s only when an observer asks
//! ([`FinishedTask`](crate::FinishedTask), [`TaskRecord`](crate::TaskRecord)). Waits and
//! latencies are kept as nanoseconds (`u64`, saturating at 584 years), as the ticks they are
//! the differences of: a sum is one addition, and a collector that counts in nanoseconds
//! reads them as they are. A `Duration` normalises seconds and nanoseconds on every sum, and
//! each figure made one and taken apart again cost about a hundred instructions per task
//! with a collector attached (callgrind, `noop_pair run s3pool-metrics`).
//! When the stay left the queue is known only if something read the clock then (observers
//! listen, the queue weighs priorities against age, the pool was not saturated): a runner
//! reads the clock only when something needs the time, so the plain path's stays have no
//! start moment, and nothing of theirs is reported.

use std::time::Duration;

use super::ticks::{saturating_nanos, Ticks};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// When the task was first enqueued.
    queued_at: Ticks,
    /// When it entered the queue for the current stay (enqueue, or back from parking).
    entered_at: Ticks,
    /// When the current stay's attempt started (after admission); the moment it left the
    /// queue until then. `None`: nobody read the clock then (nothing needed the time).
    started_at: Option<Ticks>,
    /// When its first attempt started; `None` while none has.
    first_started_at: Option<Ticks>,
    /// Tasks running when the current stay left the queue, this one included.
    in_flight: usize,
    /// How long the current stay's attempt ran, ns.
    latency: u64,
    /// Time spent waiting in the queue (or deferred by admission), summed over stays, ns.
    queue_wait: u64,
    /// Time spent running, summed over attempts, ns.
    execution: u64,
    /// Time spent in retry backoff, summed, ns.
    retry_delay: u64,
    /// The last retry backoff, before the pressure rule (what decorrelated jitter grows from).
    previous_backoff: Option<Duration>,
}

impl Timeline {
    /// A stay that ends without leaving the queue (the task is stopped or cancelled while it
    /// waits): no queue wait is counted.
    pub(crate) fn waiting(entered_at: Ticks) -> Self {
        Self {
            queued_at: entered_at,
            entered_at,
            started_at: Some(entered_at),
            first_started_at: None,
            in_flight: 0,
            latency: 0,
            queue_wait: 0,
            execution: 0,
            retry_delay: 0,
            previous_backoff: None,
        }
    }

    /// A stay that entered the queue at `entered_at` and left it at `popped_at` (if the
    /// clock was read then), when `in_flight` tasks ran (this one included).
    pub(crate) fn popped(entered_at: Ticks, popped_at: Option<Ticks>, in_flight: usize) -> Self {
        let mut timeline = Self {
            in_flight,
            started_at: None,
            ..Self::waiting(entered_at)
        };
        if let Some(now) = popped_at {
            timeline.left_queue(now);
        }
        timeline
    }

    /// The stay left the queue at `now` (read after the pop, when the pop itself needed no
    /// time but what follows does).
    pub(crate) fn left_queue(&mut self, now: Ticks) {
        self.started_at = Some(now);
        self.queue_wait = now.nanos_since(self.entered_at);
    }

    /// Admission let the attempt start at `now` (its wait is not part of the attempt).
    pub(crate) fn admitted(&mut self, now: Ticks) {
        self.started_at = Some(now);
    }

    /// The attempt starts (at [`started_at`](Self::started_at)).
    pub(crate) fn started(&mut self) {
        self.first_started_at = self.first_started_at.or(self.started_at);
    }

    /// The attempt ended at `now`.
    pub(crate) fn attempt_ended(&mut self, now: Ticks) {
        let Some(started_at) = self.started_at else {
            return;
        };
        self.latency = now.nanos_since(started_at);
        self.execution = self.execution.saturating_add(self.latency);
    }

    /// The task backs off for `delay` (`backoff` before the pressure rule).
    pub(crate) fn retrying(&mut self, delay: Duration, backoff: Duration) {
        self.retry_delay = self.retry_delay.saturating_add(saturating_nanos(delay));
        self.previous_backoff = Some(backoff);
    }

    /// The task is deferred by admission for `delay`; deferral counts as queue wait.
    pub(crate) fn deferred(&mut self, delay: Duration) {
        self.queue_wait = self.queue_wait.saturating_add(saturating_nanos(delay));
    }

    /// This stay added to `earlier`, the task's timeline before it (if it had one): the
    /// sums add up, the first moments are the earlier ones, the current stay's are this one's.
    pub(crate) fn after(&self, earlier: Option<Timeline>) -> Timeline {
        let Some(earlier) = earlier else {
            return *self;
        };
        Timeline {
            queued_at: earlier.queued_at,
            first_started_at: earlier.first_started_at.or(self.first_started_at),
            queue_wait: earlier.queue_wait.saturating_add(self.queue_wait),
            execution: earlier.execution.saturating_add(self.execution),
            retry_delay: earlier.retry_delay.saturating_add(self.retry_delay),
            previous_backoff: self.previous_backoff.or(earlier.previous_backoff),
            ..*self
        }
    }

    /// When the current stay's attempt started; `None` if the clock was not read then.
    pub(crate) fn started_at(&self) -> Option<Ticks> {
        self.started_at
    }

    /// How long the current stay waited before its attempt started (admission included).
    pub(crate) fn stay_wait(&self) -> Duration {
        self.started_at
            .map_or(Duration::ZERO, |at| at.saturating_since(self.entered_at))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency)
    }

    pub(crate) fn previous_backoff(&self) -> Option<Duration> {
        self.previous_backoff
    }

    /// When the task was first enqueued.
    #[inline]
    pub(crate) fn queued_at(&self) -> Ticks {
        self.queued_at
    }

    /// When its first attempt started, if one has.
    #[inline]
    pub(crate) fn first_started_at(&self) -> Option<Ticks> {
        self.first_started_at
    }

    /// Time spent waiting in the queue (or deferred by admission), summed over stays, ns.
    #[inline]
    pub(crate) fn queue_wait_nanos(&self) -> u64 {
        self.queue_wait
    }

    /// Time spent running, summed over attempts, ns.
    #[inline]
    pub(crate) fn execution_nanos(&self) -> u64 {
        self.execution
    }

    /// Time spent in retry backoff, summed, ns.
    #[inline]
    pub(crate) fn retry_delay_nanos(&self) -> u64 {
        self.retry_delay
    }
}

#[cfg(test)]
mod tests {
    use super::super::ticks::Epoch;
    use super::*;
    use crate::observer::{FinishedTask, TaskInfo};
    use crate::outcome::Outcome;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_retried_task_sums_its_stays() {
        let start = std::time::Instant::now();
        let epoch = Epoch::new(start);
        let t0 = Ticks::default();
        // Queued 10 ms, admitted 5 ms later, ran 20 ms, backed off 100 ms.
        let mut first = Timeline::popped(t0, Some(t0 + ms(10)), 2);
        first.admitted(t0 + ms(15));
        first.started();
        first.attempt_ended(t0 + ms(35));
        first.retrying(ms(100), ms(120));
        assert_eq!(first.stay_wait(), ms(15));
        assert_eq!(first.latency(), ms(20));
        // Back in the queue at 135 ms, left it at 140 ms, ran 30 ms.
        let mut second = Timeline::popped(t0 + ms(135), Some(t0 + ms(140)), 1);
        second.started();
        second.attempt_ended(t0 + ms(170));
        let whole = second.after(Some(first));
        let info = TaskInfo::new(crate::TaskId(1));
        let finished =
            FinishedTask::new(&info, epoch, &whole, t0 + ms(170), 2, Outcome::Succeeded, 4);
        let record = finished.record();
        assert_eq!(finished.total(), ms(170));
        assert_eq!(record.total(), ms(170));
        assert_eq!(record.queued_at, start);
        assert_eq!(record.first_started_at, Some(start + ms(15)));
        assert_eq!(record.finished_at, start + ms(170));
        assert_eq!(finished.clock_origin(), start);
        assert_eq!(finished.finished_since_origin(), ms(170));
        assert_eq!(finished.sequence(), 4);
        assert_eq!(record.queue_wait, ms(15));
        assert_eq!(record.execution, ms(50));
        assert_eq!(record.retry_delay, ms(100));
        // The nanosecond readers hand over the same figures as they are kept.
        assert_eq!(finished.queue_wait_nanos(), 15_000_000);
        assert_eq!(finished.execution_nanos(), 50_000_000);
        assert_eq!(finished.retry_delay_nanos(), 100_000_000);
        assert_eq!(finished.total_nanos(), 170_000_000);
        assert_eq!(finished.finished_since_origin_nanos(), 170_000_000);
        assert_eq!(whole.previous_backoff(), Some(ms(120)));
        assert_eq!(whole.in_flight(), 1);
    }

    #[test]
    fn a_stay_that_never_left_the_queue_counts_no_wait() {
        let t0 = Ticks::default();
        let stopped = Timeline::waiting(t0);
        assert_eq!(stopped.after(None).queue_wait, 0);
        assert_eq!(stopped.first_started_at, None);
    }

    /// Sums stop at 2^64 ns (584 years), the longest span of the engine's clock.
    #[test]
    fn sums_saturate() {
        let t0 = Ticks::default();
        let mut timeline = Timeline::waiting(t0);
        timeline.retrying(Duration::MAX, Duration::MAX);
        timeline.retrying(Duration::MAX, Duration::MAX);
        timeline.deferred(Duration::MAX);
        timeline.deferred(Duration::MAX);
        assert_eq!(timeline.retry_delay, u64::MAX);
        assert_eq!(timeline.queue_wait, u64::MAX);
        let mut earlier = Timeline::popped(t0, Some(t0), 1);
        earlier.started();
        earlier.attempt_ended(Ticks::from_nanos(u64::MAX));
        let mut later = Timeline::popped(t0, Some(t0), 1);
        later.started();
        later.attempt_ended(Ticks::from_nanos(u64::MAX));
        assert_eq!(later.after(Some(earlier)).execution, u64::MAX);
        assert_eq!(later.latency(), Duration::from_nanos(u64::MAX));
    }
}
