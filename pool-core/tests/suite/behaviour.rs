//! The behaviour suite: every test runs on tokio (paused time) and on the virtual-time
//! `SimExecutor`.

use crate::support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    CancellationToken, ErrorClass, Event, Jitter, LastFailure, Outcome, RetryBudget, Retryable,
    TaskError, TaskOptions,
};
use support::{Env, InFlight, Recorder};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("test error ({0:?})")]
struct Oops(ErrorClass);

impl Retryable for Oops {
    fn error_class(&self) -> ErrorClass {
        self.0
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A task that sleeps `duration` on the pool's executor and returns `value`.
fn sleeper(
    env: &Env,
    duration: Duration,
    value: u32,
) -> impl FnMut() -> futures::future::BoxFuture<'static, Result<u32, Oops>> + Send + 'static {
    let env = env.clone();
    move || {
        let env = env.clone();
        Box::pin(async move {
            env.sleep(duration).await;
            Ok(value)
        })
    }
}

on_every_executor!(
    the_limit_is_never_exceeded_even_while_it_changes,
    higher_priority_runs_first_and_ties_run_in_enqueue_order,
    a_low_priority_task_is_not_starved_by_a_flood_within_the_aging_boost,
    retries_back_off_exponentially_without_jitter,
    jittered_backoff_stays_within_bounds,
    fatal_errors_are_not_retried,
    pressure_delays_retries_when_saturated,
    pressure_skips_retries_when_saturated_if_asked,
    pressure_clamps_retry_delays_when_busy,
    the_retry_budget_fails_a_retry_storm_fast_if_asked,
    an_empty_retry_budget_makes_retries_wait_for_a_token,
    a_timed_out_attempt_is_dropped_and_retried,
    cancelling_a_queued_task_resolves_it_at_once,
    cancelling_a_running_task_drops_its_attempt,
    cancelling_during_backoff_resolves_cancelled,
    pause_lets_running_tasks_finish_and_starts_none,
    drain_waits_for_queue_running_and_backoff,
    stop_resolves_every_queued_task_with_stopped,
    stop_now_cancels_running_tasks,
    enqueue_after_stop_resolves_stopped,
    dropping_the_pool_leaves_no_waiter_hanging,
    panics_are_caught_and_the_pool_keeps_running,
    batch_results_are_in_input_order_with_callbacks_once_each,
    events_describe_a_task_life,
    a_panicking_observer_is_muted_and_the_pool_keeps_running,
    growing_the_limit_starts_queued_tasks_at_once,
    stats_add_up_after_a_mixed_run,
    an_admission_permit_bounds_attempts_below_the_local_limit,
    a_rejecting_admission_policy_fails_tasks_fast_with_rejected,
    stop_now_interrupts_a_task_waiting_for_admission,
    stopping_a_hundred_thousand_queued_tasks_resolves_all_and_leaks_nothing,
);

async fn the_limit_is_never_exceeded_even_while_it_changes(env: Env) {
    let pool = env.builder().concurrency(4).build().unwrap();
    let in_flight = InFlight::default();
    let violations = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..200u32)
        .map(|i| {
            let (env, in_flight, violations, control) = (
                env.clone(),
                in_flight.clone(),
                violations.clone(),
                pool.control(),
            );
            pool.enqueue(
                move || {
                    let (env, in_flight, violations, control) = (
                        env.clone(),
                        in_flight.clone(),
                        violations.clone(),
                        control.clone(),
                    );
                    async move {
                        let guard = in_flight.enter();
                        // A task may only start while in-flight (itself included) fits the limit.
                        if guard.1 > control.concurrency() {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                        env.sleep(ms(10 + u64::from(i % 7))).await;
                        Ok::<_, Oops>(i)
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect();
    for (step, limit) in [8, 2, 16, 1, 5, 3].into_iter().enumerate() {
        env.sleep(ms(35)).await;
        pool.set_concurrency(limit).unwrap();
        assert_eq!(pool.concurrency(), limit, "step {step}");
    }
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(in_flight.max() <= 16);
    assert!(in_flight.max() >= 8, "the limit of 16 was actually used");
}

async fn higher_priority_runs_first_and_ties_run_in_enqueue_order(env: Env) {
    let pool = env
        .builder()
        .concurrency(1)
        .max_aging_boost(0.0)
        .build()
        .unwrap();
    pool.pause();
    let order = Arc::new(Mutex::new(Vec::new()));
    let priorities = [0, 5, 1, 5, 0, 9, 1];
    let handles: Vec<_> = priorities
        .iter()
        .enumerate()
        .map(|(i, &priority)| {
            let order = order.clone();
            pool.enqueue(
                move || {
                    order.lock().unwrap().push(i);
                    async { Ok::<_, Oops>(()) }
                },
                TaskOptions::new().priority(priority),
            )
        })
        .collect();
    pool.resume();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![5, 1, 3, 2, 6, 0, 4]);
}

async fn a_low_priority_task_is_not_starved_by_a_flood_within_the_aging_boost(env: Env) {
    // A steady flood of fresh priority-5 tasks (one every 10 ms, each taking 10 ms) keeps
    // the queue full. Aging gives one point per 250 ms at multiplier 1; the multiplier stays
    // within [0.25, 4], so 5 points take between 312 ms and 5 s of waiting, plus the time to
    // serve the tasks that were queued ahead of it (20 tasks: 200 ms).
    let pool = env.builder().concurrency(1).build().unwrap();
    let started_at = Arc::new(Mutex::new(None::<Instant>));
    let mut flood: Vec<_> = (0..20u32)
        .map(|i| pool.enqueue(sleeper(&env, ms(10), i), TaskOptions::new().priority(5)))
        .collect();
    let t0 = env.now();
    let low = {
        let (started_at, env2) = (started_at.clone(), env.clone());
        pool.enqueue(
            move || {
                *started_at.lock().unwrap() = Some(env2.now());
                async { Ok::<_, Oops>(0) }
            },
            TaskOptions::new().priority(0),
        )
    };
    for i in 0..2_000u32 {
        if low.is_finished() {
            break;
        }
        flood.push(pool.enqueue(sleeper(&env, ms(10), i), TaskOptions::new().priority(5)));
        env.sleep(ms(10)).await;
    }
    let waited = started_at
        .lock()
        .unwrap()
        .expect("the low-priority task ran")
        - t0;
    assert!(waited <= Duration::from_millis(5_200), "waited {waited:?}");
    assert!(
        waited >= ms(200 + 312),
        "it must not jump the queue either: waited {waited:?}"
    );
    assert!(
        pool.stats().queued > 0,
        "the flood was still going when it ran"
    );
    pool.stop_now();
}

async fn retries_back_off_exponentially_without_jitter(env: Env) {
    let pool = env
        .builder()
        .retry_delay(ms(100))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let t0 = env.now();
    let result = {
        let (attempts, env) = (attempts.clone(), env.clone());
        pool.enqueue(
            move || {
                let mut seen = attempts.lock().unwrap();
                seen.push(env.now() - t0);
                let n = seen.len();
                async move {
                    if n < 4 {
                        Err(Oops(ErrorClass::Retryable))
                    } else {
                        Ok(n)
                    }
                }
            },
            TaskOptions::new().retries(3),
        )
        .await
    };
    assert_eq!(result.unwrap(), 4);
    assert_eq!(
        *attempts.lock().unwrap(),
        vec![ms(0), ms(100), ms(300), ms(700)]
    );
    let stats = pool.stats();
    assert_eq!((stats.retries, stats.succeeded, stats.failed), (3, 1, 0));
}

async fn jittered_backoff_stays_within_bounds(env: Env) {
    let pool = env
        .builder()
        .concurrency(50)
        .retry_delay(ms(100))
        .jitter(Jitter::Full)
        .no_retry_budget()
        .build()
        .unwrap();
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (gaps, env) = (gaps.clone(), env.clone());
            let mut last: Option<Instant> = None;
            pool.enqueue(
                move || {
                    let now = env.now();
                    let first = last.is_none();
                    if let Some(last) = last {
                        gaps.lock().unwrap().push(now - last);
                    }
                    last = Some(now);
                    async move {
                        if first {
                            Err(Oops(ErrorClass::Retryable))
                        } else {
                            Ok(())
                        }
                    }
                },
                TaskOptions::new().retries(1),
            )
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let gaps = gaps.lock().unwrap();
    assert_eq!(gaps.len(), 50);
    assert!(
        gaps.iter().all(|g| *g <= ms(100)),
        "full jitter is within [0, 100 ms]"
    );
    let distinct: std::collections::BTreeSet<_> = gaps.iter().collect();
    assert!(
        distinct.len() > 10,
        "jitter spreads the retries: {distinct:?}"
    );
}

async fn fatal_errors_are_not_retried(env: Env) {
    let pool = env.builder().build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let calls2 = calls.clone();
    let result = pool
        .enqueue(
            move || {
                calls2.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Oops(ErrorClass::Fatal)) }
            },
            TaskOptions::new().retries(5),
        )
        .await;
    assert!(matches!(
        result,
        Err(TaskError::Failed {
            error: Oops(ErrorClass::Fatal),
            attempts: 1
        })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Fills a pool of concurrency 1 with `queued` blocked tasks behind one failing task, and
/// returns the failing task's attempt times and its result.
async fn attempts_under_pressure(
    env: &Env,
    queued: u32,
    skip: bool,
) -> (Vec<Instant>, Result<(), TaskError<Oops>>, Recorder) {
    let recorder = Recorder::default();
    let mut builder = env.builder().observer(recorder.clone());
    if skip {
        builder = builder.skip_retries_when_saturated();
    }
    let pool = builder
        .concurrency(1)
        .retry_delay(ms(1_000))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let times = Arc::new(Mutex::new(Vec::new()));
    let failing = {
        let (times, env) = (times.clone(), env.clone());
        pool.enqueue(
            move || {
                times.lock().unwrap().push(env.now());
                async { Err::<(), _>(Oops(ErrorClass::Throttled)) }
            },
            TaskOptions::new().priority(10).retries(1),
        )
    };
    let blocked: Vec<_> = (0..queued)
        .map(|i| pool.enqueue(sleeper(env, ms(1), i), TaskOptions::new()))
        .collect();
    let result = failing.await;
    for handle in blocked {
        handle.await.unwrap();
    }
    let times = times.lock().unwrap().clone();
    (times, result, recorder)
}

async fn pressure_delays_retries_when_saturated(env: Env) {
    // Saturation = (10 queued + 1 active) / 1 = 11 >= 10: retried after the whole 1 s
    // backoff (not the 100 ms clamp), not dropped.
    let (times, _, _) = attempts_under_pressure(&env, 10, false).await;
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= ms(1_000),
        "{:?}",
        times[1] - times[0]
    );
}

async fn pressure_skips_retries_when_saturated_if_asked(env: Env) {
    let (times, result, recorder) = attempts_under_pressure(&env, 10, true).await;
    assert_eq!(times.len(), 1);
    let error = result.unwrap_err();
    let TaskError::RetrySkipped {
        last: LastFailure::Error(Oops(ErrorClass::Throttled)),
        attempts: 1,
        saturation,
    } = &error
    else {
        panic!("unexpected {error:?}");
    };
    // The figure the rule decided on: 10 sleepers behind 1 slot, at the default threshold.
    assert!(saturation.level() >= 10.0, "{saturation}");
    assert_eq!(saturation.skip_threshold(), 10.0);
    let message = error.to_string();
    assert!(
        message.contains("retry was skipped")
            && message.contains(&format!(
                "{:.1} tasks queued or running per slot",
                saturation.level()
            ))
            && message.contains("skip threshold 10")
            && message.contains("skip_retries_when_saturated"),
        "{message}"
    );
    assert_eq!(error.kind(), "retry_skipped");
    // Observers see the skipped retry as what it is, not as the task's own failure.
    let outcomes: Vec<Outcome> = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::TaskFinished(record) => Some(record.outcome),
            _ => None,
        })
        .collect();
    assert!(outcomes.contains(&Outcome::RetrySkipped), "{outcomes:?}");
    assert_eq!(Outcome::RetrySkipped.kind(), error.kind());
}

async fn pressure_clamps_retry_delays_when_busy(env: Env) {
    // Saturation = (5 queued + 1 active) / 1 = 6: retried after the clamp delay (100 ms),
    // not the 1 s backoff. The retry re-enters the queue with priority 10, ahead of the rest.
    let (times, _, _) = attempts_under_pressure(&env, 5, false).await;
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap >= ms(100) && gap <= ms(110), "gap {gap:?}");
}

async fn the_retry_budget_fails_a_retry_storm_fast_if_asked(env: Env) {
    let pool = env
        .builder()
        .concurrency(4)
        .retry_delay(ms(10))
        .retry_budget(RetryBudget {
            capacity: 20.0,
            retry_cost: 5.0,
            timeout_retry_cost: 10.0,
            success_refill: 1.0,
            min_per_sec: 0.0,
            fail_fast: true,
        })
        .build()
        .unwrap();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            pool.enqueue(
                || async { Err::<(), _>(Oops(ErrorClass::Retryable)) },
                TaskOptions::new().retries(3),
            )
        })
        .collect();
    let mut exhausted = 0;
    for handle in handles {
        match handle.await {
            Err(TaskError::RetryBudgetExhausted {
                last: LastFailure::Error(Oops(ErrorClass::Retryable)),
                ..
            }) => exhausted += 1,
            Err(TaskError::Failed { attempts: 4, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // 20 tokens pay for 4 retries; 10 tasks wanted 30.
    assert_eq!(pool.stats().retries, 4);
    assert!(exhausted >= 9, "{exhausted}");
    assert_eq!(pool.retry_budget_tokens(), Some(0.0));
}

async fn an_empty_retry_budget_makes_retries_wait_for_a_token(env: Env) {
    // 20 tokens pay for 4 retries at once; 10 tasks each fail once. The 6 retries the bucket
    // cannot pay wait — for the floor (1 retry/s per slot × 4 slots = 20 tokens/s) or for
    // successes — and every task succeeds.
    let pool = env
        .builder()
        .concurrency(4)
        .retry_delay(ms(10))
        .retry_budget(RetryBudget {
            capacity: 20.0,
            ..RetryBudget::default()
        })
        .build()
        .unwrap();
    let t0 = env.now();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let calls = Arc::new(AtomicU32::new(0));
            pool.enqueue(
                move || {
                    let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                    async move {
                        if first {
                            Err(Oops(ErrorClass::Retryable))
                        } else {
                            Ok(())
                        }
                    }
                },
                TaskOptions::new().retries(3),
            )
        })
        .collect();
    for handle in handles {
        handle
            .await
            .expect("a retry waits for a token, it does not fail");
    }
    let stats = pool.stats();
    assert_eq!((stats.retries, stats.failed), (10, 0), "{stats:?}");
    // The last waiting retry needed tokens the successes alone could not give in time: the
    // floor paid for it, later than the 10 ms backoff.
    assert!(env.now() - t0 >= ms(100), "{:?}", env.now() - t0);
}

async fn a_timed_out_attempt_is_dropped_and_retried(env: Env) {
    let pool = env
        .builder()
        .retry_delay(ms(100))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    struct CountDrop(Arc<AtomicU32>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let t0 = env.now();
    let result = {
        let (env, dropped) = (env.clone(), dropped.clone());
        pool.enqueue(
            move || {
                let (env, guard) = (env.clone(), CountDrop(dropped.clone()));
                async move {
                    let _guard = guard;
                    env.sleep(Duration::from_secs(3600)).await;
                    Ok::<_, Oops>(())
                }
            },
            TaskOptions::new()
                .retries(1)
                .timeout(Duration::from_secs(1)),
        )
        .await
    };
    assert!(matches!(
        result,
        Err(TaskError::TimedOut { attempts: 2, timeout }) if timeout == Duration::from_secs(1)
    ));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "each timed-out attempt was dropped"
    );
    assert_eq!(env.now() - t0, ms(2_100));
}

async fn cancelling_a_queued_task_resolves_it_at_once(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    pool.pause();
    let token = CancellationToken::new();
    let ran = Arc::new(AtomicU32::new(0));
    let ran2 = ran.clone();
    let handle = pool.enqueue(
        move || {
            ran2.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Oops>(()) }
        },
        TaskOptions::new().cancellation(token.clone()),
    );
    assert_eq!(pool.stats().queued, 1);
    token.cancel();
    assert!(matches!(handle.await, Err(TaskError::Cancelled)));
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.cancelled), (0, 1));
    pool.resume();
    pool.drain().await;
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

async fn cancelling_a_running_task_drops_its_attempt(env: Env) {
    let pool = env.builder().build().unwrap();
    let token = CancellationToken::new();
    let handle = pool.enqueue(
        sleeper(&env, Duration::from_secs(3600), 1),
        TaskOptions::new().cancellation(token.clone()),
    );
    env.sleep(ms(10)).await;
    assert_eq!(pool.stats().active, 1);
    token.cancel();
    assert!(matches!(handle.await, Err(TaskError::Cancelled)));
    assert_eq!(pool.stats().active, 0);
}

async fn cancelling_during_backoff_resolves_cancelled(env: Env) {
    let pool = env.builder().retry_delay(ms(1_000)).build().unwrap();
    let token = CancellationToken::new();
    let handle = pool.enqueue(
        || async { Err::<(), _>(Oops(ErrorClass::Retryable)) },
        TaskOptions::new().cancellation(token.clone()),
    );
    env.settle().await;
    assert_eq!(pool.stats().retrying, 1);
    token.cancel();
    assert!(matches!(handle.await, Err(TaskError::Cancelled)));
    pool.drain().await;
    assert_eq!(pool.stats().cancelled, 1);
}

async fn pause_lets_running_tasks_finish_and_starts_none(env: Env) {
    let recorder = Recorder::default();
    let pool = env
        .builder()
        .concurrency(2)
        .observer(recorder.clone())
        .build()
        .unwrap();
    let handles: Vec<_> = (0..6)
        .map(|i| pool.enqueue(sleeper(&env, ms(100), i), TaskOptions::new()))
        .collect();
    env.sleep(ms(50)).await;
    pool.pause();
    env.sleep(ms(1_000)).await;
    let stats = pool.stats();
    assert_eq!((stats.succeeded, stats.active, stats.queued), (2, 0, 4));
    assert!(stats.paused);
    pool.resume();
    for handle in handles {
        handle.await.unwrap();
    }
    let names = recorder.names();
    assert!(names.contains(&"paused") && names.contains(&"resumed"));
}

async fn drain_waits_for_queue_running_and_backoff(env: Env) {
    let pool = env
        .builder()
        .concurrency(2)
        .retry_delay(ms(500))
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let attempts2 = attempts.clone();
    let flaky = pool.enqueue(
        move || {
            let n = attempts2.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(Oops(ErrorClass::Retryable))
                } else {
                    Ok(())
                }
            }
        },
        TaskOptions::new(),
    );
    let slow: Vec<_> = (0..5)
        .map(|i| pool.enqueue(sleeper(&env, ms(100), i), TaskOptions::new()))
        .collect();
    pool.drain().await;
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.active, stats.retrying), (0, 0, 0));
    assert_eq!(stats.succeeded, 6);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert!(flaky.await.is_ok());
    drop(slow);
}

