//! [`S3TestServer`]: s3s-fs serving a temporary directory as S3 over loopback HTTP, behind a
//! switch that answers `503 SlowDown` (or 429 / 500) on demand.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::ObjectStore;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{ConnectionError, S3Config, StoreConfig};
use crate::secret::Credentials;

const ACCESS_KEY: &str = "s3pool-test-access-key";
const SECRET_KEY: &str = "s3pool-test-secret-key-0123456789";
const BUCKET: &str = "s3pool-test";
const REGION: &str = "us-east-1";
/// Requests remembered by [`ServerFaults::recent_requests`].
const RECENT_REQUESTS: usize = 256;

/// An error response the server's fault switch sends instead of passing a request to S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectedResponse {
    /// `503 Service Unavailable` with S3 code `SlowDown`: what S3 sends when throttling.
    SlowDown,
    /// `429 Too Many Requests` with code `SlowDown`: what GCS and some S3-compatible servers
    /// send when throttling (and what object_store itself does not treat specially).
    TooManyRequests,
    /// `500 Internal Server Error` with code `InternalError`.
    InternalError,
}

impl InjectedResponse {
    fn status(self) -> StatusCode {
        match self {
            InjectedResponse::SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            InjectedResponse::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            InjectedResponse::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_and_message(self) -> (&'static str, &'static str) {
        match self {
            InjectedResponse::SlowDown | InjectedResponse::TooManyRequests => {
                ("SlowDown", "Please reduce your request rate.")
            }
            InjectedResponse::InternalError => (
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
        }
    }

    fn xml(self) -> String {
        let (code, message) = self.code_and_message();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{message}</Message><RequestId>s3pool-test</RequestId></Error>"
        )
    }
}

/// The fault switch of an [`S3TestServer`], and its request counters.
///
/// Faults apply in this order: first the `fail_next` / `fail_after` budget, then the
/// always-on switch, then the seeded probability.
#[derive(Debug)]
pub struct ServerFaults {
    requests: AtomicU64,
    bytes_received: Arc<AtomicU64>,
    bytes_sent: Arc<AtomicU64>,
    recent: Mutex<std::collections::VecDeque<String>>,
    injected: AtomicU64,
    /// Response bodies being sent now (made and not yet dropped).
    open_responses: Arc<AtomicU64>,
    plan: Mutex<FaultPlan>,
    holds: PartHolds,
}

/// Upload parts the server has received whole but not yet stored (see
/// [`ServerFaults::hold_parts`]).
#[derive(Debug)]
struct PartHolds {
    /// Parts still to hold.
    to_hold: AtomicU64,
    /// Parts held now.
    held: AtomicU64,
    /// Aborts of a multipart upload received while a part was held.
    aborts_while_held: AtomicU64,
    /// Bumped by each release; a held part waits for a value above the one it saw.
    releases: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct FaultPlan {
    pass_first: u64,
    fail_next: u64,
    next_response: InjectedResponse,
    always: Option<InjectedResponse>,
    probability: f64,
    probable_response: InjectedResponse,
    rng: fastrand::Rng,
    /// (responses left to cut, bytes of body each one sends before the cut).
    cut_bodies: (u64, u64),
    /// Responses left whose body gets one byte flipped.
    corrupt_bodies: u64,
    /// How long reads (GET, HEAD) wait before their response starts.
    read_latency: Option<ReadLatency>,
}

/// The wait before a read's response: `slow` for a share of reads, `fast` for the others.
#[derive(Debug)]
struct ReadLatency {
    fast: Duration,
    slow: Duration,
    slow_share: f64,
    rng: fastrand::Rng,
    /// Only the first request for each object and range draws; these were asked for
    /// already (see [`ServerFaults::set_first_read_latency`]). `None`: every request draws.
    asked: Option<std::collections::HashSet<String>>,
}

impl ServerFaults {
    fn new() -> Self {
        ServerFaults {
            requests: AtomicU64::new(0),
            bytes_received: Arc::new(AtomicU64::new(0)),
            bytes_sent: Arc::new(AtomicU64::new(0)),
            recent: Mutex::new(std::collections::VecDeque::new()),
            injected: AtomicU64::new(0),
            open_responses: Arc::new(AtomicU64::new(0)),
            holds: PartHolds {
                to_hold: AtomicU64::new(0),
                held: AtomicU64::new(0),
                aborts_while_held: AtomicU64::new(0),
                releases: tokio::sync::watch::Sender::new(0),
            },
            plan: Mutex::new(FaultPlan {
                pass_first: 0,
                fail_next: 0,
                next_response: InjectedResponse::SlowDown,
                always: None,
                probability: 0.0,
                probable_response: InjectedResponse::SlowDown,
                rng: fastrand::Rng::with_seed(0),
                cut_bodies: (0, 0),
                corrupt_bodies: 0,
                read_latency: None,
            }),
        }
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, FaultPlan> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the next `count` requests with `response`.
    pub fn fail_next(&self, count: u64, response: InjectedResponse) {
        self.fail_after(0, count, response);
    }

    /// Lets the next `pass` requests through, then answers `count` with `response`: e.g.
    /// `fail_after(2, 1, ..)` fails the first part of a multipart upload.
    pub fn fail_after(&self, pass: u64, count: u64, response: InjectedResponse) {
        let mut plan = self.plan();
        plan.pass_first = pass;
        plan.fail_next = count;
        plan.next_response = response;
    }

    /// Answers every request with `503 SlowDown` while `on`.
    pub fn set_throttling(&self, on: bool) {
        self.plan().always = on.then_some(InjectedResponse::SlowDown);
    }

    /// Answers every request with `response` until called with `None`.
    pub fn set_always(&self, response: Option<InjectedResponse>) {
        self.plan().always = response;
    }

    /// Answers each request with `response` with `probability` (seeded with `seed`).
    pub fn set_probability(&self, probability: f64, response: InjectedResponse, seed: u64) {
        let mut plan = self.plan();
        plan.probability = probability.clamp(0.0, 1.0);
        plan.probable_response = response;
        plan.rng = fastrand::Rng::with_seed(seed);
    }

    /// The next `count` successful GETs (of objects) send only `after_bytes` bytes of their
    /// body, then the connection breaks: a body interrupted mid-way.
    pub fn cut_bodies(&self, count: u64, after_bytes: u64) {
        self.plan().cut_bodies = (count, after_bytes);
    }

    /// The next `count` successful GETs of an object have one byte of their body flipped
    /// (the length stays right): what only a checksum can catch.
    pub fn corrupt_bodies(&self, count: u64) {
        self.plan().corrupt_bodies = count;
    }

    /// Holds back the response of every read (GET, HEAD) before it starts: `slow` for a
    /// `slow_share` of them (drawn with `seed`), `fast` for the others — a store with a slow
    /// tail (e.g. 95 % at 10 ms, 5 % at 300 ms), or a uniform slowdown (`fast == slow`).
    pub fn set_read_latency(&self, fast: Duration, slow: Duration, slow_share: f64, seed: u64) {
        self.plan().read_latency = Some(ReadLatency {
            fast,
            slow,
            slow_share: slow_share.clamp(0.0, 1.0),
            rng: fastrand::Rng::with_seed(seed),
            asked: None,
        });
    }

    /// Like [`set_read_latency`](Self::set_read_latency), but only the first request for
    /// each object and byte range draws its wait: a request for bytes asked for already
    /// (a hedge, a retry) waits `fast` — a slow first try, not a slow object. Which reads
    /// are slow then does not depend on the order in which the requests of concurrent reads
    /// arrive, nor on how many of them were hedged: every hedge of a slow read is answered
    /// first unless the machine stalls for `slow`.
    pub fn set_first_read_latency(
        &self,
        fast: Duration,
        slow: Duration,
        slow_share: f64,
        seed: u64,
    ) {
        self.plan().read_latency = Some(ReadLatency {
            fast,
            slow,
            slow_share: slow_share.clamp(0.0, 1.0),
            rng: fastrand::Rng::with_seed(seed),
            asked: Some(std::collections::HashSet::new()),
        });
    }

    /// Response bodies being sent now: a response whose client went away (a cancelled
    /// request, a dropped body) is dropped once the server notices, and leaves this count.
    pub fn open_responses(&self) -> u64 {
        self.open_responses.load(Ordering::Relaxed)
    }

    /// How long the read being answered (of `bytes`: its method, URI and range) waits
    /// before its response starts.
    fn read_latency(&self, bytes: impl FnOnce() -> String) -> Option<Duration> {
        let mut plan = self.plan();
        let latency = plan.read_latency.as_mut()?;
        if let Some(asked) = latency.asked.as_mut() {
            if !asked.insert(bytes()) {
                return Some(latency.fast);
            }
        }
        let slow = latency.rng.f64() < latency.slow_share;
        Some(if slow { latency.slow } else { latency.fast })
    }

    /// Holds the next `count` upload parts (`PUT …?partNumber=…&uploadId=…`) that are not
    /// answered with a fault: each is received whole, then kept unstored until
    /// [`release_parts`](Self::release_parts). A held part is stored when released even if
    /// its client has gone meanwhile, as S3 does with a part whose bytes it has: a request
    /// cut off mid-write by its client can still land later. An abort that arrives
    /// meanwhile is handled at once (it is counted by
    /// [`aborts_while_parts_held`](Self::aborts_while_parts_held)), so a part released
    /// after it lands after the abort.
    pub fn hold_parts(&self, count: u64) {
        self.holds.to_hold.store(count, Ordering::SeqCst);
    }

    /// Parts held now.
    pub fn held_parts(&self) -> u64 {
        self.holds.held.load(Ordering::SeqCst)
    }

    /// Lets every part held now be stored (and stops holding new ones).
    pub fn release_parts(&self) {
        self.holds.to_hold.store(0, Ordering::SeqCst);
        self.holds.releases.send_modify(|releases| *releases += 1);
    }

    /// Aborts of a multipart upload (`DELETE …?uploadId=…`) received while a part was held:
    /// a client that aborts an upload whose part it has not seen answered.
    pub fn aborts_while_parts_held(&self) -> u64 {
        self.holds.aborts_while_held.load(Ordering::SeqCst)
    }

    /// Whether to hold this request (an upload part, while parts are to be held); counts
    /// an abort that comes while one is held.
    fn take_hold(&self, method: &hyper::Method, query: &str) -> bool {
        let holds = &self.holds;
        if method == hyper::Method::DELETE && query.contains("uploadId=") {
            if holds.held.load(Ordering::SeqCst) > 0 {
                holds.aborts_while_held.fetch_add(1, Ordering::SeqCst);
            }
            return false;
        }
        let is_part = method == hyper::Method::PUT
            && query.contains("uploadId=")
            && query.contains("partNumber=");
        is_part
            && holds
                .to_hold
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
    }

    /// Bytes of request bodies received so far (uploads, re-sent parts included, and the
    /// bodies of requests answered with an injected fault).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }

    /// Bytes of response bodies sent so far (downloads, re-sent ranges included).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        let mut plan = self.plan();
        plan.pass_first = 0;
        plan.fail_next = 0;
        plan.always = None;
        plan.probability = 0.0;
        plan.cut_bodies = (0, 0);
        plan.corrupt_bodies = 0;
        plan.read_latency = None;
    }

    /// Requests received so far (including the ones answered with a fault).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The last requests received (at most 256), oldest first, as `METHOD /path?query`.
    pub fn recent_requests(&self) -> Vec<String> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn record(&self, request: String) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_REQUESTS {
            recent.pop_front();
        }
        recent.push_back(request);
    }

    /// Requests answered with an injected fault so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// What to do to the body of a successful GET being sent: cut it after how many bytes,
    /// and whether to flip a byte of it.
    fn take_body_faults(&self) -> (Option<u64>, bool) {
        let mut plan = self.plan();
        let (count, after) = plan.cut_bodies;
        let cut = (count > 0).then(|| {
            plan.cut_bodies.0 -= 1;
            after
        });
        let corrupt = plan.corrupt_bodies > 0;
        if corrupt {
            plan.corrupt_bodies -= 1;
        }
        (cut, corrupt)
    }

    /// Counts a request and decides whether to fault it.
    fn on_request(&self) -> Option<InjectedResponse> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut plan = self.plan();
        let response = if plan.pass_first > 0 && plan.fail_next > 0 {
            plan.pass_first -= 1;
            None
        } else if plan.fail_next > 0 {
            plan.fail_next -= 1;
            Some(plan.next_response)
        } else if let Some(response) = plan.always {
            Some(response)
        } else if plan.probability > 0.0 && plan.rng.f64() < plan.probability {
            Some(plan.probable_response)
        } else {
            None
        };
        if response.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        response
    }
}

/// A real S3-compatible HTTP server on `127.0.0.1:<random port>`, in-process: s3s-fs serves a
/// temporary directory (one bucket, [`S3TestServer::bucket`]) with SigV4 authentication,
/// and a switch in front of it ([`S3TestServer::faults`]) can answer `503 SlowDown`, 429 or
/// 500 instead. It runs on the tokio runtime that started it and stops (connections
/// included) when dropped; the directory is deleted then.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use object_store::{path::Path, ObjectStoreExt};
/// use s3_client::testing::{InjectedResponse, S3TestServer};
///
/// let server = S3TestServer::start().await.unwrap();
/// let store = server.store().unwrap();
/// store.put(&Path::from("hello"), "world".into()).await.unwrap();
///
/// server.faults().fail_next(1, InjectedResponse::SlowDown);
/// let err = store.get(&Path::from("hello")).await.unwrap_err();
/// assert_eq!(s3_client::http_status(&err), Some(503));
/// let body = store.get(&Path::from("hello")).await.unwrap().bytes().await.unwrap();
/// assert_eq!(&body[..], b"world");
/// # }
/// ```
pub struct S3TestServer {
    addr: SocketAddr,
    credentials: Credentials,
    faults: Arc<ServerFaults>,
    root: tempfile::TempDir,
    accept_loop: JoinHandle<()>,
}

impl S3TestServer {
    /// Starts the server on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`).
    pub async fn start() -> io::Result<Self> {
        Self::start_with_credentials(Credentials::new(ACCESS_KEY, SECRET_KEY)).await
    }

