//! 2,000 PUTs of 4 KB at concurrency 32 over the in-process loopback S3 server: through
//! `S3Client` (its pool at concurrency 32, all calls submitted at once) against a bare
//! `buffer_unordered(32)` over the same `AmazonS3` store. Prints throughput, p99 and CPU time
//! per call per round, and the client/baseline ratios (medians of the rounds).
//!
//! CPU time is the whole process's user + system time over a round (`getrusage`), divided by
//! the calls: the in-process server's share is the same on both sides, so the difference is
//! the client's own cost per call. On a shared machine it moves far less than wall time.
//!
//! ```text
//! cargo run --release -p s3-client --features testing --example put_bench [-- OPS CONCURRENCY ROUNDS]
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pool_core::{Event, EventKind, Observer};
use s3_client::testing::S3TestServer;
use s3_client::S3Client;

const BODY: usize = 4 * 1024;

/// Collects the execution time of every attempt the pool ran.
#[derive(Debug, Default, Clone)]
struct AttemptLatencies(Arc<Mutex<Vec<Duration>>>);

impl Observer for AttemptLatencies {
    /// Only attempt ends: the pool builds no other event for this measuring device (the
    /// baseline has none), so the client's CPU per call is not charged for them.
    fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::AttemptFinished
    }

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
    /// What the process spent per call (`None` where it cannot be read).
    usage: Option<UsagePerCall>,
}

/// The process's resource use over a round, per call.
#[derive(Debug, Clone, Copy)]
struct UsagePerCall {
    /// User + system CPU time, µs.
    cpu_us: f64,
    /// System CPU time alone, µs (the loopback server's file and socket work is most of it).
    system_us: f64,
    /// Context switches (voluntary + involuntary).
    switches: f64,
}

/// The process's resource use so far (every thread): user and system time, context switches.
#[derive(Debug, Clone, Copy)]
struct Usage {
    user: Duration,
    system: Duration,
    switches: u64,
}

impl Usage {
    fn now() -> Option<Usage> {
        #[cfg(unix)]
        {
            use nix::sys::resource::{getrusage, UsageWho};
            use nix::sys::time::TimeValLike;
            let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
            let micros = |time: nix::sys::time::TimeVal| {
                u64::try_from(time.num_microseconds()).map(Duration::from_micros)
            };
            let switches =
                usage.voluntary_context_switches() + usage.involuntary_context_switches();
            Some(Usage {
                user: micros(usage.user_time()).ok()?,
                system: micros(usage.system_time()).ok()?,
                switches: u64::try_from(switches).ok()?,
            })
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// What was spent between `self` and `end`, per call of `calls`.
    fn per_call(self, end: Usage, calls: usize) -> UsagePerCall {
        let micros = |d: Duration| d.as_secs_f64() * 1e6 / calls as f64;
        let user = end.user.saturating_sub(self.user);
        let system = end.system.saturating_sub(self.system);
        UsagePerCall {
            cpu_us: micros(user + system),
            system_us: micros(system),
            switches: end.switches.saturating_sub(self.switches) as f64 / calls as f64,
        }
    }
}

/// Wall time and resource use of one timed section.
struct Stopwatch {
    wall: Instant,
    usage: Option<Usage>,
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch {
            usage: Usage::now(),
            wall: Instant::now(),
        }
    }

    /// The round's figures for `ops` calls whose latencies were `latencies`.
    fn round(&self, ops: usize, latencies: Vec<Duration>) -> Round {
        let elapsed = self.wall.elapsed();
        let usage = self
            .usage
            .zip(Usage::now())
            .map(|(start, end)| start.per_call(end, ops));
        Round {
            ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
            p99: p99(latencies),
            usage,
        }
    }
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
    let stopwatch = Stopwatch::start();
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
    stopwatch.round(ops, latencies)
}

async fn through_client(
    client: &S3Client,
    attempts: &AttemptLatencies,
    round: usize,
    ops: usize,
) -> (Round, Duration) {
    attempts.take();
    let payload = PutPayload::from(vec![7u8; BODY]);
    let stopwatch = Stopwatch::start();
    let calls = (0..ops).map(|i| {
        let call = client.put(&Path::from(format!("client/{round}/{i}")), payload.clone());
        async move {
            let began = Instant::now();
            call.await.expect("client put");
            began.elapsed()
        }
    });
    let end_to_end = futures::future::join_all(calls).await;
    let round = stopwatch.round(ops, attempts.take());
    (round, p99(end_to_end))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU per call (of which system time) and context switches per call, or `n/a`.
fn usage_text(usage: Option<UsagePerCall>) -> String {
    usage.map_or_else(
        || "n/a".to_owned(),
        |u| {
            format!(
                "{:>5.1} µs/call (sys {:>5.1}), {:>4.1} switches/call",
                u.cpu_us, u.system_us, u.switches
            )
        },
    )
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

        println!(
            "{ops} PUTs of {BODY} B at concurrency {concurrency}, {rounds} rounds (alternating)"
        );
        let (mut throughput_ratios, mut p99_ratios) = (Vec::new(), Vec::new());
        let (mut base_cpu, mut client_cpu, mut cpu_ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let base = baseline(&store, round, ops, concurrency).await;
            let (pooled, end_to_end_p99) = through_client(&client, &attempts, round, ops).await;
            println!(
                "round {round}: buffer_unordered {:>5.0} ops/s p99 {:>6.2} ms CPU {}\n         \
                 S3Client         {:>5.0} ops/s p99 {:>6.2} ms (attempt), {:>6.2} ms (enqueue to \
                 result) CPU {}",
                base.ops_per_sec,
                base.p99.as_secs_f64() * 1e3,
                usage_text(base.usage),
                pooled.ops_per_sec,
                pooled.p99.as_secs_f64() * 1e3,
                end_to_end_p99.as_secs_f64() * 1e3,
                usage_text(pooled.usage),
            );
            throughput_ratios.push(pooled.ops_per_sec / base.ops_per_sec);
            p99_ratios.push(pooled.p99.as_secs_f64() / base.p99.as_secs_f64());
            if let (Some(base), Some(pooled)) = (base.usage, pooled.usage) {
                let (base, pooled) = (base.cpu_us, pooled.cpu_us);
                base_cpu.push(base);
                client_cpu.push(pooled);
                // Above 1: the client spends less CPU per call than the baseline.
                cpu_ratios.push(base / pooled);
            }
        }
        println!(
            "median ratio S3Client / buffer_unordered: throughput {:.3}x, p99 latency {:.3}x",
            median(throughput_ratios),
            median(p99_ratios)
        );
        if !cpu_ratios.is_empty() {
            println!(
                "median CPU per call (whole process, server included): buffer_unordered {:.1} µs, \
                 S3Client {:.1} µs; baseline / S3Client {:.3}x",
                median(base_cpu),
                median(client_cpu),
                median(cpu_ratios)
            );
        }
        println!("pool: {:?}", client.stats().expect("pool stats"));
    });
}
