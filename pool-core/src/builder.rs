//! Building a pool: every setting, its default, and its validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Admission;
use crate::engine::{Engine, Settings, TenantSettings};
use crate::error::ConfigError;
use crate::executor::Executor;
use crate::observer::{Observer, ObserverSet};
use crate::pool::Pool;
use crate::queue::AgingSettings;
use crate::retry::{Jitter, RetryBudget, RetryPolicy};
use crate::tenant::{Tenant, TenantConfig};

/// Configures and builds a [`Pool`]. Every setter documents its default.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::ConfigError> {
/// use std::time::Duration;
/// use pool_core::{Jitter, Pool};
/// let pool = Pool::builder()
///     .concurrency(64)
///     .retries(5)
///     .retry_delay(Duration::from_millis(100))
///     .max_retry_delay(Duration::from_secs(5))
///     .jitter(Jitter::Decorrelated)
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(pool.concurrency(), 64);
/// # Ok(()) }
/// ```
///
/// `Clone`: a clone keeps every setting, and shares (as `Arc`s) the observers, admission
/// policies and executor given so far — pools built from two clones report to the same
/// observers and are admitted by the same policies. Add per-pool observers (a metrics
/// collector, which takes its clock from the first pool it is attached to) after cloning.
#[derive(Clone)]
#[must_use = "a builder does nothing until .build()"]
pub struct PoolBuilder {
    concurrency: usize,
    retries: u32,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    aging_interval: Duration,
    max_aging_boost: f64,
    aging_target_wait: Duration,
    retry_budget: Option<RetryBudget>,
    observers: Vec<Arc<dyn Observer>>,
    admission: Vec<Arc<dyn Admission>>,
    executor: Option<Arc<dyn Executor>>,
    seed: Option<u64>,
    tenants: TenantSettings,
    earliest_deadline_first: bool,
    shed_doomed: bool,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            concurrency: 10,
            retries: 3,
            retry: RetryPolicy::default(),
            timeout: Some(Duration::from_secs(30)),
            aging_interval: Duration::from_millis(250),
            max_aging_boost: 10.0,
            aging_target_wait: Duration::from_secs(1),
            retry_budget: Some(RetryBudget::default()),
            observers: Vec::new(),
            admission: Vec::new(),
            executor: None,
            seed: None,
            tenants: TenantSettings::default(),
            earliest_deadline_first: false,
            shed_doomed: false,
        }
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("concurrency", &self.concurrency)
            .field("retries", &self.retries)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("aging_interval", &self.aging_interval)
            .field("max_aging_boost", &self.max_aging_boost)
            .field("aging_target_wait", &self.aging_target_wait)
            .field("retry_budget", &self.retry_budget)
            .field("observers", &self.observers.len())
            .field("admission", &self.admission)
            .field("executor", &self.executor)
            .field("tenants", &self.tenants)
            .field("earliest_deadline_first", &self.earliest_deadline_first)
            .field("shed_doomed", &self.shed_doomed)
            .finish()
    }
}

