//! Pooled GETs whose slot covers the body: the task stays running while its body streams,
//! and a body cut short is resumed from the last byte received.
//!
//! The task's attempt makes the request, hands the response's head (metadata, range,
//! attributes) to the caller, then reads the body and forwards each chunk through a small
//! channel to the stream the caller holds. So the pool slot (and a [`PoolGroup`] permit) is
//! held until the body has been read to its end or the caller drops it, as object_store's
//! `LimitStore` holds its permit. When the body fails mid-way (a connection reset, a body
//! shorter than announced), the attempt fails with a retryable error and the pool retries it
//! like any other: the next attempt asks for the bytes from the last one received onward
//! (`Range`, with `If-Match` on the first response's ETag so a changed object is not
//! stitched together), and the caller's stream goes on where it stopped. Each resume counts
//! as a retry of the task.
//!
//! [`PoolGroup`]: crate::PoolGroup

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{self, BoxFuture, Either};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, Extensions, GetOptions, GetRange, GetResult, GetResultPayload, ObjectMeta,
    ObjectStore,
};
use pool_core::TaskError;
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{attempt, Dispatcher};
use crate::error::into_store_error;
use crate::integrity::{IntegrityError, Verifier};
use crate::options::CallOptions;
use crate::task_stream::{task_stream, TaskOutcome};

/// Chunks read ahead of the consumer (object_store's chunks are the HTTP client's, a few KiB
/// to a few tens of KiB each).
const READ_AHEAD: usize = 4;

/// What the first response says, before its body.
enum Head {
    Streaming {
        meta: ObjectMeta,
        range: Range<u64>,
        attributes: Attributes,
        extensions: Extensions,
    },
    /// A local file: nothing streams over a network, the result is handed over whole and
    /// the slot freed.
    Whole(GetResult),
}

/// What the reading task sends the caller's stream.
enum Frame {
    Data(Bytes),
    /// The whole body was sent and checked. The task then waits for the stream to be
    /// dropped, so its slot is held until the caller has taken the last chunk.
    End,
}

/// Where a body stands between attempts.
struct Progress {
    head: Option<oneshot::Sender<Head>>,
    /// The object's bytes the body covers, once the first response came.
    range: Option<Range<u64>>,
    etag: Option<String>,
    verifier: Option<Verifier>,
}

/// A `get_opts` through the dispatcher whose slot is held until the body ends or is
/// dropped (see the module docs). `head` requests and the caller's opt-out
/// ([`CallOptions::release_slot_at_response`]) do not come here.
///
/// The task has no timeout unless `call` sets one (then it covers the whole body): the
/// consumer sets the pace. A stalled connection is ended by the HTTP client's own timeout
/// and resumed.
pub(crate) async fn held_get<S: ObjectStore + ?Sized>(
    store: Arc<S>,
    dispatcher: Dispatcher,
    path: Path,
    options: GetOptions,
    call: CallOptions,
    operation: &'static str,
) -> Result<HeldGet, TaskError<object_store::Error>> {
    let call = match call.task.timeout_value() {
        Some(_) => call,
        None => call.no_timeout(),
    };
    let (head_sender, head_receiver) = oneshot::channel();
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    let progress = Arc::new(Mutex::new(Progress {
        head: Some(head_sender),
        range: None,
        etag: None,
        verifier: None,
    }));
    let key = path.to_string();
    let run = attempt(move || {
        read_attempt(
            Arc::clone(&store),
            path.clone(),
            options.clone(),
            Arc::clone(&progress),
            sender.clone(),
        )
    });
    let mut finished: BoxFuture<'static, TaskOutcome> =
        Box::pin(async move { dispatcher.run(operation, &key, &call, run).await });
    let head = match future::select(head_receiver, &mut finished).await {
        Either::Left((Ok(head), _)) => head,
        Either::Left((Err(_), _)) => {
            // The attempt state is gone without a head: the task has ended.
            return Err(match finished.await {
                Err(error) => error,
                Ok(()) => lost_head(),
            });
        }
        Either::Right((outcome, mut head_receiver)) => match head_receiver.try_recv() {
            Ok(head) => {
                // The task ended between the two polls of the select, its whole body in
                // the channel: `finished` is done and must not be polled again (an async
                // block resumed after completion panics); the body ends with its outcome.
                finished = Box::pin(future::ready(outcome));
                head
            }
            Err(_) => return Err(outcome.err().unwrap_or_else(lost_head)),
        },
    };
    Ok(match head {
        Head::Whole(result) => HeldGet::Whole(result),
        Head::Streaming {
            meta,
            range,
            attributes,
            extensions,
        } => HeldGet::Streaming {
            meta,
            range,
            attributes,
            extensions,
            body: until_end(task_stream(receiver, finished)),
        },
    })
}

