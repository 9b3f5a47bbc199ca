//! Calls and batches are futures: `join_all`, `tokio::spawn` and stream combinators take
//! them as they are.

use futures::future::{join_all, FusedFuture};
use futures::stream::{self, StreamExt};
use s3_client::{CallOptions, Path, S3Client};

fn is_future<F: std::future::Future + Send + 'static>(_: &F) {}

#[tokio::test(start_paused = true)]
async fn calls_go_to_join_all_spawn_and_buffer_unordered() {
    let client = S3Client::from_url("memory://").unwrap();

    let puts = (0..20).map(|i| client.put(&Path::from(format!("j/{i}")), "x").priority(i));
    assert!(join_all(puts).await.iter().all(Result::is_ok));

    let spawned = tokio::spawn(client.get(&Path::from("j/7")));
    assert_eq!(&spawned.await.unwrap().unwrap()[..], b"x");

    let sizes: Vec<u64> = stream::iter(0..20)
        .map(|i| client.head(&Path::from(format!("j/{i}"))))
        .buffer_unordered(4)
        .map(|meta| meta.unwrap().size)
        .collect()
        .await;
    assert_eq!(sizes, vec![1; 20]);

    let mut call = client.delete(&Path::from("j/0"));
    is_future(&call);
    assert!(!call.is_terminated());
    (&mut call).await.unwrap();
    assert!(call.is_terminated());
}

#[tokio::test(start_paused = true)]
async fn batches_are_futures_too() {
    let client = S3Client::from_url("memory://").unwrap();
    let items = (0..5).map(|i| (Path::from(format!("b/{i}")), "x".into()));
    let batch = client.put_batch(items, CallOptions::new());
    is_future(&batch);
    let spawned = tokio::spawn(batch);
    assert!(spawned.await.unwrap().all_succeeded());
}
