//! [`CallOptions`]: what one call says about itself (priority, retries, timeout, labels,
//! whether to skip the pool).

use std::time::{Duration, Instant};

use pool_core::{CancellationToken, Metadata, Pool, TaskOptions, Tenant};

use crate::transfer::{ProgressCallback, TransferProgress};

/// Per-call settings. Unset fields take the client's pool defaults.
///
/// With [`S3Client`](crate::S3Client) set them on the call itself
/// (`client.get(&path).priority(5).await`); with [`PooledStore`](crate::PooledStore) put a
/// `CallOptions` in the `extensions` of `PutOptions`, `GetOptions`, `CopyOptions` or
/// `PutMultipartOptions`.
///
/// ```
/// use std::time::Duration;
/// use pool_core::Metadata;
/// use s3_client::CallOptions;
/// let urgent = CallOptions::new()
///     .priority(10)
///     .retries(5)
///     .timeout(Duration::from_secs(5))
///     .metadata(Metadata::new().with("tenant", "acme"));
/// # let _ = urgent;
/// ```
///
/// The pool's part is a [`TaskOptions`] (the setters here are its own, for one chain of
/// calls); [`CallOptions::from`] a `TaskOptions` takes one whole.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub(crate) task: TaskOptions,
    pub(crate) bypass_pool: bool,
    pub(crate) release_slot_at_response: bool,
    pub(crate) progress: Option<ProgressCallback>,
}

impl CallOptions {
    /// Defaults: priority 0, the pool's retries and timeout, no labels, through the pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Higher runs first. Default 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.task = self.task.priority(priority);
        self
    }

    /// Retries after the first attempt. Default: the pool's (3).
    pub fn retries(mut self, retries: u32) -> Self {
        self.task = self.task.retries(retries);
        self
    }

    /// Per-attempt timeout. Default: the pool's (30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.task = self.task.timeout(timeout);
        self
    }

    /// No timeout for this call.
    pub fn no_timeout(mut self) -> Self {
        self.task = self.task.no_timeout();
        self
    }

    /// Labels carried into the pool's events and metrics. The client adds `op` (the
    /// operation) and `key` (the path) unless given here.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.task = self.task.metadata(metadata);
        self
    }

    /// Cancelling the token resolves the call with `Cancelled`.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.task = self.task.cancellation(token);
        self
    }

    /// By when the call must have resolved, on the pool's clock
    /// ([`Pool::now`](pool_core::Pool::now)): past it the call resolves with
    /// [`TaskError::DeadlineExceeded`](pool_core::TaskError::DeadlineExceeded) — a request
    /// still waiting is never sent, a running attempt is cut, no retry starts past it (see
    /// [`TaskOptions::deadline`]). Every request of the call (a hedge, a download's ranges)
    /// has the same deadline. Default: none.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.task = self.task.deadline(deadline);
        self
    }

    /// Whose share of the pool the call's requests start from (see
    /// [`TaskOptions::tenant`]). Default: none.
    pub fn tenant(mut self, tenant: impl Into<Tenant>) -> Self {
        self.task = self.task.tenant(tenant);
        self
    }

    /// Calls the store directly: no queue, no concurrency limit, no pool retries or timeout
    /// (a [`PoolGroup`](crate::PoolGroup) cap still applies).
    pub fn bypass_pool(mut self) -> Self {
        self.bypass_pool = true;
        self
    }

    /// A pooled GET frees its slot as soon as the response starts, and its body streams
    /// outside the pool's limit (not resumed if it breaks). By default the slot is held
    /// until the body has been read to its end or dropped, so the limit bounds the bodies
    /// open at once, and a broken body is resumed from its last byte.
    ///
    /// Reading a held body is what frees its slot: code that opens more bodies than the
    /// limit before reading any of them waits forever. Use this for such code.
    pub fn release_slot_at_response(mut self) -> Self {
        self.release_slot_at_response = true;
        self
    }

    /// Calls `progress` as a transfer (`download_to`, `upload_from`) moves bytes: after each
    /// range or part, with the bytes done so far and the bytes moved again by retries.
    pub fn on_progress(
        mut self,
        progress: impl Fn(TransferProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(ProgressCallback::new(progress));
        self
    }

    /// The pool's options for this call, labelled with `op` and `key` unless the caller
    /// labelled them.
    pub(crate) fn task_options(&self, operation: &'static str, key: &str) -> TaskOptions {
        let mut metadata = self.task.metadata_value().clone();
        if metadata.get("op").is_none() {
            metadata = metadata.with("op", operation);
        }
        if metadata.get("key").is_none() {
            metadata = metadata.with("key", key.to_owned());
        }
        self.task.clone().metadata(metadata)
    }

    /// [`task_options`](Self::task_options) for a call queued on `pool`, with the `op` and
    /// `key` labels only if something attached to the pool reads labels
    /// ([`Pool::reads_labels`]): nobody would look at them, and they cost a call two
    /// allocations (the key's copy and the labels' map). The caller's own labels are kept
    /// either way.
    pub(crate) fn task_options_on(
        &self,
        pool: &Pool,
        operation: &'static str,
        key: &str,
    ) -> TaskOptions {
        if pool.reads_labels() {
            self.task_options(operation, key)
        } else {
            self.task.clone()
        }
    }
}

impl From<TaskOptions> for CallOptions {
    /// A call with these pool options (priority, retries, timeout, labels, cancellation,
    /// tenant), through the pool.
    fn from(task: TaskOptions) -> Self {
        Self {
            task,
            ..Self::default()
        }
    }
}
