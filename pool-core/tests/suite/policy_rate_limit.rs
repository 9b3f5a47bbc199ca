//! Rate limits on a real pool, on virtual time: accuracy over a simulated minute, AIMD
//! back-off and recovery, per-key isolation, bounded waits.
#![cfg(feature = "rate-limit")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::policy::{Aimd, KeyedRateLimiter, RateLimit, RateLimiter};
use pool_core::{
    Admission, AdmissionPermit, BoxFuture, ErrorClass, Event, Executor, Metadata, Observer, Pool,
    Rejection, RejectionKind, SimExecutor, TaskError, TaskHandle, TaskId, TaskInfo, TaskOptions,
};

/// Records when each attempt started, and with which labels.
#[derive(Debug, Default)]
struct Starts(Mutex<Vec<(Instant, Metadata, TaskId)>>);

impl Observer for Starts {
    fn on_event(&self, event: &Event) {
        if let Event::TaskStarted { task, at, .. } = event {
            self.0
                .lock()
                .unwrap()
                .push((*at, task.metadata.clone(), task.id));
        }
    }
}

impl Starts {
    /// Starts in `[from, from + len)`, optionally only those labelled `label = value`.
    fn count(&self, from: Instant, len: Duration, label: Option<(&str, &str)>) -> usize {
        let starts = self.0.lock().unwrap();
        starts
            .iter()
            .filter(|(at, ..)| *at >= from && *at < from + len)
            .filter(|(_, meta, _)| label.is_none_or(|(k, v)| meta.get(k) == Some(v)))
            .count()
    }
}

fn sim_pool(sim: &SimExecutor, starts: &Arc<Starts>) -> pool_core::PoolBuilder {
    Pool::builder()
        .executor_arc(Arc::new(sim.clone()))
        .concurrency(16)
        .retries(0)
        .no_pressure_rule()
        .seed(3)
        .observer_arc(starts.clone())
}

fn quick(pool: &Pool, meta: Metadata) -> TaskHandle<(), &'static str> {
    pool.enqueue_with(
        || async { Ok(()) },
        TaskOptions::new().metadata(meta),
        |_: &&str| ErrorClass::Retryable,
    )
}

#[test]
fn a_simulated_minute_admits_the_rate_plus_the_burst_within_one_percent() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let starts = Arc::new(Starts::default());
    let limiter = RateLimiter::new(RateLimit::new(100.0, 10).unwrap(), executor.clone());
    let pool = sim_pool(&sim, &starts).admission(limiter).build().unwrap();
    let start = sim.now();
    let minute = Duration::from_secs(60);
    // More work than a minute allows, all queued at once.
    let handles: Vec<_> = (0..8_000).map(|_| quick(&pool, Metadata::new())).collect();
    sim.block_on(executor.sleep(minute));
    let admitted = starts.count(start, minute, None);
    let expected = 100.0 * 60.0 + 10.0;
    let error = (admitted as f64 - expected).abs() / expected;
    assert!(
        error <= 0.01,
        "admitted {admitted} in a simulated minute, expected {expected} within 1 %"
    );
    // No second held more than the rate plus the burst.
    for second in 0..60 {
        let in_second = starts.count(
            start + Duration::from_secs(second),
            Duration::from_secs(1),
            None,
        );
        assert!(in_second <= 110, "second {second}: {in_second} starts");
    }
    pool.stop_now();
    drop(handles);
}

#[test]
fn an_attempt_that_would_wait_too_long_is_rejected_with_a_hint() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let starts = Arc::new(Starts::default());
    let limiter = RateLimiter::builder(RateLimit::new(1.0, 1).unwrap(), executor)
        .max_wait(Duration::from_millis(500))
        .build()
        .unwrap();
    let pool = sim_pool(&sim, &starts).admission(limiter).build().unwrap();
    sim.block_on(async {
        let first = quick(&pool, Metadata::new());
        let second = quick(&pool, Metadata::new());
        first.await.expect("the burst admits the first");
        match second.await {
            Err(TaskError::Rejected(rejection)) => {
                assert_eq!(rejection.kind, RejectionKind::RateLimited);
                assert_eq!(rejection.retry_after, Some(Duration::from_secs(1)));
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
    });
}

/// A backend that answers "slow down" to every call until `until`.
fn throttled_until(
    pool: &Pool,
    sim: &SimExecutor,
    until: Instant,
    meta: Metadata,
) -> TaskHandle<(), &'static str> {
    let sim = sim.clone();
    pool.enqueue_with(
        move || {
            let throttled = sim.now() < until;
            async move {
                if throttled {
                    Err("503 SlowDown")
                } else {
                    Ok(())
                }
            }
        },
        TaskOptions::new().metadata(meta),
        |_: &&str| ErrorClass::Throttled,
    )
}

