//! 2,000 PUTs of 4 KB at concurrency 32 over the in-process loopback S3 server: through
//! `S3Client` (its pool at concurrency 32, all calls submitted at once) against a bare
//! `buffer_unordered(32)` over the same `AmazonS3` store. Prints throughput, p99 and CPU time
//! per call per round, and the client/baseline ratios (medians of the rounds). The two sides'
//! order alternates round by round (the second run of a round finds the first one's files
//! being written back, and the machine's load moves), so an odd round count favours neither
//! by more than one round.
//!
//! CPU time per call is measured twice: the whole process's user + system time over a round
//! (`getrusage`), and the client's own — the threads that are not the server's, from
//! `/proc/self/task/*/schedstat` (Linux). The server runs on a tokio runtime of its own (as a
//! real server runs in a process of its own), so the client's threads do nothing but the
//! client's work; `--shared-runtime` runs both on one runtime, as earlier versions did (the
//! client's share then cannot be told apart). On a shared machine CPU time moves far less
//! than wall time.
//!
//! ```text
//! cargo run --release -p s3-client --features testing --example put_bench [-- OPS CONCURRENCY ROUNDS] [--shared-runtime] [--only bare|s3client]
//! ```
//!
//! `--only` runs one side alone (every round, no ratios): a profiler (`perf record`,
//! `valgrind --tool=callgrind`) then sees that side's work and nothing else.

use std::collections::HashMap;
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

    /// It reads latencies only: the client then labels no call for it.
    fn reads_labels(&self) -> bool {
        false
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
    /// CPU time of the client's threads (all but the server's), µs; `None` where the
    /// threads' times cannot be read or the server shares the client's runtime.
    client_us: Option<f64>,
    /// System CPU time alone, µs (the loopback server's file and socket work is most of it).
    system_us: f64,
    /// Context switches (voluntary + involuntary).
    switches: f64,
}

/// Name prefix of the server runtime's threads (workers and blocking pool).
const SERVER_THREADS: &str = "bench-server";
/// Name prefix of the client runtime's threads.
const CLIENT_THREADS: &str = "bench-client";

/// The process's resource use so far (every thread): user and system time, context switches;
/// and each live thread's CPU time.
#[derive(Debug, Clone)]
struct Usage {
    user: Duration,
    system: Duration,
    switches: u64,
    threads: ThreadTimes,
}

/// CPU time of each live thread (ns, from `/proc/self/task/<tid>/schedstat`) and whether it
/// is a server thread; `None` where `/proc` cannot be read.
#[derive(Debug, Clone, Default)]
struct ThreadTimes(Option<HashMap<u32, (bool, u64)>>);

impl ThreadTimes {
    fn now() -> Self {
        let read = || -> Option<HashMap<u32, (bool, u64)>> {
            let mut threads = HashMap::new();
            for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                // A thread that ended since the directory was read is skipped.
                let (Ok(name), Ok(stat)) = (
                    std::fs::read_to_string(task.path().join("comm")),
                    std::fs::read_to_string(task.path().join("schedstat")),
                ) else {
                    continue;
                };
                let nanos = stat.split_whitespace().next()?.parse().ok()?;
                threads.insert(tid, (name.starts_with(SERVER_THREADS), nanos));
            }
            Some(threads)
        };
        ThreadTimes(read())
    }

    /// CPU time the client's threads (all but the server's) spent between `self` and `end`.
    /// A thread born since `self` counts from zero; a client thread that ended in between
    /// would be lost (the client runtime's workers live as long as the bench).
    fn client_since(&self, end: &ThreadTimes) -> Option<Duration> {
        let (start, end) = (self.0.as_ref()?, end.0.as_ref()?);
        let nanos = end
            .iter()
            .filter(|(_, (server, _))| !server)
            .map(|(tid, (_, nanos))| {
                nanos.saturating_sub(start.get(tid).map_or(0, |(_, before)| *before))
            })
            .sum();
        Some(Duration::from_nanos(nanos))
    }
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
                threads: ThreadTimes::now(),
            })
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// What was spent between `self` and `end`, per call of `calls`; the client's threads
    /// only if `split` (the server has threads of its own).
    fn per_call(&self, end: &Usage, calls: usize, split: bool) -> UsagePerCall {
        let micros = |d: Duration| d.as_secs_f64() * 1e6 / calls as f64;
        let user = end.user.saturating_sub(self.user);
        let system = end.system.saturating_sub(self.system);
        let client = split
            .then(|| self.threads.client_since(&end.threads))
            .flatten();
        UsagePerCall {
            cpu_us: micros(user + system),
            client_us: client.map(micros),
            system_us: micros(system),
            switches: end.switches.saturating_sub(self.switches) as f64 / calls as f64,
        }
    }
}

