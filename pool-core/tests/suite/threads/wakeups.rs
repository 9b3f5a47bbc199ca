//! Wakeups fired from other OS threads racing the engine: the parking, a cancellation, and
//! `stop()` — every task resolves exactly once and the counters balance.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, Pool, Precheck, Rejection, TaskInfo,
    TaskOptions, Transient, Wakeup,
};

use super::{runtime, within};

/// Parks every task once with a wakeup (safety net: a minute) and hands the wakeup to the
/// test's waker threads.
#[derive(Debug, Default)]
struct ParkOnce {
    seen: Mutex<HashSet<pool_core::TaskId>>,
    wakeups: Mutex<Vec<Wakeup>>,
}

impl Admission for ParkOnce {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(async { Ok(AdmissionPermit::empty()) })
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        if !self.seen.lock().unwrap().insert(task.id) {
            return Precheck::Proceed;
        }
        let wakeup = Wakeup::new();
        self.wakeups.lock().unwrap().push(wakeup.clone());
        Precheck::ParkUntilWoken(Instant::now() + Duration::from_secs(60), wakeup)
    }
}

/// 3 producer threads enqueue 1,000 tasks each, every one parked once with a wakeup; two
/// waker threads fire the wakeups in random order as they appear (some before the engine
/// has parked the task); a tenth of the tasks are cancelled from another thread; in some
/// rounds `stop()` lands mid-way. Each round: every handle resolves once (done, cancelled
/// or stopped), no hang, counters in balance and empty.
#[test]
fn wakeups_from_other_threads_race_parking_cancellation_and_stop() {
    let runtime = runtime(4);
    let mut rng = fastrand::Rng::with_seed(21);
    for round in 0..6 {
        let stop_after = (round % 2 == 1).then(|| Duration::from_micros(rng.u64(0..20_000)));
        runtime.block_on(async {
            let policy = Arc::new(ParkOnce::default());
            let pool = Pool::builder()
                .concurrency(16)
                .retries(0)
                .admission_arc(policy.clone())
                .build()
                .unwrap();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let wakers: Vec<_> = (0..2)
                .map(|seed| {
                    let (policy, done) = (policy.clone(), done.clone());
                    std::thread::spawn(move || {
                        let mut rng = fastrand::Rng::with_seed(seed);
                        loop {
                            let batch: Vec<Wakeup> = {
                                let mut wakeups = policy.wakeups.lock().unwrap();
                                let n = wakeups.len().min(rng.usize(1..64));
                                (0..n)
                                    .map(|_| {
                                        let at = rng.usize(0..wakeups.len());
                                        wakeups.swap_remove(at)
                                    })
                                    .collect()
                            };
                            for wakeup in &batch {
                                wakeup.wake();
                            }
                            if batch.is_empty() {
                                if done.load(std::sync::atomic::Ordering::Acquire) {
                                    return;
                                }
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            let producers: Vec<_> = (0..3)
                .map(|_| {
                    let pool = pool.clone();
                    std::thread::spawn(move || {
                        (0..1_000u32)
                            .map(|i| {
                                let token = CancellationToken::new();
                                let handle = pool.enqueue(
                                    move || async move { Ok::<_, Transient<&str>>(i) },
                                    TaskOptions::new().cancellation(token.clone()),
                                );
                                (handle, (i % 10 == 0).then_some(token))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut handles = Vec::new();
            for producer in producers {
                handles.extend(producer.join().expect("producer thread"));
            }
            let tokens: Vec<_> = handles.iter().filter_map(|(_, t)| t.clone()).collect();
            let canceller = std::thread::spawn(move || tokens.iter().for_each(|t| t.cancel()));
            if let Some(after) = stop_after {
                tokio::time::sleep(after).await;
                within("stop()", pool.stop()).await;
            }
            let (mut ok, mut cancelled, mut stopped) = (0, 0, 0);
            for (handle, _) in handles {
                match within("a handle", handle).await {
                    Ok(_) => ok += 1,
                    Err(pool_core::TaskError::Cancelled) => cancelled += 1,
                    Err(pool_core::TaskError::Stopped) => stopped += 1,
                    Err(other) => panic!("round {round}: unexpected {other:?}"),
                }
            }
            canceller.join().expect("canceller thread");
            done.store(true, std::sync::atomic::Ordering::Release);
            for waker in wakers {
                waker.join().expect("waker thread");
            }
            within("drain()", pool.drain()).await;
            assert_eq!(ok + cancelled + stopped, 3_000, "round {round}");
            assert!(cancelled <= 300, "round {round}: {cancelled} cancelled");
            if stop_after.is_none() {
                assert_eq!(stopped, 0, "round {round}");
            }
            let stats = pool.stats();
            assert!(stats.in_balance(), "round {round}: {stats:?}");
            assert_eq!(
                (stats.queued, stats.active, stats.retrying, stats.deferred),
                (0, 0, 0, 0),
                "round {round}: {stats:?}"
            );
        });
    }
}
