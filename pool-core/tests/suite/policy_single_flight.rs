//! Single-flight on a real pool, on virtual time: sharing, shared errors, leaders that leave,
//! abandoned executions, the TTL cache.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use pool_core::policy::{FlightRole, SingleFlight, SingleFlightStats};
use pool_core::{
    CancellationToken, ErrorClass, Executor, Pool, SimExecutor, TaskError, TaskOptions,
};

type Flights = SingleFlight<String, String, String>;

struct Setup {
    sim: SimExecutor,
    pool: Pool,
    flights: Flights,
    /// Executions that started.
    started: Arc<AtomicU32>,
    /// Executions that ran to the end.
    finished: Arc<AtomicU32>,
}

fn setup(ttl: Option<Duration>) -> Setup {
    let sim = SimExecutor::new();
    let pool = Pool::builder()
        .executor(sim.clone())
        .concurrency(8)
        .retries(0)
        .seed(5)
        .build()
        .unwrap();
    let mut flights = Flights::new(pool.clone());
    if let Some(ttl) = ttl {
        flights = flights.with_ttl(ttl);
    }
    Setup {
        sim,
        pool,
        flights,
        started: Arc::new(AtomicU32::new(0)),
        finished: Arc::new(AtomicU32::new(0)),
    }
}

impl Setup {
    /// A GET of `key` taking 100 ms; keys starting with "missing" fail.
    fn get(&self, key: &str, options: TaskOptions) -> pool_core::policy::Flight<String, String> {
        let (sim, started, finished) = (
            self.sim.clone(),
            self.started.clone(),
            self.finished.clone(),
        );
        let object = key.to_owned();
        self.flights.run_with(
            key.to_owned(),
            move || {
                let (sim, started, finished) = (sim.clone(), started.clone(), finished.clone());
                let object = object.clone();
                async move {
                    started.fetch_add(1, Ordering::Relaxed);
                    sim.sleep(Duration::from_millis(100)).await;
                    finished.fetch_add(1, Ordering::Relaxed);
                    if object.starts_with("missing") {
                        Err(format!("404 {object}"))
                    } else {
                        Ok(format!("body of {object}"))
                    }
                }
            },
            options,
            |_: &String| ErrorClass::Fatal,
        )
    }
}

#[test]
fn concurrent_callers_of_one_key_share_one_execution() {
    let s = setup(None);
    let flights: Vec<_> = (0..10)
        .map(|_| s.get("a.jpg", TaskOptions::new()))
        .collect();
    let roles: Vec<_> = flights.iter().map(|f| f.role()).collect();
    assert_eq!(roles[0], FlightRole::Leader);
    assert!(roles[1..].iter().all(|r| *r == FlightRole::Follower));
    let other = s.get("b.jpg", TaskOptions::new());
    let results = s.sim.block_on(join_all(flights));
    assert!(results
        .iter()
        .all(|r| matches!(r.as_deref(), Ok("body of a.jpg"))));
    assert_eq!(s.sim.block_on(other).unwrap(), "body of b.jpg");
    assert_eq!(s.started.load(Ordering::Relaxed), 2, "one per key");
    assert_eq!(
        s.flights.stats(),
        SingleFlightStats {
            executions: 2,
            joined: 9,
            cache_hits: 0
        }
    );
    assert_eq!(s.flights.in_flight(), 0);
    // Without a cache, the next call runs again.
    s.sim.block_on(s.get("a.jpg", TaskOptions::new())).unwrap();
    assert_eq!(s.started.load(Ordering::Relaxed), 3);
}

#[test]
fn every_caller_gets_the_same_shared_error() {
    let s = setup(None);
    let flights: Vec<_> = (0..3)
        .map(|_| s.get("missing.jpg", TaskOptions::new()))
        .collect();
    let errors: Vec<_> = s
        .sim
        .block_on(join_all(flights))
        .into_iter()
        .map(|r| r.expect_err("404"))
        .collect();
    assert!(
        matches!(&*errors[0], TaskError::Failed { error, attempts: 1 } if error == "404 missing.jpg")
    );
    assert!(errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])));
    assert_eq!(s.started.load(Ordering::Relaxed), 1);
}

#[test]
fn a_dropped_leader_does_not_cancel_the_followers_result() {
    let s = setup(None);
    let leader = s.get("a.jpg", TaskOptions::new());
    let follower = s.get("a.jpg", TaskOptions::new());
    let sim = s.sim.clone();
    let result = s.sim.block_on(async move {
        // Let the execution start, then drop the leader half-way.
        sim.sleep(Duration::from_millis(50)).await;
        drop(leader);
        follower.await
    });
    assert_eq!(result.unwrap(), "body of a.jpg");
    assert_eq!(s.finished.load(Ordering::Relaxed), 1);
}

