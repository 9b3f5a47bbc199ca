//! One attempt: admission first (every policy's precheck, then its acquire), then the task's
//! future raced against its timeout, its cancellation token and `stop_now`.
//!
//! Admission policies run under `catch_unwind` like task code, and everything user-provided
//! that the attempt drops (the future, an admission future, permits) is dropped with its
//! panics contained: whatever happens, the attempt returns an [`AttemptEnd`]. Each permit
//! goes back to its policy with how the attempt ended ([`Admission::complete`]), unless the
//! policy said, once, that it learns nothing from it ([`Admission::wants_complete`]): then a
//! permit that holds something is only dropped when the attempt ends, and an empty one is not
//! kept at all.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{select, select_all, Either};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, AdmissionPermit, Precheck};

/// What one attempt holds from its admission policies until it ends, in the policies' order:
/// each permit with the policy it goes back to (`None`: the policy wants no
/// [`Admission::complete`]; the permit is only dropped). Inline for up to two policies: no
/// allocation per attempt.
type Permits<'a> = smallvec::SmallVec<[(Option<&'a dyn Admission>, AdmissionPermit); 2]>;

/// One of a pool's admission policies, with what it told the pool once, when the pool was
/// built.
pub(crate) struct Policy {
    admission: Arc<dyn Admission>,
    /// Its [`Admission::wants_complete`].
    wants_complete: bool,
}

impl Policy {
    pub(crate) fn new(admission: Arc<dyn Admission>) -> Self {
        // A panic is the policy's bug; the default answer is the one that loses nothing.
        let wants_complete = catch(|| admission.wants_complete()).unwrap_or(true);
        Self {
            admission,
            wants_complete,
        }
    }

    /// Keeps `permit` until the attempt ends if anything is to be done with it then: given
    /// back to the policy, or dropped (a guard released). An empty permit of a policy that
    /// wants no `complete` is dropped here: nothing would happen to it later.
    #[inline(always)]
    fn keep<'a>(&'a self, permits: &mut Permits<'a>, permit: AdmissionPermit) {
        if self.wants_complete {
            permits.push((Some(self.admission.as_ref()), permit));
        } else if !permit.is_empty() {
            permits.push((None, permit));
        }
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.admission.fmt(f)
    }
}
use crate::executor::{BoxFuture, ResettableSleep};
use crate::observer::{Event, EventKind, TaskInfo};
use crate::raw_task::AttemptBuffer;
use crate::unwind::{catch, drop_contained, drop_contained_in_place, message};

use super::budget::Payment;
use super::ending::AttemptEnd;
use super::job::{AttemptFuture, Job, Start, TaskRef};
use super::nesting::Polling;
use super::ticks::Ticks;
use super::timeline::Timeline;
use super::Engine;

