//! Aborts on many threads: two producers enqueue tasks that succeed, fail into a retry, sleep,
//! hang forever (no timeout: only their abort ends them), wait for admission, are deferred
//! by it, or enqueue a child and await it (aborting it, sometimes); two aborter threads abort
//! random handles (the same one twice, sometimes) while a control thread resizes the pool;
//! the round ends with a drain, a `stop` or a `stop_now` at a random moment. Then every
//! promise of `TaskHandle::abort` is checked: the handle resolved at once; it says
//! `Cancelled` unless the task had been reported finished before the abort; every task
//! (children too) is reported finished exactly once; the counters add up with nothing left;
//! after a drain a fresh task still gets the one slot and the capped tenant's share.
//!
//! `ABORT_STRESS_ROUNDS` (default 6) and `ABORT_STRESS_SEED` (default: fixed) widen or
//! replay a run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, BoxFuture, CancellationToken, ErrorClass, Event, Observer, Pool,
    Precheck, Rejection, TaskError, TaskHandle, TaskId, TaskInfo, TaskOptions, TenantConfig,
};

use super::{kind, runtime, within, Failure};

type Handle = TaskHandle<u32, Failure>;

/// How many times each task was reported finished.
#[derive(Debug, Default)]
struct Tally(Mutex<HashMap<TaskId, u32>>);

impl Observer for Tally {
    fn on_event(&self, event: &Event) {
        if let Event::TaskFinished(record) = event {
            *self.0.lock().unwrap().entry(record.task.id).or_insert(0) += 1;
        }
    }
}

/// The tasks aborted by their handle, each with whether it had been reported finished when
/// every abort of it returned: the engine reports a task before it resolves it, so a handle
/// that does not say `Cancelled` after an abort must have been reported by then.
#[derive(Debug, Default)]
struct Aborts {
    reported: Mutex<HashMap<TaskId, bool>>,
    /// What `check` found wrong (inside a task a panic would be contained by the pool).
    violations: Mutex<Vec<String>>,
}

impl Aborts {
    fn abort(&self, handle: &Handle, tally: &Tally) {
        handle.abort();
        if !handle.is_finished() {
            self.violate(format!("aborted {:?} did not resolve at once", handle.id()));
        }
        let reported = tally.0.lock().unwrap().contains_key(&handle.id());
        *self
            .reported
            .lock()
            .unwrap()
            .entry(handle.id())
            .or_insert(true) &= reported;
    }

    /// Checks how task `id` resolved; says whether it was aborted.
    fn check(&self, id: TaskId, result: &Result<u32, TaskError<Failure>>) -> bool {
        let Some(&reported) = self.reported.lock().unwrap().get(&id) else {
            if matches!(result, Err(TaskError::Cancelled)) {
                // No token fires in these rounds.
                self.violate(format!("{id:?} resolved Cancelled without an abort"));
            }
            return false;
        };
        if !(matches!(result, Err(TaskError::Cancelled)) || reported) {
            self.violate(format!(
                "{id:?} aborted before it finished resolved {}, not Cancelled",
                kind(result)
            ));
        }
        true
    }

    fn violate(&self, violation: String) {
        self.violations.lock().unwrap().push(violation);
    }
}

/// Defers a task labelled `defer` once, half a millisecond ahead; makes a task labelled
/// `wait` wait that long for its permit.
#[derive(Debug, Default)]
struct SlowAdmission {
    deferred: Mutex<Vec<TaskId>>,
}