#[test]
fn throttling_halves_the_rate_and_it_recovers_additively() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let starts = Arc::new(Starts::default());
    let limiter = RateLimiter::builder(RateLimit::new(100.0, 10).unwrap(), executor.clone())
        .adaptive(Aimd::new())
        .build()
        .unwrap();
    let pool = sim_pool(&sim, &starts)
        .admission(limiter.clone())
        .build()
        .unwrap();
    let start = sim.now();
    let throttling = Duration::from_millis(2_500);
    let handles: Vec<_> = (0..6_000)
        .map(|_| throttled_until(&pool, &sim, start + throttling, Metadata::new()))
        .collect();
    // Read half-way between whole seconds, away from the instants the rate steps at.
    let mut rates = Vec::new();
    sim.block_on(async {
        executor.sleep(Duration::from_millis(500)).await;
        for _ in 0..24 {
            rates.push(limiter.current_rate());
            executor.sleep(Duration::from_secs(1)).await;
        }
    });
    assert_eq!(rates[0], 50.0, "halved on the first 503: {rates:?}");
    let lowest = rates.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        lowest <= 20.0,
        "halved once per second while throttled: {rates:?}"
    );
    // From 3.5 s on (throttling ended at 2.5 s) the rate only climbs, 5/s each second.
    for pair in rates[3..].windows(2) {
        let expected = (pair[0] + 5.0).min(100.0);
        assert_eq!(pair[1], expected, "additive recovery: {rates:?}");
    }
    assert_eq!(limiter.current_rate(), 100.0, "recovered: {rates:?}");
    // The pool's throughput followed the rate: slow while backing off, full once recovered.
    let slow = starts.count(start + Duration::from_secs(3), Duration::from_secs(1), None);
    let full = starts.count(
        start + Duration::from_secs(23),
        Duration::from_secs(1),
        None,
    );
    let slow_rate = rates[3];
    assert!(
        (slow as f64 - slow_rate).abs() <= 6.0,
        "{slow} starts in second 4 at {slow_rate}/s"
    );
    assert!((99..=101).contains(&full), "{full} starts in second 24");
    pool.stop_now();
    drop(handles);
}

/// A task's key: the first `/`-separated segment of its `"key"` label.
fn first_segment(task: &TaskInfo) -> Option<String> {
    let key = task.metadata.get("key")?;
    Some(key.split('/').next().unwrap_or(key).to_owned())
}

#[test]
fn a_throttled_prefix_slows_down_alone() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let starts = Arc::new(Starts::default());
    let limiter = KeyedRateLimiter::builder(executor.clone(), first_segment, |_: &String| {
        RateLimit::new(50.0, 5).unwrap()
    })
    .adaptive(Aimd::new())
    .build()
    .unwrap();
    // 16 slots: the hot prefix's tasks wait for their turns parked, without slots.
    let pool = sim_pool(&sim, &starts)
        .admission(limiter.clone())
        .build()
        .unwrap();
    let start = sim.now();
    let hot = || Metadata::new().with("op", "put").with("key", "hot/a.bin");
    let calm = || Metadata::new().with("op", "put").with("key", "calm/b.bin");
    let mut handles = Vec::new();
    for _ in 0..400 {
        handles.push(throttled_until(
            &pool,
            &sim,
            start + Duration::from_secs(60),
            hot(),
        ));
        handles.push(quick(&pool, calm()));
    }
    sim.block_on(executor.sleep(Duration::from_secs(5)));
    let key = |prefix: &str| prefix.to_owned();
    assert_eq!(limiter.current_rate(&key("calm")), Some(50.0));
    let hot_rate = limiter.current_rate(&key("hot")).unwrap();
    assert!(hot_rate <= 5.0, "hot prefix at {hot_rate}/s");
    assert_eq!(limiter.keys(), 2);
    let calm_starts = starts.count(start, Duration::from_secs(5), Some(("key", "calm/b.bin")));
    let hot_starts = starts.count(start, Duration::from_secs(5), Some(("key", "hot/a.bin")));
    assert!(
        (250..=256).contains(&calm_starts),
        "calm prefix: {calm_starts} starts in 5 s"
    );
    assert!(hot_starts < 100, "hot prefix: {hot_starts} starts in 5 s");
    pool.stop_now();
    drop(handles);
}

