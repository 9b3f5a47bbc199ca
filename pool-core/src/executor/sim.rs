//! A deterministic executor with a virtual clock, for tests and simulations.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_task::Runnable;

use super::{BoxFuture, Executor};

/// A single-threaded executor whose clock only moves when every task is waiting on a timer:
/// then it jumps to the earliest deadline. A 60-second scenario runs in microseconds, and the
/// same seed gives the same schedule every run.
///
/// With [`with_seed`](Self::with_seed), runnable tasks are picked in a seeded random order
/// instead of FIFO, which explores other interleavings (property tests use this).
///
/// ```
/// use std::time::Duration;
/// use pool_core::{Executor, SimExecutor};
/// let sim = SimExecutor::new();
/// let start = sim.now();
/// let clock = sim.clone();
/// sim.block_on(async move { clock.sleep(Duration::from_secs(60)).await });
/// assert_eq!(sim.now() - start, Duration::from_secs(60));
/// ```
#[derive(Clone)]
pub struct SimExecutor {
    inner: Arc<SimInner>,
}

struct SimInner {
    state: Mutex<SimState>,
}

struct SimState {
    ready: VecDeque<Runnable>,
    now: Instant,
    timers: BTreeMap<(Instant, u64), Waker>,
    next_timer_id: u64,
    rng: Option<fastrand::Rng>,
}

/// [`SimExecutor::try_block_on`]'s error: the main future is pending, no task can run and no
/// timer is set, so nothing can ever wake it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deadlock: the future is pending, no task is runnable and no timer is set (virtual time {elapsed:?})")]
pub struct Deadlock {
    /// Virtual time elapsed since the executor was created.
    pub elapsed: Duration,
}

impl fmt::Debug for SimExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("SimExecutor")
            .field("ready", &state.ready.len())
            .field("timers", &state.timers.len())
            .finish()
    }
}

impl Default for SimExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl SimInner {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic inside a task is caught by the pool; a poisoned lock here only means a test
        // already failed, so keep going with the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct MainWaker {
    woken: AtomicBool,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::Release);
    }
}

impl SimExecutor {
    /// Runnable tasks run in FIFO order.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Runnable tasks run in a random order drawn from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self::build(Some(fastrand::Rng::with_seed(seed)))
    }

    fn build(rng: Option<fastrand::Rng>) -> Self {
        Self {
            inner: Arc::new(SimInner {
                state: Mutex::new(SimState {
                    ready: VecDeque::new(),
                    now: Instant::now(),
                    timers: BTreeMap::new(),
                    next_timer_id: 0,
                    rng,
                }),
            }),
        }
    }

    /// Runs `future` and every spawned task until `future` completes.
    ///
    /// # Panics
    /// On a [`Deadlock`]; use [`try_block_on`](Self::try_block_on) to get it as an error.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self.try_block_on(future) {
            Ok(output) => output,
            Err(deadlock) => panic!("{deadlock}"),
        }
    }

    /// Runs `future` and every spawned task until `future` completes, or until nothing can
    /// make progress.
    pub fn try_block_on<F: Future>(&self, future: F) -> Result<F::Output, Deadlock> {
        let start = self.now();
        let mut future = pin!(future);
        let main = Arc::new(MainWaker {
            woken: AtomicBool::new(true),
        });
        let waker = Waker::from(main.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            if main.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return Ok(output);
                }
            }
            let next = {
                let mut state = self.inner.lock();
                let len = state.ready.len();
                match state.rng.as_mut() {
                    Some(rng) if len > 1 => {
                        let index = rng.usize(0..len);
                        state.ready.swap_remove_back(index)
                    }
                    _ => state.ready.pop_front(),
                }
            };
            if let Some(runnable) = next {
                runnable.run();
                continue;
            }
            if main.woken.load(Ordering::Acquire) {
                continue;
            }
            if !self.advance_to_next_timer() {
                return Err(Deadlock {
                    elapsed: self.now().saturating_duration_since(start),
                });
            }
        }
    }

    /// Moves the clock to the earliest deadline and wakes every timer due by then.
    fn advance_to_next_timer(&self) -> bool {
        let next = self
            .inner
            .lock()
            .timers
            .first_key_value()
            .map(|(&(at, _), _)| at);
        match next {
            Some(deadline) => {
                self.move_clock(|now| now.max(deadline));
                true
            }
            None => false,
        }
    }

    /// Moves the virtual clock forward by `duration` at once, waking due timers.
    /// `Duration::MAX` (or anything past a century) moves it a century: "forever".
    pub fn advance(&self, duration: Duration) {
        self.move_clock(|now| crate::deadline::after(now, duration));
    }

    /// Sets the clock and wakes every timer due by then (outside the lock).
    fn move_clock(&self, to: impl FnOnce(Instant) -> Instant) {
        let due: Vec<Waker> = {
            let mut state = self.inner.lock();
            state.now = to(state.now);
            let now = state.now;
            let later = state.timers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut state.timers, later)
                .into_values()
                .collect()
        };
        due.into_iter().for_each(Waker::wake);
    }
}

