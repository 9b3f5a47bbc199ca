//! Hedged reads against a slow tail, measured: GETs over the in-process S3 server, which holds
//! back each read's response — most by `--fast-ms`, a share (`--slow-share`) by `--slow-ms` —
//! through an `S3Client` without hedging and with s3pool's hedging, and through tower's
//! `hedge` layer over the bare store (its plain shape: a hedge after the same quantile of the
//! previous half second's whole-request latencies, no budget, no pool), in interleaved rounds on fresh clients; then a uniform slowdown (every read `--slowdown`
//! times slower than the clients learned), where the extra requests must stay within the
//! budget. Prints latency quantiles, reads per second, the extra requests, and the process's
//! CPU time per read beside wall time.
//!
//! `cargo xtask bench-hedge` runs it (release); `-- --help` lists the options.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use s3_client::testing::S3TestServer;
use s3_client::{HedgeConfig, S3Client};

#[derive(Debug, Clone)]
struct Options {
    reads: usize,
    callers: usize,
    concurrency: usize,
    fast: Duration,
    slow: Duration,
    slow_share: f64,
    slowdown: u32,
    rounds: usize,
    quantile: f64,
    floor: Duration,
    budget: f64,
    objects: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            reads: 2_000,
            callers: 16,
            concurrency: 64,
            fast: Duration::from_millis(10),
            slow: Duration::from_millis(300),
            slow_share: 0.05,
            slowdown: 10,
            rounds: 2,
            quantile: 0.9,
            floor: Duration::from_millis(40),
            budget: 0.05,
            objects: 50,
        }
    }
}

const HELP: &str = "hedge_bench [--reads N (2000)] [--callers N (16)] [--concurrency N (64)]
  [--fast-ms MS (10)] [--slow-ms MS (300)] [--slow-share F (0.05)] [--slowdown X (10)]
  [--rounds N (2)] [--quantile Q (0.9)] [--floor-ms MS (40)] [--budget F (0.05)]
  [--long (10000 reads, 3 rounds)]";

fn parse() -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |text: String| text.parse::<f64>().map_err(|e| e.to_string());
        match arg.as_str() {
            "--reads" => options.reads = number(value(&arg)?)? as usize,
            "--callers" => options.callers = number(value(&arg)?)? as usize,
            "--concurrency" => options.concurrency = number(value(&arg)?)? as usize,
            "--fast-ms" => options.fast = Duration::from_secs_f64(number(value(&arg)?)? / 1e3),
            "--slow-ms" => options.slow = Duration::from_secs_f64(number(value(&arg)?)? / 1e3),
            "--slow-share" => options.slow_share = number(value(&arg)?)?,
            "--slowdown" => options.slowdown = number(value(&arg)?)? as u32,
            "--rounds" => options.rounds = number(value(&arg)?)? as usize,
            "--quantile" => options.quantile = number(value(&arg)?)?,
            "--floor-ms" => options.floor = Duration::from_secs_f64(number(value(&arg)?)? / 1e3),
            "--budget" => options.budget = number(value(&arg)?)?,
            "--long" => {
                options.reads = 10_000;
                options.rounds = 3;
            }
            "--help" | "-h" => return Err(HELP.to_owned()),
            other => return Err(format!("unknown option {other}\n{HELP}")),
        }
    }
    if options.reads == 0 || options.callers == 0 || options.rounds == 0 {
        return Err("reads, callers and rounds must be at least 1".to_owned());
    }
    Ok(options)
}

fn main() -> std::process::ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hedge_bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One run's figures.
#[derive(Debug, Default, Clone)]
struct Run {
    latencies: Vec<Duration>,
    wall: Duration,
    cpu: Option<Duration>,
    requests: u64,
    /// Hedges sent and won, where the reader counts them.
    hedges: Option<(u64, u64)>,
}

impl Run {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[rank]
    }

    fn reads_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn extra(&self) -> f64 {
        let reads = self.latencies.len() as u64;
        self.requests.saturating_sub(reads) as f64 / reads as f64
    }

    fn merge(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.wall += other.wall;
        self.cpu = match (self.cpu, other.cpu) {
            (Some(mine), Some(theirs)) => Some(mine + theirs),
            (mine, theirs) => mine.or(theirs),
        };
        self.requests += other.requests;
        self.hedges = match (self.hedges, other.hedges) {
            (Some((sent, won)), Some((more_sent, more_won))) => {
                Some((sent + more_sent, won + more_won))
            }
            (mine, theirs) => mine.or(theirs),
        };
    }
}

