//! object_store's own conformance suite (`object_store::integration`, feature `integration`:
//! the checks object_store's stores pass) run whole against `PooledStore` over every
//! backend: InMemory, LocalFileSystem and the loopback S3 server (s3s-fs). Each function a
//! backend does not run is named in its `skips`, with the reason; a skip that names no
//! function of the suite fails the test, so a skip cannot outlive the function it excuses.

use std::time::Duration;

use object_store::integration::*;
use object_store::list::PaginatedListStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use pool_core::Pool;
use s3_client::testing::S3TestServer;
use s3_client::PooledStore;

/// Every function of `object_store::integration` that takes a store, by name.
pub(crate) const SUITE: [&str; 18] = [
    "put_get_delete_list",
    "put_get_attributes",
    "get_opts",
    "put_opts",
    "stream_get",
    "list_uses_directories_correctly",
    "list_with_delimiter",
    "list_with_offset_exclusivity",
    "get_nonexistent_object",
    "rename_and_copy",
    "copy_if_not_exists",
    "copy_rename_nonexistent_object",
    "multipart",
    "multipart_with_opts",
    "multipart_put_part_out_of_order",
    "multipart_race_condition",
    "multipart_out_of_order",
    "list_paginated",
];

/// What one backend supports beyond `ObjectStore`, and what it does not run.
pub(crate) struct Backend<'a> {
    pub(crate) store: &'a dyn ObjectStore,
    pub(crate) multipart: Option<&'a dyn MultipartStore>,
    pub(crate) paginated: Option<&'a dyn PaginatedListStore>,
    /// `put_opts(.., supports_update)`: the backend implements `PutMode::Update`.
    pub(crate) supports_update: bool,
    /// `multipart_race_condition(.., last_writer_wins)`.
    pub(crate) last_writer_wins: bool,
    /// (function, why it is not run here).
    pub(crate) skips: &'a [(&'static str, &'static str)],
}