/// The chunks up to [`Frame::End`]; at the end the channel (and the task's handle) is
/// dropped, which ends the task and frees its slot.
fn until_end(
    frames: BoxStream<'static, Result<Frame, TaskError<object_store::Error>>>,
) -> TaskBody {
    futures::stream::unfold(Some(frames), |frames| async move {
        let mut frames = frames?;
        match frames.next().await? {
            Ok(Frame::Data(chunk)) => Some((Ok(chunk), Some(frames))),
            Ok(Frame::End) => None,
            Err(error) => Some((Err(error), None)),
        }
    })
    // Readers may poll again after the end (object_store's own collectors do).
    .fuse()
    .boxed()
}

/// The body of a task's error stream.
pub(crate) type TaskBody = BoxStream<'static, Result<Bytes, TaskError<object_store::Error>>>;

/// A read whose response has started.
pub(crate) enum HeldGet {
    /// Over a network: the body streams from the task that holds the slot.
    Streaming {
        meta: ObjectMeta,
        range: Range<u64>,
        attributes: Attributes,
        extensions: Extensions,
        body: TaskBody,
    },
    /// A local file, handed over as the store returned it.
    Whole(GetResult),
}

impl HeldGet {
    /// As object_store's `GetResult`, errors as the store's own (see `into_store_error`).
    pub(crate) fn into_get_result(self) -> GetResult {
        match self {
            HeldGet::Whole(result) => result,
            HeldGet::Streaming {
                meta,
                range,
                attributes,
                extensions,
                body,
            } => GetResult {
                payload: GetResultPayload::Stream(body.map_err(into_store_error).boxed()),
                meta,
                range,
                attributes,
                extensions,
            },
        }
    }
}

fn lost_head() -> TaskError<object_store::Error> {
    TaskError::Failed {
        error: object_store::Error::Generic {
            store: "s3pool",
            source: "the read ended without a response".into(),
        },
        attempts: 1,
    }
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|p| p.into_inner())
}

/// One attempt: the first request, or a resume from the last byte forwarded.
async fn read_attempt<S: ObjectStore + ?Sized>(
    store: Arc<S>,
    path: Path,
    options: GetOptions,
    progress: Arc<Mutex<Progress>>,
    sender: mpsc::Sender<Frame>,
) -> object_store::Result<()> {
    let resume_at = {
        let progress = lock(&progress);
        progress.range.as_ref().map(|range| {
            let received = progress.verifier.as_ref().map_or(0, Verifier::received);
            (range.start + received, range.end, progress.etag.clone())
        })
    };
    let request = match &resume_at {
        None => options,
        Some((start, end, etag)) => resume_options(options, *start..*end, etag.clone()),
    };
    let result = store.get_opts(&path, request).await?;
    let mut body = match resume_at {
        None => {
            if matches!(result.payload, GetResultPayload::File(..)) {
                if let Some(head) = lock(&progress).head.take() {
                    let _ = head.send(Head::Whole(result));
                }
                return Ok(());
            }
            let GetResult {
                payload,
                meta,
                range,
                attributes,
                extensions,
            } = result;
            let GetResultPayload::Stream(stream) = payload else {
                unreachable!("a file payload was handed over above")
            };
            let mut state = lock(&progress);
            state.verifier = Some(Verifier::new(&meta, &range, &extensions));
            state.range = Some(range.clone());
            state.etag = meta.e_tag.clone();
            if let Some(head) = state.head.take() {
                let _ = head.send(Head::Streaming {
                    meta,
                    range,
                    attributes,
                    extensions,
                });
            }
            stream
        }
        Some((start, _, _)) => {
            if result.range.start != start {
                return Err(object_store::Error::Generic {
                    store: "s3pool",
                    source: format!(
                        "resumed read of {path} starts at byte {}, not {start}",
                        result.range.start
                    )
                    .into(),
                });
            }
            result.into_stream()
        }
    };
    loop {
        let next = {
            let closed = std::pin::pin!(sender.closed());
            match future::select(body.next(), closed).await {
                Either::Left((next, _)) => next,
                // The caller dropped the body: end the task, quietly, and free the slot.
                Either::Right(_) => return Ok(()),
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk?;
        if let Some(verifier) = lock(&progress).verifier.as_mut() {
            verifier
                .update(&chunk)
                .map_err(IntegrityError::into_store_error)?;
        }
        if sender.send(Frame::Data(chunk)).await.is_err() {
            return Ok(());
        }
    }
    if let Some(verifier) = lock(&progress).verifier.as_mut() {
        // The bytes are all with the caller already: a digest mismatch cannot be retried.
        verifier
            .finish(true)
            .map_err(IntegrityError::into_store_error)?;
    }
    if sender.send(Frame::End).await.is_ok() {
        sender.closed().await;
    }
    Ok(())
}

/// The request that goes on from byte `remaining.start`: the same conditions, the rest of
/// the range, and the first response's ETag as `If-Match` so that a changed object fails
/// (412, fatal) rather than mixing two versions.
fn resume_options(
    mut options: GetOptions,
    remaining: Range<u64>,
    etag: Option<String>,
) -> GetOptions {
    options.range = Some(GetRange::Bounded(remaining));
    if options.if_match.is_none() {
        options.if_match = etag;
    }
    // A version that answered the first request is still current for these; do not let a
    // later clock tick turn a resume into 304 / 412.
    options.if_modified_since = None;
    options.if_none_match = None;
    options
}
