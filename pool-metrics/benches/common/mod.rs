//! The pool-overhead workload, shared by the `pool_overhead` bench and the `noop_pool`
//! example (a single run, for profilers and instruction counters).

#![allow(dead_code)] // each includer uses a different subset

use std::hint::black_box;
use std::time::Duration;

use pool_core::{Event, EventKind, FinishedTask, Observer, Pool, PoolBuilder, TaskOptions};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};

pub(crate) const TASKS: u64 = 100_000;
pub(crate) const CONCURRENCY: usize = 200;

/// Receives events and does nothing: isolates the cost of emitting them.
#[derive(Debug)]
struct IgnoreEvents;

impl Observer for IgnoreEvents {
    fn on_event(&self, event: &Event) {
        black_box(event);
    }
}

/// Wants finished tasks only and reads each one's figures from the pool's view, doing
/// nothing with them: what observing a finished task costs the pool (its clock reads, the
/// task's identity, the view, the delivery) before any collector records it — the floor
/// under `Metrics`.
#[derive(Debug)]
struct ReadFinished;

impl Observer for ReadFinished {
    fn on_event(&self, event: &Event) {
        black_box(event);
    }

    fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::TaskFinished
    }

    fn on_task_finished(&self, task: &FinishedTask<'_>) {
        black_box((
            task.task().id,
            task.finished_since_origin(),
            task.queue_wait(),
            task.execution(),
            task.total(),
            task.outcome(),
        ));
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Variant {
    NoObserver,
    IgnoringObserver,
    ReadingFinished,
    MetricsLight,
}

impl Variant {
    pub(crate) const ALL: [Variant; 4] = [
        Variant::NoObserver,
        Variant::IgnoringObserver,
        Variant::ReadingFinished,
        Variant::MetricsLight,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::NoObserver => "no_observer",
            Variant::IgnoringObserver => "ignoring_observer",
            Variant::ReadingFinished => "reading_finished",
            Variant::MetricsLight => "metrics_light",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }

    fn attach(self, builder: PoolBuilder) -> PoolBuilder {
        match self {
            Variant::NoObserver => builder,
            Variant::IgnoringObserver => builder.observer(IgnoreEvents),
            Variant::ReadingFinished => builder.observer(ReadFinished),
            Variant::MetricsLight => {
                let config = MetricsConfig::default().memory(MemoryMode::Light);
                builder.observer(Metrics::new(config).expect("valid config"))
            }
        }
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

/// Enqueues every task, then awaits every handle.
pub(crate) async fn run(variant: Variant) {
    let pool = variant
        .attach(Pool::builder().concurrency(CONCURRENCY))
        .build()
        .expect("valid pool config");
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            pool.enqueue(
                move || async move { Ok::<_, std::io::Error>(i) },
                TaskOptions::new(),
            )
        })
        .collect();
    for handle in handles {
        black_box(handle.await.expect("no-op tasks succeed"));
    }
}

/// CPU time used so far by every thread of this process, if the platform tells (Linux:
/// summed over `/proc/self/task/*/schedstat`, in nanoseconds).
pub(crate) fn process_cpu_time() -> Option<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}