#[test]
fn tasks_without_a_key_are_not_limited() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let starts = Arc::new(Starts::default());
    let limiter = KeyedRateLimiter::builder(executor, first_segment, |_: &String| {
        RateLimit::new(50.0, 5).unwrap()
    })
    .adaptive(Aimd::new())
    .build()
    .unwrap();
    let pool = sim_pool(&sim, &starts)
        .admission(limiter.clone())
        .build()
        .unwrap();
    let start = sim.now();
    sim.block_on(async {
        let handles: Vec<_> = (0..1_000).map(|_| quick(&pool, Metadata::new())).collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });
    assert_eq!(sim.now(), start, "no waiting at all");
    assert_eq!(limiter.keys(), 0);
}

/// Records the order attempts reach the limiter it wraps.
#[derive(Debug)]
struct ArrivalOrder<A> {
    inner: A,
    arrivals: Arc<Mutex<Vec<pool_core::TaskId>>>,
}

impl<A: Admission> Admission for ArrivalOrder<A> {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        self.arrivals.lock().unwrap().push(task.id);
        self.inner.acquire(task)
    }
}

#[test]
fn waiting_attempts_are_admitted_in_arrival_order_one_per_token() {
    let sim = SimExecutor::with_seed(11);
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let starts = Arc::new(Starts::default());
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let limiter = ArrivalOrder {
        inner: RateLimiter::new(RateLimit::new(10.0, 1).unwrap(), executor),
        arrivals: arrivals.clone(),
    };
    let pool = sim_pool(&sim, &starts)
        .concurrency(64)
        .admission(limiter)
        .build()
        .unwrap();
    let ids = sim.block_on(async {
        let handles: Vec<_> = (0..30).map(|_| quick(&pool, Metadata::new())).collect();
        let ids: Vec<_> = handles.iter().map(|h| h.id()).collect();
        for handle in handles {
            handle.await.unwrap();
        }
        ids
    });
    let arrivals = arrivals.lock().unwrap().clone();
    let starts = starts.0.lock().unwrap();
    let started: Vec<_> = starts.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(arrivals.len(), ids.len());
    assert_eq!(started, arrivals, "admitted in the order they arrived");
    for pair in starts.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, Duration::from_millis(100));
    }
}

/// A 10 ms task labelled `tenant = tenant` (or unlabelled: not limited).
fn ten_ms(
    pool: &Pool,
    executor: &Arc<dyn Executor>,
    tenant: Option<&str>,
    options: TaskOptions,
) -> TaskHandle<(), &'static str> {
    let executor = executor.clone();
    let meta = tenant.map_or_else(Metadata::new, |t| {
        Metadata::new().with("tenant", t.to_owned())
    });
    pool.enqueue_with(
        move || {
            let sleep = executor.sleep(Duration::from_millis(10));
            async move {
                sleep.await;
                Ok(())
            }
        },
        options.metadata(meta),
        |_: &&str| ErrorClass::Retryable,
    )
}

fn per_tenant(executor: &Arc<dyn Executor>, per_second: f64) -> KeyedRateLimiter<String> {
    KeyedRateLimiter::builder(
        executor.clone(),
        |task: &TaskInfo| task.metadata.get("tenant").map(str::to_owned),
        move |_: &String| RateLimit::new(per_second, 1).unwrap(),
    )
    .build()
    .unwrap()
}

/// A simulated clock, its executor and a start recorder, for the tenant tests.
struct Bench {
    sim: SimExecutor,
    executor: Arc<dyn Executor>,
    starts: Arc<Starts>,
}

impl Bench {
    fn new() -> Self {
        let sim = SimExecutor::new();
        Self {
            executor: Arc::new(sim.clone()),
            sim,
            starts: Arc::new(Starts::default()),
        }
    }

    /// A pool of `concurrency` slots with `admission`.
    fn pool(&self, concurrency: usize, admission: impl Admission) -> Pool {
        sim_pool(&self.sim, &self.starts)
            .concurrency(concurrency)
            .admission(admission)
            .build()
            .unwrap()
    }
}

