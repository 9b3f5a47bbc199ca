//! One conformance suite, one function per behaviour, generic over the thing tested:
//! [`S3Client`] and any `ObjectStore` (here [`PooledStore`]), each run over InMemory,
//! LocalFileSystem and the real loopback S3 server.

use std::collections::BTreeSet;
use std::ops::Range;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use s3_client::S3Client;

use super::random_bytes;

/// 20 MiB: a multipart upload of three parts (8 + 8 + 4 MiB).
pub const LARGE: usize = 20 * 1024 * 1024;

type Outcome<T> = Result<T, object_store::Error>;

/// What the suite needs from the thing tested.
pub trait Subject {
    async fn put(&self, path: &Path, body: Bytes) -> Outcome<()>;
    async fn put_if_absent(&self, path: &Path, body: Bytes) -> Outcome<()>;
    async fn put_large(&self, path: &Path, body: Bytes) -> Outcome<()>;
    async fn get(&self, path: &Path) -> Outcome<Bytes>;
    async fn get_range(&self, path: &Path, range: Range<u64>) -> Outcome<Bytes>;
    async fn head(&self, path: &Path) -> Outcome<ObjectMeta>;
    async fn delete(&self, path: &Path) -> Outcome<()>;
    async fn copy(&self, from: &Path, to: &Path) -> Outcome<()>;
    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Outcome<()>;
    async fn list(&self, prefix: &Path) -> Outcome<Vec<ObjectMeta>>;
    /// Deletes every path in bulk; returns how many were reported deleted.
    async fn delete_many(&self, paths: Vec<Path>) -> Outcome<usize>;
}

fn store_error(error: s3_client::ClientError) -> object_store::Error {
    let text = error.to_string();
    error
        .into_store_error()
        .unwrap_or_else(|| panic!("the pool, not the store, failed the call: {text}"))
}

impl Subject for S3Client {
    async fn put(&self, path: &Path, body: Bytes) -> Outcome<()> {
        S3Client::put(self, path, body)
            .await
            .map(drop)
            .map_err(store_error)
    }
    async fn put_if_absent(&self, path: &Path, body: Bytes) -> Outcome<()> {
        let options = PutOptions::from(PutMode::Create);
        self.put_opts(path, body, options)
            .await
            .map(drop)
            .map_err(store_error)
    }
    async fn put_large(&self, path: &Path, body: Bytes) -> Outcome<()> {
        // Above the default 16 MiB threshold: the client goes multipart by itself.
        assert!(body.len() >= 16 * 1024 * 1024);
        S3Client::put(self, path, body)
            .await
            .map(drop)
            .map_err(store_error)
    }
    async fn get(&self, path: &Path) -> Outcome<Bytes> {
        S3Client::get(self, path).await.map_err(store_error)
    }
    async fn get_range(&self, path: &Path, range: Range<u64>) -> Outcome<Bytes> {
        S3Client::get_range(self, path, range)
            .await
            .map_err(store_error)
    }
    async fn head(&self, path: &Path) -> Outcome<ObjectMeta> {
        S3Client::head(self, path).await.map_err(store_error)
    }
    async fn delete(&self, path: &Path) -> Outcome<()> {
        S3Client::delete(self, path).await.map_err(store_error)
    }
    async fn copy(&self, from: &Path, to: &Path) -> Outcome<()> {
        S3Client::copy(self, from, to).await.map_err(store_error)
    }
    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Outcome<()> {
        S3Client::copy_if_not_exists(self, from, to)
            .await
            .map_err(store_error)
    }
    async fn list(&self, prefix: &Path) -> Outcome<Vec<ObjectMeta>> {
        S3Client::list(self, Some(prefix))
            .map_err(store_error)
            .try_collect()
            .await
    }
    async fn delete_many(&self, paths: Vec<Path>) -> Outcome<usize> {
        S3Client::delete_many(self, paths)
            .await
            .map(|deleted| deleted.len())
            .map_err(store_error)
    }
}

/// Any `ObjectStore`, through object_store's own API.
pub struct Store<S>(pub S);

