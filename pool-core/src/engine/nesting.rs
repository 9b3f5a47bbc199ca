//! Nested work: a task that enqueues into its own pool while its attempt runs — directly, or
//! through a client sharing the pool — and awaits the result. Queued behind the limit, such
//! work would wait for a slot its own parent holds: with every slot held by parents, nothing
//! would ever run. So the parent lends its slot.
//!
//! The rule, precisely:
//! - While the engine polls an attempt (and while it calls the task's closure to make the
//!   attempt's future), it marks the thread with the pool and the task. A task enqueued into
//!   that same pool from under the mark is that task's *child*; anything else (another pool,
//!   another thread, a future spawned onto the runtime, code running after the poll
//!   returned) is not.
//! - A running parent lends its slot to one child at a time: a child starts on the loan at
//!   once if the loan is free — past the limit, the pause and its tenant's share, as the slot
//!   is already its parent's. Otherwise it is queued as any task is, and takes whichever
//!   comes first: an ordinary free slot, or the loan when the child before it gives it back.
//! - The loan ends with the parent's attempt. A child still running on it then keeps the
//!   slot (it becomes an ordinary one, or passes to the grandparent's loan), so the work a
//!   parent started never runs past the limit after the parent is gone; its children still
//!   queued become ordinary queued tasks.
//!
//! So a parent and its line of descendants hold one slot between them at any time (a chain
//! of `n` levels runs `n` attempts, each but the deepest awaiting the next), and
//! [`Stats::active`](crate::Stats::active) counts every running attempt, loans included:
//! with parents awaiting children it can exceed the limit by the number of loans. Work a
//! parent fans out beyond its loan (a batch of a thousand calls) still waits for ordinary
//! slots: the mark never lets unrelated work, nor a parent's fan-out, bypass the limit.
//!
//! What the mark cannot see: a child enqueued from a future the parent spawned onto the
//! runtime (`tokio::spawn`) rather than polled inline is enqueued from an unmarked thread and
//! queues as ordinary work; a parent that awaits such a spawned future while every slot is
//! held by such parents can still deadlock. Poll nested work inline (`.await`, `join_all`,
//! `buffer_unordered`, `select`) — or use a second pool — where it must not wait.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

use crate::queue::QueueKey;
use crate::task::TaskId;

use super::Engine;

/// The engine whose attempt this thread is polling (its address; 0 if none), and the task.
type Mark = (usize, u64);

// Under the model checker each of its tasks has its own: its threads are not the OS's.
#[cfg(not(shuttle))]
std::thread_local! {
    static POLLING: Cell<Mark> = const { Cell::new((0, 0)) };
}

#[cfg(shuttle)]
shuttle::thread_local! {
    static POLLING: Cell<Mark> = const { Cell::new((0, 0)) };
}

fn address(engine: &Engine) -> usize {
    engine as *const Engine as usize
}

/// Marks this thread as polling an attempt of `task` in `engine` until dropped (also on
/// unwind); the mark it replaced comes back then.
pub(super) struct Polling {
    previous: Mark,
}

impl Polling {
    pub(super) fn enter(engine: &Engine, task: TaskId) -> Self {
        let previous = POLLING.with(|polling| polling.replace((address(engine), task.0)));
        Self { previous }
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.with(|polling| polling.set(self.previous));
    }
}

/// The task of `engine` whose attempt this thread is polling: the parent of whatever it
/// enqueues into `engine` now.
pub(super) fn parent_in(engine: &Engine) -> Option<TaskId> {
    let (polled, task) = POLLING.with(Cell::get);
    (polled == address(engine)).then_some(TaskId(task))
}

/// The loans of one pool's running parents (kept under the engine's lock).
#[derive(Debug, Default)]
pub(super) struct Loans {
    /// Tasks whose running attempt has enqueued children, and their loan.
    lenders: HashMap<TaskId, Loan>,
    /// Children of running parents, and their parent.
    children: HashMap<TaskId, TaskId>,
    /// Children whose attempt runs on a loan, and whose loan it is.
    borrowing: HashMap<TaskId, TaskId>,
}

#[derive(Debug, Default)]
struct Loan {
    /// The child running on it.
    borrower: Option<TaskId>,
    /// Children queued while it was taken, in order (a key whose task has left the queue
    /// meanwhile is skipped).
    waiting: VecDeque<QueueKey>,
    /// Every child enqueued during the attempt, to forget them when it ends.
    children: Vec<TaskId>,
}

