//! Every object-store operation through an s3pool pool — on S3, MinIO and other
//! S3-compatible servers, in memory and on local files.
//!
//! - [`S3Client`]: put / get (whole or range) / head / delete / list / copy / multipart /
//!   delete-many / batches, each call a pool task with priority, retries, timeout and
//!   metadata (or `bypass_pool`); stats, pause / resume / drain / stop, `set_concurrency`.
//! - [`PooledStore`]: any `ObjectStore`, with every call through a pool, as an
//!   `ObjectStore` again.
//! - [`PoolGroup`]: one cap on in-flight requests across clients.
//! - [`StoreConfig`]: connection strings (`s3://`, `http(s)://` path-style, `memory://`,
//!   `file://`) with typed errors; credentials are [`Secret`]s, never printed.
//! - [`classify`]: S3 errors → throttled (503 SlowDown, 429) / retryable (5xx, timeouts,
//!   connection errors) / fatal (404, 403, 412, …). object_store's own retries are turned off
//!   (`S3Config::store_retries` = 0) so the pool's retry policy is the only one in charge.
//! - [`hedge`]: hedged reads and the three rules that keep them from adding load;
//!   [`integrity`]: which bytes a read checks (length always, a checksum where S3 keeps one).
//! - [`ChaosStore`]: seeded fault injection around any store, for tests and benches.
//! - `testing` (feature): an in-process S3 server with a 503 switch.
//! - `BucketAdmin` (feature `aws-sdk`): bucket creation and deletion on aws-sdk-s3.
//! - Features `metrics` and `tuning`: pool-metrics and pool-tuning's adaptive concurrency
//!   on the client's pool.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use object_store::path::Path;
//! use s3_client::S3ClientBuilder;
//!
//! // Or "s3://bucket/prefix?region=eu-west-1", "http://key:secret@127.0.0.1:9000/bucket", …
//! let client = S3ClientBuilder::from_url("memory://")?.concurrency(32).build()?;
//! client.put(&Path::from("a/1"), "one").await?;
//! client.put(&Path::from("a/2"), "two").priority(10).await?;
//! let body = client.get(&Path::from("a/2")).await?;
//! assert_eq!(&body[..], b"two");
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#[cfg(feature = "aws-sdk")]
mod admin;
mod batch;
mod body;
mod builder;
mod call;
mod chaos;
pub mod checksum;
mod classify;
mod client;
mod config;
mod dispatch;
mod error;
mod feature_hint;
mod group;
pub mod hedge;
pub mod integrity;
mod listing;
mod multipart;
mod object_body;
mod options;
mod pooled_store;
#[cfg(feature = "protection")]
#[cfg_attr(docsrs, doc(cfg(feature = "protection")))]
pub mod prefix;
#[cfg(feature = "protection")]
mod protection;
mod redact;
mod secret;
mod task_stream;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod transfer;

#[cfg(feature = "aws-sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-sdk")))]
pub use admin::{AdminError, BucketAdmin};
pub use batch::{ObjectBatch, ObjectBatchError, ObjectBatchResult};
pub use builder::{BuildError, S3ClientBuilder};
pub use call::Call;
pub use chaos::{ChaosConfig, ChaosConfigError, ChaosStats, ChaosStore, FaultKind, InjectedFault};
pub use checksum::{ChecksumAlgorithm, ChecksumConnector, ResponseChecksums};
pub use classify::{classify, http_status};
pub use client::{ControlError, S3Client};
pub use config::{Backend, ConnectionError, S3Config, StoreConfig};
pub use error::{ClientError, Operation, PoolFailure};
pub use group::{PoolGroup, ZeroGroupLimit};
pub use hedge::{HedgeConfig, HedgeStats};
pub use integrity::IntegrityError;
pub use object_body::ObjectBody;
pub use options::CallOptions;
pub use pooled_store::PooledStore;
pub use secret::{Credentials, Secret};
pub use transfer::{ProgressCallback, TransferProgress, TransferSummary};

// What the API above takes and returns, so that one dependency line is enough: the
// versions are the ones this crate is built with, always in step.
pub use bytes::{self, Bytes};
pub use futures;
pub use object_store::{self, path::Path, ObjectMeta, ObjectStore, PutPayload, PutResult};
pub use pool_core::{
    self, Batch, BatchError, BatchResult, CancellationToken, ConfigError, ErrorClass, Metadata,
    Observer, Pool, PoolBuilder, Retryable, Stats, TaskError,
};
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use pool_metrics;
#[cfg(feature = "tuning")]
#[cfg_attr(docsrs, doc(cfg(feature = "tuning")))]
pub use pool_tuning;

/// The names most programs need, and the stream methods (`next`, `try_collect`, …) that
/// [`S3Client::list`]'s stream is used with: `use s3_client::prelude::*;`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use s3_client::prelude::*;
///
/// let client = S3Client::from_url("memory://")?;
/// client.put(&Path::from("logs/1"), Bytes::from_static(b"one")).await?;
/// let mut listing = client.list(Some(&Path::from("logs")));
/// while let Some(meta) = listing.next().await {
///     assert_eq!(meta?.location, Path::from("logs/1"));
/// }
/// # Ok(()) }
/// ```
pub mod prelude {
    pub use crate::{
        Bytes, CallOptions, ClientError, ErrorClass, Metadata, ObjectMeta, Path, PutPayload,
        S3Client, S3ClientBuilder,
    };
    pub use futures::{StreamExt as _, TryStreamExt as _};
}
