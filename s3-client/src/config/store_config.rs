//! [`StoreConfig`]: a typed connection string.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, Checksum, S3CopyIfNotExists,
};
use object_store::ClientOptions;

use crate::checksum::{checksum_mode_options, ChecksumConnector};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use super::ConnectionError;
use crate::redact::redact;
use crate::secret::{Credentials, StaticCredentials};

/// Which kind of store, and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// Amazon S3, MinIO or another S3-compatible server (object_store's `AmazonS3`).
    S3(S3Config),
    /// object_store's `InMemory` (a fresh, empty store per [`StoreConfig::build`]).
    Memory,
    /// object_store's `LocalFileSystem` rooted at an existing directory.
    File {
        /// The directory objects live under.
        root: PathBuf,
    },
}

/// Settings of an S3 or S3-compatible store.
///
/// Unset fields come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION`, …) as object_store's `AmazonS3Builder::from_env` reads
/// them. The credentials are redacted in `Debug` (and so is anything in the endpoint that
/// looks like one; an endpoint holding credentials is refused when the store is built).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket (S3 naming rules: 3–63 lowercase letters, digits, dots and dashes).
    pub bucket: String,
    /// The region, e.g. `us-east-1`. Default: from the environment, else `us-east-1`.
    pub region: Option<String>,
    /// An endpoint such as `http://127.0.0.1:9000` for MinIO; `None` for AWS.
    pub endpoint: Option<String>,
    /// Static credentials; `None` takes them from the environment.
    pub credentials: Option<Credentials>,
    /// Allow plain `http://` endpoints. Default `false` (true when parsed from `http://`).
    pub allow_http: bool,
    /// `bucket.host` requests instead of `host/bucket`. Default `false` (path-style), which
    /// is what MinIO and most S3-compatible servers expect.
    pub virtual_hosted_style: bool,
    /// Retries inside object_store's own HTTP layer. Default 0: the pool's retry policy
    /// (backoff, jitter, retry budget, pressure rule) is the one in charge, and a 503 is
    /// reported to the pool, and so to an adaptive tuner, on the first attempt instead of
    /// being hidden behind up to 10 silent retries. Raise it only for a client built with
    /// the pool disabled.
    pub store_retries: usize,
    /// How `copy_if_not_exists` (`CopyMode::Create`) is done. Default
    /// [`S3CopyIfNotExists::Multipart`]: a one-part multipart upload that copies the source
    /// and completes only if the target does not exist (`If-None-Match: *` on completion),
    /// which AWS S3 and servers with S3's conditional writes support. `None` makes
    /// `copy_if_not_exists` fail with `NotSupported`; Cloudflare R2 wants
    /// `S3CopyIfNotExists::Header("cf-copy-destination-if-none-match".into(), "*".into())`.
    pub copy_if_not_exists: Option<S3CopyIfNotExists>,
    /// Ask S3 for the checksums it stores with objects (`x-amz-checksum-mode: ENABLED`, sent
    /// as a signed default header) and check reads of whole objects against them (see
    /// [`crate::checksum`]). Default `true`.
    pub verify_checksums: bool,
    /// A checksum sent with every upload and part (object_store's
    /// `with_checksum_algorithm`): S3 checks the bytes it receives and stores the checksum.
    /// With `Checksum::CRC64NVME` the object keeps a full-object CRC64NVME that every whole
    /// download then checks — multipart objects included. Default `None` (AWS S3 stores a
    /// CRC64NVME by itself; S3-compatible servers may not).
    pub upload_checksum: Option<Checksum>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_deref().map(redact))
            .field("credentials", &self.credentials)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("store_retries", &self.store_retries)
            .field("copy_if_not_exists", &self.copy_if_not_exists)
            .finish()
    }
}

