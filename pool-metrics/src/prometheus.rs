//! The Prometheus text exposition (format 0.0.4) of a [`Snapshot`].

use std::fmt::Write as _;

use crate::error::ConfigError;
use crate::latency::LatencySummary;
use crate::snapshot::{Snapshot, TunerValue};
use crate::tally::{ERROR_CLASSES, OUTCOME_KINDS};
use crate::tenants::TenantSnapshot;

/// Renders snapshots as Prometheus text: counters (lifetime), gauges (live), and summaries
/// whose quantiles cover the recent history while `_sum`/`_count` are lifetime totals (as
/// Prometheus client summaries do).
///
/// ```
/// use pool_metrics::{Metrics, PrometheusFormat};
///
/// let format = PrometheusFormat::new("uploads")?.label("pool", "photos")?;
/// let text = format.render(&Metrics::default().snapshot());
/// assert!(text.contains(r#"uploads_tasks_finished_total{pool="photos",outcome="succeeded"} 0"#));
/// # Ok::<(), pool_metrics::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusFormat {
    namespace: String,
    labels: Vec<(String, String)>,
}

impl Default for PrometheusFormat {
    /// Namespace `s3pool`, no constant labels.
    fn default() -> Self {
        Self {
            namespace: "s3pool".to_owned(),
            labels: Vec::new(),
        }
    }
}

