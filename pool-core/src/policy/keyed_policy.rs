//! The seam for per-key rate limits: what a pool (and s3-client's per-prefix limits) accepts,
//! whether the limit is kept in this process or shared by many.

use std::hash::Hash;

use super::keyed_rate_limit::KeyedRateLimiter;
use crate::admission::Admission;

/// A rate limit per key that a pool admits through: it books each task its moment and parks
/// it without a slot until then, and learns from the attempts it admitted
/// ([`Admission::complete`]: throttled attempts lower their key's rate, if it is adaptive).
///
/// [`KeyedRateLimiter`] keeps its limits in this process; pool-redis' `RedisRateLimiter`
/// keeps them in Redis, so every process that uses the same Redis and name shares one rate
/// per key. s3-client's per-prefix limits take either (`S3ClientBuilder::prefix_rate_limiter`).
pub trait KeyedRatePolicy<K>: Admission {
    /// The rate in force for `key`, operations per second, as far as this process knows
    /// now; `None` if the key has not been seen (or was forgotten).
    fn current_rate(&self, key: &K) -> Option<f64>;
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedRatePolicy<K> for KeyedRateLimiter<K> {
    fn current_rate(&self, key: &K) -> Option<f64> {
        KeyedRateLimiter::current_rate(self, key)
    }
}
