//! This process's side of a shared rate limit: which tasks wait for a moment, the moments
//! Redis booked for them, and the spare ones. Pure bookkeeping (every method takes `now`);
//! the agent fills it from Redis, the policy reads it in `precheck` without waiting.
//!
//! A task that reaches the limiter with no moment joins its key's waiting set and is parked
//! until woken ([`Wakeup`]); the agent books moments for every waiting task of every key in
//! one script call, hands them out, higher priority first, then in arrival order, and wakes
//! their tasks. A task that comes back finds its moment: it goes if the moment has come, else
//! it is parked until then.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use pool_core::policy::RateLimit;
use pool_core::{TaskId, Wakeup};
use tokio::sync::oneshot;

/// How long a waiting task may go without coming back before it is no longer counted (it
/// left without its pool abandoning its wakeup: refused by another policy, cancelled while
/// queued again). A task that waits comes back at least every
/// [`WAITING_SAFETY_NET`](super::WAITING_SAFETY_NET), well within it.
const STALE_WAITER: Duration = Duration::from_secs(5);

/// What `precheck` decides for a task of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Its moment has come (used up now).
    Go,
    /// Its moment is later: park until then.
    At(Instant),
    /// No moment yet: one is being booked; park until this wakes (when it is delivered).
    Asked(Wakeup),
}

/// A moment for a caller waiting outside a pool (`Admission::acquire` without `precheck`).
pub(crate) type DirectWaiter = oneshot::Sender<Instant>;

/// One key's local state.
#[derive(Debug)]
pub(crate) struct Cell {
    pub(crate) limit: RateLimit,
    /// The rate Redis last reported for this key (AIMD may have lowered it).
    pub(crate) rate: Option<f64>,
    waiting: HashMap<TaskId, Waiter>,
    assigned: HashMap<TaskId, Instant>,
    spare: VecDeque<Instant>,
    direct: VecDeque<DirectWaiter>,
    last_used: Instant,
}

#[derive(Debug, Clone)]
struct Waiter {
    priority: i32,
    seq: u64,
    since: Instant,
    last_seen: Instant,
    /// Fired when a moment is delivered to the task.
    wakeup: Wakeup,
}

