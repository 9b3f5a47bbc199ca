//! The background agent of one limit in one process: the only code that talks to Redis for
//! permits.
//!
//! Waiting tasks queue here, first come first served; releases and requests are batched, so
//! one script call releases everything that ended since the last call and asks for as many
//! leases as there are waiters. One more script call every third of the lease TTL renews all
//! leases this process holds. While tasks wait and nothing was granted, the agent retries on
//! a wake-up from the limit's pub/sub channel (room appeared, limit changed) or after an
//! exponential backoff with jitter, whichever comes first: it never polls in a tight loop.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use pool_core::{CancellationToken, Executor};
use redis::RedisError;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, WeakUnboundedSender};
use tokio::sync::{oneshot, Notify};

use crate::backoff::Backoff;
use crate::claims::{Answer, Claims, ParkedWaiter};
use crate::endpoint::{Connection, RedisEndpoint, Subscriptions};
use crate::error::PermitError;
use crate::event::{EventSink, FailMode, PermitEvent};
use crate::lease::Lease;
use crate::scripts::Scripts;
use crate::subscriber::subscribe;

/// What handles and leases ask of the agent.
#[derive(Debug)]
pub(crate) enum Request {
    /// A task wants a permit.
    Acquire(Waiter),
    /// A lease was dropped.
    Release(u64),
    /// Answer once every release received so far has been sent to Redis.
    Flush(oneshot::Sender<()>),
}

/// Who waits for a permit, first come first served.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A caller awaiting the answer ([`RedisPermits::lease`](crate::RedisPermits::lease)).
    Awaiting(oneshot::Sender<Answer>),
    /// A pool's task parked without its slot: the answer is set aside and the task woken.
    Parked(ParkedWaiter),
}

impl Waiter {
    /// Hands `answer` over; the answer back if the waiter is gone.
    fn send(self, answer: Answer, now: Instant) -> Result<(), Answer> {
        match self {
            Waiter::Awaiting(reply) => reply.send(answer),
            Waiter::Parked(parked) => parked.send(answer, now),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Waiter::Awaiting(reply) => reply.is_closed(),
            Waiter::Parked(parked) => parked.is_closed(),
        }
    }
}

/// What the agent publishes about itself, read by [`RedisPermits::status`](crate::RedisPermits::status).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) held: AtomicUsize,
    pub(crate) waiting: AtomicUsize,
    pub(crate) unavailable: AtomicBool,
    /// Last limit seen in Redis (0: none seen yet).
    pub(crate) limit: AtomicU64,
    /// The last limit this process was told (the builder's, then every limit seen in Redis
    /// or set here): what a script stores if Redis lost the limit key.
    pub(crate) seed_limit: AtomicU64,
    /// Leases held by all processes at the last script call.
    pub(crate) held_globally: AtomicU64,
    /// The parked tasks of every handle (one per pool), swept every renewal period.
    claims: Mutex<Vec<Weak<Claims>>>,
}

