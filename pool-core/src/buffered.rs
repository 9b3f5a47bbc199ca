//! An observer adapter for slow observers: events go through a bounded queue to a thread.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use crate::observer::{Event, EventKind, Observer};
use crate::pool::PoolControl;

/// Runs a slow observer on its own thread behind a bounded queue, so it can never stall the
/// pool. When the queue is full, events are dropped and counted ([`dropped`](Self::dropped)).
///
/// ```
/// use pool_core::{Buffered, Event, Observer};
/// #[derive(Debug)]
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
    sender: Sender<Event>,
    /// Events sent and not yet taken by the thread; kept at most `capacity`. (An unbounded
    /// channel with this count rather than `sync_channel`, which allocates its whole capacity
    /// up front: `usize::MAX` would not fit.)
    waiting: Arc<AtomicUsize>,
    capacity: usize,
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
    /// Wraps `observer`; at most `capacity` events wait for it. Memory grows with the events
    /// actually waiting, not with `capacity`, so `usize::MAX` means "never drop" (and the
    /// queue grows as long as the observer falls behind); 0 is taken as 1.
    pub fn new(observer: impl Observer, capacity: usize) -> Self {
        let observer: Arc<dyn Observer> = Arc::new(observer);
        let (sender, receiver) = channel::<Event>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let consumer = Arc::clone(&observer);
        let taken = Arc::clone(&waiting);
        std::thread::Builder::new()
            .name("s3pool-observer".into())
            .spawn(move || {
                for event in receiver {
                    taken.fetch_sub(1, Ordering::AcqRel);
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
                waiting,
                capacity: capacity.max(1),
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

    fn wants(&self, kind: EventKind) -> bool {
        self.inner.observer.wants(kind)
    }

    fn reads_labels(&self) -> bool {
        self.inner.observer.reads_labels()
    }

    fn on_event(&self, event: &Event) {
        let inner = &self.inner;
        let capacity = inner.capacity;
        let room = inner
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < capacity).then_some(waiting + 1)
            })
            .is_ok();
        if !room {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        } else if inner.sender.send(event.clone()).is_err() {
            // The thread is gone (it panicked or never started): nothing takes events now.
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
