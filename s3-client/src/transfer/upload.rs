//! Uploads from a reader: one PUT for a body smaller than a part, otherwise a multipart
//! upload whose parts are pool tasks with their own retries, aborted if it finally fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::{self, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload, PutResult};
use pool_core::TaskError;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use super::progress::Meter;
use super::{io_failure, TransferContext, TransferSummary};
use crate::dispatch::attempt;
use crate::options::CallOptions;

type TaskResult<T> = Result<T, TaskError<object_store::Error>>;

/// Reads up to `size` bytes (less only at the end of the source).
async fn read_part<R: AsyncRead + Unpin>(source: &mut R, size: usize) -> TaskResult<Bytes> {
    let mut buffer = BytesMut::with_capacity(size);
    while buffer.len() < size {
        let read = (&mut *source)
            .take((size - buffer.len()) as u64)
            .read_buf(&mut buffer)
            .await
            .map_err(io_failure)?;
        if read == 0 {
            break;
        }
    }
    Ok(buffer.freeze())
}

/// Uploads everything `source` yields to `path`. See
/// [`S3Client::upload_from`](crate::S3Client::upload_from).
pub(crate) async fn upload<R: AsyncRead + Unpin + Send>(
    context: &TransferContext,
    path: &Path,
    source: &mut R,
    total: Option<u64>,
    call: &CallOptions,
) -> TaskResult<TransferSummary> {
    let part_size = context.part_size;
    let meter = Arc::new(Meter::new(total, call.progress.clone()));
    let permit = context.budget.acquire(part_size).await;
    let first = read_part(source, part_size as usize).await?;
    if (first.len() as u64) < part_size {
        let result = put_once(context, path, first.clone(), call, &meter).await?;
        drop((first, permit));
        return Ok(meter.summary(result.e_tag));
    }
    match &context.multipart {
        Some(multipart) => {
            let parts = Parts {
                context,
                store: Arc::clone(multipart),
                path,
                call,
                meter: Arc::clone(&meter),
            };
            parts.run(first, permit, source).await
        }
        None => {
            upload_without_part_retries(context, path, first, permit, source, call, &meter).await
        }
    }
}

