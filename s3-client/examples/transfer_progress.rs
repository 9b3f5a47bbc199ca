//! Byte-level progress of a large upload and download, drawn with indicatif, against the
//! in-process S3 test server.
//!
//! ```sh
//! cargo run --release -p s3-client --features testing --example transfer_progress
//! cargo run --release -p s3-client --features testing --example transfer_progress -- 512 0.02
//! ```
//!
//! Arguments: the object's size in MiB (default 256) and the share of requests the server
//! fails (default 0.01): failed parts and ranges are sent again, alone, and the bars count
//! the bytes re-sent.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use object_store::path::Path;
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{S3ClientBuilder, TransferProgress};
use tokio::io::AsyncReadExt;

const MIB: u64 = 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let size = args.next().map_or(Ok(256), |mib| mib.parse::<u64>())? * MIB;
    let fault_rate: f64 = args.next().map_or(Ok(0.01), |rate| rate.parse())?;

    let server = S3TestServer::start().await?;
    server
        .faults()
        .set_probability(fault_rate, InjectedResponse::InternalError, 7);
    let client = S3ClientBuilder::from_url(&server.connection_string())?
        .concurrency(8)
        .retry_delay(Duration::from_millis(50))
        .max_bytes_in_flight(64 * MIB)
        .build()?;
    let path = Path::from("example/large.bin");

    // An upload from a reader of unknown length: the bar learns the total from us.
    let bar = bar("upload", size);
    let source = tokio::io::repeat(0x5a).take(size);
    let uploaded = client
        .upload_from(&path, source)
        .on_progress(follow(&bar))
        .await?;
    bar.finish();

    let bar = bar_without_total("download");
    let target = tempfile::NamedTempFile::new()?;
    let downloaded = client
        .download_to_file(&path, target.path())
        .on_progress(follow(&bar))
        .await?;
    bar.finish();

    for (what, summary) in [("upload", &uploaded), ("download", &downloaded)] {
        println!(
            "{what}: {} MiB in {} pieces, {} retried ({:.1} MiB re-sent)",
            summary.bytes / MIB,
            summary.pieces,
            summary.retries,
            summary.resent as f64 / MIB as f64
        );
    }
    println!(
        "server: {} requests, {} failed on purpose",
        server.faults().requests(),
        server.faults().injected()
    );
    Ok(())
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>8} [{bar:40}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

fn bar(name: &'static str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total).with_style(style());
    bar.set_prefix(name);
    bar
}

fn bar_without_total(name: &'static str) -> ProgressBar {
    bar(name, 0)
}

/// A progress callback that moves `bar` (and sets its length once the transfer knows it).
fn follow(bar: &ProgressBar) -> impl Fn(TransferProgress) + Send + Sync + 'static {
    let bar = bar.clone();
    move |progress| {
        if let Some(total) = progress.total {
            bar.set_length(total);
        }
        bar.set_position(progress.transferred);
        if progress.resent > 0 {
            bar.set_message(format!(
                "{:.1} MiB re-sent",
                progress.resent as f64 / MIB as f64
            ));
        }
    }
}
