//! Per-thread recorders: each worker thread records into "its" shard, so the hot path takes a
//! lock nobody else wants (readers take each one briefly to merge).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use try_lock::{Locked, TryLock};

use crate::grid::{Place, Span};
use crate::history::{OpenSlice, Slice};
use crate::latency::HistogramTemplate;
use crate::record::StoredTask;
use crate::rolling::{RollingWindow, WindowCounts};
use crate::store::StoreShard;
use crate::tally::Tally;

/// The widths of the grids a shard places finishing times on, and the histograms' layout:
/// what every shard records with, worked out once.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) template: HistogramTemplate,
    /// Width of a history slice, ns.
    pub(crate) slice_nanos: u64,
    /// Width of a rolling-window bucket, ns.
    pub(crate) bucket_nanos: u64,
}

/// One recorder: everything about the tasks that finished on the threads that map to it.
#[derive(Debug)]
pub(crate) struct Shard {
    /// The tasks of the slices handed to the history (the lifetime counts are these plus the
    /// open slice's: each task is counted once, in its slice).
    retired: Tally,
    /// The latest finishing time recorded here, in nanoseconds after the origin (0 before
    /// the first).
    pub(crate) latest_finish: u64,
    /// One past the highest sequence number recorded here (0 before the first): the
    /// numbers handed out so far are the highest of these.
    pub(crate) next_sequence: u64,
    /// The history slice being filled; handed to the shared history when time moves on.
    pub(crate) current: Option<OpenSlice>,
    /// The span of time the latest task here finished in (one bucket, one slice).
    span: Option<Span>,
    /// The open slice's counts when the span began (zero if the slice opened since): the
    /// tasks counted there since are the span's, added to the rolling window only when the
    /// span moves on (a task is counted once, in its slice; reads add the span's share).
    span_base: WindowCounts,
    rolling: RollingWindow,
    /// The latest tasks: the per-task store and the recent ring.
    pub(crate) store: StoreShard,
}

impl Shard {
    fn new(rolling_buckets: usize) -> Self {
        Self {
            retired: Tally::default(),
            latest_finish: 0,
            next_sequence: 0,
            current: None,
            span: None,
            span_base: WindowCounts::default(),
            rolling: RollingWindow::new(rolling_buckets),
            store: StoreShard::default(),
        }
    }

    /// Counts of every task recorded here.
    pub(crate) fn lifetime(&self) -> Tally {
        let mut lifetime = self.retired.clone();
        if let Some(open) = &self.current {
            lifetime.merge(open.tally());
        }
        lifetime
    }

    /// The open slice's counts, as the rolling window counts tasks.
    fn open_counts(&self) -> WindowCounts {
        self.current
            .as_ref()
            .map_or_else(WindowCounts::default, |open| WindowCounts::of(open.tally()))
    }

    /// The tasks of the current span, not yet in the rolling window.
    fn span_counts(&self) -> WindowCounts {
        self.open_counts().since(&self.span_base)
    }

    /// Adds the current span's tasks to the rolling window (in the span's bucket).
    fn flush_span(&mut self) {
        if let Some(span) = &self.span {
            self.rolling.add(span.place().bucket, &self.span_counts());
        }
        self.span_base = self.open_counts();
    }

    /// Adds the counts of the rolling window ending with bucket `newest` to `into`: the
    /// window's buckets and the current span's tasks if its bucket is in the window.
    pub(crate) fn window_into(&self, newest: u64, into: &mut WindowCounts) {
        self.rolling.sum_into(newest, into);
        if let Some(span) = &self.span {
            let bucket = span.place().bucket;
            if self.rolling.covers(newest, bucket) && self.rolling.accepts(bucket) {
                into.merge(&self.span_counts());
            }
        }
    }

    /// Where a task that finished `offset` ns after the origin goes, if it falls in the span
    /// of the latest task here (nearly always): two comparisons, no division.
    #[inline]
    pub(crate) fn place_of(&self, offset: u64) -> Option<Place> {
        self.span.as_ref().and_then(|span| span.place_of(offset))
    }

    /// Where a task that finished `offset` ns after the origin goes, kept as the span for the
    /// next tasks, which must not reach `until` (the next memory sample, ns after the origin).
    pub(crate) fn move_span(&mut self, offset: u64, until: u64, layout: &Layout) -> Place {
        self.flush_span();
        let (span, place) = Span::around(offset, layout.bucket_nanos, layout.slice_nanos, until);
        self.span = Some(span);
        place
    }

    /// Records a task that finished `finished_at` ns after the origin, at `place` on the
    /// grids; keeps its record unless its sequence number is below `keep_from`. Returns the
    /// history slice it closed, if it opened a new one (boxed: a slice is a few hundred bytes,
    /// which every call would otherwise copy out, though one closes only once per slice
    /// length).
    #[inline(always)]
    pub(crate) fn record(
        &mut self,
        task: StoredTask,
        finished_at: u64,
        place: Place,
        keep_from: u64,
        layout: &Layout,
    ) -> Option<Box<Slice>> {
        self.latest_finish = self.latest_finish.max(finished_at);
        self.next_sequence = self.next_sequence.max(task.sequence.saturating_add(1));
        match &mut self.current {
            // Nearly always: the slice is open already. A task stamped a little in the past
            // (another thread got here first) joins the open slice rather than reopening a
            // closed one.
            Some(open) if open.index >= place.slice => {
                // Counted, then moved into the store (once: no copy handed back and forth).
                open.record(&task);
                self.store.insert(task, keep_from);
                None
            }
            _ => self.record_opening(task, place.slice, keep_from, layout),
        }
    }

