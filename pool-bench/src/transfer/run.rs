//! [`run_transfer`]: the orchestrator of `bench-transfer` — the server, the seeded objects,
//! every run in a child process, round by round, and the checks of what arrived.

use std::path::{Path as FsPath, PathBuf};
use std::time::Instant;

use std::future::IntoFuture;

use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{S3Client, S3ClientBuilder, StoreConfig};
use serde::{Deserialize, Serialize};

use super::content::{content, content_key, file_matches, write_file};
use super::many_path;
use super::report::{ServerDelta, TransferReport, TransferRun};
use super::{Direction, Scenario, TransferEngine, TransferMeasurement, TransferSpec, Workload};
use crate::child::run_child;
use crate::cpu::process_cpu_time;
use crate::error::BenchError;
use crate::machine::{MachineInfo, Versions};
use crate::measure::worker_threads;

const MIB: u64 = 1024 * 1024;

/// Sizes and choices of a `bench-transfer` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferOptions {
    /// Bytes of the large object. Default 1 GiB.
    pub large_bytes: u64,
    /// Objects of the many-objects workload. Default 1,000.
    pub objects: usize,
    /// Bytes of each of those. Default 1 MiB.
    pub object_bytes: u64,
    /// Requests in flight at most, both engines. Default 16.
    pub concurrency: usize,
    /// Part and range size, both engines. Default 8 MiB.
    pub part_bytes: u64,
    /// s3pool's `max_bytes_in_flight`. Default 128 MiB.
    pub budget_bytes: u64,
    /// Share of requests the server fails in the faults scenario. Default 0.01.
    pub fault_rate: f64,
    /// s3pool's first retry delay (object_store's default backoff starts at 100 ms too).
    pub retry_delay_ms: u64,
    /// Interleaved rounds (every run once per round; the engines' order alternates round by
    /// round, so an even count has each engine run first equally often — the run after
    /// another setting's, or after seeding, is measurably slower on a loaded machine).
    /// Default 4.
    pub rounds: usize,
    /// Seed of the content and of the faults.
    pub seed: u64,
    /// Store the objects downloads read with a CRC64NVME, as AWS S3 does for every upload
    /// (s3pool then checks whole reads against it rather than against the ETag's MD5; the
    /// server keeps no checksum for multipart uploads, so the large object has none).
    /// Default true.
    pub seed_checksum: bool,
    /// Workloads to run.
    pub workloads: Vec<Workload>,
    /// Directions to run.
    pub directions: Vec<Direction>,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Engines to run.
    pub engines: Vec<TransferEngine>,
    /// Write each run's trace (`trace-<run>.csv` in the output directory: a row every
    /// 10 ms of s3pool's pool counts, the bodies being read and the RSS; and
    /// `trace-<run>.threads.csv`: each thread's CPU time and context switches over the run).
    /// Default false.
    #[serde(default)]
    pub trace: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            large_bytes: 1024 * MIB,
            objects: 1_000,
            object_bytes: MIB,
            concurrency: 16,
            part_bytes: 8 * MIB,
            budget_bytes: 128 * MIB,
            fault_rate: 0.01,
            retry_delay_ms: 100,
            rounds: 4,
            seed: 18,
            seed_checksum: true,
            workloads: vec![Workload::Large, Workload::Many],
            directions: vec![Direction::Upload, Direction::Download],
            scenarios: vec![Scenario::Clean, Scenario::Faults],
            engines: TransferEngine::ALL.to_vec(),
            trace: false,
        }
    }
}

impl TransferOptions {
    /// A run of a minute or two: a 128 MiB object, 128 objects, two rounds (each engine
    /// first once).
    pub fn quick() -> Self {
        TransferOptions {
            large_bytes: 128 * MIB,
            objects: 128,
            rounds: 2,
            ..Self::default()
        }
    }