impl Shared {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            seed_limit: AtomicU64::new(limit),
            ..Self::default()
        }
    }

    /// Records the limit in force in Redis.
    pub(crate) fn saw_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
        self.seed_limit.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn seed_limit(&self) -> u64 {
        self.seed_limit.load(Ordering::Relaxed)
    }

    /// A new handle's parked tasks, to be swept.
    pub(crate) fn register(&self, claims: &Arc<Claims>) {
        let mut all = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|claims| claims.strong_count() > 0);
        all.push(Arc::downgrade(claims));
    }

    /// Drops answers not taken since `cutoff` and claims of tasks gone; how many permits
    /// that released.
    fn sweep_claims(&self, cutoff: Instant) -> usize {
        let all: Vec<Arc<Claims>> = {
            let mut all = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            all.retain(|claims| claims.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        all.iter().map(|claims| claims.sweep(cutoff)).sum()
    }
}

/// How the agent behaves; see the builder for what each means.
#[derive(Debug, Clone)]
pub(crate) struct AgentSettings {
    pub(crate) fail_mode: FailMode,
    pub(crate) lease_ttl: Duration,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_probe_interval: Duration,
}

/// Whether Redis answers, and since when it does not.
#[derive(Debug, Clone, Copy)]
enum Link {
    Up,
    Down { since: Instant },
}

#[derive(Debug)]
pub(crate) struct Agent {
    scripts: Scripts,
    conn: Connection,
    endpoint: RedisEndpoint,
    executor: Arc<dyn Executor>,
    settings: AgentSettings,
    events: EventSink,
    shared: Arc<Shared>,
    requests: UnboundedReceiver<Request>,
    /// For the leases it grants; weak, so the channel closes when every handle and lease is gone.
    releases_to: WeakUnboundedSender<Request>,
    wake: Arc<Notify>,
    waiters: VecDeque<Waiter>,
    flushes: Vec<oneshot::Sender<()>>,
    held: BTreeSet<u64>,
    releases: Vec<u64>,
    next_seq: u64,
    link: Link,
    backoff: Backoff,
    probe_backoff: Backoff,
    retry_at: Option<Instant>,
    /// Set by the last exchange: ending leases may go straight to the next local waiter.
    may_hand_over: bool,
    try_now: bool,
    renew_due: bool,
}

impl Agent {
    /// The agent, and the sender its handles use; the agent stops once that sender and every
    /// clone of it (handles, leases) are gone.
    pub(crate) fn new(
        scripts: Scripts,
        conn: Connection,
        endpoint: RedisEndpoint,
        settings: AgentSettings,
        events: EventSink,
        shared: Arc<Shared>,
        executor: Arc<dyn Executor>,
    ) -> (Self, UnboundedSender<Request>) {
        let (sender, requests) = mpsc::unbounded_channel();
        let releases_to = sender.downgrade();
        let agent = Self {
            backoff: Backoff::new(settings.min_backoff, settings.max_backoff),
            probe_backoff: Backoff::new(
                settings.max_backoff.min(settings.max_probe_interval),
                settings.max_probe_interval,
            ),
            scripts,
            conn,
            endpoint,
            executor,
            settings,
            events,
            shared,
            requests,
            releases_to,
            wake: Arc::new(Notify::new()),
            waiters: VecDeque::new(),
            flushes: Vec::new(),
            held: BTreeSet::new(),
            releases: Vec::new(),
            next_seq: 1,
            link: Link::Up,
            retry_at: None,
            may_hand_over: false,
            try_now: false,
            renew_due: false,
        };
        (agent, sender)
    }

    /// Runs until every handle and lease is gone, then releases what is left and stops.
    pub(crate) async fn run(mut self, subscriptions: Subscriptions) {
        let stop = CancellationToken::new();
        let _stop_subscriber = stop.clone().drop_guard();
        let wake = Arc::clone(&self.wake);
        self.executor.spawn(Box::pin(subscribe(
            subscriptions,
            vec![self.scripts.keys().channel.clone()],
            Arc::clone(&self.executor),
            stop,
            move |_message| wake.notify_one(),
        )));
        let renew_every = self.settings.lease_ttl / 3;
        let mut next_renewal = self.executor.now().checked_add(renew_every);
        let mut open = true;
        loop {
            if open {
                let now = self.executor.now();
                let deadline = match (self.retry_at, next_renewal) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let pause = deadline.map_or(Duration::MAX, |at| at.saturating_duration_since(now));
                tokio::select! {
                    request = self.requests.recv() => match request {
                        Some(request) => self.accept(request),
                        None => open = false,
                    },
                    _ = self.wake.notified() => {
                        // Room elsewhere or a new limit: check the share before handing over.
                        self.try_now = true;
                        self.may_hand_over = false;
                    }
                    _ = self.executor.sleep(pause) => {
                        let now = self.executor.now();
                        if next_renewal.is_some_and(|at| at <= now) {
                            self.renew_due = true;
                            next_renewal = now.checked_add(renew_every);
                            self.sweep_claims(now.checked_sub(renew_every).unwrap_or(now));
                        }
                        if self.retry_at.is_some_and(|at| at <= now) {
                            self.retry_at = None;
                            self.try_now = true;
                        }
                    }
                }
                while let Ok(request) = self.requests.try_recv() {
                    self.accept(request);
                }
            }
            if !open && (self.releases.is_empty() || matches!(self.link, Link::Down { .. })) {
                // Every handle and lease is gone and nothing is left to send (or Redis is
                // down, and the leases will expire on their own).
                break;
            }
            self.step().await;
        }
    }

    fn accept(&mut self, request: Request) {
        match request {
            Request::Acquire(reply) => {
                if let Link::Down { .. } = self.link {
                    let answer = self.unavailable_answer(&self.unavailable_error(None));
                    let _ = reply.send(answer, self.executor.now());
                } else {
                    self.waiters.push_back(reply);
                    // While earlier waiters wait for room (a retry is scheduled), asking
                    // again now would be futile: the new one queues behind them.
                    if self.retry_at.is_none() {
                        self.try_now = true;
                    }
                }
            }
            Request::Release(seq) => {
                // A lease handed over and disarmed is not ours to release twice.
                if self.held.contains(&seq) && !self.hand_over(seq) {
                    self.held.remove(&seq);
                    self.releases.push(seq);
                }
            }
            Request::Flush(reply) => {
                self.flushes.push(reply);
                self.try_now = true;
            }
        }
        self.publish_counts();
    }

    /// Passes the ending lease `seq` to the next waiter, if this agent may keep its leases
    /// (within the limit and its fair share, as of its last exchange). Saves a round trip
    /// per task while this process is busy.
    fn hand_over(&mut self, seq: u64) -> bool {
        if !self.may_hand_over || !matches!(self.link, Link::Up) {
            return false;
        }
        let Some(releases_to) = self.releases_to.upgrade() else {
            return false;
        };
        let mut lease = Lease::counted(seq, releases_to);
        let now = self.executor.now();
        while let Some(reply) = self.waiters.pop_front() {
            match reply.send(Ok(lease), now) {
                Ok(()) => return true,
                // That waiter gave up; try the next one with the same lease.
                Err(Ok(returned)) => lease = returned,
                Err(Err(_)) => return false,
            }
        }
        // Nobody waits: the caller releases it, so this handle must not queue it again.
        lease.disarm();
        false
    }

    async fn step(&mut self) {
        if let Link::Down { since } = self.link {
            if !std::mem::take(&mut self.try_now) {
                return;
            }
            // The probe is a real exchange: it also sends pending releases.
            // (A failed probe schedules the next one.)
            if self.exchange().await {
                self.recovered(since);
            }
            self.answer_flushes();
            return;
        }
        self.waiters.retain(|reply| !reply.is_closed());
        if std::mem::take(&mut self.renew_due) && !self.held.is_empty() {
            self.renew().await;
        }
        let wants = !self.waiters.is_empty() && self.try_now;
        if matches!(self.link, Link::Up) && (wants || !self.releases.is_empty()) {
            self.try_now = false;
            self.exchange().await;
        }
        self.answer_flushes();
        self.publish_counts();
    }

    /// One script call: send releases, ask for a lease per waiter. False if Redis failed.
    async fn exchange(&mut self) -> bool {
        let want = self.waiters.len() as u64;
        let first = self.next_seq;
        let released = std::mem::take(&mut self.releases);
        let seed = self.shared.seed_limit();
        let mut result = self
            .scripts
            .exchange(&mut self.conn, seed, &released, want, first)
            .await;
        if matches!(&result, Err(e) if worth_one_retry(e)) {
            result = self
                .scripts
                .exchange(&mut self.conn, seed, &released, want, first)
                .await;
        }
        let exchanged = match result {
            Ok(exchanged) => exchanged,
            Err(error) => {
                self.releases = released;
                self.lost_redis(&error);
                return false;
            }
        };
        self.shared.saw_limit(exchanged.limit);
        self.shared
            .held_globally
            .store(exchanged.held, Ordering::Relaxed);
        self.may_hand_over = exchanged.keep;
        self.next_seq += exchanged.granted;
        for seq in first..first + exchanged.granted {
            self.held.insert(seq);
            let Some(releases_to) = self.releases_to.upgrade() else {
                break;
            };
            let lease = Lease::counted(seq, releases_to);
            match self.waiters.pop_front() {
                // A waiter that gave up drops the lease, which queues its release.
                Some(reply) => drop(reply.send(Ok(lease), self.executor.now())),
                None => drop(lease),
            }
        }
        if self.waiters.is_empty() {
            self.backoff.reset();
            self.retry_at = None;
        } else {
            self.retry_at = self.executor.now().checked_add(self.backoff.next_delay());
        }
        true
    }

    async fn renew(&mut self) {
        let held: Vec<u64> = self.held.iter().copied().collect();
        let seed = self.shared.seed_limit();
        let mut result = self.scripts.renew(&mut self.conn, seed, &held).await;
        if matches!(&result, Err(e) if worth_one_retry(e)) {
            result = self.scripts.renew(&mut self.conn, seed, &held).await;
        }
        match result {
            Ok(renewed) => {
                self.shared.saw_limit(renewed.limit);
                self.shared
                    .held_globally
                    .store(renewed.held, Ordering::Relaxed);
                if renewed.restored > 0 {
                    let over_limit = renewed.held.saturating_sub(renewed.limit);
                    if over_limit > 0 {
                        tracing::warn!(
                            limit = %self.scripts.keys().name,
                            count = renewed.restored,
                            over_limit,
                            "global permits: leases missing in Redis were taken back above \
                             the limit (their tasks run); no new permits until below it"
                        );
                    } else {
                        tracing::info!(
                            limit = %self.scripts.keys().name,
                            count = renewed.restored,
                            "global permits: leases missing in Redis were taken back"
                        );
                    }
                    self.events.emit(&PermitEvent::LeasesRestored {
                        count: renewed.restored as usize,
                        over_limit,
                    });
                }
            }
            Err(error) => self.lost_redis(&error),
        }
    }

    fn unavailable_error(&self, error: Option<&RedisError>) -> PermitError {
        match error {
            Some(error) => self.endpoint.unavailable(error),
            None => PermitError::Unavailable {
                url: self.endpoint.to_string(),
                message: "not answering since an earlier failure".to_owned(),
            },
        }
    }

    fn unavailable_answer(&self, error: &PermitError) -> Result<Lease, PermitError> {
        match self.settings.fail_mode {
            FailMode::Open => Ok(Lease::unaccounted()),
            FailMode::Closed => Err(error.clone()),
        }
    }

    /// Redis failed: answer every waiter as the fail mode says and start probing.
    fn lost_redis(&mut self, error: &RedisError) {
        let error = self.unavailable_error(Some(error));
        self.may_hand_over = false;
        if let Link::Up = self.link {
            self.link = Link::Down {
                since: self.executor.now(),
            };
            self.shared.unavailable.store(true, Ordering::Relaxed);
            tracing::warn!(
                limit = %self.scripts.keys().name,
                error = %error,
                mode = ?self.settings.fail_mode,
                "global permits: Redis unavailable; {}",
                match self.settings.fail_mode {
                    FailMode::Open => "tasks run under the local limit only",
                    FailMode::Closed => "tasks are refused",
                }
            );
            self.events.emit(&PermitEvent::Unavailable {
                error: error.clone(),
                mode: self.settings.fail_mode,
            });
        }
        let now = self.executor.now();
        for reply in self.waiters.drain(..) {
            let _ = reply.send(
                match self.settings.fail_mode {
                    FailMode::Open => Ok(Lease::unaccounted()),
                    FailMode::Closed => Err(error.clone()),
                },
                now,
            );
        }
        self.backoff.reset();
        self.retry_at = self
            .executor
            .now()
            .checked_add(self.probe_backoff.next_delay());
        self.publish_counts();
    }

    fn recovered(&mut self, since: Instant) {
        self.link = Link::Up;
        self.shared.unavailable.store(false, Ordering::Relaxed);
        self.probe_backoff.reset();
        let after = self.executor.now().saturating_duration_since(since);
        tracing::info!(
            limit = %self.scripts.keys().name,
            after_ms = after.as_millis() as u64,
            "global permits: Redis available again"
        );
        self.events.emit(&PermitEvent::Recovered { after });
        // Leases may be gone if Redis restarted without its data: check them now.
        self.renew_due = true;
        self.try_now = true;
    }

    /// Releases the permits set aside for parked tasks that did not take them since
    /// `cutoff` (the task left: cancelled, stopped, refused by another policy).
    fn sweep_claims(&self, cutoff: Instant) {
        let released = self.shared.sweep_claims(cutoff);
        if released > 0 {
            tracing::debug!(
                limit = %self.scripts.keys().name,
                released,
                "global permits: released permits their parked tasks did not come back for"
            );
        }
    }

    fn answer_flushes(&mut self) {
        if self.releases.is_empty() || matches!(self.link, Link::Down { .. }) {
            for reply in self.flushes.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    fn publish_counts(&self) {
        self.shared.held.store(self.held.len(), Ordering::Relaxed);
        self.shared
            .waiting
            .store(self.waiters.len(), Ordering::Relaxed);
    }
}

/// A dropped connection is worth one immediate retry: the connection manager reconnects.
fn worth_one_retry(error: &RedisError) -> bool {
    error.is_connection_dropped() || error.is_io_error()
}
