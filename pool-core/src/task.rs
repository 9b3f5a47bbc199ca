//! What a caller says about one task: identity, options, metadata, and how its errors classify.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::tenant::Tenant;

/// A task's id, unique within its pool, assigned in enqueue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// User labels carried from `enqueue` into events, metrics and task records.
///
/// Cheap to clone (one `Arc`). Keys and values are `Cow<'static, str>`: a string literal
/// is kept as it is and a `String` is moved in, so labelling a task allocates only for the
/// text that is not already owned (a borrowed `&str` that is not `'static` is copied by the
/// caller, `.to_owned()`).
///
/// ```
/// use pool_core::Metadata;
/// let key = String::from("photos/1.jpg");
/// let meta = Metadata::new().with("op", "put").with("key", key);
/// assert_eq!(meta.get("op"), Some("put"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    // `None` when empty, so tasks without labels cost no allocation.
    labels: Option<Arc<Vec<(Label, Label)>>>,
}

/// A label's key or value.
type Label = Cow<'static, str>;

impl Metadata {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a label.
    pub fn with(mut self, key: impl Into<Label>, value: impl Into<Label>) -> Self {
        let key = key.into();
        let value = value.into();
        let labels = Arc::make_mut(self.labels.get_or_insert_with(Default::default));
        match labels.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => labels.push((key, value)),
        }
        self
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// All labels, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels
            .iter()
            .flat_map(|labels| labels.iter())
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// True if there are no labels.
    pub fn is_empty(&self) -> bool {
        self.labels.as_ref().is_none_or(|labels| labels.is_empty())
    }
}

impl<K: Into<Label>, V: Into<Label>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Metadata::new(), |meta, (k, v)| meta.with(k, v))
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

/// Per-task settings. Unset fields take the pool's defaults (see [`PoolBuilder`](crate::PoolBuilder)).
///
/// ```
/// use std::time::Duration;
/// use pool_core::TaskOptions;
/// let opts = TaskOptions::new().priority(5).retries(1).timeout(Duration::from_secs(2));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    pub(crate) priority: i32,
    pub(crate) retries: Option<u32>,
    pub(crate) timeout: Option<Option<Duration>>,
    pub(crate) metadata: Metadata,
    pub(crate) cancellation: Option<CancellationToken>,
    pub(crate) tenant: Option<Tenant>,
    pub(crate) deadline: Option<Instant>,
}

impl TaskOptions {
    /// Defaults: priority 0, the pool's retries and timeout, no metadata, no cancellation,
    /// no tenant, no deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use pool_core::{CancellationToken, Pool, TaskError, TaskOptions};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// let token = CancellationToken::new();
    /// let options = TaskOptions::new()
    ///     .priority(5) // ahead of priority-0 work
    ///     .retries(1)
    ///     .timeout(Duration::from_secs(2))
    ///     .cancellation(token.clone());
    /// assert_eq!((options.priority_value(), options.retries_value()), (5, Some(1)));
    /// pool.pause();
    /// let handle = pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, options);
    /// token.cancel(); // a queued task leaves the queue
    /// assert!(matches!(handle.await, Err(TaskError::Cancelled)));
    /// # }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Higher runs first. Default 0. Equal priorities run in enqueue order.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use pool_core::{Pool, TaskOptions};
    ///
    /// let pool = Pool::builder().concurrency(1).build().unwrap();
    /// let order = Arc::new(Mutex::new(Vec::new()));
    /// pool.pause();
    /// let handles: Vec<_> = [(0, "low"), (9, "urgent"), (0, "low too")]
    ///     .into_iter()
    ///     .map(|(priority, name)| {
    ///         let order = Arc::clone(&order);
    ///         let task = move || {
    ///             order.lock().unwrap().push(name);
    ///             async { Ok::<_, std::io::Error>(()) }
    ///         };
    ///         pool.enqueue(task, TaskOptions::new().priority(priority))
    ///     })
    ///     .collect();
    /// pool.resume();
    /// for handle in handles {
    ///     handle.await.unwrap();
    /// }
    /// assert_eq!(*order.lock().unwrap(), ["urgent", "low", "low too"]);
    /// # }
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// How many times a failed attempt may be retried (so at most `retries + 1` attempts).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Per-attempt timeout for this task.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(Some(timeout));
        self
    }

    /// No timeout for this task, whatever the pool's default.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = Some(None);
        self
    }

    /// Labels carried into events and metrics.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Whose share of the pool this task starts from: within a priority level, tenants take
    /// turns in proportion to their weights (see [`PoolBuilder::tenant`](crate::PoolBuilder::tenant)
    /// and the [`Tenant`] docs). Default: none — tasks that name no tenant share the turns
    /// of one tenant of their own, with [`PoolBuilder::tenant_defaults`](crate::PoolBuilder::tenant_defaults).
    /// Any key is allowed; tenants not configured on the builder get the defaults.
    pub fn tenant(mut self, tenant: impl Into<Tenant>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The moment by which the task must have resolved, on the pool's clock
    /// ([`Pool::now`](crate::Pool::now)). Past it the task resolves
    /// [`TaskError::DeadlineExceeded`](crate::TaskError::DeadlineExceeded): a task still
    /// waiting (queued, in retry backoff, waiting for a retry-budget token, deferred, waiting
    /// for admission) never starts, so
    /// no request is wasted on an answer nobody awaits; a running attempt is cut (each
    /// attempt's timeout is capped by the time left); no retry is scheduled to start past
    /// it. See also [`PoolBuilder::earliest_deadline_first`](crate::PoolBuilder::earliest_deadline_first)
    /// and [`PoolBuilder::shed_doomed`](crate::PoolBuilder::shed_doomed).
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Cancelling this token resolves the task with [`TaskError::Cancelled`](crate::TaskError):
    /// a queued task leaves the queue, a running attempt is dropped.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancellation = Some(token);
        self
    }

    /// No cancellation token (one set before is forgotten).
    pub fn no_cancellation(mut self) -> Self {
        self.cancellation = None;
        self
    }

    /// The priority set (0 unless set).
    pub fn priority_value(&self) -> i32 {
        self.priority
    }

    /// The retries set; `None`: the pool's.
    pub fn retries_value(&self) -> Option<u32> {
        self.retries
    }

    /// The timeout set: `None`, the pool's; `Some(None)`, none at all.
    pub fn timeout_value(&self) -> Option<Option<Duration>> {
        self.timeout
    }

    /// The labels set.
    pub fn metadata_value(&self) -> &Metadata {
        &self.metadata
    }

    /// The cancellation token set, if any.
    pub fn cancellation_value(&self) -> Option<&CancellationToken> {
        self.cancellation.as_ref()
    }

    /// The tenant set, if any.
    pub fn tenant_value(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}