    /// Every setting in range, or the first that is not as a typed error.
    pub fn validate(&self) -> Result<(), BenchError> {
        let positive = [
            ("large_bytes", self.large_bytes),
            ("objects", self.objects as u64),
            ("object_bytes", self.object_bytes),
            ("concurrency", self.concurrency as u64),
            ("budget_bytes", self.budget_bytes),
            ("rounds", self.rounds as u64),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(BenchError::ZeroSize { field });
        }
        if self.part_bytes < 5 * MIB {
            return Err(BenchError::Setup(format!(
                "part size must be at least 5 MiB (S3's minimum part), got {}",
                self.part_bytes
            )));
        }
        if !(0.0..=1.0).contains(&self.fault_rate) {
            return Err(BenchError::Setup(format!(
                "fault rate must be within 0..=1, got {}",
                self.fault_rate
            )));
        }
        if self.workloads.is_empty()
            || self.directions.is_empty()
            || self.scenarios.is_empty()
            || self.engines.is_empty()
        {
            return Err(BenchError::NoCases);
        }
        Ok(())
    }

    /// The bytes of one run of `workload`.
    fn sizes(&self, workload: Workload) -> (usize, u64) {
        match workload {
            Workload::Large => (1, self.large_bytes),
            Workload::Many => (self.objects, self.object_bytes),
        }
    }
}

/// Runs every (workload, direction, scenario, engine) `rounds` times, each in a child
/// process (`binary transfer-case --spec …`), engines alternating in order round by round;
/// checks what every upload stored; writes `results.json` and `results.md` into `out_dir`.
/// Temporary files (the large source, downloaded copies) live in a directory under
/// `out_dir` removed at the end. A run that fails is reported and the others go on.
pub fn run_transfer(
    options: &TransferOptions,
    binary: &FsPath,
    out_dir: &FsPath,
) -> Result<TransferReport, BenchError> {
    options.validate()?;
    let started = Instant::now();
    let machine = MachineInfo::detect();
    std::fs::create_dir_all(out_dir).map_err(|e| BenchError::io(out_dir, e))?;
    let scratch = tempfile::Builder::new()
        .prefix("transfer-data-")
        .tempdir_in(out_dir)
        .map_err(|e| BenchError::io(out_dir, e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
        .map_err(|error| BenchError::Setup(format!("tokio runtime: {error}")))?;
    let server = runtime
        .block_on(S3TestServer::start())
        .map_err(|error| BenchError::Backend(format!("S3 test server: {error}")))?;
    let world = World {
        options,
        out_dir: out_dir.to_owned(),
        server: &server,
        runtime: &runtime,
        client: runtime.block_on(async { helper_client(&server, options.seed_checksum) })?,
        source: scratch.path().join("large.bin"),
        scratch: scratch.path().to_owned(),
    };
    world.seed()?;

    let mut runs = Vec::new();
    let mut failures = Vec::new();
    let combos: Vec<_> = options
        .workloads
        .iter()
        .flat_map(|w| options.directions.iter().map(move |d| (*w, *d)))
        .flat_map(|(w, d)| options.scenarios.iter().map(move |s| (w, d, *s)))
        .collect();
    let total = options.rounds * combos.len() * options.engines.len();
    for round in 0..options.rounds {
        for (number, &(workload, direction, scenario)) in combos.iter().enumerate() {
            let mut engines = options.engines.clone();
            if round % 2 == 1 {
                engines.reverse();
            }
            for engine in engines {
                let label = format!("round {round}: {workload} {direction} {scenario} {engine}");
                eprintln!("[{}/{total}] {label}", runs.len() + failures.len() + 1);
                let fault_seed = options.seed ^ ((round * 1_000 + number) as u64);
                match world.run_one(
                    round, workload, direction, scenario, engine, binary, fault_seed,
                ) {
                    Ok(run) => {
                        eprintln!("    {}", run.one_line());
                        runs.push(run);
                    }
                    Err(error) => {
                        eprintln!("    FAILED: {error}");
                        failures.push(format!("{label}: {error}"));
                    }
                }
            }
        }
    }
    drop(world);
    drop(server);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    scratch.close().map_err(|e| BenchError::io(out_dir, e))?;

    let report = TransferReport::new(
        machine,
        Versions::detect(),
        options.clone(),
        worker_threads(),
        started.elapsed().as_secs_f64(),
        runs,
        failures,
    );
    report.write(out_dir)?;
    Ok(report)
}

/// Writes what earlier steps left in the page cache (the large source file, the seeded
/// objects) to disk before a run starts, so that no run pays for another's writeback: the
/// run right after a 512 MiB source file was written took 4.0–9.9 s, the same upload later
/// in the same invocation 2.9–3.8 s.
fn settle_disk() {
    #[cfg(target_os = "linux")]
    nix::unistd::sync();
}

/// Makes the file at `path` `len` bytes of zeros, written over in place if it exists: a
/// large download then writes over pages already in memory, the same for every run and
/// either engine. Writing a new file instead made the download's cost depend on what ran
/// before it: on the virtual machines this runs on, free memory is handed back to the host
/// (free page reporting), and the first write to a page the host took back waits for it to
/// be backed again — a new 1 GiB file took 0.4 to 13 s of system time from one write to
/// the next, and the first large download of a round 2–3 times the second's. Zeros, not the
/// object's content, so a range the download failed to write is a mismatch.
fn zero_file(path: &FsPath, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let zeros = vec![0u8; 8 << 20];
    let mut offset = 0;
    while offset < len {
        let take = (len - offset).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..take], offset)?;
        offset += take as u64;
    }
    file.set_len(len)
}