    /// Like [`start`](Self::start), accepting `credentials` (any characters) instead of the
    /// default pair; a session token is not checked.
    pub async fn start_with_credentials(credentials: Credentials) -> io::Result<Self> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join(BUCKET))?;
        let file_system =
            s3s_fs::FileSystem::new(root.path()).map_err(|e| io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(file_system);
        // Without an auth provider s3s answers every signed request with 501.
        builder.set_auth(SimpleAuth::from_single(
            credentials.access_key_id.expose(),
            credentials.secret_access_key.expose(),
        ));
        let s3 = builder.build();

        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(ServerFaults::new());
        let accept_loop = tokio::spawn(accept_loop(listener, s3, Arc::clone(&faults)));
        tracing::debug!(%addr, "S3 test server started");
        Ok(S3TestServer {
            addr,
            credentials,
            faults,
            root,
            accept_loop,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The one bucket the server has.
    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// An object_store `AmazonS3Builder` set up for this server (endpoint, bucket,
    /// credentials, region, plain HTTP, no retries inside object_store, copy-if-not-exists
    /// as a conditional multipart copy, stored checksums asked for and put in responses'
    /// extensions, as [`S3Config`]'s defaults; replacing its client options drops the
    /// checksum-mode header): add settings and
    /// `build()` it when a test needs the concrete `AmazonS3` (it is also a `MultipartStore`
    /// and a `PaginatedListStore`) rather than [`store`](Self::store)'s `dyn ObjectStore`.
    pub fn builder(&self) -> object_store::aws::AmazonS3Builder {
        let client = crate::checksum::checksum_mode_options(object_store::ClientOptions::new());
        object_store::aws::AmazonS3Builder::new()
            .with_http_connector(crate::ChecksumConnector)
            .with_client_options(client)
            .with_endpoint(self.endpoint())
            .with_bucket_name(BUCKET)
            .with_region(REGION)
            .with_access_key_id(self.credentials.access_key_id.expose())
            .with_secret_access_key(self.credentials.secret_access_key.expose())
            .with_allow_http(true)
            .with_copy_if_not_exists(object_store::aws::S3CopyIfNotExists::Multipart)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
    }

    /// The credentials the server accepts.
    pub fn credentials(&self) -> Credentials {
        self.credentials.clone()
    }

    /// S3 settings for this server: its endpoint, bucket and credentials, path-style,
    /// plain HTTP, no retries inside object_store.
    pub fn s3_config(&self) -> S3Config {
        S3Config::new(BUCKET)
            .with_endpoint(self.endpoint())
            .with_region(REGION)
            .with_credentials(self.credentials())
    }

    /// [`S3TestServer::s3_config`] as a [`StoreConfig`].
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig::s3(self.s3_config())
    }

    /// `http://<key>:<secret>@127.0.0.1:<port>/<bucket>`: a connection string for this server
    /// (the credentials percent-encoded).
    pub fn connection_string(&self) -> String {
        let credentials = &self.credentials;
        format!(
            "http://{}:{}@{}/{BUCKET}",
            percent_encode(credentials.access_key_id.expose()),
            percent_encode(credentials.secret_access_key.expose()),
            self.addr
        )
    }

    /// A real object_store `AmazonS3` client for this server.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, ConnectionError> {
        self.store_config().build()
    }

    /// The fault switch and request counters.
    pub fn faults(&self) -> &ServerFaults {
        &self.faults
    }

    /// Multipart uploads started and neither completed nor aborted (s3s-fs keeps each as
    /// `.upload-<id>.json` beside its parts in the served directory).
    pub fn pending_uploads(&self) -> usize {
        self.count_files(|name| name.starts_with(".upload-") && name.ends_with(".json"))
    }

    /// Parts stored for multipart uploads not completed or aborted (s3s-fs keeps each as
    /// `.upload_id-<id>.part-<n>`): a part that lands after its upload was aborted shows
    /// here even when [`pending_uploads`](Self::pending_uploads) is 0.
    pub fn stored_parts(&self) -> usize {
        self.count_files(|name| name.starts_with(".upload_id-") && name.contains(".part-"))
    }

    fn count_files(&self, matches: impl Fn(&str) -> bool) -> usize {
        std::fs::read_dir(self.root.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| matches(&entry.file_name().to_string_lossy()))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The directory served (the bucket is a subdirectory).
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }
}

impl fmt::Debug for S3TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3TestServer")
            .field("addr", &self.addr)
            .field("bucket", &BUCKET)
            .field("root", &self.root.path())
            .finish_non_exhaustive()
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.accept_loop.abort();
    }
}

