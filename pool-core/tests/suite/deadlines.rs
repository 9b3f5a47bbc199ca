//! Deadlines, on tokio (paused time) and on `SimExecutor`: a task whose deadline passes while
//! it waits (queued, in backoff, waiting for a retry-budget token, deferred, waiting for
//! admission) resolves `DeadlineExceeded` at that moment without running; an attempt is cut
//! at the deadline; no retry is scheduled past it; earliest-deadline-first order; shedding
//! once the median service time is known; the counts in stats and events.

use crate::support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use pool_core::{
    Admission, AdmissionPermit, AttemptResult, BoxFuture, Event, Jitter, LastFailure, Outcome,
    Pool, Precheck, Rejection, RetryBudget, TaskError, TaskHandle, TaskInfo, TaskOptions,
    Transient,
};
use support::{Env, Recorder};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Handle = TaskHandle<&'static str, Transient<&'static str>>;

/// Queues a task that takes `duration` and succeeds, counting its attempts in `calls`.
fn sleeper(
    env: &Env,
    pool: &Pool,
    duration: Duration,
    options: TaskOptions,
    calls: &Arc<AtomicU32>,
) -> Handle {
    let (env, calls) = (env.clone(), calls.clone());
    pool.enqueue(
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let env = env.clone();
            async move {
                env.sleep(duration).await;
                Ok("done")
            }
        },
        options,
    )
}

/// Holds the pool's only slot for `duration`.
fn blocker(env: &Env, pool: &Pool, duration: Duration) -> Handle {
    sleeper(env, pool, duration, TaskOptions::new(), &Arc::default())
}

on_every_executor!(
    a_queued_task_past_its_deadline_resolves_then_and_never_starts,
    a_task_enqueued_past_its_deadline_never_starts,
    an_attempt_is_cut_at_the_deadline,
    a_timeout_shorter_than_the_time_left_still_applies,
    no_retry_is_scheduled_past_the_deadline,
    a_task_in_backoff_is_not_woken_past_its_deadline,
    waiting_for_admission_ends_at_the_deadline,
    a_retry_waiting_for_a_budget_token_ends_at_the_deadline,
    a_task_deferred_past_its_deadline_ends_at_the_deadline,
    earliest_deadline_first_starts_the_most_urgent_of_a_tenant,
    doomed_tasks_are_shed_once_the_median_service_time_is_known,
    a_cancelled_or_stopped_task_with_a_deadline_ends_once,
);

async fn a_queued_task_past_its_deadline_resolves_then_and_never_starts(env: Env) {
    let recorder = Recorder::default();
    let pool = env
        .builder()
        .concurrency(1)
        .observer(recorder.clone())
        .build()
        .unwrap();
    let t0 = env.now();
    let _blocker = blocker(&env, &pool, ms(100));
    let calls = Arc::new(AtomicU32::new(0));
    let late = sleeper(
        &env,
        &pool,
        ms(1),
        TaskOptions::new().deadline(t0 + ms(40)),
        &calls,
    );
    env.sleep(ms(39)).await;
    assert!(!late.is_finished(), "still waiting before its deadline");
    env.sleep(ms(2)).await;
    // Resolved at its deadline, not when the slot frees at 100 ms.
    let result = late
        .try_result()
        .unwrap_or_else(|_| panic!("resolved at its deadline"));
    assert!(
        matches!(
            result,
            Err(TaskError::DeadlineExceeded {
                attempts: 0,
                last: None,
                shed: false
            })
        ),
        "{result:?}"
    );
    pool.drain().await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "it never started");
    let stats = pool.stats();
    assert_eq!((stats.succeeded, stats.failed), (1, 1), "{stats:?}");
    assert_eq!((stats.deadline_exceeded, stats.shed), (1, 0), "{stats:?}");
    assert!(stats.in_balance(), "{stats:?}");
    let events = recorder.events.lock().unwrap();
    let finished: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            Event::TaskFinished(record) => Some((record.outcome, record.finished_at - t0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished,
        vec![
            (Outcome::DeadlineExceeded, ms(40)),
            (Outcome::Succeeded, ms(100))
        ]
    );
    assert_eq!(
        events
            .iter()
            .filter(|event| matches!(event, Event::TaskStarted { .. }))
            .count(),
        1,
        "only the blocker started"
    );
}

