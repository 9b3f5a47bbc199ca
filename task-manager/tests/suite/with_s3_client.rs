//! TaskManager × S3Client as the README recommends: one limit and one retry layer (the
//! manager's), the client sending each call straight to the store, its errors classified
//! by themselves (`ClientError: Retryable`). And the client sharing the manager's pool: its
//! calls from inside the manager's tasks run on those tasks' slots, never waiting for one.

use std::time::Duration;

use futures::StreamExt;

use s3_client::object_store::memory::InMemory;
use s3_client::testing::S3TestServer;
use s3_client::{CallOptions, ChaosConfig, ChaosStore, ClientError, Path, S3Client};
use task_manager::{TaskError, TaskManager};

#[tokio::test(start_paused = true)]
async fn the_manager_retries_client_errors_by_their_class_without_a_classifier() {
    // One call in five answered 503 SlowDown.
    let chaos = ChaosStore::new(InMemory::new(), ChaosConfig::new(7).slow_down(0.2)).unwrap();
    let client = S3Client::builder(chaos).without_pool().build().unwrap();
    let manager = TaskManager::builder()
        .concurrency(16)
        .retries(10)
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap();

    let keys: Vec<Path> = (0..500).map(|i| Path::from(format!("in/{i}"))).collect();
    let upload = client.clone();
    let report = manager
        .process(keys.clone(), move |key: Path| {
            let client = upload.clone();
            async move { client.put(&key, "x").await }
        })
        .await;

    assert!(report.all_succeeded(), "{:?}", report.errors.first());
    let stats = manager.stats();
    assert!(stats.pool.retries > 50, "503s were retried: {stats:?}");
    assert!(
        client.stats().is_none(),
        "the client has no pool of its own"
    );

    // A 404 is fatal: one attempt, no retry.
    let reader = S3Client::builder(InMemory::new())
        .without_pool()
        .build()
        .unwrap();
    let retries_before = manager.stats().pool.retries;
    let missing = manager
        .process_corresponding([Path::from("nowhere")], move |key: Path| {
            let client = reader.clone();
            async move { client.head(&key).await }
        })
        .await;
    let error: &TaskError<ClientError> = missing[0].as_ref().unwrap_err();
    assert!(
        matches!(error, TaskError::Failed { attempts: 1, .. }),
        "{error}"
    );
    assert!(error.task_error().unwrap().is_not_found(), "{error}");
    assert_eq!(manager.stats().pool.retries, retries_before);
}

#[tokio::test(start_paused = true)]
async fn runs_are_futures_for_spawn_and_join_all() {
    let manager = TaskManager::builder().concurrency(4).build().unwrap();
    let square = |n: u32| async move { Ok::<_, std::io::Error>(n * n) };
    let collected = tokio::spawn(manager.process(0..5u32, square));
    let in_order = manager.process_corresponding(5..8u32, square);
    let both = futures::future::join(collected, in_order).await;
    assert_eq!(
        both.0.unwrap().results,
        [Some(0), Some(1), Some(4), Some(9), Some(16)]
    );
    let in_order: Vec<u32> = both.1.into_iter().map(Result::unwrap).collect();
    assert_eq!(in_order, [25, 36, 49]);
    let runs = (0..3u32).map(|i| manager.process_corresponding([i], square));
    let all = futures::future::join_all(runs).await;
    assert_eq!(all.len(), 3);
}

/// Long enough that only a hang reaches it on a loaded machine.
const HANG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sharing_the_managers_pool_never_waits_for_a_slot_its_caller_holds() {
    let server = S3TestServer::start().await.unwrap();
    let manager = TaskManager::builder()
        .concurrency(4)
        .retries(2)
        .build()
        .unwrap();
    let client = S3Client::builder_arc(server.store().unwrap())
        .shared_pool(manager.pool().clone())
        .build()
        .unwrap();

    // 40 items on 4 slots: every slot is held by an item whose calls go through the same
    // pool — a put, a get, then a batch of 3 puts awaited at once.
    let items: Vec<u32> = (0..40).collect();
    let worker = client.clone();
    let run = manager.process(items, move |i: u32| {
        let client = worker.clone();
        async move {
            let path = Path::from(format!("nested/{i}/item"));
            client.put(&path, format!("item {i}")).await?;
            let body = client.get(&path).await?;
            let parts = (0..3).map(|part| {
                let path = Path::from(format!("nested/{i}/part-{part}"));
                (path, format!("{i}.{part}").into())
            });
            let batch = client.put_batch(parts, CallOptions::new()).await;
            assert!(batch.all_succeeded(), "{:?}", batch.errors);
            Ok::<_, ClientError>(body.len())
        }
    });
    let report = tokio::time::timeout(HANG, run)
        .await
        .expect("the run hung: nested calls waited for slots their callers held");

    assert!(report.all_succeeded(), "{:?}", report.errors.first());
    assert_eq!(report.results.len(), 40);
    let pool = manager.stats().pool;
    assert!(pool.in_balance(), "{pool:?}");
    // 40 items, and 5 calls each (put, get, 3 batch puts), all through the one pool.
    assert_eq!(pool.enqueued, 40 + 40 * 5, "{pool:?}");
    let listed: Vec<_> = client.list(Some(&Path::from("nested"))).collect().await;
    assert_eq!(listed.len(), 40 * 4);
    assert!(listed.iter().all(Result::is_ok));
}

/// The builders are `Clone` (a compile-time check), a clone keeping every setting.
#[test]
fn the_builders_are_clone() {
    fn clone<T: Clone>(value: &T) -> T {
        value.clone()
    }
    let manager = clone(&TaskManager::builder().concurrency(3));
    let client = clone(&S3Client::builder(InMemory::new()).concurrency(5));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(manager.build().unwrap().concurrency(), 3);
        assert_eq!(client.build().unwrap().stats().unwrap().concurrency, 5);
    });
}