/// Wall time and resource use of one timed section.
struct Stopwatch {
    wall: Instant,
    usage: Option<Usage>,
    /// The server runs on threads of its own: the client's CPU can be told apart.
    split: bool,
}

impl Stopwatch {
    fn start(split: bool) -> Self {
        Stopwatch {
            usage: Usage::now(),
            wall: Instant::now(),
            split,
        }
    }

    /// The round's figures for `ops` calls whose latencies were `latencies`.
    fn round(&self, ops: usize, latencies: Vec<Duration>) -> Round {
        let elapsed = self.wall.elapsed();
        let usage = self
            .usage
            .as_ref()
            .zip(Usage::now())
            .map(|(start, end)| start.per_call(&end, ops, self.split));
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

/// Where the server runs, and so what the CPU figures can tell.
#[derive(Debug, Clone, Copy)]
struct Setting {
    ops: usize,
    concurrency: usize,
    /// The server has a runtime (threads) of its own.
    split: bool,
}

async fn baseline(store: &Arc<dyn ObjectStore>, round: usize, setting: Setting) -> Round {
    let payload = PutPayload::from(vec![7u8; BODY]);
    let stopwatch = Stopwatch::start(setting.split);
    let latencies: Vec<Duration> = stream::iter(0..setting.ops)
        .map(|i| {
            let (store, payload) = (Arc::clone(store), payload.clone());
            async move {
                let began = Instant::now();
                let path = Path::from(format!("baseline/{round}/{i}"));
                store.put(&path, payload).await.expect("baseline put");
                began.elapsed()
            }
        })
        .buffer_unordered(setting.concurrency)
        .collect()
        .await;
    stopwatch.round(setting.ops, latencies)
}

async fn through_client(
    client: &S3Client,
    attempts: &AttemptLatencies,
    round: usize,
    setting: Setting,
) -> (Round, Duration) {
    attempts.take();
    let payload = PutPayload::from(vec![7u8; BODY]);
    let stopwatch = Stopwatch::start(setting.split);
    let calls = (0..setting.ops).map(|i| {
        let call = client.put(&Path::from(format!("client/{round}/{i}")), payload.clone());
        async move {
            let began = Instant::now();
            call.await.expect("client put");
            began.elapsed()
        }
    });
    let end_to_end = futures::future::join_all(calls).await;
    let round = stopwatch.round(setting.ops, attempts.take());
    (round, p99(end_to_end))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU per call (the client's threads', the process's, of which system time) and context
/// switches per call, or `n/a`.
fn usage_text(usage: Option<UsagePerCall>) -> String {
    usage.map_or_else(
        || "n/a".to_owned(),
        |u| {
            let client = u
                .client_us
                .map_or_else(String::new, |c| format!("client {c:>5.1} µs/call, "));
            format!(
                "{client}process {:>5.1} µs/call (sys {:>5.1}), {:>4.1} switches/call",
                u.cpu_us, u.system_us, u.switches
            )
        },
    )
}

/// Per-round figures of both sides, for the medians.
#[derive(Debug, Default)]
struct Ratios {
    throughput: Vec<f64>,
    p99: Vec<f64>,
    /// Whole-process CPU per call: baseline, S3Client, baseline / S3Client.
    process: [Vec<f64>; 3],
    /// The client threads' CPU per call, the same three.
    client: [Vec<f64>; 3],
}

impl Ratios {
    fn add(&mut self, base: &Round, pooled: &Round) {
        self.throughput.push(pooled.ops_per_sec / base.ops_per_sec);
        self.p99
            .push(pooled.p99.as_secs_f64() / base.p99.as_secs_f64());
        let Some((base, pooled)) = base.usage.zip(pooled.usage) else {
            return;
        };
        // Above 1: the client spends less CPU per call than the baseline.
        let push = |into: &mut [Vec<f64>; 3], base: f64, pooled: f64| {
            into[0].push(base);
            into[1].push(pooled);
            into[2].push(base / pooled);
        };
        push(&mut self.process, base.cpu_us, pooled.cpu_us);
        if let (Some(b), Some(p)) = (base.client_us, pooled.client_us) {
            push(&mut self.client, b, p);
        }
    }

    fn print(self) {
        println!(
            "median ratio S3Client / buffer_unordered: throughput {:.3}x, p99 latency {:.3}x",
            median(self.throughput),
            median(self.p99)
        );
        for (what, [base, pooled, ratio]) in [
            ("client threads only", self.client),
            ("whole process, server included", self.process),
        ] {
            if !ratio.is_empty() {
                println!(
                    "median CPU per call ({what}): buffer_unordered {:.1} µs, S3Client {:.1} µs; \
                     baseline / S3Client {:.3}x",
                    median(base),
                    median(pooled),
                    median(ratio)
                );
            }
        }
    }
}

/// Which sides a run measures.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sides {
    Both,
    Bare,
    S3Client,
}

fn main() {
    let mut shared_runtime = false;
    let mut sides = Sides::Both;
    let mut numbers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--shared-runtime" => shared_runtime = true,
            "--only" => {
                sides = match args.next().as_deref() {
                    Some("bare") => Sides::Bare,
                    Some("s3client") => Sides::S3Client,
                    other => panic!("--only bare|s3client, not {other:?}"),
                }
            }
            number => numbers.push(number.parse::<usize>().expect("a number")),
        }
    }
    let mut numbers = numbers.into_iter();
    let setting = Setting {
        ops: numbers.next().unwrap_or(2_000),
        concurrency: numbers.next().unwrap_or(32),
        split: !shared_runtime,
    };
    let rounds = numbers.next().unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(CLIENT_THREADS)
        .build()
        .expect("tokio runtime");
    let server_runtime = (!shared_runtime).then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(SERVER_THREADS)
            .build()
            .expect("the server's tokio runtime")
    });
    let server = server_runtime
        .as_ref()
        .unwrap_or(&runtime)
        .block_on(S3TestServer::start())
        .expect("S3 test server");
    runtime.block_on(async move {
        let store = server.store().expect("store");
        let attempts = AttemptLatencies::default();
        let client = S3Client::builder_arc(Arc::clone(&store))
            .concurrency(setting.concurrency)
            .observer(attempts.clone())
            .build()
            .expect("client");

        // Warm up connections and the server's directories on both paths.
        let warm_up = Setting { ops: 200, ..setting };
        if sides != Sides::S3Client {
            baseline(&store, usize::MAX, warm_up).await;
        }
        if sides != Sides::Bare {
            through_client(&client, &attempts, usize::MAX, warm_up).await;
        }
        if sides != Sides::Both {
            for round in 0..rounds {
                let (name, round) = if sides == Sides::Bare {
                    ("buffer_unordered", baseline(&store, round, setting).await)
                } else {
                    let (round, _) = through_client(&client, &attempts, round, setting).await;
                    ("S3Client", round)
                };
                println!(
                    "{name}: {:>5.0} ops/s CPU {}",
                    round.ops_per_sec,
                    usage_text(round.usage)
                );
            }
            return;
        }

        let (ops, concurrency) = (setting.ops, setting.concurrency);
        let server_threads = if setting.split {
            "the server on threads of its own"
        } else {
            "the server on the client's runtime"
        };
        println!(
            "{ops} PUTs of {BODY} B at concurrency {concurrency}, {rounds} rounds (order \
             alternating), {server_threads}"
        );
        let mut ratios = Ratios::default();
        for round in 0..rounds {
            let (base, (pooled, end_to_end_p99)) = if round % 2 == 0 {
                let base = baseline(&store, round, setting).await;
                (base, through_client(&client, &attempts, round, setting).await)
            } else {
                let pooled = through_client(&client, &attempts, round, setting).await;
                (baseline(&store, round, setting).await, pooled)
            };
            let first = if round % 2 == 0 { "bare first" } else { "S3Client first" };
            println!(
                "round {round} ({first}): buffer_unordered {:>5.0} ops/s p99 {:>6.2} ms CPU {}\n    \
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
            ratios.add(&base, &pooled);
        }
        ratios.print();
        println!("pool: {:?}", client.stats().expect("pool stats"));
    });
}
