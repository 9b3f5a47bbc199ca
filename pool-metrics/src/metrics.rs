//! [`Metrics`]: the collector handle, attached to a pool as an observer.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use pool_core::{Event, EventKind, FinishedTask, Observer, PoolControl, TaskId, TaskRecord};

use crate::config::MetricsConfig;
use crate::error::ConfigError;
use crate::grid::{slice_width, TimeGrid};
use crate::hedges::{HedgeCounts, HedgeSource};
use crate::history::{History, Slice};
use crate::latency::{HistogramTemplate, LatencySummary};
use crate::memory::{MemoryProbe, MemorySampler};
use crate::numbering::Numbering;
use crate::origin::Origin;
use crate::prometheus::PrometheusFormat;
use crate::recent::{RecentSummary, RecentTask};
use crate::record::{Ending, StoredTask, TaskMetrics};
use crate::rolling::WindowCounts;
use crate::shard::{Layout, Shards};
use crate::snapshot::{
    Aggregate, ConcurrencySnapshot, LiveStats, RollingRates, Snapshot, TimeSpent, TunerState,
    WaitingTasks,
};
use crate::store::keep_from;
use crate::tally::{ratio, Tally};
use crate::tenants::TenantBook;

/// Collects a pool's metrics. Attach it as an observer; it is a cheap handle (one `Arc`), so
/// keep a clone to read it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_core::{Pool, TaskOptions};
/// use pool_metrics::{Metrics, MetricsConfig};
///
/// let metrics = Metrics::new(MetricsConfig::default())?;
/// let pool = Pool::builder().observer(metrics.clone()).build()?;
/// let answer = pool.enqueue(|| async { Ok::<_, std::io::Error>(42) }, TaskOptions::new());
/// assert_eq!(answer.await?, 42);
///
/// let stats = metrics.stats();
/// assert_eq!((stats.finished, stats.succeeded, stats.failed), (1, 1, 0));
/// println!("{}", metrics.prometheus());
/// # Ok(())
/// # }
/// ```
///
/// Time comes from the pool's clock (virtual under tokio's paused time), through event
/// timestamps and [`PoolControl::now`]; the `*_at` methods take `now` explicitly.
///
/// Reads merge the per-thread shards one at a time, so a snapshot taken while tasks finish
/// may include some of those tasks and not others; once they have finished, every read counts
/// every one of them.
///
/// One collector is meant for one pool: it takes its clock from the first pool it is attached
/// to.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    config: MetricsConfig,
    /// The histograms' layout and the widths of a history slice and a rolling-window bucket.
    layout: Layout,
    /// How many of the latest records the shards keep: enough for the store and the ring.
    kept: usize,
    /// Where the time grids start: the pool's clock at attach, or the first instant seen.
    origin: Origin,
    control: OnceLock<PoolControl>,
    shards: Shards,
    history: Mutex<History>,
    /// How tasks are numbered in finishing order: the pool's numbers, or the collector's own.
    numbering: Numbering,
    memory: MemorySampler,
    /// Latest in-flight count seen in events (used when no pool is attached).
    in_flight: AtomicUsize,
    /// Latest limit seen in `ConcurrencyChanged` (0: unknown).
    limit: AtomicUsize,
    /// `Event::TaskDeferred` seen.
    deferrals: AtomicU64,
    tuner: Mutex<Option<TunerState>>,
    tenants: TenantBook,
    hedges: Mutex<Option<HedgeSource>>,
}

impl Metrics {
    /// A collector with these settings. The memory probe is [`ProcessRss`](crate::ProcessRss)
    /// (with feature `process-memory`, on by default; without it memory is not sampled).
    pub fn new(config: MetricsConfig) -> Result<Self, ConfigError> {
        Self::build(config, default_probe())
    }

    /// A collector that reads memory from `probe` instead of the process's RSS.
    pub fn with_memory_probe(
        config: MetricsConfig,
        probe: impl MemoryProbe,
    ) -> Result<Self, ConfigError> {
        Self::build(config, Some(Arc::new(probe)))
    }

