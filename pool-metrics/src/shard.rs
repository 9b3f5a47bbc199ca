//! Per-thread recorders: each worker thread records into "its" shard, so the hot path takes a
//! lock nobody else wants (readers take each one briefly to merge).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use crate::history::{OpenSlice, Slice};
use crate::latency::HistogramTemplate;
use crate::recent::{RecentRing, RecentTask};
use crate::record::FinishedTask;
use crate::rolling::RollingWindow;
use crate::store::StoreShard;
use crate::tally::Tally;

/// Where one shard's share of a finished task goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// History slice of the finish time.
    pub(crate) slice: u64,
    /// Rolling-window bucket of the finish time.
    pub(crate) bucket: u64,
    /// Lowest sequence number the store still keeps.
    pub(crate) keep_from: u64,
}

/// One recorder: everything about the tasks that finished on the threads that map to it.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) lifetime: Tally,
    /// The latest finishing time recorded here.
    pub(crate) latest_finish: Option<Instant>,
    /// The history slice being filled; handed to the shared history when time moves on.
    pub(crate) current: Option<OpenSlice>,
    pub(crate) rolling: RollingWindow,
    pub(crate) recent: RecentRing,
    pub(crate) store: StoreShard,
}

impl Shard {
    fn new(rolling_buckets: usize, recent_capacity: usize) -> Self {
        Self {
            lifetime: Tally::default(),
            latest_finish: None,
            current: None,
            rolling: RollingWindow::new(rolling_buckets),
            recent: RecentRing::new(recent_capacity),
            store: StoreShard::default(),
        }
    }

    /// Records a finished task; returns the history slice it closed, if it opened a new one.
    pub(crate) fn record(
        &mut self,
        task: FinishedTask,
        finished_at: Instant,
        place: Placement,
        template: &HistogramTemplate,
    ) -> Option<Slice> {
        self.lifetime.add_task(&task);
        self.latest_finish = self.latest_finish.max(Some(finished_at));
        self.rolling
            .record(place.bucket, task.succeeded(), task.execution_nanos);
        self.recent.push(RecentTask::of(&task));
        let open = self
            .current
            .get_or_insert_with(|| OpenSlice::new(place.slice, template));
        // A task stamped a little in the past (another thread got here first) joins the
        // open slice rather than reopening a closed one.
        let closed = (open.index < place.slice).then(|| open.close_and_open(place.slice, template));
        open.record(&task);
        self.store.insert(task, place.keep_from);
        closed
    }
}

thread_local! {
    /// This thread's preferred shard (modulo the shard count), handed out round-robin.
    static SHARD_HINT: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// Keeps each shard's lock on its own cache line, so workers do not invalidate each other's.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// The set of shards.
#[derive(Debug)]
pub(crate) struct Shards {
    shards: Box<[Padded<Mutex<Shard>>]>,
}

impl Shards {
    pub(crate) fn new(count: usize, rolling_buckets: usize, recent_capacity: usize) -> Self {
        let shards = (0..count.max(1))
            .map(|_| Padded(Mutex::new(Shard::new(rolling_buckets, recent_capacity))))
            .collect();
        Self { shards }
    }

    /// This thread's shard, or the first free one if another thread holds it (threads outnumber
    /// shards, or a reader is merging); blocks on this thread's shard only if all are busy.
    pub(crate) fn lock_for_this_thread(&self) -> MutexGuard<'_, Shard> {
        let count = self.shards.len();
        let hint = SHARD_HINT.with(|hint| *hint) % count;
        for offset in 0..count {
            match self.shards[(hint + offset) % count].0.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            }
        }
        lock(&self.shards[hint].0)
    }

    /// Visits every shard in turn (one lock at a time).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&Shard)) {
        for shard in self.shards.iter() {
            visit(&lock(&shard.0));
        }
    }
}

/// A poisoned shard still holds valid counts (recording does not panic midway in practice, and
/// a torn record would only skew a figure): keep using it.
fn lock(mutex: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
