//! [`ChaosStore`]: an `ObjectStore` decorator that injects seeded faults.
//!
//! For tests and benches of anything built on object_store (this crate, pool-bench, users'
//! own code): added latency, 503 SlowDown, 500 InternalError, hangs, connection resets,
//! aborted multipart uploads and panics, each with its own probability, drawn from one
//! seeded generator so a failing run can be replayed.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use pool_core::ErrorClass;

/// A kind of fault that [`ChaosStore`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// Like S3's `503 SlowDown`: the request was refused before it took effect.
    SlowDown,
    /// Like a `500 InternalError`: the request was refused before it took effect.
    InternalError,
    /// The call does not answer for [`ChaosConfig::hang_for`] (forever by default), then
    /// fails; a caller's timeout is what ends it.
    Hang,
    /// The request took effect but the connection dropped before the answer arrived, as
    /// when a PUT is written and its response is lost. Tests idempotent retries.
    ConnectionReset,
    /// A multipart part upload or completion failed, leaving the upload unfinished.
    MultipartAbort,
    /// The call panicked.
    Panic,
}

impl FaultKind {
    /// How the fault classifies: `SlowDown` is throttling, `Panic` is never produced as an
    /// error, everything else is transient.
    pub fn class(self) -> ErrorClass {
        match self {
            FaultKind::SlowDown => ErrorClass::Throttled,
            _ => ErrorClass::Retryable,
        }
    }

    /// The HTTP status the fault imitates, if any.
    pub fn http_status(self) -> Option<u16> {
        match self {
            FaultKind::SlowDown => Some(503),
            FaultKind::InternalError | FaultKind::MultipartAbort => Some(500),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FaultKind::SlowDown => "503 SlowDown: please reduce your request rate",
            FaultKind::InternalError => "500 InternalError: we encountered an internal error",
            FaultKind::Hang => "the request hung and timed out",
            FaultKind::ConnectionReset => "connection reset by peer after the request was sent",
            FaultKind::MultipartAbort => "500 InternalError: multipart upload aborted",
            FaultKind::Panic => "panic",
        }
    }
}

/// The error a [`ChaosStore`] returns for an injected fault, inside
/// `object_store::Error::Generic { store: "ChaosStore", .. }`.
/// [`classify`](crate::classify) recognises it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected fault on {operation} {path}: {}", kind.describe())]
pub struct InjectedFault {
    kind: FaultKind,
    operation: &'static str,
    path: String,
}

impl InjectedFault {
    /// The kind of fault.
    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// The operation it was injected into (`"put"`, `"get"`, …).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The object path of the call.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// A [`ChaosConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosConfigError {
    /// A probability is NaN or outside `[0, 1]`.
    #[error("chaos {field} probability must be in [0, 1] (got {value})")]
    Probability {
        /// The setting's name.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// The fault probabilities add up to more than 1.
    #[error("chaos fault probabilities add up to {total}, more than 1")]
    TotalAboveOne {
        /// Their sum.
        total: f64,
    },
    /// `latency` range has `min > max`.
    #[error("chaos latency range is empty: min {min:?} > max {max:?}")]
    LatencyRange {
        /// The lower bound.
        min: Duration,
        /// The upper bound.
        max: Duration,
    },
}

/// What [`ChaosStore`] injects, and how often. All probabilities default to 0 and apply per
/// call; the fault probabilities are exclusive (one call gets at most one fault) and may add
/// up to at most 1. Latency is drawn independently and comes before any fault.
///
/// ```
/// use std::time::Duration;
/// use s3_client::ChaosConfig;
/// let config = ChaosConfig::new(42)
///     .slow_down(0.05)
///     .hang(0.01)
///     .panic(0.001)
///     .latency(0.5, Duration::from_millis(1)..Duration::from_millis(5));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    seed: u64,
    latency_probability: f64,
    latency: Range<Duration>,
    slow_down: f64,
    internal_error: f64,
    hang: f64,
    hang_for: Option<Duration>,
    connection_reset: f64,
    multipart_abort: f64,
    panic: f64,
}

