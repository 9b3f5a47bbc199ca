//! One rate limit per key: per S3 prefix, per tenant, per endpoint — whatever a key function
//! reads from a task's labels. Each key has its own GCRA schedule and, if adaptive, its own
//! AIMD rate, so a throttled prefix slows down alone. Each task is booked its moment; in a
//! pool, a task whose moment has not come is parked without a slot until then.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::aimd::{Aimd, AimdRate};
use super::bookings::Bookings;
use super::gcra::{Pace, Schedule};
use super::rate_limit::RateLimit;
use crate::admission::{Admission, AdmissionPermit, Precheck, Rejection, RejectionKind};
use crate::deadline;
use crate::error::ConfigError;
use crate::executor::{BoxFuture, Executor};
use crate::observer::TaskInfo;
use crate::outcome::AttemptResult;

// `Arc`, not `Box`: a builder is `Clone`, its clones sharing the closures.
type KeyFn<K> = Arc<dyn Fn(&TaskInfo) -> Option<K> + Send + Sync>;
type LimitFn<K> = Arc<dyn Fn(&K) -> RateLimit + Send + Sync>;

/// A rate limit per key, as an [`Admission`] policy that waits; with
/// [`adaptive`](KeyedRateLimiterBuilder::adaptive) it lowers a key's rate when an attempt it
/// admitted is [throttled](AttemptResult::is_throttled) ([`Admission::complete`]).
///
/// The key function reads a task's [`TaskInfo`] (its metadata labels); `None` means "not
/// limited". The limit function gives each key its [`RateLimit`], asked once when the key is
/// first seen. Keys idle for [`forget_idle_after`](KeyedRateLimiterBuilder::forget_idle_after)
/// (and not backing off) are dropped, so memory follows the keys in use.
///
/// Each task that cannot go at once is booked the earliest moment its key's limit allows, in
/// the order tasks reach the limiter; a later task of higher priority takes over the earliest
/// moment booked for one of lower priority, which books again when it comes back. In a pool,
/// a task whose moment is later gives its slot back and is parked until then
/// ([`Admission::precheck`]): a key far over its rate holds no slots, and other keys' tasks
/// run meanwhile. (Called outside a pool, [`Admission::acquire`] waits for the moment.) A
/// moment booked for a task that is cancelled while parked goes unused.
/// When an adaptive key is throttled, moments already booked are dropped and their tasks
/// booked again at the lower rate when they come back.
///
/// Cheap to clone: clones share the limits.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pool_core::policy::{KeyedRateLimiter, RateLimit};
/// use pool_core::{Executor, Metadata, Pool, SimExecutor, TaskInfo, TaskOptions, Transient};
///
/// let sim = SimExecutor::new();
/// let executor: Arc<dyn Executor> = Arc::new(sim.clone());
/// let per_tenant = KeyedRateLimiter::builder(
///     executor.clone(),
///     |task: &TaskInfo| task.metadata.get("tenant").map(str::to_owned),
///     |_tenant: &String| RateLimit::new(5.0, 1).unwrap(),
/// )
/// .build()
/// .unwrap();
/// let pool = Pool::builder().executor_arc(executor).admission(per_tenant).build().unwrap();
/// let start = sim.now();
/// sim.block_on(async {
///     let handles: Vec<_> = ["a", "b"]
///         .iter()
///         .flat_map(|tenant| std::iter::repeat(*tenant).take(6))
///         .map(|tenant| {
///             let labels = Metadata::new().with("tenant", tenant);
///             pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, TaskOptions::new().metadata(labels))
///         })
///         .collect();
///     for handle in handles {
///         handle.await.unwrap();
///     }
/// });
/// // 6 operations per tenant at 5/s each, the tenants side by side: 1 s, not 2.
/// assert_eq!(sim.now() - start, Duration::from_secs(1));
/// ```
pub struct KeyedRateLimiter<K> {
    shared: Arc<Shared<K, ByKey<K>>>,
    key_of: KeyFn<K>,
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            key_of: Arc::clone(&self.key_of),
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cells = self.shared.lock();
        f.debug_struct("KeyedRateLimiter")
            .field("keys", &cells.store.len())
            .field("booked", &cells.store.booked())
            .field("aimd", &self.shared.aimd)
            .field("max_wait", &self.shared.max_wait)
            .finish_non_exhaustive()
    }
}