impl PoolBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Most tasks running at once. Default 10. Must be at least 1; change it later with
    /// [`Pool::set_concurrency`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{ConfigError, Pool};
    ///
    /// assert_eq!(Pool::builder().concurrency(64).build().unwrap().concurrency(), 64);
    /// let zero = Pool::builder().concurrency(0).build().unwrap_err();
    /// assert_eq!(zero, ConfigError::ZeroConcurrency);
    /// # }
    /// ```
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Default number of retries per task (attempts = retries + 1). Default 3.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Delay before the first retry; later ones grow by the backoff factor. Default 1 s.
    /// Delays of a century or more (up to `Duration::MAX`) are waited as a century: in
    /// practice the retry never comes, and the task resolves `Stopped` when the pool stops.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry.base_delay = delay;
        self
    }

    /// Growth of the delay per attempt. Default 2.0. Must be finite and at least 1.
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.retry.factor = factor;
        self
    }

    /// Longest retry delay. Default 30 s. Must be at least the retry delay. `Duration::MAX`:
    /// no cap.
    pub fn max_retry_delay(mut self, delay: Duration) -> Self {
        self.retry.max_delay = delay;
        self
    }

    /// Randomisation of retry delays. Default [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.retry.jitter = jitter;
        self
    }

    /// Pressure thresholds on saturation `(queued + active) / concurrency`: at or above
    /// `clamp`, retry delays are clamped to [`clamp_delay`](Self::pressure_clamp_delay) (the
    /// queue wait is backoff enough); at or above `skip`, a retry waits its whole backoff and
    /// then queues behind the work that arrived meanwhile — or, with
    /// [`skip_retries_when_saturated`](Self::skip_retries_when_saturated), is skipped.
    /// Defaults 4 and 10.
    pub fn pressure_thresholds(mut self, clamp: f64, skip: f64) -> Self {
        self.retry.clamp_threshold = clamp;
        self.retry.skip_threshold = skip;
        self
    }

    /// Turns the pressure rule off: retries follow the backoff however long the queue is.
    /// Useful for bulk jobs that enqueue far more tasks than the concurrency, where a long
    /// queue is the plan rather than a sign of overload.
    pub fn no_pressure_rule(mut self) -> Self {
        self.retry.clamp_threshold = f64::MAX / 2.0;
        self.retry.skip_threshold = f64::MAX;
        self
    }

    /// At or above the skip threshold, retries are skipped: the task ends with
    /// [`TaskError::RetrySkipped`](crate::TaskError::RetrySkipped), which names the
    /// saturation and the threshold. Off by default (a saturated pool delays retries, it does
    /// not drop them); for latency-bound work that would rather fail than queue a retry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pool_core::{Pool, TaskError, TaskOptions, Transient};
    /// let pool = Pool::builder()
    ///     .concurrency(1)
    ///     .retries(3)
    ///     .skip_retries_when_saturated()
    ///     .build()
    ///     .unwrap();
    /// pool.pause();
    /// let tasks: Vec<_> = (0..20)
    ///     .map(|_| {
    ///         let fail = || async { Err::<(), _>(Transient("503")) };
    ///         pool.enqueue(fail, TaskOptions::default())
    ///     })
    ///     .collect();
    /// pool.resume();
    /// // 20 tasks on 1 slot: saturation 20 ≥ 10, so the first failure is not retried.
    /// let first = tasks.into_iter().next().unwrap().await.unwrap_err();
    /// assert!(matches!(first, TaskError::RetrySkipped { attempts: 1, .. }), "{first}");
    /// # }
    /// ```
    pub fn skip_retries_when_saturated(mut self) -> Self {
        self.retry.skip_when_saturated = true;
        self
    }

    /// The delay used when retries are clamped under pressure. Default 100 ms.
    pub fn pressure_clamp_delay(mut self, delay: Duration) -> Self {
        self.retry.clamp_delay = delay;
        self
    }

    /// Default per-attempt timeout. Default 30 s. A timed-out attempt is dropped and counts as
    /// a retryable failure. It counts from when the attempt left the queue, or (when the pool
    /// read no clock then: a saturated pool's runner takes its next task without one unless
    /// something needs the moment) from when its future first waits.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// No default timeout.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Wait that earns a queued task one priority point (at aging multiplier 1).
    /// Default 250 ms.
    pub fn aging_interval(mut self, interval: Duration) -> Self {
        self.aging_interval = interval;
        self
    }

    /// Most priority points aging can add. Default 10. `0` turns aging off (strict priority).
    /// A task is never starved by tasks whose priority is at most its own plus this boost.
    pub fn max_aging_boost(mut self, boost: f64) -> Self {
        self.max_aging_boost = boost;
        self
    }

    /// Queue wait the aging multiplier aims at: when tasks wait longer than this on average,
    /// aging speeds up (multiplier down to 0.25); when shorter, it slows (up to 4). The
    /// average is of the tasks started while several priorities wait (a queue of one
    /// priority does not age).
    /// Default 1 s.
    pub fn aging_target_wait(mut self, target: Duration) -> Self {
        self.aging_target_wait = target;
        self
    }

    /// The retry budget. Default [`RetryBudget::default`] (on): an empty budget makes retries
    /// wait for a token, it does not fail them (see [`RetryBudget`] for the arithmetic).
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = Some(budget);
        self
    }

    /// Turns the retry budget off: retries are limited only by each task's retry count.
    pub fn no_retry_budget(mut self) -> Self {
        self.retry_budget = None;
        self
    }

    /// How `tenant` shares the pool: its weight against the other tenants waiting at the same
    /// priority, and optionally a limit of its own (see [`TenantConfig`] and the
    /// [`tenant`](crate::tenant) module). Tasks name their tenant with
    /// [`TaskOptions::tenant`](crate::TaskOptions::tenant); tenants not named here get
    /// [`tenant_defaults`](Self::tenant_defaults). Calling it again for a tenant replaces
    /// its settings.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pool_core::ConfigError> {
    /// use pool_core::{Pool, TaskOptions, TenantConfig};
    /// let pool = Pool::builder()
    ///     .concurrency(16)
    ///     .tenant("batch", TenantConfig::new().weight(1).max_in_flight(4))
    ///     .tenant("interactive", TenantConfig::new().weight(5))
    ///     .build()?;
    /// let handle = pool.enqueue(
    ///     || async { Ok::<_, std::io::Error>(1) },
    ///     TaskOptions::new().tenant("interactive"),
    /// );
    /// assert_eq!(handle.await.unwrap(), 1);
    /// # Ok(()) }
    /// ```
    pub fn tenant(mut self, tenant: impl Into<Tenant>, config: TenantConfig) -> Self {
        self.tenants.configured.insert(tenant.into(), config);
        self
    }

    /// The settings of tenants not named with [`tenant`](Self::tenant), and of the tasks
    /// that name no tenant (which share one turn in the round). Default weight 1, no limit
    /// of their own. With a `max_in_flight` here, every unnamed tenant gets that limit —
    /// e.g. no user's requests take more than 4 slots.
    pub fn tenant_defaults(mut self, config: TenantConfig) -> Self {
        self.tenants.defaults = config;
        self
    }

    /// Within a priority level, each tenant starts its tasks in order of their
    /// [deadlines](crate::TaskOptions::deadline), earliest first (tasks without one after
    /// those with one, and ties in enqueue order). Default off: first in, first out.
    ///
    /// Fair share still decides which tenant starts a task and aging which priority level,
    /// so a task with a late deadline waits behind earlier ones of its tenant and level
    /// only: earliest-deadline-first cannot starve another tenant or level. Useful when
    /// tasks with deadlines queue behind each other: the most urgent runs first, instead of
    /// waiting its turn and missing its deadline while later ones had time to spare.
    pub fn earliest_deadline_first(mut self) -> Self {
        self.earliest_deadline_first = true;
        self
    }

    /// Gives up early on tasks that cannot finish in time: a task with a
    /// [deadline](crate::TaskOptions::deadline) is not started, and not retried, when the
    /// time it would have left is shorter than the median service time of the pool's recent
    /// answered attempts (the last 64, once 8 are known). It resolves
    /// [`TaskError::DeadlineExceeded`](crate::TaskError::DeadlineExceeded) with `shed: true`,
    /// counted in [`Stats::shed`](crate::Stats::shed). Default off: a task is started as long
    /// as its deadline has not passed.
    ///
    /// The median, not a mean, so a slow tail does not shed everything; one number for the
    /// whole pool, so it suits pools whose tasks take about the same time.
    pub fn shed_doomed(mut self) -> Self {
        self.shed_doomed = true;
        self
    }

    /// Attaches an observer. Call it once per observer; all of them receive every event.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Attaches an observer already behind an `Arc`.
    pub fn observer_arc(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Adds an admission policy (rate limit, circuit breaker, global permits): asked before
    /// every attempt, in the order added. None by default.
    pub fn admission(mut self, policy: impl Admission) -> Self {
        self.admission.push(Arc::new(policy));
        self
    }

    /// Like [`admission`](Self::admission), for a policy already behind an `Arc`.
    pub fn admission_arc(mut self, policy: Arc<dyn Admission>) -> Self {
        self.admission.push(policy);
        self
    }

    /// Where tasks run and time comes from. Default: the tokio runtime `build` is called in
    /// (feature `tokio`).
    pub fn executor(mut self, executor: impl Executor) -> Self {
        self.executor = Some(Arc::new(executor));
        self
    }

    /// Like [`executor`](Self::executor), for an executor already behind an `Arc`.
    pub fn executor_arc(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// The executor this builder will build with, resolving the default (the current tokio
    /// runtime) now. Policies that need the pool's clock (rate limiters, circuit breakers)
    /// take it from here, so they and the pool share one clock.
    pub fn resolved_executor(&mut self) -> Result<Arc<dyn Executor>, ConfigError> {
        let executor = match &self.executor {
            Some(executor) => executor.clone(),
            None => default_executor()?,
        };
        self.executor = Some(executor.clone());
        Ok(executor)
    }

    /// Seed for retry jitter, so a run can be repeated exactly. Default: random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        let retry = &self.retry;
        if retry.max_delay < retry.base_delay {
            return Err(ConfigError::MaxDelayBelowBase {
                base: retry.base_delay,
                max: retry.max_delay,
            });
        }
        check_factor("backoff_factor", "[1, inf)", retry.factor, |f| f >= 1.0)?;
        let (clamp, skip) = (retry.clamp_threshold, retry.skip_threshold);
        if !(clamp.is_finite() && skip.is_finite() && clamp > 0.0 && clamp < skip) {
            return Err(ConfigError::PressureThresholds { clamp, skip });
        }
        check_factor("max_aging_boost", "[0, inf)", self.max_aging_boost, |b| {
            b >= 0.0
        })?;
        for (field, duration) in [
            ("aging_interval", self.aging_interval),
            ("aging_target_wait", self.aging_target_wait),
            ("timeout", self.timeout.unwrap_or(Duration::MAX)),
        ] {
            if duration.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        let tenants = std::iter::once((None, &self.tenants.defaults)).chain(
            self.tenants
                .configured
                .iter()
                .map(|(tenant, config)| (Some(tenant), config)),
        );
        for (tenant, config) in tenants {
            let field = if config.weight == 0 {
                "weight"
            } else if config.max_in_flight == Some(0) {
                "max_in_flight"
            } else {
                continue;
            };
            return Err(ConfigError::TenantSetting {
                tenant: tenant.cloned(),
                field,
            });
        }
        if let Some(budget) = &self.retry_budget {
            check_factor("retry_budget.capacity", "(0, inf)", budget.capacity, |c| {
                c > 0.0
            })?;
            check_factor(
                "retry_budget.retry_cost",
                "[0, inf)",
                budget.retry_cost,
                |c| c >= 0.0,
            )?;
            check_factor(
                "retry_budget.timeout_retry_cost",
                "[0, inf)",
                budget.timeout_retry_cost,
                |c| c >= 0.0,
            )?;
            check_factor(
                "retry_budget.success_refill",
                "[0, inf)",
                budget.success_refill,
                |c| c >= 0.0,
            )?;
            check_factor(
                "retry_budget.min_per_sec",
                "[0, inf)",
                budget.min_per_sec,
                |m| m >= 0.0,
            )?;
        }
        Ok(())
    }

    /// Checks every setting and builds the pool.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad setting; [`ConfigError::NoExecutor`] if
    /// no executor was given and this is not called inside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use pool_core::{ConfigError, Pool};
    ///
    /// let pool = Pool::builder().concurrency(8).retries(2).build().unwrap();
    /// assert_eq!(pool.concurrency(), 8);
    ///
    /// let bad = Pool::builder()
    ///     .retry_delay(Duration::from_secs(10))
    ///     .max_retry_delay(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(bad, ConfigError::MaxDelayBelowBase { .. }), "{bad}");
    /// # }
    /// ```
    pub fn build(self) -> Result<Pool, ConfigError> {
        self.validate()?;
        let executor = match self.executor {
            Some(executor) => executor,
            None => default_executor()?,
        };
        let settings = Settings {
            retries: self.retries,
            timeout: self.timeout,
            retry: self.retry,
            aging_target_wait: self.aging_target_wait,
            initial_limit: self.concurrency,
            aging: AgingSettings {
                interval: self.aging_interval,
                max_boost: self.max_aging_boost,
            },
            budget: self.retry_budget,
            tenants: self.tenants,
            earliest_deadline_first: self.earliest_deadline_first,
            shed_doomed: self.shed_doomed,
        };
        let engine = Engine::new(
            executor,
            settings,
            ObserverSet::new(self.observers),
            self.admission,
            self.seed.unwrap_or_else(|| fastrand::u64(..)),
        );
        Ok(Pool::from_engine(Arc::new(engine)))
    }
}

fn check_factor(
    field: &'static str,
    range: &'static str,
    value: f64,
    in_range: impl Fn(f64) -> bool,
) -> Result<(), ConfigError> {
    if value.is_finite() && in_range(value) {
        Ok(())
    } else {
        Err(ConfigError::InvalidFactor {
            field,
            range,
            value,
        })
    }
}

#[cfg(feature = "tokio")]
fn default_executor() -> Result<Arc<dyn Executor>, ConfigError> {
    crate::executor::TokioExecutor::try_current()
        .map(|executor| Arc::new(executor) as Arc<dyn Executor>)
        .ok_or(ConfigError::NoExecutor)
}

#[cfg(not(feature = "tokio"))]
fn default_executor() -> Result<Arc<dyn Executor>, ConfigError> {
    Err(ConfigError::NoExecutor)
}
