//! `Duration::MAX` in the engine means "never" (a century ahead), never a panic: a task's
//! timeout, a retry delay, a sleep on the pool's executor. On tokio (paused time) and the
//! virtual-time executor, where a century passes at once when nothing else can run.

use crate::support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{Jitter, Pool, TaskOptions, Transient};
use support::Env;

on_every_executor!(
    a_timeout_of_duration_max_never_fires,
    a_retry_delay_of_duration_max_waits_a_century_then_retries,
);

async fn a_timeout_of_duration_max_never_fires(env: Env) {
    let pool = env.builder().timeout(Duration::MAX).build().unwrap();
    let sleeper = env.clone();
    let by_pool = pool.enqueue(
        move || {
            let env = sleeper.clone();
            async move {
                env.sleep(Duration::from_secs(3_600)).await;
                Ok::<_, Transient<&str>>(1)
            }
        },
        TaskOptions::new(),
    );
    let by_task = pool.enqueue(
        || async { Ok::<_, Transient<&str>>(2) },
        TaskOptions::new().timeout(Duration::MAX),
    );
    assert_eq!(by_pool.await.unwrap(), 1);
    assert_eq!(by_task.await.unwrap(), 2);
    env.sleep(Duration::MAX).await;
    pool.drain().await;
    assert!(pool.stats().in_balance());
}

async fn a_retry_delay_of_duration_max_waits_a_century_then_retries(env: Env) {
    let built = env
        .builder()
        .retries(1)
        .retry_delay(Duration::MAX)
        .max_retry_delay(Duration::MAX)
        .jitter(Jitter::None)
        .no_retry_budget()
        .build();
    // A builder may refuse "forever" with a typed error; if it accepts it, the engine must
    // take it as "a century from now".
    let Ok(pool): Result<Pool, _> = built else {
        return;
    };
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let start = env.now();
    let handle = pool.enqueue(
        move || {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err(Transient("once"))
                } else {
                    Ok(3)
                }
            }
        },
        TaskOptions::new(),
    );
    assert_eq!(handle.await.unwrap(), 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert!(env.now().duration_since(start) >= Duration::from_secs(99 * 365 * 24 * 3_600));
    let stats = pool.stats();
    assert!(stats.in_balance(), "{stats:?}");
    assert_eq!((stats.retries, stats.succeeded), (1, 1));
}
