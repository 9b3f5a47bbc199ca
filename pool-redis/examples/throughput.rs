//! Throughput of processes sharing a global limit, against one process with the same local
//! limit; then the latency a global permit adds; then the throughput of a pool's unrelated
//! work while its permit-needing tasks wait for a limit another process holds whole. Starts its own redis-server (needs
//! `redis-server` on PATH) and its own worker processes (this binary with `--worker`).
//!
//! ```text
//! cargo run --release -p pool-redis --example throughput
//! cargo run --release -p pool-redis --example throughput -- --processes 4 --concurrency 100 \
//!     --limit 100 --task-ms 5 --seconds 5
//! ```

#[path = "../tests/suite/support/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::{Pool, TaskOptions, Transient};
use pool_redis::RedisPermits;
use redis_server::RedisServer;

#[derive(Debug, Clone)]
struct Settings {
    processes: usize,
    concurrency: usize,
    limit: u64,
    task_ms: u64,
    seconds: u64,
    latency_samples: usize,
}

impl Settings {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut settings = Self {
            processes: 4,
            concurrency: 100,
            limit: 100,
            task_ms: 5,
            seconds: 5,
            latency_samples: 2_000,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || -> Result<u64, String> {
                value
                    .parse()
                    .map_err(|_| format!("{flag}: not a number: {value}"))
            };
            match flag.as_str() {
                "--processes" => settings.processes = number()? as usize,
                "--concurrency" => settings.concurrency = number()? as usize,
                "--limit" => settings.limit = number()?,
                "--task-ms" => settings.task_ms = number()?,
                "--seconds" => settings.seconds = number()?,
                "--latency-samples" => settings.latency_samples = number()? as usize,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(settings)
    }
}

/// Keeps `pool` fed with `task_ms` tasks for `window`; returns how many finished inside it.
async fn run_for(pool: &Pool, concurrency: usize, task_ms: u64, window: Duration) -> u64 {
    run_beside(pool, concurrency, task_ms, window, 0).await
}

/// [`run_for`] beside `waiting_aside` tasks that wait all along (not fed, not counted).
async fn run_beside(
    pool: &Pool,
    concurrency: usize,
    task_ms: u64,
    window: Duration,
    waiting_aside: usize,
) -> u64 {
    let finished = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < deadline {
        // Waiting tasks: queued, or parked for a global permit.
        let stats = pool.stats();
        if stats.queued + stats.deferred < 2 * concurrency + waiting_aside {
            for _ in 0..concurrency {
                let finished = Arc::clone(&finished);
                drop(pool.enqueue(
                    move || {
                        let finished = Arc::clone(&finished);
                        async move {
                            tokio::time::sleep(Duration::from_millis(task_ms)).await;
                            if tokio::time::Instant::now() <= deadline {
                                finished.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok::<_, Transient<std::io::Error>>(())
                        }
                    },
                    TaskOptions::new(),
                ));
            }
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    pool.stop_now();
    finished.load(Ordering::Relaxed)
}

/// Child process: connect, say READY, wait for GO, run the window, report DONE.
async fn worker(url: &str, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let permits = RedisPermits::builder(url, "throughput", settings.limit)
        .connect()
        .await?;
    let pool = Pool::builder()
        .concurrency(settings.concurrency)
        .no_pressure_rule()
        .admission(permits.clone())
        .build()?;
    println!("READY");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    let window = Duration::from_secs(settings.seconds);
    let finished = run_for(&pool, settings.concurrency, settings.task_ms, window).await;
    pool.drain().await;
    permits.flush().await;
    println!("DONE {finished}");
    Ok(())
}

/// Script calls (EVALSHA + EVAL) the server has run so far, from `INFO commandstats`.
async fn script_calls(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<u64, Box<dyn std::error::Error>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(info
        .lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "mean {:>6.1} µs  p50 {:>6.1} µs  p99 {:>6.1} µs",
        mean.as_secs_f64() * 1e6,
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    )
}

/// Sequential single tasks (C = 1, 0 ms): the latency a global permit adds to each task.
async fn task_latency(pool: &Pool, samples: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        pool.enqueue(
            || async { Ok::<_, Transient<std::io::Error>>(()) },
            TaskOptions::new(),
        )
        .await
        .expect("task");
        latencies.push(started.elapsed());
    }
    latencies
}

async fn parent(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let server = RedisServer::start();
    let url = server.url();
    let window = Duration::from_secs(settings.seconds);
    println!(
        "{} s windows, {} ms tasks, redis-server on {url}",
        settings.seconds, settings.task_ms
    );

    let local = Pool::builder()
        .concurrency(settings.concurrency)
        .no_pressure_rule()
        .build()?;
    let baseline = run_for(&local, settings.concurrency, settings.task_ms, window).await;
    local.drain().await;
    let baseline_rate = baseline as f64 / window.as_secs_f64();
    println!(
        "1 process, local limit {:>4}:                     {baseline_rate:>9.0} tasks/s",
        settings.concurrency
    );

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..settings.processes {
        let mut child = Command::new(&exe)
            .arg("--worker")
            .arg(&url)
            .args(["--concurrency", &settings.concurrency.to_string()])
            .args(["--limit", &settings.limit.to_string()])
            .args(["--task-ms", &settings.task_ms.to_string()])
            .args(["--seconds", &settings.seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = lines.next().transpose()?.unwrap_or_default();
        if ready != "READY" {
            return Err(format!("worker said {ready:?}").into());
        }
        children.push((child, lines));
    }
    let mut conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let calls_before = script_calls(&mut conn).await?;
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().expect("piped"), "GO")?;
    }
    // Sample the lease set while they run: it must never exceed the limit.
    let (mut highest, mut samples) = (0u64, 0u64);
    let sampling_until = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < sampling_until {
        let held: u64 = redis::cmd("ZCARD")
            .arg("s3pool:{throughput}:holders")
            .query_async(&mut conn)
            .await?;
        highest = highest.max(held);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut per_process = Vec::new();
    for (mut child, mut lines) in children {
        let done = lines.next().transpose()?.unwrap_or_default();
        per_process.push(
            done.strip_prefix("DONE ")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| format!("worker said {done:?}"))?,
        );
        child.wait()?;
    }
    let total: u64 = per_process.iter().sum();
    let calls = script_calls(&mut conn).await? - calls_before;
    let global_rate = total as f64 / window.as_secs_f64();
    println!(
        "{} processes x local {}, global limit {:>4}:     {global_rate:>9.0} tasks/s  ({:.1} % of one process)",
        settings.processes,
        settings.concurrency,
        settings.limit,
        100.0 * global_rate / baseline_rate
    );
    println!("tasks per process (fairness): {per_process:?}");
    println!(
        "script calls to Redis: {calls} ({:.0}/s, {:.3} per task)",
        calls as f64 / window.as_secs_f64(),
        calls as f64 / total.max(1) as f64
    );
    println!(
        "leases held (Redis ZCARD, {samples} samples): highest {highest} (limit {})",
        settings.limit
    );
    if highest > settings.limit {
        return Err(format!("global limit exceeded: {highest} > {}", settings.limit).into());
    }

    // Latency, uncontended, one process.
    let permits = RedisPermits::builder(url.as_str(), "latency", 1_000_000)
        .connect()
        .await?;
    let n = settings.latency_samples;
    let mut ping = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        ping.push(started.elapsed());
    }
    let (mut acquire, mut release) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let started = Instant::now();
        let lease = permits.lease().await?;
        acquire.push(started.elapsed());
        let started = Instant::now();
        drop(lease);
        permits.flush().await;
        release.push(started.elapsed());
    }
    println!("Redis PING round trip:                 {}", summary(ping));
    println!(
        "acquire (lease):                       {}",
        summary(acquire)
    );
    println!(
        "release (drop + flush to Redis):       {}",
        summary(release)
    );
    let plain = Pool::builder().concurrency(1).build()?;
    let global = Pool::builder()
        .concurrency(1)
        .admission(permits.clone())
        .build()?;
    println!(
        "pool task, 0 ms, local only:           {}",
        summary(task_latency(&plain, n).await)
    );
    println!(
        "pool task, 0 ms, with global permit:   {}",
        summary(task_latency(&global, n).await)
    );

    // Unrelated work beside tasks waiting for a saturated global limit: another process holds
    // the whole limit; 10 × concurrency tasks of this pool need a permit and wait parked.
    let other = RedisPermits::builder(url.as_str(), "saturated", 1)
        .connect()
        .await?;
    let held = other.lease().await?;
    let permits = RedisPermits::builder(url.as_str(), "saturated", 1)
        .applies_to(|task| task.metadata.get("global").is_some())
        .connect()
        .await?;
    let pool = Pool::builder()
        .concurrency(settings.concurrency)
        .no_pressure_rule()
        .admission(permits.clone())
        .build()?;
    let waiting = 10 * settings.concurrency;
    let needing_permits: Vec<_> = (0..waiting)
        .map(|_| {
            pool.enqueue(
                || async { Ok::<_, Transient<std::io::Error>>(()) },
                TaskOptions::new().metadata(pool_core::Metadata::new().with("global", "yes")),
            )
        })
        .collect();
    let unrelated = run_beside(
        &pool,
        settings.concurrency,
        settings.task_ms,
        window,
        waiting,
    )
    .await;
    let unrelated_rate = unrelated as f64 / window.as_secs_f64();
    println!(
        "unrelated work beside {waiting} tasks waiting for a saturated limit: \
         {unrelated_rate:>9.0} tasks/s  ({:.1} % of one process with no global limit)",
        100.0 * unrelated_rate / baseline_rate
    );
    drop(held);
    drop(needing_permits);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("--worker") {
        let url = args.get(1).ok_or("--worker needs a URL")?.clone();
        let settings = Settings::parse(&args[2..])?;
        return runtime.block_on(worker(&url, &settings));
    }
    let settings = Settings::parse(&args)?;
    runtime.block_on(parent(settings))
}
