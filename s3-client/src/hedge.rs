//! Hedged reads: when a read has not had its first byte by the time most reads have (a
//! quantile of the recent first-byte times, p95 by default, never below a floor), a second
//! request for the same bytes goes out; the first to answer wins and the other is cancelled,
//! its body dropped unread.
//!
//! A hedge is a pool task like any request: it waits for a slot, counts against the limit
//! and its tenant, and is retried, timed out and observed like the read it doubles — there
//! is no hidden concurrency. Three rules keep hedging from adding load when the backend is
//! the problem rather than one unlucky request:
//!
//! - **A budget.** Each read earns a fraction of a hedge (5 % by default) into a token bucket
//!   (10 tokens deep, full at the start), and each hedge spends one, so over any stretch the
//!   extra requests are at most that share of the reads plus the bucket's depth — also in a
//!   provider-wide slowdown, when every read is late.
//! - **Not while the pool is busy.** No hedge is sent while the pool is saturated (every slot
//!   taken, or tasks queued): it would wait behind other work or take a slot from it.
//! - **Not while the backend throttles.** After a read is throttled (503 SlowDown, 429),
//!   nothing is hedged for a cool-off (1 s by default).
//!
//! The trigger is measured from the moment the read's attempt starts (after its queue wait),
//! against first-byte times measured the same way, so a queue building up never triggers
//! hedges. Until enough first-byte times are known (20) nothing is hedged.
//!
//! tower's `hedge` layer races whole responses with a latency histogram and no notion of a
//! first byte, a body or a budget shared with the request's own retries; this one hedges
//! only the wait for the first byte, then reads one body.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{select, BoxFuture, Either};
use pool_core::{CancellationToken, ErrorClass, Pool, TaskError};
use tokio::sync::Notify;

use crate::builder::BuildError;
use crate::classify::classify;
use crate::dispatch::{Attempt, Dispatcher};
use crate::options::CallOptions;

/// First-byte times kept.
const WINDOW: usize = 512;
/// First-byte times needed before anything is hedged.
const MIN_SAMPLES: usize = 20;
/// The trigger is recomputed every this many first-byte times.
const RECOMPUTE_EVERY: usize = 16;

/// How reads are hedged (see the [module docs](self)). Give it to
/// [`S3ClientBuilder::hedged_reads`](crate::S3ClientBuilder::hedged_reads).
///
/// ```
/// use std::time::Duration;
/// use s3_client::HedgeConfig;
/// let config = HedgeConfig::new()
///     .quantile(0.99)
///     .floor(Duration::from_millis(20))
///     .budget(0.02);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeConfig {
    quantile: f64,
    floor: Duration,
    budget: f64,
    burst: f64,
    cool_off: Duration,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            quantile: 0.95,
            floor: Duration::from_millis(5),
            budget: 0.05,
            burst: 10.0,
            cool_off: Duration::from_secs(1),
        }
    }
}

impl HedgeConfig {
    /// p95 of the recent first-byte times, at least 5 ms; a budget of 5 % of reads, 10
    /// hedges deep; 1 s without hedges after a throttled read.
    pub fn new() -> Self {
        Self::default()
    }

    /// The quantile of recent first-byte times after which a read is hedged. Default 0.95.
    /// Must be in (0, 1).
    pub fn quantile(mut self, quantile: f64) -> Self {
        self.quantile = quantile;
        self
    }

    /// The shortest wait before a hedge, whatever the quantile says (a very fast store must
    /// not be hedged on noise). Default 5 ms.
    pub fn floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    /// Hedges allowed per read, on average: each read earns this much of a hedge. Default
    /// 0.05 (5 %). Must be in [0, 1]; 0 never hedges.
    pub fn budget(mut self, share: f64) -> Self {
        self.budget = share;
        self
    }

    /// Most hedges saved up for a burst of slow reads. Default 10. Must be at least 1.
    pub fn burst(mut self, hedges: f64) -> Self {
        self.burst = hedges;
        self
    }

