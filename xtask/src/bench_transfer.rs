//! `cargo xtask bench-transfer`: large and many objects up and down over the in-process S3
//! server, s3pool beside bare object_store (pool-bench), built in release.

use crate::bench_matrix::{run_pool_bench, BenchArgs};

pub(crate) fn run(args: &BenchArgs) -> Result<(), String> {
    run_pool_bench("transfer", "bench-transfer", &args.args)
}