impl Engine {
    /// Runs one attempt of the claimed task `job`, noting it in the `timeline` of its stay,
    /// and returns how it ended and when, if the clock was read for it (`timed`: observers
    /// or service times want the attempt's latency; otherwise whoever needs the moment reads
    /// it). The timer and the cancellation waits are only set up if the future does not
    /// finish on its first poll, which keeps quick tasks cheap. A future too large to be
    /// stored in place is stored in the runner's `buffer`.
    pub(super) async fn attempt(
        &self,
        job: &Job,
        timeline: &mut Timeline,
        info: Option<&TaskInfo>,
        timed: bool,
        buffer: &mut AttemptBuffer,
        kept: &mut KeptSleep,
    ) -> (AttemptEnd, Option<Ticks>) {
        let task = job.task();
        let deadline = self.deadline_of(task);
        if let Some(end) = deadline.and_then(|deadline| self.doomed(deadline)) {
            return (end, Some(self.now()));
        }
        if let Some(budget) = self.budget.as_ref().filter(|budget| budget.anyone_owes()) {
            // A retry the budget could not pay when it was scheduled pays now, or waits.
            let (now, limit) = (self.executor.now(), self.limit());
            if let Payment::Wait(until, wakeup) = budget.pay(task.id(), now, limit) {
                return (AttemptEnd::Deferred(until, Some(wakeup)), Some(self.now()));
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
            match self.try_admit(admit_info, timeline.started_at(), &mut permits) {
                Ok(true) => {}
                Err(end) => return (end, Some(self.now())),
                Ok(false) => {
                    if let Some(end) = self.precheck(admit_info, timeline.started_at()) {
                        return (end, Some(self.now()));
                    }
                    // The wait has timers of its own: a sleep still set for the previous
                    // attempt's cut would only wake this runner for nothing.
                    *kept = None;
                    match self.admit(admit_info, task, deadline).await {
                        Ok((granted, waited)) => {
                            permits = granted;
                            // Waiting for admission is not part of the attempt's latency
                            // (an admission granted at once did not wait: no clock read).
                            if waited {
                                timeline.admitted(self.now());
                            }
                        }
                        Err(end) => return (end, Some(self.now())),
                    }
                }
            }
        }
        // Set when the task was popped (or admitted), if the clock was read then: the
        // attempt starts right away.
        let started_at = timeline.started_at();
        timeline.started();
        let attempt = task.begin_attempt();
        if let Some(info) = info.filter(|_| self.observers.wants(EventKind::TaskStarted)) {
            self.observers.emit(&Event::TaskStarted {
                task: info.clone(),
                attempt,
                queue_wait: timeline.stay_wait(),
                in_flight: timeline.in_flight(),
                at: started_at.map_or_else(|| self.executor.now(), |at| self.epoch.instant(at)),
            });
        }
        let start = catch(move || {
            let _polling = Polling::enter(self, task.id());
            let stopped_now = self.stopped_now.load(Ordering::Acquire);
            task.start_attempt(buffer, self.settings.timeout, stopped_now)
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
                // Pinned here: a small attempt future is stored in place (a large one in the
                // runner's buffer), not boxed.
                let mut future = std::pin::pin!(Some(future));
                let deadline = deadline.map(|deadline| self.epoch.ticks(deadline));
                let cut = Cuts {
                    started_at,
                    timeout,
                    deadline,
                };
                let end = self
                    .race(task, future.as_mut(), cut, cancellation, kept)
                    .await;
                // Dropping a future can panic too; that must not take the runner down.
                drop_contained_in_place("an attempt's future", future);
                end
            }
        };
        // The end is read for the latency, when it is wanted; else by whoever needs it.
        let finished_at = timed.then(|| self.now());
        if permits.is_empty() && !permits.spilled() {
            // Nothing kept (no policy, or none that wants it back): an empty vector that
            // never left the stack owns nothing, and forgetting it saves its drop's call.
            std::mem::forget(permits);
        } else {
            self.complete(permits, &end);
        }
        if let Some(finished_at) = finished_at {
            timeline.attempt_ended(finished_at);
        }
        (end, finished_at)
    }

    /// Gives each policy that wants it back the permit it granted, with how the attempt
    /// ended, and drops the other permits kept; a panic in a policy's `complete` (or in a
    /// permit's drop) is contained.
    fn complete(&self, permits: Permits<'_>, end: &AttemptEnd) {
        if permits.is_empty() {
            return;
        }
        let Some(result) = end.result() else {
            // No attempt ran: the deadline passed while later policies were asked (a
            // precheck's deferral comes before any permit is granted).
            drop_contained("an admission permit", permits);
            return;
        };
        for (policy, permit) in permits {
            let Some(policy) = policy else {
                drop_contained("an admission permit", permit);
                continue;
            };
            if catch(|| policy.complete(permit, &result)).is_err() {
                tracing::error!(
                    target: "pool_core",
                    "an admission policy's complete (or its permit's drop) panicked; the panic \
                     was contained and the pool keeps running"
                );
            }
        }
    }

    /// A pool with one admission policy asks its [`Admission::try_admit`] first.
    /// `Ok(true)`: admitted at once (its permit kept in `permits` if anything is to be done
    /// with it when the attempt ends); `Ok(false)`: no answer, the policy is asked the usual
    /// way (precheck, then acquire); `Err`: refused, or the policy panicked. `popped_at`: when
    /// the task left the queue, if the clock was read then (the policy need not read it).
    #[inline]
    fn try_admit<'a>(
        &'a self,
        info: &TaskInfo,
        popped_at: Option<Ticks>,
        permits: &mut Permits<'a>,
    ) -> Result<bool, AttemptEnd> {
        let [policy] = self.admission.as_slice() else {
            return Ok(false);
        };
        let now = popped_at.map(|at| self.epoch.instant(at));
        // The answer is made small within the panic guard, which copies it out (a refusal,
        // rare on this path, is boxed): a permit is two words, a refusal about ten.
        let answer = catch(|| match policy.admission.try_admit(info, now) {
            Some(Ok(permit)) => Ok(Some(permit)),
            Some(Err(rejection)) => Err(Box::new(rejection)),
            None => Ok(None),
        });
        match answer {
            Ok(Ok(Some(permit))) => {
                policy.keep(permits, permit);
                Ok(true)
            }
            Ok(Ok(None)) => Ok(false),
            Ok(Err(rejection)) => Err(AttemptEnd::Rejected(*rejection)),
            Err(message) => Err(AttemptEnd::Panicked(message)),
        }
    }

