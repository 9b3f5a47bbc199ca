//! One process against a real redis-server: waiting, cancellation, renewal, limit changes,
//! Redis restarts under both fail modes, and credentials that never show.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{Pool, RejectionKind, TaskError, TaskOptions, Transient};
use pool_redis::{FailMode, PermitError, PermitEvent, RedisPermits};
use support::{live_leases, plain_connection, recorder, redis_now_ms, wait_until, RedisServer};

const TTL: Duration = Duration::from_millis(600);

async fn permits(server: &RedisServer, name: &str, limit: u64) -> RedisPermits {
    RedisPermits::builder(server.url(), name, limit)
        .lease_ttl(TTL)
        .io_timeout(Duration::from_millis(200))
        .connect()
        .await
        .expect("connect")
}

fn sleeper(
    ms: u64,
    running: Arc<AtomicU64>,
    highest: Arc<AtomicU64>,
) -> impl FnMut() -> futures::future::BoxFuture<'static, Result<(), Transient<std::io::Error>>> {
    move || {
        let (running, highest) = (Arc::clone(&running), Arc::clone(&highest));
        Box::pin(async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            highest.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_share_one_limit() {
    let server = RedisServer::start();
    let (running, highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut handles = Vec::new();
    let mut pools = Vec::new();
    for _ in 0..2 {
        // Two handles of their own = two agents, as in two processes.
        let pool = Pool::builder()
            .concurrency(5)
            .retries(0)
            .admission(permits(&server, "shared", 3).await)
            .build()
            .expect("pool");
        for _ in 0..30 {
            handles.push(pool.enqueue(
                sleeper(5, Arc::clone(&running), Arc::clone(&highest)),
                TaskOptions::new(),
            ));
        }
        pools.push(pool);
    }
    for handle in handles {
        handle.await.expect("task");
    }
    assert_eq!(highest.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gets_the_permit_that_is_released() {
    let server = RedisServer::start();
    let permits = permits(&server, "handover", 1).await;
    let mut conn = plain_connection(&server.url()).await;
    let first = permits.lease().await.expect("first");
    assert!(first.is_counted());
    let waiter = tokio::spawn({
        let permits = permits.clone();
        async move { permits.lease().await }
    });
    wait_until("the second request waits", Duration::from_secs(5), || {
        let permits = permits.clone();
        async move { permits.status().waiting == 1 }
    })
    .await;
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 1);
    assert!(!waiter.is_finished());
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter is served")
        .expect("join")
        .expect("lease");
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 1);
    drop(second);
    permits.flush().await;
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_gives_up_leaks_no_permit() {
    let server = RedisServer::start();
    let permits = permits(&server, "give-up", 1).await;
    let mut conn = plain_connection(&server.url()).await;
    let first = permits.lease().await.expect("first");
    let gave_up = tokio::time::timeout(Duration::from_millis(50), permits.lease()).await;
    assert!(
        gave_up.is_err(),
        "the limit is 1: the second request must wait"
    );
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(5), permits.lease())
        .await
        .expect("the released permit is not kept by the request that gave up")
        .expect("lease");
    permits.flush().await;
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 1);
    assert_eq!(permits.status().held, 1);
    drop(third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_leases_are_renewed_past_their_ttl() {
    let server = RedisServer::start();
    let permits = permits(&server, "renewed", 2).await;
    let mut conn = plain_connection(&server.url()).await;
    let lease = permits.lease().await.expect("lease");
    let started = redis_now_ms(&mut conn).await;
    // Four TTLs later the lease is still live: renewals ran.
    wait_until("four lease TTLs pass", Duration::from_secs(10), || {
        let mut conn = conn.clone();
        async move { redis_now_ms(&mut conn).await > started + 4 * TTL.as_millis() as u64 }
    })
    .await;
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 1);
    drop(lease);
    permits.flush().await;
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_validated_and_read_back() {
    let server = RedisServer::start();
    let permits = permits(&server, "settings", 3).await;
    assert_eq!(permits.limit().await.expect("read"), 3);
    assert!(matches!(
        permits.set_limit(0).await,
        Err(PermitError::InvalidSetting(_))
    ));
    permits.set_limit(7).await.expect("set");
    // A second process keeps the limit in force instead of its own default.
    let other = RedisPermits::builder(server.url(), "settings", 3)
        .connect()
        .await
        .expect("connect");
    assert_eq!(other.limit().await.expect("read"), 7);
    assert!(matches!(
        RedisPermits::builder(server.url(), "bad name", 3)
            .connect()
            .await,
        Err(PermitError::InvalidName { .. })
    ));
}

/// Runs `tasks` 10 ms tasks on a fresh pool and returns every result (none may hang).
async fn run_batch(
    pool: &Pool,
    tasks: usize,
) -> Vec<Result<(), TaskError<Transient<std::io::Error>>>> {
    let (running, highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            pool.enqueue(
                sleeper(10, Arc::clone(&running), Arc::clone(&highest)),
                TaskOptions::new(),
            )
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        let result = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("every task resolves");
        results.push(result);
    }
    results
}

/// Stops Redis while `tasks` run, restarts it, and returns what the tasks and events were.
async fn restart_mid_run(
    mode: FailMode,
) -> (
    Vec<Result<(), TaskError<Transient<std::io::Error>>>>,
    Vec<PermitEvent>,
    Vec<Result<(), TaskError<Transient<std::io::Error>>>>,
) {
    let mut server = RedisServer::start();
    let (events, on_event) = recorder();
    let permits = RedisPermits::builder(server.url(), "restart", 2)
        .lease_ttl(TTL)
        .io_timeout(Duration::from_millis(200))
        .fail_mode(mode)
        .on_event(on_event)
        .connect()
        .await
        .expect("connect");
    let pool = Pool::builder()
        .concurrency(4)
        .retries(0)
        .admission(permits.clone())
        .build()
        .expect("pool");
    assert!(run_batch(&pool, 10).await.iter().all(Result::is_ok));

    let (running, highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let handles: Vec<_> = (0..40)
        .map(|_| {
            pool.enqueue(
                sleeper(10, Arc::clone(&running), Arc::clone(&highest)),
                TaskOptions::new(),
            )
        })
        .collect();
    wait_until("some tasks ran", Duration::from_secs(10), || {
        let processed = pool.stats().succeeded;
        async move { processed >= 14 }
    })
    .await;
    server.stop();
    let mut during = Vec::new();
    for handle in handles {
        let result = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("every task resolves while Redis is down");
        during.push(result);
    }
    server.restart();
    wait_until(
        "the agent sees Redis again",
        Duration::from_secs(10),
        || {
            let permits = permits.clone();
            async move { permits.status().available }
        },
    )
    .await;
    let after = run_batch(&pool, 10).await;
    let events = events.lock().unwrap().clone();
    (during, events, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_tasks_while_redis_is_down_and_loses_none() {
    let (during, events, after) = restart_mid_run(FailMode::Closed).await;
    let ok = during.iter().filter(|r| r.is_ok()).count();
    let refused = during
        .iter()
        .filter(|r| {
            matches!(r, Err(TaskError::Rejected(rejection))
                if rejection.kind == RejectionKind::Unavailable)
        })
        .count();
    assert_eq!(
        ok + refused,
        during.len(),
        "only successes and refusals: {during:?}"
    );
    assert!(ok >= 4 && refused >= 1, "ok {ok}, refused {refused}");
    assert!(after.iter().all(Result::is_ok), "{after:?}");
    assert!(matches!(
        events.first(),
        Some(PermitEvent::Unavailable {
            mode: FailMode::Closed,
            ..
        })
    ));
    assert!(events
        .iter()
        .any(|e| matches!(e, PermitEvent::Recovered { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_runs_every_task_while_redis_is_down() {
    let (during, events, after) = restart_mid_run(FailMode::Open).await;
    assert!(during.iter().all(Result::is_ok), "{during:?}");
    assert!(after.iter().all(Result::is_ok), "{after:?}");
    assert!(matches!(
        events.first(),
        Some(PermitEvent::Unavailable {
            mode: FailMode::Open,
            ..
        })
    ));
    assert!(events
        .iter()
        .any(|e| matches!(e, PermitEvent::Recovered { .. })));
}

/// A `Write` into a shared buffer, for a captured tracing subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_its_fair_share_from_a_busy_process() {
    let server = RedisServer::start();
    let busy = Pool::builder()
        .concurrency(10)
        .retries(0)
        .no_pressure_rule()
        .admission(permits(&server, "fair", 4).await)
        .build()
        .expect("pool");
    let (busy_running, busy_highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let busy_handles: Vec<_> = (0..600)
        .map(|_| {
            busy.enqueue(
                sleeper(5, Arc::clone(&busy_running), Arc::clone(&busy_highest)),
                TaskOptions::new(),
            )
        })
        .collect();
    wait_until(
        "the busy process holds every permit",
        Duration::from_secs(10),
        || {
            let highest = busy_highest.load(Ordering::SeqCst);
            async move { highest == 4 }
        },
    )
    .await;

    let newcomer = Pool::builder()
        .concurrency(10)
        .retries(0)
        .admission(permits(&server, "fair", 4).await)
        .build()
        .expect("pool");
    let (running, highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let handles: Vec<_> = (0..40)
        .map(|_| {
            newcomer.enqueue(
                sleeper(5, Arc::clone(&running), Arc::clone(&highest)),
                TaskOptions::new(),
            )
        })
        .collect();
    for handle in handles {
        handle.await.expect("newcomer task");
    }
    // Served while the busy process still had work waiting (queued, or parked for a
    // permit): it was not starved.
    let stats = busy.stats();
    assert!(
        stats.queued + stats.deferred > 0,
        "the busy process ran out of work first: {stats:?}"
    );
    assert!(
        highest.load(Ordering::SeqCst) >= 2,
        "at least an equal share of 4 between 2"
    );
    for handle in busy_handles {
        handle.await.expect("busy task");
    }
}

/// Script calls the server has run so far.
async fn script_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_does_not_poll_redis_hard() {
    let server = RedisServer::start();
    let holder = permits(&server, "patient", 1).await;
    let waiter = permits(&server, "patient", 1).await;
    let mut conn = plain_connection(&server.url()).await;
    let lease = holder.lease().await.expect("lease");
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.lease().await }
    });
    wait_until("the second agent waits", Duration::from_secs(5), || {
        let waiter = waiter.clone();
        async move { waiter.status().waiting == 1 }
    })
    .await;
    let before = script_calls(&mut conn).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = script_calls(&mut conn).await - before;
    eprintln!("{calls} script calls in 1 s of waiting");
    // Backoff capped at 50 ms: about 20 tries a second, plus the holder's renewals (TTL/3).
    // A slower machine makes fewer calls, never more.
    assert!(
        (3..=60).contains(&calls),
        "{calls} script calls in 1 s of waiting"
    );
    drop(lease);
    let served = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter is served")
        .expect("join")
        .expect("lease");
    assert!(served.is_counted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_across_a_redis_restart_is_counted_again() {
    let mut server = RedisServer::start();
    let (events, on_event) = recorder();
    let permits = RedisPermits::builder(server.url(), "survivor", 2)
        .lease_ttl(TTL)
        .io_timeout(Duration::from_millis(200))
        .on_event(on_event)
        .connect()
        .await
        .expect("connect");
    let lease = permits.lease().await.expect("lease");
    server.restart(); // empty: no persistence
    let mut conn = plain_connection(&server.url()).await;
    wait_until(
        "the running lease is back in Redis",
        Duration::from_secs(10),
        || {
            let (mut conn, holders) = (conn.clone(), permits.holders_key().to_owned());
            async move { live_leases(&mut conn, &holders).await == 1 }
        },
    )
    .await;
    // The limit key, lost with the data, is back with the configured value.
    let stored: Option<u64> = redis::cmd("GET")
        .arg("s3pool:{survivor}:limit")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(stored, Some(2));
    // The event follows the script's reply: wait for it rather than race it.
    wait_until("the restore is reported", Duration::from_secs(10), || {
        let restored = events
            .lock()
            .unwrap()
            .contains(&PermitEvent::LeasesRestored {
                count: 1,
                over_limit: 0,
            });
        async move { restored }
    })
    .await;
    drop(lease);
    permits.flush().await;
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_the_last_limit_told_is_stored_again() {
    let server = RedisServer::start();
    let mut conn = plain_connection(&server.url()).await;
    // Two processes built with a default of 2; one of them sets 5 at run time.
    let first = permits(&server, "reseeded", 2).await;
    let second = permits(&server, "reseeded", 2).await;
    first.set_limit(5).await.expect("set_limit");
    // The second learns the new limit at its next call.
    drop(second.lease().await.expect("lease"));
    second.flush().await;
    assert_eq!(second.status().limit, Some(5));
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("FLUSHALL");
    assert_eq!(
        second.limit().await.expect("limit"),
        5,
        "read back before re-seeding"
    );
    drop(second.lease().await.expect("lease after the flush"));
    second.flush().await;
    let stored: Option<u64> = redis::cmd("GET")
        .arg("s3pool:{reseeded}:limit")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(stored, Some(5), "not the builder's default of 2");
    assert_eq!(first.limit().await.expect("limit"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_redis_lost_is_taken_back_even_above_the_limit() {
    let server = RedisServer::start();
    let mut conn = plain_connection(&server.url()).await;
    let (events, on_event) = recorder();
    let holder = RedisPermits::builder(server.url(), "lost-lease", 1)
        .lease_ttl(TTL)
        .io_timeout(Duration::from_millis(200))
        .on_event(on_event)
        .connect()
        .await
        .expect("connect");
    let other = permits(&server, "lost-lease", 1).await;
    let held = holder.lease().await.expect("lease");
    // Redis loses the lease (as a failover before replication would): the room goes to
    // another process before the holder renews.
    let _: () = redis::cmd("DEL")
        .arg(holder.holders_key())
        .arg("s3pool:{lost-lease}:agents")
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let granted = other.lease().await.expect("the room looks free");
    wait_until(
        "the holder takes its lease back",
        Duration::from_secs(10),
        || {
            let restored = events
                .lock()
                .unwrap()
                .contains(&PermitEvent::LeasesRestored {
                    count: 1,
                    over_limit: 1,
                });
            async move { restored }
        },
    )
    .await;
    assert_eq!(live_leases(&mut conn, holder.holders_key()).await, 2);
    // Above the limit, nobody gets a new permit until both running tasks end.
    drop(granted);
    other.flush().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.lease())
            .await
            .is_err(),
        "the restored lease still counts"
    );
    drop(held);
    let next = tokio::time::timeout(Duration::from_secs(5), other.lease())
        .await
        .expect("room once the holder's task ends")
        .expect("lease");
    drop(next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_backoff_survives_a_redis_failure() {
    let mut server = RedisServer::start();
    // Duration::MAX: retries only when woken; probes of a lost Redis still back off to 1 s.
    let permits = RedisPermits::builder(server.url(), "patient", 1)
        .lease_ttl(TTL)
        .io_timeout(Duration::from_millis(200))
        .max_backoff(Duration::MAX)
        .connect()
        .await
        .expect("connect");
    let first = permits.lease().await.expect("lease");
    let waiter = tokio::spawn({
        let permits = permits.clone();
        async move { permits.lease().await }
    });
    wait_until("the second request waits", Duration::from_secs(5), || {
        let waiting = permits.status().waiting;
        async move { waiting == 1 }
    })
    .await;
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("a waiter is woken without a timed retry")
        .expect("join")
        .expect("lease");
    drop(second);
    server.stop();
    let refused = permits.lease().await.expect_err("Redis is down");
    assert!(
        matches!(refused, PermitError::Unavailable { .. }),
        "{refused:?}"
    );
    server.restart();
    wait_until(
        "the agent probes Redis again",
        Duration::from_secs(10),
        || {
            let available = permits.status().available;
            async move { available }
        },
    )
    .await;
    drop(
        tokio::time::timeout(Duration::from_secs(5), permits.lease())
            .await
            .expect("a lease after the restart")
            .expect("lease"),
    );
}
