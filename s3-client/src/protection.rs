//! Protection for a client's own pool (feature `protection`): S3's per-prefix request rates
//! and a circuit breaker for the backend.
//!
//! S3 publishes 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second per
//! prefix; above that it answers 503 SlowDown. The prefix limiter keeps each prefix under
//! those rates before the request is sent, halves a prefix's rate when it is throttled anyway
//! and climbs back additively (AIMD), alongside the pool's concurrency limit. The breaker is
//! one per client, i.e. per backend and bucket: while the backend keeps failing, calls fail
//! fast with `Rejected(CircuitOpen)` instead of piling up.

use pool_core::policy::{
    CircuitBreaker, CircuitBreakerConfig, KeyedRateLimiter, PolicyExt, S3PrefixKey,
};
use pool_core::{ConfigError, PoolBuilder};

/// What the builder was asked to attach.
#[derive(Debug, Default)]
pub(crate) struct ProtectionSettings {
    pub(crate) prefix_depth: Option<usize>,
    pub(crate) breaker: Option<CircuitBreakerConfig>,
}

/// The policies attached to a client's pool, kept so their state can be read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Protection {
    pub(crate) prefix_limits: Option<KeyedRateLimiter<S3PrefixKey>>,
    pub(crate) breaker: Option<CircuitBreaker>,
}

impl ProtectionSettings {
    pub(crate) fn is_empty(&self) -> bool {
        self.prefix_depth.is_none() && self.breaker.is_none()
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
            pool = pool.with_policy(&breaker);
            protection.breaker = Some(breaker);
        }
        if let Some(depth) = self.prefix_depth {
            let limits = KeyedRateLimiter::s3_prefixes(executor, depth).build()?;
            pool = pool.with_policy(&limits);
            protection.prefix_limits = Some(limits);
        }
        Ok((pool, protection))
    }
}