async fn put_once(
    context: &TransferContext,
    path: &Path,
    body: Bytes,
    call: &CallOptions,
    meter: &Meter,
) -> TaskResult<PutResult> {
    let attempts = Arc::new(AtomicU64::new(0));
    let (store, location, counter) = (
        Arc::clone(&context.store),
        path.clone(),
        Arc::clone(&attempts),
    );
    let len = body.len() as u64;
    let run = attempt(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let (store, path, payload) = (Arc::clone(&store), location.clone(), body.clone());
        async move { store.put(&path, PutPayload::from(payload)).await }
    });
    let result = context
        .dispatcher
        .run("put", path.as_ref(), call, run)
        .await?;
    meter.piece_done(len, attempts.load(Ordering::Relaxed));
    Ok(result)
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
    async fn run<R: AsyncRead + Unpin + Send>(
        self,
        first: Bytes,
        first_permit: OwnedSemaphorePermit,
        source: &mut R,
    ) -> TaskResult<TransferSummary> {
        let (store, location) = (Arc::clone(&self.store), self.path.clone());
        let create = attempt(move || {
            let (store, path) = (Arc::clone(&store), location.clone());
            async move { store.create_multipart(&path).await }
        });
        let id = self
            .context
            .dispatcher
            .run("put_multipart", self.path.as_ref(), self.call, create)
            .await?;
        let uploaded = self.send_parts(&id, first, first_permit, source).await;
        let completed = match uploaded {
            Ok(parts) => self.complete(&id, parts).await,
            Err(error) => Err(error),
        };
        match completed {
            Ok(result) => Ok(self.meter.summary(result.e_tag)),
            Err(error) => {
                self.abort(&id).await;
                Err(error)
            }
        }
    }

    /// Reads and sends the parts, as many at once as the budget and pool allow (a part's
    /// budget is taken before it is read and given back once it is stored). On a failure,
    /// reading stops and the parts still in flight are waited for, so that the abort that
    /// follows leaves none behind.
    async fn send_parts<R: AsyncRead + Unpin + Send>(
        &self,
        id: &str,
        first: Bytes,
        first_permit: OwnedSemaphorePermit,
        source: &mut R,
    ) -> TaskResult<Vec<PartId>> {
        let part_size = self.context.part_size;
        let mut parts: Vec<Option<PartId>> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let mut failure = None;
        let mut source_done = (first.len() as u64) < part_size;
        let mut pending = Some((first, first_permit));
        loop {
            if let Some((part, permit)) = pending.take() {
                let index = parts.len();
                parts.push(None);
                let sending = self.send_part(id, index, part);
                in_flight.push(async move {
                    let sent = sending.await;
                    drop(permit);
                    (index, sent)
                });
            }
            if failure.is_none() && !source_done {
                let mut acquire = std::pin::pin!(self.context.budget.acquire(part_size));
                let permit = loop {
                    match future::select(acquire.as_mut(), in_flight.next()).await {
                        Either::Left((permit, _)) => break Some(permit),
                        Either::Right((Some((index, sent)), _)) => {
                            record(&mut parts, &mut failure, index, sent);
                            if failure.is_some() {
                                break None;
                            }
                        }
                        Either::Right((None, _)) => break Some(acquire.as_mut().await),
                    }
                };
                if let (Some(permit), None) = (permit, &failure) {
                    match read_part(source, part_size as usize).await {
                        Ok(part) if part.is_empty() => source_done = true,
                        Ok(part) => {
                            source_done = (part.len() as u64) < part_size;
                            pending = Some((part, permit));
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
        id: &str,
        index: usize,
        part: Bytes,
    ) -> impl std::future::Future<Output = TaskResult<PartId>> + Send + 'static {
        let attempts = Arc::new(AtomicU64::new(0));
        let (store, path, id) = (Arc::clone(&self.store), self.path.clone(), id.to_owned());
        let (counter, len) = (Arc::clone(&attempts), part.len() as u64);
        let run = attempt(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            let (store, path, id, part) =
                (Arc::clone(&store), path.clone(), id.clone(), part.clone());
            async move {
                store
                    .put_part(&path, &id, index, PutPayload::from(part))
                    .await
            }
        });
        let dispatcher = self.context.dispatcher.clone();
        let (key, call, meter) = (
            self.path.to_string(),
            self.call.clone(),
            Arc::clone(&self.meter),
        );
        async move {
            let sent = dispatcher.run("upload_part", &key, &call, run).await;
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

    /// Best effort: an abort that fails is logged (a bucket lifecycle rule is the backstop).
    async fn abort(&self, id: &str) {
        let (store, location, id) = (Arc::clone(&self.store), self.path.clone(), id.to_owned());
        let run = attempt(move || {
            let (store, path, id) = (Arc::clone(&store), location.clone(), id.clone());
            async move { store.abort_multipart(&path, &id).await }
        });
        // Cleanup gets at least three retries, whatever the call allowed its parts.
        let retries = self.call.retries.unwrap_or(3).max(3);
        let options = self.call.clone().retries(retries);
        let aborted = self
            .context
            .dispatcher
            .run("abort_multipart", self.path.as_ref(), &options, run)
            .await;
        if let Err(error) = aborted {
            tracing::warn!(path = %self.path, %error, "aborting a failed upload failed");
        }
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
/// (which is then aborted). Parts go one after another.
async fn upload_without_part_retries<R: AsyncRead + Unpin + Send>(
    context: &TransferContext,
    path: &Path,
    first: Bytes,
    first_permit: OwnedSemaphorePermit,
    source: &mut R,
    call: &CallOptions,
    meter: &Meter,
) -> TaskResult<TransferSummary> {
    let (store, location) = (Arc::clone(&context.store), path.clone());
    let create = attempt(move || {
        let (store, path) = (Arc::clone(&store), location.clone());
        async move { store.put_multipart(&path).await }
    });
    let mut upload = context
        .dispatcher
        .run("put_multipart", path.as_ref(), call, create)
        .await?;
    let result = async {
        let mut part = first;
        let mut permit = first_permit;
        loop {
            let len = part.len() as u64;
            upload
                .put_part(PutPayload::from(part))
                .await
                .map_err(|error| TaskError::Failed { error, attempts: 1 })?;
            meter.piece_done(len, 1);
            drop(permit);
            if len < context.part_size {
                break;
            }
            permit = context.budget.acquire(context.part_size).await;
            part = read_part(source, context.part_size as usize).await?;
            if part.is_empty() {
                break;
            }
        }
        upload
            .complete()
            .await
            .map_err(|error| TaskError::Failed { error, attempts: 1 })
    }
    .await;
    match result {
        Ok(result) => Ok(meter.summary(result.e_tag)),
        Err(error) => {
            if let Err(abort_error) = upload.abort().await {
                tracing::warn!(%path, %abort_error, "aborting a failed upload failed");
            }
            Err(error)
        }
    }
}