impl<S: ObjectStore> Subject for Store<S> {
    async fn put(&self, path: &Path, body: Bytes) -> Outcome<()> {
        self.0.put(path, PutPayload::from(body)).await.map(drop)
    }
    async fn put_if_absent(&self, path: &Path, body: Bytes) -> Outcome<()> {
        let options = PutOptions::from(PutMode::Create);
        self.0.put_opts(path, body.into(), options).await.map(drop)
    }
    async fn put_large(&self, path: &Path, body: Bytes) -> Outcome<()> {
        let upload = self.0.put_multipart(path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
        writer.put(body);
        writer.finish().await.map(drop)
    }
    async fn get(&self, path: &Path) -> Outcome<Bytes> {
        self.0.get(path).await?.bytes().await
    }
    async fn get_range(&self, path: &Path, range: Range<u64>) -> Outcome<Bytes> {
        self.0.get_range(path, range).await
    }
    async fn head(&self, path: &Path) -> Outcome<ObjectMeta> {
        self.0.head(path).await
    }
    async fn delete(&self, path: &Path) -> Outcome<()> {
        self.0.delete(path).await
    }
    async fn copy(&self, from: &Path, to: &Path) -> Outcome<()> {
        self.0.copy(from, to).await
    }
    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Outcome<()> {
        self.0.copy_if_not_exists(from, to).await
    }
    async fn list(&self, prefix: &Path) -> Outcome<Vec<ObjectMeta>> {
        self.0.list(Some(prefix)).try_collect().await
    }
    async fn delete_many(&self, paths: Vec<Path>) -> Outcome<usize> {
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let deleted: Vec<Path> = self.0.delete_stream(locations).try_collect().await?;
        Ok(deleted.len())
    }
}

fn key(prefix: &str, name: &str) -> Path {
    Path::parse(format!("{prefix}/{name}")).unwrap()
}

pub async fn round_trip_is_byte_identical(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "round-trip.bin");
    let body = random_bytes(1, 64 * 1024 + 7);
    subject.put(&path, body.clone()).await.unwrap();
    assert_eq!(subject.get(&path).await.unwrap(), body);
    assert_eq!(subject.head(&path).await.unwrap().size, body.len() as u64);
}

pub async fn overwrite_replaces_the_body(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "overwrite");
    subject
        .put(&path, Bytes::from_static(b"first"))
        .await
        .unwrap();
    subject
        .put(&path, Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(&subject.get(&path).await.unwrap()[..], b"second");
}

pub async fn range_reads_return_the_slice(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "range.bin");
    let body = random_bytes(2, 10_000);
    subject.put(&path, body.clone()).await.unwrap();
    assert_eq!(
        subject.get_range(&path, 100..1_100).await.unwrap(),
        body.slice(100..1_100)
    );
    assert_eq!(
        subject.get_range(&path, 9_990..10_000).await.unwrap(),
        body.slice(9_990..)
    );
}

pub async fn empty_body_round_trips(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "empty");
    subject.put(&path, Bytes::new()).await.unwrap();
    assert!(subject.get(&path).await.unwrap().is_empty());
    assert_eq!(subject.head(&path).await.unwrap().size, 0);
}

pub async fn non_ascii_keys_round_trip(subject: &impl Subject, prefix: &str) {
    let names = [
        "ünïcödé.txt",
        "日本語/ファイル",
        "ключ с пробелами",
        "emoji-😀",
    ];
    for (i, name) in names.iter().enumerate() {
        let path = key(prefix, name);
        let body = random_bytes(10 + i as u64, 100);
        subject.put(&path, body.clone()).await.unwrap();
        assert_eq!(subject.get(&path).await.unwrap(), body, "{name}");
    }
    let listed: BTreeSet<String> = subject
        .list(&Path::parse(prefix).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|meta| meta.location.to_string())
        .collect();
    let expected: BTreeSet<String> = names.iter().map(|n| format!("{prefix}/{n}")).collect();
    assert_eq!(listed, expected);
}

