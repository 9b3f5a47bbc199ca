//! Peak memory of `process_iterable` against collecting `futures::future::join_all`.
//!
//! ```text
//! cargo run --release -p task-manager --example peak_rss [-- --items N --concurrency C]
//! ```
//!
//! Each of N items (default 1,000,000) produces an 8 KB buffer (filled, so its pages are
//! really resident). `stream` runs them through `TaskManager::process_iterable` at
//! concurrency C (default 200) and drops each buffer once consumed; `join_all` builds every
//! future up front and collects every buffer. Each mode runs in a fresh child process of this
//! example, so each peak (`VmHWM` in `/proc/self/status`, Linux only) is its own. A
//! `baseline` child that only starts the runtime shows the fixed cost.
//!
//! `join_all` over N items needs about N × 8 KB: the parent refuses to start it when
//! `MemAvailable` is below twice that (say `--items` smaller, or `--force`).

use std::convert::Infallible;
use std::error::Error;
use std::process::Command;
use std::time::Instant;

use futures::StreamExt;
use task_manager::TaskManager;

const BUFFER_BYTES: usize = 8 * 1024;

struct Settings {
    items: u64,
    concurrency: usize,
    force: bool,
}

fn parse_settings(args: &[String]) -> Result<Settings, Box<dyn Error>> {
    let mut settings = Settings {
        items: 1_000_000,
        concurrency: 200,
        force: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--items" => settings.items = args.next().ok_or("--items needs a value")?.parse()?,
            "--concurrency" => {
                settings.concurrency = args.next().ok_or("--concurrency needs a value")?.parse()?
            }
            "--force" => settings.force = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(settings)
}

/// An item's output: 8 KB, every page written.
fn buffer_for(item: u64) -> Vec<u8> {
    vec![(item % 251) as u8 | 1; BUFFER_BYTES]
}

/// A `kB` line of `/proc/self/status` or `/proc/meminfo`.
fn read_kb(path: &str, field: &str) -> Result<u64, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let line = text
        .lines()
        .find(|line| line.starts_with(field))
        .ok_or_else(|| format!("{field} not in {path}"))?;
    let kb = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| format!("malformed {field} line"))?;
    Ok(kb.parse()?)
}

/// Runs one mode in this process and prints `peak_kb=<VmHWM> checksum=<bytes> secs=<time>`.
fn child(mode: &str, settings: &Settings) -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let started = Instant::now();
    let bytes: u64 = runtime.block_on(async {
        match mode {
            "baseline" => Ok::<_, Box<dyn Error>>(0),
            "stream" => {
                let manager = TaskManager::builder()
                    .concurrency(settings.concurrency)
                    .build()?;
                let mut results = manager.process_iterable(0..settings.items, |item| async move {
                    tokio::task::yield_now().await;
                    Ok::<_, Infallible>(buffer_for(item))
                });
                let mut bytes = 0u64;
                while let Some(item) = results.next().await {
                    bytes += item.result.map_or(0, |buffer| buffer.len() as u64);
                }
                Ok(bytes)
            }
            "join_all" => {
                let buffers =
                    futures::future::join_all((0..settings.items).map(|item| async move {
                        tokio::task::yield_now().await;
                        buffer_for(item)
                    }))
                    .await;
                Ok(buffers.iter().map(|buffer| buffer.len() as u64).sum())
            }
            other => Err(format!("unknown mode {other:?}").into()),
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    let peak_kb = read_kb("/proc/self/status", "VmHWM:")?;
    println!("peak_kb={peak_kb} checksum={bytes} secs={secs:.2}");
    Ok(())
}

/// Runs `mode` in a fresh process and returns its report line.
fn run_child(mode: &str, args: &[String]) -> Result<String, Box<dyn Error>> {
    let output = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(mode)
        .args(args)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "{mode} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

fn field(report: &str, name: &str) -> Option<f64> {
    report
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let mode = args.get(1).ok_or("--child needs a mode")?;
        return child(mode, &parse_settings(&args[2..])?);
    }
    let settings = parse_settings(&args)?;
    let join_all_kb = settings.items * BUFFER_BYTES as u64 / 1024;
    let available_kb = read_kb("/proc/meminfo", "MemAvailable:")?;
    println!(
        "{} items × 8 KB, concurrency {} (MemAvailable {} MB)",
        settings.items,
        settings.concurrency,
        available_kb / 1024
    );
    let mut modes = vec!["baseline", "stream"];
    if settings.force || available_kb > 2 * join_all_kb {
        modes.push("join_all");
    } else {
        println!(
            "join_all skipped: needs about {} MB, {} MB available (pass --force or fewer --items)",
            join_all_kb / 1024,
            available_kb / 1024
        );
    }
    println!(
        "{:<10} {:>12} {:>16} {:>8}",
        "mode", "peak RSS", "bytes produced", "secs"
    );
    for mode in modes {
        let report = run_child(mode, &args)?;
        let peak_mb = field(&report, "peak_kb").unwrap_or(f64::NAN) / 1024.0;
        let checksum = field(&report, "checksum").unwrap_or(f64::NAN);
        let secs = field(&report, "secs").unwrap_or(f64::NAN);
        println!("{mode:<10} {peak_mb:>9.1} MB {checksum:>16} {secs:>8.2}");
    }
    Ok(())
}
