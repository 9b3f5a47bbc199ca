//! A rate limiter admitting from both runtime workers at once while producers on their own
//! threads enqueue: the single cell's schedule is read and written by whichever runner admits
//! next, so a lost update would let more attempts through than the rate allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pool_core::policy::{RateLimit, RateLimiter};
use pool_core::{ErrorClass, Executor, Pool, TaskOptions, TokioExecutor};

use super::{runtime, within, Failure};

/// Low enough that any machine able to run the suite offers the limiter more attempts a
/// second than this (a loaded debug run of this test offers thousands): the limit, not the
/// machine, sets the pace, so a limiter letting too many through shows however slow the run.
/// One per millisecond: the GCRA's interval is exact in nanoseconds.
const RATE: f64 = 1_000.0;
const BURST: u32 = 10;
const PRODUCERS: u32 = 3;
const TASKS_PER_PRODUCER: u32 = 300;

/// Three producers × 300 tasks through a pool of 8 slots limited to 1,000 attempts a second
/// (burst 10); one task in five fails its first attempt (a retry is admitted again), so
/// 1,080 attempts take at least a second. Every task succeeds exactly once, and **at every
/// attempt's start** the attempts started so far never outnumber what the rate allows since
/// the first enqueue (burst + rate × elapsed, + 1 for rounding).
///
/// Why the bound holds however slow the run: an attempt starts at or after the moment the
/// limiter admitted it (a parked task comes back at its booked moment or later), and the
/// moments admitted up to `t` are at most burst + rate × (t − first moment) + 1 by the GCRA.
/// A slow run only starts attempts later, which the bound allows. Why it fails however slow
/// the run: it is checked at each start, not only at the last (a slow run's elapsed time
/// would hide an excess by the end), and the rate is far below what the machine offers, so
/// a limiter admitting faster than the rate is ahead of the bound within the first tenth of
/// a second (with half the admissions skipping the schedule, it fails under load).
#[test]
fn a_rate_limiter_admitting_on_many_threads_never_exceeds_its_rate() {
    let runtime = runtime(2);
    runtime.block_on(async {
        let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
        let limiter = RateLimiter::new(RateLimit::new(RATE, BURST).unwrap(), executor);
        let pool = Pool::builder()
            .concurrency(8)
            .admission(limiter)
            .retry_delay(std::time::Duration::ZERO)
            .build()
            .unwrap();
        let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let began = Instant::now();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (pool, starts) = (pool.clone(), Arc::clone(&starts));
                std::thread::spawn(move || {
                    (0..TASKS_PER_PRODUCER)
                        .map(|i| {
                            let starts = Arc::clone(&starts);
                            let tried = Arc::new(AtomicU64::new(0));
                            let fails_once = (p * TASKS_PER_PRODUCER + i).is_multiple_of(5);
                            pool.enqueue(
                                move || {
                                    starts.lock().unwrap().push(Instant::now());
                                    let first = tried.fetch_add(1, Ordering::SeqCst) == 0;
                                    async move {
                                        if fails_once && first {
                                            Err(Failure(ErrorClass::Retryable))
                                        } else {
                                            Ok(i)
                                        }
                                    }
                                },
                                TaskOptions::new().retries(1),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut succeeded = 0u64;
        for producer in producers {
            for handle in producer.join().expect("producer thread") {
                within("a handle", handle)
                    .await
                    .expect("every task succeeds");
                succeeded += 1;
            }
        }
        within("drain()", pool.drain()).await;
        let stats = pool.stats();
        assert!(stats.in_balance(), "{stats:?}");
        let tasks = u64::from(PRODUCERS * TASKS_PER_PRODUCER);
        assert_eq!((succeeded, stats.succeeded), (tasks, tasks), "{stats:?}");
        let mut starts = std::mem::take(&mut *starts.lock().unwrap());
        assert_eq!(
            starts.len() as u64,
            tasks + tasks / 5,
            "one retry per failing task"
        );
        starts.sort_unstable();
        for (started, at) in (1u64..).zip(&starts) {
            let elapsed = at.duration_since(began);
            let allowed = f64::from(BURST) + RATE * elapsed.as_secs_f64() + 1.0;
            assert!(
                started as f64 <= allowed,
                "{started} attempts started within {elapsed:?} of the first enqueue: at most \
                 {allowed:.1} allowed ({} in all, the last at {:?})",
                starts.len(),
                starts.last().map(|last| last.duration_since(began)),
            );
        }
    });
}
