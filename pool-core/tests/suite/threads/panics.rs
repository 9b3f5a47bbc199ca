//! Panic safety as a property: a panic from any user code — the closure, its future, their
//! `Drop`, the classifier, an observer, an admission policy or its permit — resolves at most
//! the task it belongs to, leaks no slot, and leaves the pool running. Each source is tried
//! with one slot and an innocent task queued behind the panicking one (the one a runner claims
//! next), on a multi-threaded runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, ErrorClass, Event, Metadata, Observer, Pool,
    PoolBuilder, Precheck, Rejection, TaskInfo, TaskOptions,
};

use super::{kind, runtime, within, Failure};

/// Where a booby-trapped admission policy panics, for tasks labelled `trap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trap {
    Precheck,
    AcquireCall,
    AcquirePoll,
    PermitDrop,
}

#[derive(Debug)]
struct Booby(Trap);

fn trapped(task: &TaskInfo) -> bool {
    task.metadata.get("trap").is_some()
}

struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

impl Admission for Booby {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        let trap = trapped(task).then_some(self.0);
        if trap == Some(Trap::AcquireCall) {
            panic!("acquire called");
        }
        Box::pin(async move {
            match trap {
                Some(Trap::AcquirePoll) => panic!("acquire polled"),
                Some(Trap::PermitDrop) => {
                    Ok(AdmissionPermit::holding(PanicOnDrop("permit dropped")))
                }
                _ => Ok(AdmissionPermit::empty()),
            }
        })
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        if trapped(task) && self.0 == Trap::Precheck {
            panic!("precheck");
        }
        Precheck::Proceed
    }
}

/// Panics on the first event about a trapped task (and is muted for it).
#[derive(Debug)]
struct PanickingObserver;

impl Observer for PanickingObserver {
    fn on_event(&self, event: &Event) {
        if let Event::TaskStarted { task, .. } = event {
            if trapped(task) {
                panic!("observer");
            }
        }
    }
}

fn trap_label() -> TaskOptions {
    TaskOptions::new().metadata(Metadata::new().with("trap", "yes"))
}

/// Runs the trapped task `enqueue_trap` with one slot and an innocent task queued behind it;
/// checks what the trapped task resolved with (`expected`: a [`kind`] name), that the
/// innocent one ran, that no slot leaked, and that the pool still runs tasks.
fn contained(
    source: &str,
    builder: impl FnOnce(PoolBuilder) -> PoolBuilder,
    enqueue_trap: impl FnOnce(&Pool) -> pool_core::TaskHandle<u32, Failure>,
    expected: &[&str],
) {
    runtime(2).block_on(async {
        let pool = builder(Pool::builder().concurrency(1).retries(0))
            .build()
            .unwrap();
        let trap = enqueue_trap(&pool);
        let innocent = pool.enqueue(|| async { Ok::<_, Failure>(7) }, TaskOptions::new());
        let trapped = within(source, trap).await;
        assert!(
            expected.contains(&kind(&trapped)),
            "{source}: the trapped task resolved {:?}, expected one of {expected:?}",
            kind(&trapped)
        );
        assert_eq!(
            within(source, innocent).await.ok(),
            Some(7),
            "{source}: the innocent task queued behind it must run"
        );
        within(source, pool.drain()).await;
        let after = pool.enqueue(|| async { Ok::<_, Failure>(8) }, TaskOptions::new());
        assert_eq!(within(source, after).await.ok(), Some(8), "{source}");
        within(source, pool.stop()).await;
        let stats = pool.stats();
        assert!(stats.in_balance(), "{source}: {stats:?}");
        assert_eq!(stats.active, 0, "{source}: a slot leaked: {stats:?}");
        assert_eq!(stats.resolved(), 3, "{source}: {stats:?}");
    });
}

fn plain(pool: &Pool, options: TaskOptions) -> pool_core::TaskHandle<u32, Failure> {
    pool.enqueue(|| async { Ok::<_, Failure>(1) }, options)
}

#[test]
fn a_panicking_admission_precheck_resolves_only_its_task() {
    contained(
        "precheck",
        |b| b.admission(Booby(Trap::Precheck)),
        |pool| plain(pool, trap_label()),
        &["panicked"],
    );
}

#[test]
fn a_panicking_admission_acquire_resolves_only_its_task() {
    contained(
        "acquire call",
        |b| b.admission(Booby(Trap::AcquireCall)),
        |pool| plain(pool, trap_label()),
        &["panicked"],
    );
    contained(
        "acquire poll",
        |b| b.admission(Booby(Trap::AcquirePoll)),
        |pool| plain(pool, trap_label()),
        &["panicked"],
    );
}