impl Admission for SlowAdmission {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        let wait = task.metadata.get("admission") == Some("wait");
        Box::pin(async move {
            if wait {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            Ok(AdmissionPermit::empty())
        })
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        if task.metadata.get("admission") != Some("defer") {
            return Precheck::Proceed;
        }
        let mut deferred = self.deferred.lock().unwrap();
        if deferred.contains(&task.id) {
            return Precheck::Proceed;
        }
        deferred.push(task.id);
        Precheck::ParkUntil(Instant::now() + Duration::from_micros(500))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Ok,
    Retryable,
    Sleeps,
    /// Never finishes: its abort (or `stop_now`) ends it.
    Hangs,
    /// Enqueues a child and awaits it.
    Nests,
}

const BEHAVIOURS: [Behaviour; 5] = [
    Behaviour::Ok,
    Behaviour::Retryable,
    Behaviour::Sleeps,
    Behaviour::Hangs,
    Behaviour::Nests,
];

/// What the threads of a round share.
#[derive(Clone)]
struct Round {
    pool: Pool,
    tally: Arc<Tally>,
    aborts: Arc<Aborts>,
    handles: Arc<Mutex<Vec<Handle>>>,
    /// The never-ending tasks, all aborted at the end.
    hanging: Arc<Mutex<Vec<TaskId>>>,
    children: Arc<AtomicU64>,
}

impl Round {
    fn produce(&self, seed: u64, tasks: usize) {
        let mut rng = fastrand::Rng::with_seed(seed);
        for i in 0..tasks {
            let behaviour = BEHAVIOURS[rng.usize(0..BEHAVIOURS.len())];
            let mut options = TaskOptions::new().priority(rng.i32(0..3));
            match rng.u8(0..6) {
                0 => {
                    options =
                        options.metadata(pool_core::Metadata::new().with("admission", "defer"))
                }
                1 => {
                    options = options.metadata(pool_core::Metadata::new().with("admission", "wait"))
                }
                _ => {}
            }
            if rng.bool() {
                options = options.tenant("capped");
            }
            // A token that never fires: a queued or parked task with one leaves at its abort.
            if rng.bool() {
                options = options.cancellation(CancellationToken::new());
            }
            let value = i as u32;
            let (pool, round, child_aborted) = (self.pool.clone(), self.clone(), rng.u8(0..3) == 0);
            let handle: Handle = self.pool.enqueue(
                move || {
                    let (pool, round) = (pool.clone(), round.clone());
                    async move {
                        match behaviour {
                            Behaviour::Ok => Ok(value),
                            Behaviour::Retryable => Err(Failure(ErrorClass::Retryable)),
                            Behaviour::Sleeps => {
                                tokio::time::sleep(Duration::from_micros(u64::from(value % 500)))
                                    .await;
                                Ok(value)
                            }
                            Behaviour::Hangs => std::future::pending().await,
                            Behaviour::Nests => {
                                round.children.fetch_add(1, Ordering::SeqCst);
                                let child: Handle = pool.enqueue(
                                    move || async move {
                                        tokio::task::yield_now().await;
                                        Ok(value)
                                    },
                                    TaskOptions::new(),
                                );
                                if child_aborted {
                                    round.aborts.abort(&child, &round.tally);
                                }
                                let id = child.id();
                                let result = child.await;
                                round.aborts.check(id, &result);
                                Ok(result.unwrap_or(0))
                            }
                        }
                    }
                },
                options,
            );
            if behaviour == Behaviour::Hangs {
                self.hanging.lock().unwrap().push(handle.id());
            }
            if rng.u8(0..8) == 0 {
                self.aborts.abort(&handle, &self.tally);
            }
            self.handles.lock().unwrap().push(handle);
            if rng.u8(0..32) == 0 {
                std::thread::yield_now();
            }
        }
    }

    /// Aborts random handles (some twice) until `done`.
    fn abort_some(&self, seed: u64, done: &AtomicBool) {
        let mut rng = fastrand::Rng::with_seed(seed);
        while !done.load(Ordering::SeqCst) {
            {
                let handles = self.handles.lock().unwrap();
                if !handles.is_empty() {
                    let handle = &handles[rng.usize(0..handles.len())];
                    self.aborts.abort(handle, &self.tally);
                }
            }
            std::thread::sleep(Duration::from_micros(rng.u64(0..200)));
        }
    }

