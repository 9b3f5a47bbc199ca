//! Runs one behaviour on several executors, so "runtime-agnostic" is tested, not claimed.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{Event, Executor, Observer, PoolBuilder, SimExecutor, TokioExecutor};

/// What a behaviour test gets: a pool builder on the executor under test, and its clock.
#[derive(Clone, Debug)]
pub struct Env {
    pub executor: Arc<dyn Executor>,
}

impl Env {
    pub fn builder(&self) -> PoolBuilder {
        PoolBuilder::new()
            .executor_arc(self.executor.clone())
            .seed(7)
    }

    pub async fn sleep(&self, duration: Duration) {
        self.executor.sleep(duration).await;
    }

    pub fn now(&self) -> Instant {
        self.executor.now()
    }

    /// Lets every runnable task make progress without moving the clock far.
    pub async fn settle(&self) {
        self.sleep(Duration::from_micros(1)).await;
    }
}

/// Tokio's current-thread runtime with paused (virtual) time.
pub fn on_tokio<F, Fut>(test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let env = Env {
            executor: Arc::new(TokioExecutor::current()),
        };
        test(env).await;
    });
}

/// The deterministic virtual-time executor.
pub fn on_sim<F, Fut>(test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let sim = SimExecutor::with_seed(11);
    let env = Env {
        executor: Arc::new(sim.clone()),
    };
    sim.block_on(test(env));
}

/// Declares one test per executor for an `async fn(Env)` behaviour.
#[macro_export]
macro_rules! on_every_executor {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn tokio() {
                    $crate::support::on_tokio(super::$name);
                }
                #[test]
                fn sim() {
                    $crate::support::on_sim(super::$name);
                }
            }
        )*
    };
}

/// Records every event (as its Debug text, plus structured bits tests look at).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Observer for Recorder {
    fn on_event(&self, event: &Event) {
        self.events.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    pub fn names(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::TaskQueued { .. } => "queued",
                Event::TaskStarted { .. } => "started",
                Event::AttemptFinished { .. } => "attempt_finished",
                Event::TaskRetrying { .. } => "retrying",
                Event::TaskFinished(_) => "finished",
                Event::Paused => "paused",
                Event::Resumed => "resumed",
                Event::Stopped => "stopped",
                Event::Drained => "drained",
                Event::ConcurrencyChanged { .. } => "concurrency_changed",
                _ => "other",
            })
            .collect()
    }
}

/// Counts tasks running right now and the most ever seen at once.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl InFlight {
    pub fn enter(&self) -> InFlightGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(self.now.clone(), now)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    pub fn current(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>, pub usize);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
