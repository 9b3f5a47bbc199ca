//! Shared rate limits per S3 prefix, measured: worker processes that write to one prefix as
//! fast as they can, with per-process limits (`s3_client::prefix::local_limiter`) and with
//! the limit shared on Redis (a `RedisRateLimiter` keyed by `s3_client::prefix::s3_prefix_key`
//! at S3's published rates); then one worker receiving
//! SlowDowns; then the latency a shared booking adds, with batching on and off; then Redis
//! calls per second at 10,000 tasks/s. Starts its own redis-server (needs `redis-server` on
//! PATH) and its own workers (this binary with `--worker`). Tasks are labelled as s3-client
//! labels its calls (`op=put`, `key=hot/<n>`) and do no I/O: what is measured is the limit.
//!
//! ```text
//! cargo run --release -p pool-redis --example shared_rate
//! cargo run --release -p pool-redis --example shared_rate -- --processes 4 --seconds 11
//! ```

#[path = "../tests/suite/support/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pool_core::policy::{Aimd, KeyedRatePolicy, RateLimit};
use pool_core::{
    ErrorClass, Executor, Metadata, Pool, Retryable, TaskInfo, TaskOptions, TokioExecutor,
};
use pool_redis::RedisRateLimiter;
use redis_server::RedisServer;
use s3_client::prefix::{s3_prefix_key, S3PrefixKey};

/// Buckets of the admission timeline.
const BUCKET: Duration = Duration::from_millis(100);
/// Tasks a worker keeps enqueued (parked ones hold no pool slot).
const OUTSTANDING: usize = 2_048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limits {
    Local,
    Shared { batching: bool },
}

/// What one worker process does.
#[derive(Debug, Clone)]
struct Job {
    url: String,
    limits: Limits,
    /// Unix ms at which every worker starts, so their timelines line up.
    start_unix_ms: u64,
    seconds: u64,
    /// From this many ms after the start, for 200 ms, one write in ten gets a SlowDown.
    slowdown_at_ms: Option<u64>,
}

impl Job {
    fn args(&self) -> Vec<String> {
        let limits = match self.limits {
            Limits::Local => "local",
            Limits::Shared { batching: true } => "shared",
            Limits::Shared { batching: false } => "unbatched",
        };
        vec![
            "--worker".into(),
            self.url.clone(),
            limits.into(),
            self.start_unix_ms.to_string(),
            self.seconds.to_string(),
            self.slowdown_at_ms
                .map_or_else(|| "-".to_owned(), |ms| ms.to_string()),
        ]
    }

    fn parse(args: &[String]) -> Self {
        Self {
            url: args[0].clone(),
            limits: match args[1].as_str() {
                "local" => Limits::Local,
                "shared" => Limits::Shared { batching: true },
                _ => Limits::Shared { batching: false },
            },
            start_unix_ms: args[2].parse().expect("start"),
            seconds: args[3].parse().expect("seconds"),
            slowdown_at_ms: args[4].parse().ok(),
        }
    }
}

#[derive(Debug)]
struct SlowDown;

