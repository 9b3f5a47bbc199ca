//! [`S3Client`]: every object-store operation through a pool.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use pool_core::{Batch, ConfigError, MakeAttempt, Pool, Stats, TaskOptions};

use crate::body::{held_get, HeldGet};
use crate::builder::{BuildError, S3ClientBuilder};
use crate::call::Call;
use crate::classify::classify;
use crate::dispatch::{attempt, Attempt, Dispatcher};
use crate::error::{ClientError, Operation};
use crate::hedge::{HedgeStats, HedgedRead, Hedger, Leg, Race};
use crate::integrity::{IntegrityError, Verifier};
use crate::listing::pooled_list;
use crate::multipart::{self, MultipartSettings};
use crate::object_body::ObjectBody;
use crate::options::CallOptions;
use crate::pooled_store::PooledStore;
use crate::redact::redact;
use crate::transfer::{
    download, download_to_file, io_failure, upload, ByteBudget, BytesSource, FileSource,
    PieceBuffers, ReadAhead, ReaderSource, TransferContext, TransferSummary, WriterSink,
};
use tokio::io::{AsyncRead, AsyncWrite};

/// Paths per bulk-delete request (S3's DeleteObjects maximum).
const DELETE_CHUNK: usize = 1000;

/// An object-store client whose every call goes through an s3pool [`Pool`]: bounded
/// concurrency, priorities, retries with backoff for throttling and transient errors
/// (classified by [`classify`](crate::classify)), per-attempt timeouts, stats and events.
///
/// Works over any `object_store::ObjectStore`: `AmazonS3` (S3, MinIO, other S3-compatible
/// servers), `InMemory`, `LocalFileSystem`, or a wrapper such as
/// [`ChaosStore`](crate::ChaosStore). Cheap to clone; clones share the pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use object_store::path::Path;
/// use s3_client::S3Client;
/// let client = S3Client::from_url("memory://").unwrap();
/// let path = Path::from("photos/ü-1.jpg");
/// client.put(&path, vec![7u8; 1024]).await.unwrap();
/// assert_eq!(client.head(&path).await.unwrap().size, 1024);
/// assert_eq!(client.get_range(&path, 0..2).await.unwrap(), vec![7u8, 7]);
/// assert_eq!(client.stats().unwrap().succeeded, 3);
/// # }
/// ```
#[derive(Clone)]
pub struct S3Client {
    inner: Arc<ClientInner>,
}

/// What a client is made of; built by [`S3ClientBuilder`].
pub(crate) struct ClientInner {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) dispatcher: Dispatcher,
    /// The client's pool, or a pass-through one when the pool is disabled.
    pub(crate) batch_pool: Pool,
    pub(crate) multipart: MultipartSettings,
    /// The store's multipart API, when known: parts of `upload_from` retry alone.
    pub(crate) multipart_store: Option<Arc<dyn object_store::multipart::MultipartStore>>,
    pub(crate) budget: ByteBudget,
    /// Hedges reads, when [`S3ClientBuilder::hedged_reads`] says so.
    pub(crate) hedger: Option<Arc<Hedger>>,
    /// Parts read from a source while they wait for a slot, at most.
    pub(crate) read_ahead: ReadAhead,
    /// Buffers of the parts read from readers (`upload_from`), reused across uploads.
    pub(crate) buffers: PieceBuffers,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<pool_metrics::Metrics>,
    #[cfg(feature = "protection")]
    pub(crate) protection: crate::protection::Protection,
}

