//! One rate limit per key: per S3 prefix, per tenant, per endpoint — whatever a key function
//! reads from a task's labels. Each key has its own GCRA cell and, if adaptive, its own AIMD
//! rate, so a throttled prefix slows down alone.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};

use super::aimd::{Aimd, AimdRate};
use super::clock::ExecutorClock;
use super::rate_limit::RateLimit;
use crate::admission::{Admission, AdmissionPermit, Rejection, RejectionKind};
use crate::error::ConfigError;
use crate::executor::{BoxFuture, Executor};
use crate::observer::{AttemptResult, Event, Observer, TaskInfo};
use crate::pool::PoolControl;
use crate::task::ErrorClass;

type GcraCell =
    governor::RateLimiter<NotKeyed, InMemoryState, ExecutorClock, NoOpMiddleware<Instant>>;
type KeyFn<K> = Box<dyn Fn(&TaskInfo) -> Option<K> + Send + Sync>;
type LimitFn<K> = Box<dyn Fn(&K) -> RateLimit + Send + Sync>;

/// A rate limit per key, as an [`Admission`] policy that waits; with
/// [`adaptive`](KeyedRateLimiterBuilder::adaptive) also an [`Observer`] that lowers a key's
/// rate when its attempts are throttled (`AttemptResult::Failed(ErrorClass::Throttled)`).
///
/// The key function reads a task's [`TaskInfo`] (its metadata labels); `None` means "not
/// limited". The limit function gives each key its [`RateLimit`], asked once when the key is
/// first seen. Keys idle for [`forget_idle_after`](KeyedRateLimiterBuilder::forget_idle_after)
/// (and not backing off) are dropped, so memory follows the keys in use.
///
/// Attempts waiting on one key take turns in the order they reached the limiter, and each
/// token wakes one of them. A waiting attempt holds its pool slot, so a key far over its
/// rate can fill the slots with waiters and hold up other keys' tasks: give the pool more
/// concurrency than the hot keys' waiters, or bound waits with
/// [`max_wait`](KeyedRateLimiterBuilder::max_wait).
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
    shared: Arc<KeyedShared<K>>,
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("keys", &self.shared.lock().by_key.len())
            .field("aimd", &self.shared.aimd)
            .field("max_wait", &self.shared.max_wait)
            .finish_non_exhaustive()
    }
}

struct KeyedShared<K> {
    clock: ExecutorClock,
    key_of: KeyFn<K>,
    limit_of: LimitFn<K>,
    aimd: Option<Aimd>,
    max_wait: Option<Duration>,
    forget_idle_after: Duration,
    cells: Mutex<Cells<K>>,
    observed: AtomicBool,
    warned_unobserved: AtomicBool,
}

struct Cells<K> {
    by_key: HashMap<K, RateCell>,
    next_sweep: Instant,
}

/// Attempts waiting for one key take turns through this fair (FIFO) lock.
type WaitQueue = tokio::sync::Mutex<()>;

/// One key's limit: its GCRA cell, rebuilt when its adaptive rate changes.
struct RateCell {
    limit: RateLimit,
    gcra: Arc<GcraCell>,
    waiters: Arc<WaitQueue>,
    aimd: Option<AimdRate>,
    last_used: Instant,
}

impl RateCell {
    fn new(limit: RateLimit, aimd: Option<Aimd>, clock: &ExecutorClock, now: Instant) -> Self {
        let quota = limit.quota_at(limit.per_second());
        Self {
            limit,
            gcra: Arc::new(GcraCell::direct_with_clock(
                quota.expect("RateLimit::new checked the quota"),
                clock.clone(),
            )),
            waiters: Arc::new(WaitQueue::new(())),
            aimd: aimd.map(|aimd| AimdRate::new(aimd, limit.per_second(), now)),
            last_used: now,
        }
    }

    fn current_rate(&self) -> f64 {
        self.aimd
            .as_ref()
            .map_or(self.limit.per_second(), AimdRate::current)
    }

    fn rebuild(&mut self, clock: &ExecutorClock) {
        // The rate stays within (0, the checked limit], so the quota exists; if rounding ever
        // said otherwise, keeping the old cell is the safe choice.
        if let Some(quota) = self.limit.quota_at(self.current_rate()) {
            self.gcra = Arc::new(GcraCell::direct_with_clock(quota, clock.clone()));
        }
    }

    fn gcra(&mut self, clock: &ExecutorClock, now: Instant) -> Arc<GcraCell> {
        self.last_used = now;
        if self.aimd.as_mut().is_some_and(|rate| rate.recover(now)) {
            self.rebuild(clock);
        }
        Arc::clone(&self.gcra)
    }

    fn throttled(&mut self, clock: &ExecutorClock, now: Instant) {
        if self.aimd.as_mut().is_some_and(|rate| rate.throttled(now)) {
            tracing::debug!(
                target: "pool_core::rate_limit",
                rate = self.current_rate(),
                "throttled: rate lowered"
            );
            self.rebuild(clock);
        }
    }

    fn is_backing_off(&self) -> bool {
        self.aimd.as_ref().is_some_and(|rate| !rate.is_at_ceiling())
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
            key_of: Box::new(key_of),
            limit_of: Box::new(limit_of),
            aimd: None,
            max_wait: None,
            forget_idle_after: Duration::from_secs(60),
        }
    }

    /// The rate in force for `key` now; `None` if the key has not been seen (or was
    /// forgotten).
    pub fn current_rate(&self, key: &K) -> Option<f64> {
        let now = self.shared.clock.now();
        let mut cells = self.shared.lock();
        let cell = cells.by_key.get_mut(key)?;
        if cell.aimd.as_mut().is_some_and(|rate| rate.recover(now)) {
            cell.rebuild(&self.shared.clock);
        }
        Some(cell.current_rate())
    }

    /// Keys with state now.
    pub fn keys(&self) -> usize {
        self.shared.lock().by_key.len()
    }
}

