//! Downloads: an object as ranged GETs run in parallel through the pool, written at their
//! offsets as they arrive (a file) or in order (any other sink).

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::future::{self, BoxFuture, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectMeta, ObjectStoreExt};
use pool_core::TaskError;
use tokio::sync::oneshot;

use super::buffers::{PieceBuffer, PieceBuffers};
use super::progress::Meter;
use super::sink::{FileSink, PositionedFile, RangeSink};
use super::{io_failure, ByteBudget, TaskResult, TransferContext, TransferSummary};
use crate::checksum::ResponseChecksums;
use crate::dispatch::attempt;
use crate::hedge::{HedgedRead, Leg, Race};
use crate::integrity::{IntegrityError, RangesVerifier, Verifier};
use crate::options::CallOptions;

/// A range as it came back: its bytes, the object's metadata, the attempts it took, and
/// whether the store reports stored checksums (its responses carry [`ResponseChecksums`]).
struct Fetched {
    bytes: PieceBuffer,
    meta: ObjectMeta,
    attempts: u64,
    reports_checksums: bool,
}

/// One range read in full into one of `buffers` by a pool task (retried alone), hedged like
/// a `get_range` when the client hedges reads (the same trigger and budget; only the winner
/// takes a buffer and reads its body). The task is queued at once, not when the future is
/// first polled.
fn fetch_range(
    context: &TransferContext,
    path: &Path,
    range: Range<u64>,
    if_match: Option<String>,
    call: &CallOptions,
    buffers: &PieceBuffers,
    first: Option<Arc<FirstResponse>>,
) -> BoxFuture<'static, TaskResult<Fetched>> {
    let attempts = Arc::new(AtomicU64::new(0));
    let (store, location) = (Arc::clone(&context.store), path.clone());
    let (counter, buffers) = (Arc::clone(&attempts), buffers.clone());
    let make = move |hedged: Option<(Arc<Race>, Leg)>| {
        let (store, location, counter, buffers) = (
            Arc::clone(&store),
            location.clone(),
            Arc::clone(&counter),
            buffers.clone(),
        );
        let (range, if_match, first) = (range.clone(), if_match.clone(), first.clone());
        attempt(move || {
            // A range's retries are its read's: a hedge is not one.
            if hedged.as_ref().is_none_or(|(_, leg)| *leg == Leg::Read) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            let (store, path, buffers) = (Arc::clone(&store), location.clone(), buffers.clone());
            // The first range's later attempts read the version its first response was of.
            let pinned = first.as_ref().and_then(|first| first.etag.get().cloned());
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                if_match: if_match.clone().or(pinned),
                ..GetOptions::default()
            };
            let (hedged, first) = (hedged.clone(), first.clone());
            async move {
                let request = store.get_opts(&path, options);
                let first = first.as_deref();
                match hedged {
                    None => read_range(request.await?, &buffers, first).await,
                    Some((race, leg)) => {
                        race.attempt(leg, request, |result| read_range(result, &buffers, first))
                            .await
                    }
                }
            }
        })
    };
    let fetching = match (&context.hedger, context.dispatcher.pool()) {
        (Some(hedger), Some(pool)) if !call.bypass_pool => {
            let read = HedgedRead {
                hedger: Arc::clone(hedger),
                pool: pool.clone(),
                dispatcher: context.dispatcher.clone(),
                operation: "get",
                key: path.to_string(),
                options: call.clone(),
            };
            read.start(move |race, leg| make(Some((race, leg))))
        }
        _ => context
            .dispatcher
            .start("get", path.as_ref(), call, make(None)),
    };
    Box::pin(async move {
        let (bytes, meta, reports_checksums) = fetching.await?;
        Ok(Fetched {
            bytes,
            meta,
            attempts: attempts.load(Ordering::Relaxed),
            reports_checksums,
        })
    })
}

/// Reads a range's response into a buffer: its bytes, the object's metadata, and whether
/// the store reports stored checksums. The first range's response is told to the download
/// (`first`) before its body is read.
async fn read_range(
    result: GetResult,
    buffers: &PieceBuffers,
    first: Option<&FirstResponse>,
) -> object_store::Result<(PieceBuffer, ObjectMeta, bool)> {
    let mut buffer = buffers.take();
    let meta = result.meta.clone();
    let reports = result.extensions.get::<ResponseChecksums>().is_some();
    if let Some(first) = first {
        first.arrived(&meta, &result.range, reports);
    }
    crate::client::read_verified_into(result, buffer.bytes_mut()).await?;
    Ok((buffer, meta, reports))
}