    /// How long no read is hedged after one was throttled. Default 1 s.
    pub fn cool_off(mut self, cool_off: Duration) -> Self {
        self.cool_off = cool_off;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let bad = |field: &'static str, reason: &str| {
            Err(BuildError::Setting {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(self.quantile > 0.0 && self.quantile < 1.0) {
            return bad("hedge quantile", "must be a number in (0, 1)");
        }
        if !(0.0..=1.0).contains(&self.budget) {
            return bad("hedge budget", "must be a share of reads in [0, 1]");
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            return bad("hedge burst", "must be a finite number of at least 1");
        }
        Ok(())
    }
}

/// What hedging did so far: [`S3Client::hedge_stats`](crate::S3Client::hedge_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HedgeStats {
    /// Reads that could be hedged (`get`, `get_range`, `head` and downloads' ranges, through
    /// the pool).
    pub reads: u64,
    /// Hedge attempts started: the extra requests (a hedge retried after an error counts each
    /// attempt; one cancelled as it started may not have reached the server).
    pub sent: u64,
    /// Hedges that answered first.
    pub won: u64,
    /// Requests cancelled because the other of their pair answered first (hedges, or the
    /// reads they doubled), their responses dropped unread.
    pub cancelled: u64,
    /// Late reads not hedged because the budget was spent.
    pub over_budget: u64,
    /// Late reads not hedged because the pool was saturated or the backend throttling.
    pub held_back: u64,
    /// The current trigger (the quantile of recent first-byte times, at least the floor);
    /// `None` until enough first-byte times are known.
    pub trigger: Option<Duration>,
}

/// A client's hedging: its first-byte times, budget and counts.
pub(crate) struct Hedger {
    config: HedgeConfig,
    state: Mutex<State>,
    reads: AtomicU64,
    sent: AtomicU64,
    won: AtomicU64,
    cancelled: AtomicU64,
    over_budget: AtomicU64,
    held_back: AtomicU64,
}

struct State {
    /// First-byte times in nanoseconds, a ring; the first `len` are filled.
    first_bytes: Box<[u64; WINDOW]>,
    len: usize,
    next: usize,
    since_recompute: usize,
    trigger: Option<Duration>,
    tokens: f64,
    throttled_at: Option<Instant>,
}

impl fmt::Debug for Hedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedger")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Why a late read was not hedged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldBack {
    Budget,
    Busy,
}

impl Hedger {
    pub(crate) fn new(config: HedgeConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                first_bytes: Box::new([0; WINDOW]),
                len: 0,
                next: 0,
                since_recompute: 0,
                trigger: None,
                tokens: config.burst,
                throttled_at: None,
            }),
            reads: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            won: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> HedgeStats {
        HedgeStats {
            reads: self.reads.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            won: self.won.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            over_budget: self.over_budget.load(Ordering::Relaxed),
            held_back: self.held_back.load(Ordering::Relaxed),
            trigger: self.state().trigger,
        }
    }

    /// The counts in pool-metrics' terms, read at each of its snapshots.
    #[cfg(feature = "metrics")]
    pub(crate) fn counts(&self) -> pool_metrics::HedgeCounts {
        pool_metrics::HedgeCounts {
            reads: self.reads.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            won: self.won.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            over_budget: self.over_budget.load(Ordering::Relaxed),
            held_back: self.held_back.load(Ordering::Relaxed),
        }
    }

    /// A read's attempt had its first byte (its response) after `latency`.
    fn first_byte(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let mut state = self.state();
        let at = state.next;
        state.first_bytes[at] = nanos;
        state.next = (at + 1) % WINDOW;
        state.len = (state.len + 1).min(WINDOW);
        state.since_recompute += 1;
        if state.len >= MIN_SAMPLES
            && (state.trigger.is_none() || state.since_recompute >= RECOMPUTE_EVERY)
        {
            state.since_recompute = 0;
            let len = state.len;
            let mut sorted = state.first_bytes[..len].to_vec();
            let rank = ((len as f64 * self.config.quantile).ceil() as usize).clamp(1, len) - 1;
            let (_, quantile, _) = sorted.select_nth_unstable(rank);
            state.trigger = Some(Duration::from_nanos(*quantile).max(self.config.floor));
        }
    }

    /// A read's attempt was throttled: no hedges for the cool-off.
    fn throttled(&self) {
        self.state().throttled_at = Some(Instant::now());
    }

    /// A read starts: it earns its share of a hedge. Returns the trigger, if hedging is on
    /// for it.
    fn read_starts(&self) -> Option<Duration> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        state.tokens = (state.tokens + self.config.budget).min(self.config.burst);
        state.trigger
    }

    /// May a late read be hedged now? Spends a token if so.
    fn try_hedge(&self, pool: &Pool) -> Result<(), HoldBack> {
        let stats = pool.stats();
        if stats.queued > 0 || stats.active >= stats.concurrency || stats.paused {
            return Err(HoldBack::Busy);
        }
        let mut state = self.state();
        if state
            .throttled_at
            .is_some_and(|at| at.elapsed() < self.config.cool_off)
        {
            return Err(HoldBack::Busy);
        }
        if state.tokens < 1.0 {
            return Err(HoldBack::Budget);
        }
        state.tokens -= 1.0;
        Ok(())
    }
}

