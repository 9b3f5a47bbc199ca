//! Every duration, count and size a pool-core builder, option or policy accepts, at its
//! extremes (0, 1 and MAX, and for rates and factors the float edges): either `build()`
//! refuses it with a typed `ConfigError` naming the setting, or a pool built with it runs a
//! workload of succeeding, failing-then-retried and timing-out tasks to the end, every task
//! resolved and the counts in balance. Never a panic, never a hang.
//!
//! Each case runs on a tokio current-thread runtime with paused time (a wait of a century
//! passes at once), in its own thread, watched by a real-time deadline that detects hangs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use pool_core::{
    Buffered, ConfigError, Event, Executor, Jitter, Observer, Pool, PoolBuilder, RetryBudget,
    TaskOptions, TenantConfig, TokioExecutor, Transient,
};

/// 0, 1 ns, 1 s and `Duration::MAX`.
const DURATIONS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(1),
    Duration::MAX,
];
const COUNTS_U32: [u32; 3] = [0, 1, u32::MAX];
const COUNTS_USIZE: [usize; 3] = [0, 1, usize::MAX];
const FACTORS: [f64; 9] = [
    0.0,
    -1.0,
    f64::MIN_POSITIVE,
    0.5,
    1.0,
    2.0,
    f64::MAX,
    f64::INFINITY,
    f64::NAN,
];

/// Hangs are detected on real time, generously: the machine is shared.
const HANG: Duration = Duration::from_secs(120);

/// Runs `case` on a fresh paused-time runtime in its own thread; fails the test if it panics
/// or has not finished within [`HANG`].
fn run_case(name: String, case: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            case();
            let _ = done.send(());
        })
        .expect("spawn a case thread");
    match finished.recv_timeout(HANG) {
        Ok(()) => thread.join().expect("the case thread ended"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic = thread
                .join()
                .expect_err("a case that did not finish panicked");
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{name}: panicked: {message}");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: hung"),
    }
}

