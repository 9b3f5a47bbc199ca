//! The two ways a transfer is done: s3pool's (`S3Client` transfers under a pool and a bytes
//! budget) and bare object_store's idioms (`WriteMultipart` with its own concurrency,
//! `buffer_unordered` of ranged GETs and of PUTs / GETs).

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::future::IntoFuture;

use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use s3_client::{Backend, S3Client, S3ClientBuilder, StoreConfig};
use tokio::io::AsyncReadExt;

use super::content::{content, content_key, ContentReader};
use super::{Direction, TransferEngine, TransferSpec, Workload};
use crate::error::BenchError;

/// object_store's own default: what a user of the bare idioms gets.
const OBJECT_STORE_RETRIES: usize = 10;

/// What a run reports beyond time and memory.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Objects whose bytes (downloads, checked as they arrive) did not match.
    pub(crate) mismatches: usize,
    /// Pool retries (s3pool only).
    pub(crate) retries: Option<u64>,
    /// Bytes moved again by retries, as s3pool's transfer summaries count them.
    pub(crate) resent_bytes: Option<u64>,
    /// Most bodies open at once (many downloads).
    pub(crate) max_open_bodies: Option<usize>,
}

/// What a run needs, made before the clock starts.
pub(crate) struct Prepared {
    with: With,
    /// CRC-32 of each object a many-objects download should receive.
    expected_crcs: Vec<u32>,
    /// Bodies being read now (many downloads).
    open: OpenBodies,
}

/// A trace being taken: a row every 10 ms until [`finish`](Tracing::finish).
pub(crate) struct Tracing {
    stop: tokio::sync::oneshot::Sender<()>,
    rows: tokio::task::JoinHandle<String>,
}

impl Tracing {
    /// Stops sampling; the rows as CSV.
    pub(crate) async fn finish(self) -> String {
        let _ = self.stop.send(());
        self.rows.await.unwrap_or_default()
    }
}

/// Samples, every 10 ms, s3pool's pool (tasks queued, running, waiting out a retry
/// backoff; retries and tasks done so far), the bodies being read and the process's
/// resident memory: where a run's time goes when its CPU time is far below its wall time,
/// and when its memory peaks.
pub(crate) fn trace(prepared: &Prepared) -> Tracing {
    let client = match &prepared.with {
        With::S3pool(client) => Some(client.clone()),
        With::ObjectStore(_) => None,
    };
    let open = prepared.open.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let rows = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut rows = String::from("ms,queued,active,retrying,retries,done,open_bodies,rss_mb\n");
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let stats = client.as_ref().and_then(S3Client::stats);
            let field = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
            rows.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                started.elapsed().as_millis(),
                field(stats.map(|s| s.queued as u64)),
                field(stats.map(|s| s.active as u64)),
                field(stats.map(|s| s.retrying as u64)),
                field(stats.map(|s| s.retries)),
                field(stats.map(|s| s.succeeded + s.failed)),
                open.now(),
                resident_mb().map(|mb| mb.to_string()).unwrap_or_default(),
            ));
        }
        rows
    });
    Tracing { stop, rows }
}

/// This process's resident memory now, MB (Linux `/proc/self/statm`).
fn resident_mb() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096 / 1_000_000)
}

/// The client or store a run goes through.
enum With {
    S3pool(S3Client),
    ObjectStore(Arc<dyn ObjectStore>),
}

