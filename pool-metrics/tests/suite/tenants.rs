//! Per-tenant figures: served and queue-wait p99 from finished tasks, queued and in flight
//! from the pool, in the snapshot and in the Prometheus text; tenants past the capacity
//! counted together.

use std::time::Duration;

use pool_core::{Executor, Pool, SimExecutor, TaskOptions, TenantConfig};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig, PrometheusFormat, OTHER_TENANTS};
use prometheus_parse::{Scrape, Value};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One slot; "fast" (weight 3) and "slow" (weight 1) each queue 40 tasks of 10 ms at once,
/// then a third of the run later the figures are read with tasks still queued.
#[test]
fn each_tenant_has_its_served_count_queue_wait_and_live_counts() {
    let sim = SimExecutor::new();
    let metrics = Metrics::new(MetricsConfig::new().memory(MemoryMode::Light)).unwrap();
    let pool = Pool::builder()
        .executor(sim.clone())
        .concurrency(1)
        .tenant("fast", TenantConfig::new().weight(3))
        .observer(metrics.clone())
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for tenant in ["fast", "slow"] {
        for _ in 0..40 {
            let sim2 = sim.clone();
            handles.push(pool.enqueue(
                move || {
                    let sim2 = sim2.clone();
                    async move {
                        sim2.sleep(ms(10)).await;
                        Ok::<_, std::io::Error>(())
                    }
                },
                TaskOptions::new().tenant(tenant),
            ));
        }
    }
    sim.block_on(async {
        sim.sleep(ms(405)).await;
    });
    let live = metrics.stats();
    let figures: Vec<_> = live
        .tenants
        .iter()
        .map(|t| (t.tenant.as_str(), t.served, t.queued, t.in_flight))
        .collect();
    // Starts every 10 ms: the first "fast" task at once (alone, it empties its lane), then
    // rounds of fast ×3, slow. By 405 ms 40 are done (31 and 9) and a "slow" one runs.
    assert_eq!(
        figures,
        vec![
            ("fast", 31, Some(9), Some(0)),
            ("slow", 9, Some(30), Some(1))
        ]
    );
    let fast = &live.tenants[0];
    let slow = &live.tenants[1];
    assert_eq!((fast.queue_wait_count, slow.queue_wait_count), (31, 9));
    // The 9th "slow" task started at 360 ms, the 31st "fast" one at 390 ms.
    assert!(
        (355_000..=365_000).contains(&slow.queue_wait_p99_us),
        "{slow:?}"
    );
    assert!(
        (385_000..=395_000).contains(&fast.queue_wait_p99_us),
        "{fast:?}"
    );

    let text = PrometheusFormat::default().render(&metrics.snapshot());
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let value = |metric: &str, tenant: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("tenant") == Some(tenant))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{metric}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("{metric}{{tenant={tenant:?}}} missing in\n{text}"))
    };
    assert_eq!(value("s3pool_tenant_tasks_served_total", "fast"), 31.0);
    assert_eq!(value("s3pool_tenant_tasks_queued", "slow"), 30.0);
    assert_eq!(value("s3pool_tenant_tasks_in_flight", "slow"), 1.0);
    let p99 = value("s3pool_tenant_queue_wait_p99_seconds", "slow");
    assert!((0.355..=0.365).contains(&p99), "{p99}");

    sim.block_on(async {
        for handle in handles {
            handle.await.unwrap();
        }
        pool.drain().await;
    });
    let after: Vec<_> = metrics
        .stats()
        .tenants
        .iter()
        .map(|t| (t.tenant.clone(), t.served, t.queued))
        .collect();
    assert_eq!(
        after,
        vec![("fast".to_owned(), 40, None), ("slow".to_owned(), 40, None)],
        "the pool forgot both once idle; the served counts stay"
    );
}

#[test]
fn tenants_past_the_capacity_are_counted_together() {
    let sim = SimExecutor::new();
    let metrics = Metrics::new(
        MetricsConfig::new()
            .memory(MemoryMode::Light)
            .tenant_capacity(2),
    )
    .unwrap();
    let pool = Pool::builder()
        .executor(sim.clone())
        .observer(metrics.clone())
        .build()
        .unwrap();
    sim.block_on(async {
        for i in 0..5 {
            pool.enqueue(
                || async { Ok::<_, std::io::Error>(()) },
                TaskOptions::new().tenant(format!("t{i}")),
            )
            .await
            .unwrap();
        }
        // Tasks without a tenant are not per-tenant figures.
        pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, TaskOptions::new())
            .await
            .unwrap();
    });
    let served: Vec<_> = metrics
        .stats()
        .tenants
        .iter()
        .map(|t| (t.tenant.clone(), t.served))
        .collect();
    assert_eq!(
        served,
        vec![
            ("t0".to_owned(), 1),
            ("t1".to_owned(), 1),
            (OTHER_TENANTS.to_owned(), 3)
        ]
    );
}