/// A client of the orchestrator's own, to seed objects and clean up.
fn helper_client(server: &S3TestServer, checksum: bool) -> Result<S3Client, BenchError> {
    let checksum = checksum.then_some(object_store::aws::Checksum::CRC64NVME);
    let config = StoreConfig::s3(server.s3_config().with_upload_checksum(checksum));
    S3ClientBuilder::from_config(&config)
        .map_err(|e| BenchError::Backend(e.to_string()))?
        .concurrency(16)
        .part_size(8 * MIB as usize)
        .build()
        .map_err(|e| BenchError::Backend(e.to_string()))
}

/// Keys of the seeded objects that downloads read.
const LARGE_KEY: &str = "bench/large";
const MANY_PREFIX: &str = "bench/many";

struct World<'a> {
    options: &'a TransferOptions,
    /// Where results (and traces) go.
    out_dir: PathBuf,
    server: &'a S3TestServer,
    runtime: &'a tokio::runtime::Runtime,
    client: S3Client,
    /// The large object's content as a file (the upload source, the download's original).
    source: PathBuf,
    scratch: PathBuf,
}

impl World<'_> {
    /// Writes the large source file and stores the objects downloads read.
    fn seed(&self) -> Result<(), BenchError> {
        let options = self.options;
        let large_key = content_key(options.seed, 0);
        let needs_large = options.workloads.contains(&Workload::Large);
        let needs_download = options.directions.contains(&Direction::Download);
        if needs_large {
            eprintln!(
                "bench-transfer: writing the {} MiB source file",
                options.large_bytes / MIB
            );
            write_file(&self.source, large_key, options.large_bytes)
                .map_err(|e| BenchError::io(&self.source, e))?;
        }
        if !needs_download {
            return Ok(());
        }
        eprintln!("bench-transfer: storing the objects downloads read");
        self.runtime.block_on(async {
            if needs_large {
                self.client
                    .upload_from_file(&Path::from(LARGE_KEY), &self.source)
                    .await
                    .map_err(|e| BenchError::Backend(e.to_string()))?;
            }
            if options.workloads.contains(&Workload::Many) {
                stream::iter(0..options.objects)
                    .map(|index| {
                        let bytes = content(
                            content_key(options.seed, index as u64),
                            options.object_bytes as usize,
                        );
                        self.client
                            .put(&many_path(MANY_PREFIX, index), bytes)
                            .into_future()
                    })
                    .buffer_unordered(options.concurrency)
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| BenchError::Backend(e.to_string()))?;
            }
            Ok(())
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_one(
        &self,
        round: usize,
        workload: Workload,
        direction: Direction,
        scenario: Scenario,
        engine: TransferEngine,
        binary: &FsPath,
        fault_seed: u64,
    ) -> Result<TransferRun, BenchError> {
        let options = self.options;
        let (objects, object_bytes) = options.sizes(workload);
        let key = match (workload, direction) {
            (Workload::Large, Direction::Download) => LARGE_KEY.to_owned(),
            (Workload::Many, Direction::Download) => MANY_PREFIX.to_owned(),
            (_, Direction::Upload) => format!("bench/up-{workload}-{scenario}-{engine}-{round}"),
        };
        let spec = TransferSpec {
            engine,
            workload,
            direction,
            connection: self.server.connection_string(),
            key,
            seed: options.seed,
            objects,
            object_bytes,
            concurrency: options.concurrency,
            part_bytes: options.part_bytes,
            budget_bytes: options.budget_bytes,
            retry_delay_ms: options.retry_delay_ms,
            source: (workload == Workload::Large).then(|| self.source.clone()),
            target: (workload == Workload::Large && direction == Direction::Download)
                .then(|| self.scratch.join("download.bin")),
            trace: options.trace.then(|| {
                self.out_dir.join(format!(
                    "trace-{round}-{workload}-{direction}-{scenario}-{engine}.csv"
                ))
            }),
        };
        if let Some(target) = &spec.target {
            zero_file(target, spec.object_bytes).map_err(|e| BenchError::io(target, e))?;
        }
        settle_disk();
        let faults = self.server.faults();
        let before = ServerCounters::read(self.server);
        if scenario == Scenario::Faults {
            faults.set_probability(
                options.fault_rate,
                InjectedResponse::InternalError,
                fault_seed,
            );
        }
        let args = vec![
            "transfer-case".to_owned(),
            "--spec".to_owned(),
            serde_json::to_string(&spec)?,
        ];
        let measured: Result<TransferMeasurement, _> =
            run_child(binary, &format!("{workload} {direction} {engine}"), &args);
        faults.clear();
        let server = ServerCounters::read(self.server).since(&before);
        let measurement = measured?;
        let stored_mismatches = match direction {
            Direction::Upload => self.check_and_remove_upload(&spec)?,
            Direction::Download => 0,
        };
        Ok(TransferRun {
            round,
            workload,
            direction,
            scenario,
            engine,
            bytes: spec.bytes(),
            piece_bytes: match workload {
                Workload::Large => options.part_bytes,
                Workload::Many => options.object_bytes,
            },
            mismatches: measurement.mismatches + stored_mismatches,
            leftover_uploads: self.server.pending_uploads() + self.server.stored_parts(),
            measurement,
            server,
        })
    }

    /// Compares what an upload stored (the server's files) with what was sent; removes the
    /// objects. Returns the objects that differ.
    fn check_and_remove_upload(&self, spec: &TransferSpec) -> Result<usize, BenchError> {
        let bucket_dir = self.server.root().join(self.server.bucket());
        let paths: Vec<(Path, u64)> = match spec.workload {
            Workload::Large => vec![(Path::from(spec.key.as_str()), content_key(spec.seed, 0))],
            Workload::Many => (0..spec.objects)
                .map(|index| {
                    (
                        many_path(&spec.key, index),
                        content_key(spec.seed, index as u64),
                    )
                })
                .collect(),
        };
        let mut mismatches = 0;
        for (path, key) in &paths {
            let file = bucket_dir.join(path.as_ref());
            let same = file_matches(&file, *key, spec.object_bytes).unwrap_or(false);
            mismatches += usize::from(!same);
        }
        self.runtime
            .block_on(
                self.client
                    .delete_many(paths.into_iter().map(|(path, _)| path))
                    .into_future(),
            )
            .map_err(|e| BenchError::Backend(e.to_string()))?;
        Ok(mismatches)
    }
}

/// The server's counters, and the orchestrator's CPU time (the server runs in it).
struct ServerCounters {
    requests: u64,
    injected: u64,
    bytes_received: u64,
    bytes_sent: u64,
    cpu: Option<std::time::Duration>,
}

impl ServerCounters {
    fn read(server: &S3TestServer) -> Self {
        let faults = server.faults();
        ServerCounters {
            requests: faults.requests(),
            injected: faults.injected(),
            bytes_received: faults.bytes_received(),
            bytes_sent: faults.bytes_sent(),
            cpu: process_cpu_time(),
        }
    }

    fn since(&self, before: &ServerCounters) -> ServerDelta {
        ServerDelta {
            requests: self.requests - before.requests,
            injected: self.injected - before.injected,
            bytes_received: self.bytes_received - before.bytes_received,
            bytes_sent: self.bytes_sent - before.bytes_sent,
            cpu_ms: self
                .cpu
                .zip(before.cpu)
                .map(|(after, before)| after.saturating_sub(before).as_secs_f64() * 1e3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_zeroed_in_place_to_the_objects_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.bin");
        zero_file(&path, 10_000).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![0; 10_000], "created");
        // What a download left: the object's bytes, and a longer file than the next run's.
        std::fs::write(&path, vec![7u8; 30_000]).unwrap();
        zero_file(&path, 20_000).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            vec![0; 20_000],
            "written over, cut"
        );
    }
}
