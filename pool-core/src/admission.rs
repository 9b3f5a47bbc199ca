//! The admission seam: what an attempt must obtain, besides a slot, before it runs.
//!
//! A pool's own limit is local; admission policies add what a local slot cannot express:
//! a rate limit, a circuit breaker that fails fast while a backend is down, or a permit of a
//! limit shared by many processes (e.g. on Redis). Each policy is asked after the task has a
//! slot and before each attempt; it may admit at once, make the attempt wait, or reject the
//! task. The permit it returns is held until the attempt ends; then the policy learns how the
//! attempt ended ([`Admission::complete`], as tower's retry `Policy` sees the `Result` and
//! Vector's response future adjusts its controller) and the permit is dropped (which is
//! where a global permit is released). A policy is one piece: what it decides before an
//! attempt and what it learns after meet in its permit, with no observer beside it. A policy
//! that learns nothing says so once ([`Admission::wants_complete`]), and its attempts skip
//! the call.
//!
//! A wait in [`Admission::acquire`] holds the task's slot. A policy that knows *when* a task
//! may go (a rate limit) says so first, in [`Admission::precheck`]: the pool then gives the
//! slot back and parks the task, holding no slot, until that moment — so a key far over its
//! rate cannot fill the pool with waiters and hold up everyone else. A policy that does not
//! know when, but will be told (a permit another process holds, a booking on its way from a
//! server), parks the task until it fires a [`Wakeup`], with a moment to look again anyway.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::executor::BoxFuture;
use crate::observer::TaskInfo;
use crate::outcome::AttemptResult;

/// Decides whether, and when, an attempt may start. See the [module docs](self).
pub trait Admission: Send + Sync + fmt::Debug + 'static {
    /// Resolves when the attempt may start (with a permit held for the attempt's duration),
    /// or with a [`Rejection`] that resolves the task with
    /// [`TaskError::Rejected`](crate::TaskError::Rejected).
    ///
    /// While this waits, the task holds its slot; the pool's `stop_now` and the task's
    /// cancellation token interrupt the wait.
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>>;

    /// [`acquire`](Self::acquire) without a future, when the policy can answer at once: a
    /// permit or a rejection, or `None` to be asked through `acquire` as usual. The pool asks
    /// this first, before each attempt (after every [`precheck`](Self::precheck)), and calls
    /// `acquire` only on `None`, so an answer here must be the one `acquire` would give
    /// without waiting. It saves the future's allocation on the hot path of a policy that
    /// mostly admits at once (a rate limit far above the load). It runs on the pool's
    /// worker: it must be quick and must not block. Default: `None`.
    fn try_acquire(&self, task: &TaskInfo) -> Option<Result<AdmissionPermit, Rejection>> {
        let _ = task;
        None
    }

    /// The [`precheck`](Self::precheck) and [`try_acquire`](Self::try_acquire) in one call,
    /// asked instead of both by a pool that has this one admission policy (nothing runs
    /// between the two then): `Some(Ok(permit))` when the precheck would let the task
    /// proceed and a permit is there at once, `Some(Err(rejection))` to refuse it, `None` to
    /// be asked the usual way (precheck, then `try_acquire` or `acquire`). A rate limiter far
    /// above its load answers with one lock and one clock read instead of two. It runs on
    /// the pool's worker: it must be quick and must not block. Default: `None`.
    ///
    /// `now` is the pool's clock (its executor's) as the task left the queue, when the pool
    /// read it then — a queue that weighs priorities against waits does, and so does a pool
    /// whose observers want times: a policy that needs the time takes it from here instead
    /// of reading the clock a second time, and reads its own when it is `None`. The moment
    /// may lie a few microseconds in the past (it was read before the runner took the
    /// pool's lock); a policy deciding by it decides as if the task had come that much
    /// earlier, as the pool itself does when it checks a precheck's moment against it.
    fn try_admit(
        &self,
        task: &TaskInfo,
        now: Option<Instant>,
    ) -> Option<Result<AdmissionPermit, Rejection>> {
        let _ = (task, now);
        None
    }

    /// Asked before [`acquire`](Self::acquire), each time the task takes a slot. With
    /// [`Precheck::ParkUntil`] the pool gives the slot back and parks the task until then (it
    /// counts in [`Stats::deferred`](crate::Stats::deferred)); the policy should set that
    /// moment aside for the task, so that `acquire` admits it at once when it comes back.
    /// With [`Precheck::ParkUntilWoken`] the task is parked the same way until the policy
    /// fires the [`Wakeup`] it gave, or until the moment, whichever comes first; then it
    /// queues again and is asked again.
    /// Policies are asked in the order they were added; the first that parks or rejects
    /// decides. It runs on the pool's worker: it must be quick and must not block.
    /// Default: [`Precheck::Proceed`].
    fn precheck(&self, task: &TaskInfo) -> Precheck {
        let _ = task;
        Precheck::Proceed
    }

    /// The attempt this policy admitted with `permit` has ended with `result`: a circuit
    /// breaker counts it, an adaptive rate limit backs off on
    /// [overload](AttemptResult::is_overload). The permit carries whatever the policy needs
    /// to know which attempt it was (a probe, a key); take it back with
    /// [`AdmissionPermit::downcast`]. The permit is dropped when this returns. Default: drops
    /// it.
    ///
    /// Called once for every permit granted (unless [`wants_complete`](Self::wants_complete)
    /// says not to): right after the attempt ends and before the pool decides what follows
    /// it, or with [`AttemptResult::Rejected`] (or `Cancelled`) when a policy asked after this
    /// one refused the attempt (or it was cancelled) before it ran. A permit whose runner the
    /// executor drops mid-attempt (runtime shutdown) is dropped without a call. It runs on
    /// the pool's worker, outside the pool's lock: it must be quick and must not block.
    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        let _ = result;
        drop(permit);
    }

    /// Whether the pool calls [`complete`](Self::complete) after the attempts this policy
    /// admits. Asked once, when the pool is built: the answer must not change afterwards.
    /// Default: `true`.
    ///
    /// Answer `false` when `complete` would do nothing but drop the permit: a fixed rate
    /// limit (its token is spent on admission), a concurrency limit whose permit gives its
    /// place back when dropped. The pool then skips the call on every attempt, with the
    /// panic guard around it, and does not keep an [empty](AdmissionPermit::empty) permit at
    /// all (what a policy far from its limit spends per attempt is mostly this). A permit
    /// that holds a guard is still held while the attempt runs and dropped when it ends,
    /// exactly when `complete` would have dropped it, so nothing is released early or late.
    ///
    /// Getting it wrong: `false` from a policy that learns in `complete` (a circuit breaker
    /// counting failures, an adaptive rate limit backing off on throttling) silently turns
    /// the learning off — `complete` is never called, though the permits are still released
    /// on time; `true` from a policy that learns nothing only costs the call. When unsure,
    /// keep the default. A policy that wraps others answers `true` if any of them does.
    fn wants_complete(&self) -> bool {
        true
    }
}

