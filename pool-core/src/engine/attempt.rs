//! One attempt: admission first (every policy's precheck, then its acquire), then the task's
//! future raced against its timeout, its cancellation token and `stop_now`.
//!
//! Admission policies run under `catch_unwind` like task code, and everything user-provided
//! that the attempt drops (the future, an admission future, permits) is dropped with its
//! panics contained: whatever happens, the attempt returns an [`AttemptEnd`]. Each permit
//! goes back to its policy with how the attempt ended ([`Admission::complete`]).

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, AdmissionPermit, Precheck};

/// The permits of one attempt, one per admission policy, in the policies' order (inline for
/// up to two policies: no allocation per attempt).
type Permits = smallvec::SmallVec<[AdmissionPermit; 2]>;
use crate::executor::BoxFuture;
use crate::observer::{Event, EventKind, TaskInfo};
use crate::unwind::{catch, drop_contained, message};

use super::budget::Payment;
use super::ending::AttemptEnd;
use super::job::{AttemptFuture, Job, Start, TaskRef};
use super::ticks::Ticks;
use super::timeline::Timeline;
use super::Engine;

impl Engine {
    /// Runs one attempt of the claimed task `job`, noting it in the `timeline` of its stay,
    /// and returns how it ended and when. The timer and the cancellation waits are only set
    /// up if the future does not finish on its first poll, which keeps quick tasks cheap.
    pub(super) async fn attempt(
        &self,
        job: &Job,
        timeline: &mut Timeline,
        info: Option<&TaskInfo>,
    ) -> (AttemptEnd, Ticks) {
        let task = job.task();
        if let Some(budget) = self.budget.as_ref().filter(|budget| budget.anyone_owes()) {
            // A retry the budget could not pay when it was scheduled pays now, or waits.
            let (now, limit) = (self.executor.now(), self.limit());
            if let Payment::Wait(until, wakeup) = budget.pay(task.id(), now, limit) {
                return (AttemptEnd::Deferred(until, Some(wakeup)), self.now());
            }
        }
        let mut permits = Permits::new();
        if !self.admission.is_empty() {
            let owned_info;
            let admit_info = match info {
                Some(info) => info,
                None => {
                    owned_info = task.info();
                    &owned_info
                }
            };
            if let Some(end) = self.precheck(admit_info, timeline.started_at()) {
                return (end, self.now());
            }
            match self.admit(admit_info, task).await {
                Ok((granted, waited)) => {
                    permits = granted;
                    // Waiting for admission is not part of the attempt's latency (an
                    // admission granted at once did not wait: no clock read for it).
                    if waited {
                        timeline.admitted(self.now());
                    }
                }
                Err(end) => return (end, self.now()),
            }
        }
        // Set when the task was popped (or admitted): the attempt starts right away.
        let started_at = timeline.started_at();
        timeline.started();
        let attempt = task.begin_attempt();
        if let Some(info) = info.filter(|_| self.observers.wants(EventKind::TaskStarted)) {
            self.observers.emit(&Event::TaskStarted {
                task: info.clone(),
                attempt,
                queue_wait: timeline.stay_wait(),
                in_flight: timeline.in_flight(),
                at: self.epoch.instant(started_at),
            });
        }
        let start = catch(|| {
            let stopped_now = self.stopped_now.load(Ordering::Acquire);
            Arc::clone(task).start_attempt(self.settings.timeout, stopped_now)
        });
        let end = match start {
            Err(message) => AttemptEnd::Panicked(message),
            Ok(Start::Cancelled) => AttemptEnd::Cancelled,
            Ok(Start::StoppedNow) => AttemptEnd::StoppedNow,
            Ok(Start::Running {
                future,
                timeout,
                cancellation,
            }) => {
                let mut future = Some(future);
                let end = self
                    .race(&mut future, timeout, cancellation, started_at)
                    .await;
                // Dropping a future can panic too; that must not take the runner down.
                drop_contained("an attempt's future", future.take());
                end
            }
        };
        let finished_at = self.now();
        self.complete(permits, &end);
        timeline.attempt_ended(finished_at);
        (end, finished_at)
    }

    /// Gives each policy back the permit it granted, with how the attempt ended; a panic in
    /// a policy's `complete` (or in the permit's drop) is contained.
    fn complete(&self, permits: Permits, end: &AttemptEnd) {
        if permits.is_empty() {
            return;
        }
        let Some(result) = end.result() else {
            // Only a precheck defers, and it runs before any permit is granted.
            drop_contained("an admission permit", permits);
            return;
        };
        // Permits are granted in the policies' order, one each.
        for (policy, permit) in self.admission.iter().zip(permits) {
            if catch(|| policy.complete(permit, &result)).is_err() {
                tracing::error!(
                    target: "pool_core",
                    "an admission policy's complete (or its permit's drop) panicked; the panic \
                     was contained and the pool keeps running"
                );
            }
        }
    }

    /// Asks every admission policy's precheck in turn: the first that parks or rejects the
    /// task decides (moments set aside by policies before it stay set aside: the task comes
    /// back and takes them). A panicking precheck ends the attempt as a panic.
    /// `popped_at`: when the task left the queue, before any precheck ran; a moment no later
    /// than that has come (no clock read: the pop time is converted only for a moment named).
    fn precheck(&self, info: &TaskInfo, popped_at: Ticks) -> Option<AttemptEnd> {
        let popped = || self.epoch.instant(popped_at);
        self.admission
            .iter()
            .find_map(|policy| match catch(|| policy.precheck(info)) {
                Err(message) => Some(AttemptEnd::Panicked(message)),
                Ok(Precheck::Proceed) => None,
                Ok(Precheck::ParkUntil(until)) if until <= popped() => None,
                Ok(Precheck::ParkUntil(until)) => Some(AttemptEnd::Deferred(until, None)),
                // Parked even if the moment has passed: the policy asked to be asked again.
                Ok(Precheck::ParkUntilWoken(until, wakeup)) => {
                    Some(AttemptEnd::Deferred(until.max(popped()), Some(wakeup)))
                }
                Ok(Precheck::Reject(rejection)) => Some(AttemptEnd::Rejected(rejection)),
            })
    }