/// The two requests of one hedged read: which answered first, and how to cancel each.
#[derive(Debug)]
pub(crate) struct Race {
    hedger: Arc<Hedger>,
    /// 0: nobody yet; 1: the read; 2: the hedge.
    winner: AtomicUsize,
    /// Whether each request has sent anything (an attempt started).
    sent: [AtomicBool; 2],
    /// Each request's token: children of the call's own, so cancelling the call cancels
    /// both, and the winner cancels the other alone.
    tokens: [CancellationToken; 2],
    /// The read's attempt started (the trigger counts from then).
    started: Notify,
    /// The read had its first byte.
    answered: Notify,
}

/// Which request of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leg {
    /// The read itself.
    Read,
    /// Its hedge.
    Hedge,
}

impl Leg {
    fn index(self) -> usize {
        match self {
            Leg::Read => 0,
            Leg::Hedge => 1,
        }
    }
}

impl Race {
    fn new(hedger: Arc<Hedger>, call_token: Option<&CancellationToken>) -> Arc<Self> {
        let token =
            || call_token.map_or_else(CancellationToken::new, CancellationToken::child_token);
        Arc::new(Self {
            hedger,
            winner: AtomicUsize::new(0),
            sent: [AtomicBool::new(false), AtomicBool::new(false)],
            tokens: [token(), token()],
            started: Notify::new(),
            answered: Notify::new(),
        })
    }

    fn winner(&self) -> Option<Leg> {
        match self.winner.load(Ordering::Acquire) {
            1 => Some(Leg::Read),
            2 => Some(Leg::Hedge),
            _ => None,
        }
    }

