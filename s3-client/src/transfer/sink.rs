//! [`RangeSink`]: where a download's ranges go — any `AsyncWrite` (in order), or a file
//! written from the blocking pool, each range at its offset as soon as it arrives.

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::buffers::PieceBuffer;

/// Takes a download's ranges.
pub(crate) trait RangeSink: Send {
    /// Writes the next range in order (its buffer goes back for reuse once written).
    fn write_range(&mut self, range: PieceBuffer) -> impl Future<Output = io::Result<()>> + Send;

    /// Flushes what was written.
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// A writer of ranges at their offsets, in any order and several at once, if the sink
    /// can take them so; otherwise ranges come in order through
    /// [`write_range`](Self::write_range).
    fn positioned(&self) -> Option<PositionedFile> {
        None
    }
}

/// Any `AsyncWrite`.
pub(crate) struct WriterSink<'a, W>(pub(crate) &'a mut W);

impl<W: AsyncWrite + Unpin + Send> RangeSink for WriterSink<'_, W> {
    async fn write_range(&mut self, range: PieceBuffer) -> io::Result<()> {
        self.0.write_all(&range).await
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.0.flush().await
    }
}

/// A file, written from tokio's blocking pool one whole range per blocking task:
/// `tokio::fs::File` would copy every write into a buffer of its own and spend a blocking
/// task per 2 MiB of it. Ranges are written at their offsets (`pwrite`), as they arrive.
pub(crate) struct FileSink {
    file: PositionedFile,
    /// Where the next in-order range goes.
    offset: u64,
}

impl FileSink {
    pub(crate) fn new(file: std::fs::File) -> Self {
        FileSink {
            file: PositionedFile(Arc::new(file)),
            offset: 0,
        }
    }
}

impl RangeSink for FileSink {
    async fn write_range(&mut self, range: PieceBuffer) -> io::Result<()> {
        let len = range.len() as u64;
        self.file.write_at(self.offset, range).await?;
        self.offset += len;
        Ok(())
    }

    async fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn positioned(&self) -> Option<PositionedFile> {
        Some(self.file.clone())
    }
}

/// A file that takes writes at offsets, several at once (each from a blocking task).
#[derive(Debug, Clone)]
pub(crate) struct PositionedFile(Arc<std::fs::File>);

impl PositionedFile {
    /// Writes `range` at `offset`; `hold` (the range's budget) is let go once it is
    /// written, even if the caller stopped waiting.
    pub(crate) async fn write_at_holding<H: Send + 'static>(
        &self,
        offset: u64,
        range: PieceBuffer,
        hold: H,
    ) -> io::Result<()> {
        let file = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let written = write_all_at(&file, &range, offset);
            drop((range, hold));
            written
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn write_at(&self, offset: u64, range: PieceBuffer) -> io::Result<()> {
        self.write_at_holding(offset, range, ()).await
    }
}

#[cfg(unix)]
fn write_all_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_all_at(file: &std::fs::File, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !bytes.is_empty() {
        match file.seek_write(bytes, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                offset += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
