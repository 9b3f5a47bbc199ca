//! When the pool reads its executor's clock: a task's entry into the queue always; a runner's
//! step only when something needs the moment (observers, a failure to decide on, a queue that
//! ages, an attempt that waits under a timeout). What the moments feed stays right without
//! the reads: timeouts, aging, observers' waits.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{BoxFuture, Executor, Pool, PoolBuilder, SimExecutor, TaskError, TaskOptions};

use crate::support::Recorder;

/// A [`SimExecutor`] that counts its clock's reads.
#[derive(Debug)]
struct CountingClock {
    sim: SimExecutor,
    reads: AtomicUsize,
}

impl Executor for CountingClock {
    fn spawn(&self, task: BoxFuture<()>) {
        self.sim.spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        self.sim.sleep(duration)
    }

    fn now(&self) -> Instant {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.sim.now()
    }
}

fn counting() -> Arc<CountingClock> {
    Arc::new(CountingClock {
        sim: SimExecutor::with_seed(5),
        reads: AtomicUsize::new(0),
    })
}

/// Enqueues `tasks` no-op tasks into `pool` at once and awaits them all.
async fn run_noops(pool: &Pool, tasks: usize, priority: impl Fn(usize) -> i32) {
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            pool.enqueue(
                || async { Ok::<(), Infallible>(()) },
                TaskOptions::new().priority(priority(i)),
            )
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

/// Clock reads while a pool with the defaults (a timeout, a retry budget, aging on; no
/// observers) at concurrency 4 runs `tasks` no-op tasks of `priority`.
fn clock_reads(tasks: usize, priority: impl Fn(usize) -> i32) -> usize {
    clock_reads_with(tasks, priority, |builder, _| builder)
}

/// [`clock_reads`] of a pool that `with` sets up further (given the pool's clock).
fn clock_reads_with(
    tasks: usize,
    priority: impl Fn(usize) -> i32,
    with: impl FnOnce(PoolBuilder, Arc<dyn Executor>) -> PoolBuilder,
) -> usize {
    let clock = counting();
    let sim = clock.sim.clone();
    sim.block_on(async {
        let executor = Arc::clone(&clock) as Arc<dyn Executor>;
        let builder = Pool::builder()
            .executor_arc(Arc::clone(&executor))
            .concurrency(4);
        let pool = with(builder, executor).build().unwrap();
        let before = clock.reads.load(Ordering::SeqCst);
        run_noops(&pool, tasks, priority).await;
        clock.reads.load(Ordering::SeqCst) - before
    })
}

#[test]
fn a_saturated_plain_pool_reads_the_clock_once_per_task() {
    let tasks = 400;
    let reads = clock_reads(tasks, |_| 0);
    // One read as each task enters the queue; the runners' steps need none.
    assert!(
        reads <= tasks + 8,
        "{reads} clock reads for {tasks} tasks (two per task before runners read lazily)"
    );
}

#[test]
fn a_queue_that_ages_still_pops_by_the_clock() {
    let tasks = 400;
    let reads = clock_reads(tasks, |i| (i % 3) as i32);
    // Each pop of a queue of several levels weighs waits at its moment.
    assert!(
        reads >= 2 * tasks - 8,
        "{reads} clock reads for {tasks} tasks of three priorities"
    );
}

/// A rate limiter far above the load, in a pool whose pops read the clock (a queue of
/// several levels weighs waits), takes the pop's moment instead of reading the clock again:
/// the pool reads it as often as without the limiter (the first pops, before the queue
/// holds several levels, aside).
#[cfg(feature = "rate-limit")]
#[test]
fn a_rate_limiter_takes_the_moment_the_pop_read() {
    use pool_core::policy::{RateLimit, RateLimiter};
    let tasks = 400;
    let three_levels = |i: usize| (i % 3) as i32;
    let without = clock_reads(tasks, three_levels);
    let with = clock_reads_with(tasks, three_levels, |builder, clock| {
        builder.admission(RateLimiter::new(RateLimit::new(1e9, 1_000).unwrap(), clock))
    });
    assert!(
        with <= without + 8,
        "{with} clock reads with the limiter, {without} without ({tasks} tasks)"
    );
    // Where the pops read no clock (one level), the limiter reads it once per task.
    let one_level = clock_reads_with(
        tasks,
        |_| 0,
        |builder, clock| {
            builder.admission(RateLimiter::new(RateLimit::new(1e9, 1_000).unwrap(), clock))
        },
    );
    assert!(
        one_level >= 2 * tasks - 8,
        "{one_level} clock reads, one level"
    );
}

#[test]
fn an_attempt_popped_without_a_clock_read_still_times_out() {
    let sim = SimExecutor::with_seed(3);
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    sim.block_on(async move {
        let pool = Pool::builder()
            .executor_arc(Arc::clone(&executor))
            .concurrency(1)
            .retries(0)
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        // The second task is popped by the runner of the first as that attempt ends, 50 ms
        // in (no clock read then): its timeout counts from its first wait.
        let sleeper = Arc::clone(&executor);
        let first = pool.enqueue(
            move || {
                let sleep = sleeper.sleep(Duration::from_millis(50));
                async move {
                    sleep.await;
                    Ok::<(), Infallible>(())
                }
            },
            TaskOptions::new(),
        );
        let second = pool.enqueue(
            std::future::pending::<Result<(), Infallible>>,
            TaskOptions::new(),
        );
        let start = executor.now();
        first.await.unwrap();
        let result = second.await;
        let took = executor.now() - start;
        assert!(
            matches!(result, Err(TaskError::TimedOut { attempts: 1, timeout }) if timeout == Duration::from_millis(100)),
            "{result:?}"
        );
        assert_eq!(took, Duration::from_millis(150));
    });
}

#[test]
fn observers_still_see_each_wait_and_latency() {
    let sim = SimExecutor::with_seed(9);
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.events);
    sim.block_on(async move {
        let pool = Pool::builder()
            .executor_arc(Arc::clone(&executor))
            .concurrency(1)
            .observer(recorder)
            .build()
            .unwrap();
        let sleeper = Arc::clone(&executor);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let sleeper = Arc::clone(&sleeper);
                pool.enqueue(
                    move || {
                        let sleep = sleeper.sleep(Duration::from_millis(10));
                        async move {
                            sleep.await;
                            Ok::<(), Infallible>(())
                        }
                    },
                    TaskOptions::new(),
                )
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });
    let records = finished(&events);
    let waits: Vec<_> = records.iter().map(|record| record.queue_wait).collect();
    let ms = Duration::from_millis;
    // One slot: each task waits for the ones before it, and runs 10 ms.
    assert_eq!(waits, [ms(0), ms(10), ms(20)]);
    assert!(records.iter().all(|record| record.execution == ms(10)));
}

