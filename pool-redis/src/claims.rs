//! Permits asked for tasks parked without their slot: a pool's task that needs a global
//! permit gives its local slot back and waits parked ([`Precheck::ParkUntilWoken`]) while the
//! agent asks Redis; the agent's answer is set aside here under the task's id and the task
//! woken; the task takes it when it asks again.
//!
//! **A window.** A handle asks for at most twice as many permits as its tasks hold running
//! (at least [`MIN_WINDOW`]); further parked tasks queue here, first come first served, until
//! an answer is taken or a running task ends. So a pool far busier than the global limit
//! does not ask Redis for thousands of permits it has no slots to run, nor hold permits idle
//! for tasks waiting for a slot beyond about its own concurrency; the window opens as fast as
//! tasks run (it doubles every round of answers taken).
//!
//! **Tasks that leave.** A task may not come back for its answer: it was cancelled or its
//! pool stopped while parked (the pool abandons its [`Wakeup`]: the agent skips it, and its
//! permit goes to the next waiter), or it left later (cancelled while queued again, refused
//! by another policy). So an answer not taken within a sweep period is dropped, which releases
//! its permit: a permit is never held for a task that is gone longer than two sweep periods.
//! Answers are stamped on the pool's clock (its [`Executor`]), as the agent's sweeps are.
//!
//! [`Precheck::ParkUntilWoken`]: pool_core::Precheck::ParkUntilWoken

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use pool_core::{Executor, TaskId, Wakeup};
use tokio::sync::mpsc::UnboundedSender;

use crate::agent::{Request, Waiter};
use crate::error::PermitError;
use crate::lease::Lease;

/// What the agent answers a task: a lease, or why not.
pub(crate) type Answer = Result<Lease, PermitError>;

/// Permits a handle may ask for while none of its tasks runs.
pub(crate) const MIN_WINDOW: usize = 4;

/// The parked tasks of one handle (one pool), their answers, and the window of asks.
#[derive(Debug)]
pub(crate) struct Claims {
    state: Mutex<State>,
    requests: UnboundedSender<Request>,
    /// The clock answers are stamped with (the agent's, so its sweeps compare like with like).
    clock: Arc<dyn Executor>,
    /// Itself, for the waiters it sends to the agent.
    me: Weak<Claims>,
}

#[derive(Debug, Default)]
struct State {
    by_task: HashMap<TaskId, Claim>,
    /// Claims not asked for yet, oldest first (ids whose claim left are skipped).
    queued: VecDeque<TaskId>,
    /// Claims asked for and not taken yet (answered or not).
    asked: usize,
    /// Leases taken by tasks and not dropped yet.
    running: usize,
}

#[derive(Debug)]
struct Claim {
    wakeup: Wakeup,
    asked: bool,
    /// With when it arrived.
    answer: Option<(Answer, Instant)>,
}

impl State {
    fn window(&self) -> usize {
        self.running.saturating_mul(2).max(MIN_WINDOW)
    }

    /// Removes a claim, counting it out of the window.
    fn remove(&mut self, task: TaskId) -> Option<Claim> {
        let claim = self.by_task.remove(&task)?;
        if claim.asked {
            self.asked -= 1;
        }
        Some(claim)
    }
}

/// What a task asking for a permit finds.
#[derive(Debug)]
pub(crate) enum Found {
    /// No answer yet (its claim is new, or asked, or queued for the window): park with this
    /// wakeup.
    Waiting(Wakeup),
    /// An answer is here: go on and take it.
    Answered,
}

/// A lease a task took, counted as running until the attempt drops it.
#[derive(Debug)]
pub(crate) struct RunningLease {
    /// Held for its drop, which releases the permit.
    _lease: Lease,
    claims: Weak<Claims>,
}

impl Drop for RunningLease {
    fn drop(&mut self) {
        if let Some(claims) = self.claims.upgrade() {
            let mut state = claims.lock();
            state.running -= 1;
            claims.pump(state);
        }
    }
}

