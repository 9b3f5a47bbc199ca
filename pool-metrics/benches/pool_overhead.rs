//! What attaching `Metrics` costs a busy pool: 100,000 no-op tasks at concurrency 200 on a
//! two-worker tokio runtime, without observers, with an observer that ignores every event
//! (what pool-core pays to build events), with an observer that only reads each finished
//! task's figures (what observing costs the pool before any collector records: the floor
//! under `Metrics`), and with `Metrics` in `Light` mode.
//!
//! `cargo bench -p pool-metrics --bench pool_overhead`
//!
//! After the criterion groups it prints the medians of interleaved runs and their ratios, in
//! wall time and in CPU time of the whole process (Linux: summed over its threads, from
//! `/proc/self/task/*/schedstat`), which other load on a shared machine disturbs less.

mod common;

use std::time::{Duration, Instant};

use common::{process_cpu_time, run, runtime, Variant, CONCURRENCY, TASKS};
use criterion::Criterion;

fn bench_variants(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("pool_100k_noop_c200");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for variant in Variant::ALL {
        group.bench_function(variant.name(), |b| {
            b.iter(|| runtime.block_on(run(variant)))
        });
    }
    group.finish();
}

fn median(runs: &mut [Duration]) -> Duration {
    runs.sort_unstable();
    runs[runs.len() / 2]
}

/// Interleaves the variants round by round (so drift in machine load hits all alike) and
/// prints each median and its ratio to the baseline, in wall time and in CPU time.
fn print_ratios(runtime: &tokio::runtime::Runtime, rounds: usize) {
    let mut wall: Vec<Vec<Duration>> = vec![Vec::new(); Variant::ALL.len()];
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); Variant::ALL.len()];
    for _ in 0..rounds {
        for (slot, variant) in Variant::ALL.into_iter().enumerate() {
            let cpu_before = process_cpu_time();
            let start = Instant::now();
            runtime.block_on(run(variant));
            wall[slot].push(start.elapsed());
            if let Some((before, after)) = cpu_before.zip(process_cpu_time()) {
                cpu[slot].push(after.saturating_sub(before));
            }
        }
    }
    println!(
        "\nmedians of {rounds} interleaved runs, {TASKS} no-op tasks, concurrency {CONCURRENCY}:"
    );
    for (clock, runs) in [("wall", &mut wall), ("cpu", &mut cpu)] {
        if runs.iter().any(|r| r.is_empty()) {
            continue;
        }
        let medians: Vec<Duration> = runs.iter_mut().map(|r| median(r)).collect();
        for (variant, value) in Variant::ALL.into_iter().zip(&medians) {
            println!(
                "  {clock:<5} {:<18} {:>9.2} ms  {:>6.0} ns/task  x{:.3}",
                variant.name(),
                value.as_secs_f64() * 1e3,
                value.as_nanos() as f64 / TASKS as f64,
                value.as_secs_f64() / medians[0].as_secs_f64()
            );
        }
    }
}

fn main() {
    let runtime = runtime();
    let mut criterion = Criterion::default().configure_from_args();
    bench_variants(&mut criterion, &runtime);
    criterion.final_summary();
    // `cargo test --benches` / `cargo bench -- --test` only checks that the bench runs.
    let smoke_test = std::env::args().any(|arg| arg == "--test");
    print_ratios(&runtime, if smoke_test { 1 } else { 15 });
}
