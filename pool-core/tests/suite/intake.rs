//! A saturated pool takes new tasks into its intake without the engine's lock, and whatever
//! takes the lock next moves them into the queue. Each test here fills every slot with tasks
//! that wait on a gate, so that what it enqueues next goes into the intake, and checks that
//! a task there is a queued task in every respect: priority order, counts, cancellation,
//! abort, `stop`, a limit that grows, `drain`.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pool_core::{CancellationToken, Pool, TaskError, TaskHandle, TaskOptions};
use support::Env;

on_every_executor!(
    tasks_enqueued_into_a_saturated_pool_start_in_priority_order,
    tasks_in_the_intake_count_as_queued,
    cancelling_a_task_in_the_intake_resolves_it_at_once,
    aborting_a_task_in_the_intake_resolves_it_at_once_and_it_never_runs,
    stopping_ends_the_tasks_in_the_intake,
    a_growing_limit_starts_the_tasks_in_the_intake,
    drain_waits_for_the_tasks_in_the_intake,
);

type Handle = TaskHandle<(), std::io::Error>;

/// Fills the pool's `slots` slots with tasks that run until `gate` is cancelled.
fn fill(pool: &Pool, slots: usize, gate: &CancellationToken) -> Vec<Handle> {
    (0..slots)
        .map(|_| {
            let gate = gate.clone();
            pool.enqueue(
                move || {
                    let gate = gate.clone();
                    async move {
                        gate.cancelled().await;
                        Ok(())
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect()
}

/// A task that notes `i` in `order` when it runs.
fn noting(
    order: &Arc<Mutex<Vec<usize>>>,
    i: usize,
) -> impl FnMut() -> std::future::Ready<Result<(), std::io::Error>> + Send + 'static {
    let order = Arc::clone(order);
    move || {
        order.lock().unwrap().push(i);
        std::future::ready(Ok(()))
    }
}

async fn tasks_enqueued_into_a_saturated_pool_start_in_priority_order(env: Env) {
    let pool = env
        .builder()
        .concurrency(1)
        .max_aging_boost(0.0)
        .build()
        .unwrap();
    let gate = CancellationToken::new();
    let blockers = fill(&pool, 1, &gate);
    let order = Arc::new(Mutex::new(Vec::new()));
    let priorities = [0, 5, 1, 5, 0, 9, 1];
    let handles: Vec<_> = priorities
        .iter()
        .enumerate()
        .map(|(i, &priority)| {
            pool.enqueue(noting(&order, i), TaskOptions::new().priority(priority))
        })
        .collect();
    gate.cancel();
    for handle in blockers.into_iter().chain(handles) {
        handle.await.unwrap();
    }
    // Highest priority first, ties in enqueue order: as if each had taken the lock.
    assert_eq!(*order.lock().unwrap(), vec![5, 1, 3, 2, 6, 0, 4]);
}

async fn tasks_in_the_intake_count_as_queued(env: Env) {
    let pool = env.builder().concurrency(2).build().unwrap();
    let gate = CancellationToken::new();
    let blockers = fill(&pool, 2, &gate);
    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..3)
        .map(|i| pool.enqueue(noting(&order, i), TaskOptions::new()))
        .collect();
    let stats = pool.stats();
    assert_eq!(
        (stats.queued, stats.active, stats.enqueued),
        (3, 2, 5),
        "{stats:?}"
    );
    assert!(stats.in_balance(), "{stats:?}");
    gate.cancel();
    for handle in blockers.into_iter().chain(handles) {
        handle.await.unwrap();
    }
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.succeeded), (0, 5), "{stats:?}");
}

async fn cancelling_a_task_in_the_intake_resolves_it_at_once(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    let gate = CancellationToken::new();
    let blockers = fill(&pool, 1, &gate);
    let token = CancellationToken::new();
    let ran = Arc::new(AtomicBool::new(false));
    let cancelled: Handle = pool.enqueue(
        {
            let ran = Arc::clone(&ran);
            move || {
                ran.store(true, Ordering::SeqCst);
                std::future::ready(Ok(()))
            }
        },
        TaskOptions::new().cancellation(token.clone()),
    );
    token.cancel();
    assert!(
        cancelled.is_finished(),
        "resolved without waiting for a slot"
    );
    assert!(matches!(cancelled.await, Err(TaskError::Cancelled)));
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.cancelled), (0, 1), "{stats:?}");
    gate.cancel();
    for handle in blockers {
        handle.await.unwrap();
    }
    pool.drain().await;
    assert!(!ran.load(Ordering::SeqCst), "a cancelled task never runs");
    assert!(pool.stats().in_balance());
}

async fn aborting_a_task_in_the_intake_resolves_it_at_once_and_it_never_runs(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    let gate = CancellationToken::new();
    let blockers = fill(&pool, 1, &gate);
    let ran = Arc::new(AtomicBool::new(false));
    let aborted: Handle = pool.enqueue(
        {
            let ran = Arc::clone(&ran);
            move || {
                ran.store(true, Ordering::SeqCst);
                std::future::ready(Ok(()))
            }
        },
        TaskOptions::new(),
    );
    aborted.abort();
    assert!(aborted.is_finished(), "an abort resolves at once");
    assert!(matches!(aborted.await, Err(TaskError::Cancelled)));
    gate.cancel();
    for handle in blockers {
        handle.await.unwrap();
    }
    pool.drain().await;
    assert!(!ran.load(Ordering::SeqCst), "an aborted task never runs");
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.cancelled), (0, 1), "{stats:?}");
    assert!(stats.in_balance(), "{stats:?}");
}

async fn stopping_ends_the_tasks_in_the_intake(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    let gate = CancellationToken::new();
    let blockers = fill(&pool, 1, &gate);
    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..3)
        .map(|i| pool.enqueue(noting(&order, i), TaskOptions::new()))
        .collect();
    pool.stop_now();
    for handle in blockers.into_iter().chain(handles) {
        assert!(matches!(handle.await, Err(TaskError::Stopped)));
    }
    pool.drain().await;
    assert!(order.lock().unwrap().is_empty(), "no stopped task ran");
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.stopped_tasks), (0, 4), "{stats:?}");
    assert!(stats.in_balance(), "{stats:?}");
}

async fn a_growing_limit_starts_the_tasks_in_the_intake(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    let gate = CancellationToken::new();
    let blockers = fill(&pool, 1, &gate);
    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..3)
        .map(|i| pool.enqueue(noting(&order, i), TaskOptions::new()))
        .collect();
    // The blocker still holds its slot: only the new slots can start them.
    pool.set_concurrency(4).unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    // Started together on three new slots: they run in whatever order the executor polls.
    let mut ran = order.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(ran, vec![0, 1, 2]);
    gate.cancel();
    for handle in blockers {
        handle.await.unwrap();
    }
}

async fn drain_waits_for_the_tasks_in_the_intake(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    let gate = CancellationToken::new();
    let blockers = fill(&pool, 1, &gate);
    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..3)
        .map(|i| pool.enqueue(noting(&order, i), TaskOptions::new()))
        .collect();
    gate.cancel();
    pool.drain().await;
    assert_eq!(
        *order.lock().unwrap(),
        vec![0, 1, 2],
        "drained after they ran"
    );
    for handle in blockers.into_iter().chain(handles) {
        assert!(handle.is_finished());
        handle.await.unwrap();
    }
}
