//! Rate limits per key shared by every process: GCRA with its schedule in Redis, adaptive
//! (AIMD) with the rate in Redis too, booked in batches, as a pool's admission policy.

mod agent;
mod book;
mod builder;
mod script;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pool_core::policy::{KeyedRateLimiter, KeyedRatePolicy, RateLimit};
use pool_core::{
    Admission, AdmissionPermit, AttemptResult, BoxFuture, Executor, Precheck, Rejection,
    RejectionKind, TaskId, TaskInfo,
};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::DropGuard;

use crate::endpoint::RedisEndpoint;
use crate::event::{EventSink, FailMode};
use book::{Cell, Turn};
pub use builder::RedisRateLimiterBuilder;

type KeyFn<K> = dyn Fn(&TaskInfo) -> Option<K> + Send + Sync;
type LimitFn<K> = dyn Fn(&K) -> RateLimit + Send + Sync;

/// How often idle keys and stale bookings are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A task waiting for its moment is woken when the moment is delivered; it also comes back
/// this often anyway (so it stays counted, and `max_wait` is checked), in case a wakeup was
/// lost with a call that failed.
const WAITING_SAFETY_NET: Duration = Duration::from_secs(1);

/// A rate limit per key (per S3 prefix, per tenant…) shared by every process that uses the
/// same Redis and name: all of them together stay under each key's rate.
///
/// Each key's GCRA schedule (its theoretical arrival time) lives in Redis and is advanced by
/// a Lua script, as redis-cell does: one round trip books a moment — or, batched, every
/// moment this process's waiting tasks need, for every key at once. In a pool, a task that
/// has no moment yet, or whose moment is later, gives its slot back and is parked
/// ([`Admission::precheck`]) until its moment is delivered (a wakeup) and then until the
/// moment; when it comes back at its moment it goes. Adaptive limits
/// ([`adaptive`](RedisRateLimiterBuilder::adaptive)) keep their rate in Redis as well: a
/// throttled attempt (`503 SlowDown`) in any process lowers the key's rate for all of them,
/// once per cool-down however many saw it, and every process drops the moments it booked at
/// the old rate (pub/sub); recovery is computed from Redis time, so it is shared too.
///
/// It is a [`KeyedRatePolicy`]: attach it to a pool as an admission policy
/// (`PoolBuilder::admission`), or give it to s3-client as its per-prefix limits
/// (`S3ClientBuilder::prefix_rate_limiter`, keyed by `s3_client::prefix::s3_prefix_key` at
/// `S3PrefixKey::published_limit`).
///
/// While Redis cannot be reached, [`FailMode::Open`] (the default here) limits each process
/// alone, at each key's full rate (a local `KeyedRateLimiter`), and [`FailMode::Closed`]
/// refuses tasks; both emit a [`PermitEvent`](crate::PermitEvent) and a warning.
///
/// Cheap to clone: clones share one agent and one connection.
pub struct RedisRateLimiter<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    shared: Arc<Shared<K>>,
    /// Stops the agent and its subscriber when the last handle goes.
    _stop: DropGuard,
}

impl<K> Clone for RedisRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What a limiter's handles and its agent share.
pub(crate) struct Shared<K> {
    key_of: Arc<KeyFn<K>>,
    limit_of: Arc<LimitFn<K>>,
    executor: Arc<dyn Executor>,
    endpoint: RedisEndpoint,
    name: String,
    adaptive: bool,
    max_wait: Option<Duration>,
    forget_idle_after: Duration,
    fail_mode: FailMode,
    /// Limits each process alone while Redis cannot be reached (`FailMode::Open`).
    fallback: KeyedRateLimiter<K>,
    book: Mutex<Book>,
    /// Tells the agent there is demand or a throttled key to report.
    wake: Notify,
    down: AtomicBool,
    calls: AtomicU64,
    moments: AtomicU64,
    events: EventSink,
}

/// This process's bookings, under one lock.
#[derive(Debug)]
struct Book {
    cells: HashMap<String, Cell>,
    /// Tasks whose moment has come, between `precheck` and `acquire`.
    cleared: HashMap<TaskId, Instant>,
    /// Keys throttled here, to report to Redis.
    throttled: Vec<String>,
    seq: u64,
    next_sweep: Instant,
}

/// What this process's side of a shared rate limit knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateStatus {
    /// Keys with local state.
    pub keys: usize,
    /// Moments booked in Redis and not yet taken by a task.
    pub booked: usize,
    /// Booking and throttling script calls made so far (for the cost per task).
    pub calls: u64,
    /// Moments booked in Redis so far by this process.
    pub moments: u64,
    /// Whether Redis answered the last call.
    pub available: bool,
}

