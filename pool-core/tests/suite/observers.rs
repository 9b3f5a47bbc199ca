//! Observers that are slow must not stall the pool, and hear of a task before its handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use pool_core::{
    Buffered, Event, EventKind, Observer, Pool, PoolControl, SimExecutor, TaskOptions, Transient,
};

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

/// Wants only the kinds it is given (and, after attach, also `Paused`); writes down every
/// event it receives.
#[derive(Debug, Clone, Default)]
struct Picky {
    kinds: Vec<EventKind>,
    attached: Arc<std::sync::atomic::AtomicBool>,
    received: Arc<Mutex<Vec<EventKind>>>,
}

impl Observer for Picky {
    fn on_attach(&self, _pool: PoolControl) {
        self.attached.store(true, Ordering::SeqCst);
    }

    fn wants(&self, kind: EventKind) -> bool {
        self.kinds.contains(&kind)
            || (kind == EventKind::Paused && self.attached.load(Ordering::SeqCst))
    }

    fn on_event(&self, event: &Event) {
        self.received.lock().unwrap().push(event.kind());
    }
}

#[test]
fn each_observer_receives_only_the_kinds_it_wants() {
    let finished_only = Picky {
        kinds: vec![EventKind::TaskFinished],
        ..Picky::default()
    };
    let everything = FinishedIds::default();
    let sim = SimExecutor::new();
    let pool = Pool::builder()
        .executor(sim.clone())
        .observer(finished_only.clone())
        .observer(Buffered::new(
            Picky {
                kinds: vec![EventKind::TaskStarted],
                ..Picky::default()
            },
            64,
        ))
        .observer(everything.clone())
        .build()
        .unwrap();
    sim.block_on(async {
        let handles: Vec<_> = (0..10u32)
            .map(|i| {
                pool.enqueue(
                    move || async move { Ok::<_, Transient<&str>>(i) },
                    TaskOptions::new(),
                )
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });
    pool.pause();
    let received = finished_only.received.lock().unwrap().clone();
    assert_eq!(
        received
            .iter()
            .filter(|kind| **kind == EventKind::TaskFinished)
            .count(),
        10
    );
    assert_eq!(
        received.last(),
        Some(&EventKind::Paused),
        "what it wants is asked again after attach"
    );
    assert!(
        received
            .iter()
            .all(|kind| matches!(kind, EventKind::TaskFinished | EventKind::Paused)),
        "only what it wants: {received:?}"
    );
    assert_eq!(
        everything.0.lock().unwrap().len(),
        10,
        "an observer wanting everything still hears every task"
    );
}

#[test]
fn every_event_names_its_kind() {
    let kinds = [
        (Event::Paused, EventKind::Paused),
        (Event::Resumed, EventKind::Resumed),
        (Event::Stopped, EventKind::Stopped),
        (Event::Drained, EventKind::Drained),
        (
            Event::ConcurrencyChanged { from: 1, to: 2 },
            EventKind::ConcurrencyChanged,
        ),
    ];
    for (event, kind) in kinds {
        assert_eq!(event.kind(), kind);
    }
    assert_eq!(EventKind::ALL.len(), 11);
}

/// Reads each finished task through the view: what each accessor says, and the record it
/// makes.
#[derive(Debug, Clone, Default)]
struct Viewer(Arc<Mutex<Vec<(pool_core::TaskRecord, std::time::Duration)>>>);

impl Observer for Viewer {
    fn on_event(&self, event: &Event) {
        panic!("a finished task goes to on_task_finished only, not {event:?}");
    }

    fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::TaskFinished
    }

    fn on_task_finished(&self, task: &pool_core::FinishedTask<'_>) {
        let record = task.record();
        assert_eq!(task.task().id, record.task.id);
        assert_eq!(task.queued_at(), record.queued_at);
        assert_eq!(task.first_started_at(), record.first_started_at);
        assert_eq!(task.finished_at(), record.finished_at);
        assert_eq!(
            (task.queue_wait(), task.execution(), task.retry_delay()),
            (record.queue_wait, record.execution, record.retry_delay)
        );
        assert_eq!(
            (task.attempts(), task.outcome()),
            (record.attempts, record.outcome)
        );
        self.0.lock().unwrap().push((record, task.total()));
    }
}

/// Keeps every `TaskFinished` record it is given.
#[derive(Debug, Clone, Default)]
struct Records(Arc<Mutex<Vec<pool_core::TaskRecord>>>);

impl Observer for Records {
    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            self.0.lock().unwrap().push(record.clone());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_finished_task_view_reads_what_the_owned_record_holds() {
    use std::time::Duration;
    let (viewer, records) = (Viewer::default(), Records::default());
    let pool = Pool::builder()
        .concurrency(2)
        .retries(1)
        .retry_delay(Duration::from_millis(100))
        .jitter(pool_core::Jitter::None)
        .observer(viewer.clone())
        .observer(records.clone())
        .build()
        .unwrap();
    // Six tasks on two slots (most wait), every third failing its first attempt; a seventh
    // cancelled while queued (never started).
    let handles: Vec<_> = (0..6u64)
        .map(|n| {
            let tries = Arc::new(AtomicUsize::new(0));
            let labels = pool_core::Metadata::new().with("n", n.to_string());
            pool.enqueue(
                move || {
                    let first = tries.fetch_add(1, Ordering::SeqCst) == 0;
                    async move {
                        tokio::time::sleep(Duration::from_millis(10 * (n + 1))).await;
                        if first && n % 3 == 0 {
                            Err(Transient("once"))
                        } else {
                            Ok(n)
                        }
                    }
                },
                TaskOptions::new().metadata(labels),
            )
        })
        .collect();
    let token = pool_core::CancellationToken::new();
    let late = pool.enqueue(
        || async { Ok::<_, Transient<&str>>(9) },
        TaskOptions::new().cancellation(token.clone()),
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    token.cancel();
    let _ = late.await;
    for handle in handles {
        let _ = handle.await;
    }
    let viewed = viewer.0.lock().unwrap().clone();
    let owned = records.0.lock().unwrap().clone();
    assert_eq!(viewed.len(), 7);
    assert_eq!(viewed.len(), owned.len());
    for ((from_view, total), record) in viewed.iter().zip(&owned) {
        // The same task, in the same order, with the same figures: the view's record and the
        // event's are built from one timeline.
        assert_eq!(format!("{from_view:?}"), format!("{record:?}"));
        assert_eq!(*total, record.total());
    }
    assert!(owned.iter().any(|r| r.first_started_at.is_none()));
    assert!(owned
        .iter()
        .any(|r| r.queue_wait > Duration::ZERO && r.total() > r.execution));
}

/// Wants `kinds`, and says whether it reads labels.
#[derive(Debug)]
struct Declares {
    kinds: &'static [EventKind],
    reads_labels: bool,
}

impl Observer for Declares {
    fn on_event(&self, _event: &Event) {}

    fn wants(&self, kind: EventKind) -> bool {
        self.kinds.contains(&kind)
    }

    fn reads_labels(&self) -> bool {
        self.reads_labels
    }
}

#[test]
fn a_pool_reads_labels_only_if_an_observer_of_tasks_says_it_does() {
    let reads = |observers: Vec<Declares>| {
        let mut builder = Pool::builder().executor(SimExecutor::new());
        for observer in observers {
            builder = builder.observer(observer);
        }
        builder.build().unwrap().reads_labels()
    };
    let finished = &[EventKind::TaskFinished][..];
    let limits = &[EventKind::ConcurrencyChanged][..];
    assert!(!reads(vec![]), "no observer");
    let counting = Declares {
        kinds: finished,
        reads_labels: false,
    };
    assert!(!reads(vec![counting]), "one that says it does not");
    let labelling = Declares {
        kinds: finished,
        reads_labels: true,
    };
    assert!(reads(vec![labelling]), "one that says it does");
    let no_tasks = Declares {
        kinds: limits,
        reads_labels: true,
    };
    assert!(!reads(vec![no_tasks]), "it hears of no task");
    // Wrapped, the observer answers for itself.
    let buffered = Buffered::new(
        Declares {
            kinds: finished,
            reads_labels: false,
        },
        8,
    );
    let pool = Pool::builder()
        .executor(SimExecutor::new())
        .observer(buffered)
        .build()
        .unwrap();
    assert!(!pool.reads_labels());
}
