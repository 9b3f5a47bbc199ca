//! S3's published request rates per prefix, as keys and limits for a per-key rate limit
//! (feature `protection`).
//!
//! S3 scales to at least 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second
//! per partitioned prefix, and answers `503 SlowDown` above what a prefix has scaled to. A
//! limiter keyed by (prefix, read or write) keeps each prefix under its rate, and, adaptive,
//! halves a prefix's rate on SlowDown and brings it back gradually.
//!
//! [`S3ClientBuilder::prefix_rate_limits`](crate::S3ClientBuilder::prefix_rate_limits) builds
//! such a limiter for this process ([`local_limiter`]); a limit kept elsewhere takes the same
//! keys and limits, e.g. pool-redis' `RedisRateLimiter`, shared by every process writing to
//! the bucket:
//!
//! ```ignore
//! use pool_core::policy::Aimd;
//! use s3_client::prefix::{s3_prefix_key, S3PrefixKey};
//! let shared = pool_redis::RedisRateLimiter::builder(
//!     "redis://127.0.0.1:6379",
//!     "my-bucket",
//!     |task| s3_prefix_key(task, 1),
//!     S3PrefixKey::published_limit,
//! )
//! .adaptive(Aimd::default())
//! .connect()
//! .await?;
//! let client = S3Client::builder(store).prefix_rate_limiter(shared).build()?;
//! ```

use std::fmt;
use std::sync::Arc;

use pool_core::policy::{Aimd, KeyedRateLimiter, KeyedRateLimiterBuilder, RateLimit};
use pool_core::{Executor, TaskInfo};

use crate::error::Operation;

/// Writes (PUT, COPY, POST, DELETE) per second per prefix that S3 supports.
pub const S3_WRITES_PER_PREFIX: f64 = 3_500.0;
/// Reads (GET, HEAD) per second per prefix that S3 supports.
pub const S3_READS_PER_PREFIX: f64 = 5_500.0;

/// Which of S3's per-prefix budgets a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S3RequestClass {
    /// GET, HEAD, LIST.
    Read,
    /// PUT, COPY, POST, DELETE.
    Write,
}

impl S3RequestClass {
    /// The budget an operation draws on: reads for gets, heads, listings and downloads (its
    /// ranged GETs), writes for the rest.
    pub fn of(operation: Operation) -> Self {
        match operation {
            Operation::Get | Operation::Head | Operation::List | Operation::Download => {
                S3RequestClass::Read
            }
            Operation::Put
            | Operation::PutMultipart
            | Operation::UploadPart
            | Operation::Delete
            | Operation::DeleteMany
            | Operation::Copy
            | Operation::Upload => S3RequestClass::Write,
        }
    }

    /// The budget of a task labelled `op` (an [`Operation`]'s name in any case, as this crate
    /// labels its calls); a label of anything else draws on writes, the smaller budget.
    pub fn of_label(op: &str) -> Self {
        Operation::from_label(op).map_or(S3RequestClass::Write, Self::of)
    }

    /// S3's published rate for this class, requests per second.
    pub fn published_rate(self) -> f64 {
        match self {
            S3RequestClass::Read => S3_READS_PER_PREFIX,
            S3RequestClass::Write => S3_WRITES_PER_PREFIX,
        }
    }

    /// S3's published rate as a limit, with a tenth of a second's worth of burst.
    pub fn published_limit(self) -> RateLimit {
        let rate = self.published_rate();
        RateLimit::new(rate, (rate / 10.0) as u32).expect("S3's published rates are valid limits")
    }
}

/// The key of a per-prefix limit. Shown as `read:photos/` or `write:photos/` (the name a
/// limiter kept outside this process, such as pool-redis', stores it under).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3PrefixKey {
    /// The first `depth` `/`-separated segments of the object key, with their slashes
    /// (`"photos/2024/"` at depth 2); `""` at depth 0 (the whole bucket).
    pub prefix: String,
    /// Read or write.
    pub class: S3RequestClass,
}

impl S3PrefixKey {
    /// S3's published limit for this key's class (what a per-prefix limiter gives each key).
    pub fn published_limit(&self) -> RateLimit {
        self.class.published_limit()
    }
}

