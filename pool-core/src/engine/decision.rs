//! After an attempt: under the lock, what follows it — the task ends, is retried, or is
//! parked until an admission policy's moment — and the slot it held goes to the next task.
//! Then, outside the lock, observers hear of it and the task is finished or parked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admission::Wakeup;
use crate::deadline;
use crate::error::Saturation;
use crate::observer::{Event, EventKind, TaskInfo};
use crate::outcome::AttemptResult;
use crate::queue::LaneId;
use crate::retry::{saturation, FailedAttempt, GiveUp, RetryDecision};
use crate::task::ErrorClass;

use super::ending::{AttemptEnd, TaskEnd};
use super::job::Job;
use super::parking::{Parked, Reservation};
use super::state::{Claimed, State};
use super::ticks::Ticks;
use super::timeline::Timeline;
use super::{Engine, Now};

/// What follows an attempt.
enum Next {
    End(TaskEnd),
    Retry {
        /// The delay after the pressure rule.
        delay: Duration,
        /// The backoff before it (what decorrelated jitter grows from).
        backoff: Duration,
        class: ErrorClass,
        /// Counts the task as retrying from the decision on.
        reservation: Reservation,
    },
    /// Park the task, holding no slot, until an admission policy's moment for it (or its
    /// wakeup).
    Park {
        deferral: Deferral,
        /// Counts the task as deferred from the decision on.
        reservation: Reservation,
    },
}

/// Until when an admission policy defers a task.
struct Deferral {
    until: Instant,
    /// Fired by the policy to end the deferral early.
    wakeup: Option<Wakeup>,
}

impl Engine {
    /// Decides what follows the attempt of `job` that ended with `end` (at `finished_at`, if
    /// the clock was read then), frees its slot (counted against `lane`), and claims the
    /// next task for this runner if one may start — all under one lock; the rest after it.
    /// Returns the runner's next task. The moment is read only if something needs it.
    pub(super) fn after_attempt(
        self: &Arc<Self>,
        job: Job,
        lane: LaneId,
        timeline: &Timeline,
        (end, finished_at): (AttemptEnd, Option<Ticks>),
        info: Option<TaskInfo>,
    ) -> Option<Claimed> {
        let mut now = match finished_at {
            Some(at) => Now::at(self, at),
            None => Now::lazy(self),
        };
        let result = end.result();
        if let (Some(service), Some(AttemptResult::Succeeded | AttemptResult::Failed(_))) =
            (&self.service, result)
        {
            service.record(timeline.latency());
        }
        let deadline = self
            .deadline_of(job.task())
            .map(|deadline| self.epoch.ticks(deadline));
        // Outside the engine's lock: the wakeups of retries a success paid for queue them.
        let paid = match (&end, &self.budget) {
            (AttemptEnd::Succeeded, Some(budget)) => budget.refill(),
            _ => Vec::new(),
        };
        // Read before the lock if the decision or the pop will need it: a failure's retry is
        // weighed against its deadline and the budget; a queue that ages pops by the time.
        if !matches!(end, AttemptEnd::Succeeded) || self.pops_need_time.load(Ordering::Relaxed) {
            now.get();
        }
        let mut state = self.lock();
        let in_flight = state.running();
        let queued = state.queue.len();
        let next = self.decide(&mut state, &job, end, deadline, &mut now);
        // A task that ends was counted last: its place in finishing order.
        let sequence = state.counters.resolved().saturating_sub(1);
        state.free_slot(lane, job.task().id());
        let mut next_claim = state.take_next(&mut now, self.settings.aging_target_wait);
        // Without a next task the slot stays free: the intake closes, and what was pushed
        // while it closed may start.
        if self.settle_intake(&mut state) && next_claim.is_none() {
            next_claim = state.take_next(&mut now, self.settings.aging_target_wait);
        }
        // More than this runner's next task can start only if a slot is still free (the
        // limit grew, or the pool was resumed, with tasks queued).
        let extra = if state.can_start() {
            state.take_startable(&mut now, self.settings.aging_target_wait)
        } else {
            Vec::new()
        };
        let idle = state.is_idle();
        let ages = state.queue.has_several_levels();
        drop(state);
        if ages != self.pops_need_time.load(Ordering::Relaxed) {
            self.pops_need_time.store(ages, Ordering::Relaxed);
        }
        if !paid.is_empty() {
            for wakeup in paid {
                wakeup.wake();
            }
        }

        let attempt_finished = info
            .as_ref()
            .zip(result)
            .filter(|_| self.observers.wants(EventKind::AttemptFinished));
        if let Some((info, result)) = attempt_finished {
            self.observers.emit(&Event::AttemptFinished {
                task: info.clone(),
                attempt: job.task().attempts(),
                latency: timeline.latency(),
                result,
                in_flight,
                queued,
                at: self.epoch.instant(now.get()),
            });
        }
        match next {
            Next::End(end) => self.finish(job, end, &mut now, timeline, info, sequence),
            Next::Retry {
                delay,
                backoff,
                class,
                reservation,
            } => {
                let mut timeline = timeline.after(job.task().stored_timeline());
                timeline.retrying(delay, backoff);
                job.task().store_timeline(timeline);
                self.retry(job, delay, class, info, reservation);
            }
            Next::Park {
                deferral,
                reservation,
            } => self.defer(job, deferral, now.get(), timeline, info, reservation),
        }
        if !extra.is_empty() {
            self.spawn_runners(extra);
        }
        if idle {
            self.notify_idle();
        }
        next_claim
    }

