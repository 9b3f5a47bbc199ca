//! One run of the `pool_overhead` workload (100,000 no-op tasks at concurrency 200), for
//! profilers and instruction counters:
//!
//! `cargo run --release -p pool-metrics --example noop_pool -- metrics_light`
//!
//! Variants: `no_observer`, `ignoring_observer`, `reading_finished` (an observer that wants
//! finished tasks only and reads their figures: what observing costs the pool before any
//! collector records), `metrics_light`.
//!
//! `noop_pool ratio [ROUNDS] [VARIANT]` (default 11 rounds, `metrics_light`) measures what a
//! variant costs instead: each round runs the workload once without an observer and once with
//! the variant, back to back and in alternating order, and the pair gives that round's ratio
//! of throughput with it to without, on the wall clock and on the process's CPU time. It prints every round and the
//! median, min and max of the ratios: a pair shares the machine's load of its moment, so the
//! median of paired ratios moves far less than a ratio of separate medians.

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{process_cpu_time, run, runtime, Variant, CONCURRENCY, TASKS};

/// Wall-clock and CPU time of one run.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

fn timed(runtime: &tokio::runtime::Runtime, variant: Variant) -> Timing {
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    runtime.block_on(run(variant));
    let wall = start.elapsed();
    let cpu = cpu_before
        .zip(process_cpu_time())
        .map(|(before, after)| after.saturating_sub(before));
    Timing { wall, cpu }
}

/// Median, min and max.
fn summary(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    values.sort_by(f64::total_cmp);
    Some((
        *values.get(values.len() / 2)?,
        *values.first()?,
        *values.last()?,
    ))
}

/// Throughput with metrics over throughput without = time without / time with.
fn ratio(plain: Duration, metrics: Duration) -> f64 {
    plain.as_secs_f64() / metrics.as_secs_f64()
}

fn ratios(runtime: &tokio::runtime::Runtime, rounds: usize, metrics: Variant) {
    let plain = Variant::NoObserver;
    // One untimed pass of each warms the allocator and the runtime's threads.
    timed(runtime, plain);
    timed(runtime, metrics);
    println!(
        "{TASKS} no-op tasks at concurrency {CONCURRENCY}, {rounds} rounds: throughput with \
         {} / without, per round (pairs back to back, order alternating)",
        metrics.name()
    );
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (without, with) = if round % 2 == 0 {
            let without = timed(runtime, plain);
            (without, timed(runtime, metrics))
        } else {
            let with = timed(runtime, metrics);
            (timed(runtime, plain), with)
        };
        wall.push(ratio(without.wall, with.wall));
        let cpu_ratio = without
            .cpu
            .zip(with.cpu)
            .map(|(without, with)| ratio(without, with));
        cpu.extend(cpu_ratio);
        let per_task = |time: Duration| time.as_nanos() as f64 / TASKS as f64;
        println!(
            "round {round:>2}: wall {:>5.0} / {:>5.0} ns/task = {:.3}   cpu {}",
            per_task(without.wall),
            per_task(with.wall),
            ratio(without.wall, with.wall),
            without
                .cpu
                .zip(with.cpu)
                .map_or("n/a".to_owned(), |(a, b)| format!(
                    "{:>5.0} / {:>5.0} ns/task = {:.3}",
                    per_task(a),
                    per_task(b),
                    ratio(a, b)
                )),
        );
    }
    for (clock, values) in [("wall", wall), ("cpu", cpu)] {
        if let Some((median, min, max)) = summary(values) {
            println!("{clock:<4} ratio: median {median:.3} (min {min:.3}, max {max:.3})");
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "metrics_light".to_owned());
    let runtime = runtime();
    if name == "ratio" {
        let rounds = args
            .next()
            .map_or(11, |n| n.parse().expect("ROUNDS: a number"));
        let variant = args.next().map_or(Some(Variant::MetricsLight), |name| {
            Variant::from_name(&name)
        });
        let Some(variant) = variant else {
            eprintln!("unknown variant: {}", variant_names());
            std::process::exit(2);
        };
        ratios(&runtime, rounds, variant);
        return;
    }
    let Some(variant) = Variant::from_name(&name) else {
        eprintln!("unknown variant {name:?}: {} or ratio", variant_names());
        std::process::exit(2);
    };
    let start = Instant::now();
    runtime.block_on(run(variant));
    println!("{}: {TASKS} tasks in {:?}", variant.name(), start.elapsed());
}

fn variant_names() -> String {
    let names: Vec<&str> = Variant::ALL.into_iter().map(Variant::name).collect();
    names.join(", ")
}
