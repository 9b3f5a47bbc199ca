//! A run: many items through the pool, with at most `concurrency + lookahead` of them handed
//! to the pool and not yet consumed at any moment.
//!
//! The input is pulled only while that window has room, and the window only empties as the
//! consumer takes results, so a slow consumer slows the producer and memory stays
//! O(concurrency) whatever the input's length.

use std::fmt;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{FusedStream, FuturesUnordered, Stream, StreamExt};
use pool_core::{
    BatchError, BatchResult, BoxFuture, CancellationToken, IndexedHandle, Metadata, Pool,
    TaskError, TaskHandle, TaskOptions,
};

use crate::progress::{ItemOutcome, Progress, ProgressTracker};
use crate::stats::ItemCounters;

/// Hands one input item to the pool with the run's task options.
pub(crate) type Submit<T, E> = Box<dyn FnOnce(&Pool, TaskOptions) -> TaskHandle<T, E> + Send>;

/// A run's input, each item already paired with the processor that will run it.
pub(crate) type Input<T, E> = Pin<Box<dyn Stream<Item = Submit<T, E>> + Send>>;

type OnComplete<T> = Box<dyn FnMut(usize, &T) + Send>;
type OnError<E> = Box<dyn FnMut(usize, &TaskError<E>) + Send>;

/// One resolved item of a run: its position in the input and its result.
#[derive(Debug)]
pub struct ItemResult<T, E> {
    /// Position of the item in the input (0-based).
    pub index: usize,
    /// The item's value, or why it has none.
    pub result: Result<T, TaskError<E>>,
}

/// Why a run stopped taking items before its input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Fail-fast: the item at `index` failed, so the rest were cancelled.
    FailFast {
        /// Position of the first failed item.
        index: usize,
    },
    /// The manager (or its pool) was stopped or destroyed.
    Stopped,
}

impl StopReason {
    /// The error items resolve with when the run ends early before they could run.
    fn item_error<E>(self) -> TaskError<E> {
        match self {
            StopReason::FailFast { .. } => TaskError::Cancelled,
            StopReason::Stopped => TaskError::Stopped,
        }
    }
}

/// Most result slots a collected run reserves up front from its `total` hint (it grows past
/// that as items come): a hint of `u64::MAX` must not be an allocation of that size.
const RESERVE_AT_MOST: u64 = 1 << 16;

/// Marker for a run consumed as a [`Stream`] of [`ItemResult`]s, in completion order
/// ([`TaskManager::process_iterable`](crate::TaskManager::process_iterable)).
#[derive(Debug)]
pub enum Streamed {}

/// Marker for a run awaited into a [`BatchResult`]
/// ([`TaskManager::process`](crate::TaskManager::process)).
#[derive(Debug)]
pub enum Collected {}

/// Marker for a run awaited into one `Result` per item, in input order
/// ([`TaskManager::process_corresponding`](crate::TaskManager::process_corresponding)).
#[derive(Debug)]
pub enum InOrder {}

/// Settings a run starts from, taken from its manager.
#[derive(Debug, Clone)]
pub(crate) struct RunSettings {
    pub(crate) lookahead: usize,
    pub(crate) task_options: TaskOptions,
    /// Fires when the manager stops: runs stop pulling input.
    pub(crate) manager_stop: CancellationToken,
    pub(crate) counters: Arc<ItemCounters>,
}

/// Items flowing through a [`TaskManager`](crate::TaskManager)'s pool.
///
/// A run does nothing until it is polled: as a [`Stream`] of [`ItemResult`]s (`M` =
/// [`Streamed`]), or as a [`Future`] of all the results ([`Collected`], [`InOrder`]) — await
/// it, `tokio::spawn` it, or join it with other futures. Before that, the builder methods
/// below set its options.
///
/// # Panics
/// An awaited run polled again after it resolved panics (as for any future, a caller's
/// error; `FusedFuture::is_terminated` says when). A streamed run keeps returning `None`. From then on it
/// pulls its input lazily, keeps at most `concurrency + lookahead` items handed to the pool
/// and not yet consumed, and resolves every item it pulled exactly once: callbacks and
/// progress fire once per item, in completion order.
///
/// Ending early:
/// - **fail-fast** ([`fail_fast`](Self::fail_fast)): the first failed item stops the pulling
///   and cancels the items in flight (queued ones never start, running attempts are dropped);
///   they resolve with [`TaskError::Cancelled`].
/// - **stop** ([`TaskManager::stop`](crate::TaskManager::stop) /
///   [`destroy`](crate::TaskManager::destroy)): pulling stops; queued items resolve with
///   [`TaskError::Stopped`].
/// - **drop**: dropping a run cancels its items in flight; none of them starts afterwards.
///
/// Runs over a list ([`Collected`], [`InOrder`]) account for the items they never pulled as
/// well, resolving them without running them (`Cancelled` after fail-fast, `Stopped` after a
/// stop), so the result has one entry per input item. A [`Streamed`] run leaves the rest of
/// its input untouched: it may be infinite.
#[must_use = "a run does nothing until it is polled or awaited"]
pub struct Run<T, E, M> {
    pool: Pool,
    input: Option<Input<T, E>>,
    next_index: usize,
    in_flight: FuturesUnordered<IndexedHandle<T, E>>,
    lookahead: usize,
    task_options: TaskOptions,
    /// Cancels this run's tasks (fail-fast, drop).
    run_token: CancellationToken,
    manager_stopped: BoxFuture<()>,
    stop_reason: Option<StopReason>,
    /// Whether items never pulled are resolved too when the run ends early.
    account_unpulled: bool,
    fail_fast: bool,
    on_complete: Option<OnComplete<T>>,
    on_error: Option<OnError<E>>,
    progress: ProgressTracker,
    counters: Arc<ItemCounters>,
    started: bool,
    finished: bool,
    /// What an awaited run ([`Collected`], [`InOrder`]) has gathered so far, by index.
    slots: Vec<Option<Result<T, TaskError<E>>>>,
    mode: PhantomData<fn() -> M>,
}