/// A limiter seen only through `acquire` (what a policy without a precheck offers): its
/// waits hold the task's slot.
#[derive(Debug)]
struct AcquireOnly(KeyedRateLimiter<String>);

impl Admission for AcquireOnly {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        self.0.acquire(task)
    }
}

/// 20 tasks of a tenant limited to 1/s queued before 20 unlimited ones, on 4 slots: when the
/// unlimited tasks are all done, and the pool's counts half a second in.
fn hot_tenant_then_others(
    sim: &SimExecutor,
    executor: &Arc<dyn Executor>,
    pool: &Pool,
) -> (Duration, pool_core::Stats) {
    let start = sim.now();
    let hot: Vec<_> = (0..20)
        .map(|_| ten_ms(pool, executor, Some("hot"), TaskOptions::new()))
        .collect();
    let others: Vec<_> = (0..20)
        .map(|_| ten_ms(pool, executor, None, TaskOptions::new()))
        .collect();
    let (others_done, half_way) = sim.block_on(async {
        let others_done = async {
            for handle in others {
                handle.await.unwrap();
            }
            sim.now() - start
        };
        let half_way = async {
            executor.sleep(Duration::from_millis(500)).await;
            pool.stats()
        };
        let both = futures::join!(others_done, half_way);
        for handle in hot {
            handle.await.unwrap();
        }
        both
    });
    assert_eq!(
        sim.now() - start,
        Duration::from_millis(19_010),
        "1/s, the first at once"
    );
    assert!(pool.stats().in_balance());
    (others_done, half_way)
}

#[test]
fn a_key_over_its_rate_holds_no_slots_while_it_waits() {
    let bench = Bench::new();
    let (sim, executor, starts) = (&bench.sim, &bench.executor, &bench.starts);
    let limiter = per_tenant(executor, 1.0);
    let pool = bench.pool(4, limiter.clone());
    let (others_done, half_way) = hot_tenant_then_others(sim, executor, &pool);
    // 20 × 10 ms on 4 slots, one of them running the hot tenant's first task for the first
    // 10 ms: 3 + 4 + 4 + 4 + 4 + 1 in 60 ms. Nothing waits on the hot tenant.
    assert_eq!(others_done, Duration::from_millis(60));
    assert_eq!(
        (half_way.active, half_way.deferred),
        (0, 19),
        "{half_way:?}"
    );
    // The hot tenant's tasks went one a second, on the second.
    let starts = starts.0.lock().unwrap();
    let hot_starts: Vec<Duration> = starts
        .iter()
        .filter(|(_, meta, _)| meta.get("tenant") == Some("hot"))
        .map(|(at, ..)| *at - starts[0].0)
        .collect();
    assert_eq!(
        hot_starts,
        (0..20).map(Duration::from_secs).collect::<Vec<_>>()
    );
}

#[test]
fn the_same_load_through_acquire_alone_holds_the_others_up() {
    // The contrast that shows what the precheck buys: waits in `acquire` keep their slots.
    let bench = Bench::new();
    let (sim, executor) = (&bench.sim, &bench.executor);
    let pool = bench.pool(4, AcquireOnly(per_tenant(executor, 1.0)));
    let (others_done, half_way) = hot_tenant_then_others(sim, executor, &pool);
    assert!(others_done >= Duration::from_secs(3), "{others_done:?}");
    assert_eq!((half_way.active, half_way.deferred), (4, 0), "{half_way:?}");
}

