//! S3Client behaviour over InMemory, on virtual time: pool defaults, per-call options,
//! control, batches, delete-many, listing, shared pools and group caps.

use crate::support;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use pool_core::{ConfigError, Event, Metadata, Observer, Pool, TaskError};
use s3_client::{
    BuildError, CallOptions, ChaosConfig, ChaosStore, ControlError, PoolGroup, PooledStore,
    S3Client,
};
use support::ClassRecorder;

fn memory_client() -> S3Client {
    S3Client::builder(InMemory::new()).build().unwrap()
}

/// A store where every call takes 10 ms of (virtual) time, so calls overlap.
fn slow_store() -> Arc<dyn ObjectStore> {
    let latency = Duration::from_millis(10)..Duration::from_millis(10);
    Arc::new(ChaosStore::new(InMemory::new(), ChaosConfig::new(1).latency(1.0, latency)).unwrap())
}

#[tokio::test(start_paused = true)]
async fn defaults_match_the_original_client() {
    let client = memory_client();
    let stats = client.stats().unwrap();
    assert_eq!(stats.concurrency, 10);
    assert!(!stats.paused && !stats.stopped);
}

#[tokio::test(start_paused = true)]
async fn every_call_is_a_pool_task_unless_it_bypasses_the_pool() {
    let client = memory_client();
    let path = Path::from("k");
    client.put(&path, "v").await.unwrap();
    client.get(&path).await.unwrap();
    client.head(&path).bypass_pool().await.unwrap();
    assert_eq!(client.stats().unwrap().succeeded, 2);
}

#[tokio::test(start_paused = true)]
async fn the_client_as_an_object_store_shares_its_pool() {
    let client = memory_client();
    let store = client.as_object_store();
    store
        .put(&Path::from("via-store"), "v".into())
        .await
        .unwrap();
    assert_eq!(
        &client.get(&Path::from("via-store")).await.unwrap()[..],
        b"v"
    );
    assert_eq!(client.stats().unwrap().succeeded, 2);
}

#[tokio::test(start_paused = true)]
async fn pooled_store_reads_call_options_from_extensions() {
    let chaos = ChaosStore::new(InMemory::new(), ChaosConfig::new(5).slow_down(1.0)).unwrap();
    let pool = Pool::builder().retries(3).build().unwrap();
    let store = PooledStore::new(chaos, pool.clone());

    let mut no_retries = object_store::PutOptions::default();
    no_retries.extensions.insert(CallOptions::new().retries(0));
    let err = store
        .put_opts(&Path::from("a"), "v".into(), no_retries)
        .await
        .unwrap_err();
    assert_eq!(s3_client::http_status(&err), Some(503));
    assert_eq!(store.inner().stats().calls, 1);
    assert_eq!(pool.stats().retries, 0);

    let mut bypass = object_store::PutOptions::default();
    bypass.extensions.insert(CallOptions::new().bypass_pool());
    let _ = store.put_opts(&Path::from("b"), "v".into(), bypass).await;
    assert_eq!(
        pool.stats().enqueued,
        1,
        "the bypassing call skipped the pool"
    );
}

#[tokio::test(start_paused = true)]
async fn per_call_options_and_labels_reach_the_pool() {
    let recorder = ClassRecorder::default();
    let client = S3Client::builder(InMemory::new())
        .observer(recorder.clone())
        .build()
        .unwrap();
    client
        .put(&Path::from("labelled"), "v")
        .priority(7)
        .retries(0)
        .timeout(Duration::from_secs(1))
        .metadata(Metadata::new().with("tenant", "acme"))
        .await
        .unwrap();
    let labels = recorder.snapshot(|r| r.labels.clone());
    for expected in [("tenant", "acme"), ("op", "put"), ("key", "labelled")] {
        assert!(
            labels
                .iter()
                .any(|(k, v)| (k.as_str(), v.as_str()) == expected),
            "{expected:?} missing from {labels:?}"
        );
    }
}

/// Records like `ClassRecorder` but says it reads no labels.
#[derive(Debug, Clone, Default)]
struct LabelBlind(ClassRecorder);

