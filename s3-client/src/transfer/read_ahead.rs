//! [`ReadAhead`]: how much an upload may have read from its source while its parts wait
//! for a pool slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A cap on the bytes of parts read but not yet started, across a client's uploads: a part
/// is read only while less than the cap waits (so at least one part may always wait).
/// Parts being read do not count.
///
/// The bytes budget bounds the memory parts hold; this bounds how far reading runs ahead of
/// sending. Parts that wait are a cushion: when several slots free at once, a part is ready
/// for each while the reader, often one task reading for many uploads, is woken. They also
/// go cold before they are hashed (SigV4) and sent. Both were measured on 1,000 uploads of
/// 1 MiB from a fast source at a pool limit of 16 (`pool-bench transfer --workloads many
/// --directions upload --trace`, load 9, two rounds each): with one part waiting the client
/// spent 1.16–1.19 × bare object_store's CPU per MiB, against 1.19–1.26 × with 16, but a slot
/// stood idle with nothing queued in 18 % of the trace's samples (mean running 14.9–15.1), 8–9
/// % with two parts (15.4–15.5), 2–3 % with 16 (15.8). The cushion wins:
/// [`AHEAD_BYTES`](Self::AHEAD_BYTES) is 16 parts of 1 MiB, two of the default 8 MiB. The cap is
/// in bytes so that small parts, whose sends end fastest, get the deepest cushion.
///
/// Counting only the parts that wait, not those being read, is what keeps a slow source
/// (a socket, a pipe) fed: its reads take longer than a send, so many are under way at once
/// (as many as the budget allows) while little or nothing waits, and each part is sent as
/// soon as it is read. A cap on parts read *or* being read would let a slow source read only
/// that many at a time.
#[derive(Debug, Clone)]
pub(crate) struct ReadAhead(Arc<Gate>);

#[derive(Debug)]
struct Gate {
    /// Bytes of the parts read and not started.
    waiting: AtomicU64,
    /// Below this many bytes waiting, one more part may be read (at least 1).
    limit: u64,
    /// A waiting part started or was dropped: a reader may find the gate open.
    opened: Notify,
}

impl ReadAhead {
    /// What a client's uploads may have waiting: 16 parts of 1 MiB (see above).
    pub(crate) const AHEAD_BYTES: u64 = 16 << 20;

    /// A part read while less than `bytes` waits (at least 1 byte: one part at least).
    pub(crate) fn new(bytes: u64) -> Self {
        ReadAhead(Arc::new(Gate {
            waiting: AtomicU64::new(0),
            limit: bytes.max(1),
            opened: Notify::new(),
        }))
    }

    /// Waits until less waits than the cap: the caller may read one more part.
    ///
    /// # Cancel safety
    /// Cancel safe: a wake-up meant for a dropped call goes to the next reader waiting.
    pub(crate) async fn until_open(&self) {
        let gate = &self.0;
        loop {
            let opened = gate.opened.notified();
            let mut opened = std::pin::pin!(opened);
            opened.as_mut().enable();
            if gate.waiting.load(Ordering::Acquire) < gate.limit {
                // Pass the wake-up on: this reader's part does not wait yet (it has to be
                // read first), so the next reader may find the gate open too. A fast source
                // closes it again before that reader looks; a slow one leaves it open and
                // its reads proceed together.
                gate.opened.notify_one();
                return;
            }
            opened.await;
        }
    }

    /// A part of `bytes` has been read: it waits for its send from now on.
    pub(crate) fn stage(&self, bytes: u64) -> Staged {
        self.0.waiting.fetch_add(bytes, Ordering::AcqRel);
        Staged(Some((Arc::clone(&self.0), bytes)))
    }

    /// Bytes read and not started now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> u64 {
        self.0.waiting.load(Ordering::Acquire)
    }
}

/// A part read ahead of its send: it stops waiting when its first attempt starts (or when
/// it is dropped unsent).
#[derive(Debug)]
pub(crate) struct Staged(Option<(Arc<Gate>, u64)>);

impl Staged {
    /// The part's first attempt started: the next part may be read.
    pub(crate) fn started(&mut self) {
        if let Some((gate, bytes)) = self.0.take() {
            gate.waiting.fetch_sub(bytes, Ordering::AcqRel);
            gate.opened.notify_one();
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.started();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Fails without the gate: the second read would not wait.
    #[tokio::test]
    async fn a_part_is_read_when_a_waiting_one_starts() {
        let read_ahead = ReadAhead::new(10);
        read_ahead.until_open().await;
        let mut first = read_ahead.stage(10);
        let second = tokio::spawn({
            let read_ahead = read_ahead.clone();
            async move {
                read_ahead.until_open().await;
                read_ahead.stage(10)
            }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        first.started();
        let second = tokio::time::timeout(Duration::from_secs(30), second)
            .await
            .expect("read once the first part started")
            .unwrap();
        assert_eq!(read_ahead.waiting(), 10);
        drop(second);
        assert_eq!(read_ahead.waiting(), 0);
    }

    /// Small parts wait by several, a part as large as the cap alone, and a cap of 0 still
    /// lets one part wait. Fails if the cap counted parts rather than bytes.
    #[tokio::test]
    async fn the_cap_is_in_bytes_and_lets_one_part_wait() {
        let read_ahead = ReadAhead::new(10);
        let small: Vec<_> = (0..3)
            .map(|_| {
                assert!(read_ahead.0.waiting.load(Ordering::Acquire) < 10);
                read_ahead.stage(4)
            })
            .collect();
        assert_eq!(read_ahead.waiting(), 12);
        let closed = tokio::time::timeout(Duration::from_millis(20), read_ahead.until_open());
        assert!(closed.await.is_err(), "12 bytes wait, the cap is 10");
        drop(small);
        let none = ReadAhead::new(0);
        none.until_open().await;
        let _one = none.stage(1 << 30);
        let closed = tokio::time::timeout(Duration::from_millis(20), none.until_open());
        assert!(closed.await.is_err());
    }

    /// Parts being read do not close the gate: many slow reads go on at once. Fails if
    /// `until_open` does not pass its wake-up on (the second and third readers would sleep
    /// while nothing waits) or if reads counted as waiting.
    #[tokio::test]
    async fn parts_being_read_do_not_count() {
        let read_ahead = ReadAhead::new(1);
        let mut staged = read_ahead.stage(1);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let read_ahead = read_ahead.clone();
                tokio::spawn(async move { read_ahead.until_open().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(readers.iter().all(|reader| !reader.is_finished()));
        // The waiting part starts; the three readers may all read now (none has read yet).
        staged.started();
        for reader in readers {
            tokio::time::timeout(Duration::from_secs(30), reader)
                .await
                .expect("the gate stayed open while nothing waited")
                .unwrap();
        }
        assert_eq!(read_ahead.waiting(), 0);
    }
}
