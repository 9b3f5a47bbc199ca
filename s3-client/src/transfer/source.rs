//! [`PartSource`]: where an upload's parts come from — a reader (read as budget allows) or a
//! body already in memory (sliced, not copied).

use std::future::Future;

use bytes::{Bytes, BytesMut};
use object_store::PutPayload;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{io_failure, TaskResult};

/// The bytes of an upload, a part at a time.
pub(crate) trait PartSource: Send {
    /// Up to `size` bytes: exactly `size` unless the source ends first; empty at the end.
    fn next_part(&mut self, size: usize) -> impl Future<Output = TaskResult<PutPayload>> + Send;
}

/// Largest buffer a reader's part is read into: a part is a list of such chunks
/// (`PutPayload` sends them one after another), so a source that ends early fills at most
/// one chunk it does not need, and no part is copied to be trimmed or joined.
const CHUNK: usize = 1 << 20;

/// A reader: each part is read, when the upload has budget for it, into chunks of its own.
pub(crate) struct ReaderSource<'a, R>(pub(crate) &'a mut R);

impl<R: AsyncRead + Unpin + Send> PartSource for ReaderSource<'_, R> {
    async fn next_part(&mut self, size: usize) -> TaskResult<PutPayload> {
        let mut chunks = Vec::with_capacity(size.div_ceil(CHUNK).min(64));
        let mut read_total = 0;
        while read_total < size {
            let want = (size - read_total).min(CHUNK);
            let chunk = read_chunk(self.0, want).await?;
            let ended = chunk.len() < want;
            read_total += chunk.len();
            if !chunk.is_empty() {
                chunks.push(trimmed(chunk));
            }
            if ended {
                break;
            }
        }
        Ok(PutPayload::from_iter(chunks))
    }
}

/// Up to `size` bytes from `reader` into a buffer of that capacity: fewer only if the
/// reader ended.
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> TaskResult<BytesMut> {
    let mut buffer = BytesMut::with_capacity(size);
    while buffer.len() < size {
        let read = (&mut *reader)
            .take((size - buffer.len()) as u64)
            .read_buf(&mut buffer)
            .await
            .map_err(io_failure)?;
        if read == 0 {
            break;
        }
    }
    Ok(buffer)
}

/// A chunk as `Bytes`: one the source filled less than half of (it ended) is copied into a
/// buffer of its size, so a part does not hold memory the budget gave back.
fn trimmed(chunk: BytesMut) -> Bytes {
    if chunk.len() < chunk.capacity() / 2 {
        Bytes::copy_from_slice(&chunk)
    } else {
        chunk.freeze()
    }
}

/// A body already in memory (`S3Client::put`): parts are slices of it.
pub(crate) struct BytesSource(pub(crate) Bytes);

impl PartSource for BytesSource {
    async fn next_part(&mut self, size: usize) -> TaskResult<PutPayload> {
        let take = size.min(self.0.len());
        Ok(PutPayload::from(self.0.split_to(take)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(payload: &PutPayload) -> Vec<u8> {
        payload
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect()
    }

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
            assert_eq!(
                (a.content_length(), b.content_length()),
                (expected, expected)
            );
            assert_eq!(joined(&a), joined(&b));
        }
    }

    #[tokio::test]
    async fn a_part_larger_than_a_chunk_is_read_in_chunks_and_complete() {
        let body: Vec<u8> = (0..=250).cycle().take(CHUNK * 5 / 2 + 7).collect();
        let mut cursor = std::io::Cursor::new(body.clone());
        let mut reader = ReaderSource(&mut cursor);
        let first = reader.next_part(2 * CHUNK).await.unwrap();
        let second = reader.next_part(2 * CHUNK).await.unwrap();
        let end = reader.next_part(2 * CHUNK).await.unwrap();
        assert_eq!(first.as_ref().len(), 2);
        assert_eq!(second.content_length(), CHUNK / 2 + 7);
        assert_eq!(end.content_length(), 0);
        assert_eq!([joined(&first), joined(&second)].concat(), body);
    }

    #[tokio::test]
    async fn a_short_part_from_a_reader_holds_no_larger_buffer() {
        let mut cursor = std::io::Cursor::new(vec![7u8; 1_000]);
        let part = ReaderSource(&mut cursor).next_part(8 << 20).await.unwrap();
        assert_eq!(part.content_length(), 1_000);
        // Not a view into a chunk-sized allocation: turning it back into a Vec keeps its
        // size.
        let chunk = part.into_iter().next().unwrap();
        assert!(Vec::<u8>::from(chunk).capacity() < CHUNK);
    }
}