async fn stop_resolves_every_queued_task_with_stopped(env: Env) {
    let pool = env.builder().concurrency(3).build().unwrap();
    let handles: Vec<_> = (0..10_000)
        .map(|i| pool.enqueue(sleeper(&env, ms(50), i), TaskOptions::new()))
        .collect();
    env.sleep(ms(10)).await;
    pool.stop().await;
    let (mut ok, mut stopped) = (0, 0);
    for handle in handles {
        match handle.await {
            Ok(_) => ok += 1,
            Err(TaskError::Stopped) => stopped += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (ok, stopped),
        (3, 9_997),
        "running tasks finish, queued ones stop"
    );
    let stats = pool.stats();
    assert!(stats.stopped && stats.in_balance(), "{stats:?}");
}

async fn stop_now_cancels_running_tasks(env: Env) {
    let pool = env.builder().concurrency(2).build().unwrap();
    let handles: Vec<_> = (0..5)
        .map(|i| {
            pool.enqueue(
                sleeper(&env, Duration::from_secs(3600), i),
                TaskOptions::new(),
            )
        })
        .collect();
    env.sleep(ms(10)).await;
    pool.stop_now();
    for handle in handles {
        assert!(matches!(handle.await, Err(TaskError::Stopped)));
    }
    pool.drain().await;
    assert_eq!(pool.stats().stopped_tasks, 5);
}

async fn enqueue_after_stop_resolves_stopped(env: Env) {
    let pool = env.builder().build().unwrap();
    pool.stop().await;
    let handle = pool.enqueue(|| async { Ok::<_, Oops>(()) }, TaskOptions::new());
    assert!(matches!(handle.await, Err(TaskError::Stopped)));
    assert!(pool.stats().in_balance());
}

async fn dropping_the_pool_leaves_no_waiter_hanging(env: Env) {
    let pool = env
        .builder()
        .concurrency(1)
        .retry_delay(ms(500))
        .build()
        .unwrap();
    let running = pool.enqueue(sleeper(&env, ms(100), 7), TaskOptions::new());
    let queued = pool.enqueue(sleeper(&env, ms(100), 8), TaskOptions::new());
    let backing_off = pool.enqueue(
        || async { Err::<(), _>(Oops(ErrorClass::Retryable)) },
        TaskOptions::new().priority(9),
    );
    env.settle().await;
    drop(pool);
    assert_eq!(running.await.unwrap(), 7, "a running task finishes");
    assert!(matches!(queued.await, Err(TaskError::Stopped)));
    assert!(matches!(
        backing_off.await,
        Err(TaskError::Stopped | TaskError::Failed { .. })
    ));
}

async fn panics_are_caught_and_the_pool_keeps_running(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    let in_future = pool.enqueue(
        || async {
            if true {
                panic!("boom in the future");
            }
            Ok::<(), Oops>(())
        },
        TaskOptions::new(),
    );
    let in_closure = pool.enqueue(
        || -> futures::future::Ready<Result<(), Oops>> { panic!("boom in the closure") },
        TaskOptions::new(),
    );
    let after = pool.enqueue(|| async { Ok::<_, Oops>(5) }, TaskOptions::new());
    match in_future.await {
        Err(TaskError::Panicked(message)) => assert_eq!(message.0, "boom in the future"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(in_closure.await, Err(TaskError::Panicked(_))));
    assert_eq!(after.await.unwrap(), 5);
    let stats = pool.stats();
    assert_eq!((stats.failed, stats.succeeded, stats.retries), (2, 1, 0));
}

async fn batch_results_are_in_input_order_with_callbacks_once_each(env: Env) {
    let pool = env.builder().concurrency(3).build().unwrap();
    let completed = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..20u32).map(|i| {
        let env = env.clone();
        move || {
            let env = env.clone();
            async move {
                // Later items finish first.
                env.sleep(ms(u64::from(100 - i * 3))).await;
                if i % 7 == 3 {
                    Err(Oops(ErrorClass::Fatal))
                } else {
                    Ok(i * 2)
                }
            }
        }
    });
    let (c, f) = (completed.clone(), failed.clone());
    let result = pool
        .add_batch(tasks, TaskOptions::new())
        .on_item_complete(move |index, value| c.lock().unwrap().push((index, *value)))
        .on_item_error(move |index, _| f.lock().unwrap().push(index))
        .await;
    let expected: Vec<Option<u32>> = (0..20u32).map(|i| (i % 7 != 3).then_some(i * 2)).collect();
    assert_eq!(result.results, expected);
    let error_indexes: Vec<_> = result.errors.iter().map(|e| e.index).collect();
    assert_eq!(error_indexes, vec![3, 10, 17]);
    let mut completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), 17);
    assert!(
        completed.windows(2).any(|w| w[0].0 > w[1].0),
        "callbacks come in completion order"
    );
    completed.sort_unstable();
    completed.dedup();
    assert_eq!(completed.len(), 17, "each exactly once");
    let mut failed = failed.lock().unwrap().clone();
    failed.sort_unstable();
    assert_eq!(failed, vec![3, 10, 17]);
}