impl S3Config {
    /// A bucket with every other setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            region: None,
            endpoint: None,
            credentials: None,
            allow_http: false,
            virtual_hosted_style: false,
            store_retries: 0,
            copy_if_not_exists: Some(S3CopyIfNotExists::Multipart),
            verify_checksums: true,
            upload_checksum: None,
        }
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets an endpoint, `http(s)://host[:port][/path]` (and allows plain HTTP when it starts
    /// with `http://`). It is checked when the store is built: an endpoint holding
    /// credentials is refused ([`ConnectionError::CredentialsInEndpoint`]), as is any scheme
    /// but `http` and `https`, a query or a fragment.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        self.allow_http |= endpoint.starts_with("http://");
        self.endpoint = Some(endpoint);
        self
    }

    /// Sets static credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets object_store's own retry count (see [`S3Config::store_retries`]).
    pub fn with_store_retries(mut self, retries: usize) -> Self {
        self.store_retries = retries;
        self
    }

    /// Sets whether stored checksums are asked for and checked (see
    /// [`S3Config::verify_checksums`]).
    pub fn with_verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Sets the checksum sent with uploads (see [`S3Config::upload_checksum`]).
    pub fn with_upload_checksum(mut self, checksum: Option<Checksum>) -> Self {
        self.upload_checksum = checksum;
        self
    }

    /// Sets how `copy_if_not_exists` is done (see [`S3Config::copy_if_not_exists`]).
    pub fn with_copy_if_not_exists(mut self, mode: Option<S3CopyIfNotExists>) -> Self {
        self.copy_if_not_exists = mode;
        self
    }

    fn validate(&self) -> Result<(), ConnectionError> {
        validate_bucket(&self.bucket)?;
        if let Some(region) = &self.region {
            validate_region(region)?;
        }
        self.validate_endpoint()?;
        if let Some(credentials) = &self.credentials {
            if credentials.access_key_id.is_empty() {
                return Err(ConnectionError::IncompleteCredentials {
                    missing: "access_key_id",
                });
            }
            if credentials.secret_access_key.is_empty() {
                return Err(ConnectionError::IncompleteCredentials {
                    missing: "secret_access_key",
                });
            }
        }
        Ok(())
    }

    /// Checks the endpoint alone (see [`with_endpoint`](Self::with_endpoint)).
    pub(crate) fn validate_endpoint(&self) -> Result<(), ConnectionError> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        // Any `@` (raw or as the end of user information, whatever the password holds) is
        // refused before parsing: a password with a raw `/` would parse as a path.
        if endpoint.contains('@') {
            return Err(ConnectionError::CredentialsInEndpoint);
        }
        let invalid = |reason: String| ConnectionError::InvalidEndpoint { reason };
        let url = Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConnectionError::CredentialsInEndpoint);
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the scheme is `{}`; an endpoint is http:// or https://",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host".to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("it must not have a query or a fragment".to_owned()));
        }
        Ok(())
    }

    fn build(&self) -> Result<AmazonS3, ConnectionError> {
        let retry = RetryConfig {
            max_retries: self.store_retries,
            ..RetryConfig::default()
        };
        // Client options replace those `from_env` read: read the environment's the same way.
        let mut client = client_options_from_env();
        let mut builder = AmazonS3Builder::from_env();
        if self.verify_checksums {
            client = checksum_mode_options(client);
            builder = builder.with_http_connector(ChecksumConnector);
        }
        if let Some(checksum) = self.upload_checksum {
            builder = builder.with_checksum_algorithm(checksum);
        }
        let mut builder = builder
            .with_client_options(client)
            .with_bucket_name(&self.bucket)
            .with_allow_http(self.allow_http)
            .with_virtual_hosted_style_request(self.virtual_hosted_style)
            .with_retry(retry);
        if let Some(mode) = &self.copy_if_not_exists {
            builder = builder.with_copy_if_not_exists(mode.clone());
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        // Static credentials (given, or read from the environment by `from_env`) go to
        // object_store through a provider whose `Debug` shows none of them: its own static
        // provider prints the access key id in the store's `Debug`.
        if let Some(credentials) =
            StaticCredentials::from_config(self.credentials.as_ref(), &builder)
        {
            builder = builder.with_credentials(Arc::new(credentials));
        }
        builder.build().map_err(ConnectionError::Store)
    }
}

/// The HTTP client options `AmazonS3Builder::from_env` would set from `AWS_*` variables.
fn client_options_from_env() -> ClientOptions {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("AWS_"))
        .filter_map(|(name, value)| match name.to_ascii_lowercase().parse() {
            Ok(AmazonS3ConfigKey::Client(key)) => Some((key, value)),
            _ => None,
        })
        .fold(ClientOptions::new(), |options, (key, value)| {
            options.with_config(key, value)
        })
}

