//! `concurrency: Auto` for a pool builder: a first guess from memory and the knee tuner.

use std::time::Duration;

use pool_core::PoolBuilder;

use crate::driver::TuningObserver;
use crate::knee::{KneeConfig, KneeTuner};
use crate::memory::{suggest_initial_concurrency, MemoryProbe};

/// How often the auto driver reads system memory (of the pool's clock).
pub const MEMORY_REFRESH: Duration = Duration::from_secs(1);

/// The initial concurrency when memory cannot be read: the original's default, 10.
pub const FALLBACK_INITIAL_CONCURRENCY: usize = 10;

/// Adds `.auto_concurrency(config)` to [`PoolBuilder`]: start from the original's
/// memory-based suggestion and let a [`KneeTuner`] find the backend's knee from there.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_core::Pool;
/// use pool_tuning::{AutoConcurrency, KneeConfig, MemorySnapshot};
///
/// // A 4 GiB machine: the table says 30, halved to 15, within [2, 200].
/// let machine = MemorySnapshot::from_mib(4 * 1024, 1024);
/// let config = KneeConfig::builder().min(2).max(200).build()?;
/// let pool = Pool::builder().auto_concurrency_with(config, machine).build()?;
/// assert_eq!(pool.concurrency(), 15);
/// # Ok(()) }
/// ```
pub trait AutoConcurrency: Sized {
    /// Auto concurrency with this machine's memory (sysinfo): the initial limit, and memory
    /// samples for the tuner's memory guard.
    #[cfg(feature = "system-memory")]
    fn auto_concurrency(self, config: KneeConfig) -> Self;

    /// Auto concurrency with memory figures from `memory` (tests, containers with their own
    /// accounting).
    fn auto_concurrency_with(self, config: KneeConfig, memory: impl MemoryProbe) -> Self;
}

impl AutoConcurrency for PoolBuilder {
    #[cfg(feature = "system-memory")]
    fn auto_concurrency(self, config: KneeConfig) -> Self {
        match crate::memory::SystemMemory::new() {
            Some(memory) => self.auto_concurrency_with(config, memory),
            None => {
                let initial = config.bounds().clamp(FALLBACK_INITIAL_CONCURRENCY);
                let tuner = KneeTuner::new(config, initial);
                self.concurrency(initial)
                    .observer(TuningObserver::new(tuner))
            }
        }
    }

    fn auto_concurrency_with(self, config: KneeConfig, memory: impl MemoryProbe) -> Self {
        let initial = match memory.snapshot() {
            Some(snapshot) => suggest_initial_concurrency(snapshot, config.bounds()),
            None => config.bounds().clamp(FALLBACK_INITIAL_CONCURRENCY),
        };
        let tuner = KneeTuner::new(config, initial);
        self.concurrency(initial)
            .observer(TuningObserver::new(tuner).with_memory(memory, MEMORY_REFRESH))
    }
}
