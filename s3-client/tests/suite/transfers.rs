//! Large transfers: ranged downloads and multipart uploads whose pieces retry alone, under
//! the bytes-in-flight budget, with progress, over the loopback S3 server.

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{S3Client, TransferProgress};

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
    until("some part refused", || server.faults().injected() > 0).await;
    running.abort();
    let _ = running.await;
    server.faults().clear();
    until("the upload aborted", || {
        server.pending_uploads() == 0 && server.stored_parts() == 0
    })
    .await;
}
