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
