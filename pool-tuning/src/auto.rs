//! `concurrency: Auto` for a pool builder: a first guess from memory and the knee tuner.

use std::time::Duration;

use pool_core::PoolBuilder;

use crate::driver::{TuningObserver, TICK_INTERVAL};
use crate::knee::{KneeConfig, KneeTuner};
use crate::memory::{suggest_initial_concurrency, SystemMemoryProbe};
use crate::tuner::Tuner;

/// How often the auto driver reads system memory (of the pool's clock).
pub const MEMORY_REFRESH: Duration = Duration::from_secs(1);

/// The initial concurrency when memory cannot be read: s3db.js's default, 10.
pub const FALLBACK_INITIAL_CONCURRENCY: usize = 10;

/// Adds `.auto_concurrency(config)` to [`PoolBuilder`]: start from s3db.js's
/// memory-based suggestion and let a [`KneeTuner`] find the backend's knee from there; and
/// `.tuned_by(observer)` for any [`Tuner`].
///
/// Both tick the tuner every [`TICK_INTERVAL`] on the pool's executor, so they take it from
/// the builder ([`PoolBuilder::resolved_executor`]): set `.executor(..)` *before* them if the
/// pool does not run on the ambient tokio runtime. Without an executor to tick on (outside a
/// runtime, none set) the tuner still runs on finished attempts, and a warning says that
/// time alone will not move it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_core::Pool;
/// use pool_tuning::{AutoConcurrency, KneeConfig, SystemMemorySnapshot};
///
/// // A 4 GiB machine: the table says 30, halved to 15, within [2, 200]. The knee tuner's
/// // start aims there and begins at a quarter of it, measuring the no-load round trip.
/// let machine = SystemMemorySnapshot::from_mib(4 * 1024, 1024);
/// let config = KneeConfig::builder().min(2).max(200).build()?;
/// let pool = Pool::builder().auto_concurrency_with(config, machine).build()?;
/// assert_eq!(pool.concurrency(), 4);
/// # Ok(()) }
/// ```
pub trait AutoConcurrency: Sized {
    /// Auto concurrency with this machine's memory (sysinfo): the initial limit, and memory
    /// samples for the tuner's memory guard.
    #[cfg(feature = "system-memory")]
    fn auto_concurrency(self, config: KneeConfig) -> Self;

    /// Auto concurrency with memory figures from `memory` (tests, containers with their own
    /// accounting).
    fn auto_concurrency_with(self, config: KneeConfig, memory: impl SystemMemoryProbe) -> Self;

    /// Any tuner: the pool starts at its limit, `observer` feeds it the pool's attempts and
    /// applies its decisions, and the pool's executor ticks it.
    fn tuned_by<T: Tuner + 'static>(self, observer: TuningObserver<T>) -> Self;
}

impl AutoConcurrency for PoolBuilder {
    #[cfg(feature = "system-memory")]
    fn auto_concurrency(self, config: KneeConfig) -> Self {
        match crate::memory::SystemMemory::new() {
            Some(memory) => self.auto_concurrency_with(config, memory),
            None => {
                let initial = config.bounds().clamp(FALLBACK_INITIAL_CONCURRENCY);
                self.tuned_by(TuningObserver::new(KneeTuner::new(config, initial)))
            }
        }
    }

    fn auto_concurrency_with(self, config: KneeConfig, memory: impl SystemMemoryProbe) -> Self {
        let initial = match memory.snapshot() {
            Some(snapshot) => suggest_initial_concurrency(snapshot, config.bounds()),
            None => config.bounds().clamp(FALLBACK_INITIAL_CONCURRENCY),
        };
        let tuner = KneeTuner::new(config, initial);
        self.tuned_by(TuningObserver::new(tuner).with_memory(memory, MEMORY_REFRESH))
    }

    fn tuned_by<T: Tuner + 'static>(mut self, observer: TuningObserver<T>) -> Self {
        let observer = match self.resolved_executor() {
            Ok(executor) => observer.ticking(executor, TICK_INTERVAL),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "pool-tuning: no executor to tick the tuner on; it will move only when attempts finish"
                );
                observer
            }
        };
        self.concurrency(observer.limit()).observer(observer)
    }
}