    /// Runs under the lock; may lock the task (the runner's own, so nobody else holds it: the
    /// lock order is always engine, then task). A task whose token has fired is never retried
    /// or parked: it ends `Cancelled` now (its cancellation may have come while its attempt
    /// ran, too late for the attempt's own race to see it). Nor is a task retried or parked
    /// to come back at or past its `deadline`: it ends `DeadlineExceeded` now.
    fn decide(
        &self,
        state: &mut State,
        job: &Job,
        end: AttemptEnd,
        deadline: Option<Ticks>,
        now: &mut Now<'_>,
    ) -> Next {
        let task = job.task();
        if self.was_aborted(task) {
            // Its handle says `Cancelled` already: however the attempt ended, nothing follows.
            state.counters.ended(&TaskEnd::Cancelled);
            return Next::End(TaskEnd::Cancelled);
        }
        let next = match end {
            AttemptEnd::Succeeded => Next::End(TaskEnd::Succeeded),
            AttemptEnd::Panicked(message) => Next::End(TaskEnd::Panicked(message)),
            AttemptEnd::Cancelled => Next::End(TaskEnd::Cancelled),
            AttemptEnd::StoppedNow => Next::End(TaskEnd::Stopped),
            AttemptEnd::Rejected(rejection) => Next::End(TaskEnd::Rejected(rejection)),
            AttemptEnd::Deferred(..) if state.stopped => Next::End(TaskEnd::Stopped),
            AttemptEnd::Deferred(..) if task.is_cancelled() => Next::End(TaskEnd::Cancelled),
            AttemptEnd::PastDeadline { shed } => Next::End(TaskEnd::DeadlineExceeded {
                timed_out: false,
                shed,
            }),
            AttemptEnd::DeadlineCut => Next::End(TaskEnd::DeadlineExceeded {
                timed_out: true,
                shed: false,
            }),
            // Parked past its deadline, the task is ended by the timer at the deadline.
            AttemptEnd::Deferred(until, wakeup) => Next::Park {
                deferral: Deferral { until, wakeup },
                reservation: state.parked.reserve(Parked::Deferred),
            },
            AttemptEnd::Failed(_) | AttemptEnd::TimedOut(_) => {
                return self.after_failure(state, job, end, deadline, now.get());
            }
        };
        if let Next::End(end) = &next {
            state.counters.ended(end);
        }
        next
    }