async fn accept_loop(listener: TcpListener, s3: S3Service, faults: Arc<ServerFaults>) {
    let http = ConnBuilder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(error) => {
                tracing::warn!(%error, "S3 test server: accept failed");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let s3 = s3.clone();
        let faults = Arc::clone(&faults);
        let service = service_fn(move |request| handle(request, s3.clone(), Arc::clone(&faults)));
        let connection = http
            .serve_connection(TokioIo::new(socket), service)
            .into_owned();
        connections.spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    s3: S3Service,
    faults: Arc<ServerFaults>,
) -> Result<Response<s3s::Body>, s3s::HttpError> {
    faults.record(format!("{} {}", request.method(), request.uri()));
    let Some(fault) = faults.on_request() else {
        let query = request.uri().query().unwrap_or_default().to_owned();
        if faults.take_hold(request.method(), &query) {
            return hold_then_store(request, s3, faults).await;
        }
        let received = Arc::clone(&faults.bytes_received);
        let request = request.map(|body| s3s::Body::http_body_unsync(Metered::new(body, received)));
        let is_get = request.method() == hyper::Method::GET;
        let is_read = is_get || request.method() == hyper::Method::HEAD;
        let bytes = || {
            let range = request.headers().get(hyper::header::RANGE);
            format!("{} {} {range:?}", request.method(), request.uri())
        };
        if let Some(wait) = is_read.then(|| faults.read_latency(bytes)).flatten() {
            tokio::time::sleep(wait).await;
        }
        let response = s3.call(request).await?;
        let (cut_after, corrupt) = if is_get && response.status().is_success() {
            faults.take_body_faults()
        } else {
            (None, false)
        };
        let sent = Arc::clone(&faults.bytes_sent);
        let open = Arc::clone(&faults.open_responses);
        return Ok(response.map(|body| {
            let mut metered = Metered::new(body, sent);
            metered.cut_after = cut_after;
            metered.corrupt = corrupt;
            metered.open = Some(OpenResponse::new(open));
            s3s::Body::http_body_unsync(metered)
        }));
    };
    // Read the request body first, as a real server does, so the client sees the response
    // rather than a connection closed mid-upload; its bytes were sent, so they count.
    if let Ok(body) = request.into_body().collect().await {
        let len = body.to_bytes().len() as u64;
        faults.bytes_received.fetch_add(len, Ordering::Relaxed);
    }
    Response::builder()
        .status(fault.status())
        .header("content-type", "application/xml")
        .body(s3s::Body::from(fault.xml()))
        .map_err(|e| s3s::HttpError::new(Box::new(e)))
}

/// Receives a part whole, keeps it until the test releases it, then stores it — in a task of
/// its own, so that it lands even if the client has gone meanwhile.
async fn hold_then_store(
    request: Request<Incoming>,
    s3: S3Service,
    faults: Arc<ServerFaults>,
) -> Result<Response<s3s::Body>, s3s::HttpError> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| s3s::HttpError::new(Box::new(e)))?
        .to_bytes();
    faults
        .bytes_received
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut releases = faults.holds.releases.subscribe();
    let seen = *releases.borrow_and_update();
    faults.holds.held.fetch_add(1, Ordering::SeqCst);
    let stored = tokio::spawn(async move {
        let _ = releases.wait_for(|released| *released > seen).await;
        let response = s3
            .call(Request::from_parts(parts, s3s::Body::from(body)))
            .await;
        faults.holds.held.fetch_sub(1, Ordering::SeqCst);
        response
    });
    stored.await.map_err(|e| s3s::HttpError::new(Box::new(e)))?
}

