//! [`PieceBuffers`]: the buffers a transfer reads its pieces (ranges, parts) into, reused
//! once a piece is written or stored.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers of one transfer, each given back when its piece is done with (a range written,
/// a part stored) and reused for a later piece. The budget bounds how many exist at once,
/// so the transfer allocates that many and no more, and they are freed with it.
///
/// Freeing a buffer per piece and allocating the next one costs more than it seems: glibc
/// hands large blocks back to the kernel (`munmap`, or `madvise` at the top of a thread's
/// arena) and every page of the next one is faulted in again (a profile of a 512 MiB upload
/// with a fresh 1 MiB buffer per chunk showed a tenth of its CPU in page faults and page
/// compaction). With glibc's sliding mmap threshold those buffers also move from `mmap` to
/// the heap, whose fragments the process keeps: a 512 MiB download under a 128 MiB budget
/// peaked at 229 MB of RSS that way, 144 MB with the threshold fixed (both ways the reads
/// are copied out of the HTTP client's chunks, which pin its read buffers: holding the
/// chunks peaked at 240 MB).
///
/// Once the source has ended ([`close`](PieceBuffers::close)), no piece will be read again:
/// a buffer given back is freed at once rather than kept for the transfer's end. An upload's
/// last buffers come back when its request is done, which can be well before whoever awaits
/// the upload polls it (a caller with a thousand uploads in flight on one task, busy reading
/// the next bodies); kept, they held a megabyte per finished upload of 1 MiB objects until
/// then: 1,000 such uploads at a pool limit of 16 peaked anywhere from 47 to 137 MB of RSS
/// from one run to the next, and at 48–49 MB in each of 12 runs since.
#[derive(Debug, Clone, Default)]
pub(crate) struct PieceBuffers(Arc<Mutex<Free>>);

/// The buffers free for reuse, and whether any piece will be read again.
#[derive(Debug, Default)]
struct Free {
    buffers: Vec<Vec<u8>>,
    closed: bool,
    /// Free buffers kept at most (more given back are freed); `None`: one transfer's,
    /// which keeps all until it is closed.
    shared_keeps: Option<usize>,
}

impl PieceBuffers {
    /// Buffers shared by a client's transfers, of which at most `keep` are kept free: a
    /// buffer given back is reused by whichever transfer reads next. Never closed
    /// ([`close`](Self::close) does nothing: other transfers read on).
    ///
    /// Many small uploads, each with buffers of its own, allocated a chunk per object on
    /// the pool's worker that read it and freed it once sent; glibc trimmed the workers'
    /// arenas and every page was faulted in again: 1,000 uploads of 1 MiB took 34,000 to
    /// 42,000 minor page faults against 8,700 for object_store's idiom, and a third more
    /// system time (`pool-bench transfer --workloads many --directions upload`).
    pub(crate) fn shared(keep: usize) -> Self {
        PieceBuffers(Arc::new(Mutex::new(Free {
            shared_keeps: Some(keep),
            ..Free::default()
        })))
    }

    /// An empty buffer: a free one if there is one, else a new one.
    pub(crate) fn take(&self) -> PieceBuffer {
        let bytes = lock(&self.0).buffers.pop().unwrap_or_default();
        PieceBuffer {
            bytes,
            home: Arc::clone(&self.0),
        }
    }

    /// No piece will be read any more: the free buffers are freed, and so is each buffer
    /// given back from now on.
    pub(crate) fn close(&self) {
        let free = {
            let mut free = lock(&self.0);
            if free.shared_keeps.is_some() {
                return;
            }
            free.closed = true;
            std::mem::take(&mut free.buffers)
        };
        drop(free);
    }

    /// Buffers free now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        lock(&self.0).buffers.len()
    }

    /// Bytes the free buffers hold without growing.
    #[cfg(test)]
    pub(crate) fn free_capacity(&self) -> usize {
        lock(&self.0).buffers.iter().map(Vec::capacity).sum()
    }
}

