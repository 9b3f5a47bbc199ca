//! 2,000 PUTs of 4 KB at concurrency 32 over the in-process loopback S3 server: through
//! `S3Client` (its pool at concurrency 32, all calls submitted at once) against a bare
//! `buffer_unordered(32)` over the same `AmazonS3` store. Prints throughput and p99 per round
//! and the client/baseline ratios.
//!
//! ```text
//! cargo run --release -p s3-client --features testing --example put_bench [-- OPS CONCURRENCY ROUNDS]
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pool_core::{Event, Observer};
use s3_client::testing::S3TestServer;
use s3_client::S3Client;

const BODY: usize = 4 * 1024;

/// Collects the execution time of every attempt the pool ran.
#[derive(Debug, Default, Clone)]
struct AttemptLatencies(Arc<Mutex<Vec<Duration>>>);

impl Observer for AttemptLatencies {
    fn on_event(&self, event: &Event) {
        if let Event::AttemptFinished { latency, .. } = event {
            self.0.lock().unwrap().push(*latency);
        }
    }
}

impl AttemptLatencies {
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug, Clone, Copy)]
struct Round {
    ops_per_sec: f64,
    p99: Duration,
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    let index = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
    latencies.get(index).copied().unwrap_or_default()
}

async fn baseline(
    store: &Arc<dyn ObjectStore>,
    round: usize,
    ops: usize,
    concurrency: usize,
) -> Round {
    let payload = PutPayload::from(vec![7u8; BODY]);
    let started = Instant::now();
    let latencies: Vec<Duration> = stream::iter(0..ops)
        .map(|i| {
            let (store, payload) = (Arc::clone(store), payload.clone());
            async move {
                let began = Instant::now();
                let path = Path::from(format!("baseline/{round}/{i}"));
                store.put(&path, payload).await.expect("baseline put");
                began.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    Round {
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p99: p99(latencies),
    }
}

async fn through_client(
    client: &S3Client,
    attempts: &AttemptLatencies,
    round: usize,
    ops: usize,
) -> (Round, Duration) {
    attempts.take();
    let payload = PutPayload::from(vec![7u8; BODY]);
    let started = Instant::now();
    let calls = (0..ops).map(|i| {
        let call = client.put(&Path::from(format!("client/{round}/{i}")), payload.clone());
        async move {
            let began = Instant::now();
            call.await.expect("client put");
            began.elapsed()
        }
    });
    let end_to_end = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let round = Round {
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p99: p99(attempts.take()),
    };
    (round, p99(end_to_end))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let ops = args.next().unwrap_or(2_000);
    let concurrency = args.next().unwrap_or(32);
    let rounds = args.next().unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let server = S3TestServer::start().await.expect("S3 test server");
        let store = server.store().expect("store");
        let attempts = AttemptLatencies::default();
        let client = S3Client::builder_arc(Arc::clone(&store))
            .concurrency(concurrency)
            .observer(attempts.clone())
            .build()
            .expect("client");

        // Warm up connections and the server's directories on both paths.
        baseline(&store, usize::MAX, 200, concurrency).await;
        through_client(&client, &attempts, usize::MAX, 200).await;

        println!("{ops} PUTs of {BODY} B at concurrency {concurrency}, {rounds} rounds (alternating)");
        let (mut throughput_ratios, mut p99_ratios) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let base = baseline(&store, round, ops, concurrency).await;
            let (pooled, end_to_end_p99) = through_client(&client, &attempts, round, ops).await;
            println!(
                "round {round}: buffer_unordered {:>7.0} ops/s p99 {:>6.2} ms | S3Client {:>7.0} ops/s \
                 p99 {:>6.2} ms (attempt), {:>7.2} ms (enqueue to result)",
                base.ops_per_sec,
                base.p99.as_secs_f64() * 1e3,
                pooled.ops_per_sec,
                pooled.p99.as_secs_f64() * 1e3,
                end_to_end_p99.as_secs_f64() * 1e3,
            );
            throughput_ratios.push(pooled.ops_per_sec / base.ops_per_sec);
            p99_ratios.push(pooled.p99.as_secs_f64() / base.p99.as_secs_f64());
        }
        println!(
            "median ratio S3Client / buffer_unordered: throughput {:.3}x, p99 latency {:.3}x",
            median(throughput_ratios),
            median(p99_ratios)
        );
        println!("pool: {:?}", client.stats().expect("pool stats"));
    });
}
