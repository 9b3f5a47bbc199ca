//! [`RangeBuffers`]: the buffers a download reads its ranges into, reused once written.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Part-sized buffers of one download, each given back when its range is written and
/// reused for a later range. The budget bounds how many exist at once, so the download
/// allocates that many and no more. Freeing a part-sized buffer per range and allocating the
/// next one would be no cheaper, and with glibc's sliding mmap threshold those buffers move
/// from `mmap` to the heap, whose fragments the process keeps: a 512 MiB download under a
/// 128 MiB budget peaked at 229 MB of RSS that way, 144 MB with the threshold fixed
/// (`pool-bench transfer`; both ways the reads are copied out of the HTTP client's chunks,
/// which pin its read buffers: holding the chunks peaked at 240 MB).
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeBuffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl RangeBuffers {
    /// An empty buffer: a free one if there is one, else a new one.
    pub(crate) fn take(&self) -> RangeBuffer {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or_default();
        RangeBuffer {
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

/// A range's bytes; back to its [`RangeBuffers`] when dropped.
#[derive(Debug)]
pub(crate) struct RangeBuffer {
    bytes: Vec<u8>,
    home: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RangeBuffer {
    /// The buffer to read into.
    pub(crate) fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Deref for RangeBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for RangeBuffer {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
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
        let buffers = RangeBuffers::default();
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
        let other = buffers.take();
        assert_eq!(buffers.free(), 0);
        drop((again, other));
        assert_eq!(buffers.free(), 2);
    }
}
