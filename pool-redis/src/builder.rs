//! Settings of a global limit, checked before anything connects.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pool_core::{Executor, TaskInfo};

use crate::agent::{Agent, AgentSettings, Shared};
use crate::endpoint::RedisEndpoint;
use crate::error::PermitError;
use crate::event::{EventSink, FailMode, PermitEvent};
use crate::keys::LimitKeys;
use crate::permits::{AppliesTo, Inner, RedisPermits};
use crate::scripts::Scripts;

/// Shortest lease TTL accepted: renewals every third of it must fit round trips.
const MIN_LEASE_TTL: Duration = Duration::from_millis(150);
/// Longest lease TTL accepted: a dead holder's permits come back at the latest this long
/// after it died, and a day is already longer than anyone would wait.
const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest limit: Redis scripts count in doubles, exact up to 2^53.
pub(crate) const MAX_LIMIT: u64 = 1 << 53;

/// Builds a [`RedisPermits`]; see [`RedisPermits::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect`"]
pub struct RedisPermitsBuilder {
    endpoint: RedisEndpoint,
    name: String,
    limit: u64,
    lease_ttl: Duration,
    fail_mode: FailMode,
    io_timeout: Duration,
    max_backoff: Duration,
    events: EventSink,
    executor: Option<Arc<dyn Executor>>,
    applies_to: Option<AppliesTo>,
}

impl RedisPermitsBuilder {
    pub(crate) fn new(endpoint: RedisEndpoint, name: &str, limit: u64) -> Self {
        Self {
            endpoint,
            name: name.to_owned(),
            limit,
            lease_ttl: Duration::from_secs(10),
            fail_mode: FailMode::Closed,
            io_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_millis(50),
            events: EventSink::none(),
            executor: None,
            applies_to: None,
        }
    }

    /// How long a lease lives without renewal (default 10 s; from 150 ms to 24 h): a holder
    /// that dies frees its permits at the latest this long after its last renewal. Renewals
    /// run every third of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// What tasks get while Redis is unreachable (default [`FailMode::Closed`]).
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Timeout of each connection attempt and each Redis call (default 1 s); from 1 ms to half
    /// the lease TTL.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Longest pause between two tries while the limit is full (default 50 ms; at least
    /// 1 ms, and `Duration::MAX` means "only when woken"). Tries happen sooner when another
    /// process frees room (pub/sub wake-up). Probes of an unreachable Redis back off to at
    /// most 1 s whatever this is.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Calls `callback` for every [`PermitEvent`] (on the agent's task: keep it quick).
    pub fn on_event(mut self, callback: impl Fn(&PermitEvent) + Send + Sync + 'static) -> Self {
        self.events = EventSink::new(callback);
        self
    }

    /// Spawns the background agent and times its waits on `executor` (default: the tokio
    /// runtime `connect` is called in). The Redis driver's sockets need a tokio runtime, so
    /// the executor must run its tasks inside one (as `TokioExecutor` does).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// As a pool's admission policy, asks a permit only for the tasks `predicate` accepts
    /// (default: every task); the others run under the pool's local limit alone. Tasks that
    /// need a permit wait for it parked, without their slot, so while the global limit is
    /// saturated the pool's slots go to the others.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), pool_redis::PermitError> {
    /// // Uploads share 100 permits with every process; reads are limited locally only.
    /// let permits = pool_redis::RedisPermits::builder("redis://127.0.0.1:6379", "uploads", 100)
    ///     .applies_to(|task| task.metadata.get("op") == Some("put"))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn applies_to(
        mut self,
        predicate: impl Fn(&TaskInfo) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.applies_to = Some(Arc::new(predicate));
        self
    }

    fn check(&self) -> Result<LimitKeys, PermitError> {
        let keys = LimitKeys::new(&self.name)?;
        let invalid = |what: String| Err(PermitError::InvalidSetting(what));
        check_limit(self.limit)?;
        if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&self.lease_ttl) {
            return invalid(format!(
                "lease TTL must be from {MIN_LEASE_TTL:?} to {MAX_LEASE_TTL:?}, got {:?}",
                self.lease_ttl
            ));
        }
        if self.io_timeout < Duration::from_millis(1) || self.io_timeout > self.lease_ttl / 2 {
            return invalid(format!(
                "I/O timeout must be from 1 ms to half the lease TTL ({:?}), got {:?}",
                self.lease_ttl / 2,
                self.io_timeout
            ));
        }
        if self.max_backoff < Duration::from_millis(1) {
            return invalid("max backoff must be at least 1 ms".into());
        }
        Ok(keys)
    }

    /// Checks the settings, connects, stores the limit if the limit key does not exist yet
    /// (an existing limit, e.g. changed at run time, is kept), and starts the background
    /// agent on the current tokio runtime.
    ///
    /// # Errors
    /// [`PermitError::InvalidName`] / [`InvalidSetting`](PermitError::InvalidSetting) /
    /// [`InvalidUrl`](PermitError::InvalidUrl) for bad input,
    /// [`PermitError::Unavailable`] if Redis cannot be reached now.
    pub async fn connect(self) -> Result<RedisPermits, PermitError> {
        let keys = self.check()?;
        let executor = resolve_executor(self.executor.clone())?;
        let endpoint = self.endpoint.clone();
        let (mut conn, subscriptions) = endpoint.connect(self.io_timeout).await?;
        let _: Option<String> = redis::cmd("SET")
            .arg(&keys.limit)
            .arg(self.limit)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| endpoint.unavailable(&e))?;

        let ttl_ms = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let scripts = Scripts::new(keys, agent_id(), ttl_ms);
        let shared = Arc::new(Shared::new(self.limit));
        let settings = AgentSettings {
            fail_mode: self.fail_mode,
            lease_ttl: self.lease_ttl,
            min_backoff: Duration::from_millis(1).min(self.max_backoff),
            max_backoff: self.max_backoff,
            max_probe_interval: Duration::from_secs(1),
        };
        let (agent, requests) = Agent::new(
            scripts.clone(),
            conn.clone(),
            endpoint.clone(),
            settings,
            self.events,
            Arc::clone(&shared),
            Arc::clone(&executor),
        );
        executor.spawn(Box::pin(agent.run(subscriptions)));
        Ok(RedisPermits::from_inner(Inner {
            endpoint,
            scripts,
            conn,
            requests,
            shared,
            fail_mode: self.fail_mode,
            lease_ttl: self.lease_ttl,
            executor,
            applies_to: self.applies_to,
        }))
    }
}

