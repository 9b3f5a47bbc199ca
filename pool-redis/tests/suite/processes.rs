//! Several OS processes share one global limit on a real redis-server.

use crate::support;

use std::time::Duration;

use pool_redis::RedisPermits;
use support::worker::{run_worker, Worker, WorkerConfig};
use support::{live_leases, plain_connection, redis_now_ms, wait_until, RedisServer};

/// Entry point of the worker processes; does nothing when run by hand.
#[test]
#[ignore = "entry point of the worker processes started by the other tests"]
fn worker_process() {
    if let Some(config) = WorkerConfig::from_env() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run_worker(config));
    }
}

fn config(server: &RedisServer, name: &str, limit: u64) -> WorkerConfig {
    WorkerConfig {
        url: server.url(),
        name: name.to_owned(),
        limit,
        lease_ttl_ms: 1_000,
        concurrency: 6,
        tasks: 40,
        task_ms: 10,
        hold: false,
    }
}

fn all_exited(workers: &mut [Worker]) -> bool {
    workers.iter_mut().all(Worker::exited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_never_exceed_the_global_limit() {
    let server = RedisServer::start();
    const LIMIT: u64 = 4;
    let config = config(&server, "three-processes", LIMIT);
    let holders = "s3pool:{three-processes}:holders";
    let mut children: Vec<Worker> = (0..3).map(|_| config.spawn()).collect();
    let mut conn = plain_connection(&server.url()).await;
    let mut highest_sample = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !all_exited(&mut children) {
        assert!(tokio::time::Instant::now() < deadline, "workers hang");
        let held = live_leases(&mut conn, holders).await;
        assert!(held <= LIMIT, "{held} leases in Redis, limit {LIMIT}");
        highest_sample = highest_sample.max(held);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let reports: Vec<_> = children.into_iter().map(Worker::report).collect();
    let highest_running = reports.iter().map(|r| r.max_running).max().unwrap();
    for report in &reports {
        assert_eq!((report.ok, report.failed), (40, 0), "{report:?}");
        assert!(report.max_running <= LIMIT, "{report:?}");
    }
    // 18 local slots want 4 permits: the limit must have been reached, not just respected.
    assert_eq!(highest_running, LIMIT, "{reports:?}");
    assert!(highest_sample >= 1, "the sampler never saw a lease");
    eprintln!("highest Redis sample {highest_sample}, highest running {highest_running}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_holder_frees_its_permits_within_the_lease_ttl() {
    let server = RedisServer::start();
    const LIMIT: u64 = 3;
    let mut config = config(&server, "killed-holder", LIMIT);
    config.hold = true;
    config.tasks = 5;
    let holders = "s3pool:{killed-holder}:holders";
    let mut child = config.spawn();
    let mut conn = plain_connection(&server.url()).await;
    wait_until(
        "the worker holds every permit",
        Duration::from_secs(20),
        || {
            let mut conn = conn.clone();
            async move { live_leases(&mut conn, holders).await == LIMIT }
        },
    )
    .await;

    let killed_at = redis_now_ms(&mut conn).await;
    child.kill();
    // Every lease expires at most one TTL after the kill: that is what the scripts purge by.
    let leases: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(holders)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    assert_eq!(leases.len() as u64, LIMIT);
    for (lease, expiry) in &leases {
        assert!(
            *expiry <= killed_at + config.lease_ttl_ms,
            "{lease} expires at {expiry}, kill at {killed_at}"
        );
    }

    // A newcomer gets all of them once they expire.
    let permits = RedisPermits::builder(server.url(), "killed-holder", LIMIT)
        .lease_ttl(Duration::from_millis(1_000))
        .io_timeout(Duration::from_millis(250))
        .connect()
        .await
        .expect("connect");
    let mut taken = Vec::new();
    for _ in 0..LIMIT {
        let lease = tokio::time::timeout(Duration::from_secs(10), permits.lease())
            .await
            .expect("the dead holder's permits come back")
            .expect("lease");
        taken.push(lease);
    }
    let freed_at = redis_now_ms(&mut conn).await;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(holders)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    assert!(
        leases.iter().all(|(dead, _)| !members.contains(dead)),
        "dead leases still listed: {members:?}"
    );
    eprintln!(
        "permits of the killed process reusable after {} ms (TTL {} ms)",
        freed_at - killed_at,
        config.lease_ttl_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_change_reaches_every_process() {
    let server = RedisServer::start();
    let mut config = config(&server, "changing", 2);
    config.tasks = 150;
    config.task_ms = 10;
    let holders = "s3pool:{changing}:holders";
    let mut children: Vec<Worker> = (0..2).map(|_| config.spawn()).collect();
    let control = RedisPermits::builder(server.url(), "changing", 2)
        .lease_ttl(Duration::from_millis(1_000))
        .io_timeout(Duration::from_millis(250))
        .connect()
        .await
        .expect("connect");
    let mut conn = plain_connection(&server.url()).await;
    let sample_until = |target: fn(u64) -> bool, ceiling: u64, what: &'static str| {
        let mut conn = conn.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let held = live_leases(&mut conn, holders).await;
                assert!(held <= ceiling, "{held} leases above {ceiling} ({what})");
                if target(held) {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "never saw: {what}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    sample_until(|held| held == 2, 2, "2 leases under limit 2").await;

    control.set_limit(5).await.expect("raise");
    assert_eq!(control.limit().await.expect("read"), 5);
    sample_until(|held| held == 5, 5, "5 leases after raising to 5").await;

    control.set_limit(1).await.expect("lower");
    // Running tasks keep their permits; as they end, no new ones are granted above 1.
    sample_until(|held| held <= 1, 5, "at most 1 lease after lowering to 1").await;
    for _ in 0..50 {
        let held = live_leases(&mut conn, holders).await;
        assert!(held <= 1, "{held} leases after lowering to 1");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    control.set_limit(12).await.expect("raise to finish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !all_exited(&mut children) {
        assert!(tokio::time::Instant::now() < deadline, "workers hang");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for report in children.into_iter().map(Worker::report) {
        assert_eq!((report.ok, report.failed), (150, 0), "{report:?}");
    }
}
