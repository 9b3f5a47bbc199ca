//! Reads whose slot covers the body: the limit bounds the bodies open at once, a broken body
//! is resumed from its last byte (a retry of the read), and the bytes are checked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use pool_core::Pool;
use s3_client::testing::S3TestServer;
use s3_client::{CallOptions, IntegrityError, PooledStore, S3Client};

use crate::support::get_hook::{GetHook, Hooked};
use crate::support::random_bytes;

fn pool(concurrency: usize) -> Pool {
    Pool::builder()
        .concurrency(concurrency)
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap()
}

/// Waits (bounded) until the pool has `queued` tasks waiting.
async fn until_queued(pool: &Pool, queued: usize) {
    for _ in 0..2_000 {
        if pool.stats().queued == queued {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the pool never had {queued} queued: {:?}", pool.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_get_holds_its_slot_until_the_body_is_dropped() {
    let store = Arc::new(PooledStore::new(InMemory::new(), pool(2)));
    let pool = store.pool().unwrap().clone();
    for name in ["a", "b", "c"] {
        store.put(&Path::from(name), "body".into()).await.unwrap();
    }
    let first = store.get(&Path::from("a")).await.unwrap();
    let second = store.get(&Path::from("b")).await.unwrap();
    assert_eq!(pool.stats().active, 2, "two bodies open, two slots held");
    let third = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.get(&Path::from("c")).await.unwrap().bytes().await }
    });
    until_queued(&pool, 1).await;
    assert!(!third.is_finished());
    // Reading a body to its end frees its slot; dropping one does too.
    assert_eq!(&first.bytes().await.unwrap()[..], b"body");
    assert_eq!(&third.await.unwrap().unwrap()[..], b"body");
    drop(second);
    pool.drain().await;
    assert_eq!(pool.stats().active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_slot_at_response_lets_bodies_stream_outside_the_limit() {
    let store = PooledStore::new(InMemory::new(), pool(1));
    store.put(&Path::from("a"), "body".into()).await.unwrap();
    let options = || {
        GetOptions::new().with_extensions({
            let mut extensions = object_store::Extensions::new();
            extensions.insert(CallOptions::new().release_slot_at_response());
            extensions
        })
    };
    let path = Path::from("a");
    let bodies = futures::future::try_join_all((0..3).map(|_| store.get_opts(&path, options())))
        .await
        .unwrap();
    assert_eq!(bodies.len(), 3);
    assert_eq!(store.pool().unwrap().stats().active, 0);
}

/// Many readers on real threads: the bodies open at once never exceed the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pooled_get_never_has_more_bodies_open_than_the_limit() {
    const LIMIT: usize = 3;
    let server = S3TestServer::start().await.unwrap();
    let store = Arc::new(PooledStore::new(server.store().unwrap(), pool(LIMIT)));
    let body = random_bytes(5, 256 * 1024);
    for i in 0..8 {
        store
            .put(&Path::from(format!("o{i}")), body.clone().into())
            .await
            .unwrap();
    }
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let readers = (0..40).map(|i| {
        let (store, open, most, body) = (
            Arc::clone(&store),
            Arc::clone(&open),
            Arc::clone(&most),
            body.clone(),
        );
        tokio::spawn(async move {
            let result = store.get(&Path::from(format!("o{}", i % 8))).await.unwrap();
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let mut stream = result.into_stream();
            let mut read = Vec::new();
            while let Some(chunk) = stream.next().await {
                read.extend_from_slice(&chunk.unwrap());
                tokio::task::yield_now().await;
            }
            // Counted closed before the stream is dropped: the slot is still held here.
            open.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            assert!(read == body);
        })
    });
    for reader in futures::future::join_all(readers).await {
        reader.unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=LIMIT).contains(&most), "{most} bodies open at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_body_is_resumed_from_its_last_byte_as_a_retry() {
    let server = S3TestServer::start().await.unwrap();
    let store = PooledStore::new(server.store().unwrap(), pool(4));
    let path = Path::from("big");
    let body = random_bytes(6, 2 * 1024 * 1024);
    store.put(&path, body.clone().into()).await.unwrap();
    let before = server.faults().bytes_sent();
    server.faults().cut_bodies(1, 300_000);
    let read = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert!(read == body, "the resumed body differs");
    let stats = store.pool().unwrap().stats();
    assert_eq!(stats.retries, 1, "{stats:?}");
    // The resume asked for the rest only: at most the cut-off part was sent twice.
    let sent = server.faults().bytes_sent() - before;
    assert!(
        sent >= body.len() as u64 && sent <= body.len() as u64 + 300_000,
        "{sent} bytes sent for {}",
        body.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_client_streams_resume_and_hold_their_slot() {
    let server = S3TestServer::start().await.unwrap();
    let client = S3Client::builder_arc(server.store().unwrap())
        .concurrency(1)
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    let path = Path::from("streamed");
    let body = random_bytes(7, 1024 * 1024 + 3);
    client.put(&path, body.clone()).await.unwrap();
    server.faults().cut_bodies(2, 64 * 1024);
    let stream = client.get_stream(&path).await.unwrap();
    assert_eq!(stream.meta.size, body.len() as u64);
    // The task reads ahead into a small channel: on a loaded machine it may already have hit
    // the first cut and be waiting out its retry delay, slot released, before this line.
    let stats = client.stats().unwrap();
    assert_eq!(stats.active + stats.retrying, 1, "{stats:?}");
    let read = stream.bytes().await.unwrap();
    assert!(read == body);
    client.drain().await;
    let stats = client.stats().unwrap();
    assert_eq!(stats.retries, 2, "{stats:?}");
    assert_eq!(stats.active, 0);
}

/// Bodies that are not what their metadata says: every GET of `short` loses its last byte,
/// and every GET of `corrupt` flips one (its ETag stays the MD5 of the truth).
#[derive(Debug)]
struct Corrupting;

#[async_trait::async_trait]
impl GetHook for Corrupting {
    async fn get(
        &self,
        store: &InMemory,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let mut result = store.get_opts(location, options).await?;
        let mut bytes = result.bytes_ref().await;
        match location.as_ref() {
            "short" => bytes.truncate(bytes.len() - 1),
            _ => bytes[0] ^= 1,
        }
        let md5 = "\"5d41402abc4b2a76b9719d911017c592\""; // MD5("hello")
        result.meta.e_tag = Some(md5.to_owned());
        result.payload = object_store::GetResultPayload::Stream(
            futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed(),
        );
        Ok(result)
    }
}

trait BytesRef {
    async fn bytes_ref(&mut self) -> Vec<u8>;
}

impl BytesRef for object_store::GetResult {
    async fn bytes_ref(&mut self) -> Vec<u8> {
        let payload = std::mem::replace(
            &mut self.payload,
            object_store::GetResultPayload::Stream(futures::stream::empty().boxed()),
        );
        let object_store::GetResultPayload::Stream(mut stream) = payload else {
            unreachable!("InMemory streams")
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        bytes
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_are_a_retryable_integrity_error() {
    let client = S3Client::builder(Hooked::new(Corrupting))
        .retries(2)
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    for name in ["short", "corrupt"] {
        client.put(&Path::from(name), "hello").await.unwrap();
        let err = client.get(&Path::from(name)).await.unwrap_err();
        let integrity = std::error::Error::source(err.store_error().unwrap())
            .and_then(|source| source.downcast_ref::<IntegrityError>())
            .unwrap_or_else(|| panic!("{name}: {err}"));
        match (name, integrity) {
            (
                "short",
                IntegrityError::Length {
                    expected: 5,
                    received: 4,
                    ..
                },
            ) => {}
            ("corrupt", IntegrityError::Checksum { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(err.error_class(), pool_core::ErrorClass::Retryable);
        assert!(
            matches!(
                err.task_error(),
                pool_core::TaskError::Failed { attempts: 3, .. }
            ),
            "{err}"
        );
    }
}

/// Records which task polls each chunk of every GET's body.
#[derive(Debug, Default)]
struct PolledBy(Arc<std::sync::Mutex<Vec<Option<tokio::task::Id>>>>);

#[async_trait::async_trait]
impl GetHook for PolledBy {
    async fn get(
        &self,
        store: &InMemory,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let mut result = store.get_opts(location, options).await?;
        let polls = Arc::clone(&self.0);
        let object_store::GetResultPayload::Stream(body) = result.payload else {
            unreachable!("InMemory streams")
        };
        result.payload = object_store::GetResultPayload::Stream(
            body.inspect(move |_| polls.lock().unwrap().push(tokio::task::try_id()))
                .boxed(),
        );
        Ok(result)
    }
}

/// A held read's body is read on the task that reads the stream, as a bare `get`'s is: no
/// chunk is handed from the pool's task to the caller's. Except a body of at most 1 MiB
/// that `S3Client`'s bytes budget has room for: its attempt reads it whole, on the pool's
/// task, and hands it over once (the caller's thread is not woken a chunk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_body_is_read_on_the_callers_task_unless_it_is_small() {
    let store = Arc::new(Hooked::new(PolledBy::default()));
    let client = S3Client::builder_arc(Arc::clone(&store) as Arc<dyn ObjectStore>)
        .build()
        .unwrap();
    let pooled = PooledStore::new(Arc::clone(&store), pool(2));
    let (small, large) = (Path::from("small"), Path::from("large"));
    client
        .put(&small, random_bytes(8, 1024 * 1024))
        .await
        .unwrap();
    client
        .put(&large, random_bytes(9, 1024 * 1024 + 1))
        .await
        .unwrap();
    // One reader after the other: each one's chunks are recorded alone.
    let read_by_client = |path: &Path| {
        let (client, path) = (client.clone(), path.clone());
        tokio::spawn(async move {
            let mut body = client.get_stream(&path).await.unwrap();
            while let Some(chunk) = body.next().await {
                chunk.unwrap();
            }
            tokio::task::id()
        })
    };
    let reader = read_by_client(&large).await.unwrap();
    assert_polled_by(&store, |task| task == Some(reader));
    let reader = read_by_client(&small).await.unwrap();
    assert_polled_by(&store, |task| task.is_some() && task != Some(reader));
    // Without a bytes budget (`PooledStore`), small bodies stream as they come too.
    let pooled_reader = tokio::spawn(async move {
        let mut body = pooled.get(&small).await.unwrap().into_stream();
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
        tokio::task::id()
    });
    let reader = pooled_reader.await.unwrap();
    assert_polled_by(&store, |task| task == Some(reader));
}

/// Every chunk recorded since the last call was polled by a task that `expected` accepts.
fn assert_polled_by(store: &Hooked<PolledBy>, expected: impl Fn(Option<tokio::task::Id>) -> bool) {
    let polls = std::mem::take(&mut *store.hook.0.lock().unwrap());
    assert!(!polls.is_empty());
    assert!(
        polls.iter().all(|task| expected(*task)),
        "chunks polled by {polls:?}"
    );
}

/// The first GET's body stops after its first chunk and never goes on; later GETs answer
/// in full.
#[derive(Debug, Default)]
struct StallsOnce(AtomicUsize);

#[async_trait::async_trait]
impl GetHook for StallsOnce {
    async fn get(
        &self,
        store: &InMemory,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let mut result = store.get_opts(location, options).await?;
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            let object_store::GetResultPayload::Stream(mut body) = result.payload else {
                unreachable!("InMemory streams")
            };
            let first = body.next().await.unwrap()?;
            let half = first.slice(..first.len() / 2);
            result.payload = object_store::GetResultPayload::Stream(
                futures::stream::once(async move { Ok(half) })
                    .chain(futures::stream::pending())
                    .boxed(),
            );
        }
        Ok(result)
    }
}

/// An attempt that times out while the caller reads its body takes the body with it: the
/// caller's stream goes on with the next attempt's, from the last byte it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_whose_attempt_timed_out_is_resumed() {
    let store = Hooked::new(StallsOnce::default());
    let client = S3Client::builder(store)
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    let path = Path::from("stalls");
    let body = random_bytes(9, 300_000);
    client.put(&path, body.clone()).await.unwrap();
    let read = client
        .get_stream(&path)
        .timeout(Duration::from_millis(200))
        .await
        .unwrap()
        .bytes();
    let read = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the stream kept waiting on the body of an attempt that had timed out")
        .unwrap();
    assert!(read == body, "the resumed body differs");
    let stats = client.stats().unwrap();
    assert_eq!(stats.retries, 1, "{stats:?}");
}
