//! [`PooledStore`]: any `ObjectStore`, with every call routed through a pool.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartId, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use pool_core::Pool;

use crate::body::{held_get, HeldGet};
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
/// Every method of `ObjectStore` is forwarded as a pool task (none falls back to a default
/// that would lose what the inner store does better: `list_with_offset` keeps S3's
/// server-side start-after, `rename_opts` keeps a local store's real rename). When the inner
/// store is also a `MultipartStore` or a `PaginatedListStore`, so is the `PooledStore`.
///
/// - Per-call [`CallOptions`] are read from the `extensions` of `PutOptions`, `GetOptions`,
///   `CopyOptions`, `RenameOptions` and `PutMultipartOptions`.
/// - Errors are the inner store's own errors after the pool's retries; a timeout, stop,
///   cancellation or panic comes back as `Error::Generic` with a
///   [`PoolFailure`](crate::PoolFailure) source.
/// - `get` resolves when the response starts, and its task keeps its slot (and a group
///   permit) until the body has been read to its end or dropped: the pool's limit bounds
///   the bodies open at once, as object_store's `LimitStore` does. A body that breaks
///   mid-way is resumed from its last byte with a ranged request (`If-Match` on its ETag),
///   counted as a retry of the task; a body shorter or longer than announced, or one that
///   does not match a single-part S3 ETag (MD5), fails with an
///   [`IntegrityError`](crate::IntegrityError). The task has no timeout unless the call
///   sets one (the reader sets the pace). Opt out per call with
///   [`CallOptions::release_slot_at_response`]. Reading a held body frees its slot: code
///   that opens more bodies than the limit before reading one waits forever.
/// - A listing is one pool task (see [`S3Client::list_with`](crate::S3Client::list_with)).
/// - Bulk deletes go in pool tasks of up to 1,000 paths (as many as are ready); a chunk
///   whose retries run out yields one error for the whole chunk.
/// - A multipart upload's parts are one pool task each. Built with
///   [`retrying_parts`](PooledStore::retrying_parts) (the inner store is a
///   `MultipartStore`), a failed part is sent again on its own, with the pool's retries;
///   otherwise a part has no retries (a part handed to object_store's `MultipartUpload`
///   cannot be sent again). Creation and completion retry as usual.
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
/// assert_eq!(pool.stats().succeeded, 1);
/// # }
/// ```
pub struct PooledStore<S> {
    inner: Arc<S>,
    dispatcher: Dispatcher,
    /// The inner store's multipart API, when known: parts are then retried one by one.
    parts: Option<Arc<dyn MultipartStore>>,
}

impl<S: ObjectStore> PooledStore<S> {
    /// Routes `inner`'s calls through `pool`.
    pub fn new(inner: S, pool: Pool) -> Self {
        Self::from_dispatcher(Arc::new(inner), Dispatcher::new(Some(pool), None), None)
    }

    /// Routes `inner`'s calls through `pool`, and counts them against `group`.
    pub fn with_group(inner: S, pool: Pool, group: PoolGroup) -> Self {
        Self::from_dispatcher(
            Arc::new(inner),
            Dispatcher::new(Some(pool), Some(group)),
            None,
        )
    }

