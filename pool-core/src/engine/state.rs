//! The engine's state under its one lock: the queue, the parked set, the slots and the
//! counters, and the few moves every path makes with them (claiming a slot for the next
//! task, counting a task's end).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::queue::{nanos_as_f64, AgingQueue, LaneId, Placement, QueueKey};
use crate::stats::Stats;
use crate::task::TaskId;

use super::ending::TaskEnd;
use super::intake::Entry;
use super::job::{Job, TaskRef, Waiting};
use super::nesting::{Loans, SlotEnd};
use super::parking::{ParkKey, ParkedSet};
use super::tenants::Tenants;
use super::ticks::{Epoch, Ticks};
use super::timeline::Timeline;
use super::Now;

/// Tasks ever enqueued, and how the resolved ones ended.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) enqueued: u64,
    succeeded: u64,
    failed: u64,
    pub(super) retries: u64,
    cancelled: u64,
    stopped: u64,
    /// Of `failed`: missed deadlines, and of those, tasks shed early.
    deadline_exceeded: u64,
    shed: u64,
}

impl Counters {
    /// Counts a task that ends with `end`.
    pub(super) fn ended(&mut self, end: &TaskEnd) {
        match end {
            TaskEnd::Succeeded => self.succeeded += 1,
            TaskEnd::Cancelled => self.cancelled += 1,
            TaskEnd::Stopped => self.stopped += 1,
            TaskEnd::DeadlineExceeded { shed, .. } => {
                self.failed += 1;
                self.deadline_exceeded += 1;
                self.shed += u64::from(*shed);
            }
            TaskEnd::Failed(_)
            | TaskEnd::TimedOut(_)
            | TaskEnd::Panicked(_)
            | TaskEnd::Rejected(_)
            | TaskEnd::BudgetExhausted { .. }
            | TaskEnd::RetrySkipped { .. } => self.failed += 1,
        }
    }

    /// Counts `tasks` tasks that end `Stopped`.
    pub(super) fn stopped(&mut self, tasks: usize) {
        self.stopped += tasks as u64;
    }

    /// Tasks resolved so far: the next resolved task's place in finishing order
    /// ([`FinishedTask::sequence`](crate::FinishedTask::sequence)). Tasks are numbered as
    /// they are counted here, under the engine's lock, so one pool's numbers are unique and
    /// dense at no cost of their own (the lock's line is this core's already).
    pub(super) fn resolved(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled + self.stopped
    }
}

/// How a task whose deadline passed while it waited ends.
pub(super) const DEADLINE_PASSED: TaskEnd = TaskEnd::DeadlineExceeded {
    timed_out: false,
    shed: false,
};

/// Where a task that may have to leave early (a token, a deadline) waits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Place {
    Queued(QueueKey),
    Parked(ParkKey),
}

/// A task out of the queue with a slot claimed for it, and what its stay's timeline starts
/// from. Small, because it is handed from the lock to a runner on every dispatch; the runner
/// builds the [`Timeline`] in place.
#[derive(Debug)]
pub(super) struct Claimed {
    pub(super) job: Job,
    /// The lane (tenant) the slot is counted against.
    pub(super) lane: LaneId,
    entered_at: Ticks,
    /// When it left the queue, if the clock was read for the pop (see [`Now`]).
    popped_at: Option<Ticks>,
    in_flight: usize,
}

impl Claimed {
    /// The timeline of the stay that just left the queue.
    pub(super) fn timeline(&self) -> Timeline {
        Timeline::popped(self.entered_at, self.popped_at, self.in_flight)
    }
}

/// How many runners an enqueue spawns before the next claims wait for one of them to start.
/// Two, not one: a producer on one of tokio's worker threads puts the runner it spawns in
/// that worker's LIFO slot, which no other worker steals; the second spawn moves the first
/// to the worker's queue, where an idle worker takes it while the producer goes on.
pub(super) const RUNNERS_ON_THEIR_WAY: usize = 2;

/// The most entries the buffer of arrivals keeps between batches. A burst (many tasks enqueued
/// while every slot stays busy: all of them wait in the intake) grows it, and it swaps with
/// the intake's, so without a cap both would hold the burst's size, 56 bytes an entry, for
/// the pool's life.
pub(super) const KEPT_ARRIVALS: usize = 1024;

