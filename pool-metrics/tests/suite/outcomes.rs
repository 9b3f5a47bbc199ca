//! Error rate, errors by kind and retry counts from a scripted mix of outcomes, through a real
//! pool on paused time.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{CancellationToken, ErrorClass, Jitter, Pool, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
use support::{ms, Scripted};

/// What a scripted task does on each attempt.
#[derive(Debug, Clone, Copy)]
enum Script {
    Succeed,
    /// Fail with this class on the first `n` attempts, then succeed.
    FailFirst(u32, ErrorClass),
    /// Fail with this class on every attempt.
    AlwaysFail(ErrorClass),
    /// Sleep past the pool's 1 s timeout on every attempt.
    Hang,
    Panic,
}

fn enqueue(
    pool: &Pool,
    script: Script,
    options: TaskOptions,
) -> pool_core::TaskHandle<(), Scripted> {
    let attempts = Arc::new(AtomicU32::new(0));
    pool.enqueue(
        move || {
            let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                tokio::time::sleep(ms(10)).await;
                match script {
                    Script::Succeed => Ok(()),
                    Script::FailFirst(n, class) if attempt <= n => Err(Scripted(class)),
                    Script::FailFirst(..) => Ok(()),
                    Script::AlwaysFail(class) => Err(Scripted(class)),
                    Script::Hang => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(())
                    }
                    Script::Panic => panic!("scripted panic"),
                }
            }
        },
        options,
    )
}

#[tokio::test(start_paused = true)]
async fn a_scripted_mix_gives_exact_rates_kinds_and_retries() {
    let metrics = Metrics::new(MetricsConfig::default().memory(MemoryMode::Light)).unwrap();
    let pool = Pool::builder()
        .concurrency(32)
        .retries(2)
        .retry_delay(ms(100))
        .jitter(Jitter::None)
        .timeout(Duration::from_secs(1))
        .no_pressure_rule()
        .no_retry_budget()
        .observer(metrics.clone())
        .build()
        .unwrap();

    use ErrorClass::{Fatal, Retryable, Throttled};
    let scripts = [
        (5, Script::Succeed),                 // 5 × 1 attempt
        (3, Script::AlwaysFail(Fatal)),       // 3 × 1 attempt, not retried
        (2, Script::FailFirst(1, Retryable)), // 2 × 2 attempts, then succeed
        (2, Script::AlwaysFail(Retryable)),   // 2 × 3 attempts
        (1, Script::AlwaysFail(Throttled)),   // 1 × 3 attempts
    ];
    let mut handles = Vec::new();
    for (count, script) in scripts {
        for _ in 0..count {
            handles.push(enqueue(&pool, script, TaskOptions::new()));
        }
    }
    // One timeout (no retry), one panic, one cancelled while running.
    handles.push(enqueue(&pool, Script::Hang, TaskOptions::new().retries(0)));
    handles.push(enqueue(&pool, Script::Panic, TaskOptions::new().retries(0)));
    let token = CancellationToken::new();
    handles.push(enqueue(
        &pool,
        Script::Hang,
        TaskOptions::new().cancellation(token.clone()),
    ));
    tokio::time::sleep(ms(5)).await;
    token.cancel();

    let mut kinds_seen = BTreeMap::<&str, u64>::new();
    for handle in handles {
        if let Err(error) = handle.await {
            *kinds_seen.entry(error.kind()).or_default() += 1;
        }
    }

    let stats = metrics.stats();
    assert_eq!(stats.finished, 16);
    // One vocabulary: the collector splits what did not succeed as the pool does.
    assert_eq!(
        (
            stats.succeeded,
            stats.failed,
            stats.cancelled,
            stats.stopped
        ),
        (7, 8, 1, 0)
    );
    let pool_stats = pool.stats();
    assert_eq!(
        (
            stats.succeeded,
            stats.failed,
            stats.cancelled,
            stats.stopped
        ),
        (
            pool_stats.succeeded,
            pool_stats.failed,
            pool_stats.cancelled,
            pool_stats.stopped_tasks
        )
    );
    // The deprecated names keep their old meaning for one release.
    #[allow(deprecated)]
    {
        assert_eq!(stats.errors, 9);
        assert_eq!(
            (pool_stats.processed, pool_stats.errors),
            (pool_stats.succeeded, pool_stats.failed)
        );
    }
    assert_eq!(stats.error_rate, 9.0 / 16.0);
    let by_kind = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    assert_eq!(
        stats.errors_by_kind,
        by_kind(&[
            ("cancelled", 1),
            ("failed", 6),
            ("panicked", 1),
            ("timed_out", 1)
        ])
    );
    // The handles agree with the collector.
    let seen: BTreeMap<String, u64> = kinds_seen
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(seen, stats.errors_by_kind);
    assert_eq!(
        stats.failures_by_class,
        by_kind(&[("fatal", 3), ("retryable", 2), ("throttled", 1)])
    );
    // Retries: 2 × 1 + 2 × 2 + 1 × 2.
    assert_eq!(stats.retries, 8);
    assert_eq!(stats.avg_retries, 0.5);
    assert_eq!(stats.retries, pool.stats().retries);
    assert_eq!(stats.succeeded, pool.stats().succeeded);

    let aggregate = metrics.aggregate_all();
    assert_eq!(
        (
            aggregate.finished,
            aggregate.succeeded,
            aggregate.failed,
            aggregate.cancelled,
            aggregate.retries
        ),
        (16, 7, 8, 1, 8)
    );
    #[allow(deprecated)]
    {
        assert_eq!((aggregate.count, aggregate.errors), (16, 9));
    }
    assert_eq!(aggregate.errors_by_kind, stats.errors_by_kind);
    // Backoff without jitter: 100 ms before a 2nd attempt, 200 ms before a 3rd.
    // 2 × 100 + 3 × (100 + 200) = 1,100 ms over 16 tasks.
    assert_eq!(aggregate.avg_retry_delay_us, 1_100_000.0 / 16.0);
    assert_eq!(stats.time_spent.retry_delay_secs, 1.1);
}

