//! [`PoolGroup`]: one cap on in-flight requests across several clients.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pool_core::{Admission, AdmissionPermit, BoxFuture, Rejection, TaskInfo};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Caps the requests in flight across every client (and [`PooledStore`](crate::PooledStore))
/// that shares it, whatever each one's own pool allows: with three clients at concurrency 10
/// and a group of 16, at most 16 requests run at once in the process.
///
/// Each attempt takes a group permit after its pool lets it start, and holds it for the
/// store call. Waiting for a permit counts toward the attempt's timeout. Cheap to clone;
/// clones share the cap.
///
/// A client with a pool of its own installs the group as that pool's
/// [`Admission`] policy; calls that bypass the pool, clients without a pool and clients on a
/// shared pool take the permit around the store call instead. Any other pool can join the
/// group the same way: `Pool::builder().admission(group.clone())`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use object_store::memory::InMemory;
/// use s3_client::{PoolGroup, S3Client};
/// let group = PoolGroup::new(16).unwrap();
/// let photos = S3Client::builder(InMemory::new()).group(group.clone()).build().unwrap();
/// let logs = S3Client::builder(InMemory::new()).group(group.clone()).build().unwrap();
/// # let _ = (photos, logs);
/// assert_eq!(group.limit(), 16);
/// # }
/// ```
#[derive(Clone)]
pub struct PoolGroup {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    limit: usize,
    permits: Arc<Semaphore>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// A [`PoolGroup`] limit of zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PoolGroup max_in_flight must be at least 1 (got 0)")]
pub struct ZeroGroupLimit;

impl PoolGroup {
    /// At most `max_in_flight` requests at once across the group.
    pub fn new(max_in_flight: usize) -> Result<Self, ZeroGroupLimit> {
        if max_in_flight == 0 {
            return Err(ZeroGroupLimit);
        }
        let max_in_flight = max_in_flight.min(Semaphore::MAX_PERMITS);
        Ok(PoolGroup {
            inner: Arc::new(GroupInner {
                limit: max_in_flight,
                permits: Arc::new(Semaphore::new(max_in_flight)),
                in_flight: AtomicUsize::new(0),
                peak_in_flight: AtomicUsize::new(0),
            }),
        })
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// The most requests ever in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak_in_flight.load(Ordering::Relaxed)
    }

    pub(crate) async fn acquire(&self) -> GroupPermit {
        let permit = Arc::clone(&self.inner.permits).acquire_owned().await.ok();
        let now = self.inner.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        GroupPermit {
            _permit: permit,
            group: Arc::clone(&self.inner),
        }
    }
}

impl Admission for PoolGroup {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        let group = self.clone();
        Box::pin(async move { Ok(AdmissionPermit::holding(group.acquire().await)) })
    }

    /// Its permit gives the group's place back when dropped, as the attempt ends.
    fn wants_complete(&self) -> bool {
        false
    }
}

impl fmt::Debug for PoolGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolGroup")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Held while one request runs.
pub(crate) struct GroupPermit {
    _permit: Option<OwnedSemaphorePermit>,
    group: Arc<GroupInner>,
}

impl Drop for GroupPermit {
    fn drop(&mut self) {
        self.group.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
