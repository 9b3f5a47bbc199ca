//! `pool-bench`: the benchmark binary behind `cargo xtask bench-matrix` and
//! `cargo xtask bench-overhead`. Run `pool-bench --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pool_bench::{
    filter_cases, full_matrix, matrix, measure_case, measure_waiting_bytes, print_result,
    quick_matrix, run_matrix, run_overhead, waiting_bytes_in_child, write_charts, Backend,
    BenchError, Case, Engine, MatrixOptions, MatrixReport, OverheadOptions, Repetitions, Waiting,
    CONCURRENCY, OPERATIONS, PAYLOAD_POSITIONS,
};

#[derive(Debug, Parser)]
#[command(
    name = "pool-bench",
    about = "s3pool benchmarks: the 108-case matrix and pool overhead"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the matrix (each case in a fresh child process) and write results and charts.
    Matrix(MatrixArgs),
    /// Measure one case in this process and print it as one JSON line (used by `matrix`).
    Case(CaseArgs),
    /// No-op and latency-bound workloads beside the bare idioms; writes results.json.
    Overhead(OverheadArgs),
    /// Memory of no-op tasks queued on a paused pool (or parked by a rate limiter), as one
    /// JSON line (used by `overhead`).
    QueuedBytes(QueuedArgs),
    /// Rewrite results.csv, results.md and the charts from a directory's results.json.
    Render(RenderArgs),
    /// Large and many objects up and down over the loopback S3 server, s3pool beside bare
    /// object_store, with and without injected failures; writes results.json and results.md.
    #[cfg(feature = "s3-loopback")]
    Transfer(TransferArgs),
    /// Run one transfer in this process and print it as one JSON line (used by `transfer`).
    #[cfg(feature = "s3-loopback")]
    TransferCase(TransferCaseArgs),
}

#[cfg(feature = "s3-loopback")]
#[derive(Debug, Args)]
struct TransferArgs {
    /// A 128 MiB object and 128 × 1 MiB objects, one round (about a minute once built).
    #[arg(long)]
    quick: bool,
    /// Size of the large object, MiB (default 1024; 128 with --quick).
    #[arg(long)]
    large_mib: Option<u64>,
    /// Objects of the many-objects workload (default 1000; 128 with --quick).
    #[arg(long)]
    objects: Option<usize>,
    /// Size of each of them, KiB (default 1024).
    #[arg(long)]
    object_kib: Option<u64>,
    /// Requests in flight at most, both engines (default 16).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Part and range size, MiB (default 8; at least 5).
    #[arg(long)]
    part_mib: Option<u64>,
    /// s3pool's max_bytes_in_flight, MiB (default 128).
    #[arg(long)]
    budget_mib: Option<u64>,
    /// Share of requests failed in the faults scenario (default 0.01).
    #[arg(long)]
    fault_rate: Option<f64>,
    /// Interleaved rounds (default 4; 2 with --quick). Use an even count: the engines take
    /// turns running first.
    #[arg(long)]
    rounds: Option<usize>,
    /// Workloads: large, many.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<pool_bench::Workload>,
    /// Directions: upload, download.
    #[arg(long, value_delimiter = ',')]
    directions: Vec<pool_bench::Direction>,
    /// Scenarios: clean, faults.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<pool_bench::Scenario>,
    /// Engines: s3pool, object-store.
    #[arg(long, value_delimiter = ',')]
    engines: Vec<pool_bench::TransferEngine>,
    /// Store the objects downloads read without a CRC64NVME (s3pool then checks the MD5 of
    /// their ETags instead).
    #[arg(long)]
    no_seed_checksum: bool,
    /// Write each run's trace (trace-<run>.csv in the output directory: a row every 10 ms
    /// of s3pool's pool counts, the bodies being read and the RSS; trace-<run>.threads.csv: each
    /// thread's CPU time and voluntary / involuntary context switches over the run).
    #[arg(long)]
    trace: bool,
    /// Output directory.
    #[arg(long, default_value = "target/bench-transfer")]
    out: PathBuf,
}