    /// Asks every admission policy's precheck in turn: the first that parks or rejects the
    /// task decides (moments set aside by policies before it stay set aside: the task comes
    /// back and takes them). A panicking precheck ends the attempt as a panic.
    /// `popped_at`: when the task left the queue, before any precheck ran, if the clock was
    /// read then; a moment no later than that has come (the pop time is converted only for a
    /// moment named; without one, the clock is read then).
    fn precheck(&self, info: &TaskInfo, popped_at: Option<Ticks>) -> Option<AttemptEnd> {
        let popped = || popped_at.map_or_else(|| self.executor.now(), |at| self.epoch.instant(at));
        self.admission
            .iter()
            .find_map(|policy| match catch(|| policy.admission.precheck(info)) {
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

    /// Whether a task with `deadline` must not start now: the deadline has passed, or (when
    /// the pool sheds doomed tasks) the median of recent service times is longer than the
    /// time left.
    fn doomed(&self, deadline: Instant) -> Option<AttemptEnd> {
        let left = deadline.saturating_duration_since(self.executor.now());
        if left.is_zero() {
            return Some(AttemptEnd::PastDeadline { shed: false });
        }
        let median = self.service.as_ref()?.median()?;
        (median > left).then_some(AttemptEnd::PastDeadline { shed: true })
    }

    /// Asks every admission policy in turn, interruptible by `stop_now`, the task's token
    /// and its deadline; says whether any of them made the attempt wait. Permits granted
    /// before a refusal are given back here.
    async fn admit(
        &self,
        info: &TaskInfo,
        task: &TaskRef,
        deadline: Option<Instant>,
    ) -> Result<(Permits<'_>, bool), AttemptEnd> {
        let mut permits = Permits::new();
        let mut waited = false;
        for policy in &self.admission {
            match self
                .acquire(policy.admission.as_ref(), info, task, deadline)
                .await
            {
                Ok((permit, policy_waited)) => {
                    policy.keep(&mut permits, permit);
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
        deadline: Option<Instant>,
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
                // Polled in this order: `stop_now`, the token, the deadline (asked only now:
                // most admissions never wait), an abort by the task's handle.
                let mut interruptions: Vec<Interruption<'_>> = vec![Box::pin(
                    self.stop_now_token
                        .clone()
                        .cancelled_owned()
                        .map(|()| AttemptEnd::StoppedNow),
                )];
                if let Some(token) = task.cancellation() {
                    let cancelled = token.cancelled_owned();
                    interruptions.push(Box::pin(cancelled.map(|()| AttemptEnd::Cancelled)));
                }
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(self.executor.now());
                    let passed = self.executor.sleep(left);
                    interruptions.push(Box::pin(
                        passed.map(|()| AttemptEnd::PastDeadline { shed: false }),
                    ));
                }
                // An aborted task must not keep its slot (nor take a permit) while the
                // policy makes it wait: its handle has resolved already.
                interruptions.push(Box::pin(self.abort_of(task)));
                waited = true;
                match select(acquire, select_all(interruptions)).await {
                    Either::Left((admitted, _)) => admitted,
                    Either::Right(((interruption, _, _), acquire)) => {
                        drop_contained("an admission future", acquire);
                        return Err(interruption);
                    }
                }
            }
        };
        match admitted.map_err(|panic| AttemptEnd::Panicked(message(&*panic)))? {
            Ok(permit) => Ok((permit, waited)),
            Err(rejection) => Err(AttemptEnd::Rejected(rejection)),
        }
    }

    /// Ends when `task` is aborted by its handle (at once if it was already): the wait for
    /// admission and the running attempt both race it.
    async fn abort_of(&self, task: &TaskRef) -> AttemptEnd {
        loop {
            // Made before the check: an abort after it wakes it.
            let aborted = self.interrupt.notified();
            if self.was_aborted(task) {
                return AttemptEnd::Cancelled;
            }
            aborted.await;
        }
    }

    /// The attempt's future raced against its cut (timeout or deadline), `stop_now` and its
    /// token, polled in that order after the future itself (an attempt that finishes wins
    /// over a timeout that fires in the same poll), then against an abort of `task` by its
    /// handle. Each poll of the future marks the thread as polling `task` (see `nesting`).
    ///
    /// `stop_now` and an abort wake the attempt through one wait on the engine's
    /// `interrupt` (registered when the attempt first waits), and it then reads which of
    /// them came: one registration per waiting attempt, where a wait on the `stop_now`
    /// token (a clone of the token, a boxed future, a registration with the token's lock)
    /// beside the abort's cost as much again.
    async fn race(
        &self,
        task: &TaskRef,
        mut future: Pin<&mut Option<AttemptFuture<'_>>>,
        cuts: Cuts,
        task_token: Option<CancellationToken>,
        kept: &mut KeptSleep,
    ) -> AttemptEnd {
        // Set up when the attempt first waits: what cuts it, and when (the runner's kept
        // sleep, or a sleep of the attempt's own where the executor has no resettable one).
        let mut timer: Option<(Cut, Ticks, Option<BoxFuture<()>>)> = None;
        let mut cancelled: Option<BoxFuture<()>> = None;
        // The wait for `stop_now` and aborts, on the stack (no allocation).
        let mut interrupt = std::pin::pin!(None);
        let id = task.id();
        poll_fn(|cx| {
            let Some(attempt) = future.as_mut().as_pin_mut() else {
                return Poll::Ready(AttemptEnd::Failed(crate::task::ErrorClass::Fatal));
            };
            let polled = catch(|| {
                let _polling = Polling::enter(self, id);
                attempt.poll(cx)
            });
            match polled {
                Err(message) => return Poll::Ready(AttemptEnd::Panicked(message)),
                Ok(Poll::Ready(None)) => return Poll::Ready(AttemptEnd::Succeeded),
                Ok(Poll::Ready(Some(class))) => return Poll::Ready(AttemptEnd::Failed(class)),
                Ok(Poll::Pending) => {}
            }
            if timer.is_none() {
                if cuts.any() {
                    let now = self.now();
                    timer = cuts
                        .at(now)
                        .map(|(at, cut)| (cut, at, self.arm(kept, at, now)));
                }
                if timer.is_none() {
                    // Nothing cuts this attempt: a sleep still set for an earlier attempt's
                    // cut would wake the runner for nothing, and a paused clock would jump
                    // to it.
                    *kept = None;
                }
            }
            if let Some((cut, at, own)) = timer.as_mut() {
                let fired = match own {
                    Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
                    None => kept
                        .as_mut()
                        .is_some_and(|kept| self.cut_has_come(kept, *at, cx)),
                };
                if fired {
                    return Poll::Ready(match *cut {
                        Cut::Timeout(timeout) => AttemptEnd::TimedOut(timeout),
                        Cut::Deadline => AttemptEnd::DeadlineCut,
                    });
                }
            }
            loop {
                // Made before the checks below (when the attempt first waits, and again after
                // each wake-up): a `stop_now` or an abort after them wakes it. Every abort wakes
                // every waiting attempt; only the aborted task's ends.
                if interrupt.is_none() {
                    interrupt.set(Some(self.interrupt.notified()));
                }
                if self.stopped_now.load(Ordering::SeqCst) {
                    return Poll::Ready(AttemptEnd::StoppedNow);
                }
                if let Some(token) = &task_token {
                    let cancelled =
                        cancelled.get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
                    if cancelled.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(AttemptEnd::Cancelled);
                    }
                }
                if self.was_aborted(task) {
                    return Poll::Ready(AttemptEnd::Cancelled);
                }
                let Some(woken) = interrupt.as_mut().as_pin_mut() else {
                    return Poll::Pending;
                };
                if woken.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                interrupt.set(None);
            }
        })
        .await
    }