impl Retryable for SlowDown {
    fn error_class(&self) -> ErrorClass {
        ErrorClass::Throttled
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// CPU time of this process so far (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name; 100 ticks/s.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn labels(n: u64) -> TaskOptions {
    TaskOptions::new().metadata(
        Metadata::new()
            .with("op", "put")
            .with("key", format!("hot/{n}")),
    )
}

/// The policy a worker runs under, and how to count its Redis calls.
async fn policy(
    job: &Job,
    executor: Arc<dyn Executor>,
) -> (
    Arc<dyn KeyedRatePolicy<S3PrefixKey>>,
    Option<RedisRateLimiter<S3PrefixKey>>,
) {
    match job.limits {
        Limits::Local => (
            Arc::new(
                s3_client::prefix::local_limiter(executor, 1)
                    .build()
                    .expect("local limits"),
            ),
            None,
        ),
        Limits::Shared { batching } => {
            let shared = RedisRateLimiter::builder(
                job.url.as_str(),
                "bench",
                |task: &TaskInfo| s3_prefix_key(task, 1),
                S3PrefixKey::published_limit,
            )
            .adaptive(Aimd::default())
            .batching(batching, Duration::from_millis(1))
            .executor(executor)
            .connect()
            .await
            .expect("connect");
            (Arc::new(shared.clone()), Some(shared))
        }
    }
}

/// Worker process: writes to one prefix as fast as the limit lets it; prints its timeline.
async fn worker(job: Job) {
    let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
    let (policy, shared) = policy(&job, Arc::clone(&executor)).await;
    let pool = Pool::builder()
        .concurrency(64)
        .retries(0)
        .admission_arc(Arc::clone(&policy) as Arc<dyn pool_core::Admission>)
        .build()
        .expect("pool");
    let buckets: Arc<Vec<AtomicU64>> = Arc::new(
        (0..(job.seconds * 1000 / BUCKET.as_millis() as u64 + 20))
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let wait = job.start_unix_ms.saturating_sub(unix_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let start = Instant::now();
    let (cpu_start, calls_start) = (cpu_time(), shared.as_ref().map_or(0, |s| s.status().calls));
    let end = start + Duration::from_secs(job.seconds);
    let slots = Arc::new(tokio::sync::Semaphore::new(OUTSTANDING));
    let mut n = 0u64;
    while Instant::now() < end {
        let permit = Arc::clone(&slots).acquire_owned().await.expect("semaphore");
        n += 1;
        let (buckets, slowdown) = (Arc::clone(&buckets), job.slowdown_at_ms);
        let handle = pool.enqueue(
            move || {
                let buckets = Arc::clone(&buckets);
                async move {
                    let at = start.elapsed();
                    let i = (at.as_millis() / BUCKET.as_millis()) as usize;
                    if let Some(bucket) = buckets.get(i) {
                        bucket.fetch_add(1, Ordering::Relaxed);
                    }
                    let slowing = slowdown
                        .is_some_and(|from| (from..from + 200).contains(&(at.as_millis() as u64)));
                    if slowing && fastrand::u8(0..10) == 0 {
                        return Err(SlowDown);
                    }
                    Ok(())
                }
            },
            labels(n),
        );
        tokio::spawn(async move {
            let _ = handle.await;
            drop(permit);
        });
    }
    let cpu = cpu_time().saturating_sub(cpu_start);
    let calls = shared.as_ref().map_or(0, |s| s.status().calls) - calls_start;
    let timeline: Vec<String> = buckets
        .iter()
        .map(|b| b.load(Ordering::Relaxed).to_string())
        .collect();
    println!(
        "REPORT cpu_ms={} calls={calls} buckets={}",
        cpu.as_millis(),
        timeline.join(",")
    );
    pool.stop_now();
}

struct Report {
    cpu_ms: u64,
    calls: u64,
    buckets: Vec<u64>,
}

fn run_workers(jobs: &[Job]) -> Vec<Report> {
    let exe = std::env::current_exe().expect("this binary");
    let children: Vec<_> = jobs
        .iter()
        .map(|job| {
            Command::new(&exe)
                .args(job.args())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    children
        .into_iter()
        .map(|mut child| {
            let stdout = child.stdout.take().expect("stdout");
            let line = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find(|line| line.starts_with("REPORT "))
                .expect("a REPORT line");
            let _ = child.wait();
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_owned()
            };
            Report {
                cpu_ms: field("cpu_ms").parse().unwrap_or(0),
                calls: field("calls").parse().unwrap_or(0),
                buckets: field("buckets")
                    .split(',')
                    .filter_map(|b| b.parse().ok())
                    .collect(),
            }
        })
        .collect()
}

/// Admissions per second over `[from, to)` of the timeline (whole buckets).
fn rate(buckets: &[u64], from: Duration, to: Duration) -> f64 {
    let (a, b) = (
        (from.as_millis() / BUCKET.as_millis()) as usize,
        (to.as_millis() / BUCKET.as_millis()) as usize,
    );
    let sum: u64 = buckets[a.min(buckets.len())..b.min(buckets.len())]
        .iter()
        .sum();
    sum as f64 / (to - from).as_secs_f64()
}

fn jobs(url: &str, limits: Limits, processes: usize, seconds: u64, slowdown: bool) -> Vec<Job> {
    let start_unix_ms = unix_ms() + 1_500;
    (0..processes)
        .map(|i| Job {
            url: url.to_owned(),
            limits,
            start_unix_ms,
            seconds,
            slowdown_at_ms: (slowdown && i == 0).then_some(seconds * 1000 / 2),
        })
        .collect()
}

/// Aggregate admitted rate, skipping the first second (the burst after a quiet spell).
fn aggregate(reports: &[Report], seconds: u64) -> (f64, Vec<f64>) {
    let window = |r: &Report| {
        rate(
            &r.buckets,
            Duration::from_secs(1),
            Duration::from_secs(seconds),
        )
    };
    let each: Vec<f64> = reports.iter().map(window).collect();
    (each.iter().sum(), each)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Time from enqueue to start of `samples` tasks run one after another, at about 1,000/s,
/// each on a key of its own (no key is over its rate: the cost of booking alone).
async fn admission_latency(pool: &Pool, samples: usize) -> (Duration, Duration) {
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples as u64 {
        let enqueued = Instant::now();
        let started = pool
            .enqueue(
                move || async move { Ok::<_, std::io::Error>(Instant::now()) },
                TaskOptions::new().metadata(Metadata::new().with("tenant", format!("t{}", n % 64))),
            )
            .await
            .expect("task");
        latencies.push(started - enqueued);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    latencies.sort();
    (percentile(&latencies, 0.5), percentile(&latencies, 0.99))
}

fn tenant(task: &TaskInfo) -> Option<String> {
    task.metadata.get("tenant").map(str::to_owned)
}

async fn latency_and_calls(url: &str) {
    println!("\n## Added latency per admission (1 process, 2,000 tasks one at a time, 64 keys far under their rate)");
    let plain = Pool::builder().concurrency(8).build().expect("pool");
    let (p50, p99) = admission_latency(&plain, 2_000).await;
    println!("pool alone:                  p50 {p50:>9.1?}  p99 {p99:>9.1?}");
    for batching in [true, false] {
        let limiter = RedisRateLimiter::builder(url, "latency", tenant, |_: &String| {
            RateLimit::new(100_000.0, 100).unwrap()
        })
        .batching(batching, Duration::from_millis(1))
        .connect()
        .await
        .expect("connect");
        let pool = Pool::builder()
            .concurrency(8)
            .admission(limiter.clone())
            .build()
            .expect("pool");
        let cpu = cpu_time();
        let (p50, p99) = admission_latency(&pool, 2_000).await;
        println!(
            "shared, batching {:>3}:        p50 {p50:>9.1?}  p99 {p99:>9.1?}  ({} calls, {:?} CPU)",
            if batching { "on" } else { "off" },
            limiter.status().calls,
            cpu_time().saturating_sub(cpu)
        );
    }

    println!("\n## Redis calls at 10,000 tasks/s (1 process, 5 s, 16 keys at 100,000/s each)");
    for batching in [true, false] {
        let limiter = RedisRateLimiter::builder(url, "calls", tenant, |_: &String| {
            RateLimit::new(100_000.0, 100).unwrap()
        })
        .batching(batching, Duration::from_millis(1))
        .connect()
        .await
        .expect("connect");
        let pool = Pool::builder()
            .concurrency(256)
            .admission(limiter.clone())
            .build()
            .expect("pool");
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let cpu = cpu_time();
        let mut n = 0u64;
        // 10 tasks every millisecond.
        while start.elapsed() < Duration::from_secs(5) {
            let due = (start.elapsed().as_millis() as u64 + 1) * 10;
            while n < due {
                n += 1;
                let done = Arc::clone(&done);
                let handle = pool.enqueue(
                    || async { Ok::<_, std::io::Error>(()) },
                    TaskOptions::new()
                        .metadata(Metadata::new().with("tenant", format!("t{}", n % 16))),
                );
                tokio::spawn(async move {
                    if handle.await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        pool.drain().await;
        let took = start.elapsed().as_secs_f64();
        let calls = limiter.status().calls;
        println!(
            "batching {:>3}: {:>8.0} tasks/s, {:>7.0} Redis calls/s ({:.3} per task), {:.2} s CPU",
            if batching { "on" } else { "off" },
            done.load(Ordering::Relaxed) as f64 / took,
            calls as f64 / took,
            calls as f64 / done.load(Ordering::Relaxed).max(1) as f64,
            cpu_time().saturating_sub(cpu).as_secs_f64()
        );
    }
}

fn parse_settings() -> (usize, u64) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Rates are taken over seconds 1..11: ten seconds after the first (the burst a quiet key
    // allows, and the workers' start).
    let (mut processes, mut seconds) = (4, 11);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--processes", Some(v)) => processes = v as usize,
            ("--seconds", Some(v)) => seconds = v.max(3),
            _ => panic!("usage: shared_rate [--processes N] [--seconds S]"),
        }
    }
    (processes, seconds)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.first().map(String::as_str) == Some("--worker") {
        runtime.block_on(worker(Job::parse(&args[1..])));
        return;
    }
    let (processes, seconds) = parse_settings();
    let server = RedisServer::start();
    let url = server.url();
    println!("# {processes} processes writing to one prefix (hot/) as fast as they can; S3's 3,500 writes/s per prefix; rates over seconds 1..{seconds}");
    for (name, limits) in [
        ("per-process limits (KeyedRateLimiter)", Limits::Local),
        (
            "shared limit on Redis, batching on",
            Limits::Shared { batching: true },
        ),
        (
            "shared limit on Redis, batching off",
            Limits::Shared { batching: false },
        ),
    ] {
        let reports = run_workers(&jobs(&url, limits, processes, seconds, false));
        let (total, each) = aggregate(&reports, seconds);
        let cpu: u64 = reports.iter().map(|r| r.cpu_ms).sum();
        let calls: u64 = reports.iter().map(|r| r.calls).sum();
        println!(
            "{name:<40} aggregate {total:>8.0}/s  per process {:?}  workers' CPU {:.1} s  Redis calls {:.0}/s",
            each.iter().map(|r| r.round() as u64).collect::<Vec<_>>(),
            cpu as f64 / 1000.0,
            calls as f64 / seconds as f64
        );
    }

    println!(
        "\n## One process receives SlowDowns (1 in 10 of its writes, for 200 ms from second {})",
        seconds / 2
    );
    let reports = run_workers(&jobs(
        &url,
        Limits::Shared { batching: true },
        processes,
        seconds,
        true,
    ));
    let at = Duration::from_millis(seconds * 1000 / 2);
    let others: Vec<u64> = (0..reports[1].buckets.len())
        .map(|i| {
            reports[1..]
                .iter()
                .map(|r| r.buckets.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    // Quarter seconds: a process descheduled on a loaded machine shows as an empty 100 ms
    // bucket and then a full one.
    let quarter = |from: Duration| rate(&others, from, from + Duration::from_millis(250));
    let before = rate(&others, at - Duration::from_secs(2), at);
    let after: Vec<u64> = (0..8)
        .map(|i| quarter(at + Duration::from_millis(250 * i)).round() as u64)
        .collect();
    println!(
        "the other {} processes: {before:.0}/s in the 2 s before; per 250 ms from the first SlowDown: {after:?}/s",
        processes - 1
    );
    let mine = rate(&reports[0].buckets, at - Duration::from_secs(2), at);
    println!(
        "the throttled process: {mine:.0}/s before, {:.0}/s in the second after",
        rate(&reports[0].buckets, at, at + Duration::from_secs(1))
    );
    println!(
        "all together: {:.0}/s in the 2 s before, {:.0}/s in the second after (a halving: {:.0})",
        before + mine,
        rate(&others, at, at + Duration::from_secs(1))
            + rate(&reports[0].buckets, at, at + Duration::from_secs(1)),
        (before + mine) / 2.0
    );
    let (total, _) = aggregate(&reports, seconds);
    println!("aggregate over seconds 1..{seconds}: {total:.0}/s");

    runtime.block_on(latency_and_calls(&url));
}
