//! [`Call`]: one client operation with its per-call options, run when awaited.

use std::fmt;
use std::future::IntoFuture;
use std::time::Duration;

use futures::future::BoxFuture;
use pool_core::{CancellationToken, Metadata};

use crate::error::ClientError;
use crate::options::CallOptions;

type Start<T> = Box<dyn FnOnce(CallOptions) -> BoxFuture<'static, Result<T, ClientError>> + Send>;

/// An [`S3Client`](crate::S3Client) operation, not started yet: set per-call options, then
/// `.await` it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use object_store::{memory::InMemory, path::Path};
/// use s3_client::S3Client;
/// let client = S3Client::builder(InMemory::new()).build().unwrap();
/// let path = Path::from("reports/q3.csv");
/// client.put(&path, "a,b\n1,2\n").priority(5).retries(1).await.unwrap();
/// let body = client.get(&path).bypass_pool().await.unwrap();
/// assert_eq!(&body[..], b"a,b\n1,2\n");
/// # }
/// ```
#[must_use = "a call does nothing until awaited"]
pub struct Call<T> {
    options: CallOptions,
    start: Start<T>,
}

impl<T> Call<T> {
    pub(crate) fn new(
        start: impl FnOnce(CallOptions) -> BoxFuture<'static, Result<T, ClientError>> + Send + 'static,
    ) -> Self {
        Call {
            options: CallOptions::default(),
            start: Box::new(start),
        }
    }

    /// Replaces every per-call option at once.
    pub fn options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// Higher runs first. Default 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.options = self.options.priority(priority);
        self
    }

    /// Retries after the first attempt. Default: the pool's.
    pub fn retries(mut self, retries: u32) -> Self {
        self.options = self.options.retries(retries);
        self
    }

    /// Per-attempt timeout. Default: the pool's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.timeout(timeout);
        self
    }

    /// No timeout for this call.
    pub fn no_timeout(mut self) -> Self {
        self.options = self.options.no_timeout();
        self
    }

    /// Labels for events and metrics.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.options = self.options.metadata(metadata);
        self
    }

    /// Cancelling the token resolves the call with `Cancelled`.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.options = self.options.cancellation(token);
        self
    }

    /// Byte-level progress of a transfer (see [`CallOptions::on_progress`]).
    pub fn on_progress(
        mut self,
        progress: impl Fn(crate::TransferProgress) + Send + Sync + 'static,
    ) -> Self {
        self.options = self.options.on_progress(progress);
        self
    }

    /// The read frees its pool slot when the response starts (see
    /// [`CallOptions::release_slot_at_response`]).
    pub fn release_slot_at_response(mut self) -> Self {
        self.options = self.options.release_slot_at_response();
        self
    }

    /// Calls the store directly, skipping the pool (see [`CallOptions::bypass_pool`]).
    pub fn bypass_pool(mut self) -> Self {
        self.options = self.options.bypass_pool();
        self
    }
}

impl<T> IntoFuture for Call<T> {
    type Output = Result<T, ClientError>;
    type IntoFuture = BoxFuture<'static, Result<T, ClientError>>;

    fn into_future(self) -> Self::IntoFuture {
        (self.start)(self.options)
    }
}

impl<T> fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
