//! Tasks waiting for a global permit wait parked, without their pool slot, against a real
//! redis-server: a saturated global limit leaves the pool's slots to the work it does not
//! cover, the permits then go to the parked tasks one at a time, and a parked task that is
//! cancelled or stopped is never granted a permit.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{CancellationToken, Metadata, Pool, TaskError, TaskOptions, Transient};
use pool_redis::RedisPermits;
use support::{live_leases, plain_connection, wait_until, RedisServer};

const HANG: Duration = Duration::from_secs(30);

/// A handle whose permits only tasks labelled `global` need.
async fn permits_for_global_tasks(server: &RedisServer, name: &str, limit: u64) -> RedisPermits {
    RedisPermits::builder(server.url(), name, limit)
        .applies_to(|task| task.metadata.get("global").is_some())
        .connect()
        .await
        .expect("connect")
}

/// Another process: an agent of its own on the same limit.
async fn other_process(server: &RedisServer, name: &str, limit: u64) -> RedisPermits {
    RedisPermits::builder(server.url(), name, limit)
        .connect()
        .await
        .expect("connect")
}

fn global() -> TaskOptions {
    TaskOptions::new().metadata(Metadata::new().with("global", "yes"))
}

type Handle = pool_core::TaskHandle<(), Transient<std::io::Error>>;

/// A task that counts how many of its kind run at once.
fn counted(
    pool: &Pool,
    options: TaskOptions,
    running: &Arc<AtomicU64>,
    highest: &Arc<AtomicU64>,
) -> Handle {
    let (running, highest) = (Arc::clone(running), Arc::clone(highest));
    pool.enqueue(
        move || {
            let (running, highest) = (Arc::clone(&running), Arc::clone(&highest));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                highest.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        },
        options,
    )
}

/// The whole global limit is held by another process. The pool's two slots are not held by
/// its tasks waiting for a permit: the unrelated tasks enqueued after them all run while
/// they wait. When the other process lets go, the waiting tasks run, one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_global_limit_does_not_block_unrelated_work() {
    let server = RedisServer::start();
    let other = other_process(&server, "saturated", 1).await;
    let held = other.lease().await.expect("the other process's lease");
    let permits = permits_for_global_tasks(&server, "saturated", 1).await;
    let pool = Pool::builder()
        .concurrency(2)
        .retries(0)
        .admission(permits.clone())
        .build()
        .expect("pool");
    let (running, highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let waiting: Vec<Handle> = (0..10)
        .map(|_| counted(&pool, global(), &running, &highest))
        .collect();
    let (running_free, highest_free) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let unrelated: Vec<Handle> = (0..20)
        .map(|_| counted(&pool, TaskOptions::new(), &running_free, &highest_free))
        .collect();
    for handle in unrelated {
        tokio::time::timeout(HANG, handle)
            .await
            .expect("unrelated work runs while the global limit is saturated")
            .expect("task");
    }
    assert_eq!(highest.load(Ordering::SeqCst), 0, "no permit was free");
    assert_eq!(
        highest_free.load(Ordering::SeqCst),
        2,
        "both slots served them"
    );
    let stats = pool.stats();
    assert_eq!((stats.deferred, stats.active), (10, 0), "{stats:?}");
    // The handle asks for no more permits than its window: four while none of its tasks
    // runs.
    wait_until("the agent queues a window of parked tasks", HANG, || {
        let waiting = permits.status().waiting;
        async move { waiting == 4 }
    })
    .await;

    drop(held);
    for handle in waiting {
        tokio::time::timeout(HANG, handle)
            .await
            .expect("a parked task is woken when a permit frees")
            .expect("task");
    }
    assert_eq!(highest.load(Ordering::SeqCst), 1, "the limit held");
    let stats = pool.stats();
    assert!(stats.in_balance(), "{stats:?}");
    assert_eq!(stats.deferred, 0, "{stats:?}");
    permits.flush().await;
    let mut conn = plain_connection(&server.url()).await;
    assert_eq!(live_leases(&mut conn, permits.holders_key()).await, 0);
}

