//! Two of `pool-bench overhead`'s no-op peers, run the way the bench runs them (same code,
//! same runtime, no tokio `test-util`, whose clock sits behind a mutex), for instruction
//! counters and for paired ratios:
//!
//! - `noop_pair run PEER [TASKS]`: one untimed pass of a tenth of the tasks, then one run of
//!   `TASKS` (default 100,000) no-op tasks at C=200 on `PEER` (a peer's name in results:
//!   `s3pool`, `s3pool-metrics`, …). Under `valgrind --tool=callgrind`, subtract a run of
//!   a few tasks and divide by the task count for the instructions per task.
//! - `noop_pair ratio [ROUNDS] [PEER] [BASE] [TASKS]` (default 11 rounds, `s3pool-metrics`
//!   over `s3pool`, 100,000 tasks): each round runs both peers back to back, in alternating
//!   order, and prints the pair's ratio of CPU time per task (base / peer: throughput per
//!   CPU second of the peer relative to the base, as `overhead` reports it) and of wall time;
//!   then the median, min and max of the ratios. A pair shares the machine's load of its
//!   moment, so the median of paired ratios moves far less than a ratio of separate medians.
//!
//! `cargo build --release -p pool-bench --example noop_pair`

use std::time::Duration;

use pool_bench::{worker_threads, Peer, Timing};

const CONCURRENCY: usize = 200;

fn peer_named(name: &str) -> Peer {
    Peer::ALL
        .into_iter()
        .find(|peer| peer.name() == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = Peer::ALL.into_iter().map(Peer::name).collect();
            eprintln!("unknown peer {name:?}: one of {}", names.join(", "));
            std::process::exit(2)
        })
}

fn run(runtime: &tokio::runtime::Runtime, peer: Peer, tasks: usize) -> Timing {
    runtime
        .block_on(peer.run(tasks, CONCURRENCY, || async {}))
        .expect("a no-op run")
}

fn per_task(time: Duration, tasks: usize) -> f64 {
    time.as_nanos() as f64 / tasks as f64
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

fn ratios(runtime: &tokio::runtime::Runtime, rounds: usize, peer: Peer, base: Peer, tasks: usize) {
    // One untimed pass of each warms the allocator and the runtime's threads.
    run(runtime, base, tasks / 10);
    run(runtime, peer, tasks / 10);
    println!(
        "{tasks} no-op tasks at C={CONCURRENCY} on {} workers, {rounds} rounds: {} / {} \
         per round (ns per task; ratio = base time / peer time)",
        worker_threads(),
        peer.name(),
        base.name()
    );
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (of_base, of_peer) = if round % 2 == 0 {
            let of_base = run(runtime, base, tasks);
            (of_base, run(runtime, peer, tasks))
        } else {
            let of_peer = run(runtime, peer, tasks);
            (run(runtime, base, tasks), of_peer)
        };
        let wall_ratio = of_base.wall.as_secs_f64() / of_peer.wall.as_secs_f64();
        wall.push(wall_ratio);
        let mut line = format!(
            "round {round:>2}: wall {:>5.0} / {:>5.0} = {wall_ratio:.3}",
            per_task(of_peer.wall, tasks),
            per_task(of_base.wall, tasks),
        );
        if let (Some(peer_cpu), Some(base_cpu)) = (of_peer.cpu, of_base.cpu) {
            let cpu_ratio = base_cpu.as_secs_f64() / peer_cpu.as_secs_f64();
            cpu.push(cpu_ratio);
            line += &format!(
                "   cpu {:>5.0} / {:>5.0} = {cpu_ratio:.3}",
                per_task(peer_cpu, tasks),
                per_task(base_cpu, tasks),
            );
        }
        println!("{line}");
    }
    for (clock, values) in [("wall", wall), ("cpu", cpu)] {
        if let Some((median, min, max)) = summary(values) {
            println!("{clock:<4} ratio: median {median:.3} (min {min:.3}, max {max:.3})");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |index: usize| args.get(index).map(String::as_str);
    let number =
        |index: usize, default: usize| arg(index).map_or(default, |n| n.parse().expect("a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match arg(0) {
        Some("run") => {
            let peer = peer_named(arg(1).unwrap_or("s3pool"));
            let tasks = number(2, 100_000);
            run(&runtime, peer, tasks / 10);
            let timing = run(&runtime, peer, tasks);
            println!(
                "{}: {tasks} tasks, wall {:.0} ns/task, cpu {} ns/task",
                peer.name(),
                per_task(timing.wall, tasks),
                timing.cpu.map_or("n/a".to_owned(), |cpu| format!(
                    "{:.0}",
                    per_task(cpu, tasks)
                ))
            );
        }
        Some("ratio") => {
            let rounds = number(1, 11);
            let peer = peer_named(arg(2).unwrap_or("s3pool-metrics"));
            let base = peer_named(arg(3).unwrap_or("s3pool"));
            let tasks = number(4, 100_000);
            ratios(&runtime, rounds, peer, base, tasks);
        }
        _ => {
            eprintln!("usage: noop_pair run PEER [TASKS] | ratio [ROUNDS] [PEER] [BASE] [TASKS]");
            std::process::exit(2);
        }
    }
}
