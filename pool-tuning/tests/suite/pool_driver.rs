//! The tuners on a real `pool_core::Pool`, under tokio's paused clock: tasks sleep longer as
//! more of them run at once, like a backend past its knee.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::{ErrorClass, Event, EventKind, Observer, Pool, TaskOptions};
use pool_tuning::{
    AutoConcurrency, KneeConfig, KneeTuner, SystemMemoryProbe, SystemMemorySnapshot,
    TuningObserver, FALLBACK_INITIAL_CONCURRENCY,
};

/// A backend serving `knee` requests at `base` latency; past that they queue (latency grows
/// in proportion). Above `throttle_above` in flight it answers "slow down" at once.
#[derive(Debug)]
struct Backend {
    knee: usize,
    base: Duration,
    throttle_above: usize,
    in_flight: AtomicUsize,
    throttled: AtomicUsize,
    served: AtomicUsize,
}

#[derive(Debug)]
struct SlowDown;

impl Backend {
    fn new(knee: usize, throttle_above: usize) -> Arc<Self> {
        Arc::new(Self {
            knee,
            base: Duration::from_millis(20),
            throttle_above,
            in_flight: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
        })
    }

    async fn call(&self) -> Result<(), SlowDown> {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let result = if in_flight > self.throttle_above {
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.throttled.fetch_add(1, Ordering::SeqCst);
            Err(SlowDown)
        } else {
            let queued = in_flight.max(self.knee) as u32;
            tokio::time::sleep(self.base * queued / self.knee as u32).await;
            self.served.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Records every limit the pool was set to.
#[derive(Debug, Default, Clone)]
struct LimitLog(Arc<Mutex<Vec<usize>>>);

impl Observer for LimitLog {
    fn on_event(&self, event: &Event) {
        if let Event::ConcurrencyChanged { to, .. } = event {
            self.0.lock().unwrap().push(*to);
        }
    }
}

async fn run_tasks(pool: &Pool, backend: &Arc<Backend>, tasks: usize) {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let backend = Arc::clone(backend);
            pool.enqueue_with(
                move || {
                    let backend = Arc::clone(&backend);
                    async move { backend.call().await }
                },
                TaskOptions::new().retries(10),
                |_: &SlowDown| ErrorClass::Throttled,
            )
        })
        .collect();
    for handle in handles {
        handle.await.expect("every task succeeds in the end");
    }
}

#[tokio::test(start_paused = true)]
async fn auto_concurrency_finds_the_knee_of_a_real_pool() {
    let config = KneeConfig::builder().min(2).max(256).build().unwrap();
    // 1 GiB machine: s3db.js's table says 5 (10 halved).
    let machine = SystemMemorySnapshot::from_mib(1024, 256);
    let log = LimitLog::default();
    let pool = Pool::builder()
        .retry_delay(Duration::from_millis(5))
        .observer(log.clone())
        .auto_concurrency_with(config, machine)
        .build()
        .unwrap();
    // The start aims at 5 and begins at a quarter of it: 2 (min 2).
    assert_eq!(pool.concurrency(), 2);

    let backend = Backend::new(16, usize::MAX);
    run_tasks(&pool, &backend, 4_000).await;

    let limits = log.0.lock().unwrap().clone();
    let peak = limits.iter().copied().max().unwrap_or(0);
    assert!(peak >= 16, "never reached the knee: {limits:?}");
    let last = pool.concurrency();
    assert!((14..=24).contains(&last), "ended at {last}: {limits:?}");
}

#[tokio::test(start_paused = true)]
async fn throttling_keeps_a_real_pool_under_the_cap() {
    let config = KneeConfig::builder().min(2).max(256).build().unwrap();
    let tuner = KneeTuner::new(config, 8);
    let pool = Pool::builder()
        .retry_delay(Duration::from_millis(5))
        // The whole backlog is queued at once: let throttled attempts retry anyway.
        .no_pressure_rule()
        .concurrency(8)
        .observer(TuningObserver::new(tuner))
        .build()
        .unwrap();

    // No knee in sight, but more than 24 in flight get "503 SlowDown".
    let backend = Backend::new(1_000, 24);
    let control = pool.control();
    let sampler = tokio::spawn(async move {
        let mut limits = Vec::new();
        while control.stats().is_some_and(|s| s.queued > 0) {
            limits.push(control.concurrency());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        limits
    });
    run_tasks(&pool, &backend, 4_000).await;

    let mut limits = sampler.await.unwrap();
    // Skip the first second (the climb from 8), then look at where it sat.
    let settled = limits.split_off(20.min(limits.len()));
    assert!(settled.len() >= 20, "too short a run: {settled:?}");
    let at_or_below_cap = settled.iter().filter(|&&l| l <= 24).count();
    assert!(
        at_or_below_cap * 10 >= settled.len() * 9,
        "above the cap too often: {settled:?}"
    );
    let mut sorted = settled.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!((18..=24).contains(&median), "median {median}: {settled:?}");
    let throttled = backend.throttled.load(Ordering::SeqCst) as f64;
    let served = backend.served.load(Ordering::SeqCst) as f64;
    assert!(
        throttled / served < 0.02,
        "throttled {throttled} for {served} served"
    );
}

#[derive(Debug)]
struct NoMemoryFigures;

impl SystemMemoryProbe for NoMemoryFigures {
    fn snapshot(&self) -> Option<SystemMemorySnapshot> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn auto_concurrency_falls_back_to_ten_without_memory_figures() {
    let config = KneeConfig::builder().min(1).max(100).build().unwrap();
    let pool = Pool::builder()
        .auto_concurrency_with(config, NoMemoryFigures)
        .build()
        .unwrap();
    // The start aims at the fallback and begins at a quarter of it (the no-load probe).
    assert_eq!(pool.concurrency(), FALLBACK_INITIAL_CONCURRENCY.div_ceil(4));
}

#[tokio::test(start_paused = true)]
async fn observer_sets_the_pool_to_the_tuners_limit_on_attach() {
    let config = KneeConfig::builder().min(3).max(7).build().unwrap();
    let observer = Arc::new(TuningObserver::new(KneeTuner::new(config, 50)));
    let pool = Pool::builder()
        .concurrency(40)
        .observer_arc(observer.clone())
        .build()
        .unwrap();
    // 50 clamped to 7, a quarter of it (2) clamped to 3.
    assert_eq!(observer.limit(), 3);
    assert_eq!(pool.concurrency(), 3);
}

#[tokio::test(start_paused = true)]
async fn memory_is_read_at_most_once_per_refresh() {
    #[derive(Debug, Default)]
    struct CountingProbe(Arc<AtomicUsize>);
    impl SystemMemoryProbe for CountingProbe {
        fn snapshot(&self) -> Option<SystemMemorySnapshot> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Some(SystemMemorySnapshot::from_mib(1024, 512))
        }
    }
    let reads = Arc::new(AtomicUsize::new(0));
    let tuner = KneeTuner::new(KneeConfig::default(), 4);
    let observer = TuningObserver::new(tuner)
        .with_memory(CountingProbe(reads.clone()), Duration::from_secs(1));
    let pool = Pool::builder().observer(observer).build().unwrap();
    let backend = Backend::new(1_000, usize::MAX);
    // 400 tasks of 20 ms at ~4+ in flight: well under 3 s of virtual time.
    let started = tokio::time::Instant::now();
    run_tasks(&pool, &backend, 400).await;
    let elapsed = started.elapsed().as_secs() as usize;
    let reads = reads.load(Ordering::SeqCst);
    assert!(
        reads >= 1 && reads <= elapsed + 1,
        "{reads} reads in {elapsed} s"
    );
}

#[cfg(feature = "system-memory")]
#[tokio::test(start_paused = true)]
async fn auto_concurrency_starts_from_this_machines_memory() {
    use pool_tuning::{suggest_initial_concurrency, SystemMemory};
    let config = KneeConfig::builder().min(1).max(1_000).build().unwrap();
    let expected = SystemMemory::new()
        .and_then(|memory| memory.snapshot())
        .map_or(FALLBACK_INITIAL_CONCURRENCY, |snapshot| {
            suggest_initial_concurrency(snapshot, config.bounds())
        });
    let pool = Pool::builder().auto_concurrency(config).build().unwrap();
    assert_eq!(pool.concurrency(), expected.div_ceil(4));
    // s3db.js's table tops out at 50, halved.
    assert!((1..=25).contains(&pool.concurrency()));
}

/// A tuner that acts on time alone: after `after` without a finished attempt it halves.
#[derive(Debug)]
struct HalvesWhenIdle {
    limit: usize,
    after: Duration,
    last_sample: Option<std::time::Instant>,
}

impl pool_tuning::Tuner for HalvesWhenIdle {
    fn limit(&self) -> usize {
        self.limit
    }

    fn observe(
        &mut self,
        _sample: &pool_tuning::Sample,
        now: std::time::Instant,
    ) -> Option<pool_tuning::Adjustment> {
        self.last_sample = Some(now);
        None
    }

    fn tick(&mut self, now: std::time::Instant) -> Option<pool_tuning::Adjustment> {
        let last = *self.last_sample.get_or_insert(now);
        if now.saturating_duration_since(last) < self.after || self.limit == 1 {
            return None;
        }
        self.last_sample = Some(now);
        let from = self.limit;
        self.limit = (from / 2).max(1);
        Some(pool_tuning::Adjustment {
            from,
            to: self.limit,
            reason: pool_tuning::Reason::TimedOut,
        })
    }

    fn name(&self) -> &'static str {
        "halves-when-idle"
    }
}

/// A backend that never answers sends no events at all: only the pool's clock, through the
/// timer `tuned_by` starts on the pool's executor, reaches the tuner.
#[tokio::test(start_paused = true)]
async fn time_reaches_the_tuner_when_nothing_finishes() {
    let tuner = HalvesWhenIdle {
        limit: 32,
        after: Duration::from_secs(1),
        last_sample: None,
    };
    let pool = Pool::builder()
        .no_timeout()
        .tuned_by(TuningObserver::new(tuner))
        .build()
        .unwrap();
    assert_eq!(pool.concurrency(), 32);
    let stalled: Vec<_> = (0..64)
        .map(|_| {
            pool.enqueue(
                std::future::pending::<Result<(), pool_core::Transient<SlowDown>>>,
                TaskOptions::new(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    // Ticks every 100 ms; halved after 1 s, 2 s and 3 s without a finished attempt.
    assert_eq!(pool.concurrency(), 4);
    assert_eq!(
        pool.stats().active,
        32,
        "the stalled attempts are still running"
    );
    pool.stop_now();
    drop(stalled);
}

/// Without the timer (a plain `observer`), the same stall leaves the limit where it was.
#[tokio::test(start_paused = true)]
async fn without_ticks_a_stall_never_moves_the_limit() {
    let tuner = HalvesWhenIdle {
        limit: 32,
        after: Duration::from_secs(1),
        last_sample: None,
    };
    let pool = Pool::builder()
        .no_timeout()
        .observer(TuningObserver::new(tuner))
        .build()
        .unwrap();
    let _stalled = pool.enqueue(
        std::future::pending::<Result<(), pool_core::Transient<SlowDown>>>,
        TaskOptions::new(),
    );
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(pool.concurrency(), 32);
    pool.stop_now();
}

/// The knee tuner on a real pool whose backend stops answering (and no timeout ends the
/// attempts): no attempt finishes, so no event comes, yet the limit falls — the timer
/// `auto_concurrency` starts on the pool's executor ticks the tuner.
#[tokio::test(start_paused = true)]
async fn a_stalled_backend_moves_the_knee_tuners_limit() {
    // At most 64 × 20 ms: 20,000 calls are far from done when the backend stalls.
    let config = KneeConfig::builder().min(1).max(64).build().unwrap();
    let machine = SystemMemorySnapshot::from_mib(16 * 1024, 1024); // starts at 25
    let pool = Pool::builder()
        .no_timeout()
        .retry_delay(Duration::from_millis(5))
        .auto_concurrency_with(config, machine)
        .build()
        .unwrap();
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls: Vec<_> = (0..20_000)
        .map(|_| {
            let stalled = Arc::clone(&stalled);
            pool.enqueue(
                move || {
                    let stalled = Arc::clone(&stalled);
                    async move {
                        if stalled.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<(), pool_core::Transient<SlowDown>>(())
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = pool.concurrency();
    assert!(before >= 25, "the tuner grew first: {before}");
    assert!(pool.stats().queued > 0, "calls still waiting");
    stalled.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = pool.concurrency();
    assert!(
        after <= before / 4,
        "five seconds without an answer: {before} -> {after}"
    );
    pool.stop_now();
    drop(calls);
}

/// The tuner asks a pool for nothing it does not read: a pool whose only observer is a
/// `TuningObserver` builds no labels for it, and only finished attempts reach it.
#[tokio::test(start_paused = true)]
async fn a_tuned_pool_builds_only_what_the_tuner_reads() {
    let tuner = KneeTuner::new(KneeConfig::builder().min(1).max(8).build().unwrap(), 4);
    let observer = TuningObserver::new(tuner);
    for kind in [
        EventKind::TaskQueued,
        EventKind::TaskStarted,
        EventKind::TaskFinished,
    ] {
        assert!(!observer.wants(kind), "{kind:?}");
    }
    assert!(observer.wants(EventKind::AttemptFinished));
    let pool = Pool::builder().observer(observer).build().unwrap();
    assert!(!pool.reads_labels());
    let answer = pool
        .enqueue(
            || async { Ok::<_, pool_core::Transient<SlowDown>>(7) },
            TaskOptions::new(),
        )
        .await;
    assert_eq!(answer.unwrap(), 7);
}