    /// Makes the runner's `kept` sleep end no later than `at` (made now if the runner has
    /// none yet); `now` is the attempt's first wait. A sleep set for an earlier moment (the
    /// previous attempt's cut: with one timeout, each attempt's cut is later than the last)
    /// is left as it is and moved on only if it fires while this attempt waits (see
    /// [`Engine::cut_has_come`]): most attempts end long before, and skip the move. Returns
    /// a sleep of the attempt's own instead when the executor has no resettable sleep.
    fn arm(&self, kept: &mut KeptSleep, at: Ticks, now: Ticks) -> Option<BoxFuture<()>> {
        match kept {
            Some(kept) if kept.at <= at => {}
            Some(kept) => {
                kept.sleep.as_mut().reset(self.epoch.instant(at));
                kept.at = at;
            }
            None => match self.executor.resettable_sleep(self.epoch.instant(at)) {
                Some(sleep) => *kept = Some(Kept { sleep, at }),
                None => return Some(self.executor.sleep_in_task(at.saturating_since(now))),
            },
        }
        None
    }

    /// Whether the cut at `at` has come, the runner's `kept` sleep ending no later than it;
    /// if it has not, `cx` is woken when it does. A sleep that fires for an earlier moment
    /// (left set by [`Engine::arm`]) is moved to `at` and polled again.
    fn cut_has_come(&self, kept: &mut Kept, at: Ticks, cx: &mut std::task::Context<'_>) -> bool {
        loop {
            if kept.sleep.as_mut().poll_elapsed(cx).is_pending() {
                return false;
            }
            if kept.at >= at {
                return true;
            }
            kept.sleep.as_mut().reset(self.epoch.instant(at));
            kept.at = at;
        }
    }
}

