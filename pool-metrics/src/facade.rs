//! Publishing snapshots to the [`metrics`] facade (feature `metrics-facade`), for applications
//! that already export through a `metrics` recorder (Prometheus, StatsD, …).
//!
//! Publishing reads a snapshot and sets counters to their absolute values and gauges to theirs:
//! call it on your export schedule, not per task, so the hot path stays the collector's own.

use crate::latency::LatencySummary;
use crate::snapshot::Snapshot;
use crate::tally::{ERROR_CLASSES, OUTCOME_KINDS};

impl Snapshot {
    /// Sets the `metrics` counters and gauges named `{prefix}_…` (the same names and labels as
    /// the [Prometheus exposition](crate::PrometheusFormat); summary quantiles become gauges
    /// with a `quantile` label) on the current recorder.
    ///
    /// ```
    /// use pool_metrics::Metrics;
    /// // With no recorder installed this is a no-op.
    /// Metrics::default().snapshot().publish("s3pool");
    /// ```
    pub fn publish(&self, prefix: &str) {
        let live = &self.live;
        let history = &self.history;
        let name = |suffix: &str| format!("{prefix}_{suffix}");

        for (slot, kind) in OUTCOME_KINDS.iter().enumerate() {
            let count = if slot == 0 {
                live.succeeded
            } else {
                live.errors_by_kind.get(*kind).copied().unwrap_or(0)
            };
            metrics::counter!(name("tasks_finished_total"), "outcome" => *kind).absolute(count);
        }
        for class in ERROR_CLASSES {
            let count = live.failures_by_class.get(class).copied().unwrap_or(0);
            metrics::counter!(name("task_failures_total"), "class" => class).absolute(count);
        }
        metrics::counter!(name("task_attempts_total")).absolute(live.attempts);
        metrics::counter!(name("task_retries_total")).absolute(live.retries);
        metrics::counter!(name("task_deferrals_total")).absolute(live.deferrals);

        if let Some(hedges) = &live.hedges {
            metrics::counter!(name("hedge_reads_total")).absolute(hedges.reads);
            metrics::counter!(name("hedges_sent_total")).absolute(hedges.sent);
            metrics::counter!(name("hedges_won_total")).absolute(hedges.won);
            metrics::counter!(name("hedge_cancelled_total")).absolute(hedges.cancelled);
            metrics::counter!(name("hedges_not_sent_total"), "reason" => "over_budget")
                .absolute(hedges.over_budget);
            metrics::counter!(name("hedges_not_sent_total"), "reason" => "held_back")
                .absolute(hedges.held_back);
        }

        metrics::gauge!(name("tasks_in_flight")).set(live.concurrency.in_flight as f64);
        if let Some(waiting) = live.concurrency.waiting {
            metrics::gauge!(name("tasks_queued")).set(waiting.queued as f64);
            metrics::gauge!(name("tasks_retrying")).set(waiting.retrying as f64);
            metrics::gauge!(name("tasks_deferred")).set(waiting.deferred as f64);
        }
        if let Some(limit) = live.concurrency.limit {
            metrics::gauge!(name("concurrency_limit")).set(limit as f64);
        }
        metrics::gauge!(name("concurrency_average")).set(history.concurrency.average_in_flight);
        metrics::gauge!(name("throughput_ops_per_second")).set(live.rolling.ops_per_sec);
        if let Some(rate) = live.rolling.success_rate {
            metrics::gauge!(name("success_ratio")).set(rate);
        }
        metrics::gauge!(name("error_ratio")).set(history.error_rate);
        if let Some(bytes) = live.memory.rss_bytes {
            metrics::gauge!(name("memory_rss_bytes")).set(bytes as f64);
        }

        let summaries = [
            ("queue_wait_seconds", &history.queue_wait),
            ("execution_seconds", &history.execution),
            ("task_duration_seconds", &history.total),
        ];
        for (suffix, summary) in summaries {
            let quantiles = LatencySummary::QUANTILES
                .iter()
                .zip(summary.quantile_values());
            for ((label, _), micros) in quantiles {
                metrics::gauge!(name(suffix), "quantile" => *label).set(micros as f64 / 1e6);
            }
        }
    }
}
