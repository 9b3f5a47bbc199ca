//! Uploads: one PUT for a body smaller than a part, otherwise a multipart upload whose parts
//! are pool tasks with their own retries; an upload that fails, or whose call is dropped,
//! is aborted.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::{self, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{PutMultipartOptions, PutOptions, PutPayload, PutResult};
use pool_core::TaskError;
use tokio::sync::{Mutex, OwnedSemaphorePermit};

use super::abort::{AbortOnDrop, PendingUpload};
use super::progress::Meter;
use super::source::PartSource;
use super::{io_failure, ByteBudget, Staged, TaskResult, TransferContext, TransferSummary};

/// A part read from its source, with its bytes in the budget and its place among the
/// parts read ahead.
type ReadPart = (PutPayload, OwnedSemaphorePermit, Staged);
use crate::dispatch::attempt;
use crate::options::CallOptions;

/// Uploads everything `source` yields to `path`. See
/// [`S3Client::upload_from`](crate::S3Client::upload_from) and
/// [`S3Client::put`](crate::S3Client::put).
///
/// Unless `total` says the body fills a part, its first part is read by the pool task that
/// sends it (see [`first_part`]); the parts after it are read on the caller's task.
pub(crate) async fn upload<S: PartSource + 'static>(
    context: &TransferContext,
    path: &Path,
    mut source: S,
    total: Option<u64>,
    options: PutMultipartOptions,
    call: &CallOptions,
) -> TaskResult<(PutResult, TransferSummary)> {
    let part_size = context.part_size;
    let meter = Arc::new(Meter::new(total, call.progress.clone()));
    let mut first = if total.is_some_and(|total| total >= part_size) {
        let mut permit = reserve(context).await;
        let part = source
            .next_part(part_size as usize)
            .await
            .map_err(io_failure)?;
        ByteBudget::shrink(&mut permit, part.content_length() as u64);
        FirstPart {
            source,
            part: Some(part),
            permit,
        }
    } else {
        FirstPart {
            source,
            part: None,
            permit: context.budget.acquire(part_size).await,
        }
    };
    let whole = first
        .part
        .as_ref()
        .is_some_and(|part| part.content_length() as u64 >= part_size);
    if !whole {
        match first_part(context, path, first, &options, call).await? {
            (Sent::Stored(result), attempts, len) => {
                meter.piece_done(len, attempts);
                let summary = meter.summary(result.e_tag.clone());
                return Ok((result, summary));
            }
            (Sent::Whole(read), ..) => first = read,
        }
    }
    let FirstPart {
        source,
        part,
        permit,
    } = first;
    let part = part.unwrap_or_default();
    let staged = context.read_ahead.stage(part.content_length() as u64);
    let result = match &context.multipart {
        Some(store) => {
            let parts = Parts {
                context,
                store: Arc::clone(store),
                path,
                call,
                meter: Arc::clone(&meter),
            };
            parts.run((part, permit, staged), source, options).await?
        }
        None => {
            // Parts go one at a time, outside the pool: none waits for a slot.
            drop(staged);
            let first = (part, permit);
            upload_without_part_retries(context, path, first, source, options, call, &meter).await?
        }
    };
    let summary = meter.summary(result.e_tag.clone());
    Ok((result, summary))
}

/// Room for one more part: less waiting than the read-ahead cap, then the part's
/// bytes in the budget (taken before the part is read, so reading waits rather than
/// overshoots). Once read, the part is [staged](super::ReadAhead::stage).
async fn reserve(context: &TransferContext) -> OwnedSemaphorePermit {
    context.read_ahead.until_open().await;
    context.budget.acquire(context.part_size).await
}

/// An upload's source until its first part is read, then that part, shared by the
/// attempts of the task that reads and sends it.
struct FirstPart<S> {
    source: S,
    /// The first part once read: a retry sends it again.
    part: Option<PutPayload>,
    /// Its bytes in the budget: a whole part's until it is read, then its own.
    permit: OwnedSemaphorePermit,
}

/// What the task of an upload's first part did.
enum Sent<S> {
    /// The body was shorter than a part: it is stored, in one PUT.
    Stored(PutResult),
    /// The source filled a whole part: the upload goes in parts, starting with this one.
    Whole(FirstPart<S>),
}

