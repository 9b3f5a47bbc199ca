//! The retry budget's live bucket: tokens paid for retries, refilled by successes and by
//! time (the floor), and the retries waiting for a token.
//!
//! A retry the bucket cannot pay is still scheduled (after its backoff), but the task *owes*
//! its cost: before its next attempt it pays, or it is parked — holding no slot — until the
//! floor would have paid for it, or until a success pays for it and wakes it. Waiting
//! retries are paid in the order they came; a fresh retry goes behind them.
//!
//! Successes (the hot path) do one atomic load when the bucket is full and nobody owes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::admission::Wakeup;
use crate::deadline;
use crate::retry::RetryBudget;
use crate::sync::{AtomicU64, Mutex, MutexGuard};
use crate::task::TaskId;

/// Tokens are kept in thousandths so the bucket is one atomic integer.
const MILLI: f64 = 1_000.0;

/// Whether a retry's cost was paid.
pub(super) enum Payment {
    /// Paid (or nothing was owed): the attempt may start.
    Paid,
    /// Not yet: park the task until then, or until the wakeup fires (a success paid).
    Wait(Instant, Wakeup),
}

#[derive(Debug)]
pub(crate) struct BudgetBucket {
    settings: RetryBudget,
    capacity_milli: u64,
    /// What a success pays in, in milli-tokens (worked out once, not per success).
    refill_milli: u64,
    milli_tokens: AtomicU64,
    /// How many tasks owe a retry's cost (read without the lock on every attempt start and
    /// every success).
    owing: AtomicU64,
    debts: Mutex<Debts>,
}

#[derive(Debug)]
struct Debts {
    /// When the floor last paid into the bucket.
    floor_paid_until: Instant,
    /// What each owing task owes, and its place in line once it waits.
    owed: HashMap<TaskId, Debt>,
    /// Owing tasks parked for a token, by place number: first come first paid. A map, not
    /// a scanned list, so that each payment costs O(log n) however many retries wait (a
    /// backend throttling nearly every attempt makes thousands wait).
    waiting: BTreeMap<u64, (TaskId, Wakeup)>,
    next_place: u64,
    /// Milli-tokens owed by everyone who ever joined the line, and by everyone who left it:
    /// what is owed ahead of a place (itself included) is `joined` at its joining minus
    /// `left`. Someone behind who leaves early makes that an underestimate, which only
    /// makes a waiting task check again sooner.
    joined_milli: u64,
    left_milli: u64,
}

#[derive(Debug, Clone, Copy)]
struct Debt {
    /// In milli-tokens.
    cost: u64,
    place: Option<Place>,
}

#[derive(Debug, Clone, Copy)]
struct Place {
    number: u64,
    /// `joined_milli` once this task joined: everything owed up to and including it.
    owed_through: u64,
    /// What it owed when it joined (what `left_milli` takes back when it leaves).
    cost: u64,
}

impl BudgetBucket {
    pub(crate) fn new(settings: RetryBudget, now: Instant) -> Self {
        let capacity_milli = (settings.capacity * MILLI) as u64;
        Self {
            refill_milli: (settings.success_refill * MILLI) as u64,
            settings,
            capacity_milli,
            milli_tokens: AtomicU64::new(capacity_milli),
            owing: AtomicU64::new(0),
            debts: Mutex::new(Debts {
                floor_paid_until: now,
                owed: HashMap::new(),
                waiting: BTreeMap::new(),
                next_place: 0,
                joined_milli: 0,
                left_milli: 0,
            }),
        }
    }

    pub(crate) fn fails_fast(&self) -> bool {
        self.settings.fail_fast
    }

    /// A cost above the capacity takes a full bucket (it could never be paid otherwise).
    fn cost_milli(&self, after_timeout: bool) -> u64 {
        ((self.settings.cost(after_timeout) * MILLI) as u64).min(self.capacity_milli)
    }

    fn lock(&self) -> MutexGuard<'_, Debts> {
        self.debts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the cost of one retry now; false if the bucket cannot pay it, or if retries
    /// are already waiting for tokens (a fresh retry goes behind them).
    pub(crate) fn try_withdraw(&self, after_timeout: bool, now: Instant, limit: usize) -> bool {
        if self.owing.load(Ordering::Acquire) > 0 {
            return false;
        }
        let cost = self.cost_milli(after_timeout);
        if self.withdraw(cost) {
            return true;
        }
        // Empty: let the floor pay what time has earned, then try once more.
        let mut debts = self.lock();
        self.pay_floor(&mut debts, now, limit);
        self.withdraw(cost)
    }

