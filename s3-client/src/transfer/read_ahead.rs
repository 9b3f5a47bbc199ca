//! [`ReadAhead`]: how many parts an upload may have read from its source while they wait
//! for a pool slot.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A cap on parts read but not yet started, across a client's uploads.
///
/// The bytes budget bounds the memory parts hold; this bounds how far reading runs ahead
/// of sending. Without it, a thousand small uploads submitted at once each read their body
/// as soon as the budget lets them, so the budget (128 MiB, say) fills with bodies queued
/// behind a pool limit of 16: memory that is touched for nothing yet, and a first touch of
/// fresh pages costs CPU (page faults) on every byte. With it, at most as many parts wait
/// for a slot as the pool has slots, and the next is read when one starts. Running parts
/// do not count, so a pool whose limit grows later is not held back (reading only has to
/// keep ahead of sending).
#[derive(Debug, Clone)]
pub(crate) struct ReadAhead(Arc<Semaphore>);

impl ReadAhead {
    /// At most `parts` parts waiting (at least 1).
    pub(crate) fn new(parts: usize) -> Self {
        ReadAhead(Arc::new(Semaphore::new(
            parts.clamp(1, Semaphore::MAX_PERMITS),
        )))
    }

    /// Waits until one more part may be read.
    pub(crate) async fn acquire(&self) -> Staged {
        let permit = Arc::clone(&self.0)
            .acquire_owned()
            .await
            .expect("the read-ahead semaphore is never closed");
        Staged(Some(permit))
    }

    /// Parts that may still be read now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// A part read ahead of its send: it frees its place when its first attempt starts (or
/// when it is dropped unsent).
#[derive(Debug)]
pub(crate) struct Staged(Option<OwnedSemaphorePermit>);

impl Staged {
    /// The part's first attempt started: the next part may be read.
    pub(crate) fn started(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_part_is_read_when_a_waiting_one_starts() {
        let read_ahead = ReadAhead::new(1);
        let mut first = read_ahead.acquire().await;
        let second = tokio::spawn({
            let read_ahead = read_ahead.clone();
            async move { read_ahead.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        first.started();
        let second = tokio::time::timeout(std::time::Duration::from_secs(30), second)
            .await
            .expect("read once the first part started")
            .unwrap();
        assert_eq!(read_ahead.available(), 0);
        drop(second);
        assert_eq!(read_ahead.available(), 1);
        assert_eq!(ReadAhead::new(0).available(), 1);
    }
}
