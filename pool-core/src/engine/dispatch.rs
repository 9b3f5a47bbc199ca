//! Dispatch: a new task is queued, or handed to a runner at once; a runner runs its task and
//! keeps taking queued ones while a slot is free; the limit and pause change what may start.
//!
//! Runners are spawned only when there is a free slot and a queued task, and a runner that
//! finds the queue empty parks (holding no slot) until an enqueue wakes it, so neither a
//! saturated pool nor one whose queue keeps running dry spawns a runner per task.
//!
//! A burst into an idle pool claims a slot per task, and each claim needs a runner. The
//! producer spawns two ([`RUNNERS_ON_THEIR_WAY`]); the tasks claimed before either starts wait
//! for it (`State::handoff`), and the first to start spawns their runners, from the executor's
//! worker thread, and the producer may spawn another. A producer that spawned a runner per
//! claim (a task allocated, the runtime's queue pushed, an idle worker woken) set the pace of
//! the first wave: 2,000 tasks at C=200 from `block_on`, its first 200 enqueues took
//! 0.27–1.04 ms (median ~0.43), 0.07–0.43 ms (median ~0.11) with this hand-off (a scratch
//! probe, 8 alternated runs each, load 3.5–6.4).

use std::sync::Arc;

use crate::executor::BoxFuture;
use crate::observer::{Event, EventKind, TaskInfo};
use crate::raw_task::AttemptBuffer;
use crate::unwind::catch;

use super::attempt::KeptSleep;
use super::ending::TaskEnd;
use super::intake::Entry;
use super::job::{Job, TaskRef, Waiting};
use super::state::{Claimed, RUNNERS_ON_THEIR_WAY};
use super::timeline::Timeline;
use super::{Engine, Now};
use crate::queue::LaneId;

