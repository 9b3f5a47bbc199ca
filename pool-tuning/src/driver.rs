//! The pool side: an observer that feeds a pool's attempts to a tuner, ticks it with the pool's
//! clock, and applies its limit.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use pool_core::{AttemptResult, ErrorClass, Event, EventKind, Executor, Observer, PoolControl};

use crate::memory::SystemMemoryProbe;
use crate::sample::{AttemptOutcome, Sample};
use crate::tuner::Tuner;

/// How often [`AutoConcurrency`](crate::AutoConcurrency) ticks a tuner: often enough that a
/// stalled backend (no attempt finishing at all) moves the limit within a fraction of a
/// second, rarely enough to cost nothing.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// Drives a [`Tuner`] from a pool's events: every [`Event::AttemptFinished`] becomes a
/// [`Sample`] (latency, outcome, in flight, queued, memory), and each change the tuner decides
/// is applied with [`PoolControl::set_concurrency`].
///
/// Attach it with [`PoolBuilder::observer`](pool_core::PoolBuilder::observer), or better with
/// [`AutoConcurrency::tuned_by`](crate::AutoConcurrency::tuned_by), which also ticks it; on
/// attach it sets the pool to the tuner's current limit. Throttling is recognised from
/// [`ErrorClass::Throttled`], so classify "503 SlowDown" / 429 errors that way. Cancelled
/// and rejected (by an admission policy) attempts are ignored: they say nothing about the
/// backend.
///
/// **Time.** Events only come when attempts finish; a backend that stops answering sends
/// none. With [`ticking`](Self::ticking), a timer on the pool's own [`Executor`] calls
/// [`Tuner::tick`] every interval, so time-driven decisions (a stall, a periodic rule) are
/// made whether or not anything finishes. The timer ends when the pool is gone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_core::Pool;
/// use pool_tuning::{KneeConfig, KneeTuner, TuningObserver};
///
/// let tuner = KneeTuner::new(KneeConfig::builder().min(2).max(64).build()?, 8);
/// // The pool starts at the tuner's limit (the knee tuner's: a quarter of 8).
/// let pool = Pool::builder().observer(TuningObserver::new(tuner)).build()?;
/// assert_eq!(pool.concurrency(), 2);
/// # Ok(()) }
/// ```
pub struct TuningObserver<T> {
    driver: Arc<Driver<T>>,
    ticks: Option<(Arc<dyn Executor>, Duration)>,
}

/// What the observer and its timer share.
struct Driver<T> {
    tuner: Mutex<T>,
    /// The tuner's latest decision, readable without the lock.
    decided: AtomicUsize,
    control: OnceLock<PoolControl>,
    memory: Option<MemorySampler>,
}

impl<T: Tuner> TuningObserver<T> {
    /// Drives `tuner`; no memory samples, no timer.
    pub fn new(tuner: T) -> Self {
        Self {
            driver: Arc::new(Driver {
                decided: AtomicUsize::new(tuner.limit()),
                tuner: Mutex::new(tuner),
                control: OnceLock::new(),
                memory: None,
            }),
            ticks: None,
        }
    }

    /// Adds the share of memory in use to every sample, read from `probe` at most once per
    /// `refresh` (of the pool's clock).
    pub fn with_memory(mut self, probe: impl SystemMemoryProbe, refresh: Duration) -> Self {
        // The driver is shared only once attached, and attaching consumes the observer.
        let driver = Arc::get_mut(&mut self.driver).expect("unshared before attach");
        driver.memory = Some(MemorySampler {
            probe: Box::new(probe),
            refresh,
            last: Mutex::new(None),
        });
        self
    }

    /// Calls [`Tuner::tick`] every `every` of `executor`'s clock once attached to a pool,
    /// spawning the timer on `executor` (give it the pool's executor, e.g. from
    /// [`PoolBuilder::resolved_executor`](pool_core::PoolBuilder::resolved_executor)). The
    /// timer stops when the pool is gone.
    pub fn ticking(mut self, executor: Arc<dyn Executor>, every: Duration) -> Self {
        self.ticks = Some((executor, every.max(Duration::from_millis(1))));
        self
    }

    /// The limit the tuner last decided.
    pub fn limit(&self) -> usize {
        self.driver.decided.load(Ordering::Acquire)
    }

    /// Reads the tuner's state (e.g. a [`KneeTuner`](crate::KneeTuner)'s baseline).
    pub fn inspect<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&self.driver.lock_tuner())
    }
}