/// What one attempt of the first part's task did.
enum Attempted {
    Stored(PutResult),
    /// A whole part was read: nothing sent.
    Whole,
    /// The source failed: nothing sent, nothing to retry.
    Unread(io::Error),
}

/// Reads the first part in a pool task and, if the body is shorter than a part, sends it
/// in one PUT from the same task; gives the part back when it fills one. Returns what was
/// done, the PUT's attempts and the bytes sent.
///
/// The part is read when the task starts, on the worker that then hashes (SigV4) and sends
/// it, rather than read ahead on the caller's task and left to wait, cold, for a slot:
/// 1,000 uploads of 1 MiB spent 30 % more time hashing that way than object_store's idiom,
/// which hashes each body right after making it (`perf record -e cpu-clock`: 1,766–1,779
/// samples in SHA-256 against 1,337–1,371; 1,465–1,570 read in the task). It also leaves
/// no task between the source and the pool's slots to keep them fed. The source sets the
/// pace, as a body's reader does for a pooled `get`: the task has no timeout unless the
/// call sets one (the HTTP client's own timeout bounds the request), and a slow source
/// holds its slot while its part is read. A source that fails fails the upload, without a
/// retry.
async fn first_part<S: PartSource + 'static>(
    context: &TransferContext,
    path: &Path,
    first: FirstPart<S>,
    options: &PutMultipartOptions,
    call: &CallOptions,
) -> TaskResult<(Sent<S>, u64, u64)> {
    let part_size = context.part_size;
    let attempts = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Mutex::new(Some(first)));
    let run = {
        let (store, location, counter) = (
            Arc::clone(&context.store),
            path.clone(),
            Arc::clone(&attempts),
        );
        let shared = Arc::clone(&shared);
        let options = PutOptions {
            tags: options.tags.clone(),
            attributes: options.attributes.clone(),
            extensions: options.extensions.clone(),
            ..PutOptions::default()
        };
        move || {
            let (store, path, options) = (Arc::clone(&store), location.clone(), options.clone());
            let (shared, counter) = (Arc::clone(&shared), Arc::clone(&counter));
            async move {
                let mut first = shared.lock().await;
                let Some(first) = first.as_mut() else {
                    return Ok(Attempted::Unread(io::Error::other(
                        "the upload's source is gone",
                    )));
                };
                let part = match &first.part {
                    Some(part) => part.clone(),
                    None => match first.source.next_part(part_size as usize).await {
                        Ok(part) => {
                            ByteBudget::shrink(&mut first.permit, part.content_length() as u64);
                            first.part.insert(part).clone()
                        }
                        Err(error) => return Ok(Attempted::Unread(error)),
                    },
                };
                if part.content_length() as u64 >= part_size {
                    return Ok(Attempted::Whole);
                }
                counter.fetch_add(1, Ordering::Relaxed);
                store
                    .put_opts(&path, part, options)
                    .await
                    .map(Attempted::Stored)
            }
        }
    };
    let call = match call.task.timeout_value() {
        Some(_) => call.clone(),
        None => call.clone().no_timeout(),
    };
    let attempted = context
        .dispatcher
        .run("put", path.as_ref(), &call, run)
        .await;
    // The task has ended: no attempt holds the lock or will take it again.
    let first = shared.lock().await.take();
    let attempts = attempts.load(Ordering::Relaxed);
    let len = first
        .as_ref()
        .and_then(|first| first.part.as_ref())
        .map_or(0, |part| part.content_length() as u64);
    match (attempted?, first) {
        (Attempted::Stored(result), _) => Ok((Sent::Stored(result), attempts, len)),
        (Attempted::Whole, Some(first)) => Ok((Sent::Whole(first), attempts, len)),
        (Attempted::Unread(error), _) => Err(io_failure(error)),
        (Attempted::Whole, None) => {
            Err(io_failure(io::Error::other("the upload's source is gone")))
        }
    }
}

/// A multipart upload over the store's `MultipartStore` API: each part a pool task that
/// re-sends only itself on retry.
struct Parts<'a> {
    context: &'a TransferContext,
    store: Arc<dyn MultipartStore>,
    path: &'a Path,
    call: &'a CallOptions,
    meter: Arc<Meter>,
}

