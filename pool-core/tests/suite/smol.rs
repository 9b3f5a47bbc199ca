//! The same pool on a second real runtime: async-executor with async-io timers.
#![cfg(feature = "smol")]

use std::sync::Arc;
use std::time::Duration;

use pool_core::{Pool, SmolExecutor, TaskError, TaskOptions, Transient};

#[test]
fn tasks_run_retry_and_stop_on_smol() {
    let executor = Arc::new(async_executor::Executor::new());
    let pool = Pool::builder()
        .executor(SmolExecutor::new(executor.clone()))
        .concurrency(3)
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    futures::executor::block_on(executor.run(async {
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let a = attempts.clone();
        let flaky = pool.enqueue(
            move || {
                let n = a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(Transient("flaky"))
                    } else {
                        Ok(n)
                    }
                }
            },
            TaskOptions::new(),
        );
        assert_eq!(flaky.await.unwrap(), 2);
        let many: Vec<_> = (0..100u32)
            .map(|i| {
                pool.enqueue(
                    move || async move { Ok::<_, Transient<&str>>(i) },
                    TaskOptions::new(),
                )
            })
            .collect();
        let sum: u32 = futures::future::join_all(many)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .sum();
        assert_eq!(sum, 4_950);
        pool.pause();
        let queued = pool.enqueue(|| async { Ok::<_, Transient<&str>>(0) }, TaskOptions::new());
        pool.stop().await;
        assert!(matches!(queued.await, Err(TaskError::Stopped)));
    }));
}
