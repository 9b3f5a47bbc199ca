//! What cuts a task's path short: its cancellation token firing (the task calls the engine
//! through [`CancelSink`]), `stop` and `stop_now`; and waiting until the engine is idle.

use std::sync::atomic::Ordering;

use crate::observer::Event;
use crate::task::TaskId;

use super::ending::TaskEnd;
use super::job::CancelSink;
use super::timeline::Timeline;
use super::Engine;

impl CancelSink for Engine {
    /// Ends a cancelled task at once if it waits in the queue or is parked. A running task's
    /// attempt sees its token itself, and the decision after an attempt checks it.
    fn cancelled(&self, id: TaskId) {
        let now = self.now();
        let mut state = self.lock();
        let Some((task, stay)) = state.withdraw(id, now) else {
            return;
        };
        let sequence = state.counters.resolved();
        state.counters.ended(&TaskEnd::Cancelled);
        let idle = state.is_idle();
        drop(state);
        self.finish_waiting(task, TaskEnd::Cancelled, now, &stay, None, sequence);
        if idle {
            self.notify_idle();
        }
    }

    /// Task `id` was resolved by its handle's `abort`: a queued or parked task with a token
    /// leaves at once; a running attempt ends at its next wake-up; the others are dropped
    /// unrun when the engine next meets them (see
    /// [`ErasedTask::is_resolved`](super::job::ErasedTask::is_resolved)).
    fn aborted(&self, id: TaskId) {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        self.cancelled(id);
        self.interrupt.notify_waiters();
    }
}

impl Engine {
    /// Stops the pool: queued tasks end `Stopped`, parked ones too; running tasks finish,
    /// or with `cancel_running` are dropped at their next poll.
    pub(crate) fn stop(&self, cancel_running: bool) {
        let now = self.now();
        let mut state = self.lock();
        let first_stop = !state.stopped;
        state.stopped = true;
        // Closed, with what was pushed meanwhile moved into the queue: it ends with it.
        self.settle_intake(&mut state);
        let queued = state.queue.drain_all();
        let on_loan = state.drain_on_loan();
        state.tenants.queue_drained();
        // Parked tasks are counted out by the drain; a task the engine decided to park but
        // has not parked yet stays counted until its runner finds the pool stopped.
        let parked = state.parked.drain_all();
        state.places.clear();
        state.deadlines.clear();
        state.idle_runners = 0;
        // Numbered in the order they are finished below.
        let sequences = state.counters.resolved()..;
        state
            .counters
            .stopped(queued.len() + on_loan.len() + parked.len());
        let idle = state.is_idle();
        drop(state);
        self.timer_wake.notify_one();
        self.work_ready.notify_waiters();
        if cancel_running {
            // Before the wake-up: a waiting attempt reads it when woken (`race`).
            self.stopped_now.store(true, Ordering::SeqCst);
            self.stop_now_token.cancel();
            self.interrupt.notify_waiters();
        }
        let waited = queued
            .into_iter()
            .map(|popped| (popped.job, popped.enqueued_at))
            .chain(on_loan)
            .chain(parked.into_iter().map(|task| (task, now)));
        for ((task, entered_at), sequence) in waited.zip(sequences) {
            let stay = Timeline::waiting(entered_at);
            self.finish_waiting(task, TaskEnd::Stopped, now, &stay, None, sequence);
        }
        if first_stop {
            tracing::debug!(target: "pool_core", cancel_running, "pool stopped");
            self.observers.emit(&Event::Stopped);
        }
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// Waits until nothing is queued, running, in backoff or deferred.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.lock().is_idle() {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn notify_idle(&self) {
        self.idle.notify_waiters();
        self.observers.emit(&Event::Drained);
    }
}
