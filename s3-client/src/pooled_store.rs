//! [`PooledStore`]: any `ObjectStore`, with every call routed through a pool.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use pool_core::Pool;

use crate::dispatch::{attempt, Dispatcher};
use crate::error::into_store_error;
use crate::group::PoolGroup;
use crate::listing::pooled_list;
use crate::options::CallOptions;

/// Paths per pooled bulk-delete task.
const DELETE_CHUNK: usize = 1000;

/// An `ObjectStore` that sends every call of the store it wraps through an s3pool [`Pool`]:
/// code written against object_store gets the pool's limit, priorities, retries, timeouts
/// and events by wrapping its store in one line.
///
/// - Per-call [`CallOptions`] are read from the `extensions` of `PutOptions`, `GetOptions`,
///   `CopyOptions` and `PutMultipartOptions`.
/// - Errors are the inner store's own errors after the pool's retries; a timeout, stop,
///   cancellation or panic comes back as `Error::Generic` with a
///   [`PoolFailure`](crate::PoolFailure) source.
/// - `get` resolves when the response starts; its body streams outside the pool.
/// - A listing is one pool task (see [`S3Client::list_with`](crate::S3Client::list_with)).
/// - Bulk deletes go in pool tasks of up to 1,000 paths (as many as are ready); a chunk
///   whose retries run out yields one error for the whole chunk.
/// - A multipart upload's parts are one pool task each, without retries (a part's request
///   cannot be rebuilt once handed over); creation and completion retry as usual.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use object_store::{memory::InMemory, path::Path, ObjectStoreExt};
/// use pool_core::Pool;
/// use s3_client::PooledStore;
/// let pool = Pool::builder().concurrency(8).build().unwrap();
/// let store = PooledStore::new(InMemory::new(), pool.clone());
/// store.put(&Path::from("a"), "x".into()).await.unwrap();
/// assert_eq!(pool.stats().processed, 1);
/// # }
/// ```
pub struct PooledStore<S> {
    inner: Arc<S>,
    dispatcher: Dispatcher,
}

impl<S: ObjectStore> PooledStore<S> {
    /// Routes `inner`'s calls through `pool`.
    pub fn new(inner: S, pool: Pool) -> Self {
        Self::from_dispatcher(Arc::new(inner), Dispatcher::new(Some(pool), None))
    }

    /// Routes `inner`'s calls through `pool`, and counts them against `group`.
    pub fn with_group(inner: S, pool: Pool, group: PoolGroup) -> Self {
        Self::from_dispatcher(Arc::new(inner), Dispatcher::new(Some(pool), Some(group)))
    }

    pub(crate) fn from_dispatcher(inner: Arc<S>, dispatcher: Dispatcher) -> Self {
        PooledStore { inner, dispatcher }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The pool calls go through (`None` for a store taken from a client without a pool).
    pub fn pool(&self) -> Option<&Pool> {
        self.dispatcher.pool()
    }
}

impl<S> fmt::Debug for PooledStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledStore")
            .field("dispatcher", &self.dispatcher)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Display> fmt::Display for PooledStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PooledStore({})", self.inner)
    }
}