impl Engine {
    /// Adds a new task; starts it at once if a slot is free. `waiting` says how it waits
    /// (its tenant, whether it has a token, its deadline). `info` is the task's identity if observers
    /// listen (built by the caller, which has it at hand without asking the task).
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        task: TaskRef,
        waiting: Waiting,
        info: Option<TaskInfo>,
    ) {
        let cancellable = waiting.cancellable;
        if waiting.deadline.is_some() {
            self.deadlines_used
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Enqueued by a task of this pool from its attempt: its parent lends it its slot.
        let parent = super::nesting::parent_in(self);
        let now = self.now();
        // A saturated pool would only queue the task: it goes into the intake, without the
        // engine's lock (not a task with a deadline, which arms the timer, nor a child
        // borrowing its parent's slot, nor one whose `TaskQueued` event reports the queue's
        // length).
        let (task, waiting) = if self.intake.is_open()
            && waiting.deadline.is_none()
            && parent.is_none()
            && info.is_none()
        {
            let watched = cancellable.then(|| task.clone());
            match self.intake.push(Entry::new(task, waiting, now)) {
                Ok(()) => {
                    if let Some(task) = watched {
                        task.watch_cancellation();
                    }
                    return;
                }
                // Closed meanwhile: the engine's lock, as below.
                Err(entry) => {
                    let (task, waiting, _) = entry.into_parts();
                    (task, waiting)
                }
            }
        } else {
            (task, waiting)
        };
        let mut state = self.lock();
        state.counters.enqueued += 1;
        if state.stopped {
            let sequence = state.counters.resolved();
            state.counters.ended(&TaskEnd::Stopped);
            drop(state);
            let stay = Timeline::waiting(now);
            self.finish_waiting(task, TaskEnd::Stopped, now, &stay, info, sequence);
            return;
        }
        let watched = cancellable.then(|| task.clone());
        if let Some(parent) = parent {
            state.loans.adopt(parent, task.id());
        }
        state.push(task, &waiting, now);
        let queued = state.queue.len();
        // If a slot is free the queue held nothing else, so at most this one task starts:
        // on a parked runner if there is one, else on a new one.
        // A saturated pool (the usual case under load) starts nothing here.
        let can_start = state.can_start();
        let wake_parked = can_start && state.idle_runners > 0;
        let claimed = if wake_parked {
            state.idle_runners -= 1;
            None
        } else if can_start {
            state.take_next(&mut Now::at(self, now), self.settings.aging_target_wait)
        } else {
            None
        };
        // Runners spawned by earlier enqueues have not started: the first to start spawns
        // this task's runner, from a worker thread, instead of this producer.
        let started = match claimed {
            Some(claimed) if state.runners_on_their_way >= RUNNERS_ON_THEIR_WAY => {
                state.handoff.push(claimed);
                None
            }
            Some(claimed) => {
                state.runners_on_their_way += 1;
                Some(claimed)
            }
            None => None,
        };
        // Filling the last slot opens the intake.
        self.settle_intake(&mut state);
        match waiting.deadline {
            // Still waiting: the timer must end it if its deadline passes first.
            Some(deadline) if started.is_none() => self.arm_timer(state, deadline),
            _ => drop(state),
        }
        if wake_parked {
            self.work_ready.notify_one();
        }
        if let Some(task) = info {
            if self.observers.wants(EventKind::TaskQueued) {
                self.observers.emit(&Event::TaskQueued { task, queued });
            }
        }
        if let Some(claimed) = started {
            self.spawn_runner(claimed, true);
        }
        if let Some(task) = watched {
            task.watch_cancellation();
        }
    }

    /// A runner on its way has started (or was dropped before it could): spawns the
    /// runners of the tasks claimed meanwhile.
    fn hand_out(self: &Arc<Self>) {
        let handoff = {
            let mut state = self.lock();
            state.runners_on_their_way -= 1;
            std::mem::take(&mut state.handoff)
        };
        self.spawn_runners(handoff);
    }

    fn spawn_runner(self: &Arc<Self>, claimed: Claimed, hands_out: bool) {
        let runner = Runner {
            engine: Arc::clone(self),
            next: Some(claimed),
            running: None,
            buffer: AttemptBuffer::default(),
            sleep: None,
            hands_out,
        };
        self.spawn("a runner", Box::pin(runner.run()));
    }

    /// A runner for each claimed task.
    pub(super) fn spawn_runners(self: &Arc<Self>, claimed: impl IntoIterator<Item = Claimed>) {
        for claimed in claimed {
            self.spawn_runner(claimed, false);
        }
    }

    /// Spawns `task` on the executor. An executor that panics has dropped the future (a
    /// runner's guard then gives its task and slot back) or kept it: either way the engine
    /// goes on. Returns whether it was spawned.
    pub(super) fn spawn(&self, what: &str, task: BoxFuture<()>) -> bool {
        let spawned = catch(|| self.executor.spawn(task)).is_ok();
        if !spawned {
            tracing::error!(target: "pool_core", "the executor panicked spawning {what}");
        }
        spawned
    }

    /// Parks a runner that found no work until an enqueue wakes it. At most `limit` runners
    /// park; the others end, and all of them end when the pool stops.
    async fn wait_for_work(&self) -> Option<Claimed> {
        loop {
            let notified = self.work_ready.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check below, so a wake-up between them is not lost.
            notified.as_mut().enable();
            {
                // Read under the lock only if the pop needs it (a queue that ages).
                let mut now = Now::lazy(self);
                let mut state = self.lock();
                if state.stopped {
                    return None;
                }
                if let Some(claimed) = state.take_next(&mut now, self.settings.aging_target_wait) {
                    return Some(claimed);
                }
                if state.idle_runners >= state.limit {
                    return None;
                }
                state.idle_runners += 1;
            }
            notified.await;
        }
    }

    /// Gives back the slot of a task (of `lane`) whose runner was dropped before its attempt
    /// ended (its executor shut down, or refused to run it): the task ends `Stopped`.
    fn abandon(self: &Arc<Self>, job: Job, lane: LaneId) {
        let now = self.now();
        let mut state = self.lock();
        state.free_slot(lane, job.task().id());
        let sequence = state.counters.resolved();
        state.counters.ended(&TaskEnd::Stopped);
        self.settle_intake(&mut state);
        // The slot may have gone back to a parent whose next child starts on it.
        let started =
            state.take_startable(&mut Now::at(self, now), self.settings.aging_target_wait);
        let idle = state.is_idle();
        drop(state);
        let stay = Timeline::waiting(now);
        let at = &mut Now::at(self, now);
        self.finish(job, TaskEnd::Stopped, at, &stay, None, sequence);
        self.spawn_runners(started);
        if idle {
            self.notify_idle();
        }
    }

    pub(crate) fn set_limit(self: &Arc<Self>, limit: usize) {
        let now = self.now();
        let mut state = self.lock();
        let from = state.limit;
        state.limit = limit;
        self.settle_intake(&mut state);
        let started =
            state.take_startable(&mut Now::at(self, now), self.settings.aging_target_wait);
        drop(state);
        self.spawn_runners(started);
        if from != limit {
            tracing::debug!(target: "pool_core", from, to = limit, "concurrency changed");
            self.observers
                .emit(&Event::ConcurrencyChanged { from, to: limit });
        }
    }

    pub(crate) fn set_paused(self: &Arc<Self>, paused: bool) {
        let now = self.now();
        let mut state = self.lock();
        if state.paused == paused || state.stopped {
            return;
        }
        state.paused = paused;
        self.settle_intake(&mut state);
        let started =
            state.take_startable(&mut Now::at(self, now), self.settings.aging_target_wait);
        drop(state);
        self.spawn_runners(started);
        if paused {
            tracing::debug!(target: "pool_core", "pool paused");
            self.observers.emit(&Event::Paused);
        } else {
            tracing::debug!(target: "pool_core", "pool resumed");
            self.observers.emit(&Event::Resumed);
        }
    }
}