#[derive(Debug)]
pub(super) struct State {
    pub(super) queue: AgingQueue<TaskRef>,
    /// The engine's epoch, to place deadlines in the queue's time.
    epoch: Epoch,
    /// Who the queued and running tasks are for, and how they share the slots.
    pub(super) tenants: Tenants,
    /// Where tasks that may have to leave early wait (tasks with a token or a deadline), so
    /// a cancellation or a deadline can take them out at once.
    pub(super) places: HashMap<TaskId, Place>,
    /// The deadlines of waiting tasks (queued or parked), in the order they pass; the
    /// timer ends each task still waiting when its deadline passes.
    pub(super) deadlines: BTreeSet<(Instant, TaskId)>,
    /// Tasks in retry backoff or deferred by admission, in the order they are due; it also
    /// counts them (the only owner of the `retrying` and `deferred` counts).
    pub(super) parked: ParkedSet,
    /// The moment the pool's timer sleeps until; `None` when no timer runs (nothing parked).
    pub(super) timer: Option<Instant>,
    /// Slots claimed: tasks between leaving the queue and the end of their attempt, but for
    /// those running on a loan.
    pub(super) active: usize,
    /// Children running on their parents' slots (see `nesting`): past the limit.
    borrowed: usize,
    /// Runners parked waiting for work (they hold no slot).
    pub(super) idle_runners: usize,
    /// Runners spawned by enqueues that have not started yet. While there are
    /// [`RUNNERS_ON_THEIR_WAY`] of them, the tasks the next enqueues claim wait in `handoff`
    /// for the first of them to start and spawn their runners (see `dispatch`).
    pub(super) runners_on_their_way: usize,
    /// Claimed tasks whose runners the next runner on its way to start spawns.
    pub(super) handoff: Vec<Claimed>,
    pub(super) limit: usize,
    pub(super) paused: bool,
    pub(super) stopped: bool,
    pub(super) counters: Counters,
    pub(super) rng: fastrand::Rng,
    /// The average queue wait, nanoseconds (see `observe_queue_wait`).
    queue_wait_ewma: Option<f64>,
    /// Running parents' slots, lent to their children (see `nesting`).
    pub(super) loans: Loans,
    /// Children given a loan, about to start on it: before anything queued, past the limit.
    on_loan: VecDeque<(TaskRef, LaneId, Ticks)>,
    /// Tasks taken from the intake, about to be queued (empty between acquisitions; its
    /// buffer is swapped with the intake's, see `intake`).
    pub(super) arrivals: Vec<Entry>,
}

impl State {
    pub(super) fn new(
        queue: AgingQueue<TaskRef>,
        tenants: Tenants,
        epoch: Epoch,
        limit: usize,
        seed: u64,
    ) -> Self {
        Self {
            queue,
            arrivals: Vec::new(),
            tenants,
            epoch,
            places: HashMap::new(),
            deadlines: BTreeSet::new(),
            parked: ParkedSet::new(epoch.instant(Ticks::default())),
            timer: None,
            active: 0,
            borrowed: 0,
            idle_runners: 0,
            runners_on_their_way: 0,
            handoff: Vec::new(),
            limit,
            paused: false,
            stopped: false,
            counters: Counters::default(),
            rng: fastrand::Rng::with_seed(seed),
            queue_wait_ewma: None,
            loans: Loans::default(),
            on_loan: VecDeque::new(),
        }
    }

    /// Queues the tasks taken from the intake, in the order they were pushed; says whether
    /// there were any.
    #[inline]
    pub(super) fn queue_arrivals(&mut self) -> bool {
        if self.arrivals.is_empty() {
            return false;
        }
        let mut arrivals = std::mem::take(&mut self.arrivals);
        self.counters.enqueued += arrivals.len() as u64;
        for entry in arrivals.drain(..) {
            let (task, waiting, at) = entry.into_parts();
            self.push(task, &waiting, at);
        }
        // Kept for the next swap with the intake's buffer, unless a burst grew it.
        arrivals.shrink_to(KEPT_ARRIVALS);
        self.arrivals = arrivals;
        true
    }

    /// Whether `enqueue` may leave tasks in the intake: no task could start at once, and
    /// a runner holding a slot is sure to take the lock when its attempt ends.
    pub(super) fn saturated(&self) -> bool {
        !self.stopped && self.on_loan.is_empty() && self.active > 0 && self.active >= self.limit
    }

    pub(super) fn can_start(&self) -> bool {
        !self.stopped
            && (!self.on_loan.is_empty()
                || (!self.paused && self.active < self.limit && !self.queue.is_empty()))
    }