impl<T: Tuner> Driver<T> {
    fn lock_tuner(&self) -> MutexGuard<'_, T> {
        // A panic elsewhere while holding the lock leaves a tuner that is still consistent
        // enough to keep deciding; the pool mutes a panicking observer anyway.
        self.tuner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes the latest decision to the pool. Two workers may decide at once; re-reading
    /// after the write makes the last write the latest decision.
    fn apply(&self, control: &PoolControl) {
        loop {
            let wanted = self.decided.load(Ordering::Acquire);
            if control.concurrency() != wanted {
                // Only 0 is refused, and tuners never go below their min of at least 1.
                let _ = control.set_concurrency(wanted);
            }
            if self.decided.load(Ordering::Acquire) == wanted {
                return;
            }
        }
    }

    /// Lets the tuner decide (`decide` is `observe` or `tick`), then applies the decision.
    fn decide(&self, decide: impl FnOnce(&mut T) -> Option<crate::Adjustment>) {
        let adjustment = {
            let mut tuner = self.lock_tuner();
            let adjustment = decide(&mut tuner);
            self.decided.store(tuner.limit(), Ordering::Release);
            adjustment
        };
        if let Some(adjustment) = adjustment {
            tracing::debug!(
                from = adjustment.from,
                to = adjustment.to,
                reason = %adjustment.reason,
                "pool-tuning: concurrency adjusted"
            );
            if let Some(control) = self.control.get() {
                self.apply(control);
            }
        }
    }
}

impl<T: Tuner + 'static> Driver<T> {
    /// The timer: ticks the tuner every `every` until the pool or the observer is gone.
    fn spawn_ticks(self: &Arc<Self>, executor: Arc<dyn Executor>, every: Duration) {
        let driver: Weak<Self> = Arc::downgrade(self);
        let clock = Arc::clone(&executor);
        executor.spawn(Box::pin(async move {
            loop {
                clock.sleep(every).await;
                let Some(driver) = driver.upgrade() else {
                    return;
                };
                if !driver.control.get().is_some_and(PoolControl::is_alive) {
                    return;
                }
                let now = clock.now();
                driver.decide(|tuner| tuner.tick(now));
            }
        }));
    }
}

fn outcome_of(result: AttemptResult) -> Option<AttemptOutcome> {
    Some(match result {
        // Cut short or never ran: no signal about the backend's load.
        _ if result.is_cut_short() => return None,
        AttemptResult::Succeeded => AttemptOutcome::Succeeded,
        AttemptResult::Failed(ErrorClass::Throttled) => AttemptOutcome::Throttled,
        AttemptResult::TimedOut => AttemptOutcome::TimedOut,
        _ => AttemptOutcome::Failed,
    })
}

impl<T: Tuner + 'static> Observer for TuningObserver<T> {
    fn on_attach(&self, pool: PoolControl) {
        let driver = &self.driver;
        driver.apply(&pool);
        if driver.control.set(pool).is_ok() {
            if let Some((executor, every)) = &self.ticks {
                driver.spawn_ticks(Arc::clone(executor), *every);
            }
        }
    }

    fn on_event(&self, event: &Event) {
        let &Event::AttemptFinished {
            latency,
            result,
            in_flight,
            queued,
            at,
            ..
        } = event
        else {
            return;
        };
        let Some(outcome) = outcome_of(result) else {
            return;
        };
        let driver = &self.driver;
        let mut sample = Sample::new(at, latency, outcome)
            .in_flight(in_flight)
            .queued(queued);
        sample.memory_fraction = driver.memory.as_ref().and_then(|m| m.fraction(at));
        driver.decide(|tuner| tuner.observe(&sample, at));
    }

    /// Only finished attempts: a pool with nothing else attached builds no other event (and
    /// no finished-task view) for the tuner.
    fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::AttemptFinished
    }

    /// A sample carries no labels.
    fn reads_labels(&self) -> bool {
        false
    }
}

impl<T: fmt::Debug> fmt::Debug for TuningObserver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let driver = &self.driver;
        f.debug_struct("TuningObserver")
            .field("tuner", &driver.tuner)
            .field("decided", &driver.decided)
            .field("memory", &driver.memory)
            .field("ticks", &self.ticks.as_ref().map(|t| t.1))
            .finish_non_exhaustive()
    }
}

/// Reads memory at most once per `refresh`, caching the figure in between.
#[derive(Debug)]
struct MemorySampler {
    probe: Box<dyn SystemMemoryProbe>,
    refresh: Duration,
    last: Mutex<Option<(Instant, Option<f64>)>>,
}

impl MemorySampler {
    fn fraction(&self, now: Instant) -> Option<f64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some((read_at, fraction)) if now.saturating_duration_since(read_at) < self.refresh => {
                fraction
            }
            _ => {
                let fraction = self.probe.snapshot().map(|s| s.used_fraction());
                *last = Some((now, fraction));
                fraction
            }
        }
    }
}