impl Executor for SimExecutor {
    fn spawn(&self, task: BoxFuture<()>) {
        let weak: Weak<SimInner> = Arc::downgrade(&self.inner);
        let schedule = move |runnable: Runnable| {
            if let Some(inner) = weak.upgrade() {
                inner.lock().ready.push_back(runnable);
            }
        };
        let (runnable, handle) = async_task::spawn(task, schedule);
        handle.detach();
        runnable.schedule();
    }

    /// A sleep of `Duration::MAX` (or anything past a century) ends a century ahead, which
    /// the clock only reaches when nothing else can run.
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let deadline = crate::deadline::after(self.now(), duration);
        Box::pin(SimSleep {
            inner: Arc::downgrade(&self.inner),
            deadline,
            timer: None,
        })
    }

    fn now(&self) -> Instant {
        self.inner.lock().now
    }
}

struct SimSleep {
    inner: Weak<SimInner>,
    deadline: Instant,
    timer: Option<(Instant, u64)>,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(inner) = self.inner.upgrade() else {
            return Poll::Ready(());
        };
        let mut state = inner.lock();
        if state.now >= self.deadline {
            if let Some(key) = self.timer.take() {
                state.timers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match self.timer {
            Some(key) => key,
            None => {
                let key = (self.deadline, state.next_timer_id);
                state.next_timer_id += 1;
                key
            }
        };
        state.timers.insert(key, cx.waker().clone());
        drop(state);
        self.timer = Some(key);
        Poll::Pending
    }
}

impl Drop for SimSleep {
    fn drop(&mut self) {
        if let (Some(key), Some(inner)) = (self.timer, self.inner.upgrade()) {
            inner.lock().timers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn spawned_tasks_run_and_time_jumps_to_deadlines() {
        let sim = SimExecutor::new();
        let start = sim.now();
        let done = Arc::new(AtomicUsize::new(0));
        for secs in [3, 1, 2] {
            let (sim2, done) = (sim.clone(), done.clone());
            sim.spawn(Box::pin(async move {
                sim2.sleep(Duration::from_secs(secs)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        let clock = sim.clone();
        sim.block_on(async move { clock.sleep(Duration::from_secs(5)).await });
        assert_eq!(done.load(Ordering::SeqCst), 3);
        assert_eq!(sim.now() - start, Duration::from_secs(5));
    }

    #[test]
    fn without_a_seed_tasks_run_in_spawn_order() {
        let sim = SimExecutor::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            let order = order.clone();
            sim.spawn(Box::pin(async move { order.lock().unwrap().push(i) }));
        }
        let clock = sim.clone();
        sim.block_on(async move { clock.sleep(Duration::from_millis(1)).await });
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_future_nothing_can_wake_is_reported_as_deadlock() {
        let sim = SimExecutor::new();
        let err = sim
            .try_block_on(std::future::pending::<()>())
            .expect_err("must not hang");
        assert_eq!(err.elapsed, Duration::ZERO);
    }

    #[test]
    fn a_sleep_of_duration_max_is_a_century_not_a_panic() {
        let sim = SimExecutor::new();
        let start = sim.now();
        let clock = sim.clone();
        sim.block_on(async move { clock.sleep(Duration::MAX).await });
        assert_eq!(sim.now() - start, crate::deadline::NEVER);
        sim.advance(Duration::MAX);
        assert_eq!(sim.now() - start, crate::deadline::NEVER * 2);
    }

    #[test]
    fn dropped_sleeps_do_not_move_the_clock() {
        let sim = SimExecutor::new();
        let start = sim.now();
        drop(sim.sleep(Duration::from_secs(100)));
        let clock = sim.clone();
        sim.block_on(async move {
            let mut long = clock.sleep(Duration::from_secs(100));
            // Register the long timer, then drop it.
            let waker = futures_util::task::noop_waker();
            let _ = long.as_mut().poll(&mut Context::from_waker(&waker));
            drop(long);
            clock.sleep(Duration::from_secs(1)).await;
        });
        assert_eq!(sim.now() - start, Duration::from_secs(1));
    }
}
