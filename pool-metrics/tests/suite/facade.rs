//! Publishing to the `metrics` facade (feature `metrics-facade`).
#![cfg(feature = "metrics-facade")]

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::busy_metrics;

/// Keeps every counter and gauge by `name{label=value,…}`.
#[derive(Debug, Default)]
struct Capture {
    values: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

impl Capture {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.values.lock().unwrap().entry(name).or_default())
    }

    fn counter(&self, name: &str) -> u64 {
        self.values.lock().unwrap()[name].load(Ordering::Relaxed)
    }

    fn gauge(&self, name: &str) -> f64 {
        f64::from_bits(self.values.lock().unwrap()[name].load(Ordering::Relaxed))
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn a_snapshot_publishes_counters_gauges_and_quantiles() {
    let (metrics, now) = busy_metrics();
    let snapshot = metrics.snapshot_at(now);
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || snapshot.publish("s3pool"));

    assert_eq!(
        capture.counter("s3pool_tasks_finished_total{outcome=succeeded}"),
        snapshot.live.succeeded
    );
    assert_eq!(
        capture.counter("s3pool_tasks_finished_total{outcome=timed_out}"),
        10
    );
    assert_eq!(
        capture.counter("s3pool_task_failures_total{class=throttled}"),
        10
    );
    assert_eq!(
        capture.counter("s3pool_task_retries_total{}"),
        snapshot.live.retries
    );
    assert_eq!(
        capture.gauge("s3pool_execution_seconds{quantile=0.99}"),
        snapshot.history.execution.p99_us as f64 / 1e6
    );
    assert_eq!(
        capture.gauge("s3pool_memory_rss_bytes{}"),
        snapshot.live.memory.rss_bytes.unwrap() as f64
    );
}