/// A limiter's settings and cells, wherever it keeps them ([`Store`]): one per key
/// ([`KeyedRateLimiter`]) or one for every task ([`RateLimiter`](super::RateLimiter)).
///
/// The cells' lock sits on cache lines of its own: every admission writes it, from whichever
/// worker runs the task, and the settings beside it, read by every admission too, would be
/// lost from each reader's cache at every write.
pub(super) struct Shared<K, S> {
    executor: Arc<dyn Executor>,
    limit_of: LimitFn<K>,
    aimd: Option<Aimd>,
    max_wait: Option<Duration>,
    forget_idle_after: Duration,
    cells: CachePadded<Mutex<Cells<S>>>,
}

/// `repr(C)`: the cells first, right after the lock (see [`RateCell`]).
#[repr(C)]
struct Cells<S> {
    store: S,
    next_sweep: Instant,
}

/// Where a limiter keeps its cells.
pub(super) trait Store: Send + 'static {
    type Key: Clone + Send + Sync + 'static;

    /// Runs `f` on `key`'s cell, if it has one.
    fn with_existing<R>(
        &mut self,
        key: &Self::Key,
        f: impl FnOnce(&mut RateCell) -> R,
    ) -> Option<R>;

    /// Runs `f` on `key`'s cell, made by `new` if it has none.
    fn with_cell<R>(
        &mut self,
        key: &Self::Key,
        new: impl FnOnce() -> RateCell,
        f: impl FnOnce(&mut RateCell) -> R,
    ) -> R;

    /// Keeps the cells `keep` says to keep, and forgets the others.
    fn retain(&mut self, keep: impl FnMut(&mut RateCell) -> bool);
}

/// A cell per key. foldhash, not SipHash: looked up on every admission, and its seed is
/// random.
pub(super) struct ByKey<K>(HashMap<K, RateCell, foldhash::fast::RandomState>);

impl<K> Default for ByKey<K> {
    fn default() -> Self {
        Self(HashMap::default())
    }
}

impl<K> ByKey<K> {
    /// How many keys have a cell.
    fn len(&self) -> usize {
        self.0.len()
    }

    /// Moments booked ahead, over all keys.
    fn booked(&self) -> usize {
        self.0.values().map(|cell| cell.booked.len()).sum()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Store for ByKey<K> {
    type Key = K;

    fn with_existing<R>(&mut self, key: &K, f: impl FnOnce(&mut RateCell) -> R) -> Option<R> {
        self.0.get_mut(key).map(f)
    }

    fn with_cell<R>(
        &mut self,
        key: &K,
        new: impl FnOnce() -> RateCell,
        f: impl FnOnce(&mut RateCell) -> R,
    ) -> R {
        // Looked up first: the key is cloned only for a new cell.
        if let Some(cell) = self.0.get_mut(key) {
            return f(cell);
        }
        f(self.0.entry(key.clone()).or_insert_with(new))
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut RateCell) -> bool) {
        self.0.retain(|_, cell| keep(cell));
    }
}

/// One cell for every task: no key to work out, no map to look it up in.
#[derive(Default)]
pub(super) struct One(Option<RateCell>);

impl Store for One {
    type Key = ();

    fn with_existing<R>(&mut self, _: &(), f: impl FnOnce(&mut RateCell) -> R) -> Option<R> {
        self.0.as_mut().map(f)
    }

    fn with_cell<R>(
        &mut self,
        _: &(),
        new: impl FnOnce() -> RateCell,
        f: impl FnOnce(&mut RateCell) -> R,
    ) -> R {
        f(self.0.get_or_insert_with(new))
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut RateCell) -> bool) {
        if self.0.as_mut().is_some_and(|cell| !keep(cell)) {
            self.0 = None;
        }
    }
}

/// One key's limit: its schedule, its adaptive rate, and the moments booked for tasks that
/// have not taken them yet.
///
/// `repr(C)`, what an admission writes first: a single cell's schedule and last use then
/// share the cache line of the lock in front of them, the one line that moves between the
/// workers admitting tasks; the rest is only read while nothing is booked or throttled, and
/// stays in every worker's cache.
#[repr(C)]
pub(super) struct RateCell {
    schedule: Schedule,
    last_used: Instant,
    /// The pace at a rate, kept while the rate holds (working it out takes a division and a
    /// float-to-`Duration` conversion, on every admission otherwise).
    pace: (f64, Pace),
    aimd: Option<AimdRate>,
    limit: RateLimit,
    booked: Bookings,
}