/// Where a client's objects live: a backend and an optional key prefix.
///
/// Parse one from a connection string:
///
/// | string | backend |
/// |---|---|
/// | `s3://bucket/prefix?region=eu-west-1` | S3; credentials from the environment or the query |
/// | `s3://key:secret@bucket/prefix` | S3 with credentials in the string |
/// | `http(s)://[key:secret@]host[:port]/bucket/prefix` | MinIO or any S3-compatible server, path-style |
/// | `memory://`, `memory:///prefix` | in-memory |
/// | `file:///abs/dir` | local files under `/abs/dir` |
///
/// Query parameters: `region`, `endpoint` (an `http(s)://host[:port][/path]` that overrides
/// the host of an `s3://` or `http(s)://` string), `access_key_id`, `secret_access_key`,
/// `session_token`, `allow_http`, `virtual_hosted_style`. The prefix, the credentials and the
/// parameters are percent-decoded; a `+` is a plus sign, not a space (AWS secret keys hold
/// them). `Display` prints the string back without credentials.
///
/// Refused, each with its own [`ConnectionError`] (none quotes a credential):
/// - a string without `SCHEME://`, or with another scheme than the five above;
/// - `.` and `..` path segments, also percent-encoded (`/bucket/../other` would name another
///   bucket);
/// - a `#` anywhere, and a `@` after the host: write them `%23` and `%40`. In credentials,
///   write `/`, `?`, `#` as `%2F`, `%3F`, `%23` (raw, they end the host early), `%` as `%25`,
///   and a `:` in the access key id as `%3A` (the first `:` ends it);
/// - credentials inside `endpoint=` (or [`S3Config::with_endpoint`]), an endpoint that is not
///   `http` or `https`, or that has a query;
/// - bucket names S3 refuses: outside 3–63 lowercase letters, digits, dots and dashes,
///   formatted as an IP address, or with a prefix or suffix S3 reserves (`xn--`, `-s3alias`, …);
/// - a region that is not lowercase letters, digits and dashes; an unknown parameter; half a
///   key pair;
/// - `memory://host/…` (a host would be dropped), `file://` and `file:///` (no directory: the
///   filesystem root is refused), `file://host/…`.
///
/// ```
/// use s3_client::{Backend, StoreConfig};
/// let config: StoreConfig = "http://minio:secret123@127.0.0.1:9000/photos/2024".parse().unwrap();
/// let Backend::S3(s3) = &config.backend else { unreachable!() };
/// assert_eq!(s3.bucket, "photos");
/// assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
/// assert_eq!(config.prefix.as_ref().map(|p| p.as_ref()), Some("2024"));
/// assert_eq!(config.to_string(), "http://127.0.0.1:9000/photos/2024");
///
/// let err = "s3:///no-bucket".parse::<StoreConfig>().unwrap_err();
/// assert!(err.to_string().contains("bucket is empty"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The kind of store.
    pub backend: Backend,
    /// A key prefix under which every path of the client lives.
    pub prefix: Option<Path>,
}

impl StoreConfig {
    /// An in-memory store.
    pub fn memory() -> Self {
        StoreConfig {
            backend: Backend::Memory,
            prefix: None,
        }
    }

    /// Local files under `root` (which must exist when the store is built).
    pub fn file(root: impl Into<PathBuf>) -> Self {
        StoreConfig {
            backend: Backend::File { root: root.into() },
            prefix: None,
        }
    }

    /// An S3 or S3-compatible store.
    pub fn s3(config: S3Config) -> Self {
        StoreConfig {
            backend: Backend::S3(config),
            prefix: None,
        }
    }

