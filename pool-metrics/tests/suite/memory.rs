//! Memory sampling per mode, through a real pool on paused time, with a counting probe.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{Pool, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
use support::{ms, Scripted};

/// Runs 100 tasks, one every 50 ms of virtual time (5 s in all), with a probe that counts its
/// reads and reports 1 MB more each time. Returns the collector and the read count.
async fn run(mode: MemoryMode) -> (Metrics, u64) {
    let reads = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&reads);
    let probe = move || Some((counter.fetch_add(1, Ordering::Relaxed) + 1) * 1_000_000);
    let metrics = Metrics::with_memory_probe(MetricsConfig::default().memory(mode), probe).unwrap();
    let pool = Pool::builder()
        .concurrency(1)
        .observer(metrics.clone())
        .build()
        .unwrap();
    for _ in 0..100 {
        let handle = pool.enqueue(
            || async {
                tokio::time::sleep(ms(50)).await;
                Ok::<_, Scripted>(())
            },
            TaskOptions::new(),
        );
        handle.await.unwrap();
    }
    let read = reads.load(Ordering::Relaxed);
    (metrics, read)
}

#[tokio::test(start_paused = true)]
async fn light_mode_never_reads_memory() {
    let (metrics, reads) = run(MemoryMode::Light).await;
    assert_eq!(reads, 0);
    let memory = metrics.stats().memory;
    assert_eq!(
        (memory.rss_bytes, memory.delta_bytes, memory.samples),
        (None, None, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn balanced_mode_reads_once_per_interval_not_per_task() {
    let (metrics, reads) = run(MemoryMode::Balanced {
        interval: Duration::from_secs(1),
    })
    .await;
    // Tasks finish at 50 ms … 5 s: samples at 50 ms, 1.05 s, 2.05 s, 3.05 s, 4.05 s.
    assert_eq!(reads, 5);
    assert!(metrics.tasks().iter().all(|t| t.rss_bytes.is_none()));
    let memory = metrics.stats().memory;
    assert_eq!(memory.rss_bytes, Some(5_000_000));
    assert_eq!(memory.delta_bytes, Some(4_000_000));
    assert_eq!(memory.interval_secs, Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn full_mode_reads_after_every_task_and_keeps_it_in_the_record() {
    let (metrics, reads) = run(MemoryMode::Full).await;
    assert_eq!(reads, 100);
    let tasks = metrics.tasks();
    assert_eq!(tasks.first().unwrap().rss_bytes, Some(1_000_000));
    assert_eq!(tasks.last().unwrap().rss_bytes, Some(100_000_000));
    assert_eq!(metrics.stats().memory.mode, "full");
}
