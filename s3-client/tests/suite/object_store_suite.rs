//! object_store's own conformance suite (`object_store::integration`, the checks its stores
//! pass), run against `PooledStore`: over InMemory and LocalFileSystem as object_store runs
//! them, and over the real loopback S3 server.

use object_store::integration::*;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use pool_core::Pool;
use s3_client::testing::S3TestServer;
use s3_client::PooledStore;

fn pooled<S: ObjectStore>(store: S) -> PooledStore<S> {
    PooledStore::new(store, Pool::builder().concurrency(8).build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_in_memory_passes_object_stores_suite() {
    let store = pooled(InMemory::new());
    put_get_delete_list(&store).await;
    list_with_offset_exclusivity(&store).await;
    get_opts(&store).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    rename_and_copy(&store).await;
    copy_if_not_exists(&store).await;
    stream_get(&store).await;
    put_opts(&store, true).await;
    put_get_attributes(&store).await;
    let stats = store.pool().unwrap().stats();
    assert!(stats.processed > 100 && stats.in_balance(), "{stats:?}");
    // Every error the suite provokes (missing objects, bad ranges, failed preconditions) is
    // permanent: none may be retried.
    assert_eq!(stats.retries, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_local_files_pass_object_stores_suite() {
    let root = tempfile::tempdir().unwrap();
    let store = pooled(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    put_get_delete_list(&store).await;
    list_with_offset_exclusivity(&store).await;
    get_opts(&store).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    rename_and_copy(&store).await;
    copy_if_not_exists(&store).await;
    copy_rename_nonexistent_object(&store).await;
    stream_get(&store).await;
    put_opts(&store, false).await;
}

/// Left out where the filesystem-backed test server (s3s-fs), not the pool, falls short:
/// `put_get_delete_list` GETs a key that is also a "directory" (500 instead of 404) and
/// `get_opts` needs `If-Unmodified-Since` on GET (ignored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_s3_over_http_passes_object_stores_suite() {
    let server = S3TestServer::start().await.unwrap();
    let pool = Pool::builder()
        .retry_delay(std::time::Duration::from_millis(5))
        .build()
        .unwrap();
    let store = PooledStore::new(server.store().unwrap(), pool);
    list_with_offset_exclusivity(&store).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    rename_and_copy(&store).await;
    stream_get(&store).await;
}