    fn build(
        config: MetricsConfig,
        probe: Option<Arc<dyn MemoryProbe>>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let inner = Inner {
            layout: Layout {
                template: HistogramTemplate::new(config.significant_digits)?,
                slice_nanos: slice_width(config.history, config.history_slices),
                bucket_nanos: slice_width(config.rolling_window, config.rolling_buckets),
            },
            kept: config.task_store_capacity.max(config.recent_capacity),
            origin: Origin::default(),
            control: OnceLock::new(),
            shards: Shards::new(config.shard_count(), config.rolling_buckets),
            history: Mutex::new(History::new(config.history_slices)),
            numbering: Numbering::default(),
            memory: MemorySampler::new(config.memory, probe),
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
            deferrals: AtomicU64::new(0),
            tuner: Mutex::new(None),
            tenants: TenantBook::new(config.tenant_capacity, config.history),
            hedges: Mutex::new(None),
            config,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The settings.
    pub fn config(&self) -> &MetricsConfig {
        &self.inner.config
    }

    /// The pool's clock while the pool it is attached to lives. Otherwise the system clock,
    /// but never earlier than the latest task recorded (after a pool on virtual time is
    /// dropped, its events may be ahead of the system clock).
    pub fn now(&self) -> Instant {
        match self.inner.control.get() {
            Some(pool) if pool.is_alive() => pool.now(),
            _ => {
                let system = Instant::now();
                self.inner
                    .latest_finish()
                    .map_or(system, |latest| latest.max(system))
            }
        }
    }

    /// Records one finished task (what the observer does on `Event::TaskFinished`). Public for
    /// feeding records from elsewhere, e.g. a replay.
    pub fn record(&self, record: &TaskRecord) {
        self.inner.record(record);
    }

    /// Live counters, now.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use pool_core::{Permanent, Pool, TaskOptions};
    /// use pool_metrics::{Metrics, MetricsConfig};
    ///
    /// let metrics = Metrics::new(MetricsConfig::default())?;
    /// let pool = Pool::builder().observer(metrics.clone()).build()?;
    /// for n in 0..10u32 {
    ///     let task = move || async move { if n == 0 { Err(Permanent("no")) } else { Ok(n) } };
    ///     let _ = pool.enqueue(task, TaskOptions::new()).await;
    /// }
    /// let stats = metrics.stats();
    /// assert_eq!((stats.finished, stats.succeeded, stats.failed), (10, 9, 1));
    /// assert_eq!(stats.errors_by_kind["failed"], 1);
    /// assert_eq!(stats.rolling.success_rate, Some(0.9));
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> LiveStats {
        self.stats_at(self.now())
    }

    /// Live counters as of `now` (rolling window ending at `now`).
    pub fn stats_at(&self, now: Instant) -> LiveStats {
        self.inner.stats_at(now)
    }

    /// Counts, averages and percentiles of the tasks that finished since `since` (rounded down
    /// to a history slice, and no further back than the configured history).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use pool_core::{Permanent, Pool, TaskOptions};
    /// use pool_metrics::{Metrics, MetricsConfig};
    ///
    /// let metrics = Metrics::new(MetricsConfig::default())?;
    /// let pool = Pool::builder().observer(metrics.clone()).build()?;
    /// for n in 0..10u32 {
    ///     let task = move || async move { if n == 0 { Err(Permanent("no")) } else { Ok(n) } };
    ///     let _ = pool.enqueue(task, TaskOptions::new()).await;
    /// }
    /// let last_minute = pool.now() - std::time::Duration::from_secs(60);
    /// let aggregate = metrics.aggregate(last_minute);
    /// assert_eq!((aggregate.finished, aggregate.succeeded, aggregate.failed), (10, 9, 1));
    /// assert_eq!(aggregate.execution.count, 10);
    /// assert!(aggregate.total.p99_us >= aggregate.total.p50_us);
    /// # Ok(()) }
    /// ```
    pub fn aggregate(&self, since: Instant) -> Aggregate {
        self.aggregate_at(since, self.now())
    }

    /// [`aggregate`](Self::aggregate) over `[since, now]`.
    pub fn aggregate_at(&self, since: Instant, now: Instant) -> Aggregate {
        self.inner.aggregate_at(Some(since), now)
    }

    /// [`aggregate`](Self::aggregate) over the whole history.
    pub fn aggregate_all(&self) -> Aggregate {
        self.inner.aggregate_at(None, self.now())
    }

    /// Live counters and the whole-history aggregate.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_at(self.now())
    }

    /// [`snapshot`](Self::snapshot) as of `now`.
    pub fn snapshot_at(&self, now: Instant) -> Snapshot {
        Snapshot {
            live: self.inner.stats_at(now),
            history: self.inner.aggregate_at(None, now),
        }
    }

    /// The snapshot in the Prometheus text format, with the default names (`s3pool_…`); see
    /// [`PrometheusFormat`] for a namespace and constant labels of your own.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use pool_core::{Permanent, Pool, TaskOptions};
    /// use pool_metrics::{Metrics, MetricsConfig};
    ///
    /// let metrics = Metrics::new(MetricsConfig::default())?;
    /// let pool = Pool::builder().observer(metrics.clone()).build()?;
    /// for n in 0..10u32 {
    ///     let task = move || async move { if n == 0 { Err(Permanent("no")) } else { Ok(n) } };
    ///     let _ = pool.enqueue(task, TaskOptions::new()).await;
    /// }
    /// let text = metrics.prometheus();
    /// assert!(text.contains(r#"s3pool_tasks_finished_total{outcome="succeeded"} 9"#));
    /// assert!(text.contains(r#"s3pool_tasks_finished_total{outcome="failed"} 1"#));
    /// # Ok(()) }
    /// ```
    pub fn prometheus(&self) -> String {
        PrometheusFormat::default().render(&self.snapshot())
    }

    /// The stored record of a task, if it is among the last
    /// [`task_store_capacity`](MetricsConfig::task_store_capacity) to finish.
    pub fn task_metrics(&self, id: TaskId) -> Option<TaskMetrics> {
        let floor = self.inner.store_floor();
        let mut found: Option<TaskMetrics> = None;
        self.inner.shards.for_each(|shard| {
            if let Some(task) = shard.store.get(id, floor) {
                // With an id seen twice (two pools on one collector), the latest wins.
                if found.as_ref().is_none_or(|f| f.sequence < task.sequence) {
                    found = Some(task.to_metrics());
                }
            }
        });
        found
    }

    /// Every stored record, oldest first.
    pub fn tasks(&self) -> Vec<TaskMetrics> {
        let floor = self.inner.store_floor();
        let mut tasks = Vec::new();
        self.inner
            .shards
            .for_each(|shard| tasks.extend(shard.store.records(floor).map(StoredTask::to_metrics)));
        tasks.sort_unstable_by_key(|t| t.sequence);
        tasks
    }

    /// The recent ring: the latest [`recent_capacity`](MetricsConfig::recent_capacity) tasks,
    /// oldest first.
    pub fn recent_tasks(&self) -> Vec<RecentTask> {
        self.inner.recent_tasks()
    }

    /// Publishes a tuner's state into every later snapshot (`None` clears it).
    ///
    /// ```
    /// use pool_metrics::{Metrics, MetricsConfig, TunerState};
    /// let metrics = Metrics::new(MetricsConfig::default())?;
    /// let state = TunerState::from([("algorithm".into(), "gradient".into()), ("limit".into(), 24.0.into())]);
    /// metrics.set_tuner_state(Some(state));
    /// # Ok::<(), pool_metrics::ConfigError>(())
    /// ```
    pub fn set_tuner_state(&self, state: Option<TunerState>) {
        *self
            .inner
            .tuner
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// The state last published with [`set_tuner_state`](Self::set_tuner_state).
    pub fn tuner_state(&self) -> Option<TunerState> {
        self.inner.tuner()
    }

    /// Reports hedged reads: every later snapshot calls `read` for the hedger's lifetime
    /// counts ([`LiveStats::hedges`], Prometheus `…_hedge_…`). The hedger keeps counting on
    /// its own; `read` must be quick (it runs on each snapshot) and its counts must only grow.
    /// A later call replaces the source. s3-client's hedged reads call this when the client
    /// is given this collector.
    ///
    /// ```
    /// use pool_metrics::{HedgeCounts, Metrics};
    /// let metrics = Metrics::default();
    /// metrics.count_hedges_from(|| HedgeCounts { reads: 100, sent: 4, won: 3, ..HedgeCounts::default() });
    /// assert_eq!(metrics.stats().hedges.map(|h| h.sent), Some(4));
    /// ```
    pub fn count_hedges_from(&self, read: impl Fn() -> HedgeCounts + Send + Sync + 'static) {
        *self
            .inner
            .hedges
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(HedgeSource::new(read));
    }
}

impl Default for Metrics {
    /// A collector with [`MetricsConfig::default`].
    fn default() -> Self {
        Self::new(MetricsConfig::default())
            .expect("MetricsConfig::default() is valid (pinned by a unit test)")
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("config", &self.inner.config)
            .field("numbered", &self.inner.shards.next_sequence())
            .field("attached", &self.inner.control.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Observer for Metrics {
    fn on_attach(&self, pool: PoolControl) {
        let now = pool.now();
        self.inner.origin.get_or_init(now);
        if let Some(limit) = std::num::NonZeroUsize::new(pool.concurrency()) {
            self.inner.limit.store(limit.get(), Ordering::Relaxed);
        }
        // A collector attached to a second pool keeps reading the first one's clock, and
        // numbers tasks itself (two pools' numbers would collide).
        if self.inner.control.set(pool).is_err() {
            self.inner.numbering.take_over(&self.inner.shards);
        }
    }

    /// Finished tasks, deferrals and limit changes; starts and attempt ends only while no
    /// pool is attached (with one, its stats are read instead).
    fn wants(&self, kind: EventKind) -> bool {
        match kind {
            EventKind::TaskFinished | EventKind::TaskDeferred | EventKind::ConcurrencyChanged => {
                true
            }
            EventKind::TaskStarted | EventKind::AttemptFinished => {
                self.inner.control.get().is_none()
            }
            _ => false,
        }
    }

    /// Labels are kept only in the per-task store: with a capacity of 0, none are read.
    fn reads_labels(&self) -> bool {
        self.inner.config.task_store_capacity > 0
    }

    /// The pool's view of the task, read without making the owned record: one moment made
    /// an `Instant` (the finish), the total from the engine's clock.
    fn on_task_finished(&self, task: &FinishedTask<'_>) {
        self.inner.record(task);
    }

    fn on_event(&self, event: &Event) {
        match event {
            Event::TaskFinished(record) => self.inner.record(record),
            Event::ConcurrencyChanged { to, .. } => {
                self.inner.limit.store(*to, Ordering::Relaxed);
            }
            Event::TaskDeferred { .. } => {
                self.inner.deferrals.fetch_add(1, Ordering::Relaxed);
            }
            // With a pool attached its stats are read instead: nothing to do per event.
            Event::TaskStarted { in_flight, .. } if self.inner.control.get().is_none() => {
                self.inner.in_flight.store(*in_flight, Ordering::Relaxed);
            }
            Event::AttemptFinished { in_flight, .. } if self.inner.control.get().is_none() => {
                let after = in_flight.saturating_sub(1);
                self.inner.in_flight.store(after, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl Inner {
    fn origin(&self, seen: Instant) -> Instant {
        self.origin.get_or_init(seen)
    }

    fn history_grid(&self, origin: Instant) -> TimeGrid {
        TimeGrid::with_width(origin, self.layout.slice_nanos)
    }

    fn rolling_grid(&self, origin: Instant) -> TimeGrid {
        TimeGrid::with_width(origin, self.layout.bucket_nanos)
    }

    fn store_floor(&self) -> u64 {
        keep_from(self.shards.next_sequence(), self.config.task_store_capacity)
    }

    fn recent_floor(&self) -> u64 {
        keep_from(self.shards.next_sequence(), self.config.recent_capacity)
    }

    fn latest_finish(&self) -> Option<Instant> {
        let (mut latest, mut recorded) = (0, false);
        self.shards.for_each(|shard| {
            latest = latest.max(shard.latest_finish);
            recorded |= shard.next_sequence > 0;
        });
        recorded.then(|| self.origin.instant(latest)).flatten()
    }

    fn tuner(&self) -> Option<TunerState> {
        self.tuner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The hot path: one uncontended lock, and nothing written that another thread writes
    /// (the task's number is the pool's); the shared history lock only when this thread's
    /// shard moves to a new slice (once per slice length). No clock arithmetic: the finish is
    /// an offset from the origin (from the pool's own offset), and a task that finishes in the
    /// span of its shard's previous one (same bucket, same slice, no memory sample due) is
    /// placed with two comparisons; only the first task of a span divides.
    #[inline]
    fn record(&self, ending: &impl Ending) {
        let offset = ending.finished_offset(&self.origin);
        let at = || self.origin.instant(offset).unwrap_or_else(Instant::now);
        let pool_sequence = ending.pool_sequence();
        if pool_sequence.is_none() {
            self.numbering.take_over(&self.shards);
        }
        let mut shard = self.shards.lock_for_this_thread();
        // Read under the shard: see `numbering`.
        let sequence = self.numbering.number(pool_sequence);
        let keep_from = keep_from(sequence.saturating_add(1), self.kept);
        let (place, rss_bytes) = match shard.place_of(offset) {
            Some(place) => (place, self.memory.on_task(None, at)),
            None => {
                // Sampled before the span is drawn, so that the span ends at the next due time.
                let rss_bytes = self.memory.on_task(Some(offset), at);
                let until = self.memory.next_due();
                (shard.move_span(offset, until, &self.layout), rss_bytes)
            }
        };
        let task = StoredTask::from_ending(ending, sequence, rss_bytes);
        let closed = shard.record(task, offset, place, keep_from, &self.layout);
        drop(shard);
        if let Some(tenant) = &ending.task().tenant {
            let queue_wait = Duration::from_nanos(ending.queue_wait_nanos());
            self.tenants.record(
                tenant,
                ending.finished_at(),
                queue_wait,
                &self.layout.template,
            );
        }
        if let Some(closed) = closed {
            self.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .absorb(*closed);
        }
    }

    fn concurrency(&self, executing_nanos: u128, span: Duration) -> ConcurrencySnapshot {
        let pool = self.control.get();
        let stats = pool.and_then(PoolControl::stats);
        let in_flight = stats.map_or_else(|| self.in_flight.load(Ordering::Relaxed), |s| s.active);
        let waiting = stats.map(|s| WaitingTasks {
            queued: s.queued,
            retrying: s.retrying,
            deferred: s.deferred,
        });
        let limit = match pool.map(PoolControl::concurrency) {
            Some(limit) if limit > 0 => Some(limit),
            _ => Some(self.limit.load(Ordering::Relaxed)).filter(|&l| l > 0),
        };
        let average_in_flight = if span.is_zero() {
            0.0
        } else {
            executing_nanos as f64 / span.as_nanos() as f64
        };
        ConcurrencySnapshot {
            in_flight,
            limit,
            average_in_flight,
            utilisation: limit.map(|limit| average_in_flight / limit as f64),
            waiting,
        }
    }

    fn stats_at(&self, now: Instant) -> LiveStats {
        let origin = self.origin(now);
        self.memory.on_read(now, origin);
        let grid = self.rolling_grid(origin);
        let newest_bucket = grid.index(now);
        let mut lifetime = Tally::default();
        let mut window = WindowCounts::default();
        self.shards.for_each(|shard| {
            lifetime.merge(&shard.lifetime());
            shard.window_into(newest_bucket, &mut window);
        });
        let oldest_bucket = newest_bucket.saturating_sub(self.config.rolling_buckets as u64 - 1);
        let window_span = now.saturating_duration_since(grid.start_of(oldest_bucket));
        let recent = self.recent_tasks();
        // `errors`: the deprecated sum, filled in for one release.
        #[allow(deprecated)]
        LiveStats {
            observed_secs: now.saturating_duration_since(origin).as_secs_f64(),
            finished: lifetime.finished,
            succeeded: lifetime.succeeded(),
            failed: lifetime.failed(),
            cancelled: lifetime.cancelled(),
            stopped: lifetime.stopped(),
            errors: lifetime.unsucceeded(),
            error_rate: lifetime.error_rate(),
            attempts: lifetime.attempts,
            retries: lifetime.retries,
            avg_retries: lifetime.avg_retries(),
            deferrals: self.deferrals.load(Ordering::Relaxed),
            errors_by_kind: lifetime.errors_by_kind(),
            failures_by_class: lifetime.failures_by_class(),
            time_spent: TimeSpent {
                queue_wait_secs: nanos_to_secs(lifetime.queue_wait_nanos),
                execution_secs: nanos_to_secs(lifetime.execution_nanos),
                retry_delay_secs: nanos_to_secs(lifetime.retry_delay_nanos),
                total_secs: nanos_to_secs(lifetime.total_nanos),
            },
            rolling: RollingRates {
                window_secs: window_span.as_secs_f64(),
                finished: window.finished,
                succeeded: window.succeeded,
                ops_per_sec: per_sec(window.finished, window_span),
                success_rate: ratio(window.succeeded, window.finished),
            },
            recent: RecentSummary::of(&recent),
            concurrency: self.concurrency(window.execution_nanos, window_span),
            memory: self.memory.snapshot(None, now),
            tuner: self.tuner(),
            tenants: self.tenants.snapshot(
                now,
                &self
                    .control
                    .get()
                    .map(PoolControl::tenants)
                    .unwrap_or_default(),
            ),
            hedges: self.hedges(),
        }
    }

    /// The hedger's counts, read outside the collector's lock (the reader is someone else's
    /// code).
    fn hedges(&self) -> Option<HedgeCounts> {
        let source = self
            .hedges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        source.map(|source| source.read())
    }

    fn aggregate_at(&self, since: Option<Instant>, now: Instant) -> Aggregate {
        let origin = self.origin(now);
        self.memory.on_read(now, origin);
        let grid = self.history_grid(origin);
        let newest = grid.index(now);
        let horizon = newest.saturating_sub(self.config.history_slices as u64 - 1);
        let requested = since.map_or(horizon, |since| grid.index(since));
        let range = requested.max(horizon)..=newest;
        let mut merged = Slice::new(*range.start(), &self.layout.template);
        if since.is_none_or(|since| since <= now) {
            self.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .merge_into(&range, &mut merged);
            self.shards.for_each(|shard| {
                if let Some(open) = shard.current.as_ref().filter(|s| range.contains(&s.index)) {
                    open.fold_into(&mut merged);
                }
            });
        }
        let start = grid.start_of(*range.start()).min(now);
        let span = now.saturating_duration_since(start);
        let tally = &merged.tally;
        let latencies = &merged.latencies;
        // `count` and `errors`: the deprecated names, filled in for one release.
        #[allow(deprecated)]
        Aggregate {
            window_secs: span.as_secs_f64(),
            finished: tally.finished,
            count: tally.finished,
            succeeded: tally.succeeded(),
            failed: tally.failed(),
            cancelled: tally.cancelled(),
            stopped: tally.stopped(),
            errors: tally.unsucceeded(),
            error_rate: tally.error_rate(),
            attempts: tally.attempts,
            retries: tally.retries,
            avg_retries: tally.avg_retries(),
            errors_by_kind: tally.errors_by_kind(),
            failures_by_class: tally.failures_by_class(),
            throughput_ops_per_sec: per_sec(tally.finished, span),
            queue_wait: LatencySummary::from_histogram(
                &latencies.queue_wait,
                tally.mean_micros(tally.queue_wait_nanos),
            ),
            execution: LatencySummary::from_histogram(
                &latencies.execution,
                tally.mean_micros(tally.execution_nanos),
            ),
            total: LatencySummary::from_histogram(
                &latencies.total,
                tally.mean_micros(tally.total_nanos),
            ),
            avg_retry_delay_us: tally.mean_micros(tally.retry_delay_nanos),
            concurrency: self.concurrency(tally.execution_nanos, span),
            memory: self.memory.snapshot(Some(start), now),
            tuner: self.tuner(),
        }
    }

    fn recent_tasks(&self) -> Vec<RecentTask> {
        let floor = self.recent_floor();
        let mut tasks = Vec::new();
        self.shards.for_each(|shard| {
            tasks.extend(shard.store.records(floor).map(RecentTask::of));
        });
        tasks.sort_unstable_by_key(|t| t.sequence);
        let excess = tasks.len().saturating_sub(self.config.recent_capacity);
        tasks.drain(..excess);
        tasks
    }
}

#[cfg(feature = "process-memory")]
fn default_probe() -> Option<Arc<dyn MemoryProbe>> {
    Some(Arc::new(crate::memory::ProcessRss::new()))
}

#[cfg(not(feature = "process-memory"))]
fn default_probe() -> Option<Arc<dyn MemoryProbe>> {
    None
}

fn nanos_to_secs(nanos: u128) -> f64 {
    nanos as f64 / 1e9
}

fn per_sec(count: u64, span: Duration) -> f64 {
    if span.is_zero() {
        0.0
    } else {
        count as f64 / span.as_secs_f64()
    }
}
