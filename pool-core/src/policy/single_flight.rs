//! Single-flight: a table of running executions by key (weak references, so callers alone
//! keep an execution alive) and an optional TTL cache of results.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::{FutureExt, Shared, WeakShared};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::deadline;
use crate::error::TaskError;
use crate::executor::BoxFuture;
use crate::make_attempt::MakeAttempt;
use crate::pool::{Pool, PoolControl};
use crate::task::{ErrorClass, Retryable, TaskOptions};

/// What every caller of a [`SingleFlight`] key gets: the value, or the task's error shared.
pub type SharedResult<T, E> = Result<T, Arc<TaskError<E>>>;

type Execution<T, E> = Shared<BoxFuture<SharedResult<T, E>>>;
/// How the table refers to a running execution: weakly, so callers alone keep it alive.
type ExecutionRef<T, E> = WeakShared<BoxFuture<SharedResult<T, E>>>;

/// How a caller got its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightRole {
    /// It started the execution.
    Leader,
    /// It joined an execution already running.
    Follower,
    /// It was served from the time-to-live cache.
    Cached,
}

/// Counts since a [`SingleFlight`] was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SingleFlightStats {
    /// Executions enqueued in the pool (one per leader).
    pub executions: u64,
    /// Callers that joined a running execution.
    pub joined: u64,
    /// Callers served from the cache.
    pub cache_hits: u64,
}

/// Identical concurrent operations share one execution through the pool.
///
/// The first caller of a key (the leader) enqueues the task; callers of the same key while it
/// runs (followers) join it instead of enqueueing their own, and every caller gets the result
/// (values cloned, errors shared in an [`Arc`]). With [`with_ttl`](Self::with_ttl) the result
/// is also kept for a short time, measured on the pool's clock, and served to later callers
/// without running.
///
/// The shared execution belongs to no caller in particular: a leader that is dropped or whose
/// cancellation token fires leaves, and the execution keeps running for the others. Only when
/// every caller has gone is the pool task cancelled.
///
/// Cheap to clone: clones share the table of running operations.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use pool_core::policy::SingleFlight;
/// use pool_core::{Pool, TaskOptions, Transient};
///
/// let pool = Pool::builder().build().unwrap();
/// let flights = SingleFlight::<String, String, Transient<String>>::new(pool);
/// let fetches = Arc::new(AtomicU32::new(0));
/// let get = |key: &str| {
///     let fetches = fetches.clone();
///     let key = key.to_owned();
///     flights.run(key.clone(), move || {
///         fetches.fetch_add(1, Ordering::Relaxed);
///         let body = format!("body of {key}");
///         async move { Ok(body) }
///     }, TaskOptions::new())
/// };
/// let (a, b) = futures_util::join!(get("photos/1.jpg"), get("photos/1.jpg"));
/// assert_eq!(a.unwrap(), b.unwrap());
/// assert_eq!(fetches.load(Ordering::Relaxed), 1);
/// # }
/// ```
pub struct SingleFlight<K, T, E> {
    pool: Pool,
    table: Arc<FlightTable<K, T, E>>,
    ttl: Option<Duration>,
    cache_errors: bool,
}

impl<K, T, E> Clone for SingleFlight<K, T, E> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: Arc::clone(&self.table),
            ttl: self.ttl,
            cache_errors: self.cache_errors,
        }
    }
}

impl<K, T, E> fmt::Debug for SingleFlight<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight")
            .field("stats", &self.table.stats())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

struct FlightTable<K, T, E> {
    entries: Mutex<Entries<K, T, E>>,
    executions: AtomicU64,
    joined: AtomicU64,
    cache_hits: AtomicU64,
}

struct Entries<K, T, E> {
    next_generation: u64,
    /// Key -> (generation, execution).
    running: HashMap<K, (u64, ExecutionRef<T, E>)>,
    cached: HashMap<K, (Instant, SharedResult<T, E>)>,
    next_sweep: Option<Instant>,
}

impl<K, T, E> FlightTable<K, T, E> {
    fn stats(&self) -> SingleFlightStats {
        SingleFlightStats {
            executions: self.executions.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, T, E>> {
        // No user code runs under this lock; a poisoned one still holds a usable table.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq, T, E> Entries<K, T, E> {
    /// Forgets the running execution of `key` if it is still `generation` (a later one may
    /// have taken the key).
    fn forget_running(&mut self, key: &K, generation: u64) {
        if self.running.get(key).map(|(g, _)| *g) == Some(generation) {
            self.running.remove(key);
        }
    }
}

impl<K, T, E> FlightTable<K, T, E>
where
    K: Hash + Eq,
    T: Clone,
{
    /// The execution of `generation` finished: forget it, and cache its result for `ttl`.
    fn complete(
        &self,
        key: K,
        generation: u64,
        result: &SharedResult<T, E>,
        now: Instant,
        ttl: Option<Duration>,
    ) {
        let mut entries = self.lock();
        entries.forget_running(&key, generation);
        let Some(ttl) = ttl else { return };
        // Sweep expired entries at most once per time-to-live, so the cache stays bounded by
        // what was stored within about two TTLs.
        if entries.next_sweep.is_none_or(|at| now >= at) {
            entries.cached.retain(|_, (expires, _)| *expires > now);
            entries.next_sweep = Some(deadline::after(now, ttl));
        }
        entries
            .cached
            .insert(key, (deadline::after(now, ttl), result.clone()));
    }
}

impl<K, T, E> SingleFlight<K, T, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Runs operations through `pool`; no result cache.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            table: Arc::new(FlightTable {
                entries: Mutex::new(Entries {
                    next_generation: 0,
                    running: HashMap::new(),
                    cached: HashMap::new(),
                    next_sweep: None,
                }),
                executions: AtomicU64::new(0),
                joined: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
            }),
            ttl: None,
            cache_errors: false,
        }
    }

