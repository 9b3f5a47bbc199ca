//! `stop()` racing the engine's own transitions, on real threads.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, ErrorClass, Jitter, Pool, Precheck, Rejection,
    TaskHandle, TaskInfo, TaskOptions,
};

use super::{kind, runtime, within, Failure};

/// Parks every task once, a millisecond ahead, the first time it asks for a slot.
#[derive(Debug, Default)]
pub(crate) struct DeferOnce {
    seen: Mutex<HashSet<pool_core::TaskId>>,
}

impl Admission for DeferOnce {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(async { Ok(AdmissionPermit::empty()) })
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        if self.seen.lock().unwrap().insert(task.id) {
            Precheck::ParkUntil(Instant::now() + Duration::from_millis(1))
        } else {
            Precheck::Proceed
        }
    }
}

/// Three threads enqueue 3,000 tasks each (half fail and retry every millisecond, every task
/// is deferred once by admission) and `stop()` lands 0–10 ms later: in the gap between the
/// engine deciding to retry (or defer) a task and parking it. Every round must end with
/// `stop()` and `drain()` returning, every handle resolved and the counters in balance.
#[test]
fn stop_racing_retries_and_deferrals_neither_hangs_nor_unbalances_the_counters() {
    let runtime = runtime(4);
    let mut rng = fastrand::Rng::with_seed(15);
    for round in 0..12 {
        let stop_after = Duration::from_micros(rng.u64(0..10_000));
        runtime.block_on(async {
            let pool = Pool::builder()
                .concurrency(64)
                .retries(5)
                .retry_delay(Duration::from_millis(1))
                .jitter(Jitter::None)
                .no_pressure_rule()
                .no_retry_budget()
                .admission(DeferOnce::default())
                .build()
                .unwrap();
            let producers: Vec<_> = (0..3)
                .map(|_| {
                    let pool = pool.clone();
                    std::thread::spawn(move || enqueue_half_failing(&pool, 3_000))
                })
                .collect();
            tokio::time::sleep(stop_after).await;
            within("stop()", pool.stop()).await;
            within("drain() after stop", pool.drain()).await;
            let mut kinds = std::collections::BTreeMap::new();
            for producer in producers {
                for handle in producer.join().expect("producer thread") {
                    let result = within("a handle", handle).await;
                    *kinds.entry(kind(&result)).or_insert(0) += 1;
                }
            }
            let stats = pool.stats();
            assert!(stats.in_balance(), "round {round}: {stats:?}");
            assert_eq!(
                (stats.queued, stats.active, stats.retrying, stats.deferred),
                (0, 0, 0, 0),
                "round {round}: {stats:?}"
            );
            assert_eq!(
                kinds.values().sum::<u64>(),
                9_000,
                "round {round}: {kinds:?}"
            );
        });
    }
}

fn enqueue_half_failing(pool: &Pool, tasks: u32) -> Vec<TaskHandle<u32, Failure>> {
    (0..tasks)
        .map(|i| {
            pool.enqueue(
                move || async move {
                    if i % 2 == 0 {
                        Err(Failure(ErrorClass::Retryable))
                    } else {
                        Ok(i)
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect()
}
