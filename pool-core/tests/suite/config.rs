//! Every bad setting gives a typed error that names the field; none panics.

use std::time::Duration;

use pool_core::{ConfigError, Pool, PoolBuilder, RetryBudget, SimExecutor};

fn builder() -> PoolBuilder {
    Pool::builder().executor(SimExecutor::new())
}

#[test]
fn defaults_build() {
    let pool = builder().build().expect("defaults are valid");
    assert_eq!(pool.concurrency(), 10);
}

#[test]
fn zero_concurrency_is_rejected_at_build_and_at_runtime() {
    assert_eq!(
        builder().concurrency(0).build().unwrap_err(),
        ConfigError::ZeroConcurrency
    );
    let pool = builder().build().unwrap();
    assert_eq!(pool.set_concurrency(0), Err(ConfigError::ZeroConcurrency));
    assert_eq!(
        pool.control().set_concurrency(0),
        Err(ConfigError::ZeroConcurrency)
    );
    assert_eq!(pool.concurrency(), 10);
}

#[test]
fn max_delay_below_base_is_rejected() {
    let err = builder()
        .retry_delay(Duration::from_secs(2))
        .max_retry_delay(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::MaxDelayBelowBase { .. }));
    assert!(err.to_string().contains("max_retry_delay"));
}

#[test]
fn bad_factors_name_their_field() {
    let cases: Vec<(PoolBuilder, &str)> = vec![
        (builder().backoff_factor(f64::NAN), "backoff_factor"),
        (builder().backoff_factor(0.5), "backoff_factor"),
        (builder().backoff_factor(f64::INFINITY), "backoff_factor"),
        (builder().max_aging_boost(-1.0), "max_aging_boost"),
        (builder().max_aging_boost(f64::NAN), "max_aging_boost"),
        (
            builder().retry_budget(RetryBudget {
                capacity: 0.0,
                ..RetryBudget::default()
            }),
            "retry_budget.capacity",
        ),
        (
            builder().retry_budget(RetryBudget {
                retry_cost: -1.0,
                ..RetryBudget::default()
            }),
            "retry_budget.retry_cost",
        ),
        (
            builder().retry_budget(RetryBudget {
                success_refill: f64::NAN,
                ..RetryBudget::default()
            }),
            "retry_budget.success_refill",
        ),
    ];
    for (builder, field) in cases {
        match builder.build().unwrap_err() {
            err @ ConfigError::InvalidFactor { field: named, .. } => {
                assert_eq!(named, field);
                assert!(err.to_string().contains(field), "{err}");
            }
            other => panic!("{field}: unexpected {other:?}"),
        }
    }
}

#[test]
fn pressure_thresholds_must_be_ordered_and_positive() {
    for (clamp, skip) in [
        (10.0, 4.0),
        (4.0, 4.0),
        (0.0, 4.0),
        (-1.0, 4.0),
        (f64::NAN, 10.0),
    ] {
        let err = builder()
            .pressure_thresholds(clamp, skip)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::PressureThresholds { .. }),
            "{clamp} {skip}"
        );
    }
}

#[test]
fn zero_durations_are_rejected() {
    for (builder, field) in [
        (builder().aging_interval(Duration::ZERO), "aging_interval"),
        (
            builder().aging_target_wait(Duration::ZERO),
            "aging_target_wait",
        ),
        (builder().timeout(Duration::ZERO), "timeout"),
    ] {
        assert_eq!(
            builder.build().unwrap_err(),
            ConfigError::ZeroDuration { field }
        );
    }
}

#[test]
fn building_outside_a_runtime_without_an_executor_is_an_error() {
    assert_eq!(
        Pool::builder().build().unwrap_err(),
        ConfigError::NoExecutor
    );
}
