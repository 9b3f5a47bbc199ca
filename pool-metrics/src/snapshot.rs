//! What a collector reports: plain, serialisable structs.
//!
//! Durations are integers or floats with their unit in the field name (`_us`, `_secs`), so the
//! JSON reads without a schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hedges::HedgeCounts;
use crate::latency::LatencySummary;
use crate::memory::MemorySnapshot;
use crate::recent::RecentSummary;
use crate::tenants::TenantSnapshot;

/// Live counters, from [`Metrics::stats`](crate::Metrics::stats). Cheap: no histogram merging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    /// Seconds since the collector's clock origin (attach, or its first event).
    pub observed_secs: f64,
    /// Tasks that resolved, whatever the outcome.
    pub finished: u64,
    /// Tasks that resolved with their value.
    pub succeeded: u64,
    /// Tasks that resolved with a failure: their own error, a timeout, a panic, a declined
    /// retry, a rejection or a missed deadline (every kind in `errors_by_kind` but
    /// `cancelled` and `stopped`). Pool-core's [`Stats::failed`](pool_core::Stats::failed)
    /// counts the same tasks.
    #[serde(default)]
    pub failed: u64,
    /// Tasks that resolved `Cancelled` (a token or a handle's abort).
    #[serde(default)]
    pub cancelled: u64,
    /// Tasks that resolved `Stopped` (the pool stopped before they ran).
    #[serde(default)]
    pub stopped: u64,
    /// Tasks that resolved without their value: `failed + cancelled + stopped`.
    #[deprecated(
        since = "0.1.0",
        note = "use `failed` (cancelled and stopped tasks are in `cancelled` and `stopped`; this is their sum)"
    )]
    pub errors: u64,
    /// Tasks resolved without their value (`failed + cancelled + stopped`) over `finished`;
    /// 0 when nothing finished.
    pub error_rate: f64,
    /// Attempts run by finished tasks.
    pub attempts: u64,
    /// Attempts after the first, over finished tasks.
    pub retries: u64,
    /// `retries / finished` (0 when nothing finished).
    pub avg_retries: f64,
    /// Times an admission policy parked a task until its turn (a rate limit's), holding no
    /// slot ([`Event::TaskDeferred`](pool_core::Event::TaskDeferred)); counted as they happen.
    #[serde(default)]
    pub deferrals: u64,
    /// Non-successful outcomes by [`Outcome::kind`](pool_core::Outcome::kind).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// `failed` outcomes by error class (`retryable`, `throttled`, `fatal`).
    pub failures_by_class: BTreeMap<String, u64>,
    /// Time summed over finished tasks.
    pub time_spent: TimeSpent,
    /// Throughput and success rate over the rolling window.
    pub rolling: RollingRates,
    /// Averages over the latest tasks (the recent ring).
    pub recent: RecentSummary,
    /// How busy the pool is.
    pub concurrency: ConcurrencySnapshot,
    /// Process memory.
    pub memory: MemorySnapshot,
    /// Whatever a tuner published with [`Metrics::set_tuner_state`](crate::Metrics::set_tuner_state).
    pub tuner: Option<TunerState>,
    /// Per tenant, for tasks that name one: served, queue-wait p99, queued and in flight;
    /// sorted by name (see [`MetricsConfig::tenant_capacity`](crate::MetricsConfig::tenant_capacity)).
    #[serde(default)]
    pub tenants: Vec<TenantSnapshot>,
    /// Hedged reads' counts, when a hedger reports to this collector
    /// ([`Metrics::count_hedges_from`](crate::Metrics::count_hedges_from); s3-client's
    /// hedged reads do, given the collector).
    #[serde(default)]
    pub hedges: Option<HedgeCounts>,
}

/// Time summed over finished tasks, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSpent {
    /// Waiting in the queue.
    pub queue_wait_secs: f64,
    /// Running.
    pub execution_secs: f64,
    /// In retry backoff.
    pub retry_delay_secs: f64,
    /// From enqueue to resolution.
    pub total_secs: f64,
}

/// Throughput and success rate over the rolling window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollingRates {
    /// The span actually covered: the window slides by whole buckets, so this is between
    /// `(buckets - 1) / buckets` and all of the configured window (less right after start).
    pub window_secs: f64,
    /// Tasks that finished in it.
    pub finished: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// `finished / window_secs`.
    pub ops_per_sec: f64,
    /// `succeeded / finished`; `None` when nothing finished.
    pub success_rate: Option<f64>,
}