    /// One attempt of `leg`: `request` until its response (the first byte), then `read` of
    /// the response — unless the other request answered first: then the response is dropped
    /// unread and the attempt waits for its cancellation (already on its way). A throttled
    /// request stops hedging for the cool-off; every response's wait is a first-byte time.
    pub(crate) async fn attempt<R, T, Fut>(
        self: Arc<Self>,
        leg: Leg,
        request: impl Future<Output = object_store::Result<R>>,
        read: impl FnOnce(R) -> Fut,
    ) -> object_store::Result<T>
    where
        Fut: Future<Output = object_store::Result<T>>,
    {
        match leg {
            Leg::Read => self.started.notify_one(),
            // Counted here, as requests: a hedge cancelled before it started sent nothing.
            Leg::Hedge => {
                self.hedger.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sent[leg.index()].store(true, Ordering::Release);
        let started = Instant::now();
        let response = match request.await {
            Ok(response) => response,
            Err(error) => {
                if classify(&error) == ErrorClass::Throttled {
                    self.hedger.throttled();
                }
                return Err(error);
            }
        };
        self.hedger.first_byte(started.elapsed());
        if !self.claim(leg) {
            drop(response);
            return std::future::pending().await;
        }
        read(response).await
    }

    /// `leg` answered: true if it is the first of the pair (and the other is cancelled).
    fn claim(&self, leg: Leg) -> bool {
        let me = leg.index() + 1;
        let claimed = self
            .winner
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire);
        match claimed {
            Ok(_) => {
                let other = 1 - leg.index();
                self.tokens[other].cancel();
                if self.sent[other].load(Ordering::Acquire) {
                    self.hedger.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                match leg {
                    Leg::Read => self.answered.notify_one(),
                    Leg::Hedge => {
                        self.hedger.won.fetch_add(1, Ordering::Relaxed);
                    }
                }
                true
            }
            Err(winner) => winner == me,
        }
    }
}

/// Cancels both requests of a race when the call is done or dropped: no request of a read
/// outlives it (the winner has finished by then; a loser still waiting for its
/// cancellation, or a read whose call was dropped, is cancelled and its body dropped).
struct CancelBoth(Arc<Race>);

impl Drop for CancelBoth {
    fn drop(&mut self) {
        for token in &self.0.tokens {
            token.cancel();
        }
    }
}

/// How a hedged read runs: its pool, hedger and dispatcher, and the call's options.
pub(crate) struct HedgedRead {
    pub(crate) hedger: Arc<Hedger>,
    pub(crate) pool: Pool,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) operation: &'static str,
    pub(crate) key: String,
    pub(crate) options: CallOptions,
}

/// What a read's pool task resolves with.
type ReadResult<T> = Result<T, TaskError<object_store::Error>>;

impl HedgedRead {
    /// Starts the read — its pool task is queued now, before the returned future is polled
    /// (a download queues its ranges this way) — and returns what resolves with its result,
    /// hedging it if it is late. `make(race, leg)` gives each request's attempts, which must
    /// go through [`Race::attempt`]. Dropping the returned future, polled or not, cancels
    /// both requests.
    pub(crate) fn start<T: Send + 'static>(
        self,
        make: impl Fn(Arc<Race>, Leg) -> Attempt<T> + Send + 'static,
    ) -> BoxFuture<'static, ReadResult<T>> {
        let race = Race::new(
            Arc::clone(&self.hedger),
            self.options.task.cancellation_value(),
        );
        let cancel_both = CancelBoth(Arc::clone(&race));
        let trigger = self.hedger.read_starts();
        let read = self.send(&race, Leg::Read, &make);
        Box::pin(async move {
            let _cancel_both = cancel_both;
            let Some(trigger) = trigger else {
                return read.await;
            };
            // The trigger counts from the read's start, not its queueing.
            let started = std::pin::pin!(race.started.notified());
            let read = match select(read, started).await {
                Either::Left((result, _)) => return result,
                Either::Right((_, read)) => read,
            };
            let answered = std::pin::pin!(race.answered.notified());
            let late = std::pin::pin!(tokio::time::sleep(trigger));
            let read = match select(read, select(answered, late)).await {
                Either::Left((result, _)) => return result,
                Either::Right((Either::Left(_), read)) => return read.await,
                Either::Right((Either::Right(_), read)) => read,
            };
            if race.winner().is_some() {
                return read.await;
            }
            let hedger = &self.hedger;
            if let Err(held) = hedger.try_hedge(&self.pool) {
                let counter = match held {
                    HoldBack::Budget => &hedger.over_budget,
                    HoldBack::Busy => &hedger.held_back,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return read.await;
            }
            let hedge = self.send(&race, Leg::Hedge, &make);
            let (first, first_leg, other) = match select(read, hedge).await {
                Either::Left((result, hedge)) => (result, Leg::Read, hedge),
                Either::Right((result, read)) => (result, Leg::Hedge, read),
            };
            match race.winner() {
                Some(winner) if winner == first_leg => first,
                // The first to end was the loser, cancelled: the winner is reading its body.
                Some(_) => other.await,
                // The first failed without an answer; the other may still have one.
                None => match other.await {
                    Ok(value) => Ok(value),
                    Err(_) => first,
                },
            }
        })
    }

    /// Queues the pool task of `leg`, cancelled by the race's token for it.
    fn send<T: Send + 'static>(
        &self,
        race: &Arc<Race>,
        leg: Leg,
        make: &impl Fn(Arc<Race>, Leg) -> Attempt<T>,
    ) -> BoxFuture<'static, ReadResult<T>> {
        let options = self
            .options
            .clone()
            .cancellation(race.tokens[leg.index()].clone());
        self.dispatcher.start(
            self.operation,
            &self.key,
            &options,
            make(Arc::clone(race), leg),
        )
    }
}