async fn run(options: Options) -> Result<(), String> {
    let server = S3TestServer::start().await.map_err(|e| e.to_string())?;
    let seeding = client(&server, &options, None)?;
    let objects: Vec<(Path, Bytes)> = (0..options.objects)
        .map(|i| {
            let path = Path::from(format!("hedge-bench/{i}"));
            (path, Bytes::from(vec![i as u8; 16 * 1024]))
        })
        .collect();
    for (path, body) in &objects {
        seeding
            .put(path, body.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    let objects = Arc::new(objects);
    let hedge = HedgeConfig::new()
        .quantile(options.quantile)
        .floor(options.floor)
        .budget(options.budget);
    println!(
        "hedge_bench: {} reads × {} rounds per mode, {} callers, pool of {}; server: {:?} for {:.0} % of reads, {:?} for the others; hedging: p{} of first-byte times, floor {:?}, budget {:.0} % of reads (10 deep)",
        options.reads,
        options.rounds,
        options.callers,
        options.concurrency,
        options.slow,
        options.slow_share * 100.0,
        options.fast,
        options.quantile * 100.0,
        options.floor,
        options.budget * 100.0
    );

    // The slow tail, modes interleaved round by round on fresh clients.
    let modes = [
        ("no hedging", Mode::Client(None)),
        ("s3pool hedging", Mode::Client(Some(hedge))),
        ("tower hedge", Mode::Tower),
    ];
    let mut totals = vec![Run::default(); modes.len()];
    for round in 0..options.rounds {
        for (index, (_, mode)) in modes.iter().enumerate() {
            let reader = Reader::new(&server, &options, *mode)?;
            let seed = 1_000 + round as u64;
            warm_up(&server, &reader, &objects, &options).await?;
            server
                .faults()
                .set_read_latency(options.fast, options.slow, options.slow_share, seed);
            let run = measure(&server, &reader, &objects, &options, options.reads).await?;
            totals[index].merge(run);
        }
    }
    println!();
    println!("slow tail | p50 ms | p99 ms | p99.9 ms | max ms | reads/s | extra requests | hedges sent / won | CPU µs/read");
    println!("---|---:|---:|---:|---:|---:|---:|---:|---:");
    for ((name, _), run) in modes.iter().zip(&totals) {
        print_row(name, run);
    }
    let (plain, hedged) = (&totals[0], &totals[1]);
    let p99_ratio = plain.quantile(0.99).as_secs_f64() / hedged.quantile(0.99).as_secs_f64();
    let p999_ratio = plain.quantile(0.999).as_secs_f64() / hedged.quantile(0.999).as_secs_f64();
    let throughput = hedged.reads_per_second() / plain.reads_per_second();
    println!();
    println!(
        "p99 lowered {p99_ratio:.2}× (goal ≥ 3×: {}), p99.9 {p999_ratio:.2}×, extra requests {:.2} % (goal ≤ 5 %: {}), throughput {:.3}× of no hedging",
        verdict(p99_ratio >= 3.0),
        hedged.extra() * 100.0,
        verdict(hedged.extra() <= 0.05),
        throughput
    );

    if let Some(tower) = totals.get(2) {
        println!(
            "tower hedge: p99 {:.2}× of no hedging, extra requests {:.2} %",
            plain.quantile(0.99).as_secs_f64() / tower.quantile(0.99).as_secs_f64(),
            tower.extra() * 100.0
        );
    }

    // A uniform slowdown: every read `slowdown` times slower than what the client learned.
    let client = client(&server, &options, Some(hedge))?;
    let reader = Reader::Client(client.clone());
    warm_up(&server, &reader, &objects, &options).await?;
    let learned = client.hedge_stats().map(|s| (s.reads, s.sent));
    let slow = options.fast * options.slowdown;
    server.faults().set_read_latency(slow, slow, 0.0, 1);
    let reads = (options.reads / 4).max(100);
    let run = measure(&server, &reader, &objects, &options, reads).await?;
    let stats = client.hedge_stats().unwrap_or_default();
    let (warm_reads, warm_sent) = learned.unwrap_or_default();
    let allowed = 10.0 + options.budget * (stats.reads - warm_reads) as f64;
    let spent = (stats.sent - warm_sent) as f64;
    println!();
    println!(
        "uniform {}× slowdown ({:?} per read), {} reads: {} extra requests ({:.2} % of reads); the budget allows {:.1} (10 + {:.0} % of reads): {}; {} late reads held back by the budget; p50 {:.1} ms, p99 {:.1} ms",
        options.slowdown,
        slow,
        reads,
        run.requests.saturating_sub(reads as u64),
        run.extra() * 100.0,
        allowed,
        options.budget * 100.0,
        verdict(spent <= allowed),
        stats.over_budget,
        ms(run.quantile(0.5)),
        ms(run.quantile(0.99)),
    );
    server.faults().clear();
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn print_row(name: &str, run: &Run) {
    let hedges = run
        .hedges
        .map(|(sent, won)| format!("{sent} / {won}"))
        .unwrap_or_else(|| "–".to_owned());
    let cpu = run
        .cpu
        .map(|cpu| {
            format!(
                "{:.0}",
                cpu.as_secs_f64() * 1e6 / run.latencies.len() as f64
            )
        })
        .unwrap_or_else(|| "–".to_owned());
    println!(
        "{name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} % | {hedges} | {cpu}",
        ms(run.quantile(0.5)),
        ms(run.quantile(0.99)),
        ms(run.quantile(0.999)),
        ms(run.quantile(1.0)),
        run.reads_per_second(),
        run.extra() * 100.0,
    );
}

fn client(
    server: &S3TestServer,
    options: &Options,
    hedge: Option<HedgeConfig>,
) -> Result<S3Client, String> {
    let store = server.store().map_err(|e| e.to_string())?;
    let builder = S3Client::builder_arc(store)
        .concurrency(options.concurrency)
        .retry_delay(Duration::from_millis(20));
    let builder = match hedge {
        Some(config) => builder.hedged_reads(config),
        None => builder,
    };
    builder.build().map_err(|e| e.to_string())
}

/// How a mode reads.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// An `S3Client` (its pool), hedging or not.
    Client(Option<HedgeConfig>),
    /// tower's `hedge` layer over the bare store.
    Tower,
}

type TowerHedge = tower::hedge::Hedge<
    tower::util::BoxCloneSyncService<Path, Bytes, object_store::Error>,
    AlwaysHedge,
>;

/// tower's hedge policy in its plainest form: every request may be hedged.
#[derive(Debug, Clone, Copy)]
struct AlwaysHedge;

impl tower::hedge::Policy<Path> for AlwaysHedge {
    fn clone_request(&self, path: &Path) -> Option<Path> {
        Some(path.clone())
    }

    fn can_retry(&self, _: &Path) -> bool {
        true
    }
}

/// One mode's reader, shared by the callers.
#[derive(Clone)]
enum Reader {
    Client(S3Client),
    /// `Hedge` is not `Clone`: callers take turns to make a call, then await it apart.
    Tower(Arc<tokio::sync::Mutex<TowerHedge>>),
}

impl Reader {
    fn new(server: &S3TestServer, options: &Options, mode: Mode) -> Result<Self, String> {
        match mode {
            Mode::Client(hedge) => Ok(Reader::Client(client(server, options, hedge)?)),
            Mode::Tower => {
                let store = server.store().map_err(|e| e.to_string())?;
                let get = tower::service_fn(move |path: Path| {
                    let store = Arc::clone(&store);
                    async move { store.get(&path).await?.bytes().await }
                });
                let hedge = tower::hedge::Hedge::new(
                    tower::util::BoxCloneSyncService::new(get),
                    AlwaysHedge,
                    20,
                    options.quantile as f32,
                    // Latencies of the previous half second decide (tower's histogram
                    // rotates each period): short, so the short runs here hedge at all.
                    Duration::from_millis(500),
                );
                Ok(Reader::Tower(Arc::new(tokio::sync::Mutex::new(hedge))))
            }
        }
    }

    async fn get(&self, path: &Path) -> Result<Bytes, String> {
        match self {
            Reader::Client(client) => client.get(path).await.map_err(|e| e.to_string()),
            Reader::Tower(hedge) => {
                use tower::{Service, ServiceExt};
                let call = {
                    let mut hedge = hedge.lock().await;
                    hedge.ready().await.map_err(|e| e.to_string())?;
                    hedge.call(path.clone())
                };
                call.await.map_err(|e| e.to_string())
            }
        }
    }

    /// s3pool's hedging counts; `None` for a reader that does not count them.
    fn hedge_stats(&self) -> Option<s3_client::HedgeStats> {
        match self {
            Reader::Client(client) => client.hedge_stats(),
            Reader::Tower(..) => None,
        }
    }
}

/// Reads every object a few times at the fast latency, so a hedging reader knows its
/// latencies (the same for every mode).
async fn warm_up(
    server: &S3TestServer,
    client: &Reader,
    objects: &Arc<Vec<(Path, Bytes)>>,
    options: &Options,
) -> Result<(), String> {
    server
        .faults()
        .set_read_latency(options.fast, options.fast, 0.0, 1);
    measure(server, client, objects, options, 200)
        .await
        .map(drop)
}

/// `reads` GETs by `callers` concurrent loops; each read's latency, wall and CPU time, and
/// the requests the server saw.
async fn measure(
    server: &S3TestServer,
    client: &Reader,
    objects: &Arc<Vec<(Path, Bytes)>>,
    options: &Options,
    reads: usize,
) -> Result<Run, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let requests_before = server.faults().requests();
    let hedges_before = client.hedge_stats();
    let cpu_before = cpu_time();
    let start = Instant::now();
    let callers: Vec<_> = (0..options.callers)
        .map(|_| {
            let (client, objects, next) = (client.clone(), Arc::clone(objects), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= reads {
                        return Ok::<_, String>(latencies);
                    }
                    let (path, body) = &objects[i % objects.len()];
                    let began = Instant::now();
                    let got = client.get(path).await?;
                    latencies.push(began.elapsed());
                    if got != *body {
                        return Err(format!("{path}: wrong body"));
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(reads);
    for caller in callers {
        latencies.extend(caller.await.map_err(|e| e.to_string())??);
    }
    let wall = start.elapsed();
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let hedges = client
        .hedge_stats()
        .zip(hedges_before)
        .map(|(after, before)| (after.sent - before.sent, after.won - before.won));
    Ok(Run {
        latencies,
        wall,
        cpu,
        requests: server.faults().requests() - requests_before,
        hedges,
    })
}

/// User + system CPU time of this process so far (Linux: from `/proc/self/stat`). The
/// server runs in this process too, so this is client and server together.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
