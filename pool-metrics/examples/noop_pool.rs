//! One run of the `pool_overhead` workload (100,000 no-op tasks at concurrency 200), for
//! profilers and instruction counters:
//!
//! `cargo run --release -p pool-metrics --example noop_pool -- metrics_light`
//!
//! Variants: `no_observer`, `ignoring_observer`, `metrics_light`.

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{run, runtime, Variant, TASKS};

fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "metrics_light".to_owned());
    let Some(variant) = Variant::from_name(&name) else {
        eprintln!("unknown variant {name:?}: no_observer, ignoring_observer or metrics_light");
        std::process::exit(2);
    };
    let runtime = runtime();
    let start = Instant::now();
    runtime.block_on(run(variant));
    println!("{}: {TASKS} tasks in {:?}", variant.name(), start.elapsed());
}
