//! Rate limits per key shared through a real redis-server: several limiters (as several
//! processes would have) stay under one rate together, throttling in one slows all of them
//! and recovery is shared, batching books many moments per call, Redis lost under both fail
//! modes, and the limiter plugged into s3-client as its per-prefix limits.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::policy::{Aimd, KeyedRatePolicy, RateLimit};
use pool_core::{
    Admission, ErrorClass, Executor, Metadata, Pool, RejectionKind, Retryable, TaskError, TaskInfo,
    TaskOptions, TokioExecutor, Transient,
};
use pool_redis::{FailMode, RedisEndpoint, RedisRateLimiter};
use support::{plain_connection, wait_until, RedisServer};

fn tenant(task: &TaskInfo) -> Option<String> {
    task.metadata.get("tenant").map(str::to_owned)
}

async fn limiter(
    endpoint: impl Into<RedisEndpoint>,
    name: &str,
    per_second: f64,
    burst: u32,
    configure: impl FnOnce(
        pool_redis::RedisRateLimiterBuilder<String>,
    ) -> pool_redis::RedisRateLimiterBuilder<String>,
) -> RedisRateLimiter<String> {
    let builder = RedisRateLimiter::builder(endpoint, name, tenant, move |_key: &String| {
        RateLimit::new(per_second, burst).unwrap()
    })
    .io_timeout(Duration::from_millis(300));
    configure(builder).connect().await.expect("connect")
}

fn task_of(tenant: &str) -> TaskInfo {
    TaskInfo::new(pool_core::TaskId(u64::MAX))
        .with_metadata(Metadata::new().with("tenant", tenant.to_owned()))
}

fn labelled(tenant: &str) -> TaskOptions {
    TaskOptions::new().metadata(Metadata::new().with("tenant", tenant.to_owned()))
}

/// Runs `per_pool` tasks of tenant `a` through each of `pools`; returns when each started,
/// relative to the first start.
async fn admissions(pools: &[Pool], per_pool: usize) -> Vec<Duration> {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = pools
        .iter()
        .flat_map(|pool| {
            (0..per_pool).map(|_| {
                let starts = Arc::clone(&starts);
                pool.enqueue(
                    move || {
                        let starts = Arc::clone(&starts);
                        async move {
                            starts.lock().unwrap().push(tokio::time::Instant::now());
                            Ok::<_, Transient<&str>>(())
                        }
                    },
                    labelled("a"),
                )
            })
        })
        .collect();
    for handle in handles {
        tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("every task resolves")
            .expect("task");
    }
    let mut starts = starts.lock().unwrap().clone();
    starts.sort();
    starts.iter().map(|at| *at - starts[0]).collect()
}

