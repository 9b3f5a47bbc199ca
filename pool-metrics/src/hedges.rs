//! Hedged reads' counts. Whoever hedges (s3-client's hedged reads) keeps its own counters and
//! hands the collector a way to read them ([`Metrics::count_hedges_from`]); every snapshot
//! reads them then, so nothing is counted twice and the hot path stays the hedger's own.
//!
//! [`Metrics::count_hedges_from`]: crate::Metrics::count_hedges_from

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What hedged reads did so far ([`LiveStats::hedges`](crate::LiveStats::hedges); Prometheus
/// `…_hedge_…`). Lifetime counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgeCounts {
    /// Reads that could be hedged.
    pub reads: u64,
    /// Hedge requests sent: the extra requests.
    pub sent: u64,
    /// Hedges that answered before the read they doubled.
    pub won: u64,
    /// Requests cancelled because the other of their pair answered first (their responses
    /// dropped unread).
    pub cancelled: u64,
    /// Late reads not hedged because the hedge budget was spent.
    pub over_budget: u64,
    /// Late reads not hedged because the pool was saturated or the backend throttling.
    pub held_back: u64,
}

/// Reads the hedger's counts.
#[derive(Clone)]
pub(crate) struct HedgeSource(Arc<dyn Fn() -> HedgeCounts + Send + Sync>);

impl HedgeSource {
    pub(crate) fn new(read: impl Fn() -> HedgeCounts + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }

    pub(crate) fn read(&self) -> HedgeCounts {
        (self.0)()
    }
}

impl fmt::Debug for HedgeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HedgeSource")
    }
}
