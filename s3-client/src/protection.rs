//! Protection for a client's own pool (feature `protection`): S3's per-prefix request rates
//! and a circuit breaker for the backend.
//!
//! S3 publishes 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second per
//! prefix; above that it answers 503 SlowDown. The prefix limiter keeps each prefix under
//! those rates before the request is sent, halves a prefix's rate when it is throttled anyway
//! and climbs back additively (AIMD), alongside the pool's concurrency limit. The breaker is
//! one per client, i.e. per backend and bucket: while the backend keeps failing, calls fail
//! fast with `Rejected(CircuitOpen)` instead of piling up.
//!
//! The prefix limits are this process's own ([`local_limiter`]) unless the builder is given
//! a [`KeyedRatePolicy`] kept elsewhere — pool-redis' `RedisRateLimiter` shares each prefix's
//! rate (and its throttling) among every process that writes to the bucket, without this
//! crate depending on pool-redis.

use std::fmt;
use std::sync::Arc;

use pool_core::policy::{CircuitBreaker, CircuitBreakerConfig, KeyedRatePolicy};
use pool_core::{Admission, ConfigError, PoolBuilder};

use crate::prefix::{local_limiter, S3PrefixKey};

/// A per-prefix rate limit behind an `Arc`, as the client keeps it.
pub(crate) type PrefixPolicy = Arc<dyn KeyedRatePolicy<S3PrefixKey>>;

/// Where the per-prefix limits come from.
#[derive(Clone)]
pub(crate) enum PrefixLimits {
    /// This process's own, at S3's published rates, keyed at this depth.
    Local(usize),
    /// A policy built elsewhere (e.g. shared by many processes on Redis).
    Given(PrefixPolicy),
}

impl fmt::Debug for PrefixLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixLimits::Local(depth) => f.debug_tuple("Local").field(depth).finish(),
            PrefixLimits::Given(policy) => f.debug_tuple("Given").field(policy).finish(),
        }
    }
}

/// What the builder was asked to attach.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProtectionSettings {
    pub(crate) prefix_limits: Option<PrefixLimits>,
    pub(crate) breaker: Option<CircuitBreakerConfig>,
}

/// The policies attached to a client's pool, kept so their state can be read.
#[derive(Clone, Default)]
pub(crate) struct Protection {
    pub(crate) prefix_limits: Option<PrefixPolicy>,
    pub(crate) breaker: Option<CircuitBreaker>,
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protection")
            .field("prefix_limits", &self.prefix_limits)
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl ProtectionSettings {
    pub(crate) fn is_empty(&self) -> bool {
        self.prefix_limits.is_none() && self.breaker.is_none()
    }

    /// Builds the policies on the pool's own clock and attaches them to `pool`.
    pub(crate) fn attach(
        self,
        mut pool: PoolBuilder,
    ) -> Result<(PoolBuilder, Protection), ConfigError> {
        let mut protection = Protection::default();
        if self.is_empty() {
            return Ok((pool, protection));
        }
        let executor = pool.resolved_executor()?;
        if let Some(config) = self.breaker {
            let breaker = CircuitBreaker::new(config, executor.clone())?;
            pool = pool.admission(breaker.clone());
            protection.breaker = Some(breaker);
        }
        let policy: Option<PrefixPolicy> = match self.prefix_limits {
            Some(PrefixLimits::Local(depth)) => {
                Some(Arc::new(local_limiter(executor, depth).build()?))
            }
            Some(PrefixLimits::Given(policy)) => Some(policy),
            None => None,
        };
        if let Some(policy) = policy {
            pool = pool.admission_arc(Arc::clone(&policy) as Arc<dyn Admission>);
            protection.prefix_limits = Some(policy);
        }
        Ok((pool, protection))
    }
}