/// The records of the tasks finished among `events`, in finishing order.
fn finished(events: &Mutex<Vec<pool_core::Event>>) -> Vec<pool_core::TaskRecord> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            pool_core::Event::TaskFinished(record) => Some(record.clone()),
            _ => None,
        })
        .collect()
}

/// Runs `run` on a pool on the `TokioExecutor` of a runtime built by `runtime` (with time
/// on), set up further by `with`, with a recorder attached, and returns the records of the
/// tasks that finished. Checks that the executor says its clock is the system's exactly when
/// `system_clock`.
fn finished_on_tokio<Fut: std::future::Future<Output = ()>>(
    runtime: &mut tokio::runtime::Builder,
    system_clock: bool,
    with: impl FnOnce(PoolBuilder) -> PoolBuilder,
    run: impl FnOnce(Pool) -> Fut,
) -> Vec<pool_core::TaskRecord> {
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.events);
    let runtime = runtime.enable_time().build().unwrap();
    runtime.block_on(async move {
        let executor = pool_core::TokioExecutor::current();
        assert_eq!(executor.now_is_system_clock(), system_clock);
        let builder = Pool::builder().executor(executor).observer(recorder);
        run(with(builder).build().unwrap()).await;
    });
    finished(&events)
}

/// A task that sleeps `duration` on tokio's clock.
fn sleeps(duration: Duration) -> impl Fn() -> BoxFuture<Result<(), Infallible>> + Send + 'static {
    move || {
        Box::pin(async move {
            tokio::time::sleep(duration).await;
            Ok(())
        })
    }
}

