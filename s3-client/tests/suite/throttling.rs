//! Throttling and error classification over real HTTP: the loopback S3 server's fault switch
//! answers 503 SlowDown / 429 / 500, the real `AmazonS3` client sees it, and the pool
//! classifies, retries and reports it.

use crate::support;

use std::time::Duration;

use object_store::path::Path;
use object_store::ObjectStoreExt;
use pool_core::{ErrorClass, Pool, TaskError};
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{PooledStore, S3Client};
use support::ClassRecorder;

/// A client over the server with short (real-time) retry delays: these tests talk to a real
/// socket, so virtual time cannot drive them; nothing here asserts on durations.
fn client(server: &S3TestServer, recorder: &ClassRecorder, retries: u32) -> S3Client {
    S3Client::builder_arc(server.store().unwrap())
        .retries(retries)
        .retry_delay(Duration::from_millis(5))
        .observer(recorder.clone())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_is_retried_until_the_put_succeeds() {
    let server = S3TestServer::start().await.unwrap();
    let recorder = ClassRecorder::default();
    let client = client(&server, &recorder, 3);
    server.faults().fail_next(2, InjectedResponse::SlowDown);

    let path = Path::from("throttled/object");
    client.put(&path, "payload").await.unwrap();

    assert_eq!(server.faults().injected(), 2);
    assert_eq!(
        server.faults().requests(),
        3,
        "object_store must not retry by itself"
    );
    let classes = recorder.snapshot(|r| r.retries.clone());
    assert_eq!(classes, vec![ErrorClass::Throttled, ErrorClass::Throttled]);
    assert_eq!(client.stats().unwrap().retries, 2);
    assert_eq!(&client.get(&path).await.unwrap()[..], b"payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_is_throttled_and_internal_error_is_retryable() {
    let server = S3TestServer::start().await.unwrap();
    let recorder = ClassRecorder::default();
    let client = client(&server, &recorder, 3);

    server
        .faults()
        .fail_next(1, InjectedResponse::TooManyRequests);
    client.put(&Path::from("a"), "1").await.unwrap();
    server
        .faults()
        .fail_next(1, InjectedResponse::InternalError);
    client.put(&Path::from("b"), "2").await.unwrap();

    let classes = recorder.snapshot(|r| r.failed_attempts.clone());
    assert_eq!(classes, vec![ErrorClass::Throttled, ErrorClass::Retryable]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_past_the_retries_fails_with_the_last_503() {
    let server = S3TestServer::start().await.unwrap();
    let recorder = ClassRecorder::default();
    let client = client(&server, &recorder, 2);
    server.faults().set_throttling(true);

    let err = client.get(&Path::from("anything")).await.unwrap_err();

    assert_eq!(err.error_class(), ErrorClass::Throttled, "{err}");
    assert_eq!(
        s3_client::http_status(err.store_error().unwrap()),
        Some(503)
    );
    assert!(
        matches!(err.task_error(), TaskError::Failed { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.path(), "anything");
    assert_eq!(server.faults().requests(), 3);
    server.faults().set_throttling(false);
    assert!(client
        .get(&Path::from("anything"))
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_fails_at_once_without_retries() {
    let server = S3TestServer::start().await.unwrap();
    let recorder = ClassRecorder::default();
    let client = client(&server, &recorder, 3);

    let err = client.head(&Path::from("missing")).await.unwrap_err();

    assert!(err.is_not_found(), "{err}");
    assert!(matches!(
        err.task_error(),
        TaskError::Failed { attempts: 1, .. }
    ));
    assert_eq!(server.faults().requests(), 1);
    assert_eq!(
        recorder.snapshot(|r| r.failed_attempts.clone()),
        vec![ErrorClass::Fatal]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_fatal() {
    let server = S3TestServer::start().await.unwrap();
    let config = s3_client::S3Config::new(server.bucket())
        .with_endpoint(server.endpoint())
        .with_region("us-east-1")
        .with_credentials(s3_client::Credentials::new("intruder", "not-the-secret"));
    let client = S3Client::builder_arc(s3_client::StoreConfig::s3(config).build().unwrap())
        .build()
        .unwrap();
    let err = client.put(&Path::from("x"), "y").await.unwrap_err();
    assert_eq!(err.error_class(), ErrorClass::Fatal, "{err}");
    assert_eq!(server.faults().requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_retries_slow_down_through_the_object_store_api() {
    let server = S3TestServer::start().await.unwrap();
    let recorder = ClassRecorder::default();
    let pool = Pool::builder()
        .retry_delay(Duration::from_millis(5))
        .observer(recorder.clone())
        .build()
        .unwrap();
    let store = PooledStore::new(server.store().unwrap(), pool.clone());
    server.faults().fail_next(3, InjectedResponse::SlowDown);

    store.put(&Path::from("k"), "v".into()).await.unwrap();

    assert_eq!(pool.stats().retries, 3);
    assert!(recorder.snapshot(|r| r.retries.iter().all(|c| *c == ErrorClass::Throttled)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_retried_after_slow_down_is_byte_identical() {
    let server = S3TestServer::start().await.unwrap();
    let recorder = ClassRecorder::default();
    let client = client(&server, &recorder, 3);
    let body = support::random_bytes(9, 17 * 1024 * 1024);
    // Request 1 creates the upload, 2 is the first part: throttle the second part.
    server.faults().fail_after(2, 1, InjectedResponse::SlowDown);

    let path = Path::from("big/upload.bin");
    client.put(&path, body.clone()).await.unwrap();

    assert_eq!(server.faults().injected(), 1);
    assert_eq!(
        client.stats().unwrap().retries,
        1,
        "the whole upload is retried once"
    );
    assert_eq!(
        recorder.snapshot(|r| r.retries.clone()),
        vec![ErrorClass::Throttled]
    );
    assert!(client.get(&path).await.unwrap() == body);
    // Every request of the failed attempt and of the retry reached the server:
    // 2 × (create + 3 parts + complete/abort) at least.
    assert!(
        server.faults().requests() >= 10,
        "{}",
        server.faults().requests()
    );
}
