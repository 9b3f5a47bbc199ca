//! The handle to a global limit, and its place in a pool: an admission policy.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pool_core::{Admission, AdmissionPermit, BoxFuture, Executor, Precheck, Rejection, TaskInfo};
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Request, Shared, Waiter};
use crate::builder::{check_limit, RedisPermitsBuilder};
use crate::claims::{Claims, Found};
use crate::endpoint::{Connection, RedisEndpoint};
use crate::error::PermitError;
use crate::event::FailMode;
use crate::lease::Lease;
use crate::scripts::Scripts;

/// A concurrency limit shared by every process that uses the same Redis and limit name.
///
/// Cheap to clone (clones share one background agent and one connection). As a pool's
/// [`Admission`] policy, each attempt holds one global permit besides its local slot; a task
/// waiting for its permit does not hold its slot: it is parked
/// ([`Precheck::ParkUntilWoken`]) and woken when its permit is granted, so a saturated
/// global limit leaves the pool's slots to work the limit does not cover
/// ([`RedisPermitsBuilder::applies_to`]). Each clone keeps its own parked tasks (a task's id
/// is unique only within its pool): give each pool its own clone, as
/// `.admission(permits.clone())` does.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_core::{Pool, TaskOptions, Transient};
/// use pool_redis::{FailMode, RedisPermits};
///
/// let permits = RedisPermits::builder("redis://127.0.0.1:6379", "s3-uploads", 100)
///     .fail_mode(FailMode::Open)
///     .connect()
///     .await?;
/// let pool = Pool::builder()
///     .concurrency(32) // this process's own limit
///     .admission(permits.clone()) // and one permit of the shared 100 per running task
///     .build()?;
/// let answer = pool
///     .enqueue(|| async { Ok::<_, Transient<std::io::Error>>(42) }, TaskOptions::new())
///     .await?;
/// assert_eq!(answer, 42);
/// permits.set_limit(50).await?; // every process now shares 50
/// # Ok(()) }
/// ```
pub struct RedisPermits {
    inner: Arc<Inner>,
    /// Answers set aside for this handle's parked tasks.
    claims: Arc<Claims>,
}

/// Which tasks need a permit.
pub(crate) type AppliesTo = Arc<dyn Fn(&TaskInfo) -> bool + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) endpoint: RedisEndpoint,
    pub(crate) scripts: Scripts,
    pub(crate) conn: Connection,
    pub(crate) requests: mpsc::UnboundedSender<Request>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) fail_mode: FailMode,
    pub(crate) lease_ttl: Duration,
    pub(crate) executor: Arc<dyn Executor>,
    /// `None`: every task.
    pub(crate) applies_to: Option<AppliesTo>,
}

impl Inner {
    async fn lease(&self) -> Result<Lease, PermitError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Acquire(Waiter::Awaiting(reply)))
            .map_err(|_| PermitError::Closed)?;
        answer.await.map_err(|_| PermitError::Closed)?
    }
}

/// A snapshot of what this process's agent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermitStatus {
    /// Counted leases this process holds now.
    pub held: usize,
    /// Requests of this process waiting for a lease.
    pub waiting: usize,
    /// Whether Redis answered the last call.
    pub available: bool,
    /// The limit seen at the last call (`None` before the first).
    pub limit: Option<u64>,
    /// Leases held by all processes at the last call.
    pub held_globally: u64,
}

impl RedisPermits {
    /// Settings for the limit `name` on the Redis at `endpoint` (a URL such as
    /// `"rediss://:pass@host:6380"`, or a [`RedisEndpoint`] for a cluster or a custom CA).
    /// `limit` is stored if the limit has no value in Redis yet; change it with
    /// [`set_limit`](Self::set_limit). If Redis loses its data, the limit is stored again as
    /// the last value this process was told (seen in Redis or set here), not this one.
    pub fn builder(
        endpoint: impl Into<RedisEndpoint>,
        name: &str,
        limit: u64,
    ) -> RedisPermitsBuilder {
        RedisPermitsBuilder::new(endpoint.into(), name, limit)
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self::with_own_claims(Arc::new(inner))
    }

    fn with_own_claims(inner: Arc<Inner>) -> Self {
        let claims = Claims::new(inner.requests.clone(), Arc::clone(&inner.executor));
        inner.shared.register(&claims);
        Self { inner, claims }
    }

    fn applies_to(&self, task: &TaskInfo) -> bool {
        self.inner.applies_to.as_ref().is_none_or(|f| f(task))
    }

    /// Waits for a global permit. Cancel-safe: a lease granted after the caller gave up is
    /// released at once.
    ///
    /// # Errors
    /// [`PermitError::Unavailable`] while Redis cannot be reached under [`FailMode::Closed`]
    /// (under [`FailMode::Open`] an uncounted lease is returned instead);
    /// [`PermitError::Closed`] if the agent stopped with its runtime.
    pub async fn lease(&self) -> Result<Lease, PermitError> {
        self.inner.lease().await
    }

