//! Hedged reads' counts: read from the hedger's source at each snapshot (never counted twice),
//! absent without one, in the Prometheus text and through serde.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pool_metrics::{HedgeCounts, Metrics, PrometheusFormat, Snapshot};
use prometheus_parse::{Scrape, Value};

/// A hedger's counters, as s3-client keeps them: they grow on their own.
#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    sent: AtomicU64,
}

impl Counters {
    fn counts(&self) -> HedgeCounts {
        HedgeCounts {
            reads: self.reads.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            won: 3,
            cancelled: 4,
            over_budget: 5,
            held_back: 6,
        }
    }
}

#[test]
fn each_snapshot_reads_the_hedgers_counts_as_they_are_then() {
    let metrics = Metrics::default();
    assert_eq!(metrics.stats().hedges, None, "no hedger, no figures");
    assert!(!metrics.prometheus().contains("hedge"));

    let counters = Arc::new(Counters::default());
    let source = Arc::clone(&counters);
    metrics.count_hedges_from(move || source.counts());
    counters.reads.store(100, Ordering::Relaxed);
    counters.sent.store(4, Ordering::Relaxed);
    assert_eq!(metrics.stats().hedges, Some(counters.counts()));
    // Read again, not kept: the next snapshot sees what the hedger counted since.
    counters.reads.store(250, Ordering::Relaxed);
    counters.sent.store(9, Ordering::Relaxed);
    let hedges = metrics.snapshot().live.hedges.expect("a hedger reports");
    assert_eq!((hedges.reads, hedges.sent), (250, 9));
}

#[test]
fn the_prometheus_text_has_every_hedge_count() {
    let metrics = Metrics::default();
    let counters = Arc::new(Counters::default());
    counters.reads.store(1_000, Ordering::Relaxed);
    counters.sent.store(48, Ordering::Relaxed);
    let source = Arc::clone(&counters);
    metrics.count_hedges_from(move || source.counts());
    let text = PrometheusFormat::new("s3pool")
        .unwrap()
        .label("pool", "reads")
        .unwrap()
        .render(&metrics.snapshot());
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let counter = |metric: &str, reason: Option<&str>| {
        let sample = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.get("pool") == Some("reads")
                    && reason.is_none_or(|reason| s.labels.get("reason") == Some(reason))
            })
            .unwrap_or_else(|| panic!("{metric} {reason:?} missing in\n{text}"));
        match sample.value {
            Value::Counter(value) => value,
            ref other => panic!("{metric} is {other:?}"),
        }
    };
    assert_eq!(counter("s3pool_hedge_reads_total", None), 1_000.0);
    assert_eq!(counter("s3pool_hedges_sent_total", None), 48.0);
    assert_eq!(counter("s3pool_hedges_won_total", None), 3.0);
    assert_eq!(counter("s3pool_hedge_cancelled_total", None), 4.0);
    assert_eq!(
        counter("s3pool_hedges_not_sent_total", Some("over_budget")),
        5.0
    );
    assert_eq!(
        counter("s3pool_hedges_not_sent_total", Some("held_back")),
        6.0
    );
}

#[test]
fn hedge_counts_survive_serde_and_older_snapshots_read_without_them() {
    let metrics = Metrics::default();
    metrics.count_hedges_from(|| HedgeCounts {
        reads: 7,
        sent: 1,
        ..HedgeCounts::default()
    });
    let snapshot = metrics.snapshot();
    let json = serde_json::to_value(&snapshot).unwrap();
    let back: Snapshot = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.live.hedges, snapshot.live.hedges);
    // A snapshot written before hedges were counted has no `hedges` field.
    let mut old = json;
    old["live"].as_object_mut().unwrap().remove("hedges");
    let back: Snapshot = serde_json::from_value(old).unwrap();
    assert_eq!(back.live.hedges, None);
}