#[cfg(feature = "s3-loopback")]
#[derive(Debug, Args)]
struct TransferCaseArgs {
    /// The run, as JSON (a `TransferSpec`).
    #[arg(long)]
    spec: String,
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// The directory holding results.json (written by `matrix`).
    #[arg(default_value = "target/bench-matrix")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct MatrixArgs {
    /// A small subset (1,000 ops × 1,000 positions at C=10 and C=200, every engine; 1 warm-up
    /// and 3 timed runs unless --reps/--warmup say otherwise): seconds.
    #[arg(long)]
    quick: bool,
    /// Keep cases whose name contains any of these (e.g. `10000ops/1000pos/c200`,
    /// `shared-pool/`); names look like `shared-pool/10000ops/1000pos/c200`.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Engines to run: join-all, shared-pool, separate-pools.
    #[arg(long, value_delimiter = ',')]
    engines: Vec<Engine>,
    /// Operation counts (default 1000,5000,10000).
    #[arg(long, value_delimiter = ',')]
    operations: Vec<usize>,
    /// Payload sizes in positions of 8 bytes (default 1000,2000,5000).
    #[arg(long, value_delimiter = ',')]
    positions: Vec<usize>,
    /// Concurrency levels (default 10,50,100,200).
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Timed runs per case (default 5; 3 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Untimed warm-up runs per case (default 1).
    #[arg(long)]
    warmup: Option<usize>,
    /// memory (default), memory-latency=<n>ms (every store call delayed: requests pend as
    /// over a network), s3-loopback (s3-client's in-process S3 server), or a connection
    /// string such as s3://bucket or http://key:secret@127.0.0.1:9000/bucket.
    #[arg(long, default_value = "memory")]
    backend: Backend,
    /// Output directory.
    #[arg(long, default_value = "target/bench-matrix")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct CaseArgs {
    #[arg(long)]
    engine: Engine,
    #[arg(long)]
    operations: usize,
    #[arg(long)]
    positions: usize,
    #[arg(long)]
    concurrency: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(long, default_value_t = 5)]
    reps: usize,
    #[arg(long, default_value = "memory")]
    backend: Backend,
}

#[derive(Debug, Args)]
struct OverheadArgs {
    /// 100,000 no-op tasks and 3 rounds instead of 1,000,000 and 9.
    #[arg(long)]
    quick: bool,
    /// No-op tasks per run (and tasks queued for the memory figure).
    #[arg(long)]
    tasks: Option<usize>,
    /// Interleaved rounds whose medians are reported.
    #[arg(long)]
    rounds: Option<usize>,
    /// Rounds run first, exactly as the others, and thrown away (default 1).
    #[arg(long)]
    warmup_rounds: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "target/bench-overhead")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct QueuedArgs {
    #[arg(long, default_value_t = 1_000_000)]
    tasks: usize,
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Park the tasks behind a rate limiter of one task a second instead of queueing them
    /// on a paused pool.
    #[arg(long)]
    parked: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pool-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), BenchError> {
    match command {
        Command::Matrix(args) => matrix_command(args),
        Command::Case(args) => {
            let case = Case {
                engine: args.engine,
                operations: args.operations,
                payload_positions: args.positions,
                concurrency: args.concurrency,
            };
            let repetitions = Repetitions {
                warmup: args.warmup,
                timed: args.reps,
            };
            print_result(&measure_case(&case, &args.backend, repetitions)?)
        }
        Command::Overhead(args) => overhead_command(args),
        Command::Render(args) => {
            let path = args.dir.join("results.json");
            let json = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let report: MatrixReport = serde_json::from_str(&json)?;
            report.write_tables(&args.dir)?;
            write_charts(&report, &args.dir)?;
            print!("{}", report.summary());
            Ok(())
        }
        #[cfg(feature = "s3-loopback")]
        Command::Transfer(args) => transfer_command(args),
        #[cfg(feature = "s3-loopback")]
        Command::TransferCase(args) => {
            let spec: pool_bench::TransferSpec = serde_json::from_str(&args.spec)?;
            print_result(&pool_bench::measure_transfer(&spec)?)
        }
        Command::QueuedBytes(args) => {
            let waiting = if args.parked {
                Waiting::Parked
            } else {
                Waiting::Queued
            };
            print_result(&measure_waiting_bytes(
                args.tasks,
                args.concurrency,
                waiting,
            )?)
        }
    }
}

fn or_default<T: Copy>(chosen: Vec<T>, default: &[T]) -> Vec<T> {
    if chosen.is_empty() {
        default.to_vec()
    } else {
        chosen
    }
}