impl Cell {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            rate: None,
            waiting: HashMap::new(),
            assigned: HashMap::new(),
            spare: VecDeque::new(),
            direct: VecDeque::new(),
            last_used: now,
        }
    }

    /// The task's turn: its assigned moment, a spare one, or "asked" (it now waits for one).
    /// With `max_wait`, a moment further away, or a wait for a moment longer than that, is
    /// refused: `Err` says how long the task would wait at least (a refused moment stays for
    /// another task).
    pub(crate) fn turn(
        &mut self,
        task: TaskId,
        priority: i32,
        now: Instant,
        seq: u64,
        max_wait: Option<Duration>,
    ) -> Result<Turn, Duration> {
        self.last_used = now;
        let too_far = |at: Instant| {
            let wait = at.saturating_duration_since(now);
            max_wait.is_some_and(|max| wait > max).then_some(wait)
        };
        if let Some(&at) = self.assigned.get(&task) {
            if at <= now {
                self.assigned.remove(&task);
                return Ok(Turn::Go);
            }
            if let Some(wait) = too_far(at) {
                self.assigned.remove(&task);
                self.spare.push_front(at);
                return Err(wait);
            }
            return Ok(Turn::At(at));
        }
        if let Some(&at) = self.spare.front() {
            if let Some(wait) = too_far(at) {
                return Err(wait);
            }
            self.spare.pop_front();
            self.waiting.remove(&task);
            if at <= now {
                return Ok(Turn::Go);
            }
            self.assigned.insert(task, at);
            return Ok(Turn::At(at));
        }
        let waiter = self.waiting.entry(task).or_insert_with(|| Waiter {
            priority,
            seq,
            since: now,
            last_seen: now,
            wakeup: Wakeup::new(),
        });
        waiter.last_seen = now;
        let waited = now.saturating_duration_since(waiter.since);
        if let Some(max) = max_wait.filter(|max| waited > *max) {
            // Booked up to the horizon by others all along: refuse rather than wait longer.
            self.waiting.remove(&task);
            return Err(max);
        }
        Ok(Turn::Asked(waiter.wakeup.clone()))
    }

    /// A moment for a caller outside a pool: a spare one now, or `None` (queue it with
    /// [`wait_direct`](Self::wait_direct)).
    pub(crate) fn take_spare(&mut self, now: Instant) -> Option<Instant> {
        self.last_used = now;
        self.spare.pop_front()
    }

    pub(crate) fn wait_direct(&mut self, waiter: DirectWaiter) {
        self.direct.push_back(waiter);
    }

    /// Answers every caller outside a pool that waits (their receivers see it dropped):
    /// Redis is unreachable.
    pub(crate) fn drop_direct(&mut self) {
        self.direct.clear();
    }

    /// Gives a moment back (its task was refused by `max_wait`): the next task takes it.
    pub(crate) fn give_back(&mut self, at: Instant) {
        self.spare.push_front(at);
    }

    /// How many moments to ask Redis for: one per waiting task and caller, less the spare
    /// ones. Waiting tasks that left (their pool abandoned them, or they stopped coming back)
    /// are forgotten first.
    pub(crate) fn demand(&mut self, now: Instant) -> usize {
        self.waiting.retain(|_, waiter| {
            !waiter.wakeup.is_abandoned()
                && now.saturating_duration_since(waiter.last_seen) < STALE_WAITER
        });
        self.direct.retain(|waiter| !waiter.is_closed());
        (self.waiting.len() + self.direct.len()).saturating_sub(self.spare.len())
    }

    /// Hands out moments Redis booked: callers outside a pool first (they hold a slot),
    /// then waiting tasks, higher priority first and then in arrival order; the rest are
    /// spare. Returns the wakeups of the tasks served, for the caller to fire once it has
    /// let go of the book (waking takes the pool's lock).
    #[must_use = "the tasks served wait until their wakeups fire"]
    pub(crate) fn deliver(&mut self, moments: impl IntoIterator<Item = Instant>) -> Vec<Wakeup> {
        let mut served = Vec::new();
        let mut order: Vec<(TaskId, Waiter)> = self.waiting.drain().collect();
        order.sort_by_key(|(_, waiter)| (std::cmp::Reverse(waiter.priority), waiter.seq));
        let mut order = order.into_iter();
        for at in moments {
            if let Some(waiter) = self.direct.pop_front() {
                if let Err(at) = waiter.send(at) {
                    // That caller gave up: the moment goes on to the next.
                    self.spare.push_back(at);
                }
                continue;
            }
            match order.next() {
                Some((task, waiter)) => {
                    self.assigned.insert(task, at);
                    served.push(waiter.wakeup);
                }
                None => self.spare.push_back(at),
            }
        }
        for (task, waiter) in order {
            self.waiting.insert(task, waiter);
        }
        // Spare moments given back or left over go to the direct callers still waiting.
        while !self.direct.is_empty() {
            let Some(at) = self.spare.pop_front() else {
                break;
            };
            if let Some(waiter) = self.direct.pop_front() {
                if let Err(at) = waiter.send(at) {
                    self.spare.push_front(at);
                }
            }
        }
        served
    }

    /// Lets every waiting task go (Redis is unreachable): their wakeups, for the caller to
    /// fire; the tasks come back and meet the fail mode.
    #[must_use = "the tasks wait until their wakeups fire"]
    pub(crate) fn release_waiting(&mut self) -> Vec<Wakeup> {
        self.waiting
            .drain()
            .map(|(_, waiter)| waiter.wakeup)
            .collect()
    }

    /// Drops every moment booked at the old rate (the key was throttled): their tasks ask
    /// again when they come back.
    pub(crate) fn forget_moments(&mut self) {
        self.assigned.clear();
        self.spare.clear();
    }

    /// Drops what can no longer be used; true if the cell itself may go.
    pub(crate) fn sweep(&mut self, now: Instant, idle: Duration) -> bool {
        let cutoff = now.checked_sub(idle);
        if let Some(cutoff) = cutoff {
            // Moments long past belong to tasks that never came back.
            self.assigned.retain(|_, at| *at >= cutoff);
            self.spare.retain(|at| *at >= cutoff);
        }
        self.demand(now);
        self.waiting.is_empty()
            && self.assigned.is_empty()
            && self.direct.is_empty()
            && now.saturating_duration_since(self.last_used) >= idle
    }

    /// Moments booked and not yet taken.
    pub(crate) fn booked(&self) -> usize {
        self.assigned.len() + self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(now: Instant) -> Cell {
        Cell::new(RateLimit::new(10.0, 1).unwrap(), now)
    }

    #[test]
    fn a_task_without_a_moment_waits_for_one_and_then_takes_it() {
        let now = Instant::now();
        let later = now + Duration::from_millis(300);
        let mut cell = cell(now);
        let Ok(Turn::Asked(wakeup)) = cell.turn(TaskId(1), 0, now, 1, None) else {
            panic!("no moment yet")
        };
        assert_eq!(
            cell.turn(TaskId(1), 0, now, 1, None),
            Ok(Turn::Asked(wakeup.clone())),
            "the same wakeup when it comes back"
        );
        assert_eq!(cell.demand(now), 1, "a task that comes back counts once");
        assert_eq!(cell.deliver([later]), [wakeup], "its task is woken");
        assert_eq!(cell.demand(now), 0);
        assert_eq!(cell.turn(TaskId(1), 0, now, 1, None), Ok(Turn::At(later)));
        assert_eq!(cell.turn(TaskId(1), 0, later, 1, None), Ok(Turn::Go));
        assert_eq!(cell.booked(), 0);
    }

    #[test]
    fn when_redis_is_lost_every_waiting_task_is_let_go() {
        let now = Instant::now();
        let mut cell = cell(now);
        let wakeups: Vec<Wakeup> = (1..=2)
            .map(|task| match cell.turn(TaskId(task), 0, now, task, None) {
                Ok(Turn::Asked(wakeup)) => wakeup,
                other => panic!("{other:?}"),
            })
            .collect();
        let released = cell.release_waiting();
        assert_eq!(released.len(), 2);
        assert!(wakeups.iter().all(|w| released.contains(w)));
        assert_eq!(cell.demand(now), 0);
    }

    #[test]
    fn moments_go_to_higher_priorities_first_then_in_arrival_order() {
        let now = Instant::now();
        let ms = |n| now + Duration::from_millis(n);
        let mut cell = cell(now);
        for (task, priority) in [(1, 0), (2, 5), (3, 0)] {
            cell.turn(TaskId(task), priority, now, task, None).unwrap();
        }
        drop(cell.deliver([ms(100), ms(200)]));
        assert_eq!(cell.turn(TaskId(2), 5, now, 2, None), Ok(Turn::At(ms(100))));
        assert_eq!(cell.turn(TaskId(1), 0, now, 1, None), Ok(Turn::At(ms(200))));
        assert!(matches!(
            cell.turn(TaskId(3), 0, now, 3, None),
            Ok(Turn::Asked(_))
        ));
        assert_eq!(cell.demand(now), 1);
    }

    #[test]
    fn surplus_moments_are_spare_and_a_far_one_is_not_taken_past_max_wait() {
        let now = Instant::now();
        let far = now + Duration::from_secs(10);
        let mut cell = cell(now);
        drop(cell.deliver([far]));
        assert_eq!(cell.demand(now), 0);
        assert_eq!(
            cell.turn(TaskId(1), 0, now, 1, Some(Duration::from_secs(1))),
            Err(Duration::from_secs(10))
        );
        assert_eq!(cell.booked(), 1, "the moment stays for another task");
        assert_eq!(cell.turn(TaskId(2), 0, now, 2, None), Ok(Turn::At(far)));
    }

    #[test]
    fn a_task_that_waits_for_a_moment_longer_than_max_wait_is_refused() {
        let now = Instant::now();
        let max = Some(Duration::from_millis(100));
        let mut cell = cell(now);
        assert!(matches!(
            cell.turn(TaskId(1), 0, now, 1, max),
            Ok(Turn::Asked(_))
        ));
        let later = now + Duration::from_millis(101);
        assert_eq!(
            cell.turn(TaskId(1), 0, later, 1, max),
            Err(Duration::from_millis(100))
        );
        assert_eq!(cell.demand(later), 0, "it no longer waits");
    }

    #[test]
    fn tasks_that_stop_coming_back_are_no_longer_counted() {
        let now = Instant::now();
        let mut cell = cell(now);
        cell.turn(TaskId(1), 0, now, 1, None).unwrap();
        assert_eq!(cell.demand(now + STALE_WAITER), 0);
        assert!(cell.sweep(now + STALE_WAITER, STALE_WAITER));
    }

    #[test]
    fn callers_outside_a_pool_are_served_first_and_a_caller_that_left_passes_its_moment_on() {
        let now = Instant::now();
        let at = now + Duration::from_millis(5);
        let mut cell = cell(now);
        let (tx, rx) = oneshot::channel();
        let (left, left_rx) = oneshot::channel();
        drop(left_rx);
        cell.wait_direct(left);
        cell.wait_direct(tx);
        cell.turn(TaskId(1), 9, now, 1, None).unwrap();
        assert_eq!(cell.demand(now), 2, "the caller that left is not counted");
        drop(cell.deliver([at, at + Duration::from_millis(1)]));
        assert_eq!(rx.blocking_recv(), Ok(at));
        assert_eq!(
            cell.turn(TaskId(1), 9, now, 1, None),
            Ok(Turn::At(at + Duration::from_millis(1)))
        );
    }

    #[test]
    fn throttling_forgets_booked_moments() {
        let now = Instant::now();
        let mut cell = cell(now);
        cell.turn(TaskId(1), 0, now, 1, None).unwrap();
        drop(cell.deliver([now + Duration::from_secs(1), now + Duration::from_secs(2)]));
        cell.forget_moments();
        assert_eq!(cell.booked(), 0);
        assert!(matches!(
            cell.turn(TaskId(1), 0, now, 1, None),
            Ok(Turn::Asked(_))
        ));
    }
}