async fn events_describe_a_task_life(env: Env) {
    let recorder = Recorder::default();
    let pool = env
        .builder()
        .retry_delay(ms(10))
        .jitter(Jitter::None)
        .observer(recorder.clone())
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let attempts2 = attempts.clone();
    let env2 = env.clone();
    pool.enqueue(
        move || {
            let n = attempts2.fetch_add(1, Ordering::SeqCst);
            let env = env2.clone();
            async move {
                env.sleep(ms(5)).await;
                if n == 0 {
                    Err(Oops(ErrorClass::Throttled))
                } else {
                    Ok(())
                }
            }
        },
        TaskOptions::new().metadata(pool_core::Metadata::new().with("op", "put")),
    )
    .await
    .unwrap();
    pool.drain().await;
    pool.set_concurrency(3).unwrap();
    assert_eq!(
        recorder.names(),
        vec![
            "queued",
            "started",
            "attempt_finished",
            "retrying",
            "started",
            "attempt_finished",
            "finished",
            "drained",
            "concurrency_changed"
        ]
    );
    let events = recorder.events.lock().unwrap();
    let Event::AttemptFinished {
        result, latency, ..
    } = &events[2]
    else {
        panic!("{:?}", events[2])
    };
    assert_eq!(
        *result,
        pool_core::AttemptResult::Failed(ErrorClass::Throttled)
    );
    assert_eq!(*latency, ms(5));
    let Event::TaskFinished(record) = &events[6] else {
        panic!("{:?}", events[6])
    };
    assert_eq!(record.outcome, Outcome::Succeeded);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.execution, ms(10));
    assert_eq!(record.retry_delay, ms(10));
    assert_eq!(record.total(), ms(20));
    assert_eq!(record.task.metadata.get("op"), Some("put"));
}

