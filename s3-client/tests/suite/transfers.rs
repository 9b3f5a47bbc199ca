//! Large transfers: ranged downloads and multipart uploads whose pieces retry alone, under
//! the bytes-in-flight budget, with progress, over the loopback S3 server.

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{S3Client, TransferProgress};

use crate::support::get_hook::{GetHook, Hooked};
use crate::support::{random_bytes, Sink};

const PART: usize = 5 * 1024 * 1024;

fn client(server: &S3TestServer) -> S3Client {
    s3_client::S3ClientBuilder::from_url(&server.connection_string())
        .unwrap()
        .part_size(PART)
        .multipart_threshold(PART)
        .concurrency(4)
        .retry_delay(Duration::from_millis(5))
        .max_bytes_in_flight(3 * PART as u64)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resends_only_the_failed_part_and_a_download_only_the_failed_range() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let path = Path::from("big/object.bin");
    let body = random_bytes(11, 3 * PART + 12_345);
    let updates = Arc::new(Mutex::new(Vec::<TransferProgress>::new()));
    let received = server.faults().bytes_received();
    // Requests: create, then parts; the third request (the second part) fails once.
    server
        .faults()
        .fail_after(2, 1, InjectedResponse::InternalError);
    let uploaded = client
        .upload_from(&path, std::io::Cursor::new(body.to_vec()))
        .on_progress({
            let updates = Arc::clone(&updates);
            move |progress| updates.lock().unwrap().push(progress)
        })
        .await
        .unwrap();
    assert_eq!(uploaded.bytes, body.len() as u64);
    assert_eq!((uploaded.pieces, uploaded.retries), (4, 1), "{uploaded:?}");
    assert_eq!(uploaded.resent, PART as u64);
    let sent = server.faults().bytes_received() - received;
    assert!(sent <= body.len() as u64 + 2 * PART as u64, "{sent}");
    let last = *updates.lock().unwrap().last().unwrap();
    assert_eq!(last.transferred, body.len() as u64);
    assert_eq!(updates.lock().unwrap().len(), 4);

    let sink = Sink::default();
    let sent_before = server.faults().bytes_sent();
    let retries_before = client.stats().unwrap().retries;
    // After the first range, a HEAD (for a stored checksum) and the other ranges go at
    // once: one of them fails once.
    server.faults().fail_after(1, 1, InjectedResponse::SlowDown);
    let downloaded = client.download_to(&path, sink.clone()).await.unwrap();
    assert!(sink.bytes() == body, "the download differs");
    assert_eq!(downloaded.pieces, 4, "{downloaded:?}");
    assert_eq!(client.stats().unwrap().retries - retries_before, 1);
    assert!(downloaded.retries <= 1, "{downloaded:?}");
    let sent = server.faults().bytes_sent() - sent_before;
    assert!(sent <= body.len() as u64 + PART as u64, "{sent}");
    assert_eq!(server.pending_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_is_aborted_and_leaves_no_parts() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let path = Path::from("doomed.bin");
    let body = random_bytes(12, 2 * PART + 1);
    // The create passes; the three parts fail twice each (past one retry); the abort,
    // which retries more, gets through.
    server
        .faults()
        .fail_after(1, 6, InjectedResponse::InternalError);
    let err = client
        .upload_from(&path, std::io::Cursor::new(body.to_vec()))
        .retries(1)
        .await
        .unwrap_err();
    server.faults().clear();
    assert_eq!(err.operation(), s3_client::Operation::Upload);
    assert_eq!(server.pending_uploads(), 0, "{err}");
    assert!(client.head(&path).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_empty_small_and_in_more_parts_than_the_budget_holds() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let dir = tempfile::tempdir().unwrap();
    // "several": 4 parts and ranges under a budget of 3, so range buffers are reused.
    let sizes = [
        ("empty", 0),
        ("small", 1000),
        ("exact", PART),
        ("several", 3 * PART + 7),
    ];
    for (name, len) in sizes {
        let path = Path::from(name);
        let body = random_bytes(13, len);
        let source = dir.path().join(format!("{name}.in"));
        std::fs::write(&source, &body).unwrap();
        let up = client.upload_from_file(&path, &source).await.unwrap();
        assert_eq!(up.bytes, len as u64, "{name}");
        let target = dir.path().join(format!("{name}.out"));
        let down = client.download_to_file(&path, &target).await.unwrap();
        assert_eq!(down.bytes, len as u64, "{name}");
        assert!(std::fs::read(&target).unwrap() == body, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_into_an_open_file_overwrites_it_in_place_and_cuts_its_tail() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let dir = tempfile::tempdir().unwrap();
    // Longer files than the objects, full of another byte: every byte of the object must
    // be written over them, and their tails cut off (an empty object leaves an empty file).
    for (name, len) in [("empty", 0), ("several", 2 * PART + 3)] {
        let path = Path::from(name);
        let body = random_bytes(15, len);
        client.put(&path, body.clone()).await.unwrap();
        let target = dir.path().join(format!("{name}.out"));
        std::fs::write(&target, vec![0xAB; 3 * PART + 100]).unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap();
        let down = client.download_to_open_file(&path, file).await.unwrap();
        assert_eq!(down.bytes, len as u64, "{name}");
        let written = std::fs::read(&target).unwrap();
        assert_eq!(written.len(), len, "{name}: the old tail is cut off");
        assert!(written == body, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_smaller_than_a_part_still_completes() {
    let server = S3TestServer::start().await.unwrap();
    let client = s3_client::S3ClientBuilder::from_url(&server.connection_string())
        .unwrap()
        .part_size(PART)
        .multipart_threshold(PART)
        .max_bytes_in_flight(1)
        .build()
        .unwrap();
    let path = Path::from("tight");
    let body = random_bytes(14, 2 * PART + 3);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(100_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    client
        .upload_from_stream(&path, futures::stream::iter(chunks))
        .await
        .unwrap();
    let sink = Sink::default();
    client.download_to(&path, sink.clone()).await.unwrap();
    assert!(sink.bytes() == body);
    assert!(S3Client::from_url("memory://").is_ok());
    let zero = s3_client::S3ClientBuilder::from_url("memory://")
        .unwrap()
        .max_bytes_in_flight(0)
        .build();
    assert!(zero.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_put_resends_only_its_failed_part() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let path = Path::from("put/large.bin");
    let body = random_bytes(15, 3 * PART);
    let last = Arc::new(Mutex::new(None::<TransferProgress>));
    let received = server.faults().bytes_received();
    // Requests: create, then the parts (in any order); the second part to arrive fails once.
    server
        .faults()
        .fail_after(2, 1, InjectedResponse::InternalError);
    client
        .put(&path, body.clone())
        .on_progress({
            let last = Arc::clone(&last);
            move |progress| *last.lock().unwrap() = Some(progress)
        })
        .await
        .unwrap();
    assert_eq!(server.faults().injected(), 1);
    let progress = last.lock().unwrap().unwrap();
    assert_eq!(progress.transferred, body.len() as u64);
    assert_eq!(progress.resent, PART as u64, "one part sent again");
    // The failed part once more, and the XML of the create and complete requests.
    let resent = server.faults().bytes_received() - received - body.len() as u64;
    assert!(
        (PART as u64..PART as u64 + 4096).contains(&resent),
        "{resent}"
    );
    let parts_sent = server
        .faults()
        .recent_requests()
        .iter()
        .filter(|request| request.contains("partNumber="))
        .count();
    assert_eq!(parts_sent, 4, "three parts and one retry");
    assert!(client.get(&path).await.unwrap() == body);
    assert_eq!((server.pending_uploads(), server.stored_parts()), (0, 0));
}

/// A source that yields `parts` whole parts, then never ends.
fn stalling_source(
    parts: usize,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..parts)
        .map(|i| Ok(random_bytes(20 + i as u64, PART)))
        .collect();
    futures::StreamExt::chain(futures::stream::iter(chunks), futures::stream::pending())
}

/// Waits (bounded) for `condition`.
async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..6_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_is_aborted_and_leaves_no_parts() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let call = client.upload_from_stream(&Path::from("dropped.bin"), stalling_source(2));
    let running = tokio::spawn(call.into_future());
    // Two parts stored, the third never comes: the upload is half-way.
    until("two parts stored", || server.stored_parts() == 2).await;
    assert_eq!(server.pending_uploads(), 1);
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    until("the upload aborted", || {
        server.pending_uploads() == 0 && server.stored_parts() == 0
    })
    .await;
    assert!(server
        .faults()
        .recent_requests()
        .iter()
        .any(|request| request.starts_with("DELETE") && request.contains("uploadId=")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_dropped_mid_upload_is_aborted_too() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let body = random_bytes(21, 4 * PART);
    // The third part hangs on 503s (retried with backoff) until the call is dropped.
    server
        .faults()
        .fail_after(3, u64::MAX, InjectedResponse::SlowDown);
    let call = client
        .put(&Path::from("dropped-put.bin"), body)
        .retries(1_000);
    let running = tokio::spawn(call.into_future());
    // Dropped as soon as the third part is refused, the two others possibly still being
    // written: the abort waits for them, so none lands after it.
    until("some part refused", || server.faults().injected() > 0).await;
    running.abort();
    let _ = running.await;
    server.faults().clear();
    until("the upload aborted", || {
        server.pending_uploads() == 0 && server.stored_parts() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_is_aborted_only_once_its_part_in_flight_has_landed() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    // The server receives one part whole and holds it unstored (a part mid-write, from
    // the client's side); the other part is stored; the source then stalls.
    server.faults().hold_parts(1);
    let call = client.upload_from_stream(&Path::from("held.bin"), stalling_source(2));
    let running = tokio::spawn(call.into_future());
    until("one part held and the other stored", || {
        server.faults().held_parts() == 1 && server.stored_parts() == 1
    })
    .await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    // A client that cuts its part off and aborts at once has its abort here within
    // moments; one that waits for the part sends none until the part is answered. Give
    // the first kind time to show (a slow machine only makes this check less sensitive,
    // never wrong), then let the part land.
    for _ in 0..200 {
        if server.faults().aborts_while_parts_held() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.faults().release_parts();
    until("the held part stored and the upload gone", || {
        server.faults().held_parts() == 0 && server.pending_uploads() == 0
    })
    .await;
    assert_eq!(
        server.faults().aborts_while_parts_held(),
        0,
        "the abort went out while a part was still in flight"
    );
    assert_eq!(server.stored_parts(), 0, "a part landed after the abort");
    assert!(server
        .faults()
        .recent_requests()
        .iter()
        .any(|request| request.starts_with("DELETE") && request.contains("uploadId=")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_cut_off_by_the_attempt_timeout_is_answered_before_the_abort() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    // The server receives the first part whole and holds it unstored past the attempt
    // timeout; with no retries the part, then the upload, fails, and the upload is aborted.
    server.faults().hold_parts(1);
    let body = random_bytes(22, 2 * PART);
    let call = client
        .upload_from(
            &Path::from("timed-out.bin"),
            std::io::Cursor::new(body.to_vec()),
        )
        .timeout(Duration::from_millis(200))
        .retries(0);
    let running = tokio::spawn(call.into_future());
    until("one part held", || server.faults().held_parts() == 1).await;
    // The pool gave up on the held part at its timeout: an abort sent then would be here
    // within moments. Give it time to show (a slow machine only makes this check less
    // sensitive, never wrong), then let the part land.
    for _ in 0..200 {
        if server.faults().aborts_while_parts_held() > 0 || running.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.faults().release_parts();
    let error = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the failed upload resolves")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(error.task_error(), pool_core::TaskError::TimedOut { .. }),
        "{error:?}"
    );
    until("the held part stored and the upload gone", || {
        server.faults().held_parts() == 0 && server.pending_uploads() == 0
    })
    .await;
    assert_eq!(
        server.faults().aborts_while_parts_held(),
        0,
        "the abort went out while a timed-out part was still in flight"
    );
    assert_eq!(server.stored_parts(), 0, "a part landed after the abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_without_the_multipart_api_aborts_after_its_part_in_flight() {
    let server = S3TestServer::start().await.unwrap();
    // A client over a plain `ObjectStore`: its parts go through object_store's own
    // `MultipartUpload`, one at a time.
    let client = S3Client::builder_arc(server.store().unwrap())
        .part_size(PART)
        .multipart_threshold(PART)
        .concurrency(4)
        .build()
        .unwrap();
    server.faults().hold_parts(1);
    let call = client.upload_from_stream(&Path::from("held-plain.bin"), stalling_source(2));
    let running = tokio::spawn(call.into_future());
    until("the first part held", || server.faults().held_parts() == 1).await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    // As in the test above: time for an eager abort to show, then the part lands.
    for _ in 0..200 {
        if server.faults().aborts_while_parts_held() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.faults().release_parts();
    until("the held part stored and the upload gone", || {
        server.faults().held_parts() == 0 && server.pending_uploads() == 0
    })
    .await;
    assert_eq!(
        server.faults().aborts_while_parts_held(),
        0,
        "the abort went out while a part was still in flight"
    );
    assert_eq!(server.stored_parts(), 0, "a part landed after the abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_aborted_and_resolves_cancelled() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server);
    let token = pool_core::CancellationToken::new();
    let call = client
        .upload_from_stream(&Path::from("cancelled.bin"), stalling_source(2))
        .cancellation(token.clone());
    let running = tokio::spawn(call.into_future());
    until("two parts stored", || server.stored_parts() == 2).await;
    token.cancel();
    let error = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("a cancelled upload resolves")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(error.task_error(), pool_core::TaskError::Cancelled),
        "{error:?}"
    );
    assert_eq!((server.pending_uploads(), server.stored_parts()), (0, 0));
}

/// Counts the bytes of the GET responses open (from the response until its body is read or
/// dropped; each held a little so that transfers overlap), and the most at once.
#[derive(Debug, Default)]
struct BytesOpen {
    open: Arc<std::sync::atomic::AtomicU64>,
    most: Arc<std::sync::atomic::AtomicU64>,
}

/// Gives a response's bytes back to [`BytesOpen`] when its body is done with.
struct Closing(Arc<std::sync::atomic::AtomicU64>, u64);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0
            .fetch_sub(self.1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl GetHook for BytesOpen {
    async fn get(
        &self,
        store: &object_store::memory::InMemory,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        use futures::StreamExt;
        use std::sync::atomic::Ordering;
        let mut result = object_store::ObjectStore::get_opts(store, location, options).await?;
        let bytes = result.range.end - result.range.start;
        let now = self.open.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.most.fetch_max(now, Ordering::SeqCst);
        let closing = Closing(Arc::clone(&self.open), bytes);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let object_store::GetResultPayload::Stream(body) = result.payload else {
            unreachable!("InMemory streams")
        };
        result.payload = object_store::GetResultPayload::Stream(
            body.chain(futures::stream::poll_fn(move |_| {
                let _ = &closing;
                std::task::Poll::Ready(None)
            }))
            .boxed(),
        );
        Ok(result)
    }
}

/// Large and tiny downloads at once, under a pool limit far above what the budget holds: the
/// bytes of the responses open at once stay within the budget (a tiny object's first range
/// gives back the budget it does not use), and every download is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_of_large_and_tiny_objects_at_once_stay_within_the_budget() {
    use object_store::ObjectStoreExt;
    let budget = 2 * PART as u64;
    let store = Arc::new(Hooked::<BytesOpen>::default());
    let (open, most) = (Arc::clone(&store.hook.open), Arc::clone(&store.hook.most));
    let client = S3Client::builder_arc(store)
        .part_size(PART)
        .concurrency(32)
        .max_bytes_in_flight(budget)
        .build()
        .unwrap();
    let objects: Vec<(Path, bytes::Bytes)> = (0..12)
        .map(|i| {
            let len = if i % 4 == 0 { 3 * PART + 1 } else { 1_000 };
            (Path::from(format!("mix/{i}")), random_bytes(60 + i, len))
        })
        .collect();
    for (path, body) in &objects {
        client.store().put(path, body.clone().into()).await.unwrap();
    }
    let downloads = objects.iter().map(|(path, body)| {
        let (client, sink) = (client.clone(), Sink::default());
        async move {
            client.download_to(path, sink.clone()).await.unwrap();
            assert!(sink.bytes() == *body, "{path}");
        }
    });
    futures::future::join_all(downloads).await;
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= budget, "{most} bytes open at once, budget {budget}");
    assert!(
        most > PART as u64,
        "ranges overlapped ({most} bytes at most)"
    );
    assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Holds back the GET of the range starting at `held` until `release` is notified, and
/// counts the GETs answered.
#[derive(Debug, Default)]
struct HeldRange {
    held: u64,
    release: tokio::sync::Notify,
    answered: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl GetHook for HeldRange {
    async fn get(
        &self,
        store: &object_store::memory::InMemory,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        if let Some(object_store::GetRange::Bounded(range)) = &options.range {
            if range.start == self.held {
                self.release.notified().await;
            }
        }
        let result = object_store::ObjectStore::get_opts(store, location, options).await;
        self.answered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        result
    }
}

/// A file download writes each range at its offset as it arrives: with one range held back
/// and a budget of two ranges, every range after it is fetched and written meanwhile (written
/// in order, the held range's successor would keep the rest of the budget until the held
/// one came, and nothing more would be fetched); then the held one completes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_download_writes_the_ranges_after_a_slow_one_meanwhile() {
    use object_store::ObjectStoreExt;
    use std::sync::atomic::Ordering;
    let store = Arc::new(Hooked::new(HeldRange {
        held: PART as u64,
        ..HeldRange::default()
    }));
    let client = S3Client::builder_arc(Arc::clone(&store) as Arc<dyn object_store::ObjectStore>)
        .part_size(PART)
        .concurrency(8)
        .max_bytes_in_flight(2 * PART as u64)
        .build()
        .unwrap();
    let path = Path::from("held/object.bin");
    let body = random_bytes(70, 5 * PART + 3);
    store.put(&path, body.clone().into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("object.out");
    let download = tokio::spawn({
        let (client, path, target) = (client.clone(), path.clone(), target.clone());
        async move { client.download_to_file(&path, &target).await }
    });
    // Six ranges: all but the held one answered, and written at their offsets.
    until("the ranges after the held one are fetched", || {
        store.hook.answered.load(Ordering::SeqCst) == 5
    })
    .await;
    until("the ranges after the held one are written", || {
        std::fs::read(&target)
            .is_ok_and(|file| file.len() == body.len() && file[2 * PART..] == body[2 * PART..])
    })
    .await;
    assert!(!download.is_finished());
    store.hook.release.notify_one();
    let summary = tokio::time::timeout(Duration::from_secs(60), download)
        .await
        .expect("the download ends once the held range is answered")
        .unwrap()
        .unwrap();
    assert_eq!((summary.bytes, summary.pieces), (body.len() as u64, 6));
    assert!(std::fs::read(&target).unwrap() == body);
}

/// Holds back the body of the first range (its response comes at once) until the range
/// after it has been asked for.
#[derive(Debug, Default)]
struct FirstBodyAfterSecondRange {
    second_asked: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl GetHook for FirstBodyAfterSecondRange {
    async fn get(
        &self,
        store: &object_store::memory::InMemory,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        use futures::StreamExt;
        let start = match &options.range {
            Some(object_store::GetRange::Bounded(range)) => Some(range.start),
            _ => None,
        };
        if start == Some(PART as u64) {
            self.second_asked.notify_one();
        }
        let mut result = object_store::ObjectStore::get_opts(store, location, options).await?;
        if start == Some(0) {
            let object_store::GetResultPayload::Stream(body) = result.payload else {
                unreachable!("InMemory streams its bodies")
            };
            let second_asked = Arc::clone(&self.second_asked);
            let held = futures::stream::once(async move {
                second_asked.notified().await;
                body
            })
            .flatten();
            result.payload = object_store::GetResultPayload::Stream(held.boxed());
        }
        Ok(result)
    }
}

/// A download starts its other ranges once the first range's response has started, not once
/// its body has been read (the body of a range takes as long as the ranges that could be
/// fetched beside it): with the first body held back until the second range is asked for,
/// the download completes (it waited forever when the first body had to be read first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_asks_for_its_other_ranges_while_the_first_body_is_read() {
    use object_store::ObjectStoreExt;
    let store = Arc::new(Hooked::new(FirstBodyAfterSecondRange::default()));
    let client = S3Client::builder_arc(Arc::clone(&store) as Arc<dyn object_store::ObjectStore>)
        .part_size(PART)
        .concurrency(4)
        .max_bytes_in_flight(4 * PART as u64)
        .build()
        .unwrap();
    let path = Path::from("first/object.bin");
    let body = random_bytes(71, 3 * PART + 5);
    store.put(&path, body.clone().into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("object.out");
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        client.download_to_file(&path, &target),
    )
    .await
    .expect("the second range is asked for while the first body is held")
    .unwrap();
    assert_eq!((summary.bytes, summary.pieces), (body.len() as u64, 4));
    assert!(std::fs::read(&target).unwrap() == body);
}

/// Cuts the body of the first range's first response short (a retryable length error)
/// once `cut` is notified, and counts the other ranges answered.
#[derive(Debug, Default)]
struct CutFirstBody {
    cut: Arc<tokio::sync::Notify>,
    first_responses: std::sync::atomic::AtomicUsize,
    others_answered: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl GetHook for CutFirstBody {
    async fn get(
        &self,
        store: &object_store::memory::InMemory,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        use futures::StreamExt;
        use std::sync::atomic::Ordering;
        let first_range = matches!(
            &options.range,
            Some(object_store::GetRange::Bounded(range)) if range.start == 0
        );
        let mut result = object_store::ObjectStore::get_opts(store, location, options).await?;
        if !first_range {
            self.others_answered.fetch_add(1, Ordering::SeqCst);
        } else if self.first_responses.fetch_add(1, Ordering::SeqCst) == 0 {
            let object_store::GetResultPayload::Stream(mut body) = result.payload else {
                unreachable!("InMemory streams its bodies")
            };
            let cut = Arc::clone(&self.cut);
            let short = futures::stream::once(async move {
                cut.notified().await;
                let chunk = body.next().await;
                chunk.map(|chunk| chunk.map(|bytes| bytes.slice(..10)))
            })
            .filter_map(futures::future::ready);
            result.payload = object_store::GetResultPayload::Stream(short.boxed());
        }
        Ok(result)
    }
}

/// The first range's retries ask for the version its first response was of, as the other
/// ranges do: with the other ranges read from one version and the object replaced before the
/// first range's body broke, the retry finds that version gone and the download fails rather
/// than stitching the new version's first range onto the old one's others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_range_retried_after_the_object_changed_does_not_mix_versions() {
    use object_store::ObjectStoreExt;
    use std::sync::atomic::Ordering;
    let store = Arc::new(Hooked::new(CutFirstBody::default()));
    let client = S3Client::builder_arc(Arc::clone(&store) as Arc<dyn object_store::ObjectStore>)
        .part_size(PART)
        .concurrency(4)
        .retry_delay(Duration::from_millis(5))
        .max_bytes_in_flight(4 * PART as u64)
        .build()
        .unwrap();
    let path = Path::from("changing/object.bin");
    let (old, new) = (
        random_bytes(72, 3 * PART + 5),
        random_bytes(73, 3 * PART + 5),
    );
    store.put(&path, old.clone().into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("object.out");
    let download = tokio::spawn({
        let (client, path, target) = (client.clone(), path.clone(), target.clone());
        async move { client.download_to_file(&path, &target).await }
    });
    until("the other ranges are read from the old version", || {
        store.hook.others_answered.load(Ordering::SeqCst) == 3
    })
    .await;
    store.put(&path, new.into()).await.unwrap();
    store.hook.cut.notify_one();
    let outcome = tokio::time::timeout(Duration::from_secs(60), download)
        .await
        .expect("the download ends")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the first range was read again from another version: {outcome:?}"
    );
    assert_eq!(store.hook.first_responses.load(Ordering::SeqCst), 1);
}

/// A reader that notes whether it has been read.
struct Watched {
    inner: std::io::Cursor<Vec<u8>>,
    read: Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.read.store(true, std::sync::atomic::Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// A body smaller than a part is read by its pool task, when it gets a slot, not ahead of
/// it on the caller's task. Fails if the caller reads it first: the slow first upload then
/// holds no slot (its source is read outside the pool), so the second never queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_uploads_body_is_read_when_its_task_starts() {
    use tokio::io::AsyncWriteExt;
    let client = s3_client::S3ClientBuilder::from_url("memory://")
        .unwrap()
        .concurrency(1)
        .build()
        .unwrap();
    let (mut writer, slow) = tokio::io::duplex(64);
    let first = tokio::spawn(client.upload_from(&Path::from("slow"), slow).into_future());
    until("the slow upload's task holds the slot", || {
        client.stats().unwrap().active == 1
    })
    .await;
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = Watched {
        inner: std::io::Cursor::new(b"second".to_vec()),
        read: Arc::clone(&read),
    };
    let second = tokio::spawn(
        client
            .upload_from(&Path::from("second"), watched)
            .into_future(),
    );
    until("the second upload queued", || {
        client.stats().unwrap().queued == 1
    })
    .await;
    assert!(!read.load(std::sync::atomic::Ordering::SeqCst));
    writer.write_all(b"slow body").await.unwrap();
    drop(writer);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert!(read.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(client.get(&Path::from("slow")).await.unwrap(), "slow body");
    assert_eq!(client.get(&Path::from("second")).await.unwrap(), "second");
}
