//! A rate limiter admitting from both runtime workers at once while producers on their own
//! threads enqueue: the single cell's schedule is read and written by whichever runner admits
//! next, so a lost update would let more attempts through than the rate allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pool_core::policy::{RateLimit, RateLimiter};
use pool_core::{ErrorClass, Executor, Pool, TaskOptions, TokioExecutor};

use super::{runtime, within, Failure};

const RATE: f64 = 40_000.0;
const BURST: u32 = 64;

/// Three producers × 1,500 tasks through a pool of 8 slots limited to 40,000 attempts a
/// second (burst 64); one task in five fails its first attempt (a retry is admitted again).
/// Every task succeeds exactly once, and the attempts admitted never outnumber what the rate
/// allows between the first enqueue and the last attempt's start (burst + rate × elapsed):
/// delays can only make fewer.
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
        let attempts = Arc::new(AtomicU64::new(0));
        let last_start = Arc::new(Mutex::new(None::<Instant>));
        let began = Instant::now();
        let producers: Vec<_> = (0..3u32)
            .map(|p| {
                let (pool, attempts, last_start) =
                    (pool.clone(), Arc::clone(&attempts), Arc::clone(&last_start));
                std::thread::spawn(move || {
                    (0..1_500u32)
                        .map(|i| {
                            let (attempts, last_start) =
                                (Arc::clone(&attempts), Arc::clone(&last_start));
                            let tried = Arc::new(AtomicU64::new(0));
                            let fails_once = (p * 1_500 + i) % 5 == 0;
                            pool.enqueue(
                                move || {
                                    attempts.fetch_add(1, Ordering::SeqCst);
                                    let now = Instant::now();
                                    let mut last = last_start.lock().unwrap();
                                    *last = Some(last.map_or(now, |last| last.max(now)));
                                    drop(last);
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
        assert_eq!((succeeded, stats.succeeded), (4_500, 4_500), "{stats:?}");
        let attempts = attempts.load(Ordering::SeqCst);
        assert_eq!(attempts, 4_500 + 900, "one retry per failing task");
        let elapsed = last_start.lock().unwrap().expect("attempts ran") - began;
        let allowed = f64::from(BURST) + RATE * elapsed.as_secs_f64() + 1.0;
        assert!(
            attempts as f64 <= allowed,
            "{attempts} attempts admitted in {elapsed:?}: at most {allowed:.0} allowed"
        );
    });
}
