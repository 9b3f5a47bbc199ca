//! The background agent of a shared rate limit: the only code that talks to Redis for it.
//!
//! It sleeps until a task asks for a moment (or a key is throttled), then books in one
//! script call every moment this process's waiting tasks need, for every key — with batching
//! off, one moment per call. With batching on, calls are at least one batch window apart, so
//! under load one call carries many bookings. Throttled keys are reported one call each.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::CancellationToken;

use super::script::{RateScripts, Want};
use super::Shared;
use crate::backoff::Backoff;
use crate::endpoint::Connection;
use crate::event::{FailMode, PermitEvent};

/// Most moments one key asks for in one call (more wait for the next call).
const MAX_PER_CALL: usize = 4_096;

/// How the agent books.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// Many moments per call, for every key at once; else one moment per call.
    pub(crate) on: bool,
    /// Shortest time between two calls while batching.
    pub(crate) window: Duration,
    /// No moment further ahead than this is booked.
    pub(crate) horizon: Duration,
}

impl Batching {
    /// The pause before the next call: the window, or, when the last call could not book
    /// all it wanted (a key is booked up to the horizon; `slowest` is the longest interval
    /// between two of its moments), a tenth of the horizon or four intervals, whichever is
    /// longer — the schedule moves on by that much before there is more to book.
    fn pause(&self, saturated: Option<Duration>) -> Duration {
        let window = if self.on { self.window } else { Duration::ZERO };
        match saturated {
            Some(slowest) => window.max(self.horizon / 10).max(slowest.saturating_mul(4)),
            None => window,
        }
    }
}

pub(crate) struct RateAgent<K> {
    pub(crate) shared: Arc<Shared<K>>,
    pub(crate) scripts: RateScripts,
    pub(crate) conn: Connection,
    pub(crate) batching: Batching,
    pub(crate) stop: CancellationToken,
}

impl<K> fmt::Debug for RateAgent<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateAgent")
            .field("name", &self.shared.name)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

