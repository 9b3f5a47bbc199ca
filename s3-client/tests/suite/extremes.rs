//! Every count, size and duration an `S3ClientBuilder`, a call or an `S3Config` accepts, at
//! 0, 1 and MAX: `build()` refuses it with an error naming the setting, or the client runs a
//! small workload (puts, a multipart-sized put, gets, a ranged download, an upload from a
//! reader, a list, deletes) over a store that throttles one call in four. Never a panic,
//! never a hang (tokio's paused clock: a wait of a century passes at once).

use std::time::Duration;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use s3_client::{
    BuildError, CallOptions, ChaosConfig, ChaosStore, PoolGroup, S3Client, S3ClientBuilder,
    S3Config, StoreConfig,
};

const DURATIONS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(1),
    Duration::MAX,
];

fn builder() -> S3ClientBuilder {
    let chaos = ChaosConfig::new(7).slow_down(0.25);
    let store = ChaosStore::new(InMemory::new(), chaos).unwrap();
    S3Client::builder(store).retry_delay(Duration::from_millis(1))
}

async fn workload(client: &S3Client, options: CallOptions) {
    let small = Path::from("small");
    let _ = client.put(&small, "body").options(options.clone()).await;
    let big = vec![7u8; 6 * 1024 * 1024];
    let _ = client
        .put(&Path::from("big"), big.clone())
        .options(options.clone())
        .await;
    let _ = client.get(&small).options(options.clone()).await;
    let _ = client.head(&small).options(options.clone()).await;
    let _ = client
        .download_to(&Path::from("big"), Vec::new())
        .options(options.clone())
        .await;
    let _ = client
        .upload_from(&Path::from("uploaded"), std::io::Cursor::new(big))
        .options(options.clone())
        .await;
    let _ = client.list(None).try_collect::<Vec<_>>().await;
    let _ = client.delete(&small).options(options).await;
    if let Some(pool) = client.pool() {
        pool.drain().await;
        assert!(pool.stats().in_balance(), "{:?}", pool.stats());
    }
}

async fn check(setting: &str, value: String, builder: S3ClientBuilder) {
    match builder.build() {
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains(setting),
                "{setting} = {value}: the error does not name the setting: {text}"
            );
            assert!(matches!(
                error,
                BuildError::Setting { .. } | BuildError::Pool(_)
            ));
        }
        Ok(client) => workload(&client, CallOptions::new()).await,
    }
}

#[tokio::test(start_paused = true)]
async fn builder_settings_at_their_extremes() {
    for n in [0, 1, usize::MAX] {
        let v = n.to_string();
        check("concurrency", v.clone(), builder().concurrency(n)).await;
        check("part_concurrency", v.clone(), builder().part_concurrency(n)).await;
        check("part_size", v.clone(), builder().part_size(n)).await;
        check(
            "multipart_threshold",
            v.clone(),
            builder().multipart_threshold(n),
        )
        .await;
        check(
            "part_size",
            format!("{v} with the threshold at MAX"),
            builder().part_size(n).multipart_threshold(usize::MAX),
        )
        .await;
        #[cfg(feature = "protection")]
        check(
            "prefix_rate_limits",
            v.clone(),
            builder().prefix_rate_limits(n),
        )
        .await;
    }
    for n in [0, 1, u64::MAX] {
        check(
            "max_bytes_in_flight",
            n.to_string(),
            builder().max_bytes_in_flight(n),
        )
        .await;
    }
    for n in [0, 1, u32::MAX] {
        check("retries", n.to_string(), builder().retries(n)).await;
    }
    for d in DURATIONS {
        let v = format!("{d:?}");
        check(
            "retry_delay",
            v.clone(),
            builder()
                .retry_delay(d)
                .configure_pool(|pool| pool.max_retry_delay(Duration::MAX)),
        )
        .await;
        check("timeout", v, builder().timeout(d)).await;
    }
    for n in [1, usize::MAX] {
        let group = PoolGroup::new(n).unwrap();
        check("group", n.to_string(), builder().group(group)).await;
    }
    assert!(PoolGroup::new(0).is_err());
}

#[tokio::test(start_paused = true)]
async fn call_options_at_their_extremes() {
    let client = builder().build().unwrap();
    for d in DURATIONS {
        workload(&client, CallOptions::new().timeout(d)).await;
    }
    for n in [0, 1, u32::MAX] {
        workload(&client, CallOptions::new().retries(n)).await;
    }
    for p in [i32::MIN, 0, i32::MAX] {
        workload(&client, CallOptions::new().priority(p)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn store_retries_at_their_extremes() {
    for n in [0, 1, usize::MAX] {
        let config = S3Config::new("bucket")
            .with_endpoint("http://127.0.0.1:1")
            .with_store_retries(n);
        let store = StoreConfig::s3(config).build().unwrap();
        let client = S3Client::builder_arc(store).retries(0).build().unwrap();
        // Nothing listens: each of object_store's own retries fails at once, and its
        // backoff runs on tokio's paused clock.
        assert!(client.head(&Path::from("k")).await.is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn chaos_settings_at_their_extremes() {
    for p in [0.0, 1.0, -1.0, 2.0, f64::NAN, f64::INFINITY] {
        let configs = [
            ChaosConfig::new(1).slow_down(p),
            ChaosConfig::new(1).latency(p, Duration::ZERO..Duration::MAX),
            ChaosConfig::new(1).hang(p).hang_for(Duration::MAX),
        ];
        for config in configs {
            if let Ok(store) = ChaosStore::new(InMemory::new(), config) {
                let client = S3Client::builder(store)
                    .retries(1)
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                workload(&client, CallOptions::new()).await;
            }
        }
    }
}