fn call_options(extensions: &object_store::Extensions) -> CallOptions {
    extensions.get::<CallOptions>().cloned().unwrap_or_default()
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for PooledStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let options = call_options(&opts.extensions);
        let (store, path) = (Arc::clone(&self.inner), location.clone());
        let run = attempt(move || {
            let (store, path) = (Arc::clone(&store), path.clone());
            let (payload, opts) = (payload.clone(), opts.clone());
            async move { store.put_opts(&path, payload, opts).await }
        });
        self.dispatcher
            .run("put", location.as_ref(), &options, run)
            .await
            .map_err(into_store_error)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let options = call_options(&opts.extensions);
        let (store, path) = (Arc::clone(&self.inner), location.clone());
        let run = attempt(move || {
            let (store, path, opts) = (Arc::clone(&store), path.clone(), opts.clone());
            async move { store.put_multipart_opts(&path, opts).await }
        });
        let upload = self
            .dispatcher
            .run("put_multipart", location.as_ref(), &options, run)
            .await
            .map_err(into_store_error)?;
        Ok(Box::new(PooledUpload {
            upload: Arc::new(tokio::sync::Mutex::new(upload)),
            dispatcher: self.dispatcher.clone(),
            path: location.to_string(),
            options,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let call = call_options(&options.extensions);
        let operation = if options.head { "head" } else { "get" };
        let (store, path) = (Arc::clone(&self.inner), location.clone());
        let run = attempt(move || {
            let (store, path, options) = (Arc::clone(&store), path.clone(), options.clone());
            async move { store.get_opts(&path, options).await }
        });
        self.dispatcher
            .run(operation, location.as_ref(), &call, run)
            .await
            .map_err(into_store_error)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let (store, path, ranges) = (Arc::clone(&self.inner), location.clone(), ranges.to_vec());
        let run = attempt(move || {
            let (store, path, ranges) = (Arc::clone(&store), path.clone(), ranges.clone());
            async move { store.get_ranges(&path, &ranges).await }
        });
        self.dispatcher
            .run("get", location.as_ref(), &CallOptions::default(), run)
            .await
            .map_err(into_store_error)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = Arc::clone(&self.inner);
        let dispatcher = self.dispatcher.clone();
        locations
            .ready_chunks(DELETE_CHUNK)
            .then(move |chunk| {
                let (store, dispatcher) = (Arc::clone(&store), dispatcher.clone());
                async move {
                    let (paths, bad): (Vec<_>, Vec<_>) = chunk.into_iter().partition(Result::is_ok);
                    let paths: Vec<Path> = paths.into_iter().filter_map(Result::ok).collect();
                    let key = paths.first().map(|p| p.to_string()).unwrap_or_default();
                    let run = attempt(move || {
                        let (store, paths) = (Arc::clone(&store), paths.clone());
                        async move {
                            let locations = stream::iter(paths.into_iter().map(Ok)).boxed();
                            // A retryable failure retries the chunk (deletes are idempotent);
                            // other per-path errors are reported per path.
                            let mut results: Vec<_> =
                                store.delete_stream(locations).collect().await;
                            let retryable = results.iter().position(|result| {
                                result
                                    .as_ref()
                                    .is_err_and(|e| crate::classify(e).is_retryable())
                            });
                            if let Some(index) = retryable {
                                results.swap_remove(index)?;
                            }
                            Ok(results)
                        }
                    });
                    let results = dispatcher
                        .run("delete", &key, &CallOptions::default(), run)
                        .await;
                    let results = match results {
                        Ok(results) => results,
                        Err(error) => vec![Err(into_store_error(error))],
                    };
                    stream::iter(bad.into_iter().chain(results))
                }
            })
            .flatten()
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        pooled_list(
            Arc::clone(&self.inner),
            self.dispatcher.clone(),
            prefix.cloned(),
            CallOptions::default(),
        )
        .map_err(into_store_error)
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let (store, prefix_path) = (Arc::clone(&self.inner), prefix.cloned());
        let run = attempt(move || {
            let (store, prefix) = (Arc::clone(&store), prefix_path.clone());
            async move { store.list_with_delimiter(prefix.as_ref()).await }
        });
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.dispatcher
            .run("list", &key, &CallOptions::default(), run)
            .await
            .map_err(into_store_error)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let call = call_options(&options.extensions);
        let (store, source, target) = (Arc::clone(&self.inner), from.clone(), to.clone());
        let run = attempt(move || {
            let (store, from, to) = (Arc::clone(&store), source.clone(), target.clone());
            let options = options.clone();
            async move { store.copy_opts(&from, &to, options).await }
        });
        self.dispatcher
            .run("copy", to.as_ref(), &call, run)
            .await
            .map_err(into_store_error)
    }
}

/// A multipart upload whose parts, completion and abort run as pool tasks.
struct PooledUpload {
    upload: Arc<tokio::sync::Mutex<Box<dyn MultipartUpload>>>,
    dispatcher: Dispatcher,
    path: String,
    options: CallOptions,
}

impl fmt::Debug for PooledUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledUpload")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for PooledUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        // The part is numbered now, in call order; its request runs when the pool starts it.
        let part = match self.upload.try_lock() {
            Ok(mut upload) => upload.put_part(data),
            Err(_) => {
                return Box::pin(async {
                    Err(object_store::Error::Generic {
                        store: "PooledStore",
                        source: "put_part called while the upload is completing".into(),
                    })
                })
            }
        };
        let mut part = Some(part);
        let run = attempt(move || {
            let part = part.take();
            async move {
                match part {
                    Some(part) => part.await,
                    None => Err(object_store::Error::Generic {
                        store: "PooledStore",
                        source: "a multipart part cannot be retried".into(),
                    }),
                }
            }
        });
        let dispatcher = self.dispatcher.clone();
        let (path, options) = (self.path.clone(), self.options.clone().retries(0));
        Box::pin(async move {
            dispatcher
                .run("upload_part", &path, &options, run)
                .await
                .map_err(into_store_error)
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let upload = Arc::clone(&self.upload);
        let run = attempt(move || {
            let upload = Arc::clone(&upload);
            async move { upload.lock().await.complete().await }
        });
        self.dispatcher
            .run("complete_multipart", &self.path, &self.options, run)
            .await
            .map_err(into_store_error)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let upload = Arc::clone(&self.upload);
        let run = attempt(move || {
            let upload = Arc::clone(&upload);
            async move { upload.lock().await.abort().await }
        });
        self.dispatcher
            .run("abort_multipart", &self.path, &self.options, run)
            .await
            .map_err(into_store_error)
    }
}