// No field is ever pinned: the input and in-flight set are boxed or `Unpin`, and results
// are moved out by value.
impl<T, E, M> Unpin for Run<T, E, M> {}

impl<T, E, M> fmt::Debug for Run<T, E, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("pulled", &self.next_index)
            .field("in_flight", &self.in_flight.len())
            .field("lookahead", &self.lookahead)
            .field("fail_fast", &self.fail_fast)
            .field("stop_reason", &self.stop_reason)
            .field("progress", &self.progress)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<T, E, M> Run<T, E, M> {
    pub(crate) fn new(
        pool: Pool,
        input: Input<T, E>,
        total: Option<u64>,
        account_unpulled: bool,
        settings: RunSettings,
    ) -> Self {
        let run_token = CancellationToken::new();
        Self {
            pool,
            input: Some(input),
            next_index: 0,
            in_flight: FuturesUnordered::new(),
            lookahead: settings.lookahead,
            task_options: settings.task_options.cancellation(run_token.clone()),
            run_token,
            manager_stopped: Box::pin(settings.manager_stop.cancelled_owned()),
            stop_reason: None,
            account_unpulled,
            fail_fast: false,
            on_complete: None,
            on_error: None,
            progress: ProgressTracker::new(total),
            counters: settings.counters,
            started: false,
            finished: false,
            slots: Vec::new(),
            mode: PhantomData,
        }
    }

    /// Stop at the first failed item: pull nothing more and cancel the items in flight.
    /// Default: collect all (every item runs, failures are reported with their index).
    ///
    /// Only an item's own failure triggers it (an error, a timeout, a panic, an exhausted
    /// retry budget), not a cancellation or a stop.
    pub fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    /// Called with `(index, &value)` as each item succeeds, exactly once per item.
    pub fn on_item_complete(mut self, callback: impl FnMut(usize, &T) + Send + 'static) -> Self {
        self.on_complete = Some(Box::new(callback));
        self
    }

    /// Called with `(index, &error)` as each item fails, is cancelled or is stopped, exactly
    /// once per item.
    pub fn on_item_error(
        mut self,
        callback: impl FnMut(usize, &TaskError<E>) + Send + 'static,
    ) -> Self {
        self.on_error = Some(Box::new(callback));
        self
    }

    /// Called with the run's [`Progress`] after each item resolves; feed it to a progress bar.
    ///
    /// Callbacks run inline in whoever polls the run, so keep them quick (a progress bar's
    /// `set_position` is; a network call is not).
    pub fn on_progress(mut self, callback: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress.set_callback(Box::new(callback));
        self
    }

    /// The number of input items, for progress, when the input cannot tell (a stream or an
    /// iterator without an exact `size_hint`). A hint only: nothing is allocated from it, and
    /// a wrong one makes only the progress wrong.
    pub fn total(mut self, total: u64) -> Self {
        self.progress.set_total(total);
        self
    }

    /// Items handed to the pool beyond its concurrency limit, so a freed slot never waits
    /// for the consumer. Default: the manager's
    /// ([`TaskManagerBuilder::lookahead`](crate::TaskManagerBuilder::lookahead)). `usize::MAX`
    /// takes the bound off: every item is handed over as soon as it is pulled, so memory
    /// follows the input rather than the concurrency.
    pub fn lookahead(mut self, lookahead: usize) -> Self {
        self.lookahead = lookahead;
        self
    }

    /// Priority of this run's tasks in the pool (higher runs first). Default: the manager's.
    pub fn priority(self, priority: i32) -> Self {
        self.map_task_options(|options| options.priority(priority))
    }

    /// Retries per item (attempts = retries + 1). Default: the manager's.
    pub fn retries(self, retries: u32) -> Self {
        self.map_task_options(|options| options.retries(retries))
    }

    /// Per-attempt timeout of this run's items. Default: the manager's.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map_task_options(|options| options.timeout(timeout))
    }

    /// Labels carried into the pool's events for each of this run's tasks.
    pub fn metadata(self, metadata: Metadata) -> Self {
        self.map_task_options(|options| options.metadata(metadata))
    }

    fn map_task_options(mut self, change: impl FnOnce(TaskOptions) -> TaskOptions) -> Self {
        self.task_options = change(std::mem::take(&mut self.task_options));
        self
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        self.progress
            .snapshot(self.in_flight.len() as u64, self.pool.now())
    }

    /// Why the run stopped taking items early, if it did.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    /// Items pulled from the input so far.
    pub fn pulled(&self) -> usize {
        self.next_index
    }

    /// The most items handed to the pool and not yet consumed, now: the pool's concurrency
    /// limit plus the lookahead. Read on every poll, so it follows a tuner's changes.
    fn window(&self) -> usize {
        self.pool
            .concurrency()
            .max(1)
            .saturating_add(self.lookahead)
    }

    /// The next resolved item, in completion order; `None` when the run is over.
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<ItemResult<T, E>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if !self.started {
            self.started = true;
            self.counters.run_started();
            self.progress.start(self.pool.now());
            tracing::debug!(target: "task_manager", "run started");
        }
        if self.stop_reason.is_none() && self.manager_stopped.as_mut().poll(cx).is_ready() {
            self.end_early(StopReason::Stopped);
        }
        if self.stop_reason.is_none() {
            self.refill(cx);
        }
        if let Poll::Ready(Some((index, result))) = self.in_flight.poll_next_unpin(cx) {
            return Poll::Ready(Some(self.settle(index, result)));
        }
        if let Some(reason) = self.stop_reason {
            if let Some(item) = self.resolve_unpulled(reason, cx) {
                return item;
            }
        }
        let input_done = self.input.is_none() || self.stop_reason.is_some();
        if input_done && self.in_flight.is_empty() {
            self.finish();
            return Poll::Ready(None);
        }
        // Woken by a resolving task, the input, or the manager's stop.
        Poll::Pending
    }

    /// Pulls input while the window has room, handing each item to the pool.
    fn refill(&mut self, cx: &mut Context<'_>) {
        let window = self.window();
        while self.in_flight.len() < window {
            let Some(input) = self.input.as_mut() else {
                return;
            };
            match input.as_mut().poll_next(cx) {
                Poll::Ready(Some(submit)) => {
                    let index = self.take_index();
                    let handle = submit(&self.pool, self.task_options.clone());
                    self.in_flight.push(handle.indexed(index));
                }
                Poll::Ready(None) => self.input = None,
                Poll::Pending => return,
            }
        }
    }

    /// After an early end, resolves the next never-pulled item without running it (only for
    /// runs that account for their whole input). `None` when there is nothing to do now.
    fn resolve_unpulled(
        &mut self,
        reason: StopReason,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Option<ItemResult<T, E>>>> {
        if !self.account_unpulled {
            return None;
        }
        let input = self.input.as_mut()?;
        match input.as_mut().poll_next(cx) {
            Poll::Ready(Some(_never_run)) => {
                let index = self.take_index();
                Some(Poll::Ready(Some(
                    self.settle(index, Err(reason.item_error())),
                )))
            }
            Poll::Ready(None) => {
                self.input = None;
                None
            }
            Poll::Pending => Some(Poll::Pending),
        }
    }

    fn take_index(&mut self) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        self.counters.pulled();
        index
    }

    /// Counts a resolved item, calls its callback and the progress hook, and applies
    /// fail-fast.
    fn settle(&mut self, index: usize, result: Result<T, TaskError<E>>) -> ItemResult<T, E> {
        let outcome = ItemOutcome::of(&result);
        match &result {
            Ok(value) => {
                if let Some(callback) = self.on_complete.as_mut() {
                    callback(index, value);
                }
            }
            Err(error) => {
                if let Some(callback) = self.on_error.as_mut() {
                    callback(index, error);
                }
            }
        }
        self.counters.resolved(outcome);
        let now = self.pool.now();
        self.progress
            .record(outcome, self.in_flight.len() as u64, now);
        if self.stop_reason.is_none() {
            if self.fail_fast && outcome == ItemOutcome::Failed {
                self.end_early(StopReason::FailFast { index });
            } else if matches!(result, Err(TaskError::Stopped)) {
                // The pool was stopped behind the manager's back (through `pool()`): nothing
                // pulled from now on could run, so stop pulling.
                self.end_early(StopReason::Stopped);
            }
        }
        ItemResult { index, result }
    }

    fn end_early(&mut self, reason: StopReason) {
        tracing::debug!(target: "task_manager", ?reason, pulled = self.next_index, "run ends early");
        self.stop_reason = Some(reason);
        if matches!(reason, StopReason::FailFast { .. }) {
            self.run_token.cancel();
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.counters.run_ended();
        tracing::debug!(
            target: "task_manager",
            progress = %self.progress.snapshot(0, self.pool.now()),
            "run finished"
        );
    }

    /// Drives the run, gathering each resolved item in its input slot; `Ready` when the run
    /// is over. What an awaited run is made of.
    fn poll_gather(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished {
            return Poll::Ready(());
        }
        if !self.started {
            // `total` is a hint (a caller's number, or a size hint): reserve from it only up
            // to a bound, and let the slots grow with the items that really come.
            let expected = self.progress.snapshot(0, self.pool.now()).total;
            let capacity =
                expected.map_or(0, |n| usize::try_from(n.min(RESERVE_AT_MOST)).unwrap_or(0));
            self.slots.reserve(capacity);
        }
        while let Poll::Ready(next) = self.poll_item(cx) {
            let Some(ItemResult { index, result }) = next else {
                // One slot per pulled item, even if the last ones never came back (they
                // cannot: every pulled item resolves exactly once).
                self.slots.resize_with(self.next_index, || None);
                return Poll::Ready(());
            };
            if self.slots.len() <= index {
                self.slots.resize_with(index + 1, || None);
            }
            self.slots[index] = Some(result);
        }
        Poll::Pending
    }
}

