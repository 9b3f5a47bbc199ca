//! A rate limit (operations per second with a burst) and the single-key limiter built on it.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::aimd::Aimd;
use super::gcra::Pace;
use super::keyed_rate_limit::{KeyedRateLimiter, KeyedRateLimiterBuilder, One, Shared};
use crate::admission::{Admission, AdmissionPermit, Precheck, Rejection};
use crate::error::ConfigError;
use crate::executor::{BoxFuture, Executor};
use crate::observer::TaskInfo;
use crate::outcome::AttemptResult;

/// A sustained rate and a burst: `per_second` operations per second on average, and up to
/// `burst` at once after a quiet spell.
///
/// ```
/// use pool_core::policy::RateLimit;
/// let limit = RateLimit::new(100.0, 10).unwrap();
/// assert_eq!((limit.per_second(), limit.burst()), (100.0, 10));
/// assert!(RateLimit::new(0.0, 10).is_err());
/// assert!(RateLimit::new(100.0, 0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: NonZeroU32,
}

impl RateLimit {
    /// `per_second` must be a positive finite number (fractions allowed: 0.5 is one every
    /// 2 s); `burst` at least 1.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, ConfigError> {
        let invalid_rate = ConfigError::InvalidFactor {
            field: "rate_limit.per_second",
            range: "(0, 1e9]",
            value: per_second,
        };
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= 1e9) {
            return Err(invalid_rate);
        }
        let burst = NonZeroU32::new(burst).ok_or(ConfigError::InvalidFactor {
            field: "rate_limit.burst",
            range: "[1, 2^32)",
            value: 0.0,
        })?;
        let limit = Self { per_second, burst };
        limit.pace_at(per_second).map(|_| limit).ok_or(invalid_rate)
    }

    /// Operations per second, on average.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Operations allowed at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The GCRA pace at `rate` (at most this limit's rate), its burst scaled alike; `None`
    /// if the interval is not a positive duration.
    pub(crate) fn pace_at(&self, rate: f64) -> Option<Pace> {
        let share = (rate / self.per_second).clamp(0.0, 1.0);
        let burst = ((f64::from(self.burst.get()) * share).round() as u32).max(1);
        let interval = Duration::try_from_secs_f64(1.0 / rate).ok()?;
        (!interval.is_zero()).then_some(Pace { interval, burst })
    }
}

/// One rate limit for every task of a pool: an [`Admission`] policy that makes attempts wait
/// (on the pool's executor) until the limit allows them. With [`RateLimiterBuilder::adaptive`]
/// it backs off when the attempts it admitted are throttled ([`Admission::complete`]).
///
/// A GCRA that books each task its moment, timed by the pool's executor, so a simulated
/// minute takes microseconds in tests. In a pool a task whose moment has not come gives its
/// slot back and is parked until then ([`Admission::precheck`]); tasks go in the order they
/// reached the limiter.
/// For one limit per key (per S3 prefix, per tenant) see
/// [`KeyedRateLimiter`](super::KeyedRateLimiter). Cheap to clone: clones share one limit.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pool_core::policy::{RateLimit, RateLimiter};
/// use pool_core::{Executor, Pool, SimExecutor, TaskOptions, Transient};
///
/// let sim = SimExecutor::new();
/// let executor: Arc<dyn Executor> = Arc::new(sim.clone());
/// let limiter = RateLimiter::new(RateLimit::new(10.0, 1).unwrap(), executor.clone());
/// let pool = Pool::builder().executor_arc(executor).admission(limiter).build().unwrap();
/// let start = sim.now();
/// sim.block_on(async {
///     let handles: Vec<_> = (0..21)
///         .map(|_| pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, TaskOptions::new()))
///         .collect();
///     for handle in handles {
///         handle.await.unwrap();
///     }
/// });
/// // 21 operations at 10/s: the first at once, the last 2 s later.
/// assert_eq!(sim.now() - start, Duration::from_secs(2));
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    /// A keyed limiter's machinery with a single cell: no key to work out, no map.
    shared: Arc<Shared<(), One>>,
    limit: RateLimit,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("current_rate", &self.current_rate())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A fixed limit timed by `executor` (use the pool's executor); waits as long as needed.
    pub fn new(limit: RateLimit, executor: Arc<dyn Executor>) -> Self {
        Self {
            shared: Self::settings(limit, executor).shared(One::default()),
            limit,
        }
    }

    /// A limiter with more settings (adaptive back-off, longest wait).
    pub fn builder(limit: RateLimit, executor: Arc<dyn Executor>) -> RateLimiterBuilder {
        RateLimiterBuilder {
            limit,
            keyed: Self::settings(limit, executor),
        }
    }

    /// A keyed limiter's settings, with one key for every task.
    fn settings(limit: RateLimit, executor: Arc<dyn Executor>) -> KeyedRateLimiterBuilder<()> {
        KeyedRateLimiter::builder(executor, |_: &TaskInfo| Some(()), move |_: &()| limit)
    }

    /// The rate in force now (below the configured one while backing off).
    pub fn current_rate(&self) -> f64 {
        // Before the first attempt there is no cell yet: the configured rate is in force.
        self.shared
            .current_rate(&())
            .unwrap_or(self.limit.per_second())
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }
}

impl Admission for RateLimiter {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        self.shared.acquire(task, ())
    }

    fn try_acquire(&self, task: &TaskInfo) -> Option<Result<AdmissionPermit, Rejection>> {
        self.shared.try_admit(task, (), None)
    }

    /// See [`KeyedRateLimiter`]'s: the precheck proceeds exactly when the task's moment has
    /// come, and then `try_acquire` takes it.
    fn try_admit(
        &self,
        task: &TaskInfo,
        now: Option<Instant>,
    ) -> Option<Result<AdmissionPermit, Rejection>> {
        self.shared.try_admit(task, (), now)
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        self.shared.precheck(task, &())
    }

    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        self.shared.complete(permit, result);
    }

    fn wants_complete(&self) -> bool {
        self.shared.wants_complete()
    }
}

/// Settings of a [`RateLimiter`] beyond its limit.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build()"]
pub struct RateLimiterBuilder {
    keyed: KeyedRateLimiterBuilder<()>,
    limit: RateLimit,
}

impl RateLimiterBuilder {
    /// Backs off when an attempt it admitted is throttled, and recovers while none is.
    /// Default: fixed rate.
    pub fn adaptive(mut self, aimd: Aimd) -> Self {
        self.keyed = self.keyed.adaptive(aimd);
        self
    }

    /// Rejects (with [`RejectionKind::RateLimited`](crate::RejectionKind::RateLimited)) an
    /// attempt whose turn is further away than this. Default: waits as long as needed (so
    /// does `Duration::MAX`).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.keyed = self.keyed.max_wait(max_wait);
        self
    }

    /// Checks the settings and builds the limiter.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        self.keyed.check()?;
        Ok(RateLimiter {
            shared: self.keyed.shared(One::default()),
            limit: self.limit,
        })
    }
}