impl<K> KeyedShared<K> {
    fn lock(&self) -> MutexGuard<'_, Cells<K>> {
        // Only this module's arithmetic runs under the lock.
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedShared<K> {
    /// The key's GCRA cell and its queue of waiters (created on first use).
    fn cell_for(&self, key: &K, now: Instant) -> (Arc<GcraCell>, Arc<WaitQueue>) {
        let mut cells = self.lock();
        if now >= cells.next_sweep {
            let idle_after = self.forget_idle_after;
            cells.by_key.retain(|_, cell| {
                cell.is_backing_off() || now.saturating_duration_since(cell.last_used) < idle_after
            });
            cells.next_sweep = now + idle_after;
        }
        let cell = cells
            .by_key
            .entry(key.clone())
            .or_insert_with(|| RateCell::new((self.limit_of)(key), self.aimd, &self.clock, now));
        (cell.gcra(&self.clock, now), Arc::clone(&cell.waiters))
    }

    async fn acquire(self: Arc<Self>, key: K) -> Result<AdmissionPermit, Rejection> {
        let arrived = self.clock.now();
        let (_, waiters) = self.cell_for(&key, arrived);
        // One waiter per key watches the clock; the others queue behind it in arrival order,
        // so each token wakes one task, not all of them.
        let _turn = waiters.lock_owned().await;
        loop {
            let now = self.clock.now();
            let wait = match self.cell_for(&key, now).0.check() {
                Ok(()) => return Ok(AdmissionPermit::empty()),
                Err(not_until) => not_until.wait_time_from(now),
            };
            // GCRA never asks for a zero wait after a refusal; the floor guards a busy loop.
            let wait = wait.max(Duration::from_nanos(1));
            let waited = now.saturating_duration_since(arrived);
            if self.max_wait.is_some_and(|max| waited + wait > max) {
                return Err(Rejection::new(
                    RejectionKind::RateLimited,
                    format!("the rate limit would make this attempt wait {wait:?} more"),
                )
                .retry_after(wait));
            }
            self.clock.executor().sleep(wait).await;
        }
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Admission for KeyedRateLimiter<K> {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        let shared = &self.shared;
        if shared.aimd.is_some()
            && !shared.observed.load(Ordering::Relaxed)
            && !shared.warned_unobserved.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "pool_core::rate_limit",
                "adaptive rate limiter used as admission but not attached as an observer: it \
                 never sees throttling (attach it with PolicyExt::with_policy)"
            );
        }
        match (shared.key_of)(task) {
            Some(key) => Box::pin(Arc::clone(shared).acquire(key)),
            None => Box::pin(std::future::ready(Ok(AdmissionPermit::empty()))),
        }
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Observer for KeyedRateLimiter<K> {
    fn on_attach(&self, _pool: PoolControl) {
        self.shared.observed.store(true, Ordering::Relaxed);
    }

    fn on_event(&self, event: &Event) {
        let Event::AttemptFinished {
            task,
            result: AttemptResult::Failed(ErrorClass::Throttled),
            at,
            ..
        } = event
        else {
            return;
        };
        let shared = &self.shared;
        if shared.aimd.is_none() {
            return;
        }
        let Some(key) = (shared.key_of)(task) else {
            return;
        };
        if let Some(cell) = shared.lock().by_key.get_mut(&key) {
            cell.throttled(&shared.clock, *at);
        }
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
    /// Each key backs off on its throttled attempts and recovers while there are none (attach
    /// the limiter as an observer too, e.g. with
    /// [`PolicyExt::with_policy`](super::PolicyExt::with_policy)). Default: fixed rates.
    pub fn adaptive(mut self, aimd: Aimd) -> Self {
        self.aimd = Some(aimd);
        self
    }

    /// Rejects (with [`RejectionKind::RateLimited`]) an attempt that would wait longer than
    /// this in total. Default: waits as long as needed.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Forgets keys unused for this long (unless still backing off). Default 60 s. Not zero.
    pub fn forget_idle_after(mut self, idle: Duration) -> Self {
        self.forget_idle_after = idle;
        self
    }

    /// Checks the settings and builds the limiter.
    pub fn build(self) -> Result<KeyedRateLimiter<K>, ConfigError> {
        if let Some(aimd) = &self.aimd {
            aimd.validate()?;
        }
        if self.forget_idle_after.is_zero() {
            return Err(ConfigError::ZeroDuration {
                field: "rate_limit.forget_idle_after",
            });
        }
        Ok(self.build_unchecked())
    }

    /// Builds without checks: for settings known valid (no AIMD, default idle time).
    pub(crate) fn build_unchecked(self) -> KeyedRateLimiter<K> {
        let clock = ExecutorClock::new(self.executor);
        let now = clock.now();
        KeyedRateLimiter {
            shared: Arc::new(KeyedShared {
                key_of: self.key_of,
                limit_of: self.limit_of,
                aimd: self.aimd,
                max_wait: self.max_wait,
                forget_idle_after: self.forget_idle_after,
                cells: Mutex::new(Cells {
                    by_key: HashMap::new(),
                    next_sweep: now + self.forget_idle_after,
                }),
                clock,
                observed: AtomicBool::new(false),
                warned_unobserved: AtomicBool::new(false),
            }),
        }
    }
}
