//! [`ObjectBatch`]: many calls of one kind as one pool batch, failures with their index and
//! path.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::FusedFuture;
use object_store::path::Path;
use pool_core::{Batch, TaskError};

use crate::error::{ClientError, Operation};

/// Items of [`S3Client::put_batch`](crate::S3Client::put_batch) or
/// [`get_batch`](crate::S3Client::get_batch), already queued in the client's pool.
///
/// A [`Future`] of the [`ObjectBatchResult`]: await it, spawn it, or join it with others.
/// Callbacks run as items finish, in completion order, exactly once each, in whoever polls
/// the batch.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use s3_client::{CallOptions, Path, S3Client};
/// let client = S3Client::from_url("memory://").unwrap();
/// client.put(&Path::from("in/1"), "one").await.unwrap();
/// let batch = client
///     .get_batch(["in/1", "in/2"].map(Path::from), CallOptions::new())
///     .on_item_error(|index, error| eprintln!("item {index}: {error}"))
///     .await;
/// assert_eq!(batch.results[0].as_deref(), Some(&b"one"[..]));
/// let failure = &batch.errors[0];
/// assert_eq!((failure.index, failure.path.as_ref()), (1, "in/2"));
/// assert!(failure.error.is_not_found());
/// # }
/// ```
#[must_use = "the items are queued; await the batch to get their results"]
pub struct ObjectBatch<T> {
    batch: Batch<T, object_store::Error>,
    /// Each item's path, by index; taken when the batch resolves.
    paths: Vec<Path>,
    operation: Operation,
}

impl<T> fmt::Debug for ObjectBatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBatch")
            .field("operation", &self.operation)
            .field("batch", &self.batch)
            .finish()
    }
}

impl<T> ObjectBatch<T> {
    pub(crate) fn new(
        batch: Batch<T, object_store::Error>,
        paths: Vec<Path>,
        operation: Operation,
    ) -> Self {
        ObjectBatch {
            batch,
            paths,
            operation,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// True if the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

impl<T: Send + 'static> ObjectBatch<T> {
    /// Called with `(index, &value)` as each item succeeds.
    pub fn on_item_complete(mut self, callback: impl FnMut(usize, &T) + Send + 'static) -> Self {
        self.batch = self.batch.on_item_complete(callback);
        self
    }

    /// Called with `(index, &error)` as each item fails (the item's path is the `index`-th
    /// of the input; the result's [`ObjectBatchError`]s carry it).
    pub fn on_item_error(
        mut self,
        callback: impl FnMut(usize, &TaskError<object_store::Error>) + Send + 'static,
    ) -> Self {
        self.batch = self.batch.on_item_error(callback);
        self
    }
}

impl<T> Future for ObjectBatch<T> {
    type Output = ObjectBatchResult<T>;

    /// # Panics
    /// Polled again after it resolved (as for any future, a caller's error;
    /// `FusedFuture::is_terminated` says when).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let done = std::task::ready!(Pin::new(&mut this.batch).poll(cx));
        let mut paths = std::mem::take(&mut this.paths);
        let errors = done
            .errors
            .into_iter()
            .map(|failure| {
                let path = paths
                    .get_mut(failure.index)
                    .map(std::mem::take)
                    .unwrap_or_default();
                let error = ClientError::new(this.operation, path.as_ref(), failure.error);
                ObjectBatchError {
                    index: failure.index,
                    path,
                    error,
                }
            })
            .collect();
        Poll::Ready(ObjectBatchResult {
            results: done.results,
            errors,
        })
    }
}

// Nothing is pinned: the inner batch is `Unpin` and polled through `Pin::new`.
impl<T> Unpin for ObjectBatch<T> {}

impl<T> FusedFuture for ObjectBatch<T> {
    fn is_terminated(&self) -> bool {
        self.batch.is_terminated()
    }
}

/// What an [`ObjectBatch`] resolves with: one slot per input item (`None` where it failed)
/// and the failures, by ascending index.
#[derive(Debug)]
pub struct ObjectBatchResult<T> {
    /// `results[i]` is the value of item `i`, or `None` if it failed.
    pub results: Vec<Option<T>>,
    /// The failed items, by ascending index.
    pub errors: Vec<ObjectBatchError>,
}

impl<T> ObjectBatchResult<T> {
    /// True if every item succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.errors.is_empty()
    }
}

/// One failed item of an [`ObjectBatch`]: its position in the input, its path, and the
/// call's error. Prints as `item 7: put \`photos/7.jpg\`: task failed after 4 attempt(s)`;
/// its [`source`](std::error::Error::source) is the store's error, as for [`ClientError`].
///
/// Not `Clone`: it holds a [`ClientError`](crate::ClientError), which owns the store's error.
#[derive(Debug)]
pub struct ObjectBatchError {
    /// Position of the item in the input.
    pub index: usize,
    /// The item's path.
    pub path: Path,
    /// Why it failed.
    pub error: ClientError,
}

impl fmt::Display for ObjectBatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {}: {}", self.index, self.error)
    }
}

impl std::error::Error for ObjectBatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // `error`'s message is already in ours: hand on what it would.
        std::error::Error::source(&self.error)
    }
}
