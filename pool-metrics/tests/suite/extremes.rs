//! Every count, size and duration a `MetricsConfig` accepts, at 0, 1 and MAX: `Metrics::new`
//! refuses it with a typed `ConfigError` naming the setter, or the collector records a pool's
//! tasks and every read works. Records with extreme values (durations of `Duration::MAX`,
//! `u32::MAX` attempts, a finish a century ahead) are taken without a panic too.

use std::time::{Duration, Instant};

use pool_core::{
    ErrorClass, Executor, Outcome, Pool, SimExecutor, TaskId, TaskInfo, TaskOptions, TaskRecord,
    Transient,
};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig, PrometheusFormat};

const DURATIONS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(1),
    Duration::MAX,
];
const COUNTS: [usize; 3] = [0, 1, usize::MAX];

/// A pool on virtual time runs forty tasks (some failing, some retried) through the collector,
/// an hour passes, then every read of the collector.
fn exercise(metrics: &Metrics) {
    let sim = SimExecutor::new();
    let pool = Pool::builder()
        .executor(sim.clone())
        .observer(metrics.clone())
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    sim.block_on(async {
        let handles: Vec<_> = (0..40u32)
            .map(|i| {
                let sim = sim.clone();
                pool.enqueue(
                    move || {
                        let sim = sim.clone();
                        async move {
                            sim.sleep(Duration::from_millis(u64::from(i % 7))).await;
                            if i % 5 == 0 {
                                Err(Transient("every fifth fails"))
                            } else {
                                Ok(i)
                            }
                        }
                    },
                    match i % 3 {
                        0 => TaskOptions::new().tenant("a"),
                        1 => TaskOptions::new().tenant(format!("user-{i}")),
                        _ => TaskOptions::new(),
                    },
                )
            })
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
    });
    sim.advance(Duration::from_secs(3_600));
    read_everything(metrics, sim.now());
}

fn read_everything(metrics: &Metrics, now: Instant) {
    let stats = metrics.stats();
    assert!(stats
        .rolling
        .success_rate
        .is_none_or(|rate| (0.0..=1.0).contains(&rate)));
    let _ = metrics.stats_at(now);
    let _ = metrics.aggregate(now - Duration::from_secs(1));
    let _ = metrics.aggregate_at(now, now);
    let _ = metrics.aggregate_all();
    let _ = metrics.snapshot();
    let _ = metrics.tasks();
    let _ = metrics.recent_tasks();
    let _ = metrics.task_metrics(TaskId(1));
    let text = PrometheusFormat::default().render(&metrics.snapshot());
    assert!(text.contains("tasks"));
}

#[track_caller]
fn check(setter: &str, value: String, config: MetricsConfig) {
    match Metrics::new(config) {
        Err(error) => assert!(
            error.to_string().contains(setter),
            "{setter} = {value}: the error does not name the setter: {error}"
        ),
        Ok(metrics) => exercise(&metrics),
    }
}

fn config() -> MetricsConfig {
    // Light memory mode: the probe reads the real process otherwise.
    MetricsConfig::new().memory(MemoryMode::Light)
}

#[test]
fn counts_at_their_extremes() {
    for n in COUNTS {
        let v = n.to_string();
        check(
            "task_store_capacity",
            v.clone(),
            config().task_store_capacity(n),
        );
        check("recent_capacity", v.clone(), config().recent_capacity(n));
        check("rolling_buckets", v.clone(), config().rolling_buckets(n));
        check("history_slices", v.clone(), config().history_slices(n));
        check("shards", v.clone(), config().shards(n));
        check("tenant_capacity", v.clone(), config().tenant_capacity(n));
        // The counts together with windows long enough for them.
        check(
            "rolling_buckets",
            format!("{v} over Duration::MAX"),
            config().rolling_window(Duration::MAX).rolling_buckets(n),
        );
        check(
            "history_slices",
            format!("{v} over Duration::MAX"),
            config().history(Duration::MAX).history_slices(n),
        );
    }
    for digits in [0, 1, 5, 6, u8::MAX] {
        check(
            "significant_digits",
            digits.to_string(),
            config().significant_digits(digits),
        );
    }
}

#[test]
fn durations_at_their_extremes() {
    for d in DURATIONS {
        let v = format!("{d:?}");
        check("rolling_window", v.clone(), config().rolling_window(d));
        check("history", v.clone(), config().history(d));
        check(
            "memory interval",
            v.clone(),
            config().memory(MemoryMode::Balanced { interval: d }),
        );
    }
}

#[test]
fn records_with_extreme_values_are_taken() {
    let metrics = Metrics::new(config()).unwrap();
    let now = Instant::now();
    let far = now + Duration::from_secs(100 * 365 * 24 * 3600);
    let extremes = [
        (now, Duration::MAX, Duration::MAX, Duration::MAX, u32::MAX),
        (now, Duration::ZERO, Duration::ZERO, Duration::ZERO, 0),
        (
            far,
            Duration::from_nanos(1),
            Duration::MAX,
            Duration::ZERO,
            1,
        ),
        (now, Duration::MAX, Duration::ZERO, Duration::MAX, u32::MAX),
    ];
    for (i, (finished_at, queue_wait, execution, retry_delay, attempts)) in
        extremes.into_iter().enumerate()
    {
        for outcome in [
            Outcome::Succeeded,
            Outcome::Failed(ErrorClass::Throttled),
            Outcome::TimedOut,
        ] {
            metrics.record(&TaskRecord {
                task: TaskInfo::new(TaskId(i as u64)).with_priority(i32::MIN),
                queued_at: now,
                first_started_at: Some(now),
                finished_at,
                attempts,
                queue_wait,
                execution,
                retry_delay,
                outcome,
            });
        }
    }
    read_everything(&metrics, far);
    read_everything(&metrics, now);
}