impl RateCell {
    fn new(limit: RateLimit, aimd: Option<Aimd>, now: Instant) -> Self {
        let rate = limit.per_second();
        Self {
            limit,
            pace: (rate, Self::pace_at(limit, rate)),
            schedule: Schedule::default(),
            booked: Bookings::new(now),
            aimd: aimd.map(|aimd| AimdRate::new(aimd, limit.per_second(), now)),
            last_used: now,
        }
    }

    fn current_rate(&self) -> f64 {
        self.aimd
            .as_ref()
            .map_or(self.limit.per_second(), AimdRate::current)
    }

    fn pace(&mut self) -> Pace {
        let Some(aimd) = &self.aimd else {
            // A fixed rate: the pace worked out when the cell was made.
            return self.pace.1;
        };
        let rate = aimd.current();
        if self.pace.0 != rate {
            self.pace = (rate, Self::pace_at(self.limit, rate));
        }
        self.pace.1
    }

    fn pace_at(limit: RateLimit, rate: f64) -> Pace {
        // The rate stays within (0, the checked limit], so the pace exists; if rounding ever
        // said otherwise, the configured limit's pace (checked by `RateLimit::new`) is used.
        limit
            .pace_at(rate)
            .or_else(|| limit.pace_at(limit.per_second()))
            .expect("RateLimit::new checked the pace")
    }

    /// Lets the task go now if it may without waiting — its booked moment has come, or it
    /// has none and the limit allows one now (booked here) — and says whether it did. If
    /// not, nothing is booked or taken: `acquire` does that.
    #[inline]
    fn go_if_due(&mut self, task: &TaskInfo, now: Instant) -> bool {
        self.last_used = now;
        if let Some(rate) = self.aimd.as_mut() {
            rate.recover(now);
        }
        if let Some(at) = self.booked.get(task.id) {
            if at > now {
                return false;
            }
            self.booked.remove(task.id);
            return true;
        }
        let pace = self.pace();
        self.schedule.book_if_due(now, pace)
    }

    /// The task's moment: the one booked for it, or now if the limit allows, or a new one
    /// (taken over from a task of lower priority, or the next free). `take`: the task goes
    /// now (from `acquire`): its booking is used up and a new moment is not stored. Without
    /// `take` (a precheck) only a moment in the future is booked: a task that may go now
    /// books nothing, so a task refused later by another policy leaves nothing behind.
    /// `Err(moment)` if a new moment would be later than `latest` (nothing is booked then).
    fn moment(
        &mut self,
        task: &TaskInfo,
        now: Instant,
        latest: Option<Instant>,
        take: bool,
    ) -> Result<Instant, Instant> {
        self.last_used = now;
        if let Some(rate) = self.aimd.as_mut() {
            rate.recover(now);
        }
        if let Some(at) = self.booked.get(task.id) {
            if take {
                self.booked.remove(task.id);
            }
            return Ok(at);
        }
        let pace = self.pace();
        let earliest = self.schedule.earliest(now, pace);
        if earliest <= now {
            if take {
                self.schedule.book(now, pace);
            }
            return Ok(now);
        }
        // A precheck keeps the moment booked for the task; `acquire` uses it now.
        let keep_for = (!take).then_some(task.id);
        if let Some(at) = self.booked.take_over(keep_for, task.priority, now, latest) {
            return Ok(at);
        }
        if latest.is_some_and(|latest| earliest > latest) {
            return Err(earliest);
        }
        let at = self.schedule.book(now, pace);
        Ok(match keep_for {
            Some(task_id) => self.booked.insert(task_id, task.priority, at),
            None => at,
        })
    }

    fn throttled(&mut self, now: Instant) {
        if self.aimd.as_mut().is_some_and(|rate| rate.throttled(now)) {
            tracing::debug!(
                target: "pool_core::rate_limit",
                rate = self.current_rate(),
                "throttled: rate lowered"
            );
            // Moments booked at the old rate are too close together: tasks holding them
            // book again, at the new rate, when they come back.
            self.booked.clear();
            let pace = self.pace();
            self.schedule.restart(now, pace);
        }
    }