fn lock(free: &Mutex<Free>) -> std::sync::MutexGuard<'_, Free> {
    free.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A piece's bytes; back to its [`PieceBuffers`] when dropped (freed if it holds none).
#[derive(Debug)]
pub(crate) struct PieceBuffer {
    bytes: Vec<u8>,
    home: Arc<Mutex<Free>>,
}

impl PieceBuffer {
    /// The buffer to read into.
    pub(crate) fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Bytes the buffer holds without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// The bytes as `Bytes` (a part's payload): the buffer goes back when the last clone is
    /// dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl Deref for PieceBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for PieceBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for PieceBuffer {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        if bytes.capacity() == 0 {
            return;
        }
        let mut free = lock(&self.home);
        let full = match free.shared_keeps {
            Some(keep) => free.buffers.len() >= keep,
            // Never filled (a read that found the source's end): freed now rather than
            // kept for a piece of this transfer that may never come.
            None => bytes.is_empty(),
        };
        if free.closed || full {
            // Freed outside the lock.
            drop(free);
            return;
        }
        bytes.clear();
        free.buffers.push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_reused_with_its_capacity_and_emptied() {
        let buffers = PieceBuffers::default();
        drop(buffers.take());
        assert_eq!(buffers.free(), 0, "a buffer never filled is freed");
        let mut first = buffers.take();
        first.bytes_mut().extend_from_slice(&[7; 4096]);
        let address = first.as_ptr();
        drop(first);
        assert_eq!(buffers.free(), 1);
        let mut again = buffers.take();
        assert!(again.is_empty());
        assert!(again.bytes_mut().capacity() >= 4096);
        again.bytes_mut().push(1);
        assert_eq!(again.as_ptr(), address, "the same allocation");
        let mut other = buffers.take();
        other.bytes_mut().push(2);
        assert_eq!(buffers.free(), 0);
        drop((again, other));
        assert_eq!(buffers.free(), 2);
    }

    #[test]
    fn once_closed_a_buffer_given_back_is_freed_and_so_are_the_free_ones() {
        let buffers = PieceBuffers::default();
        let (mut kept, mut out) = (buffers.take(), buffers.take());
        kept.bytes_mut().push(1);
        out.bytes_mut().push(2);
        drop(kept);
        let out = out.into_bytes();
        assert_eq!(buffers.free(), 1);
        buffers.close();
        assert_eq!(buffers.free(), 0);
        drop(out);
        assert_eq!(buffers.free(), 0, "given back after the close: freed");
    }

    /// Fails if a shared pool could be closed, kept more than its count, or freed a
    /// buffer that read nothing (the source's end) instead of keeping it.
    #[test]
    fn a_shared_pool_keeps_its_count_and_is_never_closed() {
        let buffers = PieceBuffers::shared(2);
        let taken: Vec<_> = (0..3)
            .map(|_| {
                let mut buffer = buffers.take();
                buffer.bytes_mut().reserve_exact(64);
                buffer
            })
            .collect();
        buffers.close();
        drop(taken);
        assert_eq!(buffers.free(), 2, "two kept, the third freed");
        let mut again = buffers.take();
        assert!(
            again.bytes_mut().capacity() >= 64,
            "a kept buffer is reused"
        );
    }

    #[test]
    fn a_buffer_made_bytes_comes_back_when_its_last_clone_is_dropped() {
        let buffers = PieceBuffers::default();
        let mut buffer = buffers.take();
        buffer.bytes_mut().extend_from_slice(b"part");
        let bytes = buffer.into_bytes();
        let clone = bytes.slice(1..);
        drop(bytes);
        assert_eq!(buffers.free(), 0, "a clone still holds it");
        assert_eq!(&clone[..], b"art");
        drop(clone);
        assert_eq!(buffers.free(), 1);
    }
}
