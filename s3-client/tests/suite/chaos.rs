//! The chaos store under the client: every write the client reports is readable and
//! byte-identical, every failure names its key, nothing is left pending, retries stay in
//! budget — on InMemory (virtual time) and on the real loopback S3 server.

use crate::support;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use pool_core::{Pool, TaskError};
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{ChaosConfig, ChaosConfigError, ChaosStore, FaultKind, PooledStore, S3Client};
use support::ClassRecorder;

const RETRIES: u32 = 3;

fn body_of(index: usize) -> Bytes {
    let mut body = format!("object-{index}-").into_bytes();
    body.extend_from_slice(&support::random_bytes(index as u64, 64 + index % 200));
    body.into()
}

fn path_of(index: usize) -> Path {
    Path::from(format!("chaos/{index:06}"))
}

/// What a chaos run saw.
#[derive(Debug, Default)]
struct Tally {
    written: usize,
    failed: usize,
}

type PutOutcome = (
    usize,
    Result<object_store::PutResult, s3_client::ClientError>,
);

/// Puts `count` objects through `client`, with twice its concurrency outstanding.
async fn put_all(client: &S3Client, count: usize) -> Vec<PutOutcome> {
    let outstanding = 2 * client.stats().unwrap().concurrency;
    let results: Vec<PutOutcome> = futures::stream::iter(0..count)
        .map(|index| {
            let put = client.put(&path_of(index), body_of(index)).into_future();
            async move { (index, put.await) }
        })
        .buffer_unordered(outstanding)
        .collect()
        .await;
    assert_eq!(results.len(), count, "every call resolved");
    results
}

/// Checks every reported write against `truth` (the store under the chaos) and every
/// failure's key and attempts.
async fn verify(results: Vec<PutOutcome>, truth: &dyn ObjectStore) -> Tally {
    let mut tally = Tally::default();
    for (index, result) in results {
        match result {
            Ok(_) => {
                tally.written += 1;
                let stored = truth
                    .get(&path_of(index))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert_eq!(stored, body_of(index), "object {index} differs");
            }
            Err(error) => {
                tally.failed += 1;
                assert_eq!(
                    error.path(),
                    path_of(index).as_ref(),
                    "failure names its key"
                );
                let attempts = match error.task_error() {
                    TaskError::Failed { attempts, .. }
                    | TaskError::TimedOut { attempts, .. }
                    | TaskError::RetryBudgetExhausted { attempts, .. } => *attempts,
                    TaskError::Panicked(_) => 1,
                    other => panic!("unexpected failure for {index}: {other}"),
                };
                assert!(attempts <= RETRIES + 1, "{error}");
            }
        }
    }
    tally
}

fn chaotic_config(seed: u64) -> ChaosConfig {
    ChaosConfig::new(seed)
        .slow_down(0.05)
        .internal_error(0.01)
        .connection_reset(0.01)
        .hang(0.01)
        .panic(0.001)
        .latency(0.2, Duration::from_millis(1)..Duration::from_millis(20))
}

async fn chaos_over_memory(count: usize) {
    s3_client::testing::quiet_injected_panics();
    let chaos = Arc::new(ChaosStore::new(InMemory::new(), chaotic_config(2024)).unwrap());
    let recorder = ClassRecorder::default();
    let client = S3Client::builder_arc(chaos.clone())
        .concurrency(32)
        .retries(RETRIES)
        .retry_delay(Duration::from_millis(10))
        .timeout(Duration::from_secs(1))
        .observer(recorder.clone())
        .build()
        .unwrap();

    let results = put_all(&client, count).await;
    let tally = verify(results, chaos.inner()).await;

    let stats = client.stats().unwrap();
    let faults = chaos.stats();
    println!("{count} puts: {tally:?}, {faults:?}, pool {stats:?}");
    assert_eq!(tally.written + tally.failed, count);
    assert_eq!(stats.succeeded as usize, tally.written);
    assert_eq!(stats.failed as usize, tally.failed);
    assert!(stats.in_balance(), "{stats:?}");
    assert_eq!((stats.queued, stats.active, stats.retrying), (0, 0, 0));
    assert!(recorder.snapshot(|r| r.max_attempt) <= RETRIES + 1);
    assert!(
        faults.slow_downs > 0 && faults.hangs > 0 && faults.panics > 0,
        "{faults:?}"
    );
    assert!(
        stats.retries > 0 && stats.retries <= faults.faults(),
        "{stats:?} {faults:?}"
    );
    // With 3 retries almost every object gets through.
    assert!(tally.written * 100 >= count * 99, "{tally:?}");
}

#[tokio::test(start_paused = true)]
async fn every_reported_write_is_readable_under_chaos() {
    chaos_over_memory(5_000).await;
}