    /// Nothing queued, running, in backoff or deferred.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.on_loan.is_empty()
            && self.active == 0
            && self.borrowed == 0
            && self.parked.retrying() == 0
            && self.parked.deferred() == 0
    }

    /// Queues `task` (again) as `waiting` says: in the lane of its tenant; remembers where,
    /// if it may have to leave early, and its deadline.
    pub(super) fn push(&mut self, task: TaskRef, waiting: &Waiting, now: Ticks) {
        let id = task.id();
        let (lane, weight) = self.tenants.lane(waiting.tenant.as_ref());
        let placement = Placement {
            priority: task.priority(),
            lane,
            weight,
            deadline: waiting.deadline.map(|deadline| self.epoch.ticks(deadline)),
        };
        self.tenants.queued(lane);
        let parent = match self.loans.is_empty() {
            true => None,
            false => self.loans.parent_of(id),
        };
        if let Some(parent) = parent {
            if self.loans.lend(parent, id) {
                self.borrowed += 1;
                self.on_loan.push_back((task, lane, now));
                return;
            }
        }
        let key = self.queue.push(task, placement, now);
        if let Some(parent) = parent {
            self.loans.wait(parent, key);
        }
        self.placed(id, waiting, Place::Queued(key));
    }

    /// Takes out the children about to start on a loan (the pool is stopping, its queue
    /// drained): they give their loans back unused.
    pub(super) fn drain_on_loan(&mut self) -> Vec<(TaskRef, Ticks)> {
        let mut drained = Vec::new();
        while let Some((task, _, entered_at)) = self.on_loan.pop_front() {
            self.release(task.id());
            drained.push((task, entered_at));
        }
        drained
    }

    /// `parent`'s loan is free: the first of its children still queued starts on it.
    fn lend_to_next_waiting(&mut self, parent: TaskId) {
        while let Some(key) = self.loans.next_waiting(parent) {
            // A child that left the queue meanwhile (an ordinary slot, a cancellation, its
            // deadline) is skipped: its key finds nothing.
            let Some(popped) = self.queue.remove(key) else {
                continue;
            };
            self.left(&popped.job);
            let lent = self.loans.lend(parent, popped.job.id());
            debug_assert!(lent, "a free loan");
            self.borrowed += 1;
            self.on_loan
                .push_back((popped.job, popped.lane, popped.enqueued_at));
            return;
        }
    }

    /// Remembers where a task that may have to leave early waits, and its deadline.
    pub(super) fn placed(&mut self, id: TaskId, waiting: &Waiting, place: Place) {
        if waiting.findable() {
            self.places.insert(id, place);
        }
        if let Some(deadline) = waiting.deadline {
            self.deadlines.insert((deadline, id));
        }
    }

    /// Forgets where `task` waited: it left to run.
    fn left(&mut self, task: &TaskRef) {
        if self.places.is_empty() {
            return;
        }
        let id = task.id();
        if self.places.remove(&id).is_some() && !self.deadlines.is_empty() {
            if let Some(deadline) = task.deadline() {
                self.deadlines.remove(&(deadline, id));
            }
        }
    }

    /// Takes task `id` out of where it waits (queue or parked set), if it still waits there,
    /// with the timeline of its stay — to end it early.
    pub(super) fn withdraw(&mut self, id: TaskId, now: Ticks) -> Option<(TaskRef, Timeline)> {
        let (task, stay) = match self.places.remove(&id)? {
            Place::Queued(key) => {
                let popped = self.queue.remove(key)?;
                self.tenants.unqueued(popped.lane);
                (popped.job, Timeline::waiting(popped.enqueued_at))
            }
            Place::Parked(key) => (self.parked.remove_leaving(key)?, Timeline::waiting(now)),
        };
        if !self.deadlines.is_empty() {
            if let Some(deadline) = task.deadline() {
                self.deadlines.remove(&(deadline, id));
            }
        }
        Some((task, stay))
    }

    /// Takes out every waiting task whose deadline is at or before `now`, with its stay,
    /// counting each as ended.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<(TaskRef, Timeline)> {
        let ticks = self.epoch.ticks(now);
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(withdrawn) = self.withdraw(id, ticks) {
                self.counters.ended(&DEADLINE_PASSED);
                expired.push(withdrawn);
            }
        }
        expired
    }

    /// When the timer must next wake: a parked task is due, or a waiting task's deadline
    /// passes.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let deadline = self.deadlines.first().map(|(deadline, _)| *deadline);
        match (self.parked.next_due(), deadline) {
            (Some(due), Some(deadline)) => Some(due.min(deadline)),
            (due, deadline) => due.or(deadline),
        }
    }

    /// Pops the next task and claims a slot for it, if one may start. The pop reads `now`
    /// only if the queue weighs priorities against age (several levels); otherwise the
    /// claim carries the moment only if it was read already.
    pub(super) fn take_next(
        &mut self,
        now: &mut Now<'_>,
        aging_target_wait: Duration,
    ) -> Option<Claimed> {
        if !self.stopped {
            if let Some((task, lane, entered_at)) = self.on_loan.pop_front() {
                // On its parent's slot (counted when lent): past the limit, the pause and the
                // tenant's share.
                self.tenants.started(lane);
                return Some(Claimed {
                    job: Job::new(task),
                    lane,
                    entered_at,
                    popped_at: now.read(),
                    in_flight: self.active + self.borrowed,
                });
            }
        }
        if !self.can_start() {
            return None;
        }
        let ages = self.queue.has_several_levels();
        let popped_at = if ages {
            self.queue
                .set_multiplier(self.aging_multiplier(aging_target_wait));
            Some(now.get())
        } else {
            now.read()
        };
        let tenants = &self.tenants;
        // A queue of one level pops its oldest task whatever the time.
        let popped = self.queue.pop(popped_at.unwrap_or_default(), |lane| {
            tenants.may_start(lane)
        })?;
        self.left(&popped.job);
        self.tenants.started(popped.lane);
        self.active += 1;
        if let (true, Some(at)) = (ages, popped_at) {
            self.observe_queue_wait(at.nanos_since(popped.enqueued_at));
        }
        Some(Claimed {
            job: Job::new(popped.job),
            lane: popped.lane,
            entered_at: popped.enqueued_at,
            popped_at,
            in_flight: self.active + self.borrowed,
        })
    }

    /// Attempts running, on ordinary slots and on loans.
    pub(super) fn running(&self) -> usize {
        self.active + self.borrowed
    }

    /// The attempt of `task` (of `lane`) ended: its slot is free again — or kept by the
    /// child running on its loan, or given back to the parent that lent it.
    pub(super) fn free_slot(&mut self, lane: LaneId, task: TaskId) {
        self.tenants.slot_freed(lane);
        if self.loans.is_empty() {
            self.active -= 1;
            return;
        }
        self.release(task);
    }

    /// The slot (or loan) `task` held, given back.
    fn release(&mut self, task: TaskId) {
        match self.loans.attempt_ended(task) {
            SlotEnd::Freed => self.active -= 1,
            SlotEnd::Inherited | SlotEnd::LoanPassed => self.borrowed -= 1,
            SlotEnd::LoanReturned(parent) => {
                self.borrowed -= 1;
                self.lend_to_next_waiting(parent);
            }
        }
    }

    /// Claims slots for as many queued tasks as may start.
    pub(super) fn take_startable(
        &mut self,
        now: &mut Now<'_>,
        aging_target_wait: Duration,
    ) -> Vec<Claimed> {
        std::iter::from_fn(|| self.take_next(now, aging_target_wait)).collect()
    }

    /// Keeps the average queue wait (an exponentially weighted moving average, in
    /// nanoseconds) of the pops that weigh priorities against age: a queue of one level does
    /// not age, so its waits do not steer aging (and its pops read no clock).
    #[inline]
    fn observe_queue_wait(&mut self, wait_nanos: u64) {
        let wait = nanos_as_f64(wait_nanos);
        let ewma = match self.queue_wait_ewma {
            Some(ewma) => 0.95 * ewma + 0.05 * wait,
            None => wait,
        };
        self.queue_wait_ewma = Some(ewma);
    }

    /// The aging multiplier in step with queue wait against its target: `target / average
    /// wait`, clamped to [0.25, 4], so aging speeds up when tasks wait longer than the target
    /// and slows down when they don't. Only a queue of several priority levels ages, so it
    /// is worked out only for those pops (from the waits of those pops before). One
    /// division: the average is kept in nanoseconds, and the queue turns the multiplier into
    /// its step with multiplications.
    #[inline]
    fn aging_multiplier(&self, target: Duration) -> f64 {
        match self.queue_wait_ewma {
            Some(ewma) => {
                let target = target.as_secs() as f64 * 1e9 + f64::from(target.subsec_nanos());
                (target / ewma.max(1.0)).clamp(0.25, 4.0)
            }
            None => 1.0,
        }
    }

    pub(super) fn stats(&self) -> Stats {
        // `processed` and `errors`: the deprecated names, filled in for one release.
        #[allow(deprecated)]
        Stats {
            queued: self.queue.len() + self.on_loan.len(),
            active: self.running(),
            retrying: self.parked.retrying(),
            deferred: self.parked.deferred(),
            enqueued: self.counters.enqueued,
            succeeded: self.counters.succeeded,
            failed: self.counters.failed,
            processed: self.counters.succeeded,
            errors: self.counters.failed,
            deadline_exceeded: self.counters.deadline_exceeded,
            shed: self.counters.shed,
            retries: self.counters.retries,
            cancelled: self.counters.cancelled,
            stopped_tasks: self.counters.stopped,
            concurrency: self.limit,
            paused: self.paused,
            stopped: self.stopped,
        }
    }
}