#[test]
fn deferrals_are_counted_as_they_happen_and_exported() {
    use pool_core::{Event, Observer, TaskId, TaskInfo};
    let metrics = Metrics::new(MetricsConfig::new().memory(MemoryMode::Light)).unwrap();
    let now = std::time::Instant::now();
    for id in 0..3 {
        metrics.on_event(&Event::TaskDeferred {
            task: TaskInfo::new(TaskId(id)),
            until: now + ms(100),
            delay: ms(100),
        });
    }
    assert_eq!(metrics.stats_at(now).deferrals, 3);
    let text = pool_metrics::PrometheusFormat::new("s3pool")
        .unwrap()
        .render(&metrics.snapshot_at(now));
    assert!(text.contains("s3pool_task_deferrals_total 3"), "{text}");
}

#[test]
fn an_attached_collector_wants_only_what_it_records() {
    use pool_core::{EventKind, Observer, SimExecutor};
    let metrics = Metrics::new(MetricsConfig::new().memory(MemoryMode::Light)).unwrap();
    // Fed by hand (no pool), it counts starts and attempt ends for its in-flight figure.
    assert!(metrics.wants(EventKind::TaskStarted));
    assert!(metrics.wants(EventKind::AttemptFinished));
    let _pool = Pool::builder()
        .executor(SimExecutor::new())
        .observer(metrics.clone())
        .build()
        .unwrap();
    // Attached, it reads the pool's stats instead: per-attempt events are not built for it.
    let wanted: Vec<EventKind> = EventKind::ALL
        .into_iter()
        .filter(|kind| metrics.wants(*kind))
        .collect();
    assert_eq!(
        wanted,
        [
            EventKind::TaskDeferred,
            EventKind::TaskFinished,
            EventKind::ConcurrencyChanged
        ]
    );
}

/// Parks every task's first try for a second (what a rate limit over its rate does).
#[derive(Debug, Default)]
struct ParkOnce(std::sync::Mutex<std::collections::BTreeSet<pool_core::TaskId>>);

impl pool_core::Admission for ParkOnce {
    fn acquire(
        &self,
        _task: &pool_core::TaskInfo,
    ) -> pool_core::BoxFuture<Result<pool_core::AdmissionPermit, pool_core::Rejection>> {
        Box::pin(std::future::ready(Ok(pool_core::AdmissionPermit::empty())))
    }

    fn precheck(&self, task: &pool_core::TaskInfo) -> pool_core::Precheck {
        if self.0.lock().unwrap().insert(task.id) {
            pool_core::Precheck::ParkUntil(tokio::time::Instant::now().into_std() + ms(1_000))
        } else {
            pool_core::Precheck::Proceed
        }
    }
}