/// What [`Admission::precheck`] says of a task about to take a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precheck {
    /// Go on to [`Admission::acquire`].
    Proceed,
    /// Give the slot back and queue the task again at this moment.
    ParkUntil(Instant),
    /// Give the slot back and queue the task again when the [`Wakeup`] fires or at this
    /// moment, whichever comes first (the moment is a safety net: a policy that loses track
    /// of a task still sees it again). A moment already passed queues it again at once.
    ParkUntilWoken(Instant, Wakeup),
    /// Resolve the task with [`TaskError::Rejected`](crate::TaskError::Rejected).
    Reject(Rejection),
}

/// A one-shot signal from an admission policy to the pool: "the task you parked for me may
/// look again". The policy creates it, hands a clone to the pool in
/// [`Precheck::ParkUntilWoken`], and calls [`wake`](Self::wake) from any thread when the
/// task's turn has come (its permit was granted, its booking arrived). Waking before the pool
/// has parked the task is not lost: the task is then queued again as soon as it is parked.
/// Waking a task that already left (woken, due, cancelled, stopped) does nothing.
///
/// The pool says when a task it parked with this wakeup will not come back for it: when the
/// task is cancelled or the pool stops while it is parked, the wakeup is
/// [abandoned](Self::is_abandoned), so a policy that set something aside for the task (a
/// permit) can give it to another at once instead of waiting for the task in vain.
///
/// ```
/// use pool_core::Wakeup;
/// let wakeup = Wakeup::new();
/// assert!(!wakeup.is_woken());
/// wakeup.clone().wake();
/// assert!(wakeup.is_woken());
/// assert!(!wakeup.is_abandoned());
/// ```
#[derive(Clone)]
pub struct Wakeup {
    inner: Arc<crate::sync::Mutex<WakeState>>,
}

enum WakeState {
    Waiting,
    /// The pool parked the task: this queues it again.
    Armed(Box<dyn FnOnce() + Send>),
    Woken,
    /// The task left while parked (cancelled, stopped): it will not come back for it.
    Abandoned,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self::new()
    }
}