    /// Whether the key must be kept: backing off, or moments booked ahead.
    fn is_in_use(&self, now: Instant, idle_after: Duration) -> bool {
        self.aimd.as_ref().is_some_and(|rate| !rate.is_at_ceiling())
            || self.schedule.is_booked_after(now)
            || now.saturating_duration_since(self.last_used) < idle_after
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedRateLimiter<K> {
    /// A builder: `key_of` picks a task's key (`None`: not limited), `limit_of` gives a key
    /// its limit. Timed by `executor` (use the pool's executor).
    pub fn builder(
        executor: Arc<dyn Executor>,
        key_of: impl Fn(&TaskInfo) -> Option<K> + Send + Sync + 'static,
        limit_of: impl Fn(&K) -> RateLimit + Send + Sync + 'static,
    ) -> KeyedRateLimiterBuilder<K> {
        KeyedRateLimiterBuilder {
            executor,
            key_of: Arc::new(key_of),
            limit_of: Arc::new(limit_of),
            aimd: None,
            max_wait: None,
            forget_idle_after: Duration::from_secs(60),
        }
    }

    /// The rate in force for `key` now; `None` if the key has not been seen (or was
    /// forgotten).
    pub fn current_rate(&self, key: &K) -> Option<f64> {
        self.shared.current_rate(key)
    }

    /// Keys with state now.
    pub fn keys(&self) -> usize {
        self.shared.lock().store.len()
    }

    /// Moments booked ahead for tasks that are parked until then (or were, and have not
    /// come back yet).
    pub fn booked(&self) -> usize {
        self.shared.lock().store.booked()
    }

    /// Lowers `key`'s rate as a throttled attempt under it does (adaptive limiters only; a
    /// key not seen yet is left alone): for calls this limiter did not admit, such as those
    /// of a policy that falls back on it.
    pub fn throttled(&self, key: &K) {
        if self.shared.aimd.is_some() {
            self.shared.throttled(key);
        }
    }
}

impl<K, S> Shared<K, S> {
    fn lock(&self) -> MutexGuard<'_, Cells<S>> {
        // Only this module's arithmetic runs under the lock.
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: Store> Shared<S::Key, S> {
    /// The rate in force for `key` now; `None` if the key has no cell.
    pub(super) fn current_rate(&self, key: &S::Key) -> Option<f64> {
        let now = self.executor.now();
        self.lock().store.with_existing(key, |cell| {
            if let Some(rate) = cell.aimd.as_mut() {
                rate.recover(now);
            }
            cell.current_rate()
        })
    }

    /// [`Admission::try_admit`] for a task under `key`: a permit if the task's moment has
    /// come (then it is taken), `None` to be asked the usual way.
    /// At `now` if the pool read its clock already (see [`Admission::try_admit`]).
    pub(super) fn try_admit(
        &self,
        task: &TaskInfo,
        key: S::Key,
        now: Option<Instant>,
    ) -> Option<Result<AdmissionPermit, Rejection>> {
        let now = now.unwrap_or_else(|| self.executor.now());
        self.go_if_due(task, &key, now)
            .then(|| Ok(self.permit(key)))
    }

    /// [`Admission::precheck`] for a task under `key`.
    pub(super) fn precheck(&self, task: &TaskInfo, key: &S::Key) -> Precheck {
        match self.moment(task, key, false) {
            Ok((at, now)) if at > now => Precheck::ParkUntil(at),
            Ok(_) => Precheck::Proceed,
            Err(rejection) => Precheck::Reject(rejection),
        }
    }

    /// [`Admission::complete`]: a throttled attempt lowers its key's rate (adaptive limiters
    /// only; a fixed one's permits are empty).
    pub(super) fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        if result.is_throttled() {
            if let Ok(KeyedAttempt(key)) = permit.downcast::<KeyedAttempt<S::Key>>() {
                self.throttled(&key);
            }
        }
    }

    /// [`Admission::wants_complete`]: only an adaptive limiter learns from its attempts.
    pub(super) fn wants_complete(&self) -> bool {
        self.aimd.is_some()
    }

    /// The task's moment under `key`'s limit: the one booked for it, or a new one. A moment
    /// further than `max_wait` away is not booked: the task is rejected.
    fn moment(
        &self,
        task: &TaskInfo,
        key: &S::Key,
        take: bool,
    ) -> Result<(Instant, Instant), Rejection> {
        let now = self.executor.now();
        // A bound past what `Instant` can hold is no bound.
        let latest = self.max_wait.and_then(|max| now.checked_add(max));
        let moment = self.with_cell(key, now, |cell| cell.moment(task, now, latest, take));
        match moment {
            Ok(at) => Ok((at, now)),
            Err(at) => {
                let wait = at - now;
                Err(Rejection::new(
                    RejectionKind::RateLimited,
                    format!("the rate limit would make this attempt wait {wait:?}"),
                )
                .retry_after(wait))
            }
        }
    }

    /// Whether the task may go now without waiting (then it has gone: see
    /// [`RateCell::go_if_due`]).
    fn go_if_due(&self, task: &TaskInfo, key: &S::Key, now: Instant) -> bool {
        self.with_cell(key, now, |cell| cell.go_if_due(task, now))
    }

    /// Runs `f` on `key`'s cell (made if it is new) under the lock, after forgetting idle
    /// cells when it is time to.
    fn with_cell<R>(&self, key: &S::Key, now: Instant, f: impl FnOnce(&mut RateCell) -> R) -> R {
        let mut cells = self.lock();
        if now >= cells.next_sweep {
            self.sweep(&mut cells, now);
        }
        let new = || self.new_cell(key, now);
        cells.store.with_cell(key, new, f)
    }

    /// Forgets idle cells, and moments long past. Once per `forget_idle_after`: kept out of
    /// line, so that an admission's own path stays short.
    #[cold]
    #[inline(never)]
    fn sweep(&self, cells: &mut Cells<S>, now: Instant) {
        let idle_after = self.forget_idle_after;
        cells.store.retain(|cell| {
            // Moments long past belong to tasks that never came back (cancelled).
            if let Some(cutoff) = now.checked_sub(idle_after) {
                cell.booked.forget_before(cutoff);
            }
            cell.is_in_use(now, idle_after)
        });
        cells.next_sweep = deadline::after(now, idle_after);
    }

    /// The cell of a key seen for the first time (or again after it was forgotten).
    #[cold]
    #[inline(never)]
    fn new_cell(&self, key: &S::Key, now: Instant) -> RateCell {
        RateCell::new((self.limit_of)(key), self.aimd, now)
    }

    /// [`Admission::acquire`] for a task under `key`.
    pub(super) fn acquire(
        self: &Arc<Self>,
        task: &TaskInfo,
        key: S::Key,
    ) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(Arc::clone(self).wait_for_moment(task.clone(), key))
    }

    /// Takes the task's moment (its booking, or a new one) and waits for it.
    async fn wait_for_moment(
        self: Arc<Self>,
        task: TaskInfo,
        key: S::Key,
    ) -> Result<AdmissionPermit, Rejection> {
        let (at, now) = self.moment(&task, &key, true)?;
        if at > now {
            self.executor.sleep(at - now).await;
        }
        Ok(self.permit(key))
    }

    /// An adaptive key's permit names the key, so that a throttled attempt slows it down
    /// ([`Admission::complete`]); a fixed rate's holds nothing.
    fn permit(&self, key: S::Key) -> AdmissionPermit {
        match self.aimd {
            Some(_) => AdmissionPermit::holding(KeyedAttempt(key)),
            None => AdmissionPermit::empty(),
        }
    }

    fn throttled(&self, key: &S::Key) {
        let now = self.executor.now();
        self.lock()
            .store
            .with_existing(key, |cell| cell.throttled(now));
    }
}

/// The permit of an attempt under an adaptive key: which key it ran under.
struct KeyedAttempt<K>(K);

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Admission for KeyedRateLimiter<K> {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        match (self.key_of)(task) {
            Some(key) => self.shared.acquire(task, key),
            None => Box::pin(std::future::ready(Ok(AdmissionPermit::empty()))),
        }
    }