#[test]
fn a_later_task_of_higher_priority_takes_a_parked_task_s_turn() {
    let bench = Bench::new();
    let (sim, executor, starts) = (&bench.sim, &bench.executor, &bench.starts);
    let pool = bench.pool(2, per_tenant(executor, 1.0));
    let start = sim.now();
    let low: Vec<_> = (0..10)
        .map(|_| ten_ms(&pool, executor, Some("t"), TaskOptions::new()))
        .collect();
    let (urgent_started, low_ids) = sim.block_on(async {
        executor.sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.stats().deferred, 9, "all but the first parked");
        let urgent = ten_ms(&pool, executor, Some("t"), TaskOptions::new().priority(10));
        let urgent_id = urgent.id();
        urgent.await.unwrap();
        let low_ids: Vec<_> = low.iter().map(TaskHandle::id).collect();
        for handle in low {
            handle.await.unwrap();
        }
        let starts = starts.0.lock().unwrap();
        let urgent_started = starts.iter().find(|(.., id)| *id == urgent_id).unwrap().0;
        (urgent_started - start, low_ids)
    });
    assert_eq!(
        urgent_started,
        Duration::from_secs(1),
        "the next turn, not the 11th"
    );
    // Every low-priority task still ran, one a second, the one pushed back last.
    let order: Vec<TaskId> = starts
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(.., id)| *id)
        .collect();
    assert_eq!(order.len(), 11);
    assert_eq!(order[0], low_ids[0]);
    assert_eq!(order[2..10], low_ids[2..10]);
    assert_eq!(order[10], low_ids[1]);
    assert_eq!(sim.now() - start, Duration::from_millis(10_010));
}

#[test]
fn parked_tasks_resolve_when_cancelled_or_stopped() {
    let bench = Bench::new();
    let (sim, executor) = (&bench.sim, &bench.executor);
    let pool = bench.pool(2, per_tenant(executor, 1.0));
    let start = sim.now();
    let token = pool_core::CancellationToken::new();
    let first = ten_ms(&pool, executor, Some("t"), TaskOptions::new());
    let cancelled = ten_ms(
        &pool,
        executor,
        Some("t"),
        TaskOptions::new().cancellation(token.clone()),
    );
    let rest: Vec<_> = (0..5)
        .map(|_| ten_ms(&pool, executor, Some("t"), TaskOptions::new()))
        .collect();
    sim.block_on(async {
        executor.sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.stats().deferred, 6);
        token.cancel();
        assert!(matches!(cancelled.await, Err(TaskError::Cancelled)));
        assert_eq!(
            sim.now() - start,
            Duration::from_millis(100),
            "at once, not at its turn"
        );
        first.await.unwrap();
        pool.stop().await;
    });
    for handle in rest {
        assert!(matches!(sim.block_on(handle), Err(TaskError::Stopped)));
    }
    let stats = pool.stats();
    assert_eq!(stats.deferred, 0);
    assert_eq!(
        (stats.succeeded, stats.cancelled, stats.stopped_tasks),
        (1, 1, 5)
    );
    assert!(stats.in_balance(), "{stats:?}");
}

/// Records deferrals and finished tasks.
#[derive(Debug, Default)]
struct Deferrals {
    deferred: Mutex<Vec<(TaskId, Duration)>>,
    finished: Mutex<Vec<(TaskId, Duration, Duration)>>,
}

impl Observer for Deferrals {
    fn on_event(&self, event: &Event) {
        match event {
            Event::TaskDeferred { task, delay, .. } => {
                self.deferred.lock().unwrap().push((task.id, *delay));
            }
            Event::TaskFinished(record) => self.finished.lock().unwrap().push((
                record.task.id,
                record.queue_wait,
                record.execution,
            )),
            _ => {}
        }
    }
}

#[test]
fn a_deferral_is_an_event_and_its_parked_time_counts_as_queue_wait() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let starts = Arc::new(Starts::default());
    let seen = Arc::new(Deferrals::default());
    let pool = sim_pool(&sim, &starts)
        .concurrency(2)
        .admission(per_tenant(&executor, 2.0))
        .observer_arc(seen.clone())
        .build()
        .unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| ten_ms(&pool, &executor, Some("t"), TaskOptions::new()))
        .collect();
    let ids: Vec<_> = handles.iter().map(TaskHandle::id).collect();
    sim.block_on(async {
        for handle in handles {
            handle.await.unwrap();
        }
    });
    let ms = Duration::from_millis;
    assert_eq!(
        *seen.deferred.lock().unwrap(),
        [(ids[1], ms(500)), (ids[2], ms(1_000))]
    );
    let mut finished = seen.finished.lock().unwrap().clone();
    finished.sort();
    let expected: Vec<_> = [0, 500, 1_000]
        .into_iter()
        .zip(&ids)
        .map(|(wait, id)| (*id, ms(wait), ms(10)))
        .collect();
    assert_eq!(finished, expected);
}

/// Refuses every attempt.
#[derive(Debug)]
struct RefuseAll;

impl Admission for RefuseAll {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(std::future::ready(Err(Rejection::new(
            RejectionKind::Other("refused".into()),
            "refused",
        ))))
    }
}