impl PrometheusFormat {
    /// Metric names start with `namespace_`.
    pub fn new(namespace: &str) -> Result<Self, ConfigError> {
        if !is_metric_name(namespace) {
            return Err(ConfigError::PrometheusName(namespace.to_owned()));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            labels: Vec::new(),
        })
    }

    /// Adds a label to every sample (e.g. which pool this is).
    pub fn label(mut self, name: &str, value: &str) -> Result<Self, ConfigError> {
        if !is_label_name(name) || self.labels.iter().any(|(n, _)| n == name) {
            return Err(ConfigError::PrometheusName(name.to_owned()));
        }
        self.labels.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The exposition of `snapshot`: serve it as `text/plain; version=0.0.4` on your
    /// `/metrics` endpoint.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use pool_core::{Pool, TaskOptions};
    /// use pool_metrics::{Metrics, MetricsConfig, PrometheusFormat};
    ///
    /// let metrics = Metrics::new(MetricsConfig::default())?;
    /// let pool = Pool::builder().observer(metrics.clone()).build()?;
    /// pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, TaskOptions::new()).await?;
    ///
    /// let format = PrometheusFormat::new("uploads")?.label("region", "eu-west-1")?;
    /// let text = format.render(&metrics.snapshot());
    /// assert!(text.contains(
    ///     r#"uploads_tasks_finished_total{region="eu-west-1",outcome="succeeded"} 1"#
    /// ));
    /// assert!(text.contains("# TYPE uploads_tasks_finished_total counter"));
    /// # Ok(()) }
    /// ```
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = Exposition {
            text: String::with_capacity(4_096),
            namespace: &self.namespace,
            labels: &self.labels,
        };
        let live = &snapshot.live;
        let history = &snapshot.history;

        out.family(
            "tasks_finished_total",
            "counter",
            "Tasks that resolved, by outcome.",
        );
        let succeeded = [live.succeeded];
        let by_kind = OUTCOME_KINDS
            .iter()
            .skip(1)
            .map(|kind| live.errors_by_kind.get(*kind).copied().unwrap_or(0));
        for (kind, count) in OUTCOME_KINDS
            .iter()
            .zip(succeeded.into_iter().chain(by_kind))
        {
            out.sample(
                "tasks_finished_total",
                Some(("outcome", kind)),
                count as f64,
            );
        }
        out.family(
            "task_failures_total",
            "counter",
            "Tasks that failed with their own error, by error class.",
        );
        for class in ERROR_CLASSES {
            let count = live.failures_by_class.get(class).copied().unwrap_or(0);
            out.sample("task_failures_total", Some(("class", class)), count as f64);
        }
        out.counter(
            "task_attempts_total",
            "Attempts run by finished tasks.",
            live.attempts as f64,
        );
        out.counter(
            "task_retries_total",
            "Attempts after the first, by finished tasks.",
            live.retries as f64,
        );
        out.counter(
            "task_deferrals_total",
            "Times a rate limit parked a task until its turn, holding no slot.",
            live.deferrals as f64,
        );
        out.counter(
            "task_retry_delay_seconds_total",
            "Time finished tasks spent in retry backoff.",
            live.time_spent.retry_delay_secs,
        );

        out.gauge(
            "tasks_in_flight",
            "Tasks running now.",
            Some(live.concurrency.in_flight as f64),
        );
        let waiting = live.concurrency.waiting;
        out.gauge(
            "tasks_queued",
            "Tasks in the queue, waiting for a slot.",
            waiting.map(|w| w.queued as f64),
        );
        out.gauge(
            "tasks_retrying",
            "Tasks in retry backoff.",
            waiting.map(|w| w.retrying as f64),
        );
        out.gauge(
            "tasks_deferred",
            "Tasks parked by an admission policy until their turn, holding no slot.",
            waiting.map(|w| w.deferred as f64),
        );
        out.gauge(
            "concurrency_limit",
            "The pool's concurrency limit.",
            live.concurrency.limit.map(|l| l as f64),
        );
        out.gauge(
            "concurrency_average",
            "Average tasks running over the history window.",
            Some(history.concurrency.average_in_flight),
        );
        out.gauge(
            "concurrency_utilisation",
            "Average tasks running over the history window, as a share of the limit.",
            history.concurrency.utilisation,
        );
        out.gauge(
            "throughput_ops_per_second",
            "Tasks finished per second over the rolling window.",
            Some(live.rolling.ops_per_sec),
        );
        out.gauge(
            "success_ratio",
            "Share of tasks that succeeded over the rolling window.",
            live.rolling.success_rate,
        );
        out.gauge(
            "error_ratio",
            "Share of tasks that did not succeed over the history window.",
            Some(history.error_rate),
        );
        out.gauge(
            "memory_rss_bytes",
            "Resident memory of the process at the latest sample.",
            live.memory.rss_bytes.map(|b| b as f64),
        );

        let summaries = [
            (
                "queue_wait_seconds",
                "Time tasks waited in the queue.",
                &history.queue_wait,
                live.time_spent.queue_wait_secs,
            ),
            (
                "execution_seconds",
                "Time tasks ran, over all attempts.",
                &history.execution,
                live.time_spent.execution_secs,
            ),
            (
                "task_duration_seconds",
                "Time from enqueue to resolution.",
                &history.total,
                live.time_spent.total_secs,
            ),
        ];
        for (name, help, summary, sum) in summaries {
            out.summary(name, help, summary, sum, live.finished);
        }

        if !live.tenants.is_empty() {
            let tenants = &live.tenants;
            out.family(
                "tenant_tasks_served_total",
                "counter",
                "Tasks of a tenant that resolved.",
            );
            for t in tenants {
                out.sample(
                    "tenant_tasks_served_total",
                    Some(("tenant", &t.tenant)),
                    t.served as f64,
                );
            }
            let gauges: [(&str, &str, TenantFigure); 3] = [
                (
                    "tenant_tasks_queued",
                    "Tasks of a tenant in the queue now.",
                    |t| t.queued.map(|n| n as f64),
                ),
                (
                    "tenant_tasks_in_flight",
                    "Tasks of a tenant holding a slot now.",
                    |t| t.in_flight.map(|n| n as f64),
                ),
                (
                    "tenant_queue_wait_p99_seconds",
                    "99th percentile of the queue wait of a tenant's recent tasks.",
                    |t| (t.queue_wait_count > 0).then(|| t.queue_wait_p99_us as f64 / 1e6),
                ),
            ];
            for (name, help, value) in gauges {
                let values: Vec<_> = tenants
                    .iter()
                    .filter_map(|t| Some((t.tenant.as_str(), value(t)?)))
                    .collect();
                if values.is_empty() {
                    continue;
                }
                out.family(name, "gauge", help);
                for (tenant, value) in values {
                    out.sample(name, Some(("tenant", tenant)), value);
                }
            }
        }

        if let Some(hedges) = &live.hedges {
            out.counter(
                "hedge_reads_total",
                "Reads that could be hedged.",
                hedges.reads as f64,
            );
            out.counter(
                "hedges_sent_total",
                "Hedge requests sent: the extra requests.",
                hedges.sent as f64,
            );
            out.counter(
                "hedges_won_total",
                "Hedges that answered before the read they doubled.",
                hedges.won as f64,
            );
            out.counter(
                "hedge_cancelled_total",
                "Requests cancelled because the other of their pair answered first.",
                hedges.cancelled as f64,
            );
            out.family(
                "hedges_not_sent_total",
                "counter",
                "Late reads not hedged: the budget was spent, or the pool was saturated or \
                 the backend throttling (held back).",
            );
            let reasons = [
                ("over_budget", hedges.over_budget),
                ("held_back", hedges.held_back),
            ];
            for (reason, count) in reasons {
                out.sample(
                    "hedges_not_sent_total",
                    Some(("reason", reason)),
                    count as f64,
                );
            }
        }

        if let Some(fields) = &live.tuner {
            let numbers: Vec<_> = fields
                .iter()
                .filter_map(|(k, v)| match v {
                    TunerValue::Number(number) => Some((k, *number)),
                    TunerValue::Text(_) => None,
                })
                .collect();
            if !numbers.is_empty() {
                out.family(
                    "tuner_state",
                    "gauge",
                    "Numeric fields of the tuner's published state.",
                );
                for (field, value) in numbers {
                    out.sample("tuner_state", Some(("field", field)), value);
                }
            }
        }
        out.text
    }
}