/// What the first response of a download's first range says, before its body: the object's
/// metadata, the bytes the response covers, and whether the store reports stored checksums.
/// With it the download knows the object's size and version, and starts the other ranges
/// while the first one's body is still being read (a range's body takes as long to come as
/// the ranges that could have been fetched beside it meanwhile).
type Head = (ObjectMeta, Range<u64>, bool);

/// Where the first range's attempts tell the download its first response, and the ETag
/// that response had: the range's later attempts ask for that version (`If-Match`), as the
/// other ranges do.
struct FirstResponse {
    head: Mutex<Option<oneshot::Sender<Head>>>,
    etag: OnceLock<String>,
}

impl FirstResponse {
    fn new(head: oneshot::Sender<Head>) -> Self {
        FirstResponse {
            head: Mutex::new(Some(head)),
            etag: OnceLock::new(),
        }
    }

    /// A response of the first range came: the first one is told to the download.
    fn arrived(&self, meta: &ObjectMeta, range: &Range<u64>, reports: bool) {
        let sender = self
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(sender) = sender {
            if let Some(etag) = &meta.e_tag {
                let _ = self.etag.set(etag.clone());
            }
            // The download may have ended meanwhile: then nobody waits for it.
            let _ = sender.send((meta.clone(), range.clone(), reports));
        }
    }
}

/// The checksums stored with the object (a HEAD of the version being downloaded), queued at
/// once.
fn fetch_checksums(
    context: &TransferContext,
    path: &Path,
    if_match: Option<String>,
    call: &CallOptions,
) -> BoxFuture<'static, TaskResult<ResponseChecksums>> {
    let (store, location) = (Arc::clone(&context.store), path.clone());
    let run = attempt(move || {
        let (store, path) = (Arc::clone(&store), location.clone());
        let options = GetOptions {
            head: true,
            if_match: if_match.clone(),
            ..GetOptions::default()
        };
        async move {
            let result = store.get_opts(&path, options).await?;
            Ok(result
                .extensions
                .get::<ResponseChecksums>()
                .cloned()
                .unwrap_or_default())
        }
    });
    context.dispatcher.start("head", path.as_ref(), call, run)
}

