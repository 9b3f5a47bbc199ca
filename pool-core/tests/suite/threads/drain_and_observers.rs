//! What `drain` and a task's handle promise an observer, on real threads. `drain` returns
//! once the pool's counters account for every task; the `TaskFinished` of the last ones may
//! still be on its way to the observers from the threads that ran them. A resolved handle
//! means the observers have seen its task.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::{Event, Observer, Pool, TaskId, TaskOptions};

use super::{runtime, within};

/// The tasks observers were told about; slow now and then, so that a handle resolved before
/// its task was reported is caught.
#[derive(Debug, Clone, Default)]
struct FinishedTasks(Arc<Mutex<HashSet<TaskId>>>);

impl Observer for FinishedTasks {
    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            if record.task.id.0 % 7 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.0.lock().unwrap().insert(record.task.id);
        }
    }
}

#[test]
fn after_drain_the_counters_are_whole_and_after_each_handle_the_observers_are() {
    const ROUNDS: u64 = 10;
    const TASKS: u64 = 100;
    runtime(2).block_on(async {
        let observed = FinishedTasks::default();
        let pool = Pool::builder()
            .concurrency(8)
            .observer(observed.clone())
            .build()
            .unwrap();
        for round in 1..=ROUNDS {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| {
                    let task = move || async move {
                        tokio::task::yield_now().await;
                        Ok::<_, std::io::Error>(i)
                    };
                    pool.enqueue(task, TaskOptions::new())
                })
                .collect();
            // Awaited handles: each resolved after the observers were told of its task.
            let mut handles = handles.into_iter();
            for handle in handles.by_ref().take(TASKS as usize / 2) {
                let id = handle.id();
                within("a handle", handle).await.unwrap();
                assert!(
                    observed.0.lock().unwrap().contains(&id),
                    "{id:?} unreported"
                );
            }
            // Unawaited handles: drain alone says the work is done, and the counters agree.
            within("drain", pool.drain()).await;
            let stats = pool.stats();
            assert_eq!(stats.succeeded, round * TASKS, "{stats:?}");
            assert!(stats.in_balance(), "{stats:?}");
            for handle in handles {
                let id = handle.id();
                within("a handle", handle).await.unwrap();
                assert!(
                    observed.0.lock().unwrap().contains(&id),
                    "{id:?} unreported"
                );
            }
        }
    });
}

/// The places in finishing order the pool gives its finished tasks, as observers read them.
#[derive(Debug, Clone, Default)]
struct Sequences(Arc<Mutex<Vec<u64>>>);

impl Observer for Sequences {
    fn on_event(&self, _event: &Event) {}

    fn wants(&self, kind: pool_core::EventKind) -> bool {
        kind == pool_core::EventKind::TaskFinished
    }

    fn on_task_finished(&self, task: &pool_core::FinishedTask<'_>) {
        self.0.lock().unwrap().push(task.sequence());
    }
}

/// However tasks end — succeeded, failed after retries, cancelled or past their deadline
/// while they wait, stopped in the queue or in retry backoff — and on whichever thread, the
/// pool numbers them 0, 1, 2, … with no number given twice or skipped.
#[test]
fn every_finished_task_has_its_own_place_in_finishing_order() {
    const TASKS: u64 = 2_000;
    runtime(2).block_on(async {
        let sequences = Sequences::default();
        let pool = Pool::builder()
            .concurrency(4)
            .retries(2)
            .retry_delay(Duration::from_millis(1))
            .observer(sequences.clone())
            .build()
            .unwrap();
        let token = pool_core::CancellationToken::new();
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                let mut options = TaskOptions::new();
                match i % 10 {
                    1 => options = options.cancellation(token.clone()),
                    2 => options = options.deadline(std::time::Instant::now()),
                    _ => {}
                }
                let task = move || async move {
                    tokio::task::yield_now().await;
                    match i % 10 {
                        3 => Err(super::Failure(pool_core::ErrorClass::Retryable)),
                        4 => Err(super::Failure(pool_core::ErrorClass::Fatal)),
                        _ => Ok(i),
                    }
                };
                pool.enqueue(task, options)
            })
            .collect();
        token.cancel();
        // Stopped while some still wait (queued, or in backoff between retries).
        tokio::time::sleep(Duration::from_millis(2)).await;
        within("stop", pool.stop()).await;
        for handle in handles {
            let _ = within("a handle", handle).await;
        }
        within("drain", pool.drain()).await;
        let stats = pool.stats();
        let resolved = stats.succeeded + stats.failed + stats.cancelled + stats.stopped_tasks;
        assert_eq!(resolved, TASKS, "{stats:?}");
        assert!(stats.stopped_tasks > 0 && stats.cancelled > 0, "{stats:?}");
        let mut seen = sequences.0.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..TASKS).collect::<Vec<_>>(), "{stats:?}");
    });
}