    /// Puts every path under `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<Path>) -> Self {
        let prefix = prefix.into();
        self.prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        self
    }

    /// Parses a connection string (see the type's docs for the forms and what is refused).
    pub fn parse(input: &str) -> Result<Self, ConnectionError> {
        check_unambiguous(input)?;
        let url = Url::parse(input).map_err(|e| ConnectionError::MalformedUrl {
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "memory" => {
                // `memory://photos/2024` would silently drop `photos` (taken as a host).
                if url.host_str().is_some_and(|h| !h.is_empty()) || url.query().is_some() {
                    return Err(ConnectionError::MalformedUrl {
                        reason: "memory:// takes no host and no query: write memory:// or \
                                 memory:///prefix"
                            .to_owned(),
                    });
                }
                let (_, prefix) = object_scheme(&url)?;
                Ok(StoreConfig::memory().with_prefix(prefix))
            }
            "file" => parse_file(&url),
            "s3" | "s3a" => parse_s3(&url),
            "http" | "https" => parse_http(&url),
            other => Err(ConnectionError::UnknownScheme {
                scheme: other.to_owned(),
            }),
        }
    }

    /// Checks every field and builds the store (wrapped in a `PrefixStore` when there is a
    /// prefix). Builds no connection yet: S3 connects on the first request.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, ConnectionError> {
        Ok(self.build_stores()?.0)
    }

    /// [`build`](Self::build), and the same store's `MultipartStore` API when it has one
    /// (S3 and memory do, local files do not): with it a client retries a failed part of an
    /// upload on its own.
    pub(crate) fn build_stores(&self) -> Result<BuiltStores, ConnectionError> {
        tracing::debug!(store = %self, "building object store");
        match &self.backend {
            Backend::Memory => return Ok(with_multipart(InMemory::new(), &self.prefix)),
            Backend::S3(config) => {
                config.validate()?;
                return Ok(with_multipart(config.build()?, &self.prefix));
            }
            Backend::File { .. } => {}
        }
        let store: Arc<dyn ObjectStore> = match &self.backend {
            Backend::Memory | Backend::S3(_) => unreachable!("built above"),
            Backend::File { root } => {
                let store = LocalFileSystem::new_with_prefix(root).map_err(|e| {
                    ConnectionError::InvalidFileRoot {
                        root: root.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                Arc::new(store)
            }
        };
        let store: Arc<dyn ObjectStore> = match &self.prefix {
            Some(prefix) => Arc::new(PrefixStore::new(store, prefix.clone())),
            None => store,
        };
        Ok((store, None))
    }
}

/// A built store, and its multipart API when it has one.
pub(crate) type BuiltStores = (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>);

fn with_multipart<S: ObjectStore + MultipartStore>(store: S, prefix: &Option<Path>) -> BuiltStores {
    match prefix {
        Some(prefix) => {
            let store = Arc::new(PrefixStore::new(store, prefix.clone()));
            (Arc::clone(&store) as _, Some(store as _))
        }
        None => {
            let store = Arc::new(store);
            (Arc::clone(&store) as _, Some(store as _))
        }
    }
}

impl FromStr for StoreConfig {
    type Err = ConnectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreConfig::parse(s)
    }
}

impl fmt::Display for StoreConfig {
    /// The connection string without credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.prefix.as_ref().map(|p| p.as_ref()).unwrap_or("");
        let slash_prefix = if prefix.is_empty() { "" } else { "/" };
        match &self.backend {
            Backend::Memory => write!(f, "memory://{slash_prefix}{prefix}"),
            Backend::File { root } => write!(f, "file://{}", root.display()),
            Backend::S3(s3) => {
                match &s3.endpoint {
                    Some(endpoint) => write!(
                        f,
                        "{}/{}{slash_prefix}{prefix}",
                        redact(endpoint).trim_end_matches('/'),
                        s3.bucket
                    )?,
                    None => write!(f, "s3://{}{slash_prefix}{prefix}", s3.bucket)?,
                }
                if let Some(region) = &s3.region {
                    write!(f, "?region={region}")?;
                }
                Ok(())
            }
        }
    }
}

/// The schemes a connection string may have.
const SCHEMES: [&str; 6] = ["s3", "s3a", "http", "https", "memory", "file"];

/// Refuses, before any parsing, what a URL parser would silently take another way: no
/// `SCHEME://`; a `#` (a fragment: a `#` in a credential would cut it short); a `@` after
/// the host (the host ended early at a `/`, `?` or `#` in a credential); `.` and `..` path
/// segments (the parser resolves them: `/bucket/../other` would name bucket `other`). No
/// error quotes the input, which may hold credentials.
fn check_unambiguous(input: &str) -> Result<(), ConnectionError> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err(ConnectionError::MalformedUrl {
            reason: "expected SCHEME://…, e.g. s3://bucket/prefix or \
                     http://host:9000/bucket/prefix"
                .to_owned(),
        });
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Err(ConnectionError::MalformedUrl {
            reason: "the text before :// is not a scheme".to_owned(),
        });
    }
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(ConnectionError::UnknownScheme {
            scheme: scheme.to_owned(),
        });
    }
    if rest.contains('#') {
        return Err(ConnectionError::ReservedCharacter {
            character: '#',
            reason: "would start a fragment, which connection strings do not have; write it \
                     as %23",
        });
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (_, after_host) = rest.split_at(authority_end);
    if after_host.contains('@') {
        return Err(ConnectionError::ReservedCharacter {
            character: '@',
            reason: "comes after the host: write a `@` in a prefix or parameter as %40, and \
                     `/`, `?` and `#` in credentials as %2F, %3F and %23",
        });
    }
    let path = after_host.split('?').next().unwrap_or_default();
    if path.split('/').any(is_dot_segment) {
        return Err(ConnectionError::DotSegment);
    }
    Ok(())
}