impl<K> RedisRateLimiter<K>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// Settings for the limits `name` on the Redis at `endpoint`: `key_of` picks a task's key
    /// (`None`: not limited), `limit_of` gives a key its rate and burst. The key's `Display`
    /// names it in Redis (`s3pool:{name}:rate:<key>`), so every process must show a key the
    /// same way.
    pub fn builder(
        endpoint: impl Into<RedisEndpoint>,
        name: &str,
        key_of: impl Fn(&TaskInfo) -> Option<K> + Send + Sync + 'static,
        limit_of: impl Fn(&K) -> RateLimit + Send + Sync + 'static,
    ) -> RedisRateLimiterBuilder<K> {
        RedisRateLimiterBuilder::new(endpoint.into(), name, Arc::new(key_of), Arc::new(limit_of))
    }

    /// What this process knows now.
    pub fn status(&self) -> RateStatus {
        let shared = &self.inner.shared;
        let book = shared.lock();
        RateStatus {
            keys: book.cells.len(),
            booked: book.cells.values().map(Cell::booked).sum(),
            calls: shared.calls.load(Ordering::Relaxed),
            moments: shared.moments.load(Ordering::Relaxed),
            available: !shared.down.load(Ordering::Relaxed),
        }
    }

    /// The name of these limits.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// Reports a throttled call under `key` that this limiter did not admit (a call made
    /// outside a pool, say): as a throttled attempt it admitted does, it lowers the key's
    /// rate in Redis for every process. Adaptive limits only; a fixed one ignores it.
    pub fn throttled(&self, key: &K) {
        let shared = &self.inner.shared;
        if shared.adaptive {
            shared.throttled(key);
        }
    }
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, Book> {
        // Only bookkeeping runs under the lock; a panic there leaves consistent maps.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unavailable(&self) -> Rejection {
        Rejection::new(
            RejectionKind::Unavailable,
            format!(
                "shared rate limits {:?} at {} unavailable",
                self.name, self.endpoint
            ),
        )
    }
}

impl<K> Shared<K>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// The task's turn under `key`, from the local book (never waits).
    fn turn(&self, task: &TaskInfo, key: &K, now: Instant) -> Result<Turn, Duration> {
        let text = key.to_string();
        let mut book = self.lock();
        if book.cleared.contains_key(&task.id) {
            // Cleared before, then held back by another policy: its moment is still in hand.
            return Ok(Turn::Go);
        }
        if now >= book.next_sweep {
            let idle = self.forget_idle_after;
            book.cells.retain(|_, cell| !cell.sweep(now, idle));
            let stale = now.checked_sub(idle);
            book.cleared
                .retain(|_, at| stale.is_none_or(|stale| *at >= stale));
            book.next_sweep = now.checked_add(SWEEP_EVERY).unwrap_or(now);
        }
        book.seq += 1;
        let seq = book.seq;
        let cell = book
            .cells
            .entry(text)
            .or_insert_with(|| Cell::new((self.limit_of)(key), now));
        let turn = cell.turn(task.id, task.priority, now, seq, self.max_wait)?;
        if turn == Turn::Go {
            book.cleared.insert(task.id, now);
        }
        Ok(turn)
    }

    fn too_far(wait: Duration) -> Rejection {
        Rejection::new(
            RejectionKind::RateLimited,
            format!("the shared rate limit would make this attempt wait at least {wait:?}"),
        )
        .retry_after(wait)
    }

    async fn acquire(
        self: Arc<Self>,
        task: TaskInfo,
        key: K,
    ) -> Result<AdmissionPermit, Rejection> {
        let now = self.executor.now();
        let text = key.to_string();
        let waiting = {
            let mut book = self.lock();
            if book.cleared.remove(&task.id).is_some() {
                return Ok(self.permit(key));
            }
            let cell = book
                .cells
                .entry(text.clone())
                .or_insert_with(|| Cell::new((self.limit_of)(&key), now));
            match cell.take_spare(now) {
                Some(at) => Ok(at),
                None => {
                    let (sender, receiver) = oneshot::channel();
                    cell.wait_direct(sender);
                    Err(receiver)
                }
            }
        };
        let at = match waiting {
            Ok(at) => at,
            Err(receiver) => {
                self.wake.notify_one();
                receiver.await.map_err(|_| self.unavailable())?
            }
        };
        let now = self.executor.now();
        if self
            .max_wait
            .is_some_and(|wait| at.saturating_duration_since(now) > wait)
        {
            if let Some(cell) = self.lock().cells.get_mut(&text) {
                cell.give_back(at);
            }
            return Err(Self::too_far(at.saturating_duration_since(now)));
        }
        if at > now {
            self.executor.sleep(at - now).await;
        }
        Ok(self.permit(key))
    }

    /// An adaptive limit's permit names the key, so that a throttled attempt slows the key
    /// down ([`Admission::complete`]); a fixed limit's holds nothing.
    fn permit(&self, key: K) -> AdmissionPermit {
        if self.adaptive {
            AdmissionPermit::holding(KeyedAttempt(key))
        } else {
            AdmissionPermit::empty()
        }
    }

    /// A throttled attempt under `key`: the local fallback slows the key down, and the key
    /// is reported to Redis, which lowers its rate for every process.
    fn throttled(&self, key: &K) {
        self.fallback.throttled(key);
        let text = key.to_string();
        let now = self.executor.now();
        let mut book = self.lock();
        // The cell carries the key's limit for the report (this process may not have
        // booked the key itself). Moments booked at the old rate are too close together:
        // their tasks ask again.
        book.cells
            .entry(text.clone())
            .or_insert_with(|| Cell::new((self.limit_of)(key), now))
            .forget_moments();
        if !book.throttled.contains(&text) {
            book.throttled.push(text);
        }
        drop(book);
        self.wake.notify_one();
    }
}