/// What the end of an attempt does to the slots.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SlotEnd {
    /// It held an ordinary slot, now free.
    Freed,
    /// It held an ordinary slot, and the child running on its loan keeps it.
    Inherited,
    /// It ran on a loan, and its own borrower takes that loan over.
    LoanPassed,
    /// It ran on this parent's loan, now free.
    LoanReturned(TaskId),
}

impl Loans {
    pub(super) fn is_empty(&self) -> bool {
        self.lenders.is_empty()
    }

    /// `child` was enqueued from an attempt of `parent`.
    pub(super) fn adopt(&mut self, parent: TaskId, child: TaskId) {
        self.lenders.entry(parent).or_default().children.push(child);
        self.children.insert(child, parent);
    }

    /// The running parent of `task`, if it is a child of one.
    pub(super) fn parent_of(&self, task: TaskId) -> Option<TaskId> {
        self.children.get(&task).copied()
    }

    /// Lends `parent`'s slot to `child` if it is free; says whether it did.
    pub(super) fn lend(&mut self, parent: TaskId, child: TaskId) -> bool {
        let Some(loan) = self.lenders.get_mut(&parent) else {
            return false;
        };
        if loan.borrower.is_some() {
            return false;
        }
        loan.borrower = Some(child);
        self.borrowing.insert(child, parent);
        true
    }

    /// `child` queued at `key` waits for `parent`'s loan (or an ordinary slot).
    pub(super) fn wait(&mut self, parent: TaskId, key: QueueKey) {
        if let Some(loan) = self.lenders.get_mut(&parent) {
            loan.waiting.push_back(key);
        }
    }

    /// The next child queued for `parent`'s free loan.
    pub(super) fn next_waiting(&mut self, parent: TaskId) -> Option<QueueKey> {
        self.lenders.get_mut(&parent)?.waiting.pop_front()
    }

    /// The attempt of `task` ended: its loan ends, and the slot it held is freed, inherited
    /// or given back.
    pub(super) fn attempt_ended(&mut self, task: TaskId) -> SlotEnd {
        let lent_to = self.lenders.remove(&task).and_then(|loan| {
            for child in &loan.children {
                self.children.remove(child);
            }
            loan.borrower
        });
        match (self.borrowing.remove(&task), lent_to) {
            (None, None) => SlotEnd::Freed,
            (None, Some(borrower)) => {
                self.borrowing.remove(&borrower);
                SlotEnd::Inherited
            }
            (Some(parent), Some(borrower)) => {
                self.borrowing.insert(borrower, parent);
                if let Some(loan) = self.lenders.get_mut(&parent) {
                    loan.borrower = Some(borrower);
                }
                SlotEnd::LoanPassed
            }
            (Some(parent), None) => {
                if let Some(loan) = self.lenders.get_mut(&parent) {
                    loan.borrower = None;
                }
                SlotEnd::LoanReturned(parent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: TaskId = TaskId(1);
    const C: TaskId = TaskId(2);
    const G: TaskId = TaskId(3);

    #[test]
    fn a_parent_lends_its_slot_to_one_child_at_a_time() {
        let mut loans = Loans::default();
        loans.adopt(P, C);
        loans.adopt(P, G);
        assert_eq!(loans.parent_of(C), Some(P));
        assert!(loans.lend(P, C));
        assert!(!loans.lend(P, G), "the loan is taken");
        assert_eq!(loans.attempt_ended(C), SlotEnd::LoanReturned(P));
        assert!(loans.lend(P, G));
        assert_eq!(loans.attempt_ended(G), SlotEnd::LoanReturned(P));
        assert_eq!(loans.attempt_ended(P), SlotEnd::Freed);
        assert!(loans.is_empty());
        assert_eq!(
            loans.parent_of(C),
            None,
            "children are forgotten with the loan"
        );
    }

    #[test]
    fn work_on_a_loan_keeps_the_slot_when_its_parent_ends_first() {
        let mut loans = Loans::default();
        loans.adopt(P, C);
        assert!(loans.lend(P, C));
        loans.adopt(C, G);
        assert!(loans.lend(C, G));
        // C ends before G: G runs on P's loan now.
        assert_eq!(loans.attempt_ended(C), SlotEnd::LoanPassed);
        // P ends before G: G keeps P's ordinary slot.
        assert_eq!(loans.attempt_ended(P), SlotEnd::Inherited);
        assert_eq!(loans.attempt_ended(G), SlotEnd::Freed);
        assert!(loans.is_empty());
    }
}