/// `.` or `..`, also percent-encoded (`%2e`, `.%2E`, …), as URL parsers resolve them.
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let dots = lower.replace("%2e", ".");
    dots == "." || dots == ".."
}

fn object_scheme(url: &Url) -> Result<(ObjectStoreScheme, Path), ConnectionError> {
    ObjectStoreScheme::parse(url).map_err(|e| ConnectionError::MalformedUrl {
        reason: redact(&e.to_string()).into_owned(),
    })
}

fn parse_file(url: &Url) -> Result<StoreConfig, ConnectionError> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || url.query().is_some() {
        return Err(ConnectionError::InvalidFileRoot {
            root: url.path().to_owned(),
            reason: "expected file:///absolute/path, without host or query".to_owned(),
        });
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err(ConnectionError::InvalidFileRoot {
            root: url.path().to_owned(),
            reason: "no directory: write file:///absolute/directory (the filesystem root is \
                     refused)"
                .to_owned(),
        });
    }
    let root = url
        .to_file_path()
        .map_err(|()| ConnectionError::InvalidFileRoot {
            root: url.path().to_owned(),
            reason: "not an absolute path".to_owned(),
        })?;
    Ok(StoreConfig::file(root))
}

fn parse_s3(url: &Url) -> Result<StoreConfig, ConnectionError> {
    let bucket = url.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(ConnectionError::EmptyBucket);
    }
    let (_, prefix) = object_scheme(url)?;
    let mut config = S3Config::new(bucket);
    apply_userinfo(url, &mut config)?;
    apply_query(url, &mut config)?;
    config.validate()?;
    Ok(StoreConfig::s3(config).with_prefix(prefix))
}

fn parse_http(url: &Url) -> Result<StoreConfig, ConnectionError> {
    let host = url.host_str().unwrap_or_default();
    let endpoint = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let mut segments = url.path_segments().into_iter().flatten();
    let bucket = segments.next().unwrap_or_default();
    if bucket.is_empty() {
        return Err(ConnectionError::EmptyBucket);
    }
    let bucket = percent_decode(bucket, "bucket")?;
    let rest = segments.collect::<Vec<_>>().join("/");
    let prefix = Path::from_url_path(&rest).map_err(|e| ConnectionError::MalformedUrl {
        reason: e.to_string(),
    })?;
    let mut config = S3Config::new(bucket).with_endpoint(endpoint);
    apply_userinfo(url, &mut config)?;
    apply_query(url, &mut config)?;
    config.validate()?;
    Ok(StoreConfig::s3(config).with_prefix(prefix))
}

fn apply_userinfo(url: &Url, config: &mut S3Config) -> Result<(), ConnectionError> {
    let user = url.username();
    let password = url.password();
    match (user.is_empty(), password) {
        (true, None) => Ok(()),
        (false, Some(password)) => {
            config.credentials = Some(Credentials::new(
                percent_decode(user, "access_key_id")?,
                percent_decode(password, "secret_access_key")?,
            ));
            Ok(())
        }
        (false, None) => Err(ConnectionError::IncompleteCredentials {
            missing: "secret_access_key",
        }),
        (true, Some(_)) => Err(ConnectionError::IncompleteCredentials {
            missing: "access_key_id",
        }),
    }
}

fn apply_query(url: &Url, config: &mut S3Config) -> Result<(), ConnectionError> {
    let mut access_key = None;
    let mut secret_key = None;
    let mut token = None;
    for (name, value) in query_parameters(url)? {
        match name {
            "region" => config.region = Some(value),
            // Checked with the rest of the configuration: no credentials, http(s) only.
            "endpoint" => *config = config.clone().with_endpoint(value),
            "access_key_id" => access_key = Some(value),
            "secret_access_key" => secret_key = Some(value),
            "session_token" => token = Some(value),
            "allow_http" => config.allow_http = parse_bool("allow_http", &value)?,
            "virtual_hosted_style" => {
                config.virtual_hosted_style = parse_bool("virtual_hosted_style", &value)?
            }
            other => {
                return Err(ConnectionError::UnknownParameter {
                    name: other.to_owned(),
                })
            }
        }
    }
    let from_userinfo = config.credentials.take();
    let credentials = match (access_key, secret_key, from_userinfo) {
        (Some(key), Some(secret), _) => Some(Credentials::new(key, secret)),
        (Some(_), None, _) => {
            return Err(ConnectionError::IncompleteCredentials {
                missing: "secret_access_key",
            })
        }
        (None, Some(_), _) => {
            return Err(ConnectionError::IncompleteCredentials {
                missing: "access_key_id",
            })
        }
        (None, None, creds) => creds,
    };
    config.credentials = match (credentials, token) {
        (Some(creds), Some(token)) => Some(creds.with_session_token(token)),
        (None, Some(_)) => {
            return Err(ConnectionError::IncompleteCredentials {
                missing: "access_key_id",
            })
        }
        (creds, None) => creds,
    };
    Ok(())
}

