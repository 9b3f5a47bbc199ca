//! An observer adapter for slow observers: events go through a bounded queue to a thread.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use crate::observer::{Event, Observer};
use crate::pool::PoolControl;

/// Runs a slow observer on its own thread behind a bounded queue, so it can never stall the
/// pool. When the queue is full, events are dropped and counted ([`dropped`](Self::dropped)).
///
/// ```
/// use pool_core::{Buffered, Event, Observer};
/// struct Audit;
/// impl Observer for Audit {
///     fn on_event(&self, _event: &Event) { /* write to a slow sink */ }
/// }
/// let observer = Buffered::new(Audit, 10_000);
/// # let _ = observer;
/// ```
#[derive(Clone)]
pub struct Buffered {
    inner: Arc<BufferedInner>,
}

struct BufferedInner {
    observer: Arc<dyn Observer>,
    sender: SyncSender<Event>,
    dropped: AtomicU64,
}

impl fmt::Debug for Buffered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffered")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Buffered {
    /// Wraps `observer`; at most `capacity` events wait for it.
    pub fn new(observer: impl Observer, capacity: usize) -> Self {
        let observer: Arc<dyn Observer> = Arc::new(observer);
        let (sender, receiver) = sync_channel::<Event>(capacity);
        let consumer = Arc::clone(&observer);
        std::thread::Builder::new()
            .name("s3pool-observer".into())
            .spawn(move || {
                for event in receiver {
                    if catch_unwind(AssertUnwindSafe(|| consumer.on_event(&event))).is_err() {
                        tracing::error!(
                            target: "pool_core",
                            "a buffered observer panicked; it receives no further events"
                        );
                        return;
                    }
                }
            })
            .map_or_else(
                |error| tracing::error!(target: "pool_core", %error, "observer thread not started"),
                drop,
            );
        Self {
            inner: Arc::new(BufferedInner {
                observer,
                sender,
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Events dropped because the queue was full (or the observer had panicked).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl Observer for Buffered {
    fn on_attach(&self, pool: PoolControl) {
        self.inner.observer.on_attach(pool);
    }

    fn on_event(&self, event: &Event) {
        match self.inner.sender.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
