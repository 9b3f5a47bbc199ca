//! Byte-level progress of a transfer, and what it cost in the end.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where a transfer stands, given to the call's progress callback
/// ([`Call::on_progress`](crate::Call::on_progress)) each time a range or part is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferProgress {
    /// The transfer's size when known (a download's object, an upload from a file).
    pub total: Option<u64>,
    /// Bytes done: written to the sink (download) or stored (upload).
    pub transferred: u64,
    /// Bytes of the ranges or parts that were requested again: what retries moved twice at
    /// most (a request refused before its body moved none of it).
    pub resent: u64,
}

/// What a finished transfer moved and what its retries cost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferSummary {
    /// The object's bytes moved.
    pub bytes: u64,
    /// Ranges (download) or parts (upload) it was split into; 1 for a single request.
    pub pieces: u64,
    /// Retries of those pieces (each re-sends only its own piece).
    pub retries: u64,
    /// Bytes of the retried pieces, once per retry (see [`TransferProgress::resent`]).
    pub resent: u64,
    /// The object's ETag (the uploaded one, or the one downloaded).
    pub e_tag: Option<String>,
}

/// A progress callback: `Fn(TransferProgress)`, shared, called from the transfer's task.
#[derive(Clone)]
pub struct ProgressCallback(pub(crate) Arc<dyn Fn(TransferProgress) + Send + Sync>);

impl ProgressCallback {
    /// Wraps `f`.
    pub fn new(f: impl Fn(TransferProgress) + Send + Sync + 'static) -> Self {
        ProgressCallback(Arc::new(f))
    }
}

impl fmt::Debug for ProgressCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressCallback")
    }
}

/// Counts a transfer's bytes and reports them.
#[derive(Debug)]
pub(crate) struct Meter {
    total: AtomicU64,
    transferred: AtomicU64,
    resent: AtomicU64,
    retries: AtomicU64,
    pieces: AtomicU64,
    callback: Option<ProgressCallback>,
}

impl Meter {
    pub(crate) fn new(total: Option<u64>, callback: Option<ProgressCallback>) -> Self {
        Meter {
            total: AtomicU64::new(total.unwrap_or(u64::MAX)),
            transferred: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pieces: AtomicU64::new(0),
            callback,
        }
    }

    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// A piece of `bytes` is done after `attempts` attempts.
    pub(crate) fn piece_done(&self, bytes: u64, attempts: u64) {
        let retries = attempts.saturating_sub(1);
        self.pieces.fetch_add(1, Ordering::Relaxed);
        self.retries.fetch_add(retries, Ordering::Relaxed);
        self.resent.fetch_add(retries * bytes, Ordering::Relaxed);
        self.transferred.fetch_add(bytes, Ordering::Relaxed);
        if let Some(callback) = &self.callback {
            (callback.0)(self.progress());
        }
    }

    pub(crate) fn progress(&self) -> TransferProgress {
        let total = self.total.load(Ordering::Relaxed);
        TransferProgress {
            total: (total != u64::MAX).then_some(total),
            transferred: self.transferred.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn summary(&self, e_tag: Option<String>) -> TransferSummary {
        TransferSummary {
            bytes: self.transferred.load(Ordering::Relaxed),
            pieces: self.pieces.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            e_tag,
        }
    }
}
