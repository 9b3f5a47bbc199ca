//! pool-metrics and pool-tuning attached to a client (features `metrics` and `tuning`).

use object_store::memory::InMemory;
use object_store::path::Path;
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
use pool_tuning::KneeConfig;
use s3_client::{ChaosConfig, ChaosStore, S3Client};

#[tokio::test(start_paused = true)]
async fn metrics_see_every_call() {
    let metrics = Metrics::new(MetricsConfig::default().memory(MemoryMode::Light)).unwrap();
    let client = S3Client::builder(InMemory::new())
        .metrics(metrics)
        .build()
        .unwrap();
    for i in 0..20 {
        client
            .put(&Path::from(format!("m/{i}")), "x")
            .await
            .unwrap();
    }
    let _ = client.get(&Path::from("absent")).await.unwrap_err();
    let aggregate = client.metrics().unwrap().aggregate_all();
    assert_eq!(aggregate.finished, 21);
    assert!(client.metrics().unwrap().prometheus().contains("21"));
}

#[tokio::test(start_paused = true)]
async fn auto_concurrency_starts_within_its_bounds() {
    let config = KneeConfig::builder().min(4).max(48).build().unwrap();
    let client = S3Client::builder(InMemory::new())
        .auto_concurrency(config)
        .build()
        .unwrap();
    let concurrency = client.stats().unwrap().concurrency;
    assert!((4..=48).contains(&concurrency), "{concurrency}");
    client.put(&Path::from("t"), "x").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn throttling_from_the_store_lowers_the_tuned_concurrency() {
    let latency = std::time::Duration::from_millis(20)..std::time::Duration::from_millis(30);
    let chaos = ChaosConfig::new(3).latency(1.0, latency).slow_down(0.3);
    let config = KneeConfig::builder().min(2).max(64).build().unwrap();
    let client = S3Client::builder(ChaosStore::new(InMemory::new(), chaos).unwrap())
        .auto_concurrency(config)
        .retry_delay(std::time::Duration::from_millis(10))
        .build()
        .unwrap();
    let initial = client.stats().unwrap().concurrency;
    let calls = (0..3_000).map(|i| {
        let call = client.put(&Path::from(format!("t/{i}")), "x");
        async move {
            let _ = call.await;
        }
    });
    futures::future::join_all(calls).await;
    let after = client.stats().unwrap().concurrency;
    assert!(
        after < initial,
        "30 % SlowDown must lower the limit: {initial} -> {after}"
    );
}