#[tokio::test(start_paused = true)]
async fn parked_queued_and_retrying_tasks_are_gauges_of_an_attached_pool() {
    let metrics = Metrics::new(MetricsConfig::new().memory(MemoryMode::Light)).unwrap();
    let pool = Pool::builder()
        .concurrency(1)
        .admission(ParkOnce::default())
        .observer(metrics.clone())
        .build()
        .unwrap();
    let handles: Vec<_> = (0..5)
        .map(|_| pool.enqueue(|| async { Ok::<_, Scripted>(()) }, TaskOptions::new()))
        .collect();
    tokio::time::sleep(ms(10)).await;
    let waiting = metrics
        .stats()
        .concurrency
        .waiting
        .expect("a pool is attached");
    assert_eq!(
        (waiting.queued, waiting.retrying, waiting.deferred),
        (0, 0, 5)
    );
    let text = pool_metrics::PrometheusFormat::new("s3pool")
        .unwrap()
        .render(&metrics.snapshot());
    assert!(text.contains("s3pool_tasks_deferred 5"), "{text}");
    assert!(text.contains("s3pool_task_deferrals_total 5"), "{text}");
    for handle in handles {
        handle.await.unwrap();
    }
    let waiting = metrics.stats().concurrency.waiting.unwrap();
    assert_eq!(waiting.deferred, 0);
}

/// Hands every event on to a collector through `on_event` only, as an observer that forwards
/// owned events would: the collector then records from [`pool_core::TaskRecord`]s.
#[derive(Debug)]
struct ForwardEvents(Metrics);

impl pool_core::Observer for ForwardEvents {
    fn on_attach(&self, pool: pool_core::PoolControl) {
        self.0.on_attach(pool);
    }

    fn wants(&self, kind: pool_core::EventKind) -> bool {
        self.0.wants(kind)
    }

    fn on_event(&self, event: &pool_core::Event) {
        self.0.on_event(event);
    }
}

#[tokio::test(start_paused = true)]
async fn the_pools_view_and_the_owned_record_give_the_same_figures() {
    let config = || MetricsConfig::default().memory(MemoryMode::Light);
    let (viewed, forwarded) = (
        Metrics::new(config()).unwrap(),
        Metrics::new(config()).unwrap(),
    );
    let pool = Pool::builder()
        .concurrency(3)
        .retries(2)
        .retry_delay(ms(100))
        .jitter(Jitter::None)
        .timeout(Duration::from_secs(1))
        .observer(viewed.clone())
        .observer(ForwardEvents(forwarded.clone()))
        .build()
        .unwrap();
    use ErrorClass::{Fatal, Retryable};
    let scripts = [
        Script::Succeed,
        Script::FailFirst(1, Retryable),
        Script::AlwaysFail(Fatal),
        Script::AlwaysFail(Retryable),
        Script::Hang,
    ];
    // Concurrency 3 for 20 tasks: most wait in the queue, so total, queue wait and execution
    // all differ.
    let handles: Vec<_> = (0..20)
        .map(|n| {
            let labels = pool_core::Metadata::new().with("n", n.to_string());
            let options = TaskOptions::new().metadata(labels).priority(n % 3);
            enqueue(&pool, scripts[n as usize % scripts.len()], options)
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }

    let (from_view, from_records) = (viewed.tasks(), forwarded.tasks());
    assert_eq!(from_view.len(), 20);
    assert_eq!(from_view, from_records);
    assert!(from_view
        .iter()
        .any(|t| t.queue_wait > Duration::ZERO && t.total > t.execution));
    assert!(from_view.iter().all(|t| !t.metadata.is_empty()));
    let now = pool.now();
    let (live, replayed) = (viewed.stats_at(now), forwarded.stats_at(now));
    assert_eq!(live.time_spent, replayed.time_spent);
    // Placed in the same rolling buckets: the view's offsets from the pool's clock origin
    // and the record's instants agree.
    assert_eq!(live.rolling, replayed.rolling);
    assert_eq!(
        (live.finished, live.failed, live.retries),
        (replayed.finished, replayed.failed, replayed.retries)
    );
    let (aggregate, replayed) = (viewed.aggregate_all(), forwarded.aggregate_all());
    assert_eq!(
        (aggregate.queue_wait, aggregate.execution, aggregate.total),
        (replayed.queue_wait, replayed.execution, replayed.total)
    );
}
