//! [`StoreConfig`]: a typed connection string.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder, S3CopyIfNotExists};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use super::ConnectionError;
use crate::secret::Credentials;

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
/// them. The credentials are redacted in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets an endpoint (and allows plain HTTP when it starts with `http://`).
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

    fn build(&self) -> Result<AmazonS3, ConnectionError> {
        let retry = RetryConfig {
            max_retries: self.store_retries,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::from_env()
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
        if let Some(credentials) = &self.credentials {
            builder = builder
                .with_access_key_id(credentials.access_key_id.expose())
                .with_secret_access_key(credentials.secret_access_key.expose());
            if let Some(token) = &credentials.session_token {
                builder = builder.with_token(token.expose());
            }
        }
        builder.build().map_err(ConnectionError::Store)
    }
}

/// Where a client's objects live: a backend and an optional key prefix.
///
/// Parse one from a connection string:
///
/// | string | backend |
/// |---|---|
/// | `s3://bucket/prefix?region=eu-west-1` | S3; credentials from the environment or the query |
/// | `http(s)://[key:secret@]host:port/bucket/prefix` | MinIO or any S3-compatible server, path-style |
/// | `memory://` | in-memory |
/// | `file:///abs/dir` | local files under `/abs/dir` |
///
/// Query parameters: `region`, `endpoint`, `access_key_id`, `secret_access_key`,
/// `session_token`, `allow_http`, `virtual_hosted_style`. Any other is an error, as is a bad
/// bucket or region; each error names the field. `Display` prints the string back without
/// credentials.
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

    /// Parses a connection string (see the type's docs for the forms).
    pub fn parse(input: &str) -> Result<Self, ConnectionError> {
        let url = Url::parse(input).map_err(|e| ConnectionError::MalformedUrl {
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "memory" => {
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
                        without_userinfo(endpoint).trim_end_matches('/'),
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

/// An endpoint fit for printing: any `user:password@` removed.
fn without_userinfo(endpoint: &str) -> String {
    match Url::parse(endpoint) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            // Both setters only fail for URLs that cannot have credentials at all.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => endpoint.to_owned(),
    }
}

fn object_scheme(url: &Url) -> Result<(ObjectStoreScheme, Path), ConnectionError> {
    ObjectStoreScheme::parse(url).map_err(|e| ConnectionError::MalformedUrl {
        reason: e.to_string(),
    })
}

fn parse_file(url: &Url) -> Result<StoreConfig, ConnectionError> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || url.query().is_some() {
        return Err(ConnectionError::InvalidFileRoot {
            root: url.path().to_owned(),
            reason: "expected file:///absolute/path, without host or query".to_owned(),
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
    for (name, value) in url.query_pairs() {
        let value = value.into_owned();
        match name.as_ref() {
            "region" => config.region = Some(value),
            "endpoint" => {
                let endpoint =
                    Url::parse(&value).map_err(|e| ConnectionError::InvalidParameter {
                        name: "endpoint",
                        reason: e.to_string(),
                    })?;
                // Keeps secrets out of the endpoint, which is printed and logged.
                if !endpoint.username().is_empty() || endpoint.password().is_some() {
                    return Err(ConnectionError::InvalidParameter {
                        name: "endpoint",
                        reason: "must not hold credentials; use access_key_id and \
                                 secret_access_key"
                            .to_owned(),
                    });
                }
                *config = config.clone().with_endpoint(value);
            }
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

fn percent_decode(text: &str, field: &'static str) -> Result<String, ConnectionError> {
    // `url` keeps userinfo and path segments percent-encoded; form decoding of a lone
    // value is the same minus `+`, which is not special outside queries.
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
        let cases: [(&str, &str); 11] = [
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
            ("s3://bkt?endpoint=http://u:p@h:1", "parameter `endpoint`"),
        ];
        for (input, expected) in cases {
            let err = StoreConfig::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn display_never_prints_endpoint_credentials() {
        let config = S3Config::new("bkt").with_endpoint("http://user:hunter2@minio:9000");
        let printed = StoreConfig::s3(config).to_string();
        assert_eq!(printed, "http://minio:9000/bkt");
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
}