impl fmt::Display for S3PrefixKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            S3RequestClass::Read => "read",
            S3RequestClass::Write => "write",
        };
        write!(f, "{class}:{}", self.prefix)
    }
}

/// The first `depth` segments of `key`, each with its trailing `/`; all of `key` if it has
/// fewer.
///
/// ```
/// use s3_client::prefix::key_prefix;
/// assert_eq!(key_prefix("photos/2024/a.jpg", 1), "photos/");
/// assert_eq!(key_prefix("photos/2024/a.jpg", 2), "photos/2024/");
/// assert_eq!(key_prefix("photos/2024/a.jpg", 9), "photos/2024/a.jpg");
/// assert_eq!(key_prefix("a.jpg", 0), "");
/// ```
pub fn key_prefix(key: &str, depth: usize) -> &str {
    if depth == 0 {
        return "";
    }
    match key.match_indices('/').nth(depth - 1) {
        Some((slash, _)) => &key[..=slash],
        None => key,
    }
}

/// The per-prefix key of a task from the labels this crate gives its calls (`"op"` and
/// `"key"`); `None` (not limited) without a `"key"` label.
pub fn s3_prefix_key(task: &TaskInfo, depth: usize) -> Option<S3PrefixKey> {
    let key = task.metadata.get("key")?;
    let class = task
        .metadata
        .get("op")
        .map_or(S3RequestClass::Write, S3RequestClass::of_label);
    Some(S3PrefixKey {
        prefix: key_prefix(key, depth).to_owned(),
        class,
    })
}

/// Per-prefix limits kept in this process, at S3's published rates, keyed by
/// [`s3_prefix_key`] at `depth`, adaptive with [`Aimd::default`]. Adjust with the builder,
/// then `build()`.
///
/// ```
/// use std::sync::Arc;
/// use pool_core::{Executor, TokioExecutor};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
/// let limiter = s3_client::prefix::local_limiter(executor, 1).build().unwrap();
/// # let _ = limiter;
/// # }
/// ```
pub fn local_limiter(
    executor: Arc<dyn Executor>,
    depth: usize,
) -> KeyedRateLimiterBuilder<S3PrefixKey> {
    KeyedRateLimiter::builder(
        executor,
        move |task: &TaskInfo| s3_prefix_key(task, depth),
        S3PrefixKey::published_limit,
    )
    .adaptive(Aimd::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_core::{Metadata, TaskId};

    fn task(op: Option<&str>, key: &str) -> TaskInfo {
        let mut metadata = Metadata::new().with("key", key.to_owned());
        if let Some(op) = op {
            metadata = metadata.with("op", op.to_owned());
        }
        TaskInfo::new(TaskId(0)).with_metadata(metadata)
    }

    #[test]
    fn every_operation_label_draws_on_its_budget() {
        for (op, class) in [
            (Operation::Get, S3RequestClass::Read),
            (Operation::Head, S3RequestClass::Read),
            (Operation::List, S3RequestClass::Read),
            (Operation::Download, S3RequestClass::Read),
            (Operation::Put, S3RequestClass::Write),
            (Operation::UploadPart, S3RequestClass::Write),
            (Operation::Copy, S3RequestClass::Write),
            (Operation::DeleteMany, S3RequestClass::Write),
        ] {
            let key = s3_prefix_key(&task(Some(op.as_str()), "photos/a.jpg"), 1).unwrap();
            assert_eq!(key.class, class, "{op}");
            assert_eq!(key.prefix, "photos/");
        }
        let unlabelled = s3_prefix_key(&task(None, "a"), 1).unwrap();
        assert_eq!(unlabelled.class, S3RequestClass::Write);
        let shouted = s3_prefix_key(&task(Some("GET"), "a"), 1).unwrap();
        assert_eq!(shouted.class, S3RequestClass::Read);
        let own = s3_prefix_key(&task(Some("thumbnail"), "a"), 1).unwrap();
        assert_eq!(own.class, S3RequestClass::Write, "a caller's own label");
    }

    #[test]
    fn published_limits_burst_a_tenth_of_a_second() {
        let limit = S3RequestClass::Write.published_limit();
        assert_eq!((limit.per_second(), limit.burst()), (3_500.0, 350));
    }
}
