//! [`BucketAdmin`]: what object_store cannot do — creating and deleting buckets — on
//! aws-sdk-s3 (feature `aws-sdk`).

use std::fmt;

use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::DisplayErrorContext;

use crate::config::{ConnectionError, S3Config};

/// A failed bucket operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} bucket `{bucket}` failed: {message}")]
pub struct AdminError {
    operation: &'static str,
    bucket: String,
    message: String,
}

impl AdminError {
    fn new(operation: &'static str, bucket: &str, error: impl std::error::Error) -> Self {
        AdminError {
            operation,
            bucket: bucket.to_owned(),
            message: DisplayErrorContext(error).to_string(),
        }
    }

    /// `"create"`, `"delete"` or `"head"`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// Bucket setup and teardown for S3 and S3-compatible servers (tests, provisioning), on
/// aws-sdk-s3 with path-style requests. Static credentials from the [`S3Config`] are
/// required; its bucket is the default for the `*_default` calls.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use s3_client::{BucketAdmin, Credentials, S3Config};
/// let config = S3Config::new("reports")
///     .with_endpoint("http://127.0.0.1:9000")
///     .with_credentials(Credentials::new("minio", "minio123"));
/// let admin = BucketAdmin::new(&config)?;
/// if !admin.bucket_exists("reports").await? {
///     admin.create_bucket("reports").await?;
/// }
/// # Ok(()) }
/// ```
pub struct BucketAdmin {
    client: aws_sdk_s3::Client,
}

impl BucketAdmin {
    /// A client for the endpoint, region and credentials of `config` (region default
    /// `us-east-1`).
    pub fn new(config: &S3Config) -> Result<Self, ConnectionError> {
        config.validate_endpoint()?;
        let credentials =
            config
                .credentials
                .as_ref()
                .ok_or(ConnectionError::IncompleteCredentials {
                    missing: "access_key_id",
                })?;
        let credentials = aws_sdk_s3::config::Credentials::new(
            credentials.access_key_id.expose(),
            credentials.secret_access_key.expose(),
            credentials
                .session_token
                .as_ref()
                .map(|token| token.expose().to_owned()),
            None,
            "s3pool",
        );
        let region = config
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_owned());
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(credentials)
            .force_path_style(!config.virtual_hosted_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(BucketAdmin {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
        })
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), AdminError> {
        self.client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map(drop)
            .map_err(|e| AdminError::new("create", bucket, e))
    }

    /// Deletes an (empty) bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), AdminError> {
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map(drop)
            .map_err(|e| AdminError::new("delete", bucket, e))
    }

    /// True if the bucket exists (and the credentials may see it).
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool, AdminError> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(error) => Err(AdminError::new("head", bucket, error)),
        }
    }
}

impl fmt::Debug for BucketAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketAdmin").finish_non_exhaustive()
    }
}