/// The permit of an attempt under an adaptive key: which key it ran under.
struct KeyedAttempt<K>(K);

impl<K> Admission for RedisRateLimiter<K>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        let shared = &self.inner.shared;
        let Some(key) = (shared.key_of)(task) else {
            return Box::pin(std::future::ready(Ok(AdmissionPermit::empty())));
        };
        if shared.down.load(Ordering::Relaxed) && !shared.lock().cleared.contains_key(&task.id) {
            return match shared.fail_mode {
                FailMode::Open => {
                    let local = shared.fallback.acquire(task);
                    let shared = Arc::clone(shared);
                    Box::pin(async move {
                        // A local limit's permit holds nothing (its moment is spent on
                        // admission); this policy's own names the key for the feedback.
                        drop(local.await?);
                        Ok(shared.permit(key))
                    })
                }
                FailMode::Closed => Box::pin(std::future::ready(Err(shared.unavailable()))),
            };
        }
        Box::pin(Arc::clone(shared).acquire(task.clone(), key))
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        let shared = &self.inner.shared;
        let Some(key) = (shared.key_of)(task) else {
            return Precheck::Proceed;
        };
        if shared.down.load(Ordering::Relaxed) {
            return match shared.fail_mode {
                FailMode::Open => shared.fallback.precheck(task),
                FailMode::Closed => Precheck::Reject(shared.unavailable()),
            };
        }
        let now = shared.executor.now();
        match shared.turn(task, &key, now) {
            Ok(Turn::Go) => Precheck::Proceed,
            Ok(Turn::At(at)) => Precheck::ParkUntil(at),
            Ok(Turn::Asked(wakeup)) => {
                shared.wake.notify_one();
                // Back when the moment is delivered (the agent fires the wakeup), or to check
                // `max_wait`.
                let net = shared
                    .max_wait
                    .map_or(WAITING_SAFETY_NET, |max| max.min(WAITING_SAFETY_NET));
                Precheck::ParkUntilWoken(now.checked_add(net).unwrap_or(now), wakeup)
            }
            Err(wait) => Precheck::Reject(Shared::<K>::too_far(wait)),
        }
    }

    /// A throttled attempt under an adaptive key lowers the key's rate, here and in Redis.
    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        if result.is_throttled() {
            if let Ok(KeyedAttempt(key)) = permit.downcast::<KeyedAttempt<K>>() {
                self.inner.shared.throttled(&key);
            }
        }
    }

    /// Only an adaptive limit learns from its attempts; a fixed one's permits are empty.
    fn wants_complete(&self) -> bool {
        self.inner.shared.adaptive
    }
}

impl<K> KeyedRatePolicy<K> for RedisRateLimiter<K>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    fn current_rate(&self, key: &K) -> Option<f64> {
        let book = self.inner.shared.lock();
        let cell = book.cells.get(&key.to_string())?;
        Some(cell.rate.unwrap_or(cell.limit.per_second()))
    }
}

impl<K> fmt::Debug for RedisRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("RedisRateLimiter")
            .field("name", &shared.name)
            .field("endpoint", &shared.endpoint)
            .field("adaptive", &shared.adaptive)
            .field("fail_mode", &shared.fail_mode)
            .field("available", &!shared.down.load(Ordering::Relaxed))
            .field("calls", &shared.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