impl Parts<'_> {
    async fn run(
        self,
        first: ReadPart,
        mut source: impl PartSource,
        options: PutMultipartOptions,
    ) -> TaskResult<PutResult> {
        let (store, location) = (Arc::clone(&self.store), self.path.clone());
        let create = attempt(move || {
            let (store, path, options) = (Arc::clone(&store), location.clone(), options.clone());
            async move { store.create_multipart_opts(&path, options).await }
        });
        let id = self
            .context
            .dispatcher
            .run("put_multipart", self.path.as_ref(), self.call, create)
            .await?;
        // From here on, a failure or a dropped call aborts the upload.
        let upload = PendingUpload::new(
            Arc::clone(&self.store),
            self.path.clone(),
            id,
            self.context.dispatcher.clone(),
            self.call,
        );
        // The parts themselves are never cancelled mid-attempt (see `PendingUpload`): a
        // cancelled call stops reading and sending here, and the upload is aborted below.
        let sent = {
            let sending = std::pin::pin!(self.send_parts(&upload, first, &mut source));
            match self.call.task.cancellation_value() {
                Some(token) => {
                    let cancelled = std::pin::pin!(token.cancelled());
                    match future::select(sending, cancelled).await {
                        Either::Left((sent, _)) => sent,
                        Either::Right(((), _)) => Err(TaskError::Cancelled),
                    }
                }
                None => sending.await,
            }
        };
        let completed = match sent {
            Ok(parts) => self.complete(upload.id(), parts).await,
            Err(error) => Err(error),
        };
        match completed {
            Ok(result) => {
                upload.completed();
                Ok(result)
            }
            Err(error) => {
                upload.abort().await;
                Err(error)
            }
        }
    }

    /// Reads and sends the parts, as many at once as the budget, the pool and the
    /// client's `part_concurrency` allow (a part's budget is taken before it is read and
    /// given back once it is stored). On a failure, reading stops and the parts still in
    /// flight are waited for.
    async fn send_parts(
        &self,
        upload: &PendingUpload,
        first: ReadPart,
        source: &mut impl PartSource,
    ) -> TaskResult<Vec<PartId>> {
        let part_size = self.context.part_size;
        let part_options = upload.part_options();
        let mut parts: Vec<Option<PartId>> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let mut failure = None;
        let mut source_done = (first.0.content_length() as u64) < part_size;
        let mut next = Some(first);
        loop {
            if let Some((part, permit, staged)) = next.take() {
                let index = parts.len();
                parts.push(None);
                let sending = self.send_part(upload, &part_options, index, (part, staged));
                in_flight.push(async move {
                    let sent = sending.await;
                    drop(permit);
                    (index, sent)
                });
            }
            let may_read = failure.is_none()
                && !source_done
                && in_flight.len() < self.context.part_concurrency;
            if may_read {
                let mut acquire = std::pin::pin!(reserve(self.context));
                let room = loop {
                    match future::select(acquire.as_mut(), in_flight.next()).await {
                        Either::Left((room, _)) => break Some(room),
                        Either::Right((Some((index, sent)), _)) => {
                            record(&mut parts, &mut failure, index, sent);
                            if failure.is_some() {
                                break None;
                            }
                        }
                        Either::Right((None, _)) => break Some(acquire.as_mut().await),
                    }
                };
                if let (Some(mut permit), None) = (room, &failure) {
                    match source
                        .next_part(part_size as usize)
                        .await
                        .map_err(io_failure)
                    {
                        Ok(part) if part.content_length() == 0 => source_done = true,
                        Ok(part) => {
                            let len = part.content_length() as u64;
                            source_done = len < part_size;
                            ByteBudget::shrink(&mut permit, len);
                            let staged = self.context.read_ahead.stage(len);
                            next = Some((part, permit, staged));
                        }
                        Err(error) => failure = Some(error),
                    }
                }
                continue;
            }
            match in_flight.next().await {
                Some((index, sent)) => record(&mut parts, &mut failure, index, sent),
                None => break,
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(parts.into_iter().flatten().collect()),
        }
    }

    /// One part as a pool task; a retry sends this part again, and only it.
    fn send_part(
        &self,
        upload: &PendingUpload,
        options: &CallOptions,
        index: usize,
        (part, mut staged): (PutPayload, Staged),
    ) -> impl std::future::Future<Output = TaskResult<PartId>> + Send + 'static {
        let attempts = Arc::new(AtomicU64::new(0));
        let (store, path, id) = (
            Arc::clone(&self.store),
            self.path.clone(),
            upload.id().clone(),
        );
        let running = upload.running().clone();
        let (counter, len) = (Arc::clone(&attempts), part.content_length() as u64);
        let run = attempt(move || {
            staged.started();
            counter.fetch_add(1, Ordering::Relaxed);
            let (store, path, id, part) =
                (Arc::clone(&store), path.clone(), id.clone(), part.clone());
            let running = running.clone();
            async move {
                let Some(sending) = running.enter() else {
                    return Err(abandoned(&path));
                };
                let request = async move {
                    let _sending = sending;
                    store.put_part(&path, &id, index, part).await
                };
                // A task of its own, so that an attempt cut off by the pool's attempt
                // timeout leaves its request to be answered (bounded by the HTTP client's
                // own timeout) rather than dropping it mid-flight: the abort waits for it.
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => runtime
                        .spawn(request)
                        .await
                        .unwrap_or_else(|source| Err(object_store::Error::JoinError { source })),
                    Err(_) => request.await,
                }
            }
        });
        let sending =
            self.context
                .dispatcher
                .start("upload_part", self.path.as_ref(), options, run);
        let meter = Arc::clone(&self.meter);
        async move {
            let sent = sending.await;
            if sent.is_ok() {
                meter.piece_done(len, attempts.load(Ordering::Relaxed));
            }
            sent
        }
    }

    async fn complete(&self, id: &str, parts: Vec<PartId>) -> TaskResult<PutResult> {
        let (store, location, id) = (Arc::clone(&self.store), self.path.clone(), id.to_owned());
        let run = attempt(move || {
            let (store, path, id, parts) = (
                Arc::clone(&store),
                location.clone(),
                id.clone(),
                parts.clone(),
            );
            async move { store.complete_multipart(&path, &id, parts).await }
        });
        self.context
            .dispatcher
            .run("complete_multipart", self.path.as_ref(), self.call, run)
            .await
    }
}