/// The default budget without its floor, failing a retry it cannot pay instead of waiting:
/// what bounds the retries of a task that always times out.
fn failing_fast() -> RetryBudget {
    RetryBudget {
        fail_fast: true,
        min_per_sec: 0.0,
        ..RetryBudget::default()
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime")
}

/// Eight tasks: half fail once before succeeding, one sleeps past a short timeout, with
/// priorities from `i32::MIN` to `i32::MAX`. Every handle must resolve (with a value or an
/// error: a 1 ns timeout times everything out) and the pool must end in balance.
async fn workload(pool: &Pool, options: impl Fn(usize) -> TaskOptions) {
    let priorities = [i32::MIN, -1, 0, 1, 5, 100, i32::MAX - 1, i32::MAX];
    let handles: Vec<_> = priorities
        .iter()
        .enumerate()
        .map(|(i, &priority)| {
            let failed_once = Arc::new(AtomicBool::new(false));
            pool.enqueue(
                move || {
                    let failed_once = failed_once.clone();
                    async move {
                        if i == 3 {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        if i % 2 == 0 && !failed_once.swap(true, Ordering::SeqCst) {
                            return Err(Transient("fails once"));
                        }
                        Ok(i)
                    }
                },
                options(i).priority(priority),
            )
        })
        .collect();
    for handle in handles {
        let _resolved = handle.await;
    }
    pool.drain().await;
    let stats = pool.stats();
    assert!(stats.in_balance(), "{stats:?}");
    assert_eq!(stats.resolved(), stats.enqueued, "{stats:?}");
}

/// Either a typed error naming `field`, or a pool that runs the workload.
fn check_builder(
    field: &'static str,
    value: String,
    make: impl FnOnce() -> PoolBuilder + Send + 'static,
) {
    run_case(format!("{field} = {value}"), move || {
        paused_runtime().block_on(async move {
            match make().build() {
                Err(error) => assert_names(&error, field, &value),
                Ok(pool) => {
                    workload(&pool, |_| TaskOptions::new()).await;
                    pool.stop().await;
                }
            }
        });
    });
}

fn assert_names(error: &ConfigError, field: &str, value: &str) {
    assert!(
        error.to_string().contains(field),
        "{field} = {value}: the error does not name the setting: {error}"
    );
}

fn builder() -> PoolBuilder {
    // A short default retry delay so that cases which change something else run quickly.
    Pool::builder()
        .retry_delay(Duration::from_millis(10))
        .timeout(Duration::from_secs(1))
        .seed(3)
}

#[test]
fn pool_builder_durations_at_their_extremes() {
    for d in DURATIONS {
        let v = format!("{d:?}");
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            check_builder("retry_delay", format!("{v} {jitter:?}"), move || {
                builder()
                    .retry_delay(d)
                    .max_retry_delay(Duration::MAX)
                    .jitter(jitter)
            });
        }
        check_builder("max_retry_delay", v.clone(), move || {
            builder()
                .retry_delay(Duration::ZERO)
                .max_retry_delay(d)
                .jitter(Jitter::None)
        });
        check_builder("pressure_clamp_delay", v.clone(), move || {
            builder().pressure_clamp_delay(d)
        });
        check_builder("timeout", v.clone(), move || builder().timeout(d));
        check_builder("aging_interval", v.clone(), move || {
            builder().aging_interval(d)
        });
        check_builder("aging_target_wait", v.clone(), move || {
            builder().aging_target_wait(d)
        });
    }
}

#[test]
fn pool_builder_counts_and_factors_at_their_extremes() {
    for n in COUNTS_USIZE {
        check_builder("concurrency", n.to_string(), move || {
            builder().concurrency(n)
        });
    }
    // The workload's sleeper times out on every attempt: with u32::MAX retries only a
    // budget that fails fast ends it (an empty budget that waits would retry it forever).
    for n in COUNTS_U32 {
        check_builder("retries", n.to_string(), move || {
            builder().retries(n).retry_budget(failing_fast())
        });
    }
    for f in FACTORS {
        let v = f.to_string();
        check_builder("backoff_factor", v.clone(), move || {
            builder().backoff_factor(f)
        });
        check_builder("max_aging_boost", v.clone(), move || {
            builder().max_aging_boost(f)
        });
        check_builder("clamp_threshold", v.clone(), move || {
            builder().pressure_thresholds(f, f64::MAX)
        });
        for (field, budget) in [
            (
                "retry_budget.capacity",
                RetryBudget {
                    capacity: f,
                    ..RetryBudget::default()
                },
            ),
            (
                "retry_budget.retry_cost",
                RetryBudget {
                    retry_cost: f,
                    ..RetryBudget::default()
                },
            ),
            (
                "retry_budget.timeout_retry_cost",
                RetryBudget {
                    timeout_retry_cost: f,
                    ..RetryBudget::default()
                },
            ),
            (
                "retry_budget.success_refill",
                RetryBudget {
                    success_refill: f,
                    ..RetryBudget::default()
                },
            ),
            (
                "retry_budget.min_per_sec",
                RetryBudget {
                    min_per_sec: f,
                    ..RetryBudget::default()
                },
            ),
        ] {
            check_builder(field, v.clone(), move || builder().retry_budget(budget));
        }
    }
    for seed in [0, 1, u64::MAX] {
        check_builder("seed", seed.to_string(), move || builder().seed(seed));
    }
}

#[test]
fn set_concurrency_at_its_extremes() {
    for n in COUNTS_USIZE {
        run_case(format!("set_concurrency({n})"), move || {
            paused_runtime().block_on(async move {
                let pool = builder().build().unwrap();
                match pool.set_concurrency(n) {
                    Err(error) => assert_eq!(error, ConfigError::ZeroConcurrency),
                    Ok(()) => assert_eq!(pool.concurrency(), n),
                }
                workload(&pool, |_| TaskOptions::new()).await;
            });
        });
    }
}

#[test]
fn task_options_at_their_extremes() {
    for d in DURATIONS {
        run_case(format!("TaskOptions::timeout({d:?})"), move || {
            paused_runtime().block_on(async move {
                let pool = builder().build().unwrap();
                workload(&pool, |_| TaskOptions::new().timeout(d)).await;
            });
        });
    }
    for n in COUNTS_U32 {
        run_case(format!("TaskOptions::retries({n})"), move || {
            paused_runtime().block_on(async move {
                let pool = builder().retry_budget(failing_fast()).build().unwrap();
                workload(&pool, |_| TaskOptions::new().retries(n)).await;
            });
        });
    }
}

/// Tenant weights and limits, for a named tenant and the defaults: 0 is refused naming the
/// setting; 1 and MAX run a workload spread over the named tenant, an unnamed one and tasks
/// without a tenant.
#[test]
fn tenant_settings_at_their_extremes() {
    for weight in COUNTS_U32 {
        for max_in_flight in COUNTS_USIZE {
            let config = TenantConfig::new()
                .weight(weight)
                .max_in_flight(max_in_flight);
            for named in [true, false] {
                let name =
                    format!("tenant weight {weight}, max_in_flight {max_in_flight}, named {named}");
                run_case(name, move || {
                    paused_runtime().block_on(async move {
                        let builder = if named {
                            builder().tenant("a", config)
                        } else {
                            builder().tenant_defaults(config)
                        };
                        match builder.build() {
                            Err(error) => {
                                let field = if weight == 0 {
                                    "weight"
                                } else {
                                    "max_in_flight"
                                };
                                assert_names(&error, field, &format!("{config:?}"));
                                assert!(matches!(error, ConfigError::TenantSetting { .. }));
                            }
                            Ok(pool) => {
                                workload(&pool, |i| match i % 3 {
                                    0 => TaskOptions::new().tenant("a"),
                                    1 => TaskOptions::new().tenant(format!("user-{i}")),
                                    _ => TaskOptions::new(),
                                })
                                .await;
                                assert_eq!(
                                    pool.tenants().len(),
                                    1,
                                    "only the tenantless lane left"
                                );
                                pool.stop().await;
                            }
                        }
                    });
                });
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl Observer for Counting {
    fn on_event(&self, _event: &Event) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn buffered_capacity_at_its_extremes() {
    for capacity in COUNTS_USIZE {
        run_case(format!("Buffered::new(_, {capacity})"), move || {
            paused_runtime().block_on(async move {
                let seen = Counting::default();
                let buffered = Buffered::new(seen.clone(), capacity);
                let pool = builder().observer(buffered.clone()).build().unwrap();
                workload(&pool, |_| TaskOptions::new()).await;
                assert!(buffered.dropped() < 1_000);
            });
        });
    }
}

#[cfg(feature = "rate-limit")]
mod rate_limit {
    use super::*;
    use pool_core::policy::{Aimd, KeyedRateLimiter, RateLimit, RateLimiter};
    use pool_core::TaskInfo;

    fn tokio_executor() -> Arc<dyn Executor> {
        Arc::new(TokioExecutor::current())
    }

    /// Builds a limiter with `limit` (or names `field` in its error) and runs the workload
    /// through it.
    fn check_limiter(
        field: &'static str,
        value: String,
        make: impl FnOnce(Arc<dyn Executor>) -> Result<RateLimiter, ConfigError> + Send + 'static,
    ) {
        run_case(format!("{field} = {value}"), move || {
            paused_runtime().block_on(async move {
                match make(tokio_executor()) {
                    Err(error) => assert_names(&error, field, &value),
                    Ok(limiter) => {
                        let pool = builder().admission(limiter.clone()).build().unwrap();
                        workload(&pool, |_| TaskOptions::new()).await;
                    }
                }
            });
        });
    }

    #[test]
    fn rate_limits_at_their_extremes() {
        let rates = [
            0.0,
            -1.0,
            f64::MIN_POSITIVE,
            6e-20,
            1e-12,
            1.0,
            1e9,
            1e10,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ];
        for rate in rates {
            for burst in COUNTS_U32 {
                let value = format!("{rate}/s burst {burst}");
                check_limiter("rate_limit.", value, move |executor| {
                    let limit = RateLimit::new(rate, burst)?;
                    Ok(RateLimiter::new(limit, executor))
                });
            }
        }
    }

    #[test]
    fn max_wait_at_its_extremes() {
        for d in DURATIONS {
            for rate in [1e-12, 1.0, 1e9] {
                check_limiter("max_wait", format!("{d:?} at {rate}/s"), move |executor| {
                    RateLimiter::builder(RateLimit::new(rate, 1)?, executor)
                        .max_wait(d)
                        .build()
                });
            }
        }
    }

    #[test]
    fn aimd_settings_at_their_extremes() {
        type Setter = fn(Aimd, f64) -> Aimd;
        let factors: [(&str, Setter); 3] = [
            ("aimd.decrease_factor", |a, f| a.decrease_factor(f)),
            ("aimd.increase_fraction", |a, f| a.increase_fraction(f)),
            ("aimd.min_fraction", |a, f| a.min_fraction(f)),
        ];
        for (field, set) in factors {
            for f in FACTORS {
                check_limiter(field, f.to_string(), move |executor| {
                    RateLimiter::builder(RateLimit::new(100.0, 10)?, executor)
                        .adaptive(set(Aimd::new(), f))
                        .build()
                });
            }
        }
        type DurationSetter = fn(Aimd, Duration) -> Aimd;
        let durations: [(&str, DurationSetter); 2] = [
            ("aimd.decrease_cooldown", |a, d| a.decrease_cooldown(d)),
            ("aimd.increase_interval", |a, d| a.increase_interval(d)),
        ];
        for (field, set) in durations {
            for d in DURATIONS {
                check_limiter(field, format!("{d:?}"), move |executor| {
                    RateLimiter::builder(RateLimit::new(100.0, 10)?, executor)
                        .adaptive(set(Aimd::new(), d))
                        .build()
                });
            }
        }
    }

    #[test]
    fn keyed_limiter_durations_at_their_extremes() {
        type Setter = fn(
            pool_core::policy::KeyedRateLimiterBuilder<u64>,
            Duration,
        ) -> pool_core::policy::KeyedRateLimiterBuilder<u64>;
        let setters: [(&str, Setter); 2] = [
            ("max_wait", |b, d| b.max_wait(d)),
            ("rate_limit.forget_idle_after", |b, d| {
                b.forget_idle_after(d)
            }),
        ];
        for (field, set) in setters {
            for d in DURATIONS {
                run_case(format!("{field} = {d:?}"), move || {
                    paused_runtime().block_on(async move {
                        let builder = KeyedRateLimiter::builder(
                            tokio_executor(),
                            |task: &TaskInfo| Some(task.priority.unsigned_abs() as u64 % 3),
                            |_: &u64| RateLimit::new(2.0, 1).unwrap(),
                        )
                        .adaptive(Aimd::new());
                        match set(builder, d).build() {
                            Err(error) => assert_names(&error, field, &format!("{d:?}")),
                            Ok(limiter) => {
                                let pool =
                                    super::builder().admission(limiter.clone()).build().unwrap();
                                workload(&pool, |_| TaskOptions::new()).await;
                                // Later traffic sweeps idle keys: still no panic.
                                tokio::time::sleep(Duration::from_secs(3_600)).await;
                                workload(&pool, |_| TaskOptions::new()).await;
                            }
                        }
                    });
                });
            }
        }
    }
}

#[cfg(feature = "circuit-breaker")]
mod circuit_breaker {
    use super::*;
    use pool_core::policy::{CircuitBreaker, CircuitBreakerConfig, WhenOpen};

    fn check_breaker(
        field: &'static str,
        value: String,
        make: impl Fn() -> CircuitBreakerConfig + Send + 'static,
    ) {
        run_case(format!("{field} = {value}"), move || {
            paused_runtime().block_on(async move {
                let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
                for when_open in [WhenOpen::FailFast, WhenOpen::Wait] {
                    let config = make().when_open(when_open);
                    match CircuitBreaker::new(config, executor.clone()) {
                        Err(error) => return assert_names(&error, field, &value),
                        Ok(breaker) => {
                            let pool = builder().admission(breaker.clone()).build().unwrap();
                            workload(&pool, |_| TaskOptions::new()).await;
                            let _ = breaker.snapshot();
                        }
                    }
                }
            });
        });
    }

    #[test]
    fn breaker_settings_at_their_extremes() {
        for d in DURATIONS {
            let v = format!("{d:?}");
            check_breaker("circuit_breaker.window", v.clone(), move || {
                CircuitBreakerConfig::new().minimum_calls(1).window(d)
            });
            check_breaker("circuit_breaker.open_duration", v.clone(), move || {
                CircuitBreakerConfig::new()
                    .minimum_calls(1)
                    .open_duration(d)
            });
        }
        for n in COUNTS_U32 {
            check_breaker("circuit_breaker.minimum_calls", n.to_string(), move || {
                CircuitBreakerConfig::new().minimum_calls(n)
            });
            check_breaker(
                "circuit_breaker.half_open_probes",
                n.to_string(),
                move || {
                    CircuitBreakerConfig::new()
                        .minimum_calls(1)
                        .open_duration(Duration::from_millis(1))
                        .half_open_probes(n)
                },
            );
        }
        for f in FACTORS {
            check_breaker("circuit_breaker.failure_rate", f.to_string(), move || {
                CircuitBreakerConfig::new().minimum_calls(1).failure_rate(f)
            });
        }
    }
}

#[test]
fn single_flight_ttl_at_its_extremes() {
    use pool_core::policy::{FlightRole, SingleFlight};
    for ttl in DURATIONS {
        run_case(format!("SingleFlight::with_ttl({ttl:?})"), move || {
            paused_runtime().block_on(async move {
                let pool = builder().build().unwrap();
                let flights = SingleFlight::<u32, u32, Transient<&str>>::new(pool).with_ttl(ttl);
                for key in [1, 2, 1] {
                    let flight =
                        flights.run(key, move || async move { Ok(key) }, TaskOptions::new());
                    let role = flight.role();
                    assert_eq!(flight.await.unwrap(), key);
                    if ttl.is_zero() {
                        assert_ne!(role, FlightRole::Cached, "a zero TTL caches nothing");
                    }
                }
            });
        });
    }
}

#[cfg(feature = "tower")]
#[test]
fn tower_max_queued_at_its_extremes() {
    use pool_core::tower::PoolLayer;
    use tower::{Layer, Service, ServiceExt};
    for max_queued in COUNTS_USIZE {
        run_case(format!("PoolLayer::max_queued({max_queued})"), move || {
            paused_runtime().block_on(async move {
                let pool = builder().build().unwrap();
                let mut service =
                    PoolLayer::new(pool.clone())
                        .max_queued(max_queued)
                        .layer(tower::service_fn(|n: u32| async move {
                            Ok::<_, std::io::Error>(n)
                        }));
                for n in 0..4 {
                    let ready = service.ready().await.unwrap();
                    let _resolved = ready.call(n).await;
                }
                pool.drain().await;
                assert!(pool.stats().in_balance());
            });
        });
    }
}
