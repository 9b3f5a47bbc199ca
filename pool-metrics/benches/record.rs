//! Cost of recording one finished task, per memory mode, from one thread and from four at once.
//!
//! `cargo bench -p pool-metrics --bench record`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pool_core::{Event, Metadata, Observer, Outcome, TaskId, TaskInfo, TaskRecord};
use pool_metrics::{MemoryMode, Metrics, MetricsConfig};

/// A finished task `step` µs after `start` (so slices and buckets turn over as in real traffic).
fn finished(start: Instant, step: u64, metadata: &Metadata) -> TaskRecord {
    let finished_at = start + Duration::from_micros(step);
    TaskRecord {
        task: TaskInfo::new(TaskId(step)).with_metadata(metadata.clone()),
        queued_at: start,
        first_started_at: Some(start),
        finished_at,
        attempts: 1 + (step % 3) as u32,
        queue_wait: Duration::from_micros(step % 1_000),
        execution: Duration::from_micros(50 + step % 5_000),
        retry_delay: Duration::ZERO,
        outcome: Outcome::Succeeded,
    }
}

fn record_one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_task_finished");
    let modes = [
        ("light", MemoryMode::Light),
        ("balanced", MemoryMode::BALANCED),
        ("full", MemoryMode::Full),
    ];
    for (name, mode) in modes {
        let metrics = Metrics::new(MetricsConfig::default().memory(mode)).expect("valid config");
        let metadata = Metadata::new().with("op", "put");
        let start = Instant::now();
        let mut step = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                step += 1;
                let record = finished(start, step, &metadata);
                metrics.on_event(black_box(&Event::TaskFinished(record)));
            })
        });
    }
    group.finish();
}

fn record_four_threads(c: &mut Criterion) {
    let metrics =
        Metrics::new(MetricsConfig::default().memory(MemoryMode::Light)).expect("valid config");
    let start = Instant::now();
    // Time per event, with four threads recording at once.
    c.bench_function("record_task_finished/light_4_threads", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(4);
            let began = Instant::now();
            std::thread::scope(|scope| {
                for thread in 0..4 {
                    let metrics = &metrics;
                    scope.spawn(move || {
                        let metadata = Metadata::new();
                        for i in 0..per_thread {
                            let record = finished(start, thread * per_thread + i, &metadata);
                            metrics.on_event(black_box(&Event::TaskFinished(record)));
                        }
                    });
                }
            });
            began.elapsed()
        })
    });
}

criterion_group!(benches, record_one_thread, record_four_threads);
criterion_main!(benches);