impl ChaosConfig {
    /// No faults, drawn from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        ChaosConfig {
            seed,
            latency_probability: 0.0,
            latency: Duration::ZERO..Duration::ZERO,
            slow_down: 0.0,
            internal_error: 0.0,
            hang: 0.0,
            hang_for: None,
            connection_reset: 0.0,
            multipart_abort: 0.0,
            panic: 0.0,
        }
    }

    /// With `probability`, delay the call by a uniform duration in `range`.
    pub fn latency(mut self, probability: f64, range: Range<Duration>) -> Self {
        self.latency_probability = probability;
        self.latency = range;
        self
    }

    /// Probability of a 503 SlowDown.
    pub fn slow_down(mut self, probability: f64) -> Self {
        self.slow_down = probability;
        self
    }

    /// Probability of a 500 InternalError.
    pub fn internal_error(mut self, probability: f64) -> Self {
        self.internal_error = probability;
        self
    }

    /// Probability that a call hangs.
    pub fn hang(mut self, probability: f64) -> Self {
        self.hang = probability;
        self
    }

    /// How long a hung call waits before failing with [`FaultKind::Hang`]. Default: forever
    /// (only the caller's timeout ends it).
    pub fn hang_for(mut self, duration: Duration) -> Self {
        self.hang_for = Some(duration);
        self
    }

    /// Probability that a call takes effect but fails with a connection reset.
    pub fn connection_reset(mut self, probability: f64) -> Self {
        self.connection_reset = probability;
        self
    }

    /// Probability that a multipart part upload or completion fails. Applies to multipart
    /// calls only, on top of the other faults.
    pub fn multipart_abort(mut self, probability: f64) -> Self {
        self.multipart_abort = probability;
        self
    }

    /// Probability that a call panics.
    pub fn panic(mut self, probability: f64) -> Self {
        self.panic = probability;
        self
    }

    fn validate(&self) -> Result<(), ChaosConfigError> {
        let fields = [
            ("latency", self.latency_probability),
            ("slow_down", self.slow_down),
            ("internal_error", self.internal_error),
            ("hang", self.hang),
            ("connection_reset", self.connection_reset),
            ("multipart_abort", self.multipart_abort),
            ("panic", self.panic),
        ];
        for (field, value) in fields {
            if !(0.0..=1.0).contains(&value) {
                return Err(ChaosConfigError::Probability { field, value });
            }
        }
        let total = self.fault_weights(true).iter().map(|(_, p)| p).sum::<f64>();
        if total > 1.0 + f64::EPSILON {
            return Err(ChaosConfigError::TotalAboveOne { total });
        }
        if self.latency.start > self.latency.end {
            return Err(ChaosConfigError::LatencyRange {
                min: self.latency.start,
                max: self.latency.end,
            });
        }
        Ok(())
    }

    fn fault_weights(&self, multipart: bool) -> [(FaultKind, f64); 6] {
        [
            (FaultKind::SlowDown, self.slow_down),
            (FaultKind::InternalError, self.internal_error),
            (FaultKind::Hang, self.hang),
            (FaultKind::ConnectionReset, self.connection_reset),
            (FaultKind::Panic, self.panic),
            (
                FaultKind::MultipartAbort,
                if multipart { self.multipart_abort } else { 0.0 },
            ),
        ]
    }
}

/// How many calls a [`ChaosStore`] saw and how many faults of each kind it injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosStats {
    /// Calls made to the store (each part of a multipart upload counts as one).
    pub calls: u64,
    /// Calls that were delayed.
    pub delayed: u64,
    /// 503 SlowDown faults.
    pub slow_downs: u64,
    /// 500 InternalError faults.
    pub internal_errors: u64,
    /// Hung calls.
    pub hangs: u64,
    /// Connection resets (after the call took effect).
    pub connection_resets: u64,
    /// Failed multipart parts or completions.
    pub multipart_aborts: u64,
    /// Panics.
    pub panics: u64,
}

