//! Three tenants with weights 1 : 2 : 5 keep one pool saturated on real time; prints each
//! tenant's completions over the middle of the run, its share against its weight's share,
//! and Jain's fairness index of the weighted throughputs (1 is perfectly fair).
//!
//! `cargo run --release -p pool-core --example fair_share [-- <seconds> <concurrency> <task ms>]`
//! (defaults 3 s, 16 slots, 2 ms per task).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::{Pool, TaskOptions, TenantConfig};

const TENANTS: [(&str, u32); 3] = [("a", 1), ("b", 2), ("c", 5)];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let seconds = args.next().transpose()?.unwrap_or(3);
    let concurrency = args.next().transpose()?.unwrap_or(16) as usize;
    let task = Duration::from_millis(args.next().transpose()?.unwrap_or(2));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    runtime.block_on(run(Duration::from_secs(seconds), concurrency, task))
}

async fn run(
    length: Duration,
    concurrency: usize,
    task: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Pool::builder()
        .concurrency(concurrency)
        .no_pressure_rule()
        .no_timeout();
    for (tenant, weight) in TENANTS {
        builder = builder.tenant(tenant, TenantConfig::new().weight(weight));
    }
    let pool = builder.build()?;
    let start = Instant::now();
    // The window leaves out the first and last sixth of the run.
    let (from, to) = (start + length / 6, start + length * 5 / 6);
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    // Far more tasks than the run can serve, per tenant: every tenant always has work.
    let per_tenant = (length.as_secs_f64() / task.as_secs_f64() * concurrency as f64) as usize;
    let cpu_before = cpu_time();
    let mut handles = Vec::with_capacity(per_tenant * TENANTS.len());
    for _ in 0..per_tenant {
        for (index, (tenant, _)) in TENANTS.iter().enumerate() {
            let counts = Arc::clone(&counts);
            handles.push(pool.enqueue(
                move || {
                    let counts = Arc::clone(&counts);
                    async move {
                        tokio::time::sleep(task).await;
                        let now = Instant::now();
                        if (from..to).contains(&now) {
                            counts[index].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<_, std::io::Error>(())
                    }
                },
                TaskOptions::new().tenant(*tenant),
            ));
        }
    }
    tokio::time::sleep_until((start + length).into()).await;
    pool.stop_now();
    pool.stop().await;
    drop(handles);
    let wall = start.elapsed();
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);

    let counts: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    let weight_sum: u32 = TENANTS.iter().map(|(_, w)| w).sum();
    println!(
        "{} slots, {} ms tasks, window {:.1} s of {:.1} s: {} completions ({:.0}/s)",
        concurrency,
        task.as_millis(),
        (to - from).as_secs_f64(),
        length.as_secs_f64(),
        total,
        total as f64 / (to - from).as_secs_f64()
    );
    let mut weighted = Vec::new();
    for ((tenant, weight), count) in TENANTS.iter().zip(&counts) {
        let share = *count as f64 / total.max(1) as f64;
        let expected = f64::from(*weight) / f64::from(weight_sum);
        println!(
            "  tenant {tenant} (weight {weight}): {count:>7} completions, share {:.4} (weight's share {:.4}, {:+.2} %)",
            share,
            expected,
            (share / expected - 1.0) * 100.0
        );
        weighted.push(*count as f64 / f64::from(*weight));
    }
    println!("Jain index of weighted throughput: {:.5}", jain(&weighted));
    match cpu {
        Some(cpu) => println!(
            "wall {:.2} s, CPU {:.2} s",
            wall.as_secs_f64(),
            cpu.as_secs_f64()
        ),
        None => println!("wall {:.2} s", wall.as_secs_f64()),
    }
    Ok(())
}

/// Jain's fairness index: `(Σx)² / (n · Σx²)`, 1 when every value is equal.
fn jain(values: &[f64]) -> f64 {
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|v| v * v).sum();
    sum * sum / (values.len() as f64 * squares)
}

/// User + system CPU time of this process so far (Linux: from `/proc/self/stat`).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux platform Rust supports.
    Some(Duration::from_millis(ticks * 10))
}
