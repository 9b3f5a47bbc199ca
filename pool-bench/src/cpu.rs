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
        Timing { wall, cpu }
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
}