/// How a failed attempt classifies: whether it may be retried, and whether it is a sign
/// that the backend is throttling (which an adaptive tuner treats as a strong signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ErrorClass {
    /// Transient: retry with backoff (e.g. a 500 or a dropped connection).
    Retryable,
    /// The backend said "slow down" (e.g. S3's 503 SlowDown, HTTP 429). Retryable.
    Throttled,
    /// Permanent: retrying cannot help (e.g. 404, 403). Fails at once.
    Fatal,
}

impl ErrorClass {
    /// Every class's [`kind`](Self::kind), in the order of [`index`](Self::index): a table
    /// indexed by class (metrics) stays complete when a class is added.
    pub const KINDS: [&'static str; 3] = ["retryable", "throttled", "fatal"];

    /// A short, stable name (`"retryable"`, `"throttled"`, `"fatal"`) for metrics labels.
    pub fn kind(self) -> &'static str {
        Self::KINDS[self.index()]
    }

    /// Where [`kind`](Self::kind) stands in [`ErrorClass::KINDS`].
    pub fn index(self) -> usize {
        match self {
            ErrorClass::Retryable => 0,
            ErrorClass::Throttled => 1,
            ErrorClass::Fatal => 2,
        }
    }

    /// True for [`Retryable`](Self::Retryable) and [`Throttled`](Self::Throttled).
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Fatal)
    }
}

/// "The error type says whether it is retryable": implement this for your error type to use
/// [`Pool::enqueue`](crate::Pool::enqueue). For types you don't own, pass a closure to
/// [`Pool::enqueue_with`](crate::Pool::enqueue_with) instead.
pub trait Retryable {
    /// How this error classifies.
    fn error_class(&self) -> ErrorClass;
}

/// An I/O error is retried when its kind says the operation may succeed if tried again:
///
/// | [`io::ErrorKind`](std::io::ErrorKind) | class |
/// |---|---|
/// | `TimedOut`, `Interrupted`, `WouldBlock`, `ConnectionReset`, `ConnectionAborted`, `ConnectionRefused`, `BrokenPipe`, `UnexpectedEof`, `NotConnected` | [`ErrorClass::Retryable`] |
/// | every other kind (`NotFound`, `PermissionDenied`, `InvalidInput`, `InvalidData`, `Other`, …) | [`ErrorClass::Fatal`] |
///
/// None is [`ErrorClass::Throttled`]: an I/O error cannot say "slow down". Wrap an error in
/// [`Transient`] or [`Permanent`] to decide otherwise, or classify with a closure
/// ([`Pool::enqueue_with`](crate::Pool::enqueue_with)).
///
/// ```
/// use std::io::{Error, ErrorKind};
/// use pool_core::{ErrorClass, Retryable};
/// assert_eq!(Error::from(ErrorKind::ConnectionReset).error_class(), ErrorClass::Retryable);
/// assert_eq!(Error::from(ErrorKind::NotFound).error_class(), ErrorClass::Fatal);
/// assert_eq!(Error::other("anything else").error_class(), ErrorClass::Fatal);
/// ```
impl Retryable for std::io::Error {
    fn error_class(&self) -> ErrorClass {
        use std::io::ErrorKind::*;
        match self.kind() {
            TimedOut | Interrupted | WouldBlock | ConnectionReset | ConnectionAborted
            | ConnectionRefused | BrokenPipe | UnexpectedEof | NotConnected => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Fatal,
        }
    }
}

impl Retryable for std::convert::Infallible {
    fn error_class(&self) -> ErrorClass {
        match *self {}
    }
}

/// Wraps any error to mark it retryable (transient).
///
/// Transparent: it prints as the wrapped error and hands on the wrapped error's own
/// [`source`](std::error::Error::source), so a chain reads as if the wrapper were not there.
/// It is a `std::error::Error` when `E` is one (and `Display` when `E` is).
///
/// ```
/// use std::error::Error;
/// use pool_core::Transient;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("upload failed")]
/// struct UploadError(#[source] std::io::Error);
///
/// let error = Transient(UploadError(std::io::Error::other("connection reset")));
/// assert_eq!(error.to_string(), "upload failed");
/// assert_eq!(error.source().unwrap().to_string(), "connection reset");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct Transient<E>(pub E);

impl<E> Retryable for Transient<E> {
    fn error_class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
}

/// Wraps any error to mark it permanent (never retried).
///
/// Transparent, like [`Transient`]: it prints as the wrapped error and hands on its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct Permanent<E>(pub E);

impl<E> Retryable for Permanent<E> {
    fn error_class(&self) -> ErrorClass {
        ErrorClass::Fatal
    }
}
