//! S3's published request rates per prefix, as keys and limits for a [`KeyedRateLimiter`].
//!
//! S3 scales to at least 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second
//! per partitioned prefix, and answers `503 SlowDown` above what a prefix has scaled to. A
//! limiter keyed by (prefix, read or write) keeps each prefix under its rate, and, adaptive,
//! halves a prefix's rate on SlowDown and brings it back gradually.

use std::fmt;
use std::sync::Arc;

use super::aimd::Aimd;
use super::keyed_rate_limit::{KeyedRateLimiter, KeyedRateLimiterBuilder};
use super::rate_limit::RateLimit;
use crate::executor::Executor;
use crate::observer::TaskInfo;

/// Writes (PUT, COPY, POST, DELETE) per second per prefix that S3 supports.
pub const S3_WRITES_PER_PREFIX: f64 = 3_500.0;
/// Reads (GET, HEAD) per second per prefix that S3 supports.
pub const S3_READS_PER_PREFIX: f64 = 5_500.0;

/// Which of S3's per-prefix budgets a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S3RequestClass {
    /// GET, HEAD, LIST.
    Read,
    /// PUT, COPY, POST, DELETE, and anything else.
    Write,
}

impl S3RequestClass {
    /// The class of an operation name as s3-client labels it (`"get"`, `"head"`, `"list"`
    /// read; anything else writes).
    pub fn of_operation(operation: &str) -> Self {
        match operation.to_ascii_lowercase().as_str() {
            "get" | "head" | "list" | "get_range" | "get_ranges" => S3RequestClass::Read,
            _ => S3RequestClass::Write,
        }
    }

    /// S3's published rate for this class.
    pub fn published_rate(self) -> f64 {
        match self {
            S3RequestClass::Read => S3_READS_PER_PREFIX,
            S3RequestClass::Write => S3_WRITES_PER_PREFIX,
        }
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
/// use pool_core::policy::key_prefix;
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

/// The per-prefix key of a task from its labels `"op"` and `"key"` (as s3-client sets them);
/// `None` (not limited) without a `"key"` label.
pub fn s3_prefix_key(task: &TaskInfo, depth: usize) -> Option<S3PrefixKey> {
    let key = task.metadata.get("key")?;
    let class = S3RequestClass::of_operation(task.metadata.get("op").unwrap_or("put"));
    Some(S3PrefixKey {
        prefix: key_prefix(key, depth).to_owned(),
        class,
    })
}

impl KeyedRateLimiter<S3PrefixKey> {
    /// Per-prefix limits at S3's published rates (burst: a tenth of a second's worth), keyed
    /// by [`s3_prefix_key`] at `depth`, adaptive with [`Aimd::default`]. Adjust with the
    /// builder, then `build()`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pool_core::policy::{KeyedRateLimiter, S3PrefixKey, S3RequestClass};
    /// use pool_core::{Executor, SimExecutor};
    /// let executor: Arc<dyn Executor> = Arc::new(SimExecutor::new());
    /// let limiter = KeyedRateLimiter::s3_prefixes(executor, 1).build().unwrap();
    /// # let _ = limiter;
    /// ```
    pub fn s3_prefixes(
        executor: Arc<dyn Executor>,
        depth: usize,
    ) -> KeyedRateLimiterBuilder<S3PrefixKey> {
        KeyedRateLimiter::builder(
            executor,
            move |task: &TaskInfo| s3_prefix_key(task, depth),
            |key: &S3PrefixKey| s3_limit(key.class),
        )
        .adaptive(Aimd::default())
    }
}

fn s3_limit(class: S3RequestClass) -> RateLimit {
    let rate = class.published_rate();
    RateLimit::new(rate, (rate / 10.0) as u32).expect("S3's published rates are valid limits")
}