async fn a_task_enqueued_past_its_deadline_never_starts(env: Env) {
    let pool = env.builder().concurrency(4).build().unwrap();
    env.sleep(ms(10)).await;
    let calls = Arc::new(AtomicU32::new(0));
    let past = env.now() - ms(5);
    let handles: Vec<_> = [past, env.now()]
        .into_iter()
        .map(|deadline| {
            sleeper(
                &env,
                &pool,
                ms(1),
                TaskOptions::new().deadline(deadline),
                &calls,
            )
        })
        .collect();
    for handle in handles {
        assert!(matches!(
            handle.await,
            Err(TaskError::DeadlineExceeded { attempts: 0, .. })
        ));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(pool.stats().deadline_exceeded, 2);
}

async fn an_attempt_is_cut_at_the_deadline(env: Env) {
    let recorder = Recorder::default();
    let pool = env
        .builder()
        .timeout(Duration::from_secs(10))
        .retries(3)
        .observer(recorder.clone())
        .build()
        .unwrap();
    let t0 = env.now();
    let calls = Arc::new(AtomicU32::new(0));
    let handle = sleeper(
        &env,
        &pool,
        Duration::from_secs(1),
        TaskOptions::new().deadline(t0 + ms(100)),
        &calls,
    );
    let result = handle.await;
    assert_eq!(
        env.now() - t0,
        ms(100),
        "cut at the deadline, not the timeout"
    );
    assert!(
        matches!(
            result,
            Err(TaskError::DeadlineExceeded {
                attempts: 1,
                last: Some(LastFailure::TimedOut),
                shed: false
            })
        ),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "and not retried");
    let stats = pool.stats();
    assert_eq!(
        (stats.retries, stats.deadline_exceeded),
        (0, 1),
        "{stats:?}"
    );
    let results: Vec<_> = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::AttemptFinished { result, .. } => Some(*result),
            _ => None,
        })
        .collect();
    assert_eq!(results, vec![AttemptResult::DeadlineExceeded]);
    assert!(AttemptResult::DeadlineExceeded.is_cut_short());
}

async fn a_timeout_shorter_than_the_time_left_still_applies(env: Env) {
    let pool = env.builder().timeout(ms(50)).retries(0).build().unwrap();
    let t0 = env.now();
    let handle = sleeper(
        &env,
        &pool,
        Duration::from_secs(1),
        TaskOptions::new().deadline(t0 + Duration::from_secs(5)),
        &Arc::default(),
    );
    let result = handle.await;
    assert!(
        matches!(result, Err(TaskError::TimedOut { timeout, attempts: 1 }) if timeout == ms(50)),
        "{result:?}"
    );
    assert_eq!(env.now() - t0, ms(50));
}

/// Fails retryably after `work`, every attempt, counting them.
fn failing(
    env: &Env,
    pool: &Pool,
    work: Duration,
    deadline: Instant,
    calls: &Arc<AtomicU32>,
) -> Handle {
    let (env, calls) = (env.clone(), calls.clone());
    pool.enqueue(
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let env = env.clone();
            async move {
                env.sleep(work).await;
                Err(Transient("503"))
            }
        },
        TaskOptions::new().retries(10).deadline(deadline),
    )
}