impl Claims {
    pub(crate) fn new(requests: UnboundedSender<Request>, clock: Arc<dyn Executor>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            state: Mutex::new(State::default()),
            requests,
            clock,
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing user-supplied runs under this lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `task` finds; makes a claim for it if it has none (asked for now if the window
    /// allows, else queued).
    pub(crate) fn find(&self, task: TaskId) -> Found {
        let mut state = self.lock();
        if let Some(claim) = state.by_task.get(&task) {
            return match claim.answer {
                Some(_) => Found::Answered,
                None => Found::Waiting(claim.wakeup.clone()),
            };
        }
        let wakeup = Wakeup::new();
        state.by_task.insert(
            task,
            Claim {
                wakeup: wakeup.clone(),
                asked: false,
                answer: None,
            },
        );
        state.queued.push_back(task);
        self.pump(state);
        Found::Waiting(wakeup)
    }

    /// Takes `task`'s claim away, with its answer if it has one: a lease, counted as running
    /// until dropped, or a refusal.
    pub(crate) fn take(&self, task: TaskId) -> Option<Result<RunningLease, PermitError>> {
        let mut state = self.lock();
        let claim = state.remove(task)?;
        let taken = claim.answer.map(|(answer, _)| {
            answer.map(|lease| {
                state.running += 1;
                RunningLease {
                    _lease: lease,
                    claims: self.me.clone(),
                }
            })
        });
        self.pump(state);
        taken
    }

    /// Asks the agent for queued claims while the window allows, then wakes whoever must be
    /// (outside the lock: waking takes the pool's).
    fn pump(&self, mut state: MutexGuard<'_, State>) {
        let mut wake = Vec::new();
        while state.asked < state.window() {
            let Some(task) = state.queued.pop_front() else {
                break;
            };
            let Some(claim) = state.by_task.get_mut(&task) else {
                continue;
            };
            if claim.asked {
                continue;
            }
            if claim.wakeup.is_abandoned() {
                state.by_task.remove(&task);
                continue;
            }
            claim.asked = true;
            let waiter = ParkedWaiter {
                claims: self.me.clone(),
                task,
                wakeup: claim.wakeup.clone(),
            };
            if self
                .requests
                .send(Request::Acquire(Waiter::Parked(waiter)))
                .is_err()
            {
                // The agent stopped: the task takes the refusal when it comes back.
                claim.answer = Some((Err(PermitError::Closed), self.clock.now()));
                wake.push(claim.wakeup.clone());
            }
            state.asked += 1;
        }
        drop(state);
        for wakeup in wake {
            wakeup.wake();
        }
    }

    /// Gives `task` its answer and wakes it; the answer back if the task is gone (no claim,
    /// already answered, or abandoned by its pool).
    fn deliver(&self, task: TaskId, answer: Answer, now: Instant) -> Result<(), Answer> {
        let mut state = self.lock();
        let Some(claim) = state.by_task.get_mut(&task) else {
            return Err(answer);
        };
        if claim.answer.is_some() {
            return Err(answer);
        }
        if claim.wakeup.is_abandoned() {
            state.remove(task);
            self.pump(state);
            return Err(answer);
        }
        claim.answer = Some((answer, now));
        let wakeup = claim.wakeup.clone();
        drop(state);
        // Outside the lock: waking takes the pool's.
        wakeup.wake();
        Ok(())
    }

    /// Drops the claims of tasks gone for good and the answers not taken since `cutoff`
    /// (releasing their permits); how many permits that released.
    pub(crate) fn sweep(&self, cutoff: Instant) -> usize {
        let mut state = self.lock();
        let stale: Vec<TaskId> = state
            .by_task
            .iter()
            .filter(|(_, claim)| {
                claim.wakeup.is_abandoned()
                    || claim.answer.as_ref().is_some_and(|(_, at)| *at < cutoff)
            })
            .map(|(task, _)| *task)
            .collect();
        let dropped: Vec<Claim> = stale
            .into_iter()
            .filter_map(|task| state.remove(task))
            .collect();
        self.pump(state);
        // Leases are released as they drop, outside the lock.
        dropped
            .into_iter()
            .filter(|claim| matches!(claim.answer, Some((Ok(_), _))))
            .count()
    }

    /// Claims asked for and not taken, and leases running (for tests and status).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (state.by_task.len(), state.asked, state.running)
    }
}

/// A parked task's place in the agent's queue.
#[derive(Debug)]
pub(crate) struct ParkedWaiter {
    claims: Weak<Claims>,
    task: TaskId,
    wakeup: Wakeup,
}

impl ParkedWaiter {
    /// Sets `answer` aside for the task and wakes it; the answer back if the task is gone.
    pub(crate) fn send(self, answer: Answer, now: Instant) -> Result<(), Answer> {
        match self.claims.upgrade() {
            Some(claims) => claims.deliver(self.task, answer, now),
            None => Err(answer),
        }
    }

    /// Whether nobody will take an answer: the handle is gone, or the pool abandoned the task.
    pub(crate) fn is_closed(&self) -> bool {
        self.claims.strong_count() == 0 || self.wakeup.is_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_core::SimExecutor;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// Claims and the agent's side of their channel: the parked waiters they asked for.
    fn claims() -> (Arc<Claims>, mpsc::UnboundedReceiver<Request>) {
        claims_on(Arc::new(SimExecutor::new()))
    }

    fn claims_on(clock: Arc<dyn Executor>) -> (Arc<Claims>, mpsc::UnboundedReceiver<Request>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Claims::new(sender, clock), receiver)
    }

    fn asked(receiver: &mut mpsc::UnboundedReceiver<Request>) -> Vec<ParkedWaiter> {
        std::iter::from_fn(|| match receiver.try_recv().ok()? {
            Request::Acquire(Waiter::Parked(waiter)) => Some(waiter),
            other => panic!("{other:?}"),
        })
        .collect()
    }

    fn uncounted() -> Answer {
        Ok(Lease::unaccounted())
    }

