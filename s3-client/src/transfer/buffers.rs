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
#[derive(Debug, Clone, Default)]
pub(crate) struct PieceBuffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl PieceBuffers {
    /// An empty buffer: a free one if there is one, else a new one.
    pub(crate) fn take(&self) -> PieceBuffer {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or_default();
        PieceBuffer {
            bytes,
            home: Arc::clone(&self.0),
        }
    }

    /// Buffers free now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A piece's bytes; back to its [`PieceBuffers`] when dropped (freed if it holds none).
#[derive(Debug)]
pub(crate) struct PieceBuffer {
    bytes: Vec<u8>,
    home: Arc<Mutex<Vec<Vec<u8>>>>,
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
        if bytes.is_empty() {
            // Never filled (a read that found the source's end): freed now rather than
            // kept for a piece that may never come.
            return;
        }
        bytes.clear();
        self.home
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(bytes);
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