impl<T, E, M> Drop for Run<T, E, M> {
    fn drop(&mut self) {
        if !self.finished {
            // Items in flight must not run for a consumer that is gone.
            self.run_token.cancel();
            if self.started {
                self.counters.run_ended();
            }
        }
    }
}

impl<T: Send + 'static, E: Send + 'static> Run<T, E, Streamed> {
    /// Drives the stream to its end and collects it: `results[i]` is the value of item `i`
    /// (`None` if it failed) and `errors` the failures by ascending index. Only for finite
    /// inputs; memory is then O(items) again.
    pub async fn collect_results(mut self) -> BatchResult<T, E> {
        poll_fn(|cx| self.poll_gather(cx)).await;
        into_batch_result(std::mem::take(&mut self.slots))
    }
}

/// Values by index (`None` where an item failed) and the failures by ascending index.
fn into_batch_result<T, E>(slots: Vec<Option<Result<T, TaskError<E>>>>) -> BatchResult<T, E> {
    let mut results = Vec::with_capacity(slots.len());
    let mut errors = Vec::new();
    for (index, slot) in slots.into_iter().enumerate() {
        match slot {
            Some(Ok(value)) => results.push(Some(value)),
            Some(Err(error)) => {
                results.push(None);
                errors.push(BatchError { index, error });
            }
            None => results.push(None),
        }
    }
    BatchResult { results, errors }
}