impl Wakeup {
    /// A signal not fired yet.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(crate::sync::Mutex::new(WakeState::Waiting)),
        }
    }

    /// Fires it: the parked task is queued again (at once if it is parked already, else as
    /// soon as it is). Later calls do nothing.
    pub fn wake(&self) {
        let mut state = self.lock();
        if matches!(*state, WakeState::Abandoned) {
            return;
        }
        let armed = std::mem::replace(&mut *state, WakeState::Woken);
        drop(state);
        if let WakeState::Armed(unpark) = armed {
            // Outside the lock: the pool takes its own.
            unpark();
        }
    }

    /// Whether it has fired (and the task was not abandoned since).
    pub fn is_woken(&self) -> bool {
        matches!(*self.lock(), WakeState::Woken)
    }

    /// Whether the task parked with it left without coming back for it (cancelled, or the
    /// pool stopped, while parked). Final: a wakeup abandoned stays so.
    pub fn is_abandoned(&self) -> bool {
        matches!(*self.lock(), WakeState::Abandoned)
    }

    /// For the pool: runs `unpark` when the signal fires, at once if it has fired already;
    /// never if the task was abandoned meanwhile.
    pub(crate) fn on_wake(&self, unpark: impl FnOnce() + Send + 'static) {
        let mut state = self.lock();
        match &*state {
            WakeState::Woken => {
                drop(state);
                unpark();
            }
            WakeState::Abandoned => {}
            WakeState::Waiting | WakeState::Armed(_) => {
                *state = WakeState::Armed(Box::new(unpark));
            }
        }
    }

    /// For the pool: the task parked with it left for good.
    pub(crate) fn abandon(&self) {
        let armed = std::mem::replace(&mut *self.lock(), WakeState::Abandoned);
        // The unpark closure is dropped outside the lock.
        drop(armed);
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, WakeState> {
        // Nothing user-supplied runs under this lock.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.lock() {
            WakeState::Waiting => "waiting",
            WakeState::Armed(_) => "armed",
            WakeState::Woken => "woken",
            WakeState::Abandoned => "abandoned",
        };
        f.debug_tuple("Wakeup").field(&state).finish()
    }
}

/// Two wakeups are equal if they are clones of one signal.
impl PartialEq for Wakeup {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Wakeup {}

/// Held while an attempt runs; dropping it releases whatever the policy granted.
#[must_use = "dropping the permit releases it"]
pub struct AdmissionPermit {
    held: Option<Box<dyn Any + Send>>,
}

impl AdmissionPermit {
    /// A permit that holds nothing (e.g. a rate limiter's: the token is spent on admission).
    pub fn empty() -> Self {
        Self { held: None }
    }

    /// Whether it holds nothing: dropping it does nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_none()
    }

    /// A permit that keeps `guard` alive until the attempt ends, then drops it (after
    /// [`Admission::complete`] has seen it, if the policy looks).
    pub fn holding(guard: impl Any + Send) -> Self {
        Self {
            held: Some(Box::new(guard)),
        }
    }

    /// The guard this permit holds, if it is a `T` (what a policy's
    /// [`Admission::complete`] uses to learn which of its attempts ended); the permit itself
    /// otherwise.
    ///
    /// ```
    /// use pool_core::AdmissionPermit;
    /// let permit = AdmissionPermit::holding("prefix-a");
    /// let permit = permit.downcast::<u32>().unwrap_err();
    /// assert_eq!(permit.downcast::<&str>().ok(), Some("prefix-a"));
    /// assert!(AdmissionPermit::empty().downcast::<&str>().is_err());
    /// ```
    pub fn downcast<T: Any>(self) -> Result<T, Self> {
        match self.held {
            Some(held) => match held.downcast::<T>() {
                Ok(guard) => Ok(*guard),
                Err(held) => Err(Self { held: Some(held) }),
            },
            None => Err(self),
        }
    }
}

impl fmt::Debug for AdmissionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("holds", &self.held.is_some())
            .finish()
    }
}

/// Why an admission policy refused a task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open: the backend is failing, calls fail fast.
    CircuitOpen,
    /// A rate limit cannot admit the task (e.g. the wait would exceed what is allowed).
    RateLimited,
    /// The source of permits is unreachable and the policy is configured to fail closed.
    Unavailable,
    /// Another reason, named by the policy (a fixed name or one built at run time:
    /// `RejectionKind::Other("queue full".into())`, `RejectionKind::Other(name.into())`).
    Other(Cow<'static, str>),
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectionKind::CircuitOpen => f.write_str("circuit open"),
            RejectionKind::RateLimited => f.write_str("rate limited"),
            RejectionKind::Unavailable => f.write_str("permits unavailable"),
            RejectionKind::Other(name) => f.write_str(name),
        }
    }
}

/// A refusal: its kind, a message for people, and when trying again may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Rejection {
    /// What kind of refusal.
    pub kind: RejectionKind,
    /// Details (never secrets).
    pub message: String,
    /// When a new attempt might be admitted, if the policy knows.
    pub retry_after: Option<Duration>,
}

impl Rejection {
    /// A rejection of this kind.
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a hint of when to try again.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}