async fn no_retry_is_scheduled_past_the_deadline(env: Env) {
    // Backoff 100, 200, 400 ms… without jitter; attempts take 10 ms.
    let pool = env
        .builder()
        .retry_delay(ms(100))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let t0 = env.now();
    let calls = Arc::new(AtomicU32::new(0));
    let handle = failing(&env, &pool, ms(10), t0 + ms(250), &calls);
    let result = handle.await;
    // Attempt 1 ends at 10 ms, attempt 2 starts at 110 and ends at 120; the next would start
    // at 320, past 250: the task ends at 120 with the failure that stopped it.
    assert_eq!(env.now() - t0, ms(120));
    assert!(
        matches!(
            result,
            Err(TaskError::DeadlineExceeded {
                attempts: 2,
                last: Some(LastFailure::Error(Transient("503"))),
                shed: false
            })
        ),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stats = pool.stats();
    assert_eq!(
        (stats.retries, stats.deadline_exceeded),
        (1, 1),
        "{stats:?}"
    );
    // The failure is still there for whoever wants it.
    assert_eq!(
        result.unwrap_err().into_task_error(),
        Some(Transient("503"))
    );
}

async fn a_task_in_backoff_is_not_woken_past_its_deadline(env: Env) {
    // The retry is due at 110 ms, before the deadline at 150; but the only slot is taken
    // from 50 ms to 1 s, so the task waits in the queue and its deadline passes there.
    let pool = env
        .builder()
        .concurrency(1)
        .retry_delay(ms(100))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let t0 = env.now();
    let calls = Arc::new(AtomicU32::new(0));
    let handle = failing(&env, &pool, ms(10), t0 + ms(150), &calls);
    env.sleep(ms(50)).await;
    let _blocker = blocker(&env, &pool, Duration::from_secs(1));
    env.sleep(ms(101)).await;
    let result = handle
        .try_result()
        .unwrap_or_else(|_| panic!("resolved at its deadline"));
    assert!(
        matches!(
            result,
            Err(TaskError::DeadlineExceeded {
                attempts: 1,
                last: Some(LastFailure::Error(_)),
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    pool.stop_now();
}

/// Admission that never admits.
#[derive(Debug)]
struct Closed;

impl Admission for Closed {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(std::future::pending())
    }
}

async fn waiting_for_admission_ends_at_the_deadline(env: Env) {
    let pool = env.builder().admission(Closed).build().unwrap();
    let t0 = env.now();
    let calls = Arc::new(AtomicU32::new(0));
    let handle = sleeper(
        &env,
        &pool,
        ms(1),
        TaskOptions::new().deadline(t0 + ms(30)),
        &calls,
    );
    let result = handle.await;
    assert_eq!(env.now() - t0, ms(30));
    assert!(
        matches!(result, Err(TaskError::DeadlineExceeded { attempts: 0, .. })),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    pool.drain().await;
    assert!(pool.stats().in_balance());
}

async fn a_retry_waiting_for_a_budget_token_ends_at_the_deadline(env: Env) {
    // The bucket pays for one retry and nothing refills it (no floor, no success): the
    // second retry owes its cost and waits for a token, holding no slot — until the
    // deadline, not past it.
    let t0 = env.now();
    let pool = env
        .builder()
        .retry_delay(ms(10))
        .jitter(Jitter::None)
        .retry_budget(RetryBudget {
            capacity: 5.0,
            retry_cost: 5.0,
            min_per_sec: 0.0,
            ..RetryBudget::default()
        })
        .admission(ParksUntil {
            priority: 7,
            until: t0 + ms(500),
        })
        .build()
        .unwrap();
    // Parked until 500 ms, this one keeps the pool's timer set for then.
    let parked = sleeper(
        &env,
        &pool,
        ms(1),
        TaskOptions::new().priority(7),
        &Arc::default(),
    );
    let calls = Arc::new(AtomicU32::new(0));
    // Attempt 1 over 0..10 ms, its retry paid; attempt 2 over 20..30; the next retry, due
    // at 50, cannot be paid and waits.
    let handle = failing(&env, &pool, ms(10), t0 + ms(200), &calls);
    env.sleep(ms(199)).await;
    assert!(!handle.is_finished(), "waits for a token");
    assert_eq!(pool.stats().active, 0, "holding no slot");
    env.sleep(ms(2)).await;
    let result = handle
        .try_result()
        .unwrap_or_else(|_| panic!("resolved at its deadline"));
    assert!(
        matches!(
            result,
            Err(TaskError::DeadlineExceeded {
                attempts: 2,
                last: Some(LastFailure::Error(Transient("503"))),
                shed: false
            })
        ),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stats = pool.stats();
    assert_eq!(
        (stats.retries, stats.deadline_exceeded),
        (2, 1),
        "{stats:?}"
    );
    assert!(stats.in_balance(), "{stats:?}");
    assert_eq!(parked.await.unwrap(), "done");
    pool.drain().await;
    assert!(pool.stats().in_balance());
}

/// Admission that parks the tasks of one priority until a moment (and admits them then).
#[derive(Debug)]
struct ParksUntil {
    priority: i32,
    until: Instant,
}

impl Admission for ParksUntil {
    fn precheck(&self, task: &TaskInfo) -> Precheck {
        if task.priority == self.priority {
            Precheck::ParkUntil(self.until)
        } else {
            Precheck::Proceed
        }
    }

    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(async { Ok(AdmissionPermit::empty()) })
    }
}

async fn a_task_deferred_past_its_deadline_ends_at_the_deadline(env: Env) {
    let t0 = env.now();
    let an_hour_later = t0 + Duration::from_secs(3_600);
    let pool = env
        .builder()
        .admission(ParksUntil {
            priority: 0,
            until: an_hour_later,
        })
        .build()
        .unwrap();
    // Parked first, it sets the pool's timer for an hour later; the task with a deadline,
    // parked until the same moment, must still end at its deadline.
    let first = blocker(&env, &pool, ms(1));
    let calls = Arc::new(AtomicU32::new(0));
    let handle = sleeper(
        &env,
        &pool,
        ms(1),
        TaskOptions::new().deadline(t0 + ms(30)),
        &calls,
    );
    let result = handle.await;
    assert_eq!(env.now() - t0, ms(30));
    assert!(
        matches!(result, Err(TaskError::DeadlineExceeded { attempts: 0, .. })),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(first.await.unwrap(), "done");
    assert_eq!(env.now(), an_hour_later + ms(1));
    pool.drain().await;
    assert!(pool.stats().in_balance());
}

async fn earliest_deadline_first_starts_the_most_urgent_of_a_tenant(env: Env) {
    let starts = |edf: bool| {
        let env = env.clone();
        async move {
            let builder = env.builder().concurrency(1);
            let pool = if edf {
                builder.earliest_deadline_first()
            } else {
                builder
            }
            .build()
            .unwrap();
            let t0 = env.now();
            let order = Arc::new(Mutex::new(Vec::new()));
            let _blocker = blocker(&env, &pool, ms(10));
            let handles: Vec<_> = [Some(900), Some(300), None, Some(600), Some(300)]
                .into_iter()
                .enumerate()
                .map(|(index, deadline)| {
                    let order = order.clone();
                    let mut options = TaskOptions::new();
                    if let Some(deadline) = deadline {
                        options = options.deadline(t0 + ms(deadline));
                    }
                    pool.enqueue(
                        move || {
                            order.lock().unwrap().push(index);
                            async { Ok::<_, Transient<&str>>(()) }
                        },
                        options,
                    )
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
            let order = order.lock().unwrap().clone();
            order
        }
    };
    assert_eq!(starts(false).await, vec![0, 1, 2, 3, 4], "FIFO by default");
    assert_eq!(
        starts(true).await,
        vec![1, 4, 3, 0, 2],
        "earliest first, ties in enqueue order, no deadline last"
    );
}

async fn doomed_tasks_are_shed_once_the_median_service_time_is_known(env: Env) {
    let pool = env.builder().concurrency(1).shed_doomed().build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    // Unknown yet: a task that cannot make it is started, and cut.
    let t0 = env.now();
    let early = sleeper(
        &env,
        &pool,
        ms(100),
        TaskOptions::new().deadline(t0 + ms(50)),
        &calls,
    );
    assert!(matches!(
        early.await,
        Err(TaskError::DeadlineExceeded {
            attempts: 1,
            shed: false,
            ..
        })
    ));
    // Eight answered attempts of 100 ms: the median is known.
    for _ in 0..8 {
        sleeper(&env, &pool, ms(100), TaskOptions::new(), &Arc::default())
            .await
            .unwrap();
    }
    let now = env.now();
    let doomed = sleeper(
        &env,
        &pool,
        ms(100),
        TaskOptions::new().deadline(now + ms(90)),
        &calls,
    );
    let hopeful = sleeper(
        &env,
        &pool,
        ms(100),
        TaskOptions::new().deadline(now + ms(110)),
        &calls,
    );
    let result = doomed.await;
    assert!(
        matches!(
            result,
            Err(TaskError::DeadlineExceeded {
                attempts: 0,
                last: None,
                shed: true
            })
        ),
        "{result:?}"
    );
    assert_eq!(env.now(), now, "shed at once, not at its deadline");
    assert_eq!(hopeful.await.unwrap(), "done");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the shed task never started"
    );
    let stats = pool.stats();
    assert_eq!((stats.deadline_exceeded, stats.shed), (2, 1), "{stats:?}");
}

async fn a_cancelled_or_stopped_task_with_a_deadline_ends_once(env: Env) {
    let recorder = Recorder::default();
    let pool = env
        .builder()
        .concurrency(1)
        .observer(recorder.clone())
        .build()
        .unwrap();
    let t0 = env.now();
    let _blocker = blocker(&env, &pool, ms(100));
    let token = pool_core::CancellationToken::new();
    let cancelled = sleeper(
        &env,
        &pool,
        ms(1),
        TaskOptions::new()
            .deadline(t0 + ms(50))
            .cancellation(token.clone()),
        &Arc::default(),
    );
    let stopped = sleeper(
        &env,
        &pool,
        ms(1),
        TaskOptions::new().deadline(t0 + ms(60)),
        &Arc::default(),
    );
    env.sleep(ms(10)).await;
    token.cancel();
    assert!(matches!(cancelled.await, Err(TaskError::Cancelled)));
    // Stops at its first poll; the blocker runs on, so it does not finish yet.
    assert!(pool.stop().now_or_never().is_none());
    assert!(matches!(stopped.await, Err(TaskError::Stopped)));
    // Past both deadlines, nothing ends a second time.
    env.sleep(ms(200)).await;
    let finished = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| matches!(event, Event::TaskFinished(_)))
        .count();
    assert_eq!(finished, 3);
    let stats = pool.stats();
    assert_eq!(stats.deadline_exceeded, 0, "{stats:?}");
    assert!(stats.in_balance(), "{stats:?}");
    assert!(pool.stop().now_or_never().is_some());
}