async fn a_panicking_observer_is_muted_and_the_pool_keeps_running(env: Env) {
    #[derive(Debug)]
    struct Grumpy(Arc<AtomicU32>);
    impl pool_core::Observer for Grumpy {
        fn on_event(&self, _event: &Event) {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("observer bug");
        }
    }
    let calls = Arc::new(AtomicU32::new(0));
    let recorder = Recorder::default();
    let pool = env
        .builder()
        .observer(Grumpy(calls.clone()))
        .observer(recorder.clone())
        .build()
        .unwrap();
    for i in 0..3 {
        assert_eq!(
            pool.enqueue(sleeper(&env, ms(1), i), TaskOptions::new())
                .await
                .unwrap(),
            i
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "muted after its first panic"
    );
    assert_eq!(
        recorder
            .names()
            .iter()
            .filter(|n| **n == "finished")
            .count(),
        3
    );
}

async fn growing_the_limit_starts_queued_tasks_at_once(env: Env) {
    let pool = env.builder().concurrency(1).build().unwrap();
    let handles: Vec<_> = (0..5)
        .map(|i| pool.enqueue(sleeper(&env, ms(100), i), TaskOptions::new()))
        .collect();
    env.settle().await;
    assert_eq!(pool.stats().active, 1);
    pool.set_concurrency(5).unwrap();
    env.settle().await;
    assert_eq!(pool.stats().active, 5);
    pool.set_concurrency(2).unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    assert!(pool.set_concurrency(0).is_err());
}

async fn stats_add_up_after_a_mixed_run(env: Env) {
    let pool = env
        .builder()
        .concurrency(4)
        .retry_delay(ms(5))
        .timeout(ms(50))
        // 100 tasks on 4 slots is saturation 25: keep the pressure rule out of this test.
        .pressure_thresholds(1_000.0, 2_000.0)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..100u32)
        .map(|i| {
            let env = env.clone();
            pool.enqueue(
                move || {
                    let env = env.clone();
                    async move {
                        match i % 5 {
                            0 => Ok(i),
                            1 => Err(Oops(ErrorClass::Fatal)),
                            2 => Err(Oops(ErrorClass::Retryable)),
                            3 => {
                                env.sleep(ms(100)).await;
                                Ok(i)
                            }
                            _ => {
                                env.sleep(ms(1)).await;
                                Ok(i)
                            }
                        }
                    }
                },
                TaskOptions::new().retries(1),
            )
        })
        .collect();
    let mut resolved = 0;
    for handle in handles {
        let _ = handle.await;
        resolved += 1;
    }
    pool.drain().await;
    let stats = pool.stats();
    assert_eq!(resolved, 100);
    assert!(stats.in_balance(), "{stats:?}");
    assert_eq!(stats.succeeded, 40);
    assert_eq!(stats.failed, 60);
    assert_eq!(
        stats.retries, 40,
        "retryable and timed-out tasks retried once each"
    );
}