/// A control call on a client that has no pool.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The client was built `without_pool`.
    #[error("this client has no pool (built without_pool)")]
    PoolDisabled,
    /// The pool refused the setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl S3Client {
    /// A builder over `store` with the defaults listed on [`S3ClientBuilder`].
    pub fn builder(store: impl ObjectStore) -> S3ClientBuilder {
        S3ClientBuilder::new(Arc::new(store))
    }

    /// [`S3Client::builder`] for a store that is also a `MultipartStore` (`AmazonS3`,
    /// `InMemory`, a `PrefixStore` of either): uploads then retry a failed part alone.
    pub fn builder_multipart<S>(store: S) -> S3ClientBuilder
    where
        S: ObjectStore + object_store::multipart::MultipartStore,
    {
        let store = Arc::new(store);
        S3ClientBuilder::new(Arc::clone(&store) as _).multipart_store(store)
    }

    /// [`S3Client::builder`] for a store that is already shared.
    pub fn builder_arc(store: Arc<dyn ObjectStore>) -> S3ClientBuilder {
        S3ClientBuilder::new(store)
    }

    /// A client with default settings for the store a connection string names (see
    /// [`StoreConfig`](crate::StoreConfig)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use s3_client::{BuildError, S3Client};
    ///
    /// let client = S3Client::from_url("memory://")?; // or s3://bucket/prefix?region=…
    /// assert_eq!(client.stats().unwrap().concurrency, 10);
    /// let bad = S3Client::from_url("ftp://bucket").unwrap_err();
    /// assert!(matches!(bad, BuildError::Connection(_)), "{bad}");
    /// # Ok(()) }
    /// ```
    pub fn from_url(url: &str) -> Result<S3Client, BuildError> {
        S3ClientBuilder::from_url(url)?.build()
    }

    pub(crate) fn from_inner(inner: ClientInner) -> Self {
        S3Client {
            inner: Arc::new(inner),
        }
    }

    /// The metrics given to [`S3ClientBuilder::metrics`]. Feature `metrics`.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(&self) -> Option<&pool_metrics::Metrics> {
        self.inner.metrics.as_ref()
    }

    /// Without the `metrics` feature: a compile error saying to enable it.
    #[cfg(not(feature = "metrics"))]
    #[doc(hidden)]
    #[allow(private_bounds)]
    pub fn metrics(&self) -> Option<&()>
    where
        // Never holds; the `for<'a>` keeps rustc from rejecting the bound here rather than
        // at the call.
        for<'a> &'a S3Client: crate::feature_hint::NeedsMetricsFeature,
    {
        None
    }

    /// The per-prefix rate limits set by [`S3ClientBuilder::prefix_rate_limits`] or
    /// [`S3ClientBuilder::prefix_rate_limiter`]: read a prefix's current rate with
    /// `current_rate(&key)`. Feature `protection`.
    ///
    /// [`S3ClientBuilder::prefix_rate_limits`]: crate::S3ClientBuilder::prefix_rate_limits
    /// [`S3ClientBuilder::prefix_rate_limiter`]: crate::S3ClientBuilder::prefix_rate_limiter
    #[cfg(feature = "protection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "protection")))]
    pub fn prefix_rate_limits(
        &self,
    ) -> Option<&dyn pool_core::policy::KeyedRatePolicy<crate::prefix::S3PrefixKey>> {
        self.inner.protection.prefix_limits.as_deref()
    }

    /// The circuit breaker given by [`S3ClientBuilder::circuit_breaker`]: its state and
    /// counts. Feature `protection`.
    ///
    /// [`S3ClientBuilder::circuit_breaker`]: crate::S3ClientBuilder::circuit_breaker
    #[cfg(feature = "protection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "protection")))]
    pub fn circuit_breaker(&self) -> Option<&pool_core::policy::CircuitBreaker> {
        self.inner.protection.breaker.as_ref()
    }

    /// The underlying store (calls on it skip the pool).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The client's pool; `None` when built `without_pool`.
    pub fn pool(&self) -> Option<&Pool> {
        self.inner.dispatcher.pool()
    }

    /// This client as an `ObjectStore` whose calls go through the same pool and group.
    pub fn as_object_store(&self) -> PooledStore<Arc<dyn ObjectStore>> {
        PooledStore::from_dispatcher(
            Arc::new(Arc::clone(&self.inner.store)),
            self.inner.dispatcher.clone(),
            self.inner.multipart_store.clone(),
        )
    }

    fn call<A>(&self, operation: Operation, key: String, run: A) -> Call<A::Ok>
    where
        A: MakeAttempt<Error = object_store::Error>,
    {
        Call::plain(self.inner.dispatcher.clone(), operation, key, run)
    }

    /// Uploads `payload` to `path`, as a multipart upload when it is at least the multipart
    /// threshold (16 MiB by default).
    ///
    /// A multipart upload goes as [`upload_from`](Self::upload_from) does: each part (8 MiB
    /// by default) a pool task with the call's retries — a failed part re-sends that part
    /// only — under the bytes-in-flight budget, with progress ([`Call::on_progress`]); an
    /// upload that fails, or whose call is dropped, is aborted. That needs the store's
    /// multipart API, which clients built from a connection string or with
    /// [`S3Client::builder_multipart`] have; otherwise the whole multipart upload is one
    /// pool task, retried as a unit.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use s3_client::{Path, S3Client};
    ///
    /// let client = S3Client::from_url("memory://")?;
    /// let path = Path::from("photos/1.jpg");
    /// client.put(&path, "jpeg bytes").await?;
    /// // A call takes per-call settings before it is awaited.
    /// client
    ///     .put(&path, "newer bytes")
    ///     .priority(5)
    ///     .retries(1)
    ///     .timeout(Duration::from_secs(5))
    ///     .await?;
    /// assert_eq!(client.get(&path).await?, "newer bytes");
    /// # Ok(()) }
    /// ```
    pub fn put(&self, path: &Path, payload: impl Into<PutPayload>) -> Call<PutResult> {
        self.put_opts(path, payload, PutOptions::default())
    }

    /// [`put`](Self::put) with object_store's options (conditional mode, tags, attributes).
    /// Conditional puts (`PutMode::Create` / `Update`) always use a single request.
    pub fn put_opts(
        &self,
        path: &Path,
        payload: impl Into<PutPayload>,
        options: PutOptions,
    ) -> Call<PutResult> {
        let payload = payload.into();
        let large = payload.content_length() >= self.inner.multipart.threshold;
        if large
            && matches!(options.mode, PutMode::Overwrite)
            && self.inner.multipart_store.is_some()
        {
            return self.put_in_parts(path, Bytes::from(payload), options);
        }
        if large && matches!(options.mode, PutMode::Overwrite) {
            let (operation, run) = self.put_attempt(path.clone(), payload, options);
            return self.call(operation, path.to_string(), run);
        }
        let run = put_once(
            Arc::clone(&self.inner.store),
            path.clone(),
            payload,
            options,
        );
        // The key is the path's text: taken as it is, not formatted.
        self.call(Operation::Put, String::from(path.as_ref()), run)
    }

    /// A large body as a multipart upload whose parts are pool tasks.
    fn put_in_parts(&self, path: &Path, body: Bytes, options: PutOptions) -> Call<PutResult> {
        let (context, path) = (self.transfer_context(), path.clone());
        let options = PutMultipartOptions {
            tags: options.tags,
            attributes: options.attributes,
            extensions: options.extensions,
        };
        Call::new(move |call| {
            Box::pin(async move {
                let total = Some(body.len() as u64);
                upload(&context, &path, BytesSource(body), total, options, &call)
                    .await
                    .map(|(result, _)| result)
                    .map_err(|error| {
                        ClientError::new(Operation::PutMultipart, path.to_string(), error)
                    })
            })
        })
    }

    fn put_attempt(
        &self,
        path: Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> (Operation, Attempt<PutResult>) {
        let store = Arc::clone(&self.inner.store);
        let settings = self.inner.multipart;
        let large = payload.content_length() >= settings.threshold;
        if large && matches!(options.mode, PutMode::Overwrite) {
            let body = Bytes::from(payload);
            let multipart_options = PutMultipartOptions {
                tags: options.tags,
                attributes: options.attributes,
                extensions: options.extensions,
            };
            let run = attempt(move || {
                multipart::upload(
                    Arc::clone(&store),
                    path.clone(),
                    body.clone(),
                    multipart_options.clone(),
                    settings,
                )
            });
            return (Operation::PutMultipart, run);
        }
        let run = put_once(store, path, payload, options);
        (Operation::Put, attempt(run))
    }

    /// What hedged reads did so far; `None` unless the client hedges
    /// ([`S3ClientBuilder::hedged_reads`]).
    pub fn hedge_stats(&self) -> Option<HedgeStats> {
        self.inner.hedger.as_ref().map(|hedger| hedger.stats())
    }

    /// A read that may be hedged: `make(race, leg)` gives the attempts of each request
    /// (`None`: the read alone, unhedged).
    fn read_call<T: Send + 'static>(
        &self,
        operation: Operation,
        key: String,
        make: impl Fn(Option<(Arc<Race>, Leg)>) -> Attempt<T> + Send + Sync + 'static,
    ) -> Call<T> {
        let (Some(hedger), Some(pool)) = (&self.inner.hedger, self.inner.dispatcher.pool()) else {
            return self.call(operation, key, make(None));
        };
        let (hedger, pool) = (Arc::clone(hedger), pool.clone());
        let dispatcher = self.inner.dispatcher.clone();
        Call::new(move |options| {
            let reading = if options.bypass_pool {
                dispatcher.start(operation.as_str(), &key, &options, make(None))
            } else {
                let read = HedgedRead {
                    hedger,
                    pool,
                    dispatcher,
                    operation: operation.as_str(),
                    key: key.clone(),
                    options,
                };
                read.start(move |race, leg| make(Some((race, leg))))
            };
            Box::pin(async move {
                reading
                    .await
                    .map_err(|error| ClientError::new(operation, key, error))
            })
        })
    }

    /// Downloads a whole object. The body is read inside the attempt, so a connection lost
    /// mid-body is retried like any other transient error. Hedged when the client hedges
    /// reads (the hedge races the first byte; one body is read).
    ///
    /// A missing object fails fast (not retried), with the store's `NotFound` as the source.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use s3_client::{ErrorClass, Path, S3Client};
    ///
    /// let client = S3Client::from_url("memory://")?;
    /// client.put(&Path::from("a.txt"), "alpha").await?;
    /// assert_eq!(client.get(&Path::from("a.txt")).await?, "alpha");
    ///
    /// let missing = client.get(&Path::from("nope")).await.unwrap_err();
    /// assert!(missing.is_not_found());
    /// assert_eq!(missing.error_class(), ErrorClass::Fatal);
    /// # Ok(()) }
    /// ```
    pub fn get(&self, path: &Path) -> Call<Bytes> {
        self.get_opts_bytes(path, GetOptions::new())
    }

    /// A whole read of `path` with `options` (a range, or none), hedged if the client hedges.
    fn get_opts_bytes(&self, path: &Path, options: GetOptions) -> Call<Bytes> {
        let store = Arc::clone(&self.inner.store);
        let location = path.clone();
        self.read_call(Operation::Get, path.to_string(), move |hedged| {
            let (store, location, options) =
                (Arc::clone(&store), location.clone(), options.clone());
            attempt(move || {
                let (store, path, options) =
                    (Arc::clone(&store), location.clone(), options.clone());
                let hedged = hedged.clone();
                async move {
                    let request = store.get_opts(&path, options);
                    match hedged {
                        None => read_verified(request.await?).await,
                        Some((race, leg)) => race.attempt(leg, request, read_verified).await,
                    }
                }
            })
        })
    }

    fn get_attempt(&self, path: Path) -> Attempt<Bytes> {
        let store = Arc::clone(&self.inner.store);
        attempt(move || {
            let (store, path) = (Arc::clone(&store), path.clone());
            async move { read_verified(store.get(&path).await?).await }
        })
    }

    /// Downloads the bytes `range` of an object (their count is checked). Hedged when the
    /// client hedges reads.
    pub fn get_range(&self, path: &Path, range: Range<u64>) -> Call<Bytes> {
        self.get_opts_bytes(path, GetOptions::new().with_range(Some(range)))
    }

    /// Streams an object's body (see [`ObjectBody`]): resolves when the response starts.
    /// The read holds its pool slot until the body has been read to its end or dropped
    /// (unless the call says [`CallOptions::release_slot_at_response`]); a body that
    /// breaks is resumed from its last byte, counted as a retry. The body's length is
    /// checked, and for a single-part S3 object its MD5 against the ETag (a mismatch ends
    /// the stream with an [`IntegrityError`](crate::IntegrityError)).
    ///
    /// The read has no timeout unless the call sets one (covering the whole body): the
    /// reader sets the pace.
    pub fn get_stream(&self, path: &Path) -> Call<ObjectBody> {
        self.get_stream_opts(path, GetOptions::new())
    }

    /// [`get_stream`](Self::get_stream) with object_store's options: a range, conditions
    /// (`If-Match`, …), a version.
    pub fn get_stream_opts(&self, path: &Path, options: GetOptions) -> Call<ObjectBody> {
        let store = Arc::clone(&self.inner.store);
        let dispatcher = self.inner.dispatcher.clone();
        let budget = self.inner.budget.clone();
        let location = path.clone();
        Call::new(move |call| {
            Box::pin(async move {
                let key = location.to_string();
                let read = if call.release_slot_at_response {
                    let run = attempt(move || {
                        let (store, path, options) =
                            (Arc::clone(&store), location.clone(), options.clone());
                        async move { store.get_opts(&path, options).await }
                    });
                    dispatcher
                        .run(Operation::Get.as_str(), &key, &call, run)
                        .await
                        .map(HeldGet::Whole)
                } else {
                    let operation = Operation::Get.as_str();
                    let budget = Some(budget);
                    held_get(
                        store, dispatcher, location, options, call, operation, budget,
                    )
                    .await
                };
                match read {
                    Ok(read) => Ok(ObjectBody::new(read, key)),
                    Err(error) => Err(ClientError::new(Operation::Get, key, error)),
                }
            })
        })
    }

    /// An object's metadata. Hedged when the client hedges reads.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use s3_client::{Path, S3Client};
    ///
    /// let client = S3Client::from_url("memory://")?;
    /// client.put(&Path::from("a.bin"), vec![0u8; 1_000]).await?;
    /// let meta = client.head(&Path::from("a.bin")).await?;
    /// assert_eq!(meta.size, 1_000);
    /// assert!(client.head(&Path::from("nope")).await.unwrap_err().is_not_found());
    /// # Ok(()) }
    /// ```
    pub fn head(&self, path: &Path) -> Call<ObjectMeta> {
        let store = Arc::clone(&self.inner.store);
        let location = path.clone();
        self.read_call(Operation::Head, path.to_string(), move |hedged| {
            let (store, location) = (Arc::clone(&store), location.clone());
            attempt(move || {
                let (store, path, hedged) = (Arc::clone(&store), location.clone(), hedged.clone());
                async move {
                    match hedged {
                        None => store.head(&path).await,
                        Some((race, leg)) => {
                            let request = async { store.head(&path).await };
                            race.attempt(leg, request, |meta| async { Ok(meta) }).await
                        }
                    }
                }
            })
        })
    }

    /// Deletes an object.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use s3_client::{Path, S3Client};
    ///
    /// let client = S3Client::from_url("memory://")?;
    /// let path = Path::from("old.txt");
    /// client.put(&path, "bye").await?;
    /// client.delete(&path).await?;
    /// assert!(client.get(&path).await.unwrap_err().is_not_found());
    /// # Ok(()) }
    /// ```
    pub fn delete(&self, path: &Path) -> Call<()> {
        let store = Arc::clone(&self.inner.store);
        let location = path.clone();
        let run = move || {
            let (store, path) = (Arc::clone(&store), location.clone());
            async move { store.delete(&path).await }
        };
        self.call(Operation::Delete, String::from(path.as_ref()), run)
    }

    /// Server-side copy, overwriting `to`.
    pub fn copy(&self, from: &Path, to: &Path) -> Call<()> {
        self.copy_with(from, to, false)
    }

    /// Server-side copy that fails with `AlreadyExists` if `to` exists (where the store
    /// supports it).
    pub fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Call<()> {
        self.copy_with(from, to, true)
    }

    fn copy_with(&self, from: &Path, to: &Path, if_not_exists: bool) -> Call<()> {
        let store = Arc::clone(&self.inner.store);
        let (source, target) = (from.clone(), to.clone());
        let run = move || {
            let (store, from, to) = (Arc::clone(&store), source.clone(), target.clone());
            async move {
                if if_not_exists {
                    store.copy_if_not_exists(&from, &to).await
                } else {
                    store.copy(&from, &to).await
                }
            }
        };
        self.call(Operation::Copy, String::from(to.as_ref()), run)
    }

    fn transfer_context(&self) -> TransferContext {
        TransferContext {
            store: Arc::clone(&self.inner.store),
            multipart: self.inner.multipart_store.clone(),
            dispatcher: self.inner.dispatcher.clone(),
            hedger: self.inner.hedger.clone(),
            budget: self.inner.budget.clone(),
            read_ahead: self.inner.read_ahead.clone(),
            buffers: self.inner.buffers.clone(),
            part_size: self.inner.multipart.part_size as u64,
            part_concurrency: self.inner.multipart.part_concurrency.unwrap_or(usize::MAX),
        }
    }

    /// Bytes the client's transfers may hold in memory at once (see
    /// [`S3ClientBuilder::max_bytes_in_flight`]).
    pub fn max_bytes_in_flight(&self) -> u64 {
        self.inner.budget.bytes()
    }

    /// Downloads an object into `sink` (a file, a socket, any `AsyncWrite`): the first
    /// request (one part, 8 MiB by default) tells the object's size; the rest is fetched as
    /// ranged GETs of a part each, run in parallel through the pool (as many as the pool's
    /// limit and the bytes-in-flight budget allow), each retried on its own, and written in
    /// order. Every range's length is checked, and a single-part S3 object's MD5 against
    /// its ETag (an [`IntegrityError`](crate::IntegrityError) then). Progress: see
    /// [`Call::on_progress`]. The call's retries, timeout and priority apply to each range.
    ///
    /// # Cancel safety
    /// Dropping the call stops the download; `sink` holds a prefix of the object.
    pub fn download_to<W>(&self, path: &Path, mut sink: W) -> Call<TransferSummary>
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (context, path) = (self.transfer_context(), path.clone());
        Call::new(move |call| {
            Box::pin(async move {
                download(&context, &path, WriterSink(&mut sink), &call)
                    .await
                    .map_err(|error| ClientError::new(Operation::Download, path.to_string(), error))
            })
        })
    }

    /// [`download_to`](Self::download_to) a new file at `file` (created or truncated), each
    /// range written at its offset as soon as it arrives (from tokio's blocking pool, several
    /// at once), so that a slow range holds back nothing but itself. An object checked
    /// against the MD5 of its ETag (a single-part object with no stored CRC) is written in
    /// order, as the MD5 needs its bytes in order.
    ///
    /// # Cancel safety
    /// Dropping the call stops the download; the file holds some of the object's ranges,
    /// not necessarily a prefix of it.
    pub fn download_to_file(
        &self,
        path: &Path,
        file: impl AsRef<std::path::Path>,
    ) -> Call<TransferSummary> {
        let (context, path, file) = (
            self.transfer_context(),
            path.clone(),
            file.as_ref().to_owned(),
        );
        Call::new(move |call| {
            Box::pin(async move {
                let fail = |error| ClientError::new(Operation::Download, path.to_string(), error);
                let file = tokio::fs::File::create(&file)
                    .await
                    .map_err(|e| fail(io_failure(e)))?
                    .into_std()
                    .await;
                download_to_file(&context, &path, file, &call)
                    .await
                    .map_err(fail)
            })
        })
    }

    /// [`download_to_file`](Self::download_to_file) into a file the caller opened for
    /// writing (a temporary file to be persisted, a preallocated one, one to be
    /// overwritten), in place: it is not truncated first, and once the download is complete
    /// its length is set to the object's size. Overwriting a file whose pages are in memory
    /// allocates none: on a virtual machine that hands its free memory back to the host, a
    /// new file's pages are the dearest part of a download (see the pool-bench README).
    ///
    /// # Cancel safety
    /// Dropping the call stops the download; the file holds some of the object's ranges
    /// over what it held before.
    pub fn download_to_open_file(&self, path: &Path, file: std::fs::File) -> Call<TransferSummary> {
        let (context, path) = (self.transfer_context(), path.clone());
        Call::new(move |call| {
            Box::pin(async move {
                download_to_file(&context, &path, file, &call)
                    .await
                    .map_err(|error| ClientError::new(Operation::Download, path.to_string(), error))
            })
        })
    }

    /// Uploads everything `source` yields (a file, a socket, any `AsyncRead`): one PUT if
    /// it is smaller than a part, otherwise a multipart upload whose parts (8 MiB by default)
    /// are read as budget allows and sent as pool tasks, several at once, each with the
    /// call's retries: a failed part re-sends that part only. The first part (all of a
    /// body smaller than a part) is read by its pool task once it has a slot; that task has
    /// no pool timeout unless the call sets one (the source sets its pace, the HTTP
    /// client's timeout bounds its request). If the upload finally fails
    /// it is aborted, so no parts are left behind. Without a store whose multipart API the
    /// client knows (a client built from a connection string or with
    /// [`S3Client::builder_multipart`] has it), a failed part fails the upload (aborted).
    ///
    /// # Cancel safety
    /// Dropping the call mid-upload (or cancelling its token) aborts the multipart upload:
    /// no further part is read or sent, parts queued or waiting to retry are dropped, and
    /// the parts already being sent are let finish or fail — each bounded by the HTTP
    /// client's request timeout (a part attempt the pool times out leaves its request
    /// running to its answer) — before the abort is sent, because a part request cut off
    /// mid-write may already be whole at the server and be stored after the abort. The
    /// abort (with at least three retries) runs as a task on the current tokio runtime,
    /// or, dropped outside a tokio runtime, as a detached task of the client's pool; a
    /// cancelled call awaits it before it resolves. A failed abort is logged at WARN; a
    /// bucket lifecycle rule for incomplete uploads is the backstop.
    pub fn upload_from<R>(&self, path: &Path, source: R) -> Call<TransferSummary>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (context, path) = (self.transfer_context(), path.clone());
        Call::new(move |call| {
            Box::pin(async move {
                let source = ReaderSource::new(source, context.buffers.clone());
                upload(&context, &path, source, None, Default::default(), &call)
                    .await
                    .map(|(_, summary)| summary)
                    .map_err(|error| ClientError::new(Operation::Upload, path.to_string(), error))
            })
        })
    }

    /// [`upload_from`](Self::upload_from) the file at `file` (its size is the progress
    /// total).
    pub fn upload_from_file(
        &self,
        path: &Path,
        file: impl AsRef<std::path::Path>,
    ) -> Call<TransferSummary> {
        let (context, path, file) = (
            self.transfer_context(),
            path.clone(),
            file.as_ref().to_owned(),
        );
        Call::new(move |call| {
            Box::pin(async move {
                let fail = |error| ClientError::new(Operation::Upload, path.to_string(), error);
                let source = tokio::fs::File::open(&file)
                    .await
                    .map_err(|e| fail(io_failure(e)))?;
                let size = source
                    .metadata()
                    .await
                    .map_err(|e| fail(io_failure(e)))?
                    .len();
                let source = FileSource::new(source.into_std().await);
                upload(
                    &context,
                    &path,
                    source,
                    Some(size),
                    Default::default(),
                    &call,
                )
                .await
                .map(|(_, summary)| summary)
                .map_err(fail)
            })
        })
    }

    /// [`upload_from`](Self::upload_from) a `Stream` of byte chunks (an error of the stream
    /// fails the upload, which is then aborted).
    pub fn upload_from_stream<S, B, E>(&self, path: &Path, stream: S) -> Call<TransferSummary>
    where
        S: futures::Stream<Item = Result<B, E>> + Send + Unpin + 'static,
        B: bytes::Buf + Send + 'static,
        E: Into<std::io::Error> + 'static,
    {
        let reader =
            tokio_util::io::StreamReader::new(stream.map(|chunk| chunk.map_err(Into::into)));
        self.upload_from(path, reader)
    }

    /// Deletes many objects: bulk requests of up to 1,000 paths (S3's DeleteObjects), each
    /// one pool task, run concurrently. A retry deletes only the paths still left; a path
    /// that is already gone counts as deleted. Returns the paths deleted; fails with the
    /// first chunk that could not be deleted.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use s3_client::prelude::*;
    ///
    /// let client = S3Client::from_url("memory://")?;
    /// let paths: Vec<Path> = (0..3).map(|i| Path::from(format!("tmp/{i}"))).collect();
    /// for path in &paths {
    ///     client.put(path, "x").await?;
    /// }
    /// let deleted = client.delete_many(paths.clone()).await?;
    /// assert_eq!(deleted.len(), 3);
    /// assert_eq!(client.list(Some(&Path::from("tmp"))).count().await, 0);
    /// # Ok(()) }
    /// ```
    pub fn delete_many(&self, paths: impl IntoIterator<Item = Path>) -> Call<Vec<Path>> {
        let paths: Vec<Path> = paths.into_iter().collect();
        let store = Arc::clone(&self.inner.store);
        let dispatcher = self.inner.dispatcher.clone();
        Call::new(move |options| {
            Box::pin(async move {
                let chunks = paths.chunks(DELETE_CHUNK).map(|chunk| {
                    let key = chunk_key(chunk);
                    let run = delete_chunk_attempt(Arc::clone(&store), chunk.to_vec());
                    let (dispatcher, options) = (dispatcher.clone(), options.clone());
                    async move {
                        dispatcher
                            .run(Operation::DeleteMany.as_str(), &key, &options, run)
                            .await
                            .map_err(|error| ClientError::new(Operation::DeleteMany, key, error))
                    }
                });
                let results = futures::future::join_all(chunks).await;
                let mut deleted = Vec::with_capacity(paths.len());
                for result in results {
                    deleted.extend(result?);
                }
                Ok(deleted)
            })
        })
    }

    /// Streams the objects under `prefix` (all objects for `None`), through the pool (see
    /// [`S3Client::list_with`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use s3_client::prelude::*; // StreamExt / TryStreamExt for the stream
    ///
    /// let client = S3Client::from_url("memory://")?;
    /// for name in ["logs/1", "logs/2", "other/3"] {
    ///     client.put(&Path::from(name), "line").await?;
    /// }
    /// let logs: Vec<ObjectMeta> = client.list(Some(&Path::from("logs"))).try_collect().await?;
    /// let mut names: Vec<String> = logs.iter().map(|meta| meta.location.to_string()).collect();
    /// names.sort();
    /// assert_eq!(names, ["logs/1", "logs/2"]);
    /// # Ok(()) }
    /// ```
    pub fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta, ClientError>> {
        self.list_with(prefix, CallOptions::default())
    }

    /// [`list`](Self::list) with per-call options. The listing is one pool task holding one
    /// slot while its pages are fetched one after another; it has no timeout unless
    /// `options` sets one (the consumer sets the pace). A failed listing is retried from
    /// the start without repeating entries already yielded.
    pub fn list_with(
        &self,
        prefix: Option<&Path>,
        options: CallOptions,
    ) -> BoxStream<'static, Result<ObjectMeta, ClientError>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        pooled_list(
            Arc::clone(&self.inner.store),
            self.inner.dispatcher.clone(),
            prefix.cloned(),
            None,
            options,
        )
        .map(move |entry| {
            entry.map_err(|error| ClientError::new(Operation::List, key.clone(), error))
        })
        .boxed()
    }

    /// Uploads many objects as one pool batch: results in input order, failures with their
    /// index and path ([`ObjectBatchError`](crate::ObjectBatchError)), and per-item
    /// callbacks (`.on_item_complete(|index, result| ..)`, `.on_item_error(|index, error| ..)`).
    ///
    /// Each item is one pool task with the call's retries: a body above the multipart
    /// threshold is uploaded within its task (parts outside the limit, `part_concurrency` or
    /// 4 at once) and retried as a whole. Use [`put`](Self::put) for large bodies whose parts
    /// should retry alone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use s3_client::{CallOptions, Path, S3Client};
    /// let client = S3Client::from_url("memory://").unwrap();
    /// let items = (0..3).map(|i| (Path::from(format!("k{i}")), format!("v{i}").into()));
    /// let batch = client.put_batch(items, CallOptions::new().priority(1)).await;
    /// assert!(batch.all_succeeded());
    /// assert_eq!(batch.results.len(), 3);
    /// for failure in &batch.errors {
    ///     eprintln!("{} ({}) failed: {}", failure.path, failure.index, failure.error);
    /// }
    /// # }
    /// ```
    pub fn put_batch(
        &self,
        items: impl IntoIterator<Item = (Path, PutPayload)>,
        options: CallOptions,
    ) -> crate::ObjectBatch<PutResult> {
        let (paths, attempts): (Vec<_>, Vec<_>) = items
            .into_iter()
            .map(|(path, payload)| {
                let (_, run) = self.put_attempt(path.clone(), payload, PutOptions::default());
                (path, self.inner.dispatcher.guarded(run, true))
            })
            .unzip();
        let batch = self.batch(attempts, options.task_options(Operation::Put.as_str(), ""));
        crate::ObjectBatch::new(batch, paths, Operation::Put)
    }

    /// Downloads many objects as one pool batch (see [`S3Client::put_batch`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use s3_client::{CallOptions, Path, S3Client};
    /// let client = S3Client::from_url("memory://").unwrap();
    /// client.put(&Path::from("a"), "alpha").await.unwrap();
    /// let batch = client.get_batch([Path::from("a")], CallOptions::new()).await;
    /// assert_eq!(batch.results[0].as_deref(), Some(&b"alpha"[..]));
    /// # }
    /// ```
    pub fn get_batch(
        &self,
        paths: impl IntoIterator<Item = Path>,
        options: CallOptions,
    ) -> crate::ObjectBatch<Bytes> {
        let (paths, attempts): (Vec<_>, Vec<_>) = paths
            .into_iter()
            .map(|path| {
                let run = self.get_attempt(path.clone());
                (path, self.inner.dispatcher.guarded(run, true))
            })
            .unzip();
        let batch = self.batch(attempts, options.task_options(Operation::Get.as_str(), ""));
        crate::ObjectBatch::new(batch, paths, Operation::Get)
    }

    fn batch<T: Send + 'static>(
        &self,
        attempts: Vec<Attempt<T>>,
        options: TaskOptions,
    ) -> Batch<T, object_store::Error> {
        self.inner
            .batch_pool
            .add_batch_with(attempts, options, classify)
    }

    /// The pool's counters (queued, active, succeeded, failed, retries, …); `None` without
    /// a pool.
    pub fn stats(&self) -> Option<Stats> {
        self.pool().map(Pool::stats)
    }

    /// Running calls finish; no queued call starts until [`resume`](Self::resume).
    pub fn pause(&self) {
        if let Some(pool) = self.pool() {
            pool.pause();
        }
    }

    /// Lets queued calls start again.
    pub fn resume(&self) {
        if let Some(pool) = self.pool() {
            pool.resume();
        }
    }

    /// Waits until no call is queued, running or waiting to retry.
    pub async fn drain(&self) {
        if let Some(pool) = self.pool() {
            pool.drain().await;
        }
    }

    /// Queued calls fail with `Stopped`, running ones finish; later calls fail with
    /// `Stopped`. With a shared pool this stops it for every client sharing it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use s3_client::{Path, S3Client};
    ///
    /// let client = S3Client::from_url("memory://")?;
    /// client.put(&Path::from("a"), "x").await?;
    /// client.stop().await;
    /// let late = client.get(&Path::from("a")).await.unwrap_err();
    /// assert_eq!(late.task_error().kind(), "stopped");
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self) {
        if let Some(pool) = self.pool() {
            pool.stop().await;
        }
    }

    /// Changes the concurrency limit at once.
    pub fn set_concurrency(&self, concurrency: usize) -> Result<(), ControlError> {
        let pool = self.pool().ok_or(ControlError::PoolDisabled)?;
        Ok(pool.set_concurrency(concurrency)?)
    }
}

