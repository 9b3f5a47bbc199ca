//! Pooled GETs whose slot covers the body: the task stays running while its body streams,
//! and a body cut short is resumed from the last byte received.
//!
//! The task's attempt makes the request, hands the response's head (metadata, range,
//! attributes) to the caller, then lends the body itself to the caller's stream and waits
//! until the caller has read it to its end, failed on it, or dropped it. So the pool slot
//! (and a [`PoolGroup`] permit) is held until the body has been read or dropped, as
//! object_store's `LimitStore` holds its permit, while the bytes are read, counted and
//! checked on the caller's task, as a bare `get` reads them: no chunk crosses from one task
//! to another. A small body the client's bytes budget has room for is the exception: the
//! attempt reads it whole and lends it in one piece (see `held_get`), so its chunks do not
//! wake the caller's thread one by one. When the body fails mid-way (a connection reset, a
//! body shorter than announced), the caller's stream gives it back with the error, the
//! attempt fails with it and the pool retries it like any other: the next attempt asks for
//! the bytes from the last one received onward (`Range`, with `If-Match` on the first
//! response's ETag so a changed object is not stitched together), and the caller's stream
//! goes on where it stopped. Each resume counts as a retry of the task. An attempt that ends
//! while its body is lent (its timeout, a cancellation, the pool stopping) takes the body
//! back: the caller's stream stops reading it and waits for the next attempt's.
//!
//! [`PoolGroup`]: crate::PoolGroup

use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{self, BoxFuture, Either, FutureExt};
use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
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
use crate::task_stream::TaskOutcome;
use crate::transfer::ByteBudget;

/// Bodies of at most this many bytes are read whole by their attempt, when the client's
/// bytes budget has room for them, before they are lent to the caller (see [`held_get`]).
/// At 1 MiB the caller's first byte waits at most for one 1 MiB read.
const WHOLE_READ_MAX: u64 = 1024 * 1024;

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

/// A response's body, lent by the attempt that requested it to the caller's stream.
struct Lease {
    /// The object's offset of the next byte `body` yields.
    at: u64,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    /// How the caller's reading ended; dropped unsent when the caller dropped the body. Its
    /// receiver dropped: the attempt is gone, and the body with it.
    done: oneshot::Sender<Returned>,
}

/// How the caller's stream gives a body back to the attempt that lent it.
enum Returned {
    /// Read to its end and checked: the caller has every byte.
    End,
    /// The body broke or its bytes were wrong: the attempt fails with this error (the pool
    /// retries it, resuming, when it is retryable).
    Failed(object_store::Error),
}

/// What the attempts of one read share.
struct Shared {
    progress: Mutex<Progress>,
    /// Bytes the caller's stream has handed out (and checked): where a resume starts. The
    /// caller's stream writes it, attempts read it.
    received: AtomicU64,
}

/// Where a body stands between attempts.
struct Progress {
    head: Option<oneshot::Sender<Head>>,
    /// The object's bytes the body covers, once the first response came.
    range: Option<Range<u64>>,
    etag: Option<String>,
}

