//! Downloads: an object as ranged GETs run in parallel through the pool, written in order.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{self, Either};
use futures::stream::{FuturesOrdered, StreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStoreExt};
use pool_core::TaskError;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::progress::Meter;
use super::{io_failure, TaskResult, TransferContext, TransferSummary};
use crate::dispatch::attempt;
use crate::integrity::{IntegrityError, Verifier};
use crate::options::CallOptions;

/// One range read in full by a pool task (retried alone), with the response's metadata and
/// the attempts it took. The task is queued at once, not when the future is first polled.
fn fetch_range(
    context: &TransferContext,
    path: &Path,
    range: Range<u64>,
    if_match: Option<String>,
    call: &CallOptions,
) -> impl std::future::Future<Output = TaskResult<(Bytes, ObjectMeta, u64)>> + Send + 'static {
    let attempts = Arc::new(AtomicU64::new(0));
    let meta = Arc::new(Mutex::new(None));
    let (store, location) = (Arc::clone(&context.store), path.clone());
    let (counter, meta_slot) = (Arc::clone(&attempts), Arc::clone(&meta));
    let run = attempt(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let (store, path, meta_slot) =
            (Arc::clone(&store), location.clone(), Arc::clone(&meta_slot));
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            if_match: if_match.clone(),
            ..GetOptions::default()
        };
        async move {
            let result = store.get_opts(&path, options).await?;
            let object = result.meta.clone();
            let bytes = crate::client::read_verified(result).await?;
            *meta_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(object);
            Ok(bytes)
        }
    });
    let fetching = context.dispatcher.start("get", path.as_ref(), call, run);
    async move {
        let bytes = fetching.await?;
        let meta = meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("a successful attempt records the metadata");
        Ok((bytes, meta, attempts.load(Ordering::Relaxed)))
    }
}

/// Downloads `path` into `sink`: the first range tells the object's size and ETag, the rest
/// go as ranged GETs (`If-Match` on that ETag) through the pool, as many at once as the pool
/// and the byte budget allow, each retried alone; ranges are written in order. The length
/// of every range is checked, and a single-part S3 object's MD5 against its ETag as the
/// bytes are written.
pub(crate) async fn download<W: AsyncWrite + Unpin + Send>(
    context: &TransferContext,
    path: &Path,
    sink: &mut W,
    call: &CallOptions,
) -> TaskResult<TransferSummary> {
    let part = context.part_size;
    let meter = Meter::new(None, call.progress.clone());
    let first_permit = context.budget.acquire(part).await;
    let (first, meta, attempts) = match fetch_range(context, path, 0..part, None, call).await {
        Ok(first) => first,
        Err(error) => return empty_object_or(context, path, call, error).await,
    };
    let total = meta.size;
    meter.set_total(total);
    let mut whole = Verifier::new(&meta, &(0..total));
    write(sink, &first, &mut whole).await?;
    drop(first_permit);
    meter.piece_done(first.len() as u64, attempts);
    drop(first);

    let mut next = part.min(total);
    let mut in_flight = FuturesOrdered::new();
    while next < total || !in_flight.is_empty() {
        // Take budget for the next range unless a finished one is ready to be written. Budget
        // is taken in range order, so the range to be written next already has its own, and
        // a fetched range keeps its budget until it is written.
        let remaining = total - next;
        let room = in_flight.len() < context.part_concurrency;
        let acquire = std::pin::pin!(async move {
            if remaining > 0 && room {
                context.budget.acquire(part.min(remaining)).await
            } else {
                std::future::pending().await
            }
        });
        let step = if in_flight.is_empty() {
            Either::Right(acquire.await)
        } else {
            match future::select(in_flight.next(), acquire).await {
                Either::Left((done, _)) => Either::Left(done.expect("in_flight is not empty")),
                Either::Right((permit, _)) => Either::Right(permit),
            }
        };
        match step {
            Either::Left((fetched, permit)) => {
                let (bytes, attempts): (Bytes, u64) = fetched?;
                write(sink, &bytes, &mut whole).await?;
                meter.piece_done(bytes.len() as u64, attempts);
                drop((bytes, permit));
            }
            Either::Right(permit) => {
                let range = next..(next + part).min(total);
                next = range.end;
                let fetching = fetch_range(context, path, range, meta.e_tag.clone(), call);
                in_flight.push_back(async move {
                    let fetched = fetching.await;
                    (
                        fetched.map(|(bytes, _, attempts)| (bytes, attempts)),
                        permit,
                    )
                });
            }
        }
    }
    sink.flush().await.map_err(io_failure)?;
    whole
        .finish(true)
        .map_err(|error| failed(IntegrityError::into_store_error(error)))?;
    Ok(meter.summary(meta.e_tag))
}

async fn write<W: AsyncWrite + Unpin>(
    sink: &mut W,
    bytes: &[u8],
    whole: &mut Verifier,
) -> TaskResult<()> {
    whole
        .update(bytes)
        .map_err(|error| failed(IntegrityError::into_store_error(error)))?;
    sink.write_all(bytes).await.map_err(io_failure)
}

fn failed(error: object_store::Error) -> TaskError<object_store::Error> {
    TaskError::Failed { error, attempts: 1 }
}

/// A range of an empty object cannot be satisfied (416): when the first range fails for a
/// reason other than a missing object, a HEAD tells whether the object is empty.
async fn empty_object_or(
    context: &TransferContext,
    path: &Path,
    call: &CallOptions,
    error: TaskError<object_store::Error>,
) -> TaskResult<TransferSummary> {
    if matches!(
        error.task_error(),
        None | Some(object_store::Error::NotFound { .. })
    ) {
        return Err(error);
    }
    let (store, location) = (Arc::clone(&context.store), path.clone());
    let run = attempt(move || {
        let (store, path) = (Arc::clone(&store), location.clone());
        async move { store.head(&path).await }
    });
    match context
        .dispatcher
        .run("head", path.as_ref(), call, run)
        .await
    {
        Ok(meta) if meta.size == 0 => Ok(Meter::new(Some(0), None).summary(meta.e_tag)),
        _ => Err(error),
    }
}