/// Downloads `path` into `sink`: the first range's response tells the object's size and
/// ETag, and as soon as it starts (before its body is read) the rest go as ranged GETs
/// (`If-Match` on that ETag, as the first range's own retries) through the pool, as many at
/// once as the pool and the byte budget allow, each retried alone.
///
/// Writing runs beside fetching. A sink that takes writes at offsets (a file) gets each range
/// as soon as it arrives, several at once, and the range's budget comes back once it is
/// written: a slow range (a retry waiting out its backoff) holds its own budget and nothing
/// else, while the ranges after it are written and new ones start. Other sinks get the
/// ranges in order: one that arrives early waits, with its budget, for those before it.
/// (Writing in the fetch loop stalled the network for as long as the ranges fetched meanwhile
/// took to write — whole budgets of them at once.)
///
/// Every range's length is checked. The whole object is checked as it is written: against
/// the full-object CRC stored with it when the store reports checksums (a HEAD asks, while
/// the ranges are fetched; ranges written out of order have their CRCs combined in order),
/// else against the MD5 of a single-part S3 ETag (which needs the bytes in order, so such an
/// object is written in order); a multipart object on a store that reports no full-object
/// checksum is checked by length only. An object that fits in the first range was checked
/// whole by that read.
pub(crate) async fn download(
    context: &TransferContext,
    path: &Path,
    mut sink: impl RangeSink,
    call: &CallOptions,
) -> TaskResult<TransferSummary> {
    let part = context.part_size;
    let meter = Meter::new(None, call.progress.clone());
    let buffers = PieceBuffers::default();
    let mut first_permit = context.budget.acquire(part).await;
    let (head, mut head_arrived) = oneshot::channel();
    let first_response = Arc::new(FirstResponse::new(head));
    let mut first = fetch_range(
        context,
        path,
        0..part,
        None,
        call,
        &buffers,
        Some(first_response),
    );
    // The other ranges start once the first range's response starts, not once its body is
    // read.
    let (first, (meta, first_range, reports_checksums)) =
        match future::select(&mut head_arrived, &mut first).await {
            Either::Left((Ok(head), _)) => (first, head),
            ended => {
                // The range ended (or its attempts are gone) before a response was told:
                // its outcome says what came.
                let outcome = match ended {
                    Either::Right((outcome, _)) => outcome,
                    Either::Left(_) => first.await,
                };
                let fetched = match outcome {
                    Ok(fetched) => fetched,
                    Err(error) => return empty_object_or(context, path, call, error).await,
                };
                let head = match head_arrived.try_recv() {
                    Ok(head) => head,
                    Err(_) => (
                        fetched.meta.clone(),
                        0..fetched.bytes.len() as u64,
                        fetched.reports_checksums,
                    ),
                };
                let done: BoxFuture<'static, TaskResult<Fetched>> =
                    Box::pin(future::ready(Ok(fetched)));
                (done, head)
            }
        };
    let total = meta.size;
    let after_first = first_range.end.min(total);
    // A small object's only range gives back the budget it does not use.
    ByteBudget::shrink(&mut first_permit, after_first);
    meter.set_total(total);
    // Several ranges: ask the store for the whole object's checksum while they are fetched.
    let several = after_first < total;
    let stored_checksums = (several && reports_checksums)
        .then(|| fetch_checksums(context, path, meta.e_tag.clone(), call));

    // Ranges as they arrive, each with its offset and budget, from the fetching to the
    // writing.
    let (arrived, mut to_write) = futures::channel::mpsc::unbounded::<Arrived>();
    let fetching = async {
        // Owned here, so the writing sees the end of the ranges when the fetching ends.
        let arrived = arrived;
        let mut next = after_first;
        let mut in_flight: FuturesUnordered<BoxFuture<'_, _>> = FuturesUnordered::new();
        in_flight.push(Box::pin(async move { (0, first.await, first_permit) }));
        while next < total || !in_flight.is_empty() {
            // Take budget for the next range, or hand on a range that arrived, whichever
            // comes first. Budget is taken in range order, so a sink written in order always
            // has budget for the range it waits for.
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
                match future::select(acquire, in_flight.next()).await {
                    Either::Left((permit, _)) => Either::Right(permit),
                    Either::Right((done, _)) => Either::Left(done.expect("in_flight is not empty")),
                }
            };
            match step {
                Either::Left((offset, fetched, permit)) => {
                    // The writing ended early only if it failed: its error is the one
                    // returned.
                    if arrived.unbounded_send((offset, fetched?, permit)).is_err() {
                        return Ok(());
                    }
                }
                Either::Right(permit) => {
                    let range = next..(next + part).min(total);
                    next = range.end;
                    let offset = range.start;
                    let fetching = fetch_range(
                        context,
                        path,
                        range,
                        meta.e_tag.clone(),
                        call,
                        &buffers,
                        None,
                    );
                    in_flight.push(Box::pin(async move { (offset, fetching.await, permit) }));
                }
            }
        }
        Ok(())
    };
    let writing = async {
        // Decided when the first range arrives (the HEAD's answer is needed by then).
        let mut order: Option<Order> = None;
        let mut stored_checksums = stored_checksums;
        let mut writes = FuturesUnordered::new();
        let mut arriving = true;
        while arriving || !writes.is_empty() {
            let event: Either<Option<Arrived>, Option<io::Result<(u64, u64)>>> = if !arriving {
                Either::Right(writes.next().await)
            } else if writes.is_empty() {
                Either::Left(to_write.next().await)
            } else {
                match future::select(to_write.next(), writes.next()).await {
                    Either::Left((arrival, _)) => Either::Left(arrival),
                    Either::Right((written, _)) => Either::Right(written),
                }
            };
            let (offset, fetched, permit) = match event {
                Either::Left(Some(arrival)) => arrival,
                Either::Left(None) => {
                    arriving = false;
                    continue;
                }
                Either::Right(written) => {
                    let (len, attempts) =
                        written.expect("writes is not empty").map_err(io_failure)?;
                    meter.piece_done(len, attempts);
                    continue;
                }
            };
            let order = match &mut order {
                Some(order) => order,
                None => {
                    let checksums = match stored_checksums.take() {
                        Some(head) => Some(head.await?),
                        None => None,
                    };
                    let verifier = match checksums {
                        Some(checksums) => Verifier::whole(&meta, Some(&checksums)),
                        None if !several => Verifier::length(&meta),
                        None => Verifier::whole(&meta, None),
                    };
                    order.insert(Order::new(verifier, sink.positioned()))
                }
            };
            match order {
                Order::AnyOrder { file, verifier } => {
                    verifier
                        .update_at(offset, &fetched.bytes)
                        .map_err(|error| failed(IntegrityError::into_store_error(error)))?;
                    let (file, len) = (file.clone(), fetched.bytes.len() as u64);
                    writes.push(async move {
                        file.write_at_holding(offset, fetched.bytes, permit)
                            .await
                            .map(|()| (len, fetched.attempts))
                    });
                }
                Order::InOrder {
                    next,
                    early,
                    verifier,
                } => {
                    early.insert(offset, (fetched, permit));
                    while let Some(entry) = early.first_entry().filter(|e| *e.key() == *next) {
                        let (fetched, permit) = entry.remove();
                        verifier
                            .update(&fetched.bytes)
                            .map_err(|error| failed(IntegrityError::into_store_error(error)))?;
                        let len = fetched.bytes.len() as u64;
                        sink.write_range(fetched.bytes).await.map_err(io_failure)?;
                        meter.piece_done(len, fetched.attempts);
                        drop(permit);
                        *next += len;
                    }
                }
            }
        }
        sink.finish().await.map_err(io_failure)?;
        let checked = match &mut order {
            Some(Order::AnyOrder { verifier, .. }) => verifier.finish(true),
            Some(Order::InOrder { verifier, .. }) => verifier.finish(true),
            None => Ok(()),
        };
        checked.map_err(|error| failed(IntegrityError::into_store_error(error)))
    };
    // Either one's failure ends both.
    future::try_join(fetching, writing).await?;
    Ok(meter.summary(meta.e_tag))
}