    fn try_acquire(&self, task: &TaskInfo) -> Option<Result<AdmissionPermit, Rejection>> {
        self.try_admit(task, None)
    }

    /// The precheck would proceed exactly when the task's moment has come — a moment booked
    /// for it that is due, or none booked and the limit allows one now — and then
    /// `try_acquire` takes it: one call does both.
    fn try_admit(
        &self,
        task: &TaskInfo,
        now: Option<Instant>,
    ) -> Option<Result<AdmissionPermit, Rejection>> {
        let Some(key) = (self.key_of)(task) else {
            return Some(Ok(AdmissionPermit::empty()));
        };
        self.shared.try_admit(task, key, now)
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        match (self.key_of)(task) {
            Some(key) => self.shared.precheck(task, &key),
            None => Precheck::Proceed,
        }
    }

    /// A throttled attempt lowers its key's rate (adaptive limiters only).
    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        self.shared.complete(permit, result);
    }

    /// Only an adaptive limiter learns from its attempts; a fixed one's permits are empty.
    fn wants_complete(&self) -> bool {
        self.shared.wants_complete()
    }
}

/// Settings of a [`KeyedRateLimiter`]. Every setter documents its default.
#[must_use = "a builder does nothing until .build()"]
pub struct KeyedRateLimiterBuilder<K> {
    executor: Arc<dyn Executor>,
    key_of: KeyFn<K>,
    limit_of: LimitFn<K>,
    aimd: Option<Aimd>,
    max_wait: Option<Duration>,
    forget_idle_after: Duration,
}