    pub(crate) fn from_dispatcher(
        inner: Arc<S>,
        dispatcher: Dispatcher,
        parts: Option<Arc<dyn MultipartStore>>,
    ) -> Self {
        PooledStore {
            inner,
            dispatcher,
            parts,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The pool calls go through (`None` for a store taken from a client without a pool).
    pub fn pool(&self) -> Option<&Pool> {
        self.dispatcher.pool()
    }

    /// One call of the inner store as a pool task: `call` runs once per attempt.
    fn task<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        options: &CallOptions,
        mut call: F,
    ) -> impl Future<Output = object_store::Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnMut(Arc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let store = Arc::clone(&self.inner);
        let run = attempt(move || call(Arc::clone(&store)));
        let (dispatcher, key, options) = (self.dispatcher.clone(), key.to_owned(), options.clone());
        async move {
            dispatcher
                .run(operation, &key, &options, run)
                .await
                .map_err(into_store_error)
        }
    }
}

impl<S: ObjectStore + MultipartStore> PooledStore<S> {
    /// Multipart uploads made with `put_multipart` go through the inner store's
    /// `MultipartStore` API, so that each part is a pool task with the pool's retries: a
    /// failed part is sent again, alone.
    pub fn retrying_parts(mut self) -> Self {
        self.parts = Some(Arc::clone(&self.inner) as Arc<dyn MultipartStore>);
        self
    }
}

impl<S> fmt::Debug for PooledStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledStore")
            .field("dispatcher", &self.dispatcher)
            .field("retrying_parts", &self.parts.is_some())
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

fn prefix_key(prefix: Option<&Path>) -> String {
    prefix.map(|p| p.to_string()).unwrap_or_default()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ObjectStore> ObjectStore for PooledStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let options = call_options(&opts.extensions);
        let path = location.clone();
        self.task("put", location.as_ref(), &options, move |store| {
            let (path, payload, opts) = (path.clone(), payload.clone(), opts.clone());
            async move { store.put_opts(&path, payload, opts).await }
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let options = call_options(&opts.extensions);
        let path = location.clone();
        if let Some(parts) = &self.parts {
            let store = Arc::clone(parts);
            let create = attempt(move || {
                let (store, path, opts) = (Arc::clone(&store), path.clone(), opts.clone());
                async move { store.create_multipart_opts(&path, opts).await }
            });
            let id = self
                .dispatcher
                .run("put_multipart", location.as_ref(), &options, create)
                .await
                .map_err(into_store_error)?;
            return Ok(Box::new(RetryingUpload {
                store: Arc::clone(parts),
                dispatcher: self.dispatcher.clone(),
                path: location.clone(),
                id,
                options,
                next_part: 0,
                parts: Arc::new(Mutex::new(Vec::new())),
            }));
        }
        let upload = self
            .task("put_multipart", location.as_ref(), &options, move |store| {
                let (path, opts) = (path.clone(), opts.clone());
                async move { store.put_multipart_opts(&path, opts).await }
            })
            .await?;
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
        if !options.head && !call.release_slot_at_response {
            let store = Arc::clone(&self.inner);
            let (dispatcher, path) = (self.dispatcher.clone(), location.clone());
            // No bytes budget here: its bodies stream as they come.
            return held_get(store, dispatcher, path, options, call, "get", None)
                .await
                .map(HeldGet::into_get_result)
                .map_err(into_store_error);
        }
        let operation = if options.head { "head" } else { "get" };
        let path = location.clone();
        self.task(operation, location.as_ref(), &call, move |store| {
            let (path, options) = (path.clone(), options.clone());
            async move { store.get_opts(&path, options).await }
        })
        .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let (path, ranges) = (location.clone(), ranges.to_vec());
        let options = CallOptions::default();
        self.task("get", location.as_ref(), &options, move |store| {
            let (path, ranges) = (path.clone(), ranges.clone());
            async move { store.get_ranges(&path, &ranges).await }
        })
        .await
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
            None,
            CallOptions::default(),
        )
        .map_err(into_store_error)
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        pooled_list(
            Arc::clone(&self.inner),
            self.dispatcher.clone(),
            prefix.cloned(),
            Some(offset.clone()),
            CallOptions::default(),
        )
        .map_err(into_store_error)
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix_path = prefix.cloned();
        let key = prefix_key(prefix);
        self.task("list", &key, &CallOptions::default(), move |store| {
            let prefix = prefix_path.clone();
            async move { store.list_with_delimiter(prefix.as_ref()).await }
        })
        .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let call = call_options(&options.extensions);
        let (source, target) = (from.clone(), to.clone());
        self.task("copy", to.as_ref(), &call, move |store| {
            let (from, to, options) = (source.clone(), target.clone(), options.clone());
            async move { store.copy_opts(&from, &to, options).await }
        })
        .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let call = call_options(&options.extensions);
        let (source, target) = (from.clone(), to.clone());
        self.task("rename", to.as_ref(), &call, move |store| {
            let (from, to, options) = (source.clone(), target.clone(), options.clone());
            async move { store.rename_opts(&from, &to, options).await }
        })
        .await
    }
}

/// Each call of the inner store's multipart API is a pool task with the pool's retries (a
/// part's payload is kept, cheaply, until its task resolves, so it can be sent again).
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ObjectStore + MultipartStore> MultipartStore for PooledStore<S> {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        let location = path.clone();
        self.task(
            "put_multipart",
            path.as_ref(),
            &CallOptions::default(),
            move |store| {
                let path = location.clone();
                async move { store.create_multipart(&path).await }
            },
        )
        .await
    }

    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<MultipartId> {
        let options = call_options(&opts.extensions);
        let location = path.clone();
        self.task("put_multipart", path.as_ref(), &options, move |store| {
            let (path, opts) = (location.clone(), opts.clone());
            async move { store.create_multipart_opts(&path, opts).await }
        })
        .await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        let (location, id) = (path.clone(), id.clone());
        self.task(
            "upload_part",
            path.as_ref(),
            &CallOptions::default(),
            move |store| {
                let (path, id, data) = (location.clone(), id.clone(), data.clone());
                async move { store.put_part(&path, &id, part_idx, data).await }
            },
        )
        .await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        let (location, id) = (path.clone(), id.clone());
        self.task(
            "complete_multipart",
            path.as_ref(),
            &CallOptions::default(),
            move |store| {
                let (path, id, parts) = (location.clone(), id.clone(), parts.clone());
                async move { store.complete_multipart(&path, &id, parts).await }
            },
        )
        .await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        let (location, id) = (path.clone(), id.clone());
        self.task(
            "abort_multipart",
            path.as_ref(),
            &CallOptions::default(),
            move |store| {
                let (path, id) = (location.clone(), id.clone());
                async move { store.abort_multipart(&path, &id).await }
            },
        )
        .await
    }
}

