//! `cargo xtask bench-hedge`: hedged reads against a slow tail (s3-client's `hedge_bench`
//! example over the in-process S3 server: no hedging beside s3pool's hedging, then a uniform
//! slowdown against the budget), then fair share between three tenants of weights 1 : 2 : 5
//! (pool-core's `fair_share` example: shares and Jain's index). Both built in release; the
//! defaults take about a minute once built (`-- --long` for 10,000 reads a round).

use crate::bench_matrix::BenchArgs;
use crate::cargo;

pub(crate) fn run(args: &BenchArgs) -> Result<(), String> {
    let mut hedge = vec![
        "run",
        "--release",
        "-p",
        "s3-client",
        "--features",
        "testing",
        "--example",
        "hedge_bench",
        "--",
    ];
    hedge.extend(args.args.iter().map(String::as_str));
    cargo(&hedge)?;
    // 3 s, 16 slots, 2 ms tasks.
    cargo(&[
        "run",
        "--release",
        "-p",
        "pool-core",
        "--example",
        "fair_share",
        "--",
        "3",
        "16",
        "2",
    ])
}