/// Reads one figure of a tenant, if it has one.
type TenantFigure = fn(&TenantSnapshot) -> Option<f64>;

struct Exposition<'a> {
    text: String,
    namespace: &'a str,
    labels: &'a [(String, String)],
}

impl Exposition<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let ns = self.namespace;
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {ns}_{name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {ns}_{name} {kind}");
    }

    fn sample(&mut self, name: &str, label: Option<(&str, &str)>, value: f64) {
        let _ = write!(self.text, "{}_{name}", self.namespace);
        let labels = self
            .labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(label);
        let mut first = true;
        for (label_name, label_value) in labels {
            self.text.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(self.text, "{label_name}=\"{}\"", escape_label(label_value));
        }
        if !first {
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "counter", help);
        self.sample(name, None, value);
    }

    /// A gauge with no value yet is left out rather than reported as 0.
    fn gauge(&mut self, name: &str, help: &str, value: Option<f64>) {
        if let Some(value) = value {
            self.family(name, "gauge", help);
            self.sample(name, None, value);
        }
    }

    fn summary(
        &mut self,
        name: &str,
        help: &str,
        summary: &LatencySummary,
        sum_secs: f64,
        count: u64,
    ) {
        self.family(name, "summary", help);
        let quantiles = LatencySummary::QUANTILES
            .iter()
            .zip(summary.quantile_values());
        for ((label, _), micros) in quantiles {
            self.sample(name, Some(("quantile", label)), micros as f64 / 1e6);
        }
        self.sample(&format!("{name}_sum"), None, sum_secs);
        self.sample(&format!("{name}_count"), None, count as f64);
    }
}

/// Prometheus spells infinities `+Inf`/`-Inf`; Rust's `Display` would write `inf`.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(PrometheusFormat::new("s3pool:uploads_2").is_ok());
        for bad in ["", "2pool", "s3-pool", "s3 pool"] {
            assert_eq!(
                PrometheusFormat::new(bad),
                Err(ConfigError::PrometheusName(bad.to_owned()))
            );
        }
        let format = PrometheusFormat::default();
        assert!(format.clone().label("pool", "a").is_ok());
        for bad in ["__reserved", "a:b", "1a", ""] {
            assert!(format.clone().label(bad, "x").is_err(), "{bad:?}");
        }
        assert!(format
            .label("pool", "a")
            .unwrap()
            .label("pool", "b")
            .is_err());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn numbers_use_prometheus_spelling() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(3.0), "3");
    }
}