/// An admission policy like a global limit: a semaphore shared by "several pools".
#[derive(Debug, Clone)]
struct SharedPermits(Arc<tokio::sync::Semaphore>);

impl pool_core::Admission for SharedPermits {
    fn acquire(
        &self,
        _task: &pool_core::TaskInfo,
    ) -> pool_core::BoxFuture<Result<pool_core::AdmissionPermit, pool_core::Rejection>> {
        let semaphore = self.0.clone();
        Box::pin(async move {
            let permit = semaphore.acquire_owned().await.map_err(|_| {
                pool_core::Rejection::new(pool_core::RejectionKind::Unavailable, "closed")
            })?;
            Ok(pool_core::AdmissionPermit::holding(permit))
        })
    }
}

async fn an_admission_permit_bounds_attempts_below_the_local_limit(env: Env) {
    let permits = SharedPermits(Arc::new(tokio::sync::Semaphore::new(3)));
    let in_flight = InFlight::default();
    let pools: Vec<_> = (0..2)
        .map(|_| {
            env.builder()
                .concurrency(4)
                .admission(permits.clone())
                .build()
                .unwrap()
        })
        .collect();
    let handles: Vec<_> = (0..40u32)
        .map(|i| {
            let (env, in_flight) = (env.clone(), in_flight.clone());
            pools[i as usize % 2].enqueue(
                move || {
                    let (env, in_flight) = (env.clone(), in_flight.clone());
                    async move {
                        let _guard = in_flight.enter();
                        env.sleep(ms(10)).await;
                        Ok::<_, Oops>(i)
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(
        in_flight.max(),
        3,
        "2 pools x 4 slots, but only 3 shared permits"
    );
    assert_eq!(
        permits.0.available_permits(),
        3,
        "every permit was released"
    );
}

async fn a_rejecting_admission_policy_fails_tasks_fast_with_rejected(env: Env) {
    #[derive(Debug)]
    struct Open;
    impl pool_core::Admission for Open {
        fn acquire(
            &self,
            _task: &pool_core::TaskInfo,
        ) -> pool_core::BoxFuture<Result<pool_core::AdmissionPermit, pool_core::Rejection>>
        {
            Box::pin(async {
                Err(pool_core::Rejection::new(
                    pool_core::RejectionKind::CircuitOpen,
                    "backend down",
                )
                .retry_after(ms(500)))
            })
        }
    }
    let recorder = Recorder::default();
    let pool = env
        .builder()
        .admission(Open)
        .observer(recorder.clone())
        .build()
        .unwrap();
    let ran = Arc::new(AtomicU32::new(0));
    let ran2 = ran.clone();
    let result = pool
        .enqueue(
            move || {
                ran2.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Oops>(()) }
            },
            TaskOptions::new().retries(3),
        )
        .await;
    match result {
        Err(TaskError::Rejected(rejection)) => {
            assert_eq!(rejection.kind, pool_core::RejectionKind::CircuitOpen);
            assert_eq!(rejection.retry_after, Some(ms(500)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(pool.stats().failed, 1);
    let events = recorder.events.lock().unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::TaskFinished(r) if r.outcome == Outcome::Rejected)));
}

async fn stop_now_interrupts_a_task_waiting_for_admission(env: Env) {
    let permits = SharedPermits(Arc::new(tokio::sync::Semaphore::new(0)));
    let pool = env.builder().admission(permits).build().unwrap();
    let handle = pool.enqueue(|| async { Ok::<_, Oops>(()) }, TaskOptions::new());
    env.sleep(ms(10)).await;
    assert_eq!(
        pool.stats().active,
        1,
        "waiting for admission holds the slot"
    );
    pool.stop_now();
    assert!(matches!(handle.await, Err(TaskError::Stopped)));
}

/// Counts live values: closures and futures of tasks hold one each.
#[derive(Debug)]
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Live(counter.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn stopping_a_hundred_thousand_queued_tasks_resolves_all_and_leaks_nothing(env: Env) {
    let live = Arc::new(AtomicUsize::new(0));
    let pool = env
        .builder()
        .concurrency(8)
        .retry_delay(ms(50))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..100_000u32)
        .map(|i| {
            let (env, closure_guard, live) = (env.clone(), Live::new(&live), live.clone());
            pool.enqueue(
                move || {
                    let _ = &closure_guard;
                    let (env, future_guard) = (env.clone(), Live::new(&live));
                    async move {
                        let _guard = future_guard;
                        env.sleep(ms(u64::from(1 + i % 20))).await;
                        if i % 3 == 0 {
                            Err(Oops(ErrorClass::Retryable))
                        } else {
                            Ok(i)
                        }
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect();
    env.sleep(ms(100)).await;
    drop(pool);
    let (mut ok, mut stopped, mut failed) = (0, 0, 0);
    for handle in handles {
        match handle.await {
            Ok(_) => ok += 1,
            Err(TaskError::Stopped) => stopped += 1,
            Err(TaskError::Failed { .. }) => failed += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok + stopped + failed, 100_000);
    assert!(
        stopped > 99_000,
        "queued and backing-off tasks stopped: {stopped}"
    );
    assert!(ok > 0, "tasks that were running finished: {ok}");
    env.settle().await;
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "no closure or future outlives its task"
    );
}