    /// Aborts every never-ending task.
    fn abort_hanging(&self) {
        let hanging = self.hanging.lock().unwrap();
        for handle in self.handles.lock().unwrap().iter() {
            if hanging.contains(&handle.id()) {
                self.aborts.abort(handle, &self.tally);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    Drain,
    Stop,
    StopNow,
}

async fn round(seed: u64, tasks: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let tally = Arc::new(Tally::default());
    let pool = Pool::builder()
        .concurrency(rng.usize(1..=8))
        .retries(2)
        .retry_delay(Duration::from_micros(rng.u64(1..1_000)))
        .max_retry_delay(Duration::from_millis(1))
        .no_timeout()
        .no_retry_budget()
        .admission(SlowAdmission::default())
        .observer_arc(tally.clone())
        .tenant("capped", TenantConfig::new().max_in_flight(1))
        .seed(seed)
        .build()
        .unwrap();
    let round = Round {
        pool: pool.clone(),
        tally: Arc::clone(&tally),
        aborts: Arc::new(Aborts::default()),
        handles: Arc::new(Mutex::new(Vec::new())),
        hanging: Arc::new(Mutex::new(Vec::new())),
        children: Arc::new(AtomicU64::new(0)),
    };
    let ending = match rng.u8(0..4) {
        0 => Ending::Stop,
        1 => Ending::StopNow,
        _ => Ending::Drain,
    };
    let done = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let round = round.clone();
            std::thread::spawn(move || round.produce(seed ^ (p + 1), tasks))
        })
        .collect();
    let aborters: Vec<_> = (0..2)
        .map(|a| {
            let (round, done) = (round.clone(), Arc::clone(&done));
            std::thread::spawn(move || round.abort_some(seed ^ (a + 10), &done))
        })
        .collect();
    let resizer = {
        let (pool, done) = (pool.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed ^ 100);
            while !done.load(Ordering::SeqCst) {
                pool.set_concurrency(rng.usize(1..=8)).unwrap();
                std::thread::sleep(Duration::from_micros(rng.u64(0..300)));
            }
        })
    };
    tokio::time::sleep(Duration::from_micros(rng.u64(0..40_000))).await;
    // `stop` waits for the running attempts: the hanging ones end by their abort.
    let stopping = match ending {
        Ending::Stop => Some(tokio::spawn({
            let pool = pool.clone();
            async move { pool.stop().await }
        })),
        Ending::StopNow => {
            pool.stop_now();
            None
        }
        Ending::Drain => None,
    };
    let joined = |thread: std::thread::JoinHandle<()>| {
        tokio::task::spawn_blocking(move || thread.join().expect("a stress thread panicked"))
    };
    for producer in producers {
        within("a producer", joined(producer)).await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for thread in aborters.into_iter().chain([resizer]) {
        within("an aborter", joined(thread)).await.unwrap();
    }
    round.abort_hanging();
    let handles = std::mem::take(&mut *round.handles.lock().unwrap());
    let (mut aborted, parents) = (0, handles.len() as u64);
    for handle in handles {
        let id = handle.id();
        let result = within("a handle", handle).await;
        aborted += u64::from(round.aborts.check(id, &result));
    }
    if let Some(stopping) = stopping {
        within("stop", stopping).await.unwrap();
    }
    within("drain", pool.drain()).await;
    let stats = pool.stats();
    let context = format!("seed {seed} ({ending:?}, {aborted} aborted): {stats:?}");
    let violations = round.aborts.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} violations, the first: {:?}; {context}",
        violations.len(),
        &violations[..violations.len().min(3)]
    );
    assert!(stats.in_balance(), "{context}");
    assert_eq!(
        (stats.queued, stats.active, stats.retrying, stats.deferred),
        (0, 0, 0, 0),
        "{context}"
    );
    let enqueued = parents + round.children.load(Ordering::SeqCst);
    assert_eq!(stats.enqueued, enqueued, "{context}");
    assert_eq!(stats.resolved(), enqueued, "{context}");
    let tenants = pool.tenants();
    assert!(
        tenants.iter().all(|t| t.queued == 0 && t.in_flight == 0),
        "tenant counts back to nothing: {tenants:?}; {context}"
    );
    // `drain` returns once the stats account for every task; an event may still be on its
    // way (see `Pool::drain`): the child of an aborted parent has nobody awaiting its handle,
    // which would otherwise wait for its report. Wait for them (a lost one is a hang).
    within("every task reported", async {
        while (tally.0.lock().unwrap().len() as u64) < enqueued {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    {
        let finished = tally.0.lock().unwrap();
        assert_eq!(
            finished.len() as u64,
            enqueued,
            "every task reported: {context}"
        );
        assert!(
            finished.values().all(|times| *times == 1),
            "a task reported finished twice: {context}"
        );
    }
    if let Ending::Drain = ending {
        // No slot, loan or tenant share left taken.
        pool.set_concurrency(1).unwrap();
        let fresh: Handle = pool.enqueue(|| async { Ok(7) }, TaskOptions::new().tenant("capped"));
        assert!(
            matches!(within("a fresh task", fresh).await, Ok(7)),
            "{context}"
        );
    }
    drop(round);
    pool.stop().await;
    println!("{context}");
}

#[test]
fn random_aborts_on_many_threads_resolve_every_task_exactly_once() {
    let rounds = std::env::var("ABORT_STRESS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6u64);
    let base = std::env::var("ABORT_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xab0_u64);
    let runtime = runtime(3);
    for r in 0..rounds {
        runtime.block_on(round(base.wrapping_add(r), 300));
    }
}