    /// Asks every admission policy in turn, interruptible by `stop_now` and the task's token;
    /// says whether any of them made the attempt wait. Permits granted before a refusal are
    /// given back here.
    async fn admit(&self, info: &TaskInfo, task: &TaskRef) -> Result<(Permits, bool), AttemptEnd> {
        let mut permits = Permits::new();
        let mut waited = false;
        for policy in &self.admission {
            match self.acquire(policy.as_ref(), info, task).await {
                Ok((permit, policy_waited)) => {
                    permits.push(permit);
                    waited |= policy_waited;
                }
                Err(end) => {
                    // The policies asked before learn that the attempt never ran.
                    self.complete(permits, &end);
                    return Err(end);
                }
            }
        }
        Ok((permits, waited))
    }

    /// One policy's permit, and whether it was not granted at once: first
    /// [`Admission::try_acquire`] (no future, no allocation), then `acquire`. A panic in
    /// either or in the future ends the attempt as a panic.
    async fn acquire(
        &self,
        policy: &dyn Admission,
        info: &TaskInfo,
        task: &TaskRef,
    ) -> Result<(AdmissionPermit, bool), AttemptEnd> {
        match catch(|| policy.try_acquire(info)).map_err(AttemptEnd::Panicked)? {
            Some(Ok(permit)) => return Ok((permit, false)),
            Some(Err(rejection)) => return Err(AttemptEnd::Rejected(rejection)),
            None => {}
        }
        let acquire = catch(|| policy.acquire(info)).map_err(AttemptEnd::Panicked)?;
        let mut acquire = std::panic::AssertUnwindSafe(acquire).catch_unwind();
        // Most admissions are immediate: try once before setting up the interruptions.
        let mut waited = false;
        let admitted = match (&mut acquire).now_or_never() {
            Some(admitted) => {
                drop_contained("an admission future", acquire);
                admitted
            }
            None => {
                let interrupted = {
                    let stop_now = Box::pin(self.stop_now_token.clone().cancelled_owned());
                    // Asked only now: most admissions never wait.
                    let cancelled: BoxFuture<()> = match task.cancellation() {
                        Some(token) => Box::pin(token.cancelled_owned()),
                        None => Box::pin(std::future::pending()),
                    };
                    select(stop_now, cancelled)
                };
                waited = true;
                match select(acquire, interrupted).await {
                    Either::Left((admitted, _)) => admitted,
                    Either::Right((interruption, acquire)) => {
                        drop_contained("an admission future", acquire);
                        return Err(match interruption {
                            Either::Left(_) => AttemptEnd::StoppedNow,
                            Either::Right(_) => AttemptEnd::Cancelled,
                        });
                    }
                }
            }
        };
        match admitted.map_err(|panic| AttemptEnd::Panicked(message(&*panic)))? {
            Ok(permit) => Ok((permit, waited)),
            Err(rejection) => Err(AttemptEnd::Rejected(rejection)),
        }
    }

    /// The attempt's future raced against its timeout, `stop_now` and its token, polled in
    /// that order after the future itself (an attempt that finishes wins over a timeout that
    /// fires in the same poll).
    async fn race(
        &self,
        future: &mut Option<AttemptFuture>,
        timeout: Option<Duration>,
        task_token: Option<CancellationToken>,
        started_at: Ticks,
    ) -> AttemptEnd {
        let mut timer: Option<BoxFuture<()>> = None;
        let mut stop_now: Option<BoxFuture<()>> = None;
        let mut cancelled: Option<BoxFuture<()>> = None;
        poll_fn(|cx| {
            let Some(attempt) = future.as_mut() else {
                return Poll::Ready(AttemptEnd::Failed(crate::task::ErrorClass::Fatal));
            };
            match catch(|| attempt.as_mut().poll(cx)) {
                Err(message) => return Poll::Ready(AttemptEnd::Panicked(message)),
                Ok(Poll::Ready(None)) => return Poll::Ready(AttemptEnd::Succeeded),
                Ok(Poll::Ready(Some(class))) => return Poll::Ready(AttemptEnd::Failed(class)),
                Ok(Poll::Pending) => {}
            }
            if let Some(timeout) = timeout {
                let timer = timer.get_or_insert_with(|| {
                    let elapsed = self.now().saturating_since(started_at);
                    self.executor.sleep(timeout.saturating_sub(elapsed))
                });
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(AttemptEnd::TimedOut(timeout));
                }
            }
            let stop_now = stop_now
                .get_or_insert_with(|| Box::pin(self.stop_now_token.clone().cancelled_owned()));
            if stop_now.as_mut().poll(cx).is_ready() {
                return Poll::Ready(AttemptEnd::StoppedNow);
            }
            if let Some(token) = &task_token {
                let cancelled =
                    cancelled.get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
                if cancelled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(AttemptEnd::Cancelled);
                }
            }
            Poll::Pending
        })
        .await
    }
}