/// Most admissions within any window of `window`.
fn busiest(starts: &[Duration], window: Duration) -> usize {
    starts
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            starts[i..]
                .iter()
                .take_while(|&&at| at < from + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiters_in_several_processes_share_one_rate() {
    let server = RedisServer::start();
    const RATE: f64 = 200.0;
    let mut pools = Vec::new();
    let mut limiters = Vec::new();
    for _ in 0..3 {
        let limiter = limiter(server.url(), "shared", RATE, 1, |b| {
            b.booking_horizon(Duration::from_millis(500))
        })
        .await;
        pools.push(
            Pool::builder()
                .concurrency(16)
                .admission(limiter.clone())
                .build()
                .expect("pool"),
        );
        limiters.push(limiter);
    }
    // 3 × 100 tasks at a shared 200/s: 1.5 s, where three local limits would take 0.5 s.
    let starts = admissions(&pools, 100).await;
    let span = *starts.last().unwrap();
    let most = busiest(&starts, Duration::from_secs(1));
    eprintln!("300 admissions in {span:?}; busiest second: {most}");
    // 299 intervals of 5 ms after the first (1.495 s). Moments are placed when their booking
    // arrives, and a task parked for its booking comes back a little after it: an admission
    // may be a few ms late, never early — the first one too, which shortens the span.
    assert!(span >= Duration::from_millis(1_450), "{span:?}");
    // Any second: 200 at 200/s (and the burst of 1), plus those that late admissions bunch
    // up: a task runs when the machine gets to it, and on a loaded machine that is up to a
    // few hundred ms late (50 is 250 ms). Three local limits admit all 300 within 0.5 s.
    assert!(most <= 250, "{most} admissions within a second");
    let calls: u64 = limiters.iter().map(|l| l.status().calls).sum();
    eprintln!("{calls} booking calls for 300 tasks");
    assert!(calls < 300, "batched: {calls} calls for 300 tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_batching_each_booking_is_one_call_and_the_rate_still_holds() {
    let server = RedisServer::start();
    let limiter = limiter(server.url(), "unbatched", 400.0, 1, |b| {
        b.batching(false, Duration::ZERO)
    })
    .await;
    let pool = Pool::builder()
        .concurrency(8)
        .admission(limiter.clone())
        .build()
        .expect("pool");
    let starts = admissions(std::slice::from_ref(&pool), 100).await;
    // 99 intervals of 2.5 ms after the first (247.5 ms); a late first admission shortens the
    // span (244.96 ms was seen with the first 2.5 ms late), so allow up to 47.5 ms of it. Without
    // the rate the 100 admissions take a few ms.
    let span = *starts.last().unwrap();
    assert!(span >= Duration::from_millis(200), "{span:?}");
    let calls = limiter.status().calls;
    assert!(calls >= 100, "one call per booking: {calls}");
}

#[derive(Debug)]
struct SlowDown;

impl Retryable for SlowDown {
    fn error_class(&self) -> ErrorClass {
        ErrorClass::Throttled
    }
}

async fn rate_in_redis(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<f64> {
    redis::cmd("HGET")
        .arg(key)
        .arg("rate")
        .query_async(conn)
        .await
        .expect("HGET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowdown_in_one_process_slows_every_process_and_recovery_is_shared() {
    let server = RedisServer::start();
    let mut conn = plain_connection(&server.url()).await;
    let aimd = Aimd::new()
        .decrease_factor(0.5)
        .decrease_cooldown(Duration::from_secs(2))
        .increase_fraction(0.25)
        .increase_interval(Duration::from_millis(500));
    let throttled_one = limiter(server.url(), "aimd", 100.0, 1, |b| b.adaptive(aimd)).await;
    let other = limiter(server.url(), "aimd", 100.0, 1, |b| b.adaptive(aimd)).await;
    let key = "s3pool:{aimd}:rate:a";
    let a = "a".to_owned();
    // The other process has tasks parked on moments booked at the full rate (0.6 s of them).
    let other_pool = Pool::builder()
        .concurrency(4)
        .retries(0)
        .admission(other.clone())
        .build()
        .expect("pool");
    let parked: Vec<_> = (0..60)
        .map(|_| other_pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, labelled("a")))
        .collect();
    wait_until("moments are booked", Duration::from_secs(10), || {
        let booked = other.status().booked;
        async move { booked >= 5 }
    })
    .await;
    assert_eq!(other.current_rate(&a), Some(100.0));
    // One process sees a SlowDown (reported by hand: an attempt it admitted would wait for
    // a moment of its own, which would come after the other's).
    throttled_one.throttled(&a);
    wait_until(
        "the rate in Redis is halved",
        Duration::from_secs(10),
        || {
            let mut conn = conn.clone();
            async move { rate_in_redis(&mut conn, key).await == Some(50.0) }
        },
    )
    .await;
    // The other process drops what it booked at the old rate (pub/sub): its parked tasks
    // book again, and learn the lower rate.
    wait_until("the other process follows", Duration::from_secs(10), || {
        let rate = other.current_rate(&a);
        async move { rate.is_some_and(|rate| rate < 100.0) }
    })
    .await;
    // A second SlowDown within the shared cool-down, seen by the other process: no change.
    let other_throttled = other_pool
        .enqueue(|| async { Err::<(), _>(SlowDown) }, labelled("a"))
        .await;
    assert!(other_throttled.is_err());
    let after_second = rate_in_redis(&mut conn, key).await.unwrap();
    assert!(
        after_second >= 50.0,
        "{after_second}: the cool-down is shared"
    );
    for handle in parked {
        tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("every parked task resolves")
            .expect("task");
    }
    // Recovery: +25 % of 100 every 500 ms from the decrease, computed from Redis time and
    // seen by both: back to 100/s one second after the decrease at the latest.
    wait_until(
        "the rate recovers for both",
        Duration::from_secs(10),
        || {
            let (a, other_pool) = (a.clone(), other_pool.clone());
            let (one, other) = (throttled_one.clone(), other.clone());
            async move {
                // A booking in each process (the throttled one's pool only observes).
                other_pool
                    .enqueue(|| async { Ok::<_, Transient<&str>>(()) }, labelled("a"))
                    .await
                    .expect("task");
                drop(one.acquire(&task_of("a")).await.expect("a moment"));
                one.current_rate(&a) == Some(100.0) && other.current_rate(&a) == Some(100.0)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_falls_back_to_local_limits_or_refuses() {
    let mut server = RedisServer::start();
    let open = limiter(server.url(), "down", 1_000.0, 10, |b| {
        b.fail_mode(FailMode::Open)
    })
    .await;
    let closed = limiter(server.url(), "down", 1_000.0, 10, |b| {
        b.fail_mode(FailMode::Closed)
    })
    .await;
    let pool = |limiter: &RedisRateLimiter<String>| {
        Pool::builder()
            .concurrency(4)
            .retries(0)
            .admission(limiter.clone())
            .build()
            .expect("pool")
    };
    let (open_pool, closed_pool) = (pool(&open), pool(&closed));
    for pool in [&open_pool, &closed_pool] {
        pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, labelled("a"))
            .await
            .expect("while Redis is up");
    }
    server.stop();
    // The next bookings fail; from then on each limiter acts as its mode says.
    let run = |pool: &Pool| {
        let handles: Vec<_> = (0..20)
            .map(|_| pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, labelled("a")))
            .collect();
        async move {
            let mut results = Vec::new();
            for handle in handles {
                results.push(
                    tokio::time::timeout(Duration::from_secs(30), handle)
                        .await
                        .expect("every task resolves"),
                );
            }
            results
        }
    };
    let open_results = run(&open_pool).await;
    assert!(open_results.iter().all(Result::is_ok), "{open_results:?}");
    assert!(!open.status().available);
    let closed_results = run(&closed_pool).await;
    assert!(
        closed_results.iter().any(|result| matches!(
            result,
            Err(TaskError::Rejected(rejection)) if rejection.kind == RejectionKind::Unavailable
        )),
        "{closed_results:?}"
    );
    assert!(
        !format!("{closed_results:?}").contains("redis://:"),
        "no credentials in messages"
    );
    server.restart();
    wait_until(
        "the limiters reach Redis again",
        Duration::from_secs(10),
        || {
            let back = open.status().available && closed.status().available;
            async move { back }
        },
    )
    .await;
    closed_pool
        .enqueue(|| async { Ok::<_, Transient<&str>>(()) }, labelled("a"))
        .await
        .expect("after Redis is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_further_than_max_wait_is_refused() {
    let server = RedisServer::start();
    let limiter = limiter(server.url(), "patience", 2.0, 1, |b| {
        b.max_wait(Duration::from_millis(150))
    })
    .await;
    let pool = Pool::builder()
        .concurrency(8)
        .retries(0)
        .admission(limiter.clone())
        .build()
        .expect("pool");
    let handles: Vec<_> = (0..4)
        .map(|_| pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, labelled("a")))
        .collect();
    let mut refused = 0;
    for handle in handles {
        match handle.await {
            Ok(()) => {}
            Err(TaskError::Rejected(rejection)) => {
                assert_eq!(rejection.kind, RejectionKind::RateLimited);
                assert!(rejection.retry_after.is_some());
                refused += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // At 2/s, moments are 500 ms apart: all but the first are beyond 150 ms (and, beyond
    // the booking horizon of 100 ms, are not even booked: those tasks wait 150 ms at most).
    assert!(refused >= 2, "{refused} refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_pool_acquire_waits_for_a_shared_moment() {
    let server = RedisServer::start();
    let limiter = limiter(server.url(), "direct", 20.0, 1, |b| b).await;
    let task = task_of("a");
    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        drop(limiter.acquire(&task).await.expect("permit"));
    }
    // Five moments at 20/s: the first now, the fifth 200 ms later.
    assert!(
        start.elapsed() >= Duration::from_millis(195),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_clients_in_several_processes_share_each_prefix_rate() {
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use s3_client::prefix::{s3_prefix_key, S3PrefixKey, S3RequestClass};
    let server = RedisServer::start();
    let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
    let mut clients = Vec::new();
    for _ in 0..2 {
        let limits = RedisRateLimiter::builder(
            server.url(),
            "bucket",
            |task: &TaskInfo| s3_prefix_key(task, 1),
            S3PrefixKey::published_limit,
        )
        .adaptive(Aimd::default())
        .executor(Arc::clone(&executor))
        .connect()
        .await
        .expect("connect");
        clients.push(
            s3_client::S3Client::builder(InMemory::new())
                .concurrency(32)
                .prefix_rate_limiter(limits)
                .build()
                .expect("client"),
        );
    }
    // 2 × 800 writes to one prefix: 1,600 at a shared 3,500/s (burst 350) need at least
    // (1,600 - 350) / 3,500 s = 357 ms.
    let start = tokio::time::Instant::now();
    let calls: Vec<_> = clients
        .iter()
        .flat_map(|client| {
            (0..800).map(move |i| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .put(&Path::from(format!("hot/{i}")), vec![0u8])
                        .await
                        .expect("put")
                })
            })
        })
        .collect();
    for call in calls {
        call.await.expect("join");
    }
    let took = start.elapsed();
    eprintln!("1,600 writes to one prefix from two clients in {took:?}");
    assert!(took >= Duration::from_millis(350), "{took:?}");
    let key = S3PrefixKey {
        prefix: "hot/".into(),
        class: S3RequestClass::Write,
    };
    let limits = clients[0].prefix_rate_limits().expect("attached");
    assert_eq!(limits.current_rate(&key), Some(3_500.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_moment_is_booked_beyond_the_horizon() {
    let server = RedisServer::start();
    let limiter = limiter(server.url(), "horizon", 50.0, 1, |b| {
        b.booking_horizon(Duration::from_millis(100))
    })
    .await;
    let pool = Pool::builder()
        .concurrency(4)
        .admission(limiter.clone())
        .build()
        .expect("pool");
    // 20 tasks at 50/s: 0.4 s of moments, of which at most 100 ms (5, and the one due now)
    // may be booked at any time.
    let handles: Vec<_> = (0..20)
        .map(|_| pool.enqueue(|| async { Ok::<_, Transient<&str>>(()) }, labelled("a")))
        .collect();
    let all = tokio::spawn(futures::future::join_all(handles));
    let mut most = 0;
    while !all.is_finished() {
        most = most.max(limiter.status().booked);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for result in all.await.expect("join") {
        result.expect("task");
    }
    assert!((1..=6).contains(&most), "{most} moments booked at once");
}

/// End to end over HTTP: two s3-clients (two agents, as two processes) whose per-prefix
/// limits are an adaptive `RedisRateLimiter` keyed by `s3_prefix_key` write to one prefix of
/// a real S3-compatible server. The prefix's write rate lives in Redis for both; when the
/// server answers one client's PUTs with `503 SlowDown`, the client classifies them as
/// throttling, its limiter lowers the prefix's rate in Redis, and the other client follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_clients_over_http_share_a_prefix_rate_and_a_slowdown_seen_by_one_slows_both() {
    use object_store::path::Path;
    use s3_client::prefix::{s3_prefix_key, S3PrefixKey, S3RequestClass};
    use s3_client::testing::{InjectedResponse, S3TestServer};
    let server = RedisServer::start();
    let conn = plain_connection(&server.url()).await;
    let s3 = S3TestServer::start().await.expect("S3 test server");
    let mut clients = Vec::new();
    for _ in 0..2 {
        let limits = RedisRateLimiter::builder(
            server.url(),
            "e2e",
            |task: &TaskInfo| s3_prefix_key(task, 1),
            S3PrefixKey::published_limit,
        )
        // Halves on SlowDown; recovers too slowly to undo it while the test looks.
        .adaptive(Aimd::default().increase_interval(Duration::from_secs(600)))
        .connect()
        .await
        .expect("connect");
        clients.push(
            s3_client::S3Client::builder_arc(s3.store().expect("store"))
                .concurrency(8)
                .retries(5)
                .prefix_rate_limiter(limits)
                .build()
                .expect("client"),
        );
    }
    let key = S3PrefixKey {
        prefix: "hot/".into(),
        class: S3RequestClass::Write,
    };
    let redis_key = "s3pool:{e2e}:rate:write:hot/";
    let rate_of = |client: &s3_client::S3Client| {
        client
            .prefix_rate_limits()
            .expect("attached")
            .current_rate(&key)
    };
    let put_all = |client: &s3_client::S3Client, from: u32, count: u32| {
        let calls: Vec<_> = (from..from + count)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .put(&Path::from(format!("hot/{i}")), format!("object {i}"))
                        .await
                })
            })
            .collect();
        async move {
            for call in calls {
                tokio::time::timeout(Duration::from_secs(60), call)
                    .await
                    .expect("every PUT resolves")
                    .expect("join")
                    .expect("PUT");
            }
        }
    };

    // Both write, unthrottled: every object lands, at the prefix's full rate, kept in Redis.
    put_all(&clients[0], 0, 100).await;
    put_all(&clients[1], 100, 100).await;
    let requests_before = s3.faults().requests();
    assert!(requests_before >= 200, "{requests_before} requests");
    let stored = clients[1]
        .get(&Path::from("hot/7"))
        .await
        .expect("written by the first client, read by the second");
    assert_eq!(&stored[..], b"object 7");
    assert_eq!(rate_of(&clients[0]), Some(3_500.0));
    assert_eq!(rate_of(&clients[1]), Some(3_500.0));

    // The server throttles the next three requests: the first client's PUTs get SlowDown,
    // are retried, and succeed; the prefix's rate in Redis is lowered.
    s3.faults().fail_next(3, InjectedResponse::SlowDown);
    put_all(&clients[0], 200, 20).await;
    assert!(s3.faults().injected() >= 3, "the SlowDowns were sent");
    wait_until(
        "the first client's SlowDowns lower the rate in Redis",
        Duration::from_secs(10),
        || {
            let mut conn = conn.clone();
            async move {
                rate_in_redis(&mut conn, redis_key)
                    .await
                    .is_some_and(|rate| rate <= 1_750.0)
            }
        },
    )
    .await;
    assert!(rate_of(&clients[0]).is_some_and(|rate| rate <= 1_750.0));
    // The second client, never throttled itself, follows at its next booking.
    let mut next = 300;
    wait_until("the second client follows", Duration::from_secs(10), || {
        next += 1;
        let (client, index) = (clients[1].clone(), next);
        let rate = rate_of(&clients[1]);
        async move {
            client
                .put(&Path::from(format!("hot/{index}")), "later")
                .await
                .expect("PUT");
            rate.is_some_and(|rate| rate <= 1_750.0)
        }
    })
    .await;
}

/// Counts the deferrals (parkings by an admission policy) of a pool's tasks.
#[derive(Debug, Default)]
struct Deferrals(std::sync::atomic::AtomicU64);

impl pool_core::Observer for Deferrals {
    fn on_event(&self, event: &pool_core::Event) {
        if let pool_core::Event::TaskDeferred { .. } = event {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A task waiting for its moment does not poll: it is parked until the agent delivers its
/// moment (a wakeup), then until the moment — about two parkings per task, however long the
/// key is booked up (60 tasks at 100/s wait up to 0.6 s, past a 100 ms horizon).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_its_moment_is_woken_when_it_is_delivered() {
    let server = RedisServer::start();
    let limiter = limiter(server.url(), "woken", 100.0, 1, |b| b).await;
    let deferrals = Arc::new(Deferrals::default());
    let pool = Pool::builder()
        .concurrency(8)
        .admission(limiter.clone())
        .observer_arc(deferrals.clone())
        .build()
        .expect("pool");
    let starts = admissions(&[pool], 60).await;
    let span = *starts.last().unwrap();
    let parked = deferrals.0.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("60 tasks in {span:?}, parked {parked} times");
    assert!(span >= Duration::from_millis(550), "{span:?}");
    // Two per task (waiting for the delivery, then for the moment), and a few more for tasks
    // whose moment was already due when they came back, or that a safety net brought back on
    // a loaded machine. Polling every round trip would park them hundreds of times.
    assert!(parked <= 3 * 60, "{parked} parkings for 60 tasks");
}
