//! Why a connection string or store configuration was refused.

/// A connection string or store setting that cannot work. Each variant names the field;
/// none of them echoes a credential.
///
/// Not `Clone`: [`ConnectionError::Store`] owns object_store's builder error, which is not
/// `Clone`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The string is not a URL at all.
    #[error("connection string is not a valid URL: {reason}")]
    MalformedUrl {
        /// What the URL parser said (never the input, which may hold credentials).
        reason: String,
    },
    /// The scheme is none of `s3`, `http`, `https`, `memory`, `file`.
    #[error(
        "unknown scheme `{scheme}` in connection string (expected s3, s3a, http, https, memory \
         or file)"
    )]
    UnknownScheme {
        /// The scheme given.
        scheme: String,
    },
    /// No bucket: `s3://` without a host, or `http://host:port/` without a first path segment.
    #[error("bucket is empty: write s3://BUCKET/prefix or http(s)://host:port/BUCKET/prefix")]
    EmptyBucket,
    /// The bucket name breaks S3's naming rules.
    #[error("bucket `{bucket}` is invalid: {reason}")]
    InvalidBucket {
        /// The bucket given.
        bucket: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The region is not a region name (lowercase letters, digits and dashes, e.g. `us-east-1`).
    #[error("region `{region}` is invalid: expected lowercase letters, digits and dashes, like us-east-1")]
    InvalidRegion {
        /// The region given.
        region: String,
    },
    /// A query parameter this crate does not know.
    #[error("unknown parameter `{name}` in connection string (known: region, endpoint, access_key_id, secret_access_key, session_token, allow_http, virtual_hosted_style)")]
    UnknownParameter {
        /// The parameter's name.
        name: String,
    },
    /// A parameter with a value it cannot take.
    #[error("parameter `{name}` has an invalid value: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong (never the value of a secret).
        reason: String,
    },
    /// Half a key pair: an access key id without a secret access key, or the reverse.
    #[error("credentials are incomplete: `{missing}` is missing")]
    IncompleteCredentials {
        /// The field that is missing.
        missing: &'static str,
    },
    /// A character that would change what the string means unless percent-encoded: a `#`
    /// anywhere, or a `@` after the host (a credential holding `/`, `?` or `#` unencoded ends
    /// the host early, leaving its `@` behind).
    #[error("an unencoded `{character}` in the connection string {reason}")]
    ReservedCharacter {
        /// The character.
        character: char,
        /// What it would do, and how to write it instead.
        reason: &'static str,
    },
    /// A `.` or `..` path segment (also percent-encoded): it would silently change which
    /// bucket or prefix the string names.
    #[error(
        "path segments `.` and `..` are refused: they would change which bucket or prefix \
         the connection string names"
    )]
    DotSegment,
    /// An endpoint holding credentials (`http://key:secret@host`). An endpoint is printed
    /// and logged; credentials belong in `access_key_id` / `secret_access_key` (or
    /// [`S3Config::with_credentials`](crate::S3Config::with_credentials)).
    #[error(
        "the endpoint must not hold credentials: give them as access_key_id and \
         secret_access_key (the endpoint is printed and logged)"
    )]
    CredentialsInEndpoint,
    /// An endpoint that is not `http(s)://host[:port][/path]`.
    #[error("the endpoint is invalid: {reason}")]
    InvalidEndpoint {
        /// What is wrong (never the endpoint itself).
        reason: String,
    },
    /// `file://` with a host, or a root that is not an existing directory.
    #[error("file root `{root}` is not usable: {reason}")]
    InvalidFileRoot {
        /// The root given.
        root: String,
        /// Why.
        reason: String,
    },
    /// object_store refused the configuration (its error is the source).
    #[error("the object store could not be built")]
    Store(#[source] object_store::Error),
}