/// A body that counts its bytes into a shared counter and can be cut short (after
/// `cut_after` bytes it fails, which makes hyper drop the connection mid-body) or corrupted
/// (the first byte of its first data is flipped).
struct Metered<B> {
    inner: B,
    counter: Arc<AtomicU64>,
    cut_after: Option<u64>,
    corrupt: bool,
    passed: u64,
    /// Counts a response body as open while it lives.
    open: Option<OpenResponse>,
}

impl<B> Metered<B> {
    fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Metered {
            inner,
            counter,
            cut_after: None,
            corrupt: false,
            passed: 0,
            open: None,
        }
    }
}

/// One open response body in [`ServerFaults::open_responses`].
struct OpenResponse(Arc<AtomicU64>);

impl OpenResponse {
    fn new(open: Arc<AtomicU64>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for OpenResponse {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<B> hyper::body::Body for Metered<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<s3s::StdError>,
{
    type Data = bytes::Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, s3s::StdError>>> {
        use std::task::Poll;
        if self.cut_after.is_some_and(|limit| self.passed >= limit) {
            return Poll::Ready(Some(Err("S3TestServer: body cut on purpose".into())));
        }
        let frame = match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                if let Some(limit) = self.cut_after {
                    let room = usize::try_from(limit - self.passed).unwrap_or(usize::MAX);
                    data.truncate(room);
                }
                if self.corrupt && !data.is_empty() {
                    self.corrupt = false;
                    let mut flipped = bytes::BytesMut::from(&data[..]);
                    flipped[0] ^= 0xFF;
                    data = flipped.freeze();
                }
                self.passed += data.len() as u64;
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                hyper::body::Frame::data(data)
            }
            Err(frame) => frame,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Every byte but RFC 3986's unreserved characters as `%XX`: fit for any part of a URL.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