/// A part attempt of an abandoned upload (it failed or its call was dropped): not sent,
/// and not retried (a `Generic` error without an HTTP status classifies as fatal).
fn abandoned(path: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "s3pool",
        source: format!("the multipart upload to {path} was abandoned: part not sent").into(),
    }
}

fn record(
    parts: &mut [Option<PartId>],
    failure: &mut Option<TaskError<object_store::Error>>,
    index: usize,
    sent: TaskResult<PartId>,
) {
    match sent {
        Ok(part) => parts[index] = Some(part),
        Err(error) => {
            failure.get_or_insert(error);
        }
    }
}

/// For a store that is no `MultipartStore` (local files, a `dyn ObjectStore`): object_store's
/// `MultipartUpload`, whose parts cannot be sent twice, so a failed part fails the upload
/// (which is then aborted, as it is when the call is dropped). Parts go one after another.
async fn upload_without_part_retries(
    context: &TransferContext,
    path: &Path,
    first: (PutPayload, OwnedSemaphorePermit),
    mut source: impl PartSource,
    options: PutMultipartOptions,
    call: &CallOptions,
    meter: &Meter,
) -> TaskResult<PutResult> {
    let (store, location) = (Arc::clone(&context.store), path.clone());
    let create = attempt(move || {
        let (store, path, options) = (Arc::clone(&store), location.clone(), options.clone());
        async move { store.put_multipart_opts(&path, options).await }
    });
    let upload = context
        .dispatcher
        .run("put_multipart", path.as_ref(), call, create)
        .await?;
    let mut upload = AbortOnDrop::new(upload, path.clone());
    let failed = |error| TaskError::Failed { error, attempts: 1 };
    let result = async {
        let (mut part, mut permit) = first;
        loop {
            let len = part.content_length() as u64;
            upload.send_part(part).await.map_err(failed)?;
            meter.piece_done(len, 1);
            drop(permit);
            if len < context.part_size {
                break;
            }
            permit = context.budget.acquire(context.part_size).await;
            part = source
                .next_part(context.part_size as usize)
                .await
                .map_err(io_failure)?;
            if part.content_length() == 0 {
                break;
            }
        }
        upload.upload().complete().await.map_err(failed)
    }
    .await;
    if result.is_err() {
        if let Err(abort_error) = upload.upload().abort().await {
            tracing::warn!(%path, %abort_error, "aborting a failed upload failed");
        }
    }
    upload.ended();
    result
}