#[test]
fn a_cancelled_leader_leaves_alone_and_the_execution_goes_on() {
    let s = setup(None);
    let token = CancellationToken::new();
    let leader = s.get("a.jpg", TaskOptions::new().cancellation(token.clone()));
    let follower = s.get("a.jpg", TaskOptions::new());
    let sim = s.sim.clone();
    let (leader_result, follower_result) = s.sim.block_on(async move {
        let cancel = async {
            sim.sleep(Duration::from_millis(50)).await;
            token.cancel();
        };
        let (_, leader, follower) = futures::join!(cancel, leader, follower);
        (leader, follower)
    });
    assert!(matches!(
        leader_result.as_ref().map_err(|e| &**e),
        Err(TaskError::Cancelled)
    ));
    assert_eq!(follower_result.unwrap(), "body of a.jpg");
    assert_eq!(s.finished.load(Ordering::Relaxed), 1);
}

#[test]
fn when_every_caller_has_gone_the_execution_is_cancelled() {
    let s = setup(None);
    let leader = s.get("a.jpg", TaskOptions::new());
    let follower = s.get("a.jpg", TaskOptions::new());
    let sim = s.sim.clone();
    s.sim.block_on(async move {
        sim.sleep(Duration::from_millis(50)).await;
        drop((leader, follower));
        sim.sleep(Duration::from_millis(500)).await;
    });
    assert_eq!(s.started.load(Ordering::Relaxed), 1);
    assert_eq!(s.finished.load(Ordering::Relaxed), 0, "cancelled mid-way");
    assert_eq!(s.pool.stats().cancelled, 1);
    // The key is free again.
    assert_eq!(
        s.get("a.jpg", TaskOptions::new()).role(),
        FlightRole::Leader
    );
}

#[test]
fn a_ttl_cache_serves_recent_results_on_the_pool_clock() {
    let s = setup(Some(Duration::from_secs(2)));
    s.sim.block_on(s.get("a.jpg", TaskOptions::new())).unwrap();
    s.sim.advance(Duration::from_secs(1));
    let cached = s.get("a.jpg", TaskOptions::new());
    assert_eq!(cached.role(), FlightRole::Cached);
    assert_eq!(s.sim.block_on(cached).unwrap(), "body of a.jpg");
    // Errors are not cached by default.
    s.sim
        .block_on(s.get("missing.jpg", TaskOptions::new()))
        .unwrap_err();
    assert_eq!(
        s.get("missing.jpg", TaskOptions::new()).role(),
        FlightRole::Leader
    );
    s.sim.advance(Duration::from_secs(2));
    assert_eq!(
        s.get("a.jpg", TaskOptions::new()).role(),
        FlightRole::Leader,
        "expired"
    );
    assert_eq!(s.flights.stats().cache_hits, 1);
}

#[test]
fn errors_are_cached_when_asked() {
    let s = setup(None);
    let flights = s
        .flights
        .clone()
        .with_ttl(Duration::from_secs(5))
        .cache_errors(true);
    let s = Setup { flights, ..s };
    s.sim
        .block_on(s.get("missing.jpg", TaskOptions::new()))
        .unwrap_err();
    let again = s.get("missing.jpg", TaskOptions::new());
    assert_eq!(again.role(), FlightRole::Cached);
    assert!(s.sim.block_on(again).is_err());
    assert_eq!(s.started.load(Ordering::Relaxed), 1);
}

/// Real threads: callers of a few keys join, await, cancel and abandon flights at once while
/// another thread reads `in_flight`. Every awaited flight resolves, nothing deadlocks (an
/// abandoned execution takes the table's lock as it is dropped), and when every caller is
/// done the table is empty.
#[test]
fn callers_on_many_threads_leave_an_empty_table() {
    use std::sync::mpsc;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let pool = runtime.block_on(async { Pool::builder().concurrency(4).build().unwrap() });
    let flights = SingleFlight::<u32, u32, pool_core::Transient<&str>>::new(pool.clone());
    let (done, finished) = mpsc::channel();
    let callers: Vec<_> = (0..4u32)
        .map(|thread| {
            let (flights, done) = (flights.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(u64::from(thread));
                for _ in 0..2_000 {
                    let key = rng.u32(0..8);
                    let token = CancellationToken::new();
                    let flight = flights.run(
                        key,
                        move || async move {
                            tokio::task::yield_now().await;
                            Ok(key)
                        },
                        TaskOptions::new().cancellation(token.clone()),
                    );
                    match rng.u8(0..4) {
                        0 => drop(flight),
                        1 => {
                            token.cancel();
                            let result = futures::executor::block_on(flight);
                            assert!(
                                result.is_ok()
                                    || matches!(*result.unwrap_err(), TaskError::Cancelled)
                            );
                        }
                        _ => assert_eq!(futures::executor::block_on(flight).unwrap(), key),
                    }
                }
                done.send(()).unwrap();
            })
        })
        .collect();
    let reader = {
        let flights = flights.clone();
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                assert!(flights.in_flight() <= 8);
            }
        })
    };
    drop(done);
    for _ in &callers {
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("a caller thread finished (no deadlock)");
    }
    callers.into_iter().for_each(|c| c.join().unwrap());
    reader.join().unwrap();
    assert_eq!(flights.in_flight(), 0);
    runtime.block_on(pool.drain());
    assert!(pool.stats().in_balance());
}