#[test]
fn tasks_that_may_go_at_once_book_nothing_another_policy_could_strand() {
    // RefuseAll is asked before the limiter can take the task's turn: a turn booked in the
    // precheck would stay behind for every refused task.
    let bench = Bench::new();
    let limiter = KeyedRateLimiter::builder(
        bench.executor.clone(),
        |task: &TaskInfo| task.metadata.get("tenant").map(str::to_owned),
        |_: &String| RateLimit::new(1_000.0, 100).unwrap(),
    )
    .build()
    .unwrap();
    let pool = sim_pool(&bench.sim, &bench.starts)
        .admission(RefuseAll)
        .admission(limiter.clone())
        .build()
        .unwrap();
    let handles: Vec<_> = (0..50)
        .map(|_| ten_ms(&pool, &bench.executor, Some("t"), TaskOptions::new()))
        .collect();
    bench.sim.block_on(async {
        for handle in handles {
            assert!(matches!(handle.await, Err(TaskError::Rejected(_))));
        }
    });
    assert_eq!(limiter.booked(), 0);
}

/// A `RateLimiter` keeps one cell where a keyed limiter keeps a map of them: asked the same
/// things at the same moments, it answers exactly as a keyed limiter that gives every task
/// one key — tasks that go at once or are parked until their moment, turns taken over by
/// higher priorities, waits too long to take, throttling and recovery, idle spells long
/// enough to forget the cell.
#[test]
fn a_rate_limiter_answers_as_a_keyed_one_with_a_single_key() {
    use futures::FutureExt;
    use pool_core::AttemptResult;

    for (seed, adaptive) in [(1, false), (2, true), (3, true)] {
        let sim = SimExecutor::with_seed(seed);
        let executor: Arc<dyn Executor> = Arc::new(sim.clone());
        let limit = RateLimit::new(50.0, 4).unwrap();
        let max_wait = Duration::from_millis(400);
        let mut single = RateLimiter::builder(limit, executor.clone()).max_wait(max_wait);
        let mut keyed = KeyedRateLimiter::builder(
            executor.clone(),
            |_: &TaskInfo| Some(()),
            move |_: &()| limit,
        )
        .max_wait(max_wait);
        if adaptive {
            single = single.adaptive(Aimd::new());
            keyed = keyed.adaptive(Aimd::new());
        }
        let (single, keyed) = (single.build().unwrap(), keyed.build().unwrap());
        let mut rng = fastrand::Rng::with_seed(seed);
        for step in 0..4_000 {
            let task = TaskInfo::new(TaskId(rng.u64(0..40))).with_priority(rng.i32(0..3));
            let (action, throttled) = (rng.u8(0..4), rng.u8(0..8) == 0);
            let ask = |policy: &dyn Admission| -> String {
                let finish = |permit: AdmissionPermit| {
                    let shown = format!("{permit:?}");
                    let result = if throttled {
                        AttemptResult::Failed(ErrorClass::Throttled)
                    } else {
                        AttemptResult::Succeeded
                    };
                    policy.complete(permit, &result);
                    shown
                };
                match action {
                    0 => format!("{:?}", policy.try_admit(&task, None).map(|a| a.map(finish))),
                    // The pool's clock, read as the task left the queue.
                    1 if throttled => format!(
                        "{:?}",
                        policy
                            .try_admit(&task, Some(sim.now()))
                            .map(|a| a.map(finish))
                    ),
                    1 => format!("{:?}", policy.try_acquire(&task).map(|a| a.map(finish))),
                    2 => format!("{:?}", policy.precheck(&task)),
                    // A wait not over at once is dropped (its moment stays taken).
                    _ => format!(
                        "{:?}",
                        policy.acquire(&task).now_or_never().map(|a| a.map(finish))
                    ),
                }
            };
            let (from_single, from_keyed) = (ask(&single), ask(&keyed));
            assert_eq!(from_single, from_keyed, "seed {seed}, step {step}");
            assert_eq!(
                single.current_rate(),
                keyed.current_rate(&()).unwrap_or(limit.per_second()),
                "seed {seed}, step {step}"
            );
            let idle = if rng.u16(0..500) == 0 { 61_000 } else { 0 };
            sim.advance(Duration::from_millis(rng.u64(0..30) + idle));
        }
    }
}
