//! [`PartSource`]: where an upload's parts come from — a reader (read as budget allows) or a
//! body already in memory (sliced, not copied).

use std::future::Future;

use bytes::Bytes;
use object_store::PutPayload;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::buffers::{PieceBuffer, PieceBuffers};
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

/// A reader: each part is read, when the upload has budget for it, into chunks of its own
/// (buffers reused once the part they were sent in is stored).
pub(crate) struct ReaderSource<'a, R> {
    reader: &'a mut R,
    buffers: PieceBuffers,
}

impl<'a, R> ReaderSource<'a, R> {
    pub(crate) fn new(reader: &'a mut R) -> Self {
        ReaderSource {
            reader,
            buffers: PieceBuffers::default(),
        }
    }
}

impl<R: AsyncRead + Unpin + Send> PartSource for ReaderSource<'_, R> {
    async fn next_part(&mut self, size: usize) -> TaskResult<PutPayload> {
        let mut chunks = Vec::with_capacity(size.div_ceil(CHUNK).min(64));
        let mut read_total = 0;
        while read_total < size {
            let want = (size - read_total).min(CHUNK);
            let mut chunk = self.buffers.take();
            read_chunk(self.reader, chunk.bytes_mut(), want).await?;
            let ended = chunk.len() < want;
            read_total += chunk.len();
            if !chunk.is_empty() {
                chunks.push(trimmed(chunk));
            }
            if ended {
                // Nothing more will be read: the part's buffers are freed once it is sent.
                self.buffers.close();
                break;
            }
        }
        Ok(PutPayload::from_iter(chunks))
    }
}

/// Up to `size` bytes from `reader` into `buffer` (empty): fewer only if the reader ended.
async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    size: usize,
) -> TaskResult<()> {
    buffer.reserve_exact(size);
    while buffer.len() < size {
        let read = (&mut *reader)
            .take((size - buffer.len()) as u64)
            .read_buf(buffer)
            .await
            .map_err(io_failure)?;
        if read == 0 {
            break;
        }
    }
    Ok(())
}

/// A file, read from tokio's blocking pool one part per blocking task straight into the
/// part's chunks (`tokio::fs::File` would read into a buffer of its own and copy, and spend
/// a blocking task per 2 MiB).
pub(crate) struct FileSource {
    file: Option<std::fs::File>,
    buffers: PieceBuffers,
}

impl FileSource {
    pub(crate) fn new(file: std::fs::File) -> Self {
        FileSource {
            file: Some(file),
            buffers: PieceBuffers::default(),
        }
    }
}

impl PartSource for FileSource {
    async fn next_part(&mut self, size: usize) -> TaskResult<PutPayload> {
        let mut file = self.file.take().ok_or_else(|| {
            io_failure(std::io::Error::other(
                "an earlier read of this file did not finish",
            ))
        })?;
        let buffers = self.buffers.clone();
        let (file, part) = tokio::task::spawn_blocking(move || {
            let part = read_file_part(&mut file, size, &buffers);
            (file, part)
        })
        .await
        .map_err(|error| io_failure(std::io::Error::other(error)))?;
        self.file = Some(file);
        let part = part.map_err(io_failure)?;
        if part.content_length() < size {
            // The file ended: the part's buffers are freed once it is sent.
            self.buffers.close();
        }
        Ok(part)
    }
}

/// Up to `size` bytes of `file` (fewer only at its end) as chunks of `buffers`.
fn read_file_part(
    file: &mut std::fs::File,
    size: usize,
    buffers: &PieceBuffers,
) -> std::io::Result<PutPayload> {
    use std::io::Read;
    let mut chunks = Vec::with_capacity(size.div_ceil(CHUNK).min(64));
    let mut read_total = 0;
    while read_total < size {
        let want = (size - read_total).min(CHUNK);
        let mut chunk = buffers.take();
        let bytes = chunk.bytes_mut();
        bytes.reserve_exact(want);
        // Reads into the spare capacity: nothing is zeroed first.
        (&mut *file).take(want as u64).read_to_end(bytes)?;
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

/// A chunk as `Bytes`: one the source filled less than half of (it ended) is copied into a
/// buffer of its size, so a part does not hold memory the budget gave back.
fn trimmed(chunk: PieceBuffer) -> Bytes {
    if chunk.len() < chunk.capacity() / 2 {
        Bytes::copy_from_slice(&chunk)
    } else {
        chunk.into_bytes()
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
        let mut reader = ReaderSource::new(&mut cursor);
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
        let mut reader = ReaderSource::new(&mut cursor);
        let first = reader.next_part(2 * CHUNK).await.unwrap();
        let second = reader.next_part(2 * CHUNK).await.unwrap();
        let end = reader.next_part(2 * CHUNK).await.unwrap();
        assert_eq!(first.as_ref().len(), 2);
        assert_eq!(second.content_length(), CHUNK / 2 + 7);
        assert_eq!(end.content_length(), 0);
        assert_eq!([joined(&first), joined(&second)].concat(), body);
    }

    #[tokio::test]
    async fn the_last_parts_buffers_are_freed_once_sent_not_kept() {
        let body = vec![7u8; CHUNK * 3 / 2];
        let mut cursor = std::io::Cursor::new(body.clone());
        let mut reader = ReaderSource::new(&mut cursor);
        let first = reader.next_part(CHUNK).await.unwrap();
        drop(first);
        assert_eq!(reader.buffers.free(), 1, "kept for the next part");
        let last = reader.next_part(CHUNK).await.unwrap();
        assert_eq!(last.content_length(), CHUNK / 2);
        drop(last);
        assert_eq!(reader.buffers.free(), 0, "the source ended: nothing kept");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &body).unwrap();
        let mut file = FileSource::new(std::fs::File::open(&path).unwrap());
        drop(file.next_part(CHUNK).await.unwrap());
        assert_eq!(file.buffers.free(), 1);
        drop(file.next_part(CHUNK).await.unwrap());
        assert_eq!(file.buffers.free(), 0);
    }

    #[tokio::test]
    async fn a_short_part_from_a_reader_holds_no_larger_buffer() {
        let mut cursor = std::io::Cursor::new(vec![7u8; 1_000]);
        let part = ReaderSource::new(&mut cursor)
            .next_part(8 << 20)
            .await
            .unwrap();
        assert_eq!(part.content_length(), 1_000);
        // Not a view into a chunk-sized allocation: turning it back into a Vec keeps its
        // size.
        let chunk = part.into_iter().next().unwrap();
        assert!(Vec::<u8>::from(chunk).capacity() < CHUNK);
    }
}
