//! Errors as a user's report prints them (each cause once, down to the store's own), their
//! retry classification, and batch failures with their index and path.

use std::error::Error;
use std::time::Duration;

use object_store::memory::InMemory;
use s3_client::testing::S3TestServer;
use s3_client::{
    BuildError, CallOptions, ChaosConfig, ChaosStore, ErrorClass, Path, Retryable, S3Client,
    S3ClientBuilder, TaskError,
};

/// What anyhow's `{:#}` prints: the error, then each source after `: `.
fn report(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

fn occurrences(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_reports_each_cause_once_down_to_the_store_error() {
    let server = S3TestServer::start().await.unwrap();
    let client = S3Client::builder_arc(server.store().unwrap())
        .retries(1)
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    server.faults().set_throttling(true);

    let err = client.get(&Path::from("anything")).await.unwrap_err();

    assert_eq!(
        err.to_string(),
        "get `anything`: task failed after 2 attempt(s)"
    );
    let report = report(&err);
    assert!(
        report.starts_with("get `anything`: task failed after 2 attempt(s): Generic S3 error: "),
        "{report}"
    );
    for once in [
        "task failed",
        "Generic S3 error",
        // Not a bare "503": the server's random port and the request's duration may hold it.
        "503 Service Unavailable",
        "SlowDown",
        "Error performing GET",
    ] {
        assert_eq!(occurrences(&report, once), 1, "`{once}` in {report}");
    }
    // The chain reaches the response's own words.
    let mut deepest = err.source().unwrap();
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    assert!(deepest.to_string().contains("503"), "{deepest}");
    assert_eq!(err.error_class(), ErrorClass::Throttled);
}

#[tokio::test(start_paused = true)]
async fn client_errors_carry_their_retry_classification() {
    fn class_of(error: &impl Retryable) -> ErrorClass {
        error.error_class()
    }
    let chaos = ChaosStore::new(InMemory::new(), ChaosConfig::new(1).slow_down(1.0)).unwrap();
    let throttled = S3Client::builder(chaos).retries(0).build().unwrap();
    let err = throttled.put(&Path::from("a"), "x").await.unwrap_err();
    assert_eq!(class_of(&err), ErrorClass::Throttled, "{err:?}");

    let client = S3Client::from_url("memory://").unwrap();
    let missing = client.get(&Path::from("missing")).await.unwrap_err();
    assert_eq!(class_of(&missing), ErrorClass::Fatal);

    let hangs = ChaosStore::new(InMemory::new(), ChaosConfig::new(1).hang(1.0)).unwrap();
    let client = S3Client::builder(hangs).retries(0).build().unwrap();
    let timed_out = client
        .head(&Path::from("h"))
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(timed_out.task_error(), TaskError::TimedOut { .. }));
    assert_eq!(class_of(&timed_out), ErrorClass::Retryable);

    client.stop().await;
    let stopped = client.head(&Path::from("h")).await.unwrap_err();
    assert!(matches!(stopped.task_error(), TaskError::Stopped));
    assert_eq!(class_of(&stopped), ErrorClass::Fatal);
}

#[tokio::test(start_paused = true)]
async fn batch_failures_carry_their_index_and_path() {
    let client = S3Client::from_url("memory://").unwrap();
    client.put(&Path::from("in/0"), "zero").await.unwrap();
    client.put(&Path::from("in/2"), "two").await.unwrap();

    let batch = client
        .get_batch(
            ["in/0", "in/1", "in/2", "in/3"].map(Path::from),
            CallOptions::new(),
        )
        .await;

    let failed: Vec<(usize, &str)> = batch
        .errors
        .iter()
        .map(|failure| (failure.index, failure.path.as_ref()))
        .collect();
    assert_eq!(failed, [(1, "in/1"), (3, "in/3")]);
    let failure = &batch.errors[0];
    assert_eq!(failure.error.path(), "in/1");
    assert!(failure.error.is_not_found());
    assert_eq!(
        failure.to_string(),
        "item 1: get `in/1`: task failed after 1 attempt(s)"
    );
    let report = report(failure);
    for once in ["item 1", "get `in/1`", "task failed", "not found"] {
        assert_eq!(occurrences(&report, once), 1, "`{once}` in {report}");
    }
}

#[test]
fn every_way_of_building_a_client_fails_with_one_error_type() {
    let from_client: Result<S3Client, BuildError> = S3Client::from_url("ftp://bucket");
    let from_builder: Result<S3ClientBuilder, BuildError> =
        S3ClientBuilder::from_url("ftp://bucket");
    for error in [from_client.unwrap_err(), from_builder.unwrap_err()] {
        assert!(matches!(error, BuildError::Connection(_)), "{error}");
        assert_eq!(occurrences(&report(&error), "unknown scheme"), 1);
    }
}

/// The parts a client is built from fail with errors of their own, and each converts into
/// `BuildError` (printing as itself), so one `?` covers a whole build.
#[tokio::test(start_paused = true)]
async fn every_part_of_a_build_converts_into_build_error() {
    fn build(url: &str, group: usize, slow_down: f64) -> Result<S3Client, BuildError> {
        let store = s3_client::StoreConfig::parse(url)?.build()?;
        let store = ChaosStore::new(store, ChaosConfig::new(1).slow_down(slow_down))?;
        let group = s3_client::PoolGroup::new(group)?;
        S3Client::builder(store).group(group).build()
    }
    assert!(build("memory://", 2, 0.5).is_ok());
    let group = build("memory://", 0, 0.5).unwrap_err();
    assert!(matches!(group, BuildError::Group(_)), "{group}");
    assert_eq!(
        report(&group),
        "PoolGroup max_in_flight must be at least 1 (got 0)"
    );
    let chaos = build("memory://", 2, 2.0).unwrap_err();
    assert!(matches!(chaos, BuildError::Chaos(_)), "{chaos}");
    assert_eq!(
        report(&chaos),
        "chaos slow_down probability must be in [0, 1] (got 2)"
    );
    let connection = build("ftp://bucket", 2, 0.5).unwrap_err();
    assert!(
        matches!(connection, BuildError::Connection(_)),
        "{connection}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_pool_setting_is_reported_once() {
    let error = S3ClientBuilder::from_url("memory://")
        .unwrap()
        .concurrency(0)
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::Pool(_)), "{error}");
    assert_eq!(report(&error), "concurrency must be at least 1 (got 0)");
}
