//! Settings of shared rate limits, checked before anything connects.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::policy::{Aimd, KeyedRateLimiter};
use pool_core::{CancellationToken, Executor, TaskInfo};
use tokio::sync::Notify;

use super::agent::{Batching, RateAgent};
use super::script::RateScripts;
use super::{Book, Inner, KeyFn, LimitFn, RedisRateLimiter, Shared};
use crate::builder::resolve_executor;
use crate::endpoint::RedisEndpoint;
use crate::error::PermitError;
use crate::event::{EventSink, FailMode, PermitEvent};
use crate::keys::LimitKeys;

/// Longest batch window accepted: tasks wait up to one window for their booking.
const MAX_BATCH_WINDOW: Duration = Duration::from_secs(1);

/// Builds a [`RedisRateLimiter`]; see [`RedisRateLimiter::builder`]. Every setter documents
/// its default.
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect`"]
pub struct RedisRateLimiterBuilder<K> {
    endpoint: RedisEndpoint,
    name: String,
    key_of: Arc<KeyFn<K>>,
    limit_of: Arc<LimitFn<K>>,
    aimd: Option<Aimd>,
    max_wait: Option<Duration>,
    forget_idle_after: Duration,
    batching: Batching,
    fail_mode: FailMode,
    io_timeout: Duration,
    executor: Option<Arc<dyn Executor>>,
    events: EventSink,
}

impl<K> RedisRateLimiterBuilder<K>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    pub(crate) fn new(
        endpoint: RedisEndpoint,
        name: &str,
        key_of: Arc<KeyFn<K>>,
        limit_of: Arc<LimitFn<K>>,
    ) -> Self {
        Self {
            endpoint,
            name: name.to_owned(),
            key_of,
            limit_of,
            aimd: None,
            max_wait: None,
            forget_idle_after: Duration::from_secs(60),
            batching: Batching {
                on: true,
                window: Duration::from_millis(1),
                horizon: Duration::from_millis(100),
            },
            fail_mode: FailMode::Open,
            io_timeout: Duration::from_secs(1),
            executor: None,
            events: EventSink::none(),
        }
    }

    /// Each key's rate backs off on throttled attempts in any process and recovers while
    /// there are none, for all processes. Default: fixed rates.
    pub fn adaptive(mut self, aimd: Aimd) -> Self {
        self.aimd = Some(aimd);
        self
    }

    /// Rejects (with `RejectionKind::RateLimited`) an attempt whose booked moment is further
    /// away than this, or that has waited this long for a moment (its key booked up to the
    /// horizon by others all along). Default: waits as long as needed.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Forgets keys unused for this long, here and in Redis (unless their rate is still
    /// recovering). Default 60 s; at least 1 ms (`Duration::MAX`: never).
    pub fn forget_idle_after(mut self, idle: Duration) -> Self {
        self.forget_idle_after = idle;
        self
    }

    /// Books many moments per call — for every key, every task of this process waiting for
    /// one — with calls at least `window` apart (default on, 1 ms; at most 1 s). Off: one
    /// moment per call, as soon as a task asks (more calls, a little less latency when idle).
    pub fn batching(mut self, on: bool, window: Duration) -> Self {
        self.batching.on = on;
        self.batching.window = window;
        self
    }

    /// Books no moment further ahead than this (default 100 ms; from 1 ms to 1 min). A
    /// process does not hold a long run of a key's moments that other processes could share,
    /// and a throttled key voids at most this much booked at the old rate. Tasks of a key
    /// booked up to the horizon wait (parked) for the next call, a tenth of it later.
    pub fn booking_horizon(mut self, horizon: Duration) -> Self {
        self.batching.horizon = horizon;
        self
    }

    /// What limited tasks get while Redis is unreachable. Default [`FailMode::Open`]: each
    /// process limits itself alone at each key's full rate (all of them together may exceed
    /// it); [`FailMode::Closed`] refuses them.
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Timeout of each connection attempt and each Redis call (default 1 s; from 1 ms to
    /// 1 min).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Times bookings and spawns the agent on `executor` — give the pool's, so that moments
    /// are on the pool's clock (default: the tokio runtime `connect` is called in). The Redis
    /// driver's sockets need a tokio runtime.
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Calls `callback` for every [`PermitEvent`] (Redis lost, Redis back).
    pub fn on_event(mut self, callback: impl Fn(&PermitEvent) + Send + Sync + 'static) -> Self {
        self.events = EventSink::new(callback);
        self
    }

    fn check(&self) -> Result<LimitKeys, PermitError> {
        let keys = LimitKeys::new(&self.name)?;
        let invalid = |what: String| Err(PermitError::InvalidSetting(what));
        if let Some(aimd) = &self.aimd {
            if let Err(error) = aimd.validate() {
                return invalid(error.to_string());
            }
        }
        if self.forget_idle_after < Duration::from_millis(1) {
            return invalid("forget_idle_after must be at least 1 ms".into());
        }
        if self.batching.window > MAX_BATCH_WINDOW {
            return invalid(format!(
                "the batch window must be at most {MAX_BATCH_WINDOW:?}, got {:?}",
                self.batching.window
            ));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.batching.horizon) {
            return invalid(format!(
                "the booking horizon must be from 1 ms to 1 min, got {:?}",
                self.batching.horizon
            ));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.io_timeout) {
            return invalid(format!(
                "I/O timeout must be from 1 ms to 1 min, got {:?}",
                self.io_timeout
            ));
        }
        Ok(keys)
    }

    /// Checks the settings, connects, and starts the background agent.
    ///
    /// # Errors
    /// [`PermitError::InvalidName`] / [`InvalidSetting`](PermitError::InvalidSetting) /
    /// [`InvalidUrl`](PermitError::InvalidUrl) for bad input, [`PermitError::Unavailable`] if
    /// Redis cannot be reached now.
    pub async fn connect(self) -> Result<RedisRateLimiter<K>, PermitError> {
        let keys = self.check()?;
        let executor = resolve_executor(self.executor.clone())?;
        let (conn, subscriptions) = self.endpoint.connect(self.io_timeout).await?;
        let (key_prefix, channel) = keys.rate_keys();
        let scripts = RateScripts::new(
            self.aimd,
            self.forget_idle_after,
            self.batching.horizon,
            key_prefix,
            channel,
        );
        let fallback = {
            let (key_of, limit_of) = (Arc::clone(&self.key_of), Arc::clone(&self.limit_of));
            let mut local = KeyedRateLimiter::builder(
                Arc::clone(&executor),
                move |task: &TaskInfo| key_of(task),
                move |key: &K| limit_of(key),
            )
            .forget_idle_after(self.forget_idle_after);
            if let Some(aimd) = self.aimd {
                local = local.adaptive(aimd);
            }
            if let Some(max_wait) = self.max_wait {
                local = local.max_wait(max_wait);
            }
            local
                .build()
                .map_err(|error| PermitError::InvalidSetting(error.to_string()))?
        };
        let now = executor.now();
        let shared = Arc::new(Shared {
            key_of: self.key_of,
            limit_of: self.limit_of,
            executor: Arc::clone(&executor),
            endpoint: self.endpoint,
            name: keys.name.clone(),
            adaptive: self.aimd.is_some(),
            max_wait: self.max_wait,
            forget_idle_after: self.forget_idle_after,
            fail_mode: self.fail_mode,
            fallback,
            book: Mutex::new(Book {
                cells: HashMap::new(),
                cleared: HashMap::new(),
                throttled: Vec::new(),
                seq: 0,
                next_sweep: now,
            }),
            wake: Notify::new(),
            down: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            moments: AtomicU64::new(0),
            events: self.events,
        });
        let stop = CancellationToken::new();
        let forget = {
            let shared = Arc::clone(&shared);
            move |message: crate::subscriber::Message| {
                if message.payload.is_empty() {
                    return;
                }
                // Another process was throttled on this key: moments booked here at the old
                // rate are dropped; their tasks ask again when they come back.
                if let Some(cell) = shared.lock().cells.get_mut(&message.payload) {
                    cell.forget_moments();
                }
            }
        };
        executor.spawn(Box::pin(crate::subscriber::subscribe(
            subscriptions,
            vec![scripts.channel().to_owned()],
            Arc::clone(&executor),
            stop.clone(),
            forget,
        )));
        let agent = RateAgent {
            shared: Arc::clone(&shared),
            scripts,
            conn,
            batching: self.batching,
            stop: stop.clone(),
        };
        executor.spawn(Box::pin(agent.run()));
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                shared,
                _stop: stop.drop_guard(),
            }),
        })
    }
}

impl<K> fmt::Debug for RedisRateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiterBuilder")
            .field("endpoint", &self.endpoint)
            .field("name", &self.name)
            .field("aimd", &self.aimd)
            .field("max_wait", &self.max_wait)
            .field("forget_idle_after", &self.forget_idle_after)
            .field("batching", &self.batching)
            .field("fail_mode", &self.fail_mode)
            .field("io_timeout", &self.io_timeout)
            .field("executor", &self.executor)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_core::policy::RateLimit;

    fn limits(url: &str, name: &str) -> RedisRateLimiterBuilder<String> {
        RedisRateLimiter::builder(
            url,
            name,
            |task: &TaskInfo| task.metadata.get("key").map(str::to_owned),
            |_: &String| RateLimit::new(3_500.0, 350).unwrap(),
        )
        .adaptive(Aimd::default())
    }

    fn builder() -> RedisRateLimiterBuilder<String> {
        limits("redis://:pw@127.0.0.1:1", "bucket")
    }

    #[test]
    fn settings_out_of_range_are_typed_errors_and_extremes_that_work_pass() {
        let refused = [
            builder().forget_idle_after(Duration::ZERO),
            builder().batching(true, Duration::MAX),
            builder().io_timeout(Duration::ZERO),
            builder().io_timeout(Duration::MAX),
            builder().booking_horizon(Duration::ZERO),
            builder().booking_horizon(Duration::MAX),
            builder().adaptive(Aimd::new().decrease_factor(1.0)),
            limits("redis://127.0.0.1:1", "two words"),
        ];
        for case in refused {
            assert!(case.check().is_err(), "{case:?}");
        }
        let accepted = [
            builder(),
            builder().forget_idle_after(Duration::from_millis(1)),
            builder().forget_idle_after(Duration::MAX),
            builder().batching(false, Duration::ZERO),
            builder().batching(true, MAX_BATCH_WINDOW),
            builder().max_wait(Duration::ZERO),
            builder().max_wait(Duration::MAX),
            builder().io_timeout(Duration::from_millis(1)),
            builder().booking_horizon(Duration::from_millis(1)),
            builder().booking_horizon(Duration::from_secs(60)),
            builder().adaptive(Aimd::new().decrease_cooldown(Duration::MAX)),
        ];
        for case in accepted {
            assert!(case.check().is_ok(), "{case:?}");
        }
    }

    #[test]
    fn debug_masks_the_password() {
        let shown = format!("{:?}", builder());
        assert!(shown.contains("redis://:***@127.0.0.1:1"), "{shown}");
        assert!(!shown.contains("pw@"), "{shown}");
    }
}