#[test]
fn a_permit_that_panics_when_dropped_keeps_the_attempt_result() {
    contained(
        "permit drop",
        |b| b.admission(Booby(Trap::PermitDrop)),
        |pool| plain(pool, trap_label()),
        &["ok"],
    );
}

#[test]
fn a_closure_whose_captured_state_panics_when_dropped_resolves_with_its_result() {
    contained(
        "captured state's Drop",
        |b| b,
        |pool| {
            let state = PanicOnDrop("captured state dropped");
            pool.enqueue(
                move || {
                    let _ = &state;
                    async { Ok::<_, Failure>(1) }
                },
                TaskOptions::new(),
            )
        },
        &["ok"],
    );
}

#[test]
fn a_future_that_panics_when_dropped_resolves_with_its_result() {
    contained(
        "future's Drop",
        |b| b,
        |pool| {
            pool.enqueue(
                || {
                    let guard = PanicOnDrop("future dropped");
                    async move {
                        let _ = &guard;
                        Ok::<_, Failure>(1)
                    }
                },
                TaskOptions::new(),
            )
        },
        &["ok", "panicked"],
    );
}

#[test]
fn panics_in_the_closure_and_the_future_resolve_panicked() {
    contained(
        "closure",
        |b| b,
        |pool| {
            pool.enqueue(
                || -> futures::future::Ready<Result<u32, Failure>> { panic!("closure") },
                TaskOptions::new(),
            )
        },
        &["panicked"],
    );
    contained(
        "future",
        |b| b,
        |pool| {
            pool.enqueue(
                || async {
                    if true {
                        panic!("future");
                    }
                    Ok::<u32, Failure>(1)
                },
                TaskOptions::new(),
            )
        },
        &["panicked"],
    );
}

#[test]
fn a_panicking_classifier_resolves_only_its_task() {
    contained(
        "classifier",
        |b| b,
        |pool| {
            pool.enqueue_with(
                || async { Err(Failure(ErrorClass::Fatal)) },
                TaskOptions::new(),
                |_: &Failure| -> ErrorClass { panic!("classifier") },
            )
        },
        &["panicked"],
    );
    // A classifier that answers once, then panics: the engine must not ask it again (to
    // report the task's outcome to an observer, say) outside the attempt's `catch_unwind`.
    contained(
        "classifier asked twice",
        |b| b.observer(super::stress::Tally::default()),
        |pool| {
            let asked = AtomicBool::new(false);
            pool.enqueue_with(
                || async { Err(Failure(ErrorClass::Fatal)) },
                TaskOptions::new(),
                move |_: &Failure| {
                    if asked.swap(true, Ordering::SeqCst) {
                        panic!("classifier asked twice");
                    }
                    ErrorClass::Fatal
                },
            )
        },
        &["failed"],
    );
}

#[test]
fn a_panicking_observer_is_muted_and_resolves_nothing() {
    contained(
        "observer",
        |b| b.observer(PanickingObserver),
        |pool| plain(pool, trap_label()),
        &["ok"],
    );
}

#[test]
fn an_error_whose_drop_panics_after_its_handle_is_gone_leaves_the_pool_running() {
    struct Loud(#[allow(dead_code)] PanicOnDrop);
    runtime(2).block_on(async {
        let pool = Pool::builder().concurrency(1).retries(0).build().unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        // Paused until the handle is gone, so the engine holds the task's last reference.
        pool.pause();
        {
            let dropped = dropped.clone();
            drop(pool.enqueue_with(
                move || {
                    dropped.store(true, Ordering::SeqCst);
                    async { Err::<u32, _>(Loud(PanicOnDrop("error dropped"))) }
                },
                TaskOptions::new(),
                |_: &Loud| ErrorClass::Fatal,
            ));
        }
        let innocent = pool.enqueue(|| async { Ok::<_, Failure>(7) }, TaskOptions::new());
        pool.resume();
        assert_eq!(within("innocent", innocent).await.ok(), Some(7));
        within("drain", pool.drain()).await;
        assert!(dropped.load(Ordering::SeqCst));
        let stats = pool.stats();
        assert!(stats.in_balance(), "{stats:?}");
        assert_eq!((stats.active, stats.resolved()), (0, 2), "{stats:?}");
    });
}

/// A task that hangs and keeps the slot until its timeout, with a panicking `Drop` on its
/// future: the timeout drops it.
#[test]
fn a_timed_out_future_that_panics_when_dropped_resolves_timed_out() {
    contained(
        "timed-out future's Drop",
        |b| b.timeout(Duration::from_millis(5)),
        |pool| {
            pool.enqueue(
                || {
                    let guard = PanicOnDrop("timed-out future dropped");
                    async move {
                        let _ = &guard;
                        std::future::pending::<()>().await;
                        Ok::<_, Failure>(1)
                    }
                },
                TaskOptions::new(),
            )
        },
        &["timed_out"],
    );
}