    /// Keeps each successful result for `ttl` (on the pool's clock) and serves it to later
    /// callers of the key without running. Default: no cache. A zero `ttl` turns the cache off;
    /// `Duration::MAX` (anything over a century) keeps results for good, so the cache then
    /// grows with the keys asked.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl).filter(|ttl| !ttl.is_zero());
        self
    }

    /// Caches errors too (with [`with_ttl`](Self::with_ttl)), e.g. to shield a backend from
    /// repeated lookups of a missing key. Default: only successes are cached.
    pub fn cache_errors(mut self, cache_errors: bool) -> Self {
        self.cache_errors = cache_errors;
        self
    }

    /// Counts of executions, joins and cache hits so far.
    pub fn stats(&self) -> SingleFlightStats {
        self.table.stats()
    }

    /// Operations running now. An execution leaves the table when it completes or when its
    /// last caller drops it, so this is also the table's size.
    pub fn in_flight(&self) -> usize {
        self.table.lock().running.len()
    }

    /// Runs `task` under `key`, or joins the execution of `key` already running (then `task`
    /// and `options` are not used: the leader's priority and retries apply). A cancellation
    /// token in `options` makes this caller leave with `Cancelled`; the execution goes on for
    /// the others.
    pub fn run<A>(&self, key: K, task: A, options: TaskOptions) -> Flight<T, E>
    where
        A: MakeAttempt<Ok = T, Error = E>,
        E: Retryable,
    {
        self.run_with(key, task, options, E::error_class)
    }

    /// Like [`run`](Self::run), with a classifier for errors that do not implement
    /// [`Retryable`].
    pub fn run_with<A, C>(
        &self,
        key: K,
        task: A,
        mut options: TaskOptions,
        classify: C,
    ) -> Flight<T, E>
    where
        A: MakeAttempt<Ok = T, Error = E>,
        C: Fn(&E) -> ErrorClass + Send + Sync + 'static,
    {
        // The caller's own token only takes this caller out; the shared execution has its own.
        let leave = options
            .cancellation
            .take()
            .map(|token| Box::pin(token.cancelled_owned()));
        let now = self.pool.now();
        // Held across `enqueue` so two callers cannot both lead (enqueue never calls back
        // into this table: completion runs when a caller polls).
        let mut entries = self.table.lock();
        if let Some((expires, result)) = entries.cached.get(&key) {
            if *expires > now {
                self.table.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Flight::new(
                    FlightRole::Cached,
                    FlightState::Ready(Some(result.clone())),
                    leave,
                );
            }
            entries.cached.remove(&key);
        }
        if let Some(execution) = entries
            .running
            .get(&key)
            .and_then(|(_, weak)| weak.upgrade())
        {
            self.table.joined.fetch_add(1, Ordering::Relaxed);
            return Flight::new(FlightRole::Follower, FlightState::Waiting(execution), leave);
        }
        let generation = entries.next_generation;
        entries.next_generation += 1;
        let execution = self.start(key.clone(), generation, task, options, classify);
        let weak = execution
            .downgrade()
            .expect("a fresh execution has not completed");
        entries.running.insert(key, (generation, weak));
        drop(entries);
        self.table.executions.fetch_add(1, Ordering::Relaxed);
        Flight::new(FlightRole::Leader, FlightState::Waiting(execution), leave)
    }

    fn start<A, C>(
        &self,
        key: K,
        generation: u64,
        task: A,
        options: TaskOptions,
        classify: C,
    ) -> Execution<T, E>
    where
        A: MakeAttempt<Ok = T, Error = E>,
        C: Fn(&E) -> ErrorClass + Send + Sync + 'static,
    {
        let abandon = CancellationToken::new();
        let handle = self
            .pool
            .enqueue_with(task, options.cancellation(abandon.clone()), classify);
        // Dropped unfinished only when the last caller drops its share: then cancel the task.
        let cancel_when_abandoned = abandon.drop_guard();
        // Removes the table's entry however the execution ends: completed, or dropped by its
        // last caller before completing (abandoned).
        let entry = TableEntry {
            table: Arc::downgrade(&self.table),
            key: Some(key),
            generation,
        };
        let clock: PoolControl = self.pool.control();
        let (ttl, cache_errors) = (self.ttl, self.cache_errors);
        let execution: BoxFuture<SharedResult<T, E>> = Box::pin(async move {
            let result = handle.await.map_err(Arc::new);
            cancel_when_abandoned.disarm();
            let cache_for = ttl.filter(|_| result.is_ok() || cache_errors);
            entry.complete(&result, clock.now(), cache_for);
            result
        });
        execution.shared()
    }
}