    fn withdraw(&self, cost: u64) -> bool {
        self.milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                tokens.checked_sub(cost)
            })
            .is_ok()
    }

    fn deposit(&self, milli: u64) {
        let capacity = self.capacity_milli;
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                Some(tokens.saturating_add(milli).min(capacity))
            });
    }

    /// The floor's earnings since it last paid.
    fn pay_floor(&self, debts: &mut Debts, now: Instant, limit: usize) {
        let elapsed = now.saturating_duration_since(debts.floor_paid_until);
        if elapsed.is_zero() {
            return;
        }
        debts.floor_paid_until = now;
        let earned = elapsed.as_secs_f64() * self.settings.floor_per_sec(limit) * MILLI;
        self.deposit(earned.min(u64::MAX as f64) as u64);
    }

    /// `task` owes the cost of the retry just scheduled for it.
    pub(crate) fn owe(&self, task: TaskId, after_timeout: bool) {
        let cost = self.cost_milli(after_timeout);
        let mut debts = self.lock();
        match debts.owed.get_mut(&task) {
            Some(debt) => debt.cost = cost,
            None => {
                debts.owed.insert(task, Debt { cost, place: None });
                self.owing.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Whether any task owes (if not, [`pay`](Self::pay) has nothing to do).
    pub(super) fn anyone_owes(&self) -> bool {
        self.owing.load(Ordering::Acquire) > 0
    }

    /// Before an attempt of `task`: pays what it owes, if it owes, or says how long to wait.
    /// Called without the engine's lock (the engine's lock may be held when this bucket's is
    /// taken, never the reverse).
    pub(super) fn pay(&self, task: TaskId, now: Instant, limit: usize) -> Payment {
        let mut debts = self.lock();
        let Some(&Debt { cost, place }) = debts.owed.get(&task) else {
            return Payment::Paid;
        };
        self.pay_floor(&mut debts, now, limit);
        // Waiting retries are paid in order: only the first in line (or one not in line,
        // if nobody is) may take what the bucket holds.
        let first = debts.waiting.first_key_value().map(|(_, (id, _))| *id);
        if (first.is_none() || first == Some(task)) && self.withdraw(cost) {
            self.settle(&mut debts, task);
            return Payment::Paid;
        }
        let wakeup = Wakeup::new();
        let place = match place.filter(|place| debts.waiting.contains_key(&place.number)) {
            Some(place) => {
                debts.waiting.insert(place.number, (task, wakeup.clone()));
                place
            }
            None => {
                let number = debts.next_place;
                debts.next_place += 1;
                debts.joined_milli = debts.joined_milli.saturating_add(cost);
                debts.waiting.insert(number, (task, wakeup.clone()));
                let place = Place {
                    number,
                    owed_through: debts.joined_milli,
                    cost,
                };
                if let Some(debt) = debts.owed.get_mut(&task) {
                    debt.place = Some(place);
                }
                place
            }
        };
        // The floor alone pays for everyone up to this task by then.
        let ahead = place.owed_through.saturating_sub(debts.left_milli);
        let short = ahead.saturating_sub(self.milli_tokens.load(Ordering::Acquire)) as f64;
        let per_sec = self.settings.floor_per_sec(limit) * MILLI;
        let wait = if per_sec > 0.0 {
            Duration::try_from_secs_f64(short / per_sec).unwrap_or(Duration::MAX)
        } else {
            Duration::MAX
        };
        // At least a millisecond: a task is not requeued in a loop on rounding.
        let until = deadline::after(now, wait.max(Duration::from_millis(1)));
        Payment::Wait(until, wakeup)
    }

    /// Marks `task`'s debt paid (or forgotten), and takes it out of the line.
    fn settle(&self, debts: &mut Debts, task: TaskId) {
        let Some(debt) = debts.owed.remove(&task) else {
            return;
        };
        self.owing.fetch_sub(1, Ordering::AcqRel);
        if let Some(place) = debt.place {
            debts.waiting.remove(&place.number);
            debts.left_milli = debts.left_milli.saturating_add(place.cost);
        }
    }

    /// A success: refills the bucket, and pays waiting retries in order while it can.
    /// Returns the wakeups to fire — by the caller, holding no lock (a wakeup queues its
    /// task, which takes the engine's lock).
    #[inline]
    pub(crate) fn refill(&self) -> Vec<Wakeup> {
        if self.owing.load(Ordering::Acquire) == 0 {
            // The usual case (nobody owes, the bucket full): two loads and no call.
            if self.milli_tokens.load(Ordering::Relaxed) < self.capacity_milli {
                self.deposit(self.refill_milli);
            }
            return Vec::new();
        }
        self.refill_owing()
    }

    /// [`refill`](Self::refill) while some task owes: pays the waiting retries in order.
    #[cold]
    fn refill_owing(&self) -> Vec<Wakeup> {
        let mut debts = self.lock();
        self.deposit(self.refill_milli);
        let mut paid = Vec::new();
        while let Some((&number, &(task, ref wakeup))) = debts.waiting.first_key_value() {
            let wakeup = wakeup.clone();
            if wakeup.is_abandoned() {
                // The task left while waiting (cancelled, stopped).
                self.settle(&mut debts, task);
            } else {
                let cost = debts.owed.get(&task).map_or(0, |debt| debt.cost);
                if !self.withdraw(cost) {
                    break;
                }
                self.settle(&mut debts, task);
                paid.push(wakeup);
            }
            // Settling takes the task out of the line; a place without a debt (which settling
            // never leaves) must not stop the loop either.
            debts.waiting.remove(&number);
        }
        paid
    }

    /// `task` ended: whatever it owed is forgotten.
    #[inline]
    pub(crate) fn forget(&self, task: TaskId) {
        if self.owing.load(Ordering::Acquire) > 0 {
            let mut debts = self.lock();
            self.settle(&mut debts, task);
        }
    }

    pub(crate) fn tokens(&self) -> f64 {
        self.milli_tokens.load(Ordering::Relaxed) as f64 / MILLI
    }
}

#[cfg(all(test, not(shuttle)))]
mod tests {
    use super::*;

    fn bucket(settings: RetryBudget) -> (BudgetBucket, Instant) {
        let now = Instant::now();
        (BudgetBucket::new(settings, now), now)
    }

    #[test]
    fn budget_pays_for_a_hundred_retries_then_refuses_until_refilled() {
        let (bucket, now) = bucket(RetryBudget {
            min_per_sec: 0.0,
            ..RetryBudget::default()
        });
        let paid = (0..1_000)
            .take_while(|_| bucket.try_withdraw(false, now, 10))
            .count();
        assert_eq!(paid, 100);
        assert!(!bucket.try_withdraw(false, now, 10));
        for _ in 0..5 {
            assert!(bucket.refill().is_empty());
        }
        assert!(bucket.try_withdraw(false, now, 10));
        assert!(!bucket.try_withdraw(false, now, 10));
        for _ in 0..10_000 {
            bucket.refill();
        }
        assert_eq!(bucket.tokens(), 500.0);
    }

    #[test]
    fn timeouts_cost_more() {
        let (bucket, now) = bucket(RetryBudget {
            capacity: 15.0,
            min_per_sec: 0.0,
            ..RetryBudget::default()
        });
        assert!(bucket.try_withdraw(true, now, 1));
        assert!(bucket.try_withdraw(false, now, 1));
        assert!(!bucket.try_withdraw(false, now, 1));
    }

    #[test]
    fn the_floor_pays_with_time_scaled_by_the_limit() {
        let (bucket, now) = bucket(RetryBudget {
            capacity: 5.0,
            ..RetryBudget::default()
        });
        assert!(bucket.try_withdraw(false, now, 10));
        assert!(!bucket.try_withdraw(false, now, 10));
        // 1 retry/s per slot × 10 slots: 0.1 s pays one retry (5 tokens).
        let later = now + Duration::from_millis(100);
        assert!(bucket.try_withdraw(false, later, 10));
        assert!(!bucket.try_withdraw(false, later, 10));
        // At limit 1 the same 0.1 s pays a tenth of one.
        let (small, now) = self::bucket(RetryBudget {
            capacity: 5.0,
            ..RetryBudget::default()
        });
        assert!(small.try_withdraw(false, now, 1));
        assert!(!small.try_withdraw(false, now + Duration::from_millis(100), 1));
        assert!(small.try_withdraw(false, now + Duration::from_millis(1_000), 1));
    }

    #[test]
    fn owing_tasks_wait_in_order_and_successes_pay_them() {
        let (bucket, now) = bucket(RetryBudget {
            capacity: 5.0,
            min_per_sec: 0.1,
            ..RetryBudget::default()
        });
        assert!(bucket.try_withdraw(false, now, 10));
        let (a, b) = (TaskId(1), TaskId(2));
        bucket.owe(a, false);
        bucket.owe(b, false);
        // Nothing in the bucket: both wait, b behind a (the floor pays 5 tokens/s: a in
        // 1 s, b in 2 s).
        let Payment::Wait(until_a, wake_a) = bucket.pay(a, now, 10) else {
            panic!("a waits");
        };
        let Payment::Wait(until_b, wake_b) = bucket.pay(b, now, 10) else {
            panic!("b waits");
        };
        assert_eq!(until_a - now, Duration::from_secs(1));
        assert_eq!(until_b - now, Duration::from_secs(2));
        // A fresh retry goes behind them.
        assert!(!bucket.try_withdraw(false, now, 10));
        // Five successes pay a, not b.
        let paid: usize = (0..5).map(|_| bucket.refill().len()).sum();
        assert_eq!(paid, 1);
        assert!(!wake_b.is_woken());
        drop(wake_a);
        assert!(matches!(bucket.pay(a, now, 10), Payment::Paid));
        // b, woken early by its timer, cannot jump ahead of nobody — it is first now, but
        // the bucket is empty; at its moment the floor has paid.
        assert!(matches!(bucket.pay(b, now, 10), Payment::Wait(..)));
        assert!(matches!(bucket.pay(b, until_b, 10), Payment::Paid));
        assert_eq!(bucket.owing.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_task_behind_one_that_left_waits_only_for_those_still_ahead() {
        let (bucket, now) = bucket(RetryBudget {
            capacity: 5.0,
            min_per_sec: 0.1,
            ..RetryBudget::default()
        });
        assert!(bucket.try_withdraw(false, now, 10));
        let (a, b, c) = (TaskId(1), TaskId(2), TaskId(3));
        for task in [a, b, c] {
            bucket.owe(task, false);
        }
        let waits: Vec<Duration> = [a, b, c]
            .map(|task| match bucket.pay(task, now, 10) {
                Payment::Wait(until, _) => until - now,
                Payment::Paid => panic!("{task} paid from an empty bucket"),
            })
            .into();
        assert_eq!(waits, [1, 2, 3].map(Duration::from_secs));
        // b leaves the middle of the line: c, checking again, waits for a only.
        bucket.forget(b);
        let Payment::Wait(until_c, _) = bucket.pay(c, now, 10) else {
            panic!("c waits");
        };
        assert_eq!(until_c - now, Duration::from_secs(2));
        // Ten successes pay a then c, in that order.
        let paid: usize = (0..10).map(|_| bucket.refill().len()).sum();
        assert_eq!(paid, 2);
        assert_eq!(bucket.owing.load(Ordering::Acquire), 0);
    }

    #[test]
    fn thousands_of_waiting_retries_are_paid_in_the_order_they_came() {
        let (bucket, now) = bucket(RetryBudget {
            capacity: 5.0,
            min_per_sec: 0.0,
            ..RetryBudget::default()
        });
        assert!(bucket.try_withdraw(false, now, 1));
        let tasks: Vec<TaskId> = (0..20_000).map(TaskId).collect();
        let mut wakeups = Vec::new();
        for &task in &tasks {
            bucket.owe(task, false);
            let Payment::Wait(_, wakeup) = bucket.pay(task, now, 1) else {
                panic!("{task} paid from an empty bucket");
            };
            wakeups.push(wakeup);
        }
        // Every other task leaves; then five successes pay one retry (1 token each, 5 a retry).
        for task in tasks.iter().skip(1).step_by(2) {
            bucket.forget(*task);
        }
        for (n, task) in tasks.iter().step_by(2).enumerate() {
            let paid: Vec<Wakeup> = (0..5).flat_map(|_| bucket.refill()).collect();
            assert_eq!(paid.len(), 1, "the {n}th run of successes pays one retry");
            paid[0].wake();
            assert!(wakeups[task.0 as usize].is_woken(), "{task} paid in turn");
        }
        assert_eq!(bucket.owing.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_task_that_leaves_owes_nothing() {
        let (bucket, now) = bucket(RetryBudget {
            capacity: 5.0,
            min_per_sec: 0.0,
            ..RetryBudget::default()
        });
        assert!(bucket.try_withdraw(false, now, 1));
        bucket.owe(TaskId(7), false);
        let Payment::Wait(until, _) = bucket.pay(TaskId(7), now, 1) else {
            panic!("waits");
        };
        // No floor: only a success can pay.
        assert!(until - now > Duration::from_secs(3600));
        bucket.forget(TaskId(7));
        assert_eq!(bucket.owing.load(Ordering::Acquire), 0);
        // The next successes refill the bucket for fresh retries, not for the one that left.
        for _ in 0..5 {
            assert!(bucket.refill().is_empty());
        }
        assert!(bucket.try_withdraw(false, now, 1));
    }
}