/// Parked tasks that leave (one cancelled, the others stopped with their pool) give their
/// place in the agent's queue up: when the other process lets go, none of them is granted
/// the permit, and a third process gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_tasks_that_leave_are_granted_no_permit() {
    let server = RedisServer::start();
    let other = other_process(&server, "leaving", 1).await;
    let held = other.lease().await.expect("the other process's lease");
    let permits = permits_for_global_tasks(&server, "leaving", 1).await;
    let pool = Pool::builder()
        .concurrency(2)
        .retries(0)
        .admission(permits.clone())
        .build()
        .expect("pool");
    let (running, highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let token = CancellationToken::new();
    let cancelled = counted(
        &pool,
        global().cancellation(token.clone()),
        &running,
        &highest,
    );
    let stopped: Vec<Handle> = (0..4)
        .map(|_| counted(&pool, global(), &running, &highest))
        .collect();
    wait_until(
        "all five are parked, a window of four asked for",
        HANG,
        || {
            let (deferred, waiting) = (pool.stats().deferred, permits.status().waiting);
            async move { deferred == 5 && waiting == 4 }
        },
    )
    .await;
    token.cancel();
    assert!(matches!(
        tokio::time::timeout(HANG, cancelled)
            .await
            .expect("resolves"),
        Err(TaskError::Cancelled)
    ));
    pool.stop().await;
    for handle in stopped {
        assert!(matches!(
            tokio::time::timeout(HANG, handle).await.expect("resolves"),
            Err(TaskError::Stopped)
        ));
    }
    // The agent drops them from its queue at its next step (a retry while the limit is
    // full comes within its backoff).
    wait_until("the agent forgets the tasks that left", HANG, || {
        let waiting = permits.status().waiting;
        async move { waiting == 0 }
    })
    .await;
    drop(held);
    other.flush().await;
    let third = other_process(&server, "leaving", 1).await;
    let lease = tokio::time::timeout(HANG, third.lease())
        .await
        .expect("the permit is free for another process")
        .expect("lease");
    assert!(lease.is_counted());
    assert_eq!(permits.status().held, 0, "{:?}", permits.status());
    assert_eq!(highest.load(Ordering::SeqCst), 0, "no task that left ran");
}

/// A pool of two slots with a hundred free permits and sixty tasks: all sixty park at once,
/// but the handle holds and asks for about what its slots can run (two running, a window of
/// twice that, at least four), not sixty permits that would wait idle for a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_tasks_ask_for_no_more_permits_than_the_pool_runs() {
    let server = RedisServer::start();
    let permits = permits_for_global_tasks(&server, "window", 100).await;
    let pool = Pool::builder()
        .concurrency(2)
        .retries(0)
        .admission(permits.clone())
        .build()
        .expect("pool");
    let (running, highest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let handles: Vec<Handle> = (0..60)
        .map(|_| counted(&pool, global(), &running, &highest))
        .collect();
    let sampler = tokio::spawn({
        let permits = permits.clone();
        let pool = pool.clone();
        async move {
            let mut most = 0;
            while pool.stats().succeeded < 60 {
                most = most.max(permits.status().held);
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            most
        }
    });
    for handle in handles {
        tokio::time::timeout(HANG, handle)
            .await
            .expect("every task runs")
            .expect("task");
    }
    let most_held = tokio::time::timeout(HANG, sampler)
        .await
        .expect("sampler ends")
        .expect("join");
    assert_eq!(highest.load(Ordering::SeqCst), 2);
    // 2 running + 4 asked, and up to 2 leases dropped that the agent has not handled yet.
    assert!(
        (1..=8).contains(&most_held),
        "held at most {most_held} permits for a pool of 2 slots"
    );
}
