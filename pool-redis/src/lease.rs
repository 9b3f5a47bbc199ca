//! A held global permit: released when dropped.

use tokio::sync::mpsc::UnboundedSender;

use crate::agent::Request;

/// One global permit, held until dropped.
///
/// Dropping it hands the release to the limit's background agent (no `await`, no runtime
/// needed at the drop site); the agent sends it to Redis with its next script call. While
/// held, the agent renews it every third of the lease TTL.
#[derive(Debug)]
#[must_use = "dropping a lease releases the permit"]
pub struct Lease {
    kind: LeaseKind,
}

#[derive(Debug)]
enum LeaseKind {
    /// Counted in Redis as `agent:seq`.
    Counted {
        seq: u64,
        release: UnboundedSender<Request>,
    },
    /// Granted without Redis while it was unreachable, under [`FailMode::Open`](crate::FailMode).
    Unaccounted,
}

impl Lease {
    pub(crate) fn counted(seq: u64, release: UnboundedSender<Request>) -> Self {
        Self {
            kind: LeaseKind::Counted { seq, release },
        }
    }

    pub(crate) fn unaccounted() -> Self {
        Self {
            kind: LeaseKind::Unaccounted,
        }
    }

    /// Forgets the permit without releasing it (its holder releases it another way).
    pub(crate) fn disarm(mut self) {
        self.kind = LeaseKind::Unaccounted;
    }

    /// Whether this permit is counted in Redis (false if it was granted fail-open while Redis
    /// was unreachable).
    pub fn is_counted(&self) -> bool {
        matches!(self.kind, LeaseKind::Counted { .. })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let LeaseKind::Counted { seq, release } = &self.kind {
            // If the agent is gone, the lease expires in Redis within its TTL.
            let _ = release.send(Request::Release(*seq));
        }
    }
}