impl<T, E> Stream for Run<T, E, Streamed> {
    type Item = ItemResult<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T, E> FusedStream for Run<T, E, Streamed> {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

/// An awaited run: polling it drives the run (pulling input, handing items to the pool,
/// calling callbacks) and resolves with the [`BatchResult`] once every item has. Being a
/// plain [`Future`], it can be spawned or joined with others.
impl<T, E> Future for Run<T, E, Collected> {
    type Output = BatchResult<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.finished,
            "an awaited Run was polled after it resolved"
        );
        std::task::ready!(this.poll_gather(cx));
        Poll::Ready(into_batch_result(std::mem::take(&mut this.slots)))
    }
}

/// An awaited run: resolves with one `Result` per input item, in input order.
impl<T, E> Future for Run<T, E, InOrder> {
    type Output = Vec<Result<T, TaskError<E>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.finished,
            "an awaited Run was polled after it resolved"
        );
        std::task::ready!(this.poll_gather(cx));
        // Every pulled item resolves exactly once, so no slot is empty; should one ever be,
        // it reads as stopped rather than panicking.
        let slots = std::mem::take(&mut this.slots);
        Poll::Ready(
            slots
                .into_iter()
                .map(|slot| slot.unwrap_or(Err(TaskError::Stopped)))
                .collect(),
        )
    }
}

/// Every awaitable mode (collected, in order) ends once.
impl<T, E, M> futures::future::FusedFuture for Run<T, E, M>
where
    Self: Future,
{
    fn is_terminated(&self) -> bool {
        self.finished
    }
}