/// A `get_opts` through the dispatcher whose slot is held until the body ends or is
/// dropped (see the module docs). `head` requests and the caller's opt-out
/// ([`CallOptions::release_slot_at_response`]) do not come here.
///
/// The task has no timeout unless `call` sets one (then it covers the whole body): the
/// consumer sets the pace. A stalled connection is ended by the HTTP client's own timeout
/// and resumed.
///
/// With a `budget`, a body of at most [`WHOLE_READ_MAX`] bytes that the budget has room
/// for now is read whole by the attempt (its bytes taken from the budget until the caller
/// drops them) and lent as it is. Its chunks then wake the attempt on the HTTP connection's
/// own worker instead of the caller's task on another thread, one wake-up a chunk: for
/// 1,000 bodies of 1 MiB, the caller's thread went from 47,000–60,000 voluntary context
/// switches to 760–1,010 and each of the runtime's two workers from 47,000–61,000 to
/// 25,000–42,000 (`pool-bench transfer --workloads many --trace`, threads.csv; load 1.5
/// before, 10–15 after). The attempt takes each chunk as soon as the connection reads it, so
/// the chunks are more and smaller: 215 M instructions for 32 bodies under callgrind
/// against 190 M streamed to the caller. A body that breaks is read again whole (nothing
/// was handed out), not resumed.
pub(crate) async fn held_get<S: ObjectStore + ?Sized>(
    store: Arc<S>,
    dispatcher: Dispatcher,
    path: Path,
    options: GetOptions,
    call: CallOptions,
    operation: &'static str,
    budget: Option<ByteBudget>,
) -> Result<HeldGet, TaskError<object_store::Error>> {
    let call = match call.task.timeout_value() {
        Some(_) => call,
        None => call.no_timeout(),
    };
    let (head_sender, head_receiver) = oneshot::channel();
    // One body lent at a time: an attempt lends its body once the last one came back.
    let (lender, leases) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        progress: Mutex::new(Progress {
            head: Some(head_sender),
            range: None,
            etag: None,
        }),
        received: AtomicU64::new(0),
    });
    let key = path.to_string();
    let run = {
        let shared = Arc::clone(&shared);
        attempt(move || {
            read_attempt(
                Arc::clone(&store),
                path.clone(),
                options.clone(),
                Arc::clone(&shared),
                lender.clone(),
                budget.clone(),
            )
        })
    };
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
                // The task ended between the two polls of the select: `finished` is done and
                // must not be polled again (an async block resumed after completion panics);
                // the body ends with its outcome.
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
        } => {
            let body = HeldBody {
                verifier: Verifier::new(&meta, &range, &extensions),
                start: range.start,
                leases,
                lease: None,
                finished: Some(finished),
                shared,
                ended: false,
            };
            HeldGet::Streaming {
                meta,
                range,
                attributes,
                extensions,
                body: body.boxed(),
            }
        }
    })
}

/// The body of a task's error stream.
pub(crate) type TaskBody = BoxStream<'static, Result<Bytes, TaskError<object_store::Error>>>;

/// A read whose response has started.
pub(crate) enum HeldGet {
    /// Over a network: the body streams while its task holds the slot.
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

/// The caller's side of a held read: it reads, counts and checks the bodies the task's
/// attempts lend it, and ends with the task's error if the task fails.
struct HeldBody {
    verifier: Verifier,
    /// The object's offset of the body's first byte.
    start: u64,
    leases: mpsc::Receiver<Lease>,
    /// The body being read.
    lease: Option<Lease>,
    /// The task's result; `None` once it has resolved. Polled while no body is lent (which
    /// also runs the task when the call bypasses the pool).
    finished: Option<BoxFuture<'static, TaskOutcome>>,
    shared: Arc<Shared>,
    /// The last item was yielded (readers may poll again after the end).
    ended: bool,
}

impl HeldBody {
    /// Gives the body back to its attempt with `returned`.
    fn give_back(&mut self, returned: Returned) {
        if let Some(lease) = self.lease.take() {
            // The attempt may be gone already: then nobody waits for it.
            let _ = lease.done.send(returned);
        }
    }

    /// The object's offset of the next byte the caller gets.
    fn next_offset(&self) -> u64 {
        self.start + self.verifier.received()
    }

    /// What to do with a chunk of the lent body: the part the caller does not have yet,
    /// counted and checked. A resumed body may start before bytes already handed out (its
    /// attempt read `received` while the last body was still being read): those are skipped.
    fn take_chunk(&mut self, chunk: Bytes) -> Result<Option<Bytes>, object_store::Error> {
        let next = self.next_offset();
        let lease = self.lease.as_mut().expect("a body is lent");
        let at = lease.at;
        lease.at += chunk.len() as u64;
        if at > next {
            return Err(object_store::Error::Generic {
                store: "s3pool",
                source: format!("a resumed body starts at byte {at}, not {next}").into(),
            });
        }
        let skip = usize::try_from(next - at).unwrap_or(usize::MAX);
        if skip >= chunk.len() {
            return Ok(None);
        }
        let chunk = if skip == 0 {
            chunk
        } else {
            chunk.slice(skip..)
        };
        self.verifier
            .update(&chunk)
            .map_err(IntegrityError::into_store_error)?;
        self.shared
            .received
            .store(self.verifier.received(), Ordering::Release);
        Ok(Some(chunk))
    }
}

impl Stream for HeldBody {
    type Item = Result<Bytes, TaskError<object_store::Error>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if let Some(lease) = this.lease.as_mut() {
                if lease.done.poll_closed(cx).is_ready() {
                    // Its attempt ended (a timeout, a cancellation, the pool stopping).
                    this.lease = None;
                    continue;
                }
                match std::task::ready!(lease.body.poll_next_unpin(cx)) {
                    Some(Ok(chunk)) => match this.take_chunk(chunk) {
                        Ok(Some(chunk)) => return Poll::Ready(Some(Ok(chunk))),
                        Ok(None) => {}
                        Err(error) => this.give_back(Returned::Failed(error)),
                    },
                    Some(Err(error)) => this.give_back(Returned::Failed(error)),
                    // The bytes are all with the caller already: a digest mismatch cannot be
                    // retried.
                    None => match this.verifier.finish(true) {
                        Ok(()) => {
                            this.give_back(Returned::End);
                            this.ended = true;
                            return Poll::Ready(None);
                        }
                        Err(error) => this.give_back(Returned::Failed(error.into_store_error())),
                    },
                }
                continue;
            }
            // No body lent: the next attempt's, or the task's end. Every sender gone means
            // the task's closure was dropped: its outcome tells why.
            if let Poll::Ready(Some(lease)) = this.leases.poll_recv(cx) {
                this.lease = Some(lease);
                continue;
            }
            let outcome = match this.finished.as_mut() {
                Some(finished) => std::task::ready!(finished.poll_unpin(cx)),
                None => Ok(()),
            };
            this.finished = None;
            this.ended = true;
            return Poll::Ready(Some(Err(outcome.err().unwrap_or_else(lost_body))));
        }
    }
}