    /// A failed or timed-out attempt: retried, or the task ends with its failure — or with
    /// `DeadlineExceeded` if the retry would start too late for its `deadline`.
    fn after_failure(
        &self,
        state: &mut State,
        job: &Job,
        end: AttemptEnd,
        deadline: Option<Ticks>,
        now: Ticks,
    ) -> Next {
        let task = job.task();
        let timed_out = matches!(end, AttemptEnd::TimedOut(_));
        let class = match end {
            AttemptEnd::Failed(class) => class,
            _ => ErrorClass::Retryable,
        };
        let failed = FailedAttempt {
            class,
            attempts: task.attempts(),
            retries: task.retries(self.settings.retries),
            previous_backoff: task
                .stored_timeline()
                .and_then(|timeline| timeline.previous_backoff()),
            saturation: saturation(state.queue.len(), state.active, state.limit),
            cancelled: task.is_cancelled(),
            stopping: state.stopped,
        };
        let given_up = match self.settings.retry.decide(&failed, &mut state.rng) {
            RetryDecision::GiveUp(GiveUp::Cancelled) => TaskEnd::Cancelled,
            RetryDecision::GiveUp(GiveUp::Saturated) => TaskEnd::RetrySkipped {
                timed_out,
                saturation: Saturation::new(
                    state.queue.len(),
                    state.active,
                    state.limit,
                    self.settings.retry.skip_threshold,
                ),
            },
            RetryDecision::GiveUp(_) => TaskEnd::of_failure(&end).expect("a failure"),
            RetryDecision::After { delay, backoff } => {
                if let Some(too_late) = self.too_late(deadline, now, delay, timed_out) {
                    // Checked before the budget: a retry that cannot help costs no token.
                    too_late
                } else {
                    let unpaid = self.budget.as_ref().filter(|budget| {
                        !budget.try_withdraw(timed_out, self.epoch.instant(now), state.limit)
                    });
                    match unpaid {
                        Some(budget) if budget.fails_fast() => {
                            TaskEnd::BudgetExhausted { timed_out }
                        }
                        _ => {
                            if let Some(budget) = unpaid {
                                // Retried all the same: it pays (or waits for a token, holding
                                // no slot) before its next attempt.
                                budget.owe(task.id(), timed_out);
                            }
                            state.counters.retries += 1;
                            return Next::Retry {
                                delay,
                                backoff,
                                class,
                                reservation: state.parked.reserve(Parked::Retrying),
                            };
                        }
                    }
                }
            }
        };
        state.counters.ended(&given_up);
        Next::End(given_up)
    }

    /// How a task with `deadline` ends instead of being retried after `delay` from `now`,
    /// if the retry would start at or past the deadline or (when the pool sheds doomed
    /// tasks) with less time left than the median service time. Checked before the retry
    /// budget is asked, so a retry that cannot help costs no token.
    fn too_late(
        &self,
        deadline: Option<Ticks>,
        now: Ticks,
        delay: Duration,
        timed_out: bool,
    ) -> Option<TaskEnd> {
        let left = deadline?.saturating_since(now + delay);
        let shed = match self.service.as_ref().and_then(|service| service.median()) {
            _ if left.is_zero() => false,
            Some(median) if median > left => true,
            _ => return None,
        };
        Some(TaskEnd::DeadlineExceeded { timed_out, shed })
    }

    /// Tells observers of the retry, then parks the task for `delay`.
    fn retry(
        self: &Arc<Self>,
        job: Job,
        delay: Duration,
        class: ErrorClass,
        info: Option<TaskInfo>,
        reservation: Reservation,
    ) {
        let task = job.task();
        if self.observers.wants(EventKind::TaskRetrying) {
            self.observers.emit(&Event::TaskRetrying {
                task: info.unwrap_or_else(|| task.info()),
                attempt: task.attempts(),
                delay,
                class,
            });
        }
        // A delay of `Duration::MAX` means "never": a century ahead, still a moment the timer
        // can sleep until.
        let until = deadline::after(self.executor.now(), delay);
        self.park_until(job, until, reservation);
    }

    /// Parks a task that an admission policy deferred: it waits, holding no slot, until
    /// `until` (or the policy's wakeup), then queues again. The parked time counts as queue
    /// wait in its record.
    fn defer(
        self: &Arc<Self>,
        job: Job,
        Deferral { until, wakeup }: Deferral,
        now: Ticks,
        stay: &Timeline,
        info: Option<TaskInfo>,
        reservation: Reservation,
    ) {
        let task = job.task();
        let delay = until.saturating_duration_since(self.epoch.instant(now));
        // The timeline only feeds observers' task records; without them a parked task keeps
        // none (it would cost an allocation per parked task).
        if self.observers.wants(EventKind::TaskFinished) {
            let mut timeline = stay.after(task.stored_timeline());
            timeline.deferred(delay);
            task.store_timeline(timeline);
        }
        if self.observers.wants(EventKind::TaskDeferred) {
            self.observers.emit(&Event::TaskDeferred {
                task: info.unwrap_or_else(|| task.info()),
                until,
                delay,
            });
        }
        match wakeup {
            Some(wakeup) => self.park_until_woken(job, until, reservation, &wakeup),
            None => self.park_until(job, until, reservation),
        }
    }
}
