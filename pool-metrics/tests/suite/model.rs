//! The collector against a naive model: every event kept in a list, windows computed by
//! brute force. Random finishing times and outcomes, explicit clock.

use crate::support;

use std::time::{Duration, Instant};

use pool_core::{ErrorClass, Outcome};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
use proptest::prelude::*;
use support::Finished;

/// One event: milliseconds after the origin (non-decreasing), success, attempts.
fn events() -> impl Strategy<Value = Vec<(u64, bool, u32)>> {
    prop::collection::vec((0u64..3_000, any::<bool>(), 1u32..4), 1..300).prop_map(|steps| {
        let mut at = 0;
        steps
            .into_iter()
            .map(|(gap, ok, attempts)| {
                at += gap;
                (at, ok, attempts)
            })
            .collect()
    })
}

/// The rolling window's (finished, succeeded) by brute force: 20 buckets of 500 ms ending
/// with the bucket holding `now_ms`.
fn rolling_model(events: &[(u64, bool, u32)], now_ms: u64) -> (u64, u64) {
    let newest_bucket = now_ms / 500;
    let oldest_bucket = newest_bucket.saturating_sub(19);
    let in_window: Vec<_> = events
        .iter()
        .filter(|(at, ..)| (oldest_bucket..=newest_bucket).contains(&(at / 500)))
        .collect();
    let succeeded = in_window.iter().filter(|e| e.1).count();
    (in_window.len() as u64, succeeded as u64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn windows_and_store_match_a_brute_force_model(events in events(), query_gap in 0u64..20_000) {
        let capacity = 25;
        let config = MetricsConfig::default()
            .memory(MemoryMode::Light)
            .task_store_capacity(capacity)
            .recent_capacity(10)
            .shards(3);
        let metrics = Metrics::new(config).unwrap();
        let origin = Instant::now();
        metrics.aggregate_at(origin, origin);
        for (id, &(at, ok, attempts)) in events.iter().enumerate() {
            let outcome = if ok { Outcome::Succeeded } else { Outcome::Failed(ErrorClass::Retryable) };
            Finished::new(id as u64, origin + Duration::from_millis(at))
                .attempts(attempts)
                .outcome(outcome)
                .send_to(&metrics);
            // Reads along the way see every task so far, the latest ones included.
            if id % 5 == 4 {
                let (finished, succeeded) = rolling_model(&events[..=id], at);
                let rolling = metrics.stats_at(origin + Duration::from_millis(at)).rolling;
                prop_assert_eq!((rolling.finished, rolling.succeeded), (finished, succeeded));
            }
        }
        let now_ms = events.last().unwrap().0 + query_gap;
        let now = origin + Duration::from_millis(now_ms);

        let stats = metrics.stats_at(now);
        let (finished, succeeded) = rolling_model(&events, now_ms);
        prop_assert_eq!((stats.rolling.finished, stats.rolling.succeeded), (finished, succeeded));

        // Lifetime counters.
        prop_assert_eq!(stats.finished, events.len() as u64);
        let retries: u64 = events.iter().map(|e| u64::from(e.2 - 1)).sum();
        prop_assert_eq!(stats.retries, retries);

        // History: 12 slices of 5 s ending with the slice holding `now`.
        let newest_slice = now_ms / 5_000;
        let oldest_slice = newest_slice.saturating_sub(11);
        let in_history = events
            .iter()
            .filter(|(at, ..)| (oldest_slice..=newest_slice).contains(&(at / 5_000)))
            .count();
        prop_assert_eq!(metrics.aggregate_at(origin, now).finished, in_history as u64);

        // Store: the last `capacity` ids in finishing order; the ring: the last 10.
        let stored: Vec<u64> = metrics.tasks().iter().map(|t| t.id.0).collect();
        let first_kept = events.len().saturating_sub(capacity) as u64;
        prop_assert_eq!(stored, (first_kept..events.len() as u64).collect::<Vec<_>>());
        prop_assert_eq!(metrics.recent_tasks().len(), events.len().min(10));
    }
}