/// The parameters a connection string may carry.
const PARAMETERS: [&str; 7] = [
    "region",
    "endpoint",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "virtual_hosted_style",
];

/// The query's parameters, names and values percent-decoded but not form-decoded: a `+`
/// stays a plus (AWS secret keys hold them), only `%2B` is a plus too.
fn query_parameters(url: &Url) -> Result<Vec<(&'static str, String)>, ConnectionError> {
    let Some(query) = url.query() else {
        return Ok(Vec::new());
    };
    let mut parameters = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name, "parameter name")?;
        let Some(known) = PARAMETERS.iter().find(|known| **known == name) else {
            return Err(ConnectionError::UnknownParameter { name });
        };
        parameters.push((*known, percent_decode(value, known)?));
    }
    Ok(parameters)
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConnectionError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ConnectionError::InvalidParameter {
            name,
            reason: format!("expected true or false, got `{other}`"),
        }),
    }
}

/// Percent-decoding (RFC 3986), not form decoding: `+` is a plus sign. `url` keeps userinfo,
/// path segments and the query percent-encoded.
fn percent_decode(text: &str, field: &'static str) -> Result<String, ConnectionError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None => {
                    return Err(ConnectionError::InvalidParameter {
                        name: field,
                        reason: "malformed percent-encoding".to_owned(),
                    })
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ConnectionError::InvalidParameter {
        name: field,
        reason: "not UTF-8 after percent-decoding".to_owned(),
    })
}

fn validate_bucket(bucket: &str) -> Result<(), ConnectionError> {
    let invalid = |reason| ConnectionError::InvalidBucket {
        bucket: bucket.to_owned(),
        reason,
    };
    if bucket.is_empty() {
        return Err(ConnectionError::EmptyBucket);
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(invalid("must be 3 to 63 characters long"));
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(invalid(
            "may contain only lowercase letters, digits, dots and dashes",
        ));
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bucket.as_bytes()[0]) || !alnum(bucket.as_bytes()[bucket.len() - 1]) {
        return Err(invalid("must begin and end with a letter or digit"));
    }
    if bucket.contains("..") {
        return Err(invalid("must not contain two dots in a row"));
    }
    let groups: Vec<&str> = bucket.split('.').collect();
    if groups.len() == 4
        && groups
            .iter()
            .all(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(
            "must not be formatted as an IP address (S3 refuses it)",
        ));
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|prefix| bucket.starts_with(prefix))
    {
        return Err(invalid(
            "must not begin with xn--, sthree- or amzn-s3-demo- (reserved by S3)",
        ));
    }
    if ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .any(|suffix| bucket.ends_with(suffix))
    {
        return Err(invalid(
            "must not end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3 (reserved by S3)",
        ));
    }
    Ok(())
}