/// One agent id per handle family (one per process and limit); the pid makes `redis-cli`
/// output readable.
pub(crate) fn agent_id() -> String {
    format!("{:012x}-{}", fastrand::u64(..) >> 16, std::process::id())
}

/// The executor given, or the current tokio runtime's.
pub(crate) fn resolve_executor(
    given: Option<Arc<dyn Executor>>,
) -> Result<Arc<dyn Executor>, PermitError> {
    given
        .or_else(|| {
            pool_core::TokioExecutor::try_current()
                .map(|executor| Arc::new(executor) as Arc<dyn Executor>)
        })
        .ok_or_else(|| {
            PermitError::InvalidSetting(
                "no executor: connect inside a tokio runtime or give one with `executor`".into(),
            )
        })
}

/// A limit between 1 and 2^53.
pub(crate) fn check_limit(limit: u64) -> Result<(), PermitError> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(PermitError::InvalidSetting(format!(
            "limit must be from 1 to 2^53 ({MAX_LIMIT}), got {limit}"
        )));
    }
    Ok(())
}

impl fmt::Debug for RedisPermitsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPermitsBuilder")
            .field("endpoint", &self.endpoint)
            .field("name", &self.name)
            .field("limit", &self.limit)
            .field("lease_ttl", &self.lease_ttl)
            .field("fail_mode", &self.fail_mode)
            .field("io_timeout", &self.io_timeout)
            .field("max_backoff", &self.max_backoff)
            .field("events", &self.events)
            .field("executor", &self.executor)
            .field("applies_to_some_tasks", &self.applies_to.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> RedisPermitsBuilder {
        RedisPermitsBuilder::new("redis://:pw@127.0.0.1:1".into(), "n", 4)
    }

    #[test]
    fn settings_out_of_range_are_typed_errors() {
        let cases = [
            RedisPermitsBuilder::new("redis://127.0.0.1:1".into(), "n", 0),
            RedisPermitsBuilder::new("redis://127.0.0.1:1".into(), "n", u64::MAX),
            builder().lease_ttl(Duration::MAX),
            builder().lease_ttl(Duration::ZERO),
            builder().io_timeout(Duration::MAX),
            builder().lease_ttl(Duration::from_millis(10)),
            builder().io_timeout(Duration::ZERO),
            builder().io_timeout(Duration::from_secs(6)),
            builder().max_backoff(Duration::ZERO),
            builder().io_timeout(Duration::from_nanos(1)),
        ];
        for case in cases {
            assert!(
                matches!(case.check(), Err(PermitError::InvalidSetting(_))),
                "{case:?}"
            );
        }
        assert!(builder().check().is_ok());
        let extremes_that_work = [
            RedisPermitsBuilder::new("redis://127.0.0.1:1".into(), "n", 1),
            RedisPermitsBuilder::new("redis://127.0.0.1:1".into(), "n", MAX_LIMIT),
            builder()
                .lease_ttl(MIN_LEASE_TTL)
                .io_timeout(Duration::from_millis(1)),
            builder().lease_ttl(MAX_LEASE_TTL),
            builder().max_backoff(Duration::from_millis(1)),
            builder().max_backoff(Duration::MAX),
        ];
        for case in extremes_that_work {
            assert!(case.check().is_ok(), "{case:?}");
        }
    }

    #[test]
    fn debug_masks_the_password() {
        let shown = format!("{:?}", builder());
        assert!(shown.contains("redis://:***@127.0.0.1:1"), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
    }
}
