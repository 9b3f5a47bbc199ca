//! Observers that are slow must not stall the pool, and hear of a task before its handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use pool_core::{Buffered, Event, Observer, Pool, SimExecutor, TaskOptions, Transient};

/// Blocks on its first event until released, like an observer writing to a stalled sink.
#[derive(Debug)]
struct Stalled {
    release: Mutex<mpsc::Receiver<()>>,
    seen: Arc<AtomicUsize>,
}

impl Observer for Stalled {
    fn on_event(&self, _event: &Event) {
        if self.seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = self.release.lock().unwrap().recv();
        }
    }
}

#[test]
fn a_stalled_buffered_observer_does_not_stall_the_pool() {
    let (release, wait) = mpsc::channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let buffered = Buffered::new(
        Stalled {
            release: Mutex::new(wait),
            seen: seen.clone(),
        },
        8,
    );
    let sim = SimExecutor::new();
    let pool = Pool::builder()
        .executor(sim.clone())
        .observer(buffered.clone())
        .build()
        .unwrap();
    let done = sim.block_on(async {
        let handles: Vec<_> = (0..100u32)
            .map(|i| {
                pool.enqueue(
                    move || async move { Ok::<_, Transient<&str>>(i) },
                    TaskOptions::new(),
                )
            })
            .collect();
        let mut done = 0;
        for handle in handles {
            handle.await.unwrap();
            done += 1;
        }
        done
    });
    assert_eq!(
        done, 100,
        "every task finished while the observer was stuck"
    );
    assert!(
        buffered.dropped() > 0,
        "events beyond the buffer were dropped, not waited for"
    );
    release.send(()).unwrap();
    drop(pool);
    // The observer saw at most the first event plus what fit in the buffer.
    assert!(seen.load(Ordering::SeqCst) <= 1 + 8 + 1);
}

/// Collects the ids of finished tasks.
#[derive(Debug, Clone, Default)]
struct FinishedIds(Arc<Mutex<std::collections::HashSet<pool_core::TaskId>>>);

impl Observer for FinishedIds {
    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            self.0.lock().unwrap().insert(record.task.id);
        }
    }
}

#[test]
fn observers_hear_of_a_finished_task_before_its_handle_resolves() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let finished = FinishedIds::default();
        let pool = Pool::builder()
            .concurrency(16)
            .observer(finished.clone())
            .build()
            .unwrap();
        let handles: Vec<_> = (0..2_000u32)
            .map(|i| {
                pool.enqueue(
                    move || async move { Ok::<_, Transient<&str>>(i) },
                    TaskOptions::new(),
                )
            })
            .collect();
        for handle in handles {
            let id = handle.id();
            handle.await.unwrap();
            assert!(
                finished.0.lock().unwrap().contains(&id),
                "{id} resolved before its TaskFinished event"
            );
        }
    });
}
