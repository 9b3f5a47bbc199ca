//! [`Stopwatch`]: wall-clock time and the process's CPU time (user + system, every thread,
//! from `getrusage(RUSAGE_SELF)`) over one timed section.
//!
//! On a machine shared with other work, wall-clock time includes every moment the
//! benchmark's threads waited for a core; CPU time counts only the cycles they ran, so it
//! moves far less with the machine's load. Tokio's idle workers spin briefly before they
//! park, and that counts too: CPU time is what the whole process spent, not what the
//! engine's code alone did.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The process's CPU time so far (user + system, all threads); `None` where `getrusage` is
/// not available.
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrusage, UsageWho};
        use nix::sys::time::TimeValLike;
        let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
        let micros = usage.user_time().num_microseconds() + usage.system_time().num_microseconds();
        Some(Duration::from_micros(u64::try_from(micros).ok()?))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// What the process had used so far (`getrusage(RUSAGE_SELF)`): CPU time split into user
/// and system, page faults, context switches. A run whose CPU time is out of line says
/// here where it went — the kernel's side (system time, minor faults: fresh pages zeroed
/// and mapped) or the program's (user time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// User CPU time, ms.
    pub user_ms: f64,
    /// System CPU time, ms.
    pub system_ms: f64,
    /// Page faults served without I/O (a fresh page mapped, a page-cache page found).
    pub minor_faults: u64,
    /// Page faults that read from disk.
    pub major_faults: u64,
    /// Switches away from a thread that waited (I/O, a lock, a park).
    pub voluntary_switches: u64,
    /// Switches away from a runnable thread (preempted: the machine's load).
    pub involuntary_switches: u64,
}

impl ResourceUsage {
    /// The process's usage so far; `None` where `getrusage` is not available.
    pub fn now() -> Option<Self> {
        #[cfg(unix)]
        {
            use nix::sys::resource::{getrusage, UsageWho};
            use nix::sys::time::TimeValLike;
            let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
            let count = |value: i64| u64::try_from(value).unwrap_or(0);
            Some(ResourceUsage {
                user_ms: usage.user_time().num_microseconds() as f64 / 1e3,
                system_ms: usage.system_time().num_microseconds() as f64 / 1e3,
                minor_faults: count(usage.minor_page_faults()),
                major_faults: count(usage.major_page_faults()),
                voluntary_switches: count(usage.voluntary_context_switches()),
                involuntary_switches: count(usage.involuntary_context_switches()),
            })
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// What was used between `before` and `self`.
    pub fn since(&self, before: &ResourceUsage) -> ResourceUsage {
        ResourceUsage {
            user_ms: (self.user_ms - before.user_ms).max(0.0),
            system_ms: (self.system_ms - before.system_ms).max(0.0),
            minor_faults: self.minor_faults.saturating_sub(before.minor_faults),
            major_faults: self.major_faults.saturating_sub(before.major_faults),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(before.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(before.involuntary_switches),
        }
    }
}

/// Started at the beginning of a timed section; [`Stopwatch::stop`] reads both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: Instant,
    cpu: Option<Duration>,
}

/// What one timed section took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall-clock time.
    pub wall: Duration,
    /// CPU time of the whole process (user + system) over the same section; `None` where
    /// it cannot be read.
    pub cpu: Option<Duration>,
    /// When the section started, on this process's clock: what moments measured inside the
    /// section (a task's start, its end) count from, so that set-up done before the clock
    /// started is not counted as part of it. Not kept in results (`None` once read back).
    #[serde(skip)]
    pub started: Option<Instant>,
}

impl Stopwatch {
    /// Reads both clocks now.
    pub fn start() -> Self {
        Stopwatch {
            cpu: process_cpu_time(),
            wall: Instant::now(),
        }
    }

    /// The time since [`Stopwatch::start`] on both clocks.
    pub fn stop(&self) -> Timing {
        let wall = self.wall.elapsed();
        let cpu = match (self.cpu, process_cpu_time()) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        Timing {
            wall,
            cpu,
            started: Some(self.wall),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn counts_the_cpu_a_busy_loop_spends() {
        let stopwatch = Stopwatch::start();
        // Spin until the process has spent 20 ms of CPU: a clock that did not count (or
        // counted something else) would spin until the hang guard below.
        let guard = Instant::now();
        let mut spins = 0u64;
        while stopwatch.stop().cpu.unwrap() < Duration::from_millis(20) {
            spins = std::hint::black_box(spins + 1);
            assert!(
                guard.elapsed() < Duration::from_secs(60),
                "CPU time never grew"
            );
        }
        assert!(spins > 0);
    }

    #[test]
    #[cfg(unix)]
    fn counts_the_page_faults_of_fresh_memory() {
        let before = ResourceUsage::now().unwrap();
        // 32 MiB of ones: every 4 KiB page is written, so every page is faulted in (a
        // reading that did not count faults, or counted another field, stays far below).
        let fresh = std::hint::black_box(vec![1u8; 32 << 20]);
        let used = ResourceUsage::now().unwrap().since(&before);
        assert_eq!(fresh[12_345], 1);
        assert!(used.minor_faults >= 4_096, "{used:?}");
    }
}