impl ChaosStats {
    /// Faults of all kinds (latency excluded).
    pub fn faults(&self) -> u64 {
        self.slow_downs
            + self.internal_errors
            + self.hangs
            + self.connection_resets
            + self.multipart_aborts
            + self.panics
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    delayed: AtomicU64,
    slow_downs: AtomicU64,
    internal_errors: AtomicU64,
    hangs: AtomicU64,
    connection_resets: AtomicU64,
    multipart_aborts: AtomicU64,
    panics: AtomicU64,
}

impl Counters {
    fn count(&self, kind: FaultKind) {
        let counter = match kind {
            FaultKind::SlowDown => &self.slow_downs,
            FaultKind::InternalError => &self.internal_errors,
            FaultKind::Hang => &self.hangs,
            FaultKind::ConnectionReset => &self.connection_resets,
            FaultKind::MultipartAbort => &self.multipart_aborts,
            FaultKind::Panic => &self.panics,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

struct ChaosState {
    config: ChaosConfig,
    rng: Mutex<fastrand::Rng>,
    counters: Counters,
}

/// What one call gets: decided synchronously when the call is made, applied when polled.
struct Injection {
    state: Arc<ChaosState>,
    operation: &'static str,
    path: String,
    delay: Option<Duration>,
    fault: Option<FaultKind>,
}

impl ChaosState {
    fn draw(self: &Arc<Self>, operation: &'static str, path: &str, multipart: bool) -> Injection {
        let config = &self.config;
        let (delay, roll) = {
            let mut rng = self
                .rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let delay = (rng.f64() < config.latency_probability).then(|| {
                let span = config.latency.end.saturating_sub(config.latency.start);
                config.latency.start + span.mul_f64(rng.f64())
            });
            (delay, rng.f64())
        };
        let mut threshold = 0.0;
        let fault = config
            .fault_weights(multipart)
            .into_iter()
            .find(|(_, probability)| {
                threshold += probability;
                roll < threshold
            })
            .map(|(kind, _)| kind);
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if delay.is_some() {
            self.counters.delayed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(kind) = fault {
            self.counters.count(kind);
        }
        Injection {
            state: Arc::clone(self),
            operation,
            path: path.to_owned(),
            delay,
            fault,
        }
    }
}

impl Injection {
    fn error(&self, kind: FaultKind) -> object_store::Error {
        object_store::Error::Generic {
            store: "ChaosStore",
            source: Box::new(InjectedFault {
                kind,
                operation: self.operation,
                path: self.path.clone(),
            }),
        }
    }

    /// Runs the part of the fault that comes before the real call. `Ok(true)` means "make
    /// the call, then fail with a connection reset".
    async fn before_call(&self) -> object_store::Result<bool> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        match self.fault {
            None => Ok(false),
            Some(FaultKind::ConnectionReset) => Ok(true),
            Some(FaultKind::Panic) => {
                // `testing::quiet_injected_panics` recognises this prefix.
                panic!(
                    "ChaosStore: injected panic on {} {}",
                    self.operation, self.path
                )
            }
            Some(FaultKind::Hang) => {
                match self.state.config.hang_for {
                    Some(duration) => tokio::time::sleep(duration).await,
                    None => std::future::pending::<()>().await,
                }
                Err(self.error(FaultKind::Hang))
            }
            Some(kind) => Err(self.error(kind)),
        }
    }

    /// Wraps a real call with the drawn fault.
    async fn around<T>(
        self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        let reset_after = self.before_call().await?;
        let value = call.await?;
        if reset_after {
            return Err(self.error(FaultKind::ConnectionReset));
        }
        Ok(value)
    }
}

/// An `ObjectStore` that forwards to `S` and injects faults as configured by [`ChaosConfig`].
///
/// Every call (put, get, head, list, copy, delete, each multipart part and completion)
/// draws once. Faults come back as `object_store::Error::Generic` with an
/// [`InjectedFault`] source, which [`classify`](crate::classify) maps like the real thing
/// (SlowDown → throttled, others → retryable).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use object_store::{memory::InMemory, path::Path, ObjectStoreExt};
/// use s3_client::{ChaosConfig, ChaosStore};
///
/// let store = ChaosStore::new(InMemory::new(), ChaosConfig::new(7).slow_down(1.0)).unwrap();
/// let err = store.put(&Path::from("a"), "x".into()).await.unwrap_err();
/// assert_eq!(s3_client::http_status(&err), Some(503));
/// assert_eq!(store.stats().slow_downs, 1);
/// # }
/// ```
pub struct ChaosStore<S> {
    inner: Arc<S>,
    state: Arc<ChaosState>,
}

impl<S: ObjectStore> ChaosStore<S> {
    /// Wraps `inner`. Fails if a probability is outside `[0, 1]`, the fault probabilities add
    /// up to more than 1, or the latency range is empty.
    pub fn new(inner: S, config: ChaosConfig) -> Result<Self, ChaosConfigError> {
        config.validate()?;
        let rng = Mutex::new(fastrand::Rng::with_seed(config.seed));
        Ok(ChaosStore {
            inner: Arc::new(inner),
            state: Arc::new(ChaosState {
                config,
                rng,
                counters: Counters::default(),
            }),
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Calls seen and faults injected so far.
    pub fn stats(&self) -> ChaosStats {
        let c = &self.state.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ChaosStats {
            calls: read(&c.calls),
            delayed: read(&c.delayed),
            slow_downs: read(&c.slow_downs),
            internal_errors: read(&c.internal_errors),
            hangs: read(&c.hangs),
            connection_resets: read(&c.connection_resets),
            multipart_aborts: read(&c.multipart_aborts),
            panics: read(&c.panics),
        }
    }

    fn draw(&self, operation: &'static str, path: &Path) -> Injection {
        self.state.draw(operation, path.as_ref(), false)
    }
}

impl<S> fmt::Debug for ChaosStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosStore")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Display> fmt::Display for ChaosStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChaosStore({})", self.inner)
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for ChaosStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.draw("put", location)
            .around(self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self
            .draw("put_multipart", location)
            .around(self.inner.put_multipart_opts(location, opts))
            .await?;
        Ok(Box::new(ChaosUpload {
            inner: upload,
            state: Arc::clone(&self.state),
            path: location.to_string(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let operation = if options.head { "head" } else { "get" };
        self.draw(operation, location)
            .around(self.inner.get_opts(location, options))
            .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.draw("get_ranges", location)
            .around(self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Path by path, each its own draw: a bulk delete loses its batching here, which is
        // fine for a test double and lets every path fail on its own.
        let inner = Arc::clone(&self.inner);
        let state = Arc::clone(&self.state);
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                let state = Arc::clone(&state);
                async move {
                    let location = location?;
                    let injection = state.draw("delete", location.as_ref(), false);
                    injection
                        .around(async {
                            inner.delete(&location).await?;
                            Ok(location.clone())
                        })
                        .await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let injection = self.draw("list", prefix.unwrap_or(&Path::default()));
        let inner = self.inner.list(prefix);
        fault_then_stream(injection, inner)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let injection = self.draw("list", prefix.unwrap_or(&Path::default()));
        let inner = self.inner.list_with_offset(prefix, offset);
        fault_then_stream(injection, inner)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.draw("list", prefix.unwrap_or(&Path::default()))
            .around(self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.draw("copy", to)
            .around(self.inner.copy_opts(from, to, options))
            .await
    }
}

/// A listing whose first item carries the drawn fault; a reset ends it after the first page
/// of real items would have been read, here after the whole inner listing.
fn fault_then_stream(
    injection: Injection,
    inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    stream::once(async move {
        match injection.before_call().await {
            Err(error) => stream::once(async move { Err(error) }).boxed(),
            Ok(false) => inner,
            Ok(true) => {
                let reset = injection.error(FaultKind::ConnectionReset);
                inner.chain(stream::once(async move { Err(reset) })).boxed()
            }
        }
    })
    .flatten()
    .boxed()
}

/// A multipart upload whose parts and completion draw faults too.
struct ChaosUpload {
    inner: Box<dyn MultipartUpload>,
    state: Arc<ChaosState>,
    path: String,
}

impl fmt::Debug for ChaosUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosUpload")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for ChaosUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let injection = self.state.draw("put_part", &self.path, true);
        let part = self.inner.put_part(data);
        Box::pin(injection.around(part))
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let injection = self.state.draw("complete_multipart", &self.path, true);
        injection.around(self.inner.complete()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // Aborting is cleanup: never fail it on purpose.
        self.inner.abort().await
    }
}