impl fmt::Debug for S3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Client")
            .field("store", &redact(&self.inner.store.to_string()))
            .field("pool", &self.inner.dispatcher)
            .field("multipart", &self.inner.multipart)
            .finish()
    }
}

fn chunk_key(chunk: &[Path]) -> String {
    match chunk {
        [] => String::new(),
        [only] => only.to_string(),
        [first, ..] => format!("{first} (+{} more)", chunk.len() - 1),
    }
}

/// The attempts of a single-request upload.
fn put_once(
    store: Arc<dyn ObjectStore>,
    path: Path,
    payload: PutPayload,
    options: PutOptions,
) -> impl MakeAttempt<Ok = PutResult, Error = object_store::Error> {
    move || {
        let (store, path) = (Arc::clone(&store), path.clone());
        let (payload, options) = (payload.clone(), options.clone());
        async move { store.put_opts(&path, payload, options).await }
    }
}

/// One bulk delete of the paths still left in a chunk.
fn delete_chunk_attempt(store: Arc<dyn ObjectStore>, paths: Vec<Path>) -> Attempt<Vec<Path>> {
    let remaining = Arc::new(Mutex::new(paths));
    let deleted = Arc::new(Mutex::new(Vec::new()));
    attempt(move || {
        let (store, remaining, deleted) = (
            Arc::clone(&store),
            Arc::clone(&remaining),
            Arc::clone(&deleted),
        );
        async move {
            let batch: Vec<Path> = lock(&remaining).clone();
            let locations = stream::iter(batch.into_iter().map(Ok)).boxed();
            let results: Vec<_> = store.delete_stream(locations).collect().await;
            let mut first_error = None;
            for result in results {
                let gone = match result {
                    Ok(path) => path.to_string(),
                    // Deleting what is not there is success (S3's semantics).
                    Err(object_store::Error::NotFound { path, .. }) => path,
                    Err(error) => {
                        first_error.get_or_insert(error);
                        continue;
                    }
                };
                let mut remaining = lock(&remaining);
                // A store may name the missing object by its file path: match the suffix.
                let index = remaining
                    .iter()
                    .position(|p| p.as_ref() == gone)
                    .or_else(|| remaining.iter().position(|p| gone.ends_with(p.as_ref())));
                if let Some(index) = index {
                    lock(&deleted).push(remaining.swap_remove(index));
                }
            }
            match first_error {
                Some(error) => Err(error),
                None => Ok(std::mem::take(&mut *lock(&deleted))),
            }
        }
    })
}

