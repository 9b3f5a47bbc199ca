//! [`PartSource`]: where an upload's parts come from — a reader (read as budget allows) or a
//! body already in memory (sliced, not copied).

use std::future::Future;
use std::io;

use bytes::Bytes;
use object_store::PutPayload;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::buffers::{PieceBuffer, PieceBuffers};

/// The bytes of an upload, a part at a time.
pub(crate) trait PartSource: Send {
    /// Up to `size` bytes: exactly `size` unless the source ends first; empty at the end.
    ///
    /// # Cancel safety
    /// Cancel safe when called again with the same `size`: a call cut off keeps what it had
    /// read, and the next call goes on with the same part. An upload's first part is read
    /// by a pool task's attempt, which a timeout may cut off (see `upload`).
    fn next_part(&mut self, size: usize) -> impl Future<Output = io::Result<PutPayload>> + Send;
}

/// Largest buffer a reader's part is read into: a part is a list of such chunks
/// (`PutPayload` sends them one after another), so a source that ends early fills at most
/// one chunk it does not need, and no part is copied to be trimmed or joined.
const CHUNK: usize = 1 << 20;

/// Free chunks a client keeps for its readers' parts, reused by its next uploads
/// ([`PieceBuffers::shared`]): 16 MiB, as much as its uploads may read ahead.
pub(crate) const KEPT_CHUNKS: usize = 16;

/// What a new buffer holds before the source has shown that it has more: a source that
/// ends on a chunk's boundary (a 1 MiB object in parts of 8 MiB) would otherwise have a
/// whole chunk allocated to read nothing into.
const PROBE: usize = 64;

/// A reader: each part is read, when the upload has budget for it, into chunks of its own
/// (buffers reused once the part they were sent in is stored).
pub(crate) struct ReaderSource<R> {
    reader: R,
    buffers: PieceBuffers,
    /// The chunks of the part being read, and the chunk being filled: kept here, not in a
    /// call's future, so that a call cut off loses nothing.
    chunks: Vec<Bytes>,
    filling: Option<PieceBuffer>,
}

impl<R> ReaderSource<R> {
    /// `reader`'s parts, read into `buffers` (a client's, shared by its uploads).
    pub(crate) fn new(reader: R, buffers: PieceBuffers) -> Self {
        ReaderSource {
            reader,
            buffers,
            chunks: Vec::new(),
            filling: None,
        }
    }
}

impl<R: AsyncRead + Unpin + Send> PartSource for ReaderSource<R> {
    async fn next_part(&mut self, size: usize) -> io::Result<PutPayload> {
        let mut read_total: usize = self.chunks.iter().map(Bytes::len).sum();
        while read_total < size {
            let want = (size - read_total).min(CHUNK);
            let buffers = &self.buffers;
            let chunk = self.filling.get_or_insert_with(|| buffers.take());
            read_chunk(&mut self.reader, chunk.bytes_mut(), want).await?;
            let ended = chunk.len() < want;
            read_total += chunk.len();
            if let Some(chunk) = self.filling.take().filter(|chunk| !chunk.is_empty()) {
                self.chunks.push(trimmed(chunk));
            }
            if ended {
                // Nothing more will be read: the part's buffers are freed once it is sent.
                self.buffers.close();
                break;
            }
        }
        Ok(PutPayload::from_iter(self.chunks.drain(..)))
    }
}

/// Up to `size` bytes from `reader` into `buffer`: fewer only if the reader ended. Cancel
/// safe: what was read stays in `buffer`, and a call again goes on from there.
async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    size: usize,
) -> io::Result<()> {
    if buffer.is_empty() && buffer.capacity() < size {
        // A new buffer: grown to the chunk only once the source shows it has more.
        buffer.reserve_exact(PROBE.min(size));
        if (&mut *reader).take(size as u64).read_buf(buffer).await? == 0 {
            return Ok(());
        }
    }
    buffer.reserve_exact(size.saturating_sub(buffer.len()));
    while buffer.len() < size {
        let read = (&mut *reader)
            .take((size - buffer.len()) as u64)
            .read_buf(buffer)
            .await?;
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
    /// The part being read in the blocking pool: kept here, so that a call cut off waits
    /// for it again rather than lose the file with it.
    reading: Option<JoinHandle<(std::fs::File, io::Result<PutPayload>)>>,
}

impl FileSource {
    pub(crate) fn new(file: std::fs::File) -> Self {
        FileSource {
            file: Some(file),
            buffers: PieceBuffers::default(),
            reading: None,
        }
    }
}

impl PartSource for FileSource {
    async fn next_part(&mut self, size: usize) -> io::Result<PutPayload> {
        let reading = match &mut self.reading {
            Some(reading) => reading,
            None => {
                let mut file = self.file.take().ok_or_else(|| {
                    io::Error::other("an earlier read of this file failed: the file is lost")
                })?;
                let buffers = self.buffers.clone();
                self.reading.insert(tokio::task::spawn_blocking(move || {
                    let part = read_file_part(&mut file, size, &buffers);
                    (file, part)
                }))
            }
        };
        let joined = reading.await;
        self.reading = None;
        let (file, part) = joined.map_err(io::Error::other)?;
        self.file = Some(file);
        let part = part?;
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
    async fn next_part(&mut self, size: usize) -> io::Result<PutPayload> {
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
        let mut reader = ReaderSource::new(&mut cursor, PieceBuffers::default());
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
        let mut reader = ReaderSource::new(&mut cursor, PieceBuffers::default());
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
        let mut reader = ReaderSource::new(&mut cursor, PieceBuffers::default());
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

    /// Fails if the part being read lived in the call's future: the first call's 10
    /// bytes would be lost with it.
    #[tokio::test]
    async fn a_read_cut_off_goes_on_where_it_stopped() {
        use futures::FutureExt;
        use tokio::io::AsyncWriteExt;
        let (mut writer, reader) = tokio::io::duplex(1_000);
        let mut source = ReaderSource::new(reader, PieceBuffers::default());
        writer.write_all(&[1; 10]).await.unwrap();
        assert!(
            source.next_part(100).now_or_never().is_none(),
            "90 bytes to come"
        );
        writer.write_all(&[2; 95]).await.unwrap();
        let part = source.next_part(100).await.unwrap();
        assert_eq!(joined(&part), [[1; 10].as_slice(), &[2; 90]].concat());
        drop(writer);
        assert_eq!(source.next_part(100).await.unwrap().content_length(), 5);
    }

    /// A 1 MiB body in parts of 8 MiB: the second chunk, which finds the end, is never
    /// grown to a chunk. Fails without the probe (two chunks' worth come back).
    #[tokio::test]
    async fn a_source_that_ends_on_a_chunk_boundary_allocates_no_chunk_for_nothing() {
        let buffers = PieceBuffers::shared(4);
        let mut cursor = std::io::Cursor::new(vec![7u8; CHUNK]);
        let mut reader = ReaderSource::new(&mut cursor, buffers.clone());
        let part = reader.next_part(8 * CHUNK).await.unwrap();
        assert_eq!(part.content_length(), CHUNK);
        drop(part);
        assert_eq!(buffers.free(), 2, "the chunk and the probe, kept for reuse");
        assert!(buffers.free_capacity() < CHUNK + CHUNK / 2);
    }

    #[tokio::test]
    async fn a_short_part_from_a_reader_holds_no_larger_buffer() {
        let mut cursor = std::io::Cursor::new(vec![7u8; 1_000]);
        let part = ReaderSource::new(&mut cursor, PieceBuffers::default())
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
