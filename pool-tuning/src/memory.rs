//! System memory: the figure s3db.js sizes its first guess by, behind a small seam so tests
//! can inject any machine.

use std::fmt;

use crate::bounds::Bounds;

/// Total and used RAM at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemMemorySnapshot {
    /// RAM installed, in bytes.
    pub total_bytes: u64,
    /// RAM in use (total minus available), in bytes.
    pub used_bytes: u64,
}

impl SystemMemorySnapshot {
    /// A machine with `total_mib` MiB of RAM, `used_mib` of it in use.
    pub fn from_mib(total_mib: u64, used_mib: u64) -> Self {
        Self {
            total_bytes: total_mib * MIB,
            used_bytes: used_mib * MIB,
        }
    }

    /// Share of RAM in use, 0.0–1.0 (0.0 when the total is unknown).
    pub fn used_fraction(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            (self.used_bytes as f64 / self.total_bytes as f64).clamp(0.0, 1.0)
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// Where memory figures come from. [`SystemMemory`] reads the real machine; tests implement
/// this with fixed or scripted values.
pub trait SystemMemoryProbe: Send + Sync + fmt::Debug + 'static {
    /// The current figures, or `None` if the platform cannot tell.
    fn snapshot(&self) -> Option<SystemMemorySnapshot>;
}

impl SystemMemoryProbe for SystemMemorySnapshot {
    fn snapshot(&self) -> Option<SystemMemorySnapshot> {
        Some(*self)
    }
}

/// s3db.js's first guess: by installed RAM (< 512 MiB → 2, < 1 GiB → 5, < 2 GiB → 10,
/// < 4 GiB → 20, < 8 GiB → 30, else 50), halved (rounded down) for a conservative start, then
/// clamped to `bounds`.
///
/// ```
/// use pool_tuning::{suggest_initial_concurrency, Bounds, SystemMemorySnapshot};
/// let bounds = Bounds::new(1, 100)?;
/// assert_eq!(suggest_initial_concurrency(SystemMemorySnapshot::from_mib(16 * 1024, 0), bounds), 25);
/// assert_eq!(suggest_initial_concurrency(SystemMemorySnapshot::from_mib(256, 0), bounds), 1);
/// # Ok::<(), pool_tuning::ConfigError>(())
/// ```
pub fn suggest_initial_concurrency(memory: SystemMemorySnapshot, bounds: Bounds) -> usize {
    let total_mib = memory.total_bytes / MIB;
    let by_memory = match total_mib {
        0..512 => 2,
        512..1024 => 5,
        1024..2048 => 10,
        2048..4096 => 20,
        4096..8192 => 30,
        _ => 50,
    };
    bounds.clamp(by_memory / 2)
}

/// The real machine's RAM, read through `sysinfo` (RAM only: no processes, disks or networks).
#[cfg(feature = "system-memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "system-memory")))]
pub struct SystemMemory {
    system: std::sync::Mutex<sysinfo::System>,
}

#[cfg(feature = "system-memory")]
impl SystemMemory {
    /// Opens the platform's memory source, or `None` where sysinfo cannot.
    pub fn new() -> Option<Self> {
        let system = sysinfo::System::new().ok()?;
        Some(Self {
            system: std::sync::Mutex::new(system),
        })
    }
}

#[cfg(feature = "system-memory")]
impl fmt::Debug for SystemMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemMemory").finish_non_exhaustive()
    }
}

#[cfg(feature = "system-memory")]
impl SystemMemoryProbe for SystemMemory {
    fn snapshot(&self) -> Option<SystemMemorySnapshot> {
        // A poisoned lock only means another reader panicked mid-refresh; the data is still usable.
        let mut system = self
            .system
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        system.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
        let total_bytes = system.total_memory();
        (total_bytes > 0).then(|| SystemMemorySnapshot {
            total_bytes,
            used_bytes: system.used_memory(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suggest(total_mib: u64, min: usize, max: usize) -> usize {
        suggest_initial_concurrency(
            SystemMemorySnapshot::from_mib(total_mib, 0),
            Bounds::new(min, max).unwrap(),
        )
    }

    #[test]
    fn suggestion_follows_the_memory_table_halved() {
        assert_eq!(suggest(256, 1, 100), 1);
        assert_eq!(suggest(511, 1, 100), 1);
        assert_eq!(suggest(512, 1, 100), 2);
        assert_eq!(suggest(1023, 1, 100), 2);
        assert_eq!(suggest(1024, 1, 100), 5);
        assert_eq!(suggest(2048, 1, 100), 10);
        assert_eq!(suggest(4096, 1, 100), 15);
        assert_eq!(suggest(8192, 1, 100), 25);
        assert_eq!(suggest(64 * 1024, 1, 100), 25);
    }

    #[test]
    fn suggestion_is_clamped_to_bounds() {
        assert_eq!(suggest(256, 5, 100), 5);
        assert_eq!(suggest(64 * 1024, 1, 8), 8);
    }

    #[test]
    fn used_fraction_is_zero_when_total_is_unknown() {
        assert_eq!(SystemMemorySnapshot::from_mib(0, 0).used_fraction(), 0.0);
        assert_eq!(
            SystemMemorySnapshot::from_mib(100, 25).used_fraction(),
            0.25
        );
    }

    #[cfg(feature = "system-memory")]
    #[test]
    fn system_memory_reports_a_plausible_machine() {
        if let Some(snapshot) = SystemMemory::new().and_then(|probe| probe.snapshot()) {
            assert!(snapshot.total_bytes > 0);
            assert!(snapshot.used_bytes <= snapshot.total_bytes);
        }
    }
}