/// Reads a whole response, checking its length (and, when the response is the whole object,
/// a stored CRC it carries or the MD5 of a single-part S3 ETag): a mismatch is a retryable
/// [`IntegrityError`](crate::IntegrityError), and the pool reads again.
pub(crate) async fn read_verified(result: GetResult) -> object_store::Result<Bytes> {
    if matches!(result.payload, GetResultPayload::File(..)) {
        return result.bytes().await;
    }
    let mut buffer = Vec::new();
    read_verified_into(result, &mut buffer).await?;
    Ok(buffer.into())
}

/// [`read_verified`] into `buffer` (emptied first): a caller that reuses its buffers
/// allocates none per read. Each chunk is copied as it arrives and dropped at once: chunks
/// kept whole pin the HTTP client's read buffers, which are larger than they are.
pub(crate) async fn read_verified_into(
    result: GetResult,
    buffer: &mut Vec<u8>,
) -> object_store::Result<()> {
    let mut verifier = Verifier::new(&result.meta, &result.range, &result.extensions);
    buffer.clear();
    buffer.reserve_exact(usize::try_from(result.range.end - result.range.start).unwrap_or(0));
    let mut body = result.into_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        verifier
            .update(&chunk)
            .map_err(IntegrityError::into_store_error)?;
        buffer.extend_from_slice(&chunk);
    }
    verifier
        .finish(false)
        .map_err(IntegrityError::into_store_error)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
