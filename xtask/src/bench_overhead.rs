//! `cargo xtask bench-overhead`: s3pool beside tokio Semaphore + spawn, buffer_unordered
//! and tower's ConcurrencyLimit (pool-bench), built in release.

use crate::bench_matrix::{run_pool_bench, BenchArgs};

pub(crate) fn run(args: &BenchArgs) -> Result<(), String> {
    run_pool_bench("overhead", "bench-overhead", &args.args)
}