/// A page of a listing is one pool task.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ObjectStore + PaginatedListStore> PaginatedListStore for PooledStore<S> {
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> object_store::Result<PaginatedListResult> {
        let location = prefix.map(str::to_owned);
        let key = location.clone().unwrap_or_default();
        self.task("list", &key, &CallOptions::default(), move |store| {
            let (prefix, opts) = (location.clone(), opts.clone());
            async move { store.list_paginated(prefix.as_deref(), opts).await }
        })
        .await
    }
}

/// A multipart upload through the inner store's `MultipartStore` API: every part, the
/// completion and the abort are pool tasks with the pool's retries.
struct RetryingUpload {
    store: Arc<dyn MultipartStore>,
    dispatcher: Dispatcher,
    path: Path,
    id: MultipartId,
    options: CallOptions,
    next_part: usize,
    /// Each part's id once its task succeeded, by part index.
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
}

impl fmt::Debug for RetryingUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingUpload")
            .field("path", &self.path)
            .field("parts", &self.next_part)
            .finish_non_exhaustive()
    }
}

impl RetryingUpload {
    fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        run: crate::dispatch::Attempt<T>,
    ) -> impl Future<Output = object_store::Result<T>> + Send + 'static {
        let (dispatcher, options) = (self.dispatcher.clone(), self.options.clone());
        let key = self.path.to_string();
        async move {
            dispatcher
                .run(operation, &key, &options, run)
                .await
                .map_err(into_store_error)
        }
    }
}

#[async_trait]
impl MultipartUpload for RetryingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let index = self.next_part;
        self.next_part += 1;
        let (store, path, id) = (Arc::clone(&self.store), self.path.clone(), self.id.clone());
        let run = attempt(move || {
            let (store, path, id, data) =
                (Arc::clone(&store), path.clone(), id.clone(), data.clone());
            async move { store.put_part(&path, &id, index, data).await }
        });
        let part = self.run("upload_part", run);
        let parts = Arc::clone(&self.parts);
        Box::pin(async move {
            let part = part.await?;
            let mut parts = parts.lock().unwrap_or_else(|p| p.into_inner());
            if parts.len() <= index {
                parts.resize(index + 1, None);
            }
            parts[index] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts = {
            let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            let mut complete = Vec::with_capacity(self.next_part);
            for index in 0..self.next_part {
                match parts.get(index).cloned().flatten() {
                    Some(part) => complete.push(part),
                    None => {
                        return Err(object_store::Error::Generic {
                            store: "PooledStore",
                            source: format!(
                                "complete called before part {index} of {} finished",
                                self.next_part
                            )
                            .into(),
                        })
                    }
                }
            }
            complete
        };
        let (store, path, id) = (Arc::clone(&self.store), self.path.clone(), self.id.clone());
        let run = attempt(move || {
            let (store, path, id, parts) =
                (Arc::clone(&store), path.clone(), id.clone(), parts.clone());
            async move { store.complete_multipart(&path, &id, parts).await }
        });
        self.run("complete_multipart", run).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let (store, path, id) = (Arc::clone(&self.store), self.path.clone(), self.id.clone());
        let run = attempt(move || {
            let (store, path, id) = (Arc::clone(&store), path.clone(), id.clone());
            async move { store.abort_multipart(&path, &id).await }
        });
        self.run("abort_multipart", run).await
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