pub(crate) fn prepare(spec: &TransferSpec) -> Result<Prepared, BenchError> {
    let expected_crcs = match (spec.workload, spec.direction) {
        (Workload::Many, Direction::Download) => (0..spec.objects)
            .map(|index| {
                crc32fast::hash(&content(
                    object_key(spec, index),
                    spec.object_bytes as usize,
                ))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Prepared {
        with: connect(spec)?,
        expected_crcs,
        open: OpenBodies::default(),
    })
}

fn connect(spec: &TransferSpec) -> Result<With, BenchError> {
    let backend = |error: &dyn std::fmt::Display| BenchError::Backend(error.to_string());
    match spec.engine {
        TransferEngine::S3pool => {
            let client = S3ClientBuilder::from_url(&spec.connection)
                .map_err(|e| backend(&e))?
                .concurrency(spec.concurrency)
                .part_size(spec.part_bytes as usize)
                .multipart_threshold(spec.part_bytes as usize)
                .max_bytes_in_flight(spec.budget_bytes)
                .retry_delay(Duration::from_millis(spec.retry_delay_ms))
                // A bulk job: 1,000 reads queued at C = 16 is the plan, not overload. With
                // the pressure rule on, a pool that saturated (queued + active ≥ 10 × C)
                // gives up retries, and 1 % of failing reads fail the run.
                .configure_pool(|pool| pool.no_pressure_rule())
                .build()
                .map_err(|e| backend(&e))?;
            Ok(With::S3pool(client))
        }
        TransferEngine::ObjectStore => {
            let mut config = StoreConfig::parse(&spec.connection).map_err(|e| backend(&e))?;
            if let Backend::S3(s3) = &mut config.backend {
                *s3 = s3.clone().with_store_retries(OBJECT_STORE_RETRIES);
            }
            Ok(With::ObjectStore(config.build().map_err(|e| backend(&e))?))
        }
    }
}

pub(crate) async fn run(spec: &TransferSpec, prepared: &Prepared) -> Result<Outcome, BenchError> {
    let expected = &prepared.expected_crcs;
    match (&prepared.with, spec.workload, spec.direction) {
        (With::S3pool(client), Workload::Large, Direction::Upload) => {
            let source = spec
                .source
                .as_ref()
                .ok_or(BenchError::Setup("no source".into()))?;
            let summary = client
                .upload_from_file(&Path::from(spec.key.as_str()), source)
                .await
                .map_err(failed)?;
            Ok(pooled_outcome(client, Some(summary.resent)))
        }
        (With::S3pool(client), Workload::Large, Direction::Download) => {
            let target = spec
                .target
                .as_ref()
                .ok_or(BenchError::Setup("no target".into()))?;
            let file = open_target(target)?;
            let summary = client
                .download_to_open_file(&Path::from(spec.key.as_str()), file)
                .await
                .map_err(failed)?;
            Ok(pooled_outcome(client, Some(summary.resent)))
        }
        (With::S3pool(client), Workload::Many, Direction::Upload) => {
            let mut uploads: FuturesUnordered<_> = (0..spec.objects)
                .map(|index| {
                    let reader = ContentReader::new(object_key(spec, index), spec.object_bytes);
                    client
                        .upload_from(&object_path(spec, index), reader)
                        .into_future()
                })
                .collect();
            let mut resent = 0;
            while let Some(summary) = uploads.next().await {
                resent += summary.map_err(failed)?.resent;
            }
            Ok(pooled_outcome(client, Some(resent)))
        }
        (With::S3pool(client), Workload::Many, Direction::Download) => {
            let open = &prepared.open;
            let reads: FuturesUnordered<_> = (0..spec.objects)
                .map(|index| {
                    let (client, open) = (client.clone(), open.clone());
                    async move {
                        let body = client
                            .get_stream(&object_path(spec, index))
                            .await
                            .map_err(failed)?;
                        let _open = open.enter();
                        let mut crc = crc32fast::Hasher::new();
                        let mut body = body;
                        while let Some(chunk) = body.next().await {
                            crc.update(&chunk.map_err(failed)?);
                        }
                        Ok::<_, BenchError>(crc.finalize() != expected[index])
                    }
                })
                .collect();
            let checked: Vec<bool> = reads.try_collect().await?;
            let mut outcome = pooled_outcome(client, None);
            outcome.mismatches = checked.into_iter().filter(|bad| *bad).count();
            outcome.max_open_bodies = Some(open.max());
            Ok(outcome)
        }
        (With::ObjectStore(store), Workload::Large, Direction::Upload) => {
            bare_upload_file(spec, store).await
        }
        (With::ObjectStore(store), Workload::Large, Direction::Download) => {
            bare_download_file(spec, store).await
        }
        (With::ObjectStore(store), Workload::Many, Direction::Upload) => {
            stream::iter(0..spec.objects)
                .map(|index| async move {
                    let bytes = content(object_key(spec, index), spec.object_bytes as usize);
                    store
                        .put(&object_path(spec, index), Bytes::from(bytes).into())
                        .await
                        .map_err(failed)
                })
                .buffer_unordered(spec.concurrency)
                .try_collect::<Vec<_>>()
                .await?;
            Ok(Outcome::default())
        }
        (With::ObjectStore(store), Workload::Many, Direction::Download) => {
            let open = &prepared.open;
            let checked = stream::iter(0..spec.objects)
                .map(|index| {
                    let open = open.clone();
                    async move {
                        let result = store.get(&object_path(spec, index)).await.map_err(failed)?;
                        let _open = open.enter();
                        let bytes = result.bytes().await.map_err(failed)?;
                        Ok::<_, BenchError>(crc32fast::hash(&bytes) != expected[index])
                    }
                })
                .buffer_unordered(spec.concurrency)
                .try_collect::<Vec<bool>>()
                .await?;
            Ok(Outcome {
                mismatches: checked.into_iter().filter(|bad| *bad).count(),
                max_open_bodies: Some(open.max()),
                ..Outcome::default()
            })
        }
    }
}

fn pooled_outcome(client: &S3Client, resent: Option<u64>) -> Outcome {
    Outcome {
        retries: client.stats().map(|stats| stats.retries),
        resent_bytes: resent,
        ..Outcome::default()
    }
}

fn failed(error: impl std::fmt::Display) -> BenchError {
    BenchError::OperationsFailed {
        failed: 1,
        operations: 1,
        first: error.to_string(),
    }
}

/// The path of object `index` of a many-objects run.
fn object_path(spec: &TransferSpec, index: usize) -> Path {
    super::many_path(&spec.key, index)
}

/// The content key of object `index` (the large object is index 0).
pub(crate) fn object_key(spec: &TransferSpec, index: usize) -> u64 {
    content_key(spec.seed, index as u64)
}

/// `WriteMultipart` over `put_multipart`, fed from the file a part at a time, with at most
/// `concurrency` parts in flight (object_store's own idiom).
async fn bare_upload_file(
    spec: &TransferSpec,
    store: &Arc<dyn ObjectStore>,
) -> Result<Outcome, BenchError> {
    let source = spec
        .source
        .as_ref()
        .ok_or(BenchError::Setup("no source".into()))?;
    let mut file = tokio::fs::File::open(source)
        .await
        .map_err(|e| BenchError::io(source, e))?;
    let upload = store
        .put_multipart(&Path::from(spec.key.as_str()))
        .await
        .map_err(failed)?;
    let part = spec.part_bytes as usize;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
    loop {
        let mut buffer = bytes::BytesMut::with_capacity(part);
        while buffer.len() < part {
            let read = (&mut file)
                .take((part - buffer.len()) as u64)
                .read_buf(&mut buffer)
                .await
                .map_err(|e| BenchError::io(source, e))?;
            if read == 0 {
                break;
            }
        }
        if buffer.is_empty() {
            break;
        }
        writer
            .wait_for_capacity(spec.concurrency)
            .await
            .map_err(failed)?;
        writer.put(buffer.freeze());
    }
    writer.finish().await.map_err(failed)?;
    Ok(Outcome::default())
}

/// `buffer_unordered` of ranged GETs, each written at its offset as it arrives.
async fn bare_download_file(
    spec: &TransferSpec,
    store: &Arc<dyn ObjectStore>,
) -> Result<Outcome, BenchError> {
    let target = spec
        .target
        .as_ref()
        .ok_or(BenchError::Setup("no target".into()))?;
    let path = Path::from(spec.key.as_str());
    let size = store.head(&path).await.map_err(failed)?.size;
    let file = Arc::new(open_target(target)?);
    let ranges = (0..size)
        .step_by(spec.part_bytes as usize)
        .map(|start| start..(start + spec.part_bytes).min(size));
    stream::iter(ranges)
        .map(|range| {
            let (store, path, file) = (Arc::clone(store), path.clone(), Arc::clone(&file));
            async move {
                let bytes = store
                    .get_range(&path, range.clone())
                    .await
                    .map_err(failed)?;
                tokio::task::spawn_blocking(move || file.write_all_at(&bytes, range.start))
                    .await
                    .map_err(|e| BenchError::Setup(e.to_string()))?
                    .map_err(|e| BenchError::io("download target", e))
            }
        })
        .buffer_unordered(spec.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    file.set_len(size).map_err(|e| BenchError::io(target, e))?;
    Ok(Outcome::default())
}

/// The large download's target, opened to be written over in place (not truncated): the
/// orchestrator made it the object's size and zeroed it before the run, so its pages are in
/// memory and a download allocates none. On this benchmark's virtual machines a new file's
/// pages are the dearest part of a download and the dearness swings from run to run (a
/// new 1 GiB file: 0.4 to 13 s of system time, with the host backing each page again):
/// the run that came first after other work paid for it, whichever engine it was.
fn open_target(target: &std::path::Path) -> Result<std::fs::File, BenchError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(|e| BenchError::io(target, e))
}

/// Counts bodies being read, and the most at once.
#[derive(Debug, Clone, Default)]
struct OpenBodies(Arc<(AtomicUsize, AtomicUsize)>);

struct OpenBody(Arc<(AtomicUsize, AtomicUsize)>);

impl OpenBodies {
    fn enter(&self) -> OpenBody {
        let now = self.0 .0.fetch_add(1, Ordering::SeqCst) + 1;
        self.0 .1.fetch_max(now, Ordering::SeqCst);
        OpenBody(Arc::clone(&self.0))
    }

    fn max(&self) -> usize {
        self.0 .1.load(Ordering::SeqCst)
    }

    fn now(&self) -> usize {
        self.0 .0.load(Ordering::SeqCst)
    }
}

impl Drop for OpenBody {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}
