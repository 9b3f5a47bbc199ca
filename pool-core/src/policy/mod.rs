//! Protection policies: optional parts that plug into a pool's admission seam.
//!
//! - [`CircuitBreaker`] (feature `circuit-breaker`): fails fast while a backend keeps failing,
//!   probes it after a cool-down.
//! - [`RateLimiter`] and [`KeyedRateLimiter`] (feature `rate-limit`): operations per second
//!   with a burst, globally or per key (per tenant, per storage prefix…), optionally adaptive
//!   ([`Aimd`]): back off on throttling, recover gradually. A GCRA that books each task its
//!   moment, so a task that must wait is parked without a pool slot. [`KeyedRatePolicy`] is
//!   the seam for a per-key limit kept elsewhere (pool-redis keeps one in Redis, shared by
//!   every process).
//! - [`SingleFlight`]: identical concurrent operations share one execution.
//!
//! Each policy is one [`Admission`]: it decides before an attempt and learns how the attempt
//! ended from its permit ([`Admission::complete`]); attach it with
//! [`PoolBuilder::admission`](crate::PoolBuilder::admission). All of them take their time from
//! the pool's [`Executor`](crate::Executor), so they run on virtual time in tests.

#[cfg(feature = "rate-limit")]
mod aimd;
#[cfg(feature = "rate-limit")]
mod bookings;
#[cfg(feature = "circuit-breaker")]
mod circuit_breaker;
#[cfg(feature = "rate-limit")]
mod gcra;
#[cfg(feature = "rate-limit")]
mod keyed_policy;
#[cfg(feature = "rate-limit")]
mod keyed_rate_limit;
#[cfg(feature = "rate-limit")]
mod rate_limit;
mod single_flight;

#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use aimd::{Aimd, AimdValues};
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub use circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitSnapshot, CircuitState, Transition, WhenOpen,
};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use keyed_policy::KeyedRatePolicy;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use keyed_rate_limit::{KeyedRateLimiter, KeyedRateLimiterBuilder};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use rate_limit::{RateLimit, RateLimiter, RateLimiterBuilder};
pub use single_flight::{Flight, FlightRole, SharedResult, SingleFlight, SingleFlightStats};

use crate::admission::Admission;
use crate::builder::PoolBuilder;

/// Attaches a clone of a policy: the same as
/// [`PoolBuilder::admission`]`(policy.clone())`.
#[deprecated(note = "a policy is one Admission: use PoolBuilder::admission(policy.clone())")]
pub trait PolicyExt: Sized {
    /// Adds a clone of `policy` as an admission policy (clones share state).
    fn with_policy<P>(self, policy: &P) -> Self
    where
        P: Admission + Clone;
}

#[allow(deprecated)]
impl PolicyExt for PoolBuilder {
    fn with_policy<P>(self, policy: &P) -> Self
    where
        P: Admission + Clone,
    {
        self.admission(policy.clone())
    }
}