impl<K> RateAgent<K>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// Runs until the last handle goes (`stop`).
    pub(crate) async fn run(mut self) {
        let executor = Arc::clone(&self.shared.executor);
        let mut probe = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let mut last_call: Option<Instant> = None;
        let mut saturated = None;
        let mut down_since: Option<Instant> = None;
        loop {
            if down_since.is_some() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = executor.sleep(probe.next_delay()) => {}
                }
            } else if !self.has_work() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = self.shared.wake.notified() => {}
                    () = executor.sleep(super::SWEEP_EVERY) => continue,
                }
            }
            let pause = self.batching.pause(saturated);
            if let Some(next) = last_call.and_then(|at| at.checked_add(pause)) {
                let now = executor.now();
                if next > now {
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = executor.sleep(next - now) => {}
                    }
                }
            }
            let started = executor.now();
            last_call = Some(started);
            match self.call(down_since.is_some()).await {
                Ok(full) => {
                    saturated = full;
                    if let Some(since) = down_since.take() {
                        probe.reset();
                        self.recovered(since);
                    }
                }
                Err(error) => {
                    if down_since.is_none() {
                        down_since = Some(executor.now());
                        self.lost_redis(&error);
                    }
                }
            }
        }
    }

    fn has_work(&self) -> bool {
        let now = self.shared.executor.now();
        let mut book = self.shared.lock();
        !book.throttled.is_empty() || book.cells.values_mut().any(|cell| cell.demand(now) > 0)
    }

    /// Reports throttled keys, then books what is wanted. A probe (while Redis is down)
    /// books nothing if nothing is wanted: an empty call still answers. If some key got fewer
    /// moments than it asked for (it is booked up to the horizon), the longest interval
    /// between moments of such a key.
    async fn call(&mut self, probing: bool) -> Result<Option<Duration>, redis::RedisError> {
        let (throttled, wants) = self.take_work();
        for text in &throttled {
            let limit = {
                let book = self.shared.lock();
                book.cells.get(text).map(|cell| cell.limit)
            };
            if let Some(limit) = limit {
                self.shared.calls.fetch_add(1, Ordering::Relaxed);
                let mut result = self.scripts.throttled(&mut self.conn, text, limit).await;
                if worth_one_retry(&result) {
                    result = self.scripts.throttled(&mut self.conn, text, limit).await;
                }
                let (rate, lowered) = result?;
                if lowered {
                    tracing::debug!(limits = %self.shared.name, key = %text, rate, "shared rate lowered");
                }
                if let Some(cell) = self.shared.lock().cells.get_mut(text) {
                    cell.rate = Some(rate);
                }
            }
        }
        if wants.is_empty() && !probing {
            return Ok(None);
        }
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let mut result = self.scripts.book(&mut self.conn, &wants).await;
        if worth_one_retry(&result) {
            result = self.scripts.book(&mut self.conn, &wants).await;
        }
        let booked = result?;
        let answered = self.shared.executor.now();
        let mut book = self.shared.lock();
        let mut saturated: Option<Duration> = None;
        let mut served = Vec::new();
        for (want, booked) in wants.iter().zip(booked) {
            if booked.offsets.len() < want.count {
                let interval = Duration::try_from_secs_f64(1.0 / booked.rate.max(1e-9))
                    .unwrap_or(Duration::MAX);
                saturated = Some(saturated.map_or(interval, |slowest| slowest.max(interval)));
            }
            self.shared
                .moments
                .fetch_add(booked.offsets.len() as u64, Ordering::Relaxed);
            if let Some(cell) = book.cells.get_mut(&want.text) {
                cell.rate = Some(booked.rate);
                // Offsets from Redis' now, counted from when the answer arrived: moments fall
                // up to a round trip late, never early.
                served.extend(
                    cell.deliver(
                        booked
                            .offsets
                            .into_iter()
                            .map(|offset| answered.checked_add(offset).unwrap_or(answered)),
                    ),
                );
            }
        }
        drop(book);
        // Outside the book's lock: waking takes the pool's.
        for wakeup in served {
            wakeup.wake();
        }
        Ok(saturated)
    }

    fn take_work(&self) -> (Vec<String>, Vec<Want>) {
        let now = self.shared.executor.now();
        let mut book = self.shared.lock();
        let throttled = std::mem::take(&mut book.throttled);
        let mut wants = Vec::new();
        for (text, cell) in &mut book.cells {
            let demand = cell.demand(now);
            if demand == 0 {
                continue;
            }
            wants.push(Want {
                text: text.clone(),
                count: if self.batching.on {
                    demand.min(MAX_PER_CALL)
                } else {
                    1
                },
                limit: cell.limit,
            });
            if !self.batching.on {
                break;
            }
        }
        (throttled, wants)
    }

    fn lost_redis(&self, error: &redis::RedisError) {
        let error = self.shared.endpoint.unavailable(error);
        self.shared.down.store(true, Ordering::Relaxed);
        tracing::warn!(
            limits = %self.shared.name,
            error = %error,
            mode = ?self.shared.fail_mode,
            "shared rate limits: Redis unavailable; {}",
            match self.shared.fail_mode {
                FailMode::Open => "each process limits itself alone",
                FailMode::Closed => "limited tasks are refused",
            }
        );
        self.shared.events.emit(&PermitEvent::Unavailable {
            error,
            mode: self.shared.fail_mode,
        });
        // Callers outside a pool waiting for a moment are answered at once (their receiver
        // sees the sender dropped); pooled tasks waiting for a moment are woken and meet the
        // fail mode at their precheck.
        let mut book = self.shared.lock();
        let mut waiting = Vec::new();
        for cell in book.cells.values_mut() {
            cell.drop_direct();
            waiting.extend(cell.release_waiting());
        }
        drop(book);
        for wakeup in waiting {
            wakeup.wake();
        }
    }

    fn recovered(&self, since: Instant) {
        self.shared.down.store(false, Ordering::Relaxed);
        let after = self.shared.executor.now().saturating_duration_since(since);
        tracing::info!(
            limits = %self.shared.name,
            after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            "shared rate limits: Redis available again"
        );
        self.shared.events.emit(&PermitEvent::Recovered { after });
    }
}

/// A dropped connection is worth one immediate retry: the driver reconnects.
fn worth_one_retry<T>(result: &redis::RedisResult<T>) -> bool {
    matches!(result, Err(error) if error.is_connection_dropped() || error.is_io_error())
}
