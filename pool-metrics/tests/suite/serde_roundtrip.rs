//! Snapshots and task records survive a JSON round trip unchanged.

use crate::support;

use pool_metrics::{Aggregate, LiveStats, Snapshot, TaskMetrics, TunerValue};
use serde::de::DeserializeOwned;
use serde::Serialize;
use support::busy_metrics;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value);
    json
}

#[test]
fn every_snapshot_type_round_trips_through_json() {
    let (metrics, now) = busy_metrics();
    let snapshot: Snapshot = metrics.snapshot_at(now);
    round_trip(&snapshot);
    let live: LiveStats = metrics.stats_at(now);
    let json = round_trip(&live);
    assert!(
        json.contains(r#""errors_by_kind":{"failed":20,"timed_out":10}"#),
        "{json}"
    );
    assert!(json.contains(r#""mode":"full""#), "{json}");
    let aggregate: Aggregate = metrics.aggregate_at(now, now);
    round_trip(&aggregate);
    assert_eq!(snapshot.live.tuner, live.tuner);
    assert_eq!(live.tuner.unwrap()["limit"], TunerValue::Number(24.0));
}

#[test]
fn task_records_round_trip_with_their_labels() {
    let (metrics, _) = busy_metrics();
    let tasks: Vec<TaskMetrics> = metrics.tasks();
    assert_eq!(tasks.len(), 50);
    round_trip(&tasks);
    let json = serde_json::to_value(&tasks[1]).unwrap();
    assert_eq!(json["outcome"], serde_json::json!({"failed": "throttled"}));
    assert!(
        tasks.iter().all(|t| t.rss_bytes.is_some()),
        "Full mode samples every task"
    );
}