/// Three tasks of 10 s each on tokio's paused clock, one slot: the pool times them on that
/// clock, not on the system's. Were the engine to read the system clock here (a
/// `TokioExecutor` on a current-thread runtime saying its clock is the system's), the waits
/// and executions would be the microseconds the test really takes, not 0 / 10 / 20 s and
/// 10 s.
#[test]
fn tokio_paused_time_times_tasks_on_the_virtual_clock() {
    let s = Duration::from_secs;
    let records = finished_on_tokio(
        tokio::runtime::Builder::new_current_thread().start_paused(true),
        false,
        |builder| builder.concurrency(1).timeout(s(60)),
        |pool| async move {
            let handles: Vec<_> = (0..3)
                .map(|_| pool.enqueue(sleeps(s(10)), TaskOptions::new()))
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
        },
    );
    let waits: Vec<_> = records.iter().map(|record| record.queue_wait).collect();
    assert_eq!(waits, [s(0), s(10), s(20)]);
    assert!(
        records.iter().all(|record| record.execution == s(10)),
        "{records:?}"
    );
}

/// On a multi-threaded runtime (its clock cannot be paused) the engine reads the system's
/// clock itself, and what it measures agrees with the runtime's timers, which run on
/// `Instant`s: a task that sleeps 30 ms ran at least 30 ms, and a task cut by a 50 ms
/// timeout ran at least 50 ms and was cut (its sleep is 60 s). Fails if `TokioExecutor`
/// did not say so here, or if the engine's reads ran slower than the timers' clock. (That
/// the engine's reads and the `Instant`s it turns deadlines into are one clock is
/// `engine::ticks`' unit test.)
#[test]
fn a_multi_threaded_tokio_runtime_is_timed_on_the_system_clock() {
    let ms = Duration::from_millis;
    let records = finished_on_tokio(
        tokio::runtime::Builder::new_multi_thread().worker_threads(2),
        true,
        |builder| builder.concurrency(2).retries(0).timeout(ms(50)),
        |pool| async move {
            let short = pool.enqueue(sleeps(ms(30)), TaskOptions::new());
            let long = pool.enqueue(sleeps(ms(60_000)), TaskOptions::new());
            short.await.unwrap();
            assert!(matches!(long.await, Err(TaskError::TimedOut { .. })));
        },
    );
    assert_eq!(records.len(), 2, "{records:?}");
    let (short, long): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|record| matches!(record.outcome, pool_core::Outcome::Succeeded));
    assert!(short[0].execution >= ms(30), "{short:?}");
    assert!(long[0].execution >= ms(50), "{long:?}");
    for record in &records {
        assert!(record.first_started_at.unwrap() >= record.queued_at);
        assert!(record.finished_at >= record.first_started_at.unwrap() + record.execution);
    }
}

/// A [`SimExecutor`] that counts the futures spawned on it.
#[derive(Debug)]
struct CountingSpawns {
    sim: SimExecutor,
    spawns: AtomicUsize,
}

impl Executor for CountingSpawns {
    fn spawn(&self, task: BoxFuture<()>) {
        self.spawns.fetch_add(1, Ordering::SeqCst);
        self.sim.spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        self.sim.sleep(duration)
    }

    fn now(&self) -> Instant {
        self.sim.now()
    }
}

/// A burst into an idle pool spawns two runners from the producer; the tasks claimed before
/// either starts wait for it, and the first to start spawns their runners (a producer that
/// spawned a runner per task made the first wave start at its own pace). Every task runs
/// once, at most `limit` at a time. Without the hand-off the producer spawns 5 runners.
#[test]
fn a_burst_into_an_idle_pool_spawns_two_runners_from_the_producer() {
    let executor = Arc::new(CountingSpawns {
        sim: SimExecutor::with_seed(3),
        spawns: AtomicUsize::new(0),
    });
    let pool = Pool::builder()
        .executor_arc(executor.clone())
        .concurrency(5)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (running, most) = (running.clone(), most.clone());
            let clock = executor.clone();
            pool.enqueue(
                move || {
                    let (running, most, clock) = (running.clone(), most.clone(), clock.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        clock.sleep(Duration::from_millis(10)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(i)
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect();
    assert_eq!(
        executor.spawns.load(Ordering::SeqCst),
        2,
        "the producer spawned two runners"
    );
    let sim = executor.sim.clone();
    let results = sim.block_on(async move {
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.unwrap());
        }
        results
    });
    assert_eq!(results, (0..8).collect::<Vec<_>>());
    assert_eq!(most.load(Ordering::SeqCst), 5);
    assert_eq!(
        executor.spawns.load(Ordering::SeqCst),
        5,
        "one runner per slot, the other three spawned by the first to start"
    );
}