pub async fn list_returns_exactly_the_prefix(subject: &impl Subject, prefix: &str) {
    for name in ["a/1", "a/2", "a/deep/3", "b/4"] {
        subject
            .put(&key(prefix, name), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let mut listed: Vec<String> = subject
        .list(&key(prefix, "a"))
        .await
        .unwrap()
        .into_iter()
        .map(|meta| meta.location.to_string())
        .collect();
    listed.sort();
    let expected: Vec<String> = ["a/1", "a/2", "a/deep/3"]
        .iter()
        .map(|n| format!("{prefix}/{n}"))
        .collect();
    assert_eq!(listed, expected);
    assert!(subject.list(&key(prefix, "none")).await.unwrap().is_empty());
}

pub async fn copy_duplicates_the_object(subject: &impl Subject, prefix: &str) {
    let (from, to) = (key(prefix, "copy-from"), key(prefix, "copy-to"));
    let body = random_bytes(3, 4096);
    subject.put(&from, body.clone()).await.unwrap();
    subject.copy(&from, &to).await.unwrap();
    assert_eq!(subject.get(&to).await.unwrap(), body);
    assert_eq!(subject.get(&from).await.unwrap(), body);
}

pub async fn copy_if_not_exists_refuses_an_existing_target(subject: &impl Subject, prefix: &str) {
    let (from, to) = (key(prefix, "source"), key(prefix, "target"));
    subject
        .put(&from, Bytes::from_static(b"new"))
        .await
        .unwrap();
    subject
        .copy_if_not_exists(&from, &to)
        .await
        .expect("the target does not exist yet");
    assert_eq!(&subject.get(&to).await.unwrap()[..], b"new");
    subject.put(&to, Bytes::from_static(b"kept")).await.unwrap();
    let err = subject.copy_if_not_exists(&from, &to).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(s3_client::classify(&err), pool_core::ErrorClass::Fatal);
    assert_eq!(&subject.get(&to).await.unwrap()[..], b"kept");
}

pub async fn delete_removes_the_object(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "to-delete");
    subject
        .put(&path, Bytes::from_static(b"bye"))
        .await
        .unwrap();
    subject.delete(&path).await.unwrap();
    let err = subject.head(&path).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
}

pub async fn bulk_delete_removes_every_path(subject: &impl Subject, prefix: &str) {
    let paths: Vec<Path> = (0..25)
        .map(|i| key(prefix, &format!("bulk-{i:02}")))
        .collect();
    for path in &paths {
        subject.put(path, Bytes::from_static(b"x")).await.unwrap();
    }
    assert_eq!(
        subject.delete_many(paths.clone()).await.unwrap(),
        paths.len()
    );
    assert!(subject
        .list(&Path::parse(prefix).unwrap())
        .await
        .unwrap()
        .is_empty());
}

pub async fn missing_objects_are_not_found(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "never-written");
    let err = subject.get(&path).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotFound { .. }),
        "get: {err}"
    );
    assert_eq!(s3_client::classify(&err), pool_core::ErrorClass::Fatal);
    let err = subject.head(&path).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotFound { .. }),
        "head: {err}"
    );
}

pub async fn create_if_absent_refuses_an_existing_object(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "create-once");
    subject
        .put_if_absent(&path, Bytes::from_static(b"1"))
        .await
        .unwrap();
    let err = subject
        .put_if_absent(&path, Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(s3_client::classify(&err), pool_core::ErrorClass::Fatal);
    assert_eq!(&subject.get(&path).await.unwrap()[..], b"1");
}

pub async fn large_bodies_upload_as_multipart(subject: &impl Subject, prefix: &str) {
    let path = key(prefix, "large.bin");
    let body = random_bytes(4, LARGE + 12_345);
    subject.put_large(&path, body.clone()).await.unwrap();
    assert_eq!(subject.head(&path).await.unwrap().size, body.len() as u64);
    let read = subject.get(&path).await.unwrap();
    assert!(read == body, "large body differs after a round trip");
    let tail = subject
        .get_range(&path, (LARGE as u64 - 10)..(LARGE as u64 + 10))
        .await
        .unwrap();
    assert_eq!(tail, body.slice(LARGE - 10..LARGE + 10));
}

/// Every behaviour, each under its own prefix.
pub async fn run_all(subject: &impl Subject, prefix: &str) {
    round_trip_is_byte_identical(subject, &format!("{prefix}/rt")).await;
    overwrite_replaces_the_body(subject, &format!("{prefix}/ow")).await;
    range_reads_return_the_slice(subject, &format!("{prefix}/range")).await;
    empty_body_round_trips(subject, &format!("{prefix}/empty")).await;
    non_ascii_keys_round_trip(subject, &format!("{prefix}/utf8")).await;
    list_returns_exactly_the_prefix(subject, &format!("{prefix}/list")).await;
    copy_duplicates_the_object(subject, &format!("{prefix}/copy")).await;
    copy_if_not_exists_refuses_an_existing_target(subject, &format!("{prefix}/copy-once")).await;
    delete_removes_the_object(subject, &format!("{prefix}/delete")).await;
    bulk_delete_removes_every_path(subject, &format!("{prefix}/bulk")).await;
    missing_objects_are_not_found(subject, &format!("{prefix}/missing")).await;
    create_if_absent_refuses_an_existing_object(subject, &format!("{prefix}/create")).await;
    large_bodies_upload_as_multipart(subject, &format!("{prefix}/large")).await;
}
