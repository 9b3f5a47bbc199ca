//! [`PartSource`]: where an upload's parts come from — a reader (read as budget allows) or a
//! body already in memory (sliced, not copied).

use std::future::Future;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{io_failure, TaskResult};

/// The bytes of an upload, a part at a time.
pub(crate) trait PartSource: Send {
    /// Up to `size` bytes: exactly `size` unless the source ends first; empty at the end.
    fn next_part(&mut self, size: usize) -> impl Future<Output = TaskResult<Bytes>> + Send;
}

/// A reader: each part is read into a buffer of its own when the upload has budget for it.
pub(crate) struct ReaderSource<'a, R>(pub(crate) &'a mut R);

impl<R: AsyncRead + Unpin + Send> PartSource for ReaderSource<'_, R> {
    async fn next_part(&mut self, size: usize) -> TaskResult<Bytes> {
        let mut buffer = BytesMut::with_capacity(size);
        while buffer.len() < size {
            let read = (&mut *self.0)
                .take((size - buffer.len()) as u64)
                .read_buf(&mut buffer)
                .await
                .map_err(io_failure)?;
            if read == 0 {
                break;
            }
        }
        // The source ended early (a small object, a last part): keep what it holds, not a
        // part-sized buffer whose budget was given back.
        if buffer.len() < buffer.capacity() / 2 {
            return Ok(Bytes::copy_from_slice(&buffer));
        }
        Ok(buffer.freeze())
    }
}

/// A body already in memory (`S3Client::put`): parts are slices of it.
pub(crate) struct BytesSource(pub(crate) Bytes);

impl PartSource for BytesSource {
    async fn next_part(&mut self, size: usize) -> TaskResult<Bytes> {
        let take = size.min(self.0.len());
        Ok(self.0.split_to(take))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_sources_cut_the_same_parts() {
        let body: Vec<u8> = (0..=255).cycle().take(2_500).collect();
        let mut cursor = std::io::Cursor::new(body.clone());
        let mut reader = ReaderSource(&mut cursor);
        let mut bytes = BytesSource(Bytes::from(body));
        for expected in [1_000, 1_000, 500, 0] {
            let (a, b) = (
                reader.next_part(1_000).await.unwrap(),
                bytes.next_part(1_000).await.unwrap(),
            );
            assert_eq!((a.len(), b.len()), (expected, expected));
            assert_eq!(a, b);
        }
    }

    #[tokio::test]
    async fn a_short_part_from_a_reader_holds_no_part_sized_buffer() {
        let mut cursor = std::io::Cursor::new(vec![7u8; 1_000]);
        let part = ReaderSource(&mut cursor).next_part(8 << 20).await.unwrap();
        assert_eq!(part.len(), 1_000);
        // Not a view into an 8 MiB allocation: turning it back into a Vec keeps its size.
        assert!(Vec::<u8>::from(part).capacity() < 8 << 20);
    }
}