#[tokio::test(start_paused = true)]
#[ignore = "100,000 puts: run with --ignored (nightly)"]
async fn hundred_thousand_puts_under_chaos() {
    chaos_over_memory(100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reported_write_is_readable_under_chaos_over_real_http() {
    s3_client::testing::quiet_injected_panics();
    let server = S3TestServer::start().await.unwrap();
    let config = ChaosConfig::new(77)
        .connection_reset(0.02)
        .hang(0.01)
        .panic(0.002)
        .internal_error(0.01);
    let truth = server.store().unwrap();
    let chaos = Arc::new(ChaosStore::new(Arc::clone(&truth), config).unwrap());
    let client = S3Client::builder_arc(chaos.clone())
        .concurrency(16)
        .retries(RETRIES)
        .retry_delay(Duration::from_millis(5))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    server
        .faults()
        .set_probability(0.05, InjectedResponse::SlowDown, 5);

    let results = put_all(&client, 300).await;
    server.faults().clear();
    let tally = verify(results, truth.as_ref()).await;

    println!(
        "300 puts over HTTP: {tally:?}, {:?}, server 503s {}",
        chaos.stats(),
        server.faults().injected()
    );
    assert!(server.faults().injected() > 0);
    assert!(client.stats().unwrap().in_balance());
    assert!(tally.written >= 290, "{tally:?}");
}

#[tokio::test(start_paused = true)]
async fn whole_multipart_uploads_are_retried_after_an_aborted_part() {
    let chaos = Arc::new(
        ChaosStore::new(InMemory::new(), ChaosConfig::new(8).multipart_abort(0.5)).unwrap(),
    );
    let client = S3Client::builder_arc(chaos.clone())
        .retries(10)
        .retry_delay(Duration::from_millis(1))
        .part_size(5 * 1024 * 1024)
        .multipart_threshold(5 * 1024 * 1024)
        .build()
        .unwrap();
    let body = support::random_bytes(12, 12 * 1024 * 1024);
    client.put(&Path::from("mp"), body.clone()).await.unwrap();
    assert!(chaos.stats().multipart_aborts > 0, "{:?}", chaos.stats());
    assert!(client.get(&Path::from("mp")).await.unwrap() == body);
}

#[tokio::test(start_paused = true)]
async fn an_aborted_part_fails_a_pooled_multipart_upload() {
    let chaos = ChaosStore::new(InMemory::new(), ChaosConfig::new(1).multipart_abort(1.0)).unwrap();
    let store = PooledStore::new(chaos, Pool::builder().build().unwrap());
    let upload = store.put_multipart(&Path::from("mp")).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
    writer.put(support::random_bytes(1, 6 * 1024 * 1024));
    let err = writer.finish().await.unwrap_err();
    assert!(
        err.to_string().contains("multipart upload aborted"),
        "{err}"
    );
    assert!(store.inner().stats().multipart_aborts >= 1);
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_injects_the_same_faults() {
    async fn run(seed: u64) -> Vec<Option<FaultKind>> {
        let config = ChaosConfig::new(seed).slow_down(0.3).internal_error(0.2);
        let store = ChaosStore::new(InMemory::new(), config).unwrap();
        let mut kinds = Vec::new();
        for i in 0..50 {
            let result = store.put(&Path::from(format!("s/{i}")), "x".into()).await;
            kinds.push(result.err().map(|e| fault_kind(&e)));
        }
        kinds
    }
    let first = run(99).await;
    assert_eq!(first, run(99).await);
    assert_ne!(first, run(100).await);
    assert!(first.contains(&Some(FaultKind::SlowDown)));
    assert!(first.contains(&Some(FaultKind::InternalError)));
    assert!(first.contains(&None));
}

fn fault_kind(error: &object_store::Error) -> FaultKind {
    let object_store::Error::Generic { source, .. } = error else {
        panic!("not an injected fault: {error}")
    };
    source
        .downcast_ref::<s3_client::InjectedFault>()
        .expect("an InjectedFault source")
        .kind()
}

#[tokio::test(start_paused = true)]
async fn connection_resets_happen_after_the_write_took_effect() {
    let store =
        ChaosStore::new(InMemory::new(), ChaosConfig::new(4).connection_reset(1.0)).unwrap();
    let err = store
        .put(&Path::from("r"), "kept".into())
        .await
        .unwrap_err();
    assert_eq!(fault_kind(&err), FaultKind::ConnectionReset);
    assert_eq!(s3_client::classify(&err), pool_core::ErrorClass::Retryable);
    let kept = store
        .inner()
        .get(&Path::from("r"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&kept[..], b"kept");
}

#[test]
fn bad_chaos_settings_are_refused() {
    let err = ChaosStore::new(InMemory::new(), ChaosConfig::new(0).slow_down(1.5)).unwrap_err();
    assert!(
        matches!(
            err,
            ChaosConfigError::Probability {
                field: "slow_down",
                ..
            }
        ),
        "{err}"
    );
    let err = ChaosStore::new(InMemory::new(), ChaosConfig::new(0).hang(f64::NAN)).unwrap_err();
    assert!(err.to_string().contains("hang"), "{err}");
    let err = ChaosStore::new(
        InMemory::new(),
        ChaosConfig::new(0).slow_down(0.6).panic(0.6),
    )
    .unwrap_err();
    assert!(
        matches!(err, ChaosConfigError::TotalAboveOne { .. }),
        "{err}"
    );
    let empty = Duration::from_millis(5)..Duration::from_millis(1);
    let err =
        ChaosStore::new(InMemory::new(), ChaosConfig::new(0).latency(0.5, empty)).unwrap_err();
    assert!(
        matches!(err, ChaosConfigError::LatencyRange { .. }),
        "{err}"
    );
}