/// Runs its claimed task, then keeps taking queued tasks while it may. It owns the slot of
/// the task it holds: dropped while holding one (its executor dropped the future, or refused
/// to run it), it gives the slot back and the task ends `Stopped`.
struct Runner {
    engine: Arc<Engine>,
    /// The task to run next.
    next: Option<Claimed>,
    /// The task whose attempt runs, and the lane its slot is counted against.
    running: Option<(Job, LaneId)>,
    /// Where its attempts' futures live when they are too large to be stored in place: one
    /// allocation for all of them.
    buffer: AttemptBuffer,
    /// The timer of its attempts' timeouts, kept from one attempt to the next while it has
    /// work (see [`KeptSleep`]).
    sleep: KeptSleep,
    /// Spawned by an enqueue: it spawns the runners of the tasks claimed before it started
    /// (`State::handoff`).
    hands_out: bool,
}

impl Runner {
    async fn run(mut self) {
        if std::mem::take(&mut self.hands_out) {
            self.engine.hand_out();
        }
        while let Some(claimed) = self.next.take() {
            // Built in place, and lent to the attempt and the decision after it.
            let mut timeline = claimed.timeline();
            let (job, _) = self.running.insert((claimed.job, claimed.lane));
            // Asked once per stay and reused by every event of it, if the stay's attempt
            // events need it; otherwise the rarer events that end a stay ask for it (a
            // finished task's record reads it with the stored timeline, in one look).
            let info = self
                .engine
                .observers
                .wants_attempt_events()
                .then(|| job.task().info());
            // Asked once per stay: what follows needs each attempt's start and end.
            let timed = self.engine.wants_times();
            if timeline.started_at().is_none() && timed {
                // The pop read no clock, but this stay's waits and latency are wanted.
                timeline.left_queue(self.engine.now());
            }
            let end = self
                .engine
                .attempt(
                    job,
                    &mut timeline,
                    info.as_ref(),
                    timed,
                    &mut self.buffer,
                    &mut self.sleep,
                )
                .await;
            let (job, lane) = self.running.take().expect("the runner holds its task");
            self.next = match self.engine.after_attempt(job, lane, &timeline, end, info) {
                Some(next) => Some(next),
                None => {
                    // Parked, it holds no timer (nor wakes for one that fires meanwhile).
                    self.sleep = None;
                    self.engine.wait_for_work().await
                }
            };
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if std::mem::take(&mut self.hands_out) {
            self.engine.hand_out();
        }
        if let Some(claimed) = self.next.take() {
            self.engine.abandon(claimed.job, claimed.lane);
        }
        if let Some((job, lane)) = self.running.take() {
            self.engine.abandon(job, lane);
        }
    }
}
