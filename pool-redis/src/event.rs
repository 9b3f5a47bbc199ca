//! What a limit reports about itself besides logs: for alerts and metrics.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::PermitError;

/// What happens to tasks while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Tasks are refused with [`PermitError::Unavailable`] (in a pool:
    /// `TaskError::Rejected` of kind `Unavailable`). The global limit is never exceeded.
    #[default]
    Closed,
    /// Tasks run under the pool's local limit alone until Redis is back; the global limit
    /// may be exceeded meanwhile. A [`PermitEvent::Unavailable`] and a warning say so.
    Open,
}

/// Something the permit agent noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermitEvent {
    /// Redis stopped answering; from now on tasks are handled as `mode` says.
    Unavailable {
        /// The failure (credentials masked).
        error: PermitError,
        /// How tasks are handled until Redis is back.
        mode: FailMode,
    },
    /// Redis answers again; permits are leased from it again.
    Recovered {
        /// How long it was unavailable.
        after: Duration,
    },
    /// Leases this process holds were gone from Redis at renewal — they expired while this
    /// process could not reach Redis (longer than a lease TTL: a pause, a partition, a slow
    /// failover), or Redis lost them (a restart without persistence, a failover before they
    /// were replicated) — and were taken back: their tasks are running, so they count, even
    /// above the limit. Meanwhile other processes may have been granted that room; no new
    /// permit is granted until fewer than the limit are held.
    LeasesRestored {
        /// How many.
        count: usize,
        /// By how many leases all processes together were above the limit afterwards.
        over_limit: u64,
    },
}

/// A callback for [`PermitEvent`]s, called on the agent's task: keep it quick.
#[derive(Clone)]
pub(crate) struct EventSink(Option<Arc<Callback>>);

type Callback = dyn Fn(&PermitEvent) + Send + Sync;

impl EventSink {
    pub(crate) fn none() -> Self {
        Self(None)
    }

    pub(crate) fn new(callback: impl Fn(&PermitEvent) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(callback)))
    }

    pub(crate) fn emit(&self, event: &PermitEvent) {
        if let Some(callback) = &self.0 {
            callback(event);
        }
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "EventSink(set)"
        } else {
            "EventSink(none)"
        })
    }
}
