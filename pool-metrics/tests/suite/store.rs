//! The bounded per-task store: lookup by id, first-in-first-out eviction in finishing order.

use crate::support;

use pool_core::{Metadata, Pool, TaskId, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
use support::{ms, Scripted};

fn metrics_keeping(capacity: usize) -> Metrics {
    let config = MetricsConfig::default()
        .memory(MemoryMode::Light)
        .task_store_capacity(capacity);
    Metrics::new(config).unwrap()
}

/// Runs tasks that sleep the given durations (virtual ms), all at once; returns their ids in
/// enqueue order.
async fn run(pool: &Pool, sleeps: &[u64]) -> Vec<TaskId> {
    let mut ids = Vec::new();
    let mut handles = Vec::new();
    for (index, &millis) in sleeps.iter().enumerate() {
        let metadata = Metadata::new().with("index", index.to_string());
        let handle = pool.enqueue(
            move || async move {
                tokio::time::sleep(ms(millis)).await;
                Ok::<_, Scripted>(())
            },
            TaskOptions::new().metadata(metadata),
        );
        ids.push(handle.id());
        handles.push(handle);
    }
    for handle in handles {
        handle.await.unwrap();
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn the_store_keeps_the_last_tasks_to_finish_and_evicts_the_first() {
    let metrics = metrics_keeping(3);
    let pool = Pool::builder()
        .concurrency(8)
        .observer(metrics.clone())
        .build()
        .unwrap();
    // Task i sleeps (8 - i) × 10 ms: they finish in reverse enqueue order.
    let sleeps: Vec<u64> = (0..8).map(|i| (8 - i) * 10).collect();
    let ids = run(&pool, &sleeps).await;

    // The last three to finish are the first three enqueued.
    for (index, id) in ids.iter().enumerate() {
        let stored = metrics.task_metrics(*id);
        if index < 3 {
            let stored = stored.unwrap_or_else(|| panic!("task {index} kept"));
            assert_eq!(
                stored.metadata.get("index"),
                Some(index.to_string().as_str())
            );
            assert_eq!(stored.execution, ms(sleeps[index]));
        } else {
            assert!(stored.is_none(), "task {index} evicted");
        }
    }
    // Oldest first: finishing order.
    let kept: Vec<TaskId> = metrics.tasks().iter().map(|t| t.id).collect();
    assert_eq!(kept, vec![ids[2], ids[1], ids[0]]);
}

#[tokio::test(start_paused = true)]
async fn eviction_follows_finishing_order_across_runs() {
    let metrics = metrics_keeping(5);
    let pool = Pool::builder()
        .concurrency(1)
        .observer(metrics.clone())
        .build()
        .unwrap();
    let ids = run(&pool, &[1; 12]).await;
    let kept: Vec<TaskId> = metrics.tasks().iter().map(|t| t.id).collect();
    assert_eq!(kept, ids[7..].to_vec());
    let sequences: Vec<u64> = metrics.tasks().iter().map(|t| t.sequence).collect();
    assert_eq!(sequences, vec![7, 8, 9, 10, 11]);
    assert!(metrics.task_metrics(ids[6]).is_none());
    // The recent ring and the counters still see every task.
    assert_eq!(metrics.recent_tasks().len(), 12);
    assert_eq!(metrics.stats().finished, 12);
}

/// Labels are kept only in the store: a collector that keeps no records reads none, and says
/// so to the pool.
#[tokio::test]
async fn labels_are_read_only_while_the_store_keeps_records() {
    let reads = |capacity| {
        Pool::builder()
            .observer(metrics_keeping(capacity))
            .build()
            .unwrap()
            .reads_labels()
    };
    assert!(reads(1_000));
    assert!(!reads(0));
}