/// Runs every function of the suite on `backend` but its skips; returns the names run.
pub(crate) async fn run_whole_suite(backend: Backend<'_>) -> Vec<&'static str> {
    for (name, why) in backend.skips {
        assert!(SUITE.contains(name), "skip of an unknown function {name}");
        eprintln!("object_store suite: skipping {name}: {why}");
    }
    let runs = |name: &str| !backend.skips.iter().any(|(skip, _)| *skip == name);
    let store = backend.store;
    let mut ran = Vec::new();
    macro_rules! step {
        ($name:literal, $call:expr) => {
            if runs($name) {
                // Some functions expect an empty store and others leave objects behind.
                clear(store).await;
                $call.await;
                ran.push($name);
            }
        };
    }
    step!("put_get_delete_list", put_get_delete_list(store));
    step!("put_get_attributes", put_get_attributes(store));
    step!("get_opts", get_opts(store));
    step!("put_opts", put_opts(store, backend.supports_update));
    step!("stream_get", stream_get(store));
    step!(
        "list_uses_directories_correctly",
        list_uses_directories_correctly(store)
    );
    step!("list_with_delimiter", list_with_delimiter(store));
    step!(
        "list_with_offset_exclusivity",
        list_with_offset_exclusivity(store)
    );
    step!("get_nonexistent_object", async {
        let err = get_nonexistent_object(store, None).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    });
    step!("rename_and_copy", rename_and_copy(store));
    step!("copy_if_not_exists", copy_if_not_exists(store));
    step!(
        "copy_rename_nonexistent_object",
        copy_rename_nonexistent_object(store)
    );
    if let Some(multipart_store) = backend.multipart {
        step!("multipart", multipart(store, multipart_store));
        step!(
            "multipart_with_opts",
            multipart_with_opts(store, multipart_store)
        );
        step!(
            "multipart_put_part_out_of_order",
            multipart_put_part_out_of_order(store, multipart_store)
        );
    }
    step!(
        "multipart_race_condition",
        multipart_race_condition(store, backend.last_writer_wins)
    );
    step!("multipart_out_of_order", multipart_out_of_order(store));
    if let Some(paginated) = backend.paginated {
        step!("list_paginated", list_paginated(store, paginated));
    }
    ran
}

async fn clear(store: &dyn ObjectStore) {
    use futures::{StreamExt, TryStreamExt};
    let paths = store.list(None).map_ok(|meta| meta.location).boxed();
    store
        .delete_stream(paths)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

fn pool() -> Pool {
    Pool::builder()
        .concurrency(8)
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap()
}

fn assert_no_retries(store: &PooledStore<impl ObjectStore>) {
    let stats = store.pool().unwrap().stats();
    assert!(stats.succeeded > 100 && stats.in_balance(), "{stats:?}");
    // Every error the suite provokes (missing objects, bad ranges, failed preconditions) is
    // permanent: none may be retried.
    assert_eq!(stats.retries, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_in_memory_passes_the_whole_suite() {
    let store = PooledStore::new(InMemory::new(), pool()).retrying_parts();
    let ran = run_whole_suite(Backend {
        store: &store,
        multipart: Some(&store),
        paginated: None,
        supports_update: true,
        last_writer_wins: true,
        skips: &[],
    })
    .await;
    // InMemory is no PaginatedListStore: that one function has nothing to run on.
    assert_eq!(ran.len(), SUITE.len() - 1, "{ran:?}");
    assert_no_retries(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_local_files_pass_the_whole_suite() {
    let root = tempfile::tempdir().unwrap();
    let store = PooledStore::new(
        LocalFileSystem::new_with_prefix(root.path()).unwrap(),
        pool(),
    );
    let ran = run_whole_suite(Backend {
        store: &store,
        multipart: None,
        paginated: None,
        supports_update: false,
        last_writer_wins: true,
        skips: &[],
    })
    .await;
    // LocalFileSystem is neither a MultipartStore nor a PaginatedListStore.
    assert_eq!(ran.len(), SUITE.len() - 4, "{ran:?}");
    assert_no_retries(&store);
}

/// The functions s3s-fs (the filesystem-backed loopback server), not the pool, cannot pass.
pub(crate) const S3S_FS_SKIPS: &[(&str, &str)] = &[
    (
        "put_get_delete_list",
        "s3s-fs answers 500 instead of 404 for a GET of a key that is also a \"directory\" \
         (test_dir beside test_dir/test_file.json)",
    ),
    (
        "get_opts",
        "s3s-fs ignores If-Unmodified-Since on GET (answers 200 where S3 answers 412)",
    ),
    (
        "put_opts",
        "s3s-fs checks If-None-Match / If-Match outside any lock: of concurrent conditional \
         puts more than one succeeds",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_s3_over_http_passes_the_suite_but_named_skips() {
    let server = S3TestServer::start().await.unwrap();
    let s3 = server.builder().build().unwrap();
    let store = PooledStore::new(s3, pool()).retrying_parts();
    let ran = run_whole_suite(Backend {
        store: &store,
        multipart: Some(&store),
        paginated: Some(&store),
        supports_update: true,
        last_writer_wins: true,
        skips: S3S_FS_SKIPS,
    })
    .await;
    assert_eq!(ran.len(), SUITE.len() - S3S_FS_SKIPS.len(), "{ran:?}");
    assert_no_retries(&store);
    assert_eq!(server.faults().injected(), 0);
}

/// `list_with_offset` reaches the store as S3's start-after: the server sees one listing
/// request whose query names the offset, not a full listing filtered here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_offset_is_passed_through_to_the_store() {
    let server = S3TestServer::start().await.unwrap();
    let store = PooledStore::new(server.builder().build().unwrap(), pool());
    for name in ["a", "b", "c", "d"] {
        store.put(&Path::from(name), "x".into()).await.unwrap();
    }
    let before = server.faults().requests();
    let after_b: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(
        store.list_with_offset(None, &Path::from("b")),
    )
    .await
    .unwrap()
    .into_iter()
    .map(|meta| meta.location.to_string())
    .collect();
    assert_eq!(after_b, ["c", "d"]);
    assert_eq!(server.faults().requests() - before, 1);
    let requests = server.faults().recent_requests();
    assert!(
        requests
            .iter()
            .any(|request| request.contains("start-after=b")),
        "{requests:?}"
    );
}

/// `rename_opts` reaches the store's own rename: on local files the source file is moved
/// (same inode), not copied and deleted.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_is_the_stores_own() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let store = PooledStore::new(
        LocalFileSystem::new_with_prefix(root.path()).unwrap(),
        pool(),
    );
    store.put(&Path::from("from"), "x".into()).await.unwrap();
    let inode = std::fs::metadata(root.path().join("from")).unwrap().ino();
    store
        .rename(&Path::from("from"), &Path::from("to"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(root.path().join("to")).unwrap().ino(),
        inode
    );
    assert_eq!(store.pool().unwrap().stats().succeeded, 2);
}

/// With `retrying_parts`, a part that fails is sent again alone: the upload completes and
/// the server saw exactly one more part request than parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_is_retried_alone() {
    use s3_client::testing::InjectedResponse;
    let server = S3TestServer::start().await.unwrap();
    let store = PooledStore::new(server.builder().build().unwrap(), pool()).retrying_parts();
    let path = Path::from("parts");
    let mut upload = store.put_multipart(&path).await.unwrap();
    let part = bytes::Bytes::from(vec![7u8; 5 * 1024 * 1024]);
    // Requests so far: the create. Let the first part through, fail the second once.
    server
        .faults()
        .fail_after(1, 1, InjectedResponse::InternalError);
    upload.put_part(part.clone().into()).await.unwrap();
    upload.put_part(part.clone().into()).await.unwrap();
    upload.put_part("tail".into()).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(server.faults().injected(), 1);
    let stats = store.pool().unwrap().stats();
    assert_eq!(stats.retries, 1, "{stats:?}");
    let body = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len(), 2 * part.len() + 4);
}