fn matrix_command(args: MatrixArgs) -> Result<(), BenchError> {
    let dimensions_given = !(args.engines.is_empty()
        && args.operations.is_empty()
        && args.positions.is_empty()
        && args.concurrency.is_empty());
    let base = if args.quick && !dimensions_given {
        quick_matrix()
    } else if dimensions_given {
        matrix(
            &or_default(args.engines, &Engine::ALL),
            &or_default(args.operations, &OPERATIONS),
            &or_default(args.positions, &PAYLOAD_POSITIONS),
            &or_default(args.concurrency, &CONCURRENCY),
        )
    } else {
        full_matrix()
    };
    let cases = filter_cases(base, &args.cases);
    for case in &cases {
        case.validate()?;
    }
    let repetitions = Repetitions {
        warmup: args.warmup.unwrap_or(1),
        timed: args.reps.unwrap_or(if args.quick { 3 } else { 5 }),
    };
    if repetitions.timed == 0 {
        return Err(BenchError::ZeroSize { field: "reps" });
    }
    let case_binary = this_binary()?;
    eprintln!(
        "pool-bench: {} cases, backend {}, {} warm-up + {} timed runs each, one process per case",
        cases.len(),
        args.backend,
        repetitions.warmup,
        repetitions.timed
    );
    let report = run_matrix(&MatrixOptions {
        cases,
        backend: args.backend,
        repetitions,
        out_dir: args.out.clone(),
        case_binary,
    })?;
    print!("{}", report.summary());
    println!(
        "Wrote {0}/results.json, results.csv, results.md, throughput.svg, peak_memory.svg",
        args.out.display()
    );
    match report.failed_cases.len() {
        0 => Ok(()),
        failed => Err(BenchError::Child {
            case: format!("{failed} of {} cases", failed + report.cases.len()),
            reason: "failed (see above and results.md)".to_owned(),
        }),
    }
}

fn overhead_command(args: OverheadArgs) -> Result<(), BenchError> {
    let mut options = if args.quick {
        OverheadOptions::quick()
    } else {
        OverheadOptions::default()
    };
    if let Some(tasks) = args.tasks {
        options.noop_tasks = tasks;
        options.queued_tasks = tasks;
    }
    if let Some(rounds) = args.rounds {
        options.rounds = rounds;
    }
    if let Some(warmup_rounds) = args.warmup_rounds {
        options.warmup_rounds = warmup_rounds;
    }
    let binary = this_binary()?;
    eprintln!(
        "pool-bench: overhead, {} no-op tasks and {} × {} ms latency-bound tasks at C={}, {} rounds after {} warm-up",
        options.noop_tasks,
        options.latency_tasks,
        options.latency_ms,
        options.concurrency,
        options.rounds,
        options.warmup_rounds
    );
    // First, in fresh processes: memory freed by the runs below would hide the cost.
    let queued = waiting_bytes_in_child(
        &binary,
        options.queued_tasks,
        options.concurrency,
        Waiting::Queued,
    )?;
    let parked = waiting_bytes_in_child(
        &binary,
        options.queued_tasks,
        options.concurrency,
        Waiting::Parked,
    )?;
    let report = run_overhead(&options, queued, Some(parked))?;
    let path = report.write(&args.out)?;
    print!("{}", report.summary());
    println!("Wrote {}", path.display());
    Ok(())
}

#[cfg(feature = "s3-loopback")]
fn transfer_command(args: TransferArgs) -> Result<(), BenchError> {
    const MIB: u64 = 1024 * 1024;
    let mut options = if args.quick {
        pool_bench::TransferOptions::quick()
    } else {
        pool_bench::TransferOptions::default()
    };
    let set = |slot: &mut u64, value: Option<u64>, unit: u64| {
        if let Some(value) = value {
            *slot = value.saturating_mul(unit);
        }
    };
    set(&mut options.large_bytes, args.large_mib, MIB);
    set(&mut options.object_bytes, args.object_kib, 1024);
    set(&mut options.part_bytes, args.part_mib, MIB);
    set(&mut options.budget_bytes, args.budget_mib, MIB);
    options.objects = args.objects.unwrap_or(options.objects);
    options.concurrency = args.concurrency.unwrap_or(options.concurrency);
    options.fault_rate = args.fault_rate.unwrap_or(options.fault_rate);
    options.rounds = args.rounds.unwrap_or(options.rounds);
    if !args.workloads.is_empty() {
        options.workloads = args.workloads;
    }
    if !args.directions.is_empty() {
        options.directions = args.directions;
    }
    if !args.scenarios.is_empty() {
        options.scenarios = args.scenarios;
    }
    if !args.engines.is_empty() {
        options.engines = args.engines;
    }
    options.seed_checksum = !args.no_seed_checksum;
    options.trace = args.trace;
    let report = pool_bench::run_transfer(&options, &this_binary()?, &args.out)?;
    print!("{}", report.markdown());
    println!("Wrote {0}/results.json, {0}/results.md", args.out.display());
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Child {
            case: format!("{} transfer runs", report.failures.len()),
            reason: "failed (see above and results.md)".to_owned(),
        })
    }
}

/// This binary: child processes run it again with another subcommand.
fn this_binary() -> Result<PathBuf, BenchError> {
    std::env::current_exe().map_err(|source| BenchError::Io {
        path: "current executable".to_owned(),
        source,
    })
}
