//! The S3 part of the suite against moto's S3 server, a stricter S3 than s3s-fs: object_store's
//! integration suite through `PooledStore`, and the conformance suite through `S3Client` and
//! `PooledStore`. moto is provisioned by `cargo xtask test` (see `support/moto.rs`).

use std::time::Duration;

use object_store::ObjectStore;
use pool_core::Pool;
use s3_client::{PooledStore, S3Client};

use crate::object_store_suite::{run_whole_suite, Backend, SUITE};
use crate::support::conformance::{run_all, Store};
use crate::support::moto::MotoServer;

/// The functions moto, not the pool, cannot pass.
const MOTO_SKIPS: &[(&str, &str)] = &[
    (
        "put_get_attributes",
        "moto 5.2.6 answers a GET without the user metadata (x-amz-meta-*) the object was \
         written with: the Attribute::Metadata entries come back missing",
    ),
    (
        "put_opts",
        "moto checks If-None-Match outside a lock: in a full-suite run on a loaded machine, \
         more than one of put_opts' concurrent conditional creates succeeded",
    ),
    (
        "multipart_with_opts",
        "the same for a multipart upload created with user metadata",
    ),
];

fn pool() -> Pool {
    Pool::builder()
        .concurrency(8)
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_s3_over_moto_passes_the_suite_but_named_skips() {
    let moto = MotoServer::start();
    let store = PooledStore::new(moto.s3(), pool()).retrying_parts();
    let ran = run_whole_suite(Backend {
        store: &store,
        multipart: Some(&store),
        paginated: Some(&store),
        supports_update: true,
        last_writer_wins: true,
        skips: MOTO_SKIPS,
    })
    .await;
    assert_eq!(ran.len(), SUITE.len() - MOTO_SKIPS.len(), "{ran:?}");
    // No assertion on retries here: moto is a Python process on a loaded machine, and a
    // transient error it causes is the pool's to retry.
    let stats = store.pool().unwrap().stats();
    assert!(stats.in_balance(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_client_over_moto() {
    let moto = MotoServer::start();
    let client = S3Client::builder_arc(moto.store()).build().unwrap();
    run_all(&client, "suite").await;
    let stats = client.stats().unwrap();
    assert!(stats.succeeded > 20 && stats.in_balance(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_over_moto() {
    let moto = MotoServer::start();
    let store: std::sync::Arc<dyn ObjectStore> = moto.store();
    run_all(&Store(PooledStore::new(store, pool())), "suite").await;
}
