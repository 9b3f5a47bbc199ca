//! [`S3ClientBuilder`]: a store, a pool (own, shared or none), a group, multipart settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use pool_core::{ConfigError, Observer, Pool, PoolBuilder};

use crate::chaos::ChaosConfigError;
use crate::client::{ClientInner, S3Client};
use crate::config::{ConnectionError, StoreConfig};
use crate::dispatch::Dispatcher;
use crate::group::{PoolGroup, ZeroGroupLimit};
use crate::hedge::{HedgeConfig, Hedger};
use crate::multipart::{MultipartSettings, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::redact::redact;
use crate::transfer::{ByteBudget, PieceBuffers, ReadAhead, KEPT_CHUNKS};
use object_store::multipart::MultipartStore;

/// Why an [`S3Client`] could not be built: s3-client's one error for building and
/// configuring. Every way of building a client returns it ([`S3Client::from_url`],
/// [`S3ClientBuilder::from_url`], [`S3ClientBuilder::from_config`],
/// [`S3ClientBuilder::build`]), and every error of the parts a client is built from converts
/// into it — a connection string ([`StoreConfig::parse`], [`ConnectionError`]), a
/// [`PoolGroup`] ([`ZeroGroupLimit`]), a [`ChaosStore`](crate::ChaosStore)
/// ([`ChaosConfigError`]), the settings from pool-core, pool-metrics and pool-tuning — so one
/// `?` covers the whole chain. The part's own error stays available as the variant's value
/// (and prints the same: each variant is transparent).
///
/// ```
/// use s3_client::{BuildError, ChaosConfig, ChaosStore, PoolGroup, S3Client, StoreConfig};
///
/// fn client(url: &str, group_limit: usize) -> Result<S3Client, BuildError> {
///     let store = StoreConfig::parse(url)?.build()?;
///     let chaotic = ChaosStore::new(store, ChaosConfig::new(7).slow_down(0.01))?;
///     let group = PoolGroup::new(group_limit)?;
///     Ok(S3Client::builder(chaotic).group(group).build()?)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert!(client("memory://", 4).is_ok());
/// assert!(matches!(client("memory://", 0), Err(BuildError::Group(_))));
/// assert!(matches!(client("ftp://x", 4), Err(BuildError::Connection(_))));
/// # }
/// ```
///
/// Not `Clone`: it may hold a [`ConnectionError`], which owns object_store's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The connection string or store configuration is bad.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A pool setting is bad (or there is no tokio runtime to run it on).
    #[error(transparent)]
    Pool(#[from] ConfigError),
    /// A metrics setting is bad (`pool_metrics::MetricsConfig`). Feature `metrics`.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[error(transparent)]
    Metrics(#[from] pool_metrics::ConfigError),
    /// A tuner setting is bad (`pool_tuning::KneeConfig`). Feature `tuning`.
    #[cfg(feature = "tuning")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tuning")))]
    #[error(transparent)]
    Tuning(#[from] pool_tuning::ConfigError),
    /// A [`PoolGroup`] limit of zero.
    #[error(transparent)]
    Group(#[from] ZeroGroupLimit),
    /// A [`ChaosStore`](crate::ChaosStore)'s settings cannot work.
    #[error(transparent)]
    Chaos(#[from] ChaosConfigError),
    /// A client setting is bad.
    #[error("{field}: {reason}")]
    Setting {
        /// The setting's name.
        field: &'static str,
        /// What it must be.
        reason: String,
    },
}

#[derive(Clone)]
enum PoolChoice {
    Own,
    Shared(Pool),
    Disabled,
}

/// Builds an [`S3Client`].
///
/// Defaults (those of s3db.js's client): a pool of its own, enabled, with
/// concurrency 10, 3 retries, a 1 s retry delay doubling per attempt (with jitter, at most
/// 30 s) and a 30 s per-attempt timeout; no group; bodies of 16 MiB or more uploaded as
/// multipart in 8 MiB parts, each part a pool task.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use object_store::memory::InMemory;
/// use s3_client::S3Client;
/// let client = S3Client::builder(InMemory::new())
///     .concurrency(32)
///     .retries(5)
///     .timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(client.stats().unwrap().concurrency, 32);
/// # }
/// ```
#[derive(Clone)]
pub struct S3ClientBuilder {
    store: Arc<dyn ObjectStore>,
    pool: PoolChoice,
    pool_builder: PoolBuilder,
    /// A setting of the client's own pool was given (an error with a shared or no pool).
    pool_configured: bool,
    group: Option<PoolGroup>,
    multipart: MultipartSettings,
    multipart_store: Option<Arc<dyn MultipartStore>>,
    max_bytes_in_flight: Option<u64>,
    hedge: Option<HedgeConfig>,
    #[cfg(feature = "metrics")]
    metrics: Option<pool_metrics::Metrics>,
    #[cfg(feature = "protection")]
    protection: crate::protection::ProtectionSettings,
}

impl fmt::Debug for S3ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool = match &self.pool {
            PoolChoice::Own => format!("own({:?})", self.pool_builder),
            PoolChoice::Shared(_) => "shared".to_owned(),
            PoolChoice::Disabled => "disabled".to_owned(),
        };
        f.debug_struct("S3ClientBuilder")
            .field("store", &redact(&self.store.to_string()))
            .field("pool", &pool)
            .field("group", &self.group)
            .field("multipart", &self.multipart)
            .finish()
    }
}

impl S3ClientBuilder {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        S3ClientBuilder {
            store,
            pool: PoolChoice::Own,
            pool_builder: Pool::builder()
                .concurrency(10)
                .retries(3)
                .retry_delay(Duration::from_secs(1))
                .timeout(Duration::from_secs(30)),
            pool_configured: false,
            group: None,
            multipart: MultipartSettings::default(),
            multipart_store: None,
            max_bytes_in_flight: None,
            hedge: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "protection")]
            protection: Default::default(),
        }
    }

    /// Hedges `get`, `get_range`, `head` and the ranges of `download_to`: a read that has not had its first byte by a
    /// quantile of the recent first-byte times gets a second request, the first to answer
    /// wins and the other is cancelled, under a budget (see [`HedgeConfig`] and
    /// [`S3Client::hedge_stats`]). Off by default. Needs the client's pool: hedges take
    /// pool slots like any request, and a call that bypasses the pool is not hedged. With
    /// [`metrics`](Self::metrics) (feature `metrics`) the counts are in the collector's
    /// snapshots and Prometheus text too (`pool_metrics::LiveStats::hedges`).
    pub fn hedged_reads(mut self, config: HedgeConfig) -> Self {
        self.hedge = Some(config);
        self
    }

    /// A builder for the store a connection string names (see [`StoreConfig`]).
    ///
    /// Fails with [`BuildError::Connection`] naming what is wrong with the string — the same
    /// error type as [`build`](Self::build) and [`S3Client::from_url`], so one `?` covers
    /// the chain.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), s3_client::BuildError> {
    /// use s3_client::S3ClientBuilder;
    /// let client = S3ClientBuilder::from_url("memory://")?.concurrency(32).build()?;
    /// assert_eq!(client.stats().unwrap().concurrency, 32);
    /// assert!(S3ClientBuilder::from_url("ftp://nope").is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_url(url: &str) -> Result<Self, BuildError> {
        Self::from_config(&StoreConfig::parse(url)?)
    }

    /// A builder for the store `config` describes (settings a connection string cannot
    /// carry, such as [`S3Config::upload_checksum`](crate::S3Config::upload_checksum)).
    pub fn from_config(config: &StoreConfig) -> Result<Self, BuildError> {
        let (store, multipart) = config.build_stores()?;
        let mut builder = Self::new(store);
        builder.multipart_store = multipart;
        Ok(builder)
    }

    pub(crate) fn multipart_store(mut self, store: Arc<dyn MultipartStore>) -> Self {
        self.multipart_store = Some(store);
        self
    }

    /// Bytes that the client's transfers (`download_to`, `upload_from`) may hold in memory
    /// at once, across all of them: a range or part waits for budget before it is
    /// requested or read, and never fails for lack of it. Default: a quarter of the
    /// machine's memory, at most 1 GiB. At least 1 KiB (a part larger than the budget
    /// waits until it has the whole budget); above 4 TiB counts as 4 TiB.
    pub fn max_bytes_in_flight(mut self, bytes: u64) -> Self {
        self.max_bytes_in_flight = Some(bytes);
        self
    }

    fn own_pool(mut self, change: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Self {
        self.pool_builder = change(self.pool_builder);
        self.pool_configured = true;
        self
    }

    /// Requests in flight at once. Default 10.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use object_store::memory::InMemory;
    /// use s3_client::S3Client;
    ///
    /// let client = S3Client::builder(InMemory::new()).concurrency(64).build()?;
    /// assert_eq!(client.stats().unwrap().concurrency, 64);
    /// client.set_concurrency(8)?; // and later, at once
    /// assert_eq!(client.stats().unwrap().concurrency, 8);
    /// # Ok(()) }
    /// ```
    pub fn concurrency(self, concurrency: usize) -> Self {
        self.own_pool(|b| b.concurrency(concurrency))
    }

    /// Retries per call after the first attempt. Default 3.
    pub fn retries(self, retries: u32) -> Self {
        self.own_pool(|b| b.retries(retries))
    }

    /// First retry delay (doubling per attempt). Default 1 s.
    pub fn retry_delay(self, delay: Duration) -> Self {
        self.own_pool(|b| b.retry_delay(delay))
    }

    /// Per-attempt timeout. Default 30 s.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.own_pool(|b| b.timeout(timeout))
    }

    /// Attaches an observer to the client's pool (e.g. pool-metrics' collector or
    /// pool-tuning's tuner).
    pub fn observer(self, observer: impl Observer) -> Self {
        self.own_pool(|b| b.observer(observer))
    }

    /// Without the `metrics` feature: a compile error saying to enable it.
    #[cfg(not(feature = "metrics"))]
    #[doc(hidden)]
    #[allow(private_bounds)]
    pub fn metrics<M: crate::feature_hint::NeedsMetricsFeature>(self, _metrics: M) -> Self {
        self
    }

    /// Without the `tuning` feature: a compile error saying to enable it.
    #[cfg(not(feature = "tuning"))]
    #[doc(hidden)]
    #[allow(private_bounds)]
    pub fn auto_concurrency<C: crate::feature_hint::NeedsTuningFeature>(self, _config: C) -> Self {
        self
    }

    /// Records the client's calls in `metrics` (pool-metrics: percentiles of queue wait and
    /// execution, throughput, error rates, Prometheus text); read them back with
    /// `S3Client::metrics`. Feature `metrics`.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: pool_metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self.own_pool(|b| b.observer(metrics))
    }

    /// Lets pool-tuning's knee-finding tuner set the concurrency from latency and
    /// throttling (503 SlowDown arrives as `ErrorClass::Throttled`), starting from a
    /// suggestion based on this machine's memory. Feature `tuning`.
    #[cfg(feature = "tuning")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tuning")))]
    pub fn auto_concurrency(self, config: pool_tuning::KneeConfig) -> Self {
        use pool_tuning::AutoConcurrency;
        self.own_pool(|b| b.auto_concurrency(config))
    }

    /// Keeps every S3 prefix under S3's published request rates — 3,500 PUT/COPY/POST/DELETE
    /// and 5,500 GET/HEAD per second — before requests are sent, alongside the concurrency
    /// limit. A prefix is the first `depth` `/`-separated segments of the key; when a prefix is
    /// throttled (503 SlowDown) anyway, its rate halves and then climbs back additively.
    /// Feature `protection`; applies to the client's own pool.
    ///
    /// A call whose prefix is over its rate is booked its turn and parked until then without
    /// a pool slot, so a hot prefix does not hold up calls to other prefixes; a call of
    /// higher priority takes over the turn of a parked one of lower priority.
    #[cfg(feature = "protection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "protection")))]
    pub fn prefix_rate_limits(mut self, depth: usize) -> Self {
        self.protection.prefix_limits = Some(crate::protection::PrefixLimits::Local(depth));
        self.pool_configured = true;
        self
    }

    /// Per-prefix rate limits kept by `limiter` instead of this process: e.g. pool-redis'
    /// `RedisRateLimiter` keyed by [`s3_prefix_key`](crate::prefix::s3_prefix_key) (see
    /// [`prefix`](crate::prefix)), which keeps each prefix's rate in Redis so that every
    /// process writing to the bucket shares it (four workers together stay under 3,500
    /// writes per second to a prefix, and a SlowDown seen by one slows them all). The limiter
    /// picks the prefix depth and the rates. Calls over the rate are parked without a pool
    /// slot until their turn, as with [`prefix_rate_limits`](Self::prefix_rate_limits), which
    /// this replaces (the last of the two called wins). Feature `protection`; applies to the
    /// client's own pool.
    #[cfg(feature = "protection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "protection")))]
    pub fn prefix_rate_limiter(
        mut self,
        limiter: impl pool_core::policy::KeyedRatePolicy<crate::prefix::S3PrefixKey> + 'static,
    ) -> Self {
        self.protection.prefix_limits = Some(crate::protection::PrefixLimits::Given(
            std::sync::Arc::new(limiter),
        ));
        self.pool_configured = true;
        self
    }

    /// A circuit breaker for this client's backend: while the failure rate stays above the
    /// threshold, calls fail fast with `Rejected(CircuitOpen)`; after a cool-down a few probe
    /// calls decide whether to close it. Feature `protection`; applies to the client's own pool.
    #[cfg(feature = "protection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "protection")))]
    pub fn circuit_breaker(mut self, config: pool_core::policy::CircuitBreakerConfig) -> Self {
        self.protection.breaker = Some(config);
        self.pool_configured = true;
        self
    }

    /// Any other setting of the client's own pool: `builder.configure_pool(|pool| pool.jitter(..))`.
    pub fn configure_pool(self, change: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Self {
        self.own_pool(change)
    }

    /// Uses `pool` instead of a pool of its own: clients given clones of one pool share its
    /// queue, limit, retries and stats. Calls made from inside a task of that pool (a
    /// TaskManager item, say) run on that task's slot instead of waiting for another one,
    /// so sharing a pool with the code that calls the client never deadlocks (see
    /// [`Pool`]'s "Nested work" for the rule and its limit).
    pub fn shared_pool(mut self, pool: Pool) -> Self {
        self.pool = PoolChoice::Shared(pool);
        self
    }

    /// No pool: every call goes straight to the store, once, without a limit, retries or
    /// timeout (raise [`S3Config::store_retries`](crate::S3Config) for object_store's own
    /// retries then). Batches still run through a pass-through pool with no limit.
    pub fn without_pool(mut self) -> Self {
        self.pool = PoolChoice::Disabled;
        self
    }

    /// Counts this client's requests against a [`PoolGroup`] cap.
    pub fn group(mut self, group: PoolGroup) -> Self {
        self.group = Some(group);
        self
    }

    /// Bodies of at least `bytes` go multipart. Default 16 MiB.
    pub fn multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart.threshold = bytes;
        self
    }

    /// Size of each part but the last. Default 8 MiB; from 5 MiB to 5 GiB (S3's minimum and
    /// maximum).
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.multipart.part_size = bytes;
        self
    }

    /// Parts (of an upload) or ranges (of a download) of one transfer in flight at once.
    /// Default: no cap of its own — parts and ranges are pool tasks, bounded by the pool's
    /// limit and the bytes-in-flight budget; an upload whose parts run outside the pool (a
    /// store whose multipart API the client does not know) sends 4 at once. At least 1.
    pub fn part_concurrency(mut self, parts: usize) -> Self {
        self.multipart.part_concurrency = Some(parts);
        self
    }

    /// Checks the settings and builds the client. Call it inside a tokio runtime (the
    /// pool runs on it).
    pub fn build(self) -> Result<S3Client, BuildError> {
        let multipart = self.multipart;
        if multipart.part_size < MIN_PART_SIZE {
            return Err(BuildError::Setting {
                field: "part_size",
                reason: format!(
                    "must be at least {MIN_PART_SIZE} bytes (S3's minimum part), got {}",
                    multipart.part_size
                ),
            });
        }
        if multipart.part_size as u64 > MAX_PART_SIZE {
            return Err(BuildError::Setting {
                field: "part_size",
                reason: format!(
                    "must be at most {MAX_PART_SIZE} bytes (S3's maximum part), got {}",
                    multipart.part_size
                ),
            });
        }
        if multipart.part_concurrency == Some(0) {
            return Err(BuildError::Setting {
                field: "part_concurrency",
                reason: "must be at least 1".to_owned(),
            });
        }
        if multipart.threshold < multipart.part_size {
            return Err(BuildError::Setting {
                field: "multipart_threshold",
                reason: format!(
                    "must be at least part_size ({}), got {}",
                    multipart.part_size, multipart.threshold
                ),
            });
        }
        if self.max_bytes_in_flight == Some(0) {
            return Err(BuildError::Setting {
                field: "max_bytes_in_flight",
                reason: "must be at least 1 byte (a transfer would wait forever)".to_owned(),
            });
        }
        if self.pool_configured && !matches!(self.pool, PoolChoice::Own) {
            return Err(BuildError::Setting {
                field: "pool",
                reason: "pool settings (concurrency, retries, …) apply to the client's own \
                         pool; they cannot be combined with shared_pool or without_pool"
                    .to_owned(),
            });
        }
        #[cfg(feature = "protection")]
        let (pool_builder, protection) = self.protection.attach(self.pool_builder)?;
        #[cfg(not(feature = "protection"))]
        let pool_builder = self.pool_builder;
        let (dispatcher, batch_pool) = match (self.pool, self.group) {
            (PoolChoice::Own, Some(group)) => {
                let pool = pool_builder.admission(group.clone()).build()?;
                (Dispatcher::with_admitting_pool(pool.clone(), group), pool)
            }
            (PoolChoice::Own, None) => {
                let pool = pool_builder.build()?;
                (Dispatcher::new(Some(pool.clone()), None), pool)
            }
            (PoolChoice::Shared(pool), group) => (Dispatcher::new(Some(pool.clone()), group), pool),
            (PoolChoice::Disabled, group) => (Dispatcher::new(None, group), pass_through_pool()?),
        };
        let hedger = match self.hedge {
            Some(config) => {
                config.validate()?;
                Some(Arc::new(Hedger::new(config)))
            }
            None => None,
        };
        #[cfg(feature = "metrics")]
        if let (Some(metrics), Some(hedger)) = (&self.metrics, &hedger) {
            // The collector reads the hedger's own counters at each snapshot.
            let hedger = Arc::clone(hedger);
            metrics.count_hedges_from(move || hedger.counts());
        }
        let read_ahead = ReadAhead::new(ReadAhead::AHEAD_BYTES);
        Ok(S3Client::from_inner(ClientInner {
            store: self.store,
            hedger,
            dispatcher,
            batch_pool,
            multipart,
            multipart_store: self.multipart_store,
            budget: ByteBudget::new(
                self.max_bytes_in_flight
                    .unwrap_or_else(ByteBudget::default_bytes),
            ),
            read_ahead,
            buffers: PieceBuffers::shared(KEPT_CHUNKS),
            #[cfg(feature = "metrics")]
            metrics: self.metrics,
            #[cfg(feature = "protection")]
            protection,
        }))
    }
}

/// The pool batches use when the client has none: no practical limit, no retries, no
/// timeout, so a batch behaves like all calls made at once.
fn pass_through_pool() -> Result<Pool, ConfigError> {
    Pool::builder()
        .concurrency(1 << 20)
        .retries(0)
        .no_timeout()
        .no_retry_budget()
        .build()
}
