//! Bulk work under the client's defaults, over real HTTP: a queue far longer than the
//! concurrency delays a retry (it waits its backoff, then queues behind the rest); it never
//! drops it.

use object_store::path::Path;
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{CallOptions, S3Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_upload_with_one_percent_503s_loses_nothing_under_the_defaults() {
    const OBJECTS: usize = 2_000;
    let server = S3TestServer::start().await.unwrap();
    // The defaults (concurrency 10, retry delay 1 s, retry budget on) with 3 retries:
    // 2,000 items queue at a saturation of 200, far past the pressure rule's skip threshold.
    let client = S3Client::builder_arc(server.store().unwrap())
        .retries(3)
        .build()
        .unwrap();
    server
        .faults()
        .set_probability(0.01, InjectedResponse::SlowDown, 17);

    let items = (0..OBJECTS).map(|i| {
        let path = Path::from(format!("bulk/{i:05}"));
        (path, format!("object {i}").into())
    });
    let batch = client.put_batch(items, CallOptions::new()).await;
    server.faults().clear();

    let stats = client.stats().unwrap();
    println!(
        "put_batch of {OBJECTS} with 1 % 503s: {} failed, {} retries, {} 503s injected",
        batch.errors.len(),
        stats.retries,
        server.faults().injected()
    );
    for failure in &batch.errors {
        eprintln!("{} ({}): {:#}", failure.path, failure.index, failure.error);
    }
    assert!(
        server.faults().injected() > 0,
        "the fault switch answered 503s"
    );
    assert!(batch.errors.is_empty(), "{} failed", batch.errors.len());
    assert_eq!(
        stats.retries,
        server.faults().injected(),
        "one retry per 503"
    );
}
