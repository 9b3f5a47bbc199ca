//! The intake opening and closing under producers on their own threads: a pool of a few
//! slots whose runners keep running dry, so that the intake closes (a slot left free) and
//! opens again (every slot taken) thousands of times while tasks are pushed into it.

use std::time::Duration;

use pool_core::{CancellationToken, Pool, TaskError, TaskHandle, TaskOptions};

use super::{runtime, within, Failure};

type Handle = TaskHandle<u32, Failure>;

/// Enqueues bursts of 1–24 no-op tasks (one in eight with a token, cancelled by the
/// producer a moment later), pausing 0–50 µs between bursts so the runners run dry.
fn produce(pool: &Pool, seed: u64, bursts: usize) -> Vec<(Handle, bool)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut handles = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..bursts {
        for _ in 0..rng.usize(1..25) {
            let mut options = TaskOptions::new().priority(rng.i32(0..3));
            let cancellable = rng.u8(0..8) == 0;
            if cancellable {
                let token = CancellationToken::new();
                tokens.push(token.clone());
                options = options.cancellation(token);
            }
            let value = rng.u32(..);
            handles.push((
                pool.enqueue(move || async move { Ok::<_, Failure>(value) }, options),
                cancellable,
            ));
        }
        if let Some(token) = tokens.pop() {
            token.cancel();
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..50)));
    }
    handles
}

/// Three producers × 400 bursts into pools of 1–4 slots; in every other round `stop` lands
/// while they produce. Every handle must resolve (a task left in the intake would hang its
/// handle), each the way it could, and the counters must add up with nothing left queued.
#[test]
fn tasks_pushed_while_the_intake_closes_are_never_left_behind() {
    let runtime = runtime(2);
    for round in 0..8u64 {
        runtime.block_on(async {
            let pool = Pool::builder()
                .concurrency(1 + round as usize % 4)
                .build()
                .unwrap();
            let producers: Vec<_> = (0..3)
                .map(|p| {
                    let pool = pool.clone();
                    std::thread::spawn(move || produce(&pool, round * 10 + p, 400))
                })
                .collect();
            let stops = !round.is_multiple_of(2);
            if stops {
                tokio::time::sleep(Duration::from_millis(2 + round)).await;
                within("stop()", pool.stop()).await;
            }
            let mut resolved = 0u64;
            for producer in producers {
                for (handle, cancellable) in producer.join().expect("producer thread") {
                    match within("a handle", handle).await {
                        Ok(_) => {}
                        Err(TaskError::Cancelled) if cancellable => {}
                        Err(TaskError::Stopped) if stops => {}
                        Err(error) => panic!("round {round}: ended {error:?}"),
                    }
                    resolved += 1;
                }
            }
            within("drain()", pool.drain()).await;
            let stats = pool.stats();
            assert!(stats.in_balance(), "round {round}: {stats:?}");
            assert_eq!(
                (stats.queued, stats.active, stats.enqueued),
                (0, 0, resolved),
                "round {round}: {stats:?}"
            );
            assert_eq!(stats.resolved(), resolved, "round {round}: {stats:?}");
        });
    }
}