/// An execution's entry in the table, owned by the execution itself, so that it goes when
/// the execution goes. Without it an abandoned execution (every caller dropped before it
/// completed) would leave a dead entry behind for each key ever abandoned.
struct TableEntry<K: Hash + Eq, T, E> {
    table: Weak<FlightTable<K, T, E>>,
    /// `None` once completed.
    key: Option<K>,
    generation: u64,
}

impl<K: Hash + Eq, T: Clone, E> TableEntry<K, T, E> {
    fn complete(mut self, result: &SharedResult<T, E>, now: Instant, ttl: Option<Duration>) {
        if let (Some(table), Some(key)) = (self.table.upgrade(), self.key.take()) {
            table.complete(key, self.generation, result, now, ttl);
        }
    }
}

impl<K: Hash + Eq, T, E> Drop for TableEntry<K, T, E> {
    fn drop(&mut self) {
        // Runs when the last caller's share is dropped. The table lock is never held while a
        // share is dropped (`run` hands out the shares it takes under the lock), so taking it
        // here cannot deadlock.
        let (Some(table), Some(key)) = (self.table.upgrade(), self.key.take()) else {
            return;
        };
        table.lock().forget_running(&key, self.generation);
    }
}

enum FlightState<T, E> {
    Ready(Option<SharedResult<T, E>>),
    Waiting(Execution<T, E>),
}

/// One caller's share of an execution; resolves to a [`SharedResult`].
#[must_use = "a flight does nothing unless awaited"]
pub struct Flight<T, E> {
    role: FlightRole,
    state: FlightState<T, E>,
    leave: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl<T, E> fmt::Debug for Flight<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flight")
            .field("role", &self.role)
            .field("cancellable", &self.leave.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, E> Flight<T, E> {
    fn new(
        role: FlightRole,
        state: FlightState<T, E>,
        leave: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    ) -> Self {
        Self { role, state, leave }
    }

    /// Whether this caller leads, follows, or was served from the cache.
    pub fn role(&self) -> FlightRole {
        self.role
    }
}

// No field is pinned structurally (the shared execution is boxed, the token future too).
impl<T, E> Unpin for Flight<T, E> {}

impl<T: Clone, E> Future for Flight<T, E> {
    type Output = SharedResult<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            FlightState::Ready(result) => {
                if let Some(result) = result.take() {
                    return Poll::Ready(result);
                }
            }
            FlightState::Waiting(execution) => {
                if let Poll::Ready(result) = execution.poll_unpin(cx) {
                    return Poll::Ready(result);
                }
            }
        }
        if let Some(leave) = this.leave.as_mut() {
            if leave.as_mut().poll(cx).is_ready() {
                // Give up this caller's share now, not when the flight is dropped.
                this.state = FlightState::Ready(None);
                this.leave = None;
                return Poll::Ready(Err(Arc::new(TaskError::Cancelled)));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SimExecutor;
    use crate::task::Transient;

    type Flights = SingleFlight<u64, u64, Transient<&'static str>>;

    fn table_entries(flights: &Flights) -> usize {
        // Read the table itself: `in_flight` must not be what cleans it.
        flights.table.lock().running.len()
    }

    #[test]
    fn abandoned_flights_leave_no_table_entry() {
        let sim = SimExecutor::new();
        let pool = Pool::builder().executor(sim.clone()).build().unwrap();
        // Nothing runs: every flight is abandoned before its task starts.
        pool.pause();
        let flights = Flights::new(pool.clone()).with_ttl(Duration::MAX);
        for key in 0..100_000 {
            let flight = flights.run(key, || async { Ok(1) }, TaskOptions::new());
            assert_eq!(flight.role(), FlightRole::Leader);
            drop(flight);
        }
        assert_eq!(table_entries(&flights), 0);

        // A flight someone still holds keeps its entry, and a follower joins it.
        let kept = flights.run(7, || async { Ok(7) }, TaskOptions::new());
        let follower = flights.run(7, || async { Ok(0) }, TaskOptions::new());
        assert_eq!(follower.role(), FlightRole::Follower);
        assert_eq!(table_entries(&flights), 1);
        drop(kept);
        assert_eq!(table_entries(&flights), 1, "the follower still holds it");
        pool.resume();
        let result = sim.block_on(follower);
        assert_eq!(result.unwrap(), 7);
        assert_eq!(table_entries(&flights), 0);
        assert_eq!(flights.in_flight(), 0);
    }
}
