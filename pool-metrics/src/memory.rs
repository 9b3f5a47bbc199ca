//! The memory sampler: reads the process's resident memory according to the [`MemoryMode`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::MemoryMode;

/// Where memory figures come from. The default is [`ProcessRss`]; implement this to report
/// something else (an allocator's statistics, a cgroup's usage) or to script tests.
/// Closures `Fn() -> Option<u64>` implement it.
///
/// ```
/// use pool_metrics::{MemoryMode, Metrics, MetricsConfig};
/// let config = MetricsConfig::default().memory(MemoryMode::Full);
/// let metrics = Metrics::with_memory_probe(config, || Some(64 << 20))?;
/// # let _ = metrics;
/// # Ok::<(), pool_metrics::ConfigError>(())
/// ```
pub trait MemoryProbe: Send + Sync + 'static {
    /// Memory in use now, in bytes; `None` if it cannot be read.
    fn resident_bytes(&self) -> Option<u64>;
}

impl<F> MemoryProbe for F
where
    F: Fn() -> Option<u64> + Send + Sync + 'static,
{
    fn resident_bytes(&self) -> Option<u64> {
        self()
    }
}

/// The process's resident set size (RSS): now ([`resident_bytes`](MemoryProbe::resident_bytes),
/// through `sysinfo`: on Linux one read of `/proc/self/stat…` per call) and at its highest
/// ([`peak_resident_bytes`](Self::peak_resident_bytes)).
///
/// The two are different figures: a collector samples the current one over time; a
/// benchmark that runs each case in a fresh process wants the peak, which falls between any
/// two samples.
#[cfg(feature = "process-memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "process-memory")))]
pub struct ProcessRss {
    pid: Option<sysinfo::Pid>,
    system: Mutex<Option<sysinfo::System>>,
}

#[cfg(feature = "process-memory")]
impl ProcessRss {
    /// A probe for this process. Never fails: if the platform is unsupported, every read
    /// returns `None`.
    pub fn new() -> Self {
        Self {
            pid: sysinfo::get_current_pid().ok(),
            system: Mutex::new(sysinfo::System::new().ok()),
        }
    }
}

#[cfg(feature = "process-memory")]
impl ProcessRss {
    /// The most this process has had resident since it started (its high-water mark), in
    /// bytes: `VmHWM` of `/proc/self/status`. Linux only; `None` elsewhere or where `/proc`
    /// is missing. (Not `getrusage`'s `ru_maxrss`: a child started by `posix_spawn` or
    /// `vfork` inherits its parent's peak in that figure.)
    pub fn peak_resident_bytes(&self) -> Option<u64> {
        if cfg!(target_os = "linux") {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            kib_field(&status, "VmHWM:")
        } else {
            None
        }
    }
}

/// Reads a `Name:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
#[cfg(feature = "process-memory")]
fn kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(feature = "process-memory")]
impl Default for ProcessRss {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "process-memory")]
impl fmt::Debug for ProcessRss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessRss")
            .field("pid", &self.pid)
            .finish()
    }
}

#[cfg(feature = "process-memory")]
impl MemoryProbe for ProcessRss {
    fn resident_bytes(&self) -> Option<u64> {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};

        let pid = self.pid?;
        let mut system = self.system.lock().unwrap_or_else(PoisonError::into_inner);
        let system = system.as_mut()?;
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map(sysinfo::Process::memory)
    }
}

/// Memory figures in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySnapshot {
    /// The sampling mode: `"full"`, `"balanced"` or `"light"` ([`MemoryMode::name`]).
    pub mode: String,
    /// The minimum time between samples in `balanced` mode, in seconds.
    pub interval_secs: Option<f64>,
    /// The latest sample, in bytes (`None` in `Light` mode or before the first sample).
    pub rss_bytes: Option<u64>,
    /// Latest sample minus the one at the start of the period (the first sample ever for
    /// live stats).
    pub delta_bytes: Option<i64>,
    /// Samples taken since the collector started.
    pub samples: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Samples {
    first: Option<Sample>,
    latest: VecDeque<Sample>,
}