fn validate_region(region: &str) -> Result<(), ConnectionError> {
    let well_formed = !region.is_empty()
        && region.len() <= 64
        && region.as_bytes()[0].is_ascii_lowercase()
        && !region.ends_with('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(ConnectionError::InvalidRegion {
            region: region.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(config: &StoreConfig) -> &S3Config {
        match &config.backend {
            Backend::S3(s3) => s3,
            other => panic!("expected S3, got {other:?}"),
        }
    }

    #[test]
    fn s3_url_with_region_and_prefix() {
        let config = StoreConfig::parse("s3://my-bucket/a/b?region=eu-west-1").unwrap();
        assert_eq!(s3(&config).bucket, "my-bucket");
        assert_eq!(s3(&config).region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3(&config).endpoint, None);
        assert_eq!(config.prefix, Some(Path::from("a/b")));
        assert_eq!(config.to_string(), "s3://my-bucket/a/b?region=eu-west-1");
    }

    #[test]
    fn http_url_is_path_style_with_userinfo_credentials() {
        let config = StoreConfig::parse("http://AKID:s%2Fcret@localhost:9000/bkt").unwrap();
        let s3 = s3(&config);
        assert_eq!(s3.bucket, "bkt");
        assert_eq!(s3.endpoint.as_deref(), Some("http://localhost:9000"));
        assert!(s3.allow_http && !s3.virtual_hosted_style);
        let creds = s3.credentials.as_ref().unwrap();
        assert_eq!(creds.access_key_id.expose(), "AKID");
        assert_eq!(creds.secret_access_key.expose(), "s/cret");
        assert_eq!(config.prefix, None);
    }

    #[test]
    fn https_url_does_not_allow_http() {
        let config = StoreConfig::parse("https://s3.example.com/bkt/x").unwrap();
        assert!(!s3(&config).allow_http);
    }

    #[test]
    fn query_credentials_and_session_token() {
        let config = StoreConfig::parse(
            "s3://bkt?access_key_id=AK&secret_access_key=SK&session_token=TK&region=us-east-1",
        )
        .unwrap();
        let creds = s3(&config).credentials.clone().unwrap();
        assert_eq!(creds.session_token.unwrap().expose(), "TK");
    }

    #[test]
    fn memory_and_file() {
        assert_eq!(
            StoreConfig::parse("memory://").unwrap(),
            StoreConfig::memory()
        );
        let config = StoreConfig::parse("file:///tmp/data%20dir").unwrap();
        assert_eq!(config, StoreConfig::file("/tmp/data dir"));
    }

    #[test]
    fn non_ascii_prefix_is_decoded() {
        let config = StoreConfig::parse("s3://bkt/f%C3%B6tos").unwrap();
        assert_eq!(config.prefix, Some(Path::parse("fötos").unwrap()));
    }

    #[test]
    fn each_bad_field_gets_its_own_error() {
        let cases: [(&str, &str); 12] = [
            ("s3:///x", "bucket is empty"),
            ("http://localhost:9000/", "bucket is empty"),
            ("not a url", "not a valid URL"),
            ("ftp://host/bkt", "unknown scheme `ftp`"),
            ("s3://bkt?region=US%20East", "region `US East` is invalid"),
            ("s3://Bad_Bucket", "bucket `Bad_Bucket` is invalid"),
            ("s3://ab", "bucket `ab` is invalid"),
            ("s3://bkt?colour=red", "unknown parameter `colour`"),
            ("s3://bkt?allow_http=maybe", "parameter `allow_http`"),
            (
                "s3://bkt?access_key_id=AK",
                "`secret_access_key` is missing",
            ),
            ("s3://bkt?endpoint=http://u:p@h:1", "unencoded `@`"),
            (
                "s3://bkt?endpoint=http://u:p%40h:1",
                "endpoint must not hold credentials",
            ),
        ];
        for (input, expected) in cases {
            let err = StoreConfig::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn display_never_prints_endpoint_credentials() {
        let config = S3Config::new("bkt").with_endpoint("http://user:hunter2@minio:9000");
        let printed = StoreConfig::s3(config.clone()).to_string();
        assert_eq!(printed, "http://<redacted>@minio:9000/bkt");
        assert!(!format!("{config:?}").contains("hunter2"));
        // And such a configuration never becomes a store.
        let err = StoreConfig::s3(config).build().unwrap_err();
        assert!(
            matches!(err, ConnectionError::CredentialsInEndpoint),
            "{err}"
        );
    }

    #[test]
    fn missing_file_root_fails_at_build() {
        let err = StoreConfig::file("/definitely/not/here")
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConnectionError::InvalidFileRoot { .. }),
            "{err}"
        );
    }

    #[test]
    fn s3_builds_without_network() {
        let config = StoreConfig::parse("http://ak:sk@127.0.0.1:1/bucket/p?region=us-east-1");
        assert!(config.unwrap().build().is_ok());
    }

    /// Whether an error is the one expected.
    type Expected = fn(&ConnectionError) -> bool;

    #[test]
    fn strings_with_a_surprising_meaning_are_refused() {
        let cases: [(&str, Expected); 17] = [
            // Dot segments would change the bucket or the prefix.
            ("http://host:9000/bucket/../other", |e| {
                matches!(e, ConnectionError::DotSegment)
            }),
            ("http://host:9000/bucket/./x", |e| {
                matches!(e, ConnectionError::DotSegment)
            }),
            ("http://host:9000/bucket/%2e%2E/other", |e| {
                matches!(e, ConnectionError::DotSegment)
            }),
            ("s3://bucket/../../etc/passwd", |e| {
                matches!(e, ConnectionError::DotSegment)
            }),
            ("s3://bucket/a/.%2e/b", |e| {
                matches!(e, ConnectionError::DotSegment)
            }),
            ("file:///tmp/../etc", |e| {
                matches!(e, ConnectionError::DotSegment)
            }),
            ("memory:///../x", |e| {
                matches!(e, ConnectionError::DotSegment)
            }),
            ("memory://photos/2024", |e| {
                matches!(e, ConnectionError::MalformedUrl { .. })
            }),
            // Endpoints are http(s) only.
            ("s3://bucket?endpoint=ftp://x", |e| {
                matches!(e, ConnectionError::InvalidEndpoint { .. })
            }),
            ("s3://bucket?endpoint=file:///tmp", |e| {
                matches!(e, ConnectionError::InvalidEndpoint { .. })
            }),
            ("s3://bucket?endpoint=http://h:1/?x=1", |e| {
                matches!(e, ConnectionError::InvalidEndpoint { .. })
            }),
            // S3 refuses buckets named like IP addresses.
            ("s3://192.168.5.4", |e| {
                matches!(e, ConnectionError::InvalidBucket { .. })
            }),
            ("http://host:9000/10.0.0.1/prefix", |e| {
                matches!(e, ConnectionError::InvalidBucket { .. })
            }),
            // The filesystem root is not a store.
            ("file://", |e| {
                matches!(e, ConnectionError::InvalidFileRoot { .. })
            }),
            ("file:///", |e| {
                matches!(e, ConnectionError::InvalidFileRoot { .. })
            }),
            // A fragment would cut a credential short.
            ("s3://bucket?secret_access_key=a#b&access_key_id=k", |e| {
                matches!(e, ConnectionError::ReservedCharacter { character: '#', .. })
            }),
            // No scheme: the text before `:` must not be echoed as one.
            ("minio:minio123@127.0.0.1:9000/bucket", |e| {
                matches!(e, ConnectionError::MalformedUrl { .. })
            }),
        ];
        for (input, expected) in cases {
            let err = StoreConfig::parse(input).unwrap_err();
            assert!(expected(&err), "{input}: {err:?}");
        }
        // What still parses: dots inside names, and endpoints with a path.
        let ok = StoreConfig::parse("s3://my.bucket.1/a..b/.hidden/x.").unwrap();
        assert_eq!(ok.prefix, Some(Path::from("a..b/.hidden/x.")));
        let ok = StoreConfig::parse("s3://bkt?endpoint=https://proxy.example/s3").unwrap();
        assert_eq!(
            s3(&ok).endpoint.as_deref(),
            Some("https://proxy.example/s3")
        );
        assert!(StoreConfig::parse("s3://192.168.5").is_ok());
    }

    #[test]
    fn endpoints_are_checked_however_they_are_set() {
        for endpoint in [
            "http://AK:SK@host:9000",
            "http://AK:S/K@host:9000",
            "http://AK:S%2FK@host:9000",
            "https://AK@host",
            "ftp://host",
            "host:9000",
            "http://",
        ] {
            let config = S3Config::new("bucket").with_endpoint(endpoint);
            assert!(StoreConfig::s3(config).build().is_err(), "{endpoint}");
        }
    }

    #[test]
    fn a_plus_in_a_query_secret_stays_a_plus() {
        let config = StoreConfig::parse(
            "s3://bkt?access_key_id=AK%2B1&secret_access_key=a+b%2Bc/d&session_token=t+k",
        )
        .unwrap();
        let creds = s3(&config).credentials.clone().unwrap();
        assert_eq!(creds.access_key_id.expose(), "AK+1");
        assert_eq!(creds.secret_access_key.expose(), "a+b+c/d");
        assert_eq!(creds.session_token.unwrap().expose(), "t+k");
    }

    #[test]
    fn s3_buckets_follow_s3_naming_rules() {
        for bad in [
            "xn--bucket",
            "sthree-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
            "b.mrap",
            "1.2.3.4",
        ] {
            assert!(
                matches!(
                    validate_bucket(bad),
                    Err(ConnectionError::InvalidBucket { .. })
                ),
                "{bad}"
            );
        }
        for good in ["bucket", "my-bucket.2024", "1.2.3", "1.2.3.4.5", "a-b--c"] {
            assert!(validate_bucket(good).is_ok(), "{good}");
        }
    }
}