fn lost_head() -> TaskError<object_store::Error> {
    lost("the read ended without a response")
}

fn lost_body() -> TaskError<object_store::Error> {
    lost("the read ended before its body was read")
}

fn lost(why: &'static str) -> TaskError<object_store::Error> {
    TaskError::Failed {
        error: object_store::Error::Generic {
            store: "s3pool",
            source: why.into(),
        },
        attempts: 1,
    }
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|p| p.into_inner())
}

/// One attempt: the first request, or a resume from the last byte the caller has; its body
/// lent to the caller's stream until it comes back.
async fn read_attempt<S: ObjectStore + ?Sized>(
    store: Arc<S>,
    path: Path,
    options: GetOptions,
    shared: Arc<Shared>,
    lender: mpsc::Sender<Lease>,
    budget: Option<ByteBudget>,
) -> object_store::Result<()> {
    if lender.is_closed() {
        // The caller dropped the body: nothing to read for.
        return Ok(());
    }
    let resume_at = {
        let progress = lock(&shared.progress);
        progress.range.as_ref().map(|range| {
            let received = shared.received.load(Ordering::Acquire);
            (range.start + received, range.end, progress.etag.clone())
        })
    };
    let request = match &resume_at {
        None => options,
        Some((start, end, etag)) => resume_options(options, *start..*end, etag.clone()),
    };
    let result = store.get_opts(&path, request).await?;
    // The first response's head, sent once its body is lent (the caller, woken by it, finds
    // the body there).
    let mut head = None;
    let (at, body) = match resume_at {
        None => {
            if matches!(result.payload, GetResultPayload::File(..)) {
                if let Some(head) = lock(&shared.progress).head.take() {
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
            let len = range.end - range.start;
            let held = budget
                .filter(|_| len <= WHOLE_READ_MAX)
                .and_then(|budget| budget.try_acquire(len));
            let stream = match held {
                // Read here, while the task holds its slot (see `held_get`). Nothing is
                // handed out yet, so a body that breaks is read again whole.
                Some(permit) => {
                    let chunks: Vec<Bytes> = stream.try_collect().await?;
                    stream::iter(chunks)
                        .map(move |chunk| {
                            let _held = &permit;
                            Ok(chunk)
                        })
                        .boxed()
                }
                None => stream,
            };
            let mut progress = lock(&shared.progress);
            progress.range = Some(range.clone());
            progress.etag = meta.e_tag.clone();
            let at = range.start;
            head = progress.head.take().map(|sender| {
                let head = Head::Streaming {
                    meta,
                    range,
                    attributes,
                    extensions,
                };
                (sender, head)
            });
            (at, stream)
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
            (start, result.into_stream())
        }
    };
    let (done, returned) = oneshot::channel();
    let lease = Lease { at, body, done };
    if lender.send(lease).await.is_err() {
        return Ok(());
    }
    if let Some((sender, head)) = head {
        let _ = sender.send(head);
    }
    match returned.await {
        Ok(Returned::Failed(error)) => Err(error),
        // Read to its end, or the caller dropped it: either way the slot is free.
        Ok(Returned::End) | Err(_) => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::stream;

    use super::*;

    /// The caller's stream over an object of `size` bytes (length checked only), and the
    /// sender its attempts lend bodies through. The task never ends.
    fn caller_stream(size: u64) -> (HeldBody, mpsc::Sender<Lease>) {
        let (lender, leases) = mpsc::channel(1);
        let meta = ObjectMeta {
            location: Path::from("o"),
            last_modified: Default::default(),
            size,
            e_tag: None,
            version: None,
        };
        let body = HeldBody {
            verifier: Verifier::new(&meta, &(0..size), &Extensions::new()),
            start: 0,
            leases,
            lease: None,
            finished: Some(future::pending().boxed()),
            shared: Arc::new(Shared {
                progress: Mutex::new(Progress {
                    head: None,
                    range: Some(0..size),
                    etag: None,
                }),
                received: AtomicU64::new(0),
            }),
            ended: false,
        };
        (body, lender)
    }

    /// A body lent from byte `at`: `chunks`, then (if `stall`) nothing ever again.
    fn lease(
        at: u64,
        chunks: &[&'static [u8]],
        stall: bool,
    ) -> (Lease, oneshot::Receiver<Returned>) {
        let chunks: Vec<_> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk)))
            .collect();
        let body = stream::iter(chunks);
        let body = if stall {
            body.chain(stream::pending()).boxed()
        } else {
            body.boxed()
        };
        let (done, returned) = oneshot::channel();
        (Lease { at, body, done }, returned)
    }

    async fn next(body: &mut HeldBody) -> Option<Bytes> {
        tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the stream hung")
            .map(|chunk| chunk.unwrap())
    }

    /// An attempt that ends while its body is lent takes it back: the stream stops reading
    /// it (it would hang here) and goes on with the next attempt's body, which starts at the
    /// resume point that attempt read — before the last bytes handed out, when they were
    /// handed out after it read it. Those are skipped: every byte comes once, in order.
    #[tokio::test]
    async fn the_next_attempts_body_goes_on_from_the_last_byte_handed_out() {
        let (mut body, lender) = caller_stream(10);
        let (first, first_returned) = lease(0, &[b"0123", b"45"], true);
        lender.send(first).await.ok().unwrap();
        assert_eq!(next(&mut body).await.unwrap(), "0123");
        assert_eq!(body.shared.received.load(Ordering::Acquire), 4);
        assert_eq!(next(&mut body).await.unwrap(), "45");
        // The attempt times out; the next one had read 4 bytes handed out, not 6.
        drop(first_returned);
        let (second, second_returned) = lease(4, &[b"4567", b"89"], false);
        lender.send(second).await.ok().unwrap();
        assert_eq!(next(&mut body).await.unwrap(), "67");
        assert_eq!(next(&mut body).await.unwrap(), "89");
        assert_eq!(next(&mut body).await, None);
        assert!(matches!(second_returned.await, Ok(Returned::End)));
        assert_eq!(next(&mut body).await, None, "polled again after its end");
    }

    /// A body that breaks, or brings more bytes than announced, goes back to its attempt
    /// with the error (which the pool may retry); the stream waits for the next body.
    #[tokio::test]
    async fn a_broken_or_overlong_body_goes_back_with_its_error() {
        let (mut body, lender) = caller_stream(4);
        let (done, returned) = oneshot::channel();
        let broken = stream::iter([
            Ok(Bytes::from_static(b"01")),
            Err(object_store::Error::Generic {
                store: "test",
                source: "connection reset".into(),
            }),
        ]);
        let broken = Lease {
            at: 0,
            body: broken.boxed(),
            done,
        };
        lender.send(broken).await.ok().unwrap();
        assert_eq!(next(&mut body).await.unwrap(), "01");
        let pending = tokio::time::timeout(Duration::from_millis(50), body.next()).await;
        assert!(pending.is_err(), "the stream waits for the next body");
        match returned.await {
            Ok(Returned::Failed(error)) => assert!(error.to_string().contains("reset")),
            _ => panic!("the broken body did not come back with its error"),
        }
        let (overlong, returned) = lease(2, &[b"234"], false);
        lender.send(overlong).await.ok().unwrap();
        let pending = tokio::time::timeout(Duration::from_millis(50), body.next()).await;
        assert!(
            pending.is_err(),
            "no byte past the announced length is handed out"
        );
        match returned.await {
            Ok(Returned::Failed(error)) => assert!(error.to_string().contains("expected 4")),
            _ => panic!("the overlong body did not come back with its error"),
        }
    }
}