    #[test]
    fn a_claim_is_made_once_asked_once_answered_once_and_taken_once() {
        let (claims, mut agent) = claims();
        let now = claims.clock.now();
        let Found::Waiting(wakeup) = claims.find(TaskId(1)) else {
            panic!("no answer yet")
        };
        assert!(matches!(claims.find(TaskId(1)), Found::Waiting(w) if w == wakeup));
        let mut waiters = asked(&mut agent);
        assert_eq!(waiters.len(), 1, "asked once");
        let waiter = waiters.pop().unwrap();
        assert!(!waiter.is_closed());
        waiter.send(uncounted(), now).unwrap();
        assert!(wakeup.is_woken());
        assert!(matches!(claims.find(TaskId(1)), Found::Answered));
        let again = ParkedWaiter {
            claims: Arc::downgrade(&claims),
            task: TaskId(1),
            wakeup,
        };
        assert!(again.send(uncounted(), now).is_err(), "answered already");
        let running = claims.take(TaskId(1)).unwrap().unwrap();
        assert!(!running._lease.is_counted());
        assert_eq!(claims.counts(), (0, 0, 1));
        assert!(claims.take(TaskId(1)).is_none());
        drop(running);
        assert_eq!(claims.counts(), (0, 0, 0));
    }

    /// Four asks with nothing running; each lease taken widens the window by two.
    #[test]
    fn asks_stay_within_twice_the_running_leases() {
        let (claims, mut agent) = claims();
        let now = claims.clock.now();
        for id in 0..20 {
            claims.find(TaskId(id));
        }
        let first = asked(&mut agent);
        assert_eq!(first.len(), MIN_WINDOW);
        for waiter in first {
            waiter.send(uncounted(), now).unwrap();
        }
        assert!(
            asked(&mut agent).is_empty(),
            "answered, not taken: still asked"
        );
        let running: Vec<_> = (0..4)
            .map(|id| claims.take(TaskId(id)).unwrap().unwrap())
            .collect();
        // 4 running: a window of 8, all asked now.
        let second = asked(&mut agent);
        assert_eq!(second.len(), 8);
        let asked_ids: Vec<u64> = second.iter().map(|w| w.task.0).collect();
        assert_eq!(
            asked_ids,
            (4..12).collect::<Vec<_>>(),
            "first come first asked"
        );
        assert_eq!(claims.counts(), (16, 8, 4));
        drop(running);
        // Nothing running: the window closes back to its floor, nothing more is asked.
        assert!(asked(&mut agent).is_empty());
    }

    #[test]
    fn answers_not_taken_in_time_and_abandoned_claims_are_swept() {
        let (claims, mut agent) = claims();
        let now = claims.clock.now();
        for id in 0..3 {
            claims.find(TaskId(id));
        }
        let mut waiters = asked(&mut agent).into_iter();
        waiters.next().unwrap().send(uncounted(), now).unwrap();
        waiters
            .next()
            .unwrap()
            .send(uncounted(), now + Duration::from_secs(2))
            .unwrap();
        assert_eq!(claims.sweep(now + Duration::from_secs(1)), 1);
        assert_eq!(
            claims.counts(),
            (2, 2, 0),
            "the later answer and the waiting ask stay"
        );
        assert!(matches!(claims.find(TaskId(2)), Found::Waiting(_)));
        assert!(matches!(claims.take(TaskId(1)), Some(Ok(_))));
    }

    #[test]
    fn a_waiter_of_a_dropped_handle_is_closed_and_gives_its_answer_back() {
        let (claims, mut agent) = claims();
        claims.find(TaskId(7));
        let waiter = asked(&mut agent).pop().unwrap();
        drop(claims);
        assert!(waiter.is_closed());
        assert!(waiter.send(uncounted(), Instant::now()).is_err());
    }

    #[test]
    fn with_the_agent_gone_a_claim_is_refused() {
        let (claims, agent) = claims();
        drop(agent);
        let Found::Waiting(wakeup) = claims.find(TaskId(3)) else {
            panic!("parks first")
        };
        assert!(wakeup.is_woken(), "woken at once with the refusal");
        assert!(matches!(
            claims.take(TaskId(3)),
            Some(Err(PermitError::Closed))
        ));
    }

    /// A refusal is stamped on the pool's clock, not the wall clock: on a virtual clock an
    /// hour ahead, a sweep of answers older than a second keeps a refusal made just now.
    #[test]
    fn a_refusal_is_stamped_on_the_pool_s_clock() {
        let sim = Arc::new(SimExecutor::new());
        sim.advance(Duration::from_secs(3_600));
        let (claims, agent) = claims_on(Arc::clone(&sim) as Arc<dyn Executor>);
        drop(agent);
        claims.find(TaskId(5));
        assert_eq!(claims.sweep(sim.now() - Duration::from_secs(1)), 0);
        assert_eq!(
            claims.counts().0,
            1,
            "the refusal is fresh on the pool's clock"
        );
        assert!(matches!(
            claims.take(TaskId(5)),
            Some(Err(PermitError::Closed))
        ));
    }
}
