//! The shared conformance suite over InMemory, LocalFileSystem and the real loopback S3
//! server, through `S3Client` and through `PooledStore`.

use crate::support;

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use pool_core::Pool;
use s3_client::testing::S3TestServer;
use s3_client::{PooledStore, S3Client};
use support::conformance::{run_all, Store};

fn client_over(store: Arc<dyn ObjectStore>) -> S3Client {
    S3Client::builder_arc(store).build().unwrap()
}

fn pooled(store: Arc<dyn ObjectStore>) -> Store<PooledStore<Arc<dyn ObjectStore>>> {
    Store(PooledStore::new(store, Pool::builder().build().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_client_over_in_memory() {
    let client = client_over(Arc::new(InMemory::new()));
    run_all(&client, "suite").await;
    let stats = client.stats().unwrap();
    assert!(stats.succeeded > 20 && stats.in_balance(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_over_in_memory() {
    let subject = pooled(Arc::new(InMemory::new()));
    run_all(&subject, "suite").await;
    assert!(subject.0.pool().unwrap().stats().succeeded > 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_client_over_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_over(Arc::new(
        LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
    ));
    run_all(&client, "suite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_over_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let subject = pooled(Arc::new(
        LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
    ));
    run_all(&subject, "suite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_client_over_real_s3_server() {
    let server = S3TestServer::start().await.unwrap();
    let client = client_over(server.store().unwrap());
    run_all(&client, "suite").await;
    assert_eq!(server.faults().injected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_over_real_s3_server() {
    let server = S3TestServer::start().await.unwrap();
    run_all(&pooled(server.store().unwrap()), "suite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_client_from_a_connection_string_reaches_the_server() {
    let server = S3TestServer::start().await.unwrap();
    let client =
        S3Client::from_url(&format!("{}/under/prefix", server.connection_string())).unwrap();
    run_all(&client, "suite").await;
    // The prefix is real: the objects live under it in the served directory.
    let on_disk = server
        .root()
        .join(server.bucket())
        .join("under/prefix/suite/rt/round-trip.bin");
    assert!(on_disk.exists(), "{}", on_disk.display());
}
