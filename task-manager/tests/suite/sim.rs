//! Runs on pool-core's deterministic executor, over many seeded schedules: no tokio runtime.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pool_core::{Executor, Permanent, SimExecutor, TaskError};
use task_manager::TaskManager;

fn manager_on(sim: &SimExecutor, concurrency: usize, lookahead: usize) -> TaskManager {
    TaskManager::builder()
        .executor(sim.clone())
        .concurrency(concurrency)
        .lookahead(lookahead)
        .retries(0)
        .build()
        .expect("valid settings")
}

#[test]
fn results_keep_input_order_and_every_item_resolves_under_any_schedule() {
    for seed in 0..20 {
        let sim = SimExecutor::with_seed(seed);
        let manager = manager_on(&sim, 1 + seed as usize % 7, seed as usize % 3);
        let clock = sim.clone();
        let mut rng = fastrand::Rng::with_seed(seed);
        let durations: Arc<Vec<u64>> = Arc::new((0..60).map(|_| rng.u64(0..20)).collect());
        let results = sim.block_on(
            manager
                .process_corresponding(0..60usize, move |i| {
                    let sleep = clock.sleep(Duration::from_millis(durations[i]));
                    async move {
                        sleep.await;
                        if i % 9 == 4 {
                            Err(Permanent(i))
                        } else {
                            Ok(i)
                        }
                    }
                })
                .into_future(),
        );
        assert_eq!(results.len(), 60, "seed {seed}");
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(value) => assert_eq!(value, i, "seed {seed}"),
                Err(TaskError::Failed { error, .. }) => assert_eq!(error.0, i, "seed {seed}"),
                Err(other) => panic!("seed {seed}: item {i} resolved with {other:?}"),
            }
        }
        assert!(manager.stats().pool.in_balance(), "seed {seed}");
    }
}

#[test]
fn an_endless_input_stays_within_the_window_under_any_schedule() {
    for seed in 0..20 {
        let sim = SimExecutor::with_seed(seed);
        let (concurrency, lookahead) = (1 + seed as usize % 5, seed as usize % 4);
        let manager = manager_on(&sim, concurrency, lookahead);
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pulled);
        let clock = sim.clone();
        let mut results = manager.process_iterable(
            (0u64..).inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            move |n| {
                let sleep = clock.sleep(Duration::from_millis(n % 13));
                async move {
                    sleep.await;
                    Ok::<_, Permanent<String>>(n)
                }
            },
        );
        let most_ahead = sim.block_on(async {
            let mut most_ahead = 0;
            for consumed in 1..=200 {
                results.next().await.expect("endless input");
                most_ahead = most_ahead.max(pulled.load(Ordering::SeqCst) - consumed);
            }
            most_ahead
        });
        assert!(
            most_ahead <= concurrency + lookahead,
            "seed {seed}: {most_ahead} ahead, window {}",
            concurrency + lookahead
        );
    }
}
