//! Settings of a global limit, checked before anything connects.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::agent::{Agent, AgentSettings, Shared};
use crate::error::PermitError;
use crate::event::{EventSink, FailMode, PermitEvent};
use crate::keys::LimitKeys;
use crate::permits::{Inner, RedisPermits};
use crate::redact::RedisUrl;
use crate::scripts::Scripts;

/// Shortest lease TTL accepted: renewals every third of it must fit round trips.
const MIN_LEASE_TTL: Duration = Duration::from_millis(150);

/// Builds a [`RedisPermits`]; see [`RedisPermits::builder`].
#[must_use = "a builder does nothing until `connect`"]
pub struct RedisPermitsBuilder {
    url: RedisUrl,
    name: String,
    limit: u64,
    lease_ttl: Duration,
    fail_mode: FailMode,
    io_timeout: Duration,
    max_backoff: Duration,
    events: EventSink,
}

impl RedisPermitsBuilder {
    pub(crate) fn new(url: RedisUrl, name: &str, limit: u64) -> Self {
        Self {
            url,
            name: name.to_owned(),
            limit,
            lease_ttl: Duration::from_secs(10),
            fail_mode: FailMode::Closed,
            io_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_millis(50),
            events: EventSink::none(),
        }
    }

    /// How long a lease lives without renewal (default 10 s): a holder that dies frees its
    /// permits at the latest this long after its last renewal. Renewals run every third of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// What tasks get while Redis is unreachable (default [`FailMode::Closed`]).
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Timeout of each connection attempt and each Redis call (default 1 s); at most half
    /// the lease TTL.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Longest pause between two tries while the limit is full (default 50 ms). Tries happen
    /// sooner when another process frees room (pub/sub wake-up).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Calls `callback` for every [`PermitEvent`] (on the agent's task: keep it quick).
    pub fn on_event(mut self, callback: impl Fn(&PermitEvent) + Send + Sync + 'static) -> Self {
        self.events = EventSink::new(callback);
        self
    }

    fn check(&self) -> Result<LimitKeys, PermitError> {
        let keys = LimitKeys::new(&self.name)?;
        let invalid = |what: String| Err(PermitError::InvalidSetting(what));
        if self.limit == 0 {
            return invalid("limit must be at least 1".into());
        }
        if self.lease_ttl < MIN_LEASE_TTL {
            return invalid(format!(
                "lease TTL must be at least {MIN_LEASE_TTL:?}, got {:?}",
                self.lease_ttl
            ));
        }
        if self.io_timeout.is_zero() || self.io_timeout > self.lease_ttl / 2 {
            return invalid(format!(
                "I/O timeout must be above zero and at most half the lease TTL ({:?}), got {:?}",
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
        let url = self.url.clone();
        let client = redis::Client::open(url.expose()).map_err(|e| PermitError::InvalidUrl {
            url: url.to_string(),
            message: url.scrub(&e.to_string()),
        })?;
        let unavailable = |e: redis::RedisError| PermitError::Unavailable {
            url: url.to_string(),
            message: url.scrub(&e.to_string()),
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.io_timeout))
            .set_response_timeout(Some(self.io_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(self.io_timeout);
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let _: Option<String> = redis::cmd("SET")
            .arg(&keys.limit)
            .arg(self.limit)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;

        // One agent per handle family; the pid makes `redis-cli` output readable.
        let agent_id = format!("{:012x}-{}", fastrand::u64(..) >> 16, std::process::id());
        let ttl_ms = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let scripts = Scripts::new(keys, agent_id, self.limit, ttl_ms);
        let shared = Arc::new(Shared::default());
        let settings = AgentSettings {
            fail_mode: self.fail_mode,
            lease_ttl: self.lease_ttl,
            min_backoff: Duration::from_millis(1).min(self.max_backoff),
            max_backoff: self.max_backoff,
            max_probe_interval: Duration::from_secs(1).max(self.max_backoff),
        };
        let (agent, requests) = Agent::new(
            scripts.clone(),
            conn.clone(),
            url.clone(),
            settings,
            self.events,
            Arc::clone(&shared),
        );
        tokio::spawn(agent.run(client));
        Ok(RedisPermits::from_inner(Inner {
            url,
            scripts,
            conn,
            requests,
            shared,
            fail_mode: self.fail_mode,
            lease_ttl: self.lease_ttl,
            default_limit: self.limit,
        }))
    }
}

impl fmt::Debug for RedisPermitsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPermitsBuilder")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("limit", &self.limit)
            .field("lease_ttl", &self.lease_ttl)
            .field("fail_mode", &self.fail_mode)
            .field("io_timeout", &self.io_timeout)
            .field("max_backoff", &self.max_backoff)
            .field("events", &self.events)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> RedisPermitsBuilder {
        RedisPermitsBuilder::new(RedisUrl::new("redis://:pw@127.0.0.1:1"), "n", 4)
    }

    #[test]
    fn settings_out_of_range_are_typed_errors() {
        let cases = [
            RedisPermitsBuilder::new(RedisUrl::new("redis://127.0.0.1:1"), "n", 0),
            builder().lease_ttl(Duration::from_millis(10)),
            builder().io_timeout(Duration::ZERO),
            builder().io_timeout(Duration::from_secs(6)),
            builder().max_backoff(Duration::ZERO),
        ];
        for case in cases {
            assert!(
                matches!(case.check(), Err(PermitError::InvalidSetting(_))),
                "{case:?}"
            );
        }
        assert!(builder().check().is_ok());
    }

    #[test]
    fn debug_masks_the_password() {
        let shown = format!("{:?}", builder());
        assert!(shown.contains("redis://:***@127.0.0.1:1"), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
    }
}