    /// Sets the limit for every process; waiting processes are woken to use new room. Tasks
    /// already running keep their permits when the limit shrinks: no new ones are granted
    /// until fewer than `limit` are held.
    ///
    /// # Errors
    /// [`PermitError::InvalidSetting`] for 0 or above 2^53, [`PermitError::Unavailable`] if
    /// Redis fails.
    pub async fn set_limit(&self, limit: u64) -> Result<(), PermitError> {
        check_limit(limit)?;
        let mut conn = self.inner.conn.clone();
        self.inner
            .scripts
            .set_limit(&mut conn, limit)
            .await
            .map_err(|e| self.inner.endpoint.unavailable(&e))?;
        self.inner.shared.saw_limit(limit);
        tracing::info!(limit = %self.name(), value = limit, "global permits: limit set");
        Ok(())
    }

    /// The limit in force, read from Redis (if Redis lost it: the last limit this process
    /// was told, which its next call stores again).
    ///
    /// # Errors
    /// [`PermitError::Unavailable`] if Redis fails.
    pub async fn limit(&self) -> Result<u64, PermitError> {
        let mut conn = self.inner.conn.clone();
        let value: Option<u64> = redis::cmd("GET")
            .arg(&self.inner.scripts.keys().limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.inner.endpoint.unavailable(&e))?;
        Ok(value.unwrap_or_else(|| self.inner.shared.seed_limit()))
    }

    /// Resolves once every lease dropped so far has been released in Redis (or Redis is
    /// down). Useful before a process exits, so others need not wait for the TTL.
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.inner.requests.send(Request::Flush(reply)).is_ok() {
            let _ = done.await;
        }
    }

    /// What this process's agent knows now.
    pub fn status(&self) -> PermitStatus {
        let shared = &self.inner.shared;
        let limit = shared.limit.load(Ordering::Relaxed);
        PermitStatus {
            held: shared.held.load(Ordering::Relaxed),
            waiting: shared.waiting.load(Ordering::Relaxed),
            available: !shared.unavailable.load(Ordering::Relaxed),
            limit: (limit > 0).then_some(limit),
            held_globally: shared.held_globally.load(Ordering::Relaxed),
        }
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.inner.scripts.keys().name
    }

    /// The Redis key of the sorted set of leases (for monitoring: `ZCARD` is the number of
    /// permits held by all processes, expired ones aside).
    pub fn holders_key(&self) -> &str {
        &self.inner.scripts.keys().holders
    }
}

/// Clones share the agent and the connection; each has its own parked tasks.
impl Clone for RedisPermits {
    fn clone(&self) -> Self {
        Self::with_own_claims(Arc::clone(&self.inner))
    }
}

impl Admission for RedisPermits {
    /// A task that needs a permit is parked without its slot until the agent answers (or a
    /// lease TTL passes: then it is asked again, its request still queued); when it comes
    /// back with an answer it goes on to [`acquire`](Self::acquire), which takes it.
    fn precheck(&self, task: &TaskInfo) -> Precheck {
        if !self.applies_to(task) {
            return Precheck::Proceed;
        }
        match self.claims.find(task.id) {
            Found::Answered => Precheck::Proceed,
            Found::Waiting(wakeup) => {
                let now = self.inner.executor.now();
                let until = now.checked_add(self.inner.lease_ttl).unwrap_or(now);
                Precheck::ParkUntilWoken(until, wakeup)
            }
        }
    }

    /// The permit set aside for the task while it was parked; without one (a caller that
    /// skipped [`precheck`](Self::precheck)), waits for one holding the slot.
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        if !self.applies_to(task) {
            return Box::pin(std::future::ready(Ok(AdmissionPermit::empty())));
        }
        if let Some(answer) = self.claims.take(task.id) {
            let admitted = answer
                .map(AdmissionPermit::holding)
                .map_err(|error| error.to_rejection());
            return Box::pin(std::future::ready(admitted));
        }
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            match inner.lease().await {
                Ok(lease) => Ok(AdmissionPermit::holding(lease)),
                Err(error) => Err(error.to_rejection()),
            }
        })
    }

    /// A permit gives its place back when dropped, which the pool does when the attempt
    /// ends; how the attempt ended changes nothing.
    fn wants_complete(&self) -> bool {
        false
    }
}

impl fmt::Debug for RedisPermits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPermits")
            .field("name", &self.name())
            .field("endpoint", &self.inner.endpoint)
            .field("fail_mode", &self.inner.fail_mode)
            .field("lease_ttl", &self.inner.lease_ttl)
            .field("applies_to_some_tasks", &self.inner.applies_to.is_some())
            .field("status", &self.status())
            .finish()
    }
}
