//! S3's per-prefix request rates and the per-client circuit breaker (feature `protection`),
//! on virtual time over InMemory and the chaos store.
#![cfg(feature = "protection")]

use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::path::Path;
use pool_core::policy::{CircuitBreakerConfig, CircuitState};
use pool_core::{RejectionKind, TaskError};
use s3_client::prefix::{S3PrefixKey, S3RequestClass};
use s3_client::{ChaosConfig, ChaosStore, ClientError, S3Client};
use tokio::time::Instant;

fn write_key(prefix: &str) -> S3PrefixKey {
    S3PrefixKey {
        prefix: prefix.to_owned(),
        class: S3RequestClass::Write,
    }
}

#[tokio::test(start_paused = true)]
async fn each_prefix_stays_under_s3s_write_rate() {
    let client = S3Client::builder(InMemory::new())
        .concurrency(100)
        .prefix_rate_limits(1)
        .build()
        .unwrap();
    let start = Instant::now();
    // 7,000 writes to "hot/" (two seconds' worth at 3,500/s) and 1,000 to "cold/".
    let calls: Vec<_> = (0..8_000u32)
        .map(|i| {
            let prefix = if i % 8 == 7 { "cold" } else { "hot" };
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .put(&Path::from(format!("{prefix}/{i}")), vec![0u8; 16])
                    .await
                    .unwrap();
                (prefix, Instant::now() - start)
            })
        })
        .collect();
    let (mut hot_done, mut cold_done) = (Duration::ZERO, Duration::ZERO);
    for call in calls {
        let (prefix, at) = call.await.unwrap();
        let slot = if prefix == "hot" {
            &mut hot_done
        } else {
            &mut cold_done
        };
        *slot = (*slot).max(at);
    }
    // GCRA with a burst of a tenth of a second: 7,000 writes need at least (7,000 - 350) /
    // 3,500 s = 1.9 s.
    assert!(
        hot_done >= Duration::from_millis(1_890),
        "hot prefix took {hot_done:?}"
    );
    assert!(
        hot_done <= Duration::from_millis(2_100),
        "hot prefix took {hot_done:?}"
    );
    // The cold prefix has a budget of its own, and hot calls waiting for their turn hold no
    // pool slots: its 1,000 writes need (1,000 - 350) / 3,500 s = 0.19 s, on 100 slots.
    assert!(
        cold_done <= Duration::from_millis(200),
        "cold {cold_done:?}, hot {hot_done:?}"
    );
    let limits = client.prefix_rate_limits().expect("attached");
    assert_eq!(limits.current_rate(&write_key("hot/")), Some(3_500.0));
}

#[tokio::test(start_paused = true)]
async fn a_throttled_prefix_backs_off_multiplicatively() {
    let store = ChaosStore::new(InMemory::new(), ChaosConfig::new(5).slow_down(0.5)).unwrap();
    let client = S3Client::builder(store)
        .concurrency(100)
        .retries(0)
        .prefix_rate_limits(1)
        .build()
        .unwrap();
    for i in 0..200u32 {
        let _ = client
            .put(&Path::from(format!("busy/{i}")), vec![1u8])
            .await;
    }
    let rate = client
        .prefix_rate_limits()
        .and_then(|limits| limits.current_rate(&write_key("busy/")))
        .expect("the prefix was seen");
    assert!(rate <= 3_500.0 / 2.0, "rate after SlowDowns: {rate}");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_on_a_failing_backend_and_fails_fast() {
    let store = Arc::new(
        ChaosStore::new(InMemory::new(), ChaosConfig::new(9).internal_error(1.0)).unwrap(),
    );
    let client = S3Client::builder(store)
        .retries(0)
        .circuit_breaker(
            CircuitBreakerConfig::new()
                .minimum_calls(10)
                .open_duration(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    for i in 0..10u32 {
        assert!(client
            .put(&Path::from(format!("k/{i}")), vec![1u8])
            .await
            .is_err());
    }
    let breaker = client.circuit_breaker().expect("attached");
    assert_eq!(breaker.state(), CircuitState::Open);
    let rejected: ClientError = client
        .put(&Path::from("k/fast"), vec![1u8])
        .await
        .expect_err("the breaker is open");
    match rejected.task_error() {
        TaskError::Rejected(rejection) => assert_eq!(rejection.kind, RejectionKind::CircuitOpen),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        breaker.snapshot().rejected,
        1,
        "the call was refused before reaching the store"
    );
}

#[tokio::test(start_paused = true)]
async fn a_prefix_limiter_kept_elsewhere_plugs_in() {
    use pool_core::policy::{KeyedRateLimiter, RateLimit};
    use pool_core::{Executor, TokioExecutor};
    use s3_client::prefix::s3_prefix_key;
    // Any KeyedRatePolicy: here a local limiter at 10 writes per second (pool-redis'
    // RedisRateLimiter plugs in the same way, with its rates kept in Redis).
    let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
    let limiter = KeyedRateLimiter::builder(
        executor,
        |task: &pool_core::TaskInfo| s3_prefix_key(task, 1),
        |_key: &S3PrefixKey| RateLimit::new(10.0, 1).unwrap(),
    )
    .build()
    .unwrap();
    let client = S3Client::builder(InMemory::new())
        .concurrency(8)
        .prefix_rate_limiter(limiter)
        .build()
        .unwrap();
    let start = Instant::now();
    for i in 0..21u32 {
        client
            .put(&Path::from(format!("slow/{i}")), vec![0u8])
            .await
            .unwrap();
    }
    // 21 writes at 10/s: the first at once, the last 2 s later.
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    let limits = client.prefix_rate_limits().expect("attached");
    assert_eq!(limits.current_rate(&write_key("slow/")), Some(10.0));
}