/// A clone shares the key and limit closures and the executor; the limiters built from two
/// clones keep their rates apart.
impl<K> Clone for KeyedRateLimiterBuilder<K> {
    fn clone(&self) -> Self {
        Self {
            executor: Arc::clone(&self.executor),
            key_of: Arc::clone(&self.key_of),
            limit_of: Arc::clone(&self.limit_of),
            aimd: self.aimd,
            max_wait: self.max_wait,
            forget_idle_after: self.forget_idle_after,
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterBuilder")
            .field("aimd", &self.aimd)
            .field("max_wait", &self.max_wait)
            .field("forget_idle_after", &self.forget_idle_after)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedRateLimiterBuilder<K> {
    /// Each key backs off when an attempt under it is throttled, and recovers while none is.
    /// Default: fixed rates.
    pub fn adaptive(mut self, aimd: Aimd) -> Self {
        self.aimd = Some(aimd);
        self
    }

    /// Rejects (with [`RejectionKind::RateLimited`]) an attempt whose turn is further away
    /// than this. Default: waits as long as needed (so does `Duration::MAX`).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Forgets keys unused for this long (unless still backing off). Default 60 s. Not zero.
    /// `Duration::MAX` (anything over a century) never forgets a key.
    pub fn forget_idle_after(mut self, idle: Duration) -> Self {
        self.forget_idle_after = idle;
        self
    }

    /// Checks the settings and builds the limiter.
    pub fn build(self) -> Result<KeyedRateLimiter<K>, ConfigError> {
        self.check()?;
        Ok(self.build_unchecked())
    }

    /// What [`build`](Self::build) checks.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(aimd) = &self.aimd {
            aimd.validate()?;
        }
        if self.forget_idle_after.is_zero() {
            return Err(ConfigError::ZeroDuration {
                field: "rate_limit.forget_idle_after",
            });
        }
        Ok(())
    }

    /// Builds without checks: for settings known valid (no AIMD, default idle time).
    pub(crate) fn build_unchecked(self) -> KeyedRateLimiter<K> {
        let key_of = Arc::clone(&self.key_of);
        KeyedRateLimiter {
            shared: self.shared(ByKey::default()),
            key_of,
        }
    }
}

impl<K: Clone + Send + Sync + 'static> KeyedRateLimiterBuilder<K> {
    /// The limiter's settings and `store` for its cells, without checks (`build` checks);
    /// the key function is not part of them.
    pub(super) fn shared<S: Store<Key = K>>(self, store: S) -> Arc<Shared<K, S>> {
        let now = self.executor.now();
        Arc::new(Shared {
            executor: self.executor,
            limit_of: self.limit_of,
            aimd: self.aimd,
            max_wait: self.max_wait,
            forget_idle_after: self.forget_idle_after,
            cells: CachePadded::new(Mutex::new(Cells {
                store,
                next_sweep: deadline::after(now, self.forget_idle_after),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an admission of a limit far above its load writes — the lock, the schedule's
    /// next moment, when the cell was last used — lies on the lock's cache line: the line
    /// moves between the workers that admit tasks, and a second line written would move too.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn what_an_admission_writes_shares_the_lock_s_cache_line() {
        let now = Instant::now();
        let limit = RateLimit::new(1e9, 1_000).unwrap();
        let cells = CachePadded::new(Mutex::new(Cells {
            store: One(Some(RateCell::new(limit, None, now))),
            next_sweep: now,
        }));
        let lock = &*cells as *const Mutex<Cells<One>> as usize;
        let guard = cells.lock().unwrap();
        let cell = guard.store.0.as_ref().unwrap();
        let written = [
            (
                "schedule",
                &cell.schedule as *const Schedule as usize,
                size_of::<Schedule>(),
            ),
            (
                "last_used",
                &cell.last_used as *const Instant as usize,
                size_of::<Instant>(),
            ),
        ];
        assert_eq!(lock % 64, 0, "the lock starts a cache line");
        for (name, at, size) in written {
            let end = at - lock + size;
            assert!(
                end <= 64,
                "{name} ends {end} bytes after the lock's line starts"
            );
        }
    }
}