/// How busy the pool is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencySnapshot {
    /// Tasks running now (from the pool when attached, else from the latest event).
    pub in_flight: usize,
    /// The concurrency limit, once known (attach, or a `ConcurrencyChanged` event).
    pub limit: Option<usize>,
    /// Average tasks running over the period: execution time finished in it divided by its
    /// length (Little's law).
    pub average_in_flight: f64,
    /// `average_in_flight / limit`.
    pub utilisation: Option<f64>,
    /// Where the pool's waiting tasks are now: queued, in retry backoff, or parked by an
    /// admission policy until their turn. `None` unless a pool is attached.
    #[serde(default)]
    pub waiting: Option<WaitingTasks>,
}

/// Tasks waiting in an attached pool, read from its [`Stats`](pool_core::Stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingTasks {
    /// In the queue, waiting for a slot.
    pub queued: usize,
    /// In retry backoff.
    pub retrying: usize,
    /// Parked by an admission policy (a rate limit) until their turn, holding no slot.
    pub deferred: usize,
}

/// Figures over a period, from [`Metrics::aggregate`](crate::Metrics::aggregate): counts,
/// averages and HDR percentiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// The span covered, in seconds: from the start of the oldest history slice merged (the
    /// history has a slice resolution and a horizon) to now.
    pub window_secs: f64,
    /// Tasks that finished in it.
    #[serde(default)]
    pub finished: u64,
    /// The old name of [`finished`](Self::finished) (same value).
    #[deprecated(since = "0.1.0", note = "use `finished` (same value)")]
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which failed: their own error, a timeout, a panic, a declined retry, a rejection
    /// or a missed deadline.
    #[serde(default)]
    pub failed: u64,
    /// Of which were cancelled.
    #[serde(default)]
    pub cancelled: u64,
    /// Of which were stopped.
    #[serde(default)]
    pub stopped: u64,
    /// Of which did not succeed: `failed + cancelled + stopped`.
    #[deprecated(
        since = "0.1.0",
        note = "use `failed` (cancelled and stopped tasks are in `cancelled` and `stopped`; this is their sum)"
    )]
    pub errors: u64,
    /// Tasks that did not succeed (`failed + cancelled + stopped`) over `finished`; 0 when
    /// nothing finished.
    pub error_rate: f64,
    /// Attempts run by those tasks.
    pub attempts: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// `retries / count` (0 when nothing finished).
    pub avg_retries: f64,
    /// Non-successful outcomes by [`Outcome::kind`](pool_core::Outcome::kind).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// `failed` outcomes by error class.
    pub failures_by_class: BTreeMap<String, u64>,
    /// `finished / window_secs`.
    pub throughput_ops_per_sec: f64,
    /// Time waiting in the queue.
    pub queue_wait: LatencySummary,
    /// Time running.
    pub execution: LatencySummary,
    /// From enqueue to resolution.
    pub total: LatencySummary,
    /// Mean time in retry backoff per task, µs.
    pub avg_retry_delay_us: f64,
    /// How busy the pool was.
    pub concurrency: ConcurrencySnapshot,
    /// Process memory over the period.
    pub memory: MemorySnapshot,
    /// Whatever a tuner published.
    pub tuner: Option<TunerState>,
}

/// Live counters and the aggregate over the whole history, taken together: what
/// [`Metrics::snapshot`](crate::Metrics::snapshot) returns and the Prometheus exposition shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Live counters.
    pub live: LiveStats,
    /// The whole history (percentiles of recent traffic).
    pub history: Aggregate,
}

/// What a tuner publishes into snapshots ([`Metrics::set_tuner_state`](crate::Metrics::set_tuner_state)):
/// named figures and names, e.g. `{"algorithm": "gradient", "limit": 24.0}`. The numbers are
/// exported as the `tuner_state` gauge, one sample per field.
pub type TunerState = BTreeMap<String, TunerValue>;

/// One field of a [`TunerState`]: serialised as a bare JSON number or string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TunerValue {
    /// A figure (a limit, a latency in ms, a rate).
    Number(f64),
    /// A name (an algorithm, a phase).
    Text(String),
}

impl From<f64> for TunerValue {
    fn from(value: f64) -> Self {
        TunerValue::Number(value)
    }
}

impl From<u32> for TunerValue {
    fn from(value: u32) -> Self {
        TunerValue::Number(f64::from(value))
    }
}

impl From<usize> for TunerValue {
    fn from(value: usize) -> Self {
        TunerValue::Number(value as f64)
    }
}

impl From<&str> for TunerValue {
    fn from(value: &str) -> Self {
        TunerValue::Text(value.to_owned())
    }
}

impl From<String> for TunerValue {
    fn from(value: String) -> Self {
        TunerValue::Text(value)
    }
}