/// How many samples are kept for deltas (the very first is kept apart, for ever).
const KEPT_SAMPLES: usize = 1_024;

pub(crate) struct MemorySampler {
    mode: MemoryMode,
    probe: Option<Arc<dyn MemoryProbe>>,
    /// Balanced mode: nanoseconds after the origin when the next sample is due.
    next_due_nanos: AtomicU64,
    taken: AtomicU64,
    samples: Mutex<Samples>,
}

impl fmt::Debug for MemorySampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySampler")
            .field("mode", &self.mode)
            .field("taken", &self.taken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemorySampler {
    pub(crate) fn new(mode: MemoryMode, probe: Option<Arc<dyn MemoryProbe>>) -> Self {
        Self {
            mode,
            probe,
            next_due_nanos: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            samples: Mutex::new(Samples::default()),
        }
    }

    /// Called for every finished task, `elapsed` nanoseconds after the origin, at the instant
    /// `at` makes (called only for a sample). The caller passes `elapsed` only when the task
    /// is not before the [`next_due`](Self::next_due) it last read, and `None` otherwise (no
    /// sample can be due then). Returns the sample to store with the task (`Full` only). In
    /// `Balanced` mode this is one atomic load unless a sample is due.
    #[inline]
    pub(crate) fn on_task(
        &self,
        elapsed: Option<u64>,
        at: impl FnOnce() -> Instant,
    ) -> Option<u64> {
        match self.mode {
            MemoryMode::Light => None,
            MemoryMode::Full => self.sample(at()),
            MemoryMode::Balanced { interval } => {
                if elapsed.is_some_and(|elapsed| self.claim_due(elapsed, interval)) {
                    self.sample(at());
                }
                None
            }
        }
    }

    /// Nanoseconds after the origin when the next `Balanced` sample is due (it only ever
    /// moves later); `u64::MAX` in the other modes, which need no due time.
    pub(crate) fn next_due(&self) -> u64 {
        match self.mode {
            MemoryMode::Balanced { .. } => self.next_due_nanos.load(Ordering::Relaxed),
            MemoryMode::Full | MemoryMode::Light => u64::MAX,
        }
    }

    /// Called before a snapshot is read: takes a fresh sample if one is due.
    pub(crate) fn on_read(&self, now: Instant, origin: Instant) {
        self.on_task(Some(nanos(now.saturating_duration_since(origin))), || now);
    }

    /// Only one of the workers that see the sample due wins the right to take it.
    fn claim_due(&self, elapsed: u64, interval: Duration) -> bool {
        let due = self.next_due_nanos.load(Ordering::Relaxed);
        if elapsed < due {
            return false;
        }
        let next = elapsed.saturating_add(nanos(interval));
        self.next_due_nanos
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn sample(&self, at: Instant) -> Option<u64> {
        let bytes = self.probe.as_ref()?.resident_bytes()?;
        self.taken.fetch_add(1, Ordering::Relaxed);
        let sample = Sample { at, bytes };
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.first.get_or_insert(sample);
        if samples.latest.len() == KEPT_SAMPLES {
            samples.latest.pop_front();
        }
        samples.latest.push_back(sample);
        Some(bytes)
    }

    /// Memory over `[since, now]`; `since = None` means since the first sample.
    pub(crate) fn snapshot(&self, since: Option<Instant>, now: Instant) -> MemorySnapshot {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let end = samples.latest.iter().rev().find(|s| s.at <= now).copied();
        let start = match since {
            None => samples.first,
            Some(since) => samples
                .latest
                .iter()
                .rev()
                .find(|s| s.at <= since)
                .or_else(|| samples.latest.iter().find(|s| s.at > since && s.at <= now))
                .copied()
                .or(samples.first.filter(|first| first.at <= since)),
        };
        let interval = match self.mode {
            MemoryMode::Balanced { interval } => Some(interval.as_secs_f64()),
            MemoryMode::Full | MemoryMode::Light => None,
        };
        MemorySnapshot {
            mode: self.mode.name().to_owned(),
            interval_secs: interval,
            rss_bytes: end.map(|s| s.bytes),
            delta_bytes: start
                .zip(end)
                .map(|(start, end)| signed(end.bytes) - signed(start.bytes)),
            samples: self.taken.load(Ordering::Relaxed),
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// A probe that reports 1000, 2000, 3000… and counts its reads.
    fn counting_probe() -> (Arc<AtomicU64>, Arc<dyn MemoryProbe>) {
        let reads = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&reads);
        let probe = move || Some((counter.fetch_add(1, Ordering::Relaxed) + 1) * 1_000);
        (reads, Arc::new(probe))
    }

    #[test]
    fn light_never_reads() {
        let (reads, probe) = counting_probe();
        let sampler = MemorySampler::new(MemoryMode::Light, Some(probe));
        let origin = Instant::now();
        for ms in 0..100 {
            assert_eq!(
                sampler.on_task(Some(ms * 1_000_000), || origin + Duration::from_millis(ms)),
                None
            );
        }
        assert_eq!(reads.load(Ordering::Relaxed), 0);
        assert_eq!(sampler.snapshot(None, origin).rss_bytes, None);
    }

    #[test]
    fn balanced_reads_once_per_interval() {
        let (reads, probe) = counting_probe();
        let mode = MemoryMode::Balanced {
            interval: Duration::from_secs(1),
        };
        let sampler = MemorySampler::new(mode, Some(probe));
        let origin = Instant::now();
        // 5 s of tasks, one every 10 ms: samples at 0, 1, 2, 3, 4 s.
        for ms in (0..5_000).step_by(10) {
            sampler.on_task(Some(ms * 1_000_000), || origin + Duration::from_millis(ms));
        }
        assert_eq!(reads.load(Ordering::Relaxed), 5);
        let end = origin + Duration::from_secs(5);
        let all = sampler.snapshot(None, end);
        assert_eq!((all.rss_bytes, all.delta_bytes), (Some(5_000), Some(4_000)));
        let since_2s = sampler.snapshot(Some(origin + Duration::from_millis(2_500)), end);
        assert_eq!(since_2s.delta_bytes, Some(2_000));
    }

    #[test]
    fn full_reads_every_task_and_returns_the_value() {
        let (reads, probe) = counting_probe();
        let sampler = MemorySampler::new(MemoryMode::Full, Some(probe));
        let origin = Instant::now();
        assert_eq!(sampler.on_task(Some(0), || origin), Some(1_000));
        assert_eq!(sampler.on_task(Some(0), || origin), Some(2_000));
        assert_eq!(reads.load(Ordering::Relaxed), 2);
    }

    #[cfg(feature = "process-memory")]
    #[test]
    fn process_rss_reads_now_and_the_peak_on_linux() {
        let probe = ProcessRss::new();
        let one_mib_more = std::hint::black_box(vec![1u8; 1 << 20]);
        let (now, peak) = (probe.resident_bytes(), probe.peak_resident_bytes());
        if cfg!(target_os = "linux") {
            // No order between the two: the kernel updates the high-water mark lazily, so
            // the current figure can briefly exceed it.
            let at_least = one_mib_more.len() as u64;
            assert!(now.is_some_and(|bytes| bytes > at_least), "now: {now:?}");
            assert!(peak.is_some_and(|bytes| bytes > at_least), "peak: {peak:?}");
        }
    }

    #[cfg(feature = "process-memory")]
    #[test]
    fn status_fields_read_in_kib() {
        let status = "Name:\tpool-bench\nVmHWM:\t   20480 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(kib_field(status, "VmHWM:"), Some(20480 * 1024));
        assert_eq!(kib_field(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(kib_field(status, "VmSwap:"), None);
        assert_eq!(kib_field("VmHWM:\tlots kB\n", "VmHWM:"), None);
    }
}
