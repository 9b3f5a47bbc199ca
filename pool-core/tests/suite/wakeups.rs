//! `Precheck::ParkUntilWoken`: a task parked by an admission policy until the policy fires a
//! `Wakeup` (or a moment passes) holds no slot, comes back when woken, and resolves exactly
//! once whatever races the wakeup (a cancellation, `stop`). On the deterministic executor for
//! behaviour; the race test is in `threads::wakeups`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, Executor, Metadata, Pool, Precheck,
    Rejection, SimExecutor, TaskError, TaskInfo, TaskOptions, Transient, Wakeup,
};

/// Parks tasks labelled `gated` until the gate opens: each first asks, gets parked with a
/// wakeup (and a moment far ahead as the safety net), and is woken when the test opens it.
#[derive(Debug)]
struct Gate {
    executor: Arc<dyn Executor>,
    safety_net: Duration,
    open: Mutex<bool>,
    parked: Mutex<Vec<Wakeup>>,
    asked: Mutex<Vec<pool_core::TaskId>>,
    /// Fire the first wakeup before handing it over (the policy's answer raced its own
    /// wakeup); let the task in when it asks again.
    wake_at_once: bool,
}

impl Gate {
    fn new(executor: Arc<dyn Executor>, safety_net: Duration) -> Arc<Self> {
        Arc::new(Self {
            executor,
            safety_net,
            open: Mutex::new(false),
            parked: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
            wake_at_once: false,
        })
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        for wakeup in self.parked.lock().unwrap().drain(..) {
            wakeup.wake();
        }
    }
}

impl Admission for Gate {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(async { Ok(AdmissionPermit::empty()) })
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        if task.metadata.get("gated").is_none() {
            return Precheck::Proceed;
        }
        let first = {
            let mut asked = self.asked.lock().unwrap();
            asked.push(task.id);
            asked.len() == 1
        };
        if *self.open.lock().unwrap() || (self.wake_at_once && !first) {
            return Precheck::Proceed;
        }
        let wakeup = Wakeup::new();
        if self.wake_at_once {
            wakeup.wake();
        } else {
            self.parked.lock().unwrap().push(wakeup.clone());
        }
        Precheck::ParkUntilWoken(self.executor.now() + self.safety_net, wakeup)
    }
}

fn gated() -> TaskOptions {
    TaskOptions::new().metadata(Metadata::new().with("gated", "yes"))
}

fn sim_pool(sim: &SimExecutor, gate: &Arc<Gate>) -> Pool {
    Pool::builder()
        .executor_arc(Arc::new(sim.clone()))
        .concurrency(1)
        .retries(0)
        .admission_arc(gate.clone())
        .build()
        .unwrap()
}

/// Runs a task that records when it started.
fn timed(
    pool: &Pool,
    options: TaskOptions,
    sim: &SimExecutor,
) -> pool_core::TaskHandle<Instant, Transient<&'static str>> {
    let sim = sim.clone();
    pool.enqueue(
        move || {
            let sim = sim.clone();
            async move { Ok::<_, Transient<&str>>(sim.now()) }
        },
        options,
    )
}

#[test]
fn a_woken_task_comes_back_at_once_and_held_no_slot_while_parked() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let gate = Gate::new(executor.clone(), Duration::from_secs(3_600));
    let pool = sim_pool(&sim, &gate);
    let start = sim.now();
    let parked: Vec<_> = (0..3).map(|_| timed(&pool, gated(), &sim)).collect();
    // One slot: the parked tasks gave it back, so these run now.
    let free: Vec<_> = (0..5)
        .map(|_| timed(&pool, TaskOptions::new(), &sim))
        .collect();
    sim.block_on(async {
        for handle in free {
            assert_eq!(
                handle.await.unwrap(),
                start,
                "ran while the gated tasks waited"
            );
        }
    });
    assert_eq!(pool.stats().deferred, 3);
    sim.block_on(executor.sleep(Duration::from_secs(5)));
    gate.open();
    sim.block_on(async {
        for handle in parked {
            let started = handle.await.unwrap();
            assert_eq!(
                started - start,
                Duration::from_secs(5),
                "woken, not an hour later"
            );
        }
    });
    assert_eq!(pool.stats().deferred, 0);
    assert!(pool.stats().in_balance());
}

#[test]
fn a_task_never_woken_comes_back_at_its_moment_and_is_asked_again() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let gate = Gate::new(executor.clone(), Duration::from_secs(2));
    let pool = sim_pool(&sim, &gate);
    let start = sim.now();
    let handle = timed(&pool, gated(), &sim);
    // Asked at 0 s, 2 s and 4 s; let in at 4 s when the gate is open by then.
    sim.block_on(executor.sleep(Duration::from_secs(3)));
    *gate.open.lock().unwrap() = true;
    let started = sim.block_on(handle).unwrap();
    assert_eq!(started - start, Duration::from_secs(4));
    assert_eq!(gate.asked.lock().unwrap().len(), 3);
}

#[test]
fn a_wakeup_fired_before_the_task_is_parked_is_not_lost() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let mut gate = Gate::new(executor.clone(), Duration::from_secs(3_600));
    Arc::get_mut(&mut gate).unwrap().wake_at_once = true;
    let pool = sim_pool(&sim, &gate);
    let start = sim.now();
    let handle = timed(&pool, gated(), &sim);
    // Parked with a wakeup that has fired already: queued again at once, not an hour later.
    let started = sim.block_on(handle).unwrap();
    assert_eq!(started, start);
    assert_eq!(
        gate.asked.lock().unwrap().len(),
        2,
        "asked, parked, asked again"
    );
}

#[test]
fn cancelled_or_stopped_while_parked_resolves_at_once_and_a_late_wakeup_does_nothing() {
    let sim = SimExecutor::new();
    let executor: Arc<dyn Executor> = Arc::new(sim.clone());
    let gate = Gate::new(executor.clone(), Duration::from_secs(3_600));
    let pool = sim_pool(&sim, &gate);
    let token = CancellationToken::new();
    let cancelled = timed(&pool, gated().cancellation(token.clone()), &sim);
    let stopped = timed(&pool, gated(), &sim);
    sim.block_on(executor.sleep(Duration::from_millis(10)));
    assert_eq!(pool.stats().deferred, 2);
    token.cancel();
    assert!(matches!(sim.block_on(cancelled), Err(TaskError::Cancelled)));
    sim.block_on(pool.stop());
    assert!(matches!(sim.block_on(stopped), Err(TaskError::Stopped)));
    // The pool told the policy that neither will come back for its wakeup.
    let parked = gate.parked.lock().unwrap().clone();
    assert_eq!(parked.len(), 2);
    assert!(parked.iter().all(Wakeup::is_abandoned), "{parked:?}");
    // The policy wakes them now: they are gone, nothing runs, nothing is counted twice.
    gate.open();
    sim.block_on(pool.drain());
    let stats = pool.stats();
    assert!(stats.in_balance(), "{stats:?}");
    assert_eq!((stats.deferred, stats.active, stats.queued), (0, 0, 0));
}