/// Downloads `path` into `file`, each range written at its offset, in place: the file is
/// not truncated first (the caller created it empty, or wants it overwritten), and once the
/// download is complete its length is set to the object's size, so a longer file does not
/// keep its old tail.
///
/// Writing over pages a file already has in memory costs a copy; a new file's pages are
/// allocated as they are written, which is cheap on a machine whose memory is its own but
/// not on a virtual machine that hands its free memory back to the host (free page
/// reporting): there the first write to such a page waits for the host to back it again,
/// and a new 1 GiB file cost 0.4 to 13 s of system time from one write to the next
/// (pool-bench README, "the large download's stall").
pub(crate) async fn download_to_file(
    context: &TransferContext,
    path: &Path,
    file: std::fs::File,
    call: &CallOptions,
) -> TaskResult<TransferSummary> {
    let cut = file.try_clone().map_err(io_failure)?;
    let summary = download(context, path, FileSink::new(file), call).await?;
    let len = summary.bytes;
    tokio::task::spawn_blocking(move || cut.set_len(len))
        .await
        .map_err(|error| io_failure(io::Error::other(error)))?
        .map_err(io_failure)?;
    Ok(summary)
}

/// A range that arrived: its offset, its bytes, and its budget.
type Arrived = (u64, Fetched, Permit);

/// How a download's ranges are written.
enum Order {
    /// Each at its offset as it arrives, several at once.
    AnyOrder {
        file: PositionedFile,
        verifier: RangesVerifier,
    },
    /// One after another: a range that arrives early waits in `early` (with its budget)
    /// until the ranges before it are written; `next` is the offset written next.
    InOrder {
        next: u64,
        early: BTreeMap<u64, (Fetched, Permit)>,
        verifier: Verifier,
    },
}

impl Order {
    /// Any order if the sink takes writes at offsets and the check needs no order.
    fn new(verifier: Verifier, file: Option<PositionedFile>) -> Self {
        let in_order = |verifier| Order::InOrder {
            next: 0,
            early: BTreeMap::new(),
            verifier,
        };
        match file {
            Some(file) => match verifier.any_order() {
                Ok(verifier) => Order::AnyOrder { file, verifier },
                Err(verifier) => in_order(*verifier),
            },
            None => in_order(verifier),
        }
    }
}

type Permit = tokio::sync::OwnedSemaphorePermit;

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