impl Observer for LabelBlind {
    fn on_event(&self, event: &Event) {
        self.0.on_event(event);
    }

    fn reads_labels(&self) -> bool {
        false
    }
}

/// A pool on which nothing reads labels gets no `op` / `key` labels from the client (they
/// would cost each call two allocations for nobody); the caller's own labels still reach it.
#[tokio::test(start_paused = true)]
async fn calls_are_labelled_only_when_something_reads_labels() {
    let blind = LabelBlind::default();
    let client = S3Client::builder(InMemory::new())
        .observer(blind.clone())
        .build()
        .unwrap();
    assert!(!client.pool().unwrap().reads_labels());
    client
        .put(&Path::from("unlabelled"), "v")
        .metadata(Metadata::new().with("tenant", "acme"))
        .await
        .unwrap();
    let labels = blind.0.snapshot(|r| r.labels.clone());
    assert_eq!(labels, [("tenant".to_owned(), "acme".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_holds_and_can_change() {
    // A group far above the limit only measures the peak in flight.
    let meter = PoolGroup::new(1_000).unwrap();
    let client = S3Client::builder_arc(slow_store())
        .concurrency(4)
        .group(meter.clone())
        .build()
        .unwrap();
    let calls = (0..40).map(|i| client.put(&Path::from(format!("c/{i}")), "x").into_future());
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(meter.peak_in_flight(), 4);
    client.set_concurrency(16).unwrap();
    assert_eq!(client.stats().unwrap().concurrency, 16);
    assert!(matches!(
        client.set_concurrency(0),
        Err(ControlError::Config(ConfigError::ZeroConcurrency))
    ));
}

#[tokio::test(start_paused = true)]
async fn pause_holds_calls_until_resume() {
    let client = memory_client();
    client.pause();
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.put(&Path::from("held"), "v").await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = client.stats().unwrap();
    assert!(stats.paused);
    assert_eq!((stats.queued, stats.succeeded), (1, 0));
    client.resume();
    pending.await.unwrap().unwrap();
    client.drain().await;
    assert_eq!(client.stats().unwrap().succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn stop_fails_later_calls_with_stopped() {
    let client = memory_client();
    client.stop().await;
    let err = client.put(&Path::from("late"), "v").await.unwrap_err();
    assert!(matches!(err.task_error(), TaskError::Stopped), "{err}");
    assert!(err.store_error().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_client_without_pool_calls_the_store_directly() {
    let client = S3Client::builder(InMemory::new())
        .without_pool()
        .build()
        .unwrap();
    assert!(client.stats().is_none());
    assert!(matches!(
        client.set_concurrency(3),
        Err(ControlError::PoolDisabled)
    ));
    client.put(&Path::from("direct"), "v").await.unwrap();
    let err = client.get(&Path::from("absent")).await.unwrap_err();
    assert!(matches!(
        err.task_error(),
        TaskError::Failed { attempts: 1, .. }
    ));
    let batch = client
        .put_batch(
            (0..5).map(|i| (Path::from(format!("b/{i}")), "x".into())),
            CallOptions::new(),
        )
        .await;
    assert!(batch.all_succeeded());
}

#[tokio::test(start_paused = true)]
async fn batches_keep_input_order_and_call_back_per_item() {
    let client = memory_client();
    client.put(&Path::from("g/0"), "zero").await.unwrap();
    client.put(&Path::from("g/2"), "two").await.unwrap();
    let completed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let result = client
        .get_batch(
            ["g/0", "g/1", "g/2"].map(Path::from),
            CallOptions::new().retries(0),
        )
        .on_item_complete({
            let completed = Arc::clone(&completed);
            move |_, _| {
                completed.fetch_add(1, Ordering::Relaxed);
            }
        })
        .on_item_error({
            let failed = Arc::clone(&failed);
            move |index, _| failed.lock().unwrap().push(index)
        })
        .await;
    let bodies: Vec<Option<&[u8]>> = result.results.iter().map(|r| r.as_deref()).collect();
    assert_eq!(bodies, vec![Some(&b"zero"[..]), None, Some(&b"two"[..])]);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].index, 1);
    assert_eq!(completed.load(Ordering::Relaxed), 2);
    assert_eq!(*failed.lock().unwrap(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn delete_many_removes_every_path_in_chunks() {
    let client = memory_client();
    let paths: Vec<Path> = (0..2_345)
        .map(|i| Path::from(format!("del/{i:05}")))
        .collect();
    let batch = client
        .put_batch(
            paths.iter().map(|p| (p.clone(), "x".into())),
            CallOptions::new(),
        )
        .await;
    assert!(batch.all_succeeded());
    let processed_before = client.stats().unwrap().succeeded;

    let mut deleted = client.delete_many(paths.clone()).await.unwrap();

    deleted.sort();
    assert_eq!(deleted, paths);
    assert_eq!(
        client.stats().unwrap().succeeded - processed_before,
        3,
        "3 chunks of ≤ 1000"
    );
    assert_eq!(client.list(Some(&Path::from("del"))).count().await, 0);
    // Deleting what is gone is success.
    assert_eq!(
        client.delete_many(paths[..3].to_vec()).await.unwrap().len(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn listing_streams_every_entry_once() {
    let client = memory_client();
    let batch = client
        .put_batch(
            (0..2_500).map(|i| (Path::from(format!("list/{i:05}")), "x".into())),
            CallOptions::new(),
        )
        .await;
    assert!(batch.all_succeeded());
    let mut listed: Vec<String> = client
        .list(Some(&Path::from("list")))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), 2_500);
    // A consumer that stops early does not leave the listing task running.
    let first: Vec<_> = client.list(None).take(3).collect().await;
    assert_eq!(first.len(), 3);
    client.drain().await;
    assert_eq!(client.stats().unwrap().active, 0);
}

#[tokio::test(start_paused = true)]
async fn listing_retries_after_a_failure_without_repeating_entries() {
    let chaos = Arc::new(
        ChaosStore::new(InMemory::new(), ChaosConfig::new(3).internal_error(0.5)).unwrap(),
    );
    let client = S3Client::builder_arc(chaos.clone())
        .retries(10)
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    for i in 0..50 {
        client
            .put(&Path::from(format!("l/{i:02}")), "x")
            .await
            .unwrap();
    }
    let listed: Vec<_> = client
        .list(Some(&Path::from("l")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 50);
    assert!(chaos.stats().internal_errors > 0);
}

#[tokio::test(start_paused = true)]
async fn clients_with_a_shared_pool_share_its_limit_and_stats() {
    let pool = Pool::builder().concurrency(3).build().unwrap();
    let a = S3Client::builder(InMemory::new())
        .shared_pool(pool.clone())
        .build()
        .unwrap();
    let b = S3Client::builder(InMemory::new())
        .shared_pool(pool.clone())
        .build()
        .unwrap();
    a.put(&Path::from("x"), "1").await.unwrap();
    b.put(&Path::from("y"), "2").await.unwrap();
    assert_eq!(pool.stats().succeeded, 2);
    assert_eq!(a.stats().unwrap().succeeded, 2);
    // Separate pools by default.
    let c = memory_client();
    assert_eq!(c.stats().unwrap().succeeded, 0);
}

#[tokio::test(start_paused = true)]
async fn a_group_caps_in_flight_requests_across_clients() {
    let group = PoolGroup::new(4).unwrap();
    let clients: Vec<S3Client> = (0..3)
        .map(|_| {
            S3Client::builder_arc(slow_store())
                .concurrency(10)
                .group(group.clone())
                .build()
                .unwrap()
        })
        .collect();
    let calls = clients.iter().flat_map(|client| {
        (0..20).map(move |i| client.put(&Path::from(format!("g/{i}")), "x").into_future())
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(
        group.peak_in_flight(),
        4,
        "the cap is reached and never exceeded"
    );
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_group_also_caps_bypassing_calls_and_other_pools() {
    let group = PoolGroup::new(3).unwrap();
    let client = S3Client::builder_arc(slow_store())
        .concurrency(10)
        .group(group.clone())
        .build()
        .unwrap();
    let other_pool = Pool::builder()
        .concurrency(10)
        .admission(group.clone())
        .build()
        .unwrap();
    let other = &PooledStore::new(slow_store(), other_pool);

    let pooled = (0..10).map(|i| client.put(&Path::from(format!("p/{i}")), "x").into_future());
    let bypassing = (0..10).map(|i| {
        client
            .put(&Path::from(format!("b/{i}")), "x")
            .bypass_pool()
            .into_future()
    });
    let pooled_calls = futures::future::join_all(pooled.chain(bypassing));
    let other_calls = futures::future::join_all(
        (0..10).map(|i| async move { other.put(&Path::from(format!("o/{i}")), "x".into()).await }),
    );
    let (results, other_results) = tokio::join!(pooled_calls, other_calls);
    assert!(results.iter().all(Result::is_ok));
    assert!(other_results.iter().all(Result::is_ok));
    assert_eq!(group.peak_in_flight(), 3);
}

#[tokio::test(start_paused = true)]
async fn bad_builder_settings_are_typed_errors_naming_the_field() {
    let err = S3Client::builder(InMemory::new())
        .concurrency(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BuildError::Pool(ConfigError::ZeroConcurrency)),
        "{err}"
    );
    let err = S3Client::builder(InMemory::new())
        .part_size(1024)
        .build()
        .unwrap_err();
    assert!(err.to_string().starts_with("part_size"), "{err}");
    let err = S3Client::builder(InMemory::new())
        .part_concurrency(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().starts_with("part_concurrency"), "{err}");
    let err = S3Client::builder(InMemory::new())
        .retries(2)
        .without_pool()
        .build()
        .unwrap_err();
    assert!(err.to_string().starts_with("pool"), "{err}");
    assert!(PoolGroup::new(0).is_err());
    let err = S3Client::from_url("s3://Bad_Bucket").unwrap_err();
    assert!(err.to_string().contains("bucket `Bad_Bucket`"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_call_ends_at_its_deadline_and_a_pooled_store_says_so() {
    // Every request answers 503 and retries come 1 s, 2 s… apart: with a deadline 1.5 s
    // away, the retry after the second attempt would start past it.
    let chaos = || ChaosStore::new(InMemory::new(), ChaosConfig::new(5).slow_down(1.0)).unwrap();
    let pool = || {
        Pool::builder()
            .retries(5)
            .retry_delay(Duration::from_secs(1))
            .jitter(pool_core::Jitter::None)
            .build()
            .unwrap()
    };
    let path = Path::from("late");
    let recorder = ClassRecorder::default();
    let client = S3Client::builder(chaos())
        .configure_pool(|builder| {
            builder
                .retries(5)
                .retry_delay(Duration::from_secs(1))
                .jitter(pool_core::Jitter::None)
        })
        .observer(recorder.clone())
        .build()
        .unwrap();
    let deadline = client.pool().unwrap().now() + Duration::from_millis(1_500);
    let err = client
        .get(&path)
        .deadline(deadline)
        .tenant("acme")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.task_error(),
            TaskError::DeadlineExceeded {
                last: Some(pool_core::LastFailure::Error(_)),
                shed: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(client.pool().unwrap().now() < deadline, "ended before it");
    assert_eq!(err.error_class(), pool_core::ErrorClass::Fatal);
    assert!(
        recorder.snapshot(|r| r.tenants.iter().all(|t| t == "acme") && !r.tenants.is_empty()),
        "the call's tenant reached the pool"
    );

    // Through the object_store interface the error names the deadline, with the store's
    // last error, instead of passing the 503 off as the reason.
    let pool = pool();
    let store = PooledStore::new(chaos(), pool.clone());
    let mut options = object_store::GetOptions::default();
    options
        .extensions
        .insert(CallOptions::new().deadline(pool.now() + Duration::from_millis(1_500)));
    let err = store.get_opts(&path, options).await.unwrap_err();
    let object_store::Error::Generic { source, .. } = &err else {
        panic!("{err}");
    };
    let failure = source
        .downcast_ref::<s3_client::PoolFailure>()
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(failure.kind(), "deadline_exceeded");
    assert!(failure.to_string().contains("503"), "{failure}");
}