    /// [`record`](Self::record) for the first task of slice `slice`: opens it, and hands
    /// over the slice it closes.
    #[cold]
    fn record_opening(
        &mut self,
        task: StoredTask,
        slice: u64,
        keep_from: u64,
        layout: &Layout,
    ) -> Option<Box<Slice>> {
        let closes = self.current.is_some();
        if closes {
            // Only the task that moved the span closes a slice (the span lies in one slice,
            // the open one or an earlier one): nothing of the span is pending then, but the
            // count restarts from the new slice's zero.
            self.flush_span();
            self.span_base = WindowCounts::default();
        }
        let open = self
            .current
            .get_or_insert_with(|| OpenSlice::new(slice, &layout.template));
        let closed = closes.then(|| Box::new(open.close_and_open(slice, &layout.template)));
        open.record(&task);
        self.store.insert(task, keep_from);
        if let Some(closed) = &closed {
            self.retired.merge(&closed.tally);
        }
        closed
    }
}

thread_local! {
    /// This thread's preferred shard (modulo the shard count), handed out round-robin on the
    /// thread's first record; `usize::MAX` until then. A constant initial value makes each
    /// read one load (a lazily initialised one checks its state first).
    static SHARD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's preferred shard (modulo the shard count).
#[inline]
fn shard_hint() -> usize {
    let hint = SHARD_HINT.get();
    if hint != usize::MAX {
        return hint;
    }
    first_shard_hint()
}

#[cold]
fn first_shard_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Wraps below `usize::MAX`, which means "none yet".
    let hint = NEXT.fetch_add(1, Ordering::Relaxed) % (usize::MAX / 2);
    SHARD_HINT.set(hint);
    hint
}

/// Keeps each shard's lock on its own cache line, so workers do not invalidate each other's.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// The set of shards.
#[derive(Debug)]
pub(crate) struct Shards {
    shards: Box<[Padded<TryLock<Shard>>]>,
    /// `count - 1` when the count is a power of two (the default): a thread's shard is then
    /// found with a mask rather than a division.
    mask: Option<usize>,
}

impl Shards {
    pub(crate) fn new(count: usize, rolling_buckets: usize) -> Self {
        let count = count.max(1);
        let shards = (0..count)
            .map(|_| Padded(TryLock::new(Shard::new(rolling_buckets))))
            .collect();
        Self {
            shards,
            mask: count.is_power_of_two().then(|| count - 1),
        }
    }

    /// This thread's shard, or the first free one if another thread holds it (threads
    /// outnumber shards, or a reader is merging); waits for this thread's shard only if all
    /// are busy.
    #[inline]
    pub(crate) fn lock_for_this_thread(&self) -> Locked<'_, Shard> {
        let count = self.shards.len();
        let hint = shard_hint();
        let hint = match self.mask {
            Some(mask) => hint & mask,
            None => hint % count,
        };
        // Nearly always free: only this thread records here.
        if let Some(shard) = self.shards[hint].0.try_lock() {
            return shard;
        }
        self.lock_another(hint)
    }

    #[cold]
    fn lock_another(&self, hint: usize) -> Locked<'_, Shard> {
        let count = self.shards.len();
        (1..count)
            .find_map(|offset| self.shards[(hint + offset) % count].0.try_lock())
            .unwrap_or_else(|| wait_for(&self.shards[hint].0))
    }

    /// Visits every shard in turn (one lock at a time).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&Shard)) {
        for shard in self.shards.iter() {
            visit(&wait_for(&shard.0));
        }
    }

    /// One past the highest sequence number recorded: how many numbers were handed out.
    pub(crate) fn next_sequence(&self) -> u64 {
        let mut next = 0;
        self.for_each(|shard| next = next.max(shard.next_sequence));
        next
    }

    /// Every shard at once, taken in order (so that two callers cannot deadlock; a
    /// recorder or a reader holds at most one shard at a time).
    pub(crate) fn lock_all(&self) -> Vec<Locked<'_, Shard>> {
        self.shards.iter().map(|shard| wait_for(&shard.0)).collect()
    }
}

/// Takes `shard` once whoever holds it lets go (a recorder for a few hundred nanoseconds, a
/// reader for one merge): spins briefly, then yields the thread between tries, so that a
/// holder descheduled on a busy machine gets to run.
fn wait_for(shard: &TryLock<Shard>) -> Locked<'_, Shard> {
    let mut tries = 0u32;
    loop {
        if let Some(locked) = shard.try_lock() {
            return locked;
        }
        tries += 1;
        if tries < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}