/// The sleep a runner keeps for the timeouts (and deadline cuts) of all the attempts it
/// runs, set no later than each one's cut when it first waits: one sleep for many attempts,
/// where one per attempt would be registered with the executor's timer and taken out again.
/// Dropped when the runner parks for want of work, so an idle pool holds no timer.
pub(super) type KeptSleep = Option<Kept>;

/// The runner's kept sleep and the moment it is set to.
pub(super) struct Kept {
    sleep: Pin<Box<dyn ResettableSleep>>,
    at: Ticks,
}

/// What ends a wait for admission early.
type Interruption<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = AttemptEnd> + Send + 'a>>;

/// What cuts an attempt short when it runs too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Its timeout.
    Timeout(Duration),
    /// Its task's deadline, earlier than its timeout would end it.
    Deadline,
}

/// What may cut an attempt short, set up only if it first waits.
#[derive(Debug, Clone, Copy)]
struct Cuts {
    /// When the attempt started, if the clock was read then; else its timeout counts from
    /// when it first waits (the first poll of a task that waits is where its time starts
    /// to be spent, and a runner that needed no moment did not read the clock before it).
    started_at: Option<Ticks>,
    timeout: Option<Duration>,
    deadline: Option<Ticks>,
}

impl Cuts {
    fn any(&self) -> bool {
        self.timeout.is_some() || self.deadline.is_some()
    }

    /// When the attempt is cut and by what, `now` being its first wait.
    fn at(&self, now: Ticks) -> Option<(Ticks, Cut)> {
        cut_at(self.started_at.unwrap_or(now), self.timeout, self.deadline)
    }
}

/// When an attempt that started at `started_at` is cut, and by what: its `timeout` capped by
/// the time left before `deadline` (the timeout on a tie).
fn cut_at(
    started_at: Ticks,
    timeout: Option<Duration>,
    deadline: Option<Ticks>,
) -> Option<(Ticks, Cut)> {
    let by_timeout = timeout.map(|timeout| (started_at + timeout, Cut::Timeout(timeout)));
    match (by_timeout, deadline) {
        (Some(by_timeout), Some(deadline)) if deadline < by_timeout.0 => {
            Some((deadline, Cut::Deadline))
        }
        (Some(by_timeout), _) => Some(by_timeout),
        (None, deadline) => deadline.map(|deadline| (deadline, Cut::Deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_capped_by_the_time_left() {
        let t0 = Ticks::default();
        let ms = Duration::from_millis;
        let timeout = Some(ms(100));
        assert_eq!(
            cut_at(t0, timeout, Some(t0 + ms(30))),
            Some((t0 + ms(30), Cut::Deadline))
        );
        assert_eq!(
            cut_at(t0, timeout, Some(t0 + ms(100))),
            Some((t0 + ms(100), Cut::Timeout(ms(100)))),
            "a tie is the timeout's"
        );
        assert_eq!(
            cut_at(t0, timeout, Some(t0 + ms(500))),
            Some((t0 + ms(100), Cut::Timeout(ms(100))))
        );
        assert_eq!(
            cut_at(t0, None, Some(t0 + ms(5))),
            Some((t0 + ms(5), Cut::Deadline))
        );
        assert_eq!(cut_at(t0, None, None), None);
        assert_eq!(
            cut_at(t0, Some(Duration::MAX), None).map(|(_, cut)| cut),
            Some(Cut::Timeout(Duration::MAX)),
            "a timeout of forever is still representable"
        );
    }
}
